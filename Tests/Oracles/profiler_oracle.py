"""Oracle for the profiler tables: PyTorch's own profiler (torch.profiler, Kineto) over a fixed sequence of
ops and their backward; writes how often each op ran, as key_averages() counts them.

Usage: python profiler_oracle.py OUT_JSON
The sequence (ProfilerTests runs the same one in Swift): y = linear(x, w, b); z = gelu(y);
s = softmax(z, -1); out = layer_norm(s * s, [4]); out.backward(g) (g given: a front end's own
reduction or ones_like may take another route through the dispatcher, which is not what is tested).
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(8, 16)
w = torch.randn(4, 16, requires_grad=True)
b = torch.randn(4, requires_grad=True)
g = torch.randn(8, 4)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    y = F.linear(x, w, b)
    z = F.gelu(y)
    s = z.softmax(-1)
    out = F.layer_norm(s * s, [4])
    out.backward(g)
counts = {e.key: e.count for e in prof.key_averages() if not e.key.startswith("[")}
json.dump(counts, open(sys.argv[1], "w"), indent=1, sort_keys=True)
print(len(counts), "op names,", sum(counts.values()), "calls")

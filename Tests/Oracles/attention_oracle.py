"""Oracle for the encoder's attention on its own: Meta's image_encoder.Attention (explicit logits with the
decomposed relative-position bias), float64, forward and the gradients of everything it owns.

Usage: python attention_oracle.py OUT.safetensors
Cases: "win" a square 6×6 grid with the tables made for it; "odd" a 5×7 grid with tables made for 6
(Meta resizes them), so the head dimension plus H + W is no multiple of 8 either way.
"""
import sys

import torch
from safetensors.torch import save_file

from sam_common import F  # noqa: F401  (imports segment_anything with torchvision stubbed)
from segment_anything.modeling.image_encoder import Attention

torch.manual_seed(3)
out = {}
for case, (h, w, table) in {"win": (6, 6, 6), "odd": (5, 7, 6)}.items():
    attn = Attention(dim=32, num_heads=2, qkv_bias=True, use_rel_pos=True, input_size=(table, table)).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64) * 0.5)
    x = torch.randn(3, h, w, 32, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, h, w, 32, dtype=torch.float64)
    y = attn(x)
    y.backward(grad)
    out[f"{case}.x"] = x.detach()
    out[f"{case}.grad"] = grad
    out[f"{case}.y"] = y.detach()
    out[f"{case}.grad_x"] = x.grad
    for name, p in attn.named_parameters():
        out[f"{case}.param.{name}"] = p.detach().clone()
        out[f"{case}.grad.{name}"] = p.grad
save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[1])

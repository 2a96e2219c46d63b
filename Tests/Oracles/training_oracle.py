"""Oracle for autograd, the fused AdamW step, the AMP grad-scaler kernels and autocast (PyTorch, CPU).

Usage: python training_oracle.py OUT.safetensors
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

g = torch.Generator().manual_seed(7)


def r(*shape):
    return torch.randn(*shape, generator=g)


out = {}

# ---- autograd through an attention-shaped graph (the ops SAM training differentiates) ----
x, w, b = r(2, 5, 8), r(8, 8) * 0.3, r(8)
lnw, lnb, bias = r(8), r(8), r(2, 2, 5, 5)
target = torch.randint(0, 3, (2, 5), generator=g)
out.update({"attn.x": x, "attn.w": w, "attn.b": b, "attn.lnw": lnw, "attn.lnb": lnb, "attn.bias": bias,
            "attn.target": target})
x, w, lnw = (t.clone().requires_grad_(True) for t in (x, w, lnw))
h = F.layer_norm(F.gelu(F.linear(x, w, b)), (8,), lnw, lnb, 1e-6)
q = h.view(2, 5, 2, 4).transpose(1, 2)
a = F.scaled_dot_product_attention(q, q, q, attn_mask=bias).transpose(1, 2).reshape(2, 5, 8)
logits = a.permute(0, 2, 1)[:, :3]
loss = F.cross_entropy(logits, target)
loss.backward()
out.update({"attn.loss": loss.detach(), "attn.grad_x": x.grad, "attn.grad_w": w.grad, "attn.grad_lnw": lnw.grad})

# ---- autograd through convolutions and resizing (the decoder's upscaling path) ----
img, cw, cb, tw, tb = r(1, 3, 6, 6), r(4, 3, 3, 3) * 0.3, r(4), r(4, 2, 2, 2) * 0.3, r(2)
out.update({"conv.img": img, "conv.cw": cw, "conv.cb": cb, "conv.tw": tw, "conv.tb": tb})
img, cw, tw = (t.clone().requires_grad_(True) for t in (img, cw, tw))
y = F.conv2d(img, cw, cb, padding=1)
y = F.relu(F.conv_transpose2d(y, tw, tb, stride=2))
y = F.interpolate(y, size=(20, 20), mode="bilinear", align_corners=False)
loss2 = (y.softmax(1) ** 2).mean() + y.abs().mean()
loss2.backward()
out.update({"conv.loss": loss2.detach(), "conv.grad_img": img.grad, "conv.grad_cw": cw.grad, "conv.grad_tw": tw.grad})

# ---- AdamW: three steps with fixed gradients, PyTorch's optimizer as the reference ----
p0, p1, g0, g1 = r(4, 3), r(5), r(4, 3), r(5)
out.update({"adamw.p0": p0, "adamw.p1": p1, "adamw.g0": g0, "adamw.g1": g1})
params = [p0.clone().requires_grad_(True), p1.clone().requires_grad_(True)]
opt = torch.optim.AdamW(params, lr=4e-4, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8, foreach=False)
for _ in range(3):
    params[0].grad, params[1].grad = g0.clone(), g1.clone()
    opt.step()
out.update({"adamw.p0_after": params[0].detach(), "adamw.p1_after": params[1].detach()})
out["adamw.exp_avg0"] = opt.state[params[0]]["exp_avg"]
out["adamw.exp_avg_sq1"] = opt.state[params[1]]["exp_avg_sq"]

# ---- AMP grad scaler kernels ----
ga, gb = r(3, 3), r(4)
gb_bad = gb.clone()
gb_bad[2] = float("inf")
out.update({"amp.ga": ga, "amp.gb": gb, "amp.gb_bad": gb_bad})
found = torch.zeros(1)
inv = torch.tensor([1 / 1024.0])
ga1, gb1 = ga.clone(), gb.clone()
torch._amp_foreach_non_finite_check_and_unscale_([ga1, gb1], found, inv)
out.update({"amp.ga_unscaled": ga1, "amp.gb_unscaled": gb1, "amp.found_clean": found.clone()})
found2 = torch.zeros(1)
torch._amp_foreach_non_finite_check_and_unscale_([ga.clone(), gb_bad.clone()], found2, inv)
out["amp.found_bad"] = found2
scale, tracker = torch.tensor([1024.0]), torch.zeros(1, dtype=torch.int32)
torch._amp_update_scale_(scale, tracker, found2, 2.0, 0.5, 2000)
out.update({"amp.scale_after_bad": scale.clone(), "amp.tracker_after_bad": tracker.clone()})
scale, tracker = torch.tensor([1024.0]), torch.tensor([1], dtype=torch.int32)
torch._amp_update_scale_(scale, tracker, torch.zeros(1), 2.0, 0.5, 2)
out.update({"amp.scale_after_growth": scale.clone(), "amp.tracker_after_growth": tracker.clone()})

# ---- autocast on the CPU: linear and conv run in bf16 / fp16, softmax stays float32 ----
ax, aw, ab, aimg, acw = r(4, 16), r(8, 16), r(8), r(1, 3, 8, 8), r(4, 3, 3, 3)
out.update({"autocast.x": ax, "autocast.w": aw, "autocast.b": ab, "autocast.img": aimg, "autocast.cw": acw})
for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
    with torch.autocast("cpu", dtype=dt):
        out[f"autocast.{name}.linear"] = F.linear(ax, aw, ab)
        out[f"autocast.{name}.conv"] = F.conv2d(aimg, acw, padding=1)
        out[f"autocast.{name}.softmax_of_linear"] = F.linear(ax, aw, ab).softmax(-1)

save_file({k: v.detach().clone().contiguous() for k, v in out.items()}, sys.argv[1])
print(len(out), "tensors")

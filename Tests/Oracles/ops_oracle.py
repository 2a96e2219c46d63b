"""Oracle for the op-parity tests: computes every op family with PyTorch (CPU, float32) on seeded
inputs and writes inputs and outputs to one safetensors file.

Keys: "<case>.in<i>" for inputs, "<case>.out" (or "<case>.out<i>" for several outputs). The Swift test
runs the same op on the same inputs and compares; both sides must list the same case names.

Usage: python ops_oracle.py OUT.safetensors
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

g = torch.Generator().manual_seed(20261125)


def r(*shape):
    return torch.randn(*shape, generator=g)


def pos(*shape):
    return torch.rand(*shape, generator=g) + 0.1


cases = {}


def case(name, inputs, out):
    assert name not in cases, name
    cases[name] = (inputs, out)


def seeded(seed, fn):
    torch.manual_seed(seed)
    return fn()


# ---- creation ----
case("zeros", [], torch.zeros(2, 3))
case("ones_i64", [], torch.ones(4, dtype=torch.int64))
case("full", [], torch.full((2, 2), 3.5))
case("arange", [], torch.arange(0, 10, 0.5))
case("arange_i64", [], torch.arange(0, 7, 2, dtype=torch.int64))
case("rand_seeded", [], seeded(123, lambda: torch.rand(3, 4)))
case("randn_seeded", [], seeded(123, lambda: torch.randn(3, 4)))
case("randint_seeded", [], seeded(5, lambda: torch.randint(0, 10, (6,))))
case("uniform_seeded", [], seeded(7, lambda: torch.empty(5).uniform_(-2, 3)))
case("normal_seeded", [], seeded(9, lambda: torch.empty(5).normal_(1, 0.5)))
x = r(3, 4)
case("to_f16", [x], x.half())
case("to_bf16", [x], x.bfloat16())
case("to_f64", [x], x.double())
case("to_i64", [x * 10], (x * 10).long())
case("to_u8", [x.abs() * 50], (x.abs() * 50).to(torch.uint8))
case("to_bool", [x], x.bool())

# ---- shapes and views ----
x = r(2, 3, 4)
case("view", [x], x.view(6, 4))
case("reshape", [x], x.reshape(4, -1))
case("permute", [x], x.permute(2, 0, 1))
case("transpose", [x], x.transpose(0, 2))
case("contiguous", [x], x.transpose(1, 2).contiguous())
case("narrow", [x], x.narrow(2, 1, 2))
case("slice_step", [x], x[:, 0:3:2])
case("select", [x], x.select(1, 2))
case("unbind", [x], torch.cat(x.unbind(1), -1))
idx = torch.tensor([2, 0, 2])
case("index_select", [x, idx], x.index_select(2, idx))
gi = torch.tensor([[[0, 1, 3, 2]] * 3] * 2)
case("gather", [x, gi], x.gather(2, gi))
y = r(2, 1, 4)
case("cat", [x, y], torch.cat([x, y], 1))
z = r(2, 3, 4)
case("stack", [x, z], torch.stack([x, z], 1))
p = r(1, 2, 5, 5)
case("pad_constant", [p], F.pad(p, (1, 2, 3, 0), value=0.5))
case("pad_reflect", [p], F.pad(p, (2, 1, 1, 2), mode="reflect"))
case("pad_replicate", [p], F.pad(p, (1, 1, 2, 0), mode="replicate"))
e = r(3, 1)
case("expand", [e], e.expand(3, 4))
case("repeat", [e], e.repeat(2, 3))
case("repeat_interleave", [x], x.repeat_interleave(2, dim=1))
case("flip", [x], x.flip([0, 2]))
case("rot90", [p], torch.rot90(p, 1, [2, 3]))
case("rot90_k3", [p], torch.rot90(p, 3, [2, 3]))
case("squeeze", [y], y.squeeze(1))
case("unsqueeze", [x], x.unsqueeze(1))
case("flatten", [x], x.flatten(1))
case("as_strided", [x], x.as_strided((3, 2), (2, 5), 1))

# ---- element-wise ----
a, b = r(3, 4), r(4)
bp = pos(4)
case("add", [a, b], a + b)
case("sub", [a, b], a - b)
case("mul", [a, b], a * b)
case("div", [a, bp], a / bp)
case("add_scalar", [a], a + 1.5)
case("mul_scalar", [a], a * -2.0)
case("rsub_scalar", [a], 2.0 - a)
case("rdiv_scalar", [bp], 3.0 / bp)
case("pow_scalar", [bp], bp ** 2.5)
case("pow_tensor", [bp, b], bp ** b)
case("maximum", [a, b], torch.maximum(a, b))
case("minimum", [a, b], torch.minimum(a, b))
case("eq", [a, a.round()], a == a.round())
case("lt", [a, b], a < b)
case("ge_scalar", [a], a >= 0.2)
case("logical_and", [a > 0, b > 0], torch.logical_and(a > 0, b > 0))
case("neg", [a], -a)
case("abs", [a], a.abs())
case("exp", [a], a.exp())
case("log", [bp], bp.log())
case("sqrt", [bp], bp.sqrt())
case("rsqrt", [bp], bp.rsqrt())
case("sin", [a], a.sin())
case("cos", [a], a.cos())
case("tanh", [a], a.tanh())
case("sigmoid", [a], a.sigmoid())
case("relu", [a], F.relu(a))
case("gelu", [a], F.gelu(a))
case("gelu_tanh", [a], F.gelu(a, approximate="tanh"))
case("floor", [a * 3], (a * 3).floor())
case("round", [a * 3], (a * 3).round())
case("sign", [a], a.sign())
case("erf", [a], torch.erf(a))
case("square", [a], a.square())
case("where", [a > 0, a, b], torch.where(a > 0, a, b))
case("clamp", [a], a.clamp(-0.5, 0.5))
case("clamp_min", [a], a.clamp(min=0.1))
case("masked_fill", [a, a < 0], a.masked_fill(a < 0, -9.0))
case("isnan", [torch.tensor([1.0, float("nan"), float("inf")])], torch.isnan(torch.tensor([1.0, float("nan"), float("inf")])))

# ---- linear algebra and nn ----
m1, m2 = r(2, 3, 4), r(4, 5)
case("matmul_broadcast", [m1, m2], m1 @ m2)
b1, b2 = r(2, 3, 4), r(2, 4, 5)
case("bmm", [b1, b2], torch.bmm(b1, b2))
xl, wl, bl = r(2, 3, 6), r(5, 6), r(5)
case("linear", [xl, wl, bl], F.linear(xl, wl, bl))
case("linear_nobias", [xl, wl], F.linear(xl, wl))
cl, xf = r(6, 5), xl.reshape(6, 6)
case("add_linear_inplace", [cl, xf, wl], cl + F.linear(xf, wl))
img, cw, cb = r(1, 4, 9, 9), r(6, 2, 3, 3), r(6)
case("conv2d", [img, cw, cb], F.conv2d(img, cw, cb, stride=2, padding=1, dilation=1, groups=2))
cw1 = r(5, 4, 3, 3)
case("conv2d_dilated", [img, cw1], F.conv2d(img, cw1, None, stride=1, padding=2, dilation=2))
tw, tb = r(4, 3, 2, 2), r(3)
case("conv_transpose2d", [img, tw, tb], F.conv_transpose2d(img, tw, tb, stride=2))
tw2 = r(4, 2, 3, 3)
case("conv_transpose2d_pad", [img, tw2], F.conv_transpose2d(img, tw2, None, stride=2, padding=1, output_padding=1))
ln, lw, lb = r(2, 5, 8), r(8), r(8)
case("layer_norm", [ln, lw, lb], F.layer_norm(ln, (8,), lw, lb, 1e-6))
case("softmax", [ln], ln.softmax(-1))
case("log_softmax", [ln], ln.log_softmax(1))
up = r(1, 3, 5, 7)
case("interp_nearest", [up], F.interpolate(up, size=(9, 12), mode="nearest"))
case("interp_nearest_exact", [up], F.interpolate(up, size=(9, 12), mode="nearest-exact"))
case("interp_bilinear", [up], F.interpolate(up, size=(20, 28), mode="bilinear", align_corners=False))
case("interp_bilinear_ac", [up], F.interpolate(up, size=(9, 13), mode="bilinear", align_corners=True))
case("interp_bicubic", [up], F.interpolate(up, size=(11, 6), mode="bicubic", align_corners=False))
case("interp_bicubic_ac", [up], F.interpolate(up, size=(10, 14), mode="bicubic", align_corners=True))
q, k, v, bias = r(2, 3, 7, 8), r(2, 3, 7, 8), r(2, 3, 7, 8), r(2, 3, 7, 7)
case("sdpa_bias", [q, k, v, bias], F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
case("sdpa_scale", [q, k, v], F.scaled_dot_product_attention(q, k, v, scale=0.3))
# The explicit formula, for the "sdpa equals softmax(qk·s + bias)v" check.
case("attention_explicit", [q, k, v, bias], ((q * 8 ** -0.5) @ k.transpose(-2, -1) + bias).softmax(-1) @ v)
logits, target = r(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4), generator=g)
case("cross_entropy", [logits, target], F.cross_entropy(logits, target))
case("cross_entropy_none", [logits, target], F.cross_entropy(logits, target, reduction="none"))
cwt = torch.tensor([0.2, 1.0, 3.0])
tgt_ign = target.clone()
tgt_ign[0, 0, :] = -100
case("cross_entropy_weight_ignore", [logits, tgt_ign, cwt], F.cross_entropy(logits, tgt_ign, weight=cwt))
case("one_hot", [target], F.one_hot(target, 3))

# ---- reductions ----
rd = r(3, 4, 5)
case("sum_all", [rd], rd.sum())
case("sum_dims", [rd], rd.sum((0, 2), keepdim=True))
case("mean_all", [rd], rd.mean())
case("mean_dim", [rd], rd.mean(1))
case("amax", [rd], rd.amax(2))
case("amin", [rd], rd.amin((0, 1)))
mv, mi = rd.max(1)
case("max_dim", [rd], (mv, mi))
case("argmax", [rd], rd.argmax(2))
case("sum_bool", [rd > 0], (rd > 0).sum())

# ---- in-place ----
d, s1, s2 = r(3, 4), r(3, 4), pos(3, 4)
case("add_", [d, s1], d.clone().add_(s1, alpha=0.3))
case("mul_", [d], d.clone().mul_(-1.5))
case("addcmul_", [d, s1, s2], d.clone().addcmul_(s1, s2, value=0.7))
case("addcdiv_", [d, s1, s2], d.clone().addcdiv_(s1, s2, value=-0.2))
case("copy_", [d, s1], d.clone().copy_(s1))
case("fill_", [d], d.clone().fill_(2.25))
case("zero_", [d], d.clone().zero_())

tensors = {}
for name, (inputs, out) in cases.items():
    for i, t in enumerate(inputs):
        tensors[f"{name}.in{i}"] = t.clone().contiguous()
    if isinstance(out, tuple):
        for i, t in enumerate(out):
            tensors[f"{name}.out{i}"] = t.clone().contiguous()
    else:
        tensors[f"{name}.out"] = out.clone().contiguous()
save_file(tensors, sys.argv[1])
print(len(cases), "cases")

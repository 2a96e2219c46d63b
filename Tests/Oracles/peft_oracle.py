"""Python reference for CrackSAM's deltas, written for the tests from REFERENCE's formulas and built on
Meta's segment_anything modules: LoRA on the fused qkv (q/k/v slices) and on proj (o), sequential
attention adapter, parallel MLP adapter (scale s), and the authors' delta key format.

Usage:
  python peft_oracle.py make  CONFIG SIZE TYPE RANK TARGETS DIM SCALE OUT_DIR
      writes base.pth (Meta-layout base weights), delta.pth (authors' format, no sidecar),
      outputs.safetensors (images, target, logits, loss, and gradients under the authors' keys)
  python peft_oracle.py files CONFIG SIZE TYPE RANK TARGETS DIM SCALE OUT_DIR
      writes only base.pth and delta.pth (no forward)
  python peft_oracle.py check CONFIG SIZE TYPE RANK TARGETS DIM SCALE OUT_DIR DELTA_FILE
      loads base.pth + DELTA_FILE (.pth or .safetensors) and writes OUT_DIR/check.safetensors (logits)
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sam_common import build_sam, crack_sam_forward, randomize

mode, name, size, dtype_, rank, targets, mid, scale, out = sys.argv[1:10]
size, rank, mid, scale = int(size), int(rank), int(mid), float(scale)
targets = "".join(t for t in "qkvo" if t in targets)
use_lora = dtype_ in ("lora", "both")
use_adapter = dtype_ in ("adapter", "both")


class LoRAQKV(nn.Module):
    def __init__(self, qkv, slots):
        super().__init__()
        self.qkv, self.dim = qkv, qkv.in_features
        self.a = nn.ModuleDict({t: nn.Linear(self.dim, rank, bias=False) for t in slots})
        self.b = nn.ModuleDict({t: nn.Linear(rank, self.dim, bias=False) for t in slots})
        for b in self.b.values():
            nn.init.zeros_(b.weight)

    def forward(self, x):
        parts = list(self.qkv(x).split(self.dim, dim=-1))
        for i, t in enumerate("qkv"):
            if t in self.a:
                parts[i] = parts[i] + self.b[t](self.a[t](x))
        return torch.cat(parts, dim=-1)


class LoRALinear(nn.Module):
    def __init__(self, base):
        super().__init__()
        self.base = base
        self.a = nn.Linear(base.in_features, rank, bias=False)
        self.b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.b.weight)

    def forward(self, x):
        return self.base(x) + self.b(self.a(x))


class Adapter(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.down, self.up = nn.Linear(dim, mid), nn.Linear(mid, dim)

    def forward(self, x):
        return self.up(F.gelu(self.down(x)))


class SequentialAdapterAttention(nn.Module):
    def __init__(self, attn, dim):
        super().__init__()
        self.attn, self.adapter = attn, Adapter(dim)

    def forward(self, x):
        a = self.attn(x)
        return a + self.adapter(a)


class ParallelAdapterMLP(nn.Module):
    def __init__(self, mlp, dim):
        super().__init__()
        self.mlp, self.adapter = mlp, Adapter(dim)

    def forward(self, n):
        return self.mlp(n) + scale * self.adapter(n)


def inject(sam):
    """Returns the delta parameters under the authors' keys, in their order."""
    blocks = sam.image_encoder.blocks
    dim = blocks[0].attn.qkv.in_features
    lora, attn_adapters, mlp_adapters = [], [], []
    for blk in blocks:
        pairs = {}
        if use_lora:
            slots = [t for t in targets if t != "o"]
            if slots:
                blk.attn.qkv = LoRAQKV(blk.attn.qkv, slots)
                pairs.update({t: (blk.attn.qkv.a[t], blk.attn.qkv.b[t]) for t in slots})
            if "o" in targets:
                blk.attn.proj = LoRALinear(blk.attn.proj)
                pairs["o"] = (blk.attn.proj.a, blk.attn.proj.b)
        lora.append(pairs)
        if use_adapter:
            blk.attn = SequentialAdapterAttention(blk.attn, dim)
            blk.mlp = ParallelAdapterMLP(blk.mlp, dim)
            attn_adapters.append(blk.attn.adapter)
            mlp_adapters.append(blk.mlp.adapter)
    items = []
    if use_adapter:
        for letter, adapters, layer in (("a", attn_adapters, "down"), ("b", attn_adapters, "up"),
                                        ("c", mlp_adapters, "down"), ("d", mlp_adapters, "up")):
            for i, ad in enumerate(adapters):
                lin = getattr(ad, layer)
                items += [(f"w_{letter}_{i:03d}", lin.weight), (f"w_{letter}_{i:03d}_bia", lin.bias)]
    if use_lora:
        suffix = "_l" if use_adapter else ""
        for j, letter in enumerate("ab"):
            for i, pairs in enumerate(lora):
                for k, t in enumerate(targets):
                    items.append((f"w_{letter}_{i * len(targets) + k:03d}{suffix}", pairs[t][j].weight))
    return items


def delta_state(sam, items):
    d = {k: p for k, p in items}
    for k, v in sam.state_dict().items():
        if k.startswith(("prompt_encoder.", "mask_decoder.")):
            d[k] = v
    return d


def build(base_path=None, seed=1):
    torch.manual_seed(0)
    sam = build_sam(name, image_size=size)
    if base_path:
        sam.load_state_dict(torch.load(base_path, weights_only=True))
    else:
        randomize(sam, seed=seed)
    base = {k: v.clone() for k, v in sam.state_dict().items()}
    items = inject(sam)
    for p in sam.image_encoder.parameters():
        p.requires_grad_(False)
    for _, p in items:
        p.requires_grad_(True)
    return sam, base, items


def loss_of(logits, target):
    return F.cross_entropy(logits, target) + (logits.softmax(1) ** 2).mean()


if mode in ("make", "files"):
    sam, base, items = build()
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for _, p in items:  # B starts at zero; make every delta weight matter
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    torch.save(base, f"{out}/base.pth")
    torch.save(delta_state(sam, items), f"{out}/delta.pth")
    if mode == "files":
        print("files written")
        sys.exit(0)
    images = torch.rand(2, 3, size, size, generator=g)
    target = torch.randint(0, 2, (2, size, size), generator=g)
    with torch.no_grad():
        logits = crack_sam_forward(sam, images)["logits"]
    # Gradients are compared in float64: in float32, gradients that vanish in exact arithmetic (a key
    # bias shifts a whole softmax row) are rounding noise that even PyTorch's own explicit and fused
    # attention disagree on.
    sam.double()
    pe = sam.prompt_encoder.pe_layer  # Meta builds its grid in float32: keep the matrix float32 too
    pe.positional_encoding_gaussian_matrix = pe.positional_encoding_gaussian_matrix.float()
    loss = loss_of(crack_sam_forward(sam, images.double())["logits"], target)
    loss.backward()
    tensors = {"images": images, "target": target, "logits": logits, "loss": loss.detach()}
    for k, p in list(delta_state(sam, items).items()):
        param = dict(items).get(k)
        if param is None:
            param = sam.get_parameter(k) if k in dict(sam.named_parameters()) else None
        if param is not None and param.grad is not None:
            tensors[f"grad.{k}"] = param.grad
    frozen_with_grad = [n for n, p in sam.image_encoder.named_parameters() if p.grad is not None and not any(p is q for _, q in items)]
    assert not frozen_with_grad, frozen_with_grad
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/outputs.safetensors")
    print("trainable", sum(p.numel() for p in sam.parameters() if p.requires_grad), "total", sum(p.numel() for p in sam.parameters()))
elif mode == "check":
    delta_file = sys.argv[10]
    sam, _, items = build(base_path=f"{out}/base.pth")
    delta = load_file(delta_file) if delta_file.endswith(".safetensors") else torch.load(delta_file, weights_only=True)
    expected_keys = set(delta_state(sam, items))
    assert set(delta) == expected_keys, (set(delta) ^ expected_keys)
    params = dict(items)
    with torch.no_grad():
        for k, v in delta.items():
            if k in params:
                params[k].copy_(v)
        sam.load_state_dict({k: v for k, v in delta.items() if k not in params}, strict=False)
    images = load_file(f"{out}/outputs.safetensors")["images"]
    with torch.no_grad():
        logits = crack_sam_forward(sam, images)["logits"]
    save_file({"logits": logits.contiguous()}, f"{out}/check.safetensors")
    print("checked")

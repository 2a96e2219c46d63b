"""The Python reference for CrackSAM's deltas, written for the tests from REFERENCE's formulas on Meta's
segment_anything modules: LoRA on the fused qkv (q/k/v slices) and on proj (o), the sequential attention
adapter, the parallel MLP adapter (scale s), and the authors' delta key format. Shared by the oracles."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Settings:
    def __init__(self, delta_type, rank, targets, mid, scale):
        self.use_lora = delta_type in ("lora", "both")
        self.use_adapter = delta_type in ("adapter", "both")
        self.rank, self.mid, self.scale = rank, mid, scale
        self.targets = "".join(t for t in "qkvo" if t in targets)


S = Settings("none", 4, "qv", 32, 0.2)


def configure(delta_type, rank, targets, mid, scale):
    global S
    S = Settings(delta_type, rank, targets, mid, scale)


class LoRAQKV(nn.Module):
    def __init__(self, qkv, slots):
        super().__init__()
        self.qkv, self.dim = qkv, qkv.in_features
        self.a = nn.ModuleDict({t: nn.Linear(self.dim, S.rank, bias=False) for t in slots})
        self.b = nn.ModuleDict({t: nn.Linear(S.rank, self.dim, bias=False) for t in slots})
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
        self.a = nn.Linear(base.in_features, S.rank, bias=False)
        self.b = nn.Linear(S.rank, base.out_features, bias=False)
        nn.init.zeros_(self.b.weight)

    def forward(self, x):
        return self.base(x) + self.b(self.a(x))


class Adapter(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.down, self.up = nn.Linear(dim, S.mid), nn.Linear(S.mid, dim)

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
        return self.mlp(n) + S.scale * self.adapter(n)


def inject(sam):
    """Returns the delta parameters under the authors' keys, in their order."""
    blocks = sam.image_encoder.blocks
    dim = blocks[0].attn.qkv.in_features
    lora, attn_adapters, mlp_adapters = [], [], []
    for blk in blocks:
        pairs = {}
        if S.use_lora:
            slots = [t for t in S.targets if t != "o"]
            if slots:
                blk.attn.qkv = LoRAQKV(blk.attn.qkv, slots)
                pairs.update({t: (blk.attn.qkv.a[t], blk.attn.qkv.b[t]) for t in slots})
            if "o" in S.targets:
                blk.attn.proj = LoRALinear(blk.attn.proj)
                pairs["o"] = (blk.attn.proj.a, blk.attn.proj.b)
        lora.append(pairs)
        if S.use_adapter:
            blk.attn = SequentialAdapterAttention(blk.attn, dim)
            blk.mlp = ParallelAdapterMLP(blk.mlp, dim)
            attn_adapters.append(blk.attn.adapter)
            mlp_adapters.append(blk.mlp.adapter)
    items = []
    if S.use_adapter:
        for letter, adapters, layer in (("a", attn_adapters, "down"), ("b", attn_adapters, "up"),
                                        ("c", mlp_adapters, "down"), ("d", mlp_adapters, "up")):
            for i, ad in enumerate(adapters):
                lin = getattr(ad, layer)
                items += [(f"w_{letter}_{i:03d}", lin.weight), (f"w_{letter}_{i:03d}_bia", lin.bias)]
    if S.use_lora:
        suffix = "_l" if S.use_adapter else ""
        for j, letter in enumerate("ab"):
            for i, pairs in enumerate(lora):
                for k, t in enumerate(S.targets):
                    items.append((f"w_{letter}_{i * len(S.targets) + k:03d}{suffix}", pairs[t][j].weight))
    return items


def delta_state(sam, items):
    d = {k: p for k, p in items}
    for k, v in sam.state_dict().items():
        if k.startswith(("prompt_encoder.", "mask_decoder.")):
            d[k] = v
    return d

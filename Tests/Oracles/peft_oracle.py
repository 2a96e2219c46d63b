"""Oracle for the delta parity tests, on the Python reference in peft_reference.py.

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
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import peft_reference
from peft_reference import delta_state, inject
from sam_common import build_sam, crack_sam_forward, randomize

mode, name, size, dtype_, rank, targets, mid, scale, out = sys.argv[1:10]
size, rank, mid, scale = int(size), int(rank), int(mid), float(scale)
peft_reference.configure(dtype_, rank, targets, mid, scale)


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

"""Oracle for one CrackSAM training step (fp32 CPU, no augmentation): Meta's modules + the delta
reference, REFERENCE's loss (0.2·CE + 0.8·Dice) and torch.optim.AdamW at the first step's rate.

Usage: python train_step_oracle.py CONFIG SIZE TYPE RANK TARGETS DIM SCALE OUT_DIR
Writes base.pth, delta.pth (authors' format, before the step) and outputs.safetensors (batch, loss
terms, and the delta state after the step under the authors' keys).
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import peft_reference
from peft_reference import delta_state, inject
from sam_common import build_sam, crack_sam_forward, randomize

name, size, dtype_, rank, targets, mid, scale, out = sys.argv[1:9]
size, rank, mid, scale = int(size), int(rank), int(mid), float(scale)
peft_reference.configure(dtype_, rank, targets, mid, scale)

torch.manual_seed(0)
sam = build_sam(name, image_size=size)
randomize(sam, seed=3)
torch.save(sam.state_dict(), f"{out}/base.pth")
items = inject(sam)
g = torch.Generator().manual_seed(4)
with torch.no_grad():
    for _, p in items:
        p.copy_(0.05 * torch.randn(p.shape, generator=g))
for p in sam.image_encoder.parameters():
    p.requires_grad_(False)
for _, p in items:
    p.requires_grad_(True)
torch.save(delta_state(sam, items), f"{out}/delta.pth")

images = torch.rand(2, 3, size, size, generator=g)
target = torch.randint(0, 2, (2, size, size), generator=g)
logits = crack_sam_forward(sam, images)["logits"]
ce = F.cross_entropy(logits, target)
probs = logits.softmax(1)
dice_terms = []
for c in range(probs.shape[1]):
    p, t = probs[:, c], (target == c).float()
    dice_terms.append(1 - (2 * (p * t).sum() + 1e-5) / ((p * p).sum() + (t * t).sum() + 1e-5))
dice = sum(dice_terms) / len(dice_terms)
loss = 0.2 * ce + 0.8 * dice

trainable = [p for p in sam.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=4e-4 / 300, betas=(0.9, 0.999), weight_decay=0.01)
opt.zero_grad()
loss.backward()
opt.step()
tensors = {"images": images, "target": target, "loss": loss.detach(), "ce": ce.detach(), "dice": dice.detach()}
tensors.update({f"after.{k}": v.detach().clone() for k, v in delta_state(sam, items).items()})
save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/outputs.safetensors")
print("trainable tensors", len(trainable))

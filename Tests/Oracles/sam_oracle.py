"""Oracle for SAM parity: Meta's modules with random weights, saved with torch.save, and their outputs.

Usage: python sam_oracle.py CONFIG IMAGE_SIZE BATCH OUT_DIR
Writes OUT_DIR/sam.pth (the state dict) and OUT_DIR/outputs.safetensors (input images and every output).
"""
import sys

import torch
from safetensors.torch import save_file

from sam_common import build_sam, crack_sam_forward, randomize

name, size, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
sam = build_sam(name, image_size=size).eval()
randomize(sam, seed=1)
torch.save(sam.state_dict(), f"{out}/sam.pth")
images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    r = crack_sam_forward(sam, images)
tensors = {"images": images}
tensors.update({k: v.contiguous() for k, v in r.items()})
save_file(tensors, f"{out}/outputs.safetensors")
print("parameters", sum(p.numel() for p in sam.parameters()))

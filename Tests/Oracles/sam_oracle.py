"""Oracle for SAM parity: Meta's modules with random weights, saved with torch.save, and their outputs.

Usage: python sam_oracle.py CONFIG IMAGE_SIZE BATCH OUT_DIR [IMAGE ...]
Writes OUT_DIR/sam.pth (the state dict) and OUT_DIR/outputs.safetensors (input images and every output).
With IMAGE files (S×S PNGs, decoded by OpenCV as RGB/255) they are the input instead of random pixels.
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
if len(sys.argv) > 5:
    import cv2
    import numpy as np

    arrays = [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in sys.argv[5:]]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
else:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    r = crack_sam_forward(sam, images)
tensors = {"images": images.contiguous()}
tensors.update({k: v.contiguous() for k, v in r.items()})
save_file(tensors, f"{out}/outputs.safetensors")
print("parameters", sum(p.numel() for p in sam.parameters()))

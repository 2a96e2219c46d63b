"""Oracle for the augmentation's small-angle rotation: scipy.ndimage.rotate(order=0, reshape=False), which
the authors' data loader calls on each (H, W, C) image and its mask (zero fill outside the image).

Usage: python rotate_oracle.py OUT.safetensors
Writes `image` (C, H, W uint8, odd × even and non-square) and `rotated_<angle>` for several integer angles
in [-20, 20), plus a 448 × 448 single-channel case (`square`, `square_rotated_<angle>`).
"""
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from scipy import ndimage

rng = np.random.default_rng(6)
image = rng.integers(1, 256, (3, 61, 46), dtype=np.uint8)
square = rng.integers(1, 256, (1, 448, 448), dtype=np.uint8)
out = {"image": torch.from_numpy(image), "square": torch.from_numpy(square)}
for angle in (-20, -13, -1, 1, 7, 19):
    r = ndimage.rotate(image.transpose(1, 2, 0), angle, order=0, reshape=False, mode="constant", cval=0)
    out[f"rotated_{angle}"] = torch.from_numpy(np.ascontiguousarray(r.transpose(2, 0, 1)))
for angle in (-17, 11):
    r = ndimage.rotate(square[0], angle, order=0, reshape=False, mode="constant", cval=0)
    out[f"square_rotated_{angle}"] = torch.from_numpy(np.ascontiguousarray(r[None]))
save_file(out, sys.argv[1])
print(len(out), "tensors")

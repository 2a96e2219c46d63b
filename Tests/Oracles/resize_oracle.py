"""Oracle for the nearest-neighbour mask resize: OpenCV's INTER_NEAREST on random single-channel masks.

Usage: python resize_oracle.py OUT.safetensors
Writes, for each case "SWxSH_DWxDH", the source (`src_<case>`, SH×SW uint8) and cv2.resize's result
(`dst_<case>`, DH×DW), including sizes where x·SW/DW is a whole number that OpenCV's 1/(DW/SW)
computes just below it (448 → 576).
"""
import sys

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

rng = np.random.default_rng(5)
cases = [(4, 1, 3, 1), (2, 1, 5, 1), (448, 448, 576, 576), (448, 448, 800, 600), (448, 448, 288, 400), (37, 23, 448, 448)]
out = {}
for sw, sh, dw, dh in cases:
    src = rng.integers(0, 256, (sh, sw), dtype=np.uint8)
    name = f"{sw}x{sh}_{dw}x{dh}"
    out[f"src_{name}"] = torch.from_numpy(src)
    out[f"dst_{name}"] = torch.from_numpy(np.ascontiguousarray(cv2.resize(src, (dw, dh), interpolation=cv2.INTER_NEAREST)))
save_file(out, sys.argv[1])
print(len(cases), "cases")

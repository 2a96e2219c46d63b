"""Oracle for the authors' resize of off-size images (CrackSAM utils.py test_single_volume): the image, as
float64 in [0, 1] with shape (1, 3, H, W), through scipy.ndimage.zoom(order=3) to S×S, and an S×S 0/1
prediction back to H×W with zoom(order=0).

Usage: python zoom_oracle.py OUT.safetensors
Writes per case "<W>x<H>_<S>": `image_<case>` (H, W, 3 uint8), `zoomed_<case>` (3, S, S float64),
`mask_<case>` (S, S uint8) and `back_<case>` (H, W uint8).
"""
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from scipy.ndimage import zoom

rng = np.random.default_rng(7)
out = {}
# 1000x750: the prediction's last row lands an ulp past the grid (zoom writes 0 there); 226x300 does it
# to the zoomed image's last column (226 -> 448: 447*(225/447) > 225).
for w, h, s in [(227, 227, 448), (500, 375, 448), (640, 480, 448), (1000, 750, 448), (226, 300, 448), (23, 37, 64), (64, 48, 32),
                (2, 3, 16)]:
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # Smooth regions and hard edges both: a spline overshoots at edges (values outside [0, 1] stay).
    image[: h // 2, : w // 3] = 255
    x = (image.transpose(2, 0, 1)[None] / 255.0)
    zoomed = zoom(x, (1, 1, s / h, s / w), order=3)[0]
    mask = (rng.random((s, s)) < 0.3).astype(np.int64)
    back = zoom(mask, (h / s, w / s), order=0)
    assert zoomed.shape == (3, s, s) and back.shape == (h, w), (zoomed.shape, back.shape)
    if (w, h) == (226, 300):
        assert (zoomed[:, :, -1] == 0).all() and zoomed[:, :, -2].any()
    case = f"{w}x{h}_{s}"
    out[f"image_{case}"] = torch.from_numpy(image)
    out[f"zoomed_{case}"] = torch.from_numpy(np.ascontiguousarray(zoomed))
    out[f"mask_{case}"] = torch.from_numpy(mask.astype(np.uint8))
    out[f"back_{case}"] = torch.from_numpy(back.astype(np.uint8))
save_file(out, sys.argv[1])
print(len(out) // 4, "cases")

"""Oracle for image decoding: OpenCV writes PNG/JPEG files and records how it decodes them.

Usage: python image_oracle.py DIR
Writes DIR/{rgb.png, grey.png, photo.jpg, grey.jpg, deep.png, truncated.png, truncated.jpg} and
DIR/decoded.safetensors (OpenCV's RGB/grey uint8 arrays).
"""
import sys

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

d = sys.argv[1]
rng = np.random.default_rng(4)
yy, xx = np.mgrid[0:60, 0:80]
rgb = np.stack([(xx * 3) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
rgb[20:30, 10:50] = rng.integers(0, 256, (10, 40, 3), dtype=np.uint8)
grey = ((xx + 2 * yy) % 256).astype(np.uint8)
cv2.imwrite(f"{d}/rgb.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
cv2.imwrite(f"{d}/grey.png", grey)
cv2.imwrite(f"{d}/photo.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
cv2.imwrite(f"{d}/grey.jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
cv2.imwrite(f"{d}/deep.png", (grey.astype(np.uint16) * 257))
# A CMYK JPEG (print workflows produce them; libjpeg decodes them but they are not RGB photos).
from PIL import Image as PILImage

PILImage.fromarray(rgb).convert("CMYK").save(f"{d}/cmyk.jpg", quality=90)
for name in ("rgb.png", "photo.jpg"):
    data = open(f"{d}/{name}", "rb").read()
    open(f"{d}/truncated.{name.split('.')[1]}", "wb").write(data[: len(data) * 2 // 3])

decoded = {
    "rgb.png": cv2.cvtColor(cv2.imread(f"{d}/rgb.png"), cv2.COLOR_BGR2RGB),
    "grey.png": cv2.imread(f"{d}/grey.png", cv2.IMREAD_UNCHANGED),
    "photo.jpg": cv2.cvtColor(cv2.imread(f"{d}/photo.jpg"), cv2.COLOR_BGR2RGB),
    "grey.jpg": cv2.imread(f"{d}/grey.jpg", cv2.IMREAD_UNCHANGED),
}
save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in decoded.items()}, f"{d}/decoded.safetensors")
print("written")

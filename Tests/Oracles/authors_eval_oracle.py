"""Oracle for evaluating an image that is not S×S, as the authors' test loop does it (CrackSAM utils.py
test_single_volume): PIL-decoded RGB / 255 as float64 (1, 3, H, W), scipy.ndimage.zoom(order=3) to S×S,
.float(), CrackSAM's forward (Meta's modules, random weights), argmax of the softmax, and the prediction back
to H×W with zoom(order=0).

Usage: python authors_eval_oracle.py DIR
Writes DIR/sam.pth (the "small" config at S = 64), DIR/photo.png (90×70 RGB) and DIR/out.safetensors:
`logits` (1, 2, 64, 64) and `prediction` (70, 90 uint8).
"""
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy.ndimage import zoom

from sam_common import build_sam, crack_sam_logits, randomize

d = sys.argv[1]
s = 64
torch.manual_seed(0)
sam = build_sam("small", image_size=s)
randomize(sam, seed=2)  # a seed whose prediction is about a third crack (others are all one class)
sam.eval()
torch.save(sam.state_dict(), f"{d}/sam.pth")
yy, xx = np.mgrid[0:70, 0:90]
rgb = np.stack([(xx * 5 + yy) % 256, (yy * 7) % 256, ((xx - yy) * 3) % 256], -1).astype(np.uint8)
rgb[20:26, :] = 15  # a dark band
Image.fromarray(rgb).save(f"{d}/photo.png")

image = np.array(Image.open(f"{d}/photo.png")) / 255.0
image = torch.from_numpy(image).permute(2, 0, 1)[None].numpy()
x, y = image.shape[-2:]
image = zoom(image, (1, 1, s / x, s / y), order=3)
with torch.no_grad():
    logits = crack_sam_logits(sam, torch.from_numpy(image).float())
    prediction = torch.argmax(torch.softmax(logits, dim=1), dim=1).squeeze(0).numpy()
prediction = zoom(prediction, (x / s, y / s), order=0)
save_file({"logits": logits.contiguous(), "prediction": torch.from_numpy(prediction.astype(np.uint8))}, f"{d}/out.safetensors")
print("prediction", prediction.shape, "crack pixels", int(prediction.sum()))

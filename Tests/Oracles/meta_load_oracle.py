"""Loads a state dict strictly into Meta's SAM (the CrackSAM shape: num_classes+1 mask tokens) and runs
CrackSAM's forward on PNG images; proves an exported file is loadable by Meta-layout code.

Usage: python meta_load_oracle.py CONFIG SIZE STATE_DICT(.pth|.safetensors) OUT.safetensors IMAGE...
"""
import sys

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sam_common import build_sam, crack_sam_forward

name, size, path, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sam = build_sam(name, image_size=size).eval()
sd = load_file(path) if path.endswith(".safetensors") else torch.load(path, weights_only=True)
sam.load_state_dict(sd, strict=True)
arrays = [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in sys.argv[5:]]
images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
with torch.no_grad():
    logits = crack_sam_forward(sam, images)["logits"]
save_file({"logits": logits.contiguous()}, out)
print("loaded strictly")

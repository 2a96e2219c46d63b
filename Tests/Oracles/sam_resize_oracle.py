"""Oracle for loading an official-style SAM checkpoint at CrackSAM's size.

Builds Meta's model at 1024 px (64×64 pos_embed, Meta's default 3 multimask outputs = 4 mask tokens),
saves it, and applies REFERENCE's rule in PyTorch: drop the class-dependent decoder keys, resize
pos_embed to S/16 and the global blocks' rel_pos to 2·S/16−1 rows (bilinear, align_corners=False).

Usage: python sam_resize_oracle.py CONFIG IMAGE_SIZE OUT_DIR
Writes OUT_DIR/official.pth and OUT_DIR/expected.safetensors.
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from sam_common import CONFIGS, build_sam, randomize

name, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sam = build_sam(name, image_size=1024, num_classes=3)
randomize(sam, seed=5)
sd = sam.state_dict()
torch.save(sd, f"{out}/official.pth")

grid = size // 16
expected = {}
for k, v in sd.items():
    if any(x in k for x in ("mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head")):
        continue
    expected[k] = v
pos = expected["image_encoder.pos_embed"].permute(0, 3, 1, 2)
expected["image_encoder.pos_embed"] = F.interpolate(pos, (grid, grid), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
for i in CONFIGS[name]["global_attn_indexes"]:
    for axis in ("h", "w"):
        k = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
        t = expected[k]
        expected[k] = F.interpolate(t[None, None], (2 * grid - 1, t.shape[1]), mode="bilinear", align_corners=False)[0, 0]

# The result must load into Meta's model built at the target size (all keys but the dropped ones).
target = build_sam(name, image_size=size, num_classes=1)
missing, unexpected = target.load_state_dict(expected, strict=False)
assert not unexpected, unexpected
assert all(any(x in k for x in ("mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head")) for k in missing), missing
save_file({k: v.contiguous() for k, v in expected.items()}, f"{out}/expected.safetensors")
print(len(expected), "keys")

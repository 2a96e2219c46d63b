"""Oracle for the FLOP counter: torch.utils.flop_counter.FlopCounterMode (PyTorch's own count of
matmul/conv/attention FLOPs, forward and backward) on CrackSAM's forward over Meta's modules, with LoRA
(q, v, rank 4) injected into the frozen encoder as the authors train it.

Usage: python flops_oracle.py CONFIG SIZE BATCH OUT_JSON
writes {"inference": forward FLOPs without grad, "training": forward + backward FLOPs of one step}.
"""
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

import peft_reference
from peft_reference import inject
from sam_common import build_sam, crack_sam_logits

name, size, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
peft_reference.configure("lora", 4, "qv", 0, 0.0)
torch.manual_seed(0)
sam = build_sam(name, image_size=size)
items = inject(sam)
for p in sam.image_encoder.parameters():
    p.requires_grad_(False)
for _, p in items:
    p.requires_grad_(True)


def forward(images):
    return crack_sam_logits(sam, images)  # the IoU head is not part of CrackSAM's loss (nor run by our forward)


images = torch.rand(batch, 3, size, size)
# Inference: nothing requires a gradient (FlopCounterMode's module tracker fails under no_grad here).
trainable = [p for p in sam.parameters() if p.requires_grad]
for p in trainable:
    p.requires_grad_(False)
with FlopCounterMode(display=False) as inference:
    forward(images)
for p in trainable:
    p.requires_grad_(True)
with FlopCounterMode(display=False) as training:
    logits = forward(images)
    logits.float().mean().backward()
json.dump({"inference": inference.get_total_flops(), "training": training.get_total_flops()}, open(out, "w"))
print("inference", inference.get_total_flops(), "training", training.get_total_flops())

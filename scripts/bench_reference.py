#!/usr/bin/env python3
"""The authors' recipe in plain eager PyTorch, timed the way `crack-cli bench train|infer` times ours.

Meta's segment_anything modules (Meta layout, explicit attention with decomposed relative positions),
LoRA on q and v of every block's fused qkv (rank 4, B zero-initialised; Tests/Oracles/peft_reference.py),
the encoder frozen but for LoRA, CrackSAM's decoder head (num_classes + 1 masks), loss 0.2·CE + 0.8·Dice in
float32, torch.optim.AdamW (lr 4e-4, weight decay 0.01), fp16 autocast with torch.amp.GradScaler
(REFERENCE "Training recipe"). `infer` is the authors' evaluation loop: one image per forward, float32,
no autocast, argmax.

Usage: scripts/bench_reference.py train|infer [--vit h] [--batch 8] [--image-size 448] [--steps 20]
       [--warmup 3] [--device cuda] [--json]
Needs segment_anything importable (scripts/setup puts it in .venv; scripts/gpu-bench carries it).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Oracles"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import peft_reference  # noqa: E402
from peft_reference import inject  # noqa: E402
from sam_common import build_sam, crack_sam_logits  # noqa: E402


def crack_loss(logits, target):
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((0, 2, 3))
    z = (probs * probs).sum((0, 2, 3))
    y = (onehot * onehot).sum((0, 2, 3))
    dice = (1 - (2 * inter + 1e-5) / (z + y + 1e-5)).mean()
    return 0.2 * ce + 0.8 * dice


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.a = torch.cuda.Event(enable_timing=True)
            self.b = torch.cuda.Event(enable_timing=True)

    def begin(self):
        if self.cuda:
            self.a.record()
        else:
            self.t = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.b.record()
            self.b.synchronize()
            return self.a.elapsed_time(self.b) / 1000
        return time.perf_counter() - self.t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "infer"])
    p.add_argument("--vit", default="h", choices=["b", "l", "h", "small"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    name = "small" if a.vit == "small" else "vit_" + a.vit
    peft_reference.configure("lora", 4, "qv", 0, 0.0)
    sam = build_sam(name, image_size=a.image_size)
    items = inject(sam)
    for q in sam.image_encoder.parameters():
        q.requires_grad_(False)
    for _, q in items:
        q.requires_grad_(True)
    sam.to(device)
    s = a.image_size
    out = {"mode": a.mode, "backbone": name, "image_size": s, "device": str(device), "torch": torch.__version__,
           "reference": "eager PyTorch, Meta's segment_anything + LoRA qv r4"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if a.mode == "train":
        amp = device.type == "cuda"
        params = [q for q in sam.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=4e-4, weight_decay=0.01)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        images = torch.rand(a.batch, 3, s, s, device=device)
        labels = torch.randint(0, 2, (a.batch, s, s), device=device)

        def step():
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = crack_sam_logits(sam, images)
            loss = crack_loss(logits.float(), labels)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            return loss

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        for _ in range(max(a.warmup - 1, 0)):
            step()
        timer = Timer(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        timer.begin()
        for _ in range(a.steps):
            loss = step()
        seconds = timer.stop()
        out.update(batch=a.batch, amp="fp16" if amp else "off", steps=a.steps, images_per_s=a.batch * a.steps / seconds,
                   ms_per_step=1000 * seconds / a.steps, flops_per_step=flops,
                   achieved_tflops=flops * a.steps / seconds / 1e12, last_loss=float(loss.detach()))
    else:
        sam.eval()
        images = torch.rand(a.steps + a.warmup, 3, s, s, device=device)
        with torch.no_grad():
            for i in range(a.warmup):
                crack_sam_logits(sam, images[i:i + 1]).argmax(1)
            timer = Timer(device)
            timer.begin()
            for i in range(a.warmup, a.warmup + a.steps):
                crack_sam_logits(sam, images[i:i + 1]).argmax(1)
            seconds = timer.stop()
        out.update(batch=1, amp="off", steps=a.steps, images_per_s=a.steps / seconds, ms_per_step=1000 * seconds / a.steps)
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    if a.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"reference {a.mode} {name} at {s} px, batch {out['batch']}, {out['amp']}, {device}: "
              f"{out['images_per_s']:.2f} images/s, {out['ms_per_step']:.1f} ms/step"
              + (f", {out['achieved_tflops']:.2f} TFLOP/s" if "achieved_tflops" in out else "")
              + (f", peak CUDA memory {out['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in out else ""))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The authors' recipe in plain eager PyTorch, timed the way `crack-cli bench train|infer` times ours.

Meta's segment_anything modules (Meta layout, explicit attention with decomposed relative positions),
LoRA on q and v of every block's fused qkv (rank 4, B zero-initialised; Tests/Oracles/peft_reference.py),
the encoder frozen but for LoRA, CrackSAM's decoder head (num_classes + 1 masks), loss 0.2·CE + 0.8·Dice in
float32, torch.optim.AdamW (lr 4e-4, weight decay 0.01), fp16 autocast with torch.amp.GradScaler
(REFERENCE "Training recipe"). `infer` is the authors' evaluation loop: one image per forward, float32,
no autocast, argmax.

Usage: scripts/bench_reference.py train|infer [--vit h] [--batch 8] [--image-size 448] [--steps 20]
       [--warmup 3] [--device cuda] [--profile-steps N [--trace FILE]] [--json]
--profile-steps N runs N more steps under torch.profiler and prints the tables `crack-cli bench
--profile-steps` prints, computed the same way from the same kind of events (ops by the device time of the
kernels they launched, kernels by name; ops by self host time on the CPU). --trace writes their Chrome
trace with input shapes, which scripts/trace-report sums up as it does ours.
Needs segment_anything importable (scripts/setup puts it in .venv; scripts/gpu-bench carries it).
"""
import argparse
import re
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Oracles"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402
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


def profile_events(body, steps, cuda, trace=None):
    """Runs body() `steps` times under torch.profiler; returns Kineto's raw events. With `trace`, the
    Chrome trace with each op's input shapes is written there (as `crack-cli bench --trace`)."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities, record_shapes=trace is not None) as prof:
        for _ in range(steps):
            body()
        if cuda:
            torch.cuda.synchronize()
    if trace is not None:
        prof.export_chrome_trace(trace)
    return prof.profiler.kineto_results.events()


def is_cpu_op(e):
    """Whether a host event is an op (not a CUDA runtime call). torch 2.11's events have no activity_type
    (2.13's do): there the runtime calls are told apart by their names (cudaLaunchKernel, cuLaunchKernel, ...)."""
    if hasattr(e, "activity_type"):
        return e.activity_type() == "cpu_op"
    # Kineto's own bookkeeping ("Activity Buffer Request", 3 ms/step in the H200 table) is not an op either.
    return not re.match(r"cu(da)?[A-Z]", e.name()) and e.name() != "Activity Buffer Request"


def profile_tables(events, steps, cuda, step_ms):
    """The tables of Sources/CrackSAM/Torch/Profiler.swift, by the same rules, and the op rows as JSON."""
    on_device = [e for e in events if e.device_type() == DeviceType.CUDA]
    ops = [e for e in events if e.device_type() != DeviceType.CUDA and is_cpu_op(e)]
    n = max(steps, 1)

    def table(rows, title, total, top):
        lines = [title, "   ms/step   share calls/step  name"]
        for name, calls, ns in rows[:top]:
            name = name if len(name) <= 90 else name[:87] + "..."
            lines.append(f"{ns / 1e6 / n:10.3f} {100 * ns / total if total else 0:6.1f}% {calls / n:9.1f}   {name}")
        if len(rows) > top:
            ns = sum(r[2] for r in rows[top:])
            lines.append(f"{ns / 1e6 / n:10.3f} {100 * ns / total if total else 0:6.1f}% "
                         f"{sum(r[1] for r in rows[top:]) / n:9.1f}   ({len(rows) - top} more)")
        return "\n".join(lines)

    def ordered(d):
        return sorted(((k, c, t) for k, (c, t) in d.items()), key=lambda r: (-r[2], r[0]))

    rows = {}
    for e in ops:
        c, t = rows.get(e.name(), (0, 0))
        rows[e.name()] = (c + 1, t)
    if not cuda:
        # Self host time: an op's duration less that of the ops nested directly inside it on its thread.
        by_thread = {}
        for e in ops:
            by_thread.setdefault(e.start_thread_id(), []).append(e)
        for evs in by_thread.values():
            evs.sort(key=lambda e: (e.start_ns(), -e.duration_ns()))
            own = [e.duration_ns() for e in evs]
            stack = []
            for i, e in enumerate(evs):
                while stack and stack[-1][0] <= e.start_ns():
                    stack.pop()
                if stack:
                    own[stack[-1][1]] -= e.duration_ns()
                stack.append((e.start_ns() + e.duration_ns(), i))
            for e, t in zip(evs, own):
                c, total = rows[e.name()]
                rows[e.name()] = (c, total + max(t, 0))
        ranked = ordered(rows)
        total = sum(r[2] for r in ranked)
        head = f"profile of {steps} steps: {round(len(ops) / n)} ops/step, {total / 1e6 / n:.1f} ms/step of host time in ops"
        return "\n".join([head, table(ranked, "self host time by op", total, 25)]), ranked
    op_name = {e.correlation_id(): e.name() for e in ops}
    kernels = {}
    for e in on_device:
        name = op_name.get(e.linked_correlation_id(), "(no op)")
        c, t = rows.get(name, (0, 0))
        rows[name] = (c, t + e.duration_ns())
        c, t = kernels.get(e.name(), (0, 0))
        kernels[e.name()] = (c + 1, t + e.duration_ns())
    busy = sum(e.duration_ns() for e in on_device)
    ranked = ordered(rows)
    head = (f"profile of {steps} steps: the device is busy {busy / 1e6 / n:.2f} ms/step ({100 * busy / 1e6 / n / step_ms:.0f}% "
            f"of the timed {step_ms:.2f} ms/step), {round(len(on_device) / n)} kernels and copies/step, {round(len(ops) / n)} ops/step")
    return "\n".join([head, table(ranked, "self device time by op", busy, 25),
                      table(ordered(kernels), "device time by kernel", busy, 15)]), ranked


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "infer"])
    p.add_argument("--vit", default="h", choices=["b", "l", "h", "small"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--profile-steps", type=int, default=0)
    p.add_argument("--trace", help="with --profile-steps: also write the Chrome trace, with input shapes, here")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.trace and a.profile_steps <= 0:
        p.error("--trace needs --profile-steps N")
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
        profiled = step
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

        def profiled():
            with torch.no_grad():
                crack_sam_logits(sam, images[:1]).argmax(1)
    tables = None
    if a.profile_steps > 0:
        try:  # a profiler that fails is a warning: the timed figures still count
            text, rows = profile_tables(profile_events(profiled, a.profile_steps, device.type == "cuda", a.trace), a.profile_steps,
                                        device.type == "cuda", out["ms_per_step"])
            tables = text
            out["profile_steps"] = a.profile_steps
            out["profile_ops"] = [{"name": k, "calls_per_step": c / a.profile_steps, "ms_per_step": t / 1e6 / a.profile_steps}
                                  for k, c, t in rows[:30]]
        except Exception as error:  # noqa: BLE001
            print(f"warning: the profile of {a.profile_steps} more steps failed: {error}", file=sys.stderr)
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    if a.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"reference {a.mode} {name} at {s} px, batch {out['batch']}, {out['amp']}, {device}: "
              f"{out['images_per_s']:.2f} images/s, {out['ms_per_step']:.1f} ms/step"
              + (f", {out['achieved_tflops']:.2f} TFLOP/s" if "achieved_tflops" in out else "")
              + (f", peak CUDA memory {out['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in out else ""))
        if tables:
            print(tables)


if __name__ == "__main__":
    main()

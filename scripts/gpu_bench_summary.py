#!/usr/bin/env python3
"""Short table of scripts/gpu-bench's results (results-PART.jsonl), printed last so that it is what the
device call's output tail shows: each measurement's speed, MFU and memory, and issue 8's ratios and
checks against their targets. Usage: gpu_bench_summary.py results-perf.jsonl [results-checks.jsonl ...]"""
import json
import sys


def load(paths):
    rows = {}
    for path in paths:
        try:
            with open(path) as f:
                lines = f.readlines()
        except OSError as error:
            print(f"{path}: {error}")
            continue
        # One damaged line (a measurement killed mid-write) costs that line, not the rows after it.
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
                rows[row["name"]] = row
            except (ValueError, KeyError, TypeError) as error:
                print(f"{path}:{number}: skipped: {error}")
    return rows


def main(paths):
    rows = load(paths)
    print(f"{'measurement':28} {'images/s':>9} {'ms/step':>9} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9} {'s':>5}")
    for name, row in rows.items():
        r = row.get("result")
        if "failed" in row:
            print(f"{name:28} FAILED (exit {row['failed']})")
            continue
        if not isinstance(r, dict) or "images_per_s" not in r:
            continue
        mfu = r.get("mfu")
        mem = r.get("peak_memory_gib")
        print(f"{name:28} {r['images_per_s']:9.2f} {r.get('ms_per_step', 0):9.1f} {r.get('achieved_tflops', 0) or 0:8.1f} "
              f"{'' if mfu is None else f'{100 * mfu:5.1f}%':>6} {'' if mem is None else f'{mem:9.2f}':>9} {row['seconds']:5d}")

    def ips(name):
        r = rows.get(name, {}).get("result")
        return r.get("images_per_s") if isinstance(r, dict) else None

    print("issue 8 targets:")
    ref_train = ips("ref-train-fp16")
    for name in ("ours-train-bf16", "ours-train-bf16-graph", "ours-train-fp16"):
        if ips(name) and ref_train:
            mfu = rows[name]["result"].get("mfu", 0)
            print(f"  {name} / reference training: {ips(name) / ref_train:.2f}x (target >= 1.3), MFU {100 * mfu:.1f}% (target >= 45%)")
    ckpt = rows.get("ours-train-bf16-ckpt", {}).get("result")
    if isinstance(ckpt, dict) and "peak_memory_gib" in ckpt:
        print(f"  checkpointed training peak memory: {ckpt['peak_memory_gib']:.2f} GiB (target <= 22)")
    if ips("ours-infer-bf16") and ips("ref-infer-b1-fp32"):
        print(f"  inference / reference batch-1 loop: {ips('ours-infer-bf16') / ips('ref-infer-b1-fp32'):.2f}x (target >= 3)")
    for name in ("agree-bf16", "agree-fp16", "agree-bf16-seen-style"):
        agree = rows.get(name, {}).get("result")
        if isinstance(agree, dict):
            pixels = agree.get("crack_pixels_fp32_or_amp", 0)
            print(f"  {name} vs fp32 masks: pooled IoU {agree['pooled_iou']:.4f} on {agree['images']} images (target >= 0.98), "
                  f"worst image {agree['min_image_iou']:.4f}, {pixels} crack pixels"
                  + (" (VACUOUS: both masks empty)" if pixels == 0 else ""))
    profiles = [(label, rows.get(name, {}).get("result")) for label, name in (("ours", "ours-train-bf16-prof"), ("ref", "ref-train-fp16-prof"))]
    profiles = [(label, {op["name"]: op["ms_per_step"] for op in r["profile_ops"]}) for label, r in profiles
                if isinstance(r, dict) and "profile_ops" in r]
    if profiles:
        print("ms/step by op (self device time on CUDA, self host time on the CPU; profiled training steps): "
              + ", ".join(label for label, _ in profiles))
        names = sorted({n for _, ops in profiles for n in ops}, key=lambda n: -max(ops.get(n, 0) for _, ops in profiles))
        for n in names[:12]:
            print("  " + " ".join(f"{ops[n]:8.2f}" if n in ops else f"{'-':>8}" for _, ops in profiles) + f"  {n[:70]}")
    # Which fused attention ran (flash or memory-efficient): the encoder's attention takes no bias since
    # 8790c2a, with head dimensions padded to multiples of 8, so that flash may be chosen.
    for label, name in (("ours", "ours-train-bf16-prof"), ("ref", "ref-train-fp16-prof")):
        r = rows.get(name, {}).get("result")
        if isinstance(r, dict) and "profile_ops" in r:
            kernels = [f"{op['name']} x{op['calls_per_step']:g} ({op['ms_per_step']:.2f} ms)" for op in r["profile_ops"]
                       if "attention" in op["name"]]
            print(f"  attention ops, {label}: " + ("; ".join(kernels) or "none among the profiled ops"))
    graph = rows.get("graph-agree", {}).get("result")
    if isinstance(graph, dict):
        print(f"  CUDA graph vs eager: losses {graph['graph_vs_eager_loss_rel']:.3g} (eager vs eager {graph['eager_vs_eager_loss_rel']:.3g}), "
              f"weights {graph['graph_vs_eager_weight_rel']:.3g} ({graph['eager_vs_eager_weight_rel']:.3g}): "
              f"{'agree' if graph['agree'] else 'DISAGREE'}")


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Training throughput (images/s) and peak memory at 256x256 for CycleGAN configurations.

Runs the real training step (``CycleGAN.optimize_parameters``: both generators, both
discriminators, history pools, Adam) on synthetic 3-band tensors already in memory, so the
figure is the compute of the step, not chip reading. Each configuration runs in its own
process so its peak memory (CPU: max RSS; CUDA: torch.cuda.max_memory_allocated) is its own.
Warmup steps are excluded from the timing.

    python tools/bench_train.py                    # CPU (and CUDA when present), ~4 min on 2 cores
    python tools/bench_train.py --device cuda --iters 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PAPER = dict(name="paper: resnet_9blocks ngf64, batch 1, fp32", batch=1, amp="off", channels_last=False)
# On the CPU a step of the paper's configuration is already ~1e12 multiply-adds, so larger
# batches only add memory (batch 4: ~12 GiB, no faster per image); the candidates vary precision
# and memory layout at batch 1 (--cpu-batch to change).
CPU_CANDIDATES = [
    dict(name="fp32, channels_last", batch=1, amp="off", channels_last=True),
    dict(name="bf16 autocast", batch=1, amp="bf16", channels_last=False),
]
CPU_MORE = [dict(name="bf16 autocast, channels_last", batch=1, amp="bf16", channels_last=True)]
#: The size tools/demo_train.yaml uses: what a CPU-only user can train in minutes.
SMALL = dict(name="small: resnet_6blocks ngf16 ndf32, 64x64, batch 4", batch=4, amp="off", channels_last=False,
             generator="resnet_6blocks", ngf=16, ndf=32, size=64)
CUDA_CANDIDATES = [
    dict(name="batch 8, bf16 autocast, channels_last", batch=8, amp="bf16", channels_last=True),
    dict(name="batch 8, fp16 + GradScaler, channels_last", batch=8, amp="fp16", channels_last=True),
]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 convolutions are emulated and far slower than fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return True  # unknown: measure it
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_one(spec: dict) -> dict:
    import resource

    import torch

    from geogan.bands import BandStats, DomainSpec
    from geogan.config import TrainConfig
    from geogan.models.cyclegan import CycleGAN

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    size, batch = spec["size"], spec["batch"]
    stats = tuple(BandStats(i + 1, 1, 0.5, 0.2, 0.0, 1.0, 0.0, 1.0) for i in range(3))
    domain = DomainSpec("optical", (1, 2, 3), "uint8", None, stats)
    cfg = TrainConfig(generator=spec.get("generator", "resnet_9blocks"), ngf=spec.get("ngf", 64),
                      ndf=spec.get("ndf", 64), n_layers_d=3, batch_size=batch, crop_size=size)
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["amp"]]
    torch.manual_seed(0)
    model = CycleGAN(cfg, domain, domain, device, amp_dtype=amp, channels_last=spec["channels_last"])
    batch_data = {
        "a": torch.rand(batch, 3, size, size) * 2 - 1, "b": torch.rand(batch, 3, size, size) * 2 - 1,
        "a_valid": torch.ones(batch, 1, size, size, dtype=torch.bool),
        "b_valid": torch.ones(batch, 1, size, size, dtype=torch.bool),
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(spec["warmup"]):
        model.set_input(batch_data)
        model.optimize_parameters()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(spec["iters"]):
        model.set_input(batch_data)
        model.optimize_parameters()
    sync()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
        peak_what = "GPU max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_what = "process max RSS"
    return dict(spec, images_per_s=batch * spec["iters"] / seconds, step_s=seconds / spec["iters"],
                peak_mib=peak, peak_what=peak_what, threads=torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = CPU, and CUDA as well when present")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=None, help="timed steps (default 1 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 5 on CUDA)")
    parser.add_argument("--all", action="store_true",
                        help="on the CPU also bf16 + channels_last, and bf16 even without native bf16 support")
    parser.add_argument("--small", action="store_true", help="also the demo-sized configuration (64x64, ngf 16)")
    parser.add_argument("--cpu-batch", type=int, default=1, help="batch size of the CPU candidates")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (default: torch's choice; use 1 on a machine shared with other jobs, "
                             "where OpenMP threads waiting on each other can slow a step tenfold)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            sys.exit("bench_train: CUDA requested but not available")
        devices.remove("cuda")
    print(f"geogan training benchmark: CycleGAN resnet_9blocks ngf 64 / PatchGAN ndf 64, {args.size}x{args.size}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPU(s)"
          + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""))
    for device in devices:
        cpu = device == "cpu"
        iters = args.iters or (1 if cpu else 20)
        warmup = args.warmup if args.warmup is not None else (1 if cpu else 5)
        configs = [PAPER] + (CPU_CANDIDATES + (CPU_MORE if args.all else []) if cpu else CUDA_CANDIDATES)
        if args.small:
            configs.append(dict(SMALL, iters=max(iters, 10 if cpu else 50)))
        if cpu:
            configs = [c if c is PAPER or c.get("size")
                       else dict(c, batch=args.cpu_batch, name=f"batch {args.cpu_batch}, {c['name']}")
                       for c in configs]
        if cpu and not args.all and not cpu_has_native_bf16():
            skipped = [c["name"] for c in configs if c.get("amp") == "bf16"]
            configs = [c for c in configs if c.get("amp") != "bf16"]
            for name in skipped:
                print(f"  cpu  {name:45s} skipped: no AVX512-BF16/AMX on this CPU, bf16 is emulated "
                      "(measured >270 s/step on a 2-core AVX2 VM); --all to run it anyway")
        results = []
        for config in configs:
            spec = dict(config, device=device, size=config.get("size", args.size), iters=config.get("iters", iters),
                        warmup=warmup, threads=args.threads)
            proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"  {device:4s} {config['name']:45s} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"  {device:4s} {r['name']:45s} {r['images_per_s']:8.2f} images/s  {r['step_s']:7.2f} s/step  "
                  f"peak {r['peak_mib']:8.0f} MiB ({r['peak_what']}, {r['threads']} thread(s))", flush=True)
        same_size = [r for r in results if "small" not in r["name"]]
        if len(same_size) > 1:
            best = max(same_size, key=lambda r: r["images_per_s"])
            base = results[0]["images_per_s"]
            print(f"  {device:4s} fastest: {best['name']} — {best['images_per_s'] / base:.2f}x the paper configuration")


if __name__ == "__main__":
    main()

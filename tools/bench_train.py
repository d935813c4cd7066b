#!/usr/bin/env python
"""Training throughput (images/s), peak memory and model FLOP utilisation of the CycleGAN step.

Runs the real training step (``CycleGAN.optimize_parameters``: both generators, both
discriminators, history pools, Adam) on synthetic 3-band 256x256 tensors already on the device,
with the networks wrapped exactly as ``geogan train`` wraps them (``torch.compile`` when on), so
the figure is the compute of the step, not chip reading. Warm-up steps (and any compilation)
are excluded from the timing; compile time is reported on its own.

CPU (the default without a GPU): the paper configuration beside the alternatives geogan could
choose (channels_last, bf16 where the CPU has native bf16), each in its own process so its peak
RSS is its own, and the defaults geogan picks for the CPU::

    python tools/bench_train.py                      # ~1 min on 2 cores
    python tools/bench_train.py --upsampling         # transpose (the reference repo's) vs resize vs subpixel
    python tools/bench_train.py --reference ../pytorch-CycleGAN-and-pix2pix   # side by side with it (~3 min)

CUDA: the paper configuration (resnet_9blocks, ngf 64, 256², fp32, batch 1, contiguous, no
compile: the reference repository's setting), then precision (fp32/bf16) × layout
(contiguous/channels_last) × compile (off/on) × batch (1/4/8/16) in one process, the fastest,
its ratio to the paper configuration, and MFU against ``--peak-tflops`` (bf16 dense; 989 for an
H100 SXM). FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one real
training step (forward and backward of all four networks as the step runs them)::

    python tools/bench_train.py --device cuda --json bench_train.json     # ~2.5 min on an H100

Output: one line per configuration, then ``fastest: ...``, ``ratio fastest/paper: X.XXx`` and
``MFU fastest: YY.Y % of Z TFLOP/s``; ``--json FILE`` writes every figure (see ``cuda_report``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PAPER = dict(name="paper: fp32, contiguous, no compile, batch 1", batch=1, precision="fp32",
             channels_last=False, compile=False)
PRECISIONS = ("fp32", "bf16")
BATCHES = (1, 4, 8, 16)
#: The size tools/demo_train.yaml uses: what a CPU-only user can train in minutes.
SMALL = dict(name="small: resnet_6blocks ngf16 ndf32, 64x64, batch 4", batch=4, precision="fp32",
             channels_last=False, compile=False, generator="resnet_6blocks", ngf=16, ndf=32, size=64)


# ------------------------------------------------------------------------------------------
# one configuration
# ------------------------------------------------------------------------------------------
def build_model(spec: dict, device: Any) -> Any:
    """A CycleGAN as ``geogan train`` builds it for ``spec`` (3 -> 3 bands, identity loss on)."""
    import torch

    from geogan.bands import BandStats, DomainSpec
    from geogan.config import TrainConfig
    from geogan.devices import torch_dtype
    from geogan.models.cyclegan import CycleGAN
    from geogan.models.wrapping import wrap_network

    stats = tuple(BandStats(i + 1, 1, 0.5, 0.2, 0.0, 1.0, 0.0, 1.0) for i in range(3))
    domain = DomainSpec("optical", (1, 2, 3), "uint8", None, stats)
    cfg = TrainConfig(generator=spec.get("generator", "resnet_9blocks"), ngf=spec.get("ngf", 64),
                      ndf=spec.get("ndf", 64), n_layers_d=3, batch_size=spec["batch"], crop_size=spec["size"],
                      upsample=spec.get("upsample", TrainConfig().upsample))
    precision = None if spec["precision"] == "fp32" else spec["precision"]
    torch.manual_seed(0)
    model = CycleGAN(cfg, domain, domain, device, amp_dtype=torch_dtype(precision),
                     channels_last=spec["channels_last"])
    model.wrap_networks(lambda name, net: wrap_network(net, compile=spec["compile"]), compiled=spec["compile"])
    return model


def make_batch(batch: int, size: int, device: Any) -> dict:
    import torch

    g = torch.Generator().manual_seed(1)
    data = {"a": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            "b": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
            "a_valid": torch.ones(batch, 1, size, size, dtype=torch.bool),
            "b_valid": torch.ones(batch, 1, size, size, dtype=torch.bool)}
    return {k: v.to(device) for k, v in data.items()}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: Any, batch: dict, device: Any, warmup: int, iters: int) -> tuple[float, float]:
    """(seconds of the warm-up steps, seconds per timed step)."""
    start = time.perf_counter()
    for _ in range(warmup):
        model.set_input(batch)
        model.optimize_parameters()
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        model.set_input(batch)
        model.optimize_parameters()
    _sync(device)
    return warm, (time.perf_counter() - start) / iters


def count_step_flops(device: Any, size: int) -> float:
    """FLOPs of one batch-1 training step (forward + backward of all four networks)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = dict(PAPER, size=size)
    model = build_model(spec, device)
    batch = make_batch(1, size, device)
    model.set_input(batch)
    model.optimize_parameters()  # the history pools fill on the first step: count a steady one
    counter = FlopCounterMode(display=False)
    with counter:
        model.set_input(batch)
        model.optimize_parameters()
    return float(counter.get_total_flops())


# ------------------------------------------------------------------------------------------
# CUDA: one process, the whole sweep
# ------------------------------------------------------------------------------------------
def sweep_specs(args: argparse.Namespace, compiled: bool) -> list[dict]:
    """Every precision × layout × batch, eager or compiled, largest batches first."""
    batches = [int(b) for b in (args.compile_batches if compiled else args.batches).split(",") if b.strip()]
    specs = []
    for precision in PRECISIONS:
        for channels_last in (False, True):
            for batch in sorted(batches, reverse=True):
                layout = "channels_last" if channels_last else "contiguous"
                specs.append(dict(name=f"{precision}, {layout}, {'compile' if compiled else 'eager'}, batch {batch}",
                                  batch=batch, precision=precision, channels_last=channels_last,
                                  compile=compiled, size=args.size))
    return specs


def most_promising_first(compiled: list[dict], eager: list[dict]) -> list[dict]:
    """Compiled configurations ordered by how fast the same precision and layout ran eagerly
    (grouped, so one compiled model serves its batch sizes): the time budget goes to the best."""
    def eager_speed(spec: dict) -> float:
        same = [r["images_per_s"] for r in eager if (r["precision"], r["channels_last"]) ==
                (spec["precision"], spec["channels_last"])]
        return max(same, default=0.0)

    return sorted(compiled, key=lambda s: (-eager_speed(s), -s["batch"]))


def measure_cuda(spec: dict, device: Any, args: argparse.Namespace, models: dict) -> dict:
    """One configuration; models are reused across batch sizes (a compiled one keeps its cache)."""
    import torch

    key = (spec["precision"], spec["channels_last"], spec["compile"])
    fresh = key not in models
    if fresh:
        models.clear()  # free the previous configuration's memory and compiled code
        torch._dynamo.reset()
        torch.cuda.empty_cache()
        models[key] = build_model(spec, device)
    model = models[key]
    batch = make_batch(spec["batch"], spec["size"], device)
    torch.cuda.reset_peak_memory_stats(device)
    warmup = args.warmup + (2 if spec["compile"] else 0)
    warm, step = time_steps(model, batch, device, warmup, args.iters)
    return dict(spec, images_per_s=spec["batch"] / step, step_ms=step * 1e3,
                peak_gib=torch.cuda.max_memory_allocated(device) / 2 ** 30,
                warmup_s=warm, compile_s=max(0.0, warm - warmup * step) if spec["compile"] else 0.0)


def run_cuda(args: argparse.Namespace) -> dict:
    import torch

    from geogan.devices import resolve_device

    device = resolve_device("cuda")
    torch.backends.cudnn.benchmark = True  # as geogan train does on CUDA (fixed crop size)
    # Every (network, batch, precision, layout) is its own compiled graph: allow them all, so no
    # configuration silently falls back to eager.
    torch._dynamo.config.cache_size_limit = 256
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 256
    started = time.perf_counter()
    print(f"geogan training benchmark: CycleGAN resnet_9blocks ngf 64 / PatchGAN ndf 64, {args.size}x{args.size}, "
          f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, peak {args.peak_tflops:g} TFLOP/s "
          "(bf16 dense)", flush=True)
    flops = count_step_flops(device, args.size)
    print(f"  FLOPs per image (one training step, batch 1): {flops / 1e12:.3f} TFLOP", flush=True)
    models: dict = {}
    paper = measure_cuda(dict(PAPER, size=args.size), device, args, models)
    _print_row(paper, flops, args)
    results, skipped = [paper], []
    for compiled in (False, True):
        specs = sweep_specs(args, compiled)
        for spec in most_promising_first(specs, results) if compiled else specs:
            if not _fits_budget(spec, results, started, args):
                skipped.append(spec["name"])
                continue
            r = _measure_or_none(spec, device, args, models)
            if r is not None:
                _print_row(r, flops, args)
                results.append(r)
            if args.json:  # after every configuration: a run cut short still leaves its figures
                _write_json(args.json, cuda_report(results, paper, flops, skipped, args,
                                                   time.perf_counter() - started, quiet=True))
    return cuda_report(results, paper, flops, skipped, args, time.perf_counter() - started)


def _fits_budget(spec: dict, results: list[dict], started: float, args: argparse.Namespace) -> bool:
    """Start a configuration only if it can finish inside the budget (a compilation takes long)."""
    left = args.budget_s - (time.perf_counter() - started)
    if not spec["compile"]:
        return left > 0
    compiles = [r["compile_s"] for r in results if r["compile"]]
    return left > (max(compiles) if compiles else args.compile_estimate_s) + 5


def _measure_or_none(spec: dict, device: Any, args: argparse.Namespace, models: dict) -> Optional[dict]:
    import torch

    try:
        return measure_cuda(spec, device, args, models)
    except torch.cuda.OutOfMemoryError:
        models.clear()
        torch.cuda.empty_cache()
        print(f"  {spec['name']:45s} out of GPU memory", flush=True)
    except Exception as exc:  # noqa: BLE001 - e.g. a compiler failure: report it, measure the rest
        models.clear()
        print(f"  {spec['name']:45s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
              flush=True)
    return None


def _write_json(path: str, report: dict) -> None:
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1, default=str)


def _print_row(r: dict, flops: float, args: argparse.Namespace) -> None:
    mfu = 100 * flops * r["images_per_s"] / (args.peak_tflops * 1e12)
    extra = f"  compile {r['compile_s']:5.1f} s" if r["compile"] else ""
    print(f"  {r['name']:45s} {r['images_per_s']:8.2f} images/s  {r['step_ms']:8.1f} ms/step  "
          f"peak {r['peak_gib']:6.2f} GiB  MFU {mfu:5.1f} %{extra}", flush=True)


def cuda_report(results: list[dict], paper: dict, flops: float, skipped: list[str], args: argparse.Namespace,
                seconds: float, quiet: bool = False) -> dict:
    """The summary lines and the JSON document: every configuration, the fastest, ratio and MFU."""
    best = max(results, key=lambda r: r["images_per_s"])
    ratio = best["images_per_s"] / paper["images_per_s"]
    mfu = flops * best["images_per_s"] / (args.peak_tflops * 1e12)
    if not quiet:
        if skipped:
            print(f"  skipped (time budget {args.budget_s:g} s): {', '.join(skipped)}")
        print(f"  fastest: {best['name']} — {best['images_per_s']:.2f} images/s")
        print(f"  ratio fastest/paper: {ratio:.2f}x   (paper {paper['images_per_s']:.2f} images/s)")
        print(f"  MFU fastest: {100 * mfu:.1f} % of {args.peak_tflops:g} TFLOP/s   "
              f"(paper: {100 * flops * paper['images_per_s'] / (args.peak_tflops * 1e12):.1f} %)")
        print(f"  whole run: {seconds:.0f} s")
    return {"device": _device_name(), "size": args.size, "flops_per_image": flops, "peak_tflops": args.peak_tflops,
            "paper": paper, "fastest": best, "ratio_fastest_over_paper": ratio, "mfu_fastest": mfu,
            "mfu_paper": flops * paper["images_per_s"] / (args.peak_tflops * 1e12),
            "results": results, "skipped": skipped, "seconds": seconds}


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------------
# CPU: a process per configuration (its own peak RSS)
# ------------------------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them bf16 convolutions are emulated and far slower than fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return True  # unknown: measure it
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_one_cpu(spec: dict) -> dict:
    import resource

    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    model = build_model(spec, device)
    warm, step = time_steps(model, make_batch(spec["batch"], spec["size"], device), device,
                            spec["warmup"], spec["iters"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(spec, images_per_s=spec["batch"] / step, step_s=step, warmup_s=warm, peak_mib=peak,
                threads=torch.get_num_threads())


def cpu_specs(args: argparse.Namespace) -> tuple[list[dict], Optional[dict], list[str]]:
    """The paper configuration, geogan's CPU default, the alternatives; and what was skipped."""
    from geogan.config import TrainConfig
    from geogan.trainer.runtime import resolve_runtime

    import torch

    rt = resolve_runtime(TrainConfig(), torch.device("cpu"))
    default = dict(name="geogan default on the CPU: " + ", ".join(f"{k} {v}" for k, v in rt.summary().items()),
                   batch=1, precision=rt.precision or "fp32", channels_last=rt.channels_last, compile=rt.compile)
    specs = [PAPER, dict(name="fp32, channels_last", batch=1, precision="fp32", channels_last=True, compile=False),
             dict(name="bf16 autocast", batch=1, precision="bf16", channels_last=False, compile=False)]
    if args.all:
        specs.append(dict(name="fp32, torch.compile", batch=1, precision="fp32", channels_last=False, compile=True))
    skipped = []
    if not args.all and not cpu_has_native_bf16():
        skipped = [s["name"] for s in specs if s["precision"] == "bf16"]
        specs = [s for s in specs if s["precision"] != "bf16"]
    if args.small:
        specs.append(SMALL)
    same_as_paper = all(default[k] == PAPER[k] for k in ("precision", "channels_last", "compile"))
    return specs, (None if same_as_paper else default), skipped


def run_cpu(args: argparse.Namespace) -> dict:
    import torch

    print(f"geogan training benchmark: CycleGAN resnet_9blocks ngf 64 / PatchGAN ndf 64, {args.size}x{args.size}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPU(s)")
    specs, default, skipped = cpu_specs(args)
    for name in skipped:
        print(f"  cpu  {name:45s} skipped: no AVX512-BF16/AMX on this CPU, bf16 is emulated "
              "(measured >270 s/step on a 2-core AVX2 VM); --all to run it anyway")
    if default is not None:
        specs.insert(1, default)
    results = []
    for config in specs:
        spec = dict(config, size=config.get("size", args.size), iters=args.iters or (10 if config.get("size") else 1),
                    warmup=1 if args.warmup is None else args.warmup, threads=args.threads)
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  cpu  {config['name']:45s} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"  cpu  {r['name']:45s} {r['images_per_s']:8.3f} images/s  {r['step_s']:7.2f} s/step  "
              f"peak {r['peak_mib']:8.0f} MiB (process max RSS, {r['threads']} thread(s))", flush=True)
    if default is None:
        print("  cpu  geogan's CPU default is the paper configuration (fp32, contiguous, no compile, 0 workers)")
    same_size = [r for r in results if "small" not in r["name"]]
    if len(same_size) > 1:
        best = max(same_size, key=lambda r: r["images_per_s"])
        print(f"  cpu  fastest: {best['name']} — {best['images_per_s'] / results[0]['images_per_s']:.2f}x the paper "
              "configuration")
    return {"device": "cpu", "results": results, "skipped": skipped}


def compare_upsampling(args: argparse.Namespace) -> dict:
    """The CPU step and generator inference of each ``upsample`` beside ``transpose`` — the reference
    repository's ResnetGenerator (pytorch-CycleGAN-and-pix2pix ``networks.py``: the same layers
    with ConvTranspose2d upsampling), in one process, rounds interleaved so that a load change
    on the machine hits every variant alike; the minimum over rounds is reported."""
    import torch

    from geogan.config import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    kinds = ("transpose", "resize", "subpixel")
    models = {k: build_model(dict(PAPER, size=args.size, upsample=k), device) for k in kinds}
    batch = make_batch(1, args.size, device)
    x = batch["a"]
    step = {k: [] for k in kinds}
    infer = {k: [] for k in kinds}
    rounds = args.iters or 3
    for r in range(rounds + 1):  # round 0 warms up (pools fill, allocator settles)
        for k, model in models.items():
            _, s = time_steps(model, batch, device, 0, 1)
            g = model.bare_nets()["G_a2b"].eval()
            with torch.no_grad():
                start = time.perf_counter()
                g(x)
                t = time.perf_counter() - start
            g.train()
            if r:
                step[k].append(s)
                infer[k].append(t)
    default = TrainConfig().upsample
    print(f"upsampling on the CPU ({torch.get_num_threads()} thread(s)), resnet_9blocks ngf 64, {args.size}², "
          f"batch 1, min of {rounds} interleaved rounds; transpose = the reference repo's generator")
    rows = {}
    for k in kinds:
        rows[k] = {"step_s": min(step[k]), "inference_s": min(infer[k]),
                   "step_ratio": min(step[k]) / min(step["transpose"]),
                   "inference_ratio": min(infer[k]) / min(infer["transpose"])}
        print(f"  {k:10s}{' (default)' if k == default else '':10s} step {rows[k]['step_s']:7.3f} s "
              f"({rows[k]['step_ratio']:.3f}x)  inference {rows[k]['inference_s']:6.3f} s "
              f"({rows[k]['inference_ratio']:.3f}x)")
    return {"device": "cpu", "upsampling": rows, "default": default}


def reference_cyclegan(path: str, size: int, ngf: int) -> Any:
    """The reference repository's ``CycleGANModel`` (pytorch-CycleGAN-and-pix2pix, a checkout at
    ``path``) with its training defaults: resnet_9blocks, basic PatchGAN, instance norm, lsgan,
    identity 0.5, pool 50, Adam(2e-4, 0.5) — on the CPU, at geogan's network sizes."""
    import tempfile

    if not os.path.isfile(os.path.join(path, "models", "cycle_gan_model.py")):
        sys.exit(f"bench_train: {path} is not a pytorch-CycleGAN-and-pix2pix checkout (no models/cycle_gan_model.py)")
    sys.path.insert(0, os.path.abspath(path))
    from models.cycle_gan_model import CycleGANModel  # noqa: the reference's own import layout

    opt = argparse.Namespace(
        isTrain=True, gpu_ids=[], device="cpu", checkpoints_dir=tempfile.mkdtemp(prefix="geogan-ref-"), name="bench",
        preprocess="resize_and_crop", input_nc=3, output_nc=3, ngf=ngf, ndf=64, netG="resnet_9blocks", netD="basic",
        n_layers_D=3, norm="instance", no_dropout=True, init_type="normal", init_gain=0.02, pool_size=50,
        gan_mode="lsgan", lr=0.0002, beta1=0.5, lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, direction="AtoB",
        continue_train=False, verbose=False, load_iter=0, epoch="latest", lr_policy="linear", epoch_count=1,
        n_epochs=100, n_epochs_decay=100, niter=100, niter_decay=100, crop_size=size, load_size=size)
    return CycleGANModel(opt)


def compare_reference(args: argparse.Namespace) -> dict:
    """geogan's default CycleGAN step and generator inference beside the reference repository's
    (``CycleGANModel.optimize_parameters`` and its ``netG_A``), same network sizes, batch 1, on the
    CPU, in one process, rounds interleaved (a load change hits both alike); min over rounds."""
    import torch

    from geogan.config import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    ref = reference_cyclegan(args.reference, args.size, args.ngf)
    ours = build_model(dict(PAPER, size=args.size, ngf=args.ngf), device)
    batch = make_batch(1, args.size, device)
    ref_batch = {"A": batch["a"], "B": batch["b"], "A_paths": [], "B_paths": []}
    step: dict[str, list] = {"reference": [], "geogan": []}
    infer: dict[str, list] = {"reference": [], "geogan": []}
    generators = {"reference": ref.netG_A, "geogan": ours.bare_nets()["G_a2b"]}
    rounds = args.iters or 3
    for r in range(rounds + 1):  # round 0 warms up (pools fill, allocator settles)
        for name in ("reference", "geogan"):
            start = time.perf_counter()
            if name == "reference":
                ref.set_input(ref_batch)
                ref.optimize_parameters()
            else:
                ours.set_input(batch)
                ours.optimize_parameters()
            s = time.perf_counter() - start
            g = generators[name].eval()
            with torch.no_grad():
                start = time.perf_counter()
                g(batch["a"])
                t = time.perf_counter() - start
            g.train()
            if r:
                step[name].append(s)
                infer[name].append(t)
    cfg = TrainConfig()
    rows = {k: {"step_s": min(step[k]), "inference_s": min(infer[k])} for k in step}
    ratio = {"step": rows["geogan"]["step_s"] / rows["reference"]["step_s"],
             "inference": rows["geogan"]["inference_s"] / rows["reference"]["inference_s"]}
    print(f"CycleGAN on the CPU ({torch.get_num_threads()} thread(s)), resnet_9blocks ngf {args.ngf}, {args.size}², "
          f"batch 1, min of {rounds} interleaved rounds; geogan's defaults (upsample {cfg.upsample}, norm {cfg.norm})")
    for k, row in rows.items():
        print(f"  {k:10s} step {row['step_s']:7.3f} s   generator inference {row['inference_s']:6.3f} s")
    print(f"geogan / reference: step {ratio['step']:.3f}x, inference {ratio['inference']:.3f}x", flush=True)
    return {"device": "cpu", "reference": rows, "ratio": ratio, "size": args.size, "ngf": args.ngf,
            "upsample": cfg.upsample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = CUDA when present, else the CPU")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=None, help="timed steps (default 1 on CPU, 6 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 3 on CUDA)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="CUDA: eager batch sizes")
    parser.add_argument("--compile-batches", default="16,8",
                        help="CUDA: batch sizes measured with torch.compile (each size is a new compilation)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's bf16 dense peak for MFU (989 = H100 SXM; 756 = H100 PCIe)")
    parser.add_argument("--budget-s", type=float, default=140.0,
                        help="CUDA: start no configuration that would end after this many seconds (listed as skipped)")
    parser.add_argument("--compile-estimate-s", type=float, default=60.0,
                        help="CUDA: compile time assumed for the budget until one compilation was measured")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--all", action="store_true",
                        help="CPU: also torch.compile, and bf16 even without native bf16 support")
    parser.add_argument("--small", action="store_true", help="CPU: also the demo-sized configuration")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--upsampling", action="store_true",
                        help="CPU: step and generator inference of transpose (the reference repo's), resize, subpixel")
    parser.add_argument("--reference", metavar="CHECKOUT",
                        help="CPU: geogan's default step and generator inference beside the reference repo's "
                             "CycleGANModel (a pytorch-CycleGAN-and-pix2pix checkout), same sizes, one process")
    parser.add_argument("--ngf", type=int, default=64, help="--reference: generator width (default 64)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upsampling or args.reference:
        report = compare_reference(args) if args.reference else compare_upsampling(args)
        if args.json:
            _write_json(args.json, report)
        return
    if args.one:
        print(json.dumps(run_one_cpu(json.loads(args.one))))
        return

    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_train: --device cuda requested but torch sees no CUDA GPU")
    if cuda:
        args.iters, args.warmup = args.iters or 6, 3 if args.warmup is None else args.warmup
        report = run_cuda(args)
    else:
        report = run_cpu(args)
    if args.json:
        _write_json(args.json, report)


if __name__ == "__main__":
    main()

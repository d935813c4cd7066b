#!/usr/bin/env python
"""Benchmark ``geogan.translate_raster``: end-to-end vs model-only speed, the alternatives beside the
chosen defaults, peak memory as the scene grows, and CPU-vs-CUDA agreement.

Throughput (default, and ``--device cuda``): a generated 2-band float32 SAR-like scene (linear
power, deflate) is translated by a ResNet generator built in-process with random weights (no
training needed; tiny on the CPU, the paper's resnet_9blocks ngf 64 on CUDA) into a 3-band uint8
GeoTIFF, end to end (read, normalise, tile, translate, blend, write), and the same network is
timed alone on a ready batch on the device (model-only: no I/O, no host copies), at the same
precision, layout and batch size. The ratio end-to-end / model-only says how much of the
network's speed survives everything else (target on a GPU: >= 0.9). Each configuration is
printed beside the chosen defaults (precision, channels_last, batch size, panel width).

Memory (``--rss``, on by default on the CPU): peak RSS of a fresh process translating sparse
scenes of 4096², 20000² and 50000-pixel width (a full-width stripe of data, the rest empty
blocks: the predictor still reads, blends and writes every row). Target: the 50k-wide peak
within 1.5x of the 4k² one.

I/O (``--io``): the pipeline with a 1x1 convolution for a network (read, normalise, tile, network,
blend, denormalise, write: everything but a real network) against a plain parallel GDAL read of
the same input plus a write of the same output (the same bands, dtype, creation options and
pixels, so both compress the same bytes): windows of rows read by one thread per core, each with
its own dataset handle, written in order with GDAL's multithreaded compression. Both run in one
process, alternately, ``--repeat`` times (default 5), each writing a new file (the last run's is
removed first, untimed); the best of each is kept (other jobs on a shared machine slow both
alike). The last line ends ``ratio R`` (pipeline / plain; target >= 0.8).

Agreement (``--agreement``): one small scene translated by the same tiny model on the CPU in
fp32 and on CUDA in fp32 and in bf16/fp16 (float32 output): max and mean absolute differences.

    python tools/bench_predict.py                                   # CPU: throughput + alternatives + RSS
    python tools/bench_predict.py --device cuda --sizes 8192x8192 --json gpu.json
    python tools/bench_predict.py --agreement                       # needs CUDA
    python tools/bench_predict.py --io                              # CPU: the pipeline vs plain GDAL I/O
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RSS_SIZES = "4096x4096,20000x20000,50000x50000"


# --------------------------------------------------------------------------- scenes and models

def make_scene(path: Path, width: int, height: int, seed: int = 0, strip: int = 512,
               stripe: tuple[int, int] | None = None, compress: str = "deflate") -> None:
    """A SAR-like scene (smooth backscatter texture in dB times gamma speckle, in linear power).

    ``stripe=(row0, rows)``: only those rows hold data; every other block is left unwritten
    (a sparse GeoTIFF: read back as nodata without touching the disk). Chunks are computed by a
    few threads (each with its own seeded generator) and written in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    waves = [(rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)) for _ in range(5)]
    profile = dict(driver="GTiff", width=width, height=height, count=2, dtype="float32", crs="EPSG:32633",
                   transform=from_origin(500000.0, 5000000.0, 10.0, 10.0), nodata=0.0, tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="YES", SPARSE_OK=stripe is not None,
                   NUM_THREADS="ALL_CPUS")
    if compress != "none":
        profile.update(compress=compress, predictor=3, zlevel=1)
    rows = range(0, height, strip) if stripe is None else range(stripe[0], stripe[0] + stripe[1], strip)
    cols = 4096
    chunks = [(y0, x0) for y0 in rows for x0 in range(0, width, cols)]

    def chunk(yx: tuple[int, int]):
        y0, x0 = yx
        h, w = min(strip, height - y0), min(cols, width - x0)
        local = np.random.default_rng([seed, y0, x0])
        yy = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        xx = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
        tex = sum(np.sin(fx * xx + fy * yy + ph) for fx, fy, ph in waves)
        out = np.empty((2, h, w), np.float32)
        for b, (mean_db, amp) in enumerate(((-9.0, 2.5), (-15.0, 2.0))):
            speckle = local.gamma(4.0, 0.25, size=(h, w)).astype(np.float32)
            out[b] = 10 ** ((mean_db + amp * tex) / 10) * speckle
        return Window(x0, y0, w, h), out

    with rasterio.open(path, "w", **profile) as ds, ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        for window, out in pool.map(chunk, chunks):
            ds.write(out, window=window)


def conv_model():
    """The same domains with a 1x1 convolution for a network: what the pipeline around it costs."""
    import torch

    model = bench_model(4, 1)
    model.generators = {"a2b": torch.nn.Conv2d(2, 3, 1).eval()}
    return model


def bench_model(ngf: int, blocks: int, target: str = "uint8"):
    """A ResNet generator with random weights, SAR (2 bands, linear) → 3 bands of ``target`` dtype."""
    import torch

    from geogan.bands import BandStats, DomainSpec
    from geogan.modelfile import TranslationModel
    from geogan.models.generators import ResnetGenerator

    torch.manual_seed(0)
    sar_stats = tuple(BandStats(band=b, count=10 ** 6, mean=0.1, std=0.1, min=1e-4, max=2.0, p2=0.01, p98=0.5,
                                mean_db=m, std_db=3.0, min_db=m - 15, max_db=m + 10, p2_db=m - 7, p98_db=m + 6)
                      for b, m in ((1, -9.0), (2, -15.0)))
    out_stats = tuple(BandStats(band=b, count=10 ** 6, mean=90.0, std=40.0, min=1, max=255, p2=20, p98=220)
                      for b in (1, 2, 3))
    a = DomainSpec("sar", (1, 2), "float32", 0.0, sar_stats, resolution=(10.0, 10.0))
    b = DomainSpec("optical", (1, 2, 3), target, 0.0 if target == "uint8" else None, out_stats,
                   resolution=(10.0, 10.0))
    net = ResnetGenerator(2, 3, ngf=ngf, n_blocks=blocks)
    arch = {"model": "pix2pix", "generator": "resnet", "ngf": ngf, "size_multiple": 4}
    return TranslationModel({"a": a, "b": b}, {"a2b": net}, arch)


def parse_size(text: str) -> tuple[int, int]:
    """"4096x1024" → (4096, 1024); "2048" → (2048, 2048)."""
    parts = [int(p) for p in str(text).lower().split("x")]
    return (parts[0], parts[-1])


def rss_mib() -> float:
    """Peak RSS of this process image (VmHWM: ``ru_maxrss`` would also count the parent's pages at fork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- measurements (worker side)

def model_only(model, variant: dict, dev, batches: int) -> float:
    """Seconds per tile of the network alone on a ready batch on the device, run as the predictor runs it
    (its :class:`~geogan.predict.scene.Translator`: same precision and layout; on the CPU one tile at a
    time where the network's convolutions are faster so)."""
    import torch

    from geogan.devices import choose_precision
    from geogan.predict.scene import Translator

    net = model.generators["a2b"]
    if variant["channels_last"]:
        net.to(memory_format=torch.channels_last)
    else:
        net.to(memory_format=torch.contiguous_format)
    x = torch.randn(variant["batch_size"], 2, variant["tile_size"], variant["tile_size"], device=dev)
    if variant["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    translate = Translator(net, dev, choose_precision(variant["precision"], dev), variant["channels_last"],
                           model.target("a2b").count, variant["tile_size"], "model", "a2b")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # as the predictor does for its fixed tile size
    with torch.inference_mode():
        translate(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            translate(x)
        sync()
    return (time.perf_counter() - t0) / (batches * variant["batch_size"])


def run_variant(model, src: Path, dst: Path, variant: dict, dev) -> dict:
    """One end-to-end prediction, and the model alone before and after it (so a drifting machine hits both)."""
    import torch

    from geogan import translate_raster

    kwargs = {k: variant[k] for k in ("tile_size", "overlap", "batch_size", "precision", "channels_last",
                                      "panel_width")}
    per_tile = model_only(model, variant, dev, variant["model_batches"])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    result = translate_raster(model, src, dst, device=dev, overwrite=True, **kwargs)
    e2e_s = time.perf_counter() - t0
    per_tile = (per_tile + model_only(model, variant, dev, variant["model_batches"])) / 2
    scene_px = result.width * result.height
    px_per_tile = scene_px / max(1, result.tiles_translated)
    return {
        "name": variant["name"], "device": str(dev), "precision": result.precision,
        "channels_last": variant["channels_last"], "batch_size": variant["batch_size"],
        "panel_width": variant["panel_width"], "panels": result.panels,
        "width": result.width, "height": result.height, "tiles": result.tiles_translated,
        "e2e_s": round(e2e_s, 3), "e2e_mpx_s": scene_px / e2e_s / 1e6,
        "model_mpx_s": px_per_tile / per_tile / 1e6,
        "ratio": (scene_px / e2e_s) / (px_per_tile / per_tile),
        "peak_gpu_mib": (round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1) if dev.type == "cuda" else None),
        "rss_peak_so_far_mib": round(rss_mib(), 1),  # the worker runs every variant: see --rss for memory
    }


def worker(args: argparse.Namespace) -> list[dict]:
    import torch

    from geogan.devices import resolve_device

    dev = resolve_device(args.device)
    variants = json.loads(args.variants)
    model = bench_model(args.ngf, args.blocks).to(dev)
    out = []
    with tempfile.TemporaryDirectory(prefix="geogan-bench-out-", dir=args.tmp) as tmp:
        for variant in variants:
            net = conv_model().to(dev) if variant.get("net") == "conv1x1" else model
            out.append(run_variant(net, Path(args.scene), Path(tmp) / "pred.tif", variant, dev))
            out[-1].update(torch_threads=torch.get_num_threads(), input=args.scene_compress)
    return out


def rss_worker(args: argparse.Namespace) -> dict:
    import torch

    from geogan import translate_raster

    model = bench_model(args.ngf, args.blocks)
    before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="geogan-bench-out-", dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        result = translate_raster(model, args.scene, Path(tmp) / "pred.tif", device="cpu", tile_size=256,
                                  overlap=64, batch_size=8)
        seconds = time.perf_counter() - t0
    return {"width": result.width, "height": result.height, "tiles": result.tiles, "panels": result.panels,
            "translated": result.tiles_translated, "seconds": round(seconds, 1), "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(rss_mib(), 1), "torch_threads": torch.get_num_threads()}


def agreement_worker(args: argparse.Namespace) -> list[dict]:
    """The same tiny model on the same scene: CPU fp32 vs CUDA fp32 and CUDA autocast (float32 output)."""
    import numpy as np
    import rasterio
    import torch

    from geogan import translate_raster

    if not torch.cuda.is_available():
        raise SystemExit("--agreement needs CUDA: torch sees no GPU here")
    model = bench_model(8, 2, target="float32")
    outs = {}
    with tempfile.TemporaryDirectory(prefix="geogan-bench-out-", dir=args.tmp) as tmp:
        for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "auto"), ("cuda", "fp16")):
            dst = Path(tmp) / f"{device}-{precision}.tif"
            r = translate_raster(model, args.scene, dst, device=device, precision=precision, tile_size=256,
                                 overlap=64, batch_size=8)
            with rasterio.open(dst) as ds:
                outs[(device, r.precision)] = ds.read()
    ref = outs[("cpu", "fp32")]
    scale = float(np.nanmax(ref) - np.nanmin(ref))
    rows = []
    for (device, precision), arr in outs.items():
        if device == "cpu":
            continue
        d = np.abs(arr.astype(np.float64) - ref)
        rows.append({"compare": f"cuda {precision} vs cpu fp32", "max_abs": float(np.nanmax(d)),
                     "mean_abs": float(np.nanmean(d)), "max_rel_to_range": float(np.nanmax(d)) / scale,
                     "output_range": scale})
    return rows


def plain_io(src: Path, dst: Path, pixels, profile: dict, rows: int = 256) -> float:
    """Seconds for a plain parallel GDAL read of ``src`` (one thread and dataset handle per core, windows
    of ``rows`` full-width rows) plus an in-order write of ``pixels`` to ``dst`` with ``profile``."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    from rasterio.windows import Window

    local, handles = threading.local(), []

    def read(y0: int):
        ds = getattr(local, "ds", None)
        if ds is None:
            ds = local.ds = rasterio.open(src)
            handles.append(ds)
        return y0, ds.read(window=Window(0, y0, ds.width, min(rows, ds.height - y0)))

    t0 = time.perf_counter()
    with rasterio.open(src) as ds:
        height = ds.height
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool, rasterio.open(dst, "w", **profile) as out:
        for y0, _ in pool.map(read, range(0, height, rows)):
            k = min(rows, height - y0)
            out.write(pixels[:, y0:y0 + k], window=Window(0, y0, out.width, k))
    seconds = time.perf_counter() - t0
    for ds in handles:
        ds.close()
    return seconds


def io_worker(args: argparse.Namespace) -> dict:
    """The pipeline with a 1x1 convolution vs :func:`plain_io`, alternately, best of ``--repeat`` each."""
    import rasterio

    from geogan import translate_raster
    from geogan.raster import gtiff_profile

    src = Path(args.scene)
    model = conv_model()
    pipe_s, plain_s = [], []
    with tempfile.TemporaryDirectory(prefix="geogan-bench-out-", dir=args.tmp) as tmp:
        pred, plain = Path(tmp) / "pred.tif", Path(tmp) / "plain.tif"
        result = translate_raster(model, src, pred, device="cpu", tile_size=args.tile_size, overlap=args.overlap,
                                  batch_size=args.batch_size, overwrite=True)  # warm-up, and the pixels to write
        with rasterio.open(pred) as ds:
            pixels = ds.read()
            profile = gtiff_profile(width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0],
                                    crs=ds.crs, transform=ds.transform, nodata=ds.nodata, compress="deflate")
            profile["NUM_THREADS"] = "ALL_CPUS"
        for _ in range(args.repeat):
            # each side writes a new file: replacing the last run's (freeing its blocks, which on a
            # filesystem mounted with discard costs a varying amount) is no part of either
            for old in (plain, pred):
                old.unlink(missing_ok=True)
            plain_s.append(plain_io(src, plain, pixels, profile))
            t0 = time.perf_counter()
            translate_raster(model, src, pred, device="cpu", tile_size=args.tile_size, overlap=args.overlap,
                             batch_size=args.batch_size, overwrite=True)
            pipe_s.append(time.perf_counter() - t0)
        out_mb = pred.stat().st_size / 1e6
    in_mb = src.stat().st_size / 1e6
    import torch

    return {"width": result.width, "height": result.height, "pipeline_s": pipe_s, "plain_s": plain_s,
            "in_mb": in_mb, "out_mb": out_mb, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def io_report(args: argparse.Namespace, tmp: str) -> dict:
    w, h = parse_size(args.sizes)
    src = Path(tmp) / f"io-{w}x{h}.tif"
    t0 = time.perf_counter()
    make_scene(src, w, h)
    print(f"(generated {w}x{h} 2-band float32 deflate in {time.perf_counter() - t0:.1f} s)", flush=True)
    r = run_worker("io", args, ["--scene", str(src), "--repeat", str(args.repeat), "--tile-size",
                                str(args.tile_size), "--overlap", str(args.overlap), "--batch-size",
                                str(args.batch_size)], args.gdal_cachemax)
    mpx = r["width"] * r["height"] / 1e6
    raw_in, raw_out = mpx * 2 * 4, mpx * 3 * 1
    print(f"{r['cores']} cores, torch threads {r['torch_threads']}; {r['width']}x{r['height']} 2-band float32 "
          f"({r['in_mb']:.0f} MB deflate) -> 3-band uint8 ({r['out_mb']:.0f} MB deflate); best of {args.repeat}")
    for name, key in (("plain GDAL read+write", "plain_s"), ("pipeline, 1x1 conv", "pipeline_s")):
        s = min(r[key])
        runs = " ".join(f"{x:.2f}" for x in r[key])
        print(f"{name:<22} {s:>7.2f} s {mpx / s:>8.2f} Mpx/s {(raw_in + raw_out) / s:>8.1f} MB/s (raw in+out)"
              f"   runs: {runs}")
    ratio = min(r["plain_s"]) / min(r["pipeline_s"])
    r["ratio"] = ratio
    print(f"pipeline / plain parallel GDAL read+write: ratio {ratio:.2f}", flush=True)
    src.unlink()
    return r


# --------------------------------------------------------------------------- the driver

def run_worker(mode: str, args: argparse.Namespace, extra: list[str], cachemax: str = "") -> object:
    cmd = [sys.executable, __file__, "--worker", mode, "--ngf", str(args.ngf), "--blocks", str(args.blocks)] + extra
    if args.tmp:
        cmd += ["--tmp", args.tmp]
    env = os.environ.copy()
    if cachemax:
        env["GDAL_CACHEMAX"] = str(cachemax)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"benchmark worker failed ({mode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def variants_for(args: argparse.Namespace, cuda: bool) -> list[dict]:
    from geogan.predict import DEFAULT_PANEL_WIDTH

    base = dict(name="defaults", tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
                precision="auto", channels_last=False, panel_width=DEFAULT_PANEL_WIDTH,
                model_batches=args.model_batches)
    alts = [dict(base, name="channels_last", channels_last=True),
            dict(base, name=f"batch {args.batch_size * 2}", batch_size=args.batch_size * 2),
            dict(base, name="panel 2048", panel_width=2048)]
    if cuda:  # the pipeline-only run bounds what end to end can reach; batch and panels are CPU-side choices
        alts = [dict(base, name="fp32", precision="fp32"), alts[0],
                dict(base, name="1x1 conv (I/O)", net="conv1x1", model_batches=2)]
    elif args.cpu_bf16:
        alts.insert(0, dict(base, name="bf16 (CPU)", precision="bf16"))
    return [base] + (alts if not args.no_alternatives else [])


def print_throughput(rows: list[dict]) -> None:
    print(f"{'configuration':<15} {'input':<8} {'device':<7} {'prec':<5} {'scene':>11} {'tiles':>6} {'panels':>6} "
          f"{'e2e s':>7} {'e2e Mpx/s':>10} {'model Mpx/s':>12} {'ratio':>6} {'GPU MiB':>8}")
    for r in rows:
        gpu = f"{r['peak_gpu_mib']:.0f}" if r.get("peak_gpu_mib") is not None else "-"
        ratio = f"{r['ratio']:>6.2f}" if r["name"] != "1x1 conv (I/O)" else f"{'-':>6}"
        print(f"{r['name']:<15} {r['input']:<8} {r['device']:<7} {r['precision']:<5} {r['width']}x{r['height']:<6} "
              f"{r['tiles']:>6} {r['panels']:>6} {r['e2e_s']:>7.2f} {r['e2e_mpx_s']:>10.2f} {r['model_mpx_s']:>12.2f} "
              f"{ratio} {gpu:>8}", flush=True)


def throughput(args: argparse.Namespace, device: str, tmp: str) -> list[dict]:
    rows = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        for compress in [c.strip() for c in args.scene_compress.split(",") if c.strip()]:
            w, h = parse_size(size)
            src = Path(tmp) / f"scene-{w}x{h}-{compress}.tif"
            t0 = time.perf_counter()
            make_scene(src, w, h, compress=compress)
            print(f"(generated {w}x{h} {compress} in {time.perf_counter() - t0:.1f} s)", flush=True)
            variants = variants_for(args, device.startswith("cuda"))
            if compress != args.scene_compress.split(",")[0].strip():
                variants = variants[:1] + [v for v in variants if v.get("net") == "conv1x1"]
            rows += run_worker("throughput", args, ["--scene", str(src), "--device", device, "--scene-compress",
                                                    compress, "--variants", json.dumps(variants)],
                               args.gdal_cachemax)
            src.unlink()
    return rows


def memory(args: argparse.Namespace, tmp: str) -> list[dict]:
    rows = []
    for size in [s.strip() for s in args.rss_sizes.split(",") if s.strip()]:
        w, h = parse_size(size)
        src = Path(tmp) / f"sparse-{w}x{h}.tif"
        make_scene(src, w, h, stripe=(h // 2 - 256, 512))
        r = run_worker("rss", args, ["--scene", str(src)], args.rss_gdal_cachemax)
        src.unlink()
        rows.append(r)
        print(f"{r['width']}x{r['height']:<7} {r['tiles']:>8} {r['translated']:>10} {r['panels']:>6} "
              f"{r['seconds']:>7.1f} {r['rss_before_mib']:>10.0f} {r['rss_peak_mib']:>8.0f} "
              f"{r['rss_peak_mib'] / rows[0]['rss_peak_mib']:>6.2f}", flush=True)
    return rows


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="throughput scene sizes, WIDTHxHEIGHT or a side, comma-separated "
                                                  "(default: 4096x1024 on the CPU, 8192x4096 with --io, "
                                                  "8192x8192 on CUDA)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write every figure to FILE as JSON")
    ap.add_argument("--rss", action=argparse.BooleanOptionalAction, default=None,
                    help="measure peak RSS on growing sparse scenes (default: on for the CPU)")
    ap.add_argument("--rss-sizes", default=RSS_SIZES)
    ap.add_argument("--io", action="store_true", help="the pipeline with a 1x1 convolution vs a plain parallel "
                                                      "GDAL read+write of the same data (CPU); prints 'ratio R' last")
    ap.add_argument("--repeat", type=int, default=5, help="--io: runs of each side (the best is kept)")
    ap.add_argument("--agreement", action="store_true", help="CPU fp32 vs CUDA fp32/bf16/fp16 outputs (needs CUDA)")
    ap.add_argument("--no-alternatives", action="store_true", help="only the chosen defaults")
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on the CPU (slow: emulated)")
    ap.add_argument("--gdal-cachemax", default="256", help="GDAL_CACHEMAX for the throughput workers, MB, as the "
                                                           "CLI bounds it ('' keeps the environment's)")
    ap.add_argument("--rss-gdal-cachemax", default="64", help="GDAL_CACHEMAX for the memory workers, MB")
    ap.add_argument("--scene-compress", default="deflate", help="compression of the generated throughput scenes: "
                                                                "deflate, none, or both comma-separated")
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default 8 on the CPU, 32 on CUDA")
    ap.add_argument("--ngf", type=int, default=None, help="generator width (default 4 on the CPU, 64 on CUDA)")
    ap.add_argument("--blocks", type=int, default=None, help="residual blocks (default 2 on the CPU, 9 on CUDA)")
    ap.add_argument("--model-batches", type=int, default=None, help="batches timed for model-only (default 8 "
                                                                    "on the CPU, 20 on CUDA)")
    ap.add_argument("--tmp", default=None, help="directory for the generated scenes (default: system temp)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scene", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variants", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    args.ngf = args.ngf or (64 if cuda or args.agreement else 4)
    args.blocks = args.blocks or (9 if cuda else 2)
    args.batch_size = args.batch_size or (32 if cuda else 8)
    args.model_batches = args.model_batches or (20 if cuda else 8)
    args.sizes = args.sizes or ("8192x8192" if cuda else "8192x4096" if args.io else "4096x1024")

    if args.worker:
        fn = {"io": io_worker, "throughput": worker, "rss": rss_worker, "agreement": agreement_worker}[args.worker]
        print(json.dumps(fn(args)), flush=True)
        return

    if (cuda or args.agreement) and not _cuda_available():
        raise SystemExit("bench_predict: CUDA requested (--device cuda or --agreement) but torch sees no GPU here")
    report: dict = {"device": args.device}
    with tempfile.TemporaryDirectory(prefix="geogan-bench-", dir=args.tmp) as tmp:
        if args.io:
            report["io"] = io_report(args, tmp)
        elif args.agreement:
            src = Path(tmp) / "agree.tif"
            make_scene(src, 1024, 768)
            rows = run_worker("agreement", args, ["--scene", str(src)], args.gdal_cachemax)
            for r in rows:
                print(f"{r['compare']:<26} max |diff| {r['max_abs']:.3g}  mean |diff| {r['mean_abs']:.3g}  "
                      f"(max {100 * r['max_rel_to_range']:.3f}% of the output range {r['output_range']:.4g})")
            report["agreement"] = rows
        else:
            print(f"geogan predict benchmark on {args.device}: ResNet generator ngf={args.ngf} blocks={args.blocks}, "
                  f"2-band float32 SAR -> 3-band uint8, tile {args.tile_size}, overlap {args.overlap}")
            report["throughput"] = throughput(args, args.device, tmp)
            print_throughput(report["throughput"])
            if args.rss if args.rss is not None else not cuda:
                print(f"\npeak RSS, fresh process per scene (sparse: a 512-row stripe of data), GDAL_CACHEMAX "
                      f"{args.rss_gdal_cachemax} MB")
                print(f"{'scene':<13} {'tiles':>8} {'translated':>10} {'panels':>6} {'s':>7} {'RSS before':>10} "
                      f"{'RSS peak':>8} {'x 4k':>6}")
                report["memory"] = memory(args, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

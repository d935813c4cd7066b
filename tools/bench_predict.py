#!/usr/bin/env python
"""Benchmark ``geogan.translate_raster``: end-to-end vs model-only throughput, and peak memory.

For each scene size (a generated 2-band float32 SAR-like scene in linear power, written in
strips so generating it costs no memory) and each device (CPU, and CUDA when torch sees it),
a fresh worker process:

1. builds a tiny-but-real ResNet generator (random init, 2 → 3 bands, uint8 optical target),
2. runs ``translate_raster`` on the scene (read, normalise, tile, translate, blend, write a
   deflate GeoTIFF) and times it → end-to-end megapixels/s of the scene,
3. runs the network alone on ready batches of the same tile size and batch size (no I/O),
   ``--model-only-tiles`` tiles, half just before and half just after the prediction so a busy
   machine's drift hits both alike → model-only megapixels/s of scene (tiles/s × scene pixels
   per tile of the real run),
4. reports its peak RSS (``ru_maxrss``) before and after the prediction.

The ratio end-to-end / model-only says how much of the network's speed survives I/O,
normalisation and blending (target ≥ 0.9). On a shared machine the wall-clock ratio is noisy;
"cpu ratio" compares CPU seconds per tile (all threads) of the network alone with the whole
prediction, i.e. the share of the work that is the network. Memory is bounded by one strip of tiles and the
batch, not by the scene: the peak RSS must stay flat as the scene grows in rows (a strip, and
so the RSS, grows with the scene's width). The workers run with a bounded ``GDAL_CACHEMAX``
(``--gdal-cachemax``) because GDAL's own block cache otherwise keeps what it read, up to 5 % of
RAM, whatever geogan does.

    python tools/bench_predict.py                  # 4096x1024 and 4096x4096, CPU (+ CUDA if present)
    python tools/bench_predict.py --sizes 8192 --device cuda --ngf 64 --blocks 9
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


def make_scene(path: Path, width: int, height: int, seed: int = 0, strip: int = 512) -> None:
    """A SAR-like scene: smooth backscatter texture (dB) times gamma speckle, in linear power."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    waves = [(rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)) for _ in range(5)]
    profile = dict(driver="GTiff", width=width, height=height, count=2, dtype="float32", crs="EPSG:32633",
                   transform=from_origin(500000.0, 5000000.0, 10.0, 10.0), nodata=0.0, tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
    xx = np.arange(width, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **profile) as ds:
        for y0 in range(0, height, strip):
            h = min(strip, height - y0)
            yy = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
            tex = sum(np.sin(fx * xx + fy * yy + ph) for fx, fy, ph in waves)
            out = np.empty((2, h, width), np.float32)
            for b, (mean_db, amp) in enumerate(((-9.0, 2.5), (-15.0, 2.0))):
                speckle = rng.gamma(4.0, 0.25, size=(h, width)).astype(np.float32)
                out[b] = 10 ** ((mean_db + amp * tex) / 10) * speckle
            ds.write(out, window=Window(0, y0, width, h))


def model_for_bench(ngf: int, blocks: int):
    import torch

    from geogan.bands import BandStats, DomainSpec
    from geogan.modelfile import TranslationModel
    from geogan.models.generators import ResnetGenerator

    torch.manual_seed(0)
    sar_stats = tuple(BandStats(band=b, count=10 ** 6, mean=0.1, std=0.1, min=1e-4, max=2.0, p2=0.01, p98=0.5,
                                mean_db=m, std_db=3.0, min_db=m - 15, max_db=m + 10, p2_db=m - 7, p98_db=m + 6)
                      for b, m in ((1, -9.0), (2, -15.0)))
    rgb_stats = tuple(BandStats(band=b, count=10 ** 6, mean=90.0, std=40.0, min=1, max=255, p2=20, p98=220)
                      for b in (1, 2, 3))
    a = DomainSpec("sar", (1, 2), "float32", 0.0, sar_stats, resolution=(10.0, 10.0))
    b = DomainSpec("optical", (1, 2, 3), "uint8", 0.0, rgb_stats, resolution=(10.0, 10.0))
    net = ResnetGenerator(2, 3, ngf=ngf, n_blocks=blocks)
    arch = {"model": "pix2pix", "generator": "resnet", "ngf": ngf, "size_multiple": 4}
    return TranslationModel({"a": a, "b": b}, {"a2b": net}, arch)


def parse_size(text: str) -> tuple[int, int]:
    """"4096x1024" → (4096, 1024); "2048" → (2048, 2048)."""
    parts = [int(p) for p in str(text).lower().split("x")]
    return (parts[0], parts[-1])


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args: argparse.Namespace) -> dict:
    import torch

    from geogan.devices import resolve_device
    from geogan.predict import tile_origins, translate_raster

    dev = resolve_device(args.device)
    x = torch.randn(args.batch_size, 2, args.tile_size, args.tile_size).to(dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def model_only(net, batches: int) -> float:
        """Seconds for ``batches`` network calls on a ready batch (no I/O), output back on the host."""
        seconds = cpu = 0.0
        with torch.inference_mode():
            for _ in range(batches):
                t0, c0 = time.perf_counter(), time.process_time()
                net(x).float().cpu()  # the predictor also brings every batch back to the host
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - t0
                cpu += time.process_time() - c0
        return seconds, cpu

    with tempfile.TemporaryDirectory(prefix="geogan-bench-", dir=args.tmp) as tmp:
        src, dst = Path(tmp) / "scene.tif", Path(tmp) / "pred.tif"
        t0 = time.perf_counter()
        width, height = parse_size(args.size)
        make_scene(src, width, height)
        gen_s = time.perf_counter() - t0
        model = model_for_bench(args.ngf, args.blocks).to(dev)
        net = model.generators["a2b"]
        model_only(net, 1)  # warm-up: allocator, kernels, thread pools
        # The model-only timing is split in two halves, just before and just after the
        # prediction, so that a busy machine's drift affects both measurements alike.
        tiles = len(tile_origins(width, args.tile_size, args.overlap)) * len(
            tile_origins(height, args.tile_size, args.overlap))
        n_batches = max(2, round(min(tiles, args.model_only_tiles) / args.batch_size))
        model_s, model_cpu = model_only(net, n_batches // 2)
        rss_before = rss_mib()
        t0, c0 = time.perf_counter(), time.process_time()
        result = translate_raster(model, src, dst, tile_size=args.tile_size, overlap=args.overlap,
                                  batch_size=args.batch_size, device=dev)
        e2e_s, e2e_cpu = time.perf_counter() - t0, time.process_time() - c0
        rss_after = rss_mib()
        out_mib = dst.stat().st_size / 2 ** 20
        more_s, more_cpu = model_only(net, n_batches - n_batches // 2)
        model_s, model_cpu = model_s + more_s, model_cpu + more_cpu
    tiles = result.tiles_translated
    tile_rate = n_batches * args.batch_size / model_s
    scene_px = width * height
    px_per_tile = scene_px / tiles
    return {
        "device": str(dev), "width": width, "height": height, "tiles": tiles,
        "generate_s": round(gen_s, 2), "e2e_s": round(e2e_s, 2),
        "e2e_mpx_s": scene_px / e2e_s / 1e6,
        "model_mpx_s": tile_rate * px_per_tile / 1e6,
        "model_tiles_timed": n_batches * args.batch_size,
        # CPU seconds per tile (all threads): robust to other load on a shared machine
        "e2e_cpu_per_tile": e2e_cpu / tiles, "model_cpu_per_tile": model_cpu / (n_batches * args.batch_size),
        "rss_before_mib": round(rss_before, 1), "rss_peak_mib": round(rss_after, 1),
        "output_mib": round(out_mib, 1), "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4096x1024,4096x4096",
                    help="comma-separated scene sizes, WIDTHxHEIGHT or a side (default: 4096 wide, 1024 and "
                         "4096 rows: memory is bounded by a strip, so RSS must not grow with the rows)")
    ap.add_argument("--gdal-cachemax", default="64",
                    help="GDAL_CACHEMAX for the workers, MB (GDAL's block cache otherwise grows to 5%% of RAM "
                         "with the blocks it has read; '' keeps the environment's)")
    ap.add_argument("--device", default=None, help="cpu, cuda or auto (default: cpu, plus cuda when available)")
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=4, help="generator width (tiny by default for a 2-core CPU)")
    ap.add_argument("--blocks", type=int, default=2, help="residual blocks")
    ap.add_argument("--model-only-tiles", type=int, default=64,
                    help="tiles timed in the model-only run (its rate is what counts)")
    ap.add_argument("--tmp", default=None, help="directory for the generated scene (default: system temp)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per run")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return

    import torch

    devices = [args.device] if args.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    common = ["--tile-size", str(args.tile_size), "--overlap", str(args.overlap), "--batch-size",
              str(args.batch_size), "--ngf", str(args.ngf), "--blocks", str(args.blocks),
              "--model-only-tiles", str(args.model_only_tiles)] + (["--tmp", args.tmp] if args.tmp else [])
    if not args.json:
        print(f"geogan predict benchmark: ResNet generator ngf={args.ngf} blocks={args.blocks}, 2-band float32 SAR "
              f"-> 3-band uint8, tile {args.tile_size}, overlap {args.overlap}, batch {args.batch_size}")
        print(f"{'device':<7} {'scene':>11} {'tiles':>6} {'e2e s':>7} {'e2e Mpx/s':>10} {'model Mpx/s':>12} "
              f"{'ratio':>6} {'cpu ratio':>9} {'RSS MiB':>8} {'(before)':>9}")
    for dev in devices:
        for size in sizes:
            cmd = [sys.executable, __file__, "--worker", "--size", str(size), "--device", dev] + common
            env = os.environ.copy()
            if args.gdal_cachemax:
                env["GDAL_CACHEMAX"] = str(args.gdal_cachemax)
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"benchmark worker failed for {dev} {size}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["ratio"] = r["e2e_mpx_s"] / r["model_mpx_s"]
            r["cpu_ratio"] = r["model_cpu_per_tile"] / r["e2e_cpu_per_tile"]
            if args.json:
                print(json.dumps(r))
            else:
                w, h = parse_size(size)
                print(f"{r['device']:<7} {f'{w}x{h}':>11} {r['tiles']:>6} {r['e2e_s']:>7.1f} "
                      f"{r['e2e_mpx_s']:>10.3f} {r['model_mpx_s']:>12.3f} {r['ratio']:>6.2f} {r['cpu_ratio']:>9.2f} "
                      f"{r['rss_peak_mib']:>8.0f} {r['rss_before_mib']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark chip export against a plain windowed rasterio read of the same raster.

For each size (default 3000 and 8000 px square, uint16, 4 bands) a synthetic GeoTIFF is
written block by block (never whole in memory), then a fresh child process measures:

* a plain windowed read of every tile window with rasterio (the I/O floor), MB/s;
* ``geogan.export_chips`` of the same raster (A) with a small B raster, MB/s of A's source
  pixels, so the ratio says what validity, statistics and chip writing cost on top of I/O;
* peak RSS (``resource.getrusage(...).ru_maxrss``) of that child: it should not grow with
  the raster size (memory bounded by a few tiles).

    python tools/bench_chips.py                      # sizes 3000,8000 (~1–2 min on 2 cores)
    python tools/bench_chips.py --sizes 2000 --compress auto,none,deflate
    python tools/bench_chips.py --gdal-cachemax default   # RSS then includes GDAL's block cache
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_raster(path: Path, size: int, bands: int, dtype: str, compress: str) -> None:
    """A smooth-plus-noise multispectral-like scene, written 256 rows at a time."""
    import rasterio
    from rasterio.transform import from_origin

    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype=dtype, crs="EPSG:32633",
                   transform=from_origin(500000.0, 5000000.0, 10.0, 10.0), nodata=0, tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    if compress != "none":
        profile.update(compress=compress, predictor=2)
    rng = np.random.default_rng(0)
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 256):
            rows = np.arange(r0, min(size, r0 + 256), dtype=np.float32)[:, None]
            base = 2000 + 800 * np.sin(cols[None, :] / 97.0) * np.cos(rows / 61.0)
            block = np.stack([base * (1 + 0.1 * b) for b in range(bands)])
            block += rng.normal(0, 40, block.shape)
            if r0 == 0:
                block[:, :64, :] = 0  # a nodata strip: some chips fall below --min-valid
            dst.write(np.clip(block, 0, 65535).astype(dtype),
                      window=((r0, r0 + block.shape[1]), (0, size)))


def measure(src: Path, small_b: Path, out: Path, tile: int, compress: str) -> dict:
    """Runs in a fresh process: plain read, then export; reports MB/s and peak RSS."""
    import rasterio

    import geogan.chips as chips
    from geogan.chips import chip_windows, export_chips

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with rasterio.open(src) as ds:
        nbytes = ds.width * ds.height * ds.count * np.dtype(ds.dtypes[0]).itemsize
        wins = chip_windows(ds.height, ds.width, tile, tile)
        t0 = time.perf_counter()
        total = 0
        for w in wins:
            total += int(ds.read(window=w).size)
        t_read = time.perf_counter() - t0
    rss_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chips.CHIP_COMPRESS = None if compress == "auto" else compress
    t0 = time.perf_counter()
    summary = export_chips(src, small_b, out, tile_size=tile, val_fraction=0.1, min_valid=0.95)
    t_export = time.perf_counter() - t0
    rss_export = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chip_bytes = sum(p.stat().st_size for p in out.rglob("*.tif"))
    return dict(
        mb=nbytes / 1e6, windows=len(wins), read_s=t_read, export_s=t_export,
        read_mbps=nbytes / 1e6 / t_read, export_mbps=nbytes / 1e6 / t_export,
        chips=summary.counts["a"], skipped=summary.skipped["a"],
        rss_start_mb=rss0 / 1024, rss_after_read_mb=rss_read / 1024, rss_peak_mb=rss_export / 1024,
        chip_mb=chip_bytes / 1e6,
    )


def _make_in_child(path: Path, size: int, bands: int, dtype: str, compress: str) -> None:
    # In its own process: Linux carries a process's peak RSS across fork+exec, so a parent
    # that had built big arrays would inflate every measuring child's ru_maxrss.
    subprocess.run([sys.executable, __file__, "--_make", str(path), str(size), str(bands), dtype, compress],
                   check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="3000,8000", help="comma-separated square raster sizes in pixels")
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--source-compress", default="none", help="compression of the generated source raster")
    ap.add_argument("--compress", default="auto",
                    help="chip compression(s) to compare, e.g. auto,none,deflate,zstd (auto: the library's choice)")
    ap.add_argument("--gdal-cachemax", default="64",
                    help="GDAL_CACHEMAX (MB) for the measuring process, so peak RSS shows geogan's own memory "
                         "rather than GDAL's block cache (default 5%% of RAM); 'default' leaves GDAL's")
    ap.add_argument("--workdir", default=None, help="keep generated rasters here (default: a temp dir, removed)")
    ap.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--_make", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._make:
        path, size, bands, dtype, compress = args._make
        make_raster(Path(path), int(size), int(bands), dtype, compress)
        return 0

    if args._child:
        src, small_b, out, tile, compress = args._child
        print(json.dumps(measure(Path(src), Path(small_b), Path(out), int(tile), compress)))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="geogan-bench-chips-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        small_b = work / "b_small.tif"
        if not small_b.exists():
            _make_in_child(small_b, 512, 3, "uint8", "deflate")
        print(f"{'size':>6} {'chips':>6} {'MB src':>8} {'read MB/s':>10} {'export MB/s':>12} {'ratio':>6} "
              f"{'peak RSS MB':>12} {'chip MB':>8}  compress", flush=True)
        for size in [int(s) for s in args.sizes.split(",")]:
            src = work / f"a_{size}_{args.bands}b_{args.source_compress}.tif"
            if not src.exists():
                t0 = time.perf_counter()
                _make_in_child(src, size, args.bands, "uint16", args.source_compress)
                print(f"  (generated {src.name} in {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
            for compress in args.compress.split(","):
                out = work / f"chips_{size}_{compress}"
                shutil.rmtree(out, ignore_errors=True)
                env = dict(os.environ)
                if args.gdal_cachemax != "default":
                    env["GDAL_CACHEMAX"] = args.gdal_cachemax
                res = subprocess.run(
                    [sys.executable, __file__, "--_child", str(src), str(small_b), str(out), str(args.tile), compress],
                    check=True, capture_output=True, text=True, env=env,
                )
                r = json.loads(res.stdout.strip().splitlines()[-1])
                n = r["chips"]["train"] + r["chips"]["val"]
                print(f"{size:>6} {n:>6} {r['mb']:>8.0f} {r['read_mbps']:>10.1f} {r['export_mbps']:>12.1f} "
                      f"{r['export_mbps'] / r['read_mbps']:>6.2f} {r['rss_peak_mb']:>12.0f} {r['chip_mb']:>8.0f}  "
                      f"{compress}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

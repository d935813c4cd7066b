#!/usr/bin/env python
"""Benchmark ``geogan chips`` against a plain rasterio loop writing the same chips.

The default run measures issue 21's target, side by side in one run: two synthetic
SIZE x SIZE 4-band uint16 GeoTIFFs (domains A and B; smooth-plus-noise, the first 64 rows nodata),
cut into 256 px chips

* by ``geogan chips --a A --b B --out OUT`` (the command, in its own process: reading every
  window, validity, statistics, the split, chips written in parallel, flushed to disk once,
  the manifest, the swap), and
* by a plain rasterio loop in its own process: for each chip geogan kept (same windows, same
  domain and split folders) read the window of every band and write it as a GeoTIFF with the
  same creation options (tiled 256, the chips' compression and level, predictor, nodata, CRS,
  the window's transform); no validity, no statistics, no flush to disk.

Both are timed as commands (interpreter start and imports included), ``--repeat`` rounds
alternating which goes first, after one untimed warm-up export (it also lists the chips the
loop writes). It prints each round, MB/s of source pixels (both domains), and last a line
ending ``ratio R``: the median over the rounds of loop time / geogan time (the speed of
``geogan chips`` as a fraction of the loop's; issue 21 asks for >= 0.7).

    python tools/bench_chips.py                    # 6000^2, 3 rounds (about 1 min on 2 cores)
    python tools/bench_chips.py --size 3000 --repeat 5

``--kinds`` instead compares export kinds, in-process: a plain windowed read and
``geogan.export_chips`` of three sources of the same size in bytes per pixel (4-band uint16,
2-band float32 SAR in dB and in linear power) with a small B raster: MB/s, peak RSS (it should
not grow with the raster size), and each export's wall and CPU time over the uint16 export's
(each case ``--repeat`` times interleaved, the least CPU time kept).

``--sparse SIZE`` instead runs ``geogan chips`` (the CLI) on a SIZE x SIZE uint8 GeoTIFF that
is sparse on disk (``SPARSE_OK``: only a few blocks hold data) and reports the command's peak
RSS with the CLI's own GDAL cache cap, with GDAL_CACHEMAX=64 and with GDAL's default cache (5 %
of RAM, what the CLI would use without its cap).

    python tools/bench_chips.py --kinds --sizes 3000,8000
    python tools/bench_chips.py --sparse 50000        # peak RSS of 'geogan chips' on 50,000^2 px

Run with ``PYTHONPATH`` pointing at another checkout to measure older code.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

CASES = {
    # name: (bands, dtype, export options)
    "uint16": (4, "uint16", {}),
    "sar-db": (2, "float32", {"kind_a": "sar", "units_a": "db"}),
    "sar-linear": (2, "float32", {"kind_a": "sar", "units_a": "linear"}),
}


def make_raster(path: Path, size: int, case: str, compress: str, seed: int = 0) -> None:
    """A smooth-plus-noise scene, written 256 rows at a time; the first 64 rows are nodata."""
    import rasterio
    from rasterio.transform import from_origin

    bands, dtype, _ = CASES[case]
    sar = case.startswith("sar")
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype=dtype, crs="EPSG:32633",
                   transform=from_origin(500000.0, 5000000.0, 10.0, 10.0), nodata=float("nan") if sar else 0,
                   tiled=True, blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
    if compress != "none":
        profile.update(compress=compress, predictor=3 if sar else 2)
    rng = np.random.default_rng(seed)
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 256):
            rows = np.arange(r0, min(size, r0 + 256), dtype=np.float32)[:, None]
            wave = np.sin(cols[None, :] / 97.0) * np.cos(rows / 61.0)
            if sar:  # backscatter texture in dB times gamma speckle, in linear power
                block = np.stack([10 ** ((m + 3 * wave) / 10) * rng.gamma(4.0, 0.25, wave.shape)
                                  for m in (-9.0, -15.0)]).astype(np.float32)
                if case == "sar-db":
                    block = (10 * np.log10(block)).astype(np.float32)
                if r0 == 0:
                    block[:, :64, :] = np.nan
            else:
                block = np.stack([(2000 + 800 * wave) * (1 + 0.1 * b) for b in range(bands)])
                block += rng.normal(0, 40, block.shape)
                if r0 == 0:
                    block[:, :64, :] = 0
                block = np.clip(block, 0, 65535)
            dst.write(block.astype(dtype), window=((r0, r0 + block.shape[1]), (0, size)))


def measure(src: Path, small_b: Path, out: Path, tile: int, compress: str, case: str) -> dict:
    """Runs in a fresh process: plain read, then export; reports MB/s and peak RSS."""
    import rasterio

    import geogan.chips as chips
    from geogan.chips import chip_windows, export_chips

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with rasterio.open(src) as ds:
        nbytes = ds.width * ds.height * ds.count * np.dtype(ds.dtypes[0]).itemsize
        wins = chip_windows(ds.height, ds.width, tile, tile)
        t0 = time.perf_counter()
        for w in wins:
            ds.read(window=w)
        t_read = time.perf_counter() - t0
    accepted = inspect.signature(export_chips).parameters
    options = {k: v for k, v in CASES[case][2].items() if k in accepted}
    if case == "sar-db" and "units_a" not in accepted:
        options.pop("kind_a", None)  # older code: dB read as SAR drops every chip; let it infer
    if hasattr(chips, "CHIP_COMPRESS"):
        chips.CHIP_COMPRESS = None if compress == "auto" else compress
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        summary = export_chips(src, small_b, out, tile_size=tile, val_fraction=0.1, min_valid=0.95, **options)
    except Exception as exc:  # older code may refuse a case (dB as SAR): say so and go on
        return dict(error=f"{type(exc).__name__}: {str(exc).splitlines()[0][-160:]}")
    t_export, cpu_export = time.perf_counter() - t0, time.process_time() - c0
    rss_export = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    chip_bytes = sum(p.stat().st_size for p in out.rglob("*.tif"))
    return dict(
        mb=nbytes / 1e6, windows=len(wins), read_s=t_read, export_s=t_export, export_cpu_s=cpu_export,
        read_mbps=nbytes / 1e6 / t_read, export_mbps=nbytes / 1e6 / t_export,
        chips=summary.counts["a"], kind=summary.domains["a"].kind,
        units=getattr(summary.domains["a"], "units", None), options=sorted(options),
        rss_start_mb=rss0 / 1024, rss_peak_mb=rss_export / 1024, chip_mb=chip_bytes / 1e6,
    )


def _in_child(*args: str, env: dict | None = None) -> str:
    # Its own process: Linux carries a process's peak RSS across fork+exec, so a parent that
    # had built big arrays would inflate every measuring child's ru_maxrss.
    res = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env)
    return res.stdout


def run_cases(args, work: Path) -> None:
    small_b = work / "b_small.tif"
    if not small_b.exists():
        _in_child("--_make", str(small_b), "512", "uint8-rgb", "deflate")
    cases = args.cases.split(",")
    print(f"{'size':>6} {'case':>10} {'kind/units':>12} {'chips':>6} {'MB src':>7} {'read MB/s':>10} "
          f"{'export MB/s':>12} {'export/read':>11} {'RSS MB':>7} {'chip MB':>8} {'cpu s':>6} {'x uint16':>9} "
          f"{'(cpu)':>6}  compress", flush=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        for case in cases:
            _source(work, size, case, args.source_compress)
        for compress in args.compress.split(","):
            best = _best_of(args, work, small_b, size, cases, compress)
            for case in cases:
                _print_row(size, case, best.get(case), best.get("uint16"), compress)


def _source(work: Path, size: int, case: str, compress: str) -> Path:
    src = work / f"a_{size}_{case}_{compress}.tif"
    if not src.exists():
        t0 = time.perf_counter()
        _in_child("--_make", str(src), str(size), case, compress)
        print(f"  (generated {src.name} in {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return src


def _best_of(args, work: Path, small_b: Path, size: int, cases: list[str], compress: str) -> dict:
    """Each case ``--repeat`` times, interleaved (uint16, dB, linear, uint16, ...) so a busy
    machine's drift hits all alike; per case the run with the least CPU time is kept."""
    best: dict = {}
    env = dict(os.environ)
    if args.gdal_cachemax != "default":
        env["GDAL_CACHEMAX"] = args.gdal_cachemax
    for _ in range(args.repeat):
        for case in cases:
            out = work / f"chips_{size}_{case}_{compress}"
            shutil.rmtree(out, ignore_errors=True)
            src = _source(work, size, case, args.source_compress)
            text = _in_child("--_child", str(src), str(small_b), str(out), str(args.tile), compress, case, env=env)
            shutil.rmtree(out, ignore_errors=True)
            r = json.loads(text.strip().splitlines()[-1])
            if "error" in r or case not in best or r["export_cpu_s"] < best[case]["export_cpu_s"]:
                best[case] = r
    return best


def _print_row(size: int, case: str, r: dict, base: dict, compress: str) -> None:
    if "error" in r:
        print(f"{size:>6} {case:>10}  export failed: {r['error']}", flush=True)
        return
    n = r["chips"]["train"] + r["chips"]["val"]
    ok = base and "error" not in base
    slower = f"{r['export_s'] / base['export_s']:.2f}" if ok else "-"
    slower_cpu = f"{r['export_cpu_s'] / base['export_cpu_s']:.2f}" if ok else "-"
    kind = f"{r['kind']}/{r['units']}" if r["units"] else r["kind"]
    print(f"{size:>6} {case:>10} {kind:>12} {n:>6} {r['mb']:>7.0f} {r['read_mbps']:>10.1f} "
          f"{r['export_mbps']:>12.1f} {r['export_mbps'] / r['read_mbps']:>11.2f} {r['rss_peak_mb']:>7.0f} "
          f"{r['chip_mb']:>8.0f} {r['export_cpu_s']:>6.1f} {slower:>9} {slower_cpu:>6}  {compress}", flush=True)


# ------------------------------------------------------------------------------- geogan chips vs a plain loop

def run_compare(args, work: Path) -> None:
    """Issue 21's comparison: ``geogan chips`` and a plain rasterio loop, side by side."""
    sources = []
    for d, seed in (("a", 0), ("b", 1)):
        src = work / f"{d}_{args.size}_uint16.tif"
        if not src.exists():
            _in_child("--_make", str(src), str(args.size), "uint16", args.source_compress, str(seed))
        sources.append(src)
    mb = 2 * args.size * args.size * 4 * 2 / 1e6
    out = work / "chips"
    chips_list = work / "chips.txt"
    shutil.rmtree(out, ignore_errors=True)
    warm = _geogan_chips(sources, out, args.tile)  # warm-up: page cache, and the chips the loop writes
    names = sorted(str(p.relative_to(out)) for p in out.glob("*/*.tif"))
    chips_list.write_text("\n".join(names) + "\n")
    import rasterio

    with rasterio.open(out / names[0]) as chip:
        options = dict(chip.tags(ns="IMAGE_STRUCTURE"), BLOCKSIZE=chip.profile.get("blockxsize"))
    print(f"sources: 2 x {args.size}^2 4-band uint16 ({mb:.0f} MB of pixels), {len(names)} chips of {args.tile} px "
          f"kept by geogan (warm-up {warm:.1f} s); chips: {options}; {os.cpu_count()} cores", flush=True)
    rounds = []
    for r in range(args.repeat):
        times, written = {}, {}
        for who in (("loop", "geogan") if r % 2 == 0 else ("geogan", "loop")):
            shutil.rmtree(out, ignore_errors=True)
            times[who] = (_geogan_chips(sources, out, args.tile) if who == "geogan"
                          else _plain_loop_child(sources, out, chips_list, args.tile))
            written[who] = sum(p.stat().st_size for p in out.glob("*/*.tif")) / 1e6
        shutil.rmtree(out, ignore_errors=True)
        rounds.append(times["loop"] / times["geogan"])
        print(f"round {r + 1}: geogan chips {times['geogan']:.2f} s ({mb / times['geogan']:.0f} MB/s, "
              f"{written['geogan']:.0f} MB of chips), plain loop {times['loop']:.2f} s ({mb / times['loop']:.0f} MB/s, "
              f"{written['loop']:.0f} MB): {rounds[-1]:.2f}", flush=True)
    print(f"geogan chips / plain rasterio loop, same {len(names)} chips of both domains, median of {len(rounds)} "
          f"rounds: ratio {float(np.median(rounds)):.2f}", flush=True)


def _geogan_chips(sources: list[Path], out: Path, tile: int) -> float:
    """Wall seconds of the ``geogan chips`` command (defaults: --min-valid 0.95, --val-fraction 0.1)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "geogan", "chips", "--a", str(sources[0]), "--b", str(sources[1]),
                          "--out", str(out), "--tile-size", str(tile)], capture_output=True, text=True,
                         cwd=str(out.parent))  # cwd: "-m geogan" imports what PYTHONPATH names
    seconds = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"geogan chips failed: {res.stderr.strip()[-500:]}")
    return seconds


def _plain_loop_child(sources: list[Path], out: Path, chips_list: Path, tile: int) -> float:
    from geogan.chips.writer import chip_compression  # here: the loop itself imports rasterio only

    compress, level = chip_compression(None)
    t0 = time.perf_counter()
    _in_child("--_plain", str(sources[0]), str(sources[1]), str(out), str(chips_list), str(tile), compress,
              str(level))
    return time.perf_counter() - t0


def plain_loop(src_a: Path, src_b: Path, out: Path, chips_list: Path, tile: int, compress: str,
               level: Optional[int]) -> None:
    """For each chip (``train_a/NAME_rROW_cCOL.tif``): read its window, write it as a GeoTIFF."""
    import rasterio
    from rasterio.windows import Window, transform

    names = chips_list.read_text().split()
    for folder in {n.split("/")[0] for n in names}:
        (out / folder).mkdir(parents=True, exist_ok=True)
    for d, src in (("a", src_a), ("b", src_b)):
        with rasterio.open(src) as ds:
            profile = dict(driver="GTiff", width=tile, height=tile, count=ds.count, dtype=ds.dtypes[0], crs=ds.crs,
                           nodata=ds.nodata, tiled=True, blockxsize=min(tile, 256), blockysize=min(tile, 256),
                           compress=compress, predictor=2)
            if level is not None:
                profile["zstd_level"] = level
            for name in (n for n in names if n.split("/")[0].endswith(f"_{d}")):
                row, col = (int(x[1:]) for x in name[:-4].rsplit("_", 2)[1:])
                window = Window(col, row, tile, tile)
                data = ds.read(window=window)
                with rasterio.open(out / name, "w", transform=transform(window, ds.transform), **profile) as dst:
                    dst.write(data)


def make_sparse(path: Path, size: int) -> None:
    """A SIZE x SIZE uint8 GeoTIFF, nodata 0, sparse on disk: 16 scattered 512 px patches hold data."""
    import rasterio
    from rasterio.transform import from_origin

    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(500000.0, 5000000.0, 10.0, 10.0), nodata=0, tiled=True,
                   blockxsize=256, blockysize=256, BIGTIFF="YES", SPARSE_OK=True)
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for k in range(16):
            r0, c0 = (int(v) // 256 * 256 for v in rng.integers(0, size - 512, 2))
            dst.write(rng.integers(1, 255, (1, 512, 512)).astype("uint8"), window=((r0, r0 + 512), (c0, c0 + 512)))


def run_sparse(args, work: Path) -> None:
    size = args.sparse
    src = work / f"sparse_{size}.tif"
    small_b = work / "b_small.tif"
    if not small_b.exists():
        _in_child("--_make", str(small_b), "512", "uint8-rgb", "deflate")
    if not src.exists():
        _in_child("--_make-sparse", str(src), str(size))
    print(f"sparse source: {size}x{size} uint8 ({size * size / 1e9:.1f} GB of pixels), "
          f"{os.stat(src).st_blocks * 512 / 1e6:.1f} MB on disk")
    for label, cachemax in (("CLI default (GDAL cache capped by geogan)", None),
                            ("GDAL_CACHEMAX=64", "64"), ("GDAL_CACHEMAX=5% (GDAL's default)", "5%")):
        out = work / "sparse_chips"
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ)
        env.pop("GDAL_CACHEMAX", None)
        if cachemax:
            env["GDAL_CACHEMAX"] = cachemax
        text = _in_child("--_cli-rss", str(src), str(small_b), str(out), str(args.tile), env=env)
        r = json.loads(text.strip().splitlines()[-1])
        print(f"  geogan chips, {label}: {r['seconds']:.0f} s, peak RSS {r['rss_mb']:.0f} MB, exit {r['rc']}: "
              f"{r['last_line']}", flush=True)
        shutil.rmtree(out, ignore_errors=True)


def cli_rss(src: str, small_b: str, out: str, tile: str) -> dict:
    """Runs ``python -m geogan chips`` as a child and reads its peak RSS from RUSAGE_CHILDREN."""
    t0 = time.perf_counter()
    # cwd: the raster folder, so "-m geogan" imports what PYTHONPATH names, not a checkout in the cwd
    res = subprocess.run([sys.executable, "-m", "geogan", "chips", "--a", src, "--b", small_b, "--out", out,
                          "--tile-size", tile, "--min-valid", "0.5", "--val-fraction", "0.1"],
                         capture_output=True, text=True, cwd=os.path.dirname(src))
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = (res.stdout + res.stderr).strip().splitlines()
    return dict(rc=res.returncode, seconds=seconds, rss_mb=rss / 1024, last_line=lines[0] if lines else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=6000, help="side of the two square sources in pixels")
    ap.add_argument("--kinds", action="store_true", help="instead: export kinds against a plain read (--sizes)")
    ap.add_argument("--sizes", default="3000,8000", help="--kinds: comma-separated square raster sizes in pixels")
    ap.add_argument("--cases", default="uint16,sar-db,sar-linear",
                    help=f"--kinds: comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds (default 3; --kinds: runs per case, interleaved, the least CPU time kept, default 2)")
    ap.add_argument("--source-compress", default="none", help="compression of the generated source rasters")
    ap.add_argument("--compress", default="auto",
                    help="--kinds: chip compression(s) to compare, e.g. auto,none,deflate,zstd "
                         "(auto: the library's choice)")
    ap.add_argument("--gdal-cachemax", default="64",
                    help="GDAL_CACHEMAX (MB) for the measuring process, so peak RSS shows geogan's own memory "
                         "rather than GDAL's block cache (default 5%% of RAM); 'default' leaves GDAL's")
    ap.add_argument("--sparse", type=int, default=0,
                    help="instead: peak RSS of 'geogan chips' on a sparse SIZE^2 raster")
    ap.add_argument("--workdir", default=None, help="keep generated rasters here (default: a temp dir, removed)")
    ap.add_argument("--_child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--_make", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--_plain", nargs=7, help=argparse.SUPPRESS)
    ap.add_argument("--_make-sparse", dest="_make_sparse", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_cli-rss", dest="_cli_rss", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._make:
        path, size, case, compress, *seed = args._make
        if case == "uint8-rgb":
            _make_rgb(Path(path), int(size))
        else:
            make_raster(Path(path), int(size), case, compress, int(seed[0]) if seed else 0)
        return 0
    if args._plain:
        src_a, src_b, out, chips_list, tile, compress, level = args._plain
        plain_loop(Path(src_a), Path(src_b), Path(out), Path(chips_list), int(tile), compress,
                   None if level == "None" else int(level))
        return 0
    if args._make_sparse:
        make_sparse(Path(args._make_sparse[0]), int(args._make_sparse[1]))
        return 0
    if args._cli_rss:
        print(json.dumps(cli_rss(*args._cli_rss)))
        return 0
    if args._child:
        src, small_b, out, tile, compress, case = args._child
        print(json.dumps(measure(Path(src), Path(small_b), Path(out), int(tile), compress, case)))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="geogan-bench-chips-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.sparse:
            run_sparse(args, work)
        elif args.kinds:
            args.repeat = args.repeat or 2
            run_cases(args, work)
        else:
            args.repeat = args.repeat or 3
            run_compare(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _make_rgb(path: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    data = np.random.default_rng(1).integers(1, 255, (3, size, size)).astype("uint8")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0),
                       compress="deflate") as dst:
        dst.write(data)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A simple SAR → RGB baseline for the demo: histogram matching, no learning.

Each output band is the SAR VV backscatter (in dB, after a small boxcar speckle filter)
mapped through quantile matching onto that band's distribution in the RGB training
raster: ``out_b = F_b⁻¹(F_vv(x))``. It knows the RGB statistics but nothing about what
each SAR signature means, so it is the floor a learned translation has to beat.

    python tools/demo_baseline.py SAR.tif RGB_TRAIN.tif OUT.tif [--band 1] [--boxcar 5]

The output is on the SAR raster's exact grid (same CRS, transform, size), uint8 with
nodata 0 where the SAR is invalid (nodata, non-positive or non-finite), valid pixels 1…255.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import rasterio


def boxcar(x: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Mean of valid pixels in a ``size`` × ``size`` window (summed-area tables)."""
    if size <= 1:
        return x
    r = size // 2

    def window_sum(a: np.ndarray) -> np.ndarray:
        p = np.pad(a, r + 1, mode="constant")
        c = p.cumsum(0).cumsum(1)
        h, w = a.shape
        return (c[size:size + h, size:size + w] - c[0:h, size:size + w]
                - c[size:size + h, 0:w] + c[0:h, 0:w])

    xv = np.where(valid, x, 0.0).astype(np.float64)
    n = window_sum(valid.astype(np.float64))
    return (window_sum(xv) / np.maximum(n, 1.0)).astype(np.float32)


def match(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Quantile-map ``values`` onto the distribution of ``reference`` (both 1-D)."""
    order = np.argsort(values, kind="stable")
    u = (np.arange(values.size) + 0.5) / values.size
    ref = np.sort(reference.astype(np.float64))
    ref_u = (np.arange(ref.size) + 0.5) / ref.size
    out = np.empty(values.size, np.float64)
    out[order] = np.interp(u, ref_u, ref)
    return out


def baseline(sar_path: Path, rgb_path: Path, out_path: Path, band: int = 1, box: int = 5) -> None:
    with rasterio.open(sar_path) as src:
        profile = src.profile
        x = src.read(band).astype(np.float32)
        valid = src.read_masks(band) > 0
    valid &= np.isfinite(x) & (x > 0)
    if not valid.any():
        raise SystemExit(f"{sar_path}: no valid SAR pixels")
    x = boxcar(x, valid, box)
    db = 10.0 * np.log10(np.maximum(x, 1e-6))
    with rasterio.open(rgb_path) as ref:
        ref_data = ref.read(out_dtype="float32")
        ref_valid = ref.read_masks() > 0
        count = ref.count
        descriptions = ref.descriptions
        colorinterp = ref.colorinterp
    out = np.zeros((count, x.shape[0], x.shape[1]), np.uint8)
    for b in range(count):
        mapped = match(db[valid], ref_data[b][ref_valid[b]])
        out[b][valid] = np.clip(np.round(mapped), 1, 255).astype(np.uint8)
    profile.update(dtype="uint8", count=count, nodata=0, compress="deflate", predictor=2,
                   tiled=True, blockxsize=256, blockysize=256, photometric="RGB" if count == 3 else None)
    profile = {k: v for k, v in profile.items() if v is not None}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(out)
        for i, d in enumerate(descriptions, start=1):
            if d:
                dst.set_band_description(i, d)
        dst.colorinterp = colorinterp
        dst.update_tags(SOURCE=f"geogan demo baseline: histogram matching of {sar_path.name} band {band} "
                               f"(dB, {box}x{box} boxcar) to {rgb_path.name}")
    tmp.replace(out_path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sar", type=Path, help="SAR raster (linear backscatter power)")
    ap.add_argument("rgb", type=Path, help="RGB training raster whose band distributions to match")
    ap.add_argument("out", type=Path, help="output GeoTIFF (the SAR raster's grid)")
    ap.add_argument("--band", type=int, default=1, help="SAR band to use (1-based; default 1 = VV)")
    ap.add_argument("--boxcar", type=int, default=5, help="speckle filter window (odd; 1 = none)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    baseline(args.sar, args.rgb, args.out, args.band, args.boxcar)
    print(f"baseline: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Side-by-side preview PNG of the demo's result: SAR (dB) | translations ... | truth.

    python tools/demo_preview.py --sar SAR.tif PANEL.tif [PANEL.tif ...] --labels "A,B,..." --out PREVIEW.png

The first panel is the SAR scene as VV dB greyscale (-25 … 0 dB); every further panel is
an RGB raster on the same grid shown as is (uint8) or stretched to its 2nd–98th percentile
(other dtypes). Invalid pixels (nodata, mask) are drawn black. Each panel gets a label in a
small built-in bitmap font, so nothing beyond numpy and rasterio (its PNG driver) is needed.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import rasterio

# 5 × 7 bitmap glyphs for labels (upper case; lower case is drawn as upper case).
_GLYPHS = {
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110", "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001", "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001", "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110", "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100", "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000", "-": "00000 00000 00000 11111 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100", ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00001 00001 00010 00100 01000 10000 10000", "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000", "=": "00000 00000 11111 00000 11111 00000 00000",
    ">": "01000 00100 00010 00001 00010 00100 01000", "_": "00000 00000 00000 00000 00000 00000 11111",
    "+": "00000 00100 00100 11111 00100 00100 00000", "%": "11001 11010 00010 00100 01000 01011 10011",
}


def text_mask(text: str, scale: int = 2) -> np.ndarray:
    """A boolean (rows, cols) bitmap of ``text`` in the built-in font."""
    glyphs = []
    for ch in text.upper():
        rows = _GLYPHS.get(ch, _GLYPHS[" "]).split()
        g = np.array([[c == "1" for c in r] for r in rows], bool)
        glyphs += [g, np.zeros((7, 1), bool)]
    m = np.concatenate(glyphs, axis=1) if glyphs else np.zeros((7, 1), bool)
    return m.repeat(scale, 0).repeat(scale, 1)


def stretch(x: np.ndarray, valid: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    if lo is None or hi is None:
        if valid.any():
            lo, hi = np.percentile(x[valid], [2, 98])
        else:
            lo, hi = 0.0, 1.0
    y = np.clip((x - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0
    return np.where(valid, np.round(y), 0).astype(np.uint8)


def sar_panel(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        x = ds.read(1).astype(np.float32)
        valid = (ds.read_masks(1) > 0) & np.isfinite(x) & (x > 0)
    db = 10.0 * np.log10(np.where(valid, x, 1.0))
    g = stretch(db, valid, -25.0, 0.0)
    return np.stack([g, g, g])


def rgb_panel(path: Path, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(path) as ds:
        if (ds.height, ds.width) != shape:
            raise SystemExit(f"{path}: {ds.width}x{ds.height} pixels, expected {shape[1]}x{shape[0]} (same grid as the SAR)")
        bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
        x = ds.read(bands)
        valid = np.all(ds.read_masks(bands) > 0, axis=0)
    if x.dtype == np.uint8:
        return np.where(valid[None], x, 0).astype(np.uint8)
    return np.stack([stretch(b.astype(np.float32), valid) for b in x])


def downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean ``img`` (band, row, col) by an integer ``factor`` (for a lighter PNG)."""
    if factor <= 1:
        return img
    b, h, w = img.shape
    h2, w2 = h // factor, w // factor
    x = img[:, :h2 * factor, :w2 * factor].astype(np.float32)
    return np.round(x.reshape(b, h2, factor, w2, factor).mean(axis=(2, 4))).astype(np.uint8)


def compose(panels: list[np.ndarray], labels: list[str], gap: int = 8, header: int = 24) -> np.ndarray:
    h = max(p.shape[1] for p in panels)
    w = sum(p.shape[2] for p in panels) + gap * (len(panels) + 1)
    canvas = np.full((3, h + header + gap, w), 255, np.uint8)
    x = gap
    for p, label in zip(panels, labels):
        canvas[:, header:header + p.shape[1], x:x + p.shape[2]] = p
        m = text_mask(label)[:, : p.shape[2]]
        y0 = (header - m.shape[0]) // 2
        canvas[:, y0:y0 + m.shape[0], x:x + m.shape[1]][:, m] = 0
        x += p.shape[2] + gap
    return canvas


def write_png(img: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="PNG", width=img.shape[2], height=img.shape[1],
                           count=3, dtype="uint8") as dst:
            dst.write(img)
    for extra in tmp.parent.glob(tmp.name + ".aux.xml"):
        extra.unlink()
    tmp.replace(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sar", type=Path, required=True, help="SAR raster (VV in band 1, linear power)")
    ap.add_argument("panels", type=Path, nargs="+", help="RGB rasters on the SAR's grid, left to right")
    ap.add_argument("--labels", default="", help="comma-separated labels: SAR first, then one per panel")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--scale", type=int, default=1, help="shrink panels by this integer factor (default 1: full size)")
    args = ap.parse_args(argv)
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else []
    labels += [""] * (1 + len(args.panels) - len(labels))
    first = sar_panel(args.sar)
    panels = [first] + [rgb_panel(p, first.shape[1:]) for p in args.panels]
    panels = [downscale(p, args.scale) for p in panels]
    write_png(compose(panels, labels), args.out)
    print(f"preview: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

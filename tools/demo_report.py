#!/usr/bin/env python3
"""Print the demo's scores side by side from ``geogan evaluate --json`` reports.

    python tools/demo_report.py EVAL_1.json [EVAL_2.json ...] [--names "CycleGAN,baseline"]

One row per report: MAE and RMSE (in the truth's units, here 8-bit DN: lower is better),
PSNR (dB) and SSIM (higher is better), SAM (mean spectral angle in degrees, lower is
better), over the pixels valid in both rasters.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = (("mae", "MAE", "{:8.2f}"), ("rmse", "RMSE", "{:8.2f}"), ("psnr", "PSNR dB", "{:8.2f}"),
           ("ssim", "SSIM", "{:8.3f}"), ("sam", "SAM deg", "{:8.2f}"))


def overall(report: dict) -> dict:
    """The whole-raster metrics of a report (top level, or under an 'overall' key)."""
    if isinstance(report.get("overall"), dict):
        return report["overall"]
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", type=Path, nargs="+")
    ap.add_argument("--names", default="", help="comma-separated row names (default: file stems)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.names.split(",")] if args.names else []
    names += [p.stem for p in args.reports[len(names):]]
    width = max(8, *(len(n) for n in names))
    print(f"{'':{width}s} " + " ".join(f"{label:>8s}" for _, label, _ in METRICS) + "    pixels")
    for name, path in zip(names, args.reports):
        m = overall(json.loads(path.read_text(encoding="utf-8")))
        cells = []
        for key, _, fmt in METRICS:
            v = m.get(key)
            cells.append(fmt.format(v) if isinstance(v, (int, float)) else f"{'-':>8s}")
        print(f"{name:{width}s} " + " ".join(cells) + f"  {m.get('pixels', '-'):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

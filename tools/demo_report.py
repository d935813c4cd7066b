#!/usr/bin/env python3
"""Print the demo's scores side by side from ``geogan evaluate --json`` reports.

    python tools/demo_report.py EVAL_1.json [EVAL_2.json ...] [--names "Pix2PixHD,baseline"] [--classes]

One row per report: MAE and RMSE (in the truth's units, here 8-bit DN: lower is better),
PSNR (dB) and SSIM (higher is better), SAM (mean spectral angle in degrees, lower is
better), over the pixels valid in both rasters. With two or more reports, a line says on
which metrics the first beats the last (the baseline). ``--classes`` prints the first
report's per-class table (``geogan evaluate --classes``): each class's MAE and the share of
its pixels painted in its own colour, which class it was painted as, and the confusion table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRICS = (("mae", "MAE", "{:8.2f}"), ("rmse", "RMSE", "{:8.2f}"), ("psnr", "PSNR dB", "{:8.2f}"),
           ("ssim", "SSIM", "{:8.3f}"), ("sam", "SAM deg", "{:8.2f}"))
HIGHER_IS_BETTER = {"psnr", "ssim"}


def overall(report: dict) -> dict:
    """The whole-raster metrics of a report (top level, or under an 'overall' key)."""
    if isinstance(report.get("overall"), dict):
        return report["overall"]
    return report


def beats(first: dict, last: dict) -> list[str]:
    """'name yes/no' for every metric both reports have."""
    out = []
    for key, label, _ in METRICS:
        a, b = first.get(key), last.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            better = a > b if key in HIGHER_IS_BETTER else a < b
            out.append(f"{label} {'yes' if better else 'NO'}")
    return out


def class_lines(classes: dict) -> list[str]:
    """The per-class table and confusion matrix of a report's ``classes`` entry."""
    rows = classes["classes"]
    names = [r["name"] or str(r["value"]) for r in rows]
    by_value = dict(zip(classes["values"], names))
    width = max(5, *(len(n) for n in names))
    out = [f"{'class':>{width}} {'pixels':>8} {'MAE':>7} {'own %':>6}  painted as"]
    for r, name in zip(rows, names):
        flag = "" if r["painted_as"] == r["value"] else "  <- painted as another class"
        out.append(f"{name:>{width}} {r['pixels']:>8} {r['mae']:>7.2f} {100 * r['own_share']:>6.1f}  "
                   f"{by_value[r['painted_as']]}{flag}")
    out.append(f"confusion, % of each true class (rows) painted as (columns {', '.join(names)}):")
    for name, row in zip(names, classes["confusion"]):
        total = max(sum(row), 1)
        out.append(f"{name:>{width}} " + " ".join(f"{100 * v / total:5.1f}" for v in row))
    swapped = [n for r, n in zip(rows, names) if r["painted_as"] != r["value"]]
    out.append(f"classes painted as another class: {', '.join(swapped) if swapped else 'none'}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", type=Path, nargs="+")
    ap.add_argument("--names", default="", help="comma-separated row names (default: file stems)")
    ap.add_argument("--classes", action="store_true", help="print the first report's per-class table")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.names.split(",")] if args.names else []
    names += [p.stem for p in args.reports[len(names):]]
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in args.reports]
    width = max(8, *(len(n) for n in names))
    print(f"{'':{width}s} " + " ".join(f"{label:>8s}" for _, label, _ in METRICS) + "    pixels")
    for name, report in zip(names, reports):
        m = overall(report)
        cells = []
        for key, _, fmt in METRICS:
            v = m.get(key)
            cells.append(fmt.format(v) if isinstance(v, (int, float)) else f"{'-':>8s}")
        print(f"{name:{width}s} " + " ".join(cells) + f"  {m.get('pixels', '-'):>8}")
    if len(reports) > 1:
        print(f"\n{names[0]} better than {names[-1]}: " + ", ".join(beats(overall(reports[0]), overall(reports[-1]))))
    if args.classes:
        classes = reports[0].get("classes")
        if not classes:
            print(f"\n{names[0]}: no per-class scores in {args.reports[0]} (evaluate with --classes)")
        else:
            print(f"\n{names[0]} per class of {classes['path']} (painted as = nearest mean true colour):")
            print("\n".join(class_lines(classes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Seam check of a prediction: mean gradient across tile borders ÷ mean gradient elsewhere.

    python tools/seam_check.py PREDICTION.tif [--tile-size 256] [--overlap 64] [--bands 1,2,3]
                               [--reference ONE_TILE.tif]

Use the tile size and overlap the prediction was made with (``geogan predict`` defaults:
256 and 64). About 1.0 means no visible seams; clearly above 1 (say > 1.1) means tiles
disagree at their borders — try a larger ``--overlap`` or ``--blend hann``. Content along the
few boundary lines moves the ratio too (±0.15 on the sample scene); ``--reference`` takes the
same model's prediction made in one tile (``geogan predict --tile-size`` ≥ the scene's size,
``--overlap 0``) and divides that out, so 1.0 then means exactly seamless. See
:func:`geogan.evaluate.seam_ratio`.
"""
from __future__ import annotations

import argparse

from geogan.evaluate import seam_ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prediction")
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--bands", default=None, help="1-based bands to measure (default: all)")
    ap.add_argument("--reference", default=None, help="the same model's prediction made in one tile")
    args = ap.parse_args()
    ratio = seam_ratio(args.prediction, args.tile_size, args.overlap, bands=args.bands, reference=args.reference)
    what = "÷ the one-tile reference's" if args.reference else "(border / interior mean gradient)"
    print(f"seam ratio {what}: {ratio:.4f}")


if __name__ == "__main__":
    main()

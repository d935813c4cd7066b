"""Tiling maths shared by chip export, prediction and the seam metric: pure, no I/O.

Two grids are used:

* **Chip grid** (:func:`grid_offsets`): windows on the raster's own pixel grid,
  ``n = ceil((length - tile) / stride) + 1`` per axis, the last moved back to end exactly on
  the edge, so nothing is padded (like TorchGeo's ``tile_to_chips``).
* **Prediction grid** (:func:`tile_origins`): tiles of ``tile`` pixels stepping by
  ``tile - overlap``, extended by ``overlap // 2`` pixels of reflect padding beyond every edge
  and centred, so an edge pixel sits as deep inside its tile as a pixel on an interior seam.
  Overlaps are blended with :func:`blend_window` weights; :func:`seam_positions` are where
  the output switches from one tile to the next.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BLENDS = ("hann", "linear", "none")

#: Smallest blending weight: keeps Σw > 0 at tile corners so Σw·y / Σw never divides by zero.
WEIGHT_FLOOR = 1e-4


def grid_offsets(length: int, tile_size: int, stride: int) -> list[int]:
    """Chip offsets along one axis of ``length`` pixels.

    ``n = ceil((length - tile_size) / stride) + 1`` offsets ``0, stride, 2*stride, ...``; the
    last is clamped to ``length - tile_size`` so the final chip ends exactly on the edge
    (it overlaps its neighbour more than ``stride`` would; nothing is padded or dropped).
    Empty when ``length < tile_size``.
    """
    if tile_size <= 0 or stride <= 0:
        raise ValueError("tile_size and stride must be positive")
    if length < tile_size:
        return []
    n = math.ceil((length - tile_size) / stride) + 1
    return [min(i * stride, length - tile_size) for i in range(n)]


def tile_origins(length: int, tile_size: int, overlap: int) -> list[int]:
    """Origins of the tiles covering ``length`` pixels along one axis (may be negative).

    The grid covers ``[-overlap // 2, length + overlap // 2)`` with
    ``n = ceil((length + 2·(overlap//2) - tile) / stride) + 1`` tiles (one if that span fits in
    a tile), centred on the scene. Parts outside the scene are read with reflect padding.
    """
    stride = tile_size - overlap
    margin = overlap // 2
    span = length + 2 * margin
    n = 1 if span <= tile_size else math.ceil((span - tile_size) / stride) + 1
    covered = (n - 1) * stride + tile_size
    start = -margin - (covered - span) // 2
    return [start + i * stride for i in range(n)]


def seam_positions(length: int, tile_size: int, overlap: int) -> list[int]:
    """Pixel boundaries (inside ``(0, length)``) where the output switches from one tile to the next.

    Boundary ``b`` lies between pixels ``b - 1`` and ``b``: the middle of each overlap, which is
    where ``blend="none"`` cuts and where the blending windows weigh both tiles equally.
    """
    origins = tile_origins(length, tile_size, overlap)
    return [o + overlap // 2 for o in origins[1:] if 0 < o + overlap // 2 < length]


def blend_window(tile_size: int, overlap: int, blend: str, first: bool = False, last: bool = False) -> np.ndarray:
    """1-D blending weights along one tile axis (float64, length ``tile_size``).

    ``hann``/``linear``: 1 in the middle, tapering across the ``overlap`` pixels at each side that
    a neighbour shares (no taper on the scene-side of the first/last tile: nothing else covers
    it). ``none``: 1 on the pixels this tile owns (middle of overlap to middle of overlap), else 0.
    """
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r} (expected one of {', '.join(BLENDS)})")
    w = np.ones(tile_size, np.float64)
    if blend == "none":
        lo = 0 if first else overlap // 2
        hi = tile_size if last else overlap // 2 + tile_size - overlap
        w[:] = 0.0
        w[lo:hi] = 1.0
        return w
    if overlap > 0:
        t = (np.arange(overlap) + 0.5) / overlap
        rise = np.sin(0.5 * np.pi * t) ** 2 if blend == "hann" else t
        if not first:
            w[:overlap] = rise
        if not last:
            w[-overlap:] = rise[::-1]
    return w


def pad_reflect(a: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """``np.pad(mode="reflect")`` that also copes with pads larger than the data (edge fallback)."""
    if not any(p for pair in pads for p in pair):
        return a
    try:
        return np.pad(a, pads, mode="reflect")
    except ValueError:  # an empty or degenerate axis: repeat the edge instead
        return np.pad(a, pads, mode="edge")



def tile_weights(tile_size: int, overlap: int, blend: str, first_row: bool, last_row: bool,
                 first_col: bool, last_col: bool) -> np.ndarray:
    """2-D float32 blending weights of one tile (outer product of the row and column windows),
    floored at :data:`WEIGHT_FLOOR` for the tapered blends."""
    w = np.outer(blend_window(tile_size, overlap, blend, first_row, last_row),
                 blend_window(tile_size, overlap, blend, first_col, last_col))
    if blend != "none":
        w = np.maximum(w, WEIGHT_FLOOR)
    return w.astype(np.float32)

"""The validation split (pure): which candidate windows go to validation, by spatial units.

Candidate windows ``(raster, row_off, col_off)`` are grouped into *units* that go to
validation whole, so no validation chip has a training chip of the same ground beside it:

* **square blocks** of ``k * tile`` pixels, ``k`` the largest of :data:`BLOCK_TILES` that gives
  at least ``max(10, 1 / val_fraction)`` units (a window belongs to the block of its top-left
  pixel). Big blocks keep the ring of dropped overlapping training windows small (measured at
  stride = tile/2: ~2-4 % of windows on 4000-10000 px rasters, against 9-16 % with blocks of
  4 strides); enough blocks keep the fraction close.
* **whole rasters**, when every raster is smaller than the largest block (patches, small
  scenes): a raster smaller than a block is one unit anyway, and it is not cut into smaller
  blocks as long as whole rasters come within twice the asked fraction (six 120 px patches at
  10 %: one patch, 17 %, rather than single chips beside training chips of the same patch).

Units are drawn in seeded random order; a unit is taken when it brings the validation count
closer to ``val_fraction`` of the windows, at least one unit is taken when there are two or
more, and at least one unit always stays for training. When the result is off the asked
fraction (by more than 2 points or a quarter of it) :meth:`SplitResult.warning` says what was
done; once the chips are read, :meth:`SplitResult.kept_warning` says when those kept miss it
although the windows met it (the validation blocks fell in a gap of the data). Finally a training window that overlaps any validation window is dropped
(``val_overlap``), so no training chip shares a pixel with a validation chip.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: Validation block sides tried, in tiles, largest first.
BLOCK_TILES = (8, 6, 4, 3, 2, 1)

Candidate = tuple[int, int, int]  # (raster index, row_off, col_off)
UnitKey = tuple[int, int, int]    # (raster index, block row, block col)


@dataclass(frozen=True)
class SplitResult:
    """What the split did: a label per candidate window and how it got there."""

    labels: tuple[str, ...]  # "train", "val" or "val_overlap", one per candidate
    unit: str                # "raster", "block" or "none" (no split)
    block: int               # block side in pixels (0 when there is no split)
    units: int               # units the candidates fell into
    val_units: int           # units set aside for validation
    asked: float             # val_fraction asked

    @property
    def candidates(self) -> int:
        return len(self.labels)

    @property
    def val_windows(self) -> int:
        return self.labels.count("val")

    @property
    def achieved(self) -> float:
        """Validation windows over candidate windows."""
        return self.val_windows / self.candidates if self.candidates else 0.0

    def describe(self) -> str:
        """``1 of 6 rasters = 17 % of the chip windows (asked 10 %)``."""
        if self.asked <= 0:
            return "none (--val-fraction 0)"
        if self.val_units == 0:
            return (f"none: {self.candidates} chip window(s) in {self.units} unit(s) cannot be split "
                    f"(asked {_pct(self.asked)})")
        what = "rasters" if self.unit == "raster" else f"blocks of {self.block} px"
        return (f"{self.val_units} of {self.units} {what} = {_pct(self.achieved)} of the chip windows "
                f"(asked {_pct(self.asked)})")

    def warning(self) -> Optional[str]:
        """A sentence when the asked fraction could not be met, else None."""
        if self.asked <= 0 or not self.candidates:
            return None
        if self.val_units == 0:
            return (f"no validation chips: {self.describe()}; give more or larger rasters, a smaller "
                    "--tile-size, or --val-fraction 0")
        if abs(self.achieved - self.asked) <= _tolerance(self.asked):
            return None
        why = ("a whole raster is the smallest validation unit when rasters are smaller than a block"
               if self.unit == "raster" else "too few blocks to come closer")
        return f"validation is {self.describe()}: {why}"

    def describe_kept(self, train: int, val: int) -> str:
        """:meth:`describe` plus what was kept of it, which can differ (a validation block in a gap of
        the data): ``1 of 9 blocks = 11 % of the chip windows (asked 10 %); kept 0 validation of
        216 chips = 0 %``."""
        if self.asked <= 0 or self.val_units == 0:
            return self.describe()
        kept = train + val
        share = f" = {_pct(val / kept)}" if kept else ""
        return f"{self.describe()}; kept {val} validation of {kept} chips{share}"

    def kept_warning(self, train: int, val: int) -> Optional[str]:
        """A sentence when the chips kept (those with enough valid pixels) miss the asked fraction
        although the windows set aside met it — or when none of them was kept; else None (a miss
        the windows already had is :meth:`warning`'s)."""
        if self.asked <= 0 or self.val_units == 0 or train + val == 0:
            return None
        share = val / (train + val)
        if val and (self.warning() is not None or abs(share - self.asked) <= _tolerance(self.asked)):
            return None
        set_aside = (f"{self.val_units} of {self.units} {'rasters' if self.unit == 'raster' else 'blocks'} "
                     f"set aside ({_pct(self.achieved)} of the chip windows)")
        if not val:
            return (f"no validation chips kept (asked {_pct(self.asked)}): none in the {set_aside} had enough "
                    f"valid pixels (--min-valid); {train} training chips")
        fewer = "fewer" if share < self.achieved else "more"
        return (f"validation keeps {val} of {train + val} chips = {_pct(share)} (asked {_pct(self.asked)}): "
                f"{fewer} chips in the {set_aside} than elsewhere had enough valid pixels (--min-valid)")


def _tolerance(asked: float) -> float:
    """How far a validation share may be from the asked fraction without a warning."""
    return max(0.02, 0.25 * asked)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def plan_split(candidates: Sequence[Candidate], tile_size: int, val_fraction: float, seed: int, *,
               min_blocks: Optional[int] = None) -> SplitResult:
    """Label candidate windows train / val / val_overlap (see the module docstring); deterministic
    for a given ``seed``."""
    n = len(candidates)
    if val_fraction <= 0 or n == 0:
        return SplitResult(("train",) * n, "none", 0, 0, 0, float(max(val_fraction, 0.0)))
    if min_blocks is None:
        min_blocks = max(10, math.ceil(1.0 / val_fraction))
    keys, block, unit = _choose_units(candidates, tile_size, val_fraction, min_blocks)
    sizes: dict[UnitKey, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    val_units = _draw_units(sizes, val_fraction * n, n, seed)
    labels = _drop_overlaps(candidates, ["val" if key in val_units else "train" for key in keys], tile_size)
    return SplitResult(tuple(labels), unit, block, len(sizes), len(val_units), float(val_fraction))


def spatial_split(candidates: Sequence[Candidate], tile_size: int, stride: int, val_fraction: float, seed: int,
                  *, min_blocks: Optional[int] = None) -> tuple[list[str], int]:
    """Labels and block side of :func:`plan_split` (``stride`` is implied by the offsets)."""
    result = plan_split(candidates, tile_size, val_fraction, seed, min_blocks=min_blocks)
    return list(result.labels), result.block


def _unit_keys(candidates: Sequence[Candidate], block: int) -> list[UnitKey]:
    return [(ri, r // block, c // block) for ri, r, c in candidates]


def _choose_units(candidates: Sequence[Candidate], tile_size: int, val_fraction: float,
                  min_blocks: int) -> tuple[list[UnitKey], int, str]:
    """The coarsest unit scheme that gives enough units (see the module docstring)."""
    per_raster = Counter(ri for ri, _, _ in candidates)
    for k in BLOCK_TILES:
        block = k * tile_size
        keys = _unit_keys(candidates, block)
        n_units = len(set(keys))
        whole = n_units == len(per_raster)  # every raster fits in one block
        if n_units >= min_blocks:
            return keys, block, "raster" if whole else "block"
        if k == BLOCK_TILES[0] and whole and len(per_raster) >= 2 \
                and min(per_raster.values()) / len(candidates) <= 2 * val_fraction:
            return keys, block, "raster"
    return keys, block, "block"


def _draw_units(sizes: dict[UnitKey, int], target: float, n: int, seed: int) -> set[UnitKey]:
    """Units for validation: seeded order, each taken when it brings the count closer to
    ``target``; at least one when two or more units exist; never all of them."""
    order = sorted(sizes)
    if len(order) < 2:
        return set()
    rng = np.random.default_rng(seed)
    chosen: set[UnitKey] = set()
    n_val = 0
    for i in rng.permutation(len(order)):
        key = order[i]
        size = sizes[key]
        if n - n_val - size <= 0:
            continue  # keep at least one training unit
        if abs(n_val + size - target) < abs(n_val - target):
            chosen.add(key)
            n_val += size
    if not chosen:  # the smallest unit, first in the seeded order among equals
        ranked = sorted(rng.permutation(len(order)), key=lambda i: sizes[order[i]])
        chosen.add(order[ranked[0]])
    return chosen


def _drop_overlaps(candidates: Sequence[Candidate], labels: list[str], tile_size: int) -> list[str]:
    """The labels with training windows that share pixels with a validation window (stride <
    tile) relabelled ``val_overlap``."""
    buckets: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for (ri, r, c), lab in zip(candidates, labels):
        if lab == "val":
            buckets.setdefault((ri, r // tile_size, c // tile_size), []).append((r, c))
    out = list(labels)
    if not buckets:
        return out
    for i, ((ri, r, c), lab) in enumerate(zip(candidates, labels)):
        if lab != "train":
            continue
        br, bc = r // tile_size, c // tile_size
        if any(abs(r - vr) < tile_size and abs(c - vc) < tile_size
               for dr in (-1, 0, 1) for dc in (-1, 0, 1)
               for vr, vc in buckets.get((ri, br + dr, bc + dc), ())):
            out[i] = "val_overlap"
    return out

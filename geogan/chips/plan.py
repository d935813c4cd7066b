"""The export plan (pure): options, each domain's kind and units, chip windows, AOI filter,
validation split and paired matching — decided from :class:`~geogan.chips.sources.Source`
descriptions and pixel samples before any chip is read, so it is tested without files.

Window grid (:func:`chip_windows`): windows sit on the raster's own pixel grid,
``n = ceil((length - tile) / stride) + 1`` per axis, offsets ``i * stride`` except the last,
which is moved back to ``length - tile`` so the raster edge is covered without padding or fake
data (like TorchGeo's ``tile_to_chips``). Rasters smaller than one tile are skipped with a
warning when another raster of the same domain is big enough; when none is, the plan fails
naming them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..bands import (CLASS_MAP_MAX_VALUES, KINDS, SAR_UNITS, check_stated_units, doubt_stated_units, explain_kind,
                     infer_units, units_name)
from ..errors import ConfigError, InputError, RasterError, describe
from ..tiling import grid_offsets
from .aoi import AOI, grid_in_aoi
from .sources import Source, SourceSample
from .split import SplitResult, plan_split

log = logging.getLogger(__name__)

MIN_TILE_SIZE = 16


def chip_windows(height: int, width: int, tile_size: int, stride: int) -> list:
    """Row-major :class:`rasterio.windows.Window` list covering a ``height`` × ``width`` grid."""
    from rasterio.windows import Window

    rows = grid_offsets(height, tile_size, stride)
    cols = grid_offsets(width, tile_size, stride)
    return [Window(c, r, tile_size, tile_size) for r in rows for c in cols]


# ------------------------------------------------------------------------------- options

@dataclass(frozen=True)
class ExportOptions:
    """The numeric options of an export, checked on construction (one-line ConfigError)."""

    tile_size: int = 256
    stride: Optional[int] = None  # None: tile_size (no overlap)
    min_valid: float = 0.95
    val_fraction: float = 0.1
    paired: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stride is None:
            object.__setattr__(self, "stride", self.tile_size)
        if not isinstance(self.tile_size, (int, np.integer)) or self.tile_size < MIN_TILE_SIZE:
            raise ConfigError(f"--tile-size {self.tile_size}: must be an integer >= {MIN_TILE_SIZE}")
        if not isinstance(self.stride, (int, np.integer)) or self.stride <= 0:
            raise ConfigError(f"--stride {self.stride}: must be a positive integer")
        if self.stride > self.tile_size:
            raise ConfigError(f"--stride {self.stride}: must not exceed --tile-size {self.tile_size} "
                              "(gaps between chips)")
        if not (0.0 <= float(self.min_valid) <= 1.0):
            raise ConfigError(f"--min-valid {self.min_valid}: must be within [0, 1]")
        if not (0.0 <= float(self.val_fraction) < 1.0):
            raise ConfigError(f"--val-fraction {self.val_fraction}: must be within [0, 1)")


def check_stated(domain: str, kind: Optional[str], units: Optional[str]) -> None:
    """A stated kind or SAR units must be one geogan knows."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind-{domain} {kind!r}: unknown kind (expected one of {', '.join(KINDS)})")
    if units is not None and units not in SAR_UNITS:
        raise ConfigError(f"--units-{domain} {units!r}: unknown SAR units (expected one of {', '.join(SAR_UNITS)})")


# ------------------------------------------------------------------------------- kinds, units

@dataclass(frozen=True)
class DomainChoice:
    """A domain's kind and SAR units, why, and how its rasters are resampled (stacking a
    multi-file scene; warping B onto A's grid): nearest only for class maps."""

    kind: str
    kind_reason: str
    units: Optional[str]
    units_reason: Optional[str]
    resampling: str

    def describe(self) -> str:
        text = f"kind {self.kind} ({self.kind_reason})"
        if self.units:
            text += f", units {self.units} ({self.units_reason})"
        return text


def resampling_for(kind: str, dtype: str, values: Optional[np.ndarray] = None) -> str:
    """Nearest neighbour for class maps — generic integer rasters with at most
    :data:`~geogan.bands.CLASS_MAP_MAX_VALUES` distinct values in the sample (all of them when
    there is no sample) — and bilinear for everything else, e.g. two uint16 reflectance bands."""
    if kind != "generic" or np.dtype(dtype).kind not in "ui":
        return "bilinear"
    if values is not None and values.size and np.unique(values).size > CLASS_MAP_MAX_VALUES:
        return "bilinear"
    return "nearest"


def choose_domain(domain: str, sources: Sequence[Source], samples: Sequence[SourceSample],
                  kind: Optional[str] = None, units: Optional[str] = None) -> DomainChoice:
    """The kind (stated, or :func:`~geogan.bands.explain_kind` on names and values) and, for SAR,
    the units (stated and checked against every sample, or :func:`~geogan.bands.infer_units`).
    Units the values leave open, or stated ones they make unlikely, are logged as warnings."""
    check_stated(domain, kind, units)
    first = sources[0]
    values = np.concatenate([s.values for s in samples]) if samples else None
    if kind is not None:
        kind_reason = f"stated with --kind-{domain}"
    else:
        names = first.file_names + [d for d in first.descriptions if d and not any(d in n for n in first.file_names)]
        image = samples[0].image if samples else None
        kind, kind_reason = explain_kind(first.dtype, len(first.bands), values, names=names, image=image,
                                         file_count=first.count)
    if kind != "sar":
        if units is not None:
            raise ConfigError(f"--units-{domain} {units}: units are for SAR, but domain {domain} "
                              f"({describe(first.scene.label)}) is {kind} ({kind_reason}); add --kind-{domain} sar "
                              "if it is SAR")
        return DomainChoice(kind, kind_reason, None, None, resampling_for(kind, first.dtype, values))
    if units is not None:
        for sample in samples:
            problem = check_stated_units(units, sample.values)
            if problem:
                raise ConfigError(f"{describe(sample.label)}: {problem}")
            doubt = doubt_stated_units(units, sample.values)
            if doubt:
                log.warning("%s: %s (--units-%s)", describe(sample.label), doubt, domain)
        units_reason = f"stated with --units-{domain}"
    else:
        guess = infer_units(values, first.dtype)
        units, units_reason = guess.units, guess.reason
        if not guess.sure:
            other = guess.alternative or "db"
            log.warning("domain %s (%s): SAR units not stated; read as %s (%s); if they are %s, state --units-%s %s",
                        domain, names_of(sources), units_name(units), units_reason, units_name(other), domain, other)
    return DomainChoice(kind, kind_reason, units, units_reason, "bilinear")


# ------------------------------------------------------------------------------- windows

@dataclass(frozen=True)
class PlannedChip:
    """One chip to read: its raster (index into the domain's sources), window and split."""

    raster: int
    window: Any  # rasterio.windows.Window
    split: str   # "train" or "val"

    @property
    def key(self) -> tuple[int, int]:
        return int(self.window.row_off), int(self.window.col_off)


@dataclass(frozen=True)
class DomainPlan:
    """The chips of one domain (paired: of both), and what was left out before reading."""

    chips: tuple[PlannedChip, ...]
    small: tuple[int, ...]      # rasters smaller than one tile
    outside_aoi: int            # windows outside the AOI(s)
    split: SplitResult
    warnings: tuple[str, ...] = ()

    @property
    def val_overlap(self) -> int:
        return self.split.labels.count("val_overlap")

    def by_raster(self) -> list[tuple[int, list[PlannedChip]]]:
        """The chips grouped by raster, rasters in order (each raster is opened once)."""
        groups: dict[int, list[PlannedChip]] = {}
        for chip in self.chips:
            groups.setdefault(chip.raster, []).append(chip)
        return sorted(groups.items())


@dataclass(frozen=True)
class ExportPlan:
    """Everything decided before reading: options and each domain's chips. Paired, ``b`` holds
    the same chips as ``a`` and ``partners[i]`` is the B raster read for A raster ``i``."""

    options: ExportOptions
    a: DomainPlan
    b: DomainPlan
    partners: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        """Chip windows to read (a pair counts once)."""
        return len(self.a.chips) if self.options.paired else len(self.a.chips) + len(self.b.chips)

    def domain(self, d: str) -> DomainPlan:
        return self.a if d == "a" else self.b


def plan_export(sources: dict[str, list[Source]], options: ExportOptions,
                regions: dict[str, Optional[AOI]]) -> ExportPlan:
    """The chips of both domains. Unpaired, A is split with ``seed`` and B with ``seed + 1``;
    paired, A's windows (filtered by both AOIs) drive both sides and B follows A's split."""
    if options.paired:
        partners = match_pairs(sources["a"], sources["b"])
        used = [r for r in (regions.get("a"), regions.get("b")) if r is not None]
        a = plan_domain("a", sources["a"], options, used, options.seed)
        b = DomainPlan(chips=a.chips, small=(), outside_aoi=a.outside_aoi, split=a.split)
        return ExportPlan(options, a, b, partners)
    a = plan_domain("a", sources["a"], options, [r for r in [regions.get("a")] if r is not None], options.seed)
    b = plan_domain("b", sources["b"], options, [r for r in [regions.get("b")] if r is not None], options.seed + 1)
    return ExportPlan(options, a, b)


def plan_domain(domain: str, sources: Sequence[Source], options: ExportOptions, regions: Sequence[AOI],
                seed: int) -> DomainPlan:
    """Windows of every raster, less those outside the AOI(s), split into train and val."""
    from rasterio.windows import Window

    tile = options.tile_size
    candidates: list[tuple[int, Any]] = []
    small: list[int] = []
    outside = 0
    hits = [0] * len(regions)
    for ri, src in enumerate(sources):
        rows = grid_offsets(src.height, tile, options.stride)
        cols = grid_offsets(src.width, tile, options.stride)
        if not len(rows) or not len(cols):
            small.append(ri)
            continue
        keep = np.ones((len(rows), len(cols)), bool)
        for k, region in enumerate(regions):
            inside = grid_in_aoi(region, src.crs, src.transform, src.height, src.width, rows, cols, tile)
            hits[k] += int(inside.sum())
            keep &= inside
        outside += int((~keep).sum())
        # Window objects only for the windows kept (an AOI may keep a handful of a million)
        candidates.extend((ri, Window(int(cols[c]), int(rows[r]), tile, tile)) for r, c in zip(*np.nonzero(keep)))
    if len(small) == len(sources):
        raise RasterError(f"{names_of(sources)}: smaller than one {tile}x{tile} tile (domain {domain}); "
                          "use a smaller --tile-size")
    if regions and not candidates:
        raise InputError(_aoi_miss(domain, sources, regions, hits))
    split = plan_split([(ri, int(w.row_off), int(w.col_off)) for ri, w in candidates], tile,
                       options.val_fraction, seed)
    chips = tuple(PlannedChip(ri, w, lab) for (ri, w), lab in zip(candidates, split.labels) if lab != "val_overlap")
    warnings = [_small_warning(sources, small, tile)] if small else []
    if split.warning():
        warnings.append(f"domain {domain}: {split.warning()}")
    return DomainPlan(chips, tuple(small), outside, split, tuple(warnings))


def _small_warning(sources: Sequence[Source], small: Sequence[int], tile: int) -> str:
    if len(small) <= 3:
        return f"{names_of([sources[i] for i in small])}: smaller than one {tile}x{tile} tile; skipped"
    return (f"{len(small)} rasters are smaller than one {tile}x{tile} tile and skipped "
            f"({names_of([sources[i] for i in small])})")


def _aoi_miss(domain: str, sources: Sequence[Source], regions: Sequence[AOI], hits: Sequence[int]) -> str:
    for region, hit in zip(regions, hits):
        if hit == 0:
            return f"AOI {region.source}: does not overlap any domain {domain} raster ({names_of(sources)})"
    return (f"AOIs {' and '.join(r.source for r in regions)} do not overlap each other on any domain {domain} "
            f"raster ({names_of(sources)})")


def names_of(sources: Sequence[Source], shown: int = 3) -> str:
    """``'a.tif', 'b.tif'`` — the first few rasters' names, and how many more."""
    names = ", ".join(describe(s.label) for s in sources[:shown])
    return names + (f" and {len(sources) - shown} more" if len(sources) > shown else "")


# ------------------------------------------------------------------------------- pairs

def match_pairs(a: Sequence[Source], b: Sequence[Source]) -> tuple[int, ...]:
    """B raster index for each A raster (one each, in order, or one for all); each pair must overlap."""
    check_pair_counts(len(a), len(b))
    partners = tuple(i if len(b) > 1 else 0 for i in range(len(a)))
    for sa, i in zip(a, partners):
        _check_overlap(sa, b[i])
    return partners


def check_pair_counts(n_a: int, n_b: int) -> None:
    if n_b not in (1, n_a):
        raise ConfigError(
            f"--paired needs one B raster per A raster (paired in order) or a single B raster for all; "
            f"got {n_a} A and {n_b} B")


def _check_overlap(a: Source, b: Source) -> None:
    from rasterio.coords import disjoint_bounds
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    a_bounds = tuple(array_bounds(a.height, a.width, a.transform))
    b_bounds = array_bounds(b.height, b.width, b.transform)
    try:
        b_in_a = transform_bounds(b.crs, a.crs, *b_bounds, densify_pts=21)
    except Exception:
        return  # cannot tell; the per-chip validity test will catch a real miss
    if not all(np.isfinite(b_in_a)) or disjoint_bounds(a_bounds, b_in_a):
        raise RasterError(f"{describe(b.label)}: does not overlap its paired A raster {describe(a.label)}")

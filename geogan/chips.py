"""Chip export: cut source rasters into georeferenced training chips plus a metadata file.

``export_chips(a, b, out)`` writes ``out/train_a/``, ``out/train_b/``, ``out/val_a/``,
``out/val_b/`` (GeoTIFF chips) and ``out/geogan_chips.json`` (the chips contract that
training reads back with :func:`read_chips_metadata`). Choices made here, in one place:

* **Window grid** (:func:`grid_offsets`, :func:`chip_windows`): windows sit on the raster's
  own pixel grid, ``n = ceil((length - tile) / stride) + 1`` per axis, offsets ``i * stride``
  except the last, which is moved back to ``length - tile`` so the raster edge is covered
  without padding or fake data (like TorchGeo's ``tile_to_chips``).
* **Rasters smaller than one tile** are skipped with a warning when another raster of the
  same domain is big enough; when none is, the export fails naming the file(s).
* **Validity**: a chip is kept when at least ``min_valid`` of its pixels are valid in every
  chosen band (:func:`geogan.raster.valid_mask`: GDAL mask for nodata / internal mask /
  alpha, finite, SAR > 0), and never when it has no valid pixel at all.
* **Validation split by spatial blocks** (:func:`spatial_split`): candidate windows (those
  inside the AOI, before pixels are read, so the split is decided once and chips stream
  through) are grouped into square blocks of ``k * tile_size`` pixels (``k`` = 8, shrunk to
  6, 4, 3, 2, 1 until a domain has at least ``max(10, 1 / val_fraction)`` blocks); blocks are drawn
  in seeded random order until ``val_fraction`` of the candidates are in validation (a
  block that would overshoot the target by more than leaving it out undershoots is passed
  over; at least one training block always remains). A chip
  belongs to the block holding its top-left pixel; a training window that overlaps any
  validation window is dropped (counted as ``val_overlap``), so no training chip shares a
  pixel with a validation chip. Unpaired, domain A is split with ``seed`` and B with
  ``seed + 1``; paired, B follows A's split.
* **Paired mode**: B is warped onto each A raster's exact grid with a
  :class:`rasterio.vrt.WarpedVRT` read window by window (bounded memory) — nearest
  neighbour when B's kind is ``generic`` with an integer dtype (class maps), bilinear
  otherwise. B chips carry A's grid, B's nodata, and an internal mask from the warp's
  alpha (B's own mask plus its footprint). Give one B raster per A raster (paired in
  order) or a single B raster for every A raster.
* **Statistics** (:class:`geogan.bands.StatsAccumulator`) are over the valid pixels of
  every kept chip of the domain, train AND validation, streamed as chips are written
  (overlapping chips count shared pixels once per chip).
* **AOI**: GeoJSON (FeatureCollection / Feature / geometry; EPSG:4326 unless it has a
  legacy ``"crs"`` member) or WKT (EPSG:4326 unless ``aoi_crs`` is given), from a file or a
  literal string, reprojected to each raster's CRS with pyproj; a chip is written only if
  its footprint overlaps the AOI (touching along an edge is not enough).
* **Replacing an export**: the new export is built in a hidden sibling directory and
  swapped in when complete; a previous geogan chips export in ``out`` is replaced, any
  other non-empty ``out`` is refused. An interrupted or cancelled run leaves ``out`` as it
  was and no metadata file.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .bands import KINDS, DomainSpec, StatsAccumulator, infer_kind
from .errors import (
    BandMismatchError,
    ConfigError,
    InputError,
    InputNotFoundError,
    OutputError,
    RasterError,
    describe,
)
from .progress import ProgressLike, as_progress, check_cancelled
from .tiling import grid_offsets
from .raster import (
    SUPPORTED_DTYPES,
    atomic_write_bytes,
    gtiff_profile,
    open_raster,
    parse_bands,
    read_window,
    resolution,
    valid_mask,
)

log = logging.getLogger(__name__)

FORMAT = "geogan-chips"
FORMAT_VERSION = 1
METADATA_NAME = "geogan_chips.json"
SPLIT_DIRS = ("train_a", "train_b", "val_a", "val_b")
MIN_TILE_SIZE = 16
#: Compression of chip files (None: ZSTD level 1 + predictor when this GDAL has it, else
#: DEFLATE). Measured on 256×256×4 uint16 chips (tools/bench_chips.py): zstd-1 writes as
#: fast as no compression (less to write) at the size of deflate, which is 3× slower.
CHIP_COMPRESS: Optional[str] = None

PathLike = Union[str, "os.PathLike[str]"]
Paths = Union[PathLike, Sequence[PathLike]]


# --------------------------------------------------------------------------------------
# Pure window-grid and split maths
# --------------------------------------------------------------------------------------

def chip_windows(height: int, width: int, tile_size: int, stride: int) -> list:
    """Row-major :class:`rasterio.windows.Window` list covering a ``height`` × ``width`` grid."""
    from rasterio.windows import Window

    rows = grid_offsets(height, tile_size, stride)
    cols = grid_offsets(width, tile_size, stride)
    return [Window(c, r, tile_size, tile_size) for r in rows for c in cols]


#: Validation block sides tried, in tiles, largest first (see :func:`spatial_split`).
BLOCK_TILES = (8, 6, 4, 3, 2, 1)


def spatial_split(candidates: Sequence[tuple[int, int, int]], tile_size: int, stride: int,
                  val_fraction: float, seed: int, *, min_blocks: Optional[int] = None) -> tuple[list[str], int]:
    """Label candidate windows ``(raster_index, row_off, col_off)`` train / val / val_overlap.

    Returns the labels and the block side in pixels (0 when there is no split). See the
    module docstring for the rule; pure and deterministic for a given ``seed``. Blocks are
    the largest of :data:`BLOCK_TILES` tiles that still give ``min_blocks`` blocks (default
    ``max(10, 1 / val_fraction)``): big blocks keep the ring of dropped overlapping training
    windows small (measured at stride = tile/2: ~2-4 % of windows on 4000-10000 px rasters,
    against 9-16 % with blocks of 4 strides), enough blocks keep the fraction close.
    """
    n = len(candidates)
    if val_fraction <= 0 or n == 0:
        return ["train"] * n, 0
    if min_blocks is None:
        min_blocks = max(10, math.ceil(1.0 / val_fraction))
    for k in BLOCK_TILES:
        block = k * tile_size
        keys = [(ri, r // block, c // block) for ri, r, c in candidates]
        if len(set(keys)) >= min_blocks:
            break
    sizes: dict[tuple[int, int, int], int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    order = sorted(sizes)
    rng = np.random.default_rng(seed)
    target = val_fraction * n
    val_blocks: set[tuple[int, int, int]] = set()
    n_val = 0
    for i in rng.permutation(len(order)):
        if n_val >= target:
            break
        key = order[i]
        size = sizes[key]
        if n - n_val - size <= 0:
            continue  # keep at least one training block
        if n_val and (n_val + size - target) > (target - n_val):
            continue  # this block would overshoot more than leaving it out undershoots; try a smaller one
        val_blocks.add(key)
        n_val += size
    labels = ["val" if key in val_blocks else "train" for key in keys]
    # Drop training windows that share pixels with a validation window (stride < tile).
    buckets: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for (ri, r, c), lab in zip(candidates, labels):
        if lab == "val":
            buckets.setdefault((ri, r // tile_size, c // tile_size), []).append((r, c))
    if buckets:
        for i, ((ri, r, c), lab) in enumerate(zip(candidates, labels)):
            if lab != "train":
                continue
            br, bc = r // tile_size, c // tile_size
            hit = any(
                abs(r - vr) < tile_size and abs(c - vc) < tile_size
                for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                for vr, vc in buckets.get((ri, br + dr, bc + dc), ())
            )
            if hit:
                labels[i] = "val_overlap"
    return labels, block


# --------------------------------------------------------------------------------------
# AOI
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AOI:
    """A polygonal area of interest in its own CRS."""

    geometry: Any
    crs: Any  # pyproj.CRS
    source: str

    def in_crs(self, dst_crs: Any, bounds: Optional[tuple[float, float, float, float]] = None):
        """The AOI reprojected to ``dst_crs`` (clipped first to ``bounds`` given in ``dst_crs``)."""
        import shapely
        from pyproj import CRS, Transformer

        dst = CRS.from_user_input(dst_crs.to_wkt() if hasattr(dst_crs, "to_wkt") else dst_crs)
        geom = self.geometry
        if dst == self.crs:
            return geom
        if bounds is not None:
            # Clip in the AOI's CRS to the raster's footprint first, so a continent-sized AOI
            # is never pushed through a projection outside its area of use.
            back = Transformer.from_crs(dst, self.crs, always_xy=True)
            left, bottom, right, top = back.transform_bounds(*bounds, densify_pts=21)
            if not all(np.isfinite([left, bottom, right, top])):
                return shapely.Polygon()
            pad_x, pad_y = (right - left) * 0.05, (top - bottom) * 0.05
            geom = geom.intersection(shapely.box(left - pad_x, bottom - pad_y, right + pad_x, top + pad_y))
            if geom.is_empty:
                return geom
        minx, miny, maxx, maxy = geom.bounds
        seg = max(maxx - minx, maxy - miny) / 64.0
        if seg > 0:
            geom = shapely.segmentize(geom, seg)
        fwd = Transformer.from_crs(self.crs, dst, always_xy=True)
        # Vectorised over all vertices at once (shapely.ops.transform is deprecated in shapely 2.1).
        out = shapely.transform(geom, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
        if not out.is_valid:
            out = shapely.make_valid(out)
        return out


def load_aoi(aoi: Any, aoi_crs: Any = None) -> AOI:
    """Read an AOI: a GeoJSON or WKT file path, a literal GeoJSON/WKT string, a GeoJSON dict or a
    shapely geometry. GeoJSON is EPSG:4326 unless it has a legacy ``"crs"`` member; WKT and
    shapely geometries are ``aoi_crs`` (default EPSG:4326). Raises :class:`InputError`."""
    import shapely
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    source = _aoi_label(aoi)
    crs_hint = None
    if hasattr(aoi, "geom_type"):
        geom = aoi
    elif isinstance(aoi, dict):
        geom, crs_hint = _geojson_geometry(aoi, source)
    else:
        text = None
        p = Path(str(aoi)) if isinstance(aoi, (str, os.PathLike)) else None
        if p is not None and len(str(aoi)) < 4096 and not _looks_literal(str(aoi)):
            if not p.exists():
                raise InputNotFoundError(f"AOI {source}: no such file")
            if p.is_dir():
                raise InputError(f"AOI {source}: is a directory, not a GeoJSON or WKT file")
            try:
                text = p.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"AOI {source}: unreadable ({exc.__class__.__name__})") from None
        elif isinstance(aoi, str):
            text = aoi
        else:
            raise InputError(f"AOI {source}: expected a file, GeoJSON, WKT or shapely geometry")
        stripped = text.strip()
        if not stripped:
            raise InputError(f"AOI {source}: is empty")
        if stripped.startswith("{"):
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InputError(f"AOI {source}: not valid GeoJSON ({exc.msg} at line {exc.lineno})") from None
            geom, crs_hint = _geojson_geometry(obj, source)
        else:
            try:
                geom = shapely.from_wkt(stripped)
            except Exception:  # shapely raises GEOSException / ShapelyError variants
                raise InputError(f"AOI {source}: neither GeoJSON nor valid WKT") from None
    if crs_hint is not None:
        crs_in = crs_hint
    else:
        crs_in = aoi_crs if aoi_crs is not None else "EPSG:4326"
    try:
        crs = CRS.from_user_input(crs_in)
    except CRSError:
        raise InputError(f"AOI {source}: unknown CRS {crs_in!r}") from None
    geom = _polygonal(geom, source)
    return AOI(geometry=geom, crs=crs, source=source)


def _looks_literal(text: str) -> bool:
    """GeoJSON (``{...}``) or WKT (``WORD (...`` / ``WORD EMPTY``) rather than a file name."""
    import re

    head = text.lstrip()[:64]
    return head.startswith("{") or re.match(r"(?i)^(SRID=\d+;)?[A-Z]+(\s+(Z|M|ZM))?\s*(\(|EMPTY\b)", head) is not None


def _aoi_label(aoi: Any) -> str:
    if isinstance(aoi, os.PathLike) or (isinstance(aoi, str) and not _looks_literal(aoi)):
        return describe(aoi)
    if isinstance(aoi, str):
        s = " ".join(aoi.split())
        return describe(s if len(s) <= 60 else s[:57] + "...")
    return f"<{type(aoi).__name__}>"


def _geojson_geometry(obj: Any, source: str):
    import shapely
    from shapely.geometry import shape

    if not isinstance(obj, dict) or "type" not in obj:
        raise InputError(f"AOI {source}: not a GeoJSON object (no 'type')")
    crs_hint = None
    crs_member = obj.get("crs")
    if isinstance(crs_member, dict):
        props = crs_member.get("properties") or {}
        if "name" in props:
            crs_hint = str(props["name"])
        elif "code" in props:
            crs_hint = f"EPSG:{props['code']}"
    kind = obj["type"]
    try:
        if kind == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in obj.get("features") or [] if f.get("geometry")]
            if not geoms:
                raise InputError(f"AOI {source}: the FeatureCollection has no geometry")
            geom = shapely.GeometryCollection(geoms) if len(geoms) > 1 else geoms[0]
        elif kind == "Feature":
            if not obj.get("geometry"):
                raise InputError(f"AOI {source}: the Feature has no geometry")
            geom = shape(obj["geometry"])
        else:
            geom = shape(obj)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"AOI {source}: invalid GeoJSON geometry ({exc})") from None
    return geom, crs_hint


def _polygonal(geom: Any, source: str):
    import shapely

    parts = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if g.geom_type in ("Polygon", "MultiPolygon"):
            parts.append(g)
        elif g.geom_type == "GeometryCollection":
            stack.extend(g.geoms)
        else:
            raise InputError(f"AOI {source}: is a {g.geom_type}, not a polygon")
    if not parts:
        raise InputError(f"AOI {source}: is empty")
    merged = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in parts])
    if merged.is_empty or merged.area == 0:
        raise InputError(f"AOI {source}: is empty (zero area)")
    return merged


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------

def read_chips_metadata(directory: PathLike) -> dict:
    """Read and validate ``directory/geogan_chips.json``; raise :class:`InputError` naming the
    directory when it is not a geogan chips export (or a newer format)."""
    d = Path(directory)
    if not d.exists():
        raise InputNotFoundError(f"{describe(d)}: no such directory")
    if not d.is_dir():
        raise InputError(f"{describe(d)}: is a file, not a chips directory")
    meta_path = d / METADATA_NAME
    if not meta_path.is_file():
        raise InputError(f"{describe(d)}: not a geogan chips export (no {METADATA_NAME}; run 'geogan chips' first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{describe(d)}: unreadable {METADATA_NAME} ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{describe(d)}: {METADATA_NAME} is not a geogan chips metadata file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise InputError(f"{describe(d)}: {METADATA_NAME} has no valid format_version")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{describe(d)}: chips format version {version} is newer than this geogan reads ({FORMAT_VERSION}); upgrade geogan"
        )
    domains = meta.get("domains")
    if not isinstance(domains, dict) or set(domains) != {"a", "b"}:
        raise InputError(f"{describe(d)}: {METADATA_NAME} must describe domains 'a' and 'b'")
    for key in ("a", "b"):
        dom = domains[key]
        missing = [k for k in ("kind", "bands", "dtype", "stats", "chips") if k not in dom]
        if missing:
            raise InputError(f"{describe(d)}: domain {key!r} in {METADATA_NAME} lacks {', '.join(missing)}")
    for sub in SPLIT_DIRS:
        if not (d / sub).is_dir():
            raise InputError(f"{describe(d)}: chips export is incomplete (no {sub}/ directory)")
    return meta


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChipSummary:
    """What :func:`export_chips` wrote.

    ``counts[d]`` = {"train": n, "val": m}; ``skipped[d]`` = chips not written and why:
    ``invalid`` (below min_valid), ``outside_aoi``, ``val_overlap`` (training windows that
    would overlap a validation chip), and in paired mode ``partner_invalid`` (the other
    side failed min_valid). ``small_rasters[d]`` lists rasters skipped for being smaller
    than one tile.
    """

    out_dir: Path
    metadata_path: Path
    paired: bool
    counts: dict[str, dict[str, int]]
    skipped: dict[str, dict[str, int]]
    domains: dict[str, DomainSpec]
    sources: dict[str, list[Path]]
    small_rasters: dict[str, list[Path]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A short human summary (the CLI prints it)."""
        out = []
        for d in ("a", "b"):
            spec = self.domains[d]
            skipped = ", ".join(f"{v} {k}" for k, v in self.skipped[d].items() if v) or "none"
            out.append(
                f"{d}: {spec.kind} bands {list(spec.bands)} {spec.dtype}: "
                f"{self.counts[d]['train']} train + {self.counts[d]['val']} val chips (skipped: {skipped})"
            )
        out.append(f"metadata: {self.metadata_path}")
        return out


@dataclass
class _Source:
    path: Path
    name: str
    bands: list[int]
    dtype: str
    nodata: Optional[float]
    crs: Any
    transform: Any
    width: int
    height: int
    res: tuple[float, float]
    descriptions: tuple[Optional[str], ...]
    has_mask: bool
    all_valid: bool
    alpha_index: Optional[int]


def export_chips(
    a: Paths,
    b: Paths,
    out: PathLike,
    *,
    bands_a: Union[None, str, Sequence[int]] = None,
    bands_b: Union[None, str, Sequence[int]] = None,
    kind_a: Optional[str] = None,
    kind_b: Optional[str] = None,
    tile_size: int = 256,
    stride: Optional[int] = None,
    min_valid: float = 0.95,
    aoi: Any = None,
    val_fraction: float = 0.1,
    paired: bool = False,
    seed: int = 0,
    progress: ProgressLike = None,
    aoi_crs: Optional[str] = None,
) -> ChipSummary:
    """Cut the A and B rasters into training/validation chips in ``out`` (see module docstring).

    ``a``/``b``: one path or a list per domain. Returns a :class:`ChipSummary`; raises a
    :class:`GeoganError` on bad input, :class:`Cancelled` (leaving nothing) if ``progress``
    asks to stop.
    """
    import warnings

    from rasterio.errors import NodataShadowWarning

    with warnings.catch_warnings():
        # A 4-band image with nodata *and* an alpha band: GDAL's mask follows nodata, which is
        # what valid_mask wants; rasterio's warning about it would only be noise here.
        warnings.simplefilter("ignore", NodataShadowWarning)
        return _export_chips(a, b, out, bands_a=bands_a, bands_b=bands_b, kind_a=kind_a, kind_b=kind_b,
                             tile_size=tile_size, stride=stride, min_valid=min_valid, aoi=aoi,
                             val_fraction=val_fraction, paired=paired, seed=seed, progress=progress,
                             aoi_crs=aoi_crs)


def _export_chips(a: Paths, b: Paths, out: PathLike, *, bands_a, bands_b, kind_a, kind_b, tile_size, stride,
                  min_valid, aoi, val_fraction, paired, seed, progress, aoi_crs) -> ChipSummary:
    prog = as_progress(progress)
    stride = tile_size if stride is None else stride
    _check_options(tile_size, stride, min_valid, val_fraction, kind_a, kind_b)
    out_dir = Path(out)
    _check_out_dir(out_dir)  # fail fast; checked again just before writing
    paths = {"a": _as_paths(a, "a"), "b": _as_paths(b, "b")}
    if paired and len(paths["b"]) not in (1, len(paths["a"])):
        raise ConfigError(
            f"--paired needs one B raster per A raster (paired in order) or a single B raster for all; "
            f"got {len(paths['a'])} A and {len(paths['b'])} B"
        )
    sources = {
        "a": _inspect_domain(paths["a"], bands_a, "a"),
        "b": _inspect_domain(paths["b"], bands_b, "b"),
    }
    kinds = {
        "a": kind_a or _infer_domain_kind(sources["a"], tile_size),
        "b": kind_b or _infer_domain_kind(sources["b"], tile_size),
    }
    for d in ("a", "b"):
        if (kind_a, kind_b)[d == "b"] is None:
            log.info("domain %s: kind inferred as %s from %s", d, kinds[d], describe(sources[d][0].path))
    b_for_a = None
    if paired:
        b_for_a = [sources["b"][i if len(sources["b"]) > 1 else 0] for i in range(len(sources["a"]))]
        for sa, sb in zip(sources["a"], b_for_a):
            _check_overlap(sa, sb)
    region = load_aoi(aoi, aoi_crs) if aoi is not None else None

    # Candidate windows per domain (paired: A's windows drive both sides).
    plan_domains = ("a",) if paired else ("a", "b")
    skipped = {d: {"invalid": 0, "outside_aoi": 0, "val_overlap": 0} for d in ("a", "b")}
    if paired:
        for d in ("a", "b"):
            skipped[d]["partner_invalid"] = 0
    small: dict[str, list[Path]] = {"a": [], "b": []}
    plans: dict[str, list[tuple[int, Any, str]]] = {}
    blocks: dict[str, int] = {}
    for di, d in enumerate(plan_domains):
        cands: list[tuple[int, Any]] = []
        usable = 0
        for ri, src in enumerate(sources[d]):
            wins = chip_windows(src.height, src.width, tile_size, stride)
            if not wins:
                small[d].append(src.path)
                continue
            usable += 1
            if region is not None:
                keep = _aoi_filter(region, src, wins)
                skipped[d]["outside_aoi"] += int((~keep).sum())
                wins = [w for w, k in zip(wins, keep) if k]
            cands.extend((ri, w) for w in wins)
        if usable == 0:
            names = ", ".join(describe(s.path) for s in sources[d])
            raise RasterError(f"{names}: smaller than one {tile_size}x{tile_size} tile (domain {d}); use a smaller --tile-size")
        for p in small[d]:
            log.warning("%s: smaller than one %dx%d tile; skipped", describe(p), tile_size, tile_size)
        if region is not None and not cands:
            names = ", ".join(describe(s.path) for s in sources[d])
            raise InputError(f"AOI {region.source}: does not overlap any domain {d} raster ({names})")
        labels, blocks[d] = spatial_split(
            [(ri, int(w.row_off), int(w.col_off)) for ri, w in cands], tile_size, stride, val_fraction, seed + di
        )
        skipped[d]["val_overlap"] = labels.count("val_overlap")
        if paired:
            skipped["b"]["outside_aoi"] = skipped["a"]["outside_aoi"]
            skipped["b"]["val_overlap"] = skipped["a"]["val_overlap"]
        plans[d] = [(ri, w, lab) for (ri, w), lab in zip(cands, labels) if lab != "val_overlap"]
        if val_fraction > 0 and "val" not in labels:
            log.warning("domain %s: too few chips for a spatial validation split; no validation chips", d)

    mode = _check_out_dir(out_dir)
    work = _make_work_dir(out_dir)
    try:
        accs = {
            d: StatsAccumulator(len(sources[d][0].bands), sources[d][0].dtype, kinds[d], seed=seed)
            for d in ("a", "b")
        }
        counts = {d: {"train": 0, "val": 0} for d in ("a", "b")}
        total = sum(len(p) for p in plans.values())
        state = {"done": 0, "total": total}
        import rasterio

        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            if paired:
                _run_paired(sources["a"], b_for_a, plans["a"], kinds, tile_size, min_valid, work,
                            accs, counts, skipped, prog, state)
            else:
                for d in ("a", "b"):
                    _run_domain(d, sources[d], plans[d], kinds[d], min_valid, work, accs[d],
                                counts[d], skipped[d], prog, state)
        for d in ("a", "b"):
            if counts[d]["train"] == 0:
                raise InputError(_why_empty(d, sources[d], counts[d], skipped[d], min_valid, region))
        specs = {}
        for d in ("a", "b"):
            first = sources[d][0]
            grid = sources["a"][0] if (paired and d == "b") else first
            specs[d] = DomainSpec(
                kind=kinds[d],
                bands=tuple(first.bands),
                dtype=first.dtype,
                nodata=first.nodata,
                stats=accs[d].result(first.bands),
                crs=grid.crs.to_wkt(),
                resolution=grid.res,
                band_descriptions=first.descriptions,
            )
        used_sources = {"a": [s.path for s in sources["a"]], "b": [s.path for s in sources["b"]]}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "paired": bool(paired),
            "tile_size": int(tile_size),
            "stride": int(stride),
            "min_valid": float(min_valid),
            "val_fraction": float(val_fraction),
            "seed": int(seed),
            "val_block": {d: int(v) for d, v in blocks.items()},
            "resampling_b": _resampling_name(kinds["b"], sources["b"][0].dtype) if paired else None,
            "aoi": None if region is None else {
                "source": region.source.strip("'"),
                "crs": region.crs.to_string(),
                "wkt": region.geometry.wkt,
            },
            "domains": {
                d: {
                    **specs[d].to_dict(),
                    "sources": [str(p) for p in used_sources[d]],
                    "chips": dict(counts[d]),
                }
                for d in ("a", "b")
            },
            "skipped": skipped,
            "small_rasters": {d: [str(p) for p in small[d]] for d in ("a", "b")},
        }
        for d in ("a", "b"):
            nodata = meta["domains"][d]["nodata"]
            if nodata is not None and math.isnan(nodata):
                meta["domains"][d]["nodata"] = "nan"  # strict JSON has no NaN; float("nan") reads it back
        payload = json.dumps(_json_safe(meta), indent=2, allow_nan=False).encode("utf-8")
        check_cancelled(prog, "chip export")
        atomic_write_bytes(work / METADATA_NAME, payload)
        _swap_in(work, out_dir, mode)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ChipSummary(
        out_dir=out_dir,
        metadata_path=out_dir / METADATA_NAME,
        paired=bool(paired),
        counts=counts,
        skipped=skipped,
        domains=specs,
        sources=used_sources,
        small_rasters=small,
    )


def _check_options(tile_size: int, stride: int, min_valid: float, val_fraction: float,
                   kind_a: Optional[str], kind_b: Optional[str]) -> None:
    if not isinstance(tile_size, (int, np.integer)) or tile_size < MIN_TILE_SIZE:
        raise ConfigError(f"--tile-size {tile_size}: must be an integer >= {MIN_TILE_SIZE}")
    if not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise ConfigError(f"--stride {stride}: must be a positive integer")
    if stride > tile_size:
        raise ConfigError(f"--stride {stride}: must not exceed --tile-size {tile_size} (gaps between chips)")
    if not (0.0 <= float(min_valid) <= 1.0):
        raise ConfigError(f"--min-valid {min_valid}: must be within [0, 1]")
    if not (0.0 <= float(val_fraction) < 1.0):
        raise ConfigError(f"--val-fraction {val_fraction}: must be within [0, 1)")
    for name, kind in (("--kind-a", kind_a), ("--kind-b", kind_b)):
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"{name} {kind!r}: unknown kind (expected one of {', '.join(KINDS)})")


def _as_paths(value: Paths, domain: str) -> list[Path]:
    if isinstance(value, (str, os.PathLike)):
        items = [value]
    else:
        items = list(value or [])
    if not items:
        raise ConfigError(f"domain {domain}: no input raster given")
    paths = [Path(p) for p in items]
    seen: set[Path] = set()
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise ConfigError(f"{describe(p)}: given twice for domain {domain}")
        seen.add(key)
    return paths


def _inspect_domain(paths: list[Path], bands: Any, domain: str) -> list[_Source]:
    from rasterio.enums import ColorInterp, MaskFlags

    out: list[_Source] = []
    names: set[str] = set()
    for p in paths:
        with open_raster(p) as ds:
            if bands is None:
                alpha = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]
                chosen = [i for i in range(1, ds.count + 1) if i not in alpha] or list(range(1, ds.count + 1))
            else:
                chosen = parse_bands(bands, ds.count, p)
            dtypes = {ds.dtypes[i - 1] for i in chosen}
            if len(dtypes) > 1:
                raise BandMismatchError(f"{describe(p)}: chosen bands mix dtypes {sorted(dtypes)}")
            dtype = dtypes.pop()
            if dtype not in SUPPORTED_DTYPES:
                raise RasterError(f"{describe(p)}: dtype {dtype} is not supported ({', '.join(SUPPORTED_DTYPES)})")
            flags = [ds.mask_flag_enums[i - 1] for i in chosen]
            has_mask = any(MaskFlags.per_dataset in f for f in flags)
            alpha_idx = next((i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha), None)
            name = p.stem
            k = 2
            while name in names:
                name = f"{p.stem}-{k}"
                k += 1
            names.add(name)
            src = _Source(
                path=p.resolve(), name=name, bands=chosen, dtype=dtype, nodata=ds.nodata, crs=ds.crs,
                transform=ds.transform, width=ds.width, height=ds.height, res=resolution(ds),
                descriptions=tuple(ds.descriptions[i - 1] for i in chosen), has_mask=has_mask,
                all_valid=all(f == [MaskFlags.all_valid] for f in flags),
                alpha_index=alpha_idx,
            )
        if out:
            first = out[0]
            if len(src.bands) != len(first.bands):
                raise BandMismatchError(
                    f"{describe(p)}: {len(src.bands)} band(s) chosen but {describe(first.path)} has "
                    f"{len(first.bands)} (all domain {domain} rasters must match)"
                )
            if src.dtype != first.dtype:
                raise BandMismatchError(
                    f"{describe(p)}: dtype {src.dtype} differs from {describe(first.path)} ({first.dtype}); "
                    f"all domain {domain} rasters must match"
                )
            if not _same_nodata(src.nodata, first.nodata):
                log.warning("%s: nodata %s differs from %s (%s); each chip keeps its source's nodata",
                            describe(p), src.nodata, describe(first.path), first.nodata)
        out.append(src)
    return out


def _same_nodata(x: Optional[float], y: Optional[float]) -> bool:
    if x is None or y is None:
        return x is y
    return x == y or (math.isnan(x) and math.isnan(y))


def _infer_domain_kind(sources: list[_Source], tile_size: int) -> str:
    """infer_kind from the first raster: dtype, band count and valid pixels of up to 9 sample windows."""
    from rasterio.windows import Window

    src = sources[0]
    size = min(512, max(tile_size, 64))
    h, w = min(size, src.height), min(size, src.width)
    samples = []
    with open_raster(src.path) as ds:
        for fr in (0.0, 0.5, 1.0):
            for fc in (0.0, 0.5, 1.0):
                win = Window(int((src.width - w) * fc), int((src.height - h) * fr), w, h)
                data, masks = read_window(ds, src.bands, win)
                valid = valid_mask(ds, data, masks, "generic")
                samples.append(data[:, valid].ravel()[:20000])
    sample = np.concatenate(samples) if samples else None
    return infer_kind(src.dtype, len(src.bands), sample)


def _check_overlap(a: _Source, b: _Source) -> None:
    from rasterio.coords import disjoint_bounds
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    a_bounds = array_bounds(a.height, a.width, a.transform)
    a_bounds = (a_bounds[0], a_bounds[1], a_bounds[2], a_bounds[3])
    b_bounds = array_bounds(b.height, b.width, b.transform)
    try:
        b_in_a = transform_bounds(b.crs, a.crs, *b_bounds, densify_pts=21)
    except Exception:
        return  # cannot tell; the per-chip validity test will catch a real miss
    if not all(np.isfinite(b_in_a)) or disjoint_bounds(a_bounds, b_in_a):
        raise RasterError(f"{describe(b.path)}: does not overlap its paired A raster {describe(a.path)}")


def _aoi_filter(region: AOI, src: _Source, windows: list) -> np.ndarray:
    import shapely
    from rasterio.transform import array_bounds
    from rasterio.windows import bounds as window_bounds

    rb = array_bounds(src.height, src.width, src.transform)
    bounds = (rb[0], rb[1], rb[2], rb[3])
    geom = region.in_crs(src.crs, bounds)
    if geom.is_empty:
        return np.zeros(len(windows), bool)
    shapely.prepare(geom)
    wb = np.array([window_bounds(w, src.transform) for w in windows], dtype=np.float64)
    boxes = shapely.box(wb[:, 0], wb[:, 1], wb[:, 2], wb[:, 3])
    return shapely.intersects(geom, boxes) & ~shapely.touches(geom, boxes)


def _resampling_name(kind: str, dtype: str) -> str:
    return "nearest" if kind == "generic" and np.dtype(dtype).kind in "ui" else "bilinear"


def _chip_name(src: _Source, window) -> str:
    return f"{src.name}_r{int(window.row_off):06d}_c{int(window.col_off):06d}.tif"


def _tick(prog, state: dict, message: str) -> None:
    check_cancelled(prog, "chip export")
    state["done"] += 1
    prog.update(state["done"], state["total"], message)


def _run_domain(d: str, sources: list[_Source], plan: list, kind: str, min_valid: float, work: Path,
                acc: StatsAccumulator, counts: dict, skipped: dict, prog, state: dict) -> None:
    from rasterio.windows import transform as window_transform

    by_raster: dict[int, list] = {}
    for ri, w, lab in plan:
        by_raster.setdefault(ri, []).append((w, lab))
    for ri, items in by_raster.items():
        src = sources[ri]
        with open_raster(src.path) as ds:
            for w, lab in items:
                _tick(prog, state, f"{d}: {src.name}")
                data, masks = _read(ds, src, w)
                valid = valid_mask(ds, data, masks, kind)
                if not _passes(valid, min_valid):
                    skipped["invalid"] += 1
                    continue
                mask = np.all(masks > 0, axis=0) if src.has_mask else None
                _write_chip(work / f"{lab}_{d}" / _chip_name(src, w), data, mask, src.nodata, ds.crs,
                            window_transform(w, ds.transform), src.descriptions)
                acc.update(data, valid)
                counts[lab] += 1


def _run_paired(a_sources: list[_Source], b_for_a: list[_Source], plan: list, kinds: dict, tile_size: int,
                min_valid: float, work: Path, accs: dict, counts: dict, skipped: dict, prog, state: dict) -> None:
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import transform as window_transform

    by_raster: dict[int, list] = {}
    for ri, w, lab in plan:
        by_raster.setdefault(ri, []).append((w, lab))
    for ri, items in by_raster.items():
        sa, sb = a_sources[ri], b_for_a[ri]
        resampling = getattr(Resampling, _resampling_name(kinds["b"], sb.dtype))
        with contextlib.ExitStack() as stack:
            ds_a = stack.enter_context(open_raster(sa.path))
            ds_b = stack.enter_context(open_raster(sb.path))
            vrt = stack.enter_context(WarpedVRT(
                ds_b, crs=ds_a.crs, transform=ds_a.transform, width=ds_a.width, height=ds_a.height,
                resampling=resampling, add_alpha=sb.alpha_index is None,
            ))
            alpha = sb.alpha_index if sb.alpha_index is not None else vrt.count
            for w, lab in items:
                _tick(prog, state, f"pair: {sa.name}")
                data_a, masks_a = _read(ds_a, sa, w)
                valid_a = valid_mask(ds_a, data_a, masks_a, kinds["a"])
                if not _passes(valid_a, min_valid):
                    skipped["a"]["invalid"] += 1
                    skipped["b"]["partner_invalid"] += 1
                    continue
                data_b = vrt.read(sb.bands, window=w)
                alpha_b = vrt.read(alpha, window=w)
                masks_b = np.broadcast_to(alpha_b, data_b.shape)
                valid_b = valid_mask(vrt, data_b, masks_b, kinds["b"])
                if not _passes(valid_b, min_valid):
                    skipped["b"]["invalid"] += 1
                    skipped["a"]["partner_invalid"] += 1
                    continue
                transform = window_transform(w, ds_a.transform)
                name = _chip_name(sa, w)
                mask_a = np.all(masks_a > 0, axis=0) if sa.has_mask else None
                _write_chip(work / f"{lab}_a" / name, data_a, mask_a, sa.nodata, ds_a.crs, transform, sa.descriptions)
                if sb.nodata is not None and not math.isnan(sb.nodata):
                    data_b = np.where(alpha_b[None] > 0, data_b, np.array(sb.nodata, dtype=data_b.dtype))
                _write_chip(work / f"{lab}_b" / name, data_b, alpha_b > 0, sb.nodata, ds_a.crs, transform,
                            sb.descriptions)
                accs["a"].update(data_a, valid_a)
                accs["b"].update(data_b, valid_b)
                counts["a"][lab] += 1
                counts["b"][lab] += 1


def _read(ds, src: _Source, window) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`geogan.raster.read_window`, tuned for chips: the data exactly as stored (rasterio
    1.4's ``fill_value`` would overwrite pixels under an internal mask and read the mask a
    second time), and no mask read at all when GDAL says every pixel is valid."""
    data = ds.read(src.bands, window=window)
    if src.all_valid:
        masks = np.broadcast_to(np.uint8(255), data.shape)
    else:
        masks = ds.read_masks(src.bands, window=window)
    return data, masks


def _passes(valid: np.ndarray, min_valid: float) -> bool:
    n_valid = int(np.count_nonzero(valid))
    return n_valid > 0 and n_valid >= min_valid * valid.size


def _write_chip(path: Path, data: np.ndarray, mask: Optional[np.ndarray], nodata: Optional[float], crs,
                transform, descriptions: tuple[Optional[str], ...]) -> None:
    import rasterio

    compress = CHIP_COMPRESS or ("zstd" if _zstd_available() else "deflate")
    profile = gtiff_profile(width=data.shape[2], height=data.shape[1], count=data.shape[0],
                            dtype=str(data.dtype), crs=crs, transform=transform, nodata=nodata,
                            compress=compress)
    if compress == "zstd":
        profile["zstd_level"] = 1
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
        if any(descriptions):
            for i, desc in enumerate(descriptions, start=1):
                if desc:
                    dst.set_band_description(i, desc)


@functools.lru_cache(maxsize=None)
def _zstd_available() -> bool:
    """True when this GDAL writes ZSTD-compressed GeoTIFFs (probed once, in memory)."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    try:
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=16, height=16, count=1, dtype="uint8", compress="zstd",
                          crs="EPSG:4326", transform=from_origin(0, 1, 0.1, 0.1)) as ds:
                ds.write(np.zeros((1, 16, 16), np.uint8))
            with mem.open() as ds:
                return ds.compression is not None and ds.compression.name.lower() == "zstd"
    except rasterio.errors.RasterioError:
        return False


def _why_empty(d: str, sources: list[_Source], counts: dict, skipped: dict, min_valid: float,
               region: Optional[AOI]) -> str:
    names = ", ".join(describe(s.path) for s in sources)
    reasons = []
    if skipped.get("invalid"):
        reasons.append(f"{skipped['invalid']} below --min-valid {min_valid:g}")
    if skipped.get("partner_invalid"):
        reasons.append(f"{skipped['partner_invalid']} whose paired chip was below --min-valid {min_valid:g}")
    if skipped.get("outside_aoi"):
        reasons.append(f"{skipped['outside_aoi']} outside the AOI")
    if skipped.get("val_overlap"):
        reasons.append(f"{skipped['val_overlap']} overlapping validation chips")
    if counts.get("val"):
        reasons.append(f"{counts['val']} set aside for validation")
    why = "; ".join(reasons) if reasons else "no candidate windows"
    return f"{names}: no training chips kept for domain {d} ({why})"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --------------------------------------------------------------------------------------
# Output directory: refuse foreign content, build beside, swap in
# --------------------------------------------------------------------------------------

def _check_out_dir(out: Path) -> str:
    """'new' (absent), 'empty' (an empty dir) or 'replace' (a previous chips export)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{describe(out)}: exists and is a file, not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{describe(out)}: parent directory {describe(parent)} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{describe(out)}: parent directory {describe(parent)} is not writable")
    if not out.exists():
        return "new"
    entries = sorted(os.listdir(out))
    if not entries:
        return "empty"
    if METADATA_NAME not in entries:
        raise OutputError(
            f"{describe(out)}: exists, is not empty and is not a geogan chips export; choose a new or empty directory"
        )
    try:
        read_chips_metadata(out)
    except InputError:
        raise OutputError(
            f"{describe(out)}: holds an unreadable {METADATA_NAME}; not replacing it (choose another directory)"
        ) from None
    foreign = [e for e in entries if e not in SPLIT_DIRS and e != METADATA_NAME]
    if foreign:
        raise OutputError(
            f"{describe(out)}: previous chips export also holds {describe(foreign[0])}, which is not ours; "
            "move it or choose another directory"
        )
    return "replace"


def _make_work_dir(out: Path) -> Path:
    parent = out.parent if str(out.parent) else Path(".")
    work = parent / f".{out.name}.geogan-chips-{uuid.uuid4().hex[:8]}.part"
    work.mkdir()
    for sub in SPLIT_DIRS:
        (work / sub).mkdir()
    return work


def _swap_in(work: Path, out: Path, mode: str) -> None:
    if mode in ("new", "empty"):
        if mode == "empty":
            os.rmdir(out)  # Windows cannot rename onto an existing directory, even an empty one
        os.replace(work, out)
        return
    old = out.parent / f".{out.name}.geogan-chips-{uuid.uuid4().hex[:8]}.old"
    os.replace(out, old)
    try:
        os.replace(work, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

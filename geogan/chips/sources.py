"""What the inputs are (I/O): scenes named by the user → :class:`Source` descriptions, and
pixel samples that kind and units inference look at.

Each domain's inputs are scenes in every syntax of :mod:`geogan.scenes` (a file, comma-joined
files stacked as one scene's bands, ``@list``, a glob, a folder, a GDAL path); every raster is
opened through :func:`geogan.raster.open_raster`, which stacks a multi-file scene onto the
finest grid among its files.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import BandMismatchError, ConfigError, RasterError, describe
from ..raster import (SUPPORTED_DTYPES, check_crs_option, ground_resolution, open_raster, parse_bands, read_window,
                      resolution, valid_mask)
from ..scenes import Scene, expand_scenes, is_gdal_path
from ..stac import is_stac_object

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: What a domain's inputs may be: one scene-like, or a list of them (a list inside the list is
#: one multi-file scene).
Inputs = Union[PathLike, Scene, Sequence[Union[PathLike, Scene, Sequence[PathLike]]]]

#: A band or polarisation suffix of a one-band file's name: S1 ``_VV``, S2 ``_B04`` / ``_B8A``, ``_band2``.
_BAND_SUFFIX = re.compile(r"^(?P<prefix>.*?)[_\-.](?P<band>VV|VH|HH|HV|B\d{1,2}A?|BAND_?\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """One input raster (a file or a multi-file scene) as chip export needs to know it."""

    scene: Scene
    label: str                 # absolute comma-joined paths: messages and metadata
    name: str                  # chip file prefix, unique within the domain
    bands: tuple[int, ...]     # chosen 1-based bands
    count: int                 # bands in the raster
    dtype: str
    nodata: Optional[float]
    crs: Any
    transform: Any
    width: int
    height: int
    res: tuple[float, float]
    descriptions: tuple[Optional[str], ...]
    has_mask: bool             # a per-dataset (internal) mask that chips must carry
    all_valid: bool            # GDAL says every pixel of the chosen bands is valid: no mask to read
    ground_res: Optional[tuple[float, float]] = None  # pixel size in metres on the ground at the centre

    def open(self, resampling: str = "bilinear"):
        """The raster, opened through :func:`geogan.raster.open_raster` (a context manager)."""
        return open_raster(self.scene, resampling=resampling)

    @property
    def file_names(self) -> list[str]:
        return [os.path.basename(p.rstrip("/")) for p in self.scene.parts]


@dataclass(frozen=True)
class SourceSample:
    """Valid pixel values of one raster (all chosen bands, flattened) and one 2-D window of its
    first band with NaN where invalid: what :func:`geogan.bands.explain_kind` and
    :func:`geogan.bands.explain_units` look at."""

    label: str
    values: np.ndarray
    image: Optional[np.ndarray]


# ------------------------------------------------------------------------------- scenes

def expand_inputs(value: Inputs, domain: str, assume_crs: Optional[str] = None,
                  assets: Union[None, str, Sequence[str]] = None) -> list[Scene]:
    """Every scene named for ``domain``; a scene given twice is refused in one line. ``assume_crs``
    (``--assume-crs-a``/``-b``) is the CRS its files are read in when they have none; ``assets``
    (``--assets-a``/``-b``) the asset keys of a STAC input's bands, in order."""
    crs = check_crs_option(assume_crs, f"--assume-crs-{domain}")
    if isinstance(value, (str, os.PathLike, Scene)) or is_stac_object(value):
        specs = [value]
    else:
        specs = list(value or [])
    if not specs:
        raise ConfigError(f"domain {domain}: no input raster given")
    scenes = expand_scenes(specs, what=f"domain {domain} input", assets=assets)
    seen: set[tuple[str, ...]] = set()
    for scene in scenes:
        key = tuple(absolute_part(p) for p in scene.parts)
        if key in seen:
            raise ConfigError(f"{describe(scene.label)}: given twice for domain {domain}")
        seen.add(key)
    return [dataclasses.replace(s, assume_crs=crs) for s in scenes] if crs else scenes


def absolute_part(part: str) -> str:
    """A file's resolved absolute path; GDAL paths unchanged."""
    return part if is_gdal_path(part) else str(Path(part).resolve())


def scene_label(scene: Scene) -> str:
    return ",".join(absolute_part(p) for p in scene.parts)


def warn_if_bands_given_as_scenes(scenes: Sequence[Scene], counts: Sequence[int], domain: str) -> None:
    """One-band files whose names differ only by a band suffix (``X_VV.tif``, ``X_VH.tif``) given as
    separate scenes are probably one scene's bands: say so, and how to stack them."""
    if len(scenes) < 2 or any(s.is_multi for s in scenes) or any(c != 1 for c in counts):
        return
    groups: dict[str, list[str]] = {}
    for scene in scenes:
        part = scene.parts[0]
        m = _BAND_SUFFIX.match(scene.name)
        if m:
            groups.setdefault(os.path.join(os.path.dirname(part), m["prefix"]), []).append(part)
    example = next((parts for parts in groups.values() if len(parts) >= 2), None)
    if example is None:
        return
    log.warning("domain %s: %d one-band files are used as %d separate one-band scenes, although names such as "
                "%s differ only by a band suffix; to stack files as the bands of one scene, join them with a "
                "comma: --%s %s (or one comma-joined scene per line of an @list file)",
                domain, len(scenes), len(scenes), " and ".join(describe(os.path.basename(p)) for p in example[:2]),
                domain, ",".join(example))


# ------------------------------------------------------------------------------- inspection

def inspect_domain(scenes: Sequence[Scene], bands: Any, domain: str) -> list[Source]:
    """Open every scene of a domain once: grid, chosen bands, dtype, nodata and mask flags.

    All rasters of a domain must have the same number of chosen bands and one dtype; differing
    nodata values are allowed (each chip keeps its source's) with a warning.
    """
    out: list[Source] = []
    names: set[str] = set()
    for scene in scenes:
        src = _inspect_one(scene, bands, _unique_name(scene.name, names))
        if out:
            _check_consistent(src, out[0], domain)
        out.append(src)
    return out


def _unique_name(stem: str, taken: set[str]) -> str:
    name, k = stem, 2
    while name in taken:
        name = f"{stem}-{k}"
        k += 1
    taken.add(name)
    return name


def _inspect_one(scene: Scene, bands: Any, name: str) -> Source:
    from rasterio.enums import ColorInterp, MaskFlags

    label = scene_label(scene)
    with open_raster(scene) as ds:
        if bands is None:
            alpha = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]
            chosen = [i for i in range(1, ds.count + 1) if i not in alpha] or list(range(1, ds.count + 1))
        else:
            chosen = parse_bands(bands, ds.count, scene.label)
        dtypes = {ds.dtypes[i - 1] for i in chosen}
        if len(dtypes) > 1:
            raise BandMismatchError(f"{describe(scene.label)}: chosen bands mix dtypes {sorted(dtypes)}")
        dtype = dtypes.pop()
        if dtype not in SUPPORTED_DTYPES:
            raise RasterError(f"{describe(scene.label)}: dtype {dtype} is not supported "
                              f"({', '.join(SUPPORTED_DTYPES)})")
        flags = [ds.mask_flag_enums[i - 1] for i in chosen]
        return Source(
            scene=scene, label=label, name=name, bands=tuple(chosen), count=ds.count, dtype=dtype,
            nodata=ds.nodata, crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height,
            res=resolution(ds), descriptions=tuple(ds.descriptions[i - 1] for i in chosen),
            has_mask=any(MaskFlags.per_dataset in f for f in flags),
            all_valid=all(f == [MaskFlags.all_valid] for f in flags),
            ground_res=ground_resolution(ds.crs, ds.transform, ds.width, ds.height),
        )


def _check_consistent(src: Source, first: Source, domain: str) -> None:
    if len(src.bands) != len(first.bands):
        raise BandMismatchError(
            f"{describe(src.scene.label)}: {len(src.bands)} band(s) chosen but {describe(first.scene.label)} has "
            f"{len(first.bands)} (all domain {domain} rasters must match)")
    if src.dtype != first.dtype:
        raise BandMismatchError(
            f"{describe(src.scene.label)}: dtype {src.dtype} differs from {describe(first.scene.label)} "
            f"({first.dtype}); all domain {domain} rasters must match")
    if not same_nodata(src.nodata, first.nodata):
        log.warning("%s: nodata %s differs from %s (%s); each chip keeps its source's nodata",
                    describe(src.scene.label), src.nodata, describe(first.scene.label), first.nodata)


def same_nodata(x: Optional[float], y: Optional[float]) -> bool:
    if x is None or y is None:
        return x is y
    return x == y or (math.isnan(x) and math.isnan(y))


# ------------------------------------------------------------------------------- samples

#: Rasters of a domain sampled for kind and units inference (first, middle, last).
SAMPLED_RASTERS = 3
#: Values kept per sample window.
SAMPLE_VALUES = 20000


def read_samples(sources: Sequence[Source], tile_size: int) -> list[SourceSample]:
    """Valid values of up to :data:`SAMPLED_RASTERS` rasters, each from a 3 x 3 grid of windows.

    Multi-file scenes are read with nearest resampling here, so a class map's values are not
    blended into new ones before its kind is known.
    """
    picks = sorted({0, len(sources) // 2, len(sources) - 1})[:SAMPLED_RASTERS]
    return [_sample_one(sources[i], tile_size) for i in picks]


def _sample_one(src: Source, tile_size: int) -> SourceSample:
    from rasterio.windows import Window

    size = min(512, max(tile_size, 64))
    h, w = min(size, src.height), min(size, src.width)
    values, image = [], None
    with src.open(resampling="nearest") as ds:
        for fr in (0.0, 0.5, 1.0):
            for fc in (0.0, 0.5, 1.0):
                win = Window(int((src.width - w) * fc), int((src.height - h) * fr), w, h)
                data, masks = read_window(ds, src.bands, win, masks=not src.all_valid)
                valid = valid_mask(ds, data, masks, "generic")
                values.append(data[:, valid].ravel()[:SAMPLE_VALUES])
                if fr == 0.5 and fc == 0.5:
                    image = np.where(valid, data[0], np.nan).astype(np.float64)
    return SourceSample(label=src.label, values=np.concatenate(values), image=image)

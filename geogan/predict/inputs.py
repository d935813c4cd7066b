"""Checks before a scene is translated: bands, dtypes, tiling, SAR units, and whether the input looks
like what the model was trained on. Warnings are logged (the CLI shows them); what would give a
wrong result is refused in one line instead.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import raster
from ..bands import (SAR_UNITS, DomainSpec, UnitsGuess, check_stated_units, doubt_stated_units, infer_units,
                     normalize, units_name)
from ..errors import BandMismatchError, ConfigError, ModelFileError, RasterError, describe

log = logging.getLogger("geogan.predict")

#: Side of the decimated sample read to compare the input with the training data.
SAMPLE_SIDE = 512
#: Share of a sample that may be invalid before the user is warned that the output will be mostly nodata.
MOSTLY_NODATA = 0.9


def output_nodata(spec: DomainSpec) -> float:
    """The nodata value written for a target domain, outside its valid range when nobody declared one.

    The spec's own value if it has one; NaN for float outputs. For integers, from the training
    statistics: the dtype's minimum when every band's minimum lies above it (0 for unsigned
    imagery whose darkest value is 1 or more, -32768 for a DEM), else the dtype's maximum when
    every band stays below it, else (the data span the whole dtype) the minimum, with valid pixels
    kept one step above it by :func:`geogan.bands.cast_to_dtype`.
    """
    if spec.nodata is not None:
        return float(spec.nodata)
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return float("nan")
    info = np.iinfo(dt)
    mins = [s.min for s in spec.stats if s.min is not None and np.isfinite(s.min)]
    maxs = [s.max for s in spec.stats if s.max is not None and np.isfinite(s.max)]
    if mins and min(mins) > info.min:
        return float(info.min)
    if maxs and max(maxs) < info.max:
        return float(info.max)
    log.info("the training data span the whole %s range; output nodata is %d and valid pixels of that value "
             "become %d", dt.name, info.min, info.min + 1)
    return float(info.min)


def check_target_dtype(spec: DomainSpec, model_name: str, direction: str) -> None:
    """A model whose target dtype cannot be written as a GeoTIFF band (e.g. complex64) is refused."""
    if spec.dtype not in raster.SUPPORTED_DTYPES:
        raise ModelFileError(f"{model_name}: direction {direction} produces {spec.dtype} pixels, which geogan cannot "
                             f"write (supported: {', '.join(raster.SUPPORTED_DTYPES)})")


def check_input_dtype(ds: Any, label: str) -> None:
    bad = sorted({d for d in ds.dtypes if np.dtype(d).kind == "c"})
    if bad:
        raise RasterError(f"{describe(label)}: complex pixels ({', '.join(bad)}) cannot be translated; "
                          "convert them to intensity or amplitude first")


def check_tiling(tile_size: int, overlap: int, model: Any) -> None:
    mult = model.size_multiple
    gen = model.architecture.get("generator", "generator")
    if tile_size <= 0 or tile_size % mult:
        raise ConfigError(f"tile size {tile_size} is not a positive multiple of {mult} (the {gen} generator needs it)")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise ConfigError(f"overlap {overlap} does not fit tile size {tile_size} (need 0 <= overlap < tile size / 2)")


def check_units_option(units: Optional[str]) -> Optional[str]:
    if units is None:
        return None
    u = str(units).strip().lower()
    if u not in SAR_UNITS:
        raise ConfigError(f"unknown SAR units {units!r} (expected one of {', '.join(SAR_UNITS)})")
    return u


def choose_bands(bands: Union[None, str, Sequence[int]], count: int, spec: DomainSpec, label: str) -> list[int]:
    """The input bands to feed the network, in order.

    Default: the bands recorded in the model when training picked a deliberate subset or
    order that this raster has (e.g. 4,3,2 of a 13-band scene, or 1,2,3 of a 4-band file); all
    bands when the model was trained on all bands of an equally wide raster. Anything else asks
    for ``--bands``.
    """
    listed = ",".join(map(str, spec.bands))
    expects = f"model expects {spec.count} band(s) ({spec.kind}: bands {listed})"
    if bands is not None and not (isinstance(bands, str) and not bands.strip()):
        chosen = raster.parse_bands(bands, count, label)
        if len(chosen) != spec.count:
            raise BandMismatchError(f"{expects}; --bands names {len(chosen)} of {describe(label)}")
        return chosen
    trivial = tuple(spec.bands) == tuple(range(1, spec.count + 1))
    if trivial and count == spec.count:
        return list(spec.bands)
    # Bands 1..k are a deliberate pick when training read them from wider rasters (recorded since
    # issue 20); a model trained on every band of a k-band raster asks which bands of a wider one.
    picked = not trivial or (spec.source_count is not None and spec.source_count > spec.count)
    if picked and max(spec.bands) <= count:
        log.info("using bands %s of %s, as in training", listed, describe(label))
        return list(spec.bands)
    raise BandMismatchError(f"{expects}; {describe(label)} has {count} — use --bands")


# ------------------------------------------------------------------------------ the sample

def read_sample(ds: Any, bands: list[int], label: str) -> tuple[np.ndarray, np.ndarray]:
    """A cheap sample of the scene: a decimated read from overviews when the file has them (or is
    small), else a 4×4 grid of small windows (a decimated read without overviews decodes every block)."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    if ds.overviews(bands[0]) or max(ds.width, ds.height) <= SAMPLE_SIDE:
        scale = max(1, math.ceil(max(ds.width, ds.height) / SAMPLE_SIDE))
        shape = (len(bands), max(1, ds.height // scale), max(1, ds.width // scale))
        try:
            return (ds.read(bands, out_shape=shape, resampling=Resampling.nearest),
                    ds.read_masks(bands, out_shape=shape, resampling=Resampling.nearest))
        except RasterioError as exc:
            raise RasterError(f"{describe(label)}: reading a decimated sample of the whole raster failed "
                              f"({raster.first_line(exc)}); the file may be truncated or damaged") from None
    side = SAMPLE_SIDE // 4
    bh, bw = ds.block_shapes[0]
    parts, mparts = [], []
    for fy in (0.125, 0.375, 0.625, 0.875):
        for fx in (0.125, 0.375, 0.625, 0.875):
            w, h = min(side, ds.width), min(side, ds.height)
            x0 = min(max(0, int(fx * ds.width) - w // 2), ds.width - w)
            y0 = min(max(0, int(fy * ds.height) - h // 2), ds.height - h)
            x0, y0 = _on_blocks(x0, bw, ds.width - w), _on_blocks(y0, bh, ds.height - h)
            d, m = raster.read_window(ds, bands, Window(x0, y0, w, h))
            parts.append(d)
            mparts.append(m)
    return np.concatenate(parts, axis=2), np.concatenate(mparts, axis=2)


def _on_blocks(start: int, block: int, last: int) -> int:
    """``start`` moved back onto the block grid (when that is no further than ``last``): a window on
    block edges decodes a quarter of the blocks an unaligned one does."""
    return min(start - start % block, last) if 0 < block <= SAMPLE_SIDE else start


def input_units(spec: DomainSpec, data: np.ndarray, masks: np.ndarray, stated: Optional[str],
                label: str) -> Optional[str]:
    """The SAR units of the input: as stated (checked against the values) or read from them.

    Converting to the model's units happens only when the units are known: stated, or proven by
    the values (negative values are dB; integers amplitude numbers; positive floats that only
    one reading puts within backscatter's levels, see :func:`geogan.bands.infer_units`), and a
    warning says so. Values that could be linear power or amplitude are read in the model's
    units when those are among the two, with a warning naming the guess and ``--units``;
    when the model was trained on dB (neither reading), the input is refused until ``--units``
    says which. None for other kinds.
    """
    if spec.kind != "sar":
        if stated is not None:
            raise ConfigError(f"--units {stated}: the model's source domain is {spec.kind}, not SAR; units are for "
                              "SAR backscatter only")
        return None
    usable = np.all(masks > 0, axis=0)
    per_band = data[:, usable].astype(np.float64)
    values = per_band[np.isfinite(per_band)]
    if stated is not None:
        problem = check_stated_units(stated, values)
        if problem:
            raise RasterError(f"{describe(label)}: {problem}")
        doubt = doubt_stated_units(stated, values)
        if doubt:
            log.warning("%s: %s", describe(label), doubt)
        units, reason = stated, "as stated"
    else:
        guess = infer_units(values, str(data.dtype))
        units, reason = guess.units, guess.reason
        if not guess.sure:
            return _guessed_units(spec, guess, per_band, label)
    if units != spec.units:
        log.warning("%s: SAR in %s (%s) but the model was trained on %s; converting the input to the model's units",
                    describe(label), units_name(units), reason, units_name(spec.units))
    else:
        log.info("%s: SAR in %s (%s), as the model was trained", describe(label), units_name(units), reason)
    return units


def _guessed_units(spec: DomainSpec, guess: UnitsGuess, per_band: np.ndarray, label: str) -> str:
    """Units the values leave open, settled by the training data where it can: each reading's
    per-band median in dB either lies within the training range (2nd–98th percentile in dB) or not.
    Only the model's units fit: those, quietly (the same product as in training: Sentinel-1 power
    with median -15 dB is -30 dB as amplitude). Both fit, or the training data cannot tell: the
    model's units, with a warning naming the guess and ``--units``. Otherwise refused: the input
    would be converted on a guess."""
    readings = sorted({guess.units, guess.alternative} - {None})
    fits = {u: _fits_training(spec, per_band, u) for u in set(readings) | {spec.units}}
    others = [u for u in readings if u != spec.units]
    if spec.units in readings and fits[spec.units] and not any(fits[u] for u in others):
        log.info("%s: SAR read as %s, as the model was trained: only that reading lies within the training data's "
                 "range (%s)", describe(label), units_name(spec.units), guess.reason)
        return spec.units
    if spec.units in readings and fits[spec.units] is not False:
        tail = "".join(f"; if they are {units_name(u)}, state --units {u} and they will be converted" for u in others)
        log.warning("%s: SAR units not stated; read as %s, as the model was trained, but the values could be "
                    "either (%s)%s", describe(label), units_name(spec.units), guess.reason, tail)
        return spec.units
    options = " or ".join(f"--units {u}" for u in readings)
    raise RasterError(f"{describe(label)}: SAR units not stated and the values do not tell ({guess.reason}); the "
                      f"model was trained on {units_name(spec.units)}, so the input would be converted on a guess: "
                      f"state {options}")


def _fits_training(spec: DomainSpec, per_band: np.ndarray, units: str) -> Optional[bool]:
    """Whether every band's median, read in ``units``, lies within the training data's 2nd–98th
    percentile in dB; None when the model has no dB percentiles or the sample no positive value."""
    for i, s in enumerate(spec.stats):
        v = per_band[i] if i < per_band.shape[0] else np.empty(0)
        v = v[np.isfinite(v) & (v > 0)] if units != "db" else v[np.isfinite(v)]
        if not v.size or s.p2_db is None or s.p98_db is None:
            return None
        median = float(np.median(v))
        db = median if units == "db" else (10.0 if units == "linear" else 20.0) * math.log10(median)
        if not s.p2_db <= db <= s.p98_db:
            return False
    return True


def warn_if_unlike_training(ds: Any, data: np.ndarray, masks: np.ndarray, bands: list[int], spec: DomainSpec,
                            units: Optional[str], label: str, georef: bool) -> float:
    """Warn (never fail) when the input's resolution, validity or values differ from the training data.

    Returns the share of the sample that is valid.
    """
    if georef and (spec.resolution is not None or spec.ground_resolution is not None):
        _check_resolution(ds, spec, label)
    valid = raster.valid_mask(ds, data, masks, spec.kind, units=units)
    share = float(valid.mean()) if valid.size else 0.0
    if share == 0.0:
        log.warning("%s: no valid pixel in a sample of the input (all nodata, masked or non-finite); the output "
                    "will be nodata wherever the input is", describe(label))
        return share
    if share < 1.0 - MOSTLY_NODATA:
        log.warning("%s: %.0f%% of a sample of the input is nodata, masked or invalid; most of the output will "
                    "be nodata", describe(label), 100 * (1 - share))
    norm = normalize(data, spec, valid, units=units)
    lo, hi = spec.ranges()
    for i, band in enumerate(bands):
        values = norm[i][valid]
        median = float(np.median(values))
        far = float(np.mean(np.abs(values) > 3.0))
        if abs(median) > 2.0 or far > 0.5:
            log.warning("%s: band %d looks unlike the training data (%s); check the sensor, units and scaling",
                        describe(label), band, _unlike(median, far, lo[i], hi[i], spec.kind))
    return share


def _unlike(median: float, far: float, lo: float, hi: float, kind: str) -> str:
    """What made a band look unlike the training data: its median off the training range, the
    share of the sample far outside it, or both (``median`` and ``far`` in normalised units, where
    the training range is -1..1)."""
    unit = " dB" if kind == "sar" else ""
    span = f"the training range {lo:.4g}..{hi:.4g}{unit}"
    parts = []
    if abs(median) > 2.0:
        level = lo + (median + 1.0) * (hi - lo) / 2.0
        parts.append(f"its median {level:.4g}{unit} lies far {'above' if median > 0 else 'below'} {span}")
    if far > 0.5:
        parts.append(f"{100 * far:.0f}% of a sample lies far outside " + ("it" if parts else span))
    return ", and ".join(parts)


#: Relative difference of ground pixel sizes above which the input is said to differ from training.
RESOLUTION_TOLERANCE = 0.1


def _check_resolution(ds: Any, spec: DomainSpec, label: str) -> None:
    """Warn when the input's pixels differ by more than 10 % from the training data's, compared in
    metres on the ground (:func:`geogan.raster.ground_resolution`) whatever either CRS is: 10 m in
    US feet (32.8 ft) is the same, 1 arc-second (~31 m) is not 10 m."""
    got = raster.ground_resolution(ds.crs, ds.transform, ds.width, ds.height)
    want = spec.ground_resolution or _training_ground_size(spec, got, ds)
    if got is None or want is None:
        return
    (rx, ry), (sx, sy) = got, want
    tol = RESOLUTION_TOLERANCE
    if sx > 0 and sy > 0 and (abs(rx - sx) > tol * sx or abs(ry - sy) > tol * sy):
        log.warning("%s: pixel size %s on the ground differs by more than 10%% from the training data's %s; "
                    "resample the input to the training resolution for best results", describe(label),
                    _metres(rx, ry), _metres(sx, sy))


def _metres(x: float, y: float) -> str:
    return f"{x:.3g} m" if abs(x - y) <= 0.005 * max(x, y) else f"{x:.3g} x {y:.3g} m"


def _training_ground_size(spec: DomainSpec, got: Optional[tuple[float, float]],
                          ds: Any) -> Optional[tuple[float, float]]:
    """The training pixel size in metres for model files from before it was recorded: linear CRS
    units times their size in metres; degrees at the input scene's centre latitude (where the
    training data most likely were). None when the training CRS is unknown or unreadable."""
    if spec.resolution is None:
        return None
    sx, sy = spec.resolution
    if not spec.crs:  # no training CRS recorded: its sizes are taken in the input's CRS units
        if got is None:
            return None
        rx, ry = raster.resolution(ds)
        return (got[0] * sx / rx, got[1] * sy / ry) if rx > 0 and ry > 0 else None
    from rasterio.crs import CRS

    try:
        crs = CRS.from_user_input(spec.crs)
        if not crs.is_geographic:
            factor = crs.linear_units_factor[1]
            return sx * factor, sy * factor
        lat = _centre_latitude(ds)
    except Exception:  # an unreadable CRS in an old model: no comparison rather than a wrong one
        return None
    if lat is None:
        return None
    metres_per_degree = math.pi / 180.0 * raster.EARTH_RADIUS
    return sx * metres_per_degree * math.cos(math.radians(lat)), sy * metres_per_degree


def _centre_latitude(ds: Any) -> Optional[float]:
    from rasterio.warp import transform as warp_points

    x, y = ds.transform * (ds.width / 2.0, ds.height / 2.0)
    try:
        _, lat = warp_points(ds.crs, "EPSG:4326", [x], [y])
    except Exception:
        return None
    return float(lat[0]) if math.isfinite(lat[0]) else None

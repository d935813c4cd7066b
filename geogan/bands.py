"""Band-aware normalisation: per-band statistics, SAR linear→dB, stretch, and its exact inverse.

A *domain* (the A or B side of a translation) is described by a :class:`DomainSpec`: its
kind, the 1-based bands chosen from the source rasters, dtype, nodata, CRS, resolution and
per-band statistics over valid pixels. The spec is computed once by chip export, stored in
the chips metadata, carried into the model file and used by the predictor: nobody
recomputes it.

Networks see each band scaled into [-1, 1] by a range that depends on the kind:

========== ============================================ ======================
kind       transform before scaling                      range mapped to [-1, 1]
========== ============================================ ======================
sar        → dB (linear power 10·log10, amplitude       2nd–98th percentile (dB)
           20·log10, dB as is)
optical    none                                         2nd–98th percentile
multispec. none                                         2nd–98th percentile
dsm        none                                         min–max
generic    none                                         2nd–98th percentile
========== ============================================ ======================

SAR comes in three units (:data:`SAR_UNITS`): linear power (calibrated σ⁰/γ⁰), amplitude
(its square root, e.g. GRD digital numbers) and dB (Google Earth Engine, SNAP, BigEarthNet).
The network always works in dB; a domain records the units its rasters came in, and a raster
in other units than the model's is converted on the way in (``normalize(..., units=...)``).

``normalize`` does not clip, so ``denormalize(normalize(x)) == x`` up to float rounding;
``denormalize`` then casts to the domain's dtype (rounding and clipping integers, keeping
valid integer pixels off the nodata value).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .errors import BandMismatchError, ConfigError

KINDS = ("sar", "optical", "multispectral", "dsm", "generic")
SAR_UNITS = ("linear", "amplitude", "db")

#: Floor applied to linear SAR power before taking dB (-60 dB): keeps log10 finite.
SAR_LINEAR_FLOOR = 1e-6


@dataclass(frozen=True)
class BandStats:
    """Statistics of one band over valid pixels. For SAR, ``*_db`` hold the same in dB."""

    band: int
    count: int
    mean: float
    std: float
    min: float
    max: float
    p2: float
    p98: float
    mean_db: Optional[float] = None
    std_db: Optional[float] = None
    min_db: Optional[float] = None
    max_db: Optional[float] = None
    p2_db: Optional[float] = None
    p98_db: Optional[float] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "BandStats":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class DomainSpec:
    """What a domain is: enough to normalise its pixels in and write them back out."""

    kind: str
    bands: tuple[int, ...]
    dtype: str
    nodata: Optional[float]
    stats: tuple[BandStats, ...]
    crs: Optional[str] = None
    resolution: Optional[tuple[float, float]] = None
    band_descriptions: tuple[Optional[str], ...] = ()
    #: SAR only: the units the domain's rasters store (linear, amplitude or db).
    units: Optional[str] = None
    #: Pixel size (x, y) in metres on the ground at the centre of the first training raster, so
    #: the predictor compares ground sizes whatever the CRSs (None in files from before it).
    ground_resolution: Optional[tuple[float, float]] = None
    #: Bands in the training rasters the chosen ``bands`` were picked from (None: not recorded),
    #: so ``bands`` 1,2,3 of a 4-band file are known to be a deliberate subset.
    source_count: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown domain kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.kind == "sar":
            if self.units is None:
                object.__setattr__(self, "units", "linear")
            elif self.units not in SAR_UNITS:
                raise ConfigError(f"unknown SAR units {self.units!r} (expected one of {', '.join(SAR_UNITS)})")
        elif self.units is not None:
            raise ConfigError(f"units {self.units!r} given for a {self.kind} domain; units are for SAR only")
        if len(self.stats) != len(self.bands):
            raise BandMismatchError(
                f"domain has {len(self.bands)} band(s) but statistics for {len(self.stats)}"
            )

    @property
    def count(self) -> int:
        return len(self.bands)

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band (lo, hi) in the network's working units (dB for SAR) mapped to [-1, 1]."""
        lo, hi = [], []
        for s in self.stats:
            if self.kind == "sar":
                a, b = _first(s.p2_db, s.min_db, -30.0), _first(s.p98_db, s.max_db, 0.0)
            elif self.kind == "dsm":
                a, b = s.min, s.max
            else:
                a, b = s.p2, s.p98
            if not np.isfinite(a) or not np.isfinite(b):
                a, b = 0.0, 1.0
            if b - a <= 1e-6 * max(1.0, abs(a)):
                # A constant band: centre it and keep a unit range so nothing divides by zero.
                a, b = a - 0.5, a + 0.5
            lo.append(a)
            hi.append(b)
        return np.asarray(lo, np.float64), np.asarray(hi, np.float64)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "bands": list(self.bands),
            "dtype": self.dtype,
            "nodata": self.nodata,
            "crs": self.crs,
            "resolution": list(self.resolution) if self.resolution is not None else None,
            "band_descriptions": list(self.band_descriptions),
            "units": self.units,
            "ground_resolution": list(self.ground_resolution) if self.ground_resolution is not None else None,
            "source_count": self.source_count,
            "stats": [s.to_dict() for s in self.stats],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DomainSpec":
        return cls(
            kind=d["kind"],
            bands=tuple(int(b) for b in d["bands"]),
            dtype=str(d["dtype"]),
            nodata=None if d.get("nodata") is None else float(d["nodata"]),
            stats=tuple(BandStats.from_dict(s) for s in d["stats"]),
            crs=d.get("crs"),
            resolution=None if d.get("resolution") is None else tuple(float(r) for r in d["resolution"]),
            band_descriptions=tuple(d.get("band_descriptions") or ()),
            units=d.get("units"),  # absent in files from before units: linear power, as SAR then was
            ground_resolution=None if d.get("ground_resolution") is None
            else tuple(float(r) for r in d["ground_resolution"]),
            source_count=None if d.get("source_count") is None else int(d["source_count"]),
        )


def _first(*values: Optional[float]) -> float:
    for v in values:
        if v is not None:
            return float(v)
    raise ValueError("no value")


def check_units(units: Optional[str]) -> str:
    if units not in SAR_UNITS:
        raise ConfigError(f"unknown SAR units {units!r} (expected one of {', '.join(SAR_UNITS)})")
    return units


def to_working_units(data: np.ndarray, kind: str, units: Optional[str] = None) -> np.ndarray:
    """Raw pixels → the units statistics are scaled in (float32; dB for SAR whatever it came in)."""
    x = data.astype(np.float32, copy=False)
    if kind == "sar":
        units = check_units(units or "linear")
        if units != "db":
            factor = 10.0 if units == "linear" else 20.0
            with np.errstate(invalid="ignore", divide="ignore"):
                x = factor * np.log10(np.maximum(x, SAR_LINEAR_FLOOR))
    return x.astype(np.float32, copy=False)


def _to_db_in_place(y: np.ndarray, units: str) -> None:
    if units == "db":
        return
    np.maximum(y, SAR_LINEAR_FLOOR, out=y)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.log(y, out=y)  # numpy's float32 log is vectorised, its log10 is not (3-8x slower)
    y *= np.float32((10.0 if units == "linear" else 20.0) / np.log(10.0))


def normalize(data: np.ndarray, spec: DomainSpec, valid: Optional[np.ndarray] = None, *,
              units: Optional[str] = None) -> np.ndarray:
    """Raw (band, row, col) pixels of a domain → float32 scaled so [lo, hi] maps to [-1, 1].

    ``units`` (SAR only) are those ``data`` is stored in when they differ from the domain's
    (a dB scene given to a model trained on linear power): the pixels are converted to dB either
    way, so the network sees the same values. Invalid pixels (``valid`` False, or non-finite)
    are set to 0, the middle of the range, so they never pull a neighbour's statistics; losses
    must exclude them anyway. Works in place on one float32 copy: it runs once per tile on the
    predictor's hot path.
    """
    if data.shape[0] != spec.count:
        raise BandMismatchError(f"expected {spec.count} band(s) for a {spec.kind} domain, got {data.shape[0]}")
    lo, hi = spec.ranges()
    shape = (-1,) + (1,) * (data.ndim - 1)
    y = data.astype(np.float32, copy=True)
    if spec.kind == "sar":
        _to_db_in_place(y, check_units(units or spec.units or "linear"))
    y -= lo.astype(np.float32).reshape(shape)
    y *= (2.0 / (hi - lo)).astype(np.float32).reshape(shape)
    y -= 1.0
    bad = ~np.isfinite(y)
    if valid is not None:
        bad |= ~np.broadcast_to(valid, y.shape)
    y[bad] = 0.0
    return y


def denormalize(y: np.ndarray, spec: DomainSpec, *, channel_axis: int = 0) -> np.ndarray:
    """Network output in [-1, 1] → the domain's units and dtype (the inverse of :func:`normalize`).

    Integer outputs are rounded and clipped to the dtype's range; where the domain has an
    integer nodata value at the edge of that range (0 for most uint8 imagery), valid pixels
    are kept one step away from it so they are never read back as nodata. float32 is exact
    enough here (uint16's whole range is exactly representable) and halves memory traffic.
    """
    lo, hi = spec.ranges()
    shape = [1] * y.ndim
    shape[channel_axis] = -1
    x = y.astype(np.float32, copy=True)
    x += 1.0
    x *= ((hi - lo) / 2.0).astype(np.float32).reshape(shape)
    x += lo.astype(np.float32).reshape(shape)
    if spec.kind == "sar" and spec.units != "db":
        factor = 10.0 if spec.units in (None, "linear") else 20.0
        x *= np.float32(np.log(10.0) / factor)  # 10 ** (dB / f) = exp(dB · ln10 / f)
        np.exp(x, out=x)
    return cast_to_dtype(x, spec.dtype, spec.nodata)


def cast_to_dtype(x: np.ndarray, dtype: str, nodata: Optional[float] = None) -> np.ndarray:
    """Cast float values to ``dtype``, rounding and clipping integers; keep valid values off ``nodata``."""
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        lo, hi = float(info.min), float(info.max)
        if nodata is not None and float(nodata).is_integer():
            if nodata == lo:
                lo += 1
            elif nodata == hi:
                hi -= 1
        r = np.rint(x)
        np.clip(r, lo, hi, out=r)
        return r.astype(dt)
    out = x.astype(dt)
    if nodata is not None and np.isfinite(nodata):
        hit = out == dt.type(nodata)
        if hit.any():
            out[hit] = np.nextafter(dt.type(nodata), dt.type(np.inf))
    return out


# ------------------------------------------------------------------------------ inference

_SAR_NAME = re.compile(r"(?:^|[^a-z0-9])(vv|vh|hh|hv|sigma0|gamma0|beta0|backscatter|sar|s1[ab]?|grd)(?:[^a-z0-9]|$)")
_DSM_NAME = re.compile(r"(?:^|[^a-z0-9])(dem|dsm|dtm|elevation|height|heights|srtm|lidar|chm|ndsm|alos|copdem|aw3d)(?:[^a-z0-9]|$)")
_CLASS_NAME = re.compile(r"(?:^|[^a-z0-9])(landcover|land_cover|lc|lulc|classes|classification|labels?|mask|corine|worldcover|scl)(?:[^a-z0-9]|$)")
_OPTICAL_NAME = re.compile(r"(?:^|[^a-z0-9])(b\d{1,2}a?|nir|red|green|blue|swir\d?|rgbn?|reflectance|sr_b\d|toa|"
                           r"l1c|l2a|s2[ab]?|lc0[89]|le07|lt0[45]|ortho|orthophoto|aerial)(?:[^a-z0-9]|$)")
#: An integer single band with at most this many distinct values in a sample is a class map.
CLASS_MAP_MAX_VALUES = 64
#: Roughness (see :func:`_roughness`) below which one unsigned band is read as terrain: real DEMs
#: measure 0.000–0.003, Sentinel-2 bands at 10 m 0.014–0.07.
DEM_ROUGHNESS = 0.01


def explain_kind(dtype: str, count: int, sample: Optional[np.ndarray] = None, *,
                 names: Sequence[str] = (), image: Optional[np.ndarray] = None,
                 file_count: Optional[int] = None) -> tuple[str, str]:
    """Guess a domain's kind and say why: ``(kind, reason)``.

    ``sample`` holds valid pixel values (any shape), ``names`` the file names and band
    descriptions (``..._VV.tif``, ``DEM``, ``B04``), ``image`` one 2-D window of the first band
    with NaN where invalid (to tell a smooth DEM from a textured image), ``file_count`` the bands
    of the raster the ``count`` bands were picked from. Names decide first. Bands picked from an
    integer raster of 3 or more bands, or a float one of 4 or more, keep that raster's kind (the
    NIR band of a 4-band uint16 file is multispectral, however smooth it is; float reflectance is
    not linear SAR; 3-band float files are left to the values, as VV, VH and a ratio are common
    SAR products). Then values: positive small floats (1–2 bands) are
    linear SAR, mostly negative floats in a dB range are SAR in dB, a single float band is a DSM;
    an integer single band with few distinct values is a class map (``generic``, resampled with
    nearest neighbour) unless it is a quantised image (values on an evenly filled ladder and
    neighbours that mostly differ by one level: a 5-bit photo); signed or very smooth integer
    single bands are DEMs, other integer single bands optical; 3 bands are optical and 4+
    multispectral.
    """
    dt = np.dtype(dtype)
    text = " ".join(n.lower() for n in names if n)
    if text and count <= 4 and _SAR_NAME.search(text):
        return "sar", f"the names ({_short(names)}) are SAR polarisations or backscatter"
    if text and count == 1 and _DSM_NAME.search(text):
        return "dsm", f"the name ({_short(names)}) says elevation"
    if file_count is not None and file_count > count and file_count >= (3 if dt.kind in "ui" else 4):
        whole, why = _bands_kind(dt, file_count)
        return whole, (f"{count} band(s) picked from a {file_count}-band {dtype} raster, which is {whole} ({why}); "
                       "picked bands keep their raster's kind")
    finite = None
    if sample is not None and sample.size:
        finite = np.asarray(sample, np.float64).ravel()
        finite = finite[np.isfinite(finite)]
        if not finite.size:
            finite = None
    if dt.kind == "f":
        return _float_kind(count, finite)
    if count == 1:
        return _integer_band_kind(dt, finite, image, text, names)
    return _bands_kind(dt, count)


def _float_kind(count: int, finite: Optional[np.ndarray]) -> tuple[str, str]:
    if count <= 2 and finite is not None:
        median = float(np.median(finite))
        if (finite > 0).mean() > 0.99 and median < 10.0:
            return "sar", f"{count} float band(s) of small positive values (median {median:.3g}), like linear backscatter"
        if _db_like(finite):
            return "sar", f"{count} float band(s) of mostly negative values in a dB range (median {median:.3g})"
    if count == 1:
        return "dsm", "one float band: read as elevation"
    if count == 3:
        return "optical", "3 float bands"
    return ("multispectral", f"{count} float bands") if count >= 4 else ("generic", f"{count} float bands")


def _bands_kind(dt: np.dtype, count: int) -> tuple[str, str]:
    """The kind of ``count`` integer bands by number and bit depth alone."""
    if dt == np.uint8:
        return ("optical", f"{count} 8-bit bands") if count in (3, 4) else (
            ("multispectral", f"{count} 8-bit bands") if count > 4 else ("generic", f"{count} 8-bit bands"))
    if count >= 4:
        return "multispectral", f"{count} {dt.name} bands"
    if count == 3:
        return "optical", f"3 {dt.name} bands"
    return "generic", f"{count} {dt.name} bands"


def _integer_band_kind(dt: np.dtype, finite: Optional[np.ndarray], image: Optional[np.ndarray], text: str,
                       names: Sequence[str]) -> tuple[str, str]:
    distinct = np.unique(finite).size if finite is not None else None
    quantised = None
    if distinct is not None and distinct <= CLASS_MAP_MAX_VALUES:
        named = bool(text and _CLASS_NAME.search(text))
        quantised = None if named else _quantised_image(finite, image)
        if named or ((dt.itemsize == 1 or distinct <= 16) and quantised is None):
            why = f" and a class name ({_short(names)})" if named else ""
            return "generic", f"one integer band with {distinct} distinct values{why}: a class map"
    if dt.itemsize == 1:
        return "optical", f"one 8-bit band{': ' + quantised if quantised else ''}"
    if dt.kind == "i":
        return "dsm", f"one signed {dt.name} band: read as elevation"
    if text and _OPTICAL_NAME.search(text):
        return "optical", f"one {dt.name} band whose name ({_short(names)}) is an optical band or product"
    roughness = _roughness(image)
    if roughness is not None and roughness < DEM_ROUGHNESS:
        return "dsm", f"one {dt.name} band that varies smoothly like terrain (roughness {roughness:.3g})"
    if quantised:
        return "optical", f"one {dt.name} band: {quantised}"
    return "optical", f"one {dt.name} band that varies like image reflectance"


def _quantised_image(values: Optional[np.ndarray], image: Optional[np.ndarray]) -> Optional[str]:
    """Why few integer values are a quantised continuous image rather than classes, or None.

    A low-bit-depth photo (5-bit grayscale: 32 levels) uses nearly every level of an evenly
    spaced ladder and neighbouring pixels mostly differ by one level (72 % in a 5-bit aerial
    photo); a class map jumps between arbitrary codes (6–35 % one-level changes in land cover
    maps, whose codes often leave gaps: WorldCover's 10, 20, ... 100 fill half their ladder).
    """
    if values is None or image is None or image.ndim != 2:
        return None
    levels = np.unique(values)
    if levels.size < 8:
        return None
    step = int(np.gcd.reduce(np.diff(levels).astype(np.int64)))
    if step <= 0:
        return None
    fill = levels.size / ((levels[-1] - levels[0]) / step + 1)
    jumps = np.abs(np.diff(image, axis=1)).ravel()
    jumps = jumps[np.isfinite(jumps) & (jumps > 0)]
    if jumps.size < 50:
        return None
    one = float(np.mean(jumps == step))
    if fill >= 0.8 and one >= 0.5:
        return (f"{levels.size} levels {step} apart filling {fill:.0%} of their range, and {one:.0%} of the changes "
                "between neighbouring pixels are one level: a quantised image, not a class map")
    return None


def infer_kind(dtype: str, count: int, sample: Optional[np.ndarray] = None, *,
               names: Sequence[str] = (), image: Optional[np.ndarray] = None,
               file_count: Optional[int] = None) -> str:
    """The kind :func:`explain_kind` infers."""
    return explain_kind(dtype, count, sample, names=names, image=image, file_count=file_count)[0]


def _short(names: Sequence[str]) -> str:
    shown = [n for n in names if n][:3]
    return ", ".join(shown) + ("..." if len([n for n in names if n]) > 3 else "")


def _db_like(values: np.ndarray) -> bool:
    """Backscatter in dB: mostly negative, median between -35 and 0 dB, nothing absurd."""
    p2, median, p98 = np.percentile(values, [2, 50, 98])
    return (values < 0).mean() > 0.5 and -35.0 <= median <= 0.0 and p2 > -70.0 and p98 < 40.0


def _roughness(image: Optional[np.ndarray]) -> Optional[float]:
    """Median absolute difference of horizontal neighbours over the 2–98 % range: ~0.001 for a
    DEM, ~0.05 or more for imagery. None when the window is too small or flat."""
    if image is None or image.ndim != 2 or image.shape[1] < 8:
        return None
    img = image.astype(np.float64)
    diff = np.abs(np.diff(img, axis=1))
    diff = diff[np.isfinite(diff)]
    values = img[np.isfinite(img)]
    if diff.size < 64 or values.size < 64:
        return None
    p2, p98 = np.percentile(values, [2, 98])
    if p98 - p2 <= 0:
        return None
    return float(np.median(diff) / (p98 - p2))


#: Where the median of a scene of calibrated backscatter (σ⁰, γ⁰) lies, in dB: from calm water
#: near the noise floor (Sentinel-1's is -22 to -26 dB) to cities and slopes facing the sensor.
SCENE_MEDIAN_DB = (-30.0, 3.0)
#: A stated-dB raster with no value ≤ 0 and a median above this is no backscatter in dB.
DB_MEDIAN_MAX = 15.0
#: A stated-dB raster with no value ≤ 0 and a median below this is small positive numbers.
DB_MEDIAN_SMALL = 3.0
#: Read as amplitude, a median below this (dB) lies far below every spaceborne SAR's noise floor.
AMPLITUDE_MEDIAN_MIN_DB = -35.0
#: Positive values whose 98th percentile is above this are amplitude digital numbers.
DN_P98 = 60.0

_UNITS_FACTOR = {"linear": 10.0, "amplitude": 20.0}


@dataclass(frozen=True)
class UnitsGuess:
    """SAR units read from values: the units, why, whether the values prove them (``sure``) and,
    when they do not, the other units they could as well be (``alternative``)."""

    units: str
    reason: str
    sure: bool
    alternative: Optional[str] = None


def _finite(sample: Optional[np.ndarray]) -> np.ndarray:
    if sample is None:
        return np.empty(0)
    values = np.asarray(sample, np.float64).ravel()
    return values[np.isfinite(values)]


def _median_db(median: float, units: str) -> float:
    return _UNITS_FACTOR[units] * math.log10(median) if median > 0 else -math.inf


def _plausible(median_db: float) -> bool:
    return SCENE_MEDIAN_DB[0] <= median_db <= SCENE_MEDIAN_DB[1]


def infer_units(sample: Optional[np.ndarray], dtype: str) -> UnitsGuess:
    """SAR units from values, and how sure that is.

    The physics: calibrated backscatter lies between about -30 dB (calm water) and +5 dB, a
    scene's median within :data:`SCENE_MEDIAN_DB` (-30…+3 dB); a value m read as linear power is
    10·log10 m dB, read as amplitude (√power) 20·log10 m dB. So: negative values (over 1 %) can
    only be dB (sure); integers are amplitude digital numbers (GRD, sure); positive values with
    a 98th percentile above :data:`DN_P98` are amplitude numbers too (calibrated power or
    amplitude stays below ~3, and dB that high is no backscatter). Positive floats below that are
    *linear* when only that reading puts the median in the window (m < 0.032: as amplitude it
    would be below -30 dB), and otherwise ambiguous: float power (SNAP, ASF RTC's default) and
    float amplitude overlap for medians 0.03–1.4, so the guess is linear power, far the more
    common float product, with ``sure`` False and ``alternative`` amplitude — callers must say so.
    """
    finite = _finite(sample)
    if not finite.size:
        return UnitsGuess("linear", "no valid sample; assumed linear power", False, "amplitude")
    negative = float((finite < 0).mean())
    median = float(np.median(finite))
    if negative > 0.01:
        return UnitsGuess("db", f"{100 * negative:.0f}% of the values are negative (median {median:.3g}), which "
                                "power and amplitude cannot be", True)
    if np.dtype(dtype).kind in "ui":
        return UnitsGuess("amplitude", f"integer values (median {median:.3g}), like GRD amplitude digital numbers",
                          True)
    p98 = float(np.percentile(finite, 98))
    if p98 > DN_P98:
        return UnitsGuess("amplitude", f"large positive values (median {median:.3g}, 98th percentile {p98:.3g}), "
                                       "like amplitude digital numbers", True)
    as_power, as_amplitude = _median_db(median, "linear"), _median_db(median, "amplitude")
    readings = f"median {median:.3g}: {as_power:.1f} dB as linear power, {as_amplitude:.1f} dB as amplitude"
    if _plausible(as_power) and not _plausible(as_amplitude):
        window = f"{SCENE_MEDIAN_DB[0]:.0f}..{SCENE_MEDIAN_DB[1]:+.0f} dB"
        return UnitsGuess("linear", f"positive values with {readings}; only linear power puts it within the "
                                    f"{window} of backscatter scenes", True)
    if _plausible(as_power):
        return UnitsGuess("linear", f"positive values with {readings}, both plausible; guessed linear power, the "
                                    "usual float product", False, "amplitude")
    if _plausible(as_amplitude):  # not reached with the window above, kept for a wider one
        return UnitsGuess("amplitude", f"positive values with {readings}", False, "linear")
    guess = "linear" if median < 1.0 else "amplitude"
    return UnitsGuess(guess, f"positive values with {readings}, neither like calibrated backscatter; guessed "
                             f"{units_name(guess)}", False, "amplitude" if guess == "linear" else "linear")


def explain_units(sample: Optional[np.ndarray], dtype: str) -> tuple[str, str]:
    """SAR units from values: ``(units, reason)`` (see :func:`infer_units`, which also says how sure)."""
    guess = infer_units(sample, dtype)
    return guess.units, guess.reason


def units_name(units: Optional[str]) -> str:
    """``linear power``, ``amplitude`` or ``dB``: units as messages name them."""
    return {"linear": "linear power", "amplitude": "amplitude", "db": "dB"}.get(units or "linear", str(units))


def check_stated_units(units: str, sample: Optional[np.ndarray]) -> Optional[str]:
    """Why stated SAR ``units`` contradict the values beyond doubt (a message to refuse with), or None.

    Refused: power or amplitude with over 1 % negative values (they cannot be negative); dB with
    no value ≤ 0 and a median below :data:`DB_MEDIAN_SMALL` or above :data:`DB_MEDIAN_MAX` dB
    (speckle spreads a dB image over 10 dB or more, so backscatter in dB always has values ≤ 0
    unless its median is far above any natural level; small positive numbers are linear power or
    amplitude, large ones digital numbers); amplitude whose median reads below
    :data:`AMPLITUDE_MEDIAN_MIN_DB` (that is linear power). Weaker contradictions are
    :func:`doubt_stated_units`.
    """
    check_units(units)
    finite = _finite(sample)
    if not finite.size:
        return None
    median = float(np.median(finite))
    if units == "db":
        if float((finite <= 0).mean()) < 0.001 and not DB_MEDIAN_SMALL <= median <= DB_MEDIAN_MAX:
            guess = infer_units(finite, "float64")
            what = (f"like {units_name(guess.units)}" if median < DB_MEDIAN_SMALL
                    else f"far above any backscatter level in dB, like {units_name(guess.units)}")
            return (f"stated units db but no value is 0 or below and the median is {median:.3g}, {what}; backscatter "
                    f"in dB is mostly negative (use units {guess.units})")
        return None
    negative = float((finite < 0).mean())
    if negative > 0.01:
        return (f"stated units {units} but {100 * negative:.0f}% of the values are negative, which "
                f"{'power' if units == 'linear' else 'amplitude'} cannot be; these look like dB (use units db)")
    if units == "amplitude" and _median_db(median, "amplitude") < AMPLITUDE_MEDIAN_MIN_DB:
        as_amplitude, as_power = _median_db(median, "amplitude"), _median_db(median, "linear")
        return (f"stated units amplitude but the median {median:.3g} would be {as_amplitude:.0f} dB, far below any "
                f"SAR's noise floor; as linear power it is {as_power:.1f} dB (use units linear)")
    return None


def doubt_stated_units(units: str, sample: Optional[np.ndarray]) -> Optional[str]:
    """Why stated SAR ``units`` look unlikely though not impossible (a warning), or None: a median
    that the stated units put outside :data:`SCENE_MEDIAN_DB` while other units put it inside,
    or a dB raster without any value ≤ 0."""
    check_units(units)
    finite = _finite(sample)
    if not finite.size or check_stated_units(units, finite):
        return None
    median = float(np.median(finite))
    if units == "db":
        if float((finite <= 0).mean()) < 0.001:
            return (f"stated units db but no value is 0 or below (median {median:.3g}); backscatter in dB is mostly "
                    "negative")
        return None
    if median <= 0 or float(np.percentile(finite, 98)) > DN_P98:
        return None  # digital numbers: uncalibrated, any level
    stated_db = _median_db(median, units)
    other = "amplitude" if units == "linear" else "linear"
    other_db = _median_db(median, other)
    if not _plausible(stated_db) and _plausible(other_db):
        return (f"stated units {units} put the median {median:.3g} at {stated_db:.1f} dB, outside the "
                f"{SCENE_MEDIAN_DB[0]:.0f}..{SCENE_MEDIAN_DB[1]:+.0f} dB of backscatter scenes; as "
                f"{units_name(other)} it would be {other_db:.1f} dB: check the units")
    return None


# ---------------------------------------------------------------------------- statistics

class StatsAccumulator:
    """Streaming per-band statistics over valid pixels, in bounded memory.

    mean/std/min/max are exact (float64 sums merged chunk by chunk). Percentiles are exact
    for 8/16-bit integer data (a histogram of every value) and, for float data, exact while
    at most ``max_samples`` valid values per band have been seen, then estimated from a
    seeded uniform reservoir sample of that size (Vitter's algorithm R, vectorised per chunk:
    a chunk costs one random draw per value, not a re-sort of the sample). For SAR the same is
    kept in dB (``*_db``) from the same histogram or sample: exact for 16-bit amplitude and for
    float bands while the sample holds every value seen, estimated from the uniform sample beyond
    (min/max in dB are always exact). Converting every pixel to dB for exact dB moments cost a
    fifth of a linear-SAR export and the network only uses the dB percentiles.
    """

    def __init__(self, n_bands: int, dtype: str, kind: str, *, max_samples: int = 1_000_000,
                 seed: int = 0, units: Optional[str] = None) -> None:
        self.n_bands = n_bands
        self.kind = kind
        self.units = check_units(units or "linear") if kind == "sar" else None
        self.integer = np.dtype(dtype).kind in "ui" and np.dtype(dtype).itemsize <= 2
        self.offset = int(np.iinfo(np.dtype(dtype)).min) if self.integer else 0
        self._linear = [_BandAccumulator(self.integer, self.offset, max_samples, seed + i) for i in range(n_bands)]
        self._to_db = kind == "sar" and self.units != "db"

    def update(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add one chip: ``data`` (band, row, col) and ``valid`` (row, col) or (band, row, col)."""
        if data.shape[0] != self.n_bands:
            raise BandMismatchError(f"expected {self.n_bands} band(s), got {data.shape[0]}")
        valid = np.broadcast_to(valid, data.shape)
        for i in range(self.n_bands):
            values = data[i][valid[i]]
            if values.size == 0:
                continue
            self._linear[i].add(values)

    def result(self, band_numbers: Sequence[int]) -> tuple[BandStats, ...]:
        out = []
        for i, band in enumerate(band_numbers):
            lin = self._linear[i].summary()
            extra: dict[str, Any] = {}
            if self.kind == "sar":
                if not self._to_db:  # already dB
                    extra = {f"{k}_db": v for k, v in lin.items() if k != "count"}
                else:
                    extra = self._db_summary(self._linear[i])
            out.append(BandStats(band=int(band), **lin, **extra))
        return tuple(out)


    def _db_summary(self, band: "_BandAccumulator") -> dict[str, Any]:
        def to_db(v: Any) -> np.ndarray:
            return to_working_units(np.asarray(v, np.float64), "sar", self.units).astype(np.float64)

        if band.count == 0:
            return {}
        mean, std = band.transformed_moments(to_db)
        lo, hi = to_db([band.min, band.max])
        return {"mean_db": mean, "std_db": std, "min_db": float(lo), "max_db": float(hi),
                "p2_db": band.percentile(2.0, to_db), "p98_db": band.percentile(98.0, to_db)}


class _Moments:
    """Exact count, mean, M2, min and max of a stream (Chan et al. parallel merge)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = np.inf
        self.max = -np.inf

    def add(self, v: np.ndarray) -> None:
        v = v.astype(np.float64, copy=False).ravel()
        n = v.size
        chunk_mean = float(v.mean())
        chunk_m2 = float(((v - chunk_mean) ** 2).sum())
        delta = chunk_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += chunk_m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))

    def summary(self) -> dict:
        if self.count == 0:
            nan = float("nan")
            return dict(count=0, mean=nan, std=nan, min=nan, max=nan)
        return dict(count=int(self.count), mean=float(self.mean), std=float(np.sqrt(self.m2 / self.count)),
                    min=float(self.min), max=float(self.max))


class _BandAccumulator(_Moments):
    """Moments plus what percentiles need: a histogram (small integers) or a reservoir sample."""

    def __init__(self, integer: bool, offset: int, max_samples: int, seed: int) -> None:
        super().__init__()
        self.integer = integer
        self.offset = offset
        self.hist: Optional[np.ndarray] = None
        self.max_samples = max_samples
        self.rng = np.random.default_rng(seed)
        self.sample = np.empty(0, np.float64)
        self.filled = 0

    def add(self, values: np.ndarray) -> None:
        if not self.integer:
            super().add(values)
            self._reservoir(values.astype(np.float64, copy=False).ravel())
            return
        # 8/16-bit integers: only the histogram (the moments come from it in summary(), exactly):
        # float64 moments of every chip were 60 % of the statistics' cost of a chip export
        self.count += values.size
        flat = values.ravel()
        counts = np.bincount(flat if self.offset == 0 else flat.astype(np.int32) - self.offset)
        if self.hist is None or self.hist.size < counts.size:
            grown = np.zeros(counts.size, np.int64)
            if self.hist is not None:
                grown[: self.hist.size] = self.hist
            self.hist = grown
        self.hist[: counts.size] += counts

    def _reservoir(self, v: np.ndarray) -> None:
        """Algorithm R: keep the first ``max_samples`` values, then value number t replaces a
        random slot with probability max_samples / t (a uniform sample of everything seen)."""
        k = self.max_samples
        seen_before = self.count - v.size  # Moments.add already counted this chunk
        take = min(v.size, k - self.filled)
        if take > 0:
            if self.sample.size < self.filled + take:
                grown = np.empty(min(k, max(2 * self.sample.size, self.filled + take)), np.float64)
                grown[: self.filled] = self.sample[: self.filled]
                self.sample = grown
            self.sample[self.filled:self.filled + take] = v[:take]
            self.filled += take
        rest = v[take:]
        if not rest.size:
            return
        t = seen_before + take + 1 + np.arange(rest.size, dtype=np.float64)
        accept = np.nonzero(self.rng.random(rest.size) * t < k)[0]
        if accept.size:
            slots = self.rng.integers(0, k, accept.size)
            self.sample[slots] = rest[accept]  # in order: a later value replacing the same slot wins

    def percentile(self, q: float, transform: Optional[Any] = None) -> float:
        """The q-th percentile (numpy's 'linear' rule), optionally of ``transform(values)``
        (a monotone map such as linear → dB)."""
        if self.count == 0:
            return float("nan")
        if self.integer and self.hist is not None:
            pos = q / 100.0 * (self.count - 1)
            lo_i, hi_i = int(np.floor(pos)), int(np.ceil(pos))
            cum = np.cumsum(self.hist)
            lo_v = float(np.searchsorted(cum, lo_i, side="right") + self.offset)
            hi_v = float(np.searchsorted(cum, hi_i, side="right") + self.offset)
            if transform is not None:
                lo_v, hi_v = (float(x) for x in transform([lo_v, hi_v]))
            return lo_v + (hi_v - lo_v) * (pos - lo_i)
        sample = self.sample[: self.filled]
        return float(np.percentile(sample if transform is None else transform(sample), q))

    def transformed_moments(self, transform: Any) -> tuple[float, float]:
        """Mean and std of ``transform(values)``: exact from the histogram, else from the sample."""
        if self.integer and self.hist is not None:
            values = np.nonzero(self.hist)[0]
            weights = self.hist[values].astype(np.float64)
            t = transform(values.astype(np.float64) + self.offset)
            mean = float(np.average(t, weights=weights))
            return mean, float(np.sqrt(np.average((t - mean) ** 2, weights=weights)))
        t = transform(self.sample[: self.filled])
        return float(t.mean()), float(t.std())

    def summary(self) -> dict:
        if self.integer and self.hist is not None and self.count:
            seen = np.nonzero(self.hist)[0]
            self.min, self.max = float(seen[0] + self.offset), float(seen[-1] + self.offset)
            self.mean, std = self.transformed_moments(lambda v: v)
            self.m2 = std * std * self.count
        out = super().summary()
        out.update(p2=self.percentile(2.0), p98=self.percentile(98.0))
        return out

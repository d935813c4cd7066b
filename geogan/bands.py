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
sar        linear power → dB (10·log10)                 2nd–98th percentile (dB)
optical    none                                         2nd–98th percentile
multispec. none                                         2nd–98th percentile
dsm        none                                         min–max
generic    none                                         2nd–98th percentile
========== ============================================ ======================

``normalize`` does not clip, so ``denormalize(normalize(x)) == x`` up to float rounding;
``denormalize`` then casts to the domain's dtype (rounding and clipping integers, keeping
valid integer pixels off the nodata value).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .errors import BandMismatchError, ConfigError

KINDS = ("sar", "optical", "multispectral", "dsm", "generic")

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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown domain kind {self.kind!r} (expected one of {', '.join(KINDS)})")
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
        )


def _first(*values: Optional[float]) -> float:
    for v in values:
        if v is not None:
            return float(v)
    raise ValueError("no value")


def to_working_units(data: np.ndarray, kind: str) -> np.ndarray:
    """Raw pixels → the units statistics are scaled in (float32; dB for SAR)."""
    x = data.astype(np.float32, copy=False)
    if kind == "sar":
        with np.errstate(invalid="ignore", divide="ignore"):
            x = 10.0 * np.log10(np.maximum(x, SAR_LINEAR_FLOOR))
    return x.astype(np.float32, copy=False)


def normalize(data: np.ndarray, spec: DomainSpec, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Raw (band, row, col) pixels of a domain → float32 scaled so [lo, hi] maps to [-1, 1].

    Invalid pixels (``valid`` False, or non-finite) are set to 0, the middle of the range,
    so they never pull a neighbour's statistics; losses must exclude them anyway. Works in
    place on one float32 copy: it runs once per tile on the predictor's hot path.
    """
    if data.shape[0] != spec.count:
        raise BandMismatchError(f"expected {spec.count} band(s) for a {spec.kind} domain, got {data.shape[0]}")
    lo, hi = spec.ranges()
    shape = (-1,) + (1,) * (data.ndim - 1)
    y = data.astype(np.float32, copy=True)
    if spec.kind == "sar":
        np.maximum(y, SAR_LINEAR_FLOOR, out=y)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.log10(y, out=y)
        y *= 10.0
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
    if spec.kind == "sar":
        x *= np.float32(np.log(10.0) / 10.0)  # 10 ** (dB / 10) = exp(dB · ln10 / 10)
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


def infer_kind(dtype: str, count: int, sample: Optional[np.ndarray] = None) -> str:
    """Guess a domain's kind from its dtype, band count and a sample of valid pixel values.

    float with 1–2 bands of small positive values (linear backscatter, median < 10) → sar;
    other float single bands → dsm; 8-bit 1/3/4 bands → optical; 16-bit with 4+ bands →
    multispectral; 3-band 16-bit → optical; anything else with 4+ bands → multispectral.
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        if count <= 2 and sample is not None and sample.size:
            finite = sample[np.isfinite(sample)]
            if finite.size and (finite > 0).mean() > 0.99 and float(np.median(finite)) < 10.0:
                return "sar"
        if count == 1:
            return "dsm"
        return "multispectral" if count >= 4 else "generic"
    if dt == np.uint8:
        return "optical" if count in (1, 3, 4) else ("multispectral" if count > 4 else "generic")
    if count >= 4:
        return "multispectral"
    if count == 3:
        return "optical"
    return "generic"


class StatsAccumulator:
    """Streaming per-band statistics over valid pixels, in bounded memory.

    mean/std/min/max are exact (float64 sums merged chunk by chunk). Percentiles are exact
    for integer data (a histogram of every value) and, for float data, exact while fewer
    than ``max_samples`` valid values per band have been seen, then estimated from a
    seeded uniform reservoir sample of that size. For SAR the same is kept in dB.
    """

    def __init__(self, n_bands: int, dtype: str, kind: str, *, max_samples: int = 1_000_000,
                 seed: int = 0) -> None:
        self.n_bands = n_bands
        self.kind = kind
        self.integer = np.dtype(dtype).kind in "ui" and np.dtype(dtype).itemsize <= 2
        self.offset = int(np.iinfo(np.dtype(dtype)).min) if self.integer else 0
        self._linear = [_BandAccumulator(self.integer, self.offset, max_samples, seed + i) for i in range(n_bands)]
        self._db = (
            [_BandAccumulator(False, 0, max_samples, seed + 1000 + i) for i in range(n_bands)]
            if kind == "sar" else None
        )

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
            if self._db is not None:
                self._db[i].add(to_working_units(values, "sar"))

    def result(self, band_numbers: Sequence[int]) -> tuple[BandStats, ...]:
        out = []
        for i, band in enumerate(band_numbers):
            lin = self._linear[i].summary()
            extra: dict[str, Any] = {}
            if self._db is not None:
                db = self._db[i].summary()
                extra = {f"{k}_db": v for k, v in db.items() if k != "count"}
            out.append(BandStats(band=int(band), **lin, **extra))
        return tuple(out)


class _BandAccumulator:
    def __init__(self, integer: bool, offset: int, max_samples: int, seed: int) -> None:
        self.integer = integer
        self.offset = offset
        self.count = 0
        self.total = 0.0
        self.m2 = 0.0
        self.mean = 0.0
        self.min = np.inf
        self.max = -np.inf
        self.hist: Optional[np.ndarray] = None
        self.max_samples = max_samples
        self.rng = np.random.default_rng(seed)
        self.sample = np.empty(0, np.float64)
        self.keys = np.empty(0, np.float64)

    def add(self, values: np.ndarray) -> None:
        v = values.astype(np.float64, copy=False).ravel()
        n = v.size
        # Chan et al. parallel merge of (count, mean, M2): exact to float64 rounding.
        chunk_mean = float(v.mean())
        chunk_m2 = float(((v - chunk_mean) ** 2).sum())
        delta = chunk_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += chunk_m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        if self.integer:
            counts = np.bincount((values.astype(np.int64).ravel() - self.offset))
            if self.hist is None or self.hist.size < counts.size:
                grown = np.zeros(counts.size if self.hist is None else counts.size, np.int64)
                if self.hist is not None:
                    grown[: self.hist.size] = self.hist
                self.hist = grown
            self.hist[: counts.size] += counts
        else:
            keys = self.rng.random(n)
            self.sample = np.concatenate([self.sample, v])
            self.keys = np.concatenate([self.keys, keys])
            if self.sample.size > self.max_samples:
                keep = np.argpartition(self.keys, -self.max_samples)[-self.max_samples:]
                self.sample, self.keys = self.sample[keep], self.keys[keep]

    def _percentile(self, q: float) -> float:
        if self.integer and self.hist is not None:
            # numpy's default 'linear' interpolation, evaluated on the histogram.
            pos = q / 100.0 * (self.count - 1)
            lo_i, hi_i = int(np.floor(pos)), int(np.ceil(pos))
            cum = np.cumsum(self.hist)
            lo_v = float(np.searchsorted(cum, lo_i, side="right") + self.offset)
            hi_v = float(np.searchsorted(cum, hi_i, side="right") + self.offset)
            return lo_v + (hi_v - lo_v) * (pos - lo_i)
        return float(np.percentile(self.sample, q))

    def summary(self) -> dict:
        if self.count == 0:
            nan = float("nan")
            return dict(count=0, mean=nan, std=nan, min=nan, max=nan, p2=nan, p98=nan)
        return dict(
            count=int(self.count),
            mean=float(self.mean),
            std=float(np.sqrt(self.m2 / self.count)),
            min=float(self.min),
            max=float(self.max),
            p2=self._percentile(2.0),
            p98=self._percentile(98.0),
        )

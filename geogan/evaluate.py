"""Compare a prediction with a reference raster on the same grid, and look for tile seams.

:func:`evaluate_rasters` reports, per band and overall, over pixels valid in *both* rasters
(GDAL mask — nodata, internal mask, alpha — and finite):

* **MAE**, **RMSE** of prediction − truth, in the rasters' units.
* **PSNR** = 20·log10(R) − 10·log10(MSE), with R the data range of the truth (max − min over
  its valid pixels). Per band with that band's range; overall with the pooled MSE of all bands
  and the range over all bands (what PSNR of the whole array means). Infinite when MSE is 0.
* **SSIM** (Wang et al. 2004): Gaussian window 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03,
  population (weighted) variances, C1 = (K1·R)², C2 = (K2·R)² with the band's R — as
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=R)``. It is averaged over the pixels whose whole
  11×11 window lies inside the raster and is valid in both (skimage likewise drops a border of
  5 pixels). Overall SSIM is the mean over bands. Computed strip by strip with a 5-row halo,
  so memory does not grow with the scene.
* **SAM** (3+ bands): the mean spectral angle, in degrees, between the prediction's and the
  truth's band vectors, over pixels where neither vector is zero.

With ``classes=`` (an integer class raster on the same grid, e.g. land cover) the report adds,
per class value, over pixels valid in all three rasters: the pixel count, MAE and RMSE, the
class's mean truth and predicted colour (vector of the compared bands), and which class each
pixel was *painted as*: the class whose mean truth colour is nearest (Euclidean) to the
predicted colour. The confusion table counts those assignments (rows: true class, columns:
painted as); a class whose most frequent row entry is another class was swapped. Two passes,
strip by strip, so memory stays bounded.

:func:`seam_ratio` measures tiling artefacts: the mean gradient across the boundaries where
:func:`geogan.predict.translate_raster` switches tiles versus across every other pixel boundary.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from . import raster
from .errors import BandMismatchError, InputError, RasterError, describe
from .notices import with_warnings
from .provenance import provenance_from_tags, provenance_lines

K1, K2 = 0.01, 0.03
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11×11 window: skimage's int(3.5·σ + 0.5)
STRIP_ROWS = 256


@dataclass(frozen=True)
class BandMetrics:
    """Metrics of one band pair. ``band`` is the truth's 1-based band number."""

    band: int
    prediction_band: int
    pixels: int
    data_range: float
    mae: float
    rmse: float
    psnr: float
    ssim: float
    ssim_pixels: int


@dataclass(frozen=True)
class EvaluationReport:
    """Per-band and overall metrics of a prediction against a truth raster."""

    prediction: str
    truth: str
    bands: tuple[BandMetrics, ...]
    pixels: int
    mae: float
    rmse: float
    psnr: float
    ssim: float
    sam: Optional[float]
    ssim_window: str = "gaussian 11x11 sigma=1.5"
    classes: Optional["ClassReport"] = None
    #: The prediction's ``GEOGAN_*`` tags: which model and options made it (empty: none recorded).
    provenance: dict = field(default_factory=dict)
    #: The warnings of the evaluation, as the CLI prints them (see :mod:`geogan.notices`).
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain JSON-ready dict: NaN becomes null and an infinite PSNR the string "inf"."""
        return _jsonable(asdict(self))

    def lines(self) -> list[str]:
        """A small human-readable table."""
        out = [f"prediction {self.prediction} vs truth {self.truth}: {self.pixels} pixel(s) valid in both",
               *(f"  {line}" for line in provenance_lines(self.provenance)),
               f"{'band':>5} {'MAE':>12} {'RMSE':>12} {'PSNR dB':>9} {'SSIM':>7}"]
        for b in self.bands:
            out.append(f"{b.band:>5} {b.mae:>12.6g} {b.rmse:>12.6g} {b.psnr:>9.3f} {b.ssim:>7.4f}")
        out.append(f"{'all':>5} {self.mae:>12.6g} {self.rmse:>12.6g} {self.psnr:>9.3f} {self.ssim:>7.4f}")
        if self.sam is not None:
            out.append(f"SAM (mean spectral angle): {self.sam:.4f} degrees")
        out.append(f"SSIM window: {self.ssim_window}")
        if math.isnan(self.ssim):
            out.append("SSIM not computed (nan): no 11x11 window lies wholly within pixels valid in both rasters "
                       "(a raster under 11 pixels across, or nodata within 5 pixels of every valid pixel)")
        if self.classes is not None:
            out += self.classes.lines()
        return out


@dataclass(frozen=True)
class ClassMetrics:
    """Scores of one class of the class raster.

    ``own_share`` is the share of the class's pixels whose predicted colour is nearest to the
    class's own mean truth colour; ``painted_as`` the class most of its pixels were nearest to.
    """

    value: int
    name: str
    pixels: int
    mae: float
    rmse: float
    truth_mean: tuple[float, ...]
    prediction_mean: tuple[float, ...]
    own_share: float
    painted_as: int


@dataclass(frozen=True)
class ClassReport:
    """Per-class scores and the nearest-mean-colour confusion table (rows true, columns painted as)."""

    path: str
    values: tuple[int, ...]
    classes: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]

    @property
    def swapped(self) -> tuple[int, ...]:
        """Class values painted more often as another class than as themselves."""
        return tuple(c.value for c in self.classes if c.painted_as != c.value)

    def lines(self) -> list[str]:
        names = [c.name or str(c.value) for c in self.classes]
        width = max(5, *(len(n) for n in names))
        out = [f"per class ({self.path}); painted as = nearest mean truth colour:",
               f"{'class':>{width}} {'pixels':>9} {'MAE':>9} {'RMSE':>9} {'own %':>7}  painted as"]
        for c, name in zip(self.classes, names):
            painted = names[self.values.index(c.painted_as)]
            flag = "" if c.painted_as == c.value else "  <- swapped"
            out.append(f"{name:>{width}} {c.pixels:>9} {c.mae:>9.4g} {c.rmse:>9.4g} "
                       f"{100 * c.own_share:>7.1f}  {painted}{flag}")
        out.append("confusion, % of each true class (rows) painted as (columns): " + " ".join(names))
        for name, row in zip(names, self.confusion):
            total = max(sum(row), 1)
            out.append(f"{name:>{width}} " + " ".join(f"{100 * v / total:5.1f}" for v in row))
        return out


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


# --------------------------------------------------------------------------- helpers

def gaussian_window(radius: int = SSIM_RADIUS, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps; the 2-D SSIM window is its outer product."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation of a 2-D array with ``taps`` on both axes, 'valid' part only."""
    k = taps.size
    rows = a.shape[0] - k + 1
    tmp = taps[0] * a[0:rows]
    for i in range(1, k):
        tmp += taps[i] * a[i:i + rows]
    cols = a.shape[1] - k + 1
    out = taps[0] * tmp[:, 0:cols]
    for i in range(1, k):
        out += taps[i] * tmp[:, i:i + cols]
    return out


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM at every pixel whose full 11×11 window fits in the 2-D arrays (float64)."""
    g = gaussian_window()
    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def _strips(height: int, rows: int, halo: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """(read_y0, read_y1, y0, y1): row strips [y0, y1) read with ``halo`` extra rows each side."""
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        yield max(0, y0 - halo), min(height, y1 + halo), y0, y1


def _read(ds, bands: Sequence[int], y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.windows import Window

    data, masks = raster.read_window(ds, bands, Window(0, y0, ds.width, y1 - y0))
    return data.astype(np.float64), raster.valid_mask(ds, data, masks, "generic")


def check_same_grid(a, b, a_path: Union[str, os.PathLike], b_path: Union[str, os.PathLike]) -> None:
    """Raise :class:`RasterError` saying how two open rasters' grids differ (shape, CRS, transform)."""
    diffs = []
    if (a.height, a.width) != (b.height, b.width):
        diffs.append(f"shape {a.height}x{a.width} vs {b.height}x{b.width} (rows x cols)")
    if a.crs != b.crs:
        name = lambda crs: crs.to_string() if crs else "none"  # noqa: E731
        diffs.append(f"CRS {name(a.crs)} vs {name(b.crs)}")
    ta, tb = np.asarray(tuple(a.transform)[:6]), np.asarray(tuple(b.transform)[:6])
    pixel = max(abs(ta[0]), abs(ta[4]), abs(tb[0]), abs(tb[4]), 1e-12)
    if not np.allclose(ta, tb, rtol=0.0, atol=1e-6 * pixel):
        diffs.append(f"transform {_numbers(ta)} vs {_numbers(tb)}")
    if diffs:
        raise RasterError(f"{describe(a_path)} and {describe(b_path)} are not on the same grid: {'; '.join(diffs)}")


def _numbers(values: np.ndarray) -> str:
    """``(10, 0, 500000, 0, -10, 5e+06)``: plain numbers (a numpy 2 repr would say ``np.float64(10.0)``)."""
    return "(" + ", ".join(f"{float(v):.10g}" for v in values) + ")"


def _band_lists(bands, pred, truth, pred_path: Path, truth_path: Path) -> tuple[list[int], list[int]]:
    if bands is None or (isinstance(bands, str) and not bands.strip()):
        if pred.count != truth.count:
            raise BandMismatchError(f"{describe(pred_path)} has {pred.count} band(s) but {describe(truth_path)} has "
                                    f"{truth.count}; use --bands to say which truth bands to compare")
        return list(range(1, pred.count + 1)), list(range(1, truth.count + 1))
    truth_bands = raster.parse_bands(bands, truth.count, truth_path)
    if pred.count == len(truth_bands) and truth.count != pred.count:
        return list(range(1, pred.count + 1)), truth_bands  # a prediction of just those bands
    return raster.parse_bands(bands, pred.count, pred_path), truth_bands


# --------------------------------------------------------------------------- metrics

#: The asset of a prediction's STAC Item (``NAME.json``, written by predict) that is its GeoTIFF.
PREDICTION_ASSET = "data"


@with_warnings
def evaluate_rasters(prediction: Any, truth: Any, *,
                     bands: Union[None, str, Sequence[int]] = None,
                     classes: Union[None, str, os.PathLike] = None,
                     assets: Union[None, str, Sequence[str]] = None,
                     prediction_assets: Union[None, str, Sequence[str]] = None) -> EvaluationReport:
    """Compare ``prediction`` with ``truth`` over the pixels valid in both (see the module doc).

    Either may be a raster, a comma-joined scene or a STAC Item (a JSON file or URL holding one
    Item, a dict or a pystac object; :mod:`geogan.stac`): the truth's Item is read as the scene
    of its ``assets`` (``"B04,B03,B02"``, in order, stacked onto the finest grid), the
    prediction's as that of ``prediction_assets`` (default ``"data"``: the GeoTIFF of the Item
    predict writes beside each output). ``bands`` (1-based, e.g. ``"1,2,3"``) picks the bands
    compared in both rasters; when the prediction has exactly that many bands and the truth
    more, it picks the truth's bands and the prediction's are taken in order. Rasters on different grids are refused. ``classes``,
    a one-band integer class raster on the same grid, adds per-class scores (``report.classes``).
    ``report.warnings`` lists the warnings the call logged.
    """
    pred_p, pred_label = evaluated_scene(prediction, prediction_assets, "prediction", PREDICTION_ASSET)
    truth_p, truth_label = evaluated_scene(truth, assets, "truth")
    with raster.open_raster(pred_p, require_georeference=False) as pds, \
            raster.open_raster(truth_p, require_georeference=False) as tds:
        check_same_grid(pds, tds, pred_label, truth_label)
        made_by = provenance_from_tags(pds.tags())
        pbands, tbands = _band_lists(bands, pds, tds, pred_label, truth_label)
        class_report = None
        if classes is not None:
            class_report = class_scores(pds, tds, pbands, tbands, Path(classes), truth_label)
        n = len(tbands)
        count = 0
        abs_sum = np.zeros(n)
        sq_sum = np.zeros(n)
        tmin = np.full(n, np.inf)
        tmax = np.full(n, -np.inf)
        sam_sum, sam_count = 0.0, 0
        for _, _, y0, y1 in _strips(tds.height, STRIP_ROWS):
            p, pv = _read(pds, pbands, y0, y1)
            t, tv = _read(tds, tbands, y0, y1)
            valid = pv & tv
            k = int(valid.sum())
            if not k:
                continue
            count += k
            pv_, tv_ = p[:, valid], t[:, valid]
            d = pv_ - tv_
            abs_sum += np.abs(d).sum(axis=1)
            sq_sum += (d * d).sum(axis=1)
            tmin = np.minimum(tmin, tv_.min(axis=1))
            tmax = np.maximum(tmax, tv_.max(axis=1))
            if n >= 3:
                pn = np.sqrt((pv_ * pv_).sum(axis=0))
                tn = np.sqrt((tv_ * tv_).sum(axis=0))
                ok = (pn > 0) & (tn > 0)
                cos = (pv_[:, ok] * tv_[:, ok]).sum(axis=0) / (pn[ok] * tn[ok])
                sam_sum += float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).sum())
                sam_count += int(ok.sum())
        if count == 0:
            raise RasterError(f"{describe(pred_label)} and {describe(truth_label)} have no pixel valid in both")
        ranges = tmax - tmin
        ssim_sum, ssim_count = _ssim_pass(pds, tds, pbands, tbands, np.where(ranges > 0, ranges, 1.0))

    mse = sq_sum / count
    per_band = []
    for i in range(n):
        per_band.append(BandMetrics(
            band=tbands[i], prediction_band=pbands[i], pixels=count, data_range=float(ranges[i]),
            mae=float(abs_sum[i] / count), rmse=float(np.sqrt(mse[i])), psnr=_psnr(float(ranges[i]), float(mse[i])),
            ssim=float(ssim_sum[i] / ssim_count) if ssim_count else float("nan"), ssim_pixels=int(ssim_count)))
    pooled = float(sq_sum.sum() / (count * n))
    overall_range = float(tmax.max() - tmin.min())
    return EvaluationReport(
        prediction=pred_label, truth=truth_label, bands=tuple(per_band), pixels=count,
        mae=float(abs_sum.sum() / (count * n)), rmse=float(np.sqrt(pooled)), psnr=_psnr(overall_range, pooled),
        ssim=float(np.mean([b.ssim for b in per_band])),
        sam=(sam_sum / sam_count if sam_count else float("nan")) if n >= 3 else None,
        classes=class_report, provenance=made_by,
    )


def evaluated_scene(spec: Any, assets: Union[None, str, Sequence[str]], what: str,
                    default_assets: Optional[str] = None) -> tuple[Any, str]:
    """What :func:`geogan.raster.open_raster` reads for ``spec``, and how messages name it.

    A STAC input (:func:`geogan.stac.is_stac_spec`) must hold one Item; it becomes the scene of
    its ``assets`` (else ``default_assets``) through the multi-file stacking, named
    ``'file.json' item ID (KEYS)``. Anything else is read as it is (not ``Path()``: that would
    mangle ``/vsicurl/https://``); asset keys without a STAC input are refused in one line.
    """
    from .scenes import Scene, expand_scenes
    from .stac import is_stac_spec

    if not is_stac_spec(spec):
        if assets is not None:
            expand_scenes(spec, what=what, assets=assets)  # the one-line "no input is a STAC Item" error
        return (spec, spec.label) if isinstance(spec, Scene) else (os.fspath(spec), os.fspath(spec))
    scenes = expand_scenes(spec, what=what, assets=assets if assets is not None else default_assets)
    source = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else "STAC item"
    if len(scenes) > 1:
        raise InputError(f"{describe(source)}: holds {len(scenes)} STAC items ({scenes[0].item.id}, ...); the "
                         f"{what} is one scene: give the JSON of one item")
    scene = scenes[0]
    return scene, f"{source} item {scene.item.id} ({','.join(scene.item.assets)})"


def _psnr(data_range: float, mse: float) -> float:
    if mse == 0:
        return float("inf")
    if data_range <= 0:
        return float("nan")
    return float(20.0 * np.log10(data_range) - 10.0 * np.log10(mse))


def _ssim_pass(pds, tds, pbands, tbands, ranges: np.ndarray) -> tuple[np.ndarray, int]:
    """Σ SSIM per band and the number of window centres used, strip by strip with a halo."""
    r = SSIM_RADIUS
    k = 2 * r + 1
    box = np.ones(k)
    sums = np.zeros(len(tbands))
    used = 0
    if pds.width < k or pds.height < k:
        return sums, 0
    for ry0, ry1, y0, y1 in _strips(tds.height, STRIP_ROWS, halo=r):
        if ry1 - ry0 < k:
            continue
        p, pv = _read(pds, pbands, ry0, ry1)
        t, tv = _read(tds, tbands, ry0, ry1)
        invalid = ~(pv & tv)
        # Window centres of this read are rows ry0+r .. ry1-r-1; keep those in [y0, y1).
        c0, c1 = max(y0, ry0 + r), min(y1, ry1 - r)
        if c1 <= c0:
            continue
        full = _filter_valid(invalid.astype(np.float64), box)[c0 - ry0 - r:c1 - ry0 - r] < 0.5
        n_ok = int(full.sum())
        if not n_ok:
            continue
        used += n_ok
        for i in range(len(tbands)):
            x, y = p[i], t[i]
            x[invalid] = 0.0
            y[invalid] = 0.0
            s = ssim_map(x, y, float(ranges[i]))[c0 - ry0 - r:c1 - ry0 - r]
            sums[i] += float(s[full].sum())
    return sums, used


# --------------------------------------------------------------------------- classes

MAX_CLASSES = 256


class _ClassTally:
    """Per-class sums over strips: counts, |error|, error², truth and prediction colours.

    Class values are indexed in order of first appearance and sorted at the end.
    """

    def __init__(self, n_bands: int, path: Path) -> None:
        self.path = path
        self.index: dict[int, int] = {}
        self.n_bands = n_bands
        self.sums = {k: np.zeros((0, n_bands)) for k in ("abs", "sq", "truth", "pred")}
        self.count = np.zeros(0, np.int64)

    def indices(self, values: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(values, return_inverse=True)
        for v in uniq.tolist():
            if v not in self.index:
                self.index[v] = len(self.index)
        if len(self.index) > MAX_CLASSES:
            raise RasterError(f"{describe(self.path)}: more than {MAX_CLASSES} distinct values; "
                              "not a class raster (expected integer class codes, e.g. land cover)")
        grow = len(self.index) - self.count.size
        if grow:
            self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])
            self.sums = {k: np.vstack([v, np.zeros((grow, self.n_bands))]) for k, v in self.sums.items()}
        lut = np.array([self.index[v] for v in uniq.tolist()], np.int64)
        return lut[inverse.reshape(-1)]

    def add(self, p: np.ndarray, t: np.ndarray, values: np.ndarray) -> None:
        """``p``, ``t``: (band, n) valid pixels; ``values``: their class codes (n,)."""
        k = self.indices(values)
        m = self.count.size
        self.count += np.bincount(k, minlength=m)
        d = p - t
        for name, x in (("abs", np.abs(d)), ("sq", d * d), ("truth", t), ("pred", p)):
            for b in range(self.n_bands):
                self.sums[name][:, b] += np.bincount(k, weights=x[b], minlength=m)

    def sorted_order(self) -> list[int]:
        return [self.index[v] for v in sorted(self.index)]


def _class_raster(path: Path, truth, truth_path: Path):
    """Open a class raster and check it: one band, integer, on the truth's grid."""
    cds = raster.open_raster(path, require_georeference=False)
    try:
        check_same_grid(cds, truth, path, truth_path)
        if cds.count != 1:
            raise RasterError(f"{describe(path)}: a class raster has one band, this one has {cds.count}")
        if np.dtype(cds.dtypes[0]).kind not in "iu":
            raise RasterError(f"{describe(path)}: a class raster holds integer class codes, this one is {cds.dtypes[0]}")
    except BaseException:
        cds.close()
        raise
    return cds


def _class_strips(pds, tds, cds, pbands, tbands) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(prediction, truth, class) of the pixels valid in all three rasters, strip by strip."""
    from rasterio.windows import Window

    for _, _, y0, y1 in _strips(tds.height, STRIP_ROWS):
        p, pv = _read(pds, pbands, y0, y1)
        t, tv = _read(tds, tbands, y0, y1)
        c, cm = raster.read_window(cds, [1], Window(0, y0, cds.width, y1 - y0))
        valid = pv & tv & raster.valid_mask(cds, c, cm, "generic")
        if valid.any():
            yield p[:, valid], t[:, valid], c[0][valid].astype(np.int64)


def class_scores(pds, tds, pbands: Sequence[int], tbands: Sequence[int], path: Path,
                 truth_path: Path) -> "ClassReport":
    """Per-class metrics and the nearest-mean-colour confusion table (two passes, strip by strip)."""
    with _class_raster(path, tds, truth_path) as cds:
        names = {int(k[6:]): v for k, v in cds.tags().items() if k.startswith("CLASS_") and k[6:].isdigit()}
        tally = _ClassTally(len(tbands), path)
        for p, t, c in _class_strips(pds, tds, cds, pbands, tbands):
            tally.add(p, t, c)
        if not tally.index:
            raise RasterError(f"{describe(path)}: no class pixel is valid where both rasters are valid")
        order = tally.sorted_order()
        values = sorted(tally.index)
        count = tally.count[order]
        means = tally.sums["truth"][order] / count[:, None]
        k = len(order)
        confusion = np.zeros((k, k), np.int64)
        for p, _, c in _class_strips(pds, tds, cds, pbands, tbands):
            nearest = _nearest(p.T, means)
            true = np.searchsorted(np.asarray(values), c)  # every code was seen in the first pass
            confusion += np.bincount(true * k + nearest, minlength=k * k).reshape(k, k)
    return _class_report(path, values, names, tally, order, means, confusion)


def _nearest(colours: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Index of the nearest row of ``means`` (Euclidean) for each row of ``colours``."""
    d = (colours * colours).sum(1)[:, None] - 2.0 * colours @ means.T + (means * means).sum(1)[None, :]
    return np.argmin(d, axis=1)


def _class_report(path: Path, values: list[int], names: dict[int, str], tally: _ClassTally, order: list[int],
                  means: np.ndarray, confusion: np.ndarray) -> "ClassReport":
    rows = []
    for i, v in enumerate(values):
        j = order[i]
        n = int(tally.count[j])
        nb = tally.n_bands
        rows.append(ClassMetrics(
            value=v, name=names.get(v, ""), pixels=n,
            mae=float(tally.sums["abs"][j].sum() / (n * nb)), rmse=float(np.sqrt(tally.sums["sq"][j].sum() / (n * nb))),
            truth_mean=tuple(float(x) for x in means[i]),
            prediction_mean=tuple(float(x) for x in tally.sums["pred"][j] / n),
            own_share=float(confusion[i, i] / n), painted_as=values[int(np.argmax(confusion[i]))]))
    return ClassReport(path=str(path), values=tuple(values), classes=tuple(rows),
                       confusion=tuple(tuple(int(x) for x in r) for r in confusion))


# --------------------------------------------------------------------------- seams

def seam_ratio(pred_path: Union[str, os.PathLike], tile_size: int, overlap: int, *,
               bands: Union[None, str, Sequence[int]] = None,
               reference: Union[None, str, os.PathLike] = None) -> float:
    """Mean absolute gradient across tile boundaries ÷ mean across all other pixel boundaries.

    The boundaries are those :func:`geogan.predict.translate_raster` used for ``tile_size`` and
    ``overlap`` (the middle of each overlap, :func:`geogan.tiling.seam_positions`), in both
    directions, over pixel pairs valid on both sides, averaged over bands. About 1 for a
    seamless prediction; clearly above 1 when tiles disagree at their borders. NaN when the
    scene fits in one tile (no boundary to measure).

    On its own the ratio also measures the scene: a handful of boundary lines that happen to
    follow a road or a field edge move it by ±0.15 (the sample test scene's true RGB scores
    0.84–1.05 on lines shifted by a few pixels). ``reference`` removes that: the same model's
    prediction made in one tile (no boundaries), on the same grid. The result is then this
    prediction's ratio ÷ the reference's ratio on the same lines — exactly 1 when tiling changed
    nothing at the boundaries, whatever the content.
    """
    border, inner = _boundary_gradients(Path(pred_path), tile_size, overlap, bands)
    if border is None or inner == 0:
        return float("nan")
    ratio = border / inner
    if reference is None:
        return ratio
    with raster.open_raster(Path(pred_path), require_georeference=False) as a, \
            raster.open_raster(Path(reference), require_georeference=False) as b:
        check_same_grid(a, b, pred_path, reference)
    ref_border, ref_inner = _boundary_gradients(Path(reference), tile_size, overlap, bands)
    if not ref_border or not ref_inner:
        return float("nan")
    return ratio / (ref_border / ref_inner)


def _boundary_gradients(p: Path, tile_size: int, overlap: int,
                        bands: Union[None, str, Sequence[int]]) -> tuple[Optional[float], float]:
    """(mean gradient across tile boundaries, mean across all others); (None, 0) without boundaries."""
    from .tiling import seam_positions

    with raster.open_raster(p, require_georeference=False) as ds:
        band_list = raster.parse_bands(bands, ds.count, p)
        xs = seam_positions(ds.width, tile_size, overlap)
        ys = seam_positions(ds.height, tile_size, overlap)
        if not xs and not ys:
            return None, 0.0
        seam_col = np.zeros(max(ds.width - 1, 0), bool)
        seam_col[[x - 1 for x in xs]] = True  # difference index x-1 is between pixels x-1 and x
        seam_rows = set(ys)
        border = np.zeros(2)  # sum, count
        inner = np.zeros(2)
        for ry0, ry1, y0, y1 in _strips(ds.height, STRIP_ROWS):
            ry0 = max(0, y0 - 1)  # one row above, for the vertical difference at y0
            data, valid = _read(ds, band_list, ry0, y1)
            # horizontal neighbours (across columns), rows y0..y1 only
            sub, sv = data[:, y0 - ry0:], valid[y0 - ry0:]
            d = np.abs(np.diff(sub, axis=2)).mean(axis=0)
            ok = sv[:, 1:] & sv[:, :-1]
            border += (d[:, seam_col][ok[:, seam_col]].sum(), ok[:, seam_col].sum())
            inner += (d[:, ~seam_col][ok[:, ~seam_col]].sum(), ok[:, ~seam_col].sum())
            # vertical neighbours: difference between row y-1 and y, for y in (ry0, y1)
            if data.shape[1] > 1:
                dv = np.abs(np.diff(data, axis=1)).mean(axis=0)
                okv = valid[1:] & valid[:-1]
                is_seam = np.array([(ry0 + 1 + i) in seam_rows for i in range(dv.shape[0])])
                border += (dv[is_seam][okv[is_seam]].sum(), okv[is_seam].sum())
                inner += (dv[~is_seam][okv[~is_seam]].sum(), okv[~is_seam].sum())
    if border[1] == 0 or inner[1] == 0:
        return None, 0.0
    return float(border[0] / border[1]), float(inner[0] / inner[1])

"""Raster I/O: every rasterio call that opens, stacks, validates, masks, reads or writes a raster.

Arrays are always (band, row, col), as rasterio reads them. Bands are 1-based, as GDAL numbers
them. What can be opened (see :mod:`geogan.scenes`): a file, any GDAL path (``/vsizip/``,
``/vsicurl/``, ``/vsis3/``, a VRT, ``DRIVER:`` strings, handed to GDAL unchanged), or a scene of
several files whose bands are stacked in order onto the finest of their grids — what
``gdalbuildvrt -separate`` plus a warp would make, as an in-memory VRT.

Writes go through :mod:`geogan.outputs` (temporary file, fsync, verify, rename). GDAL does not
raise on every write error (libtiff's "No space left on device" while flushing blocks at close
is only printed), so every written GeoTIFF is checked with :func:`verify_raster` before it is
renamed into place.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .errors import BandMismatchError, ConfigError, InputNotFoundError, OutputError, RasterError, describe
from .outputs import atomic_output, atomic_write_bytes, check_writable_dir  # noqa: F401  (re-exported)
from .scenes import Scene, SceneLike, as_scene, is_gdal_path

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: GDAL names of the dtypes geogan reads and writes.
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")


# ------------------------------------------------------------------------------------ opening

def open_raster(src: SceneLike, *, require_georeference: bool = True, resampling: str = "bilinear"):
    """Open a raster or a multi-file scene for reading, or raise a one-line error naming it.

    ``src`` is a path, a GDAL path, a comma-joined scene string, a list of paths or a
    :class:`~geogan.scenes.Scene`. Several files are stacked band after band onto the finest
    grid among them (``resampling`` for the coarser ones: ``bilinear`` for continuous data,
    ``nearest`` for class maps); they must share a CRS and overlap. Use as a context manager:
    ``with open_raster(p) as ds: ...``; :func:`dataset_label` names it in messages.

    A scene's ``assume_crs`` (``--assume-crs``) is the CRS of files that have a geotransform but
    no CRS, as ``gdal_translate -a_srs`` would tag them (read through GDAL's ``vrt://``, nothing is
    written); a file with a different CRS of its own is refused in one line.
    """
    scene = as_scene(src)
    if scene.is_multi:
        return _open_stack(scene, require_georeference, resampling)
    return _open_one(scene.parts[0], require_georeference, scene.assume_crs)


def _open_one(name: str, require_georeference: bool, assume_crs: Optional[str] = None):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    _check_encodable(name, "read")
    if not is_gdal_path(name):
        p = Path(name)
        if not p.exists():
            raise InputNotFoundError(f"{describe(name)}: no such file")
        if p.is_dir():
            raise RasterError(f"{describe(name)}: is a directory, not a raster")
    try:
        with warnings.catch_warnings():
            # An ungeoreferenced raster is reported below as one clear error (or allowed).
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(name)
    except RasterioError as exc:
        reason = first_line(exc, "unreadable")
        if "No such file" in reason or "does not exist in the file system" in reason:
            raise InputNotFoundError(f"{describe(name)}: no such file (GDAL: {reason})") from None
        raise RasterError(f"{describe(name)}: not a readable raster ({reason})") from None
    if ds.count < 1:
        ds.close()
        raise RasterError(f"{describe(name)}: has no bands")
    if assume_crs is not None:
        ds = _with_assumed_crs(ds, name, assume_crs)
    if require_georeference and not is_georeferenced(ds):
        problem = georeference_problem(ds)
        ds.close()
        raise RasterError(f"{describe(name)}: {problem}")
    return ds


def georeference_problem(ds: Any, allow_hint: bool = False) -> str:
    """What is missing from a raster that is not georeferenced, in words, with the way out:
    ``--assume-crs`` when only the CRS is missing (``allow_hint``: also ``--allow-ungeoreferenced``)."""
    from affine import Affine

    also = "; or use --allow-ungeoreferenced to translate it anyway" if allow_hint else ""
    if ds.crs is None and ds.transform != Affine.identity():
        return f"has a geotransform but no CRS; state its CRS with --assume-crs (e.g. --assume-crs EPSG:32633){also}"
    if ds.crs is not None:
        return f"has a CRS but no geotransform (not georeferenced){also.replace('; or use', '; use')}"
    return f"has no CRS or geotransform (not georeferenced){also.replace('; or use', '; use')}"


def check_crs_option(value: Any, option: str = "--assume-crs") -> Optional[str]:
    """A CRS stated by the user (EPSG:32633, 32633, WKT, a PROJ string) → ``EPSG:n`` or WKT; None
    when not given. Anything PROJ cannot read is one :class:`ConfigError`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    from rasterio.crs import CRS

    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        text = f"EPSG:{text}"
    try:
        crs = CRS.from_user_input(text)
    except Exception as exc:  # CRSError, and TypeError/ValueError for odd objects
        raise ConfigError(f"{option} {value!r}: not a CRS ({first_line(exc, 'unreadable')}); give an EPSG code "
                          "(EPSG:32633), WKT or a PROJ string") from None
    epsg = crs.to_epsg()
    if epsg and CRS.from_epsg(epsg) == crs:
        return f"EPSG:{epsg}"
    return crs.to_wkt()


def assuming_crs(scene: SceneLike, crs: Optional[str]) -> Scene:
    """``scene`` to be read in ``crs`` where its files have none (checked with :func:`check_crs_option`)."""
    import dataclasses

    s = as_scene(scene)
    crs = check_crs_option(crs)
    return dataclasses.replace(s, assume_crs=crs) if crs else s


def _with_assumed_crs(ds: Any, name: str, crs_text: str) -> Any:
    """``ds`` read in the assumed CRS when it has a geotransform but no CRS (GDAL's ``vrt://`` with
    ``a_srs``); unchanged when its own CRS is that one; refused when it is another. A different CRS
    is refused rather than overridden or ignored: either would put the output on ground the user
    did not mean, with exit 0."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    assumed = CRS.from_user_input(crs_text)
    if ds.crs is not None:
        if ds.crs == assumed:
            return ds
        own = _crs_name(ds.crs)
        ds.close()
        raise RasterError(f"{describe(name)}: has its own CRS ({own}), not the assumed {_crs_name(assumed)}; "
                          "--assume-crs is only for files without a CRS (re-tag or reproject this one with GDAL "
                          "if its CRS is wrong)")
    if ds.transform == Affine.identity() or name.lstrip().startswith("<VRTDataset"):
        return ds  # nothing to place on the ground: the georeferencing check says so
    if "?" in name:
        ds.close()
        raise RasterError(f"{describe(name)}: a name with '?' cannot be read with an assumed CRS; rename the file "
                          "or tag it with gdal_edit.py -a_srs")
    ds.close()
    return rasterio.open(f"vrt://{name}?a_srs={crs_text}")


def _check_encodable(name: str, action: str) -> None:
    """GDAL takes UTF-8 names: a file name that is not valid UTF-8 is refused in one line."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise RasterError(f"{describe(name)}: the file name is not valid UTF-8, so GDAL cannot {action} it; "
                          "rename the file") from None


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of an exception's message (GDAL's are sometimes several lines long).

    rasterio's "Read failed. See previous exception for details." points at an exception the user
    never sees: GDAL's own words (``band 1: IReadBlock failed at X offset 0, Y offset 4: ...``)
    are its ``__cause__``, so those are given instead."""
    text = str(exc).strip()
    cause = exc.__cause__
    if "see previous exception" in text.lower() and cause is not None and str(cause).strip():
        return first_line(cause, default)
    return text.splitlines()[0] if text else (default or type(exc).__name__)


def dataset_label(ds: Any) -> str:
    """How messages name an open dataset: its path, or the comma-joined files of a stacked scene."""
    name = str(getattr(ds, "name", ds))
    if name.startswith("WarpedVRT(") and name.endswith(")"):  # a warp of a file or scene: name what it warps
        name = name[len("WarpedVRT("):-1]
    if name.startswith("vrt://"):  # a file read in an assumed CRS: name the file
        name = name[len("vrt://"):].rsplit("?a_srs=", 1)[0]
    if name.lstrip().startswith("<VRTDataset"):
        import re

        files = re.findall(r"<SourceFilename[^>]*>([^<]*)</SourceFilename>", name)
        unique = list(dict.fromkeys(_unescape(f) for f in files))
        return ",".join(unique) if unique else "in-memory VRT"
    return name


def _unescape(text: str) -> str:
    from xml.sax.saxutils import unescape

    return unescape(text)


def is_georeferenced(ds) -> bool:
    """True when the dataset has both a CRS and a non-identity geotransform."""
    from affine import Affine

    return ds.crs is not None and ds.transform != Affine.identity()


# ------------------------------------------------------------------- multi-file scenes (VRT)

class _Part:
    """What stacking needs to know of one file of a scene."""

    def __init__(self, name: str, ds) -> None:
        from rasterio.enums import MaskFlags

        self.name = name
        self.crs = ds.crs
        self.transform = ds.transform
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.dtypes = list(ds.dtypes)
        self.nodata = ds.nodata
        self.descriptions = list(ds.descriptions)
        self.per_dataset_mask = [MaskFlags.per_dataset in f and MaskFlags.nodata not in f
                                 for f in ds.mask_flag_enums]
        self.bounds = tuple(ds.bounds)

    @property
    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e)


def _open_stack(scene: Scene, require_georeference: bool, resampling: str):
    import rasterio

    if resampling not in RESAMPLINGS:
        raise RasterError(f"unknown resampling {resampling!r} (expected one of {', '.join(RESAMPLINGS)})")
    parts = []
    for name in scene.parts:
        with _open_one(name, require_georeference=True, assume_crs=scene.assume_crs) as ds:
            parts.append(_Part(name, ds))
    label = describe(scene.label)
    first = parts[0]
    for p in parts[1:]:
        if p.crs != first.crs:
            raise RasterError(f"{label}: its files have different CRSs ({_crs_name(first.crs)} in {describe(first.name)}, "
                              f"{_crs_name(p.crs)} in {describe(p.name)}); reproject them onto one CRS first")
    for p in parts:
        t = p.transform
        if t.b != 0 or t.d != 0:
            raise RasterError(f"{label}: {describe(p.name)} has a rotated geotransform, which a multi-file scene "
                              "cannot stack; warp it to a north-up grid first")
    finest = min(parts, key=lambda p: p.pixel_area)
    grid = _stack_grid(parts, finest, label)
    xml = _stack_vrt(parts, grid, resampling)
    ds = rasterio.open(xml)
    if grid["clipped"]:
        log.info("%s: its files cover different areas; stacked over their common area (%d x %d pixels)",
                 label, grid["width"], grid["height"])
    return ds


def _crs_name(crs: Any) -> str:
    try:
        return crs.to_string()
    except Exception:  # an odd CRS that cannot be written compactly
        return "an unnamed CRS"


def _stack_grid(parts: list[_Part], finest: _Part, label: str) -> dict:
    """The finest file's pixel grid, cut to the area every file covers."""
    left = max(p.bounds[0] for p in parts)
    bottom = max(p.bounds[1] for p in parts)
    right = min(p.bounds[2] for p in parts)
    top = min(p.bounds[3] for p in parts)
    if right <= left or top <= bottom:
        raise RasterError(f"{label}: its files do not overlap, so they cannot be stacked into one scene")
    t = finest.transform
    res_x, res_y = t.a, -t.e
    eps = 1e-6
    c0 = math.ceil((left - t.c) / res_x - eps)
    c1 = math.floor((right - t.c) / res_x + eps)
    r0 = math.ceil((t.f - top) / res_y - eps)
    r1 = math.floor((t.f - bottom) / res_y + eps)
    if c1 <= c0 or r1 <= r0:
        raise RasterError(f"{label}: its files overlap by less than one pixel of {describe(finest.name)}")
    clipped = any(abs(a - b) > eps * max(res_x, res_y) for p in parts for a, b in zip(p.bounds, (left, bottom, right, top)))
    return {"x0": t.c + c0 * res_x, "y0": t.f - r0 * res_y, "res_x": res_x, "res_y": res_y,
            "width": c1 - c0, "height": r1 - r0, "crs": finest.crs, "clipped": clipped}


def _stack_vrt(parts: list[_Part], grid: dict, resampling: str) -> str:
    """An in-memory VRT that stacks every band of every part, in order, on ``grid``."""
    dtype = np.result_type(*[np.dtype(d) for p in parts for d in p.dtypes]).name
    gdal_type = _GDAL_TYPES.get(dtype, "Float64")
    rx, ry = grid["res_x"], grid["res_y"]
    out = [f'<VRTDataset rasterXSize="{grid["width"]}" rasterYSize="{grid["height"]}">',
           f"<SRS>{escape(grid['crs'].to_wkt())}</SRS>",
           f"<GeoTransform>{grid['x0']!r}, {rx!r}, 0, {grid['y0']!r}, 0, {-ry!r}</GeoTransform>"]
    k = 0
    for p in parts:
        t = p.transform
        dst = (f'<DstRect xOff="{(t.c - grid["x0"]) / rx!r}" yOff="{(grid["y0"] - t.f) / ry!r}" '
               f'xSize="{p.width * t.a / rx!r}" ySize="{p.height * -t.e / ry!r}"/>')
        src_rect = f'<SrcRect xOff="0" yOff="0" xSize="{p.width}" ySize="{p.height}"/>'
        source_file = f'<SourceFilename relativeToVRT="0">{escape(_absolute(p.name))}</SourceFilename>'
        for b in range(1, p.count + 1):
            k += 1
            nodata = "" if p.nodata is None else _nodata_text(p.nodata)
            desc = p.descriptions[b - 1] or (Scene((p.name,)).name if p.count == 1 else f"{Scene((p.name,)).name}:{b}")
            band = [f'<VRTRasterBand dataType="{gdal_type}" band="{k}">',
                    f"<Description>{escape(desc)}</Description>"]
            if nodata:
                band.append(f"<NoDataValue>{nodata}</NoDataValue>")
            band.append(f"<ComplexSource resampling={quoteattr(resampling)}>{source_file}"
                        f"<SourceBand>{b}</SourceBand>{src_rect}{dst}"
                        + (f"<NODATA>{nodata}</NODATA>" if nodata else "") + "</ComplexSource>")
            if p.per_dataset_mask[b - 1]:
                band.append('<MaskBand><VRTRasterBand dataType="Byte"><SimpleSource resampling="nearest">'
                            f"{source_file}<SourceBand>mask,{b}</SourceBand>{src_rect}{dst}"
                            "</SimpleSource></VRTRasterBand></MaskBand>")
            band.append("</VRTRasterBand>")
            out.append("".join(band))
    out.append("</VRTDataset>")
    return "".join(out)


def _absolute(name: str) -> str:
    return name if is_gdal_path(name) else os.path.abspath(name)


def _nodata_text(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(float(value))


# ----------------------------------------------------------------------------- band choice

def parse_bands(spec: Union[None, str, Sequence[int]], count: int, path: PathLike) -> list[int]:
    """Turn ``"3,2,1"`` / ``[3, 2, 1]`` / ``None`` (all bands) into a checked 1-based band list."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return list(range(1, count + 1))
    if isinstance(spec, str):
        try:
            bands = [int(b) for b in spec.replace(" ", "").split(",") if b]
        except ValueError:
            raise BandMismatchError(
                f"{describe(path)}: band list {spec!r} is not comma-separated 1-based band numbers"
            ) from None
    else:
        bands = [int(b) for b in spec]
    if not bands:
        raise BandMismatchError(f"{describe(path)}: empty band list")
    bad = [b for b in bands if b < 1 or b > count]
    if bad:
        raise BandMismatchError(
            f"{describe(path)}: band(s) {', '.join(map(str, bad))} do not exist (the raster has {count} band(s), numbered from 1)"
        )
    if len(set(bands)) != len(bands):
        raise BandMismatchError(f"{describe(path)}: band list {bands} names a band twice")
    return bands


# --------------------------------------------------------------------------------- reading

def valid_mask(ds, data: np.ndarray, masks: np.ndarray, kind: str, units: Optional[str] = None) -> np.ndarray:
    """Per-pixel validity (rows, cols) over all chosen bands.

    A pixel is valid only where it is valid in *every* band: GDAL's mask (nodata value,
    internal mask or alpha band) says so, the value is finite, and, for SAR backscatter in
    linear power or amplitude (``units`` ``linear``/``amplitude``/None), the value is positive:
    zero or negative power is no measurement. SAR in dB may be negative; any finite dB is valid.
    ``data`` and ``masks`` are what :func:`read_window` returns.
    """
    valid = np.all(masks > 0, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    if kind == "sar" and units != "db":
        with np.errstate(invalid="ignore"):
            valid &= np.all(data > 0, axis=0)
    return valid


def _nodata_rules(ds, bands: Sequence[int]) -> Optional[list]:
    """Per band, how GDAL's mask follows from the pixel values: None (no mask: all valid), NaN, or a
    nodata value compared exactly (an integer in the dtype's range, or 0 for floats); None overall
    where the mask must be read from GDAL (an internal mask, alpha, or a float nodata value GDAL
    compares with a tolerance)."""
    from rasterio.enums import MaskFlags

    rules = []
    for b in bands:
        flags, nodata = ds.mask_flag_enums[b - 1], ds.nodatavals[b - 1]
        if flags == [MaskFlags.all_valid]:
            rules.append(None)
            continue
        if flags != [MaskFlags.nodata] or nodata is None:
            return None
        dt = np.dtype(ds.dtypes[b - 1])
        exact = (dt.kind == "f" and (np.isnan(nodata) or nodata == 0)) or (
            dt.kind in "ui" and float(nodata).is_integer() and np.iinfo(dt).min <= nodata <= np.iinfo(dt).max)
        if not exact:
            return None
        rules.append(nodata)
    return rules


def _masks_from_values(ds, bands: Sequence[int], data: np.ndarray) -> Optional[np.ndarray]:
    """GDAL's masks computed from the pixels just read, where that is exactly GDAL's rule
    (:func:`_nodata_rules`); None otherwise (read them). Saves GDAL a second pass over the blocks."""
    rules = _nodata_rules(ds, bands)
    if rules is None:
        return None
    mask = np.full(data.shape, 255, np.uint8)
    for i, nodata in enumerate(rules):
        if nodata is not None:
            np.copyto(mask[i], np.uint8(0), where=np.isnan(data[i]) if np.isnan(nodata) else data[i] == nodata)
    return mask


def read_valid(ds, bands: Sequence[int], window, kind: str, units: Optional[str] = None,
               out: Optional[np.ndarray] = None):
    """:func:`read_window` then :func:`valid_mask`: ``(data, valid)``, the validity computed band by
    band from the values without mask arrays where GDAL's masks follow from them (the same result).
    ``out``: the array to read into (bands, rows, cols, the dataset's dtype)."""
    data, masks, rules = read_for_validity(ds, bands, window, out=out)
    return data, validity(ds, data, masks, rules, kind, units=units)


def read_for_validity(ds, bands: Sequence[int], window, out: Optional[np.ndarray] = None):
    """The reading half of :func:`read_valid` (nothing in it depends on the units): ``(data, masks,
    rules)``, GDAL's masks read only where the pixels cannot tell validity (then ``rules`` is None)."""
    rules = _nodata_rules(ds, bands)
    if rules is None:
        data, masks = read_window(ds, bands, window, out=out)
        return data, masks, None
    data, _ = read_window(ds, bands, window, masks=False, out=out)
    return data, None, rules


def validity(ds, data: np.ndarray, masks: Optional[np.ndarray], rules: Optional[list], kind: str,
             units: Optional[str] = None) -> np.ndarray:
    """The validity half of :func:`read_valid`, on what :func:`read_for_validity` returned."""
    if rules is None:
        return valid_mask(ds, data, masks, kind, units=units)
    valid = np.ones(data.shape[1:], bool)
    test = np.empty_like(valid)  # each test's result, and-ed into ``valid`` (no temporaries)
    positive = kind == "sar" and units != "db"
    with np.errstate(invalid="ignore"):
        for i, nodata in enumerate(rules):
            d = data[i]
            if nodata is not None and not (positive and (nodata == 0 or np.isnan(nodata))):
                if np.isnan(nodata):
                    valid &= np.logical_not(np.isnan(d, out=test), out=test)
                else:
                    valid &= np.not_equal(d, nodata, out=test)
            if positive:  # finite and > 0 (NaN fails both; so does a nodata of 0)
                valid &= np.greater(d, 0, out=test)
                valid &= np.less(d, np.inf, out=test)
            elif np.issubdtype(d.dtype, np.floating):
                valid &= np.isfinite(d, out=test)
    return valid


def read_window(ds, bands: Sequence[int], window=None, *, boundless: bool = False,
                out_dtype: Optional[str] = None, masks: bool = True, out: Optional[np.ndarray] = None):
    """Read ``bands`` in ``window`` and their GDAL masks: returns ``(data, masks)``, both (band, row, col).

    With ``boundless=True`` pixels outside the raster come back with mask 0. With
    ``masks=False`` the mask is not read (all valid), for rasters whose bands are all valid.
    ``out`` (not with ``boundless``): an array of the window's shape to read into (a caller that
    reuses its buffers spares the kernel zeroing fresh pages for every read).
    A read failure (a truncated or damaged file) is one :class:`RasterError` naming the file and
    the window.
    """
    from rasterio.errors import RasterioError

    kwargs = {}
    if boundless:
        # Only for pixels outside the raster: on an in-bounds read rasterio 1.4 would also
        # write the fill value over pixels under an internal mask, changing stored values.
        kwargs["fill_value"] = ds.nodata if ds.nodata is not None else 0
    try:
        if out is not None and not boundless:
            kwargs["out"] = out
        data = ds.read(list(bands), window=window, boundless=boundless, out_dtype=out_dtype, **kwargs)
        if not masks:
            mask = np.broadcast_to(np.uint8(255), data.shape)
        else:
            mask = None if boundless or out_dtype is not None else _masks_from_values(ds, bands, data)
            if mask is None:
                mask = ds.read_masks(list(bands), window=window, boundless=boundless)
    except RasterioError as exc:
        raise RasterError(f"{describe(dataset_label(ds))}: reading {describe_window(window)} failed "
                          f"({first_line(exc, 'read error')}); the file may be truncated or damaged") from None
    return data, mask


def describe_window(window: Any) -> str:
    """``rows 0-255, cols 512-767`` for a window, ``the whole raster`` for None."""
    if window is None:
        return "the whole raster"
    r0, c0 = int(window.row_off), int(window.col_off)
    return f"rows {r0}-{r0 + int(window.height) - 1}, cols {c0}-{c0 + int(window.width) - 1}"


#: Mean Earth radius (m): pixel sizes in metres from a sphere differ from the ellipsoid's by < 0.5 %.
EARTH_RADIUS = 6371008.8


def ground_resolution(crs: Any, transform: Any, width: int, height: int) -> Optional[tuple[float, float]]:
    """Pixel size (x, y) in metres on the ground at the raster's centre, or None without a CRS
    (or one PROJ cannot take to longitude/latitude).

    Measured, not read from the units: the centre pixel's two sides are taken to longitude and
    latitude and their great-circle lengths computed, so feet, degrees (at the centre's latitude)
    and a projection's scale (Web Mercator at 60° N halves its metres) all come out in metres.
    """
    if crs is None:
        return None
    from rasterio.warp import transform as warp_points

    col, row = width / 2.0, height / 2.0
    pts = [transform * (col, row), transform * (col + 1, row), transform * (col, row + 1)]
    try:
        lon, lat = warp_points(crs, "EPSG:4326", [p[0] for p in pts], [p[1] for p in pts])
    except Exception:  # an engineering or otherwise untransformable CRS
        return None
    if not all(math.isfinite(v) for v in list(lon) + list(lat)):
        return None
    return (_great_circle(lon[0], lat[0], lon[1], lat[1]), _great_circle(lon[0], lat[0], lon[2], lat[2]))


def _great_circle(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(a)))


def resolution(ds) -> tuple[float, float]:
    """Pixel size (x, y) in CRS units, both positive: the lengths of a pixel's two sides, so a
    rotated grid of 10 m pixels is 10 m (not the 8.66 m of its cos 30° terms)."""
    t = ds.transform
    return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))


# --------------------------------------------------------------------------------- writing

def gtiff_profile(*, width: int, height: int, count: int, dtype: str, crs, transform,
                  nodata: Optional[float] = None, compress: str = "deflate",
                  blocksize: int = 256) -> dict:
    """A tiled, compressed GeoTIFF profile with the right predictor for the dtype."""
    compress = (compress or "none").lower()
    profile = {
        "driver": "GTiff",
        "width": int(width),
        "height": int(height),
        "count": int(count),
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "BIGTIFF": "IF_SAFER",
    }
    if width >= 16 and height >= 16:
        bs = max(16, min(blocksize, _pow2_floor(min(width, height))))
        profile.update(tiled=True, blockxsize=bs, blockysize=bs)
    if compress != "none":
        profile["compress"] = compress
        if compress in ("deflate", "lzw", "zstd"):
            profile["predictor"] = 3 if np.dtype(dtype).kind == "f" else 2
    return profile


def _pow2_floor(n: int) -> int:
    p = 16
    while p * 2 <= n:
        p *= 2
    return p


def check_output_path(dst: PathLike, *, overwrite: bool = False,
                      inputs: Sequence[Any] = ()) -> Path:
    """Refuse an output that exists (unless ``overwrite``), equals an input (also through a
    link), has a name GDAL cannot write, or sits in a directory we cannot create files in."""
    d = Path(dst)
    _check_encodable(str(d), "write")
    for src in inputs:
        for part in as_scene(src).parts:
            if is_gdal_path(part):
                continue
            try:
                same = Path(part).resolve() == d.resolve()
            except OSError:
                same = False
            if same:
                raise OutputError(f"{describe(d)}: output path is the same as the input")
    if d.is_dir():
        raise OutputError(f"{describe(d)}: is a directory; give an output file name")
    if d.exists() and not overwrite:
        raise OutputError(f"{describe(d)}: already exists (use --overwrite / overwrite=True to replace it)")
    parent = d.parent if str(d.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{describe(d)}: directory {describe(parent)} does not exist")
    check_writable_dir(parent, d)
    return d


def verify_raster(path: PathLike, *, width: int, height: int, count: int, dtype: str,
                  label: Optional[PathLike] = None) -> None:
    """Re-open a finished GeoTIFF and check that every block it promises is really on disk.

    GDAL does not raise on every write failure: when libtiff cannot flush a block (a full
    disk, an I/O error) at close, GDAL only prints a message, and the file is left with a
    directory pointing nowhere or with blocks missing, which readers take for empty. So a file
    is accepted only if it opens with the expected size, bands and dtype, each block's offset
    and byte count lie inside the file, and its first and last blocks decode. Raises a one-line
    :class:`OutputError` naming ``label`` (the destination) or ``path``; costs a few µs per block.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.windows import Window

    name = label if label is not None else path
    try:
        size = os.path.getsize(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if (ds.width, ds.height, ds.count, ds.dtypes[0]) != (width, height, count, dtype):
                    raise OutputError(f"{describe(name)}: the written file is {ds.width}x{ds.height}x{ds.count} "
                                      f"{ds.dtypes[0]}, expected {width}x{height}x{count} {dtype}")
                if ds.driver == "GTiff":
                    _check_blocks(ds, size, name)
                bh, bw = ds.block_shapes[0]
                for r, c in {(0, 0), (max(0, height - bh), max(0, width - bw))}:
                    ds.read(window=Window(c, r, min(bw, width - c), min(bh, height - r)))
    except OutputError:
        raise  # our own verdict (an OSError too): not to be wrapped as "cannot be checked"
    except RasterioError as exc:
        raise OutputError(f"{describe(name)}: the written file does not read back ({first_line(exc)}); "
                          f"{disk_hint(path)}") from None
    except OSError as exc:
        raise OutputError(f"{describe(name)}: the written file cannot be checked ({exc.strerror or exc})") from None


def _check_blocks(ds, size: int, name: PathLike) -> None:
    bh, bw = ds.block_shapes[0]
    rows, cols = -(-ds.height // bh), -(-ds.width // bw)
    interleave = getattr(ds.interleaving, "name", "PIXEL") if ds.interleaving is not None else "PIXEL"
    bands = range(1, ds.count + 1) if interleave == "BAND" else (1,)
    for band in bands:
        for i in range(rows):
            for j in range(cols):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=band)
                nbytes = ds.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=band)
                if not offset or not nbytes or int(offset) <= 0 or int(nbytes) <= 0 \
                        or int(offset) + int(nbytes) > size:
                    raise OutputError(f"{describe(name)}: the written file is incomplete (block {i},{j} of band "
                                      f"{band} is missing); {disk_hint(ds.name)}")


def disk_hint(path: PathLike) -> str:
    """'the disk is full (0.1 MB free)' when it is, else a generic hint: for write-failure messages."""
    import shutil

    try:
        free = shutil.disk_usage(Path(path).parent if str(Path(path).parent) else ".").free
    except OSError:
        return "the disk may be full or failing"
    if free < 64 * 1024 * 1024:
        return f"the disk is full ({free / 1e6:.1f} MB free)"
    return "the disk may have been full or failing while it was written"


def write_failed(dst: PathLike, exc: BaseException) -> OutputError:
    """The one-line error for a failed raster write, saying whether the disk is full."""
    return OutputError(f"{describe(dst)}: writing failed ({first_line(exc, 'write error')}); {disk_hint(dst)}")


# ------------------------------------------------------------------------- warping, encoding

def warped_onto(ds, *, crs, transform, width: int, height: int, resampling: str = "bilinear"):
    """A :class:`rasterio.vrt.WarpedVRT` of ``ds`` on another grid, read window by window
    (bounded memory), and the 1-based index of its alpha band: 0 outside ``ds``'s footprint or
    where ``ds``'s own mask says invalid. Use as a context manager; close it before ``ds``.
    """
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.vrt import WarpedVRT

    if resampling not in RESAMPLINGS:
        raise RasterError(f"unknown resampling {resampling!r} (expected one of {', '.join(RESAMPLINGS)})")
    own_alpha = next((i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha), None)
    vrt = WarpedVRT(ds, crs=crs, transform=transform, width=width, height=height,
                    resampling=getattr(Resampling, resampling), add_alpha=own_alpha is None)
    return vrt, (own_alpha if own_alpha is not None else vrt.count)


def encode_geotiff(data: np.ndarray, *, crs, transform, nodata: Optional[float] = None,
                   mask: Optional[np.ndarray] = None, descriptions: Sequence[Optional[str]] = (),
                   compress: str = "deflate", zstd_level: Optional[int] = None) -> bytes:
    """A small tiled GeoTIFF of ``data`` (band, row, col), encoded in memory: its bytes.

    ``mask`` (row, col; True = valid) becomes an internal mask. Encoding in GDAL's memory
    filesystem keeps libtiff away from the disk, where a full disk is only logged, not raised:
    the caller writes the bytes with plain file writes, which do raise (see geogan.chips).
    """
    import rasterio
    from rasterio.io import MemoryFile

    profile = gtiff_profile(width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=str(data.dtype),
                            crs=crs, transform=transform, nodata=nodata, compress=compress)
    if zstd_level is not None and profile.get("compress") == "zstd":
        profile["zstd_level"] = zstd_level
    internal_mask = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True) if mask is not None else contextlib.nullcontext()
    with internal_mask, MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
            for i, desc in enumerate(descriptions, start=1):
                if desc:
                    dst.set_band_description(i, desc)
        return bytes(mem.getbuffer())


@functools.lru_cache(maxsize=None)
def zstd_available() -> bool:
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

"""Raster I/O: every rasterio call that opens, validates, masks or writes a raster.

Arrays are always (band, row, col), as rasterio reads them. Bands are 1-based, as GDAL
numbers them. Outputs are written to a temporary file beside the destination and moved
into place only when complete, so an interrupted write never leaves a partial file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from .errors import InputNotFoundError, OutputError, RasterError, BandMismatchError, describe

PathLike = Union[str, "os.PathLike[str]"]

#: GDAL names of the dtypes geogan reads and writes.
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def open_raster(path: PathLike, *, require_georeference: bool = True):
    """Open a raster for reading, or raise a one-line :class:`RasterError` naming the file.

    Use as a context manager: ``with open_raster(p) as ds: ...``.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{describe(p)}: no such file")
    if p.is_dir():
        raise RasterError(f"{describe(p)}: is a directory, not a raster")
    try:
        with warnings.catch_warnings():
            # An ungeoreferenced raster is reported below as one clear error (or allowed).
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except RasterioIOError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise RasterError(f"{describe(p)}: not a readable raster ({first_line})") from None
    if ds.count < 1:
        ds.close()
        raise RasterError(f"{describe(p)}: has no bands")
    if require_georeference and not is_georeferenced(ds):
        ds.close()
        raise RasterError(f"{describe(p)}: has no CRS or geotransform (not georeferenced)")
    return ds


def is_georeferenced(ds) -> bool:
    """True when the dataset has both a CRS and a non-identity geotransform."""
    from affine import Affine

    return ds.crs is not None and ds.transform != Affine.identity()


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


def valid_mask(ds, data: np.ndarray, masks: np.ndarray, kind: str) -> np.ndarray:
    """Per-pixel validity (rows, cols) over all chosen bands.

    A pixel is valid only where it is valid in *every* band: GDAL's mask (nodata value,
    internal mask or alpha band) says so, the value is finite, and, for SAR backscatter in
    linear power, the value is positive (zero or negative power is no measurement).
    ``data`` and ``masks`` are what :func:`read_window` returns.
    """
    valid = np.all(masks > 0, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    if kind == "sar":
        with np.errstate(invalid="ignore"):
            valid &= np.all(data > 0, axis=0)
    return valid


def read_window(ds, bands: Sequence[int], window=None, *, boundless: bool = False,
                out_dtype: Optional[str] = None):
    """Read ``bands`` in ``window`` and their GDAL masks: returns ``(data, masks)``, both (band, row, col).

    With ``boundless=True`` pixels outside the raster come back with mask 0.
    """
    kwargs = {}
    if boundless:
        # Only for pixels outside the raster: on an in-bounds read rasterio 1.4 would also
        # write the fill value over pixels under an internal mask, changing stored values.
        kwargs["fill_value"] = ds.nodata if ds.nodata is not None else 0
    data = ds.read(list(bands), window=window, boundless=boundless, out_dtype=out_dtype, **kwargs)
    masks = ds.read_masks(list(bands), window=window, boundless=boundless)
    return data, masks


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
                      inputs: Sequence[PathLike] = ()) -> Path:
    """Refuse an output that exists (unless ``overwrite``), equals an input, or sits in an unwritable directory."""
    d = Path(dst)
    for src in inputs:
        try:
            same = Path(src).resolve() == d.resolve()
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
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{describe(d)}: directory {describe(parent)} is not writable")
    return d


@contextlib.contextmanager
def atomic_output(dst: PathLike, suffix: Optional[str] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; move it onto ``dst`` only if the block succeeds.

    On any exception (a crash, a cancel, a full disk) the temporary file is removed and
    ``dst`` is left as it was.
    """
    d = Path(dst)
    suffix = suffix if suffix is not None else d.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{d.name}.", suffix=f".part{suffix}", dir=d.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            # mkstemp makes a private (0600) file; give the result the usual umask permissions.
            os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, d)
    except BaseException:
        for leftover in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + ".ovr")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    else:
        with contextlib.suppress(OSError):
            Path(str(tmp) + ".aux.xml").unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(dst: PathLike, payload: bytes) -> None:
    """Write a small file (metadata, config) atomically."""
    with atomic_output(dst) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def resolution(ds) -> tuple[float, float]:
    """Pixel size (x, y) in CRS units, both positive."""
    return (abs(ds.transform.a), abs(ds.transform.e))

"""Translate a whole scene with a trained generator: overlapping tiles, blending, a streaming writer.

How a scene flows through :func:`translate_raster`::

    reader thread ──batches──▶ main thread (network) ──finished row bands──▶ writer thread
    (read a strip of          (translate a batch,       (divide Σw·y by Σw, denormalise,
     rows, mask, normalise,    add w·y and w into        cast once per pixel, nodata where
     reflect-pad, cut tiles)   a band of S rows)         the input was invalid, write)

Tiles of ``tile_size`` pixels step by ``stride = tile_size - overlap``. The tile grid is
extended by ``overlap // 2`` pixels of reflect padding beyond every scene edge (and centred),
so an edge pixel sits as deep inside its tile as a pixel on an interior seam. Overlaps are
blended in the network's normalised space by a normalised weighted average Σw·y / Σw with
a 1-D window that is flat in the tile's middle and tapers across the overlap (``hann``:
sin², ``linear``: a ramp; the two tiles' weights sum to one in every overlap), floored at
:data:`WEIGHT_FLOOR` so the division is always safe. ``none`` centre-crops: each output pixel
comes from exactly one tile, the one whose centre region covers it.

Memory is bounded by one strip of tiles and the batch, never by the scene: the output is
accumulated in bands of ``stride`` rows, each flushed to the writer as soon as the last tile
touching it has been translated.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import raster
from .bands import DomainSpec, denormalize, normalize
from .errors import (BandMismatchError, Cancelled, ConfigError, ModelFileError, OutputError,
                     RasterError, describe)
from .devices import resolve_device
from .progress import ProgressLike, as_progress
from .tiling import BLENDS, WEIGHT_FLOOR, blend_window, pad_reflect, seam_positions, tile_origins  # noqa: F401

log = logging.getLogger(__name__)

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


#: Side of the decimated sample read to compare the input's statistics with the training data's.
SAMPLE_SIDE = 512

_QUEUE_DEPTH = 3
#: Most threads reading and normalising strips ahead of the network (half the cores, up to this).
_MAX_READ_WORKERS = 4
#: Rows normalised / denormalised at a time (bounds the float temporaries of a strip).
_CHUNK_ROWS = 32


@dataclass(frozen=True)
class PredictionResult(os.PathLike):
    """What :func:`translate_raster` wrote. Usable as a path (``os.fspath(result)``)."""

    path: Path
    direction: str
    width: int
    height: int
    count: int
    dtype: str
    nodata: Optional[float]
    tiles: int
    tiles_translated: int
    seconds: float
    device: str

    def __fspath__(self) -> str:
        return str(self.path)


# --------------------------------------------------------------------------- tiling maths (pure)

def output_nodata(spec: DomainSpec) -> float:
    """The nodata value written for a target domain.

    The spec's own value if it has one; otherwise NaN for float outputs, 0 for unsigned
    integers and the dtype's minimum for signed ones (valid pixels are kept off it by
    :func:`geogan.bands.cast_to_dtype`).
    """
    if spec.nodata is not None:
        return float(spec.nodata)
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return float("nan")
    if dt.kind == "u":
        return 0.0
    return float(np.iinfo(dt).min)


# --------------------------------------------------------------------------- pipeline messages

@dataclass
class _Batch:
    tiles: Any                      # (b, C, T, T) float32, numpy or (pinned) torch tensor
    where: list[tuple[int, int]]    # (tile row, tile column) of each tile


@dataclass
class _RowDone:
    row: int                        # every tile of this tile row has been sent
    y0: int                         # first scene row of the strip read for it
    valid: np.ndarray               # (rows, width) validity of the strip's scene rows
    skipped: int                    # tiles of the row with no valid pixel (not translated)


_END = object()


class _Stop(Exception):
    pass


def _put(q: "queue.Queue", item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


# --------------------------------------------------------------------------- the public call

def translate_raster(model_or_path: Any, src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *,
                     direction: str = "a2b", bands: Union[None, str, Sequence[int]] = None,
                     tile_size: int = 256, overlap: int = 64, batch_size: int = 8, device: Any = "auto",
                     blend: str = "hann", cog: bool = False, compress: str = "deflate",
                     overwrite: bool = False, allow_ungeoreferenced: bool = False,
                     progress: ProgressLike = None) -> PredictionResult:
    """Translate the raster ``src`` with a trained model and write ``dst`` on the same grid.

    ``model_or_path`` is a :class:`~geogan.modelfile.TranslationModel` or a ``.geogan`` file.
    The output has ``src``'s width, height, CRS and transform, and the target domain's band
    count, dtype and nodata (see :func:`output_nodata`); pixels invalid in the input are
    nodata in the output. ``bands`` picks the input bands (default: those the model was
    trained on). Progress is reported in tiles; a cancel raises :class:`~geogan.errors.Cancelled`
    within one batch. Nothing is left at ``dst`` unless the whole scene was written.
    """
    from .modelfile import TranslationModel, load_model

    started = time.perf_counter()
    prog = as_progress(progress)
    src_p, dst_p = Path(src), Path(dst)
    blend = str(blend).lower()
    compress = str(compress or "none").lower()
    if blend not in BLENDS:
        raise ConfigError(f"unknown blend {blend!r} (expected one of {', '.join(BLENDS)})")
    if compress not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compress!r} (expected one of {', '.join(COMPRESSIONS)})")
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    dev = resolve_device(device)

    if isinstance(model_or_path, TranslationModel):
        model, model_name = model_or_path, "model"
    else:
        model, model_name = load_model(model_or_path, "cpu"), describe(model_or_path)
    if direction not in model.generators:
        have = ", ".join(model.directions) or "none"
        raise ModelFileError(f"{model_name}: this model cannot translate {direction!r} (it has: {have})")
    source, target = model.source(direction), model.target(direction)
    _check_tiling(int(tile_size), int(overlap), model)
    tile_size, overlap, batch_size = int(tile_size), int(overlap), int(batch_size)

    ds = raster.open_raster(src_p, require_georeference=False)
    try:
        georef = raster.is_georeferenced(ds)
        if not georef:
            if not allow_ungeoreferenced:
                raise RasterError(f"{describe(src_p)}: has no CRS or geotransform (not georeferenced); "
                                  "use --allow-ungeoreferenced to translate it anyway")
            log.warning("%s has no CRS or geotransform; the output will not be georeferenced either", describe(src_p))
        band_list = _choose_bands(bands, ds.count, source, src_p)
        raster.check_output_path(dst_p, overwrite=overwrite, inputs=[src_p])
        _warn_if_unlike_training(ds, band_list, source, src_p, georef)

        net = model.generators[direction]
        model.to(dev)  # a caller's model moves to the chosen device (and stays there)
        if dev.type == "cuda":
            import torch

            net.to(memory_format=torch.channels_last)
        nodata = output_nodata(target)
        out_spec = dataclasses.replace(target, nodata=nodata)
        with raster.atomic_output(dst_p) as tmp:
            if cog:
                with tempfile.TemporaryDirectory(prefix=f".{dst_p.name}.", dir=dst_p.parent) as tdir:
                    plain = Path(tdir) / "plain.tif"
                    stats = _run(ds, band_list, source, out_spec, net, dev, plain, tile_size, overlap,
                                 batch_size, blend, compress, georef, prog, model_name, direction, dst_p)
                    _write_cog(plain, tmp, compress)
            else:
                stats = _run(ds, band_list, source, out_spec, net, dev, tmp, tile_size, overlap,
                             batch_size, blend, compress, georef, prog, model_name, direction, dst_p)
        width, height = ds.width, ds.height
    finally:
        ds.close()
    return PredictionResult(path=dst_p, direction=direction, width=width, height=height, count=target.count,
                            dtype=target.dtype, nodata=nodata, tiles=stats[0], tiles_translated=stats[1],
                            seconds=time.perf_counter() - started, device=str(dev))


# --------------------------------------------------------------------------- checks

def _check_tiling(tile_size: int, overlap: int, model: Any) -> None:
    mult = model.size_multiple
    gen = model.architecture.get("generator", "generator")
    if tile_size <= 0 or tile_size % mult:
        raise ConfigError(f"tile size {tile_size} is not a positive multiple of {mult} (the {gen} generator needs it)")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise ConfigError(f"overlap {overlap} does not fit tile size {tile_size} (need 0 <= overlap < tile size / 2)")


def _choose_bands(bands: Union[None, str, Sequence[int]], count: int, spec: DomainSpec, path: Path) -> list[int]:
    """The input bands to feed the network, in order.

    Default: the bands recorded in the model when training picked a deliberate subset or
    order that this raster has (e.g. 4,3,2 of a 13-band scene); all bands when the model was
    trained on all bands of an equally wide raster. Anything else asks for ``--bands``.
    """
    listed = ",".join(map(str, spec.bands))
    expects = f"model expects {spec.count} band(s) ({spec.kind}: bands {listed})"
    if bands is not None and not (isinstance(bands, str) and not bands.strip()):
        chosen = raster.parse_bands(bands, count, path)
        if len(chosen) != spec.count:
            raise BandMismatchError(f"{expects}; --bands names {len(chosen)} of {describe(path)}")
        return chosen
    trivial = tuple(spec.bands) == tuple(range(1, spec.count + 1))
    if trivial and count == spec.count:
        return list(spec.bands)
    if not trivial and max(spec.bands) <= count:
        log.info("using bands %s of %s, as in training", listed, describe(path))
        return list(spec.bands)
    raise BandMismatchError(f"{expects}; {describe(path)} has {count} — use --bands")


def _warn_if_unlike_training(ds, band_list: list[int], spec: DomainSpec, path: Path, georef: bool) -> None:
    """Log warnings (never fail) when the input's resolution or values differ from the training data."""
    if georef and spec.resolution is not None:
        rx, ry = raster.resolution(ds)
        sx, sy = spec.resolution
        same_units = True
        if spec.crs:
            try:
                from rasterio.crs import CRS

                same_units = CRS.from_user_input(spec.crs).is_geographic == ds.crs.is_geographic
            except Exception:  # an unparsable CRS in the model: compare the numbers anyway
                same_units = True
        if same_units and sx > 0 and sy > 0 and (abs(rx - sx) > 0.1 * sx or abs(ry - sy) > 0.1 * sy):
            log.warning("%s: pixel size %.4g x %.4g differs by more than 10%% from the training data's "
                        "%.4g x %.4g; resample the input to the training resolution for best results",
                        describe(path), rx, ry, sx, sy)
    data, masks = _sample(ds, band_list)
    valid = raster.valid_mask(ds, data, masks, spec.kind)
    if not valid.any():
        if spec.kind == "sar" and np.all(masks > 0, axis=0).any():
            log.warning("%s: no positive values in a sample; the model expects SAR in linear power, not dB",
                        describe(path))
        else:
            log.warning("%s: no valid pixels in a sample of the input; the output will be mostly nodata",
                        describe(path))
        return
    norm = normalize(data, spec, valid)
    lo, hi = spec.ranges()
    for i, band in enumerate(band_list):
        values = norm[i][valid]
        median = float(np.median(values))
        far = float(np.mean(np.abs(values) > 3.0))
        if abs(median) > 2.0 or far > 0.5:
            unit = " dB" if spec.kind == "sar" else ""
            log.warning("%s: band %d looks unlike the training data (%.0f%% of a sample lies far outside the "
                        "training range %.4g..%.4g%s); check the sensor, units and scaling",
                        describe(path), band, 100 * far, lo[i], hi[i], unit)


def _sample(ds, band_list: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A cheap sample of the scene: a decimated read from overviews when the file has them,
    else a 4×4 grid of small windows (a decimated read without overviews decodes every block)."""
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    if ds.overviews(band_list[0]) or max(ds.width, ds.height) <= SAMPLE_SIDE:
        scale = max(1, math.ceil(max(ds.width, ds.height) / SAMPLE_SIDE))
        shape = (len(band_list), max(1, ds.height // scale), max(1, ds.width // scale))
        return (ds.read(band_list, out_shape=shape, resampling=Resampling.nearest),
                ds.read_masks(band_list, out_shape=shape, resampling=Resampling.nearest))
    side = SAMPLE_SIDE // 4
    parts, mparts = [], []
    for fy in (0.125, 0.375, 0.625, 0.875):
        for fx in (0.125, 0.375, 0.625, 0.875):
            w = min(side, ds.width)
            h = min(side, ds.height)
            x0 = min(max(0, int(fx * ds.width) - w // 2), ds.width - w)
            y0 = min(max(0, int(fy * ds.height) - h // 2), ds.height - h)
            d, m = raster.read_window(ds, band_list, Window(x0, y0, w, h))
            parts.append(d)
            mparts.append(m)
    return np.concatenate(parts, axis=2), np.concatenate(mparts, axis=2)


# --------------------------------------------------------------------------- the pipeline

def _run(ds, band_list: list[int], source: DomainSpec, out_spec: DomainSpec, net: Any, dev: Any, out_path: Path,
         tile_size: int, overlap: int, batch_size: int, blend: str, compress: str, georef: bool,
         prog: Any, model_name: str, direction: str, dst_name: Path) -> tuple[int, int]:
    """Translate ``ds`` into a new GeoTIFF at ``out_path`` (a temporary file for ``dst_name``).

    Returns (tiles, tiles translated).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    from . import __version__
    from .errors import GeoganError

    H, W = ds.height, ds.width
    T, O = tile_size, overlap
    S = T - O
    rows = tile_origins(H, T, O)
    cols = tile_origins(W, T, O)
    n_rows, n_cols = len(rows), len(cols)
    total = n_rows * n_cols
    cuda = dev.type == "cuda"
    read_workers = max(1, min(_MAX_READ_WORKERS, (os.cpu_count() or 2) // 2))

    windows: dict[tuple[bool, bool, bool, bool], np.ndarray] = {}

    def weight(r: int, c: int) -> np.ndarray:
        key = (r == 0, r == n_rows - 1, c == 0, c == n_cols - 1)
        if key not in windows:
            wy = blend_window(T, O, blend, key[0], key[1])
            wx = blend_window(T, O, blend, key[2], key[3])
            w = np.outer(wy, wx)
            if blend != "none":
                w = np.maximum(w, WEIGHT_FLOOR)
            windows[key] = w.astype(np.float32)
        return windows[key]

    profile = raster.gtiff_profile(width=W, height=H, count=out_spec.count, dtype=out_spec.dtype,
                                   crs=ds.crs if georef else None, transform=ds.transform,
                                   nodata=out_spec.nodata, compress=compress)
    if compress != "none":
        profile["NUM_THREADS"] = "ALL_CPUS"  # GDAL compresses finished blocks in parallel
    stop = threading.Event()
    in_q: "queue.Queue" = queue.Queue(maxsize=_QUEUE_DEPTH)
    out_q: "queue.Queue" = queue.Queue(maxsize=1)
    errors: dict[str, BaseException] = {}

    # ---- reader: strips of rows → normalised, reflect-padded tiles in batches
    local = threading.local()
    handles: list[Any] = []
    handles_lock = threading.Lock()
    pad_left, pad_right = -cols[0], cols[-1] + T - W

    def prepare(r: int) -> Optional[tuple[int, np.ndarray, np.ndarray]]:
        """Read tile row ``r``'s strip, mask it, normalise it and reflect-pad it to the tile grid."""
        from rasterio.windows import Window

        if stop.is_set():
            return None
        src = getattr(local, "ds", None)
        if src is None:  # one dataset handle per worker thread: GDAL handles are not thread-safe
            src = local.ds = rasterio.open(ds.name)
            with handles_lock:
                handles.append(src)
        a = rows[r]
        y0, y1 = max(0, a), min(H, a + T)
        data, masks = raster.read_window(src, band_list, Window(0, y0, W, y1 - y0))
        valid = raster.valid_mask(src, data, masks, source.kind)
        norm = np.empty(data.shape, np.float32)
        for c0 in range(0, data.shape[1], _CHUNK_ROWS):  # row chunks keep temporaries small
            c1 = c0 + _CHUNK_ROWS
            norm[:, c0:c1] = normalize(data[:, c0:c1], source, valid[c0:c1])
        del data, masks
        return y0, valid, pad_reflect(norm, ((0, 0), (y0 - a, a + T - y1), (pad_left, pad_right)))

    # ---- reader: strips prepared by a few workers (in order) → tiles → batches, across strips
    def reader() -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=read_workers, thread_name_prefix="geogan-read")
        try:
            pending: list[tuple[np.ndarray, tuple[int, int]]] = []
            waiting: list[_RowDone] = []

            def send() -> None:
                tiles = np.stack([t for t, _ in pending])
                if cuda:
                    import torch

                    tiles = torch.from_numpy(tiles).pin_memory()
                _put(in_q, _Batch(tiles, [w for _, w in pending]), stop)
                pending.clear()
                for marker in waiting:
                    _put(in_q, marker, stop)
                waiting.clear()

            ahead: deque = deque()
            submitted = 0
            for r in range(n_rows):
                while submitted < n_rows and len(ahead) < read_workers + 1:  # bounded read-ahead
                    ahead.append(pool.submit(prepare, submitted))
                    submitted += 1
                prepared = ahead.popleft().result()
                if prepared is None or stop.is_set():
                    return
                y0, valid, padded = prepared
                skipped = 0
                for j, c in enumerate(cols):
                    x0, x1 = max(0, c), min(W, c + T)
                    if not valid[:, x0:x1].any():
                        skipped += 1
                        continue
                    pending.append((padded[:, :, c + pad_left:c + pad_left + T], (r, j)))
                    if len(pending) == batch_size:
                        send()
                marker = _RowDone(r, y0, valid, skipped)
                if pending:
                    waiting.append(marker)
                else:
                    _put(in_q, marker, stop)
            if pending:
                send()
            for marker in waiting:
                _put(in_q, marker, stop)
            _put(in_q, _END, stop)
        except _Stop:
            return
        except BaseException as exc:  # handed to the main thread, which re-raises it
            if isinstance(exc, (RasterioError, OSError)) and not isinstance(exc, GeoganError):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                exc = RasterError(f"{describe(ds.name)}: reading failed ({first})")
            errors["reader"] = exc
            stop.set()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for h in handles:
                h.close()

    # ---- writer: finished row bands → divide, denormalise, cast, mask, write block-aligned rows
    def writer(out) -> None:
        try:
            block = profile.get("blockysize", 1) if profile.get("tiled") else 1
            buf: list[np.ndarray] = []
            buf_y0, buf_rows = 0, 0
            next_row = 0
            while True:
                if stop.is_set():
                    return
                try:
                    item = out_q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                y0, acc, wsum, valid = item
                if y0 != next_row:
                    raise RuntimeError(f"internal error: rows out of order ({y0} != {next_row})")
                next_row = y0 + acc.shape[1]
                pixels = np.empty(acc.shape, np.dtype(out_spec.dtype))
                fill = np.asarray(out_spec.nodata).astype(pixels.dtype)
                for c0 in range(0, acc.shape[1], _CHUNK_ROWS):  # row chunks keep float64 temporaries small
                    c1 = c0 + _CHUNK_ROWS
                    ok = wsum[c0:c1] > 0
                    with np.errstate(invalid="ignore", divide="ignore"):
                        y = acc[:, c0:c1] / np.where(ok, wsum[c0:c1], 1.0)
                    part = denormalize(y, out_spec)
                    bad = ~(valid[c0:c1] & ok)
                    if bad.any():
                        part[:, bad] = fill
                    pixels[:, c0:c1] = part
                del acc, wsum, item
                if not buf:
                    buf_y0 = y0
                buf.append(pixels)
                buf_rows += pixels.shape[1]
                end = buf_y0 + buf_rows
                aligned = (end // block) * block
                if aligned > buf_y0 and (aligned - buf_y0) >= block:
                    whole = np.concatenate(buf, axis=1) if len(buf) > 1 else buf[0]
                    k = aligned - buf_y0
                    out.write(whole[:, :k], window=rasterio.windows.Window(0, buf_y0, W, k))
                    rest = whole[:, k:]
                    buf = [rest] if rest.shape[1] else []
                    buf_y0, buf_rows = aligned, rest.shape[1]
            if buf:
                whole = np.concatenate(buf, axis=1) if len(buf) > 1 else buf[0]
                out.write(whole, window=rasterio.windows.Window(0, buf_y0, W, whole.shape[1]))
            if next_row != H:
                raise RuntimeError(f"internal error: wrote {next_row} of {H} rows")
        except BaseException as exc:
            if isinstance(exc, (RasterioError, OSError)) and not isinstance(exc, GeoganError):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                exc = OutputError(f"{describe(dst_name)}: writing failed ({first})")
            errors["writer"] = exc
            stop.set()

    import torch

    def translate(tiles: Any) -> np.ndarray:
        x = tiles if isinstance(tiles, torch.Tensor) else torch.from_numpy(tiles)
        x = x.to(dev, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = net(x)
        y = y.float().cpu().numpy()
        if y.shape != (x.shape[0], out_spec.count, T, T):
            raise ModelFileError(f"{model_name}: generator {direction} returned shape {tuple(y.shape)}, "
                                 f"expected {(x.shape[0], out_spec.count, T, T)}")
        return y

    acc_bands: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    strips: dict[int, _RowDone] = {}

    def band(k: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
        g0 = rows[0] + k * S
        if g0 >= H or g0 + S <= 0:
            return None  # entirely outside the scene: nothing to keep
        if k not in acc_bands:
            acc_bands[k] = (np.zeros((out_spec.count, S, W), np.float32), np.zeros((S, W), np.float32))
        return acc_bands[k]

    def accumulate(y: np.ndarray, r: int, j: int) -> None:
        c = cols[j]
        x0, x1 = max(0, c), min(W, c + T)
        w = weight(r, j)
        for k, t0, t1 in ((r, 0, S), (r + 1, S, T)):
            if t1 <= t0:
                continue
            b = band(k)
            if b is None:
                continue
            acc, wsum = b
            ww = w[t0:t1, x0 - c:x1 - c]
            acc[:, :t1 - t0, x0:x1] += y[:, t0:t1, x0 - c:x1 - c] * ww
            wsum[:t1 - t0, x0:x1] += ww

    def flush(k: int) -> None:
        g0 = rows[0] + k * S
        y0, y1 = max(0, g0), min(H, g0 + S)
        b = acc_bands.pop(k, None)
        if y1 <= y0:
            return
        strip = strips[min(k, n_rows - 1)]
        valid = strip.valid[y0 - strip.y0:y1 - strip.y0]
        if b is None:
            acc = np.zeros((out_spec.count, y1 - y0, W), np.float32)
            wsum = np.zeros((y1 - y0, W), np.float32)
        else:
            acc, wsum = b[0][:, y0 - g0:y1 - g0], b[1][y0 - g0:y1 - g0]
        while True:
            failed()
            try:
                out_q.put((y0, acc, wsum, valid), timeout=0.1)
                break
            except queue.Full:
                continue
        for old in [s for s in strips if s < k]:
            del strips[old]

    def failed() -> None:
        """Re-raise a reader's or writer's failure in the main thread."""
        for name in ("reader", "writer"):
            if name in errors:
                raise errors[name]

    def take() -> Any:
        while True:
            failed()
            try:
                return in_q.get(timeout=0.1)
            except queue.Empty:
                continue

    done = translated = 0
    prog.update(0, total, "tiles")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out_path, "w", **profile) as out:
            for i, desc in enumerate(out_spec.band_descriptions[:out_spec.count], start=1):
                if desc:
                    out.set_band_description(i, str(desc))
            out.update_tags(GEOGAN_VERSION=__version__, GEOGAN_DIRECTION=direction)
            threads = [threading.Thread(target=reader, name="geogan-read", daemon=True),
                       threading.Thread(target=writer, args=(out,), name="geogan-write", daemon=True)]
            for t in threads:
                t.start()
            try:
                while True:
                    item = take()
                    if item is _END:
                        break
                    if isinstance(item, _Batch):
                        y = translate(item.tiles)
                        for yt, (r, j) in zip(y, item.where):
                            accumulate(yt, r, j)
                        done += len(item.where)
                        translated += len(item.where)
                        prog.update(done, total, "tiles")
                        if prog.cancelled():
                            raise Cancelled(f"translation of {describe(ds.name)} cancelled")
                    else:
                        strips[item.row] = item
                        done += item.skipped
                        if item.skipped:
                            prog.update(done, total, "tiles")
                        flush(item.row)
                        if item.row == n_rows - 1:
                            flush(n_rows)
                while True:
                    failed()
                    try:
                        out_q.put(_END, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                threads[1].join()
                failed()
            except BaseException:
                stop.set()
                raise
            finally:
                for t in threads:
                    t.join()
    return total, translated


def _write_cog(plain: Path, dst: Path, compress: str) -> None:
    """Copy a finished GeoTIFF into a Cloud Optimized GeoTIFF (GDAL's COG driver, with overviews)."""
    import rasterio.shutil
    from rasterio.errors import RasterioIOError

    options = {"BIGTIFF": "IF_SAFER", "OVERVIEWS": "AUTO", "RESAMPLING": "AVERAGE", "BLOCKSIZE": 512}
    if compress != "none":
        options["COMPRESS"] = compress.upper()
        options["PREDICTOR"] = "YES"
    else:
        options["COMPRESS"] = "NONE"
    try:
        rasterio.shutil.copy(plain, dst, driver="COG", **options)
    except RasterioIOError as exc:
        raise OutputError(f"{describe(dst)}: writing the Cloud Optimized GeoTIFF failed ({str(exc).splitlines()[0]})") from None

"""The predictor's threaded stages, behind the linear driver in :mod:`geogan.predict.scene`.

::

    StripReader (a thread per core)     driver (caller's thread)            BlockWriter (a thread)
    row chunks read by one dataset ──▶ batches → network (CPU: one  ──▶  denormalised, nodata where
    handle per thread, masked and       thread per core, weights applied)   the input was invalid,
    normalised; strips cut into         → RowBlender → finished row         whole rows of blocks
    batches of tiles (Prefetch thread)  blocks                              (GDAL compresses in threads)

The reader decodes every scene row once (row chunks on the input's block rows, several at a time,
each thread with its own GDAL handle: handles are not thread-safe) and normalises it once; the
strips of overlapping tile rows are cut from those chunks. What the threads share lives in named
objects: a :class:`PipelineState` (the stop flag and the first failure) and bounded
:class:`Channel`\\ s. Any thread that fails records its exception there and sets the stop flag;
every blocking ``put``/``get`` gives up within a fraction of a second once the flag is set, so no
thread waits forever, and the driver re-raises the first failure.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from .. import raster
from ..bands import SAR_LINEAR_FLOOR, DomainSpec, check_units
from ..errors import GeoganError, RasterError, describe
from ..notices import carry_collector
from ..scenes import Scene
from .grid import Panel, TileGrid, cut_tile, tile_source

#: Marks the end of a channel's items.
END = object()

_POLL_S = 0.1


def io_errors() -> tuple:
    """The exceptions a GDAL read or write raises through rasterio: its own errors, GDAL's CPLE_*
    errors (raised as is by some calls, e.g. a COG copy on a full disk) and the OS's."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError)


class Stopped(Exception):
    """Raised inside a stage when the pipeline was stopped elsewhere (not a failure of its own)."""


class PipelineState:
    """The stop flag and the first failure, shared by the predictor's threads."""

    def __init__(self) -> None:
        #: The thread that runs the pipeline (the caller's): it is the one that re-raises failures.
        self.driver = threading.get_ident()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: Optional[BaseException] = None

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` (unless something failed first) and stop every stage."""
        if not isinstance(exc, Stopped):
            with self._lock:
                if self.error is None:
                    self.error = exc
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def stopped(self) -> bool:
        return self._stop.is_set()

    def raise_if_stopped(self) -> None:
        """In a worker stage: leave quietly when the pipeline stopped."""
        if self._stop.is_set():
            raise Stopped()

    def raise_failure(self) -> None:
        """In the main thread: re-raise another stage's failure."""
        if self.error is not None:
            raise self.error


class Channel:
    """A bounded queue between two stages whose waits end when the pipeline stops."""

    def __init__(self, state: PipelineState, depth: int) -> None:
        self.state = state
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)

    def put(self, item: Any) -> None:
        while True:
            self._check()
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            self._check()
            try:
                return self._q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _check(self) -> None:
        if threading.get_ident() == self.state.driver:
            self.state.raise_failure()
        self.state.raise_if_stopped()


def run_in_thread(body: Callable[..., None], state: PipelineState, name: str, *args: Any,
                  wrap_error: Callable[[BaseException], BaseException] = lambda e: e) -> threading.Thread:
    """Start ``body(*args)`` in a daemon thread whose failure stops the pipeline (and is re-raised by
    the driver); what it logs belongs to the caller's result (:func:`geogan.notices.carry_collector`)."""
    def guarded() -> None:
        try:
            body(*args)
        except BaseException as exc:  # handed to the driver, which re-raises it
            state.fail(wrap_error(exc))

    thread = threading.Thread(target=carry_collector(guarded), name=name, daemon=True)
    thread.start()
    return thread


class Prefetch:
    """Iterate ``items`` in a thread of its own, ``depth`` items ahead of the consumer."""

    def __init__(self, items: Iterable[Any], state: PipelineState, depth: int, name: str,
                 wrap_error: Callable[[BaseException], BaseException] = lambda e: e) -> None:
        self.channel = Channel(state, depth)
        self.thread = run_in_thread(self._fill, state, name, items, wrap_error=wrap_error)

    def _fill(self, items: Iterable[Any]) -> None:
        try:
            for item in items:
                self.channel.put(item)
            self.channel.put(END)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's clean-up (its threads, its dataset handles) runs here, now

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.channel.get()
            if item is END:
                return
            yield item


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], threads: int,
                initializer: Optional[Callable[[], None]] = None) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in the items' order, ``fn`` running on ``threads`` threads at once (inline
    when one). What ``fn`` logs belongs to the caller's result; its failure is raised here."""
    if threads <= 1:
        for item in items:
            yield item, fn(item)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="geogan-net", initializer=initializer)
    call = carry_collector(fn)
    ahead: deque = deque()
    try:
        for item in items:
            ahead.append((item, pool.submit(call, item)))
            if len(ahead) > threads:
                first, future = ahead.popleft()
                yield first, future.result()
        while ahead:
            first, future = ahead.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def torch_threads(n: int) -> None:
    """Thread initializer: torch ops of this thread use ``n`` cores (torch's intra-op thread count is
    per thread with OpenMP: the caller's setting is left alone)."""
    import torch

    torch.set_num_threads(n)


#: Most batches through the network at once on the CPU (each holds a network's activations).
MAX_NETWORK_WORKERS = 4


def network_threads(cuda: bool) -> tuple[int, int]:
    """(batches through the network at once, torch threads each). On the CPU up to
    :data:`MAX_NETWORK_WORKERS` batches share torch's threads (on 2 cores: 2 batches, one core each,
    instead of each operation split across both cores, so no thread waits at a barrier for a core
    another stage holds); one batch beside a GPU (it queues work without waiting)."""
    import torch

    if cuda:
        return 1, torch.get_num_threads()
    total = max(1, torch.get_num_threads())
    workers = min(total, MAX_NETWORK_WORKERS)
    return workers, max(1, total // workers)


def read_workers(cuda: bool) -> int:
    """Threads reading and normalising row chunks: every core on the CPU (GDAL's decoding and numpy
    release the GIL; the network's threads share the cores), all but two beside a GPU."""
    cores = os.cpu_count() or 2
    return max(1, min(MAX_READ_WORKERS, cores - 2 if cuda else cores))


#: Most threads reading row chunks.
MAX_READ_WORKERS = 14
#: Finished strips that may wait for a partly filled batch before it is sent as it is: bounds
#: the rows held back (and their memory) where a sparse scene has rows without any tile.
MAX_WAITING_STRIPS = 2


def _refcounts(arrays: list) -> list[int]:
    return [sys.getrefcount(a) for a in arrays]


#: What :func:`_refcounts` reports for an array that only its list refers to.
_UNUSED = _refcounts([np.empty(1)])[0]


class ArrayRecycler:
    """Large arrays handed out again once nothing refers to them any more (no view, no tensor).

    A scene's reads and row blocks are tens of MB each; freed and allocated again, their memory
    goes back to the kernel and returns as fresh pages the kernel must zero (numpy asks for huge
    pages from 4 MB), which on a VM costs as much CPU as normalising the pixels. Reused, they
    are zeroed once per scene. Whether an array is in use is its reference count (a numpy view
    and a tensor made by ``torch.from_numpy`` both refer to it), so no stage has to hand it back.
    Free arrays of another shape are released when a new shape is asked for: memory stays
    bounded by what the pipeline holds at once.
    """

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, reused where one is free."""
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        with self._lock:
            unused = [c == _UNUSED for c in _refcounts(self._arrays)]
            for a, free in zip(self._arrays, unused):
                if free and a.shape == shape and a.dtype == dtype:
                    return a
            self._arrays = [a for a, free in zip(self._arrays, unused) if not free]
            fresh = np.empty(shape, dtype)
            self._arrays.append(fresh)
            return fresh


class Normaliser:
    """:func:`geogan.bands.normalize` fused for the reader: in place on the pixels just read, the
    per-band stretch (and SAR's 10·log10) folded into one multiply-add, invalid pixels zeroed with
    one masked copy. The same values to float rounding (~1e-7 of the [-1, 1] range)."""

    def __init__(self, spec: DomainSpec, units: Optional[str]) -> None:
        lo, hi = spec.ranges()
        scale = 2.0 / (hi - lo)
        self.log = spec.kind == "sar" and check_units(units or spec.units or "linear") != "db"
        db_per_ln = (10.0 if (units or spec.units or "linear") == "linear" else 20.0) / np.log(10.0)
        self.scale = (scale * (db_per_ln if self.log else 1.0)).astype(np.float32).reshape(-1, 1, 1)
        self.offset = (-lo * scale - 1.0).astype(np.float32).reshape(-1, 1, 1)
        self.count = spec.count
        #: SAR through the log: a valid pixel (finite, > 0) is finite after it, so only validity zeroes
        self.finite = self.log and bool(np.isfinite(self.scale).all() and np.isfinite(self.offset).all())

    def __call__(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Raw (band, row, col) pixels → float32 in [-1, 1] (their array when it is float32: in place).
        ``valid`` is :func:`geogan.raster.valid_mask`'s: a valid pixel is finite in every band."""
        if data.shape[0] != self.count:
            raise RasterError(f"internal error: {data.shape[0]} bands read, the model takes {self.count}")
        y = data if data.dtype == np.float32 and data.flags.writeable else data.astype(np.float32)
        zero = not (self.finite and valid.all())  # all valid through the log: nothing to zero (one pass less)
        for rows in row_slabs(y):
            self._slab(y[:, rows], valid[rows] if zero else None)
        return y

    def _slab(self, y: np.ndarray, valid: Optional[np.ndarray]) -> None:
        import torch

        if self.log:  # torch's vectorised log: about twice numpy's speed (AVX2); NaN stays NaN
            torch.from_numpy(y).clamp_(min=SAR_LINEAR_FLOOR).log_()
        y *= self.scale
        y += self.offset
        if valid is not None:
            bad = ~valid
            if not self.finite:
                bad = bad | ~np.isfinite(y)
            np.copyto(y, np.float32(0.0), where=bad)


#: Bytes of float32 pixels an element-wise stage works through at a time: its few passes over a
#: row slab stay in the core's caches instead of each going through memory (about 10–20 % less
#: time for (de)normalising a panel's rows, measured on the 2-core VM).
SLAB_BYTES = 2 << 20


def row_slabs(y: np.ndarray) -> list[slice]:
    """Slices of ``y``'s rows (axis 1 of bands × rows × cols) of about :data:`SLAB_BYTES` each."""
    per_row = max(1, y.shape[0] * y.shape[2] * 4)
    step = max(1, SLAB_BYTES // per_row)
    return [slice(r, r + step) for r in range(0, y.shape[1], step)]


class Denormaliser:
    """:func:`geogan.bands.denormalize` for the writer, in place on blended rows it owns, with nodata
    where the input was invalid: the same operations in the same order (so the same values as
    :class:`~geogan.predict.grid.DevicePixels` on a GPU), without the copies."""

    def __init__(self, spec: DomainSpec) -> None:
        lo, hi = spec.ranges()
        self.scale = ((hi - lo) / 2.0).astype(np.float32).reshape(-1, 1, 1)
        self.offset = lo.astype(np.float32).reshape(-1, 1, 1)
        self.exp_factor: Optional[np.float32] = None
        if spec.kind == "sar" and spec.units != "db":
            factor = 10.0 if spec.units in (None, "linear") else 20.0
            self.exp_factor = np.float32(np.log(10.0) / factor)  # 10 ** (dB / f) = exp(dB · ln10 / f)
        self.dtype = np.dtype(spec.dtype)
        self.fill = None if spec.nodata is None else np.asarray(spec.nodata).astype(self.dtype)
        self.range: Optional[tuple[float, float]] = None
        if self.dtype.kind in "ui":
            info, nodata = np.iinfo(self.dtype), spec.nodata
            lo_v, hi_v = float(info.min), float(info.max)
            if nodata is not None and float(nodata).is_integer():
                lo_v, hi_v = lo_v + (nodata == lo_v), hi_v - (nodata == hi_v)
            self.range = (lo_v, hi_v)
        self.keep_off = (None if self.range is not None or spec.nodata is None or not np.isfinite(spec.nodata)
                         else self.dtype.type(spec.nodata))

    def __call__(self, y: np.ndarray, valid: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Blended float32 rows (count, rows, cols; overwritten) → pixels of the target dtype (in ``out``
        when given: an array of their shape and the target dtype)."""
        x = y if y.dtype == np.float32 and y.flags.writeable else y.astype(np.float32)
        if out is None:
            out = np.empty(x.shape, self.dtype)
        fill = self.fill is not None and not valid.all()  # (the predictor's outputs always have a nodata value)
        for rows in row_slabs(x):
            self._slab(x[:, rows], out[:, rows], valid[rows] if fill else None)
        return out

    def _slab(self, x: np.ndarray, out: np.ndarray, valid: Optional[np.ndarray]) -> None:
        x += np.float32(1.0)
        x *= self.scale
        x += self.offset
        if self.exp_factor is not None:
            x *= self.exp_factor
            np.exp(x, out=x)
        if self.range is not None:
            np.rint(x, out=x)
            np.clip(x, *self.range, out=x)
        np.copyto(out, x, casting="unsafe")  # astype's cast, into the caller's array
        if self.keep_off is not None:
            np.copyto(out, np.nextafter(self.keep_off, self.dtype.type(np.inf)), where=out == self.keep_off)
        if valid is not None:
            np.copyto(out, self.fill, where=~valid)


@dataclass
class Chunk:
    """Scene rows ``[y0, y1)`` of one panel's read columns: validity and normalised pixels (None when
    no pixel is valid)."""

    y0: int
    y1: int
    valid: np.ndarray                # (rows, read columns)
    data: Optional[np.ndarray]       # (bands, rows, read columns) float32


@dataclass
class Decoded:
    """Rows ``[y0, y1)`` read before the input's units were known: what :func:`geogan.raster.validity`
    needs to finish them."""

    y0: int
    y1: int
    ds: Any
    data: np.ndarray
    masks: Optional[np.ndarray]
    rules: Optional[list]


@dataclass
class Strip:
    """The scene rows under tile row ``row`` of ``panel``: the validity of the panel's output columns
    (None: no valid pixel), the row chunks holding its normalised pixels (None once its tiles are cut)
    and, per tile column of the panel, whether any pixel under the tile is valid (the others are skipped)."""

    panel: Panel
    row: int
    y0: int
    valid: Optional[np.ndarray]      # (rows, panel width)
    chunks: Optional[list[Chunk]]
    has_valid: list[bool]

    def cut(self, grid: TileGrid, j: int, out: np.ndarray) -> None:
        """Write tile ``j`` into ``out`` (bands, tile, tile), straight from the chunks where it lies inside
        the scene, reflect-padded at the scene's edges."""
        y0, y1, x0, x1, pads = tile_source(grid, self.row, j)
        xa, xb = x0 - self.panel.read_x0, x1 - self.panel.read_x0
        if any(p for pair in pads for p in pair):
            cut_tile(_rows(self.chunks, "data", y0, y1, out.shape[0], slice(xa, xb)), pads, out)
            return
        for c in self.chunks:  # the tile's rows from each chunk holding some (one copy)
            a, b = max(y0, c.y0), min(y1, c.y1)
            if b > a:
                out[:, a - y0:b - y0] = c.data[:, a - c.y0:b - c.y0, xa:xb] if c.data is not None else 0.0


def chunk_rows(block_rows: int) -> int:
    """Rows read at a time: whole rows of the input's blocks, at least 128 rows."""
    block = max(1, block_rows)
    return block * max(1, -(-128 // block))


#: Chunks a reader that began early may hold beyond its usual read-ahead (memory on many cores).
EARLY_EXTRA_CHUNKS = 4
#: ``units`` of a :class:`StripReader` that starts reading before they are known (see ``begin``).
UNITS_PENDING = object()


class StripReader:
    """Strips of each panel, top to bottom, from row chunks read ahead by several threads.

    Reading may begin before the input's units are known (:meth:`begin`, while the caller samples
    the scene to tell them): GDAL decodes the first chunks on cores that would otherwise wait, and
    a chunk decoded before :meth:`set_units` is masked and normalised when :meth:`strips` takes it.
    :meth:`shutdown` ends it all, whether or not the strips were taken.
    """

    def __init__(self, scene: Scene, bands: Sequence[int], spec: DomainSpec, units: Any,
                 grid: TileGrid, workers: int, chunk_rows: int = 256) -> None:
        self.scene, self.bands, self.spec, self.grid = scene, list(bands), spec, grid
        self.workers, self.chunk_rows = max(1, workers), max(1, chunk_rows)
        self.arrays = ArrayRecycler()  # the chunks' pixels, read into arrays freed by earlier chunks
        self.floats = ArrayRecycler()  # their float32 copies, where they are read as another dtype
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._units_known = threading.Event()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._begun: Optional[tuple[int, deque, deque, Callable]] = None
        if units is not UNITS_PENDING:
            self.set_units(units)

    def set_units(self, units: Optional[str]) -> None:
        """The input's units: the chunks read so far, and all after, are masked and normalised with them."""
        self.units = units
        self.normalise = Normaliser(self.spec, units)
        self._units_known.set()

    def begin(self, panel: Panel) -> None:
        """Start reading ``panel``'s first chunks now (:meth:`strips` takes them over): up to
        :data:`EARLY_EXTRA_CHUNKS` beyond the usual read-ahead, as the pipeline behind is not running yet."""
        starts, ahead, read = deque(range(0, self.grid.height, self.chunk_rows)), deque(), carry_collector(self.read)
        self._read_ahead(panel, starts, ahead, read, limit=self.workers + 1 + EARLY_EXTRA_CHUNKS)
        self._begun = (panel.index, starts, ahead, read)

    def strips(self, panels: Sequence[Panel], state: PipelineState) -> Iterator[Strip]:
        """Every strip of every panel, in order (the chunks of a panel are read by ``workers`` threads)."""
        try:
            for panel in panels:
                yield from self._panel_strips(panel, state)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop reading (chunks read ahead are dropped) and close the handles; idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # before the handles the threads use are closed
            self._pool = None
        self.close()

    def _read_ahead(self, panel: Panel, starts: deque, ahead: deque, read: Callable, limit: int = 0) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="geogan-read",
                                            initializer=torch_threads, initargs=(1,))  # one core per reader
        while starts and len(ahead) < (limit or self.workers + 1):  # bounded read-ahead
            ahead.append(self._pool.submit(read, panel, starts.popleft()))

    def _panel_strips(self, panel: Panel, state: PipelineState) -> Iterator[Strip]:
        g = self.grid
        if self._begun is not None and self._begun[0] == panel.index:
            _, starts, ahead, read = self._begun
            self._begun = None
        else:
            starts, ahead, read = deque(range(0, g.height, self.chunk_rows)), deque(), carry_collector(self.read)
        held: list[Chunk] = []
        for r in range(g.n_rows):
            y0, y1, _, _ = g.strip(r)
            while not held or held[-1].y1 < y1:
                self._read_ahead(panel, starts, ahead, read)
                state.raise_if_stopped()
                got = ahead.popleft().result()
                held.append(self._chunk(got) if isinstance(got, Decoded) else got)
            held = [c for c in held if c.y1 > y0]
            yield self._strip(panel, r, held)

    def read(self, panel: Panel, y0: int) -> Chunk:
        """Read, mask and normalise rows ``[y0, y0 + chunk_rows)`` of ``panel``'s read columns (any thread)."""
        from rasterio.windows import Window

        y1 = min(self.grid.height, y0 + self.chunk_rows)
        ds = self._dataset()
        window = Window(panel.read_x0, y0, panel.read_x1 - panel.read_x0, y1 - y0)
        dtypes = {ds.dtypes[b - 1] for b in self.bands}
        out = (self.arrays.empty((len(self.bands), y1 - y0, panel.read_x1 - panel.read_x0), dtypes.pop())
               if len(dtypes) == 1 else None)
        data, masks, rules = raster.read_for_validity(ds, self.bands, window, out=out)
        decoded = Decoded(y0, y1, ds, data, masks, rules)
        return self._chunk(decoded) if self._units_known.is_set() else decoded  # else: finished when taken

    def _chunk(self, d: "Decoded") -> Chunk:
        """Mask and normalise what was read (any thread; the units are known), a row slab at a time:
        each slab's validity and normalisation in one visit, while its pixels are in cache."""
        data = d.data
        norm = (data if data.dtype == np.float32 and data.flags.writeable
                else self.floats.empty(data.shape, np.float32))
        valid = np.empty(data.shape[1:], bool)
        for rows in row_slabs(norm):
            masks = None if d.masks is None else d.masks[:, rows]
            valid[rows] = slab_valid = raster.validity(d.ds, data[:, rows], masks, d.rules, self.spec.kind,
                                                       units=self.units)
            if not slab_valid.any():
                norm[:, rows] = 0.0  # what normalising gives invalid pixels
                continue
            if norm is not data:
                np.copyto(norm[:, rows], data[:, rows], casting="unsafe")  # astype's conversion, into place
            self.normalise(norm[:, rows], slab_valid)  # in place
        return Chunk(d.y0, d.y1, valid, norm if valid.any() else None)

    def _strip(self, panel: Panel, r: int, chunks: list[Chunk]) -> Strip:
        g = self.grid
        y0, y1, _, _ = g.strip(r)
        valid = _rows(chunks, "valid", y0, y1)
        x0 = panel.x0 - panel.read_x0
        out_valid = valid[:, x0:x0 + panel.width]
        out_valid = np.ascontiguousarray(out_valid) if out_valid.any() else None  # a sparse scene's empty rows
        has_valid = []
        for j in range(panel.j0, panel.j1):
            a, b = max(0, g.cols[j]), min(g.width, g.cols[j] + g.tile)
            has_valid.append(bool(valid[:, a - panel.read_x0:b - panel.read_x0].any()))
        return Strip(panel, r, y0, out_valid, list(chunks) if any(has_valid) else None, has_valid)

    def _dataset(self) -> Any:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = raster.open_raster(self.scene, require_georeference=False)
            with self._lock:
                self._handles.append(ds)
        return ds

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()

    def reading_error(self, exc: BaseException) -> BaseException:
        """GDAL and OS errors become one line naming the scene; geogan's own errors pass as they are."""
        if isinstance(exc, io_errors()) and not isinstance(exc, GeoganError):
            return RasterError(f"{describe(self.scene.label)}: reading failed ({raster.first_line(exc)})")
        return exc


def _rows(chunks: list[Chunk], what: str, y0: int, y1: int, bands: int = 0, cols: slice = slice(None)) -> np.ndarray:
    """Rows ``[y0, y1)`` and columns ``cols`` of the chunks' ``valid`` or ``data`` (a view when one chunk
    holds them all; an all-invalid chunk's data are zeros)."""
    parts = []
    for c in chunks:
        a, b = max(y0, c.y0), min(y1, c.y1)
        if b <= a:
            continue
        arr = getattr(c, what)
        if arr is None:
            arr = np.zeros((bands, b - a, len(range(*cols.indices(c.valid.shape[1])))), np.float32)
            parts.append(arr)
            continue
        parts.append(arr[..., a - c.y0:b - c.y0, cols])
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-2)


@dataclass
class TileBatch:
    """Tiles for one network call: ``buffer[:n]`` and, per tile, (panel, tile row, tile column); then
    the strips whose every tile has been sent (their rows can be finished after this batch)."""

    buffer: Any
    n: int
    where: list[tuple[int, int, int]]
    finished: list[Strip]


class BufferPool:
    """Reusable batch buffers (page-locked on CUDA, so host→device copies run asynchronously).

    A buffer comes back with the CUDA event recorded after its copy to the device was queued;
    it is refilled only once that copy has finished: there the oldest is taken first (its copy is
    the likeliest to be done). On the CPU the buffer released last is taken first: it is still in
    the caches, and the others are never touched while the pipeline keeps pace.
    """

    def __init__(self, shape: tuple[int, ...], n: int, pinned: bool) -> None:
        import torch

        self._free: "queue.Queue" = queue.Queue() if pinned else queue.LifoQueue()
        for _ in range(n):
            self._free.put((torch.empty(shape, dtype=torch.float32, pin_memory=pinned), None))

    def acquire(self, state: PipelineState) -> Any:
        while True:
            state.raise_if_stopped()
            try:
                buf, event = self._free.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if event is not None:
                event.synchronize()
            return buf

    def release(self, buf: Any, event: Any = None) -> None:
        self._free.put((buf, event))


def tile_batches(strips: Iterable[Strip], grid: TileGrid, pool: BufferPool, batch_size: int,
                 state: PipelineState) -> Iterator[TileBatch]:
    """Cut the strips' tiles (those with a valid pixel) into batches of ``batch_size``, in order."""
    buffer, where, finished = None, [], []
    for strip in strips:
        panel = strip.panel
        for i, j in enumerate(range(panel.j0, panel.j1)):
            if not strip.has_valid[i]:
                continue
            if buffer is None:
                buffer = pool.acquire(state)
            strip.cut(grid, j, buffer.numpy()[len(where)])
            where.append((panel.index, strip.row, j))
            if len(where) == batch_size:
                yield TileBatch(buffer, len(where), where, finished)
                buffer, where, finished = None, [], []
        strip.chunks = None  # cut: only its validity is needed from here on
        finished.append(strip)
        if not where or len(finished) >= MAX_WAITING_STRIPS:  # strips without tiles must not wait long
            yield TileBatch(buffer, len(where), where, finished)
            buffer, where, finished = None, [], []
    if where or finished:
        yield TileBatch(buffer, len(where), where, finished)


@dataclass
class FinishedRows:
    """Rows ``[y0, y0 + rows)`` of ``panel``: ``data`` (None: no tile reached them), the input's
    validity (None: no valid pixel; both mean all nodata), and the CUDA event to wait for before
    ``data`` (a pinned host copy) is read."""

    panel: int
    y0: int
    rows: int
    data: Any
    valid: Optional[np.ndarray]
    ready: Any = None


@dataclass
class PanelDone:
    panel: int


class BlockWriter:
    """The sink: turns finished rows into output pixels and writes them in whole rows of blocks, so
    every block is written once, whole (no compressed block is ever read back).

    Pixels are made straight into one staging array per panel width (rows waiting for the rest of
    their blocks, then the next rows): no concatenation, and no fresh memory per write.
    """

    def __init__(self, dataset: Any, panels: list[Panel], spec: DomainSpec, block_rows: int,
                 to_pixels: Optional[Callable[[Any], np.ndarray]] = None, max_rows: int = 0) -> None:
        """``to_pixels`` turns a host tensor of final pixels into numpy; None: ``data`` are blended
        network-unit floats, denormalised here (:class:`Denormaliser`). ``max_rows``: the most rows
        one :class:`FinishedRows` holds (sizes the staging array; it grows if ever exceeded)."""
        self.ds, self.panels, self.spec = dataset, panels, spec
        self.block_rows = max(1, block_rows)
        self.to_pixels = to_pixels
        self.denormalise = Denormaliser(spec)
        self.fill = np.asarray(spec.nodata).astype(spec.dtype)
        self.max_rows = max(1, max_rows)
        self._stage: Optional[np.ndarray] = None
        self._held = 0          # rows in the staging array, from scene row ``_y0``
        self._y0 = 0
        self._next_row = 0
        self.rows_written = 0

    def run(self, inbox: Channel) -> None:
        """Writer thread body: write until END."""
        while True:
            item = inbox.get()
            if item is END:
                return
            if isinstance(item, PanelDone):
                self.end_panel(item.panel)
            else:
                self.add(item)

    def add(self, item: FinishedRows) -> None:
        if item.y0 != self._next_row:
            raise RuntimeError(f"internal error: rows out of order ({item.y0} != {self._next_row})")
        if not self._held:
            self._y0 = item.y0
        rows = self._staged(item.panel, item.rows)
        self._pixels(item, rows)
        self._held += item.rows
        self._next_row = item.y0 + item.rows
        aligned = (self._next_row // self.block_rows) * self.block_rows
        if aligned - self._y0 >= self.block_rows:
            self._write(item.panel, aligned)

    def end_panel(self, panel: int) -> None:
        if self._next_row != self.ds.height:
            raise RuntimeError(f"internal error: panel {panel} ended at row {self._next_row} of {self.ds.height}")
        self._write(panel, self._next_row)
        self._next_row = 0

    def _staged(self, panel: int, rows: int) -> np.ndarray:
        """The staging rows for the next ``rows`` rows of ``panel`` (the array made or grown as needed)."""
        width, need = self.panels[panel].width, self._held + rows
        stage = self._stage
        if stage is None or stage.shape[2] != width or stage.shape[1] < need:
            grown = np.empty((self.spec.count, max(need, self.block_rows + self.max_rows), width), self.spec.dtype)
            if self._held:
                grown[:, :self._held] = stage[:, :self._held]
            self._stage = stage = grown
        return stage[:, self._held:need]

    def _pixels(self, item: FinishedRows, out: np.ndarray) -> None:
        if item.data is None or item.valid is None:
            out[...] = self.fill
            return
        if item.ready is not None:
            item.ready.synchronize()  # the copy from the GPU has landed
        if self.to_pixels is None:
            self.denormalise(item.data, item.valid, out=out)
            return
        out[...] = self.to_pixels(item.data)
        np.copyto(out, self.fill, where=~item.valid)

    def _write(self, panel: int, upto: int) -> None:
        from rasterio.windows import Window

        if not self._held or upto <= self._y0:
            return
        k = upto - self._y0
        p = self.panels[panel]
        self.ds.write(self._stage[:, :k], window=Window(p.x0, self._y0, p.width, k))
        self.rows_written += k
        rest = self._held - k
        if rest:  # rows of the next blocks move to the front (rest < block rows <= k: no overlap)
            self._stage[:, :rest] = self._stage[:, k:self._held]
        self._held, self._y0 = rest, upto

"""Reading the scene for the network: strips of rows, masked, normalised, padded, cut into batches.

:class:`StripReader` prepares one strip (the scene rows under one tile row of one panel) and may
be called from several threads at once: GDAL dataset handles are not thread-safe, so each
thread opens its own handle on the scene (a multi-file scene is re-stacked as an in-memory VRT
by :func:`geogan.raster.open_raster`). :class:`TileBatcher` runs in its own thread: it has a few
strips prepared ahead by a thread pool, cuts their tiles into reusable (pinned, on CUDA) batch
buffers and sends batches and row markers, in order, to the network.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .. import raster
from ..bands import DomainSpec, normalize
from ..errors import GeoganError, RasterError, describe
from ..notices import carry_collector
from ..scenes import Scene
from .plan import Panel, TileGrid, pad_strip, panel_tile
from .stages import END, Channel, PipelineState, io_errors

#: Finished tile rows that may wait for a partly filled batch before it is sent as it is: bounds
#: the rows held back (and their memory) where a sparse scene has rows without any tile.
MAX_WAITING_ROWS = 2


@dataclass
class Strip:
    """One prepared strip: the validity of the panel's output columns (None: no valid pixel at all)
    and the padded, normalised tiles (None when no tile of the strip has a valid pixel)."""

    panel: int
    row: int
    y0: int                          # first scene row of the strip
    valid: Optional[np.ndarray]      # (rows, panel width): input validity of the output pixels
    tiles: Optional[np.ndarray]      # (bands, tile, padded panel width) float32, or None
    has_valid: list[bool]            # per tile column of the panel: any valid pixel under the tile


@dataclass
class TileBatch:
    """Tiles for one network call: ``buffer[:n]`` and, per tile, (panel, tile row, tile column)."""

    buffer: Any
    n: int
    where: list[tuple[int, int, int]]


@dataclass
class RowDone:
    """Every tile of tile row ``row`` of ``panel`` has been sent (or skipped: no valid pixel)."""

    panel: int
    row: int
    y0: int
    valid: Optional[np.ndarray]      # None: no pixel of the strip is valid
    skipped: int


class StripReader:
    """Reads, masks, normalises and reflect-pads strips of a scene; one dataset handle per thread."""

    def __init__(self, scene: Scene, bands: Sequence[int], spec: DomainSpec, units: Optional[str],
                 grid: TileGrid) -> None:
        self.scene, self.bands, self.spec, self.units, self.grid = scene, list(bands), spec, units, grid
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()

    def read(self, panel: Panel, r: int) -> Strip:
        from rasterio.windows import Window

        g = self.grid
        y0, y1, _, _ = g.strip(r)
        window = Window(panel.read_x0, y0, panel.read_x1 - panel.read_x0, y1 - y0)
        ds = self._dataset()
        data, masks = raster.read_window(ds, self.bands, window)
        valid = raster.valid_mask(ds, data, masks, self.spec.kind, units=self.units)
        del masks
        out_valid = valid[:, panel.x0 - panel.read_x0:panel.x1 - panel.read_x0]
        out_valid = np.ascontiguousarray(out_valid) if out_valid.any() else None  # a sparse scene's empty rows
        has_valid = []
        for j in range(panel.j0, panel.j1):
            a, b = max(0, g.cols[j]), min(g.width, g.cols[j] + g.tile)
            has_valid.append(bool(valid[:, a - panel.read_x0:b - panel.read_x0].any()))
        tiles = None
        if any(has_valid):
            norm = normalize(data, self.spec, valid, units=self.units)
            del data
            tiles = pad_strip(norm, g, panel, r)
        return Strip(panel.index, r, y0, out_valid, tiles, has_valid)

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


class BufferPool:
    """Reusable batch buffers (page-locked on CUDA, so host→device copies run asynchronously).

    A buffer comes back with the CUDA event recorded after its copy to the device was queued;
    it is refilled only once that copy has finished.
    """

    def __init__(self, shape: tuple[int, ...], n: int, pinned: bool) -> None:
        import queue

        import torch

        self._free: "queue.Queue" = queue.Queue()
        for _ in range(n):
            self._free.put((torch.empty(shape, dtype=torch.float32, pin_memory=pinned), None))

    def acquire(self, state: PipelineState) -> Any:
        import queue

        while True:
            state.raise_if_stopped()
            try:
                buf, event = self._free.get(timeout=0.1)
            except queue.Empty:
                continue
            if event is not None:
                event.synchronize()
            return buf

    def release(self, buf: Any, event: Any = None) -> None:
        self._free.put((buf, event))


class TileBatcher:
    """The reader thread: strips, prepared ahead by ``workers`` threads, → batches and row markers, in order."""

    def __init__(self, reader: StripReader, panels: Sequence[Panel], pool: BufferPool, batch_size: int,
                 out: Channel, state: PipelineState, workers: int) -> None:
        self.reader, self.panels, self.pool, self.batch_size = reader, list(panels), pool, batch_size
        self.out, self.state, self.workers = out, state, max(1, workers)
        self._buffer: Any = None
        self._where: list[tuple[int, int, int]] = []
        self._waiting: list[RowDone] = []

    def run(self) -> None:
        """Thread body: any failure is handed to the pipeline state (and so to the main thread)."""
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="geogan-read") as pool:
                self._produce(pool)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.state.fail(self._reading_error(exc))
        finally:
            self.reader.close()

    def _produce(self, pool: ThreadPoolExecutor) -> None:
        jobs = deque((p, r) for p in self.panels for r in range(self.reader.grid.n_rows))
        ahead: deque = deque()
        read = carry_collector(self._read)  # what the pool's threads log belongs to this call
        while jobs or ahead:
            while jobs and len(ahead) < self.workers + 1:  # bounded read-ahead
                panel, r = jobs.popleft()
                ahead.append(pool.submit(read, panel, r))
            strip = ahead.popleft().result()
            if strip is None:
                for f in ahead:
                    f.cancel()
                return
            self._add_strip(strip)
        self._send()
        self._flush_markers()
        self.out.put(END)

    def _read(self, panel: Panel, r: int) -> Optional[Strip]:
        if self.state.stopped():
            return None
        return self.reader.read(panel, r)

    def _add_strip(self, strip: Strip) -> None:
        panel = self.panels[strip.panel]
        g = self.reader.grid
        skipped = 0
        for i, j in enumerate(range(panel.j0, panel.j1)):
            if not strip.has_valid[i]:
                skipped += 1
                continue
            if self._buffer is None:
                self._buffer = self.pool.acquire(self.state)
            self._buffer.numpy()[len(self._where)] = panel_tile(strip.tiles, g, panel, j)
            self._where.append((strip.panel, strip.row, j))
            if len(self._where) == self.batch_size:
                self._send()
        marker = RowDone(strip.panel, strip.row, strip.y0, strip.valid, skipped)
        if self._where:
            self._waiting.append(marker)  # sent after the batch holding the row's last tiles
            if len(self._waiting) >= MAX_WAITING_ROWS:
                self._send()  # rows without tiles (nodata) must not wait long for a batch to fill
        else:
            self._flush_markers()
            self.out.put(marker)

    def _send(self) -> None:
        if self._where:
            self.out.put(TileBatch(self._buffer, len(self._where), self._where))
            self._buffer, self._where = None, []
        self._flush_markers()

    def _flush_markers(self) -> None:
        for marker in self._waiting:
            self.out.put(marker)
        self._waiting = []

    def _reading_error(self, exc: BaseException) -> BaseException:
        """GDAL and OS errors become one line naming the scene; geogan's own errors pass as they are."""
        if isinstance(exc, io_errors()) and not isinstance(exc, GeoganError):
            return RasterError(f"{describe(self.reader.scene.label)}: reading failed ({raster.first_line(exc)})")
        return exc

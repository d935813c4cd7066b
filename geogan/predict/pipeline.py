"""One scene through the network: reader thread → network and blending → writer thread.

::

    TileBatcher (thread)          caller's thread                     BlockWriter (thread)
    strips read by a pool,  ──▶  Translator: tiles → network  ──▶   pixels, nodata where the
    normalised, cut into          (autocast) on the device;          input was invalid, whole
    batches (pinned buffers)      Blender: Σw·y, Σw on the device;   rows of blocks written
                                  finished bands → pixels → host

On CUDA every step of the middle column is queued on the GPU without waiting: the batch is
copied from page-locked memory, translated, blended into the panel's bands, and a finished band
is divided, turned into final pixels (:class:`~geogan.predict.blender.DevicePixels`) and copied
back asynchronously; the writer waits for that copy's event. So reading, the network, blending
and writing overlap. On the CPU the network uses every core and blending is cheap next to it;
the writer denormalises off the network's thread.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Optional

from ..bands import DomainSpec
from ..errors import Cancelled, ModelFileError, describe
from ..notices import carry_collector
from ..progress import Progress
from ..scenes import Scene
from . import tta
from .blender import Blender, DevicePixels
from .plan import Panel, TileGrid
from .reader import BufferPool, RowDone, StripReader, TileBatch, TileBatcher
from .stages import END, Channel, PipelineState
from .writer import BlockWriter, FinishedRows, PanelDone

#: Batches waiting between the reader and the network.
QUEUE_DEPTH = 3
#: Most threads preparing strips ahead of the network: on the CPU half the cores (the network
#: uses the others), on a GPU all but two (the network's thread and the writer's).
MAX_READ_WORKERS = 14


@dataclass
class SceneJob:
    """What the pipeline needs to translate one scene (the output dataset is opened by the caller)."""

    scene: Scene
    bands: list[int]
    source: DomainSpec
    units: Optional[str]
    target: DomainSpec          # with the output's nodata
    grid: TileGrid
    panels: list[Panel]
    batch_size: int
    progress: Progress
    model_name: str
    direction: str


class Translator:
    """The network stage: a batch of normalised tiles → float32 outputs on the device."""

    def __init__(self, net: Any, device: Any, precision: Optional[str], channels_last: bool, out_count: int,
                 tile: int, model_name: str, direction: str, orientations: tuple = ((0, False),)) -> None:
        from ..devices import torch_dtype

        self.net, self.device = net, device
        #: test-time augmentation (:mod:`geogan.predict.tta`); the identity alone = none
        self.orientations = tuple(orientations)
        self.autocast_dtype = torch_dtype(precision)
        self.channels_last = channels_last
        self.expected = (out_count, tile, tile)
        self.model_name, self.direction = model_name, direction

    def upload(self, tiles: Any) -> Any:
        """Queue the copy of a batch to the device (asynchronous from page-locked memory)."""
        return tiles.to(self.device, non_blocking=True)

    def __call__(self, x: Any) -> Any:
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            y = self.net(x) if self.orientations == ((0, False),) else tta.average_over(self.net, x, self.orientations)
        if tuple(y.shape[1:]) != self.expected or y.shape[0] != x.shape[0]:
            raise ModelFileError(f"{self.model_name}: generator {self.direction} returned shape {tuple(y.shape)}, "
                                 f"expected {(x.shape[0],) + self.expected}")
        return y.float()


def read_workers(cuda: bool) -> int:
    cores = os.cpu_count() or 2
    return max(1, min(MAX_READ_WORKERS, cores - 2 if cuda else cores // 2))


class ScenePipeline:
    """Runs a :class:`SceneJob` into an open output dataset; returns (tiles, tiles translated).

    ``device_pixels`` (final pixels made next to the network, not by the writer) and
    ``full_batches`` (short batches run at full size) default to True on CUDA; a test sets them on
    the CPU to run the GPU path's logic where there is no GPU.
    """

    def __init__(self, job: SceneJob, translator: Translator, device: Any, dataset: Any, dst_label: Any, *,
                 device_pixels: Optional[bool] = None, full_batches: Optional[bool] = None) -> None:
        self.job, self.translator, self.device = job, translator, device
        self.dataset, self.dst_label = dataset, dst_label
        self.cuda = device.type == "cuda"
        self.full_batches = self.cuda if full_batches is None else full_batches
        self.state = PipelineState()
        self.pixels = DevicePixels(job.target, device) if (self.cuda if device_pixels is None else device_pixels) \
            else None
        self.blenders: dict[int, Blender] = {}
        self.strips: dict[tuple[int, int], RowDone] = {}
        self.to_writer = Channel(self.state, 2)
        self.total = job.grid.n_rows * sum(p.j1 - p.j0 for p in job.panels)
        self.done = self.translated = 0

    def run(self) -> tuple[int, int]:
        import threading

        import torch

        job, g = self.job, self.job.grid
        pool = BufferPool((job.batch_size, job.source.count, g.tile, g.tile), QUEUE_DEPTH + 2, pinned=self.cuda)
        to_network = Channel(self.state, QUEUE_DEPTH)
        reader = StripReader(job.scene, job.bands, job.source, job.units, g)
        batcher = TileBatcher(reader, job.panels, pool, job.batch_size, to_network, self.state,
                              read_workers(self.cuda))
        block_rows = self.dataset.block_shapes[0][0] if self.dataset.profile.get("tiled") else 1
        writer = BlockWriter(self.dataset, job.panels, job.target, block_rows,
                             to_pixels=self.pixels.to_numpy if self.pixels is not None else None)
        # carry_collector: what these threads log is this call's (its result's warnings)
        threads = [threading.Thread(target=carry_collector(batcher.run), name="geogan-read", daemon=True),
                   threading.Thread(target=carry_collector(writer.run),
                                    args=(self.to_writer, self.state, self.dst_label), name="geogan-write",
                                    daemon=True)]
        for t in threads:
            t.start()
        job.progress.update(0, self.total, "tiles")
        try:
            with torch.inference_mode():
                self._consume(to_network, pool)
            self.to_writer.put(END)
            threads[1].join()
            self.state.raise_failure()
        except BaseException:
            self.state.stop()
            raise
        finally:
            self.state.stop()
            for t in threads:
                t.join()
        return self.total, self.translated

    def _consume(self, inbox: Channel, pool: BufferPool) -> None:
        while True:
            item = inbox.get()
            if item is END:
                return
            if isinstance(item, TileBatch):
                self._translate(item, pool)
            else:
                self._row_done(item)

    def _translate(self, batch: TileBatch, pool: BufferPool) -> None:
        import torch

        # On CUDA a short batch is run at full size (the rest of the buffer is ignored): one input shape,
        # so cuDNN's autotuned kernels are chosen once.
        x = self.translator.upload(batch.buffer if self.full_batches else batch.buffer[:batch.n])
        event = None
        if self.cuda:
            event = torch.cuda.Event()
            event.record()  # the buffer may be refilled once its copy to the device is done
        y = self.translator(x)
        for i, (p, r, j) in enumerate(batch.where):
            self._blender(p).add(y[i], r, j)
        pool.release(batch.buffer, event)  # after blending: on the CPU ``y`` may be a view of it
        self.done += batch.n
        self.translated += batch.n
        self.job.progress.update(self.done, self.total, "tiles")
        if self.job.progress.cancelled():
            raise Cancelled(f"translation of {describe(self.job.scene.label)} cancelled")

    def _row_done(self, marker: RowDone) -> None:
        g = self.job.grid
        self.strips[(marker.panel, marker.row)] = marker
        if marker.skipped:
            self.done += marker.skipped
            self.job.progress.update(self.done, self.total, "tiles")
        self._emit(marker.panel, marker.row)
        if marker.row == g.n_rows - 1:
            self._emit(marker.panel, g.n_rows)
            self.to_writer.put(PanelDone(marker.panel))
            self.blenders.pop(marker.panel, None)
            self.strips = {}

    def _emit(self, p: int, k: int) -> None:
        """Hand band ``k`` of panel ``p`` to the writer, with the input's validity of its rows."""
        import torch

        g = self.job.grid
        g0, y0, y1 = g.band(k)
        if y1 <= y0:
            return
        strip = self.strips[(p, min(k, g.n_rows - 1))]
        valid = None if strip.valid is None else strip.valid[y0 - strip.y0:y1 - strip.y0]
        if valid is not None and not valid.any():
            valid = None
        data, ready = self._blender(p).finish(k), None
        if valid is None:
            data = None  # no valid pixel in these rows: all nodata, nothing to copy
        if data is not None and self.pixels is not None:
            data = self.pixels(data)
            if self.cuda:  # back to the host asynchronously: the writer waits for the event
                pixels, data = data, torch.empty(data.shape, dtype=data.dtype, pin_memory=True)
                data.copy_(pixels, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record()
        elif data is not None:
            data = data.numpy()
        self.to_writer.put(FinishedRows(p, y0, y1 - y0, data, valid, ready))
        for key in [s for s in self.strips if s[0] == p and s[1] < k]:
            del self.strips[key]

    def _blender(self, p: int) -> Blender:
        if p not in self.blenders:
            self.blenders[p] = Blender(self.job.grid, self.job.panels[p], self.job.target.count, self.device)
        return self.blenders[p]

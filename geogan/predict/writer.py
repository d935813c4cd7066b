"""Writing finished rows into the output GeoTIFF, block-aligned, with nodata where the input was invalid.

:class:`BlockWriter` is plain code over an open rasterio dataset; :meth:`BlockWriter.run` is the
writer thread's body. Rows arrive panel by panel, top to bottom, as network-unit floats (the CPU
path: denormalised here, off the network's thread) or as final pixels already made on the GPU
(:class:`~geogan.predict.blender.DevicePixels`). They are buffered until they fill whole rows of
output blocks, so every block is written once, whole: no compressed block is ever read back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .. import raster
from ..bands import DomainSpec, denormalize
from ..errors import GeoganError
from .plan import Panel
from .stages import END, Channel, PipelineState, io_errors


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
    """Turns finished rows into output pixels and writes them in whole rows of blocks."""

    def __init__(self, dataset: Any, panels: list[Panel], spec: DomainSpec, block_rows: int,
                 to_pixels: Optional[Callable[[Any], np.ndarray]] = None) -> None:
        """``to_pixels`` turns a host tensor of final pixels into numpy; None: ``data`` are network-unit
        floats, denormalised here with :func:`geogan.bands.denormalize`."""
        self.ds, self.panels, self.spec = dataset, panels, spec
        self.block_rows = max(1, block_rows)
        self.to_pixels = to_pixels
        self.fill = np.asarray(spec.nodata).astype(spec.dtype)
        self._rows: list[np.ndarray] = []
        self._y0 = 0
        self._next_row = 0
        self.rows_written = 0

    def add(self, item: FinishedRows) -> None:
        if item.y0 != self._next_row:
            raise RuntimeError(f"internal error: rows out of order ({item.y0} != {self._next_row})")
        pixels = self._pixels(item)
        if not self._rows:
            self._y0 = item.y0
        self._rows.append(pixels)
        self._next_row = item.y0 + pixels.shape[1]
        end = self._next_row
        aligned = (end // self.block_rows) * self.block_rows
        if aligned - self._y0 >= self.block_rows:
            self._write(item.panel, aligned)

    def end_panel(self, panel: int) -> None:
        if self._next_row != self.ds.height:
            raise RuntimeError(f"internal error: panel {panel} ended at row {self._next_row} of {self.ds.height}")
        self._write(panel, self._next_row)
        self._next_row = 0

    def _pixels(self, item: FinishedRows) -> np.ndarray:
        if item.data is None or item.valid is None:
            width = self.panels[item.panel].width
            return np.full((self.spec.count, item.rows, width), self.fill, dtype=self.spec.dtype)
        if item.ready is not None:
            item.ready.synchronize()  # the copy from the GPU has landed
        if self.to_pixels is not None:
            pixels = self.to_pixels(item.data)
        else:
            pixels = denormalize(np.asarray(item.data), self.spec)
        invalid = ~item.valid
        if invalid.any():
            pixels[:, invalid] = self.fill
        return pixels

    def _write(self, panel: int, upto: int) -> None:
        from rasterio.windows import Window

        if not self._rows or upto <= self._y0:
            return
        whole = np.concatenate(self._rows, axis=1) if len(self._rows) > 1 else self._rows[0]
        k = upto - self._y0
        p = self.panels[panel]
        self.ds.write(whole[:, :k], window=Window(p.x0, self._y0, p.width, k))
        self.rows_written += k
        rest = whole[:, k:]
        self._rows = [rest] if rest.shape[1] else []
        self._y0 = upto

    def run(self, inbox: Channel, state: PipelineState, dst_label: Any) -> None:
        """Writer thread body: write until END; failures go to ``state`` as one-line errors naming ``dst_label``."""
        try:
            while True:
                item = inbox.get()
                if item is END:
                    return
                if isinstance(item, PanelDone):
                    self.end_panel(item.panel)
                else:
                    self.add(item)
        except BaseException as exc:
            if isinstance(exc, io_errors()) and not isinstance(exc, GeoganError):
                exc = raster.write_failed(dst_label, exc)
            state.fail(exc)


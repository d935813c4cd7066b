"""Blending and output pixels as pure array code on any torch device (no threads, no files).

:class:`Blender` keeps, for one panel, the normalised weighted sums Σw·y and Σw of the tiles
translated so far, one row band at a time, and hands back each band once it is complete:
Σw·y / Σw. On a GPU the sums live on the device next to the network's output, so nothing is
copied to the host but finished rows. :class:`DevicePixels` then turns those rows into the
target domain's units and dtype exactly as :func:`geogan.bands.denormalize` does, so only the
final pixels (1–4 bytes each instead of 4 per band of float32) cross back to the host.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from ..bands import DomainSpec
from .plan import DEFAULT_PANEL_WIDTH, Panel, TileGrid, pad_strip, panel_tile, plan_panels, tile_span


class Blender:
    """Σw·y and Σw of one panel's tiles, band by band: ``add`` tiles, then ``finish`` bands in order."""

    def __init__(self, grid: TileGrid, panel: Panel, count: int, device: Any = "cpu") -> None:
        import torch

        self.grid, self.panel, self.count = grid, panel, count
        self.device = torch.device(device)
        self._sums: dict[int, tuple[Any, Any]] = {}
        self._weights: dict[tuple[bool, ...], Any] = {}

    def add(self, y: Any, r: int, j: int) -> None:
        """Add the output ``y`` (count, tile, tile) of tile (``r``, ``j``), weighted by its blending window."""
        a, b, u0, u1 = tile_span(self.grid, self.panel, j)
        if b <= a:
            return
        w = self._tile_weights(r, j)
        S, T = self.grid.stride, self.grid.tile
        for k, t0, t1 in ((r, 0, S), (r + 1, S, T)):  # the tile's first S rows, then its overlap rows
            sums = self._band(k) if t1 > t0 else None
            if sums is None:
                continue
            acc, wsum = sums
            ww = w[t0:t1, u0:u1]
            acc[:, :t1 - t0, a:b].addcmul_(y[:, t0:t1, u0:u1], ww)
            wsum[:t1 - t0, a:b] += ww

    def finish(self, k: int) -> Optional[Any]:
        """Band ``k``'s blended rows Σw·y / Σw (count, rows, panel width), or None when no tile reached it.

        Call once every tile that touches the band has been added (tile rows ``k - 1`` and ``k``);
        the band's sums are released. Pixels no tile covered hold 0 (they are invalid input anyway).
        """
        import torch

        sums = self._sums.pop(k, None)
        g0, y0, y1 = self.grid.band(k)
        if sums is None or y1 <= y0:
            return None
        acc, wsum = sums
        rows = slice(y0 - g0, y1 - g0)
        w = wsum[rows]
        return acc[:, rows] / torch.where(w > 0, w, torch.ones((), device=w.device))

    def pending(self) -> list[int]:
        """Bands holding sums that were not finished yet."""
        return sorted(self._sums)

    def _band(self, k: int) -> Optional[tuple[Any, Any]]:
        import torch

        if k not in self._sums:
            g0, y0, y1 = self.grid.band(k)
            if y1 <= y0:
                return None  # wholly outside the scene: nothing to keep
            shape = (self.grid.stride, self.panel.width)
            self._sums[k] = (torch.zeros((self.count,) + shape, dtype=torch.float32, device=self.device),
                             torch.zeros(shape, dtype=torch.float32, device=self.device))
        return self._sums[k]

    def _tile_weights(self, r: int, j: int) -> Any:
        import torch

        key = self.grid.weight_key(r, j)
        if key not in self._weights:
            self._weights[key] = torch.from_numpy(self.grid.weights(r, j)).to(self.device)
        return self._weights[key]


def blend_array(x: np.ndarray, translate: Callable[[Any], Any], tile_size: int, overlap: int, blend: str = "hann",
                *, panel_width: int = DEFAULT_PANEL_WIDTH, block: int = 16, device: Any = "cpu") -> np.ndarray:
    """Translate a whole normalised (bands, rows, cols) array tile by tile and blend the tiles.

    ``translate`` maps a batch of tiles (torch, n × bands × tile × tile) to a batch of outputs.
    This is the predictor's arithmetic (tile grid, reflect padding, panels, weights, Σw·y / Σw)
    in memory, one tile row at a time, without threads or files: for arrays that fit in memory,
    and to test the blending on its own. Returns float32 (out bands, rows, cols).
    """
    import torch

    bands, height, width = x.shape
    grid = TileGrid.for_scene(height, width, tile_size, overlap, blend)
    out: Optional[np.ndarray] = None
    for panel in plan_panels(grid, panel_width, block):
        blender = None
        for r in range(grid.n_rows):
            y0, y1, _, _ = grid.strip(r)
            strip = pad_strip(x[:, y0:y1, panel.read_x0:panel.read_x1], grid, panel, r)
            tiles = np.stack([panel_tile(strip, grid, panel, j) for j in range(panel.j0, panel.j1)])
            y = translate(torch.from_numpy(np.ascontiguousarray(tiles, np.float32)).to(device)).float()
            if out is None:
                out = np.zeros((y.shape[1], height, width), np.float32)
            if blender is None:
                blender = Blender(grid, panel, y.shape[1], device)
            for i, j in enumerate(range(panel.j0, panel.j1)):
                blender.add(y[i], r, j)
            for k in ((r, grid.n_rows) if r == grid.n_rows - 1 else (r,)):
                _, b0, b1 = grid.band(k)
                rows = blender.finish(k)
                if rows is not None:
                    out[:, b0:b1, panel.x0:panel.x1] = rows.cpu().numpy()
    return out  # type: ignore[return-value]  (every scene has at least one tile)


#: The torch dtype that carries each target dtype back to the host (torch lacks full uint16/uint32 support).
_TRANSPORT = {"uint8": "uint8", "int8": "int8", "int16": "int16", "uint16": "int32", "int32": "int32",
              "uint32": "int64", "float32": "float32", "float64": "float64"}


class DevicePixels:
    """:func:`geogan.bands.denormalize` in torch: network units → the target's units, rounded,
    clipped and cast, valid values kept off an integer or finite nodata value. Same operations
    in the same order in float32, so the result equals the numpy path's (to one ulp after ``exp``
    for SAR)."""

    def __init__(self, spec: DomainSpec, device: Any = "cpu") -> None:
        import torch

        self.spec = spec
        dev = torch.device(device)
        lo, hi = spec.ranges()
        self.scale = torch.from_numpy(((hi - lo) / 2.0).astype(np.float32)).view(-1, 1, 1).to(dev)
        self.offset = torch.from_numpy(lo.astype(np.float32)).view(-1, 1, 1).to(dev)
        self.exp_factor: Optional[float] = None
        if spec.kind == "sar" and spec.units != "db":
            factor = 10.0 if spec.units in (None, "linear") else 20.0
            self.exp_factor = float(np.float32(np.log(10.0) / factor))
        dt = np.dtype(spec.dtype)
        if dt.name not in _TRANSPORT:
            raise ValueError(f"cannot produce {dt.name} pixels")
        self.transport = getattr(torch, _TRANSPORT[dt.name])
        self.integer = dt.kind in "ui"
        nodata = spec.nodata
        if self.integer:
            info = np.iinfo(dt)
            self.lo, self.hi = float(info.min), float(info.max)
            if nodata is not None and float(nodata).is_integer():
                if nodata == self.lo:
                    self.lo += 1
                elif nodata == self.hi:
                    self.hi -= 1
        self.keep_off = (None if self.integer or nodata is None or not np.isfinite(nodata)
                         else float(dt.type(nodata)))

    def __call__(self, y: Any) -> Any:
        """(count, rows, cols) float32 network output → the target's pixels in the transport dtype."""
        import torch

        x = y.float() + 1.0
        x.mul_(self.scale).add_(self.offset)
        if self.exp_factor is not None:
            x.mul_(self.exp_factor).exp_()
        if self.integer:
            return x.round_().clamp_(self.lo, self.hi).to(self.transport)
        out = x.to(self.transport)
        if self.keep_off is not None:
            nd = torch.tensor(self.keep_off, dtype=self.transport, device=out.device)
            out = torch.where(out == nd, torch.nextafter(nd, torch.tensor(float("inf"), dtype=self.transport,
                                                                          device=out.device)), out)
        return out

    def to_numpy(self, pixels: Any) -> np.ndarray:
        """A host tensor from :meth:`__call__` → a numpy array of the target dtype."""
        return pixels.numpy().astype(self.spec.dtype, copy=False)

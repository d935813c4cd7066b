"""The predictor's arithmetic as pure array code: the tile grid, column panels, blending weights,
the row blender, final pixels and :func:`blend_array` (no threads, no files).

A scene is translated panel by panel: a *panel* is a range of output columns, as wide as
:data:`DEFAULT_PANEL_WIDTH` at most, with edges on the output's block grid so that every output
block is written once, whole. Inside a panel the tile rows are processed top to bottom; the
tiles of tile row ``r`` are cut from one *strip* of scene rows, and their weighted outputs land
in two *row blocks* of ``stride`` rows: block ``r`` (the tiles' first ``stride`` rows) and block
``r + 1`` (their last ``overlap`` rows). Block ``k`` is final once tile row ``k`` is done.

Blending is a normalised weighted average Σw·y / Σw. Σw over a tile depends only on which of
its neighbours exist (whether the tile is on the scene's first or last row or column: the
overlap is below half a tile, so only the eight touching tiles reach it), so each tile's
*normalised* weights w / Σw are computed once per grid (:meth:`TileGrid.weights`) and blending
is one multiply-add per tile and pixel, with no division and no Σw to carry.

Memory is therefore bounded by one panel's strips and row blocks plus the batch, whatever the
scene's width and height. The tiles that straddle a panel edge are translated in both panels;
each panel keeps their weights on its own columns only, so a pixel's sum gets the same terms in
the same order as in one full-width panel: the result does not depend on the panels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..bands import DomainSpec
from ..tiling import pad_reflect, tile_origins, tile_weights

#: Widest panel, in output pixels. Wider panels waste less (one column of tiles is translated
#: twice at each panel edge: about 5 % more tiles at 4096 with 256-px tiles and overlap 64) but
#: hold more memory (strips and row blocks grow with the width): at 4096 a scene of any size needs
#: what a 4096-pixel-wide one does (tools/bench_predict.py measures it).
DEFAULT_PANEL_WIDTH = 4096

Key = tuple[bool, bool, bool, bool]


@dataclass(frozen=True)
class TileGrid:
    """The prediction tile grid of a scene (see :func:`geogan.tiling.tile_origins`)."""

    height: int
    width: int
    tile: int
    overlap: int
    blend: str
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    _weights: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_scene(cls, height: int, width: int, tile: int, overlap: int, blend: str) -> "TileGrid":
        if 2 * overlap >= tile:
            raise ValueError(f"overlap {overlap} must be below half the tile size {tile}")
        return cls(height, width, tile, overlap, blend,
                   tuple(tile_origins(height, tile, overlap)), tuple(tile_origins(width, tile, overlap)))

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_cols(self) -> int:
        return len(self.cols)

    @property
    def n_row_blocks(self) -> int:
        """Row blocks: one per tile row plus the block under the last tile row's last ``overlap`` rows."""
        return len(self.rows) + 1

    def strip(self, r: int) -> tuple[int, int, int, int]:
        """Scene rows ``[y0, y1)`` under tile row ``r`` and the reflect padding (top, bottom) it needs."""
        a = self.rows[r]
        y0, y1 = max(0, a), min(self.height, a + self.tile)
        return y0, y1, y0 - a, a + self.tile - y1

    def row_block(self, k: int) -> tuple[int, int, int]:
        """Row block ``k``: its first grid row ``g0`` (may lie above the scene) and its scene rows
        ``[y0, y1)`` (empty when the block lies outside the scene)."""
        g0 = self.rows[0] + k * self.stride
        return g0, max(0, g0), max(max(0, g0), min(self.height, g0 + self.stride))

    def weight_key(self, r: int, j: int) -> Key:
        """Tiles on the scene's edges have no taper (and no neighbour) on their outer side:
        (first/last row, first/last column)."""
        return (r == 0, r == self.n_rows - 1, j == 0, j == self.n_cols - 1)

    def weights(self, r: int, j: int) -> np.ndarray:
        """The float32 normalised blending weights w / Σw of tile (r, j) (see the module's docstring)."""
        key = self.weight_key(r, j)
        if key not in self._weights:
            self._weights[key] = normalised_weights(self.tile, self.overlap, self.blend, key)
        return self._weights[key]


def normalised_weights(tile: int, overlap: int, blend: str, key: Key) -> np.ndarray:
    """w / Σw over one tile, Σw summing the weights of the tile and of its existing neighbours.

    A neighbour's own outer edge lies beyond this tile (overlap < tile / 2), so only its side
    towards this tile matters: it tapers there, as every interior side does.
    """
    first_row, last_row, first_col, last_col = key
    stride = tile - overlap
    total = np.zeros((tile, tile), np.float32)
    for dr in (-1, 0, 1):
        if (dr == -1 and first_row) or (dr == 1 and last_row):
            continue
        rows = (first_row, last_row) if dr == 0 else (False, False)
        for dc in (-1, 0, 1):
            if (dc == -1 and first_col) or (dc == 1 and last_col):
                continue
            cols = (first_col, last_col) if dc == 0 else (False, False)
            w = tile_weights(tile, overlap, blend, *rows, *cols)
            oy, ox = dr * stride, dc * stride  # the neighbour's origin in this tile's pixels
            ty, tx = slice(max(0, oy), min(tile, oy + tile)), slice(max(0, ox), min(tile, ox + tile))
            total[ty, tx] += w[ty.start - oy:ty.stop - oy, tx.start - ox:tx.stop - ox]
    w = tile_weights(tile, overlap, blend, first_row, last_row, first_col, last_col)
    return (w / np.where(total > 0, total, np.float32(1))).astype(np.float32)


@dataclass(frozen=True)
class Panel:
    """Output columns ``[x0, x1)`` finished by translating tile columns ``[j0, j1)``.

    The panel reads scene columns ``[read_x0, read_x1)`` and pads them by ``pad_left`` and
    ``pad_right`` (reflect padding beyond the scene's edges); tile ``j`` then starts at column
    ``cols[j] - cols[j0]`` of the padded strip.
    """

    index: int
    x0: int
    x1: int
    j0: int
    j1: int
    read_x0: int
    read_x1: int
    pad_left: int
    pad_right: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def plan_panels(grid: TileGrid, max_width: int = DEFAULT_PANEL_WIDTH, block: int = 256) -> list[Panel]:
    """Split the output columns into panels at most ``max_width`` wide with edges on multiples of
    ``block`` (the output's block width), each with the tile columns that touch it."""
    W, T = grid.width, grid.tile
    if max_width < 1 or block < 1:
        raise ValueError("panel width and block size must be positive")
    n = max(1, math.ceil(W / max(max_width, block)))
    edges = sorted({0, W} | {min(W, round(i * W / n / block) * block) for i in range(1, n)})
    panels = []
    for x0, x1 in zip(edges, edges[1:]):
        js = [j for j, c in enumerate(grid.cols) if c < x1 and c + T > x0]
        j0, j1 = js[0], js[-1] + 1
        left, right = grid.cols[j0], grid.cols[j1 - 1] + T
        panels.append(Panel(len(panels), x0, x1, j0, j1, max(0, left), min(W, right),
                            max(0, -left), max(0, right - W)))
    return panels


def tile_span(grid: TileGrid, panel: Panel, j: int) -> tuple[int, int, int, int]:
    """Where tile column ``j`` lands in ``panel``: panel columns ``[a, b)`` from tile columns ``[u0, u1)``."""
    c = grid.cols[j]
    lo, hi = max(panel.x0, c), min(panel.x1, c + grid.tile)
    return lo - panel.x0, hi - panel.x0, lo - c, hi - c


def tile_source(grid: TileGrid, r: int, j: int) -> tuple[int, int, int, int, tuple]:
    """Scene rows ``[y0, y1)`` and columns ``[x0, x1)`` under tile (``r``, ``j``), and the reflect padding
    ``((top, bottom), (left, right))`` that completes the tile where it overhangs the scene."""
    a, c, T = grid.rows[r], grid.cols[j], grid.tile
    y0, y1 = max(0, a), min(grid.height, a + T)
    x0, x1 = max(0, c), min(grid.width, c + T)
    return y0, y1, x0, x1, ((y0 - a, a + T - y1), (x0 - c, c + T - x1))


def cut_tile(region: np.ndarray, pads: tuple, out: Optional[np.ndarray] = None) -> np.ndarray:
    """A tile from the scene pixels under it (bands, rows, cols), reflect-padded where it overhangs
    the scene (:func:`geogan.tiling.pad_reflect`); written into ``out`` when given."""
    tile = pad_reflect(region, ((0, 0),) + tuple(pads))
    if out is None:
        return tile
    out[...] = tile
    return out


class RowBlender:
    """Σ (w / Σw)·y of one panel's tiles, row block by row block: ``add`` tiles in order, ``finish`` blocks.

    Works on numpy arrays (the CPU: single-threaded, GIL-free multiply-adds) or torch tensors on any
    device (a GPU: the sums stay next to the network). Tile (r, j) adds its first ``stride`` rows to
    row block ``r`` and its last ``overlap`` rows to block ``r + 1``; block ``k`` is final once tile
    row ``k`` is added, whatever tiles of later rows were added meanwhile (a batch may span rows).
    """

    def __init__(self, grid: TileGrid, panel: Panel, count: int, device: Any = None,
                 empty: Callable[..., np.ndarray] = np.empty) -> None:
        """``empty(shape, dtype)`` makes the numpy row blocks (a recycler's, so their memory is reused)."""
        self.grid, self.panel, self.count, self.device = grid, panel, count, device
        self.empty = empty
        self._blocks: dict[int, Any] = {}
        self._depth: dict[int, np.ndarray] = {}  # numpy blocks: rows reached per column
        self._weights: dict[Key, Any] = {}
        self._products: Optional[np.ndarray] = None  # numpy blocks: scratch for a tile's weighted rows

    def add(self, y: Any, r: int, j: int) -> None:
        """Add the output ``y`` (count, tile, tile) of tile (``r``, ``j``), weighted by its normalised window."""
        a, b, u0, u1 = tile_span(self.grid, self.panel, j)
        if b <= a:
            return
        w = self._tile_weights(r, j)
        S, T = self.grid.stride, self.grid.tile
        for k, t0, t1 in ((r, 0, S), (r + 1, S, T)):  # the tile's first S rows, then its overlap rows
            block = self._block(k) if t1 > t0 else None
            if block is None:
                continue
            yy, ww = y[:, t0:t1, u0:u1], w[t0:t1, u0:u1]
            if self.device is None:
                self._accumulate(k, block, yy, ww, a, b)
            else:
                block[:, :t1 - t0, a:b] += yy * ww

    def _accumulate(self, k: int, block: np.ndarray, yy: np.ndarray, ww: np.ndarray, a: int, b: int) -> None:
        """``block[:, :h, a:b] += yy · ww`` (h = yy's rows) on a block that was never zeroed: rows no tile
        reached yet in a column get the product (the same value: 0 + v is v), the others the product
        (made in a small scratch array that stays in the core's cache) added. The same roundings as
        the device's ``block += yy * ww``, with one pass over ``yy`` and no new array.

        Every term covers a block's first rows, so what was reached is, per column, its first
        ``depth`` rows; the columns of one term fall into a few runs of equal depth."""
        h, depth = yy.shape[1], self._depth[k]
        d = depth[a:b]
        cuts = np.flatnonzero(d[1:] != d[:-1]) + 1
        for c0, c1 in zip([0, *cuts.tolist()], [*cuts.tolist(), b - a]):
            reached = min(int(d[c0]), h)
            if reached:
                product = self._scratch(yy.shape[0], reached, c1 - c0)
                np.multiply(yy[:, :reached, c0:c1], ww[:reached, c0:c1], out=product)
                target = block[:, :reached, a + c0:a + c1]
                np.add(target, product, out=target)
            if reached < h:
                np.multiply(yy[:, reached:h, c0:c1], ww[reached:h, c0:c1], out=block[:, reached:h, a + c0:a + c1])
        np.maximum(d, h, out=d)

    def _scratch(self, *shape: int) -> np.ndarray:
        n = math.prod(shape)
        if self._products is None or self._products.size < n:
            self._products = np.empty(max(n, self.count * self.grid.tile * self.grid.tile), np.float32)
        return self._products[:n].reshape(shape)

    def finish(self, k: int) -> tuple[int, int, Optional[Any]]:
        """Row block ``k`` as (y0, y1, rows (count, y1 - y0, panel width)), its sums released: call once
        every tile of tile rows ``k - 1`` and ``k`` was added. Rows are None when no tile reached the
        block (or it lies outside the scene)."""
        block = self._blocks.pop(k, None)
        depth = self._depth.pop(k, None)
        g0, y0, y1 = self.grid.row_block(k)
        if block is None or y1 <= y0:
            return y0, y1, None
        if depth is not None and depth.min() < block.shape[1]:  # rows no tile reached: zeros, as sums of nothing
            for rows in np.unique(depth[depth < block.shape[1]]).tolist():
                block[:, rows:, depth == rows] = 0.0
        return y0, y1, block[:, y0 - g0:y1 - g0]

    def pending(self) -> list[int]:
        """Row blocks holding sums that were not finished yet."""
        return sorted(self._blocks)

    def _block(self, k: int) -> Optional[Any]:
        if k not in self._blocks:
            g0, y0, y1 = self.grid.row_block(k)
            if y1 <= y0:
                return None  # wholly outside the scene: nothing to keep
            shape = (self.count, self.grid.stride, self.panel.width)
            if self.device is None:  # never zeroed: see _accumulate
                self._blocks[k] = self.empty(shape, np.float32)
                self._depth[k] = np.zeros(self.panel.width, np.int64)
            else:
                import torch

                self._blocks[k] = torch.zeros(shape, dtype=torch.float32, device=self.device)
        return self._blocks[k]

    def _tile_weights(self, r: int, j: int) -> Any:
        key = self.grid.weight_key(r, j)
        if key not in self._weights:
            w = self.grid.weights(r, j)
            if self.device is not None:
                import torch

                w = torch.from_numpy(w).to(self.device)
            self._weights[key] = w
        return self._weights[key]


def blend_array(x: np.ndarray, translate: Callable[[Any], Any], tile_size: int, overlap: int, blend: str = "hann",
                *, panel_width: int = DEFAULT_PANEL_WIDTH, block: int = 16, device: Any = None) -> np.ndarray:
    """Translate a whole normalised (bands, rows, cols) array tile by tile and blend the tiles.

    ``translate`` maps a batch of tiles (torch, n × bands × tile × tile) to a batch of outputs.
    The predictor's arithmetic (tile grid, each tile reflect-padded where it overhangs the scene,
    panels, normalised weights, the row blender) in memory, one tile row at a time, without threads
    or files: for arrays that fit in memory, and to test the blending on its own. ``device``: None
    blends in numpy (as the predictor does on the CPU), a torch device blends there. Returns float32
    (out bands, rows, cols).
    """
    import torch

    bands, height, width = x.shape
    grid = TileGrid.for_scene(height, width, tile_size, overlap, blend)
    out: Optional[np.ndarray] = None
    for panel in plan_panels(grid, panel_width, block):
        blender = None
        for r in range(grid.n_rows):
            tiles = []
            for j in range(panel.j0, panel.j1):
                y0, y1, x0, x1, pads = tile_source(grid, r, j)
                tiles.append(cut_tile(x[:, y0:y1, x0:x1], pads))
            tiles = np.stack(tiles)
            y = translate(torch.from_numpy(np.ascontiguousarray(tiles, np.float32)).to(device or "cpu")).float()
            y = y.cpu().numpy() if device is None else y
            if out is None:
                out = np.zeros((y.shape[1], height, width), np.float32)
            if blender is None:
                blender = RowBlender(grid, panel, y.shape[1], device)
            for i, j in enumerate(range(panel.j0, panel.j1)):
                blender.add(y[i], r, j)
            for k in ((r, grid.n_rows) if r == grid.n_rows - 1 else (r,)):
                b0, b1, rows = blender.finish(k)
                if rows is not None:
                    out[:, b0:b1, panel.x0:panel.x1] = rows if device is None else rows.cpu().numpy()
    return out  # type: ignore[return-value]  (every scene has at least one tile)


#: The torch dtype that carries each target dtype back to the host (torch lacks full uint16/uint32 support).
_TRANSPORT = {"uint8": "uint8", "int8": "int8", "int16": "int16", "uint16": "int32", "int32": "int32",
              "uint32": "int64", "float32": "float32", "float64": "float64"}


class DevicePixels:
    """:func:`geogan.bands.denormalize` in torch: network units → the target's units, rounded,
    clipped and cast, valid values kept off an integer or finite nodata value. Same operations
    in the same order in float32, so the result equals the numpy path's (to one ulp after ``exp``
    for SAR). Used on a GPU, so that only final pixels cross back to the host."""

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

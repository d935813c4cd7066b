"""Where the predictor's tiles go: the tile grid, column panels, row bands and strips (pure, no I/O).

A scene is translated panel by panel: a *panel* is a range of output columns, as wide as
:data:`DEFAULT_PANEL_WIDTH` at most, with edges on the output's block grid so that every output
block is written once, whole. Inside a panel the tile rows are processed top to bottom; the
tiles of tile row ``r`` are cut from one *strip* of scene rows, and their weighted outputs land
in two *row bands* of ``stride`` rows: band ``r`` (the tiles' first ``stride`` rows) and band
``r + 1`` (their last ``overlap`` rows). Band ``k`` is complete once tile row ``k`` is done.

Memory is therefore bounded by one panel's strips and bands plus the batch, whatever the
scene's width and height. The tiles that straddle a panel edge are translated in both panels;
each panel keeps their weights on its own columns only, so a pixel's weighted sum gets the same
terms in the same order as in one full-width panel: the result does not depend on the panels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..tiling import pad_reflect, tile_origins, tile_weights

#: Widest panel, in output pixels. Wider panels waste less (one column of tiles is translated
#: twice at each panel edge: about 5 % more tiles at 4096 with 256-px tiles and overlap 64) but
#: hold more memory (strips and bands grow with the width): at 4096 a scene of any size needs
#: what a 4096-pixel-wide one does (tools/bench_predict.py measures it).
DEFAULT_PANEL_WIDTH = 4096


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
    def n_bands(self) -> int:
        """Row bands: one per tile row plus the band under the last tile row's first ``stride`` rows."""
        return len(self.rows) + 1

    def strip(self, r: int) -> tuple[int, int, int, int]:
        """Scene rows ``[y0, y1)`` under tile row ``r`` and the reflect padding (top, bottom) it needs."""
        a = self.rows[r]
        y0, y1 = max(0, a), min(self.height, a + self.tile)
        return y0, y1, y0 - a, a + self.tile - y1

    def band(self, k: int) -> tuple[int, int, int]:
        """Row band ``k``: its first grid row ``g0`` (may lie above the scene) and its scene rows ``[y0, y1)``
        (empty when the band lies outside the scene)."""
        g0 = self.rows[0] + k * self.stride
        return g0, max(0, g0), max(max(0, g0), min(self.height, g0 + self.stride))

    def weight_key(self, r: int, j: int) -> tuple[bool, bool, bool, bool]:
        """Tiles on the scene's edges have no taper on their outer side: (first/last row, first/last column)."""
        return (r == 0, r == self.n_rows - 1, j == 0, j == self.n_cols - 1)

    def weights(self, r: int, j: int) -> np.ndarray:
        """The float32 blending weights of tile (r, j): tapered where a neighbour shares the overlap."""
        key = self.weight_key(r, j)
        if key not in self._weights:
            self._weights[key] = tile_weights(self.tile, self.overlap, self.blend, *key)
        return self._weights[key]


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


def pad_strip(data: np.ndarray, grid: TileGrid, panel: Panel, r: int) -> np.ndarray:
    """The scene rows and columns read for tile row ``r`` of ``panel`` (bands, rows, cols), reflect-padded
    onto the tile grid."""
    _, _, top, bottom = grid.strip(r)
    return pad_reflect(data, ((0, 0), (top, bottom), (panel.pad_left, panel.pad_right)))


def panel_tile(strip: np.ndarray, grid: TileGrid, panel: Panel, j: int) -> np.ndarray:
    """Tile column ``j`` of a padded strip of ``panel`` (a view)."""
    x = grid.cols[j] - grid.cols[panel.j0]
    return strip[:, :, x:x + grid.tile]

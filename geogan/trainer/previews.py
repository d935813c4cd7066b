"""Preview images after each epoch: real / fake / reconstructed, as one PNG grid per epoch."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np


def _display_bands(spec: Any) -> list[int]:
    """0-based bands shown for a domain: SAR band 1 (dB), DSM grey, else red/green/blue by description or the first three."""
    if spec.kind in ("sar", "dsm") or spec.count < 3:
        return [0]
    descriptions = [(d or "").lower() for d in spec.band_descriptions]
    if len(descriptions) == spec.count:
        picked = []
        for colour in ("red", "green", "blue"):
            hit = [i for i, d in enumerate(descriptions) if colour in d]
            if hit:
                picked.append(hit[0])
        if len(picked) == 3:
            return picked
    return [0, 1, 2]


def to_display(x: np.ndarray, spec: Any, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """A normalised image (band, row, col) → uint8 RGB (3, row, col) for a preview.

    Values are already stretched per band into [-1, 1] (SAR in dB), so display is a linear map.
    """
    bands = _display_bands(spec)
    img = x[bands] if len(bands) == 3 else np.repeat(x[bands[:1]], 3, axis=0)
    out = np.clip((img + 1.0) * 127.5, 0, 255).astype(np.uint8)
    if valid is not None:
        out[:, ~valid.astype(bool)] = 0
    return out


def write_preview(path: Path, rows: list[list[np.ndarray]], gap: int = 2) -> None:
    """Write a grid of uint8 RGB tiles as a PNG with rasterio's PNG driver (atomically)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from ..raster import atomic_output

    h, w = rows[0][0].shape[1:]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    grid = np.full((3, n_rows * h + (n_rows - 1) * gap, n_cols * w + (n_cols - 1) * gap), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            grid[:, i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with atomic_output(path, suffix=".png", what="preview") as tmp:
            with rasterio.open(tmp, "w", driver="PNG", width=grid.shape[2], height=grid.shape[1],
                               count=3, dtype="uint8") as ds:
                ds.write(grid)


def preview_rows(vis: dict, specs: dict, va: np.ndarray, vb: np.ndarray) -> list[list[np.ndarray]]:
    """The grid: CycleGAN A→B→A over B→A→B; Pix2Pix A | fake B | real B."""
    sa, sb = specs["a"], specs["b"]

    def show(key: str, spec: Any, valid: np.ndarray) -> np.ndarray:
        return to_display(vis[key][0].numpy(), spec, valid)

    if "rec_a" in vis:
        return [[show("real_a", sa, va), show("fake_b", sb, va), show("rec_a", sa, va)],
                [show("real_b", sb, vb), show("fake_a", sa, vb), show("rec_b", sb, vb)]]
    return [[show("real_a", sa, va), show("fake_b", sb, va), show("real_b", sb, vb)]]


def render_preview(model: Any, export: Any, crop_size: int, path: Path) -> None:
    """Translate the first validation (or training) pair with the bare networks and write the grid."""
    from ..data import preview_pair

    size = min(crop_size, *export.chip_size)
    item = preview_pair(export, size)
    with model.bare():
        vis = model.visuals(item["a"][None], item["b"][None])
    va, vb = item["a_valid"][0].numpy(), item["b_valid"][0].numpy()
    write_preview(path, preview_rows(vis, export.specs, va, vb))

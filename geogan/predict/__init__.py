"""Translate whole scenes with a trained generator: overlapping tiles, blending, a streaming writer.

How a scene flows through :func:`translate_raster` (one part per module)::

    inputs     checks: bands, dtypes, tiling, SAR units, "looks unlike the training data"
    plan       the tile grid, column panels and row bands (pure)
    reader     strips of rows → masked, normalised, reflect-padded tiles in batches (a thread)
    pipeline   the network (autocast) and the blender on the device (the caller's thread)
    blender    Σw·y / Σw per row band, and final pixels on the device (pure torch)
    writer     nodata where the input was invalid, whole rows of blocks written (a thread)
    core       Predictor / translate_raster: lock, temporary file, verification, rename, COG
    batch      translate_rasters: many scenes into a folder, resumable; in this process or on Ray

Tiles of ``tile_size`` pixels step by ``stride = tile_size - overlap``. The tile grid is
extended by ``overlap // 2`` pixels of reflect padding beyond every scene edge (and centred),
so an edge pixel sits as deep inside its tile as a pixel on an interior seam. Overlaps are
blended in the network's normalised space by a normalised weighted average Σw·y / Σw with a
window that is flat in the tile's middle and tapers across the overlap (``hann``: sin²,
``linear``: a ramp), floored so the division is always safe; ``none`` centre-crops. Memory is
bounded by one column panel's strips and row bands plus the batch, never by the scene.
"""
from __future__ import annotations

from ..tiling import BLENDS, WEIGHT_FLOOR, blend_window, pad_reflect, seam_positions, tile_origins
from .batch import BatchResult, SceneOutcome, output_name, translate_rasters
from .core import COMPRESSIONS, PredictionResult, PredictOptions, Predictor, translate_raster
from .inputs import output_nodata
from .plan import DEFAULT_PANEL_WIDTH

__all__ = [
    "translate_raster", "translate_rasters", "PredictionResult", "PredictOptions", "Predictor",
    "BatchResult", "SceneOutcome", "output_name", "output_nodata", "COMPRESSIONS", "DEFAULT_PANEL_WIDTH",
    "BLENDS", "WEIGHT_FLOOR", "blend_window", "pad_reflect", "seam_positions", "tile_origins",
]

"""Translate whole scenes with a trained generator: overlapping tiles, blending, a streaming writer.

How a scene flows through :func:`translate_raster`::

    scene      Predictor / translate_raster: lock, temporary file, provenance, verification, rename,
               COG; the linear driver: strips in, tiles through the network, blended, rows out; and
               the input checks: bands, dtypes, tiling, SAR units, "looks unlike the training data"
    grid       the tile grid, column panels, normalised blending weights, the row blender (pure)
    stages     the threads behind the driver: row chunks read by several GDAL handles, batches of
               tiles, and the block writer (GDAL compresses in its own threads)
    tta        test-time augmentation (pure tensor code)
    batch      translate_rasters: many scenes into a folder, resumable; in this process or on Ray

Tiles of ``tile_size`` pixels step by ``stride = tile_size - overlap``. The tile grid is
extended by ``overlap // 2`` pixels of reflect padding beyond every scene edge (and centred),
so an edge pixel sits as deep inside its tile as a pixel on an interior seam. Overlaps are
blended in the network's normalised space by a normalised weighted average Σw·y / Σw with a
window that is flat in the tile's middle and tapers across the overlap (``hann``: sin²,
``linear``: a ramp), floored so Σw > 0; ``none`` centre-crops. Each tile's w / Σw is computed
once per grid, so blending is one multiply-add per pixel. Memory is bounded by one column
panel's row chunks and row blocks plus the batches in flight, never by the scene.

On the CPU every stage uses the cores: row chunks are decoded by one thread and GDAL handle per
core, batches go through the network on one thread per torch thread (one core each), and GDAL
compresses the output with its own threads (``NUM_THREADS=ALL_CPUS``).
"""
from __future__ import annotations

from ..tiling import BLENDS, WEIGHT_FLOOR, blend_window, pad_reflect, seam_positions, tile_origins
from .batch import BatchResult, SceneOutcome, output_name, translate_rasters
from .grid import DEFAULT_PANEL_WIDTH
from .scene import COMPRESSIONS, PredictionResult, PredictOptions, Predictor, output_nodata, translate_raster

__all__ = [
    "translate_raster", "translate_rasters", "PredictionResult", "PredictOptions", "Predictor",
    "BatchResult", "SceneOutcome", "output_name", "output_nodata", "COMPRESSIONS", "DEFAULT_PANEL_WIDTH",
    "BLENDS", "WEIGHT_FLOOR", "blend_window", "pad_reflect", "seam_positions", "tile_origins",
]

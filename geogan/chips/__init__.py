"""Chip export: cut source rasters into georeferenced training chips plus a metadata file.

``export_chips(a, b, out)`` writes ``out/train_a/``, ``out/train_b/``, ``out/val_a/``,
``out/val_b/`` (GeoTIFF chips named ``SCENE_rROW_cCOL.tif``, each on its source's pixel grid)
and ``out/geogan_chips.json`` (the chips contract that training reads back with
:func:`read_chips_metadata`). The package follows the export's steps, one module each:

* :mod:`.sources` (I/O) — the inputs in every syntax of :mod:`geogan.scenes` (comma-joined
  files as one scene's bands, ``@list``, globs, folders, GDAL paths), what each raster is, and
  pixel samples for kind and SAR-units inference;
* :mod:`.plan` (pure) — options, each domain's kind and units with the reason, the window grid,
  the AOI filter (:mod:`.aoi`), the validation split (:mod:`.split`) and paired matching;
* :mod:`.export` — reading each planned window, validity, statistics, and the summary;
* :mod:`.writer` — chips encoded in memory and written with checked plain writes;
* :mod:`.metadata` — the metadata file: keys, reading, validation;
* :mod:`.workdir` — the output folder: a lock, a build beside it, a swap that the next run
  repairs after a kill at any point.
"""
from __future__ import annotations

from ..tiling import grid_offsets
from .aoi import AOI, load_aoi, windows_in_aoi
from .export import ChipSummary, export_chips
from .metadata import FORMAT, FORMAT_VERSION, METADATA_NAME, SPLIT_DIRS, export_is_complete, read_chips_metadata
from .plan import MIN_TILE_SIZE, DomainChoice, ExportOptions, ExportPlan, chip_windows, choose_domain, plan_export
from .split import BLOCK_TILES, SplitResult, plan_split, spatial_split
from .workdir import recover_export

__all__ = [
    "export_chips", "ChipSummary", "read_chips_metadata", "recover_export", "export_is_complete",
    "METADATA_NAME", "FORMAT", "FORMAT_VERSION", "SPLIT_DIRS", "MIN_TILE_SIZE",
    "load_aoi", "AOI", "windows_in_aoi",
    "chip_windows", "grid_offsets", "spatial_split", "plan_split", "SplitResult", "BLOCK_TILES",
    "ExportOptions", "ExportPlan", "DomainChoice", "choose_domain", "plan_export",
]

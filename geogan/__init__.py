"""geogan: GAN translation of georeferenced rasters between sensor domains.

The public API is listed in ``__all__``. Importing geogan is cheap and has no side effects
(no torch, no rasterio, no logging configuration) so it is safe inside QGIS; the heavy
modules load on first use of the name that needs them.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

from .errors import (
    BandMismatchError,
    BusyError,
    Cancelled,
    CheckpointError,
    ConfigError,
    DeviceError,
    GeoganError,
    InputError,
    InputNotFoundError,
    ModelFileError,
    OutputError,
    RasterError,
)
from .progress import CallbackProgress, NullProgress, Progress, QgisFeedbackProgress, TqdmProgress

__version__ = "0.1.0"

# A library logs and lets the application decide where logs go; without this handler Python's
# last-resort handler would write geogan's warnings to stderr inside QGIS.
logging.getLogger("geogan").addHandler(logging.NullHandler())

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "export_chips": "geogan.chips",
    "ChipSummary": "geogan.chips",
    "read_chips_metadata": "geogan.chips",
    "TrainConfig": "geogan.config",
    "load_train_config": "geogan.trainer",
    "train": "geogan.trainer",
    "TrainResult": "geogan.trainer",
    "TranslationModel": "geogan.modelfile",
    "load_model": "geogan.modelfile",
    "save_model": "geogan.modelfile",
    "translate_raster": "geogan.predict",
    "translate_rasters": "geogan.predict",
    "evaluate_rasters": "geogan.evaluate",
    "DomainSpec": "geogan.bands",
    "BandStats": "geogan.bands",
    "Scene": "geogan.scenes",
    "expand_scenes": "geogan.scenes",
    "write_item": "geogan.stac",
    "write_collection": "geogan.stac",
    "catalogue_output": "geogan.stac",
    "read_provenance": "geogan.provenance",
    "inspect_file": "geogan.provenance",
}

__all__ = [
    "__version__",
    "GeoganError", "InputError", "InputNotFoundError", "RasterError", "OutputError", "BusyError", "ConfigError",
    "BandMismatchError", "ModelFileError", "CheckpointError", "DeviceError", "Cancelled",
    "Progress", "NullProgress", "CallbackProgress", "TqdmProgress", "QgisFeedbackProgress",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geogan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

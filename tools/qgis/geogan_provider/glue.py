"""The parts of the algorithms that do not need qgis: calling geogan and mapping its errors.

Kept apart from ``algorithms.py`` so the CI test suite can exercise them with a fake feedback
object in a Python that has no QGIS.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from .feedback import FeedbackProgress, forward_logging

INSTALL_HINT = ("install torch and geogan in a venv made from QGIS's Python and point "
                "GEOGAN_VENV at it (see the QGIS section of geogan's README)")


def band_list(text: Optional[str]) -> Optional[str]:
    """An optional band list typed by the user ('3,2,1'); empty means all bands (None)."""
    if text is None:
        return None
    text = str(text).strip()
    return text or None


def train_settings(config_path: Optional[Union[str, Path]], overrides: Mapping[str, Any]) -> dict:
    """A TrainConfig mapping: the YAML file's keys (if any), then the non-empty overrides.

    Relative ``data``/``out`` paths in the YAML are taken relative to the YAML file, because a
    QGIS process's working directory is wherever QGIS was started from.
    """
    from geogan.config import load_yaml

    settings: dict = {}
    if config_path:
        path = Path(config_path)
        settings = load_yaml(path)
        for key in ("data", "out"):
            value = settings.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                settings[key] = str(path.parent / value)
    settings.update({k: v for k, v in overrides.items() if v is not None and v != ""})
    return settings


def import_geogan(error_cls: type) -> Any:
    """``import geogan``, or ``error_cls`` saying how to install it beside QGIS."""
    try:
        import geogan
    except ModuleNotFoundError as exc:
        raise error_cls(f"cannot import {exc.name!r} in QGIS's Python: {INSTALL_HINT}") from None
    return geogan


def run_with_feedback(func: Callable[..., Any], feedback: Any, error_cls: type, *args: Any,
                      progress_cls: type = FeedbackProgress, **kwargs: Any) -> tuple[Any, FeedbackProgress]:
    """Call a geogan API function with a progress adapter around ``feedback``.

    Every geogan error (a bad input, a cancel) is re-raised as ``error_cls`` (in QGIS:
    ``QgsProcessingException``) with geogan's one-line message (``progress_cls`` picks the
    adapter, e.g. :class:`TrainingProgress`); a missing torch becomes the
    same kind of error with an install hint. Anything else is a bug and propagates as is,
    so QGIS shows its traceback.
    """
    geogan = import_geogan(error_cls)
    progress = progress_cls(feedback)
    try:
        with forward_logging(feedback):
            result = func(*args, progress=progress, **kwargs)
    except geogan.Cancelled as exc:
        raise error_cls(f"cancelled: {exc}") from None
    except geogan.GeoganError as exc:
        raise error_cls(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "rasterio", "shapely", "pyproj", "yaml"}:
            raise error_cls(f"geogan needs the Python package {exc.name!r}: {INSTALL_HINT}") from None
        raise
    return result, progress

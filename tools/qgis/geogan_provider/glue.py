"""The parts of the algorithms that do not need qgis: finding a compatible geogan, calling it and
mapping its errors.

Kept apart from ``algorithms.py`` so the CI test suite can exercise them with a fake feedback
object in a Python that has no QGIS.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from .feedback import forward_logging

#: The geogan releases this plugin works with: ``>= GEOGAN_COMPATIBLE[0]`` and
#: ``< GEOGAN_COMPATIBLE[1]``. It calls export_chips, train(on_event=...), translate_raster,
#: QgisFeedbackProgress and the config helpers; geogan 0.x may change them in any minor release.
GEOGAN_COMPATIBLE = ("0.1.0", "0.2.0")

INSTALL_HINT = ("install torch and geogan in a venv made from QGIS's Python and point "
                "GEOGAN_VENV at it (see the QGIS section of geogan's README)")

METADATA = Path(__file__).resolve().parent / "metadata.txt"


def plugin_metadata(key: str, path: Path = METADATA) -> str:
    """A value from the plugin's ``metadata.txt`` ('' when absent, e.g. in a source checkout,
    where ``tools/qgis/build_plugin.sh`` has not added version and contacts yet)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser.get("general", key, fallback="")


def release_tuple(version: str) -> tuple[int, ...]:
    """``'0.1.0'`` → ``(0, 1, 0)``; a pre-release or local suffix (``0.2.0rc1``, ``0.1.0+g1234``)
    counts as its release. Raises ``ValueError`` for a version that starts with no number."""
    match = re.match(r"\d+(?:\.\d+)*", str(version).strip())
    if match is None:
        raise ValueError(f"not a version number: {version!r}")
    parts = [int(p) for p in match.group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()  # 0.2 == 0.2.0
    return tuple(parts)


def is_compatible(version: Optional[str], compatible: tuple[str, str] = GEOGAN_COMPATIBLE) -> bool:
    """Whether a geogan ``__version__`` lies in the plugin's declared range."""
    try:
        v = release_tuple(version or "")
    except ValueError:
        return False
    return release_tuple(compatible[0]) <= v < release_tuple(compatible[1])


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
    """``import geogan`` and check its version, or raise ``error_cls`` with one line saying what
    is missing or incompatible and how to fix it."""
    try:
        import geogan
    except ImportError as exc:
        what = repr(exc.name) if isinstance(exc, ModuleNotFoundError) and exc.name else "geogan"
        reason = "" if isinstance(exc, ModuleNotFoundError) else f" ({(str(exc).splitlines() or [''])[0]})"
        raise error_cls(f"cannot import {what} in QGIS's Python{reason}: {INSTALL_HINT}") from None
    version = getattr(geogan, "__version__", None)
    if not is_compatible(version):
        low, high = GEOGAN_COMPATIBLE
        where = Path(getattr(geogan, "__file__", None) or "?").parent
        raise error_cls(f"geogan {version or '(no version)'} in {where} does not fit this plugin "
                        f"(it needs geogan >= {low}, < {high}): install a matching geogan or plugin version")
    return geogan


def run_with_feedback(func: Callable[..., Any], feedback: Any, error_cls: type, *args: Any,
                      progress: Any = None, **kwargs: Any) -> Any:
    """Call a geogan API function with ``progress`` (default: ``geogan.QgisFeedbackProgress``
    around ``feedback``) and return its result.

    Every geogan error (a bad input, a cancel) is re-raised as ``error_cls`` (in QGIS:
    ``QgsProcessingException``) with geogan's one-line message; a missing torch becomes the
    same kind of error with an install hint. Anything else is a bug and propagates as is,
    so QGIS shows its traceback.
    """
    geogan = import_geogan(error_cls)
    if progress is None:
        progress = geogan.QgisFeedbackProgress(feedback)
    try:
        with forward_logging(feedback):
            return func(*args, progress=progress, **kwargs)
    except geogan.Cancelled as exc:
        raise error_cls(f"cancelled: {exc}") from None
    except geogan.GeoganError as exc:
        raise error_cls(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "rasterio", "shapely", "pyproj", "yaml"}:
            raise error_cls(f"geogan needs the Python package {exc.name!r}: {INSTALL_HINT}") from None
        raise

"""The parts of the algorithms that do not need qgis: finding a compatible geogan, calling it and
mapping its errors.

Kept apart from ``algorithms.py`` so the CI test suite can exercise them with a fake feedback
object in a Python that has no QGIS.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .feedback import forward_logging, push_result_warnings

#: The geogan releases this plugin works with: ``>= GEOGAN_COMPATIBLE[0]`` and
#: ``< GEOGAN_COMPATIBLE[1]``. It calls export_chips, train(on_event=...), translate_raster,
#: translate_rasters, expand_scenes, QgisFeedbackProgress and the config helpers; geogan 0.x may
#: change them in any minor release.
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


def asset_keys(text: Optional[str]) -> Optional[str]:
    """Optional STAC asset keys typed by the user ('VV,VH'); empty means geogan's default (None):
    none for chips, the model's trained keys for a translation."""
    return band_list(text)


#: SAR units a user may state ("auto": geogan infers them from the values).
UNIT_CHOICES = ("auto", "linear", "amplitude", "db")
#: Network precision of a translation ("auto": bf16 on GPUs that run it natively, fp16 on older
#: GPUs, fp32 on the CPU).
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

SCENE_SYNTAX = ("VV.tif,VH.tif = one scene of two files; @list.txt, a glob, a folder, a GDAL "
                "path (/vsizip/...) or a STAC Item/ItemCollection JSON also work")


def stated(choice: str) -> Optional[str]:
    """An enum choice as geogan's argument: ``'auto'`` leaves it to geogan (None)."""
    return None if choice == "auto" else choice


def gdal_name(parts: Mapping[str, Any], source: str) -> str:
    """The name GDAL (and so geogan) opens for a QGIS 'gdal' layer, from
    ``QgsProviderRegistry.decodeUri('gdal', source)``.

    ``decodeUri`` splits a ``/vsizip/`` source into prefix, archive and member, and a GeoPackage
    raster into file and table; its ``path`` alone would name the wrong file.
    """
    path = str(parts.get("path") or "") or source
    prefix = parts.get("vsiPrefix")
    if prefix:
        return f"{prefix}{path}{parts.get('vsiSuffix') or ''}"
    if parts.get("layerName"):
        return source.split("|")[0]  # e.g. GPKG:/data/x.gpkg:table, which GDAL opens as it is
    return path


def scene_specs(text: Optional[str], base: Optional[str] = None) -> list[str]:
    """The scenes typed into a text field: one per line or ``;``-separated, blanks dropped.
    Each entry is geogan's scene syntax (a file, ``a.tif,b.tif``, ``@list.txt``, glob, folder,
    GDAL path) and is expanded by geogan itself; relative paths are taken relative to ``base``
    (the QGIS project's folder, see :func:`anchored`)."""
    if text is None:
        return []
    specs = []
    for line in str(text).splitlines():
        specs.extend(part.strip() for part in line.split(";"))
    return [anchored(spec, base) for spec in specs if spec]


def anchored(spec: str, base: Optional[str]) -> str:
    """A typed scene with its relative file paths joined to ``base``.

    A QGIS process's working folder is wherever QGIS was started from (``/`` from a desktop
    launcher), so ``S1/VV.tif`` typed beside a project must mean the project's folder, as QGIS
    itself stores layer paths. Absolute, ``~`` and GDAL paths stay as they are; each file of a
    comma-joined scene, a list file (``@list.txt``; its lines stay relative to the list) and a
    glob or folder are joined; with no ``base`` (an unsaved project) nothing changes."""
    if not base:
        return spec
    if spec.startswith("@"):
        return "@" + _anchored_path(spec[1:], base)
    whole = _anchored_path(spec, base)
    if "," not in spec or Path(whole).exists():
        return whole  # a file whose name holds a comma is one file
    return ",".join(_anchored_path(part.strip(), base) for part in spec.split(","))


def _anchored_path(path: str, base: str) -> str:
    from geogan.scenes import is_gdal_path

    if not path or is_gdal_path(path) or path.startswith("~") or Path(path).is_absolute():
        return path
    return str(Path(base) / path)


def domain_inputs(layer_files: Sequence[str], scene_text: Optional[str], what: str,
                  error_cls: type, base: Optional[str] = None) -> list:
    """One domain's inputs for ``geogan.export_chips``/``translate_rasters``: the layers' files
    (each one scene, its name never parsed as syntax) or the typed scenes (relative to ``base``),
    never both or neither."""
    from geogan.scenes import Scene

    specs = scene_specs(scene_text, base)
    if layer_files and specs:
        raise error_cls(f"{what}: give raster layers or scene paths, not both "
                        f"({len(layer_files)} layer(s) and {len(specs)} scene path(s) given)")
    if not layer_files and not specs:
        raise error_cls(f"{what}: give raster layers or scene paths ({SCENE_SYNTAX})")
    return [Scene((f,)) for f in layer_files] if layer_files else specs


def single_scene(layer_file: Optional[str], scene_text: Optional[str], what: str, error_cls: type,
                 base: Optional[str] = None, *, assets: Optional[str] = None, model: Any = None,
                 direction: str = "a2b") -> Any:
    """The one scene to translate: the layer's file, or the typed scene (comma-joined files, a
    GDAL path or a STAC Item JSON; relative to ``base``), as a ``geogan.Scene``. A STAC Item's
    bands are its ``assets`` (default: those ``model`` was trained with, as ``geogan predict``).
    Several scenes, both or neither are refused in one line."""
    from geogan.errors import GeoganError
    from geogan.scenes import Scene, expand_scenes
    from geogan.stac import expand_for_model

    specs = scene_specs(scene_text, base)
    if layer_file and specs:
        raise error_cls(f"{what}: give a raster layer or a scene path, not both")
    if layer_file:
        return Scene((layer_file,))
    if not specs:
        raise error_cls(f"{what}: give a raster layer or a scene path (VV.tif,VH.tif = one scene of two files, "
                        "or a GDAL path)")
    try:
        scenes = (expand_scenes(specs, what=what, assets=assets) if model is None
                  else expand_for_model(specs, model, direction, assets, what=what))
    except GeoganError as exc:
        raise error_cls(str(exc)) from None
    if len(scenes) > 1:
        raise error_cls(f"{what}: names {len(scenes)} scenes ({scenes[0].label}, ...); this algorithm "
                        "translates one: use 'Translate many rasters' (geogan:translate_batch)")
    return scenes[0]


def catalogue_single(result_path: Any, scene: Any, model: Any, feedback: Any, error_cls: type) -> None:
    """After translating one scene from a STAC Item: its STAC Item beside the output and the
    folder's ``collection.json`` (``geogan.stac.catalogue_output``, as ``geogan predict`` does),
    said in the log; nothing for other scenes. A geogan error becomes ``error_cls``, one line."""
    from geogan.errors import GeoganError
    from geogan.stac import catalogue_output

    try:
        written = catalogue_output(result_path, scene, model)
    except GeoganError as exc:
        raise error_cls(str(exc)) from None
    if written is not None:
        item, collection = written
        feedback.pushInfo(f"Wrote {item}: its STAC item" + (f", listed in {collection}" if collection else ""))


def aoi_arguments(regions: Mapping[str, Optional[tuple[str, str]]], error_cls: type) -> dict:
    """``export_chips``'s ``aoi``/``aoi_a``/``aoi_b``/``aoi_crs`` from the AOI parameters.

    ``regions`` maps ``'aoi'`` (both domains), ``'aoi_a'`` and ``'aoi_b'`` to ``(wkt, crs_wkt)``
    or None; the given ones must share one CRS (the algorithm reprojects them when the layers
    differ), since geogan takes one ``aoi_crs``. An AOI for both beside one for each domain
    would be ignored, so it is refused.
    """
    given = {k: v for k, v in regions.items() if v is not None}
    if not given:
        return {}
    if set(given) == {"aoi", "aoi_a", "aoi_b"}:
        raise error_cls("Area of interest: give one for both domains or one for each, not all three "
                        "(the one for both would be ignored)")
    crs = {v[1] for v in given.values()}
    if len(crs) > 1:
        raise error_cls("Area of interest: the layers are in different CRSs; reproject them to one first")
    return {**{k: v[0] for k, v in given.items()}, "aoi_crs": crs.pop()}


def report_batch(result: Any, feedback: Any, error_cls: type) -> None:
    """Log a ``translate_rasters`` result: the summary line, each failed scene on its own error
    line; then raise ``error_cls`` in one line if any scene failed (its outputs stay: a rerun
    skips them and retries the failed ones), as ``geogan predict`` exits non-zero."""
    feedback.pushInfo(result.summary())
    for outcome in getattr(result, "busy", ()):  # another live run is writing it: its work, not a failure
        feedback.pushInfo(outcome.note)
    for outcome in result.failed:
        feedback.reportError(outcome.describe_failure(), False)
    if result.failed:
        first = result.failed[0].describe_failure()
        which = "" if len(result.failed) == 1 else " (each is listed in the log); the first"
        raise error_cls(f"{len(result.failed)} of {len(result.outcomes)} scene(s) failed{which}: {first}; "
                        "run again to retry (complete outputs of the same model and options are skipped)")


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
    around ``feedback``) and return its result. Its log lines reach ``feedback`` as they happen
    (:func:`~.feedback.forward_logging`), and then every warning of the result not shown yet
    (``result.warnings``, e.g. from geogan's worker threads), each once, as a warning.

    Every geogan error (a bad input, a cancel) is re-raised as ``error_cls`` (in QGIS:
    ``QgsProcessingException``) with geogan's one-line message; a missing torch becomes the
    same kind of error with an install hint. Anything else is a bug and propagates as is,
    so QGIS shows its traceback.
    """
    geogan = import_geogan(error_cls)
    if progress is None:
        progress = geogan.QgisFeedbackProgress(feedback)
    try:
        with forward_logging(feedback) as shown:
            result = func(*args, progress=progress, **kwargs)
        push_result_warnings(feedback, result, shown)
        return result
    except geogan.Cancelled as exc:
        raise error_cls(f"cancelled: {exc}") from None
    except geogan.GeoganError as exc:
        raise error_cls(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "rasterio", "shapely", "pyproj", "yaml"}:
            raise error_cls(f"geogan needs the Python package {exc.name!r}: {INSTALL_HINT}") from None
        raise

"""The chips contract: ``geogan_chips.json`` beside ``train_a/ train_b/ val_a/ val_b/``.

Written last by :func:`geogan.chips.export_chips` (so an export without it is incomplete) and
read back by training through :func:`read_chips_metadata`. Keys (format version 1; later
additions are optional, so older exports still read):

``format``, ``format_version``, ``paired``, ``tile_size``, ``stride``, ``min_valid``,
``val_fraction``, ``seed``
    the export's options.
``chip_size``
    ``[rows, cols]`` of every chip (all chips have this size), so training needs not open
    every chip; absent in older exports.
``domains.a`` / ``domains.b``
    a :class:`~geogan.bands.DomainSpec` (``kind``, ``bands``, ``dtype``, ``nodata``, ``crs``,
    ``resolution``, ``band_descriptions``, ``units``, ``stats``) plus ``chips`` (``{"train": n,
    "val": m}``, the files in each split), ``sources`` (each raster: absolute paths, a scene's
    files comma-joined), ``kind_reason``, ``units_reason`` and ``resampling`` (how its
    multi-file scenes were stacked and, paired, B warped onto A's grid).
``val_block``, ``val_split``
    the validation units per domain (``unit``: raster / block / none, ``block`` in pixels,
    ``units``, ``val_units``, ``fraction`` of the candidate windows).
``resampling_b``
    paired only: how B was resampled onto A's grid.
``aoi``
    per domain, the AOI used (``source``, ``crs``, ``wkt``) or null.
``skipped``, ``small_rasters``
    chips not written and why; rasters smaller than one tile.
``assets``
    per domain, the STAC asset keys its scenes were read with (``["VV", "VH"]``), or null when
    its inputs were not STAC Items (:mod:`geogan.stac`); training carries them into the model
    file, where ``geogan predict`` takes them as its default ``--assets``. Absent in older exports.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import InputError, InputNotFoundError, describe

PathLike = Union[str, "os.PathLike[str]"]

FORMAT = "geogan-chips"
FORMAT_VERSION = 1
METADATA_NAME = "geogan_chips.json"
SPLIT_DIRS = ("train_a", "train_b", "val_a", "val_b")


def read_chips_metadata(directory: PathLike) -> dict:
    """Read and validate ``directory/geogan_chips.json``; raise :class:`InputError` naming the
    directory when it is not a geogan chips export (or a newer format)."""
    d = Path(directory)
    if not d.exists():
        raise InputNotFoundError(f"{describe(d)}: no such directory{_moved_aside_hint(d)}")
    if not d.is_dir():
        raise InputError(f"{describe(d)}: is a file, not a chips directory")
    meta_path = d / METADATA_NAME
    if not meta_path.is_file():
        raise InputError(f"{describe(d)}: not a geogan chips export (no {METADATA_NAME}; run 'geogan chips' first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{describe(d)}: unreadable {METADATA_NAME} ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{describe(d)}: {METADATA_NAME} is not a geogan chips metadata file")
    _check_version(d, meta.get("format_version"))
    _check_domains(d, meta.get("domains"))
    if "chip_size" in meta and not _is_size(meta["chip_size"]):
        raise InputError(f"{describe(d)}: {METADATA_NAME} has an invalid chip_size {meta['chip_size']!r}")
    for sub in SPLIT_DIRS:
        if not (d / sub).is_dir():
            raise InputError(f"{describe(d)}: chips export is incomplete (no {sub}/ directory)")
    return meta


def _check_version(d: Path, version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{describe(d)}: {METADATA_NAME} has no valid format_version")
    if version > FORMAT_VERSION:
        raise InputError(f"{describe(d)}: chips format version {version} is newer than this geogan reads "
                         f"({FORMAT_VERSION}); upgrade geogan")


def _check_domains(d: Path, domains: Any) -> None:
    if not isinstance(domains, dict) or set(domains) != {"a", "b"}:
        raise InputError(f"{describe(d)}: {METADATA_NAME} must describe domains 'a' and 'b'")
    for key in ("a", "b"):
        dom = domains[key]
        if not isinstance(dom, dict):
            raise InputError(f"{describe(d)}: domain {key!r} in {METADATA_NAME} is not an object")
        missing = [k for k in ("kind", "bands", "dtype", "stats", "chips") if k not in dom]
        if missing:
            raise InputError(f"{describe(d)}: domain {key!r} in {METADATA_NAME} lacks {', '.join(missing)}")
        counts = dom["chips"]
        if not isinstance(counts, dict) or not all(_is_count(counts.get(s)) for s in ("train", "val")):
            raise InputError(f"{describe(d)}: domain {key!r} in {METADATA_NAME} has invalid chip counts {counts!r}")


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _is_size(x: Any) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(_is_count(v) and v > 0 for v in x)


def _moved_aside_hint(d: Path) -> str:
    """When an interrupted export moved the folder aside, say how to get it back."""
    from ..outputs import temp_owner

    parent = d.parent if str(d.parent) else Path(".")
    try:
        aside = [n for n in os.listdir(parent) if temp_owner(n, d.name) is not None and n.endswith(".old")]
    except OSError:
        return ""
    if not aside:
        return ""
    return (f" (an interrupted 'geogan chips' moved it aside as {describe(aside[0])}; run geogan.chips.recover_export "
            "or 'geogan chips' again with this --out to restore it)")


def export_is_complete(directory: Path) -> bool:
    """True when ``directory`` is a whole export: valid metadata and, in every split folder,
    as many chips as the metadata counts (what a recovery may put back into place)."""
    try:
        meta = read_chips_metadata(directory)
    except InputError:
        return False
    for sub in SPLIT_DIRS:
        expected = meta["domains"][sub[-1]]["chips"][sub.split("_")[0]]
        try:
            found = sum(1 for n in os.listdir(directory / sub) if n.endswith(".tif"))
        except OSError:
            return False
        if found != expected:
            return False
    return True


def metadata_bytes(meta: dict) -> bytes:
    """Strict JSON (no NaN): a NaN nodata becomes the string ``"nan"`` (``float("nan")`` reads
    it back); other non-finite floats become null."""
    domains = {d: {**dom, "nodata": "nan" if _is_nan(dom.get("nodata")) else dom.get("nodata")}
               for d, dom in meta.get("domains", {}).items()}
    return json.dumps(_json_safe({**meta, "domains": domains}), indent=2, allow_nan=False).encode("utf-8")


def _is_nan(x: Any) -> bool:
    return isinstance(x, (float, np.floating)) and math.isnan(x)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def aoi_record(region: Optional[Any]) -> Optional[dict]:
    """How an AOI is recorded: its source, CRS and geometry (WKT)."""
    if region is None:
        return None
    return {"source": region.source.strip("'"), "crs": region.crs.to_string(), "wkt": region.geometry.wkt}

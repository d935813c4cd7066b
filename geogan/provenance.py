"""Which model, with which options, made a prediction: GeoTIFF tags written with every output.

Every GeoTIFF :func:`geogan.predict.translate_raster` writes carries ``GEOGAN_*`` metadata
tags in GDAL's default domain (``gdalinfo`` and QGIS show them; :func:`read_provenance` reads
them back). The model is identified twice:

* ``GEOGAN_MODEL_DIGEST``: :func:`geogan.modelfile.model_digest`, a SHA-256 over what decides the
  pixels — every generator's weights, the architecture and the domains' specs (bands,
  normalisation statistics, dtype, nodata). Always present, also for a model built in memory.
* ``GEOGAN_MODEL_SHA256`` and ``GEOGAN_MODEL_FILE``: the SHA-256 of the model file's bytes (what
  ``sha256sum MODEL.geogan`` prints) and its name, when the model came from a file and its
  weights in memory are still the file's.

Both are computed once per :class:`~geogan.predict.Predictor`, not per scene or tile.

Which tags must match for an existing output to count as "this model with these options"
(:data:`COMPARED`, used when a batch resumes): those that change the pixels — the model, the
direction, the input bands, the stated SAR units, the tile size, the overlap, the blend and
the test-time augmentation. Recorded but not compared: the geogan version, the precision (a
property of the device: resuming a GPU batch on the CPU keeps the GPU's outputs), the units
inferred from the values (the same scene with the same stated option infers the same), the
scene, and options that leave pixel values alone (compression, COG, batch size, panel width).
The model matches when both files record the same file SHA-256, or else the same digest.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

PREFIX = "GEOGAN_"
DIGEST, SHA256, FILE = "GEOGAN_MODEL_DIGEST", "GEOGAN_MODEL_SHA256", "GEOGAN_MODEL_FILE"

#: The options besides the model that must match (tag → how a refusal names it).
COMPARED_OPTIONS = {
    "GEOGAN_DIRECTION": "direction",
    "GEOGAN_SOURCE_BANDS": "input bands",
    "GEOGAN_UNITS_OPTION": "stated units",
    "GEOGAN_TILE_SIZE": "tile size",
    "GEOGAN_OVERLAP": "overlap",
    "GEOGAN_BLEND": "blend",
    "GEOGAN_TTA_ORIENTATIONS": "TTA orientations",
}
#: Every tag a resumed batch compares.
COMPARED = (DIGEST, SHA256, *COMPARED_OPTIONS)
#: How much of a hash a message shows.
SHORT = 12


def model_identity(model: Any) -> dict[str, str]:
    """The model's tags (digest; file hash and name when it came from a file and is unchanged)."""
    from .modelfile import model_digest

    digest = model_digest(model)
    tags = {DIGEST: digest}
    origin = getattr(model, "origin", None)
    if origin is not None and origin.digest == digest:
        tags.update({SHA256: origin.sha256, FILE: origin.file})
    return tags


def prediction_provenance(model: Mapping[str, str], *, direction: str, source_bands: Sequence[int],
                          units_option: Optional[str], units: Optional[str], source_kind: str, target_kind: str,
                          tile_size: int, overlap: int, blend: str, tta_orientations: int, precision: str,
                          version: str, scene: str = "") -> dict[str, str]:
    """Every tag of one prediction, as strings (pure: no I/O)."""
    tags = dict(model)
    tags.update({
        "GEOGAN_VERSION": version,
        "GEOGAN_DIRECTION": direction,
        "GEOGAN_SOURCE_BANDS": ",".join(str(int(b)) for b in source_bands),
        "GEOGAN_SOURCE_KIND": source_kind,
        "GEOGAN_TARGET_KIND": target_kind,
        "GEOGAN_UNITS_OPTION": units_option or "auto",
        "GEOGAN_TILE_SIZE": str(int(tile_size)),
        "GEOGAN_OVERLAP": str(int(overlap)),
        "GEOGAN_BLEND": blend,
        "GEOGAN_TTA_ORIENTATIONS": str(int(tta_orientations)),
        "GEOGAN_PRECISION": precision,
    })
    if units:
        tags["GEOGAN_SOURCE_UNITS"] = units
    if scene:
        tags["GEOGAN_SCENE"] = scene
    return tags


def same_model(recorded: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Same file bytes when both record them, else the same digest."""
    if recorded.get(SHA256) and wanted.get(SHA256) and recorded[SHA256] == wanted[SHA256]:
        return True
    return bool(recorded.get(DIGEST)) and recorded.get(DIGEST) == wanted.get(DIGEST)


def option_differences(recorded: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The compared options that differ, each as "tile size 256, not 32" (recorded first)."""
    return [f"{name} {recorded.get(tag) or 'unrecorded'}, not {wanted[tag]}"
            for tag, name in COMPARED_OPTIONS.items() if tag in wanted and recorded.get(tag) != wanted[tag]]


def describe_model(tags: Mapping[str, str]) -> str:
    """A model as a message names it: file hash prefix and file name, or the digest's prefix."""
    if tags.get(SHA256):
        name = f", {tags[FILE]}" if tags.get(FILE) else ""
        return f"sha256 {tags[SHA256][:SHORT]}{name}"
    if tags.get(DIGEST):
        return f"a model built in memory, digest {tags[DIGEST][:SHORT]}"
    return "an unknown model"


def refusal(recorded: Mapping[str, str], wanted: Mapping[str, str]) -> Optional[str]:
    """Why an existing output is not this run's (None when it is), as a clause for one line."""
    if not recorded.get(DIGEST):
        return ("records no geogan provenance (written by an older geogan or another program), so it cannot be "
                "told to be this model's")
    if not same_model(recorded, wanted):
        return f"made by another model ({describe_model(recorded)}; this run's is {describe_model(wanted)})"
    diffs = option_differences(recorded, wanted)
    if diffs:
        return f"made by this model with other options ({'; '.join(diffs)})"
    return None


def fingerprint(tags: Mapping[str, str]) -> str:
    """A short hash of the digest and the compared options: what a prediction's output lock says it is
    making, so a second run can tell the same work (left to the holder) from a conflict."""
    import hashlib

    keys = (DIGEST, *COMPARED_OPTIONS)
    text = "\n".join(f"{k}={tags.get(k, '')}" for k in keys)
    return "geogan-prediction " + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def provenance_from_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """The ``GEOGAN_*`` tags among a dataset's tags."""
    return {k: str(v) for k, v in tags.items() if str(k).startswith(PREFIX)}


def read_provenance(path: Union[str, "os.PathLike[str]"]) -> dict[str, str]:
    """The ``GEOGAN_*`` tags of a raster (empty when it has none)."""
    from . import raster

    with raster.open_raster(path, require_georeference=False) as ds:
        return provenance_from_tags(ds.tags())


def provenance_lines(tags: Mapping[str, str]) -> list[str]:
    """A short human-readable summary of a prediction's provenance."""
    if not tags.get(DIGEST):
        return ["provenance: none recorded (not written by this geogan's predict)"]
    units = tags.get("GEOGAN_SOURCE_UNITS")
    stated = tags.get("GEOGAN_UNITS_OPTION", "auto")
    lines = [f"made by model {describe_model(tags)} (digest {tags[DIGEST][:SHORT]}), geogan "
             f"{tags.get('GEOGAN_VERSION', '?')}",
             f"direction {tags.get('GEOGAN_DIRECTION', '?')}: {tags.get('GEOGAN_SOURCE_KIND', '?')} bands "
             f"{tags.get('GEOGAN_SOURCE_BANDS', '?')} -> {tags.get('GEOGAN_TARGET_KIND', '?')}"
             + (f"; input units {units} ({'stated' if stated != 'auto' else 'inferred'})" if units else ""),
             f"tiles {tags.get('GEOGAN_TILE_SIZE', '?')} px, overlap {tags.get('GEOGAN_OVERLAP', '?')}, blend "
             f"{tags.get('GEOGAN_BLEND', '?')}, TTA orientations {tags.get('GEOGAN_TTA_ORIENTATIONS', '?')}, "
             f"precision {tags.get('GEOGAN_PRECISION', '?')}"]
    if tags.get("GEOGAN_SCENE"):
        lines.append(f"from {tags['GEOGAN_SCENE']}")
    return lines


# --------------------------------------------------------------------------------- inspect

def inspect_file(path: Union[str, "os.PathLike[str]"]) -> dict[str, Any]:
    """What ``geogan inspect`` shows: a model file's identity and domains, or a raster's grid and
    provenance. Returns ``{"path", "kind": "model" | "raster", ..., "lines": [...]}`` (JSON-ready).

    A model file is loaded safely (``weights_only``, checksums verified) to compute the digest
    predictions record; a damaged or foreign file raises its usual one-line error.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        magic = b""  # a GDAL path (/vsizip/...) or a missing file: the raster reader says which
    if magic == b"PK\x03\x04" and not p.lower().endswith((".zip", ".kmz")):
        return _inspect_model(p)
    return _inspect_raster(p)


def _inspect_model(p: str) -> dict[str, Any]:
    from .modelfile import load_model

    model = load_model(p)
    origin = model.origin
    arch = model.architecture
    info: dict[str, Any] = {
        "path": p, "kind": "model", "sha256": origin.sha256 if origin else None,
        "digest": origin.digest if origin else None, "directions": model.directions,
        "architecture": {k: v for k, v in arch.items() if isinstance(v, (str, int, float, bool))},
        "domains": {name: spec.to_dict() for name, spec in model.domains.items()},
    }
    lines = [f"model file {p}",
             f"sha256 {info['sha256']}", f"digest {info['digest']} (what predictions record)",
             f"{arch.get('model', '?')} model, generator {arch.get('generator', '?')} ngf {arch.get('ngf', '?')}; "
             f"directions {', '.join(model.directions)}"]
    for name in sorted(model.domains):
        spec = model.domains[name]
        units = f", units {spec.units}" if spec.units else ""
        lines.append(f"domain {name.upper()}: {spec.kind}, band(s) {','.join(map(str, spec.bands))} "
                     f"{spec.dtype}, nodata {spec.nodata}{units}")
    done = {k: model.training.get(k) for k in ("epochs", "iterations", "seconds", "device") if k in model.training}
    if done:
        lines.append("trained: " + ", ".join(f"{k} {v}" for k, v in done.items()))
    info["lines"] = lines
    return info


def _inspect_raster(p: str) -> dict[str, Any]:
    from . import raster

    with raster.open_raster(p, require_georeference=False) as ds:
        tags = provenance_from_tags(ds.tags())
        crs = ds.crs.to_string() if ds.crs else None
        info: dict[str, Any] = {"path": p, "kind": "raster", "width": ds.width, "height": ds.height,
                                "count": ds.count, "dtype": ds.dtypes[0], "crs": crs, "nodata": ds.nodata,
                                "provenance": tags}
    info["lines"] = [f"raster {p}: {info['width']}x{info['height']}, {info['count']} band(s) {info['dtype']}, "
                     f"CRS {crs or 'none'}, nodata {info['nodata']}", *provenance_lines(tags)]
    return info

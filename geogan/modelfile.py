"""One self-describing model file: weights, architecture, bands, statistics, training summary.

A ``.geogan`` file is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``: opening a model file never runs code from it. Like
nanoGPT's checkpoints it carries the arguments that rebuild the networks, and beyond that
each domain's :class:`~geogan.bands.DomainSpec` so the predictor normalises exactly as
training did.

Integrity: the file stores a SHA-256 of its weights and one of everything else
(``checksum: {"algorithm": "sha256", "weights": ..., "metadata": ...}``, see
:func:`payload_digest`), checked at every load, because the zip container's own CRCs are not
checked by ``torch.load``: one flipped byte inside a weight would otherwise load silently and
change every prediction. Files written before checksums existed still load (logged at debug
level). When a load or a layout check fails, the zip's own CRC-32s are checked before the
verdict (:func:`check_archive`), so a flipped byte anywhere is "damaged", never "not a geogan
model file". Every key the loader relies on is checked for its type, so a damaged or foreign
file is one clear line, never a traceback.

Identity: :func:`model_digest` hashes what decides a model's pixels (weights, architecture,
domains); :func:`load_model` records the file's SHA-256 and that digest on the model
(:class:`ModelOrigin`), which predictions write into their provenance tags.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .bands import DomainSpec, denormalize, normalize
from .errors import ModelFileError, describe

log = logging.getLogger(__name__)

FORMAT = "geogan-model"
FORMAT_VERSION = 1
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}
CHECKSUM_ALGORITHM = "sha256"
#: Weight dtypes a model file may hold (what training writes: float32).
WEIGHT_DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16", "torch.float64")
#: Integer buffers a network may carry (batch norm's step counter, ``norm: batch``).
COUNTER_SUFFIX = "num_batches_tracked"


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The model file does not exist."""


@dataclass(frozen=True)
class ModelOrigin:
    """The file a :class:`TranslationModel` was loaded from: its name, the SHA-256 of its bytes (what
    ``sha256sum`` prints) and the :func:`model_digest` of what was loaded (to tell later whether
    the weights in memory are still the file's)."""

    file: str
    sha256: str
    digest: str


class TranslationModel:
    """Generators plus what is needed to feed them raw pixels and write their output back.

    ``architecture`` holds at least ``generator`` (a registry name), ``ngf``, ``dropout``
    and ``model`` (``cyclegan`` or ``pix2pix``). ``generators`` maps a direction
    (``"a2b"``, ``"b2a"``) to a network taking the source domain's band count and
    producing the target's.
    """

    def __init__(self, domains: Mapping[str, DomainSpec], generators: Mapping[str, Any],
                 architecture: Mapping[str, Any], training: Optional[Mapping[str, Any]] = None) -> None:
        unknown = set(generators) - set(DIRECTIONS)
        if unknown:
            raise ModelFileError(f"unknown direction(s) {sorted(unknown)}; expected a2b and/or b2a")
        self.domains = dict(domains)
        self.generators = dict(generators)
        self.architecture = dict(architecture)
        self.training = dict(training or {})
        for direction, net in self.generators.items():
            net.eval()
        self.device = "cpu"
        #: Set by :func:`load_model`: the file this model came from (None: built in memory).
        self.origin: Optional[ModelOrigin] = None

    @property
    def directions(self) -> list[str]:
        return sorted(self.generators)

    @property
    def size_multiple(self) -> int:
        """Tile height/width must be a multiple of this for the generator."""
        return int(self.architecture.get("size_multiple", 1))

    def source(self, direction: str) -> DomainSpec:
        return self.domains[self._check(direction)[0]]

    def target(self, direction: str) -> DomainSpec:
        return self.domains[self._check(direction)[1]]

    def _check(self, direction: str) -> tuple[str, str]:
        if direction not in self.generators:
            have = ", ".join(self.directions) or "none"
            raise ModelFileError(f"this model cannot translate {direction!r} (it has: {have})")
        return DIRECTIONS[direction]

    def to(self, device: Any) -> "TranslationModel":
        for net in self.generators.values():
            net.to(device)
        self.device = device
        return self

    def translate(self, data: np.ndarray, direction: str = "a2b",
                  valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Translate raw pixels (band, row, col) or (batch, band, row, col) of the source domain.

        Returns the target domain's pixels in its dtype. Height and width must be multiples
        of :attr:`size_multiple`. Invalid pixels are neutral input; mask the output yourself.
        """
        import torch

        src, dst = self.source(direction), self.target(direction)
        batched = data.ndim == 4
        x = data if batched else data[None]
        if valid is not None and not batched:
            valid = valid[None]
        norm = np.stack([normalize(x[i], src, None if valid is None else valid[i]) for i in range(x.shape[0])])
        with torch.inference_mode():
            y = self.generators[direction](torch.from_numpy(norm).to(self.device)).float().cpu().numpy()
        out = np.stack([denormalize(y[i], dst) for i in range(y.shape[0])])
        return out if batched else out[0]


def model_payload(model: TranslationModel) -> dict:
    """The plain dict that is saved: containers, numbers, strings and CPU tensors only."""
    from . import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "geogan_version": __version__,
        "architecture": dict(model.architecture),
        "domains": {name: spec.to_dict() for name, spec in model.domains.items()},
        "generators": {
            d: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            for d, net in model.generators.items()
        },
        "training": dict(model.training),
    }


def save_model(model: TranslationModel, path: Union[str, os.PathLike]) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file beside it, then rename), with its checksums."""
    import torch

    from .raster import atomic_write_bytes

    payload = model_payload(model)
    payload["checksum"] = payload_checksum(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue(), what="model file")
    return Path(path)


# ------------------------------------------------------------------------------------------
# integrity
# ------------------------------------------------------------------------------------------
def payload_digest(obj: Any) -> str:
    """SHA-256 of nested dicts/lists/tuples of tensors, strings and numbers, independent of pickling.

    Dict items are taken in sorted key order; a tensor contributes its dtype, shape and raw
    bytes; any other leaf its ``repr``. The same value gives the same digest after a save/load.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"S{obj!r};".encode())


def model_digest(model: TranslationModel) -> str:
    """SHA-256 (:func:`payload_digest`) of what decides a model's pixels: every generator's weights,
    the architecture and each domain's spec (bands, normalisation statistics, dtype, nodata).

    The same for a model in memory and after a save and load, whatever the geogan version or
    training summary saved beside it; predictions record it (:mod:`geogan.provenance`).
    """
    return payload_digest({
        "architecture": dict(model.architecture),
        "domains": {name: spec.to_dict() for name, spec in model.domains.items()},
        "generators": {d: net.state_dict() for d, net in model.generators.items()},
    })


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """SHA-256 of a file's bytes, read in chunks (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def payload_checksum(payload: Mapping[str, Any]) -> dict:
    """The ``checksum`` entry of a model file: digests of the weights and of everything else."""
    metadata = {k: v for k, v in payload.items() if k not in ("generators", "checksum")}
    return {"algorithm": CHECKSUM_ALGORITHM, "weights": payload_digest(payload["generators"]),
            "metadata": payload_digest(metadata)}


def verify_checksum(payload: Mapping[str, Any], label: str) -> None:
    """Raise :class:`ModelFileError` when the stored checksums do not match; files without one pass."""
    stored = payload.get("checksum")
    if stored is None:
        log.debug("%s has no checksum (written before geogan stored one); loaded without verification", label)
        return
    if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM:
        raise ModelFileError(f"{label}: model file has an unreadable checksum entry (expected {CHECKSUM_ALGORITHM})")
    actual = payload_checksum(payload)
    for part in ("weights", "metadata"):
        if stored.get(part) != actual[part]:
            raise ModelFileError(f"{label}: model file is damaged: its {part} do not match the {CHECKSUM_ALGORITHM} "
                                 "checksum stored in it (copy it again from the original)")


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
def load_torch_file(p: Path, what: str, error: type) -> Any:
    """``torch.load(weights_only=True)`` with every failure as one line of ``error`` naming ``p``.

    A file that is not a PyTorch zip archive (a plain pickle, an image, a truncated download)
    is "not a geogan {what}"; one holding Python objects other than tensors and containers is
    refused without running anything.
    """
    import pickle

    import torch

    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        if _is_zipfile(p):  # the archive's end record is there: its first bytes were damaged
            raise error(f"{describe(p)}: {what} is damaged (its first bytes are not a zip header); "
                        "copy it again from the original")
        raise error(f"{describe(p)}: not a geogan {what} (not a PyTorch archive)")
    if not _is_zipfile(p):
        raise error(f"{describe(p)}: {what} is damaged (the archive is truncated or corrupt)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        check_archive(p, what, error)  # a flipped byte in the pickle reads like a foreign object
        raise error(f"{describe(p)}: not a geogan {what} (it holds Python objects a geogan {what} never "
                    "contains; not loaded, nothing was run)") from None
    except Exception as exc:  # zip and torch errors all mean the same to a user
        check_archive(p, what, error)
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise error(f"{describe(p)}: {what} is damaged ({reason})") from None


def _is_zipfile(p: Path) -> bool:
    try:
        return zipfile.is_zipfile(p)
    except (zipfile.BadZipFile, ValueError):  # e.g. a damaged end record claiming several disks
        return False


def archive_damage(p: Path) -> Optional[str]:
    """Why the zip archive ``p`` is damaged (a member failing its CRC-32, an unreadable
    directory), or None when every member reads back intact.

    ``torch.load`` never checks the CRCs ``torch.save`` writes, so this is asked only when a
    load or a check failed: it tells damage (a flipped byte anywhere) from a foreign file.
    Reads the whole file once.
    """
    try:
        with zipfile.ZipFile(p) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        text = str(exc).strip().splitlines()
        return text[0][:160] if text else type(exc).__name__
    except Exception as exc:  # zlib and struct errors of a mangled header: damage all the same
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
    return None if bad is None else f"{bad} fails its CRC-32 check"


def check_archive(p: Path, what: str, error: type) -> None:
    """Raise ``error`` "... is damaged (why)" when the archive's own checks fail; else return."""
    damage = archive_damage(p)
    if damage is not None:
        raise error(f"{describe(p)}: {what} is damaged ({damage}); copy it again from the original")


def read_payload(path: Union[str, os.PathLike]) -> dict:
    """Load and validate a model file's dict without building networks (safe: weights_only)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileNotFoundError(f"{describe(p)}: no such model file")
    if p.is_dir():
        raise ModelFileError(f"{describe(p)}: is a directory, not a model file")
    try:
        payload = load_torch_file(p, "model file", ModelFileError)
    except OSError as exc:
        raise ModelFileError(f"{describe(p)}: cannot read the model file ({exc.strerror or exc})") from None
    label = describe(p)
    try:
        check_layout(payload, label)
    except ModelFileError:
        check_archive(p, "model file", ModelFileError)  # a flipped byte, not a malformed writer
        raise
    verify_checksum(payload, label)
    check_generators(payload["generators"], label)
    return payload


def check_layout(payload: Any, label: str) -> None:
    """Format, version and the top-level keys the loader relies on, with their types."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{label}: not a geogan model file")
    check_version(payload.get("format_version"), label)
    for key, kind in (("architecture", dict), ("domains", dict), ("generators", dict)):
        if key not in payload:
            raise ModelFileError(f"{label}: model file is missing {key!r}")
        if not isinstance(payload[key], kind):
            raise ModelFileError(f"{label}: model file entry {key!r} is a {type(payload[key]).__name__}, "
                                 f"expected a {kind.__name__}")
    stored = payload.get("checksum")
    if stored is not None and (not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM_ALGORITHM):
        raise ModelFileError(f"{label}: model file has an unreadable checksum entry (expected {CHECKSUM_ALGORITHM})")


def check_version(version: Any, label: str) -> None:
    """``format_version`` must be a positive integer this geogan reads."""
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{label}: model format_version {version!r} is not a positive integer; "
                             "not a valid geogan model file")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{label}: model format {version} is newer than this geogan reads ({FORMAT_VERSION}); upgrade geogan"
        )


def check_generators(generators: Mapping[Any, Any], label: str) -> None:
    """Directions known, each a mapping of names to floating-point tensors."""
    import torch

    unknown = [d for d in generators if d not in DIRECTIONS]
    if unknown or not generators:
        raise ModelFileError(f"{label}: model file has generator direction(s) {sorted(map(str, unknown))} "
                             "(expected a2b and/or b2a)")
    for direction, state in generators.items():
        if not isinstance(state, dict):
            raise ModelFileError(f"{label}: generator {direction} is a {type(state).__name__}, not a weights mapping")
        for name, tensor in state.items():
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise ModelFileError(f"{label}: generator {direction} entry {name!r} is not a named tensor")
            counter = name.endswith(COUNTER_SUFFIX) and str(tensor.dtype) == "torch.int64"
            if str(tensor.dtype) not in WEIGHT_DTYPES and not counter:
                raise ModelFileError(f"{label}: generator {direction} weight {name!r} has dtype "
                                     f"{str(tensor.dtype).replace('torch.', '')} (expected floating point)")


def check_domains(domains: Mapping[Any, Any], directions: Any, label: str) -> dict:
    """Each domain a valid :class:`DomainSpec` with a raster dtype geogan reads and writes."""
    from .raster import SUPPORTED_DTYPES

    specs = {}
    for name, d in domains.items():
        if name not in ("a", "b") or not isinstance(d, dict):
            raise ModelFileError(f"{label}: model file has an invalid domain entry {name!r}")
        try:
            spec = DomainSpec.from_dict(d)
        except Exception as exc:  # noqa: BLE001 - any malformed field is the same one-line error
            reason = (str(exc).splitlines() or [""])[0][:160]
            raise ModelFileError(f"{label}: domain {name.upper()} is invalid ({type(exc).__name__}: {reason})") from None
        if spec.dtype not in SUPPORTED_DTYPES:
            raise ModelFileError(f"{label}: domain {name.upper()} has dtype {spec.dtype!r}, which geogan cannot "
                                 f"read or write ({', '.join(SUPPORTED_DTYPES)})")
        specs[name] = spec
    for direction in directions:
        missing = [d for d in DIRECTIONS[direction] if d not in specs]
        if missing:
            raise ModelFileError(f"{label}: generator {direction} needs domain {missing[0].upper()}, "
                                 "which the model file does not describe")
    return specs


def check_architecture(arch: Mapping[str, Any], label: str) -> None:
    """The keys :func:`load_model` rebuilds the networks from, with their types."""
    expected = {"generator": str, "ngf": int, "dropout": bool, "upsample": str, "size_multiple": int}
    if "generator" not in arch:
        raise ModelFileError(f"{label}: model architecture is missing 'generator'")
    for key, kind in expected.items():
        if key in arch and (type(arch[key]) is not kind):
            raise ModelFileError(f"{label}: model architecture {key}={arch[key]!r} is not a {kind.__name__}")
    for key in ("ngf", "size_multiple"):
        if key in arch and arch[key] < 1:
            raise ModelFileError(f"{label}: model architecture {key}={arch[key]!r} must be positive")


def load_model(path: Union[str, os.PathLike], device: Any = "cpu") -> TranslationModel:
    """Rebuild a :class:`TranslationModel` from a ``.geogan`` file."""
    from .models.registry import build_generator

    p = Path(path)
    payload = read_payload(p)
    arch = payload["architecture"]
    check_architecture(arch, describe(p))
    domains = check_domains(payload["domains"], payload["generators"], describe(p))
    try:
        generators = {}
        for direction, state in payload["generators"].items():
            src, dst = DIRECTIONS[direction]
            net = build_generator(arch["generator"], domains[src].count, domains[dst].count,
                                  ngf=arch.get("ngf", 64), dropout=arch.get("dropout", False),
                                  upsample=arch.get("upsample", "transpose"), norm=arch.get("norm", "instance"))
            net.load_state_dict(state)
            generators[direction] = net
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{describe(p)}: model file is inconsistent ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    model = TranslationModel(domains, generators, arch, payload.get("training"))
    try:
        sha = file_sha256(p)
    except OSError as exc:
        raise ModelFileError(f"{describe(p)}: cannot read the model file ({exc.strerror or exc})") from None
    model.origin = ModelOrigin(p.name, sha, model_digest(model))
    return model.to(device)

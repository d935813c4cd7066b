"""One self-describing model file: weights, architecture, bands, statistics, training summary.

A ``.geogan`` file is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``: opening a model file never runs code from it. Like
nanoGPT's checkpoints it carries the arguments that rebuild the networks, and beyond that
each domain's :class:`~geogan.bands.DomainSpec` so the predictor normalises exactly as
training did.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .bands import DomainSpec, denormalize, normalize
from .errors import ModelFileError, describe

FORMAT = "geogan-model"
FORMAT_VERSION = 1
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The model file does not exist."""


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
    """Write ``model`` to ``path`` atomically (temporary file beside it, then rename)."""
    import torch

    from .raster import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(model_payload(model), buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def read_payload(path: Union[str, os.PathLike]) -> dict:
    """Load and validate a model file's dict without building networks (safe: weights_only)."""
    import torch

    p = Path(path)
    if not p.exists():
        raise ModelFileNotFoundError(f"{describe(p)}: no such model file")
    if p.is_dir():
        raise ModelFileError(f"{describe(p)}: is a directory, not a model file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to a user
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{describe(p)}: not a readable geogan model file ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{describe(p)}: not a geogan model file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{describe(p)}: model format {version!r} is newer than this geogan reads ({FORMAT_VERSION}); upgrade geogan"
        )
    for key in ("architecture", "domains", "generators"):
        if key not in payload:
            raise ModelFileError(f"{describe(p)}: model file is missing {key!r}")
    return payload


def load_model(path: Union[str, os.PathLike], device: Any = "cpu") -> TranslationModel:
    """Rebuild a :class:`TranslationModel` from a ``.geogan`` file."""
    from .models.registry import build_generator

    p = Path(path)
    payload = read_payload(p)
    arch = payload["architecture"]
    try:
        domains = {name: DomainSpec.from_dict(d) for name, d in payload["domains"].items()}
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
    return TranslationModel(domains, generators, arch, payload.get("training")).to(device)

"""Checkpoints: everything needed to continue a run bit-for-bit, written atomically, read safely.

A checkpoint holds weights, optimizer, scheduler and AMP scaler states, every rank's history
pools and RNG states (torch, CUDA, numpy, python), the epoch and the samples the whole job had
seen in it (the data order of an epoch is a function of the seed and the epoch, and the samples
read are a prefix of it, whatever the number of processes: see :mod:`.batches`), plus a SHA-256
of all of that, checked before resuming. Only tensors and plain containers, so it loads with
``torch.load(weights_only=True)``; every missing or wrong-typed key is one line naming it.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import unet_depth
from ..errors import CheckpointError, describe

CHECKPOINT_FORMAT = "geogan-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: Keys that must match between a checkpoint and the run resuming it.
ARCHITECTURE_KEYS = ("model", "generator", "ngf", "ndf", "n_layers_d", "dropout", "upsample", "gan_mode",
                     "discriminator", "num_d", "norm", "pair_gan")
#: What a checkpoint written before a key existed was trained with.
LEGACY_ARCHITECTURE = {"discriminator": "patch", "num_d": 1, "norm": "instance", "pair_gan": False}
#: Top-level keys of a checkpoint and their types (int/float counters are checked as numbers).
REQUIRED_KEYS: dict[str, tuple[type, ...]] = {
    "architecture": (dict,), "domains": (dict,), "config": (dict,), "epoch": (int,), "batch_in_epoch": (int,),
    "iteration": (int,), "seconds": (int, float), "world_size": (int,), "model": (dict,), "ranks": (list,),
    "losses": (dict,),
}
MODEL_KEYS = ("nets", "optimizers", "schedulers")


def architecture(cfg: Any, size_multiple: int) -> dict:
    """What the networks are: checked on resume, stored in the model file."""
    return {
        "model": cfg.model, "generator": cfg.generator, "ngf": cfg.ngf, "ndf": cfg.ndf,
        "n_layers_d": cfg.n_layers_d, "dropout": bool(cfg.dropout), "upsample": cfg.upsample,
        "gan_mode": cfg.gan_mode,
        "size_multiple": size_multiple, "tile_size": cfg.crop_size,
        "discriminator": cfg.discriminator, "num_d": cfg.num_d if cfg.discriminator == "multiscale" else 1,
        "lambda_feat": cfg.lambda_feat, "unet_depth": unet_depth(cfg.generator),
        "semi_supervised": bool(cfg.data_paired), "norm": cfg.norm,
        "pair_gan": bool(cfg.data_paired) and cfg.lambda_pair_gan > 0,
    }


# ------------------------------------------------------------------------------------------
# RNG states as plain values (weights_only-loadable)
# ------------------------------------------------------------------------------------------
def rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [version, list(internal), gauss],
        # Only when CUDA is in use: asking would otherwise start a CUDA context on a CPU run.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------
# writing and reading
# ------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically with its digest: a full disk leaves the previous one intact."""
    import torch

    from ..modelfile import payload_digest
    from ..raster import atomic_write_bytes

    payload = dict(payload, sha256=payload_digest({k: v for k, v in payload.items() if k != "sha256"}))
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue(), what="checkpoint")


def load_checkpoint(path: Path) -> dict:
    """Read and validate a checkpoint safely (``weights_only``), or raise :class:`CheckpointError`."""
    from ..modelfile import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{describe(path)}: no checkpoint to resume from (train without --resume first)")
    try:
        payload = load_torch_file(path, "training checkpoint", CheckpointError)
    except OSError as exc:
        raise CheckpointError(f"{describe(path)}: cannot read the checkpoint ({exc.strerror or exc})") from None
    validate_checkpoint(payload, describe(path))
    return payload


def validate_checkpoint(payload: Any, label: str) -> None:
    """Format, version, digest, and every key the resume reads, with its type."""
    from ..modelfile import payload_digest

    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{label}: not a geogan training checkpoint")
    version = payload.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{label}: checkpoint format_version {version!r} is not a positive integer")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{label}: checkpoint format {version} is newer than this geogan reads")
    _check_keys(payload, REQUIRED_KEYS, label, "checkpoint")
    stored = payload.get("sha256")
    if stored is not None and stored != payload_digest({k: v for k, v in payload.items() if k != "sha256"}):
        raise CheckpointError(f"{label}: checkpoint is damaged: its content does not match the sha256 stored in it")
    _check_keys(payload["model"], {k: (dict,) for k in MODEL_KEYS}, label, "checkpoint model")
    if not payload["ranks"] or not all(isinstance(r, dict) and isinstance(r.get("rng"), dict)
                                       and isinstance(r.get("local"), dict) for r in payload["ranks"]):
        raise CheckpointError(f"{label}: checkpoint 'ranks' must be a non-empty list of {{rng, local}} states")
    samples = payload.get("samples_in_epoch", 0)
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise CheckpointError(f"{label}: checkpoint entry 'samples_in_epoch' is a {type(samples).__name__}, "
                              "expected int")
    for key in ("epoch", "batch_in_epoch", "iteration", "samples_in_epoch"):
        if payload.get(key, 0) < 0:
            raise CheckpointError(f"{label}: checkpoint {key}={payload[key]} is negative")


def samples_seen(ckpt: Mapping[str, Any]) -> int:
    """The samples the whole job had read in the checkpoint's epoch (checkpoints before that key
    counted full batches per process: batches × batch size × processes)."""
    if "samples_in_epoch" in ckpt:
        return int(ckpt["samples_in_epoch"])
    batch_size = int(ckpt.get("config", {}).get("batch_size", 1))
    return int(ckpt["batch_in_epoch"]) * batch_size * int(ckpt.get("world_size", 1))


def _check_keys(mapping: Mapping[str, Any], required: Mapping[str, tuple[type, ...]], label: str, what: str) -> None:
    for key, kinds in required.items():
        if key not in mapping:
            raise CheckpointError(f"{label}: {what} is missing {key!r} (damaged, or not written by geogan)")
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise CheckpointError(f"{label}: {what} entry {key!r} is a {type(value).__name__}, expected {names}")


def check_compatible(path: Path, ckpt: dict, arch: dict, domains: Mapping[str, Any]) -> None:
    """Refuse to resume a checkpoint of other networks or other bands, naming the difference."""
    theirs = ckpt.get("architecture", {})
    for key in ARCHITECTURE_KEYS:
        if theirs.get(key, LEGACY_ARCHITECTURE.get(key)) != arch.get(key):
            raise CheckpointError(f"{describe(path)}: checkpoint is for {key}={theirs.get(key)!r}, "
                                  f"this run has {key}={arch.get(key)!r}; use another --out or the same settings")
    for name, spec in domains.items():
        other = ckpt.get("domains", {}).get(name, {})
        other = other if isinstance(other, dict) else {}
        bands = other.get("bands", [])
        count = len(bands) if isinstance(bands, list) else -1
        if count != spec.count or other.get("kind") != spec.kind:
            raise CheckpointError(f"{describe(path)}: checkpoint domain {name.upper()} is "
                                  f"{count}-band {other.get('kind')}, the chips are "
                                  f"{spec.count}-band {spec.kind}")

"""Frozen dataclass configs, validated with messages that name the key.

This is the only module that reads YAML. Unknown keys are errors (a typo must not be
silently ignored and train for hours with a default).
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, TypeVar, Union

from .errors import ConfigError, InputNotFoundError, describe

T = TypeVar("T")


def load_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML mapping, or raise a one-line error naming the file."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{describe(p)}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{describe(p)}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{describe(p)}: expected a mapping of keys to values at the top level")
    return data


def from_mapping(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys, types and choices."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{source}: {name}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(cfg: Any) -> dict:
    """A plain dict of a config dataclass (for saving the resolved config beside the outputs)."""
    return dataclasses.asdict(cfg)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``geogan train`` needs. Defaults are the papers' recipes."""

    data: str = ""
    out: str = ""
    model: Literal["cyclegan", "pix2pix"] = "cyclegan"
    #: None = the model's paper default: resnet_9blocks for CycleGAN, unet_256 for Pix2Pix.
    generator: Optional[Literal["resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128"]] = None
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    #: None = the paper default: dropout in the U-Net for Pix2Pix, none for CycleGAN.
    dropout: Optional[bool] = None
    #: Generator upsampling: the papers' transposed convolutions, or resize-convolution
    #: (nearest ×2 + conv), which avoids checkerboard artefacts in short trainings.
    upsample: Literal["transpose", "resize"] = "transpose"
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    lambda_l1: float = 100.0
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    epochs: int = 100
    epochs_decay: int = 100
    batch_size: int = 1
    crop_size: int = 256
    #: all = random crop, flips and 90° rotations; flips = no rotations (e.g. to keep SAR look
    #: direction or sun azimuth consistent); crop = random crop only. Never any resampling.
    augment: Literal["all", "flips", "crop"] = "all"
    #: auto (CUDA when present) | cpu | cuda | cuda:N; under torchrun ``cuda`` is each process's own GPU.
    device: str = "auto"
    #: auto = bf16 autocast where the GPU runs it natively (compute capability >= 8), fp16 with a
    #: GradScaler on older GPUs, fp32 on the CPU. YAML ``true``/``false`` mean auto/off.
    amp: Union[Literal["auto", "off", "fp32", "bf16", "fp16"], bool] = "auto"
    #: Memory layout of images and weights; auto = as measured fastest (contiguous, see README).
    channels_last: Literal["auto", "on", "off"] = "auto"
    #: torch.compile every network; auto = on for CUDA, off on the CPU. YAML true/false mean on/off.
    compile: Union[Literal["auto", "on", "off"], bool] = "auto"
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    #: DataLoader worker processes; null = auto (up to 4 per process on CUDA, 0 on the CPU).
    num_workers: Optional[int] = None
    #: Data-parallel backend under torchrun: auto = NCCL on CUDA, gloo on the CPU.
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):
            object.__setattr__(self, "amp", "auto" if self.amp else "off")
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"config: device: {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if self.generator is None:
            object.__setattr__(self, "generator", "unet_256" if self.model == "pix2pix" else "resnet_9blocks")
        if self.dropout is None:
            object.__setattr__(self, "dropout", self.model == "pix2pix")

        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if v < 0 or (v == 0 and not allow_zero):
                raise ConfigError(f"config: {name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")

        for name in ("ngf", "ndf", "n_layers_d", "batch_size", "crop_size", "lr", "log_every"):
            positive(name)
        for name in ("lambda_cycle", "lambda_identity", "lambda_l1", "pool_size", "epochs_decay",
                     "checkpoint_every", "epochs"):
            positive(name, allow_zero=True)
        if self.num_workers is not None:
            positive("num_workers", allow_zero=True)
        if self.epochs + self.epochs_decay == 0:
            raise ConfigError("config: epochs + epochs_decay must be > 0")
        if not 0.0 <= self.beta1 < 1.0:
            raise ConfigError(f"config: beta1 must be in [0, 1), got {self.beta1}")

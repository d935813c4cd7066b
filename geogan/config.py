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


#: A number in exponent notation without a dot (``5e-4``, ``1E+3``): YAML 1.2 floats that
#: PyYAML, following YAML 1.1, leaves as strings.
_YAML11_FLOAT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


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
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads ``lr: 5e-4`` as the string '5e-4'
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
    #: None = the model's default: resnet_9blocks for CycleGAN; for Pix2Pix the U-Net whose depth
    #: fits crop_size (unet_256 for 256, unet_64 for 64: see :func:`default_generator`), or
    #: resnet_9blocks when none does (e.g. 120-pixel chips).
    generator: Optional[Literal["resnet_9blocks", "resnet_6blocks", "resnet_skip_9blocks", "resnet_skip_6blocks",
                                "unet_256", "unet_128", "unet_64",
                                "unet_32"]] = None
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    #: patch = one PatchGAN (the papers'); multiscale = num_d PatchGANs on the image and its
    #: 2x, 4x... average-pooled copies (Pix2PixHD), which judge larger structures.
    discriminator: Literal["patch", "multiscale"] = "patch"
    num_d: int = 3
    #: None = the paper default: dropout in the U-Net for Pix2Pix, none for CycleGAN.
    dropout: Optional[bool] = None
    #: Generator upsampling: resize-convolution (nearest ×2 + conv: no checkerboard artefacts;
    #: chosen by tools/bench_quality.py: higher SSIM for every model than transposed), sub-pixel
    #: convolution (ICNR-initialised: no checkerboard at the start, cheaper than both) or the
    #: papers' transposed convolutions. Model files record theirs, so changing this default never
    #: changes how an existing model loads.
    upsample: Literal["transpose", "resize", "subpixel"] = "resize"
    #: Generator normalisation: instance (the papers': per image/tile statistics), batch
    #: (running statistics at prediction) or none.
    norm: Literal["instance", "batch", "none"] = "instance"
    #: None = the paper's loss: lsgan (least squares) for CycleGAN, vanilla (BCE) for Pix2Pix.
    gan_mode: Optional[Literal["lsgan", "vanilla"]] = None
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    lambda_l1: float = 100.0
    #: Discriminator feature matching (Pix2PixHD) on paired images. None = 10 (Pix2PixHD's
    #: weight) with the multiscale discriminator, 0 (off) with the single PatchGAN.
    lambda_feat: Optional[float] = None
    #: CycleGAN only: a paired chips export (``geogan chips --paired``) whose pairs add a
    #: masked L1 term both ways to every step (semi-supervised CycleGAN).
    data_paired: Optional[str] = None
    #: Weight of that paired L1 term: Pix2Pix's L1 weight. Measured on the sample data
    #: (tools/bench_quality.py): 10 / 30 / 100 gave PSNR 18.20 / 18.48 / 18.85 dB, SSIM 0.437 /
    #: 0.479 / 0.525: the few pairs are the only signal of which class maps to which.
    lambda_paired: float = 100.0
    #: Semi-supervised CycleGAN only: weight of the GAN terms of two conditional discriminators
    #: that judge the pairs side by side, (A, B) and (B, A), as Pix2Pix's does; 0 = none. They
    #: reward each class its own colour where the single-image discriminators reward any
    #: realistic one.
    lambda_pair_gan: float = 0.0
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
    #: Memory layout of images and weights; auto = as measured fastest (contiguous, see docs/training.md).
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
    #: Seconds a process waits for the others in one collective before the job ends with an error
    #: (a hung or vanished peer, NCCL included): longer than the slowest step plus a checkpoint.
    dist_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):
            object.__setattr__(self, "amp", "auto" if self.amp else "off")
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"config: device: {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if self.generator is None:
            object.__setattr__(self, "generator", default_generator(self.model, self.crop_size))
        if self.dropout is None:
            object.__setattr__(self, "dropout", self.model == "pix2pix")
        if self.gan_mode is None:
            object.__setattr__(self, "gan_mode", "vanilla" if self.model == "pix2pix" else "lsgan")
        if self.lambda_feat is None:
            object.__setattr__(self, "lambda_feat", 10.0 if self.discriminator == "multiscale" else 0.0)
        if self.data_paired == "":
            object.__setattr__(self, "data_paired", None)
        if self.data_paired is not None and self.model != "cyclegan":
            raise ConfigError("config: data_paired: extra pairs are for a cyclegan; a pix2pix trains on the "
                              "paired export given as data")
        if self.lambda_pair_gan > 0 and self.data_paired is None:
            raise ConfigError("config: lambda_pair_gan: the pair discriminators need pairs; set data_paired "
                              "(a paired chips export) or lambda_pair_gan: 0")

        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if v < 0 or (v == 0 and not allow_zero):
                raise ConfigError(f"config: {name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")

        for name in ("ngf", "ndf", "n_layers_d", "num_d", "batch_size", "crop_size", "lr", "log_every"):
            positive(name)
        for name in ("lambda_cycle", "lambda_identity", "lambda_l1", "lambda_feat", "lambda_paired", "lambda_pair_gan",
                     "pool_size", "epochs_decay", "checkpoint_every", "epochs"):
            positive(name, allow_zero=True)
        if self.num_workers is not None:
            positive("num_workers", allow_zero=True)
        if self.epochs + self.epochs_decay == 0:
            raise ConfigError("config: epochs + epochs_decay must be > 0")
        if not 0.0 <= self.beta1 < 1.0:
            raise ConfigError(f"config: beta1 must be in [0, 1), got {self.beta1}")
        self._check_discriminator_input()

    def _check_discriminator_input(self) -> None:
        """The coarsest discriminator scale must still leave its PatchGAN a patch map to judge."""
        scales = self.num_d if self.discriminator == "multiscale" else 1
        coarsest = self.crop_size // 2 ** (scales - 1)
        need = min_discriminator_input(self.n_layers_d)
        if coarsest < need:
            what = (f"{scales} discriminator scales of a {self.crop_size}-pixel crop leave {coarsest} pixels at the "
                    "coarsest," if scales > 1 else f"a {self.crop_size}-pixel crop is")
            raise ConfigError(f"config: {what} less than the {need} pixels a PatchGAN with n_layers_d "
                              f"{self.n_layers_d} needs; use a larger crop_size, fewer num_d or a smaller n_layers_d")


#: U-Net depths a default Pix2Pix generator may have, deepest first (the paper's unet_256 has 8).
UNET_DEPTHS = (8, 7, 6, 5)


def default_generator(model: str, crop_size: int) -> str:
    """The generator a model gets when the config names none.

    CycleGAN: ``resnet_9blocks`` (the paper's). Pix2Pix: the deepest U-Net (8 levels down to 5)
    whose ``2**depth`` divides ``crop_size`` — ``unet_256`` for 256-pixel crops as in the paper,
    ``unet_64`` for 64 — so its bottleneck is 1×1 at the crop size; ``resnet_9blocks`` when no
    depth fits (120-pixel BigEarthNet chips), as a U-Net needs ``crop_size % 2**depth == 0``.
    """
    if model == "pix2pix":
        for depth in UNET_DEPTHS:
            if crop_size % 2 ** depth == 0:
                return f"unet_{2 ** depth}"
    return "resnet_9blocks"


def unet_depth(generator: str) -> Optional[int]:
    """Stride-2 levels of a ``unet_N`` generator (log2 N); None for a ResNet generator."""
    return int(generator.split("_")[1]).bit_length() - 1 if generator.startswith("unet_") else None


def min_discriminator_input(n_layers: int) -> int:
    """Smallest input side a PatchGAN of ``n_layers`` stride-2 levels judges (24 for the 70×70 one):
    after the strided levels its two stride-1 4×4 convolutions need a 3-pixel map."""
    return 3 * 2 ** n_layers

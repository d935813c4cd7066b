"""The explicit table of generator architectures, by the names configs and model files use."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .generators import NORMS, UPSAMPLES, ResnetGenerator, ResnetSkipGenerator, UnetGenerator

GeneratorFactory = Callable[..., nn.Module]

GENERATORS: dict[str, GeneratorFactory] = {
    "resnet_9blocks": lambda i, o, **kw: ResnetGenerator(i, o, n_blocks=9, **kw),
    "resnet_6blocks": lambda i, o, **kw: ResnetGenerator(i, o, n_blocks=6, **kw),
    "resnet_skip_9blocks": lambda i, o, **kw: ResnetSkipGenerator(i, o, n_blocks=9, **kw),
    "resnet_skip_6blocks": lambda i, o, **kw: ResnetSkipGenerator(i, o, n_blocks=6, **kw),
    "unet_256": lambda i, o, **kw: UnetGenerator(i, o, num_downs=8, **kw),
    "unet_128": lambda i, o, **kw: UnetGenerator(i, o, num_downs=7, **kw),
    "unet_64": lambda i, o, **kw: UnetGenerator(i, o, num_downs=6, **kw),
    "unet_32": lambda i, o, **kw: UnetGenerator(i, o, num_downs=5, **kw),
}

#: Height/width of a generator's input must be a multiple of this (a U-Net named unet_N has
#: log2(N) stride-2 levels, so N pixels shrink to 1 at its bottleneck).
SIZE_MULTIPLE: dict[str, int] = {"resnet_9blocks": 4, "resnet_6blocks": 4, "resnet_skip_9blocks": 4,
                                 "resnet_skip_6blocks": 4, "unet_256": 256, "unet_128": 128,
                                 "unet_64": 64, "unet_32": 32}


def build_generator(name: str, in_channels: int, out_channels: int, ngf: int = 64,
                    dropout: bool = False, upsample: str = "transpose", norm: str = "instance") -> nn.Module:
    """Build a generator by registry name with the given band counts.

    ``upsample`` is ``"transpose"`` (the papers' transposed convolutions), ``"resize"``
    (nearest-neighbour upsampling + convolution: no checkerboard artefacts) or ``"subpixel"``
    (ICNR-initialised sub-pixel convolution: no checkerboard at the start, cheaper); ``norm`` is
    ``"instance"`` (the papers'), ``"batch"`` or ``"none"`` (see :func:`generators._norm`).
    """
    try:
        factory = GENERATORS[name]
    except KeyError:
        raise ConfigError(f"unknown generator {name!r} (expected one of {', '.join(GENERATORS)})") from None
    if upsample not in UPSAMPLES:
        raise ConfigError(f"unknown upsampling {upsample!r} (expected one of {', '.join(UPSAMPLES)})")
    if norm not in NORMS:
        raise ConfigError(f"unknown normalisation {norm!r} (expected one of {', '.join(NORMS)})")
    return factory(int(in_channels), int(out_channels), ngf=int(ngf), dropout=bool(dropout), upsample=upsample,
                   norm=norm)

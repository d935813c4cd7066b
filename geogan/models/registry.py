"""The explicit table of generator architectures, by the names configs and model files use."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .generators import ResnetGenerator, UnetGenerator

GeneratorFactory = Callable[..., nn.Module]

GENERATORS: dict[str, GeneratorFactory] = {
    "resnet_9blocks": lambda i, o, ngf, dropout: ResnetGenerator(i, o, ngf=ngf, n_blocks=9, dropout=dropout),
    "resnet_6blocks": lambda i, o, ngf, dropout: ResnetGenerator(i, o, ngf=ngf, n_blocks=6, dropout=dropout),
    "unet_256": lambda i, o, ngf, dropout: UnetGenerator(i, o, num_downs=8, ngf=ngf, dropout=dropout),
    "unet_128": lambda i, o, ngf, dropout: UnetGenerator(i, o, num_downs=7, ngf=ngf, dropout=dropout),
}

#: Height/width of a generator's input must be a multiple of this.
SIZE_MULTIPLE: dict[str, int] = {"resnet_9blocks": 4, "resnet_6blocks": 4, "unet_256": 256, "unet_128": 128}


def build_generator(name: str, in_channels: int, out_channels: int, ngf: int = 64,
                    dropout: bool = False) -> nn.Module:
    """Build a generator by registry name with the given band counts."""
    try:
        factory = GENERATORS[name]
    except KeyError:
        raise ConfigError(f"unknown generator {name!r} (expected one of {', '.join(GENERATORS)})") from None
    return factory(int(in_channels), int(out_channels), int(ngf), bool(dropout))

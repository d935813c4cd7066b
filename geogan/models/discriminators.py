"""The PatchGAN discriminator, taking any band count.

``n_layers=3`` is the 70×70 PatchGAN of Isola et al. and Zhu et al.: each output value judges
one 70×70-pixel patch of the input as real or fake. Instance norm is used for both models:
it is what the reference CycleGAN uses, equals batch norm at the papers' batch size of 1,
and needs no synchronisation across processes under data-parallel training.
"""
from __future__ import annotations

import torch
from torch import nn


class NLayerDiscriminator(nn.Module):
    """conv4 s2 → LeakyReLU, ``n_layers - 1`` × (conv4 s2 → norm → LeakyReLU), conv4 s1 → norm → LeakyReLU, conv4 s1 → 1 map."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True),
                       nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
                   nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(n_layers: int) -> int:
    """Side in pixels of the patch one output value sees (70 for ``n_layers=3``)."""
    rf = 1
    for stride in [1, 1] + [2] * n_layers:  # walk back from the output: two stride-1 convs, then stride-2 ones
        rf = (rf - 1) * stride + 4
    return rf

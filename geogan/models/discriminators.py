"""PatchGAN discriminators, taking any band count: one scale (pix2pix, CycleGAN) or several (Pix2PixHD).

``n_layers=3`` is the 70×70 PatchGAN of Isola et al. and Zhu et al.: each output value judges
one 70×70-pixel patch of the input as real or fake. Instance norm is used for both models:
it is what the reference CycleGAN uses, equals batch norm at the papers' batch size of 1,
and needs no synchronisation across processes under data-parallel training.

:class:`MultiscaleDiscriminator` is Pix2PixHD's (Wang et al. 2018): ``num_d`` PatchGANs of the
same shape, the k-th judging the input average-pooled k times (3×3, stride 2), so the coarsest
one sees structures 2**(num_d-1) times larger while the finest keeps judging texture. Called with
``features=True`` every discriminator returns the activations after each block too, for the
feature-matching loss (:func:`geogan.models.losses.feature_matching`); a keyword of ``forward``
rather than a method, so it passes through DistributedDataParallel and ``torch.compile`` wrappers.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

#: What a discriminator returns: one patch map, or one per scale (finest first).
Judgement = Union[torch.Tensor, list[torch.Tensor]]


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

    def forward(self, x: torch.Tensor, features: bool = False):
        """The patch map; with ``features``, ``[[block_1, ..., block_n, patch_map]]``."""
        if not features:
            return self.model(x)
        out = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        out.append(x)
        return [out]


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the input and its 2×, 4×, … average-pooled copies (Pix2PixHD).

    Returns a list of patch maps, finest scale first.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_d: int = 3) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}")
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor, features: bool = False) -> list:
        """One patch map per scale; with ``features``, per scale its blocks' activations and the map."""
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            out += d(x, features=True) if features else [d(x)]
        return out


def build_discriminator(kind: str, in_channels: int, ndf: int = 64, n_layers: int = 3,
                        num_d: int = 3) -> nn.Module:
    """``patch`` (one 70×70 PatchGAN for n_layers 3) or ``multiscale`` (``num_d`` of them, Pix2PixHD)."""
    if kind == "patch":
        return NLayerDiscriminator(in_channels, ndf, n_layers)
    if kind == "multiscale":
        return MultiscaleDiscriminator(in_channels, ndf, n_layers, num_d)
    raise ValueError(f"unknown discriminator {kind!r} (expected patch or multiscale)")


def receptive_field(n_layers: int, scale: int = 0) -> int:
    """Side in input pixels of the patch one output value sees (70 for ``n_layers=3``).

    ``scale`` k is the k-th discriminator of a multi-scale one, behind k 3×3 stride-2 poolings.
    """
    rf = 1
    # walk back from the output: two stride-1 convs, the stride-2 convs, then the poolings
    for kernel, stride in [(4, 1), (4, 1)] + [(4, 2)] * n_layers + [(3, 2)] * scale:
        rf = (rf - 1) * stride + kernel
    return rf

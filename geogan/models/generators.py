"""Generators that take channel counts, so any band count maps to any other.

ResNet generator (CycleGAN) and U-Net generator (Pix2Pix), following the reference
architectures of Zhu et al. 2017 and Isola et al. 2017: reflect padding, instance norm,
tanh output in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from .cpuconv import Conv2d


UPSAMPLES = ("transpose", "resize", "subpixel")
#: Kernel of the sub-pixel convolution (see :class:`SubpixelUpsample` for why 1).
SUBPIXEL_KERNEL = 1
NORMS = ("instance", "batch", "none")


def _norm(channels: int, kind: str = "instance") -> nn.Module:
    """The generators' normalisation layer.

    ``instance`` (the papers'): each image — each prediction tile — is normalised by its own
    per-channel statistics. ``batch``: batch statistics in training, fixed running statistics at
    prediction. ``none``: no normalisation (an identity, so layer numbering is unchanged). Instance
    norm discards each channel's mean and spread over the image, which for SAR is the absolute
    backscatter level that tells the classes apart on a chip covered by one field; ``batch`` and
    ``none`` keep it and make the network a fixed function of the pixels around each output pixel.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r} (expected one of {', '.join(NORMS)})")


class SubpixelUpsample(nn.Module):
    """Sub-pixel convolution (Shi et al. 2016): a convolution at the low resolution to 4× the
    output channels, then :class:`~torch.nn.PixelShuffle` (×2), ICNR-initialised (Aitken et al.
    2017, "Checkerboard artifact free sub-pixel convolution").

    ICNR gives the four sub-pixel positions the same weights at initialisation, so the layer
    starts as nearest-neighbour ×2 of one convolution: no checkerboard at the start of training,
    when a transposed convolution makes one. The kernel is 1×1 (:data:`SUBPIXEL_KERNEL`): the
    spatial work stays in the residual blocks and the convolutions after each upsampling, and the
    layer costs less than the papers' 3×3 transposed convolution (on 2 CPU cores resnet_9blocks ngf
    64 at 256²: 0.97–0.99× the transposed generator's time; a 3×3 kernel cost as much as
    ``resize`` did before :class:`ResizeConv2d`, 1.13×; it scores below ``resize``, see docs/training.md). The weights are ``conv.weight``/``conv.bias``; :meth:`icnr_` re-applies the
    initialisation after a generic weight init.
    """

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True, kernel: int = SUBPIXEL_KERNEL) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2) if kernel > 1 else nn.Identity()
        self.conv = nn.Conv2d(in_ch, out_ch * 4, kernel, bias=bias)
        self.shuffle = nn.PixelShuffle(2)
        self.icnr_()

    @torch.no_grad()
    def icnr_(self) -> None:
        """Make the 4 sub-pixel filters of each output channel equal (keeping the first one's values)."""
        w = self.conv.weight
        out = w.shape[0] // 4
        # PixelShuffle reads output channel c at sub-position s from input channel 4c + s.
        w.copy_(w[0::4][:out].repeat_interleave(4, dim=0))
        if self.conv.bias is not None:
            self.conv.bias.copy_(self.conv.bias[0::4].repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(self.pad(x)))


class ResizeConv2d(nn.Conv2d):
    """Nearest-neighbour ×2, reflect padding by 1, then this 3×3 convolution — computed at the low
    resolution, without the doubled image.

    Each of the four output phases (even/odd row × even/odd column) of a 3×3 kernel sliding over
    a nearest-upsampled image sees a 2×2 block of input pixels, so it is a 2×2 kernel over the
    input whose taps are sums of the 3×3 taps falling on the same input pixel; and reflect
    padding of the upsampled image repeats the input's edge pixel. So: replicate-pad the input,
    one 2×2 convolution to 4× the channels, the phases interleaved. The same function as
    ``Upsample → ReflectionPad2d(1) → Conv2d(3)`` to float rounding, with the same parameters
    (model files load as before), at 16 instead of 36 multiply-adds per input pixel and channel
    pair: the layer takes about half the time on the CPU.
    """

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, 3, bias=bias)

    @staticmethod
    def _phases(k: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The even and the odd phase's 2 taps along ``dim`` from 3 taps: (t0, t1 + t2) and (t0 + t1, t2)."""
        t0, t1, t2 = k.unbind(dim)
        return torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        out = self.out_channels
        kernels = torch.stack([col for row in self._phases(self.weight, 2) for col in self._phases(row, 3)])
        bias = self.bias.repeat(4) if self.bias is not None else None
        y = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                 kernels.reshape(4 * out, -1, 2, 2), bias).view(n, 4, out, h + 1, w + 1)
        full = y.new_empty((n, out, 2 * h, 2 * w))
        for a in (0, 1):
            for b in (0, 1):  # each phase straight into its rows and columns (one pass over the output)
                full[:, :, a::2, b::2] = y[:, 2 * a + b, :, a:a + h, b:b + w]
        return full


def _upsample(in_ch: int, out_ch: int, kind: str, kernel: int, bias: bool = True) -> list[nn.Module]:
    """Double the resolution: the papers' transposed convolution, resize- or sub-pixel convolution.

    ``resize`` (nearest-neighbour ×2, then a 3×3 convolution) cannot produce the checkerboard
    patterns that a stride-2 transposed convolution makes while it is undertrained (Odena et
    al. 2016, "Deconvolution and Checkerboard Artifacts"); :class:`ResizeConv2d` computes it at
    the low resolution, at 16/9 of the transposed convolution's multiply-adds. ``subpixel``
    (:class:`SubpixelUpsample`) starts as free of them at 4/9, but scored below ``resize``.
    """
    if kind == "subpixel":
        return [SubpixelUpsample(in_ch, out_ch, bias=bias)]
    if kind == "resize":
        # two parameterless slots keep the convolution at the index (and so under the model files' keys)
        # it had after the Upsample and ReflectionPad2d it replaces
        return [nn.Identity(), nn.Identity(), ResizeConv2d(in_ch, out_ch, bias=bias)]
    if kind != "transpose":
        raise ValueError(f"unknown upsampling {kind!r} (expected one of {', '.join(UPSAMPLES)})")
    if kernel == 3:
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    return [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=bias)]


class ResnetBlock(nn.Module):
    """conv3x3 → norm → ReLU → (dropout) → conv3x3 → norm, plus the identity skip."""

    def __init__(self, channels: int, dropout: bool = False, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), Conv2d(channels, channels, 3, bias=True), _norm(channels, norm), nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), Conv2d(channels, channels, 3, bias=True), _norm(channels, norm)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """7×7 stem, two stride-2 downsamples, ``n_blocks`` residual blocks, two upsamples, 7×7 output.

    Input height and width must be multiples of 4 (:attr:`size_multiple`).
    """

    size_multiple = 4

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
                 dropout: bool = False, upsample: str = "transpose", norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), Conv2d(in_channels, ngf, 7, bias=True), _norm(ngf, norm), nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=True), _norm(ch * 2, norm), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, dropout, norm) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [*_upsample(ch, ch // 2, upsample, kernel=3), _norm(ch // 2, norm), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResnetSkipGenerator(nn.Module):
    """The ResNet generator with U-Net skips: each upsampled level is concatenated with the
    encoder's features at the same resolution before the next layer.

    The plain ResNet generator rebuilds full resolution from its quarter-resolution residual
    blocks alone, so details a few pixels wide (roads, field edges in speckled SAR) must survive
    two downsamplings encoded in channels. The skips hand the decoder the full- and half-resolution
    features directly. Unlike a U-Net there is no global bottleneck: the receptive field stays
    local, so a prediction tile larger than the training crop behaves as the crops did (no seams
    from tile-wide context). Input height and width must be multiples of 4.
    """

    size_multiple = 4

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 6,
                 dropout: bool = False, upsample: str = "transpose", norm: str = "instance") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), Conv2d(in_channels, ngf, 7, bias=True), _norm(ngf, norm),
                                  nn.ReLU(True))
        self.down1 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1, bias=True), _norm(ngf * 2, norm),
                                   nn.ReLU(True))
        self.down2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1, bias=True),
                                   _norm(ngf * 4, norm), nn.ReLU(True))
        self.blocks = nn.Sequential(*[ResnetBlock(ngf * 4, dropout, norm) for _ in range(n_blocks)])
        self.up1 = nn.Sequential(*_upsample(ngf * 4, ngf * 2, upsample, kernel=3), _norm(ngf * 2, norm), nn.ReLU(True))
        self.up2 = nn.Sequential(*_upsample(ngf * 4, ngf, upsample, kernel=3), _norm(ngf, norm), nn.ReLU(True))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), Conv2d(ngf * 2, out_channels, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.stem(x)
        half = self.down1(full)
        y = self.blocks(self.down2(half))
        y = torch.cat([self.up1(y), half], 1)
        y = torch.cat([self.up2(y), full], 1)
        return self.head(y)


class UnetSkipBlock(nn.Module):
    """One U-Net level: down, the inner levels, up, concatenated with the input (the skip)."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, dropout: bool = False, upsample: str = "transpose",
                 norm: str = "instance") -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=True)
        if outermost:
            up = _upsample(inner * 2, outer, upsample, kernel=4)
            layers = [down, submodule, nn.ReLU(True), *up, nn.Tanh()]
        elif innermost:
            up = _upsample(inner, outer, upsample, kernel=4)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), *up, _norm(outer, norm)]
        else:
            up = _upsample(inner * 2, outer, upsample, kernel=4)
            layers = [nn.LeakyReLU(0.2, True), down, _norm(inner, norm), submodule, nn.ReLU(True), *up, _norm(outer, norm)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels (8 for 256-pixel tiles, 7 for 128).

    Input height and width must be multiples of ``2 ** num_downs``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_downs: int = 8, ngf: int = 64,
                 dropout: bool = False, upsample: str = "transpose", norm: str = "instance") -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError("a U-Net generator needs at least 5 levels")
        self.size_multiple = 2 ** num_downs
        up = {"upsample": upsample, "norm": norm}
        block = UnetSkipBlock(ngf * 8, ngf * 8, innermost=True, **up)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, submodule=block, dropout=dropout, **up)
        block = UnetSkipBlock(ngf * 4, ngf * 8, submodule=block, **up)
        block = UnetSkipBlock(ngf * 2, ngf * 4, submodule=block, **up)
        block = UnetSkipBlock(ngf, ngf * 2, submodule=block, **up)
        self.model = UnetSkipBlock(out_channels, ngf, in_channels=in_channels, submodule=block, outermost=True, **up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """normal(0, 0.02) for conv weights, zero biases (the papers' initialisation); ICNR for sub-pixel layers."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    for m in net.modules():
        if isinstance(m, SubpixelUpsample):
            m.icnr_()  # the normal init above gave each sub-pixel position its own filter
    return net

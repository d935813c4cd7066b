"""Stride-1 convolutions on the CPU through NNPACK where it is faster than oneDNN.

PyTorch sends every float32 CPU convolution to oneDNN; its NNPACK kernels (Winograd for 3×3,
FFT for larger kernels) serve only batches of 16 or more, and only with oneDNN off. For single
images (the paper's training batch, and a generator's inference on one tile) NNPACK takes a
half to two thirds of oneDNN's time on x86 for the ResNet generators' wide 3×3 convolutions
(64 channels or more, 48² pixels or more) and about a third for their 7×7 output convolution
— forward and for the gradient of the input, which is the same kind of convolution — and agrees
to about 1e-5 of the output's magnitude (Winograd's rounding). It is slower for batches, small
images and the 7×7 input convolution, which stay with oneDNN (:func:`prefers_nnpack`: a fixed
rule on the shapes, so that a run and its resumption take the same path and the same bits).

:class:`Conv2d` is an ``nn.Conv2d`` (same parameters, same state-dict keys: model files are
unchanged) that takes that path when it applies, and ``nn.Conv2d``'s otherwise: another device or
dtype, autocast, ``torch.compile`` (which makes its own kernels), stride, dilation or groups, or
a torch built without NNPACK. The gradient of the weights has no NNPACK kernel in torch and stays
with oneDNN. ``tools/bench_train.py --reference`` measures the effect on a training step and on
inference.

NNPACK runs on its own thread pool, created at its first convolution with the calling thread's
torch thread count and shared by every later call (calls from several threads take turns):
:func:`nnpack_ready` makes that first call when a model is built.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import nn

#: Kernel sizes NNPACK may take (measured: 2×2 and 4×4 were not faster).
NNPACK_KERNELS = frozenset({3, 7})
#: Output pixels from which NNPACK's 3×3 convolution beats oneDNN's (48²; at 32² it is slower).
MIN_PIXELS_3X3 = 48 * 48
#: Output pixels from which its 7×7 convolution to a few channels does (64²).
MIN_PIXELS_7X7 = 64 * 64


def prefers_nnpack(batch: int, in_channels: int, out_channels: int, kernel: int, pixels: int) -> bool:
    """Whether NNPACK is measured faster than oneDNN for this stride-1 convolution (2-core x86, torch
    2.13): one image, and either a 3×3 kernel over at least 64 channels and :data:`MIN_PIXELS_3X3`
    output pixels, or a 7×7 kernel to at most 4 channels (the generators' output layer) over at
    least :data:`MIN_PIXELS_7X7`."""
    if batch != 1:
        return False
    if kernel == 3:
        return in_channels >= 64 and pixels >= MIN_PIXELS_3X3
    return kernel == 7 and out_channels <= 4 and pixels >= MIN_PIXELS_7X7


@functools.lru_cache(maxsize=None)
def nnpack_ready() -> bool:
    """Whether NNPACK is usable here (initialised, and its thread pool made from this thread)."""
    try:
        if not torch._nnpack_available():
            return False
        x = torch.zeros(1, 1, 3, 3)
        with torch.no_grad():
            torch._nnpack_spatial_convolution(x, torch.zeros(1, 1, 3, 3), None, [0, 0], [1, 1])
        return True
    except (AttributeError, RuntimeError):
        return False


class _NnpackConv(torch.autograd.Function):
    """y = x ⋆ w + b through NNPACK; the input's gradient (a convolution of the output's gradient
    with the flipped, transposed kernel) through NNPACK too, the weights' through oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                padding: list[int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return torch._nnpack_spatial_convolution(x, weight, bias, padding, [1, 1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            kh, kw = weight.shape[-2:]
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            grad_x = torch._nnpack_spatial_convolution(grad, flipped, None,
                                                       [kh - 1 - ctx.padding[0], kw - 1 - ctx.padding[1]], [1, 1])
        if need_w or (need_b and ctx.has_bias):
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], ctx.padding, [1, 1], False,
                [0, 0], 1, [False, need_w, need_b and ctx.has_bias])
        return grad_x, grad_w, grad_b, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs through NNPACK on the CPU where that is faster (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._nnpack = (self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                        and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                        and self.kernel_size[0] == self.kernel_size[1] and self.kernel_size[0] in NNPACK_KERNELS
                        and all(p < k for p, k in zip(self.padding, self.kernel_size)) and nnpack_ready())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._nnpack and self._applies(x):
            return _NnpackConv.apply(x.contiguous(), self.weight, self.bias, list(self.padding))
        return super().forward(x)

    def _applies(self, x: torch.Tensor) -> bool:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or x.layout != torch.strided
                or self.weight.dtype != torch.float32 or torch.compiler.is_compiling()
                or torch.is_autocast_enabled("cpu")):
            return False  # (under torch.compile: the compiler's own kernels; NNPACK has no fake-tensor rule)
        k, (ph, pw) = self.kernel_size[0], self.padding
        pixels = (x.shape[2] + 2 * ph - k + 1) * (x.shape[3] + 2 * pw - k + 1)
        # nnpack_ready() again (cached): a module unpickled where torch has no NNPACK falls back
        return prefers_nnpack(x.shape[0], self.in_channels, self.out_channels, k, pixels) and nnpack_ready()


def runs_single_images_faster(net: nn.Module) -> bool:
    """Whether ``net`` has layers that take NNPACK for one image at a time (on large enough
    inputs): the predictor then sends its tiles through the network one by one on the CPU."""
    return any(isinstance(m, Conv2d) and m._nnpack
               and prefers_nnpack(1, m.in_channels, m.out_channels, m.kernel_size[0], pixels=1 << 30)
               for m in net.modules())

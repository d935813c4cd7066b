"""geogan.models.cpuconv: NNPACK convolutions where they are faster, nn.Conv2d's values and gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from geogan.models.cpuconv import Conv2d, nnpack_ready, prefers_nnpack
from geogan.models.generators import ResnetGenerator

needs_nnpack = pytest.mark.skipif(not nnpack_ready(), reason="this torch has no NNPACK")


def _pair(*args, **kwargs) -> tuple[Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    ours = Conv2d(*args, **kwargs)
    plain = nn.Conv2d(*args, **kwargs)
    plain.load_state_dict(ours.state_dict())  # the same keys and shapes as nn.Conv2d
    return ours, plain


def _run(conv: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_(True)
    conv.zero_grad()
    y = conv(x)
    y.backward(grad)
    return y.detach(), x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()


def test_the_rule_takes_single_wide_or_large_images_only():
    assert prefers_nnpack(1, 256, 256, 3, 64 * 64)          # a ResNet block at 256² tiles
    assert not prefers_nnpack(1, 256, 256, 3, 32 * 32)      # 128² tiles: oneDNN is faster
    assert not prefers_nnpack(8, 256, 256, 3, 64 * 64)      # batches: oneDNN
    assert not prefers_nnpack(1, 32, 32, 3, 256 * 256)      # narrow layers: oneDNN
    assert prefers_nnpack(1, 64, 3, 7, 256 * 256)           # the 7×7 output layer
    assert not prefers_nnpack(1, 3, 64, 7, 256 * 256)       # the 7×7 input layer: oneDNN
    assert not prefers_nnpack(1, 64, 64, 4, 256 * 256)      # kernels NNPACK was not faster for


@needs_nnpack
@pytest.mark.parametrize("case", ["block 3x3", "head 7x7", "padded 3x3"])
def test_nnpack_path_matches_nn_conv2d_values_and_gradients(case):
    """Where NNPACK runs, outputs and every gradient equal nn.Conv2d's to float32 rounding
    (Winograd's: ~1e-5 of the magnitude); the weights' and bias' gradients are oneDNN's, exactly."""
    shape, args, kwargs = {"block 3x3": ((1, 64, 50, 52), (64, 64, 3), {}),
                           "head 7x7": ((1, 64, 70, 71), (64, 3, 7), {}),
                           "padded 3x3": ((1, 64, 48, 48), (64, 64, 3), {"padding": 1})}[case]
    ours, plain = _pair(*args, **kwargs)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert ours._applies(x)
        out_shape = plain(x).shape
    grad = torch.randn(out_shape, generator=torch.Generator().manual_seed(2))
    got, want = _run(ours, x, grad), _run(plain, x, grad)
    for a, b, what in zip(got, want, ("output", "input gradient", "weight gradient", "bias gradient")):
        assert a.shape == b.shape, what
        assert (a - b).abs().max() <= 1e-4 * b.abs().max(), what
    torch.testing.assert_close(got[2], want[2], rtol=0, atol=0)
    torch.testing.assert_close(got[3], want[3], rtol=0, atol=0)
    again = _run(ours, x, grad)  # deterministic: a run and its resumption get the same bits
    for a, b in zip(again, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["batch", "float64", "stride", "small"])
def test_elsewhere_it_is_nn_conv2d_bit_for_bit(case):
    args, kwargs, shape, dtype = {
        "batch": ((64, 64, 3), {}, (2, 64, 50, 50), torch.float32),
        "float64": ((64, 64, 3), {}, (1, 64, 50, 50), torch.float64),
        "stride": ((64, 64, 3), {"stride": 2}, (1, 64, 50, 50), torch.float32),
        "small": ((8, 8, 3), {}, (1, 8, 20, 20), torch.float32)}[case]
    ours, plain = _pair(*args, **kwargs)
    ours, plain = ours.to(dtype), plain.to(dtype)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not (ours._nnpack and ours._applies(x))
        assert torch.equal(ours(x), plain(x))


def test_generators_keep_their_state_dict_keys():
    """Model files name parameters by module path: the NNPACK layers are nn.Conv2d subclasses in the same places."""
    net = ResnetGenerator(3, 3, ngf=8, n_blocks=2)
    assert isinstance(net.model[1], Conv2d) and isinstance(net.model[1], nn.Conv2d)
    keys = set(net.state_dict())
    assert {"model.1.weight", "model.1.bias", "model.10.block.1.weight", "model.10.block.5.bias"} <= keys
    assert isinstance(net.model[10].block[1], Conv2d)


@needs_nnpack
def test_under_torch_compile_it_is_the_compilers_convolution():
    """NNPACK's op has no fake-tensor rule, so a compiled model takes the compiler's path (the same
    values to Winograd's rounding), forward and backward."""
    ours, plain = _pair(64, 64, 3)
    x = torch.randn((1, 64, 50, 50), generator=torch.Generator().manual_seed(4))
    compiled = torch.compile(ours, backend="aot_eager")
    y = compiled(x.clone().requires_grad_(True))
    y.sum().backward()
    with torch.no_grad():
        want = plain(x)
    assert (y.detach() - want).abs().max() <= 1e-4 * want.abs().max()

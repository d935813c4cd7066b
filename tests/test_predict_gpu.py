"""The CUDA path of the predictor (skipped without a GPU): pinned batches, blending and final pixels on
the device, autocast; compared with the CPU path on the same scenes. tools/bench_predict.py
--agreement prints the same comparison with figures."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rasterio
import torch

from conftest import make_spec, scene, write_raster
from geogan.bands import denormalize
from geogan.modelfile import TranslationModel
from geogan.models.generators import ResnetGenerator
from geogan.predict import translate_raster
from geogan.predict.grid import DevicePixels

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TILE = dict(tile_size=32, overlap=8, batch_size=5, panel_width=64)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


def resnet_model(target):
    torch.manual_seed(0)
    source = make_spec("sar", 2)
    return TranslationModel({"a": source, "b": target}, {"a2b": ResnetGenerator(2, target.count, ngf=8, n_blocks=2)},
                            {"generator": "resnet", "size_multiple": 4})


@pytest.fixture
def sar(tmp_path):
    data = (10 ** (scene((150, 333), lo=-25, hi=0) / 10)).astype(np.float32)
    data[:, 20:40, 30:90] = 0.0  # nodata: stays nodata on both paths
    return write_raster(tmp_path / "in.tif", data, nodata=0.0)


def test_cuda_fp32_and_autocast_agree_with_the_cpu(tmp_path, sar):
    """Network units (float32 target in [-1, 1]): fp32 on the GPU (cuDNN may use TF32) within 0.01 of the
    CPU; bf16/fp16 autocast within 0.02 on average and 0.15 at most."""
    model = resnet_model(make_spec("generic", 3, "float32", lo=-1.0, hi=1.0))
    cpu = read(translate_raster(model, sar, tmp_path / "cpu.tif", device="cpu", **TILE))
    fp32 = translate_raster(model, sar, tmp_path / "fp32.tif", device="cuda", precision="fp32", **TILE)
    auto = translate_raster(model, sar, tmp_path / "auto.tif", device="cuda", **TILE)
    assert fp32.precision == "fp32" and auto.precision in ("bf16", "fp16")
    a, b = read(fp32), read(auto)
    invalid = np.isnan(cpu)
    assert (np.isnan(a) == invalid).all() and (np.isnan(b) == invalid).all()
    assert np.nanmax(np.abs(a - cpu)) < 0.01
    d = np.abs(b - cpu)
    assert np.nanmean(d) < 0.02 and np.nanmax(d) < 0.15


def test_cuda_uint8_pixels_equal_the_cpu_path(tmp_path, sar):
    """An identity network: blending and pixels on the GPU against the CPU path, up to one rounding step."""
    spec = make_spec("sar", 2)
    target = dataclasses.replace(make_spec("optical", 2, "uint8", nodata=0, lo=10, hi=240))
    model = TranslationModel({"a": spec, "b": target}, {"a2b": torch.nn.Identity()}, {"generator": "x"})
    cpu = read(translate_raster(model, sar, tmp_path / "cpu.tif", device="cpu", **TILE)).astype(int)
    gpu = read(translate_raster(model, sar, tmp_path / "gpu.tif", device="cuda", **TILE)).astype(int)
    assert ((cpu == 0) == (gpu == 0)).all()
    assert np.abs(cpu - gpu).max() <= 1 and (cpu == gpu).mean() > 0.999


@pytest.mark.parametrize("dtype,nodata", [("uint8", 0), ("uint16", 0), ("int16", -32768), ("float32", -9999.0)])
def test_device_pixels_on_cuda_equal_numpy(dtype, nodata):
    spec = make_spec("optical", 3, dtype, nodata=nodata, lo=5, hi=200)
    y = (np.random.default_rng(0).standard_normal((3, 64, 70)) * 1.5).astype(np.float32)
    pixels = DevicePixels(spec, "cuda")
    got = pixels.to_numpy(pixels(torch.from_numpy(y).cuda()).cpu())
    np.testing.assert_array_equal(got, denormalize(y, spec))

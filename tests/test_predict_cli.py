"""``geogan predict`` through click: options reach the API, bad input is one line and exit 1."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from conftest import save_tiny_sar_to_rgb_model, scene, write_raster
from geogan.cli import cli


@pytest.fixture
def model_file(tmp_path):
    return save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")


@pytest.fixture
def sar(tmp_path):
    return write_raster(tmp_path / "in.tif", (10 ** (scene((50, 60), lo=-20, hi=0) / 10)).astype(np.float32))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_predict_writes_the_output(tmp_path, model_file, sar):
    out = tmp_path / "out.tif"
    res = run("predict", model_file, sar, out, "--tile-size", 32, "--overlap", 8, "--batch-size", 3,
              "--device", "cpu", "--blend", "linear", "--compress", "zstd")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "3 band(s) uint8" in res.output
    with rasterio.open(out) as ds:
        assert (ds.count, ds.width, ds.height, ds.dtypes[0]) == (3, 60, 50, "uint8")
        assert ds.compression.value.lower() == "zstd"


def test_predict_cog_flag(tmp_path, model_file, sar):
    res = run("predict", model_file, sar, tmp_path / "c.tif", "--cog", "--tile-size", 32, "--overlap", 8)
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


@pytest.mark.parametrize("extra,message", [
    (["--direction", "b2a"], "cannot translate 'b2a'"),
    (["--bands", "1"], "model expects 2 band(s)"),
    (["--tile-size", "30"], "not a positive multiple of 4"),
    (["--overlap", "200"], "does not fit"),
])
def test_predict_bad_options_are_one_line(tmp_path, model_file, sar, extra, message):
    res = run("predict", model_file, sar, tmp_path / "o.tif", *extra)
    assert res.exit_code == 1
    assert res.output.startswith("geogan: error: ") and message in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.tif").exists()


def test_predict_bad_files(tmp_path, model_file, sar):
    res = run("predict", tmp_path / "nope.geogan", sar, tmp_path / "o.tif")
    assert res.exit_code == 1 and "no such model file" in res.output
    res = run("predict", model_file, tmp_path / "nope.tif", tmp_path / "o.tif")
    assert res.exit_code == 1 and "no such file" in res.output
    res = run("predict", model_file, sar, sar)
    assert res.exit_code == 1 and "same as the input" in res.output
    (tmp_path / "o.tif").write_bytes(b"x")
    res = run("predict", model_file, sar, tmp_path / "o.tif")
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = run("predict", model_file, sar, tmp_path / "o.tif", "--overwrite", "--tile-size", 32, "--overlap", 8)
    assert res.exit_code == 0, res.output
    plain = write_raster(tmp_path / "plain.tif", (10 ** (scene((20, 20), lo=-20, hi=0) / 10)).astype(np.float32),
                         crs=None)
    res = run("predict", model_file, plain, tmp_path / "p.tif")
    assert res.exit_code == 1 and "--allow-ungeoreferenced" in res.output
    res = run("predict", model_file, plain, tmp_path / "p.tif", "--allow-ungeoreferenced", "--tile-size", 16,
              "--overlap", 4)
    assert res.exit_code == 0, res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_predict_cuda_without_cuda(tmp_path, model_file, sar):
    res = run("predict", model_file, sar, tmp_path / "o.tif", "--device", "cuda")
    assert res.exit_code == 1 and "CUDA" in res.output


def test_predict_help_lists_the_options():
    res = run("predict", "--help")
    for opt in ("--direction", "--bands", "--units", "--tile-size", "--overlap", "--batch-size", "--device",
                "--precision", "--blend", "--cog", "--compress", "--overwrite", "--allow-ungeoreferenced"):
        assert opt in res.output

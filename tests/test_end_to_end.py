"""The whole product through its front doors: chips → train → predict → evaluate.

Each step has its own detailed tests; these check that the steps fit together — the chips
metadata feeds training, the model file feeds the predictor, the output lands on the input's
grid with its nodata — through the Python API and through the ``geogan`` command line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

import geogan
from geogan.cli import cli

from conftest import write_raster


def _scene(seed: int, size: int = 96):
    """A little land-cover map rendered as SAR (2-band linear power) and RGB (uint8)."""
    rng = np.random.default_rng(seed)
    classes = (rng.random((size // 8, size // 8)) * 3).astype(int).repeat(8, 0).repeat(8, 1)
    sar_db = np.array([[-20.0, -27.0], [-8.0, -14.0], [-3.0, -9.0]])[classes].transpose(2, 0, 1)
    speckle = rng.gamma(4.0, 0.25, sar_db.shape)
    sar = (10 ** (sar_db / 10) * speckle).astype(np.float32)
    rgb = np.array([[30, 60, 120], [40, 110, 50], [170, 160, 150]], np.uint8)[classes].transpose(2, 0, 1)
    return sar, rgb


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    sar, _ = _scene(1)
    _, rgb = _scene(2)
    write_raster(root / "sar_train.tif", sar, nodata=0.0)
    write_raster(root / "rgb_train.tif", rgb, origin=(600000.0, 5000000.0))
    test_sar, test_rgb = _scene(3, size=80)
    test_sar[:, :, :7] = 0.0  # a nodata swath edge
    # The test scene sits in geographic coordinates: the output must keep that grid exactly.
    geo = from_origin(15.0, 45.0, 0.0001, 0.0001)
    write_raster(root / "sar_test.tif", test_sar, nodata=0.0, crs="EPSG:4326", transform=geo)
    write_raster(root / "rgb_truth.tif", test_rgb, crs="EPSG:4326", transform=geo)
    return root


TINY = dict(model="cyclegan", generator="resnet_6blocks", ngf=4, ndf=4, n_layers_d=2, crop_size=32,
            batch_size=2, epochs=1, epochs_decay=1, pool_size=4, device="cpu", seed=0, log_every=1)


def test_api_end_to_end(world):
    summary = geogan.export_chips(world / "sar_train.tif", world / "rgb_train.tif", world / "chips",
                                  tile_size=32, val_fraction=0.0, seed=0)
    meta = geogan.read_chips_metadata(world / "chips")
    assert meta["domains"]["a"]["kind"] == "sar" and meta["domains"]["b"]["kind"] == "optical"
    assert summary is not None

    model_path = geogan.train({**TINY, "data": str(world / "chips"), "out": str(world / "run")})
    model = geogan.load_model(model_path)
    assert model.directions == ["a2b", "b2a"]
    assert model.domains["a"].count == 2 and model.domains["b"].count == 3

    seen = []
    out = geogan.translate_raster(model_path, world / "sar_test.tif", world / "pred.tif", tile_size=32,
                                  overlap=8, batch_size=4, device="cpu", progress=lambda d, t, m: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]
    with rasterio.open(world / "sar_test.tif") as src, rasterio.open(out) as dst:
        assert (dst.width, dst.height, dst.crs, dst.transform) == (src.width, src.height, src.crs, src.transform)
        assert dst.count == 3 and dst.dtypes[0] == "uint8"
        in_valid = src.read_masks(1) > 0
        out_valid = dst.read_masks(1) > 0
        np.testing.assert_array_equal(out_valid, in_valid)

    report = geogan.evaluate_rasters(out, world / "rgb_truth.tif")
    as_json = json.loads(json.dumps(report.to_dict() if hasattr(report, "to_dict") else report, default=float))
    assert as_json


def test_cli_end_to_end(world):
    runner = CliRunner()
    chips = world / "cli_chips"
    r = runner.invoke(cli, ["chips", "--a", str(world / "sar_train.tif"), "--b", str(world / "rgb_train.tif"),
                            "--out", str(chips), "--tile-size", "32", "--val-fraction", "0"])
    assert r.exit_code == 0, r.output
    cfg = world / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()) + "\n")
    r = runner.invoke(cli, ["train", str(cfg), "--data", str(chips), "--out", str(world / "cli_run")])
    assert r.exit_code == 0, r.output
    model = world / "cli_run" / "model.geogan"
    assert model.exists()
    pred = world / "cli_pred.tif"
    r = runner.invoke(cli, ["predict", str(model), str(world / "sar_test.tif"), str(pred),
                            "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["evaluate", str(pred), str(world / "rgb_truth.tif"), "--json"])
    assert r.exit_code == 0, r.output
    # The same output again without --overwrite: one line, non-zero, the file untouched.
    before = pred.stat().st_mtime_ns
    r = runner.invoke(cli, ["predict", str(model), str(world / "sar_test.tif"), str(pred),
                            "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert r.exit_code != 0 and "already exists" in r.output and "Traceback" not in r.output
    assert pred.stat().st_mtime_ns == before

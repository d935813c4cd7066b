"""The whole product through its front doors: chips → train → predict → evaluate.

Each step has its own detailed tests; these check that the steps fit together — the chips
metadata feeds training, the model file feeds the predictor, the output lands on the input's
grid with its nodata — through the Python API and through the ``geogan`` command line.
"""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.windows import from_bounds

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
#: 96x96 rasters in 32-pixel chips, no validation split: 9 chips a side; batch 2 → 5 steps an epoch.
N_CHIPS, STEPS = 9, 2 * 5
REPORT_KEYS = {"prediction", "truth", "bands", "pixels", "mae", "rmse", "psnr", "ssim", "sam", "ssim_window"}
BAND_KEYS = {"band", "prediction_band", "pixels", "data_range", "mae", "rmse", "psnr", "ssim", "ssim_pixels"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def check_chips(chips, sources: dict) -> None:
    """Every chip lies inside its source, on its grid, and holds the source's pixels there."""
    for d, src_path in sources.items():
        files = sorted((chips / f"train_{d}").glob("*.tif"))
        assert len(files) == N_CHIPS and not list((chips / f"val_{d}").glob("*.tif"))
        with rasterio.open(src_path) as src:
            for f in files:
                with rasterio.open(f) as chip:
                    assert (chip.crs, chip.res, chip.shape, chip.count) == (src.crs, src.res, (32, 32), src.count)
                    window = from_bounds(*chip.bounds, transform=src.transform).round_offsets().round_lengths()
                    assert window.col_off % 32 == 0 and window.row_off % 32 == 0  # on the tiling grid
                    np.testing.assert_array_equal(chip.read(), src.read(window=window))


def check_prediction(pred, src_path) -> np.ndarray:
    """The output is on the input's grid with its nodata mask; returns that (row, col) mask."""
    with rasterio.open(src_path) as src, rasterio.open(pred) as dst:
        assert (dst.width, dst.height, dst.crs, dst.transform) == (src.width, src.height, src.crs, src.transform)
        assert dst.count == 3 and dst.dtypes == ("uint8",) * 3  # the target domain's bands and dtype
        in_valid = src.read_masks(1) > 0
        assert 0 < in_valid.sum() < in_valid.size  # the test scene has its nodata swath
        for band in range(1, 4):
            np.testing.assert_array_equal(dst.read_masks(band) > 0, in_valid)
        data = dst.read()
        if dst.nodata is not None:
            assert (data[:, ~in_valid] == dst.nodata).all()
        assert data[:, in_valid].std() > 0  # a translation, not a constant fill
    return in_valid


def check_report(d: dict, pred, truth, valid: np.ndarray) -> None:
    """The evaluation's JSON: its keys, and values recomputed here from the two rasters."""
    assert REPORT_KEYS <= set(d) and len(d["bands"]) == 3
    with rasterio.open(pred) as p, rasterio.open(truth) as t:
        x, y = p.read().astype(np.float64)[:, valid], t.read().astype(np.float64)[:, valid]
    assert d["pixels"] == int(valid.sum())
    for i, band in enumerate(d["bands"]):
        assert BAND_KEYS <= set(band) and band["band"] == band["prediction_band"] == i + 1
        diff = x[i] - y[i]
        assert band["pixels"] == int(valid.sum())
        assert band["data_range"] == pytest.approx(y[i].max() - y[i].min())
        assert band["mae"] == pytest.approx(np.abs(diff).mean(), rel=1e-9)
        assert band["rmse"] == pytest.approx(np.sqrt((diff ** 2).mean()), rel=1e-9)
        assert 0 < band["mae"] <= band["rmse"] <= 255  # uint8 outputs: a bounded, non-zero error
        assert math.isfinite(band["psnr"]) and -10 < band["psnr"] < 60
        assert -1 <= band["ssim"] <= 1 and 0 < band["ssim_pixels"] < band["pixels"]
    assert d["mae"] == pytest.approx(np.abs(x - y).mean(), rel=1e-9)
    assert d["ssim"] == pytest.approx(np.mean([b["ssim"] for b in d["bands"]]))
    assert 0 <= d["sam"] <= 90  # angles between non-negative 3-band vectors
    assert d["prediction"].endswith(pred.name) and d["truth"].endswith(truth.name)


def check_training(run, model_path) -> None:
    model = geogan.load_model(model_path)
    assert model.directions == ["a2b", "b2a"]
    assert (model.domains["a"].kind, model.domains["a"].count, model.domains["a"].dtype) == ("sar", 2, "float32")
    assert (model.domains["b"].kind, model.domains["b"].count, model.domains["b"].dtype) == ("optical", 3, "uint8")
    assert model.training["epochs"] == 2 and model.training["iterations"] == STEPS
    assert all(math.isfinite(v) for v in model.training["final_losses"].values())
    with open(run / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == list(range(1, STEPS + 1))  # log_every 1, no step twice
    assert all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k not in ("epoch", "iteration"))


def test_api_end_to_end(world):
    chips = world / "chips"
    summary = geogan.export_chips(world / "sar_train.tif", world / "rgb_train.tif", chips,
                                  tile_size=32, val_fraction=0.0, seed=0)
    assert summary.out_dir == chips and summary.metadata_path == chips / "geogan_chips.json"
    assert summary.counts == {"a": {"train": N_CHIPS, "val": 0}, "b": {"train": N_CHIPS, "val": 0}}
    assert (summary.domains["a"].kind, summary.domains["b"].kind) == ("sar", "optical")
    meta = geogan.read_chips_metadata(chips)
    assert meta["domains"]["a"]["kind"] == "sar" and meta["domains"]["b"]["kind"] == "optical"
    assert meta["domains"]["a"]["chips"]["train"] == N_CHIPS and meta["tile_size"] == 32
    check_chips(chips, {"a": world / "sar_train.tif", "b": world / "rgb_train.tif"})

    model_path = geogan.train({**TINY, "data": str(chips), "out": str(world / "run")})
    assert model_path == world / "run" / "model.geogan"
    check_training(world / "run", model_path)

    seen = []
    out = geogan.translate_raster(model_path, world / "sar_test.tif", world / "pred.tif", tile_size=32,
                                  overlap=8, batch_size=4, device="cpu", progress=lambda d, t, m: seen.append((d, t)))
    assert os.fspath(out) == str(world / "pred.tif")
    assert seen[-1][0] == seen[-1][1] > 0 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    valid = check_prediction(world / "pred.tif", world / "sar_test.tif")

    report = geogan.evaluate_rasters(out, world / "rgb_truth.tif")
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON, as written by --json
    check_report(d, world / "pred.tif", world / "rgb_truth.tif", valid)


def test_cli_end_to_end(world):
    runner = CliRunner()
    chips = world / "cli_chips"
    r = runner.invoke(cli, ["chips", "--a", str(world / "sar_train.tif"), "--b", str(world / "rgb_train.tif"),
                            "--out", str(chips), "--tile-size", "32", "--val-fraction", "0"])
    assert r.exit_code == 0, r.output
    assert f"{N_CHIPS} train + 0 val chips" in r.output
    check_chips(chips, {"a": world / "sar_train.tif", "b": world / "rgb_train.tif"})
    cfg = world / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()) + "\n")
    r = runner.invoke(cli, ["train", str(cfg), "--data", str(chips), "--out", str(world / "cli_run")])
    assert r.exit_code == 0, r.output
    model = world / "cli_run" / "model.geogan"
    check_training(world / "cli_run", model)
    pred = world / "cli_pred.tif"
    r = runner.invoke(cli, ["predict", str(model), str(world / "sar_test.tif"), str(pred),
                            "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    valid = check_prediction(pred, world / "sar_test.tif")
    r = runner.invoke(cli, ["evaluate", str(pred), str(world / "rgb_truth.tif"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    check_report(d, pred, world / "rgb_truth.tif", valid)
    assert d == geogan.evaluate_rasters(pred, world / "rgb_truth.tif").to_dict()  # the CLI is the API
    # The same output again without --overwrite: one line, non-zero, the file untouched.
    before = pred.read_bytes()
    r = runner.invoke(cli, ["predict", str(model), str(world / "sar_test.tif"), str(pred),
                            "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert r.exit_code != 0 and "already exists" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert pred.read_bytes() == before

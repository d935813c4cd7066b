"""`geogan chips` through click's CliRunner: options reach the API, errors are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from geogan.cli import cli


def _scene(rows: int, cols: int, bands: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 250, (bands, rows, cols)).astype(dtype)


@pytest.fixture
def scenes(make_raster):
    a = make_raster("sar.tif", np.random.default_rng(0).gamma(2, 0.05, (2, 96, 96)).astype("float32"))
    b = make_raster("rgb.tif", _scene(96, 96, 4, "uint8"), nodata=0)
    return a, b


def test_chips_command_writes_an_export(scenes, tmp_path):
    a, b = scenes
    out = tmp_path / "chips"
    result = CliRunner().invoke(cli, [
        "chips", "--a", str(a), "--b", str(b), "--out", str(out), "--bands-b", "3,2,1",
        "--kind-a", "sar", "--tile-size", "32", "--stride", "16", "--min-valid", "0.9",
        "--val-fraction", "0.2", "--seed", "1", "--paired",
    ])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "geogan_chips.json").read_text())
    assert meta["paired"] is True and meta["stride"] == 16 and meta["seed"] == 1
    assert meta["domains"]["b"]["bands"] == [3, 2, 1] and meta["domains"]["a"]["kind"] == "sar"
    assert "train" in result.stdout and "geogan_chips.json" in result.stdout
    n_train = meta["domains"]["a"]["chips"]["train"]
    assert len(list((out / "train_a").iterdir())) == n_train == len(list((out / "train_b").iterdir()))


def test_chips_command_with_aoi_string(scenes, tmp_path):
    a, b = scenes
    out = tmp_path / "chips"
    wkt = "POLYGON ((500000 4999500, 500400 4999500, 500400 5000000, 500000 5000000, 500000 4999500))"
    result = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(out),
                                      "--tile-size", "32", "--aoi", wkt, "--aoi-crs", "EPSG:32633",
                                      "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "geogan_chips.json").read_text())
    assert meta["domains"]["a"]["chips"]["train"] == 4 and meta["skipped"]["a"]["outside_aoi"] == 5


@pytest.mark.parametrize("extra,needle", [
    (["--tile-size", "8"], "--tile-size 8"),
    (["--stride", "64", "--tile-size", "32"], "--stride 64"),
    (["--min-valid", "2"], "--min-valid 2"),
    (["--val-fraction", "1"], "--val-fraction 1"),
    (["--kind-b", "hyperspectral"], "unknown kind"),
    (["--bands-a", "3"], "band(s) 3 do not exist"),
    (["--aoi", "POINT (1 2)"], "not a polygon"),
    (["--aoi", "nowhere.geojson"], "nowhere.geojson"),
    (["--paired", "--b", "EXTRA"], "one B raster per A raster"),
])
def test_chips_command_errors_are_one_line(scenes, tmp_path, extra, needle):
    a, b = scenes
    args = ["chips", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "o"), "--tile-size", "32"] + extra
    if "EXTRA" in args:
        args[args.index("EXTRA")] = str(b)  # two B rasters for one A
        args[args.index("--b") + 1] = str(a)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geogan: error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_chips_command_missing_file_and_foreign_out_dir(scenes, tmp_path):
    a, b = scenes
    result = CliRunner().invoke(cli, ["chips", "--a", str(tmp_path / "nope.tif"), "--b", str(b),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "nope.tif" in result.stderr and "no such file" in result.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    result = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(foreign),
                                      "--tile-size", "32"])
    assert result.exit_code == 1 and "not a geogan chips export" in result.stderr
    assert (foreign / "keep.txt").exists()

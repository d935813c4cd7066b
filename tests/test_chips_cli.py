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
    # warnings may come first (the fixture's float SAR is ambiguous between power and amplitude)
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("geogan: warning:")]
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


def _db(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-14.0, 4.0, (1, rows, cols)).astype("float32")


def test_units_kinds_and_reasons_in_the_summary(make_raster, tmp_path):
    vv, vh = make_raster("scene_VV.tif", _db(64, 64)), make_raster("scene_VH.tif", _db(64, 64, 1) - 6)
    rgb = make_raster("rgb.tif", _scene(64, 64, 3, "uint8"))
    out = tmp_path / "chips"
    result = CliRunner().invoke(cli, ["chips", "--a", f"{vv},{vh}", "--b", str(rgb), "--out", str(out),
                                      "--tile-size", "32", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("a: sar in db, bands [1, 2] float32 from 1 raster(s): 4 train + 0 val chips; skipped: none")
    assert "kind sar: the names (scene_VV.tif, scene_VH.tif) are SAR polarisations" in lines[1]
    assert "units db:" in lines[1] and "negative" in lines[1]
    assert any(line.startswith("b: optical, bands [1, 2, 3] uint8") for line in lines)
    meta = json.loads((out / "geogan_chips.json").read_text())
    assert meta["domains"]["a"]["units"] == "db" and meta["domains"]["a"]["sources"] == [f"{vv},{vh}"]
    result = CliRunner().invoke(cli, ["chips", "--a", f"{vv},{vh}", "--b", str(rgb), "--out", str(tmp_path / "o2"),
                                      "--tile-size", "32", "--units-a", "linear"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"geogan: error: '{vv},{vh}': stated units linear but 100% of the values are negative, which power cannot be; "
        "these look like dB (use units db)"]
    assert not (tmp_path / "o2").exists()


def test_band_files_given_as_separate_scenes_are_warned_about(make_raster, tmp_path):
    vv, vh = make_raster("p_VV.tif", _db(64, 64)), make_raster("p_VH.tif", _db(64, 64, 1))
    rgb = make_raster("rgb.tif", _scene(64, 64, 3, "uint8"))
    result = CliRunner().invoke(cli, ["chips", "--a", str(vv), "--a", str(vh), "--b", str(rgb),
                                      "--out", str(tmp_path / "c"), "--tile-size", "32", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    assert ("geogan: warning: domain a: 2 one-band files are used as 2 separate one-band scenes, although names "
            "such as 'p_VV.tif' and 'p_VH.tif' differ only by a band suffix") in result.stderr
    assert f"--a {vv},{vh}" in result.stderr


def test_negative_values_dropped_as_linear_sar_get_a_db_hint(make_raster, tmp_path):
    rng = np.random.default_rng(0)
    linear = [make_raster(f"s{i}.tif", rng.gamma(2, 0.05, (2, 64, 64)).astype("float32")) for i in range(4)]
    in_db = make_raster("s1x.tif", np.concatenate([_db(64, 64), _db(64, 64, 1)]))
    a = [linear[0], in_db, *linear[1:]]  # the dB raster is not among the three sampled (first, middle, last)
    rgb = make_raster("rgb.tif", _scene(64, 64, 3, "uint8"))
    result = CliRunner().invoke(cli, ["chips", *sum((["--a", str(p)] for p in a), []), "--b", str(rgb),
                                      "--out", str(tmp_path / "c"), "--tile-size", "32", "--val-fraction", "0",
                                      "--kind-a", "sar"])
    assert result.exit_code == 0, result.output
    assert ("skipped: 4 below --min-valid (4 of them only for negative values, which linear power or amplitude "
            "cannot be: looks like dB, use --units-a db)") in result.stdout


def test_aoi_per_domain_options(make_raster, tmp_path):
    a = make_raster("a.tif", _scene(128, 128, 1, "uint8"))
    b = make_raster("b.tif", _scene(128, 128, 1, "uint8"), origin=(600000.0, 5000000.0))
    box = "POLYGON (({x0} 4999405, {x1} 4999405, {x1} 4999999, {x0} 4999999, {x0} 4999405))"
    out = tmp_path / "c"
    result = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(out), "--tile-size", "32",
                                      "--val-fraction", "0", "--aoi-crs", "EPSG:32633",
                                      "--aoi-a", box.format(x0=500005, x1=500595), "--aoi-b", box.format(x0=600005, x1=600300)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "geogan_chips.json").read_text())
    assert meta["domains"]["a"]["chips"]["train"] == 4 and meta["domains"]["b"]["chips"]["train"] == 2
    assert meta["aoi"]["a"]["wkt"] != meta["aoi"]["b"]["wkt"]
    result = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "c2"),
                                      "--tile-size", "32", "--aoi-crs", "EPSG:32633", "--aoi", box.format(x0=500005, x1=500595)])
    assert result.exit_code == 1 and "does not overlap any domain b raster" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "c2").exists()


def test_scene_lists_globs_and_folders(make_raster, tmp_path):
    folder = tmp_path / "s2"
    folder.mkdir()
    from conftest import write_raster

    for i in range(3):
        write_raster(folder / f"t{i}_B04.tif", _scene(64, 64, 1, "uint16", i))
        write_raster(folder / f"t{i}_B03.tif", _scene(64, 64, 1, "uint16", i + 5))
    listing = tmp_path / "scenes.txt"
    listing.write_text("# one scene per line\n" + "".join(f"s2/t{i}_B04.tif,s2/t{i}_B03.tif\n" for i in range(3)))
    sar = make_raster("sar.tif", np.random.default_rng(0).gamma(2, 0.05, (2, 64, 64)).astype("float32"))
    out = tmp_path / "c"
    result = CliRunner().invoke(cli, ["chips", "--a", str(tmp_path / "sa*.tif"), "--b", f"@{listing}",
                                      "--out", str(out), "--tile-size", "32", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "geogan_chips.json").read_text())
    assert meta["domains"]["b"]["bands"] == [1, 2] and len(meta["domains"]["b"]["sources"]) == 3
    assert meta["domains"]["b"]["resampling"] == "bilinear"  # two reflectance bands, not a class map
    result = CliRunner().invoke(cli, ["chips", "--a", str(sar), "--b", str(folder), "--out", str(tmp_path / "c2"),
                                      "--tile-size", "32", "--val-fraction", "0"])
    assert result.exit_code == 0 and "6 separate one-band scenes" in result.stderr
    result = CliRunner().invoke(cli, ["chips", "--a", str(tmp_path / "nothing*.tif"), "--b", str(sar),
                                      "--out", str(tmp_path / "c3")])
    assert result.exit_code == 1 and "no file matches this pattern" in result.stderr
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("s2/t0_B04.tif\ns2/missing.tif\n")
    result = CliRunner().invoke(cli, ["chips", "--a", str(sar), "--b", f"@{bad_list}", "--out", str(tmp_path / "c4")])
    assert result.exit_code == 1 and "bad.txt' line 2: 's2/missing.tif': no such file" in result.stderr

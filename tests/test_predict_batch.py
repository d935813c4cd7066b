"""Many scenes into a folder: naming, resuming, going on after a failure, the CLI's summary, and
predict refusing to run N times over under torchrun (Ray spreads batches: tests/test_predict_ray.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from conftest import save_tiny_sar_to_rgb_model, scene, write_raster
from geogan import errors
from geogan.cli import cli
from geogan.predict import translate_rasters

OPTS = dict(tile_size=32, overlap=8, device="cpu")


@pytest.fixture
def model_file(tmp_path):
    return save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")


def sar(path: Path, shape=(40, 48), seed=0) -> Path:
    return write_raster(path, (10 ** (scene(shape, lo=-20, hi=0, seed=seed) / 10)).astype(np.float32))


@pytest.fixture
def scenes(tmp_path):
    """Three scenes in three syntaxes: a file, a multi-file scene (VV,VH) and a glob's match, in a list file."""
    d = tmp_path / "in"
    d.mkdir()
    sar(d / "s1.tif", seed=1)
    vv = (10 ** (scene((40, 48), n=1, lo=-20, hi=0, seed=2) / 10)).astype(np.float32)
    write_raster(d / "s2_VV.tif", vv)
    write_raster(d / "s2_VH.tif", vv * 0.3)
    sar(d / "s3.tif", shape=(50, 37), seed=3)
    listing = tmp_path / "scenes.txt"
    listing.write_text("# three scenes\nin/s1.tif\nin/s2_VV.tif,in/s2_VH.tif\n\nin/s3.tif\n")
    return listing


def valid_output(path: Path, shape) -> bool:
    with rasterio.open(path) as ds:
        return (ds.count, ds.height, ds.width, ds.dtypes[0]) == (3,) + tuple(shape) + ("uint8",) and \
            ds.read().any()


def debris(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- the API

def test_one_output_per_scene_then_a_rerun_skips_them(tmp_path, model_file, scenes):
    out = tmp_path / "out"
    result = translate_rasters(model_file, [f"@{scenes}"], out, **OPTS)
    assert [o.status for o in result.outcomes] == ["written"] * 3 and result.ok
    assert sorted(p.name for p in out.iterdir()) == ["collection.json", "s1.json", "s1.tif", "s2.json", "s2.tif",
                                                     "s3.json", "s3.tif"]  # each with its STAC item (geogan.stac)
    assert valid_output(out / "s2.tif", (40, 48)) and valid_output(out / "s3.tif", (50, 37))
    assert result.outcomes[1].scene.endswith("s2_VV.tif," + str(tmp_path / "in" / "s2_VH.tif"))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = translate_rasters(model_file, [f"@{scenes}"], out, **OPTS)
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    forced = translate_rasters(model_file, [str(tmp_path / "in" / "s1.tif")], out, overwrite=True, **OPTS)
    assert [o.status for o in forced.outcomes] == ["written"]


def test_an_interrupted_batch_resumes_where_it_stopped(tmp_path, model_file, scenes):
    out = tmp_path / "out"

    class StopAfterFirstScene:
        def update(self, done, total, message=""):
            self.done = done

        def cancelled(self):
            return getattr(self, "done", 0) >= 1  # the second scene is under way

    with pytest.raises(errors.Cancelled):
        translate_rasters(model_file, [f"@{scenes}"], out, progress=StopAfterFirstScene(), **OPTS)
    # the finished scene with its STAC item; no collection.json: the batch never reached its end
    assert sorted(p.name for p in out.iterdir()) == ["s1.json", "s1.tif"] and debris(out) == []
    result = translate_rasters(model_file, [f"@{scenes}"], out, **OPTS)
    assert [o.status for o in result.outcomes] == ["skipped", "written", "written"]


def test_a_failing_scene_does_not_stop_the_batch(tmp_path, model_file):
    d = tmp_path / "in"
    d.mkdir()
    sar(d / "a.tif")
    write_raster(d / "b.tif", scene((30, 30), n=3))          # 3 bands for a 2-band model
    (d / "c.tif").write_bytes(b"II*\x00 not really a tiff")  # unreadable
    sar(d / "d.tif", seed=4)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "e.tif").write_bytes(b"someone else's file")      # exists, not a prediction of e
    sar(d / "e.tif", seed=5)
    result = translate_rasters(model_file, [str(d)], out, **OPTS)
    status = {Path(o.scene).name: o.status for o in result.outcomes}
    assert status == {"a.tif": "written", "b.tif": "failed", "c.tif": "failed", "d.tif": "written",
                      "e.tif": "failed"}
    errors_by = {Path(o.scene).name: o.error for o in result.failed}
    assert "model expects 2 band(s)" in errors_by["b.tif"]
    assert "c.tif" in errors_by["c.tif"] and "not a readable raster" in errors_by["c.tif"]
    assert "exists but is not a complete prediction" in errors_by["e.tif"] and "--overwrite" in errors_by["e.tif"]
    assert (out / "e.tif").read_bytes() == b"someone else's file"
    assert not (out / "b.tif").exists() and not (out / "c.tif").exists() and debris(out) == []
    assert not result.ok and "2 written, 0 skipped (already complete), 3 failed" in result.summary()


def test_two_scenes_with_the_same_output_name_are_refused_up_front(tmp_path, model_file):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a, b = sar(tmp_path / "x" / "same.tif"), sar(tmp_path / "y" / "same.tif")
    with pytest.raises(errors.ConfigError, match="would both be written to"):
        translate_rasters(model_file, [str(a), str(b)], tmp_path / "out", **OPTS)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- the CLI

def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_batch_summary_and_failures(tmp_path, model_file, scenes):
    (tmp_path / "in" / "broken.tif").write_bytes(b"not a raster")
    res = run("predict", model_file, str(tmp_path / "in" / "s[13].tif"), tmp_path / "in" / "broken.tif",
              f"{tmp_path / 'out'}/", "--tile-size", 32, "--overlap", 8, "--device", "cpu")
    assert res.exit_code == 1
    assert "geogan predict: 3 scene(s)" in res.stdout and "2 written" in res.stdout and "1 failed" in res.stdout
    errors_ = [line for line in res.stderr.splitlines() if line.startswith("geogan: error:")]
    assert len(errors_) == 1 and "broken.tif" in errors_[0] and "not a readable raster" in errors_[0]
    assert errors_[0].count("broken.tif") == 2  # the file, and GDAL's own words about it
    res = run("predict", model_file, f"@{scenes}", f"{tmp_path / 'out2'}/", "--tile-size", 32, "--overlap", 8)
    assert res.exit_code == 0, res.output
    assert "3 written, 0 skipped" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out2").glob("*.tif")) == ["s1.tif", "s2.tif", "s3.tif"]


def test_cli_several_scenes_need_an_output_folder(tmp_path, model_file, scenes):
    res = run("predict", model_file, f"@{scenes}", tmp_path / "out.tif")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "3 scenes need an output folder" in res.stderr
    assert not (tmp_path / "out.tif").exists()
    res = run("predict", model_file, str(tmp_path / "in" / "nothing*.tif"), f"{tmp_path / 'out'}/")
    assert res.exit_code == 1 and "no file matches" in res.stderr


# --------------------------------------------------------------------------- torchrun

def test_predict_under_torchrun_is_refused_in_one_line(tmp_path, model_file, scenes, monkeypatch):
    """N torchrun processes would each translate every scene: prediction is spread by --engine ray."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    res = run("predict", model_file, f"@{scenes}", f"{tmp_path / 'out'}/", "--device", "cpu")
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "--engine ray" in res.stderr and "torchrun" in res.stderr
    assert not (tmp_path / "out").exists()

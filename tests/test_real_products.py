"""Issue 9's "done when", end to end on real products: the BigEarthNet Sentinel-1 (float32 dB, one
file per polarisation) and Sentinel-2 L2A (uint16, one file per band at 10/20 m) patches in
sample_data/bigearthnet/ — six co-located pairs in four UTM zones (see its README.md).

chips → tiny training → predict → evaluate, unpaired (CycleGAN) and paired (Pix2Pix), through the
command line as a user runs it (subprocess) where what the user sees matters, and the API where
only the result does. Each chain checks: kinds and units recorded (sar/db, optical), the output on
the input's exact grid (CRS, transform, shape), every valid input pixel valid in the output, and
finite scores against the real Sentinel-2 patch. Also: a dB scene given to a model trained on
linear power, 10 and 20 m bands as one scene, a /vsizip/ scene, a batch stopped by SIGTERM and
resumed, and --val-fraction on the six patches. (Chip-level checks of the same products are in
test_chips_real.py, predictor-level ones with untrained models in test_predict_inputs.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import TINY_TRAINING, geogan_env, run_geogan, write_raster

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent / "sample_data" / "bigearthnet"
S1_PATCHES = sorted(p.name for p in (ROOT / "s1").iterdir() if p.is_dir()) if (ROOT / "s1").is_dir() else []
pytestmark = pytest.mark.skipif(len(S1_PATCHES) != 6, reason="the BigEarthNet sample patches are not in sample_data/")
PREDICT = ["--tile-size", "32", "--overlap", "8", "--device", "cpu"]


def s1_scene(patch: str, folder: Path = ROOT / "s1") -> str:
    """The patch's VV and VH files, comma-joined: one 2-band scene."""
    return ",".join(str(folder / patch / f"{patch}_{pol}.tif") for pol in ("VV", "VH"))


def s2_of(s1_patch: str) -> str:
    meta = json.loads((ROOT / "s1" / s1_patch / f"{s1_patch}_labels_metadata.json").read_text())
    return meta["corresponding_s2_patch"]


def s2_scene(patch: str, bands=("B04", "B03", "B02")) -> str:
    return ",".join(str(ROOT / "s2" / patch / f"{patch}_{b}.tif") for b in bands)


def grid(path: str):
    """(CRS, transform, shape) of a file or of a scene's first file (the finest grid here)."""
    with rasterio.open(path.split(",")[0]) as ds:
        return ds.crs, ds.transform, ds.shape


def assert_complete_on_grid(out: Path, scene: str, count: int, dtype: str) -> np.ndarray:
    """The output lies on the scene's exact grid and no pixel is lost: every pixel of these patches
    is valid, so every output pixel is valid (mask 255, never the nodata value)."""
    assert grid(str(out)) == grid(scene)
    with rasterio.open(out) as ds:
        data, masks = ds.read(), ds.read_masks()
        assert (ds.count, ds.dtypes[0]) == (count, dtype)
        assert (masks == 255).all()
        if ds.nodata is not None:
            assert not (np.isnan(data).any() if np.isnan(ds.nodata) else (data == ds.nodata).any())
    return data


def chips_cli(out: Path, a: list[str], b: list[str], *extra) -> subprocess.CompletedProcess:
    args = ["chips", "--out", out, "--tile-size", 120, *extra]
    for scene in a:
        args += ["--a", scene]
    for scene in b:
        args += ["--b", scene]
    res = run_geogan(*args)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return res


def train_tiny(chips: Path, out: Path, **overrides) -> Path:
    from geogan.trainer import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Path(train(dict(TINY_TRAINING, data=str(chips), out=str(out), **overrides)))
    finally:
        torch.set_num_threads(threads)


def evaluate_json(prediction, truth: str) -> dict:
    res = run_geogan("evaluate", prediction, truth, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def assert_finite_scores(report: dict, pixels: int = 120 * 120) -> None:
    """Every pixel compared, and finite scores (the spectral angle needs 3+ bands)."""
    assert report["pixels"] == pixels
    keys = ("mae", "rmse", "psnr", "ssim") + (("sam",) if len(report["bands"]) >= 3 else ())
    for key in keys:
        assert isinstance(report[key], float) and np.isfinite(report[key]), (key, report[key])
    assert report["mae"] > 0  # a translation, not a copy of the truth


# --------------------------------------------------------------------------- unpaired: CycleGAN

@pytest.fixture(scope="module")
def unpaired(tmp_path_factory):
    """S1 (VV,VH in dB) and S2 (B04,B03,B02) of the six patches as unpaired domains, 120-px chips with
    --val-fraction 0.1, and a tiny CycleGAN trained on them."""
    root = tmp_path_factory.mktemp("unpaired")
    res = chips_cli(root / "chips", [s1_scene(p) for p in S1_PATCHES], [s2_scene(s2_of(p)) for p in S1_PATCHES],
                    "--val-fraction", 0.1)
    return root, res, train_tiny(root / "chips", root / "run")


def test_val_fraction_on_the_six_patches_is_one_whole_patch_and_said(unpaired):
    root, res, _ = unpaired
    meta = json.loads((root / "chips" / "geogan_chips.json").read_text())
    for d in ("a", "b"):
        assert meta["domains"][d]["chips"] == {"train": 5, "val": 1}
        val = [p.name for p in (root / "chips" / f"val_{d}").iterdir()]
        assert len(val) == 1 and val[0].endswith("_r000000_c000000.tif")  # a whole patch, not a piece
    warnings = [line for line in res.stderr.splitlines() if line.startswith("geogan: warning: ")]
    assert any("1 of 6 rasters = 17 %" in w and "asked 10 %" in w for w in warnings), res.stderr


def test_unpaired_s1_db_to_s2_chain(unpaired, tmp_path):
    root, res, model = unpaired
    from geogan.modelfile import load_model

    # kinds and units found, said and recorded, from the chips to the model file
    assert "a: sar" in res.stdout and "b: optical" in res.stdout, res.stdout
    meta = json.loads((root / "chips" / "geogan_chips.json").read_text())
    assert (meta["domains"]["a"]["kind"], meta["domains"]["a"]["units"]) == ("sar", "db")
    assert (meta["domains"]["b"]["kind"], meta["domains"]["b"]["dtype"]) == ("optical", "uint16")
    m = load_model(model)
    a, b = m.domains["a"], m.domains["b"]
    assert (a.kind, a.units, a.dtype, a.count) == ("sar", "db", "float32", 2)
    assert (b.kind, b.dtype, b.count) == ("optical", "uint16", 3) and a.resolution == (10.0, 10.0)

    # the held-out patch (never trained on) through the command line: S1 -> S2 RGB
    held_out = next(p for p in S1_PATCHES if (root / "chips" / "val_a" / f"{p}_r000000_c000000.tif").exists())
    scene = s1_scene(held_out)
    out = tmp_path / "s2_from_s1.tif"
    done = run_geogan("predict", model, scene, out, *PREDICT)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # dB as trained: nothing to warn about
    assert_complete_on_grid(out, scene, 3, "uint16")
    with rasterio.open(out) as ds:
        assert ds.tags()["GEOGAN_DIRECTION"] == "a2b"
    report = evaluate_json(out, s2_scene(s2_of(held_out)))  # the real co-located S2 patch as truth
    assert_finite_scores(report)

    # and back: S2 band files -> S1 in dB, through the API
    from geogan.predict import translate_raster

    s2 = s2_scene(s2_of(held_out))
    back = translate_raster(model, s2, tmp_path / "s1_from_s2.tif", direction="b2a", tile_size=32, overlap=8,
                            device="cpu")
    db = assert_complete_on_grid(back.path, s2, 2, "float32")
    assert np.isfinite(db).all() and (db < 0).mean() > 0.5  # dB backscatter: mostly negative, as trained
    assert_finite_scores(evaluate_json(back.path, scene), pixels=120 * 120)


def test_a_vsizip_scene_gives_what_the_plain_files_give(unpaired, tmp_path):
    _, _, model = unpaired
    patch = S1_PATCHES[0]
    pack = tmp_path / "s1.zip"
    with zipfile.ZipFile(pack, "w") as z:
        for pol in ("VV", "VH"):
            z.write(ROOT / "s1" / patch / f"{patch}_{pol}.tif", f"{patch}/{patch}_{pol}.tif")
    zipped = ",".join(f"/vsizip/{pack}/{patch}/{patch}_{pol}.tif" for pol in ("VV", "VH"))
    for name, scene in (("plain.tif", s1_scene(patch)), ("zipped.tif", zipped)):
        res = run_geogan("predict", model, scene, tmp_path / name, *PREDICT)
        assert res.returncode == 0, res.stderr
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "zipped.tif") as b:
        assert (a.crs, a.transform) == (b.crs, b.transform)
        np.testing.assert_array_equal(a.read(), b.read())


# --------------------------------------------------------------------------- paired: Pix2Pix

@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """S1 patch i with its own S2 patch, --paired chips, and a tiny Pix2Pix."""
    root = tmp_path_factory.mktemp("paired")
    chips_cli(root / "chips", [s1_scene(p) for p in S1_PATCHES], [s2_scene(s2_of(p)) for p in S1_PATCHES],
              "--paired", "--val-fraction", 0)
    meta = json.loads((root / "chips" / "geogan_chips.json").read_text())
    assert meta["paired"] is True and meta["domains"]["a"]["chips"]["train"] == 6
    return root, train_tiny(root / "chips", root / "run", model="pix2pix")


WAIT_AFTER = """
import sys, time
from pathlib import Path
import geogan.predict.batch as batch
from geogan.cli.signals import stop_requested

marker, stop_after = Path(sys.argv.pop(1)), int(sys.argv.pop(1))
real_one = batch.translate_one
finished = []

def one_then_wait(*args, **kwargs):
    '''The real per-scene step; after the k-th scene, say so and hold until the test's SIGTERM.'''
    outcome = real_one(*args, **kwargs)
    finished.append(outcome)
    if len(finished) == stop_after:
        marker.write_text(str(len(finished)))
        while not stop_requested():
            time.sleep(0.01)
    return outcome

batch.translate_one = one_then_wait
from geogan.cli import main
sys.argv[0] = "geogan"
main()
"""


def test_paired_chain_as_a_batch_stopped_by_sigterm_and_resumed(paired, tmp_path):
    """geogan predict MODEL @scenes.txt OUT/ over the six S1 patches; SIGTERM after the second scene
    (exit 143, two finished outputs, nothing else); the rerun skips those two and writes the rest;
    every output is on its scene's grid with no pixel lost and scores finitely against its S2 patch."""
    root, model = paired
    from geogan.modelfile import load_model

    m = load_model(model)
    assert m.directions == ["a2b"] and m.architecture["model"] == "pix2pix"
    assert (m.domains["a"].kind, m.domains["a"].units, m.domains["b"].kind) == ("sar", "db", "optical")
    listing = tmp_path / "scenes.txt"
    listing.write_text("".join(f"{s1_scene(p)}\n" for p in S1_PATCHES))
    out = tmp_path / "out"
    script, marker = tmp_path / "geogan_wait.py", tmp_path / "two-done"
    script.write_text(WAIT_AFTER)
    proc = subprocess.Popen([sys.executable, str(script), str(marker), "2", "predict", str(model), f"@{listing}",
                             f"{out}/", *PREDICT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=geogan_env())
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch never finished two scenes"
            time.sleep(0.05)
        proc.terminate()  # SIGTERM, as a scheduler sends it
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and "geogan: stopped by SIGTERM" in err and "Traceback" not in err, err
    first = sorted(p for p in out.iterdir() if p.suffix != ".json")  # each output's STAC item beside it
    assert [p.name for p in first] == [f"{p}.tif" for p in S1_PATCHES[:2]]  # no temporary file, no lock
    assert sorted(p.name for p in out.glob("*.json")) == [f"{p}.json" for p in S1_PATCHES[:2]]
    stamps = {p.name: p.stat().st_mtime_ns for p in first}

    again = run_geogan("predict", model, f"@{listing}", f"{out}/", *PREDICT)
    assert again.returncode == 0, again.stderr
    assert "4 written, 2 skipped" in again.stdout, again.stdout
    outputs = sorted(out.glob("*.tif"))
    assert len(outputs) == 6 and {p.name: p.stat().st_mtime_ns for p in outputs if p.name in stamps} == stamps
    assert len(list(out.glob("*.json"))) == 7  # six STAC items and the collection
    for patch in S1_PATCHES:
        scene = s1_scene(patch)
        result = out / f"{patch}.tif"  # a VV,VH scene is named after the part the files share
        assert_complete_on_grid(result, scene, 3, "uint16")
        assert_finite_scores(evaluate_json(result, s2_scene(s2_of(patch))))


# --------------------------------------------------------------------------- a linear-power model

@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """The six S1 patches converted to linear power (10^(dB/10), one file per polarisation, as SNAP
    writes calibrated sigma0) and S2 B04 (10 m) with B05 (20 m) as one 2-band scene; chips through the
    API and a tiny CycleGAN."""
    from geogan.chips import export_chips

    root = tmp_path_factory.mktemp("linear")
    for patch in S1_PATCHES:
        (root / "s1" / patch).mkdir(parents=True)
        for pol in ("VV", "VH"):
            with rasterio.open(ROOT / "s1" / patch / f"{patch}_{pol}.tif") as ds:
                db, profile = ds.read(1), ds.profile
            write_raster(root / "s1" / patch / f"{patch}_{pol}.tif", (10 ** (db / 10)).astype(np.float32),
                         crs=profile["crs"], transform=profile["transform"])
    summary = export_chips([s1_scene(p, root / "s1") for p in S1_PATCHES],
                           [s2_scene(s2_of(p), ("B04", "B05")) for p in S1_PATCHES], root / "chips",
                           tile_size=120, val_fraction=0)
    return root, summary, train_tiny(root / "chips", root / "run")


def test_a_db_scene_given_to_a_linear_model(linear, tmp_path):
    root, summary, model = linear
    assert (summary.domains["a"].kind, summary.domains["a"].units) == ("sar", "linear")
    patch = S1_PATCHES[1]
    db_scene, linear_scene = s1_scene(patch), s1_scene(patch, root / "s1")
    res = run_geogan("predict", model, db_scene, tmp_path / "from_db.tif", *PREDICT)
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("geogan: warning: ")]
    assert len(warning) == 1 and "SAR in dB" in warning[0] and "trained on linear power" in warning[0], res.stderr
    assert "converting" in warning[0]
    from_db = assert_complete_on_grid(tmp_path / "from_db.tif", db_scene, 2, "uint16")  # never 100 % nodata
    res = run_geogan("predict", model, linear_scene, tmp_path / "from_linear.tif", *PREDICT)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    from_linear = assert_complete_on_grid(tmp_path / "from_linear.tif", linear_scene, 2, "uint16")
    # the same backscatter in other units: the same translation (up to float rounding of the conversion)
    assert np.abs(from_db.astype(np.int64) - from_linear.astype(np.int64)).max() <= 1


def test_10_and_20_m_bands_as_one_scene(linear, tmp_path):
    """Domain B is B04 (10 m, 120 px) with B05 (20 m, 60 px): chips and predictions on the 10 m grid."""
    root, summary, model = linear
    b = summary.domains["b"]
    assert b.count == 2 and b.resolution == (10.0, 10.0) and b.dtype == "uint16"
    patch = s2_of(S1_PATCHES[2])
    scene = s2_scene(patch, ("B04", "B05"))
    with rasterio.open(root / "chips" / "train_b" / f"{patch}_r000000_c000000.tif") as chip:
        assert chip.shape == (120, 120) and chip.res == (10.0, 10.0)
    res = run_geogan("predict", model, scene, tmp_path / "s1.tif", "--direction", "b2a", *PREDICT)
    assert res.returncode == 0, res.stderr
    power = assert_complete_on_grid(tmp_path / "s1.tif", scene, 2, "float32")  # B04's 10 m grid
    assert (power > 0).all()  # linear power, as the model's SAR domain
    assert_finite_scores(evaluate_json(tmp_path / "s1.tif", s1_scene(S1_PATCHES[2], root / "s1")), pixels=120 * 120)

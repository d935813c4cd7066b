"""The fault corpus (issue 12): the real command line, run as a user runs it
(``python -m geogan`` in a subprocess, stderr not a terminal), on malformed inputs and faults.

Each case states what a user must see: the exit status (1 for bad input; 0 where the input is
usable, and then the output is checked), exactly one ``geogan: error: ...`` line on stderr for an
error and nothing else but the warnings the case expects (no progress bar, no GDAL or libtiff
line, no traceback), no temporary file, lock or half-written destination left anywhere under the
case's folder, and a previous output byte-for-byte intact. The sparse BigTIFF (4.9 gigapixels)
has its own two tests at the end.

Inputs are tiny rasters, models and chips made here; the model is a network as initialised (no
training); the one training for ``--resume`` cases runs in-process once per module."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from conftest import (TINY_TRAINING, fill_up, geogan_env, largest_zip_record, make_chips, make_spec, run_geogan, scene,
                      write_raster)

torch = pytest.importorskip("torch")

TILE = ["--tile-size", "32", "--overlap", "8", "--device", "cpu"]
#: A grid rotated by 30° about its origin (10 m pixels): a valid, if rare, geotransform.
ROTATED = Affine.translation(500000.0, 5000000.0) * Affine.rotation(30) * Affine.scale(10.0, -10.0)


def odd_name(folder: Path, name: bytes) -> Path:
    """A path whose last part is ``name`` (bytes that need not be UTF-8)."""
    return Path(os.fsdecode(os.fsencode(str(folder)) + b"/" + name))


def debris(root: Path) -> list[str]:
    """Temporary files, work folders and lock files of geogan anywhere under ``root``."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            if ".geogan-" in name or name.endswith((".part", ".geogan.lock")) or ".part." in name:
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


# ------------------------------------------------------------------------------------------ the kit

@dataclass
class Kit:
    """What the cases share (made once): a model file, a clean input, B rasters, chips, a trained run."""

    root: Path
    model: Path           # generic float32 1 band -> optical uint8 3 bands (nodata 0), tile multiple 4
    clean: Path           # 64 x 64 float32, all valid
    b: Path               # 64 x 64 uint8 RGB for chips' domain B
    chips: Path           # a chips export (2-band SAR -> 3-band uint8) for training
    config: Path          # TINY_TRAINING as YAML
    run: Path             # a finished tiny training of ``chips`` (checkpoint.pt, model.geogan)


def _save_model(path: Path, mutate: Optional[Callable[[dict], None]] = None) -> Path:
    from geogan.modelfile import TranslationModel, save_model
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    a = make_spec("generic", 1, "float32", lo=0.1, hi=0.9)
    b = make_spec("optical", 3, "uint8", nodata=0, lo=10, hi=240)
    arch = {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
    save_model(TranslationModel({"a": a, "b": b}, {"a2b": build_generator("resnet_6blocks", 1, 3, ngf=4)}, arch),
               path)
    if mutate is not None:
        payload = torch.load(path, weights_only=True)
        mutate(payload)
        torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Kit:
    import yaml

    from geogan.trainer import train

    root = tmp_path_factory.mktemp("kit")
    chips = make_chips(root / "chips", n_train=2)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(TINY_TRAINING)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dict(TINY_TRAINING, data=str(chips), out=str(root / "run")))
    finally:
        torch.set_num_threads(threads)
    return Kit(root=root, model=_save_model(root / "model.geogan"),
               clean=write_raster(root / "clean.tif", scene((64, 64), n=1)),
               b=write_raster(root / "b.tif", (scene((64, 64), n=3, seed=1) * 250).astype(np.uint8)),
               chips=chips, config=config, run=root / "run")


# ------------------------------------------------------------------------------------------ inputs

def truncated(path: Path) -> Path:
    """A tiled GeoTIFF whose header is intact and whose second half of pixel data is gone."""
    profile = dict(driver="GTiff", width=512, height=512, count=1, dtype="float32", crs="EPSG:32633",
                   transform=Affine(10, 0, 5e5, 0, -10, 5e6), tiled=True, blockxsize=64, blockysize=64,
                   compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(scene((512, 512), n=1))
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def wrong_magic(path: Path) -> Path:
    path.write_text("station,value\nA,1\n")  # a CSV someone named .tif
    return path


def rotated(path: Path) -> Path:
    return write_raster(path, scene((64, 64), n=1, seed=3), transform=ROTATED)


NON_FINITE = {(3, 3): np.nan, (10, 40): np.inf, (50, 20): -np.inf, (63, 63): np.nan}


def non_finite(path: Path) -> Path:
    data = scene((64, 64), n=1, seed=4)
    for (r, c), v in NON_FINITE.items():
        data[0, r, c] = v
    return write_raster(path, data)


def one_pixel(path: Path) -> Path:
    return write_raster(path, scene((1, 1), n=1, seed=5))


def readable(path) -> tuple[np.ndarray, np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks(), dict(ds.profile)


def same_grid(out, src) -> None:
    with rasterio.open(out) as o, rasterio.open(src) as s:
        assert (o.crs, o.transform, o.shape) == (s.crs, s.transform, s.shape)


def input_validity(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.isfinite(ds.read(1)) & (ds.read_masks(1) > 0)


def check_prediction(out: Path, src: Path) -> None:
    """The output is on the input's grid, 3 uint8 bands, nodata exactly where the input is invalid."""
    same_grid(out, src)
    data, masks, profile = readable(out)
    assert (profile["count"], profile["dtype"], profile["nodata"]) == (3, "uint8", 0)
    valid = input_validity(src)
    np.testing.assert_array_equal(masks > 0, np.broadcast_to(valid, masks.shape))
    assert (data[:, valid] != 0).all() and (data[:, ~valid] == 0).all()


# ------------------------------------------------------------------------------------------ cases

@dataclass
class Case:
    """One run of the CLI and what the user must see."""

    args: list
    code: int = 1
    needles: tuple = ()                   # substrings of the one error line
    absent: tuple = ()                    # paths that must not exist afterwards
    intact: dict = field(default_factory=dict)   # path -> bytes it must still hold
    check: Optional[Callable[[subprocess.CompletedProcess], None]] = None  # exit 0: is the output right?
    warns: tuple = ()                     # substrings of the warnings expected on stderr, one line each


CASES: dict[str, Callable[..., Case]] = {}


def case(name: str):
    def register(build):
        CASES[name] = build
        return build
    return register


def snapshot(*paths: Path) -> dict:
    return {p: p.read_bytes() for p in paths}


def tree(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- damaged or unreadable inputs, in every command that reads rasters

BROKEN = {"truncated": (truncated, ("truncated or damaged",)),
          "zero-byte": (zero_bytes, ("not a readable raster",)),
          "wrong-magic": (wrong_magic, ("not a readable raster",))}

for _kind, (_make, _needles) in BROKEN.items():
    def _predict(kit, tmp, request, make=_make, needles=_needles):
        src = make(tmp / "bad.tif")
        return Case(["predict", kit.model, src, tmp / "out.tif", *TILE], needles=("bad.tif",) + needles,
                    absent=(tmp / "out.tif",))

    def _chips(kit, tmp, request, make=_make, needles=_needles):
        src = make(tmp / "bad.tif")
        return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "chips", "--tile-size", 32, "--kind-a", "dsm",
                     "--val-fraction", 0], needles=("bad.tif",) + needles, absent=(tmp / "chips",))

    def _evaluate(kit, tmp, request, make=_make, needles=_needles):
        src = make(tmp / "bad.tif")
        truth = write_raster(tmp / "truth.tif", scene((512, 512), n=1))  # the grid the truncated file declares
        return Case(["evaluate", src, truth], needles=("bad.tif",) + needles)

    case(f"predict-{_kind}")(_predict)
    case(f"chips-{_kind}")(_chips)
    case(f"evaluate-{_kind}")(_evaluate)


# --- odd but valid rasters: usable, so exit 0 with a right output

@case("predict-rotated-geotransform")
def _(kit, tmp, request):
    src = rotated(tmp / "rot.tif")

    def check(res):
        check_prediction(tmp / "out.tif", src)
        with rasterio.open(tmp / "out.tif") as ds:
            assert ds.transform == ROTATED  # the rotation is kept, not dropped or resampled away
    return Case(["predict", kit.model, src, tmp / "out.tif", *TILE], code=0, check=check)


@case("chips-rotated-geotransform-and-aoi")
def _(kit, tmp, request):
    """The AOI is the footprint of pixels 40-56 of the rotated grid: with 32-px chips every 16 px
    (offsets 0, 16, 32), exactly the 4 windows holding them, on the rotated grid (an AOI judged from two-corner bounds
    kept windows outside it)."""
    import shapely

    src = rotated(tmp / "rot.tif")
    wkt = shapely.Polygon([ROTATED * xy for xy in ((40, 40), (56, 40), (56, 56), (40, 56))]).wkt

    def check(res):
        chips = sorted(p.name for p in (tmp / "chips" / "train_a").iterdir())
        assert chips == [f"rot_r{r:06d}_c{c:06d}.tif" for r in (16, 32) for c in (16, 32)]
        with rasterio.open(tmp / "chips" / "train_a" / chips[3]) as chip, rasterio.open(src) as ds:
            window = Window(32, 32, 32, 32)
            assert chip.transform == window_transform(window, ROTATED) and chip.crs == ds.crs
            np.testing.assert_array_equal(chip.read(), ds.read(window=window))
        assert len(list((tmp / "chips" / "train_b").iterdir())) == 9
    return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "chips", "--tile-size", 32, "--stride", 16,
                 "--val-fraction", 0, "--kind-a", "dsm", "--aoi-a", wkt, "--aoi-crs", "EPSG:32633"], code=0,
                check=check)


@case("evaluate-rotated-against-north-up")
def _(kit, tmp, request):
    src = rotated(tmp / "rot.tif")
    return Case(["evaluate", src, kit.clean], needles=("not on the same grid", "transform (8.66"))


@case("predict-nan-inf")
def _(kit, tmp, request):
    src = non_finite(tmp / "nan.tif")
    return Case(["predict", kit.model, src, tmp / "out.tif", *TILE], code=0,
                check=lambda res: check_prediction(tmp / "out.tif", src))


@case("chips-nan-inf")
def _(kit, tmp, request):
    """NaN and ±Inf are invalid: left out of the statistics, and invalid again when a chip is read
    for training; chips keep the source values unchanged."""
    src = non_finite(tmp / "nan.tif")

    def check(res):
        meta = json.loads((tmp / "chips" / "geogan_chips.json").read_text())
        stats = meta["domains"]["a"]["stats"][0]
        assert stats["count"] == 64 * 64 - len(NON_FINITE)
        assert all(np.isfinite(stats[k]) for k in ("mean", "std", "min", "max", "p2", "p98"))
        from geogan.raster import open_raster, read_window, valid_mask

        with open_raster(tmp / "chips" / "train_a" / "nan_r000000_c000000.tif") as ds:
            data, masks = read_window(ds, [1])
            valid = valid_mask(ds, data, masks, meta["domains"]["a"]["kind"], meta["domains"]["a"]["units"])
        assert not valid[3, 3] and valid.sum() == 32 * 32 - 1
    # units stated: these float values are as plausible as amplitude as power (a warning this case is not about)
    return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "chips", "--tile-size", 32, "--val-fraction", 0,
                 "--units-a", "linear"], code=0, check=check)


@case("evaluate-nan-inf")
def _(kit, tmp, request):
    src = non_finite(tmp / "nan.tif")
    clean = write_raster(tmp / "clean.tif", scene((64, 64), n=1, seed=4))  # the same pixels, all finite

    def check(res):
        report = json.loads(res.stdout)
        assert report["pixels"] == 64 * 64 - len(NON_FINITE) and report["mae"] == 0.0 and report["ssim"] == 1.0
    return Case(["evaluate", src, clean, "--json"], code=0, check=check)


@case("predict-1x1")
def _(kit, tmp, request):
    src = one_pixel(tmp / "one.tif")
    return Case(["predict", kit.model, src, tmp / "out.tif", *TILE], code=0,
                check=lambda res: check_prediction(tmp / "out.tif", src))


@case("chips-1x1")
def _(kit, tmp, request):
    src = one_pixel(tmp / "one.tif")
    return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "chips", "--tile-size", 16, "--units-a", "linear"],
                needles=("one.tif", "smaller than one 16x16 tile", "--tile-size"), absent=(tmp / "chips",))


@case("evaluate-1x1")
def _(kit, tmp, request):
    src = one_pixel(tmp / "one.tif")

    def check(res):
        report = json.loads(res.stdout)
        assert report["pixels"] == 1 and report["mae"] == 0.0
        assert report["ssim"] is None  # undefined on one pixel: said, not made up
    return Case(["evaluate", src, src, "--json"], code=0, check=check)


# --- paths: not UTF-8, with spaces, read-only, full, the input itself

NON_UTF8 = b"caf\xe9 \xff.tif"


@case("predict-non-utf8-input")
def _(kit, tmp, request):
    src = odd_name(tmp, NON_UTF8)
    shutil.copyfile(kit.clean, src)
    return Case(["predict", kit.model, src, tmp / "out.tif", *TILE], needles=("not valid UTF-8", "caf\\xe9"),
                absent=(tmp / "out.tif",))


@case("predict-non-utf8-output")
def _(kit, tmp, request):
    out = odd_name(tmp, NON_UTF8)
    return Case(["predict", kit.model, kit.clean, out, *TILE], needles=("not valid UTF-8",), absent=(out,))


@case("chips-non-utf8-input")
def _(kit, tmp, request):
    src = odd_name(tmp, NON_UTF8)
    shutil.copyfile(kit.clean, src)
    return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "chips", "--tile-size", 32],
                needles=("not valid UTF-8",), absent=(tmp / "chips",))


@case("chips-non-utf8-output")
def _(kit, tmp, request):
    out = odd_name(tmp, b"chips-\xff")
    return Case(["chips", "--a", kit.clean, "--b", kit.b, "--out", out, "--tile-size", 32],
                needles=("not valid UTF-8",), absent=(out,))


@case("evaluate-non-utf8-input")
def _(kit, tmp, request):
    src = odd_name(tmp, NON_UTF8)
    shutil.copyfile(kit.clean, src)
    return Case(["evaluate", src, kit.clean], needles=("not valid UTF-8",))


@case("train-non-utf8-output")
def _(kit, tmp, request):
    out = odd_name(tmp, b"run-\xff")
    return Case(["train", kit.config, "--data", kit.chips, "--out", out], needles=("not valid UTF-8", "--out"),
                absent=(out,))


@case("predict-spaces-in-paths")
def _(kit, tmp, request):
    folder = tmp / "my scenes"
    folder.mkdir()
    src = non_finite(folder / "scene 1.tif")
    out = folder / "scene 1 (rgb).tif"
    return Case(["predict", kit.model, src, out, *TILE], code=0, check=lambda res: check_prediction(out, src))


@case("chips-spaces-in-paths")
def _(kit, tmp, request):
    folder = tmp / "my scenes"
    folder.mkdir()
    src = write_raster(folder / "scene 1.tif", scene((64, 64), n=1))
    out = tmp / "my chips"

    def check(res):
        meta = json.loads((out / "geogan_chips.json").read_text())
        assert meta["domains"]["a"]["sources"] == [str(src)]
        assert sorted(p.name for p in (out / "train_a").iterdir())[0] == "scene 1_r000000_c000000.tif"
    return Case(["chips", "--a", src, "--b", kit.b, "--out", out, "--tile-size", 32, "--val-fraction", 0,
                 "--units-a", "linear"], code=0, check=check)


@case("evaluate-spaces-in-paths")
def _(kit, tmp, request):
    folder = tmp / "my scenes"
    folder.mkdir()
    src = shutil.copyfile(kit.clean, folder / "truth 1.tif")

    def check(res):
        report = json.loads(res.stdout)
        assert report["truth"].endswith("truth 1.tif") and report["mae"] == 0.0
    return Case(["evaluate", kit.clean, src, "--json"], code=0, check=check)


@case("predict-readonly-destination")
def _(kit, tmp, request):
    folder = request.getfixturevalue("make_readonly_dir")({"out.tif": kit.clean.read_bytes()})
    return Case(["predict", kit.model, kit.clean, folder / "out.tif", "--overwrite", *TILE],
                needles=("out.tif", "Read-only file system"), intact=snapshot(folder / "out.tif"))


@case("chips-readonly-destination")
def _(kit, tmp, request):
    from geogan.chips import export_chips

    export_chips(kit.clean, kit.b, tmp / "old", tile_size=32, val_fraction=0)  # a previous export
    files = {str(p.relative_to(tmp / "old")): p.read_bytes() for p in (tmp / "old").rglob("*") if p.is_file()}
    folder = request.getfixturevalue("make_readonly_dir")({f"chips/{k}": v for k, v in files.items()})
    return Case(["chips", "--a", kit.clean, "--b", kit.b, "--out", folder / "chips", "--tile-size", 16],
                needles=("chips", "Read-only file system"), intact=tree(folder))


@case("train-readonly-destination")
def _(kit, tmp, request):
    folder = request.getfixturevalue("readonly_dir")
    return Case(["train", kit.config, "--data", kit.chips, "--out", folder / "run"],
                needles=("run", "Read-only file system"), absent=(folder / "run",))


@case("predict-full-disk")
def _(kit, tmp, request):
    disk = request.getfixturevalue("small_fs")(512)
    previous = shutil.copyfile(kit.clean, disk / "out.tif")  # what --overwrite must not destroy
    src = write_raster(tmp / "big.tif", scene((256, 256), n=1))  # 192 kB of output, uncompressed
    fill_up(disk, leave_bytes=48 * 1024)
    return Case(["predict", kit.model, src, previous, "--overwrite", "--compress", "none", *TILE],
                needles=("out.tif", "the disk is full"), intact=snapshot(previous))


@case("chips-full-disk")
def _(kit, tmp, request):
    from geogan.chips import export_chips

    disk = request.getfixturevalue("small_fs")(512)
    export_chips(kit.clean, kit.b, disk / "chips", tile_size=32, val_fraction=0)
    before = tree(disk / "chips")
    noisy = np.random.default_rng(0).integers(1, 60000, (1, 512, 512)).astype(np.uint16)  # 512 kB of chips
    src = write_raster(tmp / "big.tif", noisy)
    return Case(["chips", "--a", src, "--b", kit.b, "--out", disk / "chips", "--tile-size", 32, "--val-fraction", 0],
                needles=("No space left on device", "the previous export is kept"), intact=before)


@case("train-full-disk")
def _(kit, tmp, request):
    disk = request.getfixturevalue("small_fs")(256)  # room for the logs, not for a 3 MB checkpoint
    out = disk / "run"

    def check_nothing_half_written():
        assert not (out / "checkpoint.pt").exists() and not (out / "model.geogan").exists()
    case_ = Case(["train", kit.config, "--data", kit.chips, "--out", out], needles=("No space left on device",),
                 warns=("identity loss off",))
    case_.check = lambda res: check_nothing_half_written()
    return case_


@case("predict-output-is-the-input-through-a-symlink")
def _(kit, tmp, request):
    src = shutil.copyfile(kit.clean, tmp / "in.tif")
    (tmp / "link.tif").symlink_to(src)
    return Case(["predict", kit.model, src, tmp / "link.tif", "--overwrite", *TILE], needles=("same as the input",),
                intact=snapshot(src))


@case("chips-output-is-the-inputs-folder-through-a-symlink")
def _(kit, tmp, request):
    folder = tmp / "scenes"
    folder.mkdir()
    src = shutil.copyfile(kit.clean, folder / "a.tif")
    (tmp / "link").symlink_to(folder)
    return Case(["chips", "--a", src, "--b", kit.b, "--out", tmp / "link", "--tile-size", 32],
                needles=("link",), intact=tree(folder))


@case("train-output-is-the-chips-through-a-symlink")
def _(kit, tmp, request):
    chips = shutil.copytree(kit.chips, tmp / "chips")
    (tmp / "link").symlink_to(chips)
    return Case(["train", kit.config, "--data", chips, "--out", tmp / "link"],
                needles=("is the chips export",), intact=tree(chips))


@case("train-output-inside-the-chips")
def _(kit, tmp, request):
    chips = shutil.copytree(kit.chips, tmp / "chips")
    return Case(["train", kit.config, "--data", chips, "--out", chips / "run"],
                needles=("is inside the chips export",), intact=tree(chips), absent=(chips / "run",))


# --- damaged and foreign model files

def _flip(path: Path, positions, mask: int) -> Path:
    data = bytearray(path.read_bytes())
    for p in positions:
        data[p] ^= mask
    path.write_bytes(bytes(data))
    return path


def _predict_with(model: Path, kit: Kit, tmp: Path, *needles: str) -> Case:
    return Case(["predict", model, kit.clean, tmp / "out.tif", *TILE], needles=(model.name,) + needles,
                absent=(tmp / "out.tif",))


@case("model-one-flipped-bit-in-the-weights")
def _(kit, tmp, request):
    model = shutil.copyfile(kit.model, tmp / "m.geogan")
    offset, size = largest_zip_record(model)
    return _predict_with(_flip(model, [offset + size // 2], 0x01), kit, tmp, "damaged")


@case("model-50-flipped-exponent-bytes")
def _(kit, tmp, request):
    model = shutil.copyfile(kit.model, tmp / "m.geogan")
    offset, size = largest_zip_record(model)
    step = size // 4 // 50
    # byte 3 of a little-endian float32 holds the sign and the high exponent bits
    return _predict_with(_flip(model, [offset + 4 * k * step + 3 for k in range(50)], 0x40), kit, tmp, "damaged")


@case("model-plain-pickle")
def _(kit, tmp, request):
    model = tmp / "weights.geogan"
    model.write_bytes(pickle.dumps({"format": "geogan-model", "weights": [1.0, 2.0]}))
    return _predict_with(model, kit, tmp, "not a geogan model file")


for _version in (0, -5, "1"):
    def _bad_version(kit, tmp, request, version=_version):
        model = _save_model(tmp / "m.geogan", lambda p: p.update(format_version=version))
        return _predict_with(model, kit, tmp, "format_version", "positive integer")

    case(f"model-format-version-{_version!r}")(_bad_version)


@case("model-complex64-target")
def _(kit, tmp, request):
    def complex_target(payload):
        payload.pop("checksum")  # as a foreign writer would leave it
        payload["domains"]["b"]["dtype"] = "complex64"
    return _predict_with(_save_model(tmp / "m.geogan", complex_target), kit, tmp, "complex64")


# --- checkpoints that do not fit ``train --resume``

def _resume_with(kit: Kit, tmp: Path, mutate: Callable[[dict], None], *needles: str) -> Case:
    run = shutil.copytree(kit.run, tmp / "run")
    ckpt = run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload.pop("sha256", None)  # malformed, not damaged: no digest to catch it first
    mutate(payload)
    torch.save(payload, ckpt)
    return Case(["train", kit.config, "--data", kit.chips, "--out", run, "--resume"], needles=needles,
                intact=tree(run))


@case("train-resume-checkpoint-missing-keys")
def _(kit, tmp, request):
    return _resume_with(kit, tmp, lambda ck: (ck.pop("iteration"), ck["model"].pop("optimizers")),
                        "checkpoint.pt", "missing 'iteration'")


@case("train-resume-checkpoint-wrong-types")
def _(kit, tmp, request):
    return _resume_with(kit, tmp, lambda ck: ck.update(epoch="1"), "checkpoint.pt", "'epoch' is a str")


@case("train-resume-checkpoint-is-a-plain-pickle")
def _(kit, tmp, request):
    run = shutil.copytree(kit.run, tmp / "run")
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"iteration": 3}))
    return Case(["train", kit.config, "--data", kit.chips, "--out", run, "--resume"],
                needles=("checkpoint.pt", "not a geogan training checkpoint"), intact=tree(run))


# ------------------------------------------------------------------------------------------ the test

@pytest.mark.parametrize("name", list(CASES))
def test_fault_corpus(name, kit, tmp_path, request):
    c = CASES[name](kit, tmp_path, request)
    res = run_geogan(*c.args)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == c.code, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("geogan: warning: ")]
    others = [line for line in res.stderr.splitlines() if not line.startswith("geogan: warning: ")]
    assert len(warnings) == len(c.warns) and all(w in line for w, line in zip(c.warns, warnings)), res.stderr
    if c.code:  # one error line: no progress bar, no GDAL or libtiff line, nothing pointing elsewhere
        assert len(others) == 1 and others[0].startswith("geogan: error: "), res.stderr
        for needle in c.needles:
            assert needle in others[0], (needle, others[0])
        assert "See previous exception" not in others[0]
    else:
        assert others == [], res.stderr
    if c.check is not None:
        c.check(res)
    for path in c.absent:
        assert not os.path.lexists(path), path
    for path, data in c.intact.items():
        assert path.read_bytes() == data, f"{path} changed"
    assert debris(tmp_path) == []


# ------------------------------------------------------------------------------------------ > 4 GB

@pytest.fixture
def sparse_bigtiff(tmp_path) -> Path:
    """70,000 × 70,000 uint8 (4.9 GB of pixels, so a BigTIFF), nodata 0, with data only in pixels
    1024-1535 (rows and cols): SPARSE_OK leaves every other block unwritten, ~1 MB on disk."""
    profile = dict(driver="GTiff", width=70000, height=70000, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 5e5, 0, -10, 5e6), tiled=True, blockxsize=256, blockysize=256,
                   BIGTIFF="YES", SPARSE_OK="TRUE", nodata=0)
    path = tmp_path / "huge.tif"
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.random.default_rng(0).integers(1, 255, (1, 512, 512)).astype(np.uint8),
                 window=Window(1024, 1024, 512, 512))
    assert path.stat().st_size < 8 << 20 and 70000 * 70000 > 4 << 30
    with open(path, "rb") as fh:
        assert fh.read(4) in (b"II+\x00", b"MM\x00+")  # BigTIFF magic
    return path


def test_a_sparse_bigtiff_chips_in_an_aoi(kit, tmp_path, sparse_bigtiff):
    """A small AOI over a 4.9-gigapixel raster: only its windows are planned and read (1.2 million
    windows in all at tile 64); the chips over data are written with their pixels, the others are
    nodata and skipped."""
    x0, y0 = 500000 + 10 * 970, 5000000 - 10 * 970       # pixels 970..1590: windows 960..1536
    x1, y1 = 500000 + 10 * 1590, 5000000 - 10 * 1590
    wkt = f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
    out = tmp_path / "chips"
    res = run_geogan("chips", "--a", sparse_bigtiff, "--b", kit.b, "--out", out, "--tile-size", 64, "--val-fraction", 0,
                 "--aoi-a", wkt, "--aoi-crs", "EPSG:32633")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "64 train" in res.stdout and "36 below --min-valid" in res.stdout, res.stdout
    chips = sorted((out / "train_a").iterdir())
    assert len(chips) == 64
    with rasterio.open(chips[-1]) as chip, rasterio.open(sparse_bigtiff) as ds:
        assert chip.name.endswith("huge_r001472_c001472.tif")
        window = Window(1472, 1472, 64, 64)
        assert chip.transform == window_transform(window, ds.transform)
        np.testing.assert_array_equal(chip.read(), ds.read(window=window))
    assert debris(tmp_path) == []


def test_a_sparse_bigtiff_prediction_starts_at_once_and_stops_clean(kit, tmp_path, sparse_bigtiff):
    """The whole 4.9-gigapixel scene is a legitimate input (a long job on a CPU): the predictor
    takes it without refusing or reading it up front, writes into a temporary BigTIFF beside the
    destination, and a scheduler's SIGTERM ends it with exit 143, one line and nothing left."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "geogan", "predict", str(kit.model), str(sparse_bigtiff),
                             str(out_dir / "huge_rgb.tif"), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=geogan_env())
    try:
        deadline = time.monotonic() + 180
        while not any(".part" in p.name for p in out_dir.iterdir()):  # the output is being written
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the prediction never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if not line.startswith("geogan: warning: ")]
    assert lines == [lines[0]] and lines[0].startswith("geogan: stopped by SIGTERM"), err
    assert list(out_dir.iterdir()) == []

"""Training tests: tiny networks on the CPU, chips directories built here (no dependency on 'geogan chips')."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAINING, encode_kind, free_port, make_chips, smooth_bands, write_raster

torch = pytest.importorskip("torch")

TINY = TINY_TRAINING


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _losses(run: Path) -> list[dict]:
    import csv

    with open(run / "losses.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _a2b_error(model_path: Path, chips: Path, split_a: str, split_b: str) -> float:
    """Mean |G_a2b(A) - B| in normalised units over valid pixels of the given chips."""
    from geogan.data import read_chip
    from geogan.modelfile import load_model

    model = load_model(model_path)
    errors = []
    for f in sorted((chips / split_a).glob("*.tif")):
        a, va = read_chip(f, model.domains["a"])
        b, vb = read_chip(chips / split_b / f.name, model.domains["b"])
        with torch.no_grad():
            y = model.generators["a2b"](torch.from_numpy(a)[None])[0].numpy()
        errors.append(np.abs(y - b)[:, va & vb].mean())
    return float(np.mean(errors))


def _write_yaml(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


# --------------------------------------------------------------------------------------------
# every band combination trains, with finite logged losses and a usable model file
# --------------------------------------------------------------------------------------------
COMBOS = {
    "sar2_to_rgb3": dict(a=(2, "sar", "float32"), b=(3, "optical", "uint8"), holes=True),
    "rgb3_to_ms5": dict(a=(3, "optical", "uint8"), b=(5, "multispectral", "uint16"),
                        band_descriptions_b=("coastal", "blue", "green", "red", "nir")),
    "dsm1_to_rgb3": dict(a=(1, "dsm", "float32"), b=(3, "optical", "uint8"), nodata_a=-9999.0, holes=True),
    "rgb3_to_rgb3": dict(a=(3, "optical", "uint8"), b=(3, "optical", "uint16")),
    "sar2_to_generic2": dict(a=(2, "sar", "float32"), b=(2, "generic", "float32")),
}


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_band_combinations_train(tmp_path, name):
    from geogan.modelfile import load_model, read_payload
    from geogan.trainer import train

    combo = COMBOS[name]
    chips = make_chips(tmp_path / "chips", n_train=3, **combo)
    updates = []
    path = train(dict(TINY, data=str(chips), out=str(tmp_path / "run")),
                 progress=lambda done, total, msg: updates.append((done, total, msg)))
    assert path == tmp_path / "run" / "model.geogan"

    rows = _losses(tmp_path / "run")
    assert len(rows) == 2  # 3 chips, batch 2 → 2 steps, each logged
    names = ["D_a", "G_a2b", "cycle_a", "idt_a", "D_b", "G_b2a", "cycle_b", "idt_b"]
    values = np.array([[float(r[k]) for k in names] for r in rows])
    assert np.isfinite(values).all() and (values[:, [0, 1, 2, 4, 5, 6]] > 0).all()
    assert updates[-1][:2] == (2, 2) and "epoch 1/1" in updates[-1][2]

    ca, cb = combo["a"][0], combo["b"][0]
    same = combo["a"][:2] == combo["b"][:2]
    summary = read_payload(path)["training"]
    assert summary["identity_loss"].startswith("on" if same else "off")
    assert (values[:, 3] > 0).all() == same  # identity loss used exactly when the domains match

    model = load_model(path)
    raw_a = encode_kind(np.full((ca, 32, 32), 0.5), combo["a"][1], combo["a"][2])
    out = model.translate(raw_a, "a2b")
    assert out.shape == (cb, 32, 32) and out.dtype == np.dtype(combo["b"][2])
    back = model.translate(out, "b2a")
    assert back.shape == (ca, 32, 32) and back.dtype == np.dtype(combo["a"][2])
    assert (tmp_path / "run" / "previews" / "epoch_001.png").stat().st_size > 0
    assert (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_preview_is_a_png_grid(tmp_path):
    import rasterio

    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    train(dict(TINY, data=str(chips), out=str(tmp_path / "run")))
    with rasterio.open(tmp_path / "run" / "previews" / "epoch_001.png") as ds:
        assert ds.driver == "PNG" and ds.count == 3
        assert (ds.height, ds.width) == (2 * 32 + 2, 3 * 32 + 4)  # 2 rows × 3 tiles, 2-pixel gaps
        grid = ds.read()
    assert (grid[:, :32, :32] == 0).any() and grid[:, :32, :32].std() > 0  # SAR hole shown black, content shown


# --------------------------------------------------------------------------------------------
# the models learn a trivially learnable mapping
# --------------------------------------------------------------------------------------------
AFFINE_UP = lambda x: np.stack([0.8 * x[0] + 0.1, 0.6 * x[1] + 0.2, 0.5 * x[2] + 0.3])  # noqa: E731
AFFINE_FLIP = lambda x: np.stack([0.8 * x[0] + 0.1, 1.0 - x[1], 0.5 * x[2] + 0.3])  # noqa: E731
LEARN = dict(TINY, batch_size=1, lr=1e-3, augment="crop", dropout=False)


@pytest.mark.slow
def test_cyclegan_learns_affine_mapping(tmp_path):
    """B = per-band affine(A) on unpaired chips: the A→B error falls well below where it started."""
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", a=(3, "optical", "uint8"), b=(3, "optical", "uint16"),
                       relation=AFFINE_UP, n_train=8)
    start = train(dict(LEARN, data=str(chips), out=str(tmp_path / "r0"), lr=1e-12))
    end = train(dict(LEARN, data=str(chips), out=str(tmp_path / "r1"), epochs=16, n_layers_d=1))
    e0, e1 = _a2b_error(start, chips, "train_a", "truth_b"), _a2b_error(end, chips, "train_a", "truth_b")
    assert e1 < 0.7 * e0, (e0, e1)


@pytest.mark.slow
def test_pix2pix_learns_affine_mapping(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", a=(3, "optical", "uint8"), b=(3, "optical", "uint16"),
                       relation=AFFINE_FLIP, paired=True, n_train=8)
    cfg = dict(LEARN, data=str(chips), model="pix2pix")
    start = train(dict(cfg, out=str(tmp_path / "r0"), lr=1e-12))
    end = train(dict(cfg, out=str(tmp_path / "r1"), epochs=16))
    e0, e1 = _a2b_error(start, chips, "train_a", "train_b"), _a2b_error(end, chips, "train_a", "train_b")
    assert e1 < 0.5 * e0, (e0, e1)
    rows = _losses(tmp_path / "r1")
    assert set(rows[0]) == {"epoch", "iteration", "lr", "G_gan", "G_l1", "D_real", "D_fake"}


def test_pix2pix_unet_trains_on_its_tile_size(tmp_path):
    from geogan.modelfile import load_model
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", a=(1, "dsm", "float32"), b=(3, "optical", "uint8"),
                       relation=lambda x: np.repeat(x, 3, axis=0), paired=True, n_train=1, size=128)
    path = train(dict(TINY, data=str(chips), out=str(tmp_path / "run"), model="pix2pix", generator="unet_128",
                      crop_size=128, batch_size=1))
    model = load_model(path)
    assert model.directions == ["a2b"] and model.size_multiple == 128
    assert model.architecture["tile_size"] == 128 and model.architecture["dropout"] is True


# --------------------------------------------------------------------------------------------
# checkpoints and exact resume
# --------------------------------------------------------------------------------------------
KILL_SCRIPT = """
import os, signal, sys
from geogan.trainer import train

def hook(name, info):
    if name == "checkpoint" and info["epoch_end"] and info["epoch"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # a real, unclean death right after the checkpoint

train(sys.argv[1], on_event=hook)
"""


def _all_weights(run: Path) -> dict:
    from geogan.trainer import load_checkpoint

    ck = load_checkpoint(run / "checkpoint.pt")
    return {f"{net}.{k}": v for net, sd in ck["model"]["nets"].items() for k, v in sd.items()}


def test_resume_after_kill_is_bit_identical(tmp_path):
    import signal

    from geogan.modelfile import read_payload
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=4, holes=True)
    cfg = dict(TINY, data=str(chips), batch_size=1, epochs=1, epochs_decay=1, pool_size=2, dropout=True)
    straight = train(dict(cfg, out=str(tmp_path / "straight")))

    config = _write_yaml(tmp_path / "run.yaml", dict(cfg, out=str(tmp_path / "killed")))
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(config)], env=_env(), capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "model.geogan").exists()

    proc = subprocess.run([sys.executable, "-m", "geogan", "train", str(config), "--resume"], env=_env(),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]

    a, b = read_payload(straight)["generators"], read_payload(tmp_path / "killed" / "model.geogan")["generators"]
    assert set(a) == set(b) == {"a2b", "b2a"}
    for direction in a:
        for key in a[direction]:
            assert torch.equal(a[direction][key], b[direction][key]), (direction, key)
    wa, wb = _all_weights(tmp_path / "straight"), _all_weights(tmp_path / "killed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # discriminators too
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "killed")  # the log has no duplicated steps


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=5)
    cfg = dict(TINY, data=str(chips), batch_size=1, epochs=2, pool_size=2, checkpoint_every=3)
    train(dict(cfg, out=str(tmp_path / "straight")))

    class Stop(Exception):
        pass

    def stop_at_step_3(name, info):
        if name == "checkpoint" and info["iteration"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train(dict(cfg, out=str(tmp_path / "resumed")), on_event=stop_at_step_3)
    train(dict(cfg, out=str(tmp_path / "resumed")), resume=True)
    wa, wb = _all_weights(tmp_path / "straight"), _all_weights(tmp_path / "resumed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_loads_weights_only_and_holds_everything(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    train(dict(TINY, data=str(chips), out=str(tmp_path / "run")))
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"model", "ranks", "epoch", "batch_in_epoch", "iteration", "architecture", "config"} <= set(ck)
    assert set(ck["model"]) == {"nets", "optimizers", "schedulers", "scaler"}
    rank = ck["ranks"][0]
    assert set(rank["rng"]) == {"torch", "numpy", "python", "cuda"} and set(rank["local"]["pools"]) == {"a", "b"}
    assert ck["epoch"] == 1 and ck["batch_in_epoch"] == 0 and ck["iteration"] == 1


def test_cancel_writes_a_checkpoint_to_resume_from(tmp_path):
    from geogan import Cancelled, CallbackProgress
    from geogan.trainer import load_checkpoint, train

    chips = make_chips(tmp_path / "chips", n_train=4)
    seen = []
    progress = CallbackProgress(on_update=lambda d, t, m: seen.append(d), is_cancelled=lambda: len(seen) >= 2)
    with pytest.raises(Cancelled):
        train(dict(TINY, data=str(chips), out=str(tmp_path / "run"), batch_size=1), progress=progress)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["iteration"] == 2 and ck["batch_in_epoch"] == 2
    assert train(dict(TINY, data=str(chips), out=str(tmp_path / "run"), batch_size=1), resume=True).exists()


# --------------------------------------------------------------------------------------------
# data-parallel: 2 gloo processes on the CPU
# --------------------------------------------------------------------------------------------
DDP_SCRIPT = """
import contextlib, json, os, sys
import torch
import geogan.outputs as outputs
import geogan.raster as raster

written = []
real_atomic_output = outputs.atomic_output

@contextlib.contextmanager
def recording_atomic_output(dst, *args, **kwargs):
    written.append(os.path.basename(str(dst)))
    with real_atomic_output(dst, *args, **kwargs) as tmp:
        yield tmp

outputs.atomic_output = raster.atomic_output = recording_atomic_output
from geogan.trainer import train

def hook(name, info):
    if name == "end":
        torch.save(info["generators"], os.path.join(sys.argv[2], f"rank{info['rank']}.pt"))

train(sys.argv[1], on_event=hook)
with open(os.path.join(sys.argv[2], f"written{os.environ['RANK']}.json"), "w") as fh:
    json.dump(written, fh)
"""


def test_ddp_two_gloo_processes(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _write_yaml(tmp_path / "run.yaml", dict(TINY, data=str(chips), out=str(tmp_path / "run"),
                                                     batch_size=1, epochs=2))
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank),
                   LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen([sys.executable, "-c", DDP_SCRIPT, str(config), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]

    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for direction in w0:
        for key in w0[direction]:
            assert torch.equal(w0[direction][key], w1[direction][key]), (direction, key)
    written0 = json.loads((tmp_path / "written0.json").read_text())
    written1 = json.loads((tmp_path / "written1.json").read_text())
    assert written1 == [] and "model.geogan" in written0 and "checkpoint.pt" in written0
    rows = _losses(tmp_path / "run")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]  # 4 chips / 2 processes = 2 steps an epoch
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2


# --------------------------------------------------------------------------------------------
# the model file
# --------------------------------------------------------------------------------------------
def test_model_file_round_trip_and_summary(tmp_path):
    from geogan.modelfile import load_model, save_model
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2, holes=True)
    path = train(dict(TINY, data=str(chips), out=str(tmp_path / "run")))
    payload = torch.load(path, weights_only=True)
    arch, summary = payload["architecture"], payload["training"]
    assert arch["model"] == "cyclegan" and arch["generator"] == "resnet_6blocks" and arch["ngf"] == 8
    assert arch["size_multiple"] == 4 and arch["tile_size"] == 32 and arch["dropout"] is False
    assert summary["epochs"] == 1 and summary["iterations"] == 1 and summary["device"] == "cpu"
    assert set(summary["final_losses"]) >= {"G_a2b", "cycle_a"} and summary["seconds"] > 0
    assert summary["chips_dir"] == str(chips.resolve())
    assert payload["domains"]["a"]["kind"] == "sar" and len(payload["domains"]["b"]["bands"]) == 3

    model = load_model(path)
    raw = encode_kind(smooth_bands(np.random.default_rng(1), 2, 32), "sar", "float32")
    first = model.translate(raw, "a2b")
    save_model(model, tmp_path / "copy.geogan")
    again = load_model(tmp_path / "copy.geogan").translate(raw, "a2b")
    assert np.array_equal(first, again) and first.dtype == np.uint8


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_model_file_with_embedded_code_is_refused(tmp_path):
    from geogan.errors import CheckpointError, ModelFileError
    from geogan.modelfile import load_model
    from geogan.trainer import load_checkpoint

    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.geogan"
    torch.save({"format": "geogan-model", "format_version": 1, "architecture": _Evil(marker)}, bad)
    with pytest.raises(ModelFileError):
        load_model(bad)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    assert not marker.exists()


def test_model_file_newer_or_corrupt_fails_clearly(tmp_path):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    newer = tmp_path / "newer.geogan"
    torch.save({"format": "geogan-model", "format_version": 99, "architecture": {}, "domains": {},
                "generators": {}}, newer)
    with pytest.raises(ModelFileError, match="newer"):
        load_model(newer)
    corrupt = tmp_path / "corrupt.geogan"
    corrupt.write_bytes(newer.read_bytes()[:50])
    with pytest.raises(ModelFileError) as info:
        load_model(corrupt)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# bad input: one-line errors, nothing written
# --------------------------------------------------------------------------------------------
def _expect(exc_type, cfg: dict, match: str, **kwargs):
    from geogan.trainer import train

    with pytest.raises(exc_type, match=match) as info:
        train(cfg, **kwargs)
    assert "\n" not in str(info.value)
    return info


def test_bad_data_directories(tmp_path):
    from geogan.errors import BandMismatchError, ConfigError, InputError

    out = str(tmp_path / "run")
    _expect(InputError, dict(TINY, data=str(tmp_path), out=out), "chips")
    _expect(InputError, dict(TINY, data=str(tmp_path / "nowhere"), out=out), "nowhere")

    chips = make_chips(tmp_path / "chips", n_train=2)
    _expect(ConfigError, dict(TINY, data=str(chips), out=out, model="pix2pix"), "paired")
    _expect(ConfigError, dict(TINY, data=str(chips), out=out, crop_size=64), "larger than the chips")
    _expect(ConfigError, dict(TINY, data=str(chips), out=out, generator="unet_128"), "multiple of 128")
    _expect(ConfigError, dict(TINY, out=out), "data")

    chip = sorted((chips / "train_b").glob("*.tif"))[1]
    write_raster(chip, np.zeros((4, 32, 32), np.uint8))
    _expect(BandMismatchError, dict(TINY, data=str(chips), out=out), chip.name)
    write_raster(chip, np.zeros((3, 32, 32), np.uint16))
    _expect(BandMismatchError, dict(TINY, data=str(chips), out=out), "uint16")
    for f in (chips / "train_a").glob("*.tif"):
        f.unlink()
    _expect(InputError, dict(TINY, data=str(chips), out=out), "train_a")
    assert not (tmp_path / "run").exists()


def test_device_and_resume_errors(tmp_path, caplog):
    from geogan.errors import CheckpointError, ConfigError, DeviceError, OutputError
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    out = str(tmp_path / "run")
    if not torch.cuda.is_available():
        _expect(DeviceError, dict(TINY, data=str(chips), out=out, device="cuda"), "CUDA")
        _expect(DeviceError, dict(TINY, data=str(chips), out=out, device="cuda:7"), "CUDA")
    else:
        _expect(DeviceError, dict(TINY, data=str(chips), out=out, device="cuda:99"), "cuda:99")
    _expect(ConfigError, dict(TINY, data=str(chips), out=out, device="gpu"), "device")
    _expect(ConfigError, dict(TINY, data=str(chips), out=out, amp="fp16"), "fp16")  # the CPU has no fp16 path
    assert not (tmp_path / "run").exists()
    # --resume before any checkpoint exists starts the run, and says so
    with caplog.at_level("WARNING", logger="geogan"):
        train(dict(TINY, data=str(chips), out=out), resume=True)
    assert any("no checkpoint yet" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "run" / "model.geogan").exists()
    _expect(OutputError, dict(TINY, data=str(chips), out=out), "--resume")
    _expect(CheckpointError, dict(TINY, data=str(chips), out=out, ngf=16), "ngf", resume=True)
    _expect(CheckpointError, dict(TINY, data=str(chips), out=out, generator="resnet_9blocks"), "generator",
            resume=True)


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import geogan.raster as raster
    from geogan.errors import OutputError

    chips = make_chips(tmp_path / "chips", n_train=2)
    cfg = dict(TINY, data=str(chips), out=str(tmp_path / "run"), batch_size=1)
    from geogan.trainer import train

    train(cfg)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = ckpt.read_bytes()
    real = raster.atomic_write_bytes

    def full_disk(dst, payload, **kwargs):
        if Path(dst).name != "checkpoint.pt":
            return real(dst, payload, **kwargs)
        with raster.atomic_output(dst, **kwargs) as tmp:
            Path(tmp).write_bytes(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(raster, "atomic_write_bytes", full_disk)
    info = _expect(OutputError, dict(cfg, epochs=2), "No space left on device", resume=True)
    assert "previous checkpoint is kept" in str(info.value)
    assert ckpt.read_bytes() == before
    assert not [p for p in ckpt.parent.iterdir() if ".part" in p.name]


def test_trains_on_a_real_chips_export(tmp_path):
    """End to end with the chips step: SAR (linear, with a nodata hole) and RGB rasters → chips → model."""
    from geogan import export_chips
    from geogan.modelfile import load_model
    from geogan.trainer import train

    rng = np.random.default_rng(0)
    x = smooth_bands(rng, 2, 96)
    sar = encode_kind(x, "sar", "float32")
    sar[:, :10, :10] = 0.0
    rgb = encode_kind(smooth_bands(rng, 3, 96), "optical", "uint8")
    a = write_raster(tmp_path / "sar.tif", sar, nodata=0.0)
    b = write_raster(tmp_path / "rgb.tif", rgb)
    export_chips(a, b, tmp_path / "chips", kind_a="sar", kind_b="optical", tile_size=32, stride=16, min_valid=0.5,
                 val_fraction=0.2)
    path = train(dict(TINY, data=str(tmp_path / "chips"), out=str(tmp_path / "run"), log_every=5))
    model = load_model(path)
    assert model.source("a2b").kind == "sar" and model.target("a2b").count == 3
    assert np.isfinite([float(v) for r in _losses(tmp_path / "run") for k, v in r.items() if k != "lr"]).all()

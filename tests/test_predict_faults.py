"""Faults a production user meets, through the predictor and its command line: a disk that fills up,
a second run into the same output, kill -9 and SIGTERM/SIGINT mid-write, truncated and damaged
inputs, an output that is the input through a symlink. Each: one line, nothing left behind, the
previous output intact."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from conftest import fill_up, make_spec, save_tiny_sar_to_rgb_model, scene, write_raster
from geogan import errors
from geogan.cli import cli
from geogan.modelfile import TranslationModel
from geogan.predict import translate_raster

TILE = dict(tile_size=32, overlap=8, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture
def model():
    return TranslationModel({"a": make_spec(), "b": make_spec("optical", 3, "uint8", nodata=0, lo=10, hi=240)},
                            {"a2b": torch.nn.Conv2d(2, 3, 1)}, {"generator": "c"})


@pytest.fixture
def model_file(tmp_path):
    return save_tiny_sar_to_rgb_model(tmp_path / "m.geogan", make_spec())


def others(directory: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def cli_one_line(*args) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("geogan: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.output
    return res.stderr


# --------------------------------------------------------------------------- a full disk

@pytest.mark.parametrize("cog", [False, True])
def test_a_disk_that_fills_up_fails_in_one_line_and_keeps_the_previous_output(tmp_path, small_fs, model, cog):
    disk = small_fs(1024)
    src = write_raster(tmp_path / "in.tif", scene((200, 200)))
    first = translate_raster(model, src, disk / "out.tif", compress="none", cog=cog, **TILE)
    good = (disk / "out.tif").read_bytes()
    filler = fill_up(disk, leave_bytes=32 * 1024)  # room for a quarter of the output
    with pytest.raises(errors.OutputError) as info:
        translate_raster(model, src, disk / "out.tif", compress="none", cog=cog, overwrite=True, **TILE)
    message = str(info.value)
    assert "out.tif" in message and "\n" not in message
    assert "disk is full" in message or "No space left" in message
    assert (disk / "out.tif").read_bytes() == good and first.width == 200
    assert others(disk, "out.tif", filler.name) == []


def test_a_full_disk_through_the_cli_is_one_line(tmp_path, small_fs, model_file):
    disk = small_fs(256)
    src = write_raster(tmp_path / "in.tif", scene((400, 400)))
    text = cli_one_line("predict", model_file, src, disk / "out.tif", "--compress", "none", "--tile-size", 32,
                        "--overlap", 8)
    assert "out.tif" in text and ("disk is full" in text or "No space left" in text)
    assert others(disk) == []


# --------------------------------------------------------------------------- a second run

def test_a_second_prediction_into_the_same_file_is_refused_while_the_first_is_alive(tmp_path, model, model_file):
    src = write_raster(tmp_path / "in.tif", scene((40, 40)))
    dst = tmp_path / "out.tif"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from geogan.outputs import OutputLock\n"
        f"lock = OutputLock({str(dst)!r}, 'prediction').acquire(); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(errors.BusyError, match=f"in use by another geogan process \\(PID {holder.pid}\\)"):
            translate_raster(model, src, dst, **TILE)
        text = cli_one_line("predict", model_file, src, dst, "--tile-size", 32, "--overlap", 8)
        assert "in use by another geogan process" in text
        assert not dst.exists()
    finally:
        holder.kill()
        holder.wait()
    translate_raster(model, src, dst, **TILE)  # the lock of a dead process is taken over
    assert others(tmp_path, "in.tif", "out.tif", "m.geogan") == []


# --------------------------------------------------------------------------- kills and signals

SLOW_CLI = """
import sys, time
from pathlib import Path
import torch
import geogan.modelfile as modelfile

marker = Path(sys.argv.pop(1))

class Slow(torch.nn.Module):
    '''A network that takes its time (so the test can stop it mid-write) and says when it started.'''
    def __init__(self, net):
        super().__init__()
        self.net = net
    def forward(self, x):
        marker.touch()
        time.sleep(0.05)
        return self.net(x)

real = modelfile.load_model
def slow_model(path, device="cpu"):
    model = real(path, device)
    model.generators = {d: Slow(n) for d, n in model.generators.items()}
    return model
modelfile.load_model = slow_model  # the predictor imports it when it loads a model
from geogan.cli import main
sys.argv[0] = "geogan"
main()
"""


def start_slow_predict(tmp_path: Path, model_file: Path, src: Path, dst: Path, *extra: str) -> tuple:
    script = tmp_path / "slow_geogan.py"
    script.write_text(SLOW_CLI)
    marker = tmp_path / "network-started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(marker), "predict", str(model_file), str(src), str(dst),
                             "--tile-size", "32", "--overlap", "8", "--batch-size", "2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():  # the network is running: the output is being written
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the prediction never started"
        time.sleep(0.02)
    return proc


def test_kill_9_mid_write_then_a_rerun_leaves_no_temporary_file(tmp_path, model_file):
    src = write_raster(tmp_path / "in.tif", scene((200, 200)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "out.tif"
    proc = start_slow_predict(tmp_path, model_file, src, dst)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    left = others(out_dir)
    assert any(".geogan-" in name and ".part" in name for name in left), left  # debris of the killed run
    res = CliRunner().invoke(cli, ["predict", str(model_file), str(src), str(dst), "--tile-size", "32",
                                   "--overlap", "8"])
    assert res.exit_code == 0, res.output
    assert others(out_dir) == ["out.tif"]
    with rasterio.open(dst) as ds:
        assert (ds.width, ds.height, ds.count) == (200, 200, 3) and ds.read().any()


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_mid_write_exits_cleanly_and_leaves_nothing(tmp_path, model_file, signum, code):
    src = write_raster(tmp_path / "in.tif", scene((200, 200)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start_slow_predict(tmp_path, model_file, src, out_dir / "out.tif")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == code, text
    assert f"stopped by {signal.Signals(signum).name}" in text and "Traceback" not in text
    assert others(out_dir) == []


def test_a_stop_signal_in_a_batch_leaves_the_finished_scenes_and_nothing_else(tmp_path, model_file):
    for i in range(3):
        write_raster(tmp_path / f"s{i}.tif", scene((200, 200), seed=i))
    out_dir = tmp_path / "out"
    proc = start_slow_predict(tmp_path, model_file, tmp_path / "s*.tif", f"{out_dir}/")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    # a stop before the first scene finished leaves not even the folder the batch created
    assert not out_dir.exists() or all(not name.startswith(".") for name in others(out_dir))


# --------------------------------------------------------------------------- damaged inputs and odd paths

def tiled_raster(path: Path, data: np.ndarray, block: int = 64) -> Path:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=str(data.dtype), crs="EPSG:32633", transform=rasterio.transform.from_origin(5e5, 5e6, 10, 10),
                   tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def test_a_truncated_geotiff_is_one_line_naming_the_file_and_window(tmp_path, model, model_file):
    src = tiled_raster(tmp_path / "cut.tif", scene((1024, 1024)))
    size = src.stat().st_size
    with open(src, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(errors.RasterError) as info:
        translate_raster(model, src, tmp_path / "o.tif", **TILE)
    message = str(info.value)
    assert "cut.tif" in message and "reading rows" in message and "cols" in message
    assert "truncated or damaged" in message
    text = cli_one_line("predict", model_file, src, tmp_path / "o.tif")
    assert "cut.tif" in text and "reading rows" in text
    assert others(tmp_path, "cut.tif", "m.geogan") == []


def test_a_damaged_block_the_sample_misses_fails_mid_scene_naming_the_window(tmp_path, model):
    """Block (3, 3) of 64-px blocks lies outside the 4x4 sample windows: only the strip reader meets it."""
    src = tiled_raster(tmp_path / "bad.tif", scene((1024, 1024)))
    with rasterio.open(src) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_3_3", "TIFF", bidx=1))
        nbytes = int(ds.get_tag_item("BLOCK_SIZE_3_3", "TIFF", bidx=1))
    with open(src, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * nbytes)
    with pytest.raises(errors.RasterError) as info:
        translate_raster(model, src, tmp_path / "o.tif", **TILE)
    message = str(info.value)
    assert "bad.tif" in message and "reading rows" in message and "\n" not in message
    # the window named is a strip of the scene that meets the damaged block (rows and cols 192-255)
    rows, cols = message.split("reading rows ")[1].split(" failed")[0].split(", cols ")
    (r0, r1), (c0, c1) = ((int(v) for v in part.split("-")) for part in (rows, cols))
    assert r0 <= 255 and r1 >= 192 and c0 <= 255 and c1 >= 192
    assert others(tmp_path, "bad.tif") == []


def test_an_output_that_is_the_input_through_a_symlink_is_refused(tmp_path, model):
    src = write_raster(tmp_path / "in.tif", scene((40, 40)))
    (tmp_path / "link.tif").symlink_to(src)
    before = src.read_bytes()
    with pytest.raises(errors.OutputError, match="same as the input"):
        translate_raster(model, src, tmp_path / "link.tif", overwrite=True, **TILE)
    assert src.read_bytes() == before

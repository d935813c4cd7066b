"""The command line as a user meets it: warnings on stderr, and Ctrl-C / SIGTERM as a clean stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def _geogan(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen([sys.executable, "-m", "geogan", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, **kwargs)


def test_library_warnings_reach_stderr(make_raster, tmp_path):
    rng = np.random.default_rng(0)
    big = make_raster("a_big.tif", rng.integers(1, 255, (3, 64, 64)).astype(np.uint8))
    tiny = make_raster("a_tiny.tif", rng.integers(1, 255, (3, 8, 8)).astype(np.uint8))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 64, 64)).astype(np.uint8))
    proc = _geogan("chips", "--a", str(big), "--a", str(tiny), "--b", str(b), "--out", str(tmp_path / "chips"),
                   "--tile-size", "32", "--val-fraction", "0")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "geogan: warning: 'a_tiny.tif'" in err.decode().replace(str(tmp_path) + "/", "")
    assert "smaller than one 32x32 tile; skipped" in err.decode()


def test_info_only_with_verbose(make_raster, tmp_path):
    rng = np.random.default_rng(0)
    a = make_raster("a.tif", rng.integers(1, 255, (3, 64, 64)).astype(np.uint8))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 64, 64)).astype(np.uint8))
    args = ["chips", "--a", str(a), "--b", str(b), "--tile-size", "32", "--val-fraction", "0"]
    quiet = _geogan(*args, "--out", str(tmp_path / "c1"))
    verbose = _geogan("-v", *args, "--out", str(tmp_path / "c2"))
    _, err_q = quiet.communicate(timeout=120)
    _, err_v = verbose.communicate(timeout=120)
    assert "geogan: info:" not in err_q.decode()
    assert "geogan: info:" in err_v.decode()


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_a_chip_export_cleanly(make_raster, tmp_path, signum, code):
    rng = np.random.default_rng(0)
    a = make_raster("a.tif", rng.integers(1, 255, (1, 1024, 1024)).astype(np.uint8))
    b = make_raster("b.tif", rng.integers(1, 255, (1, 1024, 1024)).astype(np.uint8))
    out = tmp_path / "chips"
    proc = _geogan("chips", "--a", str(a), "--b", str(b), "--out", str(out), "--tile-size", "16",
                   "--val-fraction", "0")
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".chips*/train_*/*.tif")):  # chips are being written: the loop polls
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the export never started"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == code, text
    assert "Traceback" not in text and f"stopped by {signal.Signals(signum).name}" in text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

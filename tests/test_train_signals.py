"""``geogan train`` under SIGTERM / SIGINT, a second run into the same folder, and debris of killed runs.

The trainings run as real ``geogan train`` processes. A paused run is held after its first
logged step until the test's signal arrives (the only patch: the progress bar waits for
``stop_requested()``), so no assertion depends on how fast a step is.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY_TRAINING, checkpoint_weights, make_chips

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: ``geogan train ARGS``, holding the run after its first progress update until SIGINT/SIGTERM.
PAUSED = r"""
import os, sys, time
from pathlib import Path
import geogan.cli.train as cli_train
from geogan.cli.signals import stop_requested

marker = Path(os.environ["GEOGAN_TEST_MARKER"])
real_update = cli_train.EpochBars.update

def update(self, done, total, message=""):
    real_update(self, done, total, message)
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        while not stop_requested():  # the first loss row is written; wait for the test's signal
            time.sleep(0.01)

cli_train.EpochBars.update = update
from geogan.cli import main
sys.argv[0] = "geogan"
main()
"""

#: ``geogan train ARGS`` killed (SIGKILL) between writing the first checkpoint and renaming it.
KILLED_BEFORE_RENAME = r"""
import os, signal, sys
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    if os.path.basename(str(dst)) == "checkpoint.pt":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
from geogan.cli import main
sys.argv[0] = "geogan"
main()
"""


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _start_paused(config: Path, marker: Path) -> subprocess.Popen:
    env = dict(_env(), GEOGAN_TEST_MARKER=str(marker))
    return subprocess.Popen([sys.executable, "-c", PAUSED, "train", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    """Until the paused run wrote its first loss row (generous: a deadline, not a measurement)."""
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the training never reached its first step")
        time.sleep(0.05)


def _config(tmp_path: Path, chips: Path, out: Path, **overrides) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    cfg = dict(TINY_TRAINING, data=str(chips), out=str(out), batch_size=1, epochs=1, epochs_decay=1, pool_size=2)
    path.write_text(yaml.safe_dump(dict(cfg, **overrides)))
    return path


def _geogan_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if line.startswith("geogan:")]


# --------------------------------------------------------------------------------------------
# SIGTERM and SIGINT: a checkpoint first, exit 143 / 130, then an exact resume
# --------------------------------------------------------------------------------------------
def test_sigterm_saves_a_checkpoint_and_resume_is_bit_identical(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=3, holes=True)
    straight = train(dict(TINY_TRAINING, data=str(chips), out=str(tmp_path / "straight"), batch_size=1, epochs=1,
                          epochs_decay=1, pool_size=2))
    config = _config(tmp_path, chips, tmp_path / "stopped")  # checkpoint_every 0: only a stop saves mid-epoch
    proc = _start_paused(config, tmp_path / "first_step")
    _wait_for(tmp_path / "first_step", proc)

    # While the first run lives, a second run into the same folder refuses and writes nothing.
    losses = (tmp_path / "stopped" / "losses.csv").read_bytes()
    second = CliRunner().invoke(__import__("geogan.cli", fromlist=["cli"]).cli, ["train", str(config)])
    assert second.exit_code == 1 and "in use by another geogan process" in second.output
    assert f"PID {proc.pid}" in second.output
    assert (tmp_path / "stopped" / "losses.csv").read_bytes() == losses

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err.decode(errors="replace")[-2000:]
    assert _geogan_lines(err)[-1].startswith("geogan: stopped by SIGTERM: training cancelled")
    assert "Traceback" not in err.decode(errors="replace")
    ck = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 1 and ck["batch_in_epoch"] == 1  # the step before the signal is kept
    assert not (tmp_path / "stopped" / "model.geogan").exists()
    assert not (tmp_path / "stopped" / ".geogan.lock").exists()

    resumed = subprocess.run([sys.executable, "-m", "geogan", "train", str(config), "--resume"], env=_env(),
                             capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode(errors="replace")[-2000:]
    a, b = checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "stopped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    from geogan.modelfile import read_payload

    ga, gb = read_payload(straight)["generators"], read_payload(tmp_path / "stopped" / "model.geogan")["generators"]
    assert all(torch.equal(ga[d][k], gb[d][k]) for d in ga for k in ga[d])
    assert (tmp_path / "straight" / "losses.csv").read_text() == (tmp_path / "stopped" / "losses.csv").read_text()


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=3)
    config = _config(tmp_path, chips, tmp_path / "run", num_workers=1)  # a loader worker too
    proc = _start_paused(config, tmp_path / "first_step")
    _wait_for(tmp_path / "first_step", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err.decode(errors="replace")[-2000:]
    assert _geogan_lines(err)[-1].startswith("geogan: stopped by SIGINT")
    assert "Aborted" not in err.decode(errors="replace")
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 1


# --------------------------------------------------------------------------------------------
# locks and debris
# --------------------------------------------------------------------------------------------
def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".geogan.lock").write_text(dead.stdout)  # its owner is gone; the OS holds no lock on it
    train(dict(TINY_TRAINING, data=str(chips), out=str(out)))
    assert (out / "model.geogan").exists() and not (out / ".geogan.lock").exists()


def test_checkpoint_debris_of_a_kill_before_the_rename_is_removed_by_the_next_run(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=2)
    out = tmp_path / "run"
    config = _config(tmp_path, chips, out)
    proc = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RENAME, "train", str(config)], env=_env(),
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")[-2000:]
    debris = [p for p in out.iterdir() if p.name.startswith(".checkpoint.pt.geogan-")]
    assert len(debris) == 1 and debris[0].stat().st_size > 0 and not (out / "checkpoint.pt").exists()

    again = subprocess.run([sys.executable, "-m", "geogan", "train", str(config), "--resume"], env=_env(),
                           capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode(errors="replace")[-2000:]
    assert "no checkpoint yet" in again.stderr.decode(errors="replace")
    assert not debris[0].exists()
    assert not [p for p in out.iterdir() if ".geogan-" in p.name]
    assert (out / "model.geogan").exists()


# --------------------------------------------------------------------------------------------
# under torchrun (2 processes): the same stop, once, and no agent traceback
# --------------------------------------------------------------------------------------------
def test_sigterm_under_torchrun_stops_every_rank_after_the_step_in_progress(tmp_path):
    from conftest import free_port

    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _config(tmp_path, chips, tmp_path / "run", epochs=5)
    script = tmp_path / "paused.py"
    script.write_text(PAUSED)
    marker = tmp_path / "first_step"
    env = dict(_env(), GEOGAN_TEST_MARKER=str(marker))
    env.pop("LOCAL_WORLD_SIZE", None)
    agent = subprocess.Popen([sys.executable, "-m", "geogan.cli.torchrun", "--nproc_per_node=2",
                              f"--master_port={free_port()}", str(script), "train", str(config)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker, agent)  # rank 0 logged step 1 and waits; rank 1 waits for it in the next step
    agent.send_signal(signal.SIGTERM)  # what a scheduler's preemption does: torchrun forwards it
    try:
        _, err = agent.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        agent.kill()
        raise AssertionError("the job did not end after SIGTERM") from None
    text = err.decode(errors="replace")
    assert agent.returncode == 143, text[-3000:]
    stops = [line for line in text.splitlines() if line.startswith("geogan: stopped by SIGTERM")]
    assert len(stops) == 2 and "Traceback" not in text and "geogan: error" not in text, text[-3000:]
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 1 and ck["samples_in_epoch"] == 2 and len(ck["ranks"]) == 2  # the step in progress

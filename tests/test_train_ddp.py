"""Data-parallel training with real DistributedDataParallel: 2 gloo processes on the CPU.

Each test launches the ranks itself (the environment torchrun would set) and waits for them
with a generous timeout; nothing here measures time.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_TRAINING, checkpoint_weights, free_port, make_chips

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Runs ``geogan train ARGS`` after applying the fault named by GEOGAN_TEST_FAULT on one rank.
LAUNCH = r"""
import errno, os, sys
fault, rank = os.environ.get("GEOGAN_TEST_FAULT", ""), os.environ["RANK"]
if fault == "float64":
    import torch
    torch.set_default_dtype(torch.float64)
if fault == "checkpoint-write" and rank == "0":
    import geogan.outputs as outputs
    real_fsync = outputs.fsync_file
    def fsync_file(path):
        if "checkpoint.pt" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(path)
    outputs.fsync_file = fsync_file
if fault == "chip-read" and rank == "1":
    import geogan.data as data
    from geogan.errors import RasterError
    real_getitem, calls = data.ChipDataset.__getitem__, []
    def getitem(self, index):
        calls.append(index)
        if len(calls) == 2:
            raise RasterError("'chip_0003.tif': read failed in window (0, 0, 32, 32)")
        return real_getitem(self, index)
    data.ChipDataset.__getitem__ = getitem
from geogan.cli import main
sys.argv[0] = "geogan"
main()
"""


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    env.update(extra)
    return env


def _launch(args_per_rank: list[list[str]], fault: str = "") -> list[tuple[int, str]]:
    """Run one ``geogan train`` per rank as torchrun would; (exit status, stderr) per rank."""
    port, world = str(free_port()), len(args_per_rank)
    procs = []
    for rank, args in enumerate(args_per_rank):
        env = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=str(world), RANK=str(rank),
                   LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), GEOGAN_TEST_FAULT=fault)
        procs.append(subprocess.Popen([sys.executable, "-c", LAUNCH, "train", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a rank was left waiting: the job did not end") from None
        results.append((p.returncode, err.decode(errors="replace")))
    return results


def _config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(dict(TINY_TRAINING, **overrides)))
    return path


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("geogan: error")]


# --------------------------------------------------------------------------------------------
# DDP computes what one process computes at the combined batch
# --------------------------------------------------------------------------------------------
@pytest.fixture
def float64_networks():
    """Networks in float64, as the ranks' LAUNCH script builds them under GEOGAN_TEST_FAULT=float64.

    In float32 the batch-2 convolution rounds differently from two batch-1 ones (1e-5 relative),
    and Adam turns that noise into full-size steps wherever the true gradient is zero (every
    bias before an instance norm): the runs part by ~lr per step for reasons that have nothing
    to do with DDP. In float64 the same comparison holds to ~1e-11.
    """
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_two_processes_at_batch_1_match_one_process_at_batch_2(tmp_path, float64_networks):
    """Same data, same initial weights: DDP's averaged gradients equal batch 2's, so the weights agree.

    rgb → rgb keeps the identity loss on (each generator runs three times per step through its
    DDP, and the frozen discriminators run inside the generator step); pool_size 0 and no
    dropout leave no per-process randomness; all chips fully valid, so every masked mean weighs
    the two samples equally; 2 epochs of 2 steps, the second with a decayed learning rate.
    """
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", a=(3, "optical", "uint8"), b=(3, "optical", "uint16"), n_train=4)
    common = dict(TINY_TRAINING, data=str(chips), pool_size=0, dropout=False, epochs=1, epochs_decay=1)
    train(dict(common, out=str(tmp_path / "one"), batch_size=2))
    config = _config(tmp_path, **dict(common, out=str(tmp_path / "two"), batch_size=1))
    results = _launch([[str(config)], [str(config)]], fault="float64")
    assert [r for r, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]

    one, two = checkpoint_weights(tmp_path / "one"), checkpoint_weights(tmp_path / "two")
    assert set(one) == set(two) and any(k.startswith("D_a.") for k in one)
    assert one["G_a2b.model.1.weight"].dtype == torch.float64
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=1e-7, atol=1e-9), (key, (one[key] - two[key]).abs().max())
    ck = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2 and ck["iteration"] == 4  # 2 epochs × 2 steps
    adam = ck["model"]["optimizers"]["D"]["state"]
    assert adam and all(int(s["step"]) == 4 for s in adam.values())  # every D parameter stepped 4 times


# --------------------------------------------------------------------------------------------
# a failing rank ends the job, each rank with one line
# --------------------------------------------------------------------------------------------
def test_rank_0_that_cannot_write_the_checkpoint_ends_the_job(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _config(tmp_path, data=str(chips), out=str(tmp_path / "run"), batch_size=1)
    (code0, err0), (code1, err1) = _launch([[str(config)], [str(config)]], fault="checkpoint-write")
    assert code0 != 0 and code1 != 0
    assert len(_error_lines(err0)) == 1 and "checkpoint" in _error_lines(err0)[0]
    assert "No space left on device" in _error_lines(err0)[0] and "Traceback" not in err0
    assert len(_error_lines(err1)) == 1 and "Traceback" not in err1
    assert "rank 1 stopped because" in _error_lines(err1)[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if ".part" in p.name]


def test_rank_1_failing_mid_step_ends_the_job(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _config(tmp_path, data=str(chips), out=str(tmp_path / "run"), batch_size=1, epochs=2)
    (code0, err0), (code1, err1) = _launch([[str(config)], [str(config)]], fault="chip-read")
    assert code0 != 0 and code1 != 0
    assert len(_error_lines(err1)) == 1 and "chip_0003.tif" in _error_lines(err1)[0] and "Traceback" not in err1
    assert len(_error_lines(err0)) == 1 and "Traceback" not in err0
    assert _error_lines(err0)[0].startswith("geogan: error: rank 0 stopped because")


def test_bad_input_on_one_rank_stops_every_rank_before_training(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _config(tmp_path, data=str(chips), out=str(tmp_path / "run"), batch_size=1)
    missing = tmp_path / "not_on_this_node"
    (code0, err0), (code1, err1) = _launch([[str(config)], [str(config), "--data", str(missing)]])
    assert code0 != 0 and code1 != 0
    assert len(_error_lines(err1)) == 1 and "not_on_this_node" in _error_lines(err1)[0]
    assert len(_error_lines(err0)) == 1
    assert "rank 0 stopped because rank 1 failed" in _error_lines(err0)[0] and "not_on_this_node" in err0
    assert not (tmp_path / "run").exists()  # nothing written: the ranks agreed before any output

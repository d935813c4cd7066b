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
if "record" in fault.split(","):  # every (epoch, index) this rank reads, one line each
    import geogan.trainer.batches as batches
    real_item, record = batches.EpochItems.__getitem__, os.environ["GEOGAN_TEST_RECORD"] + "." + rank
    def item(self, key):
        with open(record, "a") as fh:
            fh.write(f"{key[0]} {key[1]}\n")
        return real_item(self, key)
    batches.EpochItems.__getitem__ = item
cancel_after = [f for f in fault.split(",") if f.startswith("cancel-after-")]
if cancel_after and rank == "1":  # only rank 1 is asked to stop: the ranks must agree
    import geogan.cli.train as cli_train
    polls, limit = [], int(cancel_after[0].rsplit("-", 1)[1])
    def cancelled(self):
        polls.append(1)
        return len(polls) > limit
    cli_train.EpochBars.cancelled = cancelled
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


def _launch(args_per_rank: list[list[str]], fault: str = "", record: str = "") -> list[tuple[int, str]]:
    """Run one ``geogan train`` per rank as torchrun would; (exit status, stderr) per rank."""
    port, world = str(free_port()), len(args_per_rank)
    procs = []
    for rank, args in enumerate(args_per_rank):
        env = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=str(world), RANK=str(rank),
                   LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), GEOGAN_TEST_FAULT=fault,
                   GEOGAN_TEST_RECORD=record)
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


# --------------------------------------------------------------------------------------------
# resuming on another number of processes: the same epoch, every chip once, own random streams
# --------------------------------------------------------------------------------------------
class _StopAfter:
    """A progress object that asks to stop before step ``n + 1``."""

    def __init__(self, n: int) -> None:
        self.n, self.polls = n, 0

    def update(self, done, total, message=""):
        pass

    def cancelled(self) -> bool:
        self.polls += 1
        return self.polls > self.n


def _reads(files: list, in_process: list) -> dict[int, list[int]]:
    """epoch -> the chip indices read in it, over every process of every part of the run."""
    per_epoch: dict[int, list[int]] = {}
    pairs = [tuple(map(int, line.split())) for f in files if f.exists() for line in f.read_text().splitlines()]
    for epoch, index in pairs + in_process:
        per_epoch.setdefault(epoch, []).append(index)
    return per_epoch


@pytest.fixture
def recorded_reads(monkeypatch):
    """The (epoch, index) pairs this process's training reads (the in-process part of a run)."""
    import geogan.trainer.batches as batches

    reads: list = []
    real = batches.EpochItems.__getitem__

    def item(self, key):
        reads.append(tuple(key))
        return real(self, key)

    monkeypatch.setattr(batches.EpochItems, "__getitem__", item)
    return reads


def _every_chip_once_per_epoch(per_epoch: dict, chips: int, epochs: int) -> None:
    assert sorted(per_epoch) == list(range(epochs))
    for epoch, indices in per_epoch.items():
        assert sorted(indices) == list(range(chips)), (epoch, indices)  # as the uninterrupted run reads


def test_stopped_on_two_processes_resumed_on_one_continues_the_same_epoch(tmp_path, recorded_reads, caplog):
    from geogan.modelfile import load_model
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=6)
    run = tmp_path / "run"
    config = _config(tmp_path, data=str(chips), out=str(run), batch_size=1, epochs=1, epochs_decay=1)
    results = _launch([[str(config)], [str(config)]], fault="record,cancel-after-2", record=str(tmp_path / "reads"))
    assert [r for r, _ in results] == [130, 130], results[0][1][-2000:] + results[1][1][-2000:]
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 2 and ck["samples_in_epoch"] == 4 and ck["epoch"] == 0 and len(ck["ranks"]) == 2

    with caplog.at_level("WARNING", logger="geogan"):
        path = train(dict(TINY_TRAINING, data=str(chips), out=str(run), batch_size=1, epochs=1, epochs_decay=1),
                     resume=True)
    assert "written by 2 process(es), this run has 1" in caplog.text and "not bit-for-bit" in caplog.text
    _every_chip_once_per_epoch(_reads([tmp_path / "reads.0", tmp_path / "reads.1"], recorded_reads), 6, 2)
    final = torch.load(run / "checkpoint.pt", weights_only=True)
    assert final["epoch"] == 2 and final["iteration"] == 2 + 2 + 6  # the 2 chips left of epoch 1 alone, then epoch 2
    assert final["model"]["schedulers"]["G"]["last_epoch"] == 2  # the learning rate decayed once per epoch
    assert load_model(path).training["epochs"] == 2


def test_stopped_on_one_process_resumed_on_two_continues_the_same_epoch(tmp_path, recorded_reads):
    from geogan.errors import Cancelled
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=6)
    run = tmp_path / "run"
    settings = dict(TINY_TRAINING, data=str(chips), out=str(run), batch_size=1, epochs=1, epochs_decay=1)
    with pytest.raises(Cancelled):
        train(settings, progress=_StopAfter(2))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["samples_in_epoch"] == 2

    config = _config(tmp_path, **settings)
    results = _launch([[str(config), "--resume"], [str(config), "--resume"]], fault="record",
                      record=str(tmp_path / "reads"))
    assert [r for r, _ in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    assert "written by 1 process(es), this run has 2" in results[0][1]
    _every_chip_once_per_epoch(_reads([tmp_path / "reads.0", tmp_path / "reads.1"], recorded_reads), 6, 2)
    final = torch.load(run / "checkpoint.pt", weights_only=True)
    assert final["epoch"] == 2 and final["iteration"] == 2 + 2 + 3  # 4 chips left on 2 ranks, then 6 on 2
    assert final["world_size"] == 2 and len(final["ranks"]) == 2
    rngs = [r["rng"]["torch"] for r in final["ranks"]]
    assert not torch.equal(rngs[0], rngs[1])  # rank 1 did not take rank 0's random stream


def test_batch_norm_under_data_parallel_on_the_cpu_is_refused_in_one_line(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = _config(tmp_path, data=str(chips), out=str(tmp_path / "run"), batch_size=1, norm="batch")
    results = _launch([[str(config)], [str(config)]])
    for code, err in results:
        assert code == 1 and "Traceback" not in err
        assert len(_error_lines(err)) == 1 and "SyncBatchNorm" in _error_lines(err)[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written

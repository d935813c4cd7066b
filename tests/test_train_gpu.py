"""Training on a CUDA GPU: the real loop with geogan's CUDA defaults. Skipped without a GPU.

Run by tools/gpu_check.sh on a machine with one; CI has none, so these never run there.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import TINY_TRAINING, free_port, make_chips

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = dict(TINY_TRAINING, device="cuda", amp="auto", compile="auto", channels_last="auto", num_workers=None,
            batch_size=2, epochs=2)


def _losses(run) -> np.ndarray:
    import csv

    with open(run / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(v) for k, v in r.items() if k not in ("epoch", "iteration", "lr")] for r in rows])


def test_cuda_defaults_train_and_save_bare_fp32_weights(tmp_path):
    from geogan.modelfile import load_model, read_payload
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=4, holes=True)
    path = train(dict(CUDA, data=str(chips), out=str(tmp_path / "run")))
    payload = read_payload(path)
    runtime = payload["training"]["runtime"]
    major, _ = torch.cuda.get_device_capability()
    assert runtime["amp"] == ("bf16" if major >= 8 else "fp16") and runtime["cudnn_benchmark"] is True
    assert runtime["num_workers"] >= 1
    weights = payload["generators"]["a2b"]
    assert all(k.startswith("model.") for k in weights)  # no module. / _orig_mod. prefixes
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" and v.is_contiguous() for v in weights.values())
    assert np.isfinite(_losses(tmp_path / "run")).all()
    model = load_model(path, "cuda")
    out = model.translate(np.full((2, 32, 32), 0.01, np.float32), "a2b")
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8


def test_cuda_fp16_with_grad_scaler_and_resume(tmp_path):
    from geogan.trainer import load_checkpoint, train

    chips = make_chips(tmp_path / "chips", n_train=4)
    cfg = dict(CUDA, data=str(chips), out=str(tmp_path / "run"), amp="fp16", compile="off", epochs=1)
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["model"]["scaler"] is not None and ck["ranks"][0]["rng"]["cuda"]
    train(dict(cfg, epochs=2), resume=True)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    assert np.isfinite(_losses(tmp_path / "run")).all()


def test_two_processes_on_one_gpu_with_gloo(tmp_path):
    """NCCL refuses two ranks on one GPU; gloo carries CUDA tensors, which proves the DDP path here."""
    chips = make_chips(tmp_path / "chips", n_train=4)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(CUDA, data=str(chips), out=str(tmp_path / "run"), batch_size=1,
                                          dist_backend="gloo", compile="off", num_workers=0)))
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank),
                   LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", PYTHONPATH=os.pathsep.join(sys.path))
        procs.append(subprocess.Popen([sys.executable, "-m", "geogan", "train", str(config), "--device", "cuda:0"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode(errors="replace")[-3000:]
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["iteration"] == 4


def _torchrun(tmp_path, config, nproc: int = 2, *args: str) -> list[str]:
    """``python -m geogan.cli.torchrun --nproc_per_node=N -m geogan train CONFIG``; its stderr lines."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "geogan.cli.torchrun", f"--nproc_per_node={nproc}",
                           f"--master_port={free_port()}", "-m", "geogan", "train", str(config), *args],
                          env=env, capture_output=True, timeout=300)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    return err.splitlines()


def _ddp_backend() -> dict:
    """NCCL with a GPU per rank when 2 are visible; otherwise both ranks on GPU 0 over gloo."""
    if torch.cuda.device_count() >= 2:
        return {"dist_backend": "nccl", "device": "cuda"}
    return {"dist_backend": "gloo", "device": "cuda:0"}


def test_default_configuration_compile_and_bf16_under_ddp(tmp_path):
    """The configuration users run: CUDA defaults (compile on, bf16 on 8.0+) with 2 DDP processes."""
    from geogan.modelfile import read_payload

    chips = make_chips(tmp_path / "chips", n_train=4)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(CUDA, data=str(chips), out=str(tmp_path / "run"), batch_size=1,
                                          num_workers=0, **_ddp_backend())))
    _torchrun(tmp_path, config)
    payload = read_payload(tmp_path / "run" / "model.geogan")
    assert payload["training"]["world_size"] == 2 and payload["training"]["runtime"]["compile"] is True
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 4 and all(torch.isfinite(v).all() for sd in ck["model"]["nets"].values()
                                        for v in sd.values() if v.is_floating_point())


def test_pair_discriminators_under_ddp(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    pairs = make_chips(tmp_path / "pairs", n_train=4, paired=True, seed=1)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(CUDA, data=str(chips), data_paired=str(pairs), out=str(tmp_path / "run"),
                                          lambda_pair_gan=1.0, lambda_feat=1.0, batch_size=1, num_workers=0,
                                          compile="off", **_ddp_backend())))
    _torchrun(tmp_path, config)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"D_pair_a2b", "D_pair_b2a"} <= set(ck["model"]["nets"]) and ck["world_size"] == 2


def test_resume_on_the_gpu_gives_the_uninterrupted_runs_weights(tmp_path):
    """Weights compared, not just finiteness: fp32, no compile (the resumed process compiles and
    benchmarks afresh), the uninterrupted and the resumed run in one process (one cuDNN choice)."""
    from conftest import checkpoint_weights

    from geogan.errors import Cancelled
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=4)
    cfg = dict(CUDA, data=str(chips), amp="off", compile="off", num_workers=0, pool_size=2, batch_size=1,
               epochs=1, epochs_decay=1)

    class StopAfter3:
        polls = 0

        def update(self, done, total, message=""):
            pass

        def cancelled(self) -> bool:
            self.polls += 1
            return self.polls > 3

    train(dict(cfg, out=str(tmp_path / "straight")))
    with pytest.raises(Cancelled):
        train(dict(cfg, out=str(tmp_path / "resumed")), progress=StopAfter3())
    train(dict(cfg, out=str(tmp_path / "resumed")), resume=True)
    a, b = checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "resumed")
    assert set(a) == set(b)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, worst

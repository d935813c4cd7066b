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

"""How a run uses its device: precision, memory layout, compilation, loader workers, cuDNN.

Each ``auto`` is resolved here from the device, by what was measured on the step that
``tools/bench_train.py`` times (CycleGAN resnet_9blocks ngf 64 at 256², 1.88 TFLOP per image;
H100 SXM, torch 2.11; docs/training.md and docs/benchmarks.md have the tables):

* **precision** — :func:`geogan.devices.choose_precision`: bf16 autocast where the GPU runs it
  natively (compute capability 8.0+), fp16 with a GradScaler on older GPUs, fp32 on the CPU.
  H100, batch 8: bf16 58.7 images/s, fp16 + scaler 57.6.
* **channels_last** — off by default everywhere: the networks' InstanceNorm returns
  NCHW-contiguous tensors, so every conv → norm pair converts the layout twice. H100, bf16
  batch 8: 47.7 images/s with channels_last vs 58.7 without; slower on the CPU too. ``on`` forces it.
* **compile** — ``torch.compile`` of every network: on by default on CUDA, where fusing the
  norm/activation/padding chains between convolutions gave 1.44x (H100, bf16 batch 8: 84.2 vs
  58.7 images/s, after ~60 s of compilation); off on the CPU (minutes of compilation for a small
  gain). A different batch size (an epoch's last batch) compiles once more.
* **num_workers** — chip reading and augmentation in worker processes on CUDA (up to 4 per
  process, fewer when several processes share the cores), so the GPU does not wait for reads;
  none on the CPU, whose cores are busy with the networks.
* **cudnn.benchmark** — on CUDA: crops have one fixed size, so the fastest kernels are found once.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..devices import choose_precision, torch_dtype

#: Loader worker processes per training process on CUDA when ``num_workers`` is not set.
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class Runtime:
    """The resolved settings of one run (what the model file's training summary records)."""

    precision: Optional[str]  # "bf16" | "fp16" | None (fp32)
    channels_last: bool
    compile: bool
    num_workers: int
    cudnn_benchmark: bool

    @property
    def amp_dtype(self) -> Any:
        return torch_dtype(self.precision)

    @property
    def amp_mode(self) -> str:
        return self.precision or "off"

    def summary(self) -> dict:
        return {"amp": self.amp_mode, "channels_last": self.channels_last, "compile": self.compile,
                "num_workers": self.num_workers, "cudnn_benchmark": self.cudnn_benchmark}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_runtime(cfg: Any, device: Any, local_world: int = 1, cores: Optional[int] = None) -> Runtime:
    """Turn the config's ``auto`` settings into concrete ones for ``device``.

    ``local_world`` is the number of training processes on this machine (they share its cores).
    """
    cuda = device.type == "cuda"
    precision = choose_precision(cfg.amp, device)
    channels_last = cfg.channels_last == "on"
    compile_nets = cfg.compile == "on" or (cfg.compile == "auto" and cuda)
    if cfg.num_workers is not None:
        workers = cfg.num_workers
    elif cuda:
        share = (cores if cores is not None else available_cores()) // max(1, local_world)
        workers = max(1, min(MAX_AUTO_WORKERS, share - 1))
    else:
        workers = 0
    return Runtime(precision, channels_last, compile_nets, workers, cudnn_benchmark=cuda)


@contextlib.contextmanager
def cudnn_settings(runtime: Runtime) -> Iterator[None]:
    """Set ``torch.backends.cudnn.benchmark`` for the run and restore it afterwards (a library
    must not leave process-wide settings changed behind it)."""
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = runtime.cudnn_benchmark or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before

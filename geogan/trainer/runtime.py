"""How a run uses its device: precision, memory layout, compilation, loader workers, cuDNN.

Each ``auto`` is resolved here from the device, by what ``tools/bench_train.py`` measured
(the README has the figures):

* **precision** — :func:`geogan.devices.choose_precision`: bf16 autocast where the GPU runs it
  natively (compute capability 8.0+), fp16 with a GradScaler on older GPUs, fp32 on the CPU.
* **channels_last** — off by default everywhere: the networks' InstanceNorm returns
  NCHW-contiguous tensors, so every conv → norm pair converts the layout twice; measured slower
  on the CPU and no faster on an H100 (see README). ``on`` forces it.
* **compile** — ``torch.compile`` of every network: on by default on CUDA, where fusing the
  norm/activation/padding chains between convolutions is most of the gain measured; off on the
  CPU (minutes of compilation for a short run). The first steps include the compilation.
* **num_workers** — chip reading and augmentation in worker processes on CUDA (up to 4 per
  process, fewer when the cores are shared by several processes), so the GPU does not wait for
  reads; none on the CPU, whose cores are busy with the networks.
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

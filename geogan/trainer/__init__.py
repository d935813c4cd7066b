"""Training: ``train(config, progress)`` → one self-describing model file.

The loop is the same on one CPU, one GPU or several processes launched by ``torchrun``
(data-parallel: each epoch is split between processes, and each network sits in its own
DistributedDataParallel, which averages gradients while backward runs — NCCL on CUDA, gloo on
the CPU; only rank 0 writes files). What lands in ``OUT``:

``config.yaml``        the resolved configuration
``losses.csv``         every loss at every logged step
``previews/epoch_XXX.png``  real/fake/reconstructed grid after each epoch
``checkpoint.pt``      the latest checkpoint (every ``checkpoint_every`` steps, each epoch end, on a cancel)
``model.geogan``       the result: generators + architecture + domains + training summary

The package is split along its seams: :mod:`.loop` (the run), :mod:`.distributed` (processes
and their messages), :mod:`.runtime` (precision, layout, compile, workers), :mod:`.batches`
(the data order), :mod:`.checkpoints` and :mod:`.previews`.
"""
from __future__ import annotations

from .checkpoints import (ARCHITECTURE_KEYS, CHECKPOINT_FORMAT, CHECKPOINT_NAME, CHECKPOINT_VERSION, load_checkpoint,
                          save_checkpoint)
from .distributed import PeerFailedError
from .loop import MODEL_NAME, TrainingRun, TrainResult, load_train_config, train
from .previews import _display_bands, to_display, write_preview  # noqa: F401  (_display_bands: tests)
from .runtime import Runtime, resolve_runtime

__all__ = [
    "train", "TrainResult", "load_train_config", "save_checkpoint", "load_checkpoint", "to_display", "write_preview",
    "TrainingRun", "Runtime", "resolve_runtime", "PeerFailedError",
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CHECKPOINT_NAME", "MODEL_NAME", "ARCHITECTURE_KEYS",
]

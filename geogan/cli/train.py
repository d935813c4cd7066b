"""``geogan train``: options → :func:`geogan.trainer.train`, with a tqdm bar per epoch."""
from __future__ import annotations

from typing import Optional

import click

from ..torchrun_env import job_place
from . import cli
from .signals import stop_requested


class EpochBars:
    """A tqdm bar per epoch: a new bar starts whenever the step count goes back to the start."""

    def __init__(self) -> None:
        self._bar = None
        self._done = 0

    def update(self, done: int, total: int, message: str = "") -> None:
        from tqdm.auto import tqdm

        if self._bar is None or done < self._done or total != self._bar.total:
            self.close()
            desc = message.split("  ", 1)[0] if message else "training"
            # disable=None: no bar when stderr is not a terminal (a log file, a pipe), as in chips and
            # predict — carriage-return redraws would fill the log; losses.csv records every step
            self._bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True, disable=None)
        if message and "  " in message:
            self._bar.set_postfix_str(message.split("  ", 1)[1], refresh=False)
        self._bar.update(done - self._bar.n)
        self._done = done

    def cancelled(self) -> bool:
        return stop_requested()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@cli.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(), help="Chips directory written by 'geogan chips' (overrides 'data:').")
@click.option("--out", type=click.Path(), help="Output directory for the model, checkpoints and logs (overrides 'out:').")
@click.option("--model", type=click.Choice(["cyclegan", "pix2pix"]), help="cyclegan (unpaired) or pix2pix (paired).")
@click.option("--epochs", type=int, help="Epochs at the initial learning rate.")
@click.option("--epochs-decay", type=int, help="Further epochs with the learning rate decaying linearly to 0.")
@click.option("--batch-size", type=int, help="Chips per step (per process).")
@click.option("--crop-size", type=int, help="Training crop in pixels (at most the chip size).")
@click.option("--device", metavar="auto|cpu|cuda|cuda:N",
              help="Compute device (default: CUDA when present; under torchrun each process its own GPU).")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/checkpoint.pt: bit for bit on the CPU; on CUDA, or on another number of "
                   "processes (with a warning), the same run but not bit-identically. Starts the run, with a "
                   "warning, when there is no checkpoint yet.")
def train_command(config: Optional[str], data: Optional[str], out: Optional[str], model: Optional[str],
                  epochs: Optional[int], epochs_decay: Optional[int], batch_size: Optional[int],
                  crop_size: Optional[int], device: Optional[str], resume: bool) -> None:
    """Train a GAN on a chips export and write OUT/model.geogan.

    CONFIG is an optional YAML file of training settings (see tools/train_example.yaml);
    without it the papers' defaults are used. Ctrl-C or SIGTERM saves a checkpoint and exits
    130/143; --resume continues from it, on any number of processes. Several GPUs
    (DistributedDataParallel; geogan.cli.torchrun is torchrun whose stop exits 130/143
    without a traceback):

    \b
    python -m geogan.cli.torchrun --nproc_per_node=N -m geogan train CONFIG.yaml
    torchrun --nnodes=M --nproc_per_node=N --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=JOB -m geogan train CONFIG.yaml
    """
    from ..trainer import load_train_config, train

    overrides = {"data": data, "out": out, "model": model, "epochs": epochs, "epochs_decay": epochs_decay,
                 "batch_size": batch_size, "crop_size": crop_size, "device": device}
    cfg = load_train_config(config, overrides)
    bars = EpochBars()
    try:
        path = train(cfg, progress=bars, resume=resume)
    finally:
        bars.close()
    if job_place().main:
        click.echo(f"wrote {path}")

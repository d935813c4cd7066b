"""The run: checks, process group, networks, one DataLoader, the step loop, checkpoints, the model file.

Order of a run, on every process:

1. :meth:`TrainingRun.prepare` — every check that can fail on bad input (device, sizes, chips);
   nothing is written. All ranks then agree that it succeeded, so a rank with bad input ends
   the job with its one-line reason instead of leaving the others waiting.
2. :meth:`TrainingRun.claim_outputs` — rank 0 locks ``OUT`` (a second run into it refuses
   while this one lives; a lock left by a dead process is taken over), removes temporary files
   of killed runs, and decides between a new run and ``--resume``; the checkpoint it loads is
   sent to the other ranks.
3. :meth:`TrainingRun.build` — seeded networks (identical on every rank), each wrapped in its
   own DDP and optionally compiled; states restored from the checkpoint.
4. :meth:`TrainingRun.loop` — one loader for the whole run; a cancel (the progress object, or
   SIGINT/SIGTERM through the CLI) is polled before each batch is fetched and ends the run
   with a checkpoint of the last finished step.
5. :meth:`TrainingRun.finish` — rank 0 writes ``model.geogan`` (bare fp32 weights).
"""
from __future__ import annotations

import copy
import csv
import io
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from ..config import TrainConfig, from_mapping, load_yaml, to_dict
from ..devices import resolve_device
from ..errors import Cancelled, CheckpointError, ConfigError, GeoganError, OutputError, describe
from ..notices import WarningCollector
from ..progress import ProgressLike, as_progress
from .batches import BatchPlan, PlanSampler, run_loader
from .checkpoints import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, CHECKPOINT_VERSION, architecture, check_compatible,
                          load_checkpoint, rng_state, samples_seen, save_checkpoint, set_rng_state)
from .distributed import Dist, split_cpu_threads
from .previews import render_preview
from .runtime import Runtime, cudnn_settings, resolve_runtime

log = logging.getLogger("geogan.trainer")

MODEL_NAME = "model.geogan"
LOSSES_NAME = "losses.csv"
EventHook = Callable[[str, dict], None]


def load_train_config(source: Union[None, str, os.PathLike, Mapping[str, Any], TrainConfig] = None,
                      overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML path, a mapping or a config, with ``overrides`` on top.

    Overrides whose value is ``None`` are ignored (an unset command-line option). Unknown keys
    and bad values raise :class:`ConfigError` naming the key and the file.
    """
    where = "config"
    if source is None:
        data: dict = {}
    elif isinstance(source, TrainConfig):
        data = dict(to_dict(source))
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = load_yaml(source)
        where = describe(source)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_mapping(TrainConfig, data, source=where)


class TrainResult(type(Path())):  # type: ignore[misc]  # the platform's concrete Path class
    """What :func:`train` returns: the path of ``OUT/model.geogan`` — a :class:`~pathlib.Path`, as
    train always returned — with the run's ``warnings`` (the sentences the CLI prints). Paths
    derived from it (``.parent``, ``/``) do not carry them."""

    warnings: tuple[str, ...] = ()

    def with_segments(self, *segments: Any) -> Path:  # Python >= 3.12: derived paths are plain
        return Path(*segments)


def train(config: Union[TrainConfig, Mapping[str, Any], str, os.PathLike], progress: ProgressLike = None, *,
          resume: bool = False, on_event: Optional[EventHook] = None) -> TrainResult:
    """Train a CycleGAN or Pix2Pix on a chips export and return the path of ``OUT/model.geogan``.

    ``config`` is a :class:`TrainConfig`, a mapping of its keys, or a YAML file. ``progress``
    gets ``update(step_in_epoch, steps_per_epoch, "epoch e/E  losses")`` and is polled for
    cancellation before each step (a cancel writes a checkpoint of the last finished step first,
    so ``resume=True`` continues exactly there). ``resume=True`` without a checkpoint yet starts
    the run (with a warning). ``on_event(name, info)`` is called with ``"checkpoint"``,
    ``"epoch"`` and ``"end"`` (``info["generators"]`` holds the final weights on every process):
    a hook for tests and tools. The returned path's ``warnings`` lists the run's warnings.
    """
    cfg = config if isinstance(config, TrainConfig) else load_train_config(config)
    if not cfg.data:
        raise ConfigError("config: data: no chips directory given (--data DIR or 'data:' in the config)")
    if not cfg.out:
        raise ConfigError("config: out: no output directory given (--out DIR or 'out:' in the config)")
    with WarningCollector() as notes:
        path = TrainingRun(cfg, as_progress(progress), resume, on_event).run()
    result = TrainResult(path)
    result.warnings = notes.warnings
    return result


def check_output_folder(out: Path, data: Path) -> None:
    """Refuse, before training, an output folder the run could not finish in: a name that is not
    valid UTF-8 (GDAL writes the previews, so the first epoch's end would fail), or the chips export
    itself or a folder inside it (symlinks resolved): the run's files would mix with the chips, and
    the next 'geogan chips' into that folder replaces it whole, model and checkpoints included."""
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise OutputError(f"{describe(out)}: the folder name is not valid UTF-8, so GDAL cannot write the training "
                          "previews into it; choose another --out") from None
    out_r, data_r = out.resolve(), data.resolve()
    if out_r == data_r or data_r in out_r.parents:
        where = "is" if out_r == data_r else "is inside"
        raise OutputError(f"{describe(out)}: {where} the chips export {describe(data)}; a later 'geogan chips' "
                          "into it would delete the model — choose another --out")


def _requested_device_type(cfg: TrainConfig) -> str:
    if cfg.device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if cfg.device.startswith("cuda") else "cpu"


class LossLog:
    """``losses.csv`` on rank 0: the header, rows kept from before the checkpoint on resume, then appends."""

    def __init__(self, path: Path, loss_names: list[str]) -> None:
        self.path, self.loss_names = path, loss_names

    def start(self, resume_iteration: Optional[int]) -> None:
        from ..raster import atomic_write_bytes

        rows: list[list[str]] = []
        if resume_iteration is not None and self.path.exists():
            # Drop what a killed run logged after its last checkpoint: those steps run again.
            with open(self.path, newline="") as fh:
                rows = [r for r in list(csv.reader(fh))[1:] if r and _int_or_none(r[1]) is not None
                        and int(r[1]) <= resume_iteration]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["epoch", "iteration", "lr"] + self.loss_names)
        writer.writerows(rows)
        atomic_write_bytes(self.path, buf.getvalue().encode("utf-8"), what="loss log")

    def append(self, epoch: int, iteration: int, lr: float, losses: Mapping[str, float]) -> None:
        row = [epoch, iteration, f"{lr:.6g}"] + [f"{losses.get(k, float('nan')):.6g}" for k in self.loss_names]
        try:
            with open(self.path, "a", newline="") as fh:
                csv.writer(fh).writerow(row)
        except OSError as exc:
            raise OutputError(f"{describe(self.path)}: cannot append to the loss log ({exc.strerror or exc})") from None


def _int_or_none(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def _ignore_sigint_in_worker(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group; loader workers leave it to the main process's cancel."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TrainingRun:
    """One call of :func:`train` on one process (see the module docstring for the stages)."""

    def __init__(self, cfg: TrainConfig, progress: Any, resume: bool, on_event: Optional[EventHook]) -> None:
        self.cfg, self.progress, self.resume, self.on_event = cfg, progress, resume, on_event
        self.lock: Any = None
        self.checkpoint: Optional[dict] = None
        #: Folders this run created for OUT (it and missing parents, deepest first) and whether the
        #: run's files were opened: a run that fails or is stopped before its first step removes
        #: what it created, so nothing half-written is left (a previous run's files are never touched).
        self.created_dirs: list[Path] = []
        self.outputs_open = False

    def emit(self, name: str, info: dict) -> None:
        if self.on_event is not None:
            self.on_event(name, info)

    # -- the stages --------------------------------------------------------------------------
    def run(self) -> Path:
        self.dist = Dist()
        self.dist.start(_requested_device_type(self.cfg), self.cfg.dist_backend, self.cfg.dist_timeout_s)
        try:
            self.agreed(self.prepare)
            self.checkpoint = self.agreed(self.claim_outputs)
            self.checkpoint = self.dist.share(self.checkpoint)
            self.build()
            with cudnn_settings(self.runtime):
                self.loop()
            return self.finish()
        except Cancelled:
            raise
        except BaseException as exc:
            reported = self.dist.tear_down_after(exc)
            if reported is exc:
                raise
            raise reported from None
        finally:
            if self.lock is not None:
                self.lock.release()
            if not self.outputs_open:
                self.remove_created_dirs()
            self.dist.stop()

    def remove_created_dirs(self) -> None:
        """Remove the folders this run created for OUT, if they are still empty (start-up failed)."""
        for folder in self.created_dirs:
            try:
                folder.rmdir()
            except OSError:  # not empty (another process wrote there meanwhile) or already gone: keep
                return

    def agreed(self, stage: Callable[[], Any]) -> Any:
        """Run a setup stage on every rank; if any rank hits bad input, every rank stops with a line."""
        error: Optional[GeoganError] = None
        result = None
        try:
            result = stage()
        except GeoganError as exc:
            error = exc
        self.dist.agree(error)
        return result

    def prepare(self) -> None:
        """Every check that can fail on bad input, before anything is written."""
        from ..data import open_chips, open_paired_chips
        from ..models.registry import SIZE_MULTIPLE

        cfg = self.cfg
        self.device = resolve_device(cfg.device, self.dist.local_rank if self.dist.active else None)
        self.runtime: Runtime = resolve_runtime(cfg, self.device, self.dist.place.local_world)
        if self.dist.active and cfg.norm == "batch" and self.device.type != "cuda":
            raise ConfigError("config: norm: batch under data-parallel training needs GPUs (torch's SyncBatchNorm, "
                              "which keeps the statistics of the whole job's batch, runs only there); use norm: "
                              "instance or none, or train in one process")
        multiple = SIZE_MULTIPLE[cfg.generator]
        if cfg.crop_size % multiple:
            raise ConfigError(f"config: crop_size: {cfg.crop_size} is not a multiple of {multiple}, which "
                              f"{cfg.generator} needs (crop must be a multiple of SIZE_MULTIPLE = {multiple})")
        self.export = open_chips(cfg.data, require_paired=cfg.model == "pix2pix")
        # the extra pairs of a semi-supervised CycleGAN, checked against the unpaired chips
        self.paired_export = open_paired_chips(cfg.data_paired, self.export, cfg.crop_size) if cfg.data_paired else None
        h, w = self.export.chip_size
        if cfg.crop_size > min(h, w):
            raise ConfigError(f"config: crop_size: {cfg.crop_size} is larger than the chips in "
                              f"{describe(cfg.data)} ({h}x{w}); set crop_size <= {min(h, w)}")
        self.out = Path(cfg.out)
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"{describe(self.out)}: exists and is not a directory")
        check_output_folder(self.out, Path(cfg.data))
        if self.dist.main:
            self.created_dirs = [p for p in (self.out, *self.out.absolute().parents) if not p.exists()]
        self.ckpt_path = self.out / CHECKPOINT_NAME
        self.model_path = self.out / MODEL_NAME
        self.arch = architecture(cfg, multiple)

    def claim_outputs(self) -> Optional[dict]:
        """Rank 0: lock OUT, clear debris of killed runs, and return the checkpoint to resume (or None)."""
        from ..outputs import OutputLock, remove_stale_temps

        if not self.dist.main:
            return None
        self.lock = OutputLock(self.out, "training output", directory=True).acquire()
        for name in (CHECKPOINT_NAME, MODEL_NAME, LOSSES_NAME, "config.yaml"):
            for removed in remove_stale_temps(self.out / name):
                log.info("removed %s, left by a run that was killed while writing", removed)
        if self.resume:
            if not self.ckpt_path.exists():
                log.warning("%s: no checkpoint yet, so there is nothing to resume; starting the run from the "
                            "beginning", self.out)
                return None
            ckpt = load_checkpoint(self.ckpt_path)
            check_compatible(self.ckpt_path, ckpt, self.arch, self.export.specs)
            return ckpt
        for existing in (self.ckpt_path, self.model_path):
            if existing.exists():
                raise OutputError(f"{describe(existing)}: already exists from an earlier run; pass --resume "
                                  "(resume=True) to continue it or choose another --out")
        return None

    def build(self) -> None:
        """Seeded networks, identical on every rank; states from the checkpoint; then wrapped."""
        import torch

        from ..models.cyclegan import CycleGAN
        from ..models.pix2pix import Pix2Pix
        from ..models.wrapping import wrap_network

        cfg, dist, rt = self.cfg, self.dist, self.runtime
        threads = split_cpu_threads(self.device.type, dist.world)
        if threads:
            torch.set_num_threads(threads)
            log.info("using %d CPU thread(s) per process", threads)
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        cls = Pix2Pix if cfg.model == "pix2pix" else CycleGAN
        self.model = cls(cfg, self.export.specs["a"], self.export.specs["b"], self.device, rt.amp_dtype,
                         rt.channels_last, seed=cfg.seed + 7919 * dist.rank)
        torch.manual_seed(cfg.seed + dist.rank)
        np.random.seed(cfg.seed + dist.rank)
        random.seed(cfg.seed + dist.rank)
        self.epoch, self.samples_in_epoch, self.iteration, self.seconds = 0, 0, 0, 0.0
        if self.checkpoint is not None:
            self.restore(self.checkpoint)
        self.model.wrap_networks(lambda name, net: wrap_network(net, compile=rt.compile, ddp=dist.active,
                                                                device=self.device), compiled=rt.compile)
        if dist.main:
            if self.model.identity_note != "on" and cfg.model == "cyclegan":
                log.warning("identity loss %s", self.model.identity_note)
            log.info("training on %s (%d process(es)): %s", self.device, dist.world,
                     ", ".join(f"{k} {v}" for k, v in rt.summary().items()))

    def restore(self, ck: dict) -> None:
        """Weights, optimizers, pools, RNG and position from a checkpoint (one line if it does not fit).

        On another number of processes rank ``r`` takes rank ``r``'s states where the checkpoint has
        them; a rank the checkpoint did not have takes a copy of rank ``r mod N``'s history pool and
        fresh random streams of its own (never another rank's: identical dropout masks and pool
        draws on two ranks would halve what they add). The epoch continues from the samples the old
        job had seen, split between the new ranks (:mod:`.batches`).
        """
        dist = self.dist
        ranks = ck["ranks"]
        own = dist.rank < len(ranks)
        mine = ranks[dist.rank % len(ranks)]
        if len(ranks) != dist.world and dist.main:
            log.warning("the checkpoint was written by %d process(es), this run has %d: it continues the same "
                        "epoch with the same learning-rate schedule and every chip once per epoch, but not "
                        "bit-for-bit as the original run would have", len(ranks), dist.world)
        try:
            self.model.load_state_dict(ck["model"])
            self.model.load_local_state(mine["local"])
            if own:
                set_rng_state(mine["rng"])
            else:
                self.reseed(int(ck["iteration"]))
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(f"{describe(self.ckpt_path)}: checkpoint does not fit these networks "
                                  f"({type(exc).__name__}: {reason})") from None
        self.epoch, self.samples_in_epoch = int(ck["epoch"]), samples_seen(ck)
        self.iteration, self.seconds = int(ck["iteration"]), float(ck["seconds"])
        if dist.main:
            log.info("resuming from %s at epoch %d, step %d", self.ckpt_path, self.epoch + 1, self.iteration)

    def reseed(self, iteration: int) -> None:
        """Random streams of a rank the checkpoint did not have: its own, from the seed, rank and step."""
        import torch

        seed = self.cfg.seed + 1_000_003 * self.dist.rank + iteration
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.model.reseed_local(seed)

    def open_outputs(self) -> None:
        """Rank 0, once the first step succeeded: the folders, the resolved config and the loss log
        (trimmed to the checkpoint on resume). Not before: a run that cannot read its first batch
        or is stopped during start-up leaves no config, header-only log or empty previews folder."""
        import yaml

        from ..raster import atomic_write_bytes

        if not self.dist.main:
            self.outputs_open = True
            return
        (self.out / "previews").mkdir(parents=True, exist_ok=True)
        resolved = yaml.safe_dump(to_dict(self.cfg), sort_keys=False).encode("utf-8")
        atomic_write_bytes(self.out / "config.yaml", resolved, what="config")
        self.losses.start(self.iteration if self.checkpoint is not None else None)
        self.outputs_open = True

    # -- the loop ------------------------------------------------------------------------------
    def loop(self) -> None:
        from ..data import training_dataset

        cfg, dist = self.cfg, self.dist
        dataset = training_dataset(self.export, cfg, self.paired_export)
        total_epochs = cfg.epochs + cfg.epochs_decay
        self.last_losses: dict[str, float] = dict(self.checkpoint["losses"]) if self.checkpoint else {}
        self.started = time.perf_counter() - self.seconds
        self.losses = LossLog(self.out / LOSSES_NAME, list(self.model.loss_names))
        plan = BatchPlan(len(dataset), cfg.batch_size, cfg.seed, dist.world, dist.rank)
        sampler = PlanSampler(plan, self.epoch, self.samples_in_epoch, total_epochs)
        loader = run_loader(dataset, sampler, self.runtime.num_workers, self.device.type == "cuda",
                            worker_init=_ignore_sigint_in_worker)
        batches = iter(loader)
        try:
            for epoch, number, n_batches, indices in plan.steps(self.epoch, self.samples_in_epoch, total_epochs):
                self.stop_if_cancelled()  # before fetching: a stop never waits for data
                self.train_step(self.fetch(batches), plan.samples_per_step(indices))
                if not self.outputs_open:
                    self.agreed(self.open_outputs)
                self.after_step(number, n_batches, total_epochs)
        finally:
            del batches  # ends the loader's workers

    def fetch(self, batches: Any) -> dict:
        try:
            return next(batches)
        except RuntimeError:
            # A loader worker killed by the signal that is stopping us: stop as a cancel would
            # (one process only: under DDP the ranks must agree first, see stop_if_cancelled).
            if not self.dist.active and self.progress.cancelled():
                self.save_and_stop()
            raise

    def train_step(self, batch: dict, samples: int) -> None:
        self.model.set_input(batch)
        self.model.optimize_parameters()
        self.iteration += 1
        self.samples_in_epoch += samples

    def after_step(self, number: int, n_batches: int, total_epochs: int) -> None:
        cfg, main = self.cfg, self.dist.main
        last = number == n_batches
        if main and (self.iteration % cfg.log_every == 0 or last):
            self.last_losses = self.model.current_losses()  # the only device sync of a step, on rank 0
            self.losses.append(self.epoch + 1, self.iteration, self.model.lr, self.last_losses)
            self.progress.update(number, n_batches, self.message(total_epochs))
        elif main and number == 1:
            self.progress.update(number, n_batches, self.message(total_epochs))
        if last:
            self.end_epoch()
        elif cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
            self.save(epoch_end=False)

    def end_epoch(self) -> None:
        self.model.update_learning_rate()
        self.epoch += 1
        self.samples_in_epoch = 0
        self.save(epoch_end=True)
        if self.dist.main:
            preview = self.out / "previews" / f"epoch_{self.epoch:03d}.png"
            render_preview(self.model, self.export, self.cfg.crop_size, preview)
        self.emit("epoch", {"epoch": self.epoch, "iteration": self.iteration, "losses": dict(self.last_losses)})

    def stop_if_cancelled(self) -> None:
        """Every rank asks its progress object, and the ranks agree before every step.

        The agreement is one 4-byte all-reduce on the CPU (gloo) group, never on the training
        group: it waits for no device work (no CUDA synchronisation), only for the other ranks to
        reach the same step, which DDP's gradient all-reduce makes them do anyway. So a SIGTERM
        that reaches any rank stops every rank after the step in progress, as in one process.
        """
        if self.dist.any_flag(bool(self.progress.cancelled())):
            self.save_and_stop()

    def save_and_stop(self) -> None:
        if not self.outputs_open:  # before the first step: nothing to keep, nothing written
            raise Cancelled("training cancelled before its first step; nothing was written")
        self.save(epoch_end=False)
        raise Cancelled("training cancelled; continue it with --resume (resume=True)")

    def message(self, total_epochs: int) -> str:
        losses = " ".join(f"{k} {v:.3f}" for k, v in self.last_losses.items())
        return f"epoch {self.epoch + 1}/{total_epochs}" + (f"  {losses}" if losses else "")

    # -- checkpoints and the result ----------------------------------------------------------
    def save(self, epoch_end: bool) -> None:
        """Checkpoint: the ranks' RNG and pool states are gathered to rank 0, which writes."""
        self.seconds = time.perf_counter() - self.started
        ranks = self.dist.gather_to_main({"rng": rng_state(), "local": self.model.local_state()})
        if self.dist.main:
            save_checkpoint(self.ckpt_path, self.checkpoint_payload(ranks))
        self.dist.barrier()
        self.emit("checkpoint", {"path": self.ckpt_path, "epoch": self.epoch, "iteration": self.iteration,
                                 "epoch_end": epoch_end, "rank": self.dist.rank})

    def checkpoint_payload(self, ranks: Optional[list]) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "architecture": self.arch,
            "domains": {k: s.to_dict() for k, s in self.export.specs.items()},
            "config": to_dict(self.cfg),
            "epoch": self.epoch, "samples_in_epoch": self.samples_in_epoch,
            # steps of this world size done in the epoch (what format-1 readers resume from)
            "batch_in_epoch": -(-self.samples_in_epoch // (self.cfg.batch_size * self.dist.world)),
            "iteration": self.iteration,
            "seconds": self.seconds, "world_size": self.dist.world,
            "model": self.model.state_dict(),
            "ranks": ranks,
            "losses": dict(self.last_losses),
        }

    def finish(self) -> Path:
        """Rank 0 writes the model file: the bare generators in fp32, contiguous, on the CPU."""
        import torch

        from ..modelfile import TranslationModel, save_model

        generators = {d: copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)
                      for d, net in self.model.generators().items()}
        if self.dist.main:
            summary = {
                "epochs": self.epoch, "iterations": self.iteration, "seconds": round(self.seconds, 3),
                "final_losses": dict(self.last_losses), "device": str(self.device), "amp": self.runtime.amp_mode,
                "runtime": self.runtime.summary(),
                "world_size": self.dist.world, "chips_dir": str(Path(self.cfg.data).resolve()),
                "identity_loss": self.model.identity_note, "config": to_dict(self.cfg),
                "paired_chips_dir": str(Path(self.cfg.data_paired).resolve()) if self.cfg.data_paired else None,
                "paired_chips": len(self.paired_export.files["train_a"]) if self.paired_export else 0,
                "assets": self.export.meta.get("assets"),  # STAC asset keys per domain: predict's default
            }
            save_model(TranslationModel(self.export.specs, generators, self.arch, summary), self.model_path)
            log.info("wrote %s", self.model_path)
        self.dist.barrier()
        self.emit("end", {"path": self.model_path, "rank": self.dist.rank,
                          "generators": {d: {k: v.clone() for k, v in g.state_dict().items()}
                                         for d, g in generators.items()}})
        return self.model_path

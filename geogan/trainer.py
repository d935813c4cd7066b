"""Training: ``train(config, progress)`` → one self-describing model file.

The loop is the same on one CPU, one GPU or several processes launched by ``torchrun``
(data-parallel: a ``DistributedSampler`` splits each epoch between processes and gradients
are averaged across them after every backward pass, with gloo on the CPU and NCCL on CUDA;
only rank 0 writes files). What lands in ``OUT``:

``config.yaml``        the resolved configuration
``losses.csv``         every loss at every logged step
``previews/epoch_XXX.png``  real/fake/reconstructed grid after each epoch
``checkpoint.pt``      the latest checkpoint (every ``checkpoint_every`` steps and each epoch end)
``model.geogan``       the result: generators + architecture + domains + training summary

Checkpoints hold everything needed to continue bit-for-bit on the CPU: weights, optimizer,
scheduler and AMP scaler states, history pools, RNG states (torch, CUDA, numpy, python), the
epoch and the number of batches done in it (the data order of an epoch is a function of the
seed and the epoch, see :mod:`geogan.data`). They hold only tensors and plain containers,
so they load with ``torch.load(weights_only=True)``.
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

from .config import TrainConfig, from_mapping, load_yaml, to_dict, unet_depth  # quality: unet_depth
from .errors import Cancelled, CheckpointError, ConfigError, DeviceError, OutputError, describe
from .progress import ProgressLike, as_progress

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "geogan-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.geogan"
#: Keys that must match between a checkpoint and the run resuming it.
ARCHITECTURE_KEYS = ("model", "generator", "ngf", "ndf", "n_layers_d", "dropout", "upsample", "gan_mode",
                     "discriminator", "num_d", "norm")  # quality: discriminators, generator norm (issue 11)
#: quality (issue 11): what a checkpoint written before a key existed was trained with.
LEGACY_ARCHITECTURE = {"discriminator": "patch", "num_d": 1, "norm": "instance"}

EventHook = Callable[[str, dict], None]


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
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
        data = {k: v for k, v in to_dict(source).items()}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = load_yaml(source)
        where = describe(source)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_mapping(TrainConfig, data, source=where)


def _architecture(cfg: TrainConfig, size_multiple: int) -> dict:
    return {
        "model": cfg.model, "generator": cfg.generator, "ngf": cfg.ngf, "ndf": cfg.ndf,
        "n_layers_d": cfg.n_layers_d, "dropout": bool(cfg.dropout), "upsample": cfg.upsample,
        "gan_mode": cfg.gan_mode,
        "size_multiple": size_multiple, "tile_size": cfg.crop_size,
        # quality (issue 11): discriminator(s), U-Net depth, semi-supervised pairs
        "discriminator": cfg.discriminator, "num_d": cfg.num_d if cfg.discriminator == "multiscale" else 1,
        "lambda_feat": cfg.lambda_feat, "unet_depth": unet_depth(cfg.generator),
        "semi_supervised": bool(cfg.data_paired), "norm": cfg.norm,
    }


# ------------------------------------------------------------------------------------------
# devices and processes
# ------------------------------------------------------------------------------------------
class _Dist:
    """This process's place in a data-parallel run (world size 1 when not under torchrun)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_here = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device_type: str) -> None:
        if not self.active:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
            self.started_here = True

    def stop(self) -> None:
        if self.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()

    def average_gradients(self, params: list) -> None:
        """All-reduce the gradients of ``params`` as one flat buffer and divide by the world size."""
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            chunk = flat[offset:offset + n].view_as(g)
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)
            offset += n

    def broadcast_parameters(self, nets: Mapping[str, Any]) -> None:
        import torch.distributed as dist

        for net in nets.values():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=0)

    def gather(self, obj: Any) -> list:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def resolve_device(name: str, local_rank: int = 0):
    """``auto`` → CUDA when present, else CPU. Asking for CUDA where there is none is a :class:`DeviceError`."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _amp_dtype(cfg: TrainConfig, device):
    import torch

    mode = cfg.amp
    if device.type == "cuda":
        if mode == "auto":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        if mode == "auto":
            mode = "off"
        elif mode == "fp16":
            raise ConfigError("config: amp: fp16 needs a CUDA device; on the CPU use bf16 or off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode], mode


def _set_threads(device, dist: _Dist) -> None:
    """On the CPU split the cores between processes unless the user set OMP_NUM_THREADS."""
    import torch

    if device.type != "cpu" or dist.world == 1 or "OMP_NUM_THREADS" in os.environ:
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    threads = max(1, cores // dist.world)
    torch.set_num_threads(threads)
    log.info("using %d CPU thread(s) per process", threads)


# ------------------------------------------------------------------------------------------
# RNG states as plain values (weights_only-loadable)
# ------------------------------------------------------------------------------------------
def _rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [version, list(internal), gauss],
        # Only when CUDA is in use: asking would otherwise start a CUDA context on a CPU run.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict) -> None:
    """Write a checkpoint atomically: a full disk leaves the previous one intact."""
    import torch

    from .raster import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{describe(path)}: cannot write checkpoint ({reason}); the previous checkpoint is kept") from None


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint safely (``weights_only``), or raise :class:`CheckpointError`."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"{describe(path)}: no checkpoint to resume from (train without --resume first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{describe(path)}: unreadable checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{describe(path)}: not a geogan training checkpoint")
    if not isinstance(payload.get("format_version"), int) or payload["format_version"] > CHECKPOINT_VERSION:
        raise CheckpointError(f"{describe(path)}: checkpoint format {payload.get('format_version')!r} is newer than this geogan reads")
    return payload


def _check_compatible(path: Path, ckpt: dict, arch: dict, domains: dict) -> None:
    theirs = ckpt.get("architecture", {})
    for key in ARCHITECTURE_KEYS:
        if theirs.get(key, LEGACY_ARCHITECTURE.get(key)) != arch.get(key):
            raise CheckpointError(f"{describe(path)}: checkpoint is for {key}={theirs.get(key)!r}, "
                                  f"this run has {key}={arch.get(key)!r}; use another --out or the same settings")
    for name, spec in domains.items():
        other = ckpt.get("domains", {}).get(name, {})
        if len(other.get("bands", [])) != spec.count or other.get("kind") != spec.kind:
            raise CheckpointError(f"{describe(path)}: checkpoint domain {name.upper()} is "
                                  f"{len(other.get('bands', []))}-band {other.get('kind')}, the chips are "
                                  f"{spec.count}-band {spec.kind}")


# ------------------------------------------------------------------------------------------
# previews
# ------------------------------------------------------------------------------------------
def _display_bands(spec) -> list[int]:
    """0-based bands shown for a domain: SAR band 1 (dB), DSM grey, else red/green/blue by description or the first three."""
    if spec.kind in ("sar", "dsm") or spec.count < 3:
        return [0]
    descriptions = [(d or "").lower() for d in spec.band_descriptions]
    if len(descriptions) == spec.count:
        picked = []
        for colour in ("red", "green", "blue"):
            hit = [i for i, d in enumerate(descriptions) if colour in d]
            if hit:
                picked.append(hit[0])
        if len(picked) == 3:
            return picked
    return [0, 1, 2]


def to_display(x: np.ndarray, spec, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """A normalised image (band, row, col) → uint8 RGB (3, row, col) for a preview.

    Values are already stretched per band into [-1, 1] (SAR in dB), so display is a linear map.
    """
    bands = _display_bands(spec)
    img = x[bands] if len(bands) == 3 else np.repeat(x[bands[:1]], 3, axis=0)
    out = np.clip((img + 1.0) * 127.5, 0, 255).astype(np.uint8)
    if valid is not None:
        out[:, ~valid.astype(bool)] = 0
    return out


def write_preview(path: Path, rows: list[list[np.ndarray]], gap: int = 2) -> None:
    """Write a grid of uint8 RGB tiles as a PNG with rasterio's PNG driver (atomically)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from .raster import atomic_output

    h, w = rows[0][0].shape[1:]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    grid = np.full((3, n_rows * h + (n_rows - 1) * gap, n_cols * w + (n_cols - 1) * gap), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            grid[:, i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with atomic_output(path, suffix=".png") as tmp:
            with rasterio.open(tmp, "w", driver="PNG", width=grid.shape[2], height=grid.shape[1],
                               count=3, dtype="uint8") as ds:
                ds.write(grid)


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------
def train(config: Union[TrainConfig, Mapping[str, Any], str, os.PathLike], progress: ProgressLike = None, *,
          resume: bool = False, on_event: Optional[EventHook] = None) -> Path:
    """Train a CycleGAN or Pix2Pix on a chips export and return the path of ``OUT/model.geogan``.

    ``config`` is a :class:`TrainConfig`, a mapping of its keys, or a YAML file. ``progress``
    gets ``update(step_in_epoch, steps_per_epoch, "epoch e/E  losses")`` and is polled for
    cancellation between steps (a cancel writes a checkpoint first, so ``resume=True`` picks up
    there). ``on_event(name, info)`` is called with ``"checkpoint"``, ``"epoch"`` and ``"end"``
    (``info["generators"]`` holds the final weights on every process): a hook for tests and tools.
    """
    cfg = config if isinstance(config, TrainConfig) else load_train_config(config)
    if not cfg.data:
        raise ConfigError("config: data: no chips directory given (--data DIR or 'data:' in the config)")
    if not cfg.out:
        raise ConfigError("config: out: no output directory given (--out DIR or 'out:' in the config)")
    return _Run(cfg, as_progress(progress), resume, on_event).run()


class _Run:
    def __init__(self, cfg: TrainConfig, progress, resume: bool, on_event: Optional[EventHook]) -> None:
        self.cfg, self.progress, self.resume, self.on_event = cfg, progress, resume, on_event

    def emit(self, name: str, info: dict) -> None:
        if self.on_event is not None:
            self.on_event(name, info)

    # -- setup -----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Every check that can fail on bad input, before anything is written."""
        from .data import open_chips, open_paired_chips
        from .models.registry import SIZE_MULTIPLE

        cfg = self.cfg
        self.dist = _Dist()
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.amp_dtype, self.amp_mode = _amp_dtype(cfg, self.device)
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and self.device.type == "cuda")
        multiple = SIZE_MULTIPLE[cfg.generator]
        if cfg.crop_size % multiple:
            raise ConfigError(f"config: crop_size: {cfg.crop_size} is not a multiple of {multiple}, which "
                              f"{cfg.generator} needs (crop must be a multiple of SIZE_MULTIPLE = {multiple})")
        self.size_multiple = multiple
        self.export = open_chips(cfg.data, require_paired=cfg.model == "pix2pix")
        # quality (issue 11): the extra pairs of a semi-supervised CycleGAN, checked against the chips
        self.paired_export = open_paired_chips(cfg.data_paired, self.export, cfg.crop_size) if cfg.data_paired else None
        h, w = self.export.chip_size
        if cfg.crop_size > min(h, w):
            raise ConfigError(f"config: crop_size: {cfg.crop_size} is larger than the chips in "
                              f"{describe(cfg.data)} ({h}x{w}); set crop_size <= {min(h, w)}")
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / CHECKPOINT_NAME
        self.model_path = self.out / MODEL_NAME
        self.arch = _architecture(cfg, multiple)
        if self.resume:
            self.checkpoint = load_checkpoint(self.ckpt_path)
            _check_compatible(self.ckpt_path, self.checkpoint, self.arch, self.export.specs)
        else:
            self.checkpoint = None
            for existing in (self.ckpt_path, self.model_path):
                if existing.exists():
                    raise OutputError(f"{describe(existing)}: already exists from an earlier run; pass --resume "
                                      "(resume=True) to continue it or choose another --out")
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"{describe(self.out)}: exists and is not a directory")

    def build(self) -> None:
        import torch

        from .models.cyclegan import CycleGAN
        from .models.pix2pix import Pix2Pix

        cfg, dist = self.cfg, self.dist
        _set_threads(self.device, dist)
        dist.start(self.device.type)
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        cls = Pix2Pix if cfg.model == "pix2pix" else CycleGAN
        self.model = cls(cfg, self.export.specs["a"], self.export.specs["b"], self.device, self.amp_dtype,
                         self.channels_last, dist.average_gradients if dist.active else None,
                         seed=cfg.seed + 7919 * dist.rank)
        if dist.active:
            dist.broadcast_parameters(self.model.nets)
        torch.manual_seed(cfg.seed + dist.rank)
        np.random.seed(cfg.seed + dist.rank)
        random.seed(cfg.seed + dist.rank)
        if self.model.identity_note != "on" and cfg.model == "cyclegan" and dist.main:
            log.warning("identity loss %s", self.model.identity_note)
        self.epoch, self.batch_in_epoch, self.iteration, self.seconds = 0, 0, 0, 0.0
        if self.checkpoint is not None:
            ck = self.checkpoint
            self.model.load_state_dict(ck["model"])
            ranks = ck["ranks"]
            mine = ranks[dist.rank] if len(ranks) == dist.world else ranks[0]
            self.model.load_local_state(mine["local"])
            _set_rng_state(mine["rng"])
            self.epoch, self.batch_in_epoch = int(ck["epoch"]), int(ck["batch_in_epoch"])
            self.iteration, self.seconds = int(ck["iteration"]), float(ck.get("seconds", 0.0))
            if dist.main:
                log.info("resuming from %s at epoch %d, step %d", self.ckpt_path, self.epoch + 1, self.iteration)

    def open_outputs(self) -> None:
        import yaml

        from .raster import atomic_write_bytes

        self.loss_names = list(self.model.loss_names)
        self.csv_path = self.out / "losses.csv"
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "previews").mkdir(exist_ok=True)
        resolved = to_dict(self.cfg)
        atomic_write_bytes(self.out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False).encode("utf-8"))
        header = ["epoch", "iteration", "lr"] + self.loss_names
        rows: list[list[str]] = []
        if self.checkpoint is not None and self.csv_path.exists():
            # Drop what a killed run logged after its last checkpoint: those steps run again.
            with open(self.csv_path, newline="") as fh:
                rows = [r for r in list(csv.reader(fh))[1:] if r and int(r[1]) <= self.iteration]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write_bytes(self.csv_path, buf.getvalue().encode("utf-8"))

    # -- the loop ------------------------------------------------------------------------------
    def batches(self, epoch: int, dataset) -> list[list[int]]:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=self.dist.world, rank=self.dist.rank,
                                     shuffle=True, seed=self.cfg.seed, drop_last=False)
        sampler.set_epoch(epoch)
        order = list(sampler)
        bs = self.cfg.batch_size
        return [order[i:i + bs] for i in range(0, len(order), bs)]

    def run(self) -> Path:
        self.prepare()
        try:
            self.build()
            self.open_outputs()
            self.loop()
            return self.finish()
        finally:
            self.dist.stop()

    def loop(self) -> None:
        import torch
        from torch.utils.data import DataLoader

        from .data import training_dataset

        cfg, model, dist = self.cfg, self.model, self.dist
        dataset = training_dataset(self.export, cfg, self.paired_export)  # quality: + pairs (issue 11)
        total_epochs = cfg.epochs + cfg.epochs_decay
        self.last_losses: dict[str, float] = dict(self.checkpoint["losses"]) if self.checkpoint else {}
        start = time.perf_counter() - self.seconds
        while self.epoch < total_epochs:
            dataset.set_epoch(self.epoch)
            batches = self.batches(self.epoch, dataset)
            n_batches = len(batches)
            loader = DataLoader(dataset, batch_sampler=batches[self.batch_in_epoch:], num_workers=cfg.num_workers,
                                pin_memory=self.device.type == "cuda", generator=torch.Generator())
            for batch in loader:
                if self.cancel_requested():
                    self.seconds = time.perf_counter() - start
                    self.save(epoch_end=False)
                    raise Cancelled("training cancelled; continue it with --resume (resume=True)")
                model.set_input(batch)
                model.optimize_parameters()
                self.iteration += 1
                self.batch_in_epoch += 1
                last = self.batch_in_epoch == n_batches
                if self.iteration % cfg.log_every == 0 or last:
                    self.last_losses = model.current_losses()
                    self.log_losses()
                    if dist.main:
                        self.progress.update(self.batch_in_epoch, n_batches, self.message(total_epochs))
                elif dist.main and self.batch_in_epoch == 1:
                    self.progress.update(self.batch_in_epoch, n_batches, self.message(total_epochs))
                if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0 and not last:
                    self.seconds = time.perf_counter() - start
                    self.save(epoch_end=False)
            model.update_learning_rate()
            self.epoch += 1
            self.batch_in_epoch = 0
            self.seconds = time.perf_counter() - start
            self.save(epoch_end=True)
            if dist.main:
                self.preview()
            self.emit("epoch", {"epoch": self.epoch, "iteration": self.iteration, "losses": dict(self.last_losses)})

    def cancel_requested(self) -> bool:
        """Rank 0 asks the progress object; under data-parallel training every process gets its answer."""
        flag = self.dist.main and self.progress.cancelled()
        if not self.dist.active:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def message(self, total_epochs: int) -> str:
        losses = " ".join(f"{k} {v:.3f}" for k, v in self.last_losses.items())
        return f"epoch {self.epoch + 1}/{total_epochs}" + (f"  {losses}" if losses else "")

    def log_losses(self) -> None:
        if not self.dist.main:
            return
        row = [self.epoch + 1, self.iteration, f"{self.model.lr:.6g}"]
        row += [f"{self.last_losses.get(k, float('nan')):.6g}" for k in self.loss_names]
        with open(self.csv_path, "a", newline="") as fh:
            csv.writer(fh).writerow(row)

    def save(self, epoch_end: bool) -> None:
        """Checkpoint: every process contributes its own RNG and pool state; rank 0 writes."""
        ranks = self.dist.gather({"rng": _rng_state(), "local": self.model.local_state()})
        if self.dist.main:
            payload = {
                "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                "architecture": self.arch,
                "domains": {k: s.to_dict() for k, s in self.export.specs.items()},
                "config": to_dict(self.cfg),
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "iteration": self.iteration,
                "seconds": self.seconds, "world_size": self.dist.world,
                "model": self.model.state_dict(),
                "ranks": ranks,
                "losses": dict(self.last_losses),
            }
            save_checkpoint(self.ckpt_path, payload)
        self.dist.barrier()
        self.emit("checkpoint", {"path": self.ckpt_path, "epoch": self.epoch, "iteration": self.iteration,
                                 "epoch_end": epoch_end, "rank": self.dist.rank})

    def preview(self) -> None:
        from .data import preview_pair

        size = min(self.cfg.crop_size, *self.export.chip_size)
        item = preview_pair(self.export, size)
        for net in self.model.nets.values():
            net.eval()
        try:
            vis = self.model.visuals(item["a"][None], item["b"][None])
        finally:
            for net in self.model.nets.values():
                net.train()
        sa, sb = self.export.specs["a"], self.export.specs["b"]
        va, vb = item["a_valid"][0].numpy(), item["b_valid"][0].numpy()
        show = lambda k, spec, valid: to_display(vis[k][0].numpy(), spec, valid)  # noqa: E731
        if "rec_a" in vis:
            rows = [[show("real_a", sa, va), show("fake_b", sb, va), show("rec_a", sa, va)],
                    [show("real_b", sb, vb), show("fake_a", sa, vb), show("rec_b", sb, vb)]]
        else:
            rows = [[show("real_a", sa, va), show("fake_b", sb, va), show("real_b", sb, vb)]]
        write_preview(self.out / "previews" / f"epoch_{self.epoch:03d}.png", rows)

    def finish(self) -> Path:
        import torch

        from .modelfile import TranslationModel, save_model

        generators = {}
        for direction, net in self.model.generators().items():
            clone = copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)
            generators[direction] = clone
        if self.dist.main:
            summary = {
                "epochs": self.epoch, "iterations": self.iteration, "seconds": round(self.seconds, 3),
                "final_losses": dict(self.last_losses), "device": str(self.device), "amp": self.amp_mode,
                "world_size": self.dist.world, "chips_dir": str(Path(self.cfg.data).resolve()),
                "identity_loss": self.model.identity_note, "config": to_dict(self.cfg),
                # quality (issue 11): the pairs of a semi-supervised CycleGAN
                "paired_chips_dir": str(Path(self.cfg.data_paired).resolve()) if self.cfg.data_paired else None,
                "paired_chips": len(self.paired_export.files["train_a"]) if self.paired_export else 0,
            }
            tm = TranslationModel(self.export.specs, generators, self.arch, summary)
            save_model(tm, self.model_path)
            log.info("wrote %s", self.model_path)
        self.dist.barrier()
        self.emit("end", {"path": self.model_path, "rank": self.dist.rank,
                          "generators": {d: {k: v.clone() for k, v in g.state_dict().items()}
                                         for d, g in generators.items()}})
        return self.model_path

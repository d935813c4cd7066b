"""Torch datasets over a chips export: unpaired (CycleGAN) and paired (Pix2Pix) chips, and both
at once for a semi-supervised CycleGAN (:class:`SemiSupervisedDataset`).

Each item is the A and B chip normalised per band into [-1, 1] by its domain's statistics
(``geogan.bands.normalize``, the same function the predictor uses) together with its
validity mask (nodata, internal mask, non-finite, SAR <= 0), so losses can skip invalid
pixels. Augmentation respects geodata: a random ``crop_size`` square inside the chip,
horizontal/vertical flips and 90° rotations, never resampling. Paired chips get the same
augmentation on both sides; unpaired chips get independent draws.

All randomness is a function of ``(seed, epoch, index)``: the data order and augmentation
of an epoch are the same whether it runs straight through or is resumed from a checkpoint,
and whatever the number of loader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

import numpy as np

from .bands import DomainSpec, normalize
from .chips import METADATA_NAME, read_chips_metadata
from .errors import BandMismatchError, ConfigError, InputError, describe

SPLITS = ("train_a", "train_b", "val_a", "val_b")


def read_metadata(root: Union[str, Path]) -> dict:
    """The validated chips metadata of ``root``: the chips step owns that contract."""
    return read_chips_metadata(root)


@dataclass
class ChipsExport:
    """A checked chips directory: metadata, each domain's spec, and the chip files per split."""

    root: Path
    meta: dict
    specs: dict[str, DomainSpec]
    paired: bool
    files: dict[str, list[Path]] = field(default_factory=dict)
    chip_size: tuple[int, int] = (0, 0)  # smallest (rows, cols) over the training chips


def open_chips(root: Union[str, Path], *, require_paired: bool = False) -> ChipsExport:
    """Read and check a chips export: metadata, non-empty ``train_a``/``train_b``, band counts and dtypes.

    The chip size comes from the metadata (``chip_size``); the number of chips in each split is
    checked against it and the first chip of each split is opened, so a chip folder that
    disagrees with the metadata is reported by name before training starts without opening
    every chip. Exports from before ``chip_size`` have every chip's header opened.
    """
    root = Path(root)
    meta = read_metadata(root)
    try:
        specs = {k: DomainSpec.from_dict(meta["domains"][k]) for k in ("a", "b")}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{describe(root / METADATA_NAME)}: invalid domain description ({type(exc).__name__}: {exc})") from None
    paired = bool(meta.get("paired", False))
    if require_paired and not paired:
        raise ConfigError(f"{describe(root)}: pix2pix needs paired chips, but this export is unpaired "
                          "(export with 'geogan chips --paired', or train a cyclegan)")
    files = {s: sorted((root / s).glob("*.tif")) if (root / s).is_dir() else [] for s in SPLITS}
    for s in ("train_a", "train_b"):
        if not files[s]:
            raise InputError(f"{describe(root / s)}: no training chips (*.tif); the export is empty or incomplete")
    if paired:
        names_a = [p.name for p in files["train_a"]]
        names_b = {p.name for p in files["train_b"]}
        missing = [n for n in names_a if n not in names_b]
        if missing or len(names_b) != len(names_a):
            what = missing[0] if missing else "extra chips in train_b"
            raise InputError(f"{describe(root)}: paired export but train_a and train_b differ ({what})")
    if "chip_size" in meta:
        chip_size = _check_against_metadata(root, meta, specs, files)
    else:
        chip_size = _check_every_chip(specs, files)
    return ChipsExport(root=root, meta=meta, specs=specs, paired=paired, files=files, chip_size=chip_size)


def _check_against_metadata(root: Path, meta: dict, specs: dict, files: dict) -> tuple[int, int]:
    """Chip counts per split as the metadata says, and the first chip of each split as described."""
    rows, cols = (int(v) for v in meta["chip_size"])
    for s in SPLITS:
        expected = meta["domains"][s[-1]]["chips"][s.split("_")[0]]
        if len(files[s]) != expected:
            raise InputError(f"{describe(root / s)}: holds {len(files[s])} chip(s) but {METADATA_NAME} says {expected}; "
                             "the export is incomplete or was changed (export it again)")
        if files[s] and check_chip(files[s][0], specs[s[-1]]) != (rows, cols):
            raise BandMismatchError(f"{describe(files[s][0])}: chip is not {rows}x{cols} as {METADATA_NAME} says")
    return rows, cols


def _check_every_chip(specs: dict, files: dict) -> tuple[int, int]:
    """Older exports (no chip_size): open every chip's header; the smallest training chip size."""
    size = [10 ** 9, 10 ** 9]
    for s in SPLITS:
        for path in files[s]:
            h, w = check_chip(path, specs[s[-1]])
            if s.startswith("train"):
                size = [min(size[0], h), min(size[1], w)]
    return size[0], size[1]


def check_chip(path: Path, spec: DomainSpec) -> tuple[int, int]:
    """Open a chip's header; raise :class:`BandMismatchError` naming it if bands or dtype disagree."""
    from .raster import open_raster

    with open_raster(path, require_georeference=False) as ds:
        if ds.count != spec.count:
            raise BandMismatchError(f"{describe(path)}: chip has {ds.count} band(s) but the chips metadata says {spec.count}")
        if ds.dtypes[0] != spec.dtype:
            raise BandMismatchError(f"{describe(path)}: chip is {ds.dtypes[0]} but the chips metadata says {spec.dtype}")
        return ds.height, ds.width


def read_chip(path: Path, spec: DomainSpec) -> tuple[np.ndarray, np.ndarray]:
    """A chip normalised for the networks (float32, band, row, col) and its validity (row, col)."""
    from .raster import open_raster, read_window, valid_mask

    with open_raster(path, require_georeference=False) as ds:
        data, masks = read_window(ds, range(1, ds.count + 1))
        valid = valid_mask(ds, data, masks, spec.kind, spec.units)
    return normalize(data, spec, valid), valid


@dataclass(frozen=True)
class Augmentation:
    """Where to crop, and which flips/rotation to apply (the same transform for paired chips)."""

    top: int
    left: int
    size: int
    flip_rows: bool = False
    flip_cols: bool = False
    rot90: int = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, shape: tuple[int, int], size: int, augment: str) -> "Augmentation":
        """``augment``: ``all`` (crop, flips, rotations), ``flips``, ``crop``, or ``none`` (centre crop)."""
        h, w = shape
        if augment == "none":
            return cls((h - size) // 2, (w - size) // 2, size)
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        flips = rng.integers(0, 2, size=2)
        rot = int(rng.integers(0, 4))
        if augment == "crop":
            return cls(top, left, size)
        return cls(top, left, size, bool(flips[0]), bool(flips[1]), rot if augment == "all" else 0)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Apply to (band, row, col) or (row, col); the crop is square, so rotations keep its shape."""
        y = x[..., self.top:self.top + self.size, self.left:self.left + self.size]
        if self.flip_rows:
            y = y[..., ::-1, :]
        if self.flip_cols:
            y = y[..., :, ::-1]
        if self.rot90:
            y = np.rot90(y, self.rot90, axes=(-2, -1))
        return np.ascontiguousarray(y)


class ChipDataset:
    """Training items ``{"a", "a_valid", "b", "b_valid", "index"}`` from a :class:`ChipsExport`.

    An epoch has ``max(len(A), len(B))`` items (the reference repo's convention). Item ``i``
    uses A chip ``i % len(A)`` and, for unpaired data, a B chip drawn from ``(seed, epoch, i)``;
    for paired data the B chip with the same name. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, export: ChipsExport, crop_size: int, *, split: str = "train", augment: str = "all",
                 seed: int = 0) -> None:
        self.export = export
        self.files_a = export.files[f"{split}_a"]
        self.files_b = export.files[f"{split}_b"]
        self.crop_size = crop_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.paired = export.paired

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files_a) if self.paired else max(len(self.files_a), len(self.files_b))

    def __getitem__(self, index: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, self.epoch, index])
        ia = index % len(self.files_a)
        ib = ia if self.paired else int(rng.integers(0, len(self.files_b)))
        a, va = read_chip(self.files_a[ia], self.export.specs["a"])
        b, vb = read_chip(self.files_b[ib], self.export.specs["b"])
        aug_a = Augmentation.draw(rng, a.shape[1:], self.crop_size, self.augment)
        aug_b = aug_a if self.paired else Augmentation.draw(rng, b.shape[1:], self.crop_size, self.augment)
        return {
            "a": torch.from_numpy(aug_a.apply(a)),
            "a_valid": torch.from_numpy(aug_a.apply(va))[None],
            "b": torch.from_numpy(aug_b.apply(b)),
            "b_valid": torch.from_numpy(aug_b.apply(vb))[None],
            "index": index,
        }


def open_paired_chips(root: Union[str, Path], unpaired: ChipsExport, crop_size: int) -> ChipsExport:
    """Open the extra paired export of a semi-supervised CycleGAN and check it fits ``unpaired``.

    Both domains must have the same band count, kind and dtype as the unpaired export's, whose
    statistics normalise the pairs too (one normalisation per domain, the one the model file
    carries). Returns the paired export with the unpaired export's domain specs.
    """
    root = Path(root)
    try:
        paired = open_chips(root, require_paired=True)
    except ConfigError:
        raise ConfigError(f"config: data_paired: {describe(root)} is an unpaired export; export the pairs "
                          "with 'geogan chips --paired'") from None
    for d in ("a", "b"):
        mine, theirs = unpaired.specs[d], paired.specs[d]
        if (mine.count, mine.kind, mine.dtype) != (theirs.count, theirs.kind, theirs.dtype):
            raise BandMismatchError(
                f"{describe(root)}: paired domain {d.upper()} is {theirs.count}-band {theirs.kind} {theirs.dtype} but "
                f"the unpaired chips' {d.upper()} is {mine.count}-band {mine.kind} {mine.dtype}; export both from the "
                "same bands and kinds")
    h, w = paired.chip_size
    if crop_size > min(h, w):
        raise ConfigError(f"config: crop_size: {crop_size} is larger than the paired chips in {describe(root)} "
                          f"({h}x{w}); set crop_size <= {min(h, w)}")
    return replace(paired, specs=dict(unpaired.specs))


class SemiSupervisedDataset:
    """Unpaired items plus one co-registered pair each: ``pa``, ``pa_valid``, ``pb``, ``pb_valid``.

    Item ``i`` is :class:`ChipDataset` item ``i`` of the unpaired export, and the pair drawn (with
    its own augmentation) from ``(seed, epoch, i)``: deterministic, and the same after a resume.
    """

    PAIR_STREAM = 104729  # separates the pairs' random stream from the unpaired items'

    def __init__(self, unpaired: ChipDataset, paired: ChipDataset) -> None:
        self.unpaired, self.paired = unpaired, paired

    def set_epoch(self, epoch: int) -> None:
        self.unpaired.set_epoch(epoch)
        self.paired.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.unpaired)

    def __getitem__(self, index: int) -> dict:
        item = self.unpaired[index]
        rng = np.random.default_rng([self.unpaired.seed, self.unpaired.epoch, index, self.PAIR_STREAM])
        n = len(self.paired)
        pair = self.paired[int(rng.integers(0, n)) + n * index]  # that chip, with an augmentation of its own
        item.update({"pa": pair["a"], "pa_valid": pair["a_valid"], "pb": pair["b"], "pb_valid": pair["b_valid"]})
        return item


def training_dataset(export: ChipsExport, cfg, paired: "ChipsExport | None" = None):
    """The dataset a training run iterates: :class:`ChipDataset`, or :class:`SemiSupervisedDataset`
    when a paired export is given (``cfg``: crop_size, augment, seed)."""
    unpaired = ChipDataset(export, cfg.crop_size, augment=cfg.augment, seed=cfg.seed)
    if paired is None:
        return unpaired
    pairs = ChipDataset(paired, cfg.crop_size, augment=cfg.augment, seed=cfg.seed + SemiSupervisedDataset.PAIR_STREAM)
    return SemiSupervisedDataset(unpaired, pairs)


def preview_pair(export: ChipsExport, crop_size: int) -> dict:
    """The first validation pair (or training pair when there is no validation split), centre-cropped."""
    split = "val" if export.files["val_a"] and export.files["val_b"] else "train"
    ds = ChipDataset(export, crop_size, split=split, augment="none")
    if not export.paired:
        ds.paired = True  # show chip 0 of each side; they need not match
        ds.files_b = ds.files_b[:1]
        ds.files_a = ds.files_a[:1]
    return ds[0]

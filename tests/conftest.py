"""What several test modules share (test modules never import from each other):

* tiny georeferenced rasters in a temp dir: ``write_raster`` and the ``make_raster`` fixture;
* synthetic chips exports and domain specs: ``make_chips`` (with ``smooth_bands``, ``encode_kind``),
  ``make_spec``, ``scene``, ``TINY_TRAINING``;
* filesystems with a fault, for write-failure tests: ``small_fs(size_kb)`` (a tmpfs that fills
  up: ENOSPC; ``small_tmpfs`` is a 1 MiB one), ``fill_up(dir)``, ``readonly_dir`` /
  ``make_readonly_dir(files)`` (EROFS, which stops root too, unlike a chmod); they skip with the
  reason where this process may not mount;
* ``one_torch_thread``;
* the real command line in a subprocess, as a user runs it: ``run_geogan(*args)``, ``geogan_env()``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import pytest

UTM = "EPSG:32633"

#: A training small enough for a 2-core CI machine (seconds), for tests that only need a model.
TINY_TRAINING = dict(ngf=8, ndf=8, n_layers_d=2, generator="resnet_6blocks", crop_size=32, batch_size=2,
                     epochs=1, epochs_decay=0, pool_size=4, log_every=1, checkpoint_every=0, device="cpu")


def write_raster(path: Path, data: np.ndarray, *, crs: Optional[str] = UTM, transform=None,
                 nodata: Optional[float] = None, mask: Optional[np.ndarray] = None,
                 origin: tuple[float, float] = (500000.0, 5000000.0), res: float = 10.0) -> Path:
    """Write (band, row, col) ``data`` as a GeoTIFF; ``mask`` (row, col, True=valid) becomes an internal mask."""
    import rasterio
    from rasterio.transform import from_origin

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if transform is None and crs is not None:
        transform = from_origin(origin[0], origin[1], res, res)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=str(data.dtype), crs=crs, transform=transform, nodata=nodata)
    if transform is None:
        profile.pop("transform")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
            if mask is not None:
                ds.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return Path(path)


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """``make_raster("name.tif", data, crs=..., nodata=..., mask=...)`` → path in tmp_path."""

    def _make(name: str, data: np.ndarray, **kwargs) -> Path:
        return write_raster(tmp_path / name, data, **kwargs)

    return _make


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: deterministic sums, and fast on a small shared CI machine
    (two threads fighting other processes for two cores made tiny training steps 40× slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


REPO = Path(__file__).resolve().parent.parent


def geogan_env() -> dict:
    """The environment for ``python -m geogan`` in a subprocess: this checkout's geogan first on
    the path, one OpenMP thread (a shared 2-core machine)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + sys.path), OMP_NUM_THREADS="1")


def run_geogan(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m geogan ARGS`` with stdout and stderr as pipes (so stderr is not a terminal: no
    progress bars), as a script or scheduler runs it. Paths may hold non-UTF-8 bytes."""
    return subprocess.run([sys.executable, "-m", "geogan", *map(str, args)], capture_output=True, text=True,
                          env=geogan_env(), timeout=timeout, errors="backslashreplace")


# ------------------------------------------------------------------------------------------
# synthetic chips exports and domain specs
# ------------------------------------------------------------------------------------------
def scene(shape, n=2, seed=0, lo=0.05, hi=0.95, dtype="float32") -> np.ndarray:
    """Seeded uniform noise in [lo, hi), (n, *shape)."""
    rng = np.random.default_rng(seed)
    return (lo + (hi - lo) * rng.random((n,) + tuple(shape))).astype(dtype)


def make_spec(kind: str = "generic", n: int = 2, dtype: str = "float32", nodata=None, res=(10.0, 10.0),
              lo: float = 0.1, hi: float = 0.9):
    """A ``DomainSpec`` with plausible per-band statistics (p2 = lo, p98 = hi; SAR dB -20..0)."""
    from geogan.bands import BandStats, DomainSpec

    stats = tuple(
        BandStats(band=i + 1, count=1000, mean=(lo + hi) / 2, std=0.2, min=lo - 0.1, max=hi + 0.1, p2=lo, p98=hi,
                  mean_db=-8.0, std_db=3.0, min_db=-25.0, max_db=2.0, p2_db=-20.0, p98_db=0.0)
        for i in range(n))
    return DomainSpec(kind=kind, bands=tuple(range(1, n + 1)), dtype=dtype, nodata=nodata, stats=stats,
                      resolution=res)


def smooth_bands(rng: np.random.Generator, bands: int, size: int) -> np.ndarray:
    """Random images with some spatial structure (sums of low-frequency waves) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((bands, size, size), np.float64)
    for b in range(bands):
        acc = np.zeros((size, size))
        for _ in range(3):
            fy, fx, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
            acc += np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)
        out[b] = acc
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= out.max(axis=(1, 2), keepdims=True) + 1e-9
    return out


def encode_kind(x01: np.ndarray, kind: str, dtype: str) -> np.ndarray:
    """[0, 1] values → raw pixels of a kind: SAR linear power, DSM metres, imagery counts."""
    if kind == "sar":
        return (10 ** ((x01 * 20 - 25) / 10)).astype(dtype)  # -25..-5 dB
    if kind == "dsm":
        return (x01 * 80 + 100).astype(dtype)
    top = 255 if dtype == "uint8" else 4000
    return (x01 * (top - 20) + 10).astype(dtype)


def make_chips(root: Path, *, a=(2, "sar", "float32"), b=(3, "optical", "uint8"), n_train=6, n_val=1,
               size=32, paired=False, relation=None, seed=0, nodata_a=None, holes=False,
               band_descriptions_b=None) -> Path:
    """Write a chips export per the contract: train_a/ train_b/ val_a/ val_b/ and geogan_chips.json.

    ``relation(x01_a) -> x01_b`` makes B a function of A (then chips are paired by name, and for
    unpaired exports B is still drawn from the same mapping of other A images).
    """
    from geogan.bands import DomainSpec, StatsAccumulator

    rng = np.random.default_rng(seed)
    (ca, kind_a, dt_a), (cb, kind_b, dt_b) = a, b
    accs = {"a": StatsAccumulator(ca, dt_a, kind_a), "b": StatsAccumulator(cb, dt_b, kind_b)}
    counts = {"a": {"train": 0, "val": 0}, "b": {"train": 0, "val": 0}}
    for split, n in (("train", n_train), ("val", n_val)):
        for d in ("a", "b"):
            (root / f"{split}_{d}").mkdir(parents=True, exist_ok=True)
        for k in range(n):
            xa = smooth_bands(rng, ca, size)
            if relation is not None:
                src = xa if (paired or split == "val") else smooth_bands(rng, ca, size)
                xb = relation(src)
            else:
                xb = smooth_bands(rng, cb, size)
            raw_a, raw_b = encode_kind(xa, kind_a, dt_a), encode_kind(xb, kind_b, dt_b)
            valid = np.ones((size, size), bool)
            if holes:
                valid[: size // 4, : size // 4] = False
            name = f"scene_r{k * size:06d}_c{0:06d}.tif"
            kwargs_a = {}
            if nodata_a is not None:
                raw_a[:, ~valid] = nodata_a
                kwargs_a["nodata"] = nodata_a
            elif holes:
                kwargs_a["mask"] = valid
            write_raster(root / f"{split}_a" / name, raw_a, **kwargs_a)
            write_raster(root / f"{split}_b" / name, raw_b)
            if relation is not None and split == "train" and not paired:
                # What B would be for this A chip: ground truth for tests only (training ignores it).
                (root / "truth_b").mkdir(exist_ok=True)
                write_raster(root / "truth_b" / name, encode_kind(relation(xa), kind_b, dt_b))
            if split == "train":
                va = valid if holes else np.ones_like(valid)
                if kind_a == "sar":
                    va = va & np.all(raw_a > 0, axis=0)
                accs["a"].update(raw_a, va)
                accs["b"].update(raw_b, np.ones_like(valid))
            counts["a"][split] += 1
            counts["b"][split] += 1
    domains = {}
    for d, (c, kind, dt) in (("a", a), ("b", b)):
        bands = tuple(range(1, c + 1))
        desc = tuple(band_descriptions_b) if (d == "b" and band_descriptions_b) else ()
        spec = DomainSpec(kind=kind, bands=bands, dtype=dt, nodata=nodata_a if d == "a" else None,
                          stats=accs[d].result(bands), crs="EPSG:32633", resolution=(10.0, 10.0),
                          band_descriptions=desc)
        domains[d] = {**spec.to_dict(), "sources": [str(root / f"{d}.tif")], "chips": counts[d]}
    meta = {"format": "geogan-chips", "format_version": 1, "paired": paired, "tile_size": size, "stride": size,
            "min_valid": 0.5, "val_fraction": 0.1, "seed": seed, "aoi": None, "domains": domains,
            "skipped": {"a": {"invalid": 0, "outside_aoi": 0}, "b": {"invalid": 0, "outside_aoi": 0}}}
    (root / "geogan_chips.json").write_text(json.dumps(meta, indent=1))
    return root


# ------------------------------------------------------------------------------------------
# filesystems with a fault: full (ENOSPC) and read-only (EROFS)
# ------------------------------------------------------------------------------------------
class _Mounts:
    """The mount points one test made, unmounted (lazily if busy) at its teardown."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def mount(self, args: list[str], point: Path, what: str) -> None:
        """``mount ARGS POINT``, or skip the test saying why this process may not mount."""
        if not sys.platform.startswith("linux") or shutil.which("mount") is None:
            pytest.skip(f"{what}: needs Linux mount(8)")
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            pytest.skip(f"{what}: mounting needs root (or CAP_SYS_ADMIN); running as uid {os.geteuid()}")
        done = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            pytest.skip(f"{what}: mount is not permitted here ({reason})")
        self.points.append(point)

    def remount(self, options: str, point: Path, what: str) -> None:
        done = subprocess.run(["mount", "-o", options, str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            pytest.skip(f"{what}: remount {options} is not permitted here ({reason})")

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)  # busy: detach now
        self.points.clear()


@pytest.fixture
def _mounts():
    mounts = _Mounts()
    yield mounts
    mounts.unmount_all()


@pytest.fixture
def small_fs(tmp_path: Path, _mounts: _Mounts) -> Callable[[int], Path]:
    """``small_fs(size_kb)`` → an empty directory on a fresh tmpfs of ``size_kb`` KiB (rounded up
    to whole 4 KiB pages): writes past that fail with ENOSPC, like a full disk. Unmounted at
    teardown; the test is skipped, with the reason, where this process may not mount (not
    root/CAP_SYS_ADMIN, not Linux, a container that forbids it)."""

    def _make(size_kb: int) -> Path:
        point = tmp_path / f"small_fs_{len(_mounts.points)}"
        point.mkdir()
        _mounts.mount(["-t", "tmpfs", "-o", f"size={int(size_kb)}k,mode=0755", "tmpfs"], point,
                      f"a {size_kb} KiB filesystem")
        return point

    return _make


@pytest.fixture
def small_tmpfs(small_fs: Callable[[int], Path]) -> Path:
    """A 1 MiB filesystem that fills up (a real ENOSPC): ``small_fs(1024)``, the name main's
    tests/test_outputs.py uses."""
    return small_fs(1024)


def fill_up(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill ``directory``'s filesystem until about ``leave_bytes`` remain free; returns the filler
    file, so a test can delete it to give the space back (a disk that frees up again)."""
    filler = Path(directory) / ".filler"
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize - int(leave_bytes)
    with open(filler, "wb") as fh:
        chunk = b"\0" * (64 * 1024)
        try:
            while free > 0:
                free -= fh.write(chunk[:max(1, min(len(chunk), free))])
            fh.flush()
            os.fsync(fh.fileno())
        except OSError:
            pass  # full before the estimate: that is the point
    return filler


@pytest.fixture
def make_readonly_dir(tmp_path: Path, _mounts: _Mounts) -> Callable[..., Path]:
    """``make_readonly_dir(files={"name": b"bytes"}, name="readonly")`` → a directory holding
    ``files``, then bind-mounted read-only onto itself: every write in it fails with EROFS, even
    for root (which ignores a chmod, and CI runs as root). Unmounted at teardown; skipped, with
    the reason, where this process may not mount."""

    def _make(files: Optional[Mapping[str, bytes]] = None, name: str = "readonly") -> Path:
        point = tmp_path / name
        point.mkdir()
        for rel, data in (files or {}).items():
            (point / rel).parent.mkdir(parents=True, exist_ok=True)
            (point / rel).write_bytes(data)
        what = "a read-only directory"
        _mounts.mount(["--bind", str(point)], point, what)
        _mounts.remount("remount,bind,ro", point, what)
        return point

    return _make


@pytest.fixture
def readonly_dir(make_readonly_dir: Callable[..., Path]) -> Path:
    """An empty directory on a read-only mount (see ``make_readonly_dir``)."""
    return make_readonly_dir()


# ------------------------------------------------------------------ shared by predict and train tests

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a torch.distributed rendezvous in a test)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conv1x1(in_ch: int, out_ch: int, seed: int = 1):
    """A seeded 1x1 convolution: a 'generator' whose output a test can compute by hand."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(in_ch, out_ch, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.rand(out_ch, in_ch, 1, 1, generator=g) - 0.5)
        conv.bias.copy_(torch.rand(out_ch, generator=g) - 0.5)
    return conv


def save_tiny_sar_to_rgb_model(path: Path, sar_spec=None) -> Path:
    """A seeded tiny ResNet generator 2-band SAR → 3-band uint8 RGB saved as a model file."""
    import torch

    from geogan.modelfile import TranslationModel, save_model
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    a = sar_spec if sar_spec is not None else make_spec("sar", 2)
    b = make_spec("optical", 3, "uint8", nodata=0, lo=10, hi=240)
    arch = {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
    model = TranslationModel({"a": a, "b": b}, {"a2b": build_generator("resnet_6blocks", a.count, 3, ngf=4)}, arch)
    return save_model(model, path)


def largest_zip_record(path: Path) -> tuple[int, int]:
    """(offset, size) of the biggest stored (uncompressed) tensor record inside a torch zip file:
    where to flip bytes to damage a model's or a checkpoint's weights."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(fh.read(4), "<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len), info.file_size


def checkpoint_weights(run: Path) -> dict:
    """Every network's tensors in ``run/checkpoint.pt``, keyed ``net.param`` (for exact comparisons)."""
    import torch

    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    return {f"{net}.{k}": v for net, sd in ck["model"]["nets"].items() for k, v in sd.items()}

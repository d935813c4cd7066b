"""Fixtures that build tiny georeferenced rasters in a temp dir (no test data is shipped)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

UTM = "EPSG:32633"


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


def _mount_tmpfs(directory: Path, options: str) -> bool:
    import subprocess

    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 1 MiB filesystem that fills up (a real ENOSPC), or a skip when this machine cannot mount one."""
    import subprocess

    directory = tmp_path / "small_fs"
    directory.mkdir()
    if not _mount_tmpfs(directory, "size=1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)

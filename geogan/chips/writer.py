"""Writing chips into the work folder, with every write checked.

GDAL does not raise on every write failure: when libtiff cannot flush a block (a full disk,
an I/O error) it only logs, and a file with missing blocks is left behind. So a chip is
encoded in GDAL's memory filesystem (:func:`geogan.raster.encode_geotiff`, where libtiff
cannot meet the disk) and its bytes are written with plain ``os.write`` calls, which raise
``OSError`` on a full disk or an I/O error: a chip on disk is exactly the encoded file or the
export stops. This is the check :func:`geogan.raster.verify_raster` makes after the fact, at no
cost (re-opening a chip doubled the time of writing it, measured on 256 px chips).

Chips are not renamed one by one: the whole work folder is the unit that is swapped in
(:mod:`geogan.chips.workdir`). Before the swap the folder's filesystem is flushed once
(``syncfs``; a per-chip ``fsync`` cost 5 ms a chip here, 2-3 times the writing), and a write-back
error reported then also stops the export.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import OutputError, describe
from ..outputs import fsync_dir, fsync_file, os_reason
from ..raster import disk_hint, encode_geotiff, zstd_available


def chip_compression(compress: Optional[str]) -> tuple[str, Optional[int]]:
    """``(compress, zstd_level)``: None picks ZSTD level 1 when this GDAL has it, else DEFLATE.

    Measured on 256×256×4 uint16 chips (tools/bench_chips.py): zstd-1 writes as fast as no
    compression (less to write) at the size of deflate, which is 3× slower.
    """
    if compress is None:
        return ("zstd", 1) if zstd_available() else ("deflate", None)
    return compress, None


class ChipWriter:
    """Writes chips into ``work/<split>/``; a failure is one :class:`OutputError` naming ``out``."""

    def __init__(self, work: Path, out: Path, kept: str, compress: Optional[str] = None) -> None:
        self.work = work
        self.out = out
        self.kept = kept
        self.compress, self.zstd_level = chip_compression(compress)
        self.written = 0

    def write(self, split_dir: str, name: str, data: np.ndarray, *, mask: Optional[np.ndarray],
              nodata: Optional[float], crs, transform, descriptions) -> None:
        payload = encode_geotiff(data, crs=crs, transform=transform, nodata=nodata, mask=mask,
                                 descriptions=descriptions, compress=self.compress, zstd_level=self.zstd_level)
        path = self.work / split_dir / name
        try:
            _write_new_file(path, payload)
        except OSError as exc:
            raise OutputError(f"{describe(self.out)}: writing chip {split_dir}/{name} failed ({os_reason(exc)}); "
                              f"{disk_hint(path)}; {self.kept}") from None
        self.written += 1

    def write_bytes(self, name: str, payload: bytes) -> None:
        """A small file at the top of the work folder (the metadata)."""
        try:
            _write_new_file(self.work / name, payload)
        except OSError as exc:
            raise OutputError(f"{describe(self.out)}: writing {name} failed ({os_reason(exc)}); "
                              f"{disk_hint(self.work)}; {self.kept}") from None

    def flush(self) -> None:
        """Everything written so far onto the disk, before the swap."""
        try:
            _sync_tree(self.work)
        except OSError as exc:
            raise OutputError(f"{describe(self.out)}: flushing the chips to disk failed ({os_reason(exc)}); "
                              f"{disk_hint(self.work)}; {self.kept}") from None


def _write_new_file(path: Path, payload: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """Flush a folder tree's files and directory entries: one ``syncfs`` on Linux, which reports
    write-back errors (Linux >= 5.8); elsewhere an ``fsync`` per file."""
    if sys.platform.startswith("linux") and _syncfs(root):
        return
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(folder)


def _syncfs(path: Path) -> bool:
    """True when ``syncfs`` ran (and raised OSError when it failed); False when unavailable."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                return False
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
    return True

"""Writing chips into the work folder: encoded in parallel, every write checked, flushed once.

GDAL does not raise on every write failure: when libtiff cannot flush a block (a full disk,
an I/O error) it only logs, and a file with missing blocks is left behind. So a chip is
encoded in GDAL's memory filesystem (:func:`geogan.raster.encode_geotiff`, where libtiff
cannot meet the disk) and its bytes are written with plain ``os.write`` calls, which raise
``OSError`` on a full disk or an I/O error: a chip on disk is exactly the encoded file or the
export stops. Nothing is read back (re-opening a chip doubled the time of writing it).

Parallel: encoding (GDAL compresses with the GIL released) and writing run on a small pool of
threads while the caller reads the next windows; at most a few chips per thread are in flight,
so memory stays bounded. The first failure is raised on the caller's thread, at its next
:meth:`ChipWriter.write` or at :meth:`ChipWriter.flush`, naming the chip.

Durability is paid once per export, not per chip in the writing path: chips are written
without ``fsync`` (a per-chip ``fsync`` in the loop cost 2-3 times the writing); each written
file is then flushed once with ``fdatasync`` by a few background threads, in batches, while
later chips are encoded (the waits are on the disk, not on a core, and overlap), and its size on
disk is checked against the encoded bytes (the cheap check that stands in for a re-read).
:meth:`ChipWriter.flush` waits for the last batches and flushes the folders' entries. Only after
that is the metadata written and flushed (:meth:`ChipWriter.write_manifest`): a chip the manifest
names is on disk. There is no filesystem-wide ``syncfs``: it also flushes every other job's dirty
data on a shared machine and is slow on network filesystems. Measured on 1,104 chips of 256 px
(tools/bench_chips.py): flushing at the end took 0.5 s after the writing, in the background 0.08.

Chips are not renamed one by one: the whole work folder is the unit that is swapped in
(:mod:`geogan.chips.workdir`).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import OutputError, describe
from ..outputs import fsync_dir, os_reason
from ..raster import disk_hint, encode_geotiff, zstd_available

#: Threads that flush written chips: they wait on the disk, not on a core.
FLUSH_THREADS = 4
#: Written chips are flushed in batches of this many while later chips are being written.
FLUSH_BATCH = 16
#: Chips in flight per writing thread (each holds one chip's pixels and bytes).
IN_FLIGHT_PER_THREAD = 4
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def chip_compression(compress: Optional[str]) -> tuple[str, Optional[int]]:
    """``(compress, zstd_level)``: None picks ZSTD level 1 when this GDAL has it, else DEFLATE.

    Measured on a 256×256×4 uint16 chip of the bench's noisy scene (2-core VM): zstd-1 encodes
    in 2.9 ms to 352 kB, deflate in 10.4 ms to 347 kB, no compression in 1.1 ms to 524 kB; with
    the encoding spread over the cores, zstd-1's smaller files are worth its time.
    """
    if compress is None:
        return ("zstd", 1) if zstd_available() else ("deflate", None)
    return compress, None


def writing_threads() -> int:
    """The cores this process may use (at least 1, at most 8): one encoding thread each."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class ChipWriter:
    """Writes chips into ``work/<split>/`` on a thread pool; a failure is one :class:`OutputError`
    naming ``out`` and the chip. A context manager: leaving it waits for the threads (and drops
    chips not started yet), so nothing writes into the work folder once it is removed."""

    def __init__(self, work: Path, out: Path, kept: str, compress: Optional[str] = None,
                 threads: Optional[int] = None) -> None:
        self.work = work
        self.out = out
        self.kept = kept
        self.compress, self.zstd_level = chip_compression(compress)
        self.threads = threads or writing_threads()
        self.written = 0  # chips handed to write()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="geogan-chips")
        self._flusher = ThreadPoolExecutor(FLUSH_THREADS, thread_name_prefix="geogan-flush")
        self._pending: deque[Future] = deque()   # chips being encoded and written
        self._batch: list[tuple[str, int]] = []  # (split/name, size) of chips written, not yet flushed
        self._flushing: deque[Future] = deque()  # batches being flushed
        self._folders: set[str] = set()

    def __enter__(self) -> "ChipWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._flusher.shutdown(wait=True, cancel_futures=True)

    def write(self, split_dir: str, name: str, data: np.ndarray, *, mask: Optional[np.ndarray],
              nodata: Optional[float], crs, transform, descriptions) -> None:
        """Queue one chip (``data`` must not change afterwards); raises the first failure so far."""
        while self._pending and (self._pending[0].done() or
                                 len(self._pending) >= self.threads * IN_FLIGHT_PER_THREAD):
            self._written(self._pending.popleft().result())
        self._pending.append(self._pool.submit(self._write_chip, split_dir, name, data, mask, nodata, crs,
                                               transform, descriptions))
        self.written += 1

    def _write_chip(self, split_dir: str, name: str, data: np.ndarray, mask: Optional[np.ndarray],
                    nodata: Optional[float], crs, transform, descriptions) -> tuple[str, int]:
        rel, path = f"{split_dir}/{name}", self.work / split_dir / name
        try:
            payload = encode_geotiff(data, crs=crs, transform=transform, nodata=nodata, mask=mask,
                                     descriptions=descriptions, compress=self.compress, zstd_level=self.zstd_level)
            if payload[:4] not in _TIFF_MAGIC:
                raise OSError(f"GDAL encoded {len(payload)} bytes that are not a TIFF")
            _write_new_file(path, payload)
        except OSError as exc:
            raise self._failed(f"writing chip {rel}", exc, path) from None
        return rel, len(payload)

    def _written(self, item: tuple[str, int]) -> None:
        """A chip is on its way to the disk: flush it with the next batch, in the background."""
        self._batch.append(item)
        self._folders.add(item[0].split("/")[0])
        if len(self._batch) >= FLUSH_BATCH:
            self._flush_batch()
        while self._flushing and self._flushing[0].done():
            self._flushing.popleft().result()  # raises a failed flush

    def _flush_batch(self) -> None:
        if self._batch:
            self._flushing.append(self._flusher.submit(self._flush_files, self._batch))
            self._batch = []

    def flush(self) -> None:
        """Every chip written, then on disk: one ``fdatasync`` per file (in parallel threads), its
        size checked against the encoded bytes, and the folders' entries flushed."""
        while self._pending:
            self._written(self._pending.popleft().result())
        self._flush_batch()
        while self._flushing:
            self._flushing.popleft().result()
        for folder in sorted(self._folders):
            fsync_dir(self.work / folder)

    def _flush_files(self, items: list[tuple[str, int]]) -> None:
        for rel, size in items:
            path = self.work / rel
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
                    on_disk = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if on_disk != size:
                    raise OSError(f"{on_disk} bytes on disk, {size} written")
            except OSError as exc:
                raise self._failed(f"flushing chip {rel} to disk", exc, path) from None

    def write_manifest(self, name: str, payload: bytes) -> None:
        """The metadata at the top of the work folder, written and flushed after :meth:`flush`:
        the last file of the export, so a manifest on disk names only chips on disk."""
        path = self.work / name
        try:
            _write_new_file(path, payload, sync=True)
        except OSError as exc:
            raise self._failed(f"writing {name}", exc, self.work) from None
        fsync_dir(self.work)

    def _failed(self, what: str, exc: OSError, path: Path) -> OutputError:
        return OutputError(f"{describe(self.out)}: {what} failed ({os_reason(exc)}); {disk_hint(path)}; {self.kept}")


def _write_new_file(path: Path, payload: bytes, sync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)

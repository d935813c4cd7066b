"""Outputs: temporary names with the owner's PID, debris removal, durable verified writes, locks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geogan.errors import BusyError, OutputError
from geogan.outputs import (OutputLock, atomic_output, atomic_write_bytes, current_umask, remove_stale_temps,
                            temp_owner, temp_path)


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_names_carry_the_owner_pid(tmp_path):
    tmp = temp_path(tmp_path / "out.tif", ".tif")
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.tif.geogan-") and tmp.name.endswith(".part.tif")
    assert temp_owner(tmp.name, "out.tif") == os.getpid()
    assert temp_owner(".other.tif.geogan-12-ab.part.tif", "out.tif") is None
    assert temp_owner("out.tif", "out.tif") is None


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dst = tmp_path / "out.tif"
    dead = _dead_pid()
    stale_file = tmp_path / f".out.tif.geogan-{dead}-0123abcd.part.tif"
    stale_dir = tmp_path / f".out.tif.geogan-{dead}-89abcdef.part"
    live = tmp_path / f".out.tif.geogan-{os.getpid()}-deadbeef.part.tif"
    other = tmp_path / f".other.tif.geogan-{dead}-0123abcd.part.tif"
    stale_file.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "chip.tif").write_bytes(b"x")
    for p in (live, other):
        p.write_bytes(b"x")
    removed = remove_stale_temps(dst)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert live.exists() and other.exists() and not stale_file.exists() and not stale_dir.exists()


def test_atomic_output_cleans_debris_and_keeps_destination_on_failure(tmp_path):
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"good")
    (tmp_path / f".out.bin.geogan-{_dead_pid()}-0123abcd.part.bin").write_bytes(b"debris")
    with pytest.raises(RuntimeError):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert dst.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_verifies_before_the_rename(tmp_path):
    dst = tmp_path / "out.bin"
    dst.write_bytes(b"good")

    def reject(path: Path) -> None:
        raise OutputError(f"{path.name}: bad")

    with pytest.raises(OutputError, match="bad"):
        atomic_write_bytes(dst, b"new", verify=reject)
    assert dst.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    atomic_write_bytes(dst, b"new", verify=lambda p: None)
    assert dst.read_bytes() == b"new"
    assert (dst.stat().st_mode & 0o777) == (0o666 & ~current_umask())


def test_full_disk_is_one_line_and_the_previous_file_survives(small_tmpfs):
    dst = small_tmpfs / "model.bin"
    dst.write_bytes(b"previous")
    with pytest.raises(OutputError, match="No space left on device.*previous checkpoint is kept") as info:
        atomic_write_bytes(dst, b"x" * 2_000_000, what="checkpoint")
    assert "\n" not in str(info.value)
    assert dst.read_bytes() == b"previous" and [p.name for p in small_tmpfs.iterdir()] == ["model.bin"]


def test_unwritable_location_is_one_line(tmp_path):
    with pytest.raises(OutputError, match="cannot write the file here"):
        atomic_write_bytes(Path("/proc/geogan-test/out.bin"), b"x")


LOCK_HOLDER = """
import sys, time
from geogan.outputs import OutputLock
lock = OutputLock(sys.argv[1], "training output", directory=True).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(BusyError, match=rf"in use by another geogan process \(PID {holder.pid}\)"):
            OutputLock(out, "training output", directory=True).acquire()
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(out, "training output", directory=True) as lock:  # the dead owner's lock file remains
        assert lock.path.read_text().strip() == str(os.getpid())
    assert not lock.path.exists()


def test_verify_raster_rejects_missing_blocks_and_unreadable_files(tmp_path):
    """A block that never reached the disk reads back as empty without any error from GDAL: a
    sparse file (SPARSE_OK, one block never written) stands in for a failed flush."""
    import rasterio
    from rasterio.transform import from_origin

    from geogan.raster import verify_raster

    data = np.random.default_rng(0).integers(1, 65535, (1, 256, 256), dtype=np.uint16)
    profile = dict(driver="GTiff", width=256, height=256, count=1, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(0, 0, 10, 10), tiled=True, blockxsize=128, blockysize=128)
    complete, sparse = tmp_path / "complete.tif", tmp_path / "sparse.tif"
    with rasterio.open(complete, "w", **profile) as ds:
        ds.write(data)
    verify_raster(complete, width=256, height=256, count=1, dtype="uint16")
    with rasterio.open(sparse, "w", SPARSE_OK=True, **profile) as ds:
        ds.write(data[:, :128], window=rasterio.windows.Window(0, 0, 256, 128))
    with pytest.raises(OutputError, match=r"^'out.tif': the written file is incomplete \(block 1,0 of band 1 is "
                                          r"missing\); "):  # said once, not wrapped in "cannot be checked (...)"
        verify_raster(sparse, width=256, height=256, count=1, dtype="uint16", label="out.tif")
    with pytest.raises(OutputError, match="expected 256x256x2 uint16"):
        verify_raster(complete, width=256, height=256, count=2, dtype="uint16")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(complete.read_bytes()[:1000])
    with pytest.raises(OutputError, match="does not read back|incomplete"):
        verify_raster(cut, width=256, height=256, count=1, dtype="uint16")

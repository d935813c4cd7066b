"""Chip export against the faults of production: a disk that fills up, a kill at any point of
the swap, a second export into the same folder, damaged or oddly named inputs, unwritable
outputs. Each is one line naming the file, with the previous export intact and no debris."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geogan.chips import METADATA_NAME, export_chips, read_chips_metadata, recover_export
from geogan.chips.workdir import ExportDir
from geogan.errors import BusyError, GeoganError, OutputError, RasterError
from geogan.outputs import OutputLock, remove_stale_temps


def noisy(bands: int, rows: int, cols: int, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Incompressible pixels, so chips take real space on a small filesystem."""
    return np.random.default_rng(seed).integers(1, 60000, (bands, rows, cols)).astype(dtype)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def chip_names(out: Path) -> set[str]:
    return {f"{s}/{p.name}" for s in ("train_a", "train_b", "val_a", "val_b") for p in (out / s).iterdir()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "geogan", *args], capture_output=True, text=True, env=env,
                          timeout=300)


# ------------------------------------------------------------------------------- a full disk

def test_a_disk_that_fills_up_mid_export_keeps_the_previous_export(make_raster, small_tmpfs):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    out = small_tmpfs / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)  # 8 chips of 2 kB: fits
    before = chip_names(out)
    big = make_raster("big.tif", noisy(4, 512, 512, seed=2))  # 2 MB of chips: does not
    with pytest.raises(OutputError) as info:
        export_chips(big, b, out, tile_size=32, val_fraction=0)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"'{out}': writing chip train_a/big_r")
    assert "No space left on device" in message and "the disk is full" in message
    assert message.endswith("the previous export is kept")
    assert chip_names(out) == before and read_chips_metadata(out)["tile_size"] == 32
    for p in (out / "train_a").iterdir():
        with rasterio.open(p) as chip:
            chip.read()
    assert hidden(small_tmpfs) == []  # no work folder, no lock file


@pytest.mark.parametrize("room_kb", [0, 200])
def test_a_disk_that_stays_full_is_one_line_on_the_command_line(make_raster, small_tmpfs, room_kb):
    (small_tmpfs / "filler").write_bytes(b"\0" * ((1 << 20) - room_kb * 1024))
    if room_kb == 0:
        with open(small_tmpfs / "filler", "ab") as fh, pytest.raises(OSError):
            fh.write(b"\0" * 65536)  # the disk is full from the start
    a = make_raster("a.tif", noisy(1, 256, 256))  # 256 kB of chips per domain
    b = make_raster("b.tif", noisy(1, 256, 256, seed=1))
    result = _cli("chips", "--a", str(a), "--b", str(b), "--out", str(small_tmpfs / "chips"), "--tile-size", "32",
                  "--val-fraction", "0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr  # no GDAL lines, no traceback
    assert lines[0].startswith("geogan: error: ") and "No space left on device" in lines[0], lines[0]
    assert ("writing chip" in lines[0]) == (room_kb > 0)  # full from the start: the lock already fails
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]


# ------------------------------------------------------------------------------- durability, once per export

def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name a flushed descriptor")
def test_every_chip_is_flushed_once_before_the_manifest_names_it(make_raster, tmp_path, monkeypatch):
    a = make_raster("a.tif", noisy(2, 96, 96))
    b = make_raster("b.tif", noisy(1, 96, 64, seed=1))
    flushed: list[tuple[str, str]] = []  # (call, path) in order
    real_fdatasync, real_fsync = os.fdatasync, os.fsync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed.append(("fdatasync", _fd_path(fd))), real_fdatasync(fd)))
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(("fsync", _fd_path(fd))), real_fsync(fd)))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0.3)
    monkeypatch.undo()
    chips = sorted(chip_names(out))
    assert len(chips) == 15
    # paths as they were in the work folder, made relative to it
    files = [(call, "/".join(Path(p).parts[-2:])) for call, p in flushed if Path(p).suffix in (".tif", ".json")]
    chip_syncs = [f for call, f in files if call == "fdatasync" and f.endswith(".tif")]
    assert sorted(chip_syncs) == chips  # each chip once, no chip twice
    manifest = [i for i, (call, f) in enumerate(files) if f.endswith(METADATA_NAME)]
    assert len(manifest) == 1 and files[manifest[0]][0] == "fsync"
    assert manifest[0] > max(i for i, (_, f) in enumerate(files) if f.endswith(".tif"))  # after every chip


def test_a_chip_that_fails_to_reach_the_disk_stops_the_export(make_raster, tmp_path, monkeypatch):
    import errno

    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    before = chip_names(out)
    real = os.fdatasync

    def eio_on_one_chip(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("b_r000032_c000000.tif"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", eio_on_one_chip)
    with pytest.raises(OutputError) as info:
        export_chips(a, b, out, tile_size=16, val_fraction=0)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"'{out}': flushing chip train_b/b_r000032_c000000.tif to disk")
    assert "Input/output error" in message and message.endswith("the previous export is kept")
    assert chip_names(out) == before and read_chips_metadata(out)["tile_size"] == 32
    assert hidden(tmp_path) == []


def test_a_chip_whose_size_on_disk_differs_from_its_encoding_is_caught(make_raster, tmp_path, monkeypatch):
    """The cheap check that stands in for re-reading every chip: the size on disk after the flush."""
    from geogan.chips import writer

    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    real = writer._write_new_file

    def lose_the_tail(path, payload, sync=False):
        real(path, payload[:-100] if path.name == "a_r000000_c000032.tif" else payload, sync)

    monkeypatch.setattr(writer, "_write_new_file", lose_the_tail)
    out = tmp_path / "chips"
    with pytest.raises(OutputError, match=r"flushing chip train_a/a_r000000_c000032.tif to disk failed "
                                          r"\((\d+) bytes on disk, \d+ written\); .*nothing was written$"):
        export_chips(a, b, out, tile_size=32, val_fraction=0)
    assert not out.exists() and hidden(tmp_path) == []


# ------------------------------------------------------------------------------- kills mid-swap

KILL_POINTS = ["writing", "complete", "moved_aside", "swapped"]


def _export_killed_at(point: str, a: Path, b: Path, out: Path) -> int:
    """Run an export (tile 48) in a forked child that dies (os._exit, no cleanup) at ``point``."""
    pid = os.fork()
    if pid == 0:  # the child
        try:
            if point == "writing":
                from geogan.chips import writer

                real = writer.ChipWriter.write

                def write_then_die(self, *args, **kwargs):
                    real(self, *args, **kwargs)
                    if self.written == 3:
                        os._exit(137)

                writer.ChipWriter.write = write_then_die
            else:
                ExportDir.on_step = staticmethod(lambda step: os._exit(137) if step == point else None)
            export_chips(a, b, out, tile_size=48, val_fraction=0)
        finally:
            os._exit(1)  # not killed: the test fails below
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_any_point_of_the_swap_is_repaired_by_the_next_run(make_raster, tmp_path, point):
    a = make_raster("a.tif", noisy(1, 96, 96))
    b = make_raster("b.tif", noisy(1, 96, 96, seed=1))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    assert _export_killed_at(point, a, b, out) == 137
    assert out.exists() == (point != "moved_aside")  # the only window where OUT is missing
    assert hidden(tmp_path)  # the dead run left its folders (and its lock file) behind
    recovered = recover_export(out)
    remove_stale_temps(out)
    committed = point == "swapped"  # the rename of the new export onto OUT is the commit point
    assert read_chips_metadata(out)["tile_size"] == (48 if committed else 32)
    assert (recovered is not None) == (point == "moved_aside")
    assert hidden(tmp_path) in ([], [".chips.geogan.lock"])  # an empty lock file, taken over by the next run
    s = export_chips(a, b, out, tile_size=24, val_fraction=0)
    assert s.counts["a"]["train"] == 16 and hidden(tmp_path) == []


def test_the_next_export_restores_a_folder_left_aside_and_says_so(make_raster, tmp_path):
    a = make_raster("a.tif", noisy(1, 96, 96))
    b = make_raster("b.tif", noisy(1, 96, 96, seed=1))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    assert _export_killed_at("moved_aside", a, b, out) == 137
    from geogan.chips.metadata import read_chips_metadata as read

    with pytest.raises(GeoganError, match="no such directory .*interrupted 'geogan chips' moved it aside"):
        read(out)
    s = export_chips(a, b, out, tile_size=24, val_fraction=0)
    assert s.recovered and "restored the previous export" in s.recovered
    assert read_chips_metadata(out)["tile_size"] == 24 and hidden(tmp_path) == []


def test_stale_work_folders_of_dead_runs_are_removed_live_ones_kept(make_raster, tmp_path):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    stale = tmp_path / f".chips.geogan-{dead_pid()}-0123abcd.part"
    live = tmp_path / f".chips.geogan-{os.getppid()}-89abcdef.part"
    for d in (stale, live):
        (d / "train_a").mkdir(parents=True)
        (d / "train_a" / "x.tif").write_bytes(b"x" * 1000)
    export_chips(a, b, tmp_path / "chips", tile_size=32, val_fraction=0)
    assert not stale.exists() and live.exists()


# ------------------------------------------------------------------------------- a second export

def test_a_second_export_into_the_same_folder_is_refused(make_raster, tmp_path):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    with OutputLock(out, "chips export"):  # another export holds the folder
        with pytest.raises(BusyError, match=r"'.*chips': the chips export is in use by another geogan process "
                                            rf"\(PID {os.getpid()}\)") as info:
            export_chips(a, b, out, tile_size=48, val_fraction=0)
    assert "\n" not in str(info.value)
    assert read_chips_metadata(out)["tile_size"] == 32 and hidden(tmp_path) == []


# ------------------------------------------------------------------------------- bad inputs and outputs

def test_a_truncated_geotiff_is_one_line_naming_the_file_and_the_window(make_raster, tmp_path):
    data = noisy(1, 256, 256)
    a = make_raster("cut.tif", data)
    size = a.stat().st_size
    with open(a, "r+b") as fh:
        fh.truncate(size // 2)  # the header is intact, the second half of the pixels is gone
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    out = tmp_path / "chips"
    with pytest.raises(RasterError) as info:
        export_chips(a, b, out, tile_size=32, val_fraction=0, kind_a="dsm")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"'{a}': reading rows ")
    assert "the file may be truncated or damaged" in message
    assert not out.exists() and hidden(tmp_path) == []


def test_unwritable_output_locations_are_one_line(make_raster, tmp_path, small_tmpfs):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    with pytest.raises(OutputError, match=r"^'/proc/geogan-chips': directory '/proc' is not writable"):
        export_chips(a, b, "/proc/geogan-chips", tile_size=32)
    if subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True).returncode:
        pytest.skip("cannot remount the small filesystem read-only here")
    try:
        with pytest.raises(OutputError, match="is not writable .*Read-only file system") as info:
            export_chips(a, b, small_tmpfs / "chips", tile_size=32)
        assert "\n" not in str(info.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], capture_output=True)


def test_non_utf8_names_are_one_line(make_raster, tmp_path):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.tif"))
    os.link(a, odd)
    with pytest.raises(RasterError, match=r"caf\\xe9.tif': the file name is not valid UTF-8") as info:
        export_chips(odd, b, tmp_path / "chips", tile_size=32)
    assert "\n" not in str(info.value)
    out = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/chips-\xff"))
    with pytest.raises(OutputError, match=r"chips-\\xff': the folder name is not valid UTF-8"):
        export_chips(a, b, out, tile_size=32)
    assert not os.path.exists(out)
    result = _cli("chips", "--a", str(odd), "--b", str(b), "--out", str(tmp_path / "c"), "--tile-size", "32")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "not valid UTF-8" in result.stderr


def test_metadata_counts_and_sizes_are_validated(make_raster, tmp_path):
    a = make_raster("a.tif", noisy(1, 64, 64))
    b = make_raster("b.tif", noisy(1, 64, 64, seed=1))
    out = tmp_path / "chips"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    meta = json.loads((out / METADATA_NAME).read_text())
    for key, value, needle in (("chip_size", [32], "invalid chip_size"), ("format_version", True, "format_version")):
        bad = dict(meta, **{key: value})
        (out / METADATA_NAME).write_text(json.dumps(bad))
        with pytest.raises(GeoganError, match=needle):
            read_chips_metadata(out)
    meta["domains"]["a"]["chips"] = {"train": -1, "val": 0}
    (out / METADATA_NAME).write_text(json.dumps(meta))
    with pytest.raises(GeoganError, match="invalid chip counts"):
        read_chips_metadata(out)

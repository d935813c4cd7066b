"""The output folder of an export: locked, recovered, built beside, swapped in.

An export is built in a hidden sibling folder ``.OUT.geogan-PID-TOKEN.part`` (the writer's PID
in the name, :func:`geogan.outputs.temp_path`) and is complete only once its metadata file is
written. It then replaces ``OUT`` in two renames::

    OUT           → .OUT.geogan-PID-TOKEN.old      (the previous export moved aside)
    .OUT…part     → OUT                            (the commit point)
    .OUT…old      removed

A run killed at any point leaves a state the next run on the same ``OUT`` repairs before it
starts (:func:`recover_export`, then :func:`geogan.outputs.remove_stale_temps` for everything a
dead process left): before the commit point ``OUT`` still holds the previous export, or it is
missing and the dead run's complete ``.old`` is renamed back; after it, ``OUT`` is the new
export and the leftovers are removed. A lock file beside ``OUT`` (``.OUT.geogan.lock``,
:class:`geogan.outputs.OutputLock`) keeps a second live export out of the same folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError, OutputError, describe
from ..outputs import (OutputLock, check_writable_dir, fsync_dir, os_reason, pid_alive, remove_stale_temps,
                       temp_owner, temp_path)
from .metadata import METADATA_NAME, SPLIT_DIRS, export_is_complete, read_chips_metadata

log = logging.getLogger(__name__)


def check_out_dir(out: Path) -> str:
    """``new`` (absent), ``empty`` (an empty folder) or ``replace`` (a previous chips export);
    anything else, or a location we cannot write, is a one-line :class:`OutputError`."""
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise OutputError(f"{describe(out)}: the folder name is not valid UTF-8, so GDAL could not read the chips "
                          "back; choose another name") from None
    if out.exists() and not out.is_dir():
        raise OutputError(f"{describe(out)}: exists and is a file, not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{describe(out)}: parent directory {describe(parent)} does not exist")
    check_writable_dir(parent, out)
    if not out.exists():
        return "new"
    entries = sorted(os.listdir(out))
    if not entries:
        return "empty"
    if METADATA_NAME not in entries:
        raise OutputError(f"{describe(out)}: exists, is not empty and is not a geogan chips export; "
                          "choose a new or empty directory")
    try:
        read_chips_metadata(out)
    except InputError:
        raise OutputError(f"{describe(out)}: holds an unreadable {METADATA_NAME}; not replacing it "
                          "(choose another directory)") from None
    foreign = [e for e in entries if e not in SPLIT_DIRS and e != METADATA_NAME]
    if foreign:
        raise OutputError(f"{describe(out)}: previous chips export also holds {describe(foreign[0])}, which is not "
                          "ours; move it or choose another directory")
    return "replace"


def recover_export(out: Path) -> Optional[str]:
    """Put back an export that a run killed mid-swap left moved aside; say what was done.

    Only when ``out`` is missing and a dead process's complete ``.old`` folder exists (the
    newest, if several): it is renamed back to ``out``. Everything else a dead run left is
    debris for :func:`geogan.outputs.remove_stale_temps`.
    """
    out = Path(out)
    if os.path.lexists(out):
        return None
    parent = out.parent if str(out.parent) else Path(".")
    try:
        names = os.listdir(parent)
    except OSError:
        return None
    aside = []
    for name in names:
        pid = temp_owner(name, out.name)
        if pid is not None and name.endswith(".old") and not pid_alive(pid) and export_is_complete(parent / name):
            aside.append((os.path.getmtime(parent / name / METADATA_NAME), pid, parent / name))
    if not aside:
        return None
    _, pid, path = max(aside)
    os.replace(path, out)
    fsync_dir(parent)
    return f"{describe(out)}: restored the previous export, which an interrupted run (PID {pid}) had moved aside"


class ExportDir:
    """One export's folder life cycle (a context manager around the writing).

    On entry: lock, recover, remove dead runs' debris, check ``out``, create the work folder.
    :meth:`commit` swaps the finished work folder in. On exit without a commit (an error, a
    cancel) the work folder is removed and ``out`` is as it was. The lock is released either way.
    """

    #: Called with the name of each swap step once it is done (tests simulate a kill there).
    on_step: Optional[Callable[[str], None]] = None

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.lock = OutputLock(self.out, "chips export")
        self.work: Optional[Path] = None
        self.mode = "new"
        self.recovered: Optional[str] = None

    @property
    def kept(self) -> str:
        """What a failure leaves, for error messages."""
        return "the previous export is kept" if self.mode == "replace" else "nothing was written"

    def __enter__(self) -> "ExportDir":
        self.lock.acquire()
        try:
            self.recovered = recover_export(self.out)
            if self.recovered:
                log.warning("%s", self.recovered)
            remove_stale_temps(self.out)
            self.mode = check_out_dir(self.out)
            self.work = self._make_work()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            self.lock.release()

    def _make_work(self) -> Path:
        work = temp_path(self.out, kind="part")
        try:
            work.mkdir()
            for sub in SPLIT_DIRS:
                (work / sub).mkdir()
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise OutputError(f"{describe(self.out)}: cannot create the export beside it ({os_reason(exc)})") from None
        return work

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    def commit(self) -> None:
        """Swap the finished work folder in for ``out`` (see the module docstring)."""
        work, parent = self.work, self.out.parent if str(self.out.parent) else Path(".")
        if work is None or not (work / METADATA_NAME).is_file():
            raise RuntimeError("commit() before the export's metadata was written")
        self._step("complete")
        if self.mode != "replace":
            self._replace_new(work)
        else:
            old = temp_path(self.out, kind="old")
            os.replace(self.out, old)
            self._step("moved_aside")
            try:
                os.replace(work, self.out)
            except BaseException:
                os.replace(old, self.out)
                raise
            self._step("swapped")
            fsync_dir(parent)
            shutil.rmtree(old, ignore_errors=True)
        self.work = None
        fsync_dir(parent)

    def _replace_new(self, work: Path) -> None:
        try:
            os.replace(work, self.out)  # POSIX renames onto an empty folder atomically
        except OSError:
            if self.mode != "empty":
                raise
            with contextlib.suppress(OSError):
                os.rmdir(self.out)  # Windows cannot rename onto an existing folder, even an empty one
            os.replace(work, self.out)

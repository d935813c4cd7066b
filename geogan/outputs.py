"""Outputs that are never half-written, never left behind, and never written by two runs at once.

Every file geogan writes (GeoTIFFs, chips, checkpoints, model files, metadata, previews) goes to
a temporary name beside its destination, is flushed to disk (``fsync``), optionally verified,
and only then renamed into place; any failure removes the temporary file and leaves the
destination as it was.

Temporary names are recognisable and carry the writer's process id::

    .out.tif.geogan-4711-3f9a1c2e.part.tif

so the next run writing beside the same destination removes the ones whose process is gone
(:func:`remove_stale_temps`): a ``kill -9`` leaves debris only until the next run.

:class:`OutputLock` keeps two live runs from writing the same output (a training folder, a
prediction); a lock left by a dead process is taken over, because the operating system drops
the lock (``flock`` on POSIX, ``LockFileEx`` on Windows, both through :mod:`filelock`) when its
process ends. Whether a process is alive is asked without signals on Windows
(:func:`pid_alive`), where ``os.kill`` would terminate it.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from filelock import lock_descriptor

from .errors import BusyError, GeoganError, OutputError, describe

PathLike = Union[str, "os.PathLike[str]"]

#: Marks geogan's temporary names: ``.NAME`` + TEMP_MARK + ``PID-TOKEN.KIND...``.
TEMP_MARK = ".geogan-"
LOCK_SUFFIX = ".geogan.lock"


# ------------------------------------------------------------------------------------ names

def temp_path(dst: PathLike, suffix: str = "", kind: str = "part") -> Path:
    """A new temporary path beside ``dst`` owned by this process (not created)."""
    d = Path(dst)
    token = secrets.token_hex(4)
    return d.parent / f".{d.name}{TEMP_MARK}{os.getpid()}-{token}.{kind}{suffix}"


def temp_owner(name: str, dst_name: str) -> Optional[int]:
    """The PID in a temporary name made by :func:`temp_path` for ``dst_name``, else None."""
    prefix = f".{dst_name}{TEMP_MARK}"
    if not name.startswith(prefix):
        return None
    m = re.match(r"(\d+)-[0-9a-f]+\.", name[len(prefix):])
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this machine (a PID we may not query counts).

    Never sends a signal: on Windows ``os.kill(pid, 0)`` would *terminate* that process, so
    there the process is opened for a query and asked for its exit code
    (:func:`_windows_pid_alive`). Elsewhere signal 0 only checks that the PID exists.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False  # no process can have this number
    except OSError:  # PermissionError (another user's process) or anything unforeseen: keep its files
        return True
    return True


#: Windows API constants (winnt.h, winerror.h, minwinbase.h).
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_ACCESS_DENIED = 5
_ERROR_INVALID_PARAMETER = 87
_STILL_ACTIVE = 259


def _kernel32() -> Any:
    import ctypes

    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


def _last_error() -> int:
    import ctypes

    return ctypes.get_last_error()  # type: ignore[attr-defined]  # Windows only


def _windows_pid_alive(pid: int) -> bool:
    """``OpenProcess`` + ``GetExitCodeProcess``: alive while the exit code reads STILL_ACTIVE.

    A PID that no process has (ERROR_INVALID_PARAMETER) is gone; one we may not open
    (ERROR_ACCESS_DENIED: another user's, a protected process) exists. A process that exited
    with code 259 reads as alive: its debris is kept, which is the safe mistake.
    """
    import ctypes
    from ctypes import wintypes

    k32 = _kernel32()
    handle = k32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, int(pid))
    if not handle:
        return _last_error() != _ERROR_INVALID_PARAMETER
    try:
        code = wintypes.DWORD()
        if not k32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # it exists (we opened it) but said nothing: keep its files
        return code.value == _STILL_ACTIVE
    finally:
        k32.CloseHandle(handle)


def remove_stale_temps(dst: PathLike) -> list[Path]:
    """Remove temporary files and folders beside ``dst`` left by geogan processes that are gone.

    Returns what was removed. Temporaries of live processes (another run still writing) are
    left alone. Errors while cleaning up are ignored: debris must never fail a run.
    """
    d = Path(dst)
    parent = d.parent if str(d.parent) else Path(".")
    removed: list[Path] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        pid = temp_owner(name, d.name)
        if pid is None or pid_alive(pid):
            continue
        path = parent / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


# ------------------------------------------------------------------------------ permissions

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``).

    Elsewhere it is read by setting and restoring it under a lock; geogan's own threads never
    call ``umask`` otherwise.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


# ------------------------------------------------------------------------------- durability

def fsync_file(path: PathLike) -> None:
    """Flush a finished file to disk; raises OSError (e.g. ENOSPC, EIO) when the data did not land."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: PathLike) -> None:
    """Flush a directory entry (a rename) to disk where the platform supports it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported for directories here (e.g. some network filesystems)
    finally:
        os.close(fd)


def os_reason(exc: BaseException) -> str:
    """A short reason for an OS-level failure: 'No space left on device', 'Permission denied', ..."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- atomic files

Verifier = Callable[[Path], None]


@contextlib.contextmanager
def atomic_output(dst: PathLike, suffix: Optional[str] = None, *,
                  verify: Optional[Verifier] = None, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; move it onto ``dst`` only once it is complete.

    After the block the temporary file is flushed to disk and, if given, ``verify(tmp)`` is
    called (it raises to reject the file). Only then is it renamed onto ``dst``. On any failure
    (an exception in the block, a full disk, a failed verification, a cancel) the temporary file
    and its GDAL side-cars are removed, ``dst`` is left as it was, and OS errors become one-line
    :class:`OutputError`\\ s naming ``dst`` and saying what was kept (``what``: "checkpoint"...).
    """
    d = Path(dst)
    suffix = suffix if suffix is not None else d.suffix
    remove_stale_temps(d)
    tmp = temp_path(d, suffix)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{describe(d)}: cannot write the {what} here ({os_reason(exc)})") from None
    try:
        yield tmp
        if tmp.exists():
            fsync_file(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # the usual permissions, not the temp file's 0600
            if verify is not None:
                verify(tmp)
        os.replace(tmp, d)
        fsync_dir(d.parent if str(d.parent) else ".")
    except BaseException as exc:
        _remove_temp(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, GeoganError):
            kept = f"the previous {what} is kept" if d.exists() else "nothing was written"
            raise OutputError(f"{describe(d)}: cannot write the {what} ({os_reason(exc)}); {kept}") from None
        raise
    else:
        with contextlib.suppress(OSError):
            Path(str(tmp) + ".aux.xml").unlink()


def _remove_temp(tmp: Path) -> None:
    for leftover in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + ".ovr"), Path(str(tmp) + ".msk")):
        with contextlib.suppress(OSError):
            leftover.unlink()


def atomic_write_bytes(dst: PathLike, payload: bytes, *, verify: Optional[Verifier] = None,
                       what: str = "file") -> None:
    """Write a small file (metadata, config, checkpoint, model) atomically and durably."""
    with atomic_output(dst, verify=verify, what=what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def check_writable_dir(directory: PathLike, what: PathLike) -> None:
    """Refuse a directory we cannot create files in, by trying (``os.access`` lies for root on
    some mounts and says nothing of read-only filesystems on others)."""
    probe = temp_path(Path(directory) / ".probe", kind="probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise OutputError(f"{describe(what)}: directory {describe(directory)} is not writable ({os_reason(exc)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()


# ------------------------------------------------------------------------------------ locks

class OutputLock:
    """An exclusive, process-lifetime lock on an output folder or file.

    ``with OutputLock(out_dir, "training output", directory=True):`` refuses with
    :class:`BusyError` while another live process holds it. The lock is taken with
    :func:`filelock.lock_descriptor` (``flock`` on POSIX, ``LockFileEx`` on byte 0 on Windows)
    on a small file holding the owner's PID (``DIR/.geogan.lock`` for a folder, created if
    needed; ``.NAME.geogan.lock`` beside a file). Both are dropped by the operating system when
    their process ends, however it ends, so a stale lock is simply taken over.

    The PID is written after one space: Windows refuses other processes reads of the locked
    byte 0, not of the bytes after it, so a refused run can still name the holder. ``label``
    (one line, optional) is written on the next line: what the holder is making (a prediction's
    provenance fingerprint), so a refused run can tell the holder's work from a conflict. The
    :class:`BusyError` carries ``owner`` (the PID) and ``label`` (None when unreadable).
    """

    def __init__(self, target: PathLike, what: str = "output", *, directory: bool = False,
                 label: Optional[str] = None) -> None:
        self.target = Path(target)
        self.what = what
        self.directory = directory
        self.label = " ".join(str(label).split()) if label else ""
        if directory:
            self.path = self.target / LOCK_SUFFIX
        else:
            self.path = self.target.parent / f".{self.target.name}{LOCK_SUFFIX}"
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        if self.directory:
            try:
                self.target.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{describe(self.target)}: cannot create the {self.what} ({os_reason(exc)})") from None
        for _ in range(10):  # retry if the file we locked was unlinked by a releasing owner meanwhile
            fd = self._open()
            if not self._try_lock(fd):
                owner, label = read_lock_file(fd)
                os.close(fd)
                busy = BusyError(self.busy_message(owner))
                busy.owner, busy.label = owner, label  # type: ignore[attr-defined]  # for callers that skip work
                raise busy
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f" {os.getpid()}\n{self.label}\n".encode("utf-8"))
            except OSError as exc:  # e.g. a full disk: give the lock up whole, leave no lock file
                self._fd = fd
                self.release()
                raise OutputError(f"{describe(self.target)}: cannot lock the {self.what} ({os_reason(exc)})") from None
            self._fd = fd
            return self
        raise BusyError(f"{describe(self.target)}: could not lock the {self.what} (it keeps changing)")

    def busy_message(self, owner: Optional[int]) -> str:
        who = f" (PID {owner})" if owner else ""
        return (f"{describe(self.target)}: the {self.what} is in use by another geogan process{who}; "
                "wait for it to finish or choose another output")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            raise OutputError(f"{describe(self.target)}: cannot lock the {self.what} ({os_reason(exc)})") from None

    def _try_lock(self, fd: int) -> bool:
        """True when we hold the lock now; False when another process holds it."""
        try:
            return lock_descriptor(fd, blocking=False)
        except OSError as exc:  # e.g. a filesystem without locks (ENOLCK): say so, never write unlocked
            os.close(fd)
            raise OutputError(f"{describe(self.target)}: cannot lock the {self.what} ({os_reason(exc)})") from None

    def release(self) -> None:
        """Drop the lock and its file. POSIX: unlinked while still locked, so nobody can lock this
        file after us. Windows cannot unlink an open file: closed first, then unlinked unless
        another process has opened it meanwhile (then it stays, and is theirs)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)
            unlinked = True
        except OSError:
            unlinked = False
        with contextlib.suppress(OSError):
            os.close(fd)  # closing drops the lock (flock / LockFileEx) with the handle
        if not unlinked:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock_file(fd: int) -> tuple[Optional[int], Optional[str]]:
    """The PID and the label written in a lock file, each None when unreadable (empty, being written,
    locked against reads, or written by a geogan that wrote no label)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        lines = os.read(fd, 4096).decode("utf-8", "replace").splitlines()
    except OSError:
        return None, None
    try:
        pid = int(lines[0].strip()) if lines and lines[0].strip() else None
    except ValueError:
        pid = None
    label = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return pid, label

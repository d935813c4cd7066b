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
an ``flock`` when its process ends.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

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
    """True when a process with this id exists on this machine (a PID we may not signal counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


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
    :class:`BusyError` while another live process holds it. The lock is an ``flock`` on a small
    file holding the owner's PID (``DIR/.geogan.lock`` for a folder, created if needed;
    ``.NAME.geogan.lock`` beside a file): the OS releases it when the owner dies, so a stale lock
    is simply taken over.
    """

    def __init__(self, target: PathLike, what: str = "output", *, directory: bool = False) -> None:
        self.target = Path(target)
        self.what = what
        self.directory = directory
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
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"{describe(self.target)}: cannot lock the {self.what} ({os_reason(exc)})") from None
            if not self._try_lock(fd):
                owner = self._read_owner(fd)
                os.close(fd)
                who = f" (PID {owner})" if owner else ""
                raise BusyError(f"{describe(self.target)}: the {self.what} is in use by another geogan process{who}; "
                                "wait for it to finish or choose another output")
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            except OSError as exc:  # e.g. a full disk: give the lock up whole, leave no lock file
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                os.close(fd)
                raise OutputError(f"{describe(self.target)}: cannot lock the {self.what} ({os_reason(exc)})") from None
            self._fd = fd
            return self
        raise BusyError(f"{describe(self.target)}: could not lock the {self.what} (it keeps changing)")

    @staticmethod
    def _try_lock(fd: int) -> bool:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the lock file alone marks the output as taken
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    @staticmethod
    def _read_owner(fd: int) -> Optional[int]:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text else None
        except (OSError, ValueError, AttributeError):
            return None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still locked: nobody can lock this inode after us
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

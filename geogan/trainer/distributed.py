"""This process's place in a data-parallel run, and the few host-side messages ranks exchange.

Under ``torchrun`` (or any launcher that sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and a
rendezvous) every process trains on its share of each epoch. Gradients travel through the
training process group (NCCL on CUDA, gloo on the CPU) inside DDP's backward. Everything else —
the cancel flag, the agreement that setup succeeded, gathering the ranks' RNG and pool states
into rank 0's checkpoint, the barrier after rank 0 writes a file — goes through a CPU (gloo)
group, so none of it makes the GPU wait.

A failure on one rank must end the job, not leave the others waiting in a collective: the
failing rank leaves its reason in the rendezvous store and tears its process groups down, and a
rank whose collective then fails reports "stopped because rank R failed: ..." in one line. The
rest of stopping a job (killing the processes left, restarting) is torchrun's agent's.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from typing import Any, Iterator, Mapping, Optional

from ..errors import ConfigError, GeoganError
from ..torchrun_env import job_place

log = logging.getLogger("geogan.trainer")

FAILURE_KEY = "geogan/failure"
READ_KEY = "geogan/failure-read"


class PeerFailedError(GeoganError, RuntimeError):
    """Another process of a data-parallel run failed, so this one stopped too."""


class CollectiveFailure(RuntimeError):
    """One of the host-side messages between ranks failed: the group broke (a peer left or hung).

    Known by where it happened — a CPU-group collective, which runs none of this rank's own
    computation — not by the words of torch's message (gloo raises a plain RuntimeError).
    """


#: How long a failing rank 0, which hosts the rendezvous store, keeps it up for the others to
#: read its reason (it returns as soon as every other rank has read it).
REASON_GRACE_S = 5.0


@contextlib.contextmanager
def _collective() -> Iterator[None]:
    try:
        yield
    except GeoganError:
        raise
    except RuntimeError as exc:
        raise CollectiveFailure(_first_line(exc)) from exc


class Dist:
    """This process's place in the job (:func:`geogan.torchrun_env.job_place`) and its process groups."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        self.place = job_place(env)
        self.world, self.rank, self.local_rank = self.place.world, self.place.rank, self.place.local_rank
        self.started_here = False
        self.cpu_group: Any = None
        self.backend = "none"
        self._store: Any = None  # held so a failing rank 0 keeps serving its reason to the others

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- life cycle ------------------------------------------------------------------------
    def start(self, device_type: str, backend: str = "auto", timeout_s: Optional[float] = None) -> None:
        """Join the process group (NCCL on CUDA, gloo on the CPU, or ``backend``) and make a CPU group.

        ``timeout_s`` bounds every collective of both groups: a peer that hangs (or vanished without
        closing its connections) ends the job with an error instead of holding it forever. NCCL
        checks it in its watchdog, which aborts the communicator and raises on this rank.
        """
        if not self.active:
            return
        import torch.distributed as dist

        if backend == "auto":
            backend = "nccl" if device_type == "cuda" else "gloo"
        if backend == "nccl" and device_type != "cuda":
            raise ConfigError("config: dist_backend: nccl needs CUDA devices; use gloo or auto on the CPU")
        kwargs = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, **kwargs)
            self.started_here = True
        self.backend = dist.get_backend()
        self.cpu_group = dist.new_group(backend="gloo", **kwargs) if self.backend != "gloo" else dist.group.WORLD
        self._store = _default_store()

    def stop(self) -> None:
        """Leave the process group after a normal end (every rank got here)."""
        if self.started_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.started_here = False

    def fail(self, exc: BaseException) -> None:
        """This rank failed: tell the others why (through the store) and tear the groups down.

        Tearing down closes this rank's connections, so a peer waiting for it in a collective
        gets an error at once instead of waiting for a timeout.
        """
        if not self.active:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        left = not isinstance(exc, PeerFailedError) and self._leave_reason(exc)
        _abort_groups()
        self.started_here = False
        if left and self.main:
            self._wait_for_readers()

    def _wait_for_readers(self) -> None:
        """Rank 0 hosts the store: keep it up until the others read the reason (or a few seconds)."""
        deadline = time.monotonic() + REASON_GRACE_S
        try:
            while self._store.add(READ_KEY, 0) < self.world - 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - a broken store: nothing to wait for
            pass

    def _leave_reason(self, exc: BaseException) -> bool:
        """Leave this rank's reason in the store unless a reason is there already; True if left."""
        try:
            if self._store is not None and not self._store.check([FAILURE_KEY]):
                self._store.set(FAILURE_KEY, f"rank {self.rank} failed: {_first_line(exc)}")
                return True
        except Exception:  # noqa: BLE001 - the store may be gone with the rank that hosted it
            pass
        return False

    def peer_reason(self) -> Optional[str]:
        """Why another rank failed, when it left its reason in the store (None otherwise)."""
        try:
            if self._store is not None and self._store.check([FAILURE_KEY]):
                reason = self._store.get(FAILURE_KEY).decode("utf-8", "replace")
                if reason.startswith(f"rank {self.rank} "):
                    return None
                self._store.add(READ_KEY, 1)  # lets a failing rank 0 stop hosting the store
                return reason
        except Exception:  # noqa: BLE001 - the store may be gone with the rank that hosted it
            pass
        return None

    def tear_down_after(self, exc: BaseException) -> BaseException:
        """Tear the process groups down after ``exc`` and return the error this rank reports.

        Its own error (left in the store for the others first, see :meth:`fail`), or, when another
        rank failed first, "rank R stopped because rank Q failed: <Q's own first line>". Without a
        reason in the store, only a broken collective — torch's ``DistError`` family, or one of the
        CPU-group messages (:class:`CollectiveFailure`) — is reported as "another process of the
        job stopped": any other error of this rank, even one from CUDA or NCCL code, is its own.
        """
        if not self.active or isinstance(exc, PeerFailedError):
            return exc
        reason = self.peer_reason()
        if reason is None and is_collective_failure(exc):
            reason = f"another process of the job stopped ({_first_line(exc)})"
        if reason is not None:
            _abort_groups()
            self.started_here = False
            return PeerFailedError(f"rank {self.rank} stopped because {reason}")
        self.fail(exc)
        return exc

    # -- host-side messages ----------------------------------------------------------------
    def agree(self, error: Optional[BaseException]) -> None:
        """Every rank says whether its setup succeeded; all raise if any failed (no rank waits alone)."""
        if not self.active:
            if error is not None:
                raise error
            return
        statuses = self.all_gather(None if error is None else f"rank {self.rank} failed: {_first_line(error)}")
        if error is not None:
            raise error
        failed = [s for s in statuses if s]
        if failed:
            raise PeerFailedError(f"rank {self.rank} stopped because {failed[0]}")

    def all_gather(self, obj: Any) -> list:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        with _collective():
            dist.all_gather_object(out, obj, group=self.cpu_group)
        return out

    def gather_to_main(self, obj: Any) -> Optional[list]:
        """Every rank's ``obj`` as a list on rank 0 (None elsewhere): only rank 0 writes them."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: Optional[list] = [None] * self.world if self.main else None
        with _collective():
            dist.gather_object(obj, out, dst=0, group=self.cpu_group)
        return out

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any, through the CPU group (no device synchronisation)."""
        if not self.active:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        with _collective():
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group)
        return bool(t[0])

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (e.g. the checkpoint it loaded) on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        with _collective():
            dist.broadcast_object_list(box, src=0, group=self.cpu_group)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            with _collective():
                dist.barrier(group=self.cpu_group)


def _default_store() -> Any:
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a private API: without it peers report a generic reason
        return None


def _abort_groups() -> None:
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    abort = getattr(distributed_c10d, "_abort_process_group", None)
    if abort is not None and dist.get_backend() == "nccl":
        try:
            abort()
            return
        except Exception:  # noqa: BLE001 - fall back to an ordinary teardown
            pass
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - we are already failing; the original error is what matters
        pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:300]


def is_collective_failure(exc: BaseException) -> bool:
    """True for the errors torch.distributed raises when a peer vanished or timed out (by type, never text)."""
    if isinstance(exc, CollectiveFailure):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"DistBackendError", "DistNetworkError", "DistStoreError", "DistError"})


def split_cpu_threads(device_type: str, world: int) -> Optional[int]:
    """On the CPU give each of ``world`` processes its share of the cores (unless OMP_NUM_THREADS is set)."""
    if device_type != "cpu" or world == 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // world)

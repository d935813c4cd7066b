"""Batch prediction across processes and machines with torchrun: who does what, and the summary.

``torchrun --nproc_per_node=N -m geogan predict MODEL @scenes.txt OUT/`` starts N processes;
each reads its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), takes its share of the scenes (:func:`geogan.predict.batch.shard`) on its own
GPU, and posts its outcome to torch.distributed's key-value store (the c10d ``TCPStore`` of the
``env://`` rendezvous, the one gloo and NCCL process groups are built on). Rank 0 waits for every
rank's outcome and prints the summary.

Why the store and not a gloo collective at the end: ranks finish at very different times (one
rank's scenes may be larger), and a collective would time out on a rank that is slow but alive,
or keep finished ranks (and their GPUs) waiting for the slowest one. With the store a rank
leaves as soon as it has posted (idle ranks at once), and rank 0 tells a slow rank from a dead
one by its heartbeat: a rank that stops beating for ``GEOGAN_RANK_TIMEOUT`` seconds (default
120) is reported as lost and the job exits non-zero instead of waiting forever. Under torchrun
a rank that fails outright also makes torchrun stop the others.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional

from ..errors import Cancelled, ConfigError

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
DEFAULT_LOST_AFTER_S = 120.0
CONNECT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Optional["RankInfo"]:
        """The rank torchrun gave this process, or None when it runs alone (no ``WORLD_SIZE`` > 1)."""
        try:
            world = int(environ.get("WORLD_SIZE", "1") or "1")
            if world <= 1:
                return None
            rank = int(environ["RANK"])
            local = int(environ.get("LOCAL_RANK", rank))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"torchrun environment is incomplete or malformed ({exc}): RANK, WORLD_SIZE and "
                              "LOCAL_RANK must be integers") from None
        if not 0 <= rank < world:
            raise ConfigError(f"RANK {rank} is not in a world of {world} process(es)")
        return cls(rank, world, local)


class RankExchange:
    """Each rank's outcome through the rendezvous store, with heartbeats so rank 0 never waits on a dead rank.

    ``with RankExchange(info) as ex: ... ex.post(payload)``; rank 0 then calls :meth:`collect`.
    """

    def __init__(self, info: RankInfo, *, lost_after_s: Optional[float] = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.info = info
        self.lost_after_s = lost_after_s if lost_after_s is not None else float(
            environ.get("GEOGAN_RANK_TIMEOUT", DEFAULT_LOST_AFTER_S))
        run = environ.get("TORCHELASTIC_RUN_ID", "none")
        attempt = environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.prefix = f"geogan/predict/{run}/{attempt}/"  # a restarted job never reads an old attempt's keys
        self._environ = environ
        self._store: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None

    def __enter__(self) -> "RankExchange":
        self._store = self._connect()
        self._beat = threading.Thread(target=self._heartbeat, name="geogan-heartbeat", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()

    def _connect(self) -> Any:
        from torch.distributed import rendezvous

        addr = self._environ.get("MASTER_ADDR", "?")
        port = self._environ.get("MASTER_PORT", "?")
        try:
            store, _, _ = next(rendezvous("env://", rank=self.info.rank, world_size=self.info.world_size,
                                          timeout=timedelta(seconds=CONNECT_TIMEOUT_S)))
        except Exception as exc:  # the store's own errors: not ours to type
            text = str(exc).strip().splitlines()
            raise ConfigError(f"rank {self.info.rank}: cannot reach torchrun's rendezvous store at {addr}:{port} "
                              f"({text[0] if text else type(exc).__name__})") from None
        return store

    def _heartbeat(self) -> None:
        key = f"{self.prefix}beat/{self.info.rank}"
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._store.add(key, 1)
            except Exception:  # the store went away (rank 0 ended): nothing left to tell
                return
            self._stop.wait(HEARTBEAT_S)

    def post(self, payload: dict) -> None:
        """Publish this rank's outcome (JSON-ready) for rank 0."""
        with self._lock:
            self._store.set(f"{self.prefix}result/{self.info.rank}", json.dumps(payload))

    def collect(self, cancelled: Callable[[], bool] = lambda: False, poll_s: float = 0.2) -> dict[int, Optional[dict]]:
        """Rank 0: every rank's payload, waiting while ranks are alive; None for a rank lost on the way."""
        pending = set(range(self.info.world_size))
        got: dict[int, Optional[dict]] = {}
        beats = {r: (-1, time.monotonic()) for r in pending}
        while pending:
            for r in sorted(pending):
                key = f"{self.prefix}result/{r}"
                with self._lock:
                    ready = self._store.check([key])
                    raw = self._store.get(key) if ready else None
                    count = None if ready else int(self._store.add(f"{self.prefix}beat/{r}", 0))
                if raw is not None:
                    got[r] = json.loads(raw.decode("utf-8"))
                    pending.discard(r)
                    continue
                last, since = beats[r]
                now = time.monotonic()
                if count != last:
                    beats[r] = (count, now)
                elif now - since > self.lost_after_s:
                    log.warning("rank %d sent no heartbeat for %.0f s; counted as lost", r, now - since)
                    got[r] = None
                    pending.discard(r)
            if pending:
                if cancelled():
                    raise Cancelled("waiting for the other ranks' results cancelled")
                time.sleep(poll_s)
        return got

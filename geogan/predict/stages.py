"""What the predictor's threads share: a stop flag with the first failure, and bounded channels.

The reader thread, the caller's thread (network and blending) and the writer thread pass work along
:class:`Channel`\\ s. Any thread that fails records its exception in the :class:`PipelineState`
and sets the stop flag; every blocking ``put``/``get`` gives up within a fraction of a second
once the flag is set, so no thread waits forever, and the caller's thread re-raises the
first failure.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Optional

#: Marks the end of a channel's items.
END = object()

_POLL_S = 0.1


def io_errors() -> tuple:
    """The exceptions a GDAL read or write raises through rasterio: its own errors, GDAL's CPLE_*
    errors (raised as is by some calls, e.g. a COG copy on a full disk) and the OS's."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError)


class Stopped(Exception):
    """Raised inside a stage when the pipeline was stopped elsewhere (not a failure of its own)."""


class PipelineState:
    """The stop flag and the first failure, shared by the predictor's threads."""

    def __init__(self) -> None:
        #: The thread that runs the pipeline (the caller's): it is the one that re-raises failures.
        self.driver = threading.get_ident()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: Optional[BaseException] = None

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` (unless something failed first) and stop every stage."""
        if not isinstance(exc, Stopped):
            with self._lock:
                if self.error is None:
                    self.error = exc
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def stopped(self) -> bool:
        return self._stop.is_set()

    def raise_if_stopped(self) -> None:
        """In a worker stage: leave quietly when the pipeline stopped."""
        if self._stop.is_set():
            raise Stopped()

    def raise_failure(self) -> None:
        """In the main thread: re-raise another stage's failure."""
        if self.error is not None:
            raise self.error


class Channel:
    """A bounded queue between two stages whose waits end when the pipeline stops."""

    def __init__(self, state: PipelineState, depth: int) -> None:
        self.state = state
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)

    def put(self, item: Any) -> None:
        while True:
            self._check()
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        while True:
            self._check()
            try:
                return self._q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _check(self) -> None:
        if threading.get_ident() == self.state.driver:
            self.state.raise_failure()
        self.state.raise_if_stopped()

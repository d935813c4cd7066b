"""Progress reporting and cancellation, as a small protocol.

The library never prints: every long step takes a ``progress`` argument and reports
``update(done, total, message)`` to it, and polls ``cancelled()`` between units of work
(a tile batch, a training step, a chip). The CLI plugs in :class:`TqdmProgress`; a QGIS
script plugs in :class:`QgisFeedbackProgress` around its ``QgsProcessingFeedback``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, runtime_checkable

from .errors import Cancelled


@runtime_checkable
class Progress(Protocol):
    """What a long-running geogan call reports to."""

    def update(self, done: int, total: int, message: str = "") -> None:
        """``done`` of ``total`` units are finished; ``message`` says what is happening."""

    def cancelled(self) -> bool:
        """True when the caller wants the work to stop as soon as possible."""


class NullProgress:
    """Reports nowhere and never cancels: the default."""

    def update(self, done: int, total: int, message: str = "") -> None:
        pass

    def cancelled(self) -> bool:
        return False


class CallbackProgress:
    """Adapts plain callables: ``on_update(done, total, message)`` and ``is_cancelled()``."""

    def __init__(
        self,
        on_update: Optional[Callable[[int, int, str], Any]] = None,
        is_cancelled: Optional[Callable[[], bool]] = None,
    ) -> None:
        self._on_update = on_update
        self._is_cancelled = is_cancelled

    def update(self, done: int, total: int, message: str = "") -> None:
        if self._on_update is not None:
            self._on_update(done, total, message)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled()) if self._is_cancelled is not None else False


class TqdmProgress:
    """A tqdm bar on stderr, for the CLI. One bar per ``total``; a new total starts a new bar.

    ``is_cancelled`` (e.g. the CLI's signal flag) is what :meth:`cancelled` answers.
    """

    def __init__(self, desc: str = "", *, is_cancelled: Optional[Callable[[], bool]] = None,
                 **tqdm_kwargs: Any) -> None:
        self._desc = desc
        self._is_cancelled = is_cancelled
        self._kwargs = tqdm_kwargs
        self._bar = None
        self._total: Optional[int] = None

    def update(self, done: int, total: int, message: str = "") -> None:
        from tqdm.auto import tqdm

        if self._bar is None or total != self._total:
            self.close()
            self._bar = tqdm(total=total, desc=self._desc, dynamic_ncols=True, **self._kwargs)
            self._total = total
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.n = done
        self._bar.refresh()

    def cancelled(self) -> bool:
        return bool(self._is_cancelled()) if self._is_cancelled is not None else False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class QgisFeedbackProgress:
    """Adapts a ``QgsProcessingFeedback`` (duck-typed: geogan never imports qgis).

    Progress goes to ``setProgress`` (0–100), messages to ``setProgressText``, and
    ``isCanceled()`` is the cancel button.
    """

    #: Seconds between two progress texts: each one is a new line in the Processing log.
    TEXT_INTERVAL = 2.0

    def __init__(self, feedback: Any) -> None:
        self._feedback = feedback
        self._last_message = ""
        self._last_text_time = float("-inf")

    def update(self, done: int, total: int, message: str = "") -> None:
        import time

        percent = 100.0 * done / total if total else 100.0
        self._feedback.setProgress(max(0.0, min(100.0, percent)))
        now = time.monotonic()
        finished = total and done >= total
        if message and message != self._last_message and (finished or now - self._last_text_time >= self.TEXT_INTERVAL):
            self._feedback.setProgressText(message)
            self._last_message = message
            self._last_text_time = now

    def cancelled(self) -> bool:
        return bool(self._feedback.isCanceled())


ProgressLike = Any  # a Progress, a callable(done, total, message), or None


def as_progress(progress: ProgressLike) -> Progress:
    """Accept ``None``, a :class:`Progress`, or a bare ``callable(done, total, message)``."""
    if progress is None:
        return NullProgress()
    if isinstance(progress, Progress):
        return progress
    if callable(progress):
        return CallbackProgress(on_update=progress)
    raise TypeError(f"progress must be a Progress object or a callable, not {type(progress).__name__}")


def check_cancelled(progress: Progress, what: str = "operation") -> None:
    """Raise :class:`Cancelled` if the caller asked to stop."""
    if progress.cancelled():
        raise Cancelled(f"{what} cancelled")

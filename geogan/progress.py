"""Progress reporting and cancellation, as a small protocol.

The library never prints: every long step takes a ``progress`` argument and reports
``update(done, total, message)`` to it, and polls ``cancelled()`` between units of work
(a tile batch, a training step, a chip). The CLI plugs in :class:`TqdmProgress`; a QGIS
script plugs in :class:`QgisFeedbackProgress` around its ``QgsProcessingFeedback``.
"""
from __future__ import annotations

import time
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

    * ``setProgress(0..100)`` at the start of each phase (a new ``total``) and whenever the whole
      percent moves — not on every tile, which would flood QGIS's event loop;
    * ``setProgressText(message)``: a phase's first message and its last (``done >= total``)
      always, changed messages in between at most every ``text_interval`` seconds, because in
      the Processing dialog every text is a new log line; a repeated message is never resent;
    * ``isCanceled()`` is the Cancel button.

    ``clock`` (default :func:`time.monotonic`) is what the text throttle reads; tests give it a
    fake clock so what is shown never depends on how fast the machine runs.
    """

    #: Seconds between two progress texts within a phase.
    TEXT_INTERVAL = 2.0

    def __init__(self, feedback: Any, *, text_interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._feedback = feedback
        self._text_interval = self.TEXT_INTERVAL if text_interval is None else float(text_interval)
        self._clock = clock
        self._total: Optional[int] = None
        self._percent: Optional[int] = None  # the whole percent last sent
        self._last_message = ""
        self._last_text_time = float("-inf")
        self._phase_has_text = False

    def update(self, done: int, total: int, message: str = "") -> None:
        new_phase = total != self._total
        if new_phase:
            self._total, self._phase_has_text = total, False
        percent = max(0.0, min(100.0, 100.0 * done / total)) if total else 100.0
        if new_phase or int(percent) != self._percent:
            self._feedback.setProgress(percent)
            self._percent = int(percent)
        self._show(message, finished=done >= total)

    def _show(self, message: str, finished: bool) -> None:
        """Send ``message`` as the progress text if it is new and not throttled."""
        if not message or message == self._last_message:
            return
        now = self._clock()
        if finished or not self._phase_has_text or now - self._last_text_time >= self._text_interval:
            self._feedback.setProgressText(message)
            self._last_message, self._last_text_time, self._phase_has_text = message, now, True

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

"""What the plugin adds to geogan's own QGIS progress adapter, without importing qgis or geogan
(so it is testable anywhere).

Progress, progress texts and the Cancel button are ``geogan.QgisFeedbackProgress``. On top of it:

* ``TrainingProgress`` shows a whole training run on one bar and logs one line per epoch, from
  the trainer's structured ``("epoch", {...})`` events (``geogan.train(..., on_event=...)``);
* ``forward_logging`` routes the ``geogan`` loggers (warnings such as a CRS mismatch) into the
  feedback for the duration of one algorithm run, from that run's thread only, as they happen;
* ``push_result_warnings`` then pushes the warnings of the call's result (``result.warnings``:
  also those logged by geogan's worker threads) that were not shown yet, so each warning of
  the call reaches the feedback once, as a warning.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterable, Iterator, Mapping


class TrainingProgress:
    """One bar for a whole training run, and one log line per finished epoch.

    ``geogan.train`` reports ``update(step, steps_per_epoch, message)`` within each epoch, which
    would sweep QGIS's bar from 0 to 100 once per epoch. This maps it onto the run,
    ``(epochs_done * steps + step) / (epochs * steps)``, where ``epochs_done`` comes from the
    trainer's ``("epoch", {"epoch", "iteration", "losses"})`` events passed to :meth:`on_event`
    (never from the message text). Everything is forwarded to ``progress``, a
    ``geogan.QgisFeedbackProgress``; the epoch lines go to ``feedback.pushInfo``.

    A resumed run does not say at which epoch it resumes before its first epoch ends, so its bar
    starts from ``epochs_done`` (0 unless given) and catches up at that first epoch event.
    """

    def __init__(self, progress: Any, feedback: Any, epochs: int, epochs_done: int = 0) -> None:
        self._progress = progress
        self._feedback = feedback
        self.epochs = max(1, int(epochs))
        self.epochs_done = int(epochs_done)

    def update(self, done: int, total: int, message: str = "") -> None:
        if total <= 0:
            self._progress.update(done, total, message)
            return
        run_total = self.epochs * total
        self._progress.update(min(self.epochs_done * total + done, run_total), run_total, message)

    def cancelled(self) -> bool:
        return bool(self._progress.cancelled())

    def on_event(self, name: str, info: Mapping[str, Any]) -> None:
        """The trainer's event hook: an ``"epoch"`` event moves the bar and writes the epoch's line."""
        if name != "epoch":
            return
        self.epochs_done = int(info["epoch"])
        losses = "  ".join(f"{key} {float(value):.3f}" for key, value in dict(info.get("losses") or {}).items())
        self._feedback.pushInfo(f"epoch {self.epochs_done}/{self.epochs} done at step {int(info['iteration'])}"
                                + (f": {losses}" if losses else ""))


def push_warning(feedback: Any, text: str) -> None:
    """``text`` as a warning in the Processing log: ``pushWarning`` (QGIS >= 3.16), else a
    non-fatal ``reportError``, else ``pushInfo``."""
    push = getattr(feedback, "pushWarning", None)
    if push is not None:
        push(text)
    elif getattr(feedback, "reportError", None) is not None:
        feedback.reportError(text, False)
    else:
        feedback.pushInfo(text)


def push_result_warnings(feedback: Any, result: Any, shown: Iterable[str] = ()) -> None:
    """Push each of ``result.warnings`` (every geogan result has them; an older geogan's result
    or None has none) not among ``shown``, the warnings already pushed as they were logged."""
    seen = set(shown)
    for text in getattr(result, "warnings", None) or ():
        if text not in seen:
            push_warning(feedback, str(text))
            seen.add(text)


class _FeedbackLogHandler(logging.Handler):
    """Sends log records from one thread to a feedback: warnings as warnings, the rest as info.
    ``shown`` keeps the warning texts pushed."""

    def __init__(self, feedback: Any, thread_id: int) -> None:
        super().__init__(level=logging.INFO)
        self._feedback = feedback
        self._thread_id = thread_id
        self.shown: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread_id:
            return  # another algorithm running at the same time
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                push_warning(self._feedback, text)
                self.shown.append(text)
            else:
                self._feedback.pushInfo(text)
        except Exception:  # a log line must never break the algorithm
            self.handleError(record)


@contextlib.contextmanager
def forward_logging(feedback: Any, logger_name: str = "geogan") -> Iterator[list[str]]:
    """Show ``geogan`` log records (INFO and up) in ``feedback`` while the block runs; yields the
    list of warning texts pushed (for :func:`push_result_warnings`).

    The logger's level is lowered to INFO only for the block and restored after, so QGIS's
    own logging configuration is left as it was.
    """
    logger = logging.getLogger(logger_name)
    handler = _FeedbackLogHandler(feedback, threading.get_ident())
    old_level = logger.level
    if old_level == logging.NOTSET or old_level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.shown
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

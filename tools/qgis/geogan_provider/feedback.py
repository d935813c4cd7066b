"""QGIS feedback <-> geogan progress, without importing qgis (so it is testable anywhere).

``FeedbackProgress`` turns geogan's ``update(done, total, message)`` / ``cancelled()`` protocol
into calls on a ``QgsProcessingFeedback``:

* ``setProgress(0..100)`` whenever the whole percent changes (and always at 0 and 100);
* ``setProgressText(message)`` when a phase starts (a new ``total``), which labels the bar;
* ``pushInfo(message)`` when a phase ends and at most every ``info_every_s`` seconds in between,
  because in the Processing dialog every ``setProgressText``/``pushInfo`` adds a log line and
  a per-tile message would flood it;
* ``isCanceled()`` is the Cancel button: geogan polls it between tile batches / training steps
  and raises ``geogan.Cancelled``.

``forward_logging`` routes the ``geogan`` loggers (warnings such as a CRS mismatch) into the
same feedback for the duration of one algorithm run, from that run's thread only.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from typing import Any, Callable, Iterator, Optional


class FeedbackProgress:
    """A geogan progress object that reports to a ``QgsProcessingFeedback`` (duck-typed)."""

    def __init__(self, feedback: Any, *, info_every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._feedback = feedback
        self._info_every_s = info_every_s
        self._clock = clock
        self._total: Optional[int] = None
        self._percent: Optional[int] = None
        self._last_info = clock()
        self._last_message = ""
        self.max_percent = 0.0  # the highest percent reported, for callers that check completion

    def update(self, done: int, total: int, message: str = "") -> None:
        self._report(done, total, message, milestone=False)

    def _report(self, done: int, total: int, message: str, milestone: bool) -> None:
        percent = 100.0 * done / total if total else 100.0
        percent = max(0.0, min(100.0, percent))
        new_phase = total != self._total
        if new_phase:
            self._total = total
            if message:
                self._feedback.setProgressText(message)
                self._last_message = message
                self._last_info = self._clock()
        whole = int(percent)
        if new_phase or whole != self._percent or percent >= 100.0:
            self._feedback.setProgress(percent)
            self._percent = whole
        self.max_percent = max(self.max_percent, percent)
        if not message or message == self._last_message:
            return
        now = self._clock()
        if milestone or (total and done >= total) or now - self._last_info >= self._info_every_s:
            self._feedback.pushInfo(message)
            self._last_message = message
            self._last_info = now

    def cancelled(self) -> bool:
        return bool(self._feedback.isCanceled())


class TrainingProgress(FeedbackProgress):
    """Shows a whole training run on one bar.

    ``geogan.train`` reports ``update(step, steps_per_epoch, "epoch e/E  losses")``, which would
    sweep QGIS's bar from 0 to 100 once per epoch; this maps it onto the run,
    ``((e - 1) * steps + step) / (E * steps)``, and logs each epoch's last message. A message
    without ``epoch e/E`` is passed through unchanged.
    """

    _EPOCH = re.compile(r"\bepoch (\d+)/(\d+)\b")

    def update(self, done: int, total: int, message: str = "") -> None:
        match = self._EPOCH.search(message or "")
        if match and total > 0:
            epoch, epochs = int(match.group(1)), int(match.group(2))
            if 1 <= epoch <= epochs:
                self._report((epoch - 1) * total + done, epochs * total, message, milestone=done >= total)
                return
        self._report(done, total, message, milestone=False)


class _FeedbackLogHandler(logging.Handler):
    """Sends log records from one thread to a feedback: warnings as warnings, the rest as info."""

    def __init__(self, feedback: Any, thread_id: int) -> None:
        super().__init__(level=logging.INFO)
        self._feedback = feedback
        self._thread_id = thread_id
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread_id:
            return  # another algorithm running at the same time
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                push_warning = getattr(self._feedback, "pushWarning", None)  # QGIS >= 3.16
                if push_warning is not None:
                    push_warning(text)
                else:
                    self._feedback.reportError(text, False)
            else:
                self._feedback.pushInfo(text)
        except Exception:  # a log line must never break the algorithm
            self.handleError(record)


@contextlib.contextmanager
def forward_logging(feedback: Any, logger_name: str = "geogan") -> Iterator[None]:
    """Show ``geogan`` log records (INFO and up) in ``feedback`` while the block runs.

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
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

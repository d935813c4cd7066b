"""The warnings of one API call, kept for its result object.

geogan logs its warnings on the ``geogan`` logger, which the CLI prints; a plain Python script
(a QGIS script, a notebook) sees them only if it configures logging. So each public entry
point (:func:`~geogan.chips.export_chips`, :func:`~geogan.trainer.train`,
:func:`~geogan.predict.translate_raster`, :func:`~geogan.predict.translate_rasters`,
:func:`~geogan.evaluate.evaluate_rasters`) also runs inside a :class:`WarningCollector`, and its
result carries ``warnings``: the sentences the CLI prints after ``geogan: warning:``
(``record.getMessage()`` of every WARNING-or-above record), in order, each once. Logging is
unchanged: the records still reach every handler the application has.

Which records belong to a call: those logged by a thread whose *current collector*
(a :mod:`contextvars` variable) is the call's. The calling thread sets it for the duration of
the call; threads geogan starts for the call (the predictor's reader and writer, their read
pool) run their bodies through :func:`carry_collector`, which makes the caller's collector
current there. Records of other threads — a second QGIS algorithm running at the same time,
the application's own threads — never reach this call's result, whatever they log. Python
threads do not inherit context variables (before 3.14), which is why geogan's own thread starts
say so explicitly; a thread a caller starts inside a callback is not the call's.

Nested calls (``translate_raster`` around ``Predictor.translate``, a batch around each scene):
a record goes to the current collector and every collector around it, so the inner result has
its own warnings and the outer one all of them, none twice. A sentence logged twice in one call
(the same words) is kept once.

The collector sees what the ``geogan`` logger lets through: at its default level (NOTSET, i.e.
the root's WARNING) every warning; an application that raises the logger's level above
WARNING (``geogan -q`` does) silences them in results as well as in logs.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import threading
from typing import Any, Callable, Optional, TypeVar

LOGGER = "geogan"

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[Optional["WarningCollector"]] = contextvars.ContextVar(
    "geogan_warning_collector", default=None)


class WarningCollector:
    """Collects the warning sentences of one call: ``with WarningCollector() as notes: ...``;
    then ``notes.warnings`` (see the module docstring for which records count)."""

    def __init__(self) -> None:
        self._sentences: list[str] = []
        self._lock = threading.Lock()  # worker threads add while the caller reads
        self._outer: Optional[WarningCollector] = None
        self._root: WarningCollector = self
        self._token: Optional[contextvars.Token] = None
        self._handler: Optional[_CollectingHandler] = None

    @property
    def warnings(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._sentences)

    def add(self, sentence: str) -> None:
        """Record ``sentence`` here and in every collector around this one (each keeps it once)."""
        with self._lock:
            if sentence not in self._sentences:
                self._sentences.append(sentence)
        if self._outer is not None:
            self._outer.add(sentence)

    def __enter__(self) -> "WarningCollector":
        self._outer = _current.get()
        self._root = self._outer._root if self._outer is not None else self
        self._token = _current.set(self)
        if self._outer is None:  # the outermost call listens; inner ones are reached through it
            self._handler = _CollectingHandler(self)
            logging.getLogger(LOGGER).addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logging.getLogger(LOGGER).removeHandler(self._handler)
            self._handler = None
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


class _CollectingHandler(logging.Handler):
    """Hands each WARNING-or-above record to the logging thread's current collector, when that
    collector belongs to this handler's outermost call (another call's handler skips it)."""

    def __init__(self, root: WarningCollector) -> None:
        super().__init__(level=logging.WARNING)
        self._root = root

    def emit(self, record: logging.LogRecord) -> None:
        collector = _current.get()
        if collector is None or collector._root is not self._root:
            return
        try:
            collector.add(record.getMessage())
        except Exception:  # a warning must never take the call down
            self.handleError(record)


def carry_collector(fn: F) -> F:
    """``fn`` (a thread body) to run with the *calling* thread's collector current, so what it
    logs in another thread belongs to the same call. Call this in the thread that starts the
    worker; with no collector current it returns ``fn`` unchanged."""
    collector = _current.get()
    if collector is None:
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = _current.set(collector)
        try:
            return fn(*args, **kwargs)
        finally:
            _current.reset(token)

    return run  # type: ignore[return-value]


def with_warnings(fn: F) -> F:
    """Decorator for an API entry point that returns a dataclass with a ``warnings`` field: runs
    the call in a :class:`WarningCollector` and returns the result with the call's warnings."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with WarningCollector() as notes:
            result = fn(*args, **kwargs)
        return dataclasses.replace(result, warnings=notes.warnings)

    return call  # type: ignore[return-value]

"""SIGINT and SIGTERM as a polite request to stop, for the command line only.

The library stops cleanly when its progress object's ``cancelled()`` turns True: training writes
a checkpoint, chip export and prediction remove their temporary output. The CLI's progress
objects ask :func:`stop_requested`, so once a step has started polling, the first SIGINT or
SIGTERM becomes such a cancel at the next unit of work (a chip, a batch of tiles, a training
step). Before any polling (opening inputs, a command that never polls), and on a second signal,
KeyboardInterrupt is raised at once; outputs are written through temporary files, so that too
leaves nothing half-written. Exit statuses follow the shell's
convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Optional


class StopSignals:
    """The signals received while a command runs; installed by the CLI group around a command."""

    _active: Optional["StopSignals"] = None

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.polled = False
        self._previous: dict[int, Any] = {}

    @classmethod
    def install(cls) -> "StopSignals":
        stop = cls()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    stop._previous[signum] = signal.signal(signum, stop._handle)
                except (ValueError, OSError):  # not settable here (an embedding application)
                    continue
        cls._active = stop
        return stop

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError, TypeError):
                continue
        self._previous.clear()
        if StopSignals._active is self:
            StopSignals._active = None

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if not first or not self.polled:
            raise KeyboardInterrupt

    @property
    def signal_name(self) -> Optional[str]:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)


def stop_requested() -> bool:
    """True once the running command received SIGINT or SIGTERM (polled by the CLI's progress bars)."""
    stop = StopSignals._active
    if stop is None:
        return False
    stop.polled = True
    return stop.signum is not None

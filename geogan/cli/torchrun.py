"""``python -m geogan.cli.torchrun``: torchrun, with a stop ending the job as it ends one process.

torchrun's agent forwards SIGINT/SIGTERM to the training processes — each finishes the step in
progress, the ranks agree, rank 0 writes the checkpoint once, and each exits 130/143 with its one
``geogan: stopped by ...`` line — and then re-raises the signal as an exception: 30-40 lines of
traceback and exit status 1, which a scheduler reads as a failure. This runs the same agent with
the same options::

    python -m geogan.cli.torchrun --nproc_per_node=N -m geogan train CONFIG.yaml

and ends with 128 + the signal number, without a traceback. When training processes fail, the
job exits with the status of the one that failed first (each printed its own line, the first
naming its reason), without the agent's report table. Stopping and restarting workers stays
torchrun's job; its own warnings are shown at ``LOGLEVEL`` (default here: errors only).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence


def exit_status(exitcode: int) -> int:
    """A process's exit status as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - exitcode if exitcode < 0 else exitcode


def main(argv: Optional[Sequence[str]] = None) -> int:
    level = os.environ.setdefault("LOGLEVEL", "ERROR")  # read when torch's elastic loggers are created
    logging.getLogger("torch.distributed.elastic").setLevel(level)  # and for those that inherit theirs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(list(sys.argv[1:] if argv is None else argv)))
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return exit_status(failure.exitcode) or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The thin command line: parse options, attach a progress bar, call the API, map errors.

Every :class:`~geogan.errors.GeoganError` becomes one line on stderr and a non-zero exit
(1 for bad input), never a traceback. SIGINT (Ctrl-C) and SIGTERM (what schedulers and
``timeout`` send) ask the running step to stop the way a cancel does — training writes a
checkpoint first, outputs are left as they were — and exit 130 and 143; a second signal stops
at once. Library warnings (logged to the ``geogan`` logger) are shown on stderr; ``-v`` adds
information, ``-vv`` debugging and GDAL's own messages.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from ..errors import Cancelled, GeoganError
from .signals import StopSignals


class GeoganGroup(click.Group):
    """A click group that turns geogan's errors and stop signals into one line and an exit status."""

    def invoke(self, ctx: click.Context):
        stop = StopSignals.install()
        try:
            return super().invoke(ctx)
        except (Cancelled, KeyboardInterrupt) as exc:
            what = stop.signal_name or "interrupt"
            detail = f": {exc}" if isinstance(exc, Cancelled) and str(exc) else ""
            if stop.signal_name or isinstance(exc, KeyboardInterrupt):
                click.echo(f"geogan: stopped by {what}{detail}", err=True)
            else:
                click.echo(f"geogan: cancelled{detail}", err=True)
            ctx.exit(stop.exit_code)
        except GeoganError as exc:
            click.echo(f"geogan: error: {exc}", err=True)
            ctx.exit(1)
        finally:
            stop.uninstall()


class _StderrHandler(logging.Handler):
    """Log records as ``geogan: warning: ...`` lines on the *current* stderr, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(f"geogan: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
        except Exception:  # logging must never take the command down
            self.handleError(record)


#: GDAL block cache for the CLI's own process (MB), unless GDAL_CACHEMAX is set.
CLI_GDAL_CACHEMAX_MB = 256


def bounded_gdal_cache():
    """A rasterio environment with GDAL's block cache capped, for the commands that stream rasters.

    GDAL keeps what it read up to 5 % of RAM (1.3 GB peak RSS measured for a 50,000² chip export),
    while chips and the predictor need about one strip or panel of blocks. The CLI owns its
    process, so it caps the cache (unless GDAL_CACHEMAX is set); the library leaves a caller's GDAL
    (QGIS's) alone.
    """
    import os

    import rasterio

    if os.environ.get("GDAL_CACHEMAX"):
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=CLI_GDAL_CACHEMAX_MB)


def configure_logging(verbose: int, quiet: bool) -> None:
    """Show geogan's warnings (and with -v info, -vv debug) on stderr, exactly once per process.

    ``import geogan`` gives its logger a NullHandler (a library must not print inside QGIS), so
    the CLI adds its own handler unconditionally, replacing one it added before.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    for name in ("geogan", "rasterio"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(old)
    geogan_logger = logging.getLogger("geogan")
    geogan_logger.addHandler(_StderrHandler())
    geogan_logger.setLevel(level)
    rasterio_logger = logging.getLogger("rasterio")
    if verbose >= 2:  # GDAL's messages, as rasterio logs them
        rasterio_logger.addHandler(_StderrHandler())
        rasterio_logger.setLevel(logging.DEBUG)
    elif not rasterio_logger.handlers:
        rasterio_logger.addHandler(logging.NullHandler())  # no bare GDAL lines from logging's last resort


def quiet_libtiff() -> None:
    """Stop libtiff printing straight onto this process's stderr (the CLI owns its process).

    GDAL routes libtiff's messages through per-file handlers into its own error system (which
    rasterio logs: shown with -vv), but a few reach libtiff's global handler, which prints them
    raw — on a full disk, "_tiffWriteProc: No space left on device." twice above our one error
    line. The failure itself is still caught (every written GeoTIFF is verified), so the global
    handlers are cleared. Found through /proc/self/maps (Linux); elsewhere nothing changes.
    """
    import ctypes

    try:
        import rasterio  # noqa: F401  (loads GDAL and the libtiff it uses)

        with open("/proc/self/maps") as fh:
            paths = {line.split(maxsplit=5)[-1].strip() for line in fh if "/libtiff" in line}
    except (OSError, ImportError):
        return
    for path in sorted(p for p in paths if os.path.basename(p).startswith("libtiff") and ".so" in p):
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, not a second copy
            for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
                setter = getattr(lib, name)
                setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
                setter(None)
        except (OSError, AttributeError):
            continue


@click.group(cls=GeoganGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geogan", prog_name="geogan")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug and GDAL messages).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Translate georeferenced rasters between sensor domains with GANs."""
    configure_logging(verbose, quiet)
    if verbose < 2:  # -vv shows everything GDAL and libtiff say
        quiet_libtiff()


def _register() -> None:
    from . import chips, predict, train  # noqa: F401  (each module adds its commands to ``cli``)


_register()


def main() -> None:
    """Console entry point."""
    cli(prog_name="geogan")

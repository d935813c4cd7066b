"""The thin command line: parse options, attach a progress bar, call the API, map errors.

Every :class:`~geogan.errors.GeoganError` becomes one line on stderr and a non-zero exit
(1 for bad input, 130 for a cancel), never a traceback.
"""
from __future__ import annotations

import logging
import sys

import click

from ..errors import Cancelled, GeoganError


class GeoganGroup(click.Group):
    """A click group that turns geogan's errors into one line and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Cancelled as exc:
            click.echo(f"geogan: cancelled: {exc}", err=True)
            ctx.exit(130)
        except GeoganError as exc:
            click.echo(f"geogan: error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=GeoganGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geogan", prog_name="geogan")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Translate georeferenced rasters between sensor domains with GANs."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logger = logging.getLogger("geogan")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("geogan: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def _register() -> None:
    from . import chips, predict, train  # noqa: F401  (each module adds its commands to ``cli``)


_register()


def main() -> None:
    """Console entry point."""
    cli(prog_name="geogan")

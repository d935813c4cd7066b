"""CLI command(s) for the chips step (owned by its issue; filled in as the step lands)."""
from __future__ import annotations

from . import cli  # noqa: F401

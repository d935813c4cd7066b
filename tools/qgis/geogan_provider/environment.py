"""Let QGIS find torch and geogan in a virtual environment made from QGIS's own Python.

QGIS embeds its Python, so activating a venv does nothing for it. When the environment
variable ``GEOGAN_VENV`` names such a venv (``python3 -m venv --system-site-packages``),
the plugin puts that venv's site-packages *in front of* ``sys.path`` when it loads, with its
``.pth`` files processed (so an editable ``pip install -e`` works too). In front, because the
venv deliberately holds newer copies of a few packages than QGIS's Python has (pyproj with
its PROJ data; see the README's QGIS section). Set the variable in QGIS under Settings →
Options → System → Environment, or in the shell that starts QGIS / ``qgis_process``.
"""
from __future__ import annotations

import os
import site
import sys
from pathlib import Path
from typing import Optional, Union

ENV_VAR = "GEOGAN_VENV"


def venv_site_packages(venv: Union[str, Path]) -> Optional[Path]:
    """The site-packages folder of ``venv`` for this Python version, if it exists."""
    root = Path(venv).expanduser()
    for candidate in (root / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages",
                      root / "Lib" / "site-packages"):  # POSIX, Windows
        if candidate.is_dir():
            return candidate
    return None


def add_venv(venv: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """Prepend ``venv`` (default: ``$GEOGAN_VENV``) site-packages to ``sys.path``; return it.

    Returns None when no venv is configured; raises ``FileNotFoundError`` when the configured
    one has no site-packages for this Python version (a venv made from another Python).
    """
    venv = venv if venv is not None else os.environ.get(ENV_VAR, "").strip()
    if not venv:
        return None
    site_dir = venv_site_packages(venv)
    if site_dir is None:
        raise FileNotFoundError(
            f"{ENV_VAR}='{venv}' has no lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages: "
            "make the venv with the same Python that QGIS runs")
    if str(site_dir) in sys.path:
        return site_dir
    before = list(sys.path)
    site.addsitedir(str(site_dir))
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before
    return site_dir

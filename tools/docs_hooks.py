"""MkDocs hooks for the documentation site (mkdocs.yml ``hooks:``).

The demo's picture lives where the demo writes it (``sample_data/demo_preview.png``, which the
README shows too); the site serves that very file as ``assets/demo_preview.png`` instead of a
copy in ``docs/`` that could drift from it.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
#: files outside docs/ that the site serves: source path (from the checkout) -> URL path
SERVED = {"sample_data/demo_preview.png": "assets/demo_preview.png"}


def on_files(files, config):
    """Add the files of ``SERVED`` to the site, so pages can link them and --strict checks it."""
    for src, dest in SERVED.items():
        files.append(File.generated(config, dest, abs_src_path=str(ROOT / src)))
    return files


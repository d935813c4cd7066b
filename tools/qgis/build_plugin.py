"""Build the installable QGIS plugin zip: ``dist/geogan_provider-VERSION.zip``.

The zip holds ``geogan_provider/`` (the plugin's Python files), its ``metadata.txt`` completed with
the values that are defined once for the whole project — ``version`` from ``geogan/__init__.py``;
``author``, ``email``, ``homepage``, ``tracker`` and ``repository`` from ``setup.cfg [metadata]``
— and the project's ``LICENSE``. It refuses to build when a value is missing or a placeholder, or
when the plugin's declared geogan range (``glue.GEOGAN_COMPATIBLE``) excludes the version it
ships with. Entries are sorted and time-stamped with ``SOURCE_DATE_EPOCH`` (default 1980-01-01),
so the same sources give the same bytes. Standard library only.
    usage: build_plugin.py [--out-dir DIR]     (prints the zip's path)
"""
from __future__ import annotations

import argparse
import configparser
import os
import re
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "geogan_provider"
SOURCE = ROOT / "tools" / "qgis" / PLUGIN
PLACEHOLDER = re.compile(r"example\.(com|org|net)|localhost|changeme|TODO|@@", re.IGNORECASE)


class BuildError(Exception):
    """A reason not to build, in one line."""


def project_version(root: Path = ROOT) -> str:
    """``__version__`` from ``geogan/__init__.py``, read as text (importing geogan needs its deps)."""
    text = (root / "geogan" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if match is None:
        raise BuildError("geogan/__init__.py: no __version__ = \"...\" line")
    return match.group(1)


def project_contacts(root: Path = ROOT) -> dict[str, str]:
    """The plugin's contact keys, from ``setup.cfg [metadata]`` (where the wheel gets them too)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(root / "setup.cfg", encoding="utf-8")
    meta = cfg["metadata"] if cfg.has_section("metadata") else {}
    urls = {}
    for line in meta.get("project_urls", "").strip().splitlines():
        key, _, value = line.partition("=")
        urls[key.strip().lower()] = value.strip()
    values = {"author": meta.get("author", ""), "email": meta.get("author_email", ""),
              "homepage": meta.get("url", ""), "tracker": urls.get("tracker", ""),
              "repository": urls.get("source", "")}
    for key, value in values.items():
        if not value.strip():
            raise BuildError(f"setup.cfg [metadata]: no value for the plugin's {key!r}")
        if PLACEHOLDER.search(value):
            raise BuildError(f"setup.cfg [metadata]: {key} {value!r} is a placeholder")
    return {k: v.strip() for k, v in values.items()}


def check_compatible(version: str) -> None:
    """The plugin must accept the geogan it is built with."""
    sys.path.insert(0, str(SOURCE.parent))
    try:
        from geogan_provider import glue  # stdlib-only at import
    finally:
        sys.path.pop(0)
    if not glue.is_compatible(version):
        low, high = glue.GEOGAN_COMPATIBLE
        raise BuildError(f"geogan {version} is outside the plugin's GEOGAN_COMPATIBLE range "
                         f"[{low}, {high}) in tools/qgis/{PLUGIN}/glue.py: update the range")


def metadata_text(version: str, contacts: dict[str, str]) -> str:
    """The source ``metadata.txt`` plus the single-sourced keys (which it must not set itself)."""
    template = (SOURCE / "metadata.txt").read_text(encoding="utf-8")
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(template)
    keys = {"version": version, **contacts}
    clash = sorted(k for k in keys if parsed.has_option("general", k))
    if clash:
        raise BuildError(f"tools/qgis/{PLUGIN}/metadata.txt sets {', '.join(clash)}: those come from "
                         "geogan/__init__.py and setup.cfg")
    return template.rstrip("\n") + "\n" + "".join(f"{k}={v}\n" for k, v in keys.items())


def plugin_files() -> list[Path]:
    """The plugin's own files (no caches, no editor or OS debris)."""
    files = [p for p in SOURCE.rglob("*") if p.is_file()
             and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
             and not p.name.startswith(".") and not p.name.endswith("~")]
    return sorted(files)


def build(out_dir: Path) -> Path:
    version = project_version()
    contacts = project_contacts()
    check_compatible(version)
    licence = ROOT / "LICENSE"
    if not licence.is_file():
        raise BuildError("LICENSE: missing at the top of the repository")
    stamp = time.gmtime(max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800))[:6]
    entries = {f"{PLUGIN}/{p.relative_to(SOURCE).as_posix()}": p.read_bytes() for p in plugin_files()}
    entries[f"{PLUGIN}/metadata.txt"] = metadata_text(version, contacts).encode("utf-8")
    entries[f"{PLUGIN}/LICENSE"] = licence.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{PLUGIN}-{version}.zip"
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, entries[name])
        with zipfile.ZipFile(tmp) as zf:  # read back before it takes the final name
            if zf.testzip() is not None:
                raise BuildError(f"{tmp}: the written zip does not read back")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default: dist/)")
    args = parser.parse_args(argv)
    try:
        print(build(args.out_dir))
    except BuildError as exc:
        print(f"build_plugin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

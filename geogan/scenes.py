"""What the user names as input: scenes made of one or several files, lists, globs, GDAL paths.

A *scene* is one raster as geogan sees it. It is usually one file, but products often come
as one file per band (Sentinel-1 ``VV.tif`` + ``VH.tif``, Sentinel-2 ``B04.tif`` ...), so a
scene may be several files whose bands are stacked in order (see
:func:`geogan.raster.open_raster`). Wherever a raster is read, the same syntax works:

``VV.tif,VH.tif``
    one scene of two files (comma-joined). A path that exists as a whole is never split,
    so a file whose name holds a comma still works.
``@scenes.txt``
    a list file: one scene per line (a line may be comma-joined); blank lines and ``#``
    comments are skipped; relative paths are relative to the list file's folder.
``'s1/*.tif'``
    a shell-style glob (``**`` recurses), one scene per match, sorted.
``DIR/``
    every raster in a folder (``.tif``, ``.tiff``, ``.vrt``, ``.jp2``, ``.img``), one scene each.
``/vsizip/a.zip/b.tif``, ``/vsicurl/https://…``, ``/vsis3/…``, ``SENTINEL2_L2A:…``
    any path GDAL opens is passed to it unchanged; only GDAL decides whether it exists.
``items.json``, ``https://…/item.json``
    a STAC Item, ItemCollection (a saved search), Catalog or Collection: one scene per Item,
    made of the hrefs of the chosen assets in order (``assets``; see :mod:`geogan.stac`).
    A list file's line may be one too (relative to the list's folder), with the same ``assets``.

This module only parses names and looks at the file system; it never opens a raster.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from .errors import ConfigError, InputError, InputNotFoundError, describe

PathLike = Union[str, "os.PathLike[str]"]
SceneLike = Union["Scene", PathLike, Sequence[PathLike]]

#: File extensions taken from a folder given as input.
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".jp2", ".img")

_GLOB_CHARS = re.compile(r"[*?\[]")
#: GDAL connection strings: "DRIVER:rest" (two or more letters, so "C:\\" stays a Windows path).
_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")


def is_gdal_path(text: str) -> bool:
    """True for names that only GDAL can resolve: ``/vsi…/`` paths, URLs and ``DRIVER:`` strings."""
    return (text.startswith("/vsi") or "://" in text or text.lstrip().startswith("<VRTDataset")
            or bool(_DRIVER_PREFIX.match(text)))


@dataclass(frozen=True)
class ItemRef:
    """The STAC Item a scene was read from: what an output's own Item records about its source."""

    id: str
    #: Where the source Item is: its absolute ``self`` link, else the JSON file or URL it was read
    #: from (an ItemCollection's file for its items), for the output Item's ``derived_from`` link.
    href: str
    #: The asset keys whose files are the scene's parts, in order.
    assets: tuple[str, ...]
    #: ISO 8601 times as the Item gives them (``datetime`` may be None when a range is given).
    datetime: Optional[str] = None
    start_datetime: Optional[str] = None
    end_datetime: Optional[str] = None
    #: The source Item's collection id, if any.
    collection: Optional[str] = None


@dataclass(frozen=True)
class Scene:
    """One input raster made of one or more files, stacked band after band in the given order."""

    parts: tuple[str, ...]
    #: The CRS to read the files in when they have none (``--assume-crs``; see
    #: :func:`geogan.raster.open_raster`), as EPSG:n or WKT; None: the files' own.
    assume_crs: Optional[str] = None
    #: The STAC Item the scene came from (None: named by file paths).
    item: Optional[ItemRef] = None

    def __post_init__(self) -> None:
        if not self.parts:
            raise ConfigError("a scene needs at least one raster file")

    @property
    def label(self) -> str:
        """How messages name the scene: the comma-joined paths as the user gave them."""
        return ",".join(self.parts)

    @property
    def name(self) -> str:
        """A short name for outputs: a STAC Item's id (made safe for a file name), else the first
        file's stem, or the common prefix of all stems (``S1A_..._VV`` + ``S1A_..._VH`` → ``S1A_...``)."""
        if self.item is not None:
            return safe_name(self.item.id)
        stems = [_stem(p) for p in self.parts]
        if len(stems) == 1:
            return stems[0]
        prefix = os.path.commonprefix(stems)
        if any(len(s) > len(prefix) and s[len(prefix)].isalnum() for s in stems) and prefix[-1:].isalnum():
            prefix = re.sub(r"[^_\-. ]*$", "", prefix)  # back to a word boundary: S1_V(V|H) → S1
        return prefix.rstrip("_-. ") or stems[0]

    @property
    def is_multi(self) -> bool:
        return len(self.parts) > 1

    def __str__(self) -> str:
        return self.label

    def __fspath__(self) -> str:
        if self.is_multi:
            raise TypeError(f"scene {self.label} is made of several files; open it with geogan.raster.open_raster")
        return self.parts[0]


def safe_name(text: str) -> str:
    """``text`` as a portable file name: characters other than letters, digits, ``._-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text.strip()).strip(".")
    return name or "item"


def _stem(part: str) -> str:
    base = part.rstrip("/").replace("\\", "/").split("/")[-1]
    base = base.split(":")[-1] if _DRIVER_PREFIX.match(part) else base
    for ext in RASTER_EXTENSIONS + (".zip",):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return Path(base).stem or base


def as_scene(value: SceneLike) -> Scene:
    """One scene from a Scene, a path, a comma-joined string, or a sequence of paths."""
    if isinstance(value, Scene):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if not isinstance(text, str):
            text = os.fsdecode(text)
        return Scene(tuple(_split_parts(text)))
    parts = [os.fspath(p) for p in value]
    if not parts:
        raise ConfigError("an empty list of files is not a scene")
    return Scene(tuple(parts))


def _split_parts(text: str) -> list[str]:
    text = text.strip()
    if not text:
        raise ConfigError("an empty path is not a raster")
    if "," not in text or is_gdal_path(text) and not _looks_joined(text) or os.path.exists(text):
        return [text]
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        raise ConfigError(f"{describe(text)}: empty file name in a comma-joined scene")
    return parts


def _looks_joined(text: str) -> bool:
    """A GDAL path followed by more paths (``/vsizip/a.zip/VV.tif,/vsizip/a.zip/VH.tif``)."""
    return all(p.strip() and (is_gdal_path(p.strip()) or os.path.sep in p or "." in p) for p in text.split(","))


def expand_scenes(specs: Union[SceneLike, Iterable[SceneLike]], *, what: str = "input",
                  check_exists: bool = True, assets: Union[None, str, Sequence[str]] = None) -> list[Scene]:
    """All scenes named by ``specs``: each a path, a comma-joined scene, ``@list``, a glob, a folder
    or a STAC JSON (an Item, ItemCollection, Catalog or Collection; also a pystac object).

    ``assets`` (``"VV,VH"`` or a list) are the asset keys whose files become a STAC Item's bands,
    in order; a STAC input without them, or asset keys without a STAC input, is refused.
    Raises a one-line :class:`InputError` naming the spec (and the list file's line) when a
    file is missing, a glob matches nothing, or a list is empty. GDAL paths are not checked.
    """
    from . import stac

    if isinstance(specs, (str, os.PathLike, Scene)) or stac.is_stac_object(specs):
        specs = [specs]
    specs = list(specs)
    scenes: list[Scene] = []
    for spec in specs:
        if isinstance(spec, Scene):
            scenes.append(spec)
        elif stac.is_stac_spec(spec):
            scenes.extend(_stac_scenes(spec, assets, what, check_exists))
        elif isinstance(spec, (str, os.PathLike)):
            scenes.extend(_expand_text(os.fspath(spec) if isinstance(os.fspath(spec), str)
                                       else os.fsdecode(os.fspath(spec)), what, check_exists, assets))
        else:
            scene = as_scene(spec)
            if check_exists:
                for part in scene.parts:
                    _check_part(part, describe(scene.label))
            scenes.append(scene)
    if not scenes:
        raise InputError(f"{what}: no raster given")
    if assets is not None and not any(s.item is not None for s in scenes):
        raise ConfigError(f"{what}: asset keys ({stac.keys_text(assets)}) were given but no input is a STAC "
                          "Item, ItemCollection or Catalog (.json); pick bands of raster files with --bands")
    return scenes


def _stac_scenes(spec: object, assets: Union[None, str, Sequence[str]], what: str, check_exists: bool) -> list[Scene]:
    """The scenes of every Item of a STAC input (or of each JSON its glob matches)."""
    from . import stac

    return [scene for one in _stac_files(spec, what)
            for scene in stac.read_scenes(one, assets, what=what, check_exists=check_exists)]


def _stac_files(spec: object, what: str) -> list:
    """A STAC input, or each JSON a local glob (``'items/*.json'``) matches, sorted."""
    if not isinstance(spec, (str, os.PathLike)):
        return [spec]
    text = os.fspath(spec)
    if "://" in text or os.path.exists(text) or not _GLOB_CHARS.search(text):
        return [spec]
    matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m))
    if not matches:
        raise InputNotFoundError(f"{describe(text)}: no file matches this pattern ({what})")
    return matches


def _expand_text(text: str, what: str, check_exists: bool,
                 assets: Union[None, str, Sequence[str]] = None) -> list[Scene]:
    text = text.strip()
    if text.startswith("@") and not os.path.exists(text):
        return _read_list(Path(text[1:]), what, check_exists, assets)
    if not is_gdal_path(text) and not os.path.exists(text):
        if "," not in text and _GLOB_CHARS.search(text):
            matches = sorted(m for m in glob.glob(text, recursive=True) if os.path.isfile(m))
            if not matches:
                raise InputNotFoundError(f"{describe(text)}: no file matches this pattern ({what})")
            return [Scene((m,)) for m in matches]
    if os.path.isdir(text) and not is_gdal_path(text):
        return _folder(Path(text), what)
    scene = as_scene(text)
    if check_exists:
        for part in scene.parts:
            _check_part(part, describe(scene.label) if scene.is_multi else None)
    return [scene]


def _check_part(part: str, scene_label: Union[str, None]) -> None:
    if is_gdal_path(part) or os.path.exists(part):
        return
    where = f" (in scene {scene_label})" if scene_label else ""
    raise InputNotFoundError(f"{describe(part)}: no such file{where}")


def _folder(folder: Path, what: str) -> list[Scene]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_EXTENSIONS
                   and not p.name.startswith("."))
    if not files:
        raise InputNotFoundError(f"{describe(folder)}: folder holds no raster ({', '.join(RASTER_EXTENSIONS)}) ({what})")
    return [Scene((str(p),)) for p in files]


def _read_list(path: Path, what: str, check_exists: bool,
               assets: Union[None, str, Sequence[str]] = None) -> list[Scene]:
    if not path.is_file():
        raise InputNotFoundError(f"{describe(path)}: no such list file ({what})")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{describe(path)}: unreadable list file ({type(exc).__name__})") from None
    base = path.parent
    scenes: list[Scene] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _is_stac_line(line, base):  # a STAC JSON (file, glob or URL): its Items, as on the command line
            scenes.extend(_stac_line(line, base, f"{describe(path)} line {number}", what, check_exists, assets))
            continue
        parts = []
        for part in _split_parts(line):
            resolved = part if is_gdal_path(part) or os.path.isabs(part) else str(base / part)
            if not is_gdal_path(part) and not os.path.exists(resolved) and os.path.exists(part):
                resolved = part  # relative to the current folder, where the list was written
            if check_exists and not is_gdal_path(resolved) and not os.path.exists(resolved):
                raise InputNotFoundError(f"{describe(path)} line {number}: {describe(part)}: no such file")
            parts.append(resolved)
        scenes.append(Scene(tuple(parts)))
    if not scenes:
        raise InputError(f"{describe(path)}: list file names no raster ({what})")
    return scenes


def names_stac(spec: object) -> bool:
    """True when ``spec`` is a STAC input or a ``@list`` file with a STAC line (whose asset keys a
    caller may have to supply, e.g. the model's trained ones)."""
    from .stac import is_stac_spec

    if is_stac_spec(spec):
        return True
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text.strip().startswith("@") or os.path.exists(text.strip()):
        return False
    path = Path(text.strip()[1:])
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return False  # expand_scenes says why, in one line
    return any(_is_stac_line(ln.strip(), path.parent) for ln in lines if ln.strip() and not ln.strip().startswith("#"))


def _is_stac_line(line: str, base: Path) -> bool:
    from .stac import is_stac_spec

    return is_stac_spec(line) or (not is_gdal_path(line) and is_stac_spec(str(base / line)))


def _stac_line(line: str, base: Path, where: str, what: str, check_exists: bool,
               assets: Union[None, str, Sequence[str]]) -> list[Scene]:
    """The scenes of a list file's STAC line: a path relative to the list's folder (else to the current
    folder, as for raster lines), a glob or a URL."""
    spec = line
    if not is_gdal_path(line) and not os.path.isabs(line):
        spec = str(base / line)
        if not _exists_or_matches(spec) and _exists_or_matches(line):
            spec = line
    if not is_gdal_path(spec) and not _exists_or_matches(spec):
        raise InputNotFoundError(f"{where}: {describe(line)}: no such file")
    return _stac_scenes(spec, assets, what, check_exists)


def _exists_or_matches(path: str) -> bool:
    return os.path.exists(path) or bool(_GLOB_CHARS.search(path) and glob.glob(path, recursive=True))

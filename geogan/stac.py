"""STAC in, STAC out: Items as scenes, and a STAC Item beside every prediction.

**In.** A STAC Item, an ItemCollection (a saved STAC API search), or a static Catalog or
Collection JSON — a local file or an http(s) URL — names scenes: each Item is one scene whose
files are the hrefs of the chosen assets, in order (``--assets-a VV,VH``, ``--assets B04,B03,B02``),
stacked as a comma-joined scene is (:func:`geogan.raster.open_raster`: different resolutions
onto the finest grid). An asset href is resolved against the Item's absolute ``self`` link, else
against the JSON it was read from; ``file://`` becomes a path, ``http(s)://`` ``/vsicurl/``,
``s3://`` ``/vsis3/``, ``gs://`` ``/vsigs/``, so GDAL reads every one of them. The scene's name
(its output's file name) is the Item's id. A missing asset key, a malformed Item or an
unreadable JSON is one line naming the file and what is wrong.

**Out.** :func:`write_item` writes ``NAME.json`` beside a prediction ``NAME.tif``: its footprint
and bbox in EPSG:4326, the projection extension (``proj:code``, ``proj:shape``,
``proj:transform``, ``proj:bbox``), the source Item's datetime and a ``derived_from`` link to it,
the model (file, SHA-256, digest) and geogan's version (processing extension), and a ``data``
asset pointing at the GeoTIFF. Everything but the source Item comes from the output file itself
(its grid and its :mod:`geogan.provenance` tags), so an Item can be written for any output,
also one a resumed batch kept. :func:`write_collection` writes ``collection.json`` over every
Item in a folder. Both are written atomically (temporary file, then rename). ``pystac`` builds
them and reads every STAC form.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

from .errors import ConfigError, InputError, InputNotFoundError, OutputError, describe
from .scenes import ItemRef, Scene, is_gdal_path, safe_name

log = logging.getLogger(__name__)

#: What a STAC input may be named by: a JSON file or URL, a dict, or a pystac object.
STAC_SUFFIXES = (".json", ".geojson")
STAC_TYPES = ("Feature", "FeatureCollection", "Catalog", "Collection")
COLLECTION_NAME = "collection.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
GEOTIFF = "image/tiff; application=geotiff"
COG = GEOTIFF + "; profile=cloud-optimized"
GEOJSON = "application/geo+json"
#: Points per footprint edge before it is projected to EPSG:4326 (a UTM square's edges curve).
EDGE_POINTS = 21

_URL_TO_VSI = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}


# =========================================================================================== in

def is_stac_object(value: Any) -> bool:
    """A pystac object, or a dict that is a STAC Item, ItemCollection, Catalog or Collection."""
    if isinstance(value, dict):
        return value.get("type") in STAC_TYPES
    return type(value).__module__.split(".")[0] == "pystac" and hasattr(value, "to_dict")


def is_stac_spec(spec: Any) -> bool:
    """True for what names a STAC input: a ``.json``/``.geojson`` path or URL, a dict, a pystac object."""
    if is_stac_object(spec):
        return True
    if not isinstance(spec, (str, os.PathLike)):
        return False
    text = os.fspath(spec)
    if not isinstance(text, str) or "," in text and not os.path.exists(text):
        return False
    path = urlparse(text).path if "://" in text else text
    return path.lower().endswith(STAC_SUFFIXES) and not os.path.isdir(text)


def parse_keys(assets: Union[None, str, Sequence[str]]) -> Optional[tuple[str, ...]]:
    """Asset keys from ``"VV,VH"`` or a list; None stays None."""
    if assets is None:
        return None
    items = assets.split(",") if isinstance(assets, str) else list(assets)
    keys = tuple(str(k).strip() for k in items)
    if not keys or any(not k for k in keys):
        raise ConfigError(f"asset keys {keys_text(assets)!r}: give one or more keys, comma-separated (VV,VH)")
    return keys


def keys_text(assets: Union[str, Sequence[str]]) -> str:
    return assets if isinstance(assets, str) else ",".join(map(str, assets))


def read_scenes(spec: Any, assets: Union[None, str, Sequence[str]], *, what: str = "input",
                check_exists: bool = True) -> list[Scene]:
    """One scene per Item of the STAC JSON ``spec``, made of the ``assets``' files in order.

    Raises a one-line :class:`InputError` for an unreadable JSON, a malformed Item or a missing
    asset key (naming the Item and the keys it has), and a :class:`ConfigError` when no asset
    keys are given (naming the keys the first Item has).
    """
    keys = parse_keys(assets)
    source, items = load_items(spec)
    if not items:
        raise InputError(f"{describe(source)}: holds no STAC Item ({what})")
    if keys is None:
        raise ConfigError(f"{describe(source)}: a STAC input needs the asset keys to use as bands, in order "
                          f"(--assets KEY,KEY; chips: --assets-a / --assets-b); its first item has: "
                          f"{', '.join(sorted(items[0].data['assets']))}")
    return [item_scene(item, keys, check_exists) for item in items]


@dataclass(frozen=True)
class _Item:
    """One checked Item: its JSON, where relative hrefs start, and how messages name it."""

    data: dict
    base: str        # absolute path or URL of the JSON its relative hrefs are relative to
    href: str        # what a derived_from link points at
    where: str       # "'file.json' item 3 ('id')"


def load_items(spec: Any) -> tuple[str, list[_Item]]:
    """(how the input is named, its checked Items) for a STAC JSON file, URL, dict or pystac object."""
    if is_stac_object(spec):
        data = spec if isinstance(spec, dict) else spec.to_dict(transform_hrefs=False)
        href = None if isinstance(spec, dict) else _self_href(spec)
        source = href or f"STAC {data.get('type', 'object')} {data.get('id', '')}".strip()
        location = href or os.path.join(os.getcwd(), "stac.json")  # relative hrefs: from the current folder
        if hasattr(spec, "get_items"):  # a pystac Catalog or Collection in memory: its items as they are
            return source, _catalog_items(spec, location, source)
        return source, _items_of(data, location, source)
    text = os.fspath(spec)
    location = text if "://" in text else os.path.abspath(text)
    return text, _items_of(_read_json(text, location), location, text)


def _self_href(obj: Any) -> Optional[str]:
    try:
        return obj.get_self_href()
    except Exception:  # an ItemCollection has none
        return None


def _read_json(text: str, location: str) -> Any:
    """The parsed JSON of a local file or an http(s) URL, or one line saying why not."""
    scheme = urlparse(text).scheme if "://" in text else ""
    try:
        if scheme in ("http", "https"):
            from pystac.stac_io import StacIO

            raw = StacIO.default().read_text(text)
        elif scheme in ("", "file"):
            path = url2pathname(urlparse(text).path) if scheme == "file" else location
            if not os.path.exists(path):
                raise InputNotFoundError(f"{describe(text)}: no such file")
            raw = Path(path).read_text(encoding="utf-8-sig")
        else:
            raise InputError(f"{describe(text)}: STAC JSON can be read from a file or an http(s) URL, not {scheme}://")
        return json.loads(raw)
    except InputError:
        raise
    except json.JSONDecodeError as exc:
        raise InputError(f"{describe(text)}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except Exception as exc:  # OSError, UnicodeDecodeError, urllib's HTTPError: unreadable all the same
        raise InputError(f"{describe(text)}: cannot read the STAC JSON ({_first_line(exc)})") from None


def _items_of(data: Any, location: str, source: str) -> list[_Item]:
    """The Items of an Item, an ItemCollection, or (through pystac) a Catalog or Collection."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "Feature":
        return [_check_item(data, location, describe(source))]
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InputError(f"{describe(source)}: ItemCollection has no 'features' list")
        return [_check_item(f, location, f"{describe(source)} item {i}") for i, f in enumerate(features, start=1)]
    if kind in ("Catalog", "Collection"):
        import pystac

        try:
            catalog = pystac.read_dict(data, href=location)
        except Exception as exc:
            raise InputError(f"{describe(source)}: not a valid STAC {kind} ({_first_line(exc)})") from None
        return _catalog_items(catalog, location, source)
    found = f"type {kind!r}" if kind else ("no 'type'" if isinstance(data, dict) else f"a JSON {type(data).__name__}")
    raise InputError(f"{describe(source)}: not a STAC Item, ItemCollection, Catalog or Collection ({found})")


def _catalog_items(catalog: Any, location: str, source: str) -> list[_Item]:
    """Every Item under a static Catalog or Collection, children included (pystac follows the links)."""
    items = []
    try:
        for item in catalog.get_items(recursive=True):
            href = item.get_self_href() or location
            items.append((item.to_dict(include_self_link=False, transform_hrefs=False), href))
    except InputError:
        raise
    except Exception as exc:  # a missing child file, a malformed child: pystac's errors, in one line
        raise InputError(f"{describe(source)}: cannot read the STAC {type(catalog).__name__} "
                         f"({_first_line(exc)})") from None
    return [_check_item(d, href, f"{describe(source)} item {d.get('id', i)!r} ({href})")
            for i, (d, href) in enumerate(items, start=1)]


def _check_item(d: Any, location: str, where: str) -> _Item:
    """A dict that is a usable STAC Item, or one line saying what is wrong with it."""
    if not isinstance(d, dict) or d.get("type") != "Feature":
        found = f"type {d.get('type')!r}" if isinstance(d, dict) else f"a JSON {type(d).__name__}"
        raise InputError(f"{where}: not a STAC Item ({found}, expected type 'Feature')")
    if not isinstance(d.get("id"), str) or not d["id"].strip():
        raise InputError(f"{where}: STAC Item has no 'id'")
    where = where if repr(d["id"]) in where else f"{where} ({d['id']!r})"
    assets = d.get("assets")
    if not isinstance(assets, dict) or not assets:
        raise InputError(f"{where}: STAC Item has no 'assets'")
    for key, asset in assets.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str) or not asset["href"].strip():
            raise InputError(f"{where}: asset {key!r} has no 'href'")
    props = d.get("properties")
    if not isinstance(props, dict):
        raise InputError(f"{where}: STAC Item has no 'properties'")
    _check_times(props, where)
    self_link = _link(d, "self")
    base = location
    if self_link and ("://" in self_link or os.path.isabs(self_link)):
        base = self_link
    return _Item(d, base, base if self_link else location, where)


def _check_times(props: dict, where: str) -> None:
    from pystac.utils import str_to_datetime

    names = ("datetime",) if props.get("datetime") is not None else ("start_datetime", "end_datetime")
    for name in names:
        value = props.get(name)
        if value is None:
            raise InputError(f"{where}: STAC Item has no datetime in its properties (nor start_datetime and "
                             "end_datetime)")
        if not isinstance(value, str):
            raise InputError(f"{where}: {name} {value!r} is not a date-time string")
        try:
            str_to_datetime(value)
        except Exception:
            raise InputError(f"{where}: {name} {value!r} is not an ISO 8601 date-time") from None


def _link(d: dict, rel: str) -> Optional[str]:
    for link in d.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and isinstance(link.get("href"), str):
            return link["href"]
    return None


def item_scene(item: _Item, keys: Sequence[str], check_exists: bool = True) -> Scene:
    """The scene of one Item: its ``keys``' files in order, resolved for GDAL."""
    d = item.data
    missing = [k for k in keys if k not in d["assets"]]
    if missing:
        raise InputError(f"{item.where}: has no asset {', '.join(map(repr, missing))} (it has: "
                         f"{', '.join(sorted(d['assets']))})")
    parts = []
    for key in keys:
        part = gdal_path(d["assets"][key]["href"].strip(), item.base)
        if check_exists and not is_gdal_path(part) and not os.path.exists(part):
            raise InputNotFoundError(f"{item.where}: asset {key!r}: no such file {describe(part)}")
        parts.append(part)
    props = d["properties"]
    ref = ItemRef(id=d["id"], href=item.href, assets=tuple(keys), datetime=props.get("datetime"),
                  start_datetime=props.get("start_datetime"), end_datetime=props.get("end_datetime"),
                  collection=d.get("collection") if isinstance(d.get("collection"), str) else None)
    return Scene(tuple(parts), item=ref)


def gdal_path(href: str, base: str) -> str:
    """An asset href as GDAL opens it: relative ones resolved against ``base`` (a JSON's path or
    URL), ``file://`` as a path, ``http(s)://`` as ``/vsicurl/``, ``s3://`` ``/vsis3/``, ``gs://`` ``/vsigs/``."""
    if href.startswith("/vsi"):
        return href
    scheme = urlparse(href).scheme.lower() if "://" in href else ""
    if scheme == "file":
        return url2pathname(urlparse(href).path)
    if scheme in _URL_TO_VSI:
        return _URL_TO_VSI[scheme] + (href if scheme.startswith("http") else href.split("://", 1)[1])
    if scheme or os.path.isabs(href) or is_gdal_path(href):
        return href  # another scheme or a GDAL connection string: GDAL decides
    if "://" in base:
        return gdal_path(urljoin(base, href), base)
    if base.startswith("/vsi"):
        return base.rsplit("/", 1)[0] + "/" + href
    return os.path.normpath(os.path.join(os.path.dirname(base), url2pathname(href)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# ------------------------------------------------------------------------ asset keys and models

def asset_keys(scenes: Iterable[Scene]) -> Optional[list[str]]:
    """The asset keys every scene was read with, when all came from STAC with the same keys; else None
    (what the chips metadata records per domain, and training carries into the model file)."""
    keys = {s.item.assets if s.item is not None else None for s in scenes}
    if len(keys) != 1 or None in keys:
        return None
    return list(keys.pop())


def trained_assets(model: Any, direction: str) -> Optional[tuple[str, ...]]:
    """The asset keys the model's input domain was trained with (its training summary), or None."""
    from .modelfile import DIRECTIONS

    record = (getattr(model, "training", None) or {}).get("assets")
    source = DIRECTIONS.get(direction, ("a", "b"))[0]
    keys = record.get(source) if isinstance(record, dict) else None
    if isinstance(keys, (list, tuple)) and keys and all(isinstance(k, str) and k for k in keys):
        return tuple(keys)
    return None


def expand_for_model(specs: Any, model_or_path: Any, direction: str,
                     assets: Union[None, str, Sequence[str]] = None, what: str = "input") -> list[Scene]:
    """The scenes of ``specs`` for prediction: STAC inputs take ``assets``, by default the asset keys
    the model was trained with (the model file is read only when a STAC input needs them)."""
    from .scenes import expand_scenes, names_stac

    listed = [specs] if isinstance(specs, (str, os.PathLike, Scene)) or is_stac_object(specs) else list(specs)
    if any(names_stac(s) for s in listed):
        trained = trained_assets(_training_of(model_or_path), direction)
        if assets is None:
            assets = trained
        elif trained and parse_keys(assets) != trained:
            log.warning("asset keys %s differ from the %s the model was trained with; each asset is fed to the "
                        "model as the band in its place", keys_text(parse_keys(assets)), ",".join(trained))
    return expand_scenes(listed, what=what, assets=assets)


def default_cog(cog: Optional[bool], scenes: Iterable[Scene]) -> bool:
    """``cog`` as asked; when not asked (None), Cloud Optimized GeoTIFFs for scenes from STAC, so the
    output catalogue's hrefs are range-readable as its inputs' were."""
    if cog is not None:
        return bool(cog)
    return any(getattr(s, "item", None) is not None for s in scenes)


# ========================================================================================== out

@dataclass(frozen=True)
class OutputInfo:
    """What an output GeoTIFF says of itself: grid, pixels' type, layout and provenance tags."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    nodata: Optional[float]
    crs: Any
    transform: Any
    cog: bool
    tags: dict
    descriptions: tuple
    modified: _dt.datetime


def read_output(path: Union[str, os.PathLike]) -> OutputInfo:
    """The header and tags of a written prediction (through :func:`geogan.raster.open_raster`)."""
    from . import raster
    from .provenance import provenance_from_tags

    p = Path(path)
    with raster.open_raster(p, require_georeference=False) as ds:
        georef = raster.is_georeferenced(ds)
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "")
        info = OutputInfo(path=p, width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0],
                          nodata=ds.nodata, crs=ds.crs if georef else None, transform=ds.transform,
                          cog=layout.upper() == "COG", tags=provenance_from_tags(ds.tags()),
                          descriptions=tuple(ds.descriptions), modified=_mtime(p))
    return info


def _mtime(p: Path) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(p.stat().st_mtime, tz=_dt.timezone.utc).replace(microsecond=0)


def item_path(output: Union[str, os.PathLike]) -> Path:
    """Where an output's Item goes: ``NAME.json`` beside ``NAME.tif``."""
    return Path(output).with_suffix(".json")


def write_item(output: Union[str, os.PathLike], scene: Optional[Scene] = None, *,
               in_collection: bool = False, model: Any = None) -> Path:
    """Write the STAC Item of the prediction ``output`` beside it (``NAME.json``); returns its path.

    ``scene`` is what the output was translated from (its Item's datetime and ``derived_from``
    link when it came from STAC); ``in_collection`` links the Item to ``collection.json`` in the
    same folder (a batch's outputs); ``model`` (the :class:`~geogan.modelfile.TranslationModel`
    that made it) names the output's bands by the target domain's training asset keys, when it
    has them. Rewritten only when its content changes.
    """
    info = read_output(output)
    dst = item_path(info.path)
    if not _ours(dst):
        raise OutputError(f"{describe(dst)}: exists and is not a STAC item geogan wrote, so the STAC item of "
                          f"{describe(info.path.name)} cannot be written there; move it away")
    names = None
    if model is not None:  # the output's bands are the target domain's: the other direction's source
        names = trained_assets(_training_of(model),
                               "b2a" if info.tags.get("GEOGAN_DIRECTION", "a2b") == "a2b" else "a2b")
    item = build_item(info, scene.item if scene is not None else None,
                      collection_id(info.path.parent) if in_collection else None, names)
    _write_json(dst, item, "STAC item")
    return dst


def catalogue_output(output: Union[str, os.PathLike], scene: Any,
                     model: Any = None) -> Optional[tuple[Path, Optional[Path]]]:
    """For one output translated from a STAC Item: its Item beside it (:func:`write_item`), listed in
    its folder's ``collection.json`` (:func:`write_collection`); returns (item, collection) paths.
    None, and nothing written, for a scene not from STAC (a plain single prediction stays one file)."""
    if getattr(scene, "item", None) is None:
        return None
    item = write_item(output, scene, in_collection=True, model=model)
    return item, write_collection(Path(output).parent)


def _training_of(model: Any) -> Any:
    """A model, or an object holding the training summary of a model file (read safely, checksums
    verified, without building its networks: the Predictor loads it once more for the pixels)."""
    if hasattr(model, "training"):
        return model
    from types import SimpleNamespace

    from .modelfile import read_payload

    return SimpleNamespace(training=read_payload(model).get("training") or {})


def _ours(path: Path) -> bool:
    """True when ``path`` is absent or a STAC JSON geogan wrote (its processing:software names geogan)."""
    if not path.exists():
        return True
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    software = (d.get("properties") or d).get("processing:software") if isinstance(d, dict) else None
    return isinstance(software, dict) and "geogan" in software


def build_item(info: OutputInfo, source: Optional[ItemRef], collection: Optional[str] = None,
               band_names: Optional[Sequence[str]] = None) -> dict:
    """The STAC Item (a dict) of one output (pure: no I/O); ``band_names``: the output bands' names
    (default: the GeoTIFF's band descriptions)."""
    import pystac

    from pystac.utils import str_to_datetime

    geometry, bbox = footprint(info)
    times = _times(info, source)
    when = times.pop("datetime")
    props = {**times, **_projection(info), **_processing(info, source)}
    item = pystac.Item(id=safe_name(source.id) if source else info.path.stem, geometry=geometry, bbox=bbox,
                       datetime=str_to_datetime(when) if when else None, properties=props, collection=collection,
                       stac_extensions=[PROJECTION_SCHEMA, PROCESSING_SCHEMA])
    item.add_asset("data", pystac.Asset(href=f"./{info.path.name}", media_type=COG if info.cog else GEOTIFF,
                                        roles=["data"], title="geogan prediction",
                                        extra_fields={"bands": _bands(info, band_names)}))
    if source is not None:
        item.add_link(pystac.Link("derived_from", source.href, media_type="application/json",
                                  title=f"source item {source.id}"))
    if collection is not None:
        for rel in ("collection", "parent", "root"):
            item.add_link(pystac.Link(rel, f"./{COLLECTION_NAME}", media_type="application/json"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def footprint(info: OutputInfo) -> tuple[Optional[dict], Optional[list[float]]]:
    """The output's outline (densified edges) and bbox in EPSG:4326; (None, None) when it has no CRS."""
    if info.crs is None:
        return None, None
    from rasterio.warp import transform_geom

    t, w, h = info.transform, info.width, info.height
    n = EDGE_POINTS - 1
    pixels = ([(w * i / n, 0) for i in range(n)] + [(w, h * i / n) for i in range(n)]
              + [(w * (n - i) / n, h) for i in range(n)] + [(0, h * (n - i) / n) for i in range(n)])
    ring = [tuple(t * p) for p in pixels]
    ring.append(ring[0])
    geom = transform_geom(info.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [tuple(round(v, 9) for v in xy) for xy in geom["coordinates"][0]]
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return {"type": "Polygon", "coordinates": [[list(c) for c in coords]]}, [min(xs), min(ys), max(xs), max(ys)]


def _times(info: OutputInfo, source: Optional[ItemRef]) -> dict:
    """The source Item's datetime (or range); for a source not from STAC, when the output was written."""
    if source is not None:
        out = {"datetime": source.datetime}
        for key in ("start_datetime", "end_datetime"):
            if getattr(source, key):
                out[key] = getattr(source, key)
        return out
    return {"datetime": _iso(info.modified),
            "description": "datetime is when geogan wrote this prediction: its source was not a STAC Item, so "
                           "its acquisition time is not known here"}


def _projection(info: OutputInfo) -> dict:
    t = info.transform
    out: dict = {"proj:shape": [info.height, info.width], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]}
    if info.crs is None:
        out["proj:code"] = None
        return out
    epsg = info.crs.to_epsg()
    from rasterio.crs import CRS

    if epsg and CRS.from_epsg(epsg) == info.crs:
        out["proj:code"] = f"EPSG:{epsg}"
        out["proj:epsg"] = int(epsg)  # projection v1's field, which many readers still look for
    else:
        out["proj:code"] = None
        out["proj:wkt2"] = info.crs.to_wkt()
    left, top = t * (0, 0)
    right, bottom = t * (info.width, info.height)
    out["proj:bbox"] = [min(left, right), min(top, bottom), max(left, right), max(top, bottom)]
    return out


def _processing(info: OutputInfo, source: Optional[ItemRef]) -> dict:
    """geogan's version, when it ran and what it ran: the model (file, SHA-256, digest) and direction."""
    from . import __version__
    from .provenance import DIGEST, FILE, SHA256

    tags = info.tags
    model = tags.get(FILE) or "a model built in memory"
    lineage = (f"translated ({tags.get('GEOGAN_DIRECTION', '?')}, {tags.get('GEOGAN_SOURCE_KIND', '?')} -> "
               f"{tags.get('GEOGAN_TARGET_KIND', '?')}) by geogan with {model}"
               + (f" (sha256 {tags[SHA256]})" if tags.get(SHA256) else "")
               + (f" from STAC item {source.id}" if source else f" from {tags.get('GEOGAN_SCENE', 'a raster')}"))
    out = {"processing:software": {"geogan": tags.get("GEOGAN_VERSION", __version__)},
           "processing:datetime": _iso(info.modified), "processing:lineage": lineage,
           "geogan:model_file": tags.get(FILE), "geogan:model_sha256": tags.get(SHA256),
           "geogan:model_digest": tags.get(DIGEST), "geogan:direction": tags.get("GEOGAN_DIRECTION")}
    if source is not None:
        out["geogan:source_assets"] = list(source.assets)
    return {k: v for k, v in out.items() if v is not None}


def _bands(info: OutputInfo, names: Optional[Sequence[str]]) -> list[dict]:
    """STAC 1.1 band objects: name (the given names when they fit, else the band description),
    data type and nodata."""
    names = list(names) if names is not None and len(names) == info.count else list(info.descriptions)
    bands = []
    for i in range(info.count):
        band: dict = {}
        if i < len(names) and names[i]:
            band["name"] = names[i]
        band["data_type"] = info.dtype
        if info.nodata is not None:
            band["nodata"] = "nan" if info.nodata != info.nodata else info.nodata
        bands.append(band)
    return bands


def _iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def collection_id(folder: Path) -> str:
    """A batch folder's collection id: ``geogan-`` and the folder's name."""
    return "geogan-" + safe_name(Path(os.path.abspath(folder)).name)


def write_collection(folder: Union[str, os.PathLike]) -> Optional[Path]:
    """Write ``folder/collection.json`` over every geogan Item in ``folder`` whose GeoTIFF is there
    (this run's and earlier runs'), with their spatial and temporal extent; None when there is none."""
    d = Path(folder)
    items = [it for it in (_read_output_item(p) for p in sorted(d.glob("*.json")) if p.name != COLLECTION_NAME)
             if it is not None]
    dst = d / COLLECTION_NAME
    if not items:
        return None
    if not _ours(dst):
        log.warning("%s exists and was not written by geogan: not replaced, so it does not list the STAC items "
                    "of this folder's predictions (each is beside its GeoTIFF)", describe(dst))
        return None
    _write_json(dst, build_collection(collection_id(d), items), "STAC collection")
    return dst


def _read_output_item(path: Path) -> Optional[tuple[str, dict]]:
    """(file name, Item) of an Item :func:`write_item` wrote, whose data file exists; else None."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(d, dict) or d.get("type") != "Feature":
        return None
    software = (d.get("properties") or {}).get("processing:software")
    href = ((d.get("assets") or {}).get("data") or {}).get("href", "")
    if not isinstance(software, dict) or "geogan" not in software or not isinstance(href, str):
        return None
    return (path.name, d) if (path.parent / href).is_file() else None


def build_collection(cid: str, items: Sequence[tuple[str, dict]]) -> dict:
    """The Collection (a dict) linking ``items`` (file name, Item) by relative hrefs (pure)."""
    import pystac
    from pystac.utils import str_to_datetime

    boxes = [it["bbox"] for _, it in items if it.get("bbox")]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            if boxes else [-180.0, -90.0, 180.0, 90.0])
    times = [str_to_datetime(p[k]) for _, it in items for p in [it["properties"]]
             for k in ("datetime", "start_datetime", "end_datetime") if p.get(k)]
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]]))
    from . import __version__

    collection = pystac.Collection(id=cid, description=f"geogan predictions ({len(items)} items)", extent=extent,
                                   license="other", title=cid, stac_extensions=[PROJECTION_SCHEMA, PROCESSING_SCHEMA],
                                   extra_fields={"processing:software": {"geogan": __version__}})
    collection.add_link(pystac.Link("root", f"./{COLLECTION_NAME}", media_type="application/json"))
    for name, it in items:
        collection.add_link(pystac.Link("item", f"./{name}", media_type=GEOJSON, title=it.get("id")))
    return collection.to_dict(include_self_link=False, transform_hrefs=False)


def _write_json(dst: Path, obj: dict, what: str) -> None:
    """Write ``obj`` atomically, or leave the file alone when it already holds exactly that."""
    from .outputs import atomic_write_bytes

    try:
        payload = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except ValueError as exc:  # a NaN that JSON cannot hold: a bug, said in one line
        raise OutputError(f"{describe(dst)}: cannot write the {what} ({exc})") from None
    try:
        if dst.is_file() and dst.read_bytes() == payload:
            return
    except OSError:
        pass
    atomic_write_bytes(dst, payload, what=what)



"""Areas of interest: parsing GeoJSON / WKT into one polygonal :class:`AOI`, and which chip
windows of a raster it covers (pure geometry: pyproj and shapely, no file is opened).

GeoJSON (FeatureCollection / Feature / geometry) is EPSG:4326 unless it has a legacy ``"crs"``
member; WKT and shapely geometries are ``aoi_crs`` (default EPSG:4326). An AOI is reprojected to
each raster's CRS, clipped first to the raster's footprint so a continent-sized AOI is never
pushed through a projection outside its area of use. A window is covered when its footprint
overlaps the AOI; touching along an edge is not enough.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InputError, InputNotFoundError, describe


@dataclass(frozen=True)
class AOI:
    """A polygonal area of interest in its own CRS."""

    geometry: Any
    crs: Any  # pyproj.CRS
    source: str

    def in_crs(self, dst_crs: Any, bounds: Optional[tuple[float, float, float, float]] = None):
        """The AOI reprojected to ``dst_crs`` (clipped first to ``bounds`` given in ``dst_crs``)."""
        import shapely
        from pyproj import CRS, Transformer

        dst = CRS.from_user_input(dst_crs.to_wkt() if hasattr(dst_crs, "to_wkt") else dst_crs)
        geom = self.geometry
        if dst == self.crs:
            return geom
        if bounds is not None:
            # Clip in the AOI's CRS to the raster's footprint first, so a continent-sized AOI
            # is never pushed through a projection outside its area of use.
            back = Transformer.from_crs(dst, self.crs, always_xy=True)
            left, bottom, right, top = back.transform_bounds(*bounds, densify_pts=21)
            if not all(np.isfinite([left, bottom, right, top])):
                return shapely.Polygon()
            pad_x, pad_y = (right - left) * 0.05, (top - bottom) * 0.05
            geom = geom.intersection(shapely.box(left - pad_x, bottom - pad_y, right + pad_x, top + pad_y))
            if geom.is_empty:
                return geom
        minx, miny, maxx, maxy = geom.bounds
        seg = max(maxx - minx, maxy - miny) / 64.0
        if seg > 0:
            geom = shapely.segmentize(geom, seg)
        fwd = Transformer.from_crs(self.crs, dst, always_xy=True)
        # Vectorised over all vertices at once (shapely.ops.transform is deprecated in shapely 2.1).
        out = shapely.transform(geom, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
        if not out.is_valid:
            out = shapely.make_valid(out)
        return out


def load_aoi(aoi: Any, aoi_crs: Any = None) -> AOI:
    """Read an AOI: a GeoJSON or WKT file path, a literal GeoJSON/WKT string, a GeoJSON dict or a
    shapely geometry. GeoJSON is EPSG:4326 unless it has a legacy ``"crs"`` member; WKT and
    shapely geometries are ``aoi_crs`` (default EPSG:4326). Raises :class:`InputError`."""
    import shapely
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    source = _aoi_label(aoi)
    crs_hint = None
    if hasattr(aoi, "geom_type"):
        geom = aoi
    elif isinstance(aoi, dict):
        geom, crs_hint = _geojson_geometry(aoi, source)
    else:
        text = None
        p = Path(str(aoi)) if isinstance(aoi, (str, os.PathLike)) else None
        if p is not None and len(str(aoi)) < 4096 and not _looks_literal(str(aoi)):
            if not p.exists():
                raise InputNotFoundError(f"AOI {source}: no such file")
            if p.is_dir():
                raise InputError(f"AOI {source}: is a directory, not a GeoJSON or WKT file")
            try:
                text = p.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"AOI {source}: unreadable ({exc.__class__.__name__})") from None
        elif isinstance(aoi, str):
            text = aoi
        else:
            raise InputError(f"AOI {source}: expected a file, GeoJSON, WKT or shapely geometry")
        stripped = text.strip()
        if not stripped:
            raise InputError(f"AOI {source}: is empty")
        if stripped.startswith("{"):
            try:
                obj = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InputError(f"AOI {source}: not valid GeoJSON ({exc.msg} at line {exc.lineno})") from None
            geom, crs_hint = _geojson_geometry(obj, source)
        else:
            try:
                geom = shapely.from_wkt(stripped)
            except Exception:  # shapely raises GEOSException / ShapelyError variants
                raise InputError(f"AOI {source}: neither GeoJSON nor valid WKT") from None
    if crs_hint is not None:
        crs_in = crs_hint
    else:
        crs_in = aoi_crs if aoi_crs is not None else "EPSG:4326"
    try:
        crs = CRS.from_user_input(crs_in)
    except CRSError:
        raise InputError(f"AOI {source}: unknown CRS {crs_in!r}") from None
    geom = _polygonal(geom, source)
    return AOI(geometry=geom, crs=crs, source=source)


def _looks_literal(text: str) -> bool:
    """GeoJSON (``{...}``) or WKT (``WORD (...`` / ``WORD EMPTY``) rather than a file name."""
    head = text.lstrip()[:64]
    return head.startswith("{") or re.match(r"(?i)^(SRID=\d+;)?[A-Z]+(\s+(Z|M|ZM))?\s*(\(|EMPTY\b)", head) is not None


def _aoi_label(aoi: Any) -> str:
    if isinstance(aoi, os.PathLike) or (isinstance(aoi, str) and not _looks_literal(aoi)):
        return describe(aoi)
    if isinstance(aoi, str):
        s = " ".join(aoi.split())
        return describe(s if len(s) <= 60 else s[:57] + "...")
    return f"<{type(aoi).__name__}>"


def _geojson_geometry(obj: Any, source: str):
    import shapely
    from shapely.geometry import shape

    if not isinstance(obj, dict) or "type" not in obj:
        raise InputError(f"AOI {source}: not a GeoJSON object (no 'type')")
    crs_hint = None
    crs_member = obj.get("crs")
    if isinstance(crs_member, dict):
        props = crs_member.get("properties") or {}
        if "name" in props:
            crs_hint = str(props["name"])
        elif "code" in props:
            crs_hint = f"EPSG:{props['code']}"
    kind = obj["type"]
    try:
        if kind == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in obj.get("features") or [] if f.get("geometry")]
            if not geoms:
                raise InputError(f"AOI {source}: the FeatureCollection has no geometry")
            geom = shapely.GeometryCollection(geoms) if len(geoms) > 1 else geoms[0]
        elif kind == "Feature":
            if not obj.get("geometry"):
                raise InputError(f"AOI {source}: the Feature has no geometry")
            geom = shape(obj["geometry"])
        else:
            geom = shape(obj)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"AOI {source}: invalid GeoJSON geometry ({exc})") from None
    return geom, crs_hint


def _polygonal(geom: Any, source: str):
    import shapely

    parts = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if g.geom_type in ("Polygon", "MultiPolygon"):
            parts.append(g)
        elif g.geom_type == "GeometryCollection":
            stack.extend(g.geoms)
        else:
            raise InputError(f"AOI {source}: is a {g.geom_type}, not a polygon")
    if not parts:
        raise InputError(f"AOI {source}: is empty")
    merged = shapely.union_all([p if p.is_valid else shapely.make_valid(p) for p in parts])
    if merged.is_empty or merged.area == 0:
        raise InputError(f"AOI {source}: is empty (zero area)")
    return merged



def windows_in_aoi(region: AOI, crs: Any, transform: Any, height: int, width: int,
                   windows: Sequence[Any]) -> np.ndarray:
    """Which ``windows`` of a raster (its ``crs``, ``transform`` and size) overlap ``region``:
    a boolean array, one per window."""
    import shapely
    from rasterio.transform import array_bounds
    from rasterio.windows import bounds as window_bounds

    if not windows:
        return np.zeros(0, bool)
    left, bottom, right, top = array_bounds(height, width, transform)
    geom = region.in_crs(crs, (left, bottom, right, top))
    if geom.is_empty:
        return np.zeros(len(windows), bool)
    shapely.prepare(geom)
    wb = np.array([window_bounds(w, transform) for w in windows], dtype=np.float64)
    boxes = shapely.box(wb[:, 0], wb[:, 1], wb[:, 2], wb[:, 3])
    return shapely.intersects(geom, boxes) & ~shapely.touches(geom, boxes)


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
    if not len(windows):
        return np.zeros(0, bool)
    geom = aoi_in_pixels(region, crs, transform, height, width)
    if geom is None:
        return np.zeros(len(windows), bool)
    box = np.array([(w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height) for w in windows],
                   dtype=np.float64)
    return _boxes_overlap(geom, box)


def grid_in_aoi(region: AOI, crs: Any, transform: Any, height: int, width: int, rows: np.ndarray,
                cols: np.ndarray, tile: int) -> np.ndarray:
    """Which windows of a grid (``tile`` px at row offsets ``rows`` × col offsets ``cols``)
    overlap ``region``: a (len(rows), len(cols)) boolean array.

    Only the windows under the AOI's bounding box are tested one by one, so a small AOI over a
    huge raster (1.2 million windows of a 70,000² scene) costs next to nothing."""
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    keep = np.zeros((len(rows), len(cols)), bool)
    geom = aoi_in_pixels(region, crs, transform, height, width)
    if geom is None or not keep.size:
        return keep
    x0, y0, x1, y1 = geom.bounds
    ri = np.flatnonzero((rows < y1) & (rows + tile > y0))
    ci = np.flatnonzero((cols < x1) & (cols + tile > x0))
    if not len(ri) or not len(ci):
        return keep
    rr, cc = np.meshgrid(rows[ri], cols[ci], indexing="ij")
    box = np.column_stack([cc.ravel(), rr.ravel(), cc.ravel() + tile, rr.ravel() + tile])
    keep[np.ix_(ri, ci)] = _boxes_overlap(geom, box).reshape(len(ri), len(ci))
    return keep


def aoi_in_pixels(region: AOI, crs: Any, transform: Any, height: int, width: int) -> Any:
    """``region`` in the raster's pixel coordinates (col, row), or None where it misses the raster.

    Working in pixel space makes a window an axis-aligned box whatever the geotransform (a
    rotated or sheared grid included); the raster's footprint is taken from its four corners."""
    import shapely
    from shapely.affinity import affine_transform

    corners = [transform * xy for xy in ((0, 0), (width, 0), (width, height), (0, height))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    geom = region.in_crs(crs, (min(xs), min(ys), max(xs), max(ys)))
    if geom.is_empty:
        return None
    inv = ~transform
    px = affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])
    if px.is_empty:
        return None
    shapely.prepare(px)
    return px


def _boxes_overlap(geom: Any, box: np.ndarray) -> np.ndarray:
    """Boxes (x0, y0, x1, y1 rows) that overlap ``geom``'s interior (touching is not enough)."""
    import shapely

    boxes = shapely.box(box[:, 0], box[:, 1], box[:, 2], box[:, 3])
    return shapely.intersects(geom, boxes) & ~shapely.touches(geom, boxes)

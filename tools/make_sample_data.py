#!/usr/bin/env python3
"""Regenerate geogan's synthetic sample data (``sample_data/``) deterministically.

One procedural land-cover map is drawn over a 20 km × 20 km area (2048 × 2048 pixels of
10 m in UTM zone 33N, EPSG:32633): terrain from smooth noise, lakes and a river, forest,
agricultural parcels of several crop types in strips at two orientations, towns with a
street grid and buildings, and a road network. Every sensor is rendered from that one
map, so co-registered renderings of the same ground agree:

* SAR (Sentinel-1-like VV/VH, float32 linear backscatter power): per-class sigma0, parcel
  variation, canopy texture, slope brightening, double-bounce lines and radar shadow at
  buildings, 4-look gamma speckle, and a slanted swath edge of nodata (0);
* surface reflectance (blue, green, red, NIR), from which both the multispectral raster
  (uint16, reflectance × 10000) and the RGB image (uint8, a fixed display stretch) are made,
  with hill shading and cast shadows of buildings and trees;
* DSM (float32 metres): terrain + tree and building heights, nodata -9999 in a few holes
  (water surfaces and matching failures, as photogrammetric DSMs have).

Training regions of different places are cut for each domain (truly unpaired), a small
co-registered SAR/RGB pair covers part of the RGB training region (for paired and
semi-supervised training), and one held-out test region is rendered in every domain, so its
true SAR→RGB pair and land cover are known.

    python tools/make_sample_data.py            # writes sample_data/
    python tools/make_sample_data.py --out DIR --seed 0
    python tools/make_sample_data.py --missing   # write only the files that are not there yet
    python tools/make_sample_data.py --check     # regenerate in a temp dir, compare pixels

Running it twice gives byte-identical files (seeded generator, fixed GeoTIFF options, no
timestamps) on the same numpy/GDAL versions.
"""
from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject, transform_bounds

WORLD = 2048  # pixels per side of the land-cover map
RES = 10.0  # metres per pixel
UTM = CRS.from_epsg(32633)
ORIGIN = (400000.0, 5200000.0)  # upper-left corner (easting, northing), ~46.9°N 13.7°E

# Land-cover classes (value 0 is nodata in the class map).
CLASSES = {
    1: "water", 2: "forest", 3: "grassland", 4: "crop_green", 5: "crop_ripe",
    6: "ploughed", 7: "bare_soil", 8: "urban_ground", 9: "building", 10: "road",
}
WATER, FOREST, GRASS, CROP_GREEN, CROP_RIPE, PLOUGHED, BARE, URBAN, BUILDING, ROAD = range(1, 11)
N_CLASSES = 11

# Regions (row, col, height, width) of the world map. Training regions do not overlap each
# other or the test region; the test region is not a multiple of a 256 or 128 tile.
REGIONS = {
    "r1": (640, 128, 512, 512),  # SAR training
    "r2": (256, 1280, 512, 512),  # RGB training (and the DSM paired with it)
    "r3": (1280, 0, 512, 512),  # multispectral training
    "test": (1280, 1216, 480, 640),  # held-out test region, every domain
}
# A small co-registered SAR/RGB pair inside region 2 (a same-day SAR acquisition over part of
# the RGB training area, as users often have): every class covers >= 4 % of it. Kept out of
# REGIONS, whose order drives the world's random draws (adding to it would change every raster).
PAIRED = (384, 1312, 256, 320)

# Mean SAR backscatter (linear power) per class: (VV, VH). Water is specular and dark, roads
# smooth and dark, forest volume scattering raises VH, buildings are bright.
SAR_SIGMA0 = {
    WATER: (0.002, 0.0004), FOREST: (0.14, 0.035), GRASS: (0.03, 0.006),
    CROP_GREEN: (0.055, 0.013), CROP_RIPE: (0.035, 0.005), PLOUGHED: (0.07, 0.006),
    BARE: (0.022, 0.002), URBAN: (0.10, 0.015), BUILDING: (0.5, 0.05), ROAD: (0.004, 0.0007),
}

# Surface reflectance per class: (blue, green, red, NIR). Vegetation is bright in the NIR.
REFLECTANCE = {
    WATER: (0.035, 0.042, 0.024, 0.010), FOREST: (0.025, 0.045, 0.025, 0.30),
    GRASS: (0.040, 0.085, 0.050, 0.38), CROP_GREEN: (0.035, 0.090, 0.040, 0.45),
    CROP_RIPE: (0.070, 0.110, 0.140, 0.30), PLOUGHED: (0.065, 0.080, 0.100, 0.15),
    BARE: (0.100, 0.130, 0.165, 0.22), URBAN: (0.110, 0.115, 0.120, 0.16),
    BUILDING: (0.120, 0.120, 0.130, 0.17), ROAD: (0.075, 0.080, 0.085, 0.10),
}
ROOFS = np.array([  # building roof materials: red tiles, grey concrete, dark slate, bright metal
    (0.060, 0.070, 0.180, 0.24), (0.140, 0.145, 0.150, 0.18),
    (0.050, 0.055, 0.060, 0.08), (0.220, 0.230, 0.240, 0.27)], np.float32)

TIFF_OPTS = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                 zlevel=9, interleave="pixel")


# ----------------------------------------------------------------------------- noise & shapes
def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise low-passed with a Gaussian of ``sigma`` pixels (FFT), scaled to unit std."""
    white = rng.standard_normal(shape, dtype=np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    out = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=shape).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-12
    return out


def meander(rng: np.random.Generator, n: int, base: float, amplitude: float, wavelength: float) -> np.ndarray:
    """A smooth wandering curve of n samples around ``base`` (for rivers and roads)."""
    t = np.arange(n, dtype=np.float64)
    curve = np.full(n, base, np.float64)
    for k in range(3):
        wl = wavelength / (k + 1) * rng.uniform(0.7, 1.3)
        curve += amplitude / (k + 1) * np.sin(2 * math.pi * t / wl + rng.uniform(0, 2 * math.pi))
    return curve


def shift(a: np.ndarray, dy: int, dx: int, fill=0) -> np.ndarray:
    """``out[y, x] = a[y - dy, x - dx]`` (content moves by +dy, +dx), filling the border."""
    out = np.full_like(a, fill)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r and (dy or dx):
                out |= shift(mask, dy, dx, False)
    return out


def per_id(rng: np.random.Generator, ids: np.ndarray, draw) -> np.ndarray:
    """Map integer ids to one random value each (``draw(rng, n)``), keeping the id layout."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    return draw(rng, len(uniq))[inverse.reshape(ids.shape)]


# ----------------------------------------------------------------------------- the world
class World:
    """The land-cover map and the per-pixel properties every sensor is rendered from."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        n = WORLD
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)

        # Terrain (m): broad hills plus finer relief.
        self.terrain = (260.0 + 55.0 * smooth_noise(rng, (n, n), 220.0)
                        + 12.0 * smooth_noise(rng, (n, n), 45.0)).astype(np.float32)

        # Agricultural parcels: strips of random width cut into fields of random length, in a
        # frame rotated by one of two angles (two field systems).
        zone = smooth_noise(rng, (n, n), 260.0) > 0
        parcel = np.zeros((n, n), np.int64)
        for zi, angle in enumerate((math.radians(11.0), math.radians(-27.0))):
            u = xx * math.cos(angle) + yy * math.sin(angle)
            v = -xx * math.sin(angle) + yy * math.cos(angle)
            edges = np.cumsum(rng.uniform(16, 48, 400)) + u.min() - 5
            strip = np.searchsorted(edges, u)
            seg = np.zeros((n, n), np.int64)
            for s in np.unique(strip):
                m = strip == s
                cuts = np.cumsum(rng.uniform(22, 95, 400)) + v.min() - rng.uniform(0, 60)
                seg[m] = np.searchsorted(cuts, v[m])
            ids = (zi * 1000 + strip) * 1000 + seg
            parcel = np.where(zone == bool(zi), ids, parcel)
        self.parcel = parcel
        field_types = np.array([CROP_GREEN, CROP_RIPE, PLOUGHED, GRASS, BARE, CROP_GREEN, GRASS])
        cls = per_id(rng, parcel, lambda r, k: field_types[r.integers(0, len(field_types), k)]).astype(np.uint8)
        # 1-pixel grass margins (tracks, hedgerows) between some parcels.
        border = (parcel != shift(parcel, 0, 1, -1)) | (parcel != shift(parcel, 1, 0, -1))
        border &= smooth_noise(rng, (n, n), 30.0) > -0.3
        cls[border] = GRASS

        # Forest: mid-scale noise, more likely on higher ground.
        hill = (self.terrain - self.terrain.mean()) / self.terrain.std()
        forest = smooth_noise(rng, (n, n), 40.0) + 0.5 * hill + 0.25 * smooth_noise(rng, (n, n), 6.0)
        cls[forest > 1.05] = FOREST

        # Lakes in low ground, and rivers that meander across the map.
        lakes = smooth_noise(rng, (n, n), 35.0) - 0.8 * hill
        cls[lakes > 2.0] = WATER
        water = np.zeros((n, n), bool)
        for base in (330.0, 1720.0):
            centre = meander(rng, n, base, 45.0, 700.0)
            width = 3.0 + 2.0 * (smooth_noise(rng, (1, n), 80.0)[0] + 1.5)
            water |= np.abs(yy - centre[None, :].astype(np.float32)) < width[None, :]
        centre = meander(rng, n, 1050.0, 50.0, 800.0)
        water |= np.abs(xx - centre[:, None].astype(np.float32)) < 4.0

        # Towns: one inside each region plus two elsewhere, each with a rotated street grid,
        # buildings on lots, and urban ground or gardens between them.
        building = np.zeros((n, n), bool)
        self.height = np.zeros((n, n), np.float32)  # object height above terrain (m)
        roof = np.zeros((n, n), np.int64)
        centres = [(r + h * rng.uniform(0.3, 0.7), c + w * rng.uniform(0.3, 0.7)) for r, c, h, w in REGIONS.values()]
        centres += [(1000.0, 500.0), (700.0, 1600.0)]
        town_noise = smooth_noise(rng, (n, n), 12.0)
        for ti, (cy, cx) in enumerate(centres):
            radius = rng.uniform(55, 95)
            y0, y1 = int(max(0, cy - 2 * radius)), int(min(n, cy + 2 * radius))
            x0, x1 = int(max(0, cx - 2 * radius)), int(min(n, cx + 2 * radius))
            sy, sx = slice(y0, y1), slice(x0, x1)
            d = np.hypot(yy[sy, sx] - cy, xx[sy, sx] - cx) / radius + 0.25 * town_noise[sy, sx]
            town = d < 1.0
            angle = rng.uniform(-0.6, 0.6)
            u = (xx[sy, sx] - cx) * math.cos(angle) + (yy[sy, sx] - cy) * math.sin(angle)
            v = -(xx[sy, sx] - cx) * math.sin(angle) + (yy[sy, sx] - cy) * math.cos(angle)
            bu, bv = rng.uniform(24, 34), rng.uniform(20, 30)
            iu, iv = np.floor(u / bu), np.floor(v / bv)
            lu, lv = u - iu * bu, v - iv * bv
            street = (lu < 2.0) | (lv < 2.0)
            # Each block has 2 × 2 lots; a lot holds one building with random set-backs.
            lot_u, lot_v = (lu >= bu / 2), (lv >= bv / 2)
            lot_id = ((((ti * 1000 + iu + 500) * 1000 + iv + 500) * 2 + lot_u) * 2 + lot_v).astype(np.int64)
            lu2, lv2 = lu - lot_u * bu / 2, lv - lot_v * bv / 2
            a0 = per_id(rng, lot_id, lambda r, k: r.uniform(2.5, 4.5, k))
            a1 = per_id(rng, lot_id, lambda r, k: r.uniform(0.5, 2.5, k))
            b0 = per_id(rng, lot_id, lambda r, k: r.uniform(2.5, 4.5, k))
            b1 = per_id(rng, lot_id, lambda r, k: r.uniform(0.5, 2.5, k))
            built = per_id(rng, lot_id, lambda r, k: r.uniform(0, 1, k)) < 0.8 - 0.3 * np.clip(d, 0, 1)
            b = (town & ~street & built & (lu2 > a0) & (lu2 < bu / 2 - a1) & (lv2 > b0) & (lv2 < bv / 2 - b1))
            h_lot = per_id(rng, lot_id, lambda r, k: r.uniform(6, 14, k) * r.choice([1, 1, 1, 2, 3], k))
            roof_lot = per_id(rng, lot_id, lambda r, k: r.integers(0, len(ROOFS), k))
            sub = cls[sy, sx]
            garden = town_noise[sy, sx] + 0.9 * d > 0.9
            sub[town] = np.where(garden[town], GRASS, URBAN)
            sub[town & street] = ROAD
            sub[b] = BUILDING
            building[sy, sx] |= b
            self.height[sy, sx] = np.where(b, h_lot, self.height[sy, sx])
            roof[sy, sx] = np.where(b, roof_lot, roof[sy, sx])
        cls[water & ~building] = WATER

        # Main roads between and across everything (bridges over rivers).
        roads = np.zeros((n, n), bool)
        for base in (600.0, 1400.0, 1950.0):
            centre = meander(rng, n, base, 20.0, 1500.0)
            roads |= np.abs(yy - centre[None, :].astype(np.float32)) < 1.3
        for base in (420.0, 1300.0, 1850.0):
            centre = meander(rng, n, base, 20.0, 1500.0)
            roads |= np.abs(xx - centre[:, None].astype(np.float32)) < 1.3
        roads |= np.abs((yy - xx * 0.55) - 150.0) < 1.2
        cls[roads & ~building] = ROAD
        self.cls = cls
        self.roof = roof

        # Per-pixel properties shared by all sensors (textures correlate across domains, as
        # a real canopy or field does).
        self.canopy = smooth_noise(rng, (n, n), 1.2)  # crown texture
        self.fine = smooth_noise(rng, (n, n), 2.5)  # within-field texture
        self.patch = smooth_noise(rng, (n, n), 15.0)  # moisture / vigour patches
        self.parcel_gain_db = per_id(rng, parcel, lambda r, k: r.normal(0.0, 1.2, k)).astype(np.float32)
        self.parcel_tint = per_id(rng, parcel, lambda r, k: r.normal(0.0, 0.12, k)).astype(np.float32)
        self.tree_height = (20.0 + 4.0 * smooth_noise(rng, (n, n), 20.0) + 3.0 * self.canopy).astype(np.float32)
        forest_px = cls == FOREST
        self.height[forest_px] = self.tree_height[forest_px]
        crop_h = {CROP_GREEN: 0.8, CROP_RIPE: 1.0, GRASS: 0.2}
        for c, h in crop_h.items():
            self.height[cls == c] = h
        self.building = cls == BUILDING
        self.rng = rng
        self.yy, self.xx = yy, xx

    # -------------------------------------------------------------- shared helpers
    def cut(self, a: np.ndarray, region: tuple[int, int, int, int], margin: int = 0) -> np.ndarray:
        r, c, h, w = region
        return a[r - margin:r + h + margin, c - margin:c + w + margin]

    def transform(self, region: tuple[int, int, int, int], margin: int = 0):
        r, c, _, _ = region
        return from_origin(ORIGIN[0] + (c - margin) * RES, ORIGIN[1] - (r - margin) * RES, RES, RES)

    def slope(self, region, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Terrain gradient (dz/dx east, dz/dy south), unitless."""
        z = self.cut(self.terrain, region, margin)
        gy, gx = np.gradient(z, RES)
        return gx.astype(np.float32), gy.astype(np.float32)

    # -------------------------------------------------------------- sensors
    def sar(self, region, seed: int, swath_edge) -> np.ndarray:
        """(2, h, w) float32 linear sigma0 (VV, VH) with 4-look speckle; 0 outside the swath."""
        rng = np.random.default_rng(seed)
        cls = self.cut(self.cls, region)
        h, w = cls.shape
        vv_lut = np.zeros(N_CLASSES, np.float32)
        vh_lut = np.zeros(N_CLASSES, np.float32)
        for c, (vv, vh) in SAR_SIGMA0.items():
            vv_lut[c], vh_lut[c] = vv, vh
        gain_db = np.zeros((h, w), np.float32)
        field = np.isin(cls, [GRASS, CROP_GREEN, CROP_RIPE, PLOUGHED, BARE])
        gain_db[field] = (self.cut(self.parcel_gain_db, region)[field]
                          + 0.8 * self.cut(self.patch, region)[field] + 0.6 * self.cut(self.fine, region)[field])
        forest = cls == FOREST
        gain_db[forest] = 1.5 * self.cut(self.canopy, region)[forest] + 0.5 * self.cut(self.patch, region)[forest]
        water = cls == WATER
        gain_db[water] = 2.5 * self.cut(self.patch, region)[water]  # wind roughening
        urban = cls == URBAN
        gain_db[urban] = 2.0 * self.cut(self.fine, region)[urban]
        # Slopes facing the sensor (looking east: sensor in the west) are brighter.
        gx, _ = self.slope(region)
        gain_db += -25.0 * gx
        # Incidence angle grows across the swath (near range west): ~ -2 dB over the scene.
        col0 = region[1]
        gain_db += -2.0 * (np.arange(w, dtype=np.float32)[None, :] + col0) / WORLD
        vv = vv_lut[cls] * np.power(10.0, gain_db / 10.0)
        vh = vh_lut[cls] * np.power(10.0, gain_db / 10.0)
        # Buildings: a double-bounce line where the wall faces the sensor (west edge) and
        # radar shadow behind (east), its length growing with the building height.
        b = self.cut(self.building, region)
        hgt = self.cut(self.height, region)
        near_wall = b & ~shift(b, 0, 1, False)
        db = near_wall * 9.0 + (b & ~near_wall) * 1.0
        vv = np.where(b, vv * db, vv)
        vh = np.where(b, vh * (1 + 0.3 * (db - 1)), vh)
        shadow = np.zeros((h, w), bool)
        for k in range(1, 5):
            shadow |= shift(b & (hgt > k * RES / math.tan(math.radians(38.0))), 0, k, False)
        shadow &= ~b
        vv[shadow] = 0.0015
        vh[shadow] = 0.0003
        # A few strong point scatterers (vehicles, masts) in towns.
        pts = (urban | (cls == ROAD) & dilate(b, 3)) & (rng.random((h, w)) < 0.01)
        vv[pts] *= 25.0
        vh[pts] *= 8.0
        # Thermal noise floor, then multiplicative 4-look gamma speckle, independent per band.
        looks = 4.0
        out = np.stack([vv + 0.0004, vh + 0.0002]).astype(np.float32)
        out *= rng.gamma(looks, 1.0 / looks, size=out.shape).astype(np.float32)
        out = np.maximum(out, 1e-5)
        rows, cols = np.mgrid[0:h, 0:w]
        out[:, swath_edge(rows, cols)] = 0.0
        return out.astype(np.float32)

    def reflectance(self, region, seed: int) -> np.ndarray:
        """(4, h, w) float32 surface reflectance (blue, green, red, NIR), shaded."""
        rng = np.random.default_rng(seed)
        cls = self.cut(self.cls, region)
        h, w = cls.shape
        lut = np.zeros((N_CLASSES, 4), np.float32)
        for c, v in REFLECTANCE.items():
            lut[c] = v
        refl = np.moveaxis(lut[cls], -1, 0).copy()  # (4, h, w)
        tint = self.cut(self.parcel_tint, region)
        patch = self.cut(self.patch, region)
        fine = self.cut(self.fine, region)
        canopy = self.cut(self.canopy, region)
        field = np.isin(cls, [GRASS, CROP_GREEN, CROP_RIPE, PLOUGHED, BARE])
        scale = np.ones((h, w), np.float32)
        scale[field] = 1.0 + tint[field] + 0.07 * patch[field] + 0.05 * fine[field]
        forest = cls == FOREST
        scale[forest] = 1.0 + 0.25 * canopy[forest] + 0.08 * patch[forest]
        water = cls == WATER
        scale[water] = 1.0 + 0.1 * patch[water]
        other = ~(field | forest | water)
        scale[other] = 1.0 + 0.08 * fine[other]
        refl *= scale[None]
        # Vegetation vigour moves red and NIR in opposite directions within a field.
        veg = np.isin(cls, [GRASS, CROP_GREEN, FOREST])
        refl[2][veg] *= 1.0 - 0.15 * patch[veg]
        refl[3][veg] *= 1.0 + 0.10 * patch[veg]
        b = self.cut(self.building, region)
        roofs = ROOFS[self.cut(self.roof, region)]
        refl[:, b] = np.moveaxis(roofs, -1, 0)[:, b] * (1.0 + 0.04 * fine[b])[None]
        # Hill shading (sun from the south-east) and cast shadows to the north-west.
        gx, gy = self.slope(region)
        shade = np.clip(1.0 + 2.5 * (gx * -0.5 + gy * 0.5), 0.7, 1.3)
        hgt = self.cut(self.height, region)
        cast = np.zeros((h, w), bool)
        for k in range(1, 4):
            tall = hgt > k * RES * 1.2
            cast |= shift(tall, -k, -k, False) & (hgt < shift(hgt, -k, -k, 0.0) - k * RES)
        shade = np.where(cast, shade * 0.45, shade)
        # Sunlit crowns brighter, gaps darker.
        shade = np.where(forest, shade * (1.0 + 0.15 * canopy), shade)
        refl *= shade[None]
        refl += rng.normal(0.0, 0.002, refl.shape).astype(np.float32)
        return np.clip(refl, 0.001, 1.0).astype(np.float32)

    def dsm(self, region, seed: int, margin: int = 0) -> np.ndarray:
        """(1, h, w) float32 surface height (m) with nodata holes (-9999)."""
        rng = np.random.default_rng(seed)
        z = self.cut(self.terrain, region, margin) + self.cut(self.height, region, margin)
        cls = self.cut(self.cls, region, margin)
        z = np.where(cls == WATER, self.cut(self.terrain, region, margin) - 1.0, z)
        z = z + rng.normal(0.0, 0.15, z.shape).astype(np.float32)
        h, w = z.shape
        # Holes: matching fails on much of the water and in a few random blobs.
        holes = (cls == WATER) & (self.cut(self.patch, region, margin) > 0.3)
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(8):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 9)
            holes |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        z = np.where(holes, -9999.0, z)
        return z[None].astype(np.float32)


# ----------------------------------------------------------------------------- writing
def to_rgb(refl: np.ndarray) -> np.ndarray:
    """Reflectance (B, G, R, NIR) → uint8 (R, G, B) with a fixed display stretch, 1..255 (0 unused)."""
    rgb = refl[[2, 1, 0]] / 0.22
    rgb = np.power(np.clip(rgb, 0.0, 1.0), 1.0 / 1.8) * 254.0 + 1.0
    return np.round(rgb).astype(np.uint8)


def to_ms(refl: np.ndarray, seed: int) -> np.ndarray:
    """Reflectance → uint16 × 10000 with a little sensor noise, 1..10000 (0 = nodata)."""
    rng = np.random.default_rng(seed)
    x = refl * 10000.0 + rng.normal(0.0, 25.0, refl.shape)
    return np.clip(np.round(x), 1, 10000).astype(np.uint16)


def write(path: Path, data: np.ndarray, *, transform, crs=UTM, nodata=None, descriptions=(),
          colorinterp=None, tags=None) -> None:
    predictor = 3 if data.dtype.kind == "f" else 2
    profile = dict(TIFF_OPTS, width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=str(data.dtype), crs=crs, transform=transform, nodata=nodata, predictor=predictor)
    if data.dtype == np.uint8 and data.shape[0] == 3:
        profile["photometric"] = "RGB"
    tmp = path.with_name(path.name + ".part")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(data)
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
            if colorinterp is not None:
                ds.colorinterp = colorinterp
            ds.update_tags(SOURCE="geogan synthetic sample data (tools/make_sample_data.py); not a real scene",
                           **(tags or {}))
    tmp.replace(path)
    # A GDAL side-car left by whatever opened the previous version caches its statistics
    # and histograms: stale now, and QGIS would stretch the new pixels by them.
    path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)


def write_wgs84(path: Path, data: np.ndarray, src_transform, region_bounds, *, nodata, descriptions,
                resampling=Resampling.bilinear, tags=None) -> None:
    """Reproject (band, row, col) UTM data onto an EPSG:4326 grid covering ``region_bounds``."""
    dst_crs = CRS.from_epsg(4326)
    left, bottom, right, top = transform_bounds(UTM, dst_crs, *region_bounds)
    # ~10 m pixels: 1e-4° of latitude is ~11 m; longitude scaled by cos(latitude).
    res_y = 9e-5
    res_x = res_y / math.cos(math.radians((top + bottom) / 2))
    width = int(math.ceil((right - left) / res_x))
    height = int(math.ceil((top - bottom) / res_y))
    dst_transform = from_origin(left, top, res_x, res_y)
    out = np.full((data.shape[0], height, width), nodata, data.dtype)
    reproject(data, out, src_transform=src_transform, src_crs=UTM, src_nodata=nodata,
              dst_transform=dst_transform, dst_crs=dst_crs, dst_nodata=nodata, resampling=resampling)
    write(path, out, transform=dst_transform, crs=dst_crs, nodata=nodata, descriptions=descriptions, tags=tags)


def bounds(region) -> tuple[float, float, float, float]:
    r, c, h, w = region
    left, top = ORIGIN[0] + c * RES, ORIGIN[1] - r * RES
    return left, top - h * RES, left + w * RES, top


def check(existing: Path, seed: int) -> int:
    """Regenerate into a temp dir and compare every raster's grid and pixels with ``existing``.

    Pixels, not bytes: another zlib/GDAL build compresses the same pixels differently.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), seed, quiet=True)
        bad = 0
        for fresh in sorted(Path(tmp).glob("*.tif")):
            old = existing / fresh.name
            if not old.exists():
                print(f"{old}: missing")
                bad += 1
                continue
            with rasterio.open(fresh) as a, rasterio.open(old) as b:
                same = (a.crs == b.crs and a.transform.almost_equals(b.transform) and a.shape == b.shape
                        and a.count == b.count and a.dtypes == b.dtypes and a.nodata == b.nodata
                        and np.array_equal(a.read(), b.read(), equal_nan=True))
            print(f"{old}: {'same' if same else 'DIFFERS'}")
            bad += not same
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "sample_data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="do not write: regenerate in a temp dir and compare with --out pixel by pixel")
    ap.add_argument("--missing", action="store_true",
                    help="write only the rasters missing from --out (leave existing files untouched)")
    args = ap.parse_args(argv)
    if args.check:
        return check(Path(args.out), args.seed)
    generate(Path(args.out), args.seed, only_missing=args.missing)
    return 0


def generate(out: Path, seed: int, quiet: bool = False, only_missing: bool = False) -> None:
    """Render every raster into ``out``; with ``only_missing``, add only those not there yet."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    if only_missing:
        with tempfile.TemporaryDirectory(dir=out, prefix=".make_sample_data.") as tmp:
            render(Path(tmp), seed)
            for p in sorted(Path(tmp).glob("*.tif")):
                if not (out / p.name).exists():
                    p.replace(out / p.name)
    else:
        render(out, seed)
    if not quiet:
        list_files(out)


def render(out: Path, seed: int) -> None:
    """Write every sample raster into ``out``."""
    world = World(seed)
    s = seed * 100
    sar_desc = ("VV", "VH")
    sar_tags = dict(UNITS="linear backscatter power (sigma0)", SPECKLE="4-look gamma", LOOK_DIRECTION="east")
    rgb_ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    ms_desc = ("blue", "green", "red", "nir")
    ms_tags = dict(UNITS="surface reflectance x 10000", SCALE="0.0001")
    r1, r2, r3, test = (REGIONS[k] for k in ("r1", "r2", "r3", "test"))

    # SAR: slanted swath edges (nodata 0) on the east of region 1, the west of the test region.
    write(out / "sar_train.tif", world.sar(r1, s + 1, lambda y, x: x > 470 - 0.15 * y),
          transform=world.transform(r1), nodata=0.0, descriptions=sar_desc, tags=sar_tags)
    write(out / "sar_test.tif", world.sar(test, s + 2, lambda y, x: x < 22 + 0.1 * y),
          transform=world.transform(test), nodata=0.0, descriptions=sar_desc, tags=sar_tags)

    refl2 = world.reflectance(r2, s + 3)
    write(out / "rgb_train.tif", to_rgb(refl2), transform=world.transform(r2), colorinterp=rgb_ci,
          descriptions=("red", "green", "blue"))
    refl_t = world.reflectance(test, s + 4)
    write(out / "rgb_test_truth.tif", to_rgb(refl_t), transform=world.transform(test), colorinterp=rgb_ci,
          descriptions=("red", "green", "blue"))
    write(out / "ms_train.tif", to_ms(world.reflectance(r3, s + 5), s + 6), transform=world.transform(r3),
          nodata=0, descriptions=ms_desc, tags=ms_tags)
    write(out / "ms_test_truth.tif", to_ms(refl_t, s + 7), transform=world.transform(test),
          nodata=0, descriptions=ms_desc, tags=ms_tags)

    # DSM of region 2 (the same ground as rgb_train) in EPSG:4326, for paired DSM→RGB work
    # and to exercise reprojection; the test region's DSM stays in UTM.
    margin = 32
    write_wgs84(out / "dsm_train.tif", world.dsm(r2, s + 8, margin), world.transform(r2, margin), bounds(r2),
                nodata=-9999.0, descriptions=("elevation",), tags=dict(UNITS="metre"))
    write(out / "dsm_test.tif", world.dsm(test, s + 9), transform=world.transform(test), nodata=-9999.0,
          descriptions=("elevation",), tags=dict(UNITS="metre"))

    # The test region's land-cover map (for per-class checks of a translation).
    lc = world.cut(world.cls, test)[None].copy()
    write(out / "landcover_test.tif", lc, transform=world.transform(test), nodata=0,
          descriptions=("land cover class",),
          tags={f"CLASS_{k}": v for k, v in CLASSES.items()})

    # The co-registered SAR/RGB pair (inside region 2): the same RGB acquisition as rgb_train.tif
    # (the very pixels of that window), and a SAR scene of its own with a corner of nodata.
    pr, pc, ph, pw = PAIRED
    r2r, r2c = r2[0], r2[1]
    write(out / "sar_pair.tif", world.sar(PAIRED, s + 10, lambda y, x: x > pw - 30 + 0.12 * y),
          transform=world.transform(PAIRED), nodata=0.0, descriptions=sar_desc, tags=sar_tags)
    rgb2 = to_rgb(refl2)[:, pr - r2r:pr - r2r + ph, pc - r2c:pc - r2c + pw]
    write(out / "rgb_pair.tif", np.ascontiguousarray(rgb2), transform=world.transform(PAIRED), colorinterp=rgb_ci,
          descriptions=("red", "green", "blue"))


def list_files(out: Path) -> None:
    total = 0
    for p in sorted(out.glob("*.tif")):
        size = p.stat().st_size
        total += size
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        with rasterio.open(p) as ds:
            print(f"{p.name:24s} {ds.width:4d}x{ds.height:<4d} {ds.count}x{ds.dtypes[0]:8s} "
                  f"{ds.crs.to_string():10s} {size / 1e6:5.2f} MB  sha256 {digest}")
    print(f"total {total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    raise SystemExit(main())

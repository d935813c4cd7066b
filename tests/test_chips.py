"""Chip export (issue 2): window grid, pixels and georeference, validity, statistics, paired
warping, AOI, spatial validation split, replacing an export, cancellation, bad inputs.

Every raster is made here in tmp_path with ``make_raster`` / ``write_raster``."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

import geogan
from geogan.chips import (
    METADATA_NAME,
    chip_windows,
    export_chips,
    grid_offsets,
    load_aoi,
    read_chips_metadata,
    spatial_split,
)
from geogan.errors import (
    BandMismatchError,
    Cancelled,
    ConfigError,
    GeoganError,
    InputError,
    InputNotFoundError,
    OutputError,
    RasterError,
)
from geogan.chips.sources import inspect_domain
from geogan.raster import valid_mask
from geogan.scenes import as_scene

NAME = re.compile(r"^(?P<stem>.+)_r(?P<row>\d{6})_c(?P<col>\d{6})\.tif$")


def chips_of(out: Path, split: str) -> dict[str, tuple[int, int]]:
    """File name -> (row_off, col_off) of every chip in ``out/split``."""
    found = {}
    for p in sorted((out / split).iterdir()):
        m = NAME.match(p.name)
        assert m, p.name
        found[p.name] = (int(m["row"]), int(m["col"]))
    return found


def gradient(bands: int, rows: int, cols: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(1, 200, (bands, rows, cols))
    return (base + np.arange(cols)[None, None, :] % 50).astype(dtype)


# --------------------------------------------------------------------------- pure grid maths

@pytest.mark.parametrize("length,tile,stride,expected", [
    (100, 32, 32, [0, 32, 64, 68]),
    (96, 32, 32, [0, 32, 64]),
    (32, 32, 32, [0]),
    (31, 32, 32, []),
    (70, 32, 16, [0, 16, 32, 38]),
    (64, 32, 16, [0, 16, 32]),
])
def test_grid_offsets(length, tile, stride, expected):
    assert grid_offsets(length, tile, stride) == expected


def test_grid_offsets_ceil_formula_and_edge():
    for length in range(16, 300, 7):
        for tile in (16, 24, 64):
            for stride in (5, 16, tile):
                if stride > tile:
                    continue
                offs = grid_offsets(length, tile, stride)
                if length < tile:
                    assert offs == []
                    continue
                assert len(offs) == math.ceil((length - tile) / stride) + 1
                assert offs[0] == 0 and offs[-1] == length - tile
                assert all(0 < b - a <= stride for a, b in zip(offs, offs[1:]))


def test_chip_windows_row_major():
    wins = chip_windows(50, 40, 16, 16)
    assert wins[0] == Window(0, 0, 16, 16)
    assert wins[-1] == Window(24, 34, 16, 16)
    assert len(wins) == 4 * 3


def test_spatial_split_pure_and_disjoint():
    cands = [(0, r, c) for r in grid_offsets(600, 32, 16) for c in grid_offsets(600, 32, 16)]
    labels, block = spatial_split(cands, 32, 16, 0.2, seed=3)
    assert labels == spatial_split(cands, 32, 16, 0.2, seed=3)[0]
    assert block > 0
    val = [c for c, lab in zip(cands, labels) if lab == "val"]
    train = [c for c, lab in zip(cands, labels) if lab == "train"]
    assert 0.1 < len(val) / len(cands) < 0.3
    for _, r, c in train:
        assert all(abs(r - vr) >= 32 or abs(c - vc) >= 32 for _, vr, vc in val)
    assert spatial_split(cands, 32, 16, 0.0, seed=3)[0] == ["train"] * len(cands)


# --------------------------------------------------------------------------- pixels & georeference

@pytest.mark.parametrize("dtype,bands", [("uint8", 1), ("uint16", 3), ("float32", 2), ("uint16", 5)])
def test_chip_pixels_and_transform_equal_source(make_raster, tmp_path, dtype, bands):
    data = gradient(bands, 100, 90, dtype)
    a = make_raster("scene_a.tif", data, nodata=0)
    b = make_raster("scene_b.tif", gradient(3, 70, 70, "uint8", seed=1))
    out = tmp_path / "out"
    summary = export_chips(a, b, out, tile_size=32, val_fraction=0.0, min_valid=0.5)
    chips = chips_of(out, "train_a")
    # last row/column aligned to the raster edge, not dropped or padded
    assert {r for r, _ in chips.values()} == {0, 32, 64, 68}
    assert {c for _, c in chips.values()} == {0, 32, 58}
    assert summary.counts["a"] == {"train": 12, "val": 0}
    with rasterio.open(a) as src:
        for name, (r, c) in chips.items():
            w = Window(c, r, 32, 32)
            with rasterio.open(out / "train_a" / name) as chip:
                assert chip.crs == src.crs
                assert chip.transform == window_transform(w, src.transform)
                assert chip.dtypes[0] == dtype and chip.count == bands
                assert chip.nodata == 0
                np.testing.assert_array_equal(chip.read(), src.read(window=w))


def test_band_selection_order_and_internal_mask(make_raster, tmp_path):
    data = gradient(4, 64, 64, "uint16")
    mask = np.ones((64, 64), bool)
    mask[:10, :] = False
    a = make_raster("a.tif", data, mask=mask)
    b = make_raster("b.tif", gradient(3, 64, 64, "uint8"), nodata=255)
    out = tmp_path / "out"
    export_chips([a], [b], out, bands_a="4,2", bands_b=[3], tile_size=32, val_fraction=0, min_valid=0.5)
    meta = read_chips_metadata(out)
    assert meta["domains"]["a"]["bands"] == [4, 2]
    assert meta["domains"]["b"]["bands"] == [3]
    with rasterio.open(out / "train_a" / "a_r000000_c000000.tif") as chip:
        np.testing.assert_array_equal(chip.read(1), data[3, :32, :32])
        np.testing.assert_array_equal(chip.read(2), data[1, :32, :32])
        assert chip.nodata is None
        # the source's internal mask travels with the chip
        np.testing.assert_array_equal(chip.read_masks(1) > 0, mask[:32, :32])
        assert valid_mask(chip, chip.read(), chip.read_masks(), "multispectral").sum() == 22 * 32
    with rasterio.open(out / "train_b" / "b_r000000_c000000.tif") as chip:
        assert chip.count == 1 and chip.nodata == 255


# --------------------------------------------------------------------------- validity

def test_min_valid_nodata_nan_and_sar_nonpositive(make_raster, tmp_path):
    rng = np.random.default_rng(0)
    sar = rng.gamma(2.0, 0.05, (2, 64, 64)).astype("float32")
    sar[0, :32, :32] = 0.0           # non-positive backscatter: whole top-left chip invalid
    sar[1, :32, 32:] = np.nan        # NaN in one band: top-right chip invalid
    sar[0, 32:, :32][:4] = 0.0       # 4 rows of 32 invalid: 87.5% valid
    a = make_raster("sar.tif", sar)
    opt = gradient(3, 64, 64, "uint8")
    opt[:, :, :32] = 0
    opt[:, 40:, :32] = 0             # left column fully nodata
    b = make_raster("opt.tif", opt, nodata=0)
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, val_fraction=0, min_valid=0.9, kind_a="sar")
    assert set(chips_of(out, "train_a")) == {"sar_r000032_c000032.tif"}
    assert s.skipped["a"]["invalid"] == 3
    s = export_chips(a, b, out, tile_size=32, val_fraction=0, min_valid=0.8, kind_a="sar")
    assert set(chips_of(out, "train_a")) == {"sar_r000032_c000000.tif", "sar_r000032_c000032.tif"}
    assert set(chips_of(out, "train_b")) == {"opt_r000000_c000032.tif", "opt_r000032_c000032.tif"}
    assert s.skipped["b"]["invalid"] == 2


def test_min_valid_zero_still_needs_one_valid_pixel(make_raster, tmp_path):
    data = gradient(1, 64, 32, "uint8")
    data[:, :32] = 0
    a = make_raster("a.tif", data, nodata=0)
    b = make_raster("b.tif", gradient(1, 32, 32, "uint8"))
    s = export_chips(a, b, tmp_path / "out", tile_size=32, val_fraction=0, min_valid=0.0)
    assert s.counts["a"]["train"] == 1 and s.skipped["a"]["invalid"] == 1


# --------------------------------------------------------------------------- statistics

def _chip_pixels(out: Path, domain: str, kind: str) -> list[np.ndarray]:
    per_band = None
    for split in ("train", "val"):
        for p in sorted((out / f"{split}_{domain}").iterdir()):
            with rasterio.open(p) as chip:
                data = chip.read()
                valid = valid_mask(chip, data, chip.read_masks(), kind)
                vals = [data[i][valid].astype(np.float64) for i in range(chip.count)]
                per_band = vals if per_band is None else [np.concatenate([x, v]) for x, v in zip(per_band, vals)]
    return per_band


def _assert_stats(stats: list[dict], pixels: list[np.ndarray], db: bool = False) -> None:
    for s, v in zip(stats, pixels):
        assert s["count"] == v.size
        for key, ref in (("mean", v.mean()), ("std", v.std()), ("min", v.min()), ("max", v.max()),
                         ("p2", np.percentile(v, 2)), ("p98", np.percentile(v, 98))):
            assert s[key] == pytest.approx(ref, rel=1e-5, abs=1e-6), key
        if db:
            d = 10 * np.log10(np.maximum(v.astype(np.float32), 1e-6)).astype(np.float64)
            for key, ref in (("mean_db", d.mean()), ("std_db", d.std()), ("min_db", d.min()),
                             ("max_db", d.max()), ("p2_db", np.percentile(d, 2)), ("p98_db", np.percentile(d, 98))):
                assert s[key] == pytest.approx(ref, rel=1e-4, abs=1e-4), key


def test_statistics_equal_numpy_on_valid_pixels(make_raster, tmp_path):
    rng = np.random.default_rng(1)
    sar = rng.gamma(2.0, 0.05, (2, 96, 80)).astype("float32")
    sar[:, 5:20, 5:9] = 0.0
    sar[1, 40:45, 60:70] = np.nan
    a = make_raster("sar.tif", sar)
    ms = rng.integers(100, 4000, (4, 96, 96)).astype("uint16")
    mask = np.ones((96, 96), bool)
    mask[70:, 70:] = False
    b = make_raster("ms.tif", ms, mask=mask)
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, stride=24, val_fraction=0.2, min_valid=0.5, seed=1)
    assert s.domains["a"].kind == "sar" and s.domains["b"].kind == "multispectral"
    meta = read_chips_metadata(out)
    assert meta["domains"]["a"]["kind"] == "sar"
    _assert_stats(meta["domains"]["a"]["stats"], _chip_pixels(out, "a", "sar"), db=True)
    _assert_stats(meta["domains"]["b"]["stats"], _chip_pixels(out, "b", "multispectral"))
    spec = geogan.DomainSpec.from_dict(meta["domains"]["b"])
    assert spec.bands == (1, 2, 3, 4) and spec.dtype == "uint16"


def _export_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_chips_written_in_parallel_equal_those_of_one_thread(make_raster, tmp_path, monkeypatch):
    """Chips are encoded and written on a pool of threads while statistics stream in order: the
    export is byte for byte the one a single writing thread makes, metadata included."""
    from geogan.chips import writer

    rng = np.random.default_rng(7)
    sar = rng.gamma(2.0, 0.05, (2, 160, 128)).astype("float32")
    sar[:, :20, :50] = np.nan
    a = make_raster("sar.tif", sar)
    b = make_raster("ms.tif", gradient(4, 128, 160, "uint16", seed=3), nodata=0)
    exports = {}
    for threads in (1, 4):
        monkeypatch.setattr(writer, "writing_threads", lambda n=threads: n)
        exports[threads] = _export_files(export_chips(a, b, tmp_path / f"out{threads}", tile_size=32, stride=24,
                                                      val_fraction=0.2, min_valid=0.5, kind_a="sar",
                                                      units_a="linear").out_dir)
    assert len([n for n in exports[1] if n.endswith(".tif")]) >= 30
    assert exports[4] == exports[1]


@pytest.mark.parametrize("dtype,nodata", [("uint16", 0), ("int16", -9999), ("uint8", 255), ("float32", 0.0)])
def test_nodata_masks_from_the_data_equal_gdals(make_raster, tmp_path, monkeypatch, dtype, nodata):
    """Where GDAL's mask is a nodata value compared exactly it is computed from the pixels read
    (no second pass of GDAL over the window): the chips kept, skipped and their statistics are
    those of GDAL's own masks."""
    import geogan.chips.export as export
    import geogan.raster

    data = gradient(3, 96, 96, dtype, seed=5)
    data[:, :40, :20] = nodata            # most of chip (0, 0) nodata
    data[1, 50:53, 40:90] = nodata        # a few nodata pixels in one band
    a = make_raster("a.tif", data, nodata=nodata)
    b = make_raster("b.tif", gradient(1, 64, 64, "uint8"))
    with rasterio.open(a) as ds:
        src = inspect_domain([as_scene(a)], None, "a")[0]
        assert export.integer_nodata(ds, src) == (None if dtype == "float32" else nodata)
    fast = export_chips(a, b, tmp_path / "fast", tile_size=32, stride=16, val_fraction=0, min_valid=0.9)
    monkeypatch.setattr(export, "integer_nodata", lambda ds, src: None)
    monkeypatch.setattr(geogan.raster, "_masks_from_values", lambda ds, bands, data: None)  # GDAL's read_masks
    slow = export_chips(a, b, tmp_path / "slow", tile_size=32, stride=16, val_fraction=0, min_valid=0.9)
    assert fast.skipped == slow.skipped and fast.skipped["a"]["invalid"] >= 3
    assert _export_files(tmp_path / "fast") == _export_files(tmp_path / "slow")


def test_integer_nodata_only_where_gdals_mask_is_that_value(make_raster):
    import geogan.chips.export as export

    cases = {
        "float.tif": (gradient(1, 32, 32, "float32"), dict(nodata=0)),              # floats: not here
        "masked.tif": (gradient(1, 32, 32, "uint16"), dict(mask=np.eye(32) == 0)),  # an internal mask
        "none.tif": (gradient(1, 32, 32, "uint16"), {}),                            # no nodata at all
        "fraction.tif": (gradient(1, 32, 32, "uint8"), dict(nodata=0.5)),           # not a uint8 value
    }
    for name, (data, kwargs) in cases.items():
        path = make_raster(name, data, **kwargs)
        with rasterio.open(path) as ds:
            assert export.integer_nodata(ds, inspect_domain([as_scene(path)], None, "a")[0]) is None, name


# --------------------------------------------------------------------------- paired mode

def _ramp_a(rows: int = 96, cols: int = 96) -> np.ndarray:
    rr, cc = np.mgrid[0:rows, 0:cols].astype("float32")
    return np.stack([cc + 1, rr + 1])  # band 1 = column + 1, band 2 = row + 1 (in A pixels)


def _warp_to(src_path: Path, dst_path: Path, dst_crs: str, res: float) -> Path:
    from rasterio.warp import calculate_default_transform, reproject, Resampling

    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, dst_crs, src.width, src.height, *src.bounds, resolution=res)
        profile = src.profile | dict(crs=dst_crs, transform=transform, width=width, height=height, nodata=-9999.0)
        with rasterio.open(dst_path, "w", **profile) as dst:
            for i in range(1, src.count + 1):
                reproject(rasterio.band(src, i), rasterio.band(dst, i), dst_nodata=-9999.0,
                          resampling=Resampling.bilinear)
    return dst_path


@pytest.mark.parametrize("b_crs,b_res", [("EPSG:4326", 0.00007), ("EPSG:32634", 7.0)])
def test_paired_chips_line_up_on_the_ground(make_raster, tmp_path, b_crs, b_res):
    a = make_raster("scene.tif", _ramp_a(), origin=(690000.0, 5000000.0))
    ground = make_raster("ground.tif", _ramp_a(), origin=(690000.0, 5000000.0))
    b = _warp_to(ground, tmp_path / "other.tif", b_crs, b_res)
    out = tmp_path / "out"
    s = export_chips(a, b, out, paired=True, tile_size=32, val_fraction=0.25, min_valid=0.9,
                     kind_a="generic", kind_b="generic")
    assert s.counts["a"] == s.counts["b"] and s.counts["a"]["train"] > 0
    for split in ("train", "val"):
        assert set(chips_of(out, f"{split}_a")) == set(chips_of(out, f"{split}_b"))
    with rasterio.open(a) as src_a:
        a_crs = src_a.crs
    meta = read_chips_metadata(out)
    assert meta["paired"] is True and meta["resampling_b"] == "bilinear"
    assert rasterio.crs.CRS.from_wkt(meta["domains"]["b"]["crs"]) == a_crs
    assert meta["domains"]["b"]["resolution"] == [10.0, 10.0]
    n = 0
    for name in chips_of(out, "train_a"):
        with rasterio.open(out / "train_a" / name) as ca, rasterio.open(out / "train_b" / name) as cb:
            assert cb.crs == ca.crs and cb.transform == ca.transform and cb.shape == ca.shape
            da, db = ca.read(), cb.read()
            valid = valid_mask(cb, db, cb.read_masks(), "generic")
            assert valid.mean() >= 0.9
            # B's ramp, resampled back onto A's grid, names the same A pixel within one pixel
            assert np.abs(da[:, valid] - db[:, valid]).max() < 1.0
            n += 1
    assert n == s.counts["a"]["train"]


def test_paired_nearest_for_class_maps_and_one_b_for_all(make_raster, tmp_path):
    a1 = make_raster("a1.tif", gradient(3, 64, 64, "uint8"))
    a2 = make_raster("a2.tif", gradient(3, 64, 64, "uint8", seed=2), origin=(500320.0, 5000000.0))
    classes = np.random.default_rng(0).choice([3, 7, 11], size=(1, 90, 130)).astype("uint8")
    b = make_raster("classes.tif", classes, res=7.0)
    out = tmp_path / "out"
    s = export_chips([a1, a2], [b], out, paired=True, tile_size=32, val_fraction=0, kind_b="generic", min_valid=0.5)
    assert read_chips_metadata(out)["resampling_b"] == "nearest"
    names = set(chips_of(out, "train_b"))
    assert names == set(chips_of(out, "train_a"))
    assert any(n.startswith("a1_") for n in names) and any(n.startswith("a2_") for n in names)
    for name in names:
        with rasterio.open(out / "train_b" / name) as chip:
            vals = chip.read(1)[chip.read_masks(1) > 0]
            assert set(np.unique(vals)) <= {3, 7, 11}
    assert s.skipped["b"]["invalid"] + s.skipped["a"]["invalid"] + s.counts["a"]["train"] == 8


def test_paired_needs_matching_counts_and_overlap(make_raster, tmp_path):
    a1 = make_raster("a1.tif", gradient(1, 64, 64, "uint8"))
    a2 = make_raster("a2.tif", gradient(1, 64, 64, "uint8"))
    b1 = make_raster("b1.tif", gradient(1, 64, 64, "uint8"))
    b2 = make_raster("b2.tif", gradient(1, 64, 64, "uint8"))
    b3 = make_raster("b3.tif", gradient(1, 64, 64, "uint8"))
    with pytest.raises(ConfigError, match="one B raster per A raster"):
        export_chips([a1, a2], [b1, b2, b3], tmp_path / "o", paired=True, tile_size=32)
    far = make_raster("far.tif", gradient(1, 64, 64, "uint8"), origin=(900000.0, 1000000.0))
    with pytest.raises(RasterError, match="far.tif.*does not overlap"):
        export_chips([a1], [far], tmp_path / "o", paired=True, tile_size=32)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- AOI

def _aoi_lonlat(bounds_utm: tuple[float, float, float, float]) -> list[list[float]]:
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = bounds_utm
    return [list(t.transform(x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]


@pytest.mark.parametrize("form", ["geojson_file", "feature_literal", "wkt_3857", "legacy_crs"])
def test_aoi_in_another_crs_keeps_only_intersecting_chips(make_raster, tmp_path, form):
    # raster 128x128 px at 10 m from (500000, 5000000); AOI = the top-left 600 m x 600 m
    a = make_raster("a.tif", gradient(1, 128, 128, "uint8"))
    b = make_raster("b.tif", gradient(1, 128, 128, "uint8"))
    box = (500005.0, 5000000.0 - 595.0, 500595.0, 4999999.0)
    ring = _aoi_lonlat(box)
    kwargs = {}
    if form == "geojson_file":
        aoi = tmp_path / "aoi.geojson"
        aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    elif form == "feature_literal":
        aoi = json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}})
    elif form == "wkt_3857":
        from pyproj import Transformer

        t = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
        pts = ", ".join("%f %f" % t.transform(*p) for p in ring)
        aoi = tmp_path / "aoi.wkt"
        aoi.write_text(f"POLYGON (({pts}))")
        kwargs["aoi_crs"] = "EPSG:3857"
    else:
        x0, y0, x1, y1 = box
        aoi = json.dumps({"type": "Polygon", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
                          "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]})
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, val_fraction=0, min_valid=0.5, aoi=aoi, **kwargs)
    # 600 m = 60 px: chips at offsets 0 and 32 in each direction overlap it, 64 and 96 do not
    assert set(chips_of(out, "train_a").values()) == {(0, 0), (0, 32), (32, 0), (32, 32)}
    assert s.skipped["a"]["outside_aoi"] == 12
    assert read_chips_metadata(out)["aoi"]["a"]["wkt"].startswith(("POLYGON", "MULTIPOLYGON"))


def test_aoi_errors(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(1, 64, 64, "uint8"))
    b = make_raster("b.tif", gradient(1, 64, 64, "uint8"))
    out = tmp_path / "out"
    (tmp_path / "bad.geojson").write_text("{not json")
    (tmp_path / "empty.geojson").write_text("")
    cases = [
        (tmp_path / "missing.geojson", InputNotFoundError, "missing.geojson.*no such file"),
        (tmp_path / "bad.geojson", InputError, "bad.geojson.*not valid GeoJSON"),
        (tmp_path / "empty.geojson", InputError, "empty.geojson.*empty"),
        ("POINT (15 45)", InputError, "Point, not a polygon"),
        ("POLYGON EMPTY", InputError, "empty"),
        ('{"type": "FeatureCollection", "features": []}', InputError, "no geometry"),
        ("POLYGON ((100 10, 101 10, 101 11, 100 10))", InputError, "does not overlap any domain a raster"),
    ]
    for aoi, exc, msg in cases:
        with pytest.raises(exc, match=msg) as info:
            export_chips(a, b, out, tile_size=32, aoi=aoi)
        assert "\n" not in str(info.value)
    assert not out.exists()


def test_load_aoi_dict_and_geometry():
    import shapely

    aoi = load_aoi({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})
    assert aoi.crs.to_epsg() == 4326 and aoi.geometry.area == pytest.approx(0.5)
    aoi = load_aoi(shapely.box(0, 0, 10, 10), aoi_crs="EPSG:32633")
    assert aoi.crs.to_epsg() == 32633


# --------------------------------------------------------------------------- validation split

def test_val_split_is_spatially_disjoint(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(2, 200, 240, "uint16"))
    b = make_raster("b.tif", gradient(3, 200, 200, "uint8"))
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, stride=16, val_fraction=0.2, seed=5)
    for d in ("a", "b"):
        train = list(chips_of(out, f"train_{d}").values())
        val = list(chips_of(out, f"val_{d}").values())
        assert val and train
        assert 0.1 <= len(val) / (len(val) + len(train) + s.skipped[d]["val_overlap"]) <= 0.3
        for r, c in train:
            for vr, vc in val:  # no train chip window intersects any val chip window
                assert abs(r - vr) >= 32 or abs(c - vc) >= 32
    meta = read_chips_metadata(out)
    assert meta["domains"]["a"]["chips"] == s.counts["a"]
    assert len(list((out / "val_a").iterdir())) == s.counts["a"]["val"]
    # same seed, same split; another seed, another split
    val5 = set(chips_of(out, "val_a"))
    again = export_chips(a, b, out, tile_size=32, stride=16, val_fraction=0.2, seed=5)
    assert again.counts == s.counts and set(chips_of(out, "val_a")) == val5
    export_chips(a, b, out, tile_size=32, stride=16, val_fraction=0.2, seed=6)
    assert set(chips_of(out, "val_a")) != val5


# --------------------------------------------------------------------------- output dir lifecycle

def test_rerun_replaces_previous_export_cleanly(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(1, 96, 96, "uint8"))
    b = make_raster("b.tif", gradient(1, 96, 96, "uint8"))
    out = tmp_path / "out"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    first = set(chips_of(out, "train_a"))
    export_chips(a, b, out, tile_size=48, val_fraction=0)
    second = set(chips_of(out, "train_a"))
    assert second == {f"a_r{r:06d}_c{c:06d}.tif" for r in (0, 48) for c in (0, 48)}
    assert first - second  # chips of the first export that the second does not have are gone
    with rasterio.open(out / "train_a" / "a_r000000_c000000.tif") as chip:
        assert chip.width == 48
    assert read_chips_metadata(out)["tile_size"] == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "out"]  # no temp siblings


def test_refuses_foreign_directory_and_keeps_user_files(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(1, 64, 64, "uint8"))
    b = make_raster("b.tif", gradient(1, 64, 64, "uint8"))
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="mine.*not a geogan chips export"):
        export_chips(a, b, user, tile_size=32)
    assert (user / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    export_chips(a, b, out, tile_size=32)
    (out / "notes.txt").write_text("mine too")
    with pytest.raises(OutputError, match="notes.txt"):
        export_chips(a, b, out, tile_size=32)
    assert (out / "notes.txt").exists() and (out / METADATA_NAME).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_chips(a, b, empty, tile_size=32)
    assert (empty / METADATA_NAME).is_file()
    with pytest.raises(OutputError, match="is a file"):
        export_chips(a, b, a, tile_size=32)


def test_cancellation_leaves_nothing(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(1, 96, 96, "uint8"))
    b = make_raster("b.tif", gradient(1, 96, 96, "uint8"))
    out = tmp_path / "out"
    calls = []

    class StopAfter:
        def update(self, done, total, message=""):
            calls.append((done, total))

        def cancelled(self):
            return len(calls) >= 5

    with pytest.raises(Cancelled):
        export_chips(a, b, out, tile_size=32, progress=StopAfter())
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]
    # a cancelled re-run keeps the previous export intact
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    before = set(chips_of(out, "train_a"))
    calls.clear()
    with pytest.raises(Cancelled):
        export_chips(a, b, out, tile_size=48, progress=StopAfter())
    assert set(chips_of(out, "train_a")) == before
    assert read_chips_metadata(out)["tile_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "out"]


def test_progress_reports_every_chip(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(1, 64, 64, "uint8"))
    b = make_raster("b.tif", gradient(1, 64, 96, "uint8"))
    seen = []
    export_chips(a, b, tmp_path / "out", tile_size=32, val_fraction=0, progress=lambda d, t, m: seen.append((d, t)))
    assert seen[-1] == (10, 10) and [d for d, _ in seen] == list(range(1, 11))


# --------------------------------------------------------------------------- several rasters, small rasters

def test_several_rasters_per_domain_and_small_raster_skipped(make_raster, tmp_path, caplog):
    sub = tmp_path / "other"
    sub.mkdir()
    a1 = make_raster("scene.tif", gradient(2, 64, 64, "uint16"))
    from conftest import write_raster

    a2 = write_raster(sub / "scene.tif", gradient(2, 64, 64, "uint16", seed=3))
    tiny = make_raster("tiny.tif", gradient(2, 20, 20, "uint16"))
    b = make_raster("b.tif", gradient(3, 64, 64, "uint8"))
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="geogan.chips"):
        s = export_chips([a1, a2, tiny], b, out, tile_size=32, val_fraction=0)
    assert "tiny.tif" in caplog.text and "smaller than one" in caplog.text
    names = set(chips_of(out, "train_a"))
    assert {n.rsplit("_r", 1)[0] for n in names} == {"scene", "scene-2"}
    assert s.counts["a"]["train"] == 8 and s.small_rasters["a"] == [str(tiny.resolve())]
    assert read_chips_metadata(out)["domains"]["a"]["sources"] == [str(a1.resolve()), str(a2.resolve()), str(tiny.resolve())]
    with pytest.raises(RasterError, match="tiny.tif.*smaller than one 32x32 tile"):
        export_chips([tiny], b, tmp_path / "o2", tile_size=32)


# --------------------------------------------------------------------------- bad inputs

def test_bad_inputs_are_one_line_errors_naming_the_file(make_raster, tmp_path):
    good = make_raster("good.tif", gradient(3, 64, 64, "uint8"))
    b = make_raster("b.tif", gradient(3, 64, 64, "uint8"))
    other_dtype = make_raster("u16.tif", gradient(3, 64, 64, "uint16"))
    two_bands = make_raster("two.tif", gradient(2, 64, 64, "uint8"))
    no_crs = make_raster("nocrs.tif", gradient(3, 64, 64, "uint8"), crs=None)
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    empty = make_raster("empty.tif", np.zeros((1, 64, 64), "uint8"), nodata=0)
    out = tmp_path / "out"
    cases = [
        (dict(a=tmp_path / "missing.tif"), InputNotFoundError, "missing.tif.*no such file"),
        (dict(a=text), RasterError, "notes.tif.*not a readable raster"),
        (dict(a=no_crs), RasterError, "nocrs.tif.*no CRS"),
        (dict(bands_a="1,4"), BandMismatchError, "good.tif.*band\\(s\\) 4 do not exist"),
        (dict(a=[good, other_dtype]), BandMismatchError, "u16.tif.*dtype uint16 differs"),
        (dict(a=[good, two_bands]), BandMismatchError, "two.tif.*2 band\\(s\\)"),
        (dict(tile_size=8), ConfigError, "--tile-size 8"),
        (dict(stride=0), ConfigError, "--stride 0"),
        (dict(stride=64), ConfigError, "--stride 64.*must not exceed"),
        (dict(min_valid=1.5), ConfigError, "--min-valid 1.5"),
        (dict(val_fraction=1.0), ConfigError, "--val-fraction 1.0"),
        (dict(val_fraction=-0.1), ConfigError, "--val-fraction"),
        (dict(kind_a="lidar"), ConfigError, "--kind-a 'lidar': unknown kind"),
        (dict(a=[good, good]), ConfigError, "good.tif.*given twice"),
        (dict(a=empty), InputError, "empty.tif.*no training chips.*4 below --min-valid 0.95"),
    ]
    for over, exc, msg in cases:
        kwargs = dict(a=good, b=b, out=out, tile_size=32, stride=None)
        kwargs.update(over)
        with pytest.raises(exc, match=msg) as info:
            export_chips(kwargs.pop("a"), kwargs.pop("b"), kwargs.pop("out"), **kwargs)
        assert isinstance(info.value, GeoganError) and "\n" not in str(info.value), str(info.value)
        assert not out.exists(), over
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_read_chips_metadata_validates(make_raster, tmp_path):
    with pytest.raises(InputNotFoundError):
        read_chips_metadata(tmp_path / "nope")
    with pytest.raises(InputError, match="not a geogan chips export"):
        read_chips_metadata(tmp_path)
    a = make_raster("a.tif", gradient(1, 64, 64, "uint8"))
    b = make_raster("b.tif", gradient(1, 64, 64, "uint8"))
    out = tmp_path / "out"
    summary = export_chips(a, b, out, tile_size=32)
    meta = read_chips_metadata(out)
    assert summary.metadata_path == out / METADATA_NAME
    assert meta["format"] == "geogan-chips" and meta["format_version"] == 1
    assert meta["skipped"]["a"]["invalid"] == 0
    assert meta["domains"]["a"]["kind"] == "optical"  # inferred (uint8, 1 band) and recorded
    meta["format_version"] = 99
    (out / METADATA_NAME).write_text(json.dumps(meta))
    with pytest.raises(InputError, match="out.*newer"):
        read_chips_metadata(out)


def test_nan_nodata_float_chips_and_no_sidecar_masks(make_raster, tmp_path):
    dem = np.random.default_rng(4).normal(300, 50, (1, 64, 64)).astype("float32")
    dem[0, :20, :20] = np.nan
    a = make_raster("dem.tif", dem, nodata=float("nan"))
    mask = np.ones((64, 64), bool)
    mask[40:, :] = False
    b = make_raster("img.tif", gradient(3, 64, 64, "uint8"), mask=mask)
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, val_fraction=0, min_valid=0.5)
    assert s.domains["a"].kind == "dsm" and math.isnan(s.domains["a"].nodata)
    meta = read_chips_metadata(out)
    assert meta["domains"]["a"]["nodata"] == "nan"
    assert math.isnan(geogan.DomainSpec.from_dict(meta["domains"]["a"]).nodata)
    with rasterio.open(out / "train_a" / "dem_r000000_c000000.tif") as chip:
        assert math.isnan(chip.nodata)
        assert (chip.read_masks(1) == 0).sum() == 400
    assert s.counts["b"]["train"] == 2 and s.skipped["b"]["invalid"] == 2  # rows 32-63 are 75% masked
    assert not list(out.rglob("*.msk")) and not list(out.rglob("*.aux.xml"))


def test_paired_b_validity_follows_its_footprint_and_mask(make_raster, tmp_path):
    a = make_raster("a.tif", gradient(3, 64, 96, "uint8"))
    # B covers only A's left 60 columns (at 5 m), its first 10 rows masked internally
    mask = np.ones((128, 120), bool)
    mask[:10] = False
    b = make_raster("b.tif", gradient(1, 128, 120, "uint16"), res=5.0, mask=mask)
    out = tmp_path / "out"
    s = export_chips(a, b, out, paired=True, tile_size=32, val_fraction=0, min_valid=0.0, kind_b="optical")
    assert s.counts["a"]["train"] == s.counts["b"]["train"] == 4  # columns 0 and 32; column 64 is outside B
    assert s.skipped["b"]["invalid"] == 2 and s.skipped["a"]["partner_invalid"] == 2
    with rasterio.open(out / "train_b" / "a_r000000_c000032.tif") as chip:
        m = chip.read_masks(1) > 0
        assert m[:5].sum() == 0 and m[5:, :28].all() and not m[:, 28:].any()  # 10 B rows = 5 A rows; B ends at col 60
        assert chip.dtypes[0] == "uint16" and chip.res == (10.0, 10.0)


# --------------------------------------------------------------------------- what training reads back

def test_training_reads_chip_sizes_from_the_metadata(make_raster, tmp_path, monkeypatch):
    import geogan.data as data

    a = make_raster("a.tif", gradient(2, 128, 128, "uint16"))
    b = make_raster("b.tif", gradient(3, 128, 128, "uint8"))
    out = tmp_path / "out"
    s = export_chips(a, b, out, tile_size=32, val_fraction=0.25)
    assert read_chips_metadata(out)["chip_size"] == [32, 32]
    opened = []
    real = data.check_chip
    monkeypatch.setattr(data, "check_chip", lambda path, spec: opened.append(path) or real(path, spec))
    export = data.open_chips(out)
    assert export.chip_size == (32, 32) and len(export.files["train_a"]) == s.counts["a"]["train"]
    assert len(opened) == 4  # the first chip of each split, not every chip
    next(iter((out / "train_b").iterdir())).unlink()
    with pytest.raises(InputError, match=r"train_b.*holds 11 chip\(s\) but geogan_chips.json says 12"):
        data.open_chips(out)
    meta = read_chips_metadata(out)
    del meta["chip_size"]  # an export from before chip sizes were recorded: every chip is opened
    meta["domains"]["b"]["chips"]["train"] -= 1
    (out / METADATA_NAME).write_text(json.dumps(meta))
    opened.clear()
    assert data.open_chips(out).chip_size == (32, 32) and len(opened) == sum(s.counts[d]["train"] + s.counts[d]["val"]
                                                                               for d in "ab") - 1


def test_sar_db_chips_are_valid_when_training_reads_them(make_raster, tmp_path):
    from geogan.data import open_chips, read_chip

    db = np.random.default_rng(0).normal(-14, 4, (2, 64, 64)).astype("float32")
    a = make_raster("s1_VV.tif", db)
    b = make_raster("b.tif", gradient(3, 64, 64, "uint8"))
    out = tmp_path / "out"
    export_chips(a, b, out, tile_size=32, val_fraction=0)
    export = open_chips(out)
    assert export.specs["a"].units == "db"
    x, valid = read_chip(export.files["train_a"][0], export.specs["a"])
    assert valid.all() and np.isfinite(x).all() and -1.5 < float(x.mean()) < 1.5


def test_all_chips_dropped_for_negative_values_ends_with_a_db_hint(make_raster, tmp_path):
    db = np.random.default_rng(0).normal(-14, 4, (2, 256, 256)).astype("float32")
    for r in (0, 96, 192):  # the nine windows sampled for units inference are nodata: no sample to judge by
        for c in (0, 96, 192):
            db[:, r:r + 64, c:c + 64] = np.nan
    a = make_raster("scene.tif", db, nodata=float("nan"))
    b = make_raster("b.tif", gradient(3, 64, 64, "uint8"))
    with pytest.raises(InputError) as info:
        export_chips(a, b, tmp_path / "out", tile_size=32, val_fraction=0, kind_a="sar")
    message = str(info.value)
    assert "no training chips kept for domain a (64 below --min-valid 0.95 (" in message
    assert "only for negative values, which linear power or amplitude cannot be: looks like dB, use --units-a db" in message
    s = export_chips(a, b, tmp_path / "out", tile_size=32, val_fraction=0, kind_a="sar", units_a="db")
    assert s.domains["a"].units == "db" and s.counts["a"]["train"] > 0

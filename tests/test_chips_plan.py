"""The export plan without files: validation split units and fractions, kinds and units chosen
from samples, resampling, per-domain AOI, options."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from geogan.chips import ExportOptions, export_chips, load_aoi, plan_split, read_chips_metadata
from geogan.chips.plan import choose_domain, plan_domain, plan_export, resampling_for
from geogan.chips.sources import Source, SourceSample
from geogan.errors import ConfigError, InputError
from geogan.scenes import Scene
from geogan.tiling import grid_offsets

UTM = CRS.from_epsg(32633)


def source(name: str, height: int, width: int, *, x0: float = 500000.0, y0: float = 5000000.0,
           dtype: str = "uint8", bands=(1,), files=None) -> Source:
    parts = tuple(files or (f"/data/{name}.tif",))
    return Source(scene=Scene(parts), label=",".join(parts), name=name, bands=tuple(bands), count=len(bands),
                  dtype=dtype, nodata=None, crs=UTM, transform=Affine(10.0, 0, x0, 0, -10.0, y0), width=width,
                  height=height, res=(10.0, 10.0), descriptions=(None,) * len(bands), has_mask=False, all_valid=True)


def candidates(shapes: list[tuple[int, int]], tile: int, stride: int) -> list[tuple[int, int, int]]:
    return [(ri, r, c) for ri, (h, w) in enumerate(shapes)
            for r in grid_offsets(h, tile, stride) for c in grid_offsets(w, tile, stride)]


# ------------------------------------------------------------------------------- split

@pytest.mark.parametrize("windows_per_side", [1, 2])
def test_six_small_rasters_give_one_whole_raster_and_say_so(windows_per_side):
    tile = 60
    cands = candidates([(tile * windows_per_side,) * 2] * 6, tile, tile)
    split = plan_split(cands, tile, 0.1, seed=0)
    assert split.unit == "raster" and split.units == 6 and split.val_units == 1
    val_rasters = {ri for (ri, _, _), lab in zip(cands, split.labels) if lab == "val"}
    train_rasters = {ri for (ri, _, _), lab in zip(cands, split.labels) if lab == "train"}
    assert len(val_rasters) == 1 and not val_rasters & train_rasters  # whole rasters, never half
    assert split.achieved == pytest.approx(1 / 6)
    assert split.warning() == ("validation is 1 of 6 rasters = 17 % of the chip windows (asked 10 %): a whole "
                               "raster is the smallest validation unit when rasters are smaller than a block")


def test_the_fraction_is_honoured_when_enough_units_exist():
    for n_rasters, fraction in ((40, 0.1), (20, 0.25), (100, 0.05)):
        cands = candidates([(64, 64)] * n_rasters, 32, 32)
        split = plan_split(cands, 32, fraction, seed=1)
        assert split.unit == "raster" and split.achieved == pytest.approx(fraction, abs=0.02)
        assert split.warning() is None
    cands = candidates([(3000, 3000)], 256, 256)
    split = plan_split(cands, 256, 0.1, seed=2)
    assert split.unit == "block" and split.achieved == pytest.approx(0.1, abs=0.025) and split.warning() is None


def test_one_raster_is_split_by_blocks_and_one_window_cannot_be():
    split = plan_split(candidates([(120, 120)], 60, 60), 60, 0.1, seed=0)  # one 2 x 2 patch
    assert (split.unit, split.units, split.val_units) == ("block", 4, 1)
    assert "1 of 4 blocks of 60 px = 25 %" in split.warning()
    single = plan_split(candidates([(60, 60)], 60, 60), 60, 0.1, seed=0)
    assert single.val_units == 0 and single.labels == ("train",)
    assert single.warning().startswith("no validation chips: none: 1 chip window(s) in 1 unit(s) cannot be split")


def test_two_medium_rasters_are_cut_into_blocks_rather_than_half_for_validation():
    cands = candidates([(1000, 1000)] * 2, 256, 256)
    split = plan_split(cands, 256, 0.1, seed=0)
    assert split.unit == "block" and split.achieved == pytest.approx(0.1, abs=0.03)


def test_no_training_window_shares_a_pixel_with_validation():
    cands = candidates([(600, 600)], 32, 16)
    split = plan_split(cands, 32, 0.2, seed=3)
    val = [c for c, lab in zip(cands, split.labels) if lab == "val"]
    train = [c for c, lab in zip(cands, split.labels) if lab == "train"]
    assert val and train and "val_overlap" in split.labels
    for _, r, c in train:
        assert all(abs(r - vr) >= 32 or abs(c - vc) >= 32 for _, vr, vc in val)


def test_six_small_raster_files_through_export(make_raster, tmp_path, caplog):
    rng = np.random.default_rng(0)
    a = [make_raster(f"a{i}.tif", rng.integers(1, 255, (1, 64, 64)).astype("uint8"), origin=(500000.0 + 1000 * i, 5e6))
         for i in range(6)]
    b = make_raster("b.tif", rng.integers(1, 255, (3, 320, 320)).astype("uint8"))
    with caplog.at_level(logging.WARNING, logger="geogan"):
        s = export_chips(a, b, tmp_path / "out", tile_size=32, val_fraction=0.1, seed=0)
    assert s.counts["a"] == {"train": 20, "val": 4}  # one of six rasters, all four of its chips
    assert "domain a: validation is 1 of 6 rasters = 17 % of the chip windows (asked 10 %)" in caplog.text
    assert s.counts["b"]["val"] / (s.counts["b"]["val"] + s.counts["b"]["train"]) == pytest.approx(0.1, abs=0.025)
    meta = read_chips_metadata(tmp_path / "out")
    assert meta["val_split"]["a"]["unit"] == "raster" and meta["val_split"]["a"]["val_units"] == 1
    assert meta["val_split"]["b"]["unit"] == "block"


# ------------------------------------------------------------------------------- kinds and units

def sample(values, image=None, label="/data/x.tif") -> SourceSample:
    return SourceSample(label=label, values=np.asarray(values, np.float64), image=image)


def test_kinds_and_units_from_names_and_values():
    db = np.random.default_rng(0).normal(-14, 4, 5000)
    s1 = source("s1", 120, 120, dtype="float32", bands=(1, 2), files=("/d/x_VV.tif", "/d/x_VH.tif"))
    choice = choose_domain("a", [s1], [sample(db)])
    assert (choice.kind, choice.units, choice.resampling) == ("sar", "db", "bilinear")
    assert "x_VV.tif" in choice.kind_reason and "negative" in choice.units_reason
    linear = choose_domain("a", [source("plain", 64, 64, dtype="float32", bands=(1, 2))],
                           [sample(np.random.default_rng(1).gamma(2, 0.05, 5000))])
    assert (linear.kind, linear.units) == ("sar", "linear")
    stated = choose_domain("b", [source("m", 64, 64)], [], kind="optical")
    assert (stated.kind, stated.kind_reason, stated.units) == ("optical", "stated with --kind-b", None)


def test_stated_units_that_contradict_the_values_name_the_file():
    db = np.random.default_rng(0).normal(-14, 4, 5000)
    s1 = source("s1", 64, 64, dtype="float32", bands=(1, 2))
    with pytest.raises(ConfigError, match=r"^'/data/vv.tif': stated units linear but 100% of the values are negative"):
        choose_domain("a", [s1], [sample(db, label="/data/vv.tif")], kind="sar", units="linear")
    with pytest.raises(ConfigError, match="--units-a db: units are for SAR, but domain a .* is optical"):
        choose_domain("a", [source("rgb", 64, 64, bands=(1, 2, 3))], [sample(np.arange(100))], units="db")
    with pytest.raises(ConfigError, match="--units-b 'decibel': unknown SAR units"):
        choose_domain("b", [s1], [], kind="sar", units="decibel")


def test_nearest_only_for_class_maps():
    assert resampling_for("generic", "uint8", np.array([1, 2, 3, 3])) == "nearest"
    assert resampling_for("generic", "uint8") == "nearest"
    assert resampling_for("generic", "uint16", np.arange(5000)) == "bilinear"  # two reflectance bands
    assert resampling_for("generic", "float32", np.array([1.0, 2.0])) == "bilinear"
    assert resampling_for("dsm", "int16", np.array([1, 2])) == "bilinear"
    assert resampling_for("optical", "uint8") == "bilinear"


# ------------------------------------------------------------------------------- AOI per domain

def _box_wkt(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def test_per_domain_aoi_and_a_miss_is_one_line():
    # A around x 500000, B 100 km east: one AOI for both could not fit unpaired data from two places
    a, b = source("a", 128, 128), source("b", 128, 128, x0=600000.0)
    aoi_a = load_aoi(_box_wkt(500005, 4999405, 500595, 4999999), "EPSG:32633")
    aoi_b = load_aoi(_box_wkt(600005, 4999405, 600300, 4999999), "EPSG:32633")
    plan = plan_export({"a": [a], "b": [b]}, ExportOptions(tile_size=32, val_fraction=0), {"a": aoi_a, "b": aoi_b})
    assert {c.key for c in plan.a.chips} == {(0, 0), (0, 32), (32, 0), (32, 32)} and plan.a.outside_aoi == 12
    assert {c.key for c in plan.b.chips} == {(0, 0), (32, 0)} and plan.b.outside_aoi == 14
    with pytest.raises(InputError, match="does not overlap any domain b raster .*'/data/b.tif'") as info:
        plan_export({"a": [a], "b": [b]}, ExportOptions(tile_size=32), {"a": aoi_a, "b": aoi_a})
    assert "\n" not in str(info.value)


def test_paired_windows_follow_both_aois():
    a, b = source("a", 128, 128), source("b", 128, 128)
    left = load_aoi(_box_wkt(500005, 4998725, 500595, 4999999), "EPSG:32633")   # columns 0-59
    top = load_aoi(_box_wkt(500005, 4999405, 501275, 4999999), "EPSG:32633")    # rows 0-59
    plan = plan_export({"a": [a], "b": [b]}, ExportOptions(tile_size=32, val_fraction=0, paired=True),
                       {"a": left, "b": top})
    assert {c.key for c in plan.a.chips} == {(0, 0), (0, 32), (32, 0), (32, 32)}
    assert plan.b.chips == plan.a.chips and plan.partners == (0,)
    far = load_aoi(_box_wkt(501000, 4998725, 501275, 4999000), "EPSG:32633")
    with pytest.raises(InputError, match="do not overlap each other on any domain a raster"):
        plan_domain("a", [a], ExportOptions(tile_size=32), [left, far], seed=0)


def test_an_aoi_on_a_rotated_grid_selects_the_windows_it_covers():
    """A grid rotated by 30°: the AOI is the footprint of pixels 40-56 (rows and cols), so exactly
    the windows holding them are kept — chosen in pixel space, not from two-corner bounds."""
    import dataclasses

    import shapely

    rotated = Affine.translation(500000.0, 5000000.0) * Affine.rotation(30) * Affine.scale(10.0, -10.0)
    src = dataclasses.replace(source("r", 128, 128), transform=rotated)
    corners = [rotated * xy for xy in ((40, 40), (56, 40), (56, 56), (40, 56))]
    aoi = load_aoi(shapely.Polygon(corners).wkt, "EPSG:32633")
    plan = plan_domain("a", [src], ExportOptions(tile_size=32, val_fraction=0), [aoi], seed=0)
    assert {c.key for c in plan.chips} == {(32, 32)} and plan.outside_aoi == 15
    plan = plan_domain("a", [src], ExportOptions(tile_size=32, stride=16, val_fraction=0), [aoi], seed=0)
    assert {c.key for c in plan.chips} == {(r, c) for r in (16, 32, 48) for c in (16, 32, 48)}


def test_a_small_aoi_on_a_huge_raster_tests_only_the_windows_under_it():
    """70,000² px at tile 64: 1.2 million windows, one AOI of 5 km² — planned without a window per pixel."""
    src = source("big", 70000, 70000)
    aoi = load_aoi(_box_wkt(510000, 4980000, 515000, 4985000), "EPSG:32633")
    plan = plan_domain("a", [src], ExportOptions(tile_size=64, val_fraction=0), [aoi], seed=0)
    keys = {c.key for c in plan.chips}
    rows = {r for r, _ in keys}
    assert len(keys) == 81 and min(rows) == 1472 and max(rows) == 1984  # rows 1500-2000 at 10 m
    assert plan.outside_aoi == len(grid_offsets(70000, 64, 64)) ** 2 - 81


def test_options_are_checked():
    with pytest.raises(ConfigError, match="--tile-size 8"):
        ExportOptions(tile_size=8)
    assert ExportOptions(tile_size=64).stride == 64

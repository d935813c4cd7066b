"""Chip export on the real BigEarthNet patches in sample_data/bigearthnet/ (see its README.md):
Sentinel-1 GRD backscatter in dB, one float32 file per polarisation, and Sentinel-2 L2A
reflectance, one uint16 file per band at 10 m and 20 m, six co-registered S1/S2 pairs.

Each test checks what a user of these products needs: the kinds and units found, every valid
source pixel in a chip with its value unchanged, chips on the source grid, and paired B chips
on A's exact grid."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geogan.chips import export_chips, read_chips_metadata
from geogan.raster import open_raster

ROOT = Path(__file__).resolve().parent.parent / "sample_data" / "bigearthnet"
PATCHES = sorted(p.name for p in (ROOT / "s1").iterdir() if p.is_dir()) if (ROOT / "s1").is_dir() else []
pytestmark = pytest.mark.skipif(len(PATCHES) != 6, reason="the BigEarthNet sample patches are not in sample_data/")


def s1_scene(patch: str) -> str:
    folder = ROOT / "s1" / patch
    return f"{folder / patch}_VV.tif,{folder / patch}_VH.tif"


def s2_patch(s1_patch: str) -> str:
    meta = json.loads((ROOT / "s1" / s1_patch / f"{s1_patch}_labels_metadata.json").read_text())
    return meta["corresponding_s2_patch"]


def s2_scene(patch: str, bands=("B04", "B03", "B02")) -> str:
    folder = ROOT / "s2" / patch
    return ",".join(f"{folder / patch}_{b}.tif" for b in bands)


def chips(out: Path, domain: str) -> dict[str, Path]:
    return {p.name: p for split in ("train", "val") for p in sorted((out / f"{split}_{domain}").glob("*.tif"))}


def source_window(scene: str, window: Window) -> tuple[np.ndarray, object, object]:
    """Pixels of a scene in ``window`` as geogan stacks them, and the scene's transform and CRS."""
    with open_raster(scene) as ds:
        return ds.read(window=window), ds.transform, ds.crs


def assert_every_source_pixel_in_a_chip(out: Path, domain: str, scenes: dict[str, str], tile: int) -> None:
    """Chips named SCENE_rROW_cCOL.tif hold exactly the source pixels of their window, on its grid,
    and together they cover every pixel of every source (all pixels of these patches are valid)."""
    found = chips(out, domain)
    covered = {name: np.zeros((120, 120), bool) for name in scenes}
    for chip_name, path in found.items():
        stem, rest = chip_name.rsplit("_r", 1)
        row, col = int(rest[:6]), int(rest.split("_c")[1][:6])
        window = Window(col, row, tile, tile)
        expected, transform, crs = source_window(scenes[stem], window)
        with rasterio.open(path) as chip:
            assert chip.crs == crs and chip.transform == window_transform(window, transform)
            np.testing.assert_array_equal(chip.read(), expected)
        covered[stem][row:row + tile, col:col + tile] = True
    assert all(c.all() for c in covered.values()), "a source pixel is in no chip"


@pytest.mark.parametrize("tile", [60, 120])
def test_s1_db_and_s2_band_files_unpaired(tmp_path, tile):
    a = {f"{p}": s1_scene(p) for p in PATCHES}
    b = {s2_patch(p): s2_scene(s2_patch(p)) for p in PATCHES}
    out = tmp_path / "chips"
    s = export_chips(list(a.values()), list(b.values()), out, tile_size=tile, val_fraction=0.0)
    spec_a, spec_b = s.domains["a"], s.domains["b"]
    assert (spec_a.kind, spec_a.units, spec_a.dtype, spec_a.count) == ("sar", "db", "float32", 2)
    assert "polarisation" in s.kind_reasons["a"] and "negative" in s.units_reasons["a"]
    assert (spec_b.kind, spec_b.units, spec_b.dtype, spec_b.count) == ("optical", None, "uint16", 3)
    per_patch = (120 // tile) ** 2
    assert s.counts["a"] == s.counts["b"] == {"train": 6 * per_patch, "val": 0}
    assert s.skipped["a"]["invalid"] == 0  # dB values are valid although negative
    assert_every_source_pixel_in_a_chip(out, "a", {Path(v.split(",")[0]).name[:-7]: v for v in a.values()}, tile)
    assert_every_source_pixel_in_a_chip(out, "b", {k: v for k, v in b.items()}, tile)
    meta = read_chips_metadata(out)
    assert meta["domains"]["a"]["units"] == "db" and meta["chip_size"] == [tile, tile]
    stats = meta["domains"]["a"]["stats"]
    assert [st["count"] for st in stats] == [6 * 120 * 120] * 2
    assert all(-30 < st["p2_db"] < st["p98_db"] < 5 for st in stats)  # dB statistics taken as they are
    assert stats[0]["p2_db"] == stats[0]["p2"]


def test_s2_with_a_20m_band_is_stacked_on_the_10m_grid(tmp_path):
    patches = [s2_patch(p) for p in PATCHES]
    b = {p: s2_scene(p, ("B04", "B03", "B02", "B05")) for p in patches}
    out = tmp_path / "chips"
    s = export_chips([s1_scene(p) for p in PATCHES], list(b.values()), out, tile_size=60, val_fraction=0.0)
    assert s.domains["b"].kind == "multispectral" and s.domains["b"].count == 4
    assert s.domains["b"].resolution == (10.0, 10.0)
    assert_every_source_pixel_in_a_chip(out, "b", b, 60)
    patch = patches[0]
    with rasterio.open(ROOT / "s2" / patch / f"{patch}_B05.tif") as b05:
        coarse = b05.read(1).astype(np.float64)
    with rasterio.open(out / "train_b" / f"{patch}_r000000_c000000.tif") as chip:
        fine = chip.read(4).astype(np.float64)
        assert chip.res == (10.0, 10.0) and chip.descriptions[3].endswith("_B05")
    # bilinear onto the 10 m grid: each 10 m pixel lies between the 20 m values around it and
    # their mean is kept (nearest neighbour would repeat every 20 m value four times)
    assert coarse[:30, :30].min() <= fine.min() and fine.max() <= coarse[:30, :30].max()
    assert abs(fine[2:-2, 2:-2].mean() - coarse[1:29, 1:29].mean()) < 0.02 * coarse.mean()
    assert not np.array_equal(fine[::2, ::2], fine[1::2, 1::2])


@pytest.mark.parametrize("b_bands", [("B04", "B03", "B02"), ("B04", "B03", "B02", "B05")])
def test_paired_s1_and_s2_patches_share_a_grid(tmp_path, b_bands):
    a = [s1_scene(p) for p in PATCHES]
    b = [s2_scene(s2_patch(p), b_bands) for p in PATCHES]
    out = tmp_path / "chips"
    s = export_chips(a, b, out, paired=True, tile_size=60, val_fraction=0.0)
    assert s.counts["a"] == s.counts["b"] == {"train": 24, "val": 0}
    assert read_chips_metadata(out)["resampling_b"] == "bilinear"
    chips_a, chips_b = chips(out, "a"), chips(out, "b")
    assert set(chips_a) == set(chips_b)
    scenes_b = {Path(sa.split(",")[0]).name[:-7]: sb for sa, sb in zip(a, b)}
    for name in chips_a:
        stem, rest = name.rsplit("_r", 1)
        window = Window(int(rest.split("_c")[1][:6]), int(rest[:6]), 60, 60)
        expected_b, transform_b, _ = source_window(scenes_b[stem], window)
        with rasterio.open(chips_a[name]) as ca, rasterio.open(chips_b[name]) as cb:
            assert cb.crs == ca.crs and cb.transform == ca.transform and cb.shape == ca.shape == (60, 60)
            assert cb.transform == window_transform(window, transform_b)  # S2 is on S1's exact grid
            np.testing.assert_array_equal(cb.read(), expected_b)  # read directly, not resampled
            assert cb.count == len(b_bands) and ca.count == 2


def test_val_fraction_on_the_six_real_patches(tmp_path, caplog):
    a = [s1_scene(p) for p in PATCHES]
    b = [s2_scene(s2_patch(p)) for p in PATCHES]
    with caplog.at_level(logging.WARNING, logger="geogan"):
        s = export_chips(a, b, tmp_path / "chips", paired=True, tile_size=60, val_fraction=0.1)
    # whole patches are validation units: one of six (4 of 24 chips), said in a warning
    assert s.counts["a"] == {"train": 20, "val": 4}
    assert "1 of 6 rasters = 17 %" in caplog.text and "asked 10 %" in caplog.text
    val_patches = {p.name.rsplit("_r", 1)[0] for p in (tmp_path / "chips" / "val_a").iterdir()}
    train_patches = {p.name.rsplit("_r", 1)[0] for p in (tmp_path / "chips" / "train_a").iterdir()}
    assert len(val_patches) == 1 and not val_patches & train_patches

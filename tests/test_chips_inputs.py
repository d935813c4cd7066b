"""Every way to name chip-export inputs through the API: Scene objects, nested lists as one
multi-file scene, GDAL virtual paths, files on different grids, and what is refused."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import rasterio

from geogan.chips import export_chips, read_chips_metadata
from geogan.errors import ConfigError, InputNotFoundError, RasterError
from geogan.scenes import Scene


def db(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-14.0, 4.0, (1, rows, cols)).astype("float32")


def rgb(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 250, (3, rows, cols)).astype("uint8")


def test_scene_objects_and_nested_lists_are_multi_file_scenes(make_raster, tmp_path):
    vv, vh = make_raster("x_VV.tif", db(64, 64)), make_raster("x_VH.tif", db(64, 64, 1))
    vv2, vh2 = make_raster("y_VV.tif", db(64, 64, 2)), make_raster("y_VH.tif", db(64, 64, 3))
    b = make_raster("b.tif", rgb(64, 64))
    s = export_chips([Scene((str(vv), str(vh))), [vv2, vh2]], b, tmp_path / "out", tile_size=32, val_fraction=0)
    assert s.domains["a"].count == 2 and s.counts["a"]["train"] == 8
    assert s.sources["a"] == [f"{vv},{vh}", f"{vv2},{vh2}"]
    with rasterio.open(tmp_path / "out" / "train_a" / "y_r000032_c000000.tif") as chip:
        np.testing.assert_array_equal(chip.read(2), db(64, 64, 3)[0, 32:, :32])
        assert chip.descriptions == ("y_VV", "y_VH")


def test_gdal_virtual_paths_are_read_as_they_are(make_raster, tmp_path):
    vv, vh = make_raster("z_VV.tif", db(64, 64)), make_raster("z_VH.tif", db(64, 64, 1))
    archive = tmp_path / "s1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(vv, "S1/z_VV.tif")
        zf.write(vh, "S1/z_VH.tif")
    scene = f"/vsizip/{archive}/S1/z_VV.tif,/vsizip/{archive}/S1/z_VH.tif"
    s = export_chips(scene, make_raster("b.tif", rgb(64, 64)), tmp_path / "out", tile_size=32, val_fraction=0)
    assert (s.domains["a"].kind, s.domains["a"].units) == ("sar", "db")
    assert read_chips_metadata(tmp_path / "out")["domains"]["a"]["sources"] == [scene]
    with pytest.raises(InputNotFoundError, match="nope.tif': no such file") as info:
        export_chips(f"/vsizip/{archive}/S1/nope.tif", make_raster("b.tif", rgb(64, 64)), tmp_path / "o2",
                     tile_size=32)
    assert "\n" not in str(info.value) and not (tmp_path / "o2").exists()


def test_a_class_map_at_20_m_is_stacked_with_nearest(make_raster, tmp_path):
    classes = np.random.default_rng(0).choice([10, 20, 30], size=(1, 32, 32)).astype("uint8")
    fine = make_raster("lc_fine.tif", np.random.default_rng(1).choice([10, 20, 30], size=(1, 64, 64)).astype("uint8"))
    coarse = make_raster("lc_coarse.tif", classes, res=20.0)
    b = make_raster("b.tif", rgb(64, 64))
    out = tmp_path / "out"
    s = export_chips(f"{fine},{coarse}", b, out, tile_size=32, val_fraction=0)
    assert s.domains["a"].kind == "generic"  # two integer bands with three distinct values: a class map
    assert read_chips_metadata(out)["domains"]["a"]["resampling"] == "nearest"
    with rasterio.open(out / "train_a" / "lc_r000000_c000000.tif") as chip:
        band2 = chip.read(2)
    assert set(np.unique(band2)) <= {10, 20, 30}  # no blended class values
    np.testing.assert_array_equal(band2[::2, ::2], classes[0, :16, :16])


def test_scenes_that_cannot_be_stacked_or_are_given_twice_are_refused(make_raster, tmp_path):
    a1 = make_raster("a1.tif", db(64, 64))
    far = make_raster("far.tif", db(64, 64), origin=(900000.0, 1000000.0))
    other_crs = make_raster("wgs.tif", db(64, 64), crs="EPSG:4326", origin=(15.0, 45.0), res=0.0001)
    b = make_raster("b.tif", rgb(64, 64))
    for scene, needle in ((f"{a1},{far}", "do not overlap"), (f"{a1},{other_crs}", "different CRSs")):
        with pytest.raises(RasterError, match=needle) as info:
            export_chips(scene, b, tmp_path / "o", tile_size=32)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="given twice for domain a"):
        export_chips([f"{a1},{far}", [a1, far]], b, tmp_path / "o", tile_size=32)
    assert not (tmp_path / "o").exists()

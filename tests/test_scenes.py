"""Scenes: comma-joined files, list files, globs, folders, GDAL paths; stacking files onto one grid."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from geogan.errors import ConfigError, InputNotFoundError, RasterError
from geogan.raster import dataset_label, open_raster, read_window
from geogan.scenes import Scene, as_scene, expand_scenes, is_gdal_path

REAL = Path(__file__).resolve().parent.parent / "sample_data" / "bigearthnet"
S2 = REAL / "s2" / "S2A_MSIL2A_20170613T101031_87_48" / "S2A_MSIL2A_20170613T101031_87_48_"
S1 = REAL / "s1" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_"


def test_scene_syntax(tmp_path):
    a, b = tmp_path / "x_VV.tif", tmp_path / "x_VH.tif"
    for p in (a, b):
        p.write_bytes(b"")
    scene = as_scene(f"{a},{b}")
    assert scene.parts == (str(a), str(b)) and scene.is_multi and scene.name == "x"
    comma = tmp_path / "odd,name.tif"
    comma.write_bytes(b"")
    assert as_scene(str(comma)).parts == (str(comma),)  # an existing path is never split
    assert as_scene([a, b]) == scene
    zipped = as_scene("/vsizip/p.zip/VV.tif,/vsizip/p.zip/VH.tif")
    assert zipped.parts == ("/vsizip/p.zip/VV.tif", "/vsizip/p.zip/VH.tif")
    assert is_gdal_path("/vsis3/bucket/key.tif") and is_gdal_path("https://host/a.tif")
    assert is_gdal_path("SENTINEL2_L2A:/x/MTD.xml:10m:EPSG_32633") and not is_gdal_path("C:\\data\\a.tif")
    with pytest.raises(ConfigError, match="empty file name"):
        as_scene(f"{a},,{b}")


def test_lists_globs_and_folders(tmp_path):
    folder = tmp_path / "s1"
    folder.mkdir()
    for name in ("p1_VV.tif", "p1_VH.tif", "p2_VV.tif", "notes.txt", ".hidden.tif"):
        (folder / name).write_bytes(b"")
    listing = tmp_path / "scenes.txt"
    listing.write_text("# two scenes\ns1/p1_VV.tif,s1/p1_VH.tif\n\n  s1/p2_VV.tif \n")
    scenes = expand_scenes([f"@{listing}"])
    assert [s.parts for s in scenes] == [(str(folder / "p1_VV.tif"), str(folder / "p1_VH.tif")),
                                         (str(folder / "p2_VV.tif"),)]
    assert [s.parts[0] for s in expand_scenes(str(folder / "*_VV.tif"))] == [str(folder / "p1_VV.tif"),
                                                                              str(folder / "p2_VV.tif")]
    assert [Path(s.parts[0]).name for s in expand_scenes(folder)] == ["p1_VH.tif", "p1_VV.tif", "p2_VV.tif"]
    assert expand_scenes("/vsizip/missing.zip/a.tif")[0].parts == ("/vsizip/missing.zip/a.tif",)  # GDAL decides


def test_scene_errors_are_one_line_naming_the_cause(tmp_path):
    listing = tmp_path / "scenes.txt"
    (tmp_path / "a.tif").write_bytes(b"")
    listing.write_text("a.tif\nmissing.tif\n")
    with pytest.raises(InputNotFoundError, match=r"scenes.txt' line 2: 'missing.tif': no such file"):
        expand_scenes(f"@{listing}")
    with pytest.raises(InputNotFoundError, match="no file matches this pattern"):
        expand_scenes(str(tmp_path / "*.jp2"))
    with pytest.raises(InputNotFoundError, match="no such list file"):
        expand_scenes(f"@{tmp_path / 'nope.txt'}")
    with pytest.raises(InputNotFoundError, match=r"'.*b.tif': no such file \(in scene"):
        expand_scenes(f"{tmp_path / 'a.tif'},{tmp_path / 'b.tif'}")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(Exception, match="names no raster"):
        expand_scenes(f"@{tmp_path / 'empty.txt'}")


def test_sentinel2_bands_at_10_20_60_m_stack_onto_the_10_m_grid():
    files = [f"{S2}{b}.tif" for b in ("B04", "B03", "B02", "B05", "B01")]
    import rasterio

    with rasterio.open(files[0]) as ref, rasterio.open(files[3]) as b05:
        ref_transform, ref_data, b05_data = ref.transform, ref.read(1), b05.read(1)
    with open_raster(",".join(files)) as ds:
        assert (ds.count, ds.height, ds.width) == (5, 120, 120)
        assert ds.transform == ref_transform and ds.crs.to_epsg() == 32633
        assert ds.dtypes == ("uint16",) * 5
        data, masks = read_window(ds, [1, 2, 3, 4, 5])
        assert masks.min() == 255
        np.testing.assert_array_equal(data[0], ref_data)  # a 10 m band comes through unchanged
        # 20 m → 10 m bilinear: 2x2 blocks average back to the 20 m values (up to edge effects).
        blocks = data[3].astype(float).reshape(60, 2, 60, 2).mean(axis=(1, 3))
        assert np.abs(blocks[2:-2, 2:-2] - b05_data[2:-2, 2:-2]).mean() < 0.05 * b05_data.mean()
        assert set(files[0].split("/")[-1:]) and dataset_label(ds).split(",")[0] == files[0]


def test_stacking_refuses_other_crs_and_disjoint_files(make_raster):
    a = make_raster("a.tif", np.ones((1, 20, 20), np.float32))
    other_crs = make_raster("b.tif", np.ones((1, 20, 20), np.float32), crs="EPSG:32632")
    far = make_raster("c.tif", np.ones((1, 20, 20), np.float32), origin=(900000.0, 5000000.0))
    with pytest.raises(RasterError, match="different CRSs"):
        open_raster(f"{a},{other_crs}")
    with pytest.raises(RasterError, match="do not overlap"):
        open_raster([a, far])


def test_stacked_scene_keeps_nodata_and_internal_masks(make_raster):
    vv = np.full((1, 16, 16), -12.0, np.float32)
    vv[0, :4] = -9999.0
    vh_mask = np.ones((16, 16), bool)
    vh_mask[:, :3] = False
    a = make_raster("s_VV.tif", vv, nodata=-9999.0)
    b = make_raster("s_VH.tif", np.full((1, 16, 16), -18.0, np.float32), mask=vh_mask)
    with open_raster(f"{a},{b}") as ds:
        data, masks = read_window(ds, [1, 2])
    assert (masks[0][:4] == 0).all() and (masks[0][4:] == 255).all()
    assert (masks[1][:, :3] == 0).all() and (masks[1][:, 3:] == 255).all()
    assert data[1, 5, 5] == -18.0


def test_gdal_virtual_paths_are_opened_unchanged(tmp_path):
    archive = tmp_path / "s1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(f"{S1}VV.tif", "VV.tif")
        z.write(f"{S1}VH.tif", "VH.tif")
    with open_raster(f"/vsizip/{archive}/VV.tif,/vsizip/{archive}/VH.tif") as ds:
        assert ds.count == 2 and ds.shape == (120, 120)
    with pytest.raises(InputNotFoundError, match="no such file"):
        open_raster(f"/vsizip/{archive}/HH.tif")


def test_a_non_utf8_file_name_is_one_line(tmp_path):
    import os

    name = os.fsdecode(str(tmp_path).encode() + b"/bad\xff.tif")
    Path(name).write_bytes(b"x")
    with pytest.raises(RasterError, match=r"not valid UTF-8") as info:
        open_raster(name)
    str(info.value).encode("utf-8")  # printable

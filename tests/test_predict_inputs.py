"""Real products into the predictor: Sentinel-1 in dB (VV,VH files) for a linear-trained model,
Sentinel-2 bands at 10 and 20 m, /vsizip/ paths; the output nodata chosen outside the valid range;
precision (bf16 autocast on the CPU against fp32); and the inputs that must be warned about or refused."""
from __future__ import annotations

import dataclasses
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from conftest import make_spec, scene, write_raster
from geogan import errors
from geogan.bands import BandStats, DomainSpec
from geogan.cli import cli
from geogan.evaluate import evaluate_rasters
from geogan.modelfile import TranslationModel, save_model
from geogan.models.generators import ResnetGenerator
from geogan.predict import output_nodata, translate_raster, translate_rasters

BEN = Path(__file__).resolve().parent.parent / "sample_data" / "bigearthnet"
S1 = BEN / "s1" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
S2 = BEN / "s2" / "S2A_MSIL2A_20170613T101031_87_48" / "S2A_MSIL2A_20170613T101031_87_48"
TILE = dict(tile_size=32, overlap=8, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


def sar_linear_spec() -> DomainSpec:
    """A SAR domain trained on linear power, with the dB statistics of Sentinel-1 VV/VH."""
    stats = tuple(BandStats(band=b, count=10 ** 5, mean=0.05, std=0.05, min=1e-4, max=2.0, p2=0.003, p98=0.3,
                            mean_db=m, std_db=3.0, min_db=m - 15, max_db=m + 10, p2_db=m - 8, p98_db=m + 6)
                  for b, m in ((1, -11.0), (2, -18.0)))
    return DomainSpec("sar", (1, 2), "float32", None, stats, resolution=(10.0, 10.0), units="linear")


def tiny_resnet_model(source: DomainSpec, target: DomainSpec) -> TranslationModel:
    torch.manual_seed(0)
    net = ResnetGenerator(source.count, target.count, ngf=4, n_blocks=1)
    return TranslationModel({"a": source, "b": target}, {"a2b": net}, {"generator": "resnet", "size_multiple": 4})


# --------------------------------------------------------------------------- SAR units

def test_a_db_scene_given_to_a_linear_model_equals_the_linear_scene(tmp_path, caplog):
    """Real BigEarthNet S1 (float32 dB, one file per polarisation) against the same backscatter in linear power."""
    target = make_spec("generic", 3, "float32", lo=-5.0, hi=5.0)
    model = tiny_resnet_model(sar_linear_spec(), target)
    db_scene = f"{S1}_VV.tif,{S1}_VH.tif"
    with rasterio.open(f"{S1}_VV.tif") as vv, rasterio.open(f"{S1}_VH.tif") as vh:
        db = np.stack([vv.read(1), vh.read(1)])
        profile = vv.profile
    linear = write_raster(tmp_path / "linear.tif", (10 ** (db / 10)).astype(np.float32), crs=profile["crs"],
                          transform=profile["transform"])
    with caplog.at_level(logging.WARNING, logger="geogan"):
        from_db = translate_raster(model, db_scene, tmp_path / "from_db.tif", **TILE)
    assert "SAR in dB" in caplog.text and "converting" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geogan"):
        from_linear = translate_raster(model, linear, tmp_path / "from_linear.tif", **TILE)
    assert "converting" not in caplog.text
    assert (from_db.units, from_linear.units) == ("db", "linear")
    a, pa = read(from_db)
    b, _ = read(from_linear)
    assert a.shape == (3, 120, 120) and pa["transform"] == profile["transform"] and pa["crs"] == profile["crs"]
    assert np.isfinite(a).all()  # no valid dB pixel lost (negative dB is valid)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_stated_units_are_checked_against_the_values(tmp_path):
    model = tiny_resnet_model(sar_linear_spec(), make_spec("generic", 3))
    db_scene = f"{S1}_VV.tif,{S1}_VH.tif"
    with pytest.raises(errors.RasterError, match="stated units linear but .* negative.*look like dB"):
        translate_raster(model, db_scene, tmp_path / "o.tif", units="linear", **TILE)
    r = translate_raster(model, db_scene, tmp_path / "o.tif", units="db", **TILE)
    assert r.units == "db"
    with pytest.raises(errors.ConfigError, match="unknown SAR units 'decibel'"):
        translate_raster(model, db_scene, tmp_path / "p.tif", units="decibel", **TILE)
    optical = TranslationModel({"a": make_spec("optical", 3, "uint8", lo=10, hi=200), "b": make_spec()},
                               {"a2b": torch.nn.Conv2d(3, 2, 1)}, {"generator": "c"})
    rgb = write_raster(tmp_path / "rgb.tif", (scene((40, 40), n=3) * 200).astype(np.uint8))
    with pytest.raises(errors.ConfigError, match="units are for SAR"):
        translate_raster(optical, rgb, tmp_path / "q.tif", units="db", **TILE)
    assert not (tmp_path / "o.tif").exists() or r.path == tmp_path / "o.tif"
    assert not (tmp_path / "p.tif").exists() and not (tmp_path / "q.tif").exists()


# --------------------------------------------------------------------------- multi-file and GDAL inputs

def test_sentinel2_bands_at_10_and_20_m_are_one_scene_on_the_10_m_grid(tmp_path):
    source = dataclasses.replace(make_spec("multispectral", 4, "uint16", lo=100, hi=4000), resolution=(10.0, 10.0))
    model = tiny_resnet_model(source, make_spec("optical", 3, "uint8", lo=10, hi=240))
    bands = f"{S2}_B04.tif,{S2}_B03.tif,{S2}_B02.tif,{S2}_B8A.tif"   # B8A is 20 m (60 x 60)
    result = translate_raster(model, bands, tmp_path / "o.tif", **TILE)
    out, profile = read(result)
    with rasterio.open(f"{S2}_B04.tif") as b04:
        assert (profile["width"], profile["height"], profile["transform"], profile["crs"]) == \
            (b04.width, b04.height, b04.transform, b04.crs)
    assert out.shape == (3, 120, 120) and result.scene == bands
    assert (out != profile["nodata"]).all()


def test_vsizip_inputs_single_and_batch(tmp_path):
    model = tiny_resnet_model(make_spec("generic", 2), make_spec("generic", 3))
    data = scene((40, 44))
    write_raster(tmp_path / "inner.tif", data)
    with zipfile.ZipFile(tmp_path / "pack.zip", "w") as z:
        z.write(tmp_path / "inner.tif", "sub/inner.tif")
    path = f"/vsizip/{tmp_path / 'pack.zip'}/sub/inner.tif"
    single = translate_raster(model, path, tmp_path / "o.tif", **TILE)
    batch = translate_rasters(model, [path], tmp_path / "out", **TILE)
    assert batch.outcomes[0].output == tmp_path / "out" / "inner.tif"
    np.testing.assert_array_equal(read(single)[0], read(tmp_path / "out" / "inner.tif")[0])
    with pytest.raises(errors.InputNotFoundError, match="no such file"):
        translate_raster(model, f"/vsizip/{tmp_path / 'pack.zip'}/missing.tif", tmp_path / "p.tif", **TILE)
    with zipfile.ZipFile(tmp_path / "preds.zip", "w") as z:  # evaluate reads GDAL paths unchanged too
        z.write(single.path, "o.tif")
    report = evaluate_rasters(f"/vsizip/{tmp_path / 'preds.zip'}/o.tif", single.path)
    assert report.mae == 0.0 and report.pixels == 40 * 44


# --------------------------------------------------------------------------- output nodata

def stats_spec(dtype: str, lo: float, hi: float, n: int = 3, nodata=None) -> DomainSpec:
    stats = tuple(BandStats(band=i + 1, count=100, mean=(lo + hi) / 2, std=1.0, min=lo, max=hi, p2=lo, p98=hi)
                  for i in range(n))
    return DomainSpec("optical", tuple(range(1, n + 1)), dtype, nodata, stats)


@pytest.mark.parametrize("dtype,lo,hi,declared,expected", [
    ("uint8", 1, 255, None, 0),              # nothing is 0: 0 is free
    ("uint8", 0, 254, None, 255),            # 0 is valid, 255 is free
    ("uint8", 0, 255, None, 0),              # the whole range used: 0, valid pixels kept at >= 1
    ("uint16", 1, 10000, None, 0),
    ("int16", -120, 3000, None, -32768),     # a DEM
    ("uint8", 0, 255, 7, 7),                 # declared: kept
    ("float32", -1, 1, None, "nan"),
])
def test_output_nodata_lies_outside_the_training_range(dtype, lo, hi, declared, expected):
    got = output_nodata(stats_spec(dtype, lo, hi, nodata=declared))
    assert (np.isnan(got) if expected == "nan" else got == expected)


def test_a_valid_zero_is_never_written_as_nodata(tmp_path):
    """Training data from 0 to 250 (uint8, no nodata declared): nodata 255, and pixels that are 0 stay 0."""
    a = make_spec("generic", 1, "float32", nodata=-1.0, lo=0.0, hi=1.0)
    b = stats_spec("uint8", 0, 250, n=1)
    model = TranslationModel({"a": a, "b": b}, {"a2b": torch.nn.Identity()}, {"generator": "x"})
    data = np.linspace(0, 1, 40 * 40, dtype=np.float32).reshape(1, 40, 40)
    data[0, 5, 5] = -1.0
    out, profile = read(translate_raster(model, write_raster(tmp_path / "i.tif", data, nodata=-1.0),
                                         tmp_path / "o.tif", **TILE))
    assert profile["nodata"] == 255 and out[0, 5, 5] == 255
    assert out[0, 0, 0] == 0 and (np.delete(out.ravel(), 5 * 40 + 5) != 255).all()


# --------------------------------------------------------------------------- precision

def test_bf16_autocast_on_the_cpu_stays_close_to_fp32(tmp_path):
    """The GPU path's autocast, on the CPU: bf16 (8-bit mantissa) against fp32, output in network units
    (float32 target scaled so 1 unit = 1): mean |diff| < 0.02 and max < 0.15 of the [-1, 1] range."""
    source = sar_linear_spec()
    target = dataclasses.replace(make_spec("generic", 3, "float32", lo=-1.0, hi=1.0))
    model = tiny_resnet_model(source, target)
    src = write_raster(tmp_path / "in.tif", (10 ** (scene((96, 80), lo=-25, hi=0) / 10)).astype(np.float32))
    fp32 = translate_raster(model, src, tmp_path / "fp32.tif", precision="fp32", **TILE)
    bf16 = translate_raster(model, src, tmp_path / "bf16.tif", precision="bf16", **TILE)
    auto = translate_raster(model, src, tmp_path / "auto.tif", **TILE)
    assert (fp32.precision, bf16.precision, auto.precision) == ("fp32", "bf16", "fp32")  # auto: fp32 on the CPU
    a, b = read(fp32)[0], read(bf16)[0]
    diff = np.abs(a - b)
    assert 0 < diff.mean() < 0.02 and diff.max() < 0.15
    with rasterio.open(bf16) as ds:
        assert ds.tags()["GEOGAN_PRECISION"] == "bf16"
    with pytest.raises(errors.ConfigError, match="fp16 needs a CUDA device"):
        translate_raster(model, src, tmp_path / "fp16.tif", precision="fp16", **TILE)
    assert not (tmp_path / "fp16.tif").exists()


# --------------------------------------------------------------------------- warned about, or refused

def test_mostly_nodata_is_warned_about_and_all_nodata_is_refused(tmp_path, caplog):
    model = TranslationModel({"a": make_spec(n=1, nodata=-1.0), "b": make_spec(n=1)}, {"a2b": torch.nn.Identity()},
                             {"generator": "x"})
    data = scene((60, 60), n=1)
    data[:, :, 3:] = -1.0  # 95 % nodata
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(model, write_raster(tmp_path / "most.tif", data, nodata=-1.0), tmp_path / "a.tif", **TILE)
    assert "of a sample of the input is nodata" in caplog.text and "most of the output will be nodata" in caplog.text
    data[:] = -1.0
    with pytest.raises(errors.RasterError, match="no valid pixel anywhere in the input.*nothing was written"):
        translate_raster(model, write_raster(tmp_path / "none.tif", data, nodata=-1.0), tmp_path / "b.tif", **TILE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "most.tif", "none.tif"]


def test_a_complex_target_or_input_is_one_line(tmp_path):
    src = write_raster(tmp_path / "in.tif", scene((20, 20)))
    complex_target = dataclasses.replace(make_spec(), dtype="complex64")
    model = TranslationModel({"a": make_spec(), "b": complex_target}, {"a2b": torch.nn.Identity()},
                             {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4})
    with pytest.raises(errors.ModelFileError, match="produces complex64 pixels, which geogan cannot write"):
        translate_raster(model, src, tmp_path / "o.tif", **TILE)
    path = save_model(TranslationModel({"a": make_spec(), "b": complex_target},
                                       {"a2b": ResnetGenerator(2, 2, ngf=4, n_blocks=6)},
                                       {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4,
                                        "size_multiple": 4}), tmp_path / "c.geogan")
    res = CliRunner().invoke(cli, ["predict", str(path), str(src), str(tmp_path / "o.tif")])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "complex64" in res.stderr
    cplx = write_raster(tmp_path / "c.tif", (scene((20, 20)) + 1j).astype(np.complex64))
    ok = TranslationModel({"a": make_spec(), "b": make_spec()}, {"a2b": torch.nn.Identity()}, {"generator": "x"})
    with pytest.raises(errors.RasterError, match="complex pixels"):
        translate_raster(ok, cplx, tmp_path / "o.tif", **TILE)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("dtype,nodata", [("float32", 0.0), ("float32", float("nan")), ("float32", -9999.0),
                                          ("float64", 0.0), ("uint8", 0), ("uint8", 255), ("int16", -32768),
                                          ("int16", 5), ("uint16", None)])
def test_masks_computed_from_the_pixels_equal_gdals(tmp_path, dtype, nodata):
    """raster.read_window computes GDAL's nodata masks from the pixels it read where the rule is exact
    (and reads them from GDAL otherwise, e.g. a float nodata GDAL compares with a tolerance)."""
    import rasterio
    from rasterio.windows import Window

    from geogan import raster

    rng = np.random.default_rng(0)
    data = (rng.random((2, 64, 80)) * 10).astype(dtype)
    if nodata is not None:
        data[0, 3:9, 4:30] = nodata
        data[1, 20:22, :] = nodata
    if dtype.startswith("float"):
        data[0, 30, 5:9] = [np.nan, np.inf, -1.0, -np.inf]  # invalid for every kind (and not > 0 for SAR)
    if dtype == "float32":
        data[0, 0, 0] = -0.0
        data[1, 1, 1] = np.float32(-9999.0005)  # within GDAL's tolerance of -9999
    path = tmp_path / f"{dtype}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=64, count=2, dtype=dtype, nodata=nodata,
                       crs="EPSG:32633", transform=rasterio.transform.from_origin(0, 0, 10, 10)) as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        window = Window(3, 5, 60, 40)
        data, masks = raster.read_window(ds, [1, 2], window)
        np.testing.assert_array_equal(masks, ds.read_masks([1, 2], window=window))
        for kind, units in (("sar", "linear"), ("sar", "db"), ("optical", None)):  # the reader's fused validity
            got, valid = raster.read_valid(ds, [1, 2], window, kind, units)
            np.testing.assert_array_equal(got, data)
            np.testing.assert_array_equal(valid, raster.valid_mask(ds, data, masks, kind, units=units))
            reused = np.full((2, 40, 60), 7, dtype)  # read into a caller's array (the predictor reuses them)
            into, valid_into = raster.read_valid(ds, [1, 2], window, kind, units, out=reused)
            assert into is reused
            np.testing.assert_array_equal(into, data)
            np.testing.assert_array_equal(valid_into, valid)

"""Issue 20, the input side: SAR units checked against what backscatter looks like, kinds from the
whole file, pixel sizes compared on the ground, --assume-crs, and the trained bands as the default.

Every raster is shaped like the product it stands for: linear power σ⁰ (float32, lognormal around
0.03, all positive), float amplitude (its square root), a 4-band uint16 Sentinel-2-like RGBN file
(reflectance × 10000, a smooth NIR band), a 5-bit grayscale photo, a land-cover map, the same
10 m scene in US feet and a 1 arc-second scene in degrees.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.transform import from_origin

from conftest import conv1x1, make_spec, save_tiny_sar_to_rgb_model, scene, smooth_bands, write_raster
from geogan import errors
from geogan.bands import explain_kind, infer_units
from geogan.chips import export_chips
from geogan.cli import cli
from geogan.modelfile import TranslationModel
from geogan.predict import translate_raster

TILE = dict(tile_size=32, overlap=8, device="cpu")
UTM18 = "EPSG:32618"            # New York, where EPSG:2263 (NY Long Island, US feet) is valid too
NYC_UTM = (585000.0, 4510000.0)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def linear_power(seed: int = 0, shape=(2, 64, 64)) -> np.ndarray:
    """Calibrated σ⁰ in linear power: all positive, median ~0.03 (-15 dB), lognormal speckle."""
    return np.random.default_rng(seed).lognormal(np.log(0.03), 0.8, shape).astype(np.float32)


def rgb(tmp_path, name="rgb.tif", **kw):
    data = (scene((64, 64), n=3, seed=5) * 200 + 20).astype(np.uint8)
    return write_raster(tmp_path / name, data, **kw)


def identity(spec) -> TranslationModel:
    return TranslationModel({"a": spec, "b": spec}, {"a2b": torch.nn.Identity()}, {"generator": "x"})


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# --------------------------------------------------------------------------- units

def test_linear_power_stated_as_db_is_refused_by_chips_and_predict(tmp_path):
    sar = write_raster(tmp_path / "s1_sigma0.tif", linear_power())
    with pytest.raises(errors.ConfigError, match=r"s1_sigma0.tif'?: stated units db but no value is 0 or below .*"
                                                 r"like linear power.*use units linear"):
        export_chips(sar, rgb(tmp_path), tmp_path / "chips", kind_a="sar", units_a="db", tile_size=32)
    assert not (tmp_path / "chips").exists()
    res = CliRunner().invoke(cli, ["chips", "--a", str(sar), "--b", str(tmp_path / "rgb.tif"), "--out",
                                   str(tmp_path / "chips"), "--kind-a", "sar", "--units-a", "db", "--tile-size", "32"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "s1_sigma0.tif" in res.stderr, res.stderr
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    with pytest.raises(errors.RasterError, match="s1_sigma0.tif.*stated units db but no value is 0 or below"):
        translate_raster(model, sar, tmp_path / "o.tif", units="db", **TILE)
    res = CliRunner().invoke(cli, ["predict", str(model), str(sar), str(tmp_path / "o.tif"), "--units", "db",
                                   "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "s1_sigma0.tif" in res.stderr, res.stderr
    assert not (tmp_path / "o.tif").exists()
    # the same values in dB are accepted as dB
    db = write_raster(tmp_path / "db.tif", 10 * np.log10(linear_power()))
    assert translate_raster(model, db, tmp_path / "ok.tif", units="db", **TILE).units == "db"


def test_linear_power_stated_as_amplitude_is_warned_about(tmp_path, caplog):
    """Median 0.03 read as amplitude is -30.5 dB: possible over calm water only, so a warning, not a
    refusal; a median read below -35 dB (far below any SAR's noise floor) is refused."""
    sar = write_raster(tmp_path / "sigma0.tif", linear_power())
    with caplog.at_level(logging.WARNING, logger="geogan"):
        s = export_chips(sar, rgb(tmp_path), tmp_path / "chips", kind_a="sar", units_a="amplitude", tile_size=32,
                         val_fraction=0)
    assert s.domains["a"].units == "amplitude"
    assert "stated units amplitude put the median" in warnings_of(caplog) and "as linear power it would be" in \
        warnings_of(caplog)
    caplog.clear()
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    with caplog.at_level(logging.WARNING, logger="geogan"):
        r = translate_raster(model, sar, tmp_path / "o.tif", units="amplitude", **TILE)
    assert "stated units amplitude put the median 0.0" in warnings_of(caplog)
    assert any("stated units amplitude" in w for w in r.warnings)
    dark = write_raster(tmp_path / "dark.tif", linear_power() / 10)  # median 0.003: -50 dB as amplitude
    with pytest.raises(errors.RasterError, match="dark.tif.*stated units amplitude but .*far below any SAR's noise"):
        translate_raster(model, dark, tmp_path / "p.tif", units="amplitude", **TILE)


def test_float_amplitude_without_units_is_inferred_with_a_warning(tmp_path, caplog):
    amplitude = np.sqrt(linear_power(seed=1) * 1.5)  # median ~0.21: -13.5 dB as amplitude, -6.8 as power
    guess = infer_units(amplitude, "float32")
    assert (guess.units, guess.sure, guess.alternative) == ("linear", False, "amplitude")
    src = write_raster(tmp_path / "amp.tif", amplitude)
    with caplog.at_level(logging.WARNING, logger="geogan"):
        s = export_chips(src, rgb(tmp_path), tmp_path / "chips", kind_a="sar", tile_size=32, val_fraction=0)
    text = warnings_of(caplog)
    assert "SAR units not stated; read as linear power" in text and "state --units-a amplitude" in text
    assert "both plausible" in s.units_reasons["a"]
    caplog.clear()
    # prediction: read in the model's units when they are one of the two readings, and said so
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    with caplog.at_level(logging.WARNING, logger="geogan"):
        r = translate_raster(model, src, tmp_path / "o.tif", **TILE)
    assert r.units == "linear" and "converting" not in warnings_of(caplog)
    assert "read as linear power, as the model was trained, but the values could be either" in warnings_of(caplog)
    assert "state --units amplitude" in warnings_of(caplog)
    # a model trained on dB would convert on a guess: refused until --units says which
    db_model = identity(dataclasses.replace(make_spec("sar", 2), units="db"))
    with pytest.raises(errors.RasterError, match="amp.tif.*SAR units not stated.*state --units amplitude or "
                                                 "--units linear"):
        translate_raster(db_model, src, tmp_path / "p.tif", **TILE)
    assert translate_raster(db_model, src, tmp_path / "p.tif", units="amplitude", **TILE).units == "amplitude"
    # the training data settle it when only one reading lies within their dB range: Sentinel-1 power
    # with median 0.035 (-14.6 dB) is -29 dB as amplitude, below the training data's -20..0 dB: quiet
    caplog.clear()
    power = write_raster(tmp_path / "power.tif", linear_power(seed=2) * 1.17)
    with caplog.at_level(logging.INFO, logger="geogan"):
        assert translate_raster(model, power, tmp_path / "r.tif", **TILE).units == "linear"
    assert not infer_units(linear_power(seed=2) * 1.17, "float32").sure
    assert warnings_of(caplog) == "" and "only that reading lies within the training data's range" in caplog.text
    # ... and refuse when only the other reading fits (amplitude into a model of VH power, -25..-12 dB)
    vh = dataclasses.replace(make_spec("sar", 2), stats=tuple(dataclasses.replace(st, p2_db=-25.0, p98_db=-12.0)
                                                              for st in make_spec("sar", 2).stats))
    with pytest.raises(errors.RasterError, match="amp.tif.*converted on a guess: state --units amplitude or "
                                                 "--units linear"):
        translate_raster(identity(vh), src, tmp_path / "s.tif", **TILE)
    # proven units are converted as before: dB values into a linear model, with the warning
    caplog.clear()
    db = write_raster(tmp_path / "db.tif", 10 * np.log10(linear_power()))
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(model, db, tmp_path / "q.tif", **TILE)
    assert "SAR in dB" in warnings_of(caplog) and "converting the input" in warnings_of(caplog)


# --------------------------------------------------------------------------- kinds

def s2_rgbn(seed: int = 0, size: int = 64) -> np.ndarray:
    """Sentinel-2-like reflectance × 10000 (uint16): textured B02-B04, a smooth NIR over crops."""
    rng = np.random.default_rng(seed)
    vis = (300 + 1500 * smooth_bands(rng, 3, size) + rng.normal(0, 80, (3, size, size))).clip(1, 10000)
    yy, xx = np.mgrid[0:size, 0:size] / size
    field = 0.8 * yy + 0.2 * xx + 0.02 * np.sin(2 * np.pi * yy)  # one crop field's gentle gradient
    nir = (2500 + 2500 * field + rng.normal(0, 1, (size, size)))[None]
    return np.concatenate([vis, nir]).astype(np.uint16)


def test_the_nir_band_of_a_4_band_reflectance_file_is_not_a_dem(tmp_path):
    data = s2_rgbn()
    nir = data[3].astype(np.float64)
    # alone, the NIR band is smooth enough to pass for terrain (what issue 20 saw)
    assert explain_kind("uint16", 1, nir.ravel(), image=nir)[0] == "dsm"
    kind, reason = explain_kind("uint16", 1, nir.ravel(), image=nir, file_count=4)
    assert kind == "multispectral" and "picked from a 4-band uint16 raster" in reason
    # float reflectance (0..1): band 4 alone looks like linear backscatter, from its 4-band file it is not SAR
    refl = data[3].astype(np.float32) / 10000
    assert explain_kind("float32", 1, refl.ravel(), image=refl)[0] == "sar"
    assert explain_kind("float32", 1, refl.ravel(), image=refl, file_count=4)[0] == "multispectral"
    src = write_raster(tmp_path / "S2_RGBN.tif", data)
    s = export_chips(rgb(tmp_path), src, tmp_path / "chips", bands_b="4", tile_size=32, val_fraction=0)
    assert s.domains["b"].kind == "multispectral" and s.domains["b"].bands == (4,)
    assert "picked from a 4-band" in s.kind_reasons["b"]
    assert any("kind multispectral" in line and "picked" in line for line in s.lines())  # the CLI prints it
    s = export_chips(rgb(tmp_path), src, tmp_path / "chips2", bands_b="4", kind_b="dsm", tile_size=32,
                     val_fraction=0)
    assert s.domains["b"].kind == "dsm" and s.kind_reasons["b"] == "stated with --kind-b"


def five_bit_photo(seed: int = 0, size: int = 64) -> np.ndarray:
    """A grayscale aerial photo at 5 bits (32 levels, stored as 0, 8, ... 248)."""
    rng = np.random.default_rng(seed)
    gray = 31 * smooth_bands(rng, 1, size)[0] + rng.normal(0, 0.6, (size, size))
    return (np.clip(np.rint(gray), 0, 31) * 8).astype(np.uint8)


def land_cover(seed: int = 0, size: int = 64) -> np.ndarray:
    """Twelve classes (codes 1..12) in patches: a class map."""
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, size, (40, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    nearest = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)
    return rng.integers(1, 13, 40)[nearest].astype(np.uint8)


def test_a_5_bit_photo_is_not_a_class_map_but_land_cover_is(tmp_path):
    photo, classes = five_bit_photo(), land_cover()
    kind, reason = explain_kind("uint8", 1, photo.ravel(), image=photo.astype(float))
    assert kind == "optical" and "quantised image" in reason, reason
    kind, reason = explain_kind("uint8", 1, classes.ravel(), image=classes.astype(float))
    assert kind == "generic" and "class map" in reason, reason
    for name, data, kind, resampling in (("photo.tif", photo, "optical", "bilinear"),
                                         ("lc.tif", classes, "generic", "nearest")):
        out = tmp_path / f"chips_{kind}"
        s = export_chips(rgb(tmp_path), write_raster(tmp_path / name, data), out, tile_size=32, val_fraction=0)
        assert s.domains["b"].kind == kind
        assert json.loads((out / "geogan_chips.json").read_text())["domains"]["b"]["resampling"] == resampling


# --------------------------------------------------------------------------- resolution on the ground

def test_pixel_sizes_are_compared_in_metres_on_the_ground(tmp_path, caplog):
    chips = export_chips(write_raster(tmp_path / "train.tif", scene((64, 64), n=1), crs=UTM18, origin=NYC_UTM),
                         rgb(tmp_path, crs=UTM18, origin=NYC_UTM), tmp_path / "chips", kind_a="generic",
                         tile_size=32, val_fraction=0)
    recorded = chips.domains["a"]
    assert recorded.ground_resolution == pytest.approx((10.0, 10.0), rel=0.01)
    old = dataclasses.replace(recorded, ground_resolution=None)  # a model file from before it was recorded
    data = scene((40, 40), n=1)
    feet = write_raster(tmp_path / "feet.tif", data, crs="EPSG:2263",
                        transform=from_origin(985000.0, 205000.0, 32.80833, 32.80833))  # 10 m in US feet
    degrees = write_raster(tmp_path / "degrees.tif", data, crs="EPSG:4326",
                           transform=from_origin(-73.95, 40.75, 1 / 3600, 1 / 3600))   # 1": 23 x 31 m
    coarse = write_raster(tmp_path / "utm30.tif", data, crs=UTM18, origin=NYC_UTM, res=30.0)
    for spec in (recorded, old):
        model = identity(spec)
        for src, warned in ((feet, False), (degrees, True), (coarse, True)):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="geogan"):
                r = translate_raster(model, src, tmp_path / "o.tif", overwrite=True, **TILE)
            text = warnings_of(caplog)
            assert ("differs by more than 10%" in text) == warned, (src, text)
            if warned:
                assert "m on the ground" in text and re.search(r"training data's (9\.9\d|10\.?\d*) m", text)
                assert any("differs by more than 10%" in w for w in r.warnings)  # the API result lists it
    # a model trained in degrees (1 arc-second) and a 30 m UTM scene: compared at the scene's latitude
    geo = identity(dataclasses.replace(recorded, crs="EPSG:4326", resolution=(1 / 3600, 1 / 3600),
                                       ground_resolution=None))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(geo, feet, tmp_path / "o.tif", overwrite=True, **TILE)
    assert re.search(r"pixel size (9\.9\d|10) m on the ground differs by more than 10% from the training data's "
                     r"23\.4 x 30\.9 m", warnings_of(caplog))


def test_unlike_training_says_what_triggered_it(tmp_path, caplog):
    model = identity(make_spec("generic", 1))   # trained on 0.1..0.9
    # normalised 1.5..2.75: the median is far off, but no value lies beyond 3 (the "0% of a sample")
    src = write_raster(tmp_path / "bright.tif", scene((40, 40), n=1, lo=1.1, hi=1.6))
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(model, src, tmp_path / "o.tif", **TILE)
    text = warnings_of(caplog)
    assert "band 1 looks unlike the training data (its median 1.3" in text
    assert "lies far above the training range 0.1..0.9); check" in text and "% of a sample" not in text


# --------------------------------------------------------------------------- CRS

def test_a_transform_without_crs_is_named_and_assume_crs_places_the_output(tmp_path):
    data = scene((40, 40))
    transform = from_origin(*NYC_UTM, 10.0, 10.0)
    src = write_raster(tmp_path / "nocrs.tif", data, crs=None, transform=transform)
    model = identity(make_spec())
    with pytest.raises(errors.RasterError, match="nocrs.tif.*has a geotransform but no CRS; state its CRS with "
                                                 "--assume-crs"):
        translate_raster(model, src, tmp_path / "o.tif", **TILE)
    r = translate_raster(model, src, tmp_path / "o.tif", assume_crs="EPSG:32618", **TILE)
    with rasterio.open(r.path) as out:
        assert out.crs == rasterio.crs.CRS.from_epsg(32618) and out.transform == transform
        np.testing.assert_allclose(out.read(), data, rtol=1e-5)
    res = CliRunner().invoke(cli, ["predict", str(identity_file(tmp_path)), str(src), str(tmp_path / "c.tif"),
                                   "--assume-crs", "32618", "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "c.tif") as out:
        assert out.crs.to_epsg() == 32618 and out.transform == transform
    for bad in ("EPSG:0", "not a crs"):
        res = CliRunner().invoke(cli, ["predict", str(identity_file(tmp_path)), str(src), str(tmp_path / "d.tif"),
                                       "--assume-crs", bad])
        assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "--assume-crs" in res.stderr, res.stderr
    other = write_raster(tmp_path / "wgs.tif", data, crs="EPSG:4326", transform=from_origin(-74, 40.7, 1e-4, 1e-4))
    with pytest.raises(errors.RasterError, match="wgs.tif.*has its own CRS \\(EPSG:4326\\), not the assumed"):
        translate_raster(model, other, tmp_path / "e.tif", assume_crs="EPSG:32618", **TILE)
    assert not (tmp_path / "d.tif").exists() and not (tmp_path / "e.tif").exists()


def identity_file(tmp_path):
    from geogan.modelfile import save_model
    from geogan.models.registry import build_generator

    path = tmp_path / "id.geogan"
    if not path.exists():
        arch = {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
        spec = make_spec()
        save_model(TranslationModel({"a": spec, "b": spec}, {"a2b": build_generator("resnet_6blocks", 2, 2, ngf=4)},
                                    arch), path)
    return path


def test_chips_read_crs_less_files_in_the_assumed_crs(tmp_path):
    transform = from_origin(*NYC_UTM, 10.0, 10.0)
    a = write_raster(tmp_path / "a.tif", scene((64, 64), n=1), crs=None, transform=transform)
    b = rgb(tmp_path, crs=UTM18, origin=NYC_UTM)
    s = export_chips(a, b, tmp_path / "chips", kind_a="generic", assume_crs_a="EPSG:32618", tile_size=32,
                     val_fraction=0, paired=True)
    assert rasterio.crs.CRS.from_wkt(s.domains["a"].crs).to_epsg() == 32618 and s.counts["a"]["train"] == 4
    chip = next((tmp_path / "chips" / "train_a").iterdir())
    with rasterio.open(chip) as ds:
        assert ds.crs.to_epsg() == 32618
    res = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "c2"),
                                   "--kind-a", "generic", "--tile-size", "32", "--assume-crs-b", "EPSG:4326"])
    assert res.exit_code == 1 and "a.tif" in res.stderr and "--assume-crs" in res.stderr  # A still has none
    assert res.stderr.count("\n") == 1
    res = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "c3"),
                                   "--kind-a", "generic", "--tile-size", "32", "--assume-crs-a", "EPSG:32618",
                                   "--assume-crs-b", "EPSG:4326"])
    assert res.exit_code == 1 and "rgb.tif" in res.stderr and "has its own CRS" in res.stderr


# --------------------------------------------------------------------------- trained bands

def test_the_trained_bands_are_the_default_for_the_file_trained_on(tmp_path):
    four = write_raster(tmp_path / "rgbn.tif", s2_rgbn())
    s = export_chips(four, rgb(tmp_path), tmp_path / "chips", bands_a="1,2,3", tile_size=32, val_fraction=0)
    spec_a = s.domains["a"]
    assert spec_a.bands == (1, 2, 3) and spec_a.source_count == 4
    model = TranslationModel({"a": spec_a, "b": s.domains["b"]}, {"a2b": conv1x1(3, 3)}, {"generator": "x"})
    default = translate_raster(model, four, tmp_path / "default.tif", **TILE)
    stated = translate_raster(model, four, tmp_path / "stated.tif", bands="1,2,3", **TILE)
    with rasterio.open(default.path) as x, rasterio.open(stated.path) as y:
        np.testing.assert_array_equal(x.read(), y.read())
    # trained on every band of 3-band rasters: which 3 of a 4-band file is still asked
    every = dataclasses.replace(spec_a, source_count=3)
    model3 = TranslationModel({"a": every, "b": s.domains["b"]}, {"a2b": conv1x1(3, 3)}, {"generator": "x"})
    with pytest.raises(errors.BandMismatchError, match="rgbn.tif' has 4 — use --bands"):
        translate_raster(model3, four, tmp_path / "x.tif", **TILE)

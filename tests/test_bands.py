"""Band statistics and normalisation: exact against numpy, exact inverse, dtype-safe casts."""
from __future__ import annotations

import numpy as np
import pytest

from geogan.bands import (
    BandStats, DomainSpec, StatsAccumulator, cast_to_dtype, denormalize, infer_kind, normalize,
)
from geogan.errors import BandMismatchError, ConfigError


def _accumulate(dtype: str, kind: str, seed: int = 0, chunks: int = 6):
    rng = np.random.default_rng(seed)
    acc = StatsAccumulator(2, dtype, kind, seed=seed)
    seen = [[], []]
    for _ in range(chunks):
        data = (rng.gamma(2.0, 0.05, (2, 17, 13)) if kind == "sar" else rng.random((2, 17, 13)) * 250 + 2).astype(dtype)
        valid = rng.random((17, 13)) > 0.3
        acc.update(data, valid)
        for i in range(2):
            seen[i].append(data[i][valid].astype(np.float64))
    return acc.result([1, 2]), [np.concatenate(s) for s in seen]


@pytest.mark.parametrize("dtype,kind", [("uint8", "optical"), ("uint16", "multispectral"), ("float32", "generic"), ("float32", "sar")])
def test_streaming_stats_equal_numpy_on_valid_pixels(dtype, kind):
    stats, values = _accumulate(dtype, kind)
    for s, v in zip(stats, values):
        assert s.count == v.size
        assert s.mean == pytest.approx(v.mean(), rel=1e-12)
        assert s.std == pytest.approx(v.std(), rel=1e-9)
        assert (s.min, s.max) == (v.min(), v.max())
        assert s.p2 == pytest.approx(np.percentile(v, 2), rel=1e-12)
        assert s.p98 == pytest.approx(np.percentile(v, 98), rel=1e-12)
        if kind == "sar":
            db = 10 * np.log10(v.astype(np.float32)).astype(np.float64)
            assert s.mean_db == pytest.approx(db.mean(), rel=1e-6)
            assert s.p98_db == pytest.approx(np.percentile(db, 98), rel=1e-5)
        else:
            assert s.mean_db is None


def test_float_percentiles_are_sampled_beyond_the_reservoir():
    rng = np.random.default_rng(1)
    acc = StatsAccumulator(1, "float32", "generic", max_samples=5000)
    allv = []
    for _ in range(10):
        d = rng.normal(100, 10, (1, 50, 50)).astype("float32")
        acc.update(d, np.ones((50, 50), bool))
        allv.append(d.ravel())
    (s,) = acc.result([1])
    v = np.concatenate(allv).astype(np.float64)
    assert s.count == v.size and s.mean == pytest.approx(v.mean())
    assert s.p2 == pytest.approx(np.percentile(v, 2), abs=1.0)  # a 5000-sample estimate


def _spec(kind: str, dtype: str, lo: float, hi: float, nodata=None, n=2) -> DomainSpec:
    stats = tuple(
        BandStats(band=i + 1, count=10, mean=0, std=1, min=lo, max=hi, p2=lo, p98=hi,
                  **({"p2_db": 10 * np.log10(lo), "p98_db": 10 * np.log10(hi)} if kind == "sar" else {}))
        for i in range(n)
    )
    return DomainSpec(kind=kind, bands=tuple(range(1, n + 1)), dtype=dtype, nodata=nodata, stats=stats)


def test_normalize_maps_range_to_unit_interval_and_inverts_exactly():
    spec = _spec("optical", "float32", 10.0, 210.0)
    x = np.array([[[10.0, 110.0, 210.0]]] * 2, np.float32)
    y = normalize(x, spec)
    np.testing.assert_allclose(y, [[[-1, 0, 1]]] * 2, atol=1e-6)
    np.testing.assert_allclose(denormalize(y, spec), x, rtol=1e-6)


def test_sar_is_scaled_in_db_and_returns_to_linear_power():
    spec = _spec("sar", "float32", 0.001, 1.0)  # -30 dB .. 0 dB
    x = np.array([[[0.001, np.sqrt(0.001), 1.0]]] * 2, np.float32)  # -30, -15, 0 dB
    np.testing.assert_allclose(normalize(x, spec), [[[-1, 0, 1]]] * 2, atol=1e-5)
    np.testing.assert_allclose(denormalize(normalize(x, spec), spec), x, rtol=1e-5)


def test_invalid_pixels_are_neutral_not_black():
    spec = _spec("optical", "uint8", 0, 255, nodata=0)
    x = np.full((2, 2, 2), 255, np.uint8)
    valid = np.array([[True, False], [True, True]])
    y = normalize(x, spec, valid)
    assert y[0, 0, 1] == 0.0 and y[0, 0, 0] == pytest.approx(1.0)


def test_integer_outputs_round_clip_and_stay_off_nodata():
    assert cast_to_dtype(np.array([-5.0, 0.2, 0.6, 254.6, 400.0]), "uint8", nodata=0).tolist() == [1, 1, 1, 255, 255]
    assert cast_to_dtype(np.array([-5.0, 70000.0]), "uint16", nodata=65535).tolist() == [0, 65534]
    assert cast_to_dtype(np.array([-9999.0, 1.5]), "float32", nodata=-9999.0)[0] != -9999.0


def test_domain_spec_round_trips_through_a_dict_and_rejects_nonsense():
    spec = _spec("sar", "float32", 0.01, 0.5)
    assert DomainSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError):
        DomainSpec(kind="lidar", bands=(1,), dtype="float32", nodata=None, stats=spec.stats[:1])
    with pytest.raises(BandMismatchError):
        normalize(np.zeros((3, 4, 4), np.float32), spec)


def test_constant_band_does_not_divide_by_zero():
    spec = _spec("dsm", "float32", 5.0, 5.0, n=1)
    y = normalize(np.full((1, 3, 3), 5.0, np.float32), spec)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(denormalize(y, spec), 5.0)


@pytest.mark.parametrize("dtype,count,sample,kind", [
    ("float32", 2, np.array([0.01, 0.2, 0.05]), "sar"),
    ("float32", 1, np.array([120.0, 340.0]), "dsm"),
    ("uint8", 3, None, "optical"),
    ("uint16", 8, None, "multispectral"),
    ("int16", 2, None, "generic"),
])
def test_kind_inference(dtype, count, sample, kind):
    assert infer_kind(dtype, count, sample) == kind


# ----------------------------------------------------------------------------- SAR units

def _sar_spec(units: str) -> DomainSpec:
    stats = (BandStats(band=1, count=10, mean=0, std=1, min=0, max=1, p2=0, p98=1, p2_db=-30.0, p98_db=0.0),)
    return DomainSpec(kind="sar", bands=(1,), dtype="float32", nodata=None, stats=stats, units=units)


@pytest.mark.parametrize("units,values", [
    ("linear", [0.001, 10 ** -1.5, 1.0]),          # -30, -15, 0 dB
    ("amplitude", [10 ** -1.5, 10 ** -0.75, 1.0]),  # amplitude² = power
    ("db", [-30.0, -15.0, 0.0]),
])
def test_sar_units_all_reach_the_network_as_the_same_db_values(units, values):
    spec = _sar_spec(units)
    x = np.array(values, np.float32)[None, None]
    np.testing.assert_allclose(normalize(x, spec), [[[-1.0, 0.0, 1.0]]], atol=1e-5)
    np.testing.assert_allclose(denormalize(normalize(x, spec), spec), x, rtol=1e-5, atol=1e-5)
    # The same scene stored in dB, given to a model trained on `units`, is converted, not lost.
    db = np.array([-30.0, -15.0, 0.0], np.float32)[None, None]
    np.testing.assert_allclose(normalize(db, spec, units="db"), [[[-1.0, 0.0, 1.0]]], atol=1e-5)


def test_units_are_recorded_and_old_sar_specs_mean_linear_power():
    spec = _sar_spec("db")
    assert DomainSpec.from_dict(spec.to_dict()).units == "db"
    legacy = spec.to_dict()
    del legacy["units"]
    assert DomainSpec.from_dict(legacy).units == "linear"
    with pytest.raises(ConfigError, match="units are for SAR only"):
        DomainSpec(kind="optical", bands=(1,), dtype="uint8", nodata=None, stats=spec.stats, units="db")
    with pytest.raises(ConfigError, match="unknown SAR units"):
        _sar_spec("decibel")


def test_db_valid_pixels_are_valid_and_linear_nonpositive_are_not():
    from geogan.raster import valid_mask

    data = np.array([[[-15.0, 0.0, 2.0]]], np.float32)
    masks = np.full(data.shape, 255, np.uint8)
    assert valid_mask(None, data, masks, "sar", "db").tolist() == [[True, True, True]]
    assert valid_mask(None, data, masks, "sar", "linear").tolist() == [[False, False, True]]


@pytest.mark.parametrize("units", ["linear", "amplitude", "db"])
def test_sar_statistics_in_db_match_numpy_whatever_the_units(units):
    rng = np.random.default_rng(3)
    power = rng.gamma(2.0, 0.05, (1, 40, 40))
    stored = {"linear": power, "amplitude": np.sqrt(power), "db": 10 * np.log10(power)}[units].astype(np.float32)
    acc = StatsAccumulator(1, "float32", "sar", units=units)
    acc.update(stored, np.ones((40, 40), bool))
    (s,) = acc.result([1])
    db = 10 * np.log10(power.astype(np.float32).astype(np.float64)).ravel()
    assert s.mean_db == pytest.approx(db.mean(), abs=1e-3)
    assert s.p2_db == pytest.approx(np.percentile(db, 2), abs=1e-3)
    assert s.p98_db == pytest.approx(np.percentile(db, 98), abs=1e-3)


def test_units_inference_and_contradictions():
    from geogan.bands import check_stated_units, explain_units

    rng = np.random.default_rng(0)
    power = rng.gamma(2.0, 0.05, 5000)
    assert explain_units(power, "float32")[0] == "linear"
    assert explain_units(10 * np.log10(power), "float32")[0] == "db"
    assert explain_units((np.sqrt(power) * 300).astype(np.uint16), "uint16")[0] == "amplitude"
    assert "look like dB" in check_stated_units("linear", 10 * np.log10(power))
    assert check_stated_units("linear", power) is None
    # Issue 20: linear power stated as dB was accepted; all-positive small values are not dB.
    assert "stated units db but no value is 0 or below" in check_stated_units("db", power)
    assert check_stated_units("db", 10 * np.log10(power)) is None


@pytest.mark.parametrize("dtype,count,sample,names,kind", [
    ("float32", 2, -15 + 4 * np.random.default_rng(0).standard_normal(2000), (), "sar"),   # S1 in dB
    ("float32", 1, -12 + 3 * np.random.default_rng(1).standard_normal(2000), (), "sar"),   # VV alone, dB
    ("float32", 1, np.array([1.0, 2.0]), ("x_VV.tif",), "sar"),
    ("int16", 1, np.arange(-20, 900, 3), (), "dsm"),                                        # int16 DEM
    ("uint16", 1, np.arange(0, 3000, 7), ("srtm_38_03.tif",), "dsm"),
    ("uint16", 1, np.array([1, 2, 3, 5, 1, 2] * 50), ("worldcover.tif",), "generic"),       # class map
    ("uint8", 1, np.array([0, 1, 2, 3] * 50), (), "generic"),
    ("uint16", 1, np.random.default_rng(2).integers(100, 4000, 5000), ("B04.tif",), "optical"),
    ("uint8", 6, None, (), "multispectral"),                                               # Landsat-like
])
def test_kinds_that_match_real_products(dtype, count, sample, names, kind):
    from geogan.bands import explain_kind

    got, reason = explain_kind(dtype, count, sample, names=names)
    assert got == kind, reason
    assert reason


def test_a_smooth_uint16_band_is_a_dem_and_a_textured_one_is_imagery():
    from geogan.bands import explain_kind

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    dem = (1000 + 5 * yy + 3 * xx + rng.normal(0, 0.3, (64, 64))).astype(np.uint16)
    image = rng.integers(200, 3000, (64, 64)).astype(np.uint16)
    assert explain_kind("uint16", 1, dem.ravel(), image=dem.astype(float))[0] == "dsm"
    assert explain_kind("uint16", 1, image.ravel(), image=image.astype(float))[0] == "optical"


def test_reservoir_is_a_uniform_sample_beyond_its_size():
    """Algorithm R: after the reservoir is full, the sample stays uniform over everything seen."""
    rng = np.random.default_rng(5)
    acc = StatsAccumulator(1, "float32", "generic", max_samples=2000, seed=1)
    for i in range(50):  # a drifting stream: values of chunk i are near i
        acc.update((i + rng.random((1, 20, 20))).astype(np.float32), np.ones((20, 20), bool))
    (s,) = acc.result([1])
    assert s.count == 20000
    # uniform over chunks 0..49: the 2 % and 98 % points are near 1 and 49
    assert s.p2 == pytest.approx(1.0, abs=0.6) and s.p98 == pytest.approx(49.0, abs=0.6)


def test_amplitude_digital_numbers_get_exact_db_statistics_from_the_histogram():
    rng = np.random.default_rng(4)
    dn = (np.sqrt(rng.gamma(2.0, 0.05, (1, 50, 50))) * 1000).astype(np.uint16) + 1
    acc = StatsAccumulator(1, "uint16", "sar", units="amplitude")
    acc.update(dn, np.ones((50, 50), bool))
    (s,) = acc.result([1])
    db = 20 * np.log10(dn.astype(np.float64)).ravel()
    assert s.mean_db == pytest.approx(db.mean(), rel=1e-6) and s.std_db == pytest.approx(db.std(), rel=1e-5)  # float32 dB
    assert (s.min_db, s.max_db) == (pytest.approx(db.min()), pytest.approx(db.max()))
    assert s.p98_db == pytest.approx(np.percentile(db, 98), rel=1e-6)

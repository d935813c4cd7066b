"""evaluate_rasters against hand-computed metrics (SSIM by a naive per-pixel loop), grid checks,
seam_ratio on synthetic rasters, and the ``geogan evaluate`` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import geogan
from conftest import write_raster
from geogan import errors
from geogan import evaluate as ev
from geogan.cli import cli
from geogan.predict import seam_positions


def naive_ssim(x, y, valid, data_range):
    """SSIM by direct loops: Gaussian 11x11 (sigma 1.5) weighted means/variances at each centre
    whose whole window is inside the image and valid in both."""
    r = 5
    g = np.array([math.exp(-(i * i) / (2 * 1.5 ** 2)) for i in range(-r, r + 1)])
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(r, x.shape[0] - r):
        for j in range(r, x.shape[1] - r):
            if not valid[i - r:i + r + 1, j - r:j + r + 1].all():
                continue
            a = x[i - r:i + r + 1, j - r:j + r + 1]
            b = y[i - r:i + r + 1, j - r:j + r + 1]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(values)), len(values)


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(7)
    truth = rng.normal(100, 20, size=(3, 30, 34)).astype(np.float32)
    pred = (truth + rng.normal(0, 5, size=truth.shape) + 2).astype(np.float32)
    truth[:, 4, 6] = -9999.0          # truth nodata
    pred[1, 20, 25] = np.nan          # NaN in the prediction
    pred[:, 12, 30] = -1.0            # prediction nodata
    t = write_raster(tmp_path / "truth.tif", truth, nodata=-9999.0)
    p = write_raster(tmp_path / "pred.tif", pred, nodata=-1.0)
    valid = np.ones((30, 34), bool)
    valid[4, 6] = valid[20, 25] = valid[12, 30] = False
    return p, t, pred.astype(np.float64), truth.astype(np.float64), valid


def test_metrics_equal_hand_computed_values(pair):
    p, t, pred, truth, valid = pair
    report = geogan.evaluate_rasters(p, t)
    n = int(valid.sum())
    assert report.pixels == n and len(report.bands) == 3
    for i, band in enumerate(report.bands):
        d = pred[i][valid] - truth[i][valid]
        rng = truth[i][valid].max() - truth[i][valid].min()
        assert band.mae == pytest.approx(np.abs(d).mean(), rel=1e-12)
        assert band.rmse == pytest.approx(np.sqrt((d ** 2).mean()), rel=1e-12)
        assert band.data_range == pytest.approx(rng)
        assert band.psnr == pytest.approx(10 * np.log10(rng ** 2 / (d ** 2).mean()), rel=1e-12)
        ref, count = naive_ssim(pred[i], truth[i], valid, rng)
        assert band.ssim == pytest.approx(ref, abs=1e-10) and band.ssim_pixels == count
    d = pred[:, valid] - truth[:, valid]
    assert report.mae == pytest.approx(np.abs(d).mean())
    assert report.rmse == pytest.approx(np.sqrt((d ** 2).mean()))
    all_range = truth[:, valid].max() - truth[:, valid].min()
    assert report.psnr == pytest.approx(10 * np.log10(all_range ** 2 / (d ** 2).mean()))
    assert report.ssim == pytest.approx(np.mean([b.ssim for b in report.bands]))
    a, b = pred[:, valid], truth[:, valid]
    angles = [math.degrees(math.acos(min(1.0, float(a[:, k] @ b[:, k]) / (np.linalg.norm(a[:, k]) * np.linalg.norm(b[:, k])))))
              for k in range(a.shape[1])]
    assert report.sam == pytest.approx(np.mean(angles), rel=1e-9)


def test_strips_with_halo_give_the_same_ssim(pair, monkeypatch):
    p, t, *_ = pair
    whole = geogan.evaluate_rasters(p, t)
    monkeypatch.setattr(ev, "STRIP_ROWS", 4)
    strips = geogan.evaluate_rasters(p, t)
    for a, b in zip(whole.bands, strips.bands):
        assert a.ssim == pytest.approx(b.ssim, abs=1e-12) and a.ssim_pixels == b.ssim_pixels
        assert a.rmse == pytest.approx(b.rmse, rel=1e-12)
    assert whole.sam == pytest.approx(strips.sam)


def test_identical_rasters(tmp_path):
    data = np.random.default_rng(0).random((2, 20, 20)).astype(np.float32)
    a = write_raster(tmp_path / "a.tif", data)
    b = write_raster(tmp_path / "b.tif", data)
    r = ev.evaluate_rasters(a, b)
    assert r.mae == 0 and r.rmse == 0 and math.isinf(r.psnr) and r.ssim == pytest.approx(1.0) and r.sam is None
    d = r.to_dict()
    assert d["psnr"] == "inf" and d["sam"] is None and json.loads(json.dumps(d)) == d


def test_ssim_of_a_raster_under_one_window_is_nan_and_says_why(tmp_path):
    """8x8 pixels: no 11x11 window fits, so SSIM is NaN (null in JSON) and the text says why."""
    data = np.random.default_rng(1).random((1, 8, 8)).astype(np.float32)
    a = write_raster(tmp_path / "a.tif", data)
    b = write_raster(tmp_path / "b.tif", data * 0.5)
    r = ev.evaluate_rasters(a, b)
    assert math.isnan(r.ssim) and r.bands[0].ssim_pixels == 0 and r.mae > 0
    assert r.to_dict()["ssim"] is None
    assert any(line.startswith("SSIM not computed") and "11x11" in line for line in r.lines())
    big = write_raster(tmp_path / "big.tif", np.random.default_rng(2).random((1, 12, 12)).astype(np.float32))
    assert not any(line.startswith("SSIM not computed") for line in ev.evaluate_rasters(big, big).lines())


def test_ssim_of_constant_images_is_the_luminance_term():
    """Constant images differing by an offset: SSIM reduces to the luminance term."""
    x = np.full((20, 20), 10.0)
    y = np.full((20, 20), 12.0)
    c1 = (0.01 * 5.0) ** 2
    expected = (2 * 10 * 12 + c1) / (100 + 144 + c1)
    np.testing.assert_allclose(ev.ssim_map(x, y, 5.0), expected)
    assert ev.ssim_map(x, y, 5.0).shape == (10, 10)


def test_ssim_equals_skimage_structural_similarity(tmp_path):
    """The map and the band SSIM are skimage's Gaussian SSIM (Wang et al. 2004): the same numbers."""
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(11)
    truth = rng.normal(100, 20, size=(2, 37, 41))
    truth[1] = np.cumsum(truth[1], axis=1) / 10  # one band with spatial structure
    pred = 0.8 * truth + rng.normal(0, 6, size=truth.shape) + 5
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    for x, y in zip(pred, truth):
        r = float(y.max() - y.min())
        mssim, full = metrics.structural_similarity(x, y, data_range=r, full=True, **kwargs)
        np.testing.assert_allclose(ev.ssim_map(x, y, r), full[5:-5, 5:-5], rtol=0, atol=1e-10)
        assert ev.ssim_map(x, y, r).mean() == pytest.approx(mssim, abs=1e-12)

    report = geogan.evaluate_rasters(write_raster(tmp_path / "pred.tif", pred.astype(np.float32)),
                                     write_raster(tmp_path / "truth.tif", truth.astype(np.float32)))
    for band, x, y in zip(report.bands, pred.astype(np.float32), truth.astype(np.float32)):
        x, y = x.astype(np.float64), y.astype(np.float64)
        expected = metrics.structural_similarity(x, y, data_range=float(y.max() - y.min()), **kwargs)
        assert band.ssim == pytest.approx(expected, abs=1e-10)
        assert band.ssim_pixels == (37 - 10) * (41 - 10)


def test_grid_mismatches_are_refused_with_the_reason(tmp_path):
    data = np.ones((1, 20, 20), np.float32)
    a = write_raster(tmp_path / "a.tif", data)
    with pytest.raises(errors.RasterError, match="shape 20x20 vs 20x21"):
        ev.evaluate_rasters(a, write_raster(tmp_path / "b.tif", np.ones((1, 20, 21), np.float32)))
    with pytest.raises(errors.RasterError, match="CRS EPSG:32633 vs EPSG:3035"):
        ev.evaluate_rasters(a, write_raster(tmp_path / "c.tif", data, crs="EPSG:3035"))
    with pytest.raises(errors.RasterError, match="transform"):
        ev.evaluate_rasters(a, write_raster(tmp_path / "d.tif", data, origin=(500010.0, 5000000.0)))
    with pytest.raises(errors.InputNotFoundError):
        ev.evaluate_rasters(a, tmp_path / "missing.tif")


def test_band_selection(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.random((4, 16, 16)).astype(np.float32)
    t = write_raster(tmp_path / "t.tif", truth)
    p3 = write_raster(tmp_path / "p3.tif", truth[[3, 1, 0]])
    with pytest.raises(errors.BandMismatchError, match="use --bands"):
        ev.evaluate_rasters(p3, t)
    r = ev.evaluate_rasters(p3, t, bands="4,2,1")
    assert r.mae == 0 and [b.band for b in r.bands] == [4, 2, 1] and r.sam == pytest.approx(0.0, abs=1e-5)
    p4 = write_raster(tmp_path / "p4.tif", truth)
    r = ev.evaluate_rasters(p4, t, bands="2")
    assert r.mae == 0 and [b.band for b in r.bands] == [2]


def test_no_common_valid_pixel(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.zeros((1, 8, 8), np.float32), nodata=0.0)
    b = write_raster(tmp_path / "b.tif", np.ones((1, 8, 8), np.float32))
    with pytest.raises(errors.RasterError, match="no pixel valid in both"):
        ev.evaluate_rasters(a, b)


# --------------------------------------------------------------------------- seams

def smooth_field(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    f = np.zeros((h, w))
    for _ in range(6):
        fx, fy, ph = rng.uniform(0.01, 0.08, 2).tolist() + [rng.uniform(0, 6)]
        f += np.sin(fx * xx + fy * yy + ph)
    return f + 0.05 * rng.standard_normal((h, w))


def test_seam_ratio_is_one_without_seams_and_large_with_steps(tmp_path):
    h, w, tile, overlap = 300, 340, 64, 16
    base = smooth_field(h, w)
    clean = write_raster(tmp_path / "clean.tif", base[None].astype(np.float32))
    assert ev.seam_ratio(clean, tile, overlap) == pytest.approx(1.0, abs=0.15)
    stepped = base.copy()
    xs, ys = seam_positions(w, tile, overlap), seam_positions(h, tile, overlap)
    for k, x in enumerate(xs):
        stepped[:, x:] += 0.5 * (-1) ** k
    for k, y in enumerate(ys):
        stepped[y:, :] += 0.5 * (-1) ** k
    bad = write_raster(tmp_path / "bad.tif", stepped[None].astype(np.float32))
    assert ev.seam_ratio(bad, tile, overlap) > 2.0
    small = write_raster(tmp_path / "small.tif", base[None, :40, :40].astype(np.float32))
    assert math.isnan(ev.seam_ratio(small, tile, overlap))


def test_seam_ratio_against_a_one_tile_reference_ignores_content_on_the_boundaries(tmp_path):
    h, w, tile, overlap = 300, 340, 64, 16
    base = smooth_field(h, w, seed=1)
    xs, ys = seam_positions(w, tile, overlap), seam_positions(h, tile, overlap)
    roads = base.copy()
    roads[:, xs[0] - 1] -= 1.0  # a road along a tile boundary: content, not a seam
    roads[ys[0] - 1, :] -= 1.0
    one_tile = write_raster(tmp_path / "one_tile.tif", roads[None].astype(np.float32))
    assert ev.seam_ratio(one_tile, tile, overlap) > 1.3  # the raw ratio sees the roads
    tiled = write_raster(tmp_path / "tiled.tif", (roads + 1e-4 * smooth_field(h, w, seed=2))[None].astype(np.float32))
    assert ev.seam_ratio(tiled, tile, overlap, reference=one_tile) == pytest.approx(1.0, abs=0.01)
    assert ev.seam_ratio(one_tile, tile, overlap, reference=one_tile) == 1.0
    stepped = roads.copy()
    for k, x in enumerate(xs):
        stepped[:, x:] += 0.5 * (-1) ** k
    bad = write_raster(tmp_path / "bad.tif", stepped[None].astype(np.float32))
    assert ev.seam_ratio(bad, tile, overlap, reference=one_tile) > 1.5
    other = write_raster(tmp_path / "other.tif", roads[None, :, :-4].astype(np.float32))
    with pytest.raises(errors.RasterError, match="not on the same grid"):
        ev.seam_ratio(tiled, tile, overlap, reference=other)


def test_seam_ratio_streams_in_strips(tmp_path, monkeypatch):
    base = smooth_field(150, 170, seed=3)
    p = write_raster(tmp_path / "p.tif", base[None].astype(np.float32))
    whole = ev.seam_ratio(p, 32, 8)
    monkeypatch.setattr(ev, "STRIP_ROWS", 7)
    assert ev.seam_ratio(p, 32, 8) == pytest.approx(whole, rel=1e-9)


# --------------------------------------------------------------------------- CLI

def test_evaluate_cli_text_and_json(pair):
    p, t, *_ = pair
    res = CliRunner().invoke(cli, ["evaluate", str(p), str(t)])
    assert res.exit_code == 0, res.output
    assert "SSIM" in res.output and "SAM" in res.output
    res = CliRunner().invoke(cli, ["evaluate", str(p), str(t), "--json", "--bands", "1,2"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert [b["band"] for b in d["bands"]] == [1, 2] and d["sam"] is None and d["ssim_window"].startswith("gaussian")


def test_evaluate_cli_grid_mismatch_is_one_line(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((1, 10, 10), np.float32))
    b = write_raster(tmp_path / "b.tif", np.ones((1, 10, 10), np.float32), crs="EPSG:4326", origin=(10, 50), res=0.01)
    res = CliRunner().invoke(cli, ["evaluate", str(a), str(b)])
    assert res.exit_code == 1 and res.output.startswith("geogan: error:") and "not on the same grid" in res.output
    assert len(res.output.strip().splitlines()) == 1

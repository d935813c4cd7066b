"""Per-class scores of ``evaluate_rasters(..., classes=)`` and ``geogan evaluate --classes``:
hand-computed values on tiny rasters, strip-by-strip accumulation, and one clear error for
a class raster that does not fit."""
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

# Three classes of three pixels each; the last column has no class (class nodata 0).
TRUTH = np.array([[10, 20, 30, 0],
                  [100, 110, 120, 0],
                  [200, 210, 220, 0]], np.float32)
PRED = np.array([[100, 25, 15, 99],
                 [20, 105, 130, 99],
                 [190, 120, 115, 99]], np.float32)
CLASSES = np.array([[1, 1, 1, 0],
                    [2, 2, 2, 0],
                    [3, 3, 3, 0]], np.uint8)


@pytest.fixture
def tiny(tmp_path):
    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    c = write_raster(tmp_path / "classes.tif", CLASSES, nodata=0)
    return p, t, c


def test_per_class_metrics_equal_hand_computed_values(tiny):
    p, t, c = tiny
    report = geogan.evaluate_rasters(p, t, classes=c).classes
    assert report.values == (1, 2, 3)
    one, two, three = report.classes
    # Class 1: truth 10, 20, 30 (mean 20); errors 90, 5, -15.
    assert one.pixels == 3 and one.truth_mean == (20.0,)
    assert one.mae == pytest.approx(110 / 3) and one.rmse == pytest.approx(math.sqrt(8350 / 3))
    assert one.prediction_mean == pytest.approx((140 / 3,))
    # Class 2: truth mean 110; errors -80, -5, 10.
    assert two.mae == pytest.approx(95 / 3) and two.rmse == pytest.approx(math.sqrt(6525 / 3))
    # Class 3: truth mean 210; errors -10, -90, -105.
    assert three.mae == pytest.approx(205 / 3) and three.rmse == pytest.approx(math.sqrt(19225 / 3))
    # Nearest mean truth colour (20, 110, 210): 100->2, 25->1, 15->1 | 20->1, 105->2, 130->2 |
    # 190->3, 120->2, 115->2.
    assert report.confusion == ((2, 1, 0), (1, 2, 0), (0, 2, 1))
    assert [x.own_share for x in report.classes] == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert [x.painted_as for x in report.classes] == [1, 2, 2]
    assert report.swapped == (3,)


def test_pixels_invalid_in_prediction_or_truth_are_left_out_of_classes(tmp_path):
    truth = TRUTH.copy()
    truth[0, 0] = -1  # truth nodata: class 1 keeps 20 and 30 (mean 25)
    pred = PRED.copy()
    pred[2, 2] = np.nan  # invalid prediction: class 3 keeps 190 and 120
    p = write_raster(tmp_path / "pred.tif", pred)
    t = write_raster(tmp_path / "truth.tif", truth, nodata=-1)
    c = write_raster(tmp_path / "classes.tif", CLASSES, nodata=0)
    report = geogan.evaluate_rasters(p, t, classes=c).classes
    one, _, three = report.classes
    assert one.pixels == 2 and one.truth_mean == (25.0,) and one.mae == pytest.approx((5 + 15) / 2)
    assert three.pixels == 2 and three.truth_mean == (205.0,)
    # means 25, 110, 205: 25->1, 15->1 | 20->1, 105->2, 130->2 | 190->3, 120->2
    assert report.confusion == ((2, 0, 0), (1, 2, 0), (0, 1, 1))


def _reference(pred, truth, classes):
    """Per-class MAE and the confusion table by plain loops over pixels."""
    values = sorted(set(classes.ravel().tolist()) - {0})
    means = {v: truth[:, classes == v].mean(axis=1) for v in values}
    confusion = np.zeros((len(values), len(values)), int)
    mae = {}
    for i, v in enumerate(values):
        ys, xs = np.nonzero(classes == v)
        errs = []
        for y, x in zip(ys, xs):
            colour = pred[:, y, x]
            dists = [float(np.sum((colour - means[u]) ** 2)) for u in values]
            confusion[i, int(np.argmin(dists))] += 1
            errs.append(np.abs(colour - truth[:, y, x]).mean())
        mae[v] = float(np.mean(errs))
    return values, mae, confusion


def test_multiband_classes_over_many_strips_match_a_pixel_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "STRIP_ROWS", 7)  # 40 rows: six strips, classes first seen in later strips
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 5, size=(40, 9)).astype(np.int16)
    classes[:20][classes[:20] == 4] = 1  # class 4 appears only in the lower strips
    colours = np.array([[0, 0, 0], [10, 80, 20], [60, 60, 60], [200, 30, 30], [90, 140, 220]], float)
    truth = np.moveaxis(colours[classes], -1, 0) + rng.normal(0, 5, (3, 40, 9))
    pred = truth + rng.normal(0, 40, (3, 40, 9))
    p = write_raster(tmp_path / "pred.tif", pred.astype(np.float32))
    t = write_raster(tmp_path / "truth.tif", truth.astype(np.float32))
    c = write_raster(tmp_path / "classes.tif", classes, nodata=0)
    report = geogan.evaluate_rasters(p, t, classes=c).classes
    values, mae, confusion = _reference(pred.astype(np.float32).astype(float), truth.astype(np.float32).astype(float),
                                        classes)
    assert list(report.values) == values == [1, 2, 3, 4]
    assert np.array_equal(np.array(report.confusion), confusion)
    assert [x.mae for x in report.classes] == pytest.approx([mae[v] for v in values])
    assert sum(x.pixels for x in report.classes) == int((classes > 0).sum())


def test_class_names_come_from_the_rasters_class_tags(tmp_path):
    import rasterio

    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    c = write_raster(tmp_path / "classes.tif", CLASSES, nodata=0)
    with rasterio.open(c, "r+") as ds:
        ds.update_tags(CLASS_1="water", CLASS_3="urban")
    report = geogan.evaluate_rasters(p, t, classes=c)
    assert [x.name for x in report.classes.classes] == ["water", "", "urban"]
    text = "\n".join(report.lines())
    assert "urban" in text and "<- swapped" in text


def test_a_class_raster_on_another_grid_is_one_clear_error(tmp_path):
    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    shifted = write_raster(tmp_path / "classes.tif", CLASSES, nodata=0, origin=(500010.0, 5000000.0))
    with pytest.raises(errors.RasterError, match="classes.tif.*not on the same grid.*transform"):
        geogan.evaluate_rasters(p, t, classes=shifted)
    smaller = write_raster(tmp_path / "small.tif", CLASSES[:2], nodata=0)
    with pytest.raises(errors.RasterError, match="shape 2x4 vs 3x4"):
        geogan.evaluate_rasters(p, t, classes=smaller)


@pytest.mark.parametrize("data, message", [
    (np.stack([CLASSES, CLASSES]), "one band"),
    (CLASSES.astype(np.float32), "integer class codes"),
])
def test_class_raster_must_be_one_integer_band(tmp_path, data, message):
    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    c = write_raster(tmp_path / "classes.tif", data)
    with pytest.raises(errors.RasterError, match=message):
        geogan.evaluate_rasters(p, t, classes=c)


def test_too_many_distinct_values_is_not_a_class_raster(tmp_path, monkeypatch):
    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    c = write_raster(tmp_path / "classes.tif", np.arange(12, dtype=np.int32).reshape(1, 3, 4) * 99)
    assert len(geogan.evaluate_rasters(p, t, classes=c).classes.values) == 12  # any integer codes
    monkeypatch.setattr(ev, "MAX_CLASSES", 5)
    with pytest.raises(errors.RasterError, match="more than 5 distinct values"):
        geogan.evaluate_rasters(p, t, classes=c)


def test_cli_prints_the_class_table_and_json(tiny):
    p, t, c = tiny
    res = CliRunner().invoke(cli, ["evaluate", str(p), str(t), "--classes", str(c)])
    assert res.exit_code == 0, res.output
    assert "painted as" in res.output and "<- swapped" in res.output
    res = CliRunner().invoke(cli, ["evaluate", str(p), str(t), "--classes", str(c), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["classes"]["confusion"] == [[2, 1, 0], [1, 2, 0], [0, 2, 1]]
    assert [x["painted_as"] for x in d["classes"]["classes"]] == [1, 2, 2]
    plain = json.loads(CliRunner().invoke(cli, ["evaluate", str(p), str(t), "--json"]).output)
    assert plain["classes"] is None


def test_cli_class_grid_mismatch_is_one_line(tmp_path):
    p = write_raster(tmp_path / "pred.tif", PRED)
    t = write_raster(tmp_path / "truth.tif", TRUTH)
    c = write_raster(tmp_path / "classes.tif", CLASSES, nodata=0, crs="EPSG:4326", res=0.001)
    res = CliRunner().invoke(cli, ["evaluate", str(p), str(t), "--classes", str(c)])
    assert res.exit_code == 1 and res.output.startswith("geogan: error:") and "not on the same grid" in res.output
    assert len(res.output.strip().splitlines()) == 1

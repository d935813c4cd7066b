"""Warnings in the API (issue 20): every public result carries the sentences the CLI prints, once
each, including those logged by geogan's worker threads and none of another thread's; the chips
summary is honest when a domain keeps no validation chip."""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import geogan
from geogan.chips import plan_split
from geogan.cli import cli
from geogan.notices import WarningCollector, carry_collector

from conftest import TINY_TRAINING, make_chips, save_tiny_sar_to_rgb_model

log = logging.getLogger("geogan.tests")


def cli_warnings(stderr: str) -> list[str]:
    """The sentences after ``geogan: warning:`` on the CLI's stderr."""
    return re.findall(r"^geogan: warning: (.*)$", stderr, flags=re.M)


# ------------------------------------------------------------------------------- the collector

def test_a_call_collects_its_threads_warnings_once_and_no_one_elses():
    other_started = threading.Event()
    release = threading.Event()

    def foreign() -> None:  # another algorithm running at the same time, in its own thread
        other_started.set()
        release.wait(5)
        log.warning("from another algorithm")

    stranger = threading.Thread(target=foreign)
    stranger.start()
    with WarningCollector() as notes:
        other_started.wait(5)
        log.info("not a warning")
        log.warning("scene %s: mostly nodata", "x.tif")
        log.warning("scene %s: mostly nodata", "x.tif")  # the same sentence again: kept once
        log.error("an error line counts too")
        worker = threading.Thread(target=carry_collector(lambda: log.warning("from a worker thread")))
        worker.start()
        worker.join()
        release.set()
        stranger.join()
        uncarried = threading.Thread(target=lambda: log.warning("from a thread geogan did not start"))
        uncarried.start()
        uncarried.join()
    log.warning("after the call")
    assert notes.warnings == ("scene x.tif: mostly nodata", "an error line counts too", "from a worker thread")


def test_nested_calls_each_get_their_own_and_the_outer_all_none_twice(caplog):
    with WarningCollector() as outer:
        log.warning("before")
        with WarningCollector() as inner:
            log.warning("inside")
        log.warning("inside")
    assert inner.warnings == ("inside",)
    assert outer.warnings == ("before", "inside")
    assert [r.getMessage() for r in caplog.records] == ["before", "inside", "inside"]  # logging as before
    assert not [h for h in logging.getLogger("geogan").handlers if type(h).__name__ == "_CollectingHandler"]


def test_two_calls_in_two_threads_keep_apart():
    results: dict[str, tuple[str, ...]] = {}
    barrier = threading.Barrier(2)

    def call(name: str) -> None:
        with WarningCollector() as notes:
            barrier.wait(5)
            for i in range(20):
                log.warning("%s %d", name, i)
            barrier.wait(5)
        results[name] = notes.warnings

    threads = [threading.Thread(target=call, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["first"] == tuple(f"first {i}" for i in range(20))
    assert results["second"] == tuple(f"second {i}" for i in range(20))


# ------------------------------------------------------------------------------- translation

def _mostly_nodata_scene(make_raster, name: str = "gappy.tif") -> Path:
    # SAR power as Sentinel-1 has it (-22..-12 dB): no units guess to warn about (issue 20)
    rng = np.random.default_rng(3)
    data = (10 ** (rng.random((2, 48, 48)) - 2.2)).astype("float32")
    data[:, :, 4:] = -9999.0  # 92 % nodata
    return make_raster(name, data, nodata=-9999.0)


def test_translate_raster_result_lists_the_warning_the_cli_prints(tmp_path, make_raster, one_torch_thread):
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    src = _mostly_nodata_scene(make_raster)
    result = geogan.translate_raster(model, src, tmp_path / "out.tif", tile_size=32, overlap=8, device="cpu")
    assert len(result.warnings) == 1 and "nodata" in result.warnings[0] and "gappy.tif" in result.warnings[0]

    run = CliRunner().invoke(cli, ["predict", str(model), str(src), str(tmp_path / "cli.tif"), "--tile-size", "32",
                                   "--overlap", "8", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    assert cli_warnings(run.stderr) == list(result.warnings)


def test_a_warning_logged_in_the_predictors_reader_threads_is_collected(tmp_path, make_raster, monkeypatch,
                                                                        one_torch_thread):
    from geogan.predict.stages import StripReader

    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    rng = np.random.default_rng(1)
    src = make_raster("clean.tif", (10 ** (rng.random((2, 600, 40)) - 2.2)).astype("float32"))
    read, threads = StripReader.read, set()

    def read_and_warn(self, panel, y0):  # one row chunk of the scene
        threads.add(threading.current_thread().name)
        log.warning("rows from %d read", y0)
        return read(self, panel, y0)

    monkeypatch.setattr(StripReader, "read", read_and_warn)
    result = geogan.translate_raster(model, src, tmp_path / "out.tif", tile_size=32, overlap=8, device="cpu")
    assert threading.current_thread().name not in threads  # they were logged in worker threads
    starts = sorted(int(w.split()[2]) for w in result.warnings)
    assert starts[0] == 0 and len(set(starts)) == len(starts) >= 2  # every chunk's warning, once


def test_batch_outcomes_carry_their_scenes_warnings_and_the_batch_all(tmp_path, make_raster, one_torch_thread):
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    rng = np.random.default_rng(2)
    clean = make_raster("clean.tif", (10 ** (rng.random((2, 40, 40)) - 2.2)).astype("float32"))
    gappy = _mostly_nodata_scene(make_raster)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    result = geogan.translate_rasters(model, [clean, gappy, broken], tmp_path / "out", tile_size=32, overlap=8,
                                      device="cpu")
    by_name = {Path(o.scene).name: o for o in result.outcomes}
    assert by_name["clean.tif"].warnings == ()
    assert len(by_name["gappy.tif"].warnings) == 1 and "nodata" in by_name["gappy.tif"].warnings[0]
    assert by_name["gappy.tif"].result.warnings == by_name["gappy.tif"].warnings
    assert by_name["broken.tif"].status == "failed"
    assert any(w.startswith("scene failed (the batch goes on)") for w in by_name["broken.tif"].warnings)
    assert result.warnings == by_name["gappy.tif"].warnings + by_name["broken.tif"].warnings  # in order, once

    run = CliRunner().invoke(cli, ["predict", str(model), str(clean), str(gappy), str(broken),
                                   str(tmp_path / "cli") + "/", "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert run.exit_code != 0  # one scene failed
    assert [w.replace(str(tmp_path / "cli"), "OUT") for w in cli_warnings(run.stderr)] == \
        [w.replace(str(tmp_path / "out"), "OUT") for w in result.warnings]


# ------------------------------------------------------------------------------- chips

def _two_domains(make_raster, nodata_windows=()):
    """A (2-band float) and B (3-band uint8, nodata 0 in ``nodata_windows`` of 32 px) on 192 px."""
    rng = np.random.default_rng(0)
    a = make_raster("a.tif", (rng.random((2, 192, 192)) * 0.8 + 0.1).astype("float32"))
    b_data = rng.integers(1, 255, (3, 192, 192)).astype("uint8")
    for r, c in nodata_windows:
        b_data[:, r:r + 32, c:c + 32] = 0
    b = make_raster("b.tif", b_data, nodata=0)
    return a, b


def test_a_domain_that_keeps_no_validation_chip_is_warned_about_and_summarised_honestly(tmp_path, make_raster):
    options = dict(tile_size=32, val_fraction=0.1, kind_a="generic", kind_b="optical", seed=0)
    a, b = _two_domains(make_raster)
    first = geogan.export_chips(a, b, tmp_path / "full", **options)
    assert first.counts["b"]["val"] > 0 and first.warnings == ()
    val_windows = [tuple(int(x) for x in re.search(r"_r(\d+)_c(\d+)\.tif$", p.name).groups())
                   for p in (tmp_path / "full" / "val_b").iterdir()]

    a, b = _two_domains(make_raster, nodata_windows=val_windows)  # B's validation blocks fall in a gap
    summary = geogan.export_chips(a, b, tmp_path / "gap", **options)
    assert summary.counts["b"]["val"] == 0 and summary.counts["a"]["val"] > 0
    train_b = summary.counts["b"]["train"]
    assert summary.warnings == (
        f"domain b: no validation chips kept (asked 10 %): none in the 4 of 36 blocks set aside (11 % of the chip "
        f"windows) had enough valid pixels (--min-valid); {train_b} training chips",)
    assert summary.validation["b"].endswith(f"; kept 0 validation of {train_b} chips = 0 %")
    assert "kept 0 validation" not in summary.validation["a"]

    run = CliRunner().invoke(cli, ["chips", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "cli"),
                                   "--tile-size", "32", "--kind-a", "generic", "--kind-b", "optical"])
    assert run.exit_code == 0, run.output
    assert cli_warnings(run.stderr) == list(summary.warnings)
    assert f"validation: {summary.validation['b']}" in run.stdout


def test_kept_validation_share_is_judged_against_the_asked_fraction():
    cands = [(0, r, c) for r in range(0, 320, 32) for c in range(0, 320, 32)]  # 100 windows, 10 x 10 blocks
    split = plan_split(cands, 32, 0.1, seed=0)
    assert split.warning() is None and split.val_windows == 10
    assert split.kept_warning(train=80, val=9) is None  # 10 %: fine
    assert split.kept_warning(train=80, val=2).startswith("validation keeps 2 of 82 chips = 2 % (asked 10 %): fewer")
    assert split.kept_warning(train=10, val=9).startswith("validation keeps 9 of 19 chips = 47 % (asked 10 %): more")
    assert split.kept_warning(train=80, val=0).startswith("no validation chips kept (asked 10 %)")
    assert plan_split(cands, 32, 0.0, seed=0).kept_warning(train=100, val=0) is None  # none asked


# ------------------------------------------------------------------------------- evaluate, train

def test_evaluation_report_lists_the_calls_warnings(tmp_path, make_raster, monkeypatch):
    import geogan.evaluate as evaluate

    rng = np.random.default_rng(4)
    truth = make_raster("truth.tif", rng.random((1, 24, 24)).astype("float32"))
    pred = make_raster("pred.tif", rng.random((1, 24, 24)).astype("float32"))
    assert geogan.evaluate_rasters(pred, truth).warnings == ()
    check = evaluate.check_same_grid

    def check_and_warn(*args):
        log.warning("the prediction was made by another model")
        return check(*args)

    monkeypatch.setattr(evaluate, "check_same_grid", check_and_warn)
    report = geogan.evaluate_rasters(pred, truth)
    assert report.warnings == ("the prediction was made by another model",)
    assert report.to_dict()["warnings"] == ["the prediction was made by another model"]


def test_train_result_is_the_model_path_with_the_runs_warnings(tmp_path, one_torch_thread):
    chips = make_chips(tmp_path / "chips", n_train=2)  # 2-band SAR vs 3-band optical: no identity loss
    out = tmp_path / "run"
    result = geogan.train(dict(TINY_TRAINING, data=str(chips), out=str(out)))
    assert result == out / "model.geogan" and result.exists()
    assert len(result.warnings) == 1 and result.warnings[0].startswith("identity loss off: domain A has 2 band(s)")
    assert isinstance(result, geogan.TrainResult) and result.parent.warnings == ()

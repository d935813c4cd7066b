"""The QGIS plugin's pure-Python glue, with a fake QgsProcessingFeedback (no QGIS needed).

The real QGIS run is ``tools/qgis_check.sh``; these tests pin down what the plugin does with
geogan's progress reports, log records and errors, in the normal CI venv.
"""
from __future__ import annotations

import configparser
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "qgis"))

import geogan  # noqa: E402
from geogan_provider import environment  # noqa: E402
from geogan_provider.feedback import FeedbackProgress, TrainingProgress, forward_logging  # noqa: E402
from geogan_provider.glue import band_list, import_geogan, run_with_feedback, train_settings  # noqa: E402


class FakeFeedback:
    """Records what a QgsProcessingFeedback would receive; cancels on request."""

    def __init__(self, cancel_after_updates: int | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.canceled = False
        self.cancel_after_updates = cancel_after_updates

    def setProgress(self, value: float) -> None:  # noqa: N802
        self.calls.append(("progress", value))
        if self.cancel_after_updates is not None and len(self.progress) >= self.cancel_after_updates:
            self.canceled = True

    def setProgressText(self, text: str) -> None:  # noqa: N802
        self.calls.append(("text", text))

    def pushInfo(self, text: str) -> None:  # noqa: N802
        self.calls.append(("info", text))

    def pushWarning(self, text: str) -> None:  # noqa: N802
        self.calls.append(("warning", text))

    def reportError(self, text: str, fatal: bool = False) -> None:  # noqa: N802
        self.calls.append(("error", text))

    def isCanceled(self) -> bool:  # noqa: N802
        return self.canceled

    def of(self, kind: str) -> list:
        return [v for k, v in self.calls if k == kind]

    @property
    def progress(self) -> list:
        return self.of("progress")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ToolError(Exception):
    """Stands in for QgsProcessingException."""


def test_progress_maps_to_percent_and_labels_each_phase():
    fb = FakeFeedback()
    p = FeedbackProgress(fb, clock=FakeClock())
    assert isinstance(p, geogan.Progress)
    p.update(0, 4, "tiles")
    for done in range(1, 5):
        p.update(done, 4, "tiles")
    assert fb.progress == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert fb.of("text") == ["tiles"]  # one label per phase, not one log line per tile
    p.update(1, 2, "epoch 1/1")  # a new total starts a new phase
    assert fb.of("text") == ["tiles", "epoch 1/1"]
    assert fb.progress[-1] == 50.0 and p.max_percent == 100.0


def test_progress_is_sent_only_when_the_whole_percent_moves():
    fb = FakeFeedback()
    p = FeedbackProgress(fb, clock=FakeClock())
    for done in range(0, 1001):
        p.update(done, 1000, "tiles")
    assert len(fb.progress) == 101
    assert fb.progress[0] == 0.0 and fb.progress[-1] == 100.0
    assert fb.progress == sorted(fb.progress)


def test_progress_clamps_and_handles_a_zero_total():
    fb = FakeFeedback()
    p = FeedbackProgress(fb, clock=FakeClock())
    p.update(7, 5, "")
    assert fb.progress == [100.0]
    p.update(0, 0, "nothing to do")
    assert fb.progress[-1] == 100.0


def test_changing_messages_are_logged_at_most_every_interval_and_at_phase_end():
    clock = FakeClock()
    fb = FakeFeedback()
    p = FeedbackProgress(fb, info_every_s=5.0, clock=clock)
    p.update(0, 10, "epoch 1/2 loss 1.0")
    for step in range(1, 10):
        clock.now += 1.0
        p.update(step, 10, f"epoch 1/2 loss {1.0 / (step + 1):.3f}")
    assert fb.of("info") == ["epoch 1/2 loss 0.167"]  # 5 s after the phase label
    p.update(10, 10, "epoch 1/2 loss 0.091")
    assert fb.of("info")[-1] == "epoch 1/2 loss 0.091"  # the end of a phase is always shown
    p.update(10, 10, "epoch 1/2 loss 0.091")
    assert len(fb.of("info")) == 2  # and never twice


def test_training_progress_spans_the_whole_run_and_logs_each_epoch_end():
    fb = FakeFeedback()
    p = TrainingProgress(fb, clock=FakeClock())
    for epoch in (1, 2, 3):
        for step in range(1, 5):
            p.update(step, 4, f"epoch {epoch}/3  G {epoch * 10 + step}")
    assert fb.progress == sorted(fb.progress)  # one sweep, not one per epoch
    assert fb.progress[0] == 25.0 / 3 and fb.progress[-1] == 100.0
    assert fb.of("text") == ["epoch 1/3  G 11"]
    assert fb.of("info") == ["epoch 1/3  G 14", "epoch 2/3  G 24", "epoch 3/3  G 34"]
    p.update(1, 2, "writing the model")  # anything else passes through as its own phase
    assert fb.progress[-1] == 50.0 and fb.of("text")[-1] == "writing the model"


def test_training_progress_through_a_real_tiny_training(make_raster, tmp_path):
    rng = np.random.default_rng(1)
    a = make_raster("a.tif", (rng.random((1, 64, 64)) + 0.1).astype("float32"))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 64, 64)).astype("uint8"))
    geogan.export_chips([a], [b], tmp_path / "chips", tile_size=32, val_fraction=0.0, min_valid=0.5)
    fb = FakeFeedback()
    cfg = {"data": str(tmp_path / "chips"), "out": str(tmp_path / "run"), "generator": "resnet_6blocks",
           "ngf": 4, "ndf": 4, "n_layers_d": 1, "epochs": 2, "epochs_decay": 0, "crop_size": 16,
           "batch_size": 2, "device": "cpu", "checkpoint_every": 0}
    model_path, _ = run_with_feedback(geogan.train, fb, ToolError, cfg, progress_cls=TrainingProgress)
    assert model_path.is_file()
    assert fb.progress == sorted(fb.progress) and fb.progress[-1] == 100.0
    assert [m.split()[1] for m in fb.of("info") if m.startswith("epoch")][-2:] == ["1/2", "2/2"]


def test_cancelled_follows_the_cancel_button():
    fb = FakeFeedback()
    p = FeedbackProgress(fb)
    assert not p.cancelled()
    fb.canceled = True
    assert p.cancelled()
    with pytest.raises(geogan.Cancelled):
        geogan.progress.check_cancelled(p, "translation")


def test_geogan_log_records_reach_the_feedback_only_while_running_and_only_from_that_thread():
    log = logging.getLogger("geogan.some_module")
    fb = FakeFeedback()
    level_before = logging.getLogger("geogan").level
    handlers_before = list(logging.getLogger("geogan").handlers)
    with forward_logging(fb):
        log.info("reading 3 rasters")
        log.warning("CRS differs from the model's")
        other = threading.Thread(target=lambda: log.warning("from another algorithm"))
        other.start()
        other.join()
    log.warning("after the run")
    assert fb.of("info") == ["reading 3 rasters"]
    assert fb.of("warning") == ["CRS differs from the model's"]
    assert logging.getLogger("geogan").level == level_before
    assert logging.getLogger("geogan").handlers == handlers_before


def test_run_with_feedback_passes_a_progress_and_returns_the_result():
    fb = FakeFeedback()

    def work(x, *, scale, progress):
        progress.update(0, 2, "working")
        progress.update(2, 2, "done")
        return x * scale

    result, progress = run_with_feedback(work, fb, ToolError, 3, scale=2)
    assert result == 6
    assert fb.progress == [0.0, 100.0] and progress.max_percent == 100.0


@pytest.mark.parametrize("exc, expected", [
    (geogan.InputNotFoundError("'/data/x.tif': no such file"), "'/data/x.tif': no such file"),
    (geogan.ConfigError("config: epochs must be >= 0, got -1"), "config: epochs must be >= 0, got -1"),
    (geogan.Cancelled("translation cancelled"), "cancelled: translation cancelled"),
])
def test_geogan_errors_become_the_tool_error_with_the_one_line_message(exc, expected):
    def work(*, progress):
        raise exc

    with pytest.raises(ToolError) as info:
        run_with_feedback(work, FakeFeedback(), ToolError)
    assert str(info.value) == expected
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback


def test_a_missing_dependency_says_how_to_install_and_bugs_propagate():
    def needs_torch(*, progress):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    with pytest.raises(ToolError, match="'torch'.*GEOGAN_VENV"):
        run_with_feedback(needs_torch, FakeFeedback(), ToolError)

    def buggy(*, progress):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_with_feedback(buggy, FakeFeedback(), ToolError)


def test_import_geogan_reports_a_missing_package_as_the_tool_error(monkeypatch):
    assert import_geogan(ToolError) is geogan
    monkeypatch.setitem(sys.modules, "geogan", None)  # what an absent package looks like to import
    with pytest.raises(ToolError, match="cannot import 'geogan'"):
        import_geogan(ToolError)


def test_cancel_through_the_adapter_stops_a_real_chips_export_and_leaves_nothing(make_raster, tmp_path):
    rng = np.random.default_rng(0)
    a = make_raster("a.tif", (rng.random((2, 96, 96)) + 0.1).astype("float32"))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 96, 96)).astype("uint8"))
    out = tmp_path / "chips"
    fb = FakeFeedback(cancel_after_updates=2)  # cancel once the first chip is reported
    with pytest.raises(ToolError, match="^cancelled: "):
        run_with_feedback(geogan.export_chips, fb, ToolError, [a], [b], out, tile_size=32,
                          val_fraction=0.0, min_valid=0.5)
    assert 0 < max(fb.progress) < 100
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]  # no hidden work folder either

    fb = FakeFeedback()
    summary, progress = run_with_feedback(geogan.export_chips, fb, ToolError, [a], [b], out, tile_size=32,
                                          val_fraction=0.0, min_valid=0.5)
    assert summary.counts["a"]["train"] == 9 and (out / "geogan_chips.json").exists()
    assert fb.progress[-1] == 100.0


def test_band_list_treats_blank_as_all_bands():
    assert band_list(None) is None
    assert band_list("   ") is None
    assert band_list(" 3,2,1 ") == "3,2,1"


def test_train_settings_reads_the_yaml_and_applies_only_given_overrides(tmp_path):
    cfg = tmp_path / "cfg" / "train.yaml"
    cfg.parent.mkdir()
    cfg.write_text("data: chips\nout: /abs/run\nepochs: 50\nngf: 64\n", encoding="utf-8")
    settings = train_settings(cfg, {"epochs": 1, "ngf": None, "device": "", "batch_size": 4})
    assert settings == {"data": str(cfg.parent / "chips"), "out": "/abs/run", "epochs": 1, "ngf": 64,
                        "batch_size": 4}
    assert train_settings(None, {"data": "/c", "out": None}) == {"data": "/c"}
    with pytest.raises(geogan.InputNotFoundError):
        train_settings(tmp_path / "missing.yaml", {})


def test_add_venv_prepends_site_packages_and_runs_pth_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv(environment.ENV_VAR, raising=False)
    assert environment.add_venv() is None

    site_dir = tmp_path / "venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site_dir).mkdir(parents=True)
    extra = tmp_path / "editable_src"
    extra.mkdir()
    (site_dir / "editable.pth").write_text(f"{extra}\n", encoding="utf-8")
    monkeypatch.setenv(environment.ENV_VAR, str(tmp_path / "venv"))
    assert environment.add_venv() == site_dir
    assert sys.path[:2] == [str(site_dir), str(extra)]
    assert environment.add_venv() == site_dir and sys.path.count(str(site_dir)) == 1

    with pytest.raises(FileNotFoundError, match="same Python that QGIS runs"):
        environment.add_venv(tmp_path / "not_a_venv")


def test_plugin_folder_is_a_valid_qgis_plugin_without_importing_qgis():
    folder = ROOT / "tools" / "qgis" / "geogan_provider"
    meta = configparser.ConfigParser()
    meta.read(folder / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository"):
        assert general.get(key), key
    assert general["hasProcessingProvider"] == "yes"
    assert general["version"] == geogan.__version__
    import geogan_provider

    assert callable(geogan_provider.classFactory)

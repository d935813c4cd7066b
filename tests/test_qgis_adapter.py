"""The QGIS plugin's pure-Python glue, with a fake QgsProcessingFeedback (no QGIS needed).

The real QGIS run is ``tools/qgis_check.sh``; these tests pin down, in the normal CI venv, what
the plugin does with geogan's progress reports, the trainer's events, log records, errors and
versions, and what the zip built by ``tools/qgis/build_plugin.sh`` holds. No assertion depends on
time: progress texts are throttled by a fake clock.
"""
from __future__ import annotations

import configparser
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "qgis"))

import geogan  # noqa: E402
from geogan_provider import environment  # noqa: E402
from geogan_provider import glue  # noqa: E402
from geogan_provider.feedback import TrainingProgress, forward_logging  # noqa: E402
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
    """What the progress throttle reads instead of time.monotonic: time moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ToolError(Exception):
    """Stands in for QgsProcessingException."""


def training_progress(fb: FakeFeedback, epochs: int, clock: FakeClock | None = None) -> TrainingProgress:
    return TrainingProgress(geogan.QgisFeedbackProgress(fb, clock=clock or FakeClock()), fb, epochs)


def test_training_progress_spans_the_whole_run_and_logs_each_epoch_from_the_events():
    fb = FakeFeedback()
    p = training_progress(fb, epochs=3)
    assert isinstance(p, geogan.Progress)
    for epoch in (1, 2, 3):
        for step in range(1, 5):
            p.update(step, 4, f"epoch {epoch}/3  G {epoch * 10 + step}")
        p.on_event("checkpoint", {"epoch": epoch, "iteration": epoch * 4})  # other events: ignored
        p.on_event("epoch", {"epoch": epoch, "iteration": epoch * 4, "losses": {"G": epoch / 10, "D": 0.25}})
    assert fb.progress == sorted(fb.progress)  # one sweep, not one per epoch
    assert fb.progress[0] == pytest.approx(100 / 12) and fb.progress[-1] == 100.0
    assert len(fb.progress) == 12  # every step moves the whole percent here
    assert fb.of("info") == ["epoch 1/3 done at step 4: G 0.100  D 0.250",
                             "epoch 2/3 done at step 8: G 0.200  D 0.250",
                             "epoch 3/3 done at step 12: G 0.300  D 0.250"]
    # The clock never moved: the run's first text and its final one, nothing in between.
    assert fb.of("text") == ["epoch 1/3  G 11", "epoch 3/3  G 34"]


def test_training_progress_texts_follow_the_clock_not_the_machine():
    clock = FakeClock()
    fb = FakeFeedback()
    p = training_progress(fb, epochs=2, clock=clock)
    p.update(1, 10, "epoch 1/2  G 1")
    for step in range(2, 11):
        clock.now += 0.5  # a text at most every QgisFeedbackProgress.TEXT_INTERVAL = 2 s
        p.update(step, 10, f"epoch 1/2  G {step}")
    assert fb.of("text") == ["epoch 1/2  G 1", "epoch 1/2  G 5", "epoch 1/2  G 9"]
    assert fb.progress[-1] == 50.0
    p.on_event("epoch", {"epoch": 1, "iteration": 10, "losses": {}})
    assert fb.of("info") == ["epoch 1/2 done at step 10"]


def test_a_resumed_run_moves_forward_and_catches_up_at_its_first_epoch_event():
    fb = FakeFeedback()
    p = training_progress(fb, epochs=4)
    p.update(2, 4, "epoch 3/4")  # resumed mid-epoch 3: the bar cannot know yet
    p.update(4, 4, "epoch 3/4")
    p.on_event("epoch", {"epoch": 3, "iteration": 12, "losses": {}})
    p.update(1, 4, "epoch 4/4")
    assert fb.progress == [12.5, 25.0, 81.25]
    p.update(0, 0, "nothing to do")  # a total of 0 passes through as its own phase
    assert fb.progress[-1] == 100.0


def test_training_progress_through_a_real_tiny_training(make_raster, tmp_path, one_torch_thread):
    rng = np.random.default_rng(1)
    a = make_raster("a.tif", (rng.random((1, 64, 64)) + 0.1).astype("float32"))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 64, 64)).astype("uint8"))
    geogan.export_chips([a], [b], tmp_path / "chips", tile_size=32, val_fraction=0.0, min_valid=0.5)
    fb = FakeFeedback()
    cfg = {"data": str(tmp_path / "chips"), "out": str(tmp_path / "run"), "generator": "resnet_6blocks",
           "ngf": 4, "ndf": 4, "n_layers_d": 1, "epochs": 2, "epochs_decay": 0, "crop_size": 16,
           "batch_size": 2, "device": "cpu", "checkpoint_every": 0, "log_every": 1}
    clock = FakeClock()  # frozen: what is shown cannot depend on the machine's speed
    p = training_progress(fb, epochs=2, clock=clock)
    model_path = run_with_feedback(geogan.train, fb, ToolError, cfg, progress=p, on_event=p.on_event)
    assert model_path.is_file()
    # 4 chips, batch 2: 2 steps per epoch, 4 in the run, each a new quarter of the bar.
    assert fb.progress == [25.0, 50.0, 75.0, 100.0]
    assert [m.split(" done")[0] for m in fb.of("info") if m.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    texts = fb.of("text")
    assert texts[0].startswith("epoch 1/2") and texts[-1].startswith("epoch 2/2") and len(texts) == 2


def test_library_adapter_labels_each_phase_and_sends_whole_percents():
    fb = FakeFeedback()
    p = geogan.QgisFeedbackProgress(fb, clock=FakeClock())
    for done in range(0, 1001):
        p.update(done, 1000, "tiles")
    assert fb.progress == [float(v) for v in range(101)]  # not 1001 updates for QGIS's event loop
    assert fb.of("text") == ["tiles"]  # one label per phase, not one log line per tile
    p.update(1, 2, "writing")  # a new total starts a new phase, labelled at once
    assert fb.of("text") == ["tiles", "writing"] and fb.progress[-1] == 50.0
    p.update(7, 5, "")
    assert fb.progress[-1] == 100.0  # clamped
    p.update(0, 0, "nothing to do")
    assert fb.progress[-1] == 100.0 and fb.of("text")[-1] == "nothing to do"


def test_cancelled_follows_the_cancel_button():
    fb = FakeFeedback()
    p = geogan.QgisFeedbackProgress(fb)
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

    assert run_with_feedback(work, fb, ToolError, 3, scale=2) == 6
    assert fb.progress == [0.0, 100.0] and fb.of("text") == ["working", "done"]  # geogan's own adapter


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
    summary = run_with_feedback(geogan.export_chips, fb, ToolError, [a], [b], out, tile_size=32,
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


def _built_plugin(out_dir: Path) -> Path:
    """Run tools/qgis/build_plugin.sh as a user would; returns the zip it reports."""
    done = subprocess.run(["bash", str(ROOT / "tools" / "qgis" / "build_plugin.sh"), "--out-dir", str(out_dir)],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def _setup_cfg_metadata() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg["metadata"]


def test_build_plugin_makes_an_installable_zip_with_single_sourced_metadata(tmp_path):
    zip_path = _built_plugin(tmp_path / "dist")
    assert zip_path.name == f"geogan_provider-{geogan.__version__}.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(zf.namelist())
        assert all(n.startswith("geogan_provider/") for n in names)  # QGIS installs the top folder
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        source_py = sorted(f"geogan_provider/{p.name}" for p in (ROOT / "tools/qgis/geogan_provider").glob("*.py"))
        assert [n for n in names if n.endswith(".py")] == source_py
        assert zf.read("geogan_provider/LICENSE") == (ROOT / "LICENSE").read_bytes()
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read("geogan_provider/metadata.txt").decode("utf-8"))
        zf.extractall(tmp_path / "plugins")
    general = meta["general"]
    project = _setup_cfg_metadata()
    urls = dict(line.replace(" ", "").split("=", 1) for line in project["project_urls"].strip().splitlines())
    assert general["version"] == geogan.__version__
    assert (general["author"], general["email"], general["homepage"], general["tracker"], general["repository"]) == (
        project["author"], project["author_email"], project["url"], urls["Tracker"], urls["Source"])
    for key in ("name", "qgisMinimumVersion", "description", "about"):
        assert general.get(key), key
    assert general["hasProcessingProvider"] == "yes"
    text = " ".join(general.values())
    assert "example." not in text and "localhost" not in text
    assert "MIT License" in (ROOT / "LICENSE").read_text() and project["license"] == "MIT"

    # The installed copy reads its own version (the provider's versionInfo) without QGIS.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from geogan_provider import glue; "
            "print(glue.plugin_metadata('version'), callable(__import__('geogan_provider').classFactory))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "plugins")], capture_output=True, text=True)
    assert done.stdout.split() == [geogan.__version__, "True"], done.stderr

    again = _built_plugin(tmp_path / "again")
    assert again.read_bytes() == zip_path.read_bytes()  # reproducible: same sources, same bytes


def test_the_source_metadata_leaves_the_single_sourced_keys_to_the_build():
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(ROOT / "tools" / "qgis" / "geogan_provider" / "metadata.txt", encoding="utf-8")
    for key in ("version", "author", "email", "homepage", "tracker", "repository"):
        assert not meta.has_option("general", key), key
    assert glue.plugin_metadata("version") == ""  # a source checkout has no version of its own


def _load_build_module():
    spec = importlib.util.spec_from_file_location("build_plugin", ROOT / "tools" / "qgis" / "build_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_plugin_refuses_placeholders_and_missing_contacts(tmp_path):
    build = _load_build_module()
    good = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert build.project_contacts(ROOT)["email"] == _setup_cfg_metadata()["author_email"]
    (tmp_path / "setup.cfg").write_text(good.replace(_setup_cfg_metadata()["author_email"], "dev@example.org"))
    with pytest.raises(build.BuildError, match="email 'dev@example.org' is a placeholder"):
        build.project_contacts(tmp_path)
    (tmp_path / "setup.cfg").write_text(good.replace("author_email", "maintainer_email"))
    with pytest.raises(build.BuildError, match="no value for the plugin's 'email'"):
        build.project_contacts(tmp_path)


def test_the_declared_geogan_range_accepts_this_geogan():
    # A version bump outside the range fails here until GEOGAN_COMPATIBLE is updated with it.
    assert glue.is_compatible(geogan.__version__)


@pytest.mark.parametrize("version, ok", [
    ("0.1.0", True), ("0.1", True), ("0.1.7", True), ("0.1.0+g1234", True), ("0.1.3rc1", True),
    ("0.2.0", False), ("0.2.0rc1", False), ("0.0.9", False), ("1.0", False), ("dev", False), (None, False),
])
def test_is_compatible_compares_releases_in_the_declared_range(version, ok):
    assert glue.is_compatible(version, ("0.1.0", "0.2.0")) is ok


@pytest.mark.parametrize("version", ["0.2.0", "0.0.1", None])
def test_an_incompatible_geogan_is_one_line_naming_both_versions(monkeypatch, version):
    if version is None:
        monkeypatch.delattr(geogan, "__version__")
    else:
        monkeypatch.setattr(geogan, "__version__", version)
    with pytest.raises(ToolError) as info:
        import_geogan(ToolError)
    message = str(info.value)
    assert "\n" not in message and f"geogan {version or '(no version)'} in " in message
    low, high = glue.GEOGAN_COMPATIBLE
    assert f"needs geogan >= {low}, < {high}" in message
    with pytest.raises(ToolError, match="does not fit this plugin"):  # and every algorithm says so
        run_with_feedback(lambda *, progress: None, FakeFeedback(), ToolError)


def test_a_broken_geogan_import_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "geogan":
            raise ImportError("cannot import name 'errors' from partially initialized module 'geogan'\nmore")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ToolError) as info:
        import_geogan(ToolError)
    assert str(info.value).startswith("cannot import geogan in QGIS's Python (cannot import name 'errors'")
    assert "\n" not in str(info.value)

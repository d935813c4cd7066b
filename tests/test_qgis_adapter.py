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


def test_every_warning_of_the_result_reaches_the_feedback_once_as_a_warning():
    from dataclasses import dataclass

    from geogan.notices import WarningCollector, carry_collector

    @dataclass(frozen=True)
    class Result:
        warnings: tuple = ()

    def work(*, progress):  # what a geogan entry point does: its threads' warnings land in its result
        log = logging.getLogger("geogan.some_module")
        with WarningCollector() as notes:
            log.warning("in the calling thread")
            worker = threading.Thread(target=carry_collector(lambda: log.warning("in a worker thread")))
            worker.start()
            worker.join()
        return Result(notes.warnings)

    fb = FakeFeedback()
    result = run_with_feedback(work, fb, ToolError)
    assert result.warnings == ("in the calling thread", "in a worker thread")
    assert fb.of("warning") == ["in the calling thread", "in a worker thread"]  # live, then the rest; once each
    assert run_with_feedback(lambda *, progress: 6, FakeFeedback(), ToolError) == 6  # no warnings: nothing pushed


class OldFeedback:
    """A QGIS before 3.16 (no pushWarning), or a bare feedback without reportError either."""

    def __init__(self, report_error: bool) -> None:
        self.calls: list = []
        if report_error:
            self.reportError = lambda text, fatal=False: self.calls.append(("error", text, fatal))

    def pushInfo(self, text: str) -> None:  # noqa: N802
        self.calls.append(("info", text))


def test_result_warnings_fall_back_to_a_non_fatal_error_or_info_on_older_qgis():
    from geogan_provider.feedback import push_result_warnings

    class Result:
        warnings = ("pixel size differs",)

    old = OldFeedback(report_error=True)
    push_result_warnings(old, Result())
    assert old.calls == [("error", "pixel size differs", False)]
    bare = OldFeedback(report_error=False)
    push_result_warnings(bare, Result(), shown=["something else"])
    assert bare.calls == [("info", "pixel size differs")]
    shown = OldFeedback(report_error=True)
    push_result_warnings(shown, Result(), shown=["pixel size differs"])
    assert shown.calls == []


def test_a_translation_warning_reaches_the_feedback_once(tmp_path, make_raster, one_torch_thread):
    from conftest import save_tiny_sar_to_rgb_model

    rng = np.random.default_rng(3)
    data = (rng.random((2, 48, 48)) * 0.8 + 0.1).astype("float32")
    data[:, :, 4:] = -9999.0  # mostly nodata
    src = make_raster("gappy.tif", data, nodata=-9999.0)
    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    fb = FakeFeedback()
    result = run_with_feedback(geogan.translate_raster, fb, ToolError, model, src, tmp_path / "out.tif",
                               tile_size=32, overlap=8, device="cpu", units="linear")  # stated: no units guess
    assert len(result.warnings) == 1 and "nodata" in result.warnings[0]
    assert fb.of("warning") == list(result.warnings)


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


# ------------------------------------------------------------------------------------------
# parameters → geogan arguments: scene paths, SAR units, precision, per-domain AOIs, batches
# ------------------------------------------------------------------------------------------
BIGEARTHNET = ROOT / "sample_data" / "bigearthnet"


def _s1_patches() -> list[Path]:
    patches = sorted((BIGEARTHNET / "s1").glob("S1*"))
    if len(patches) < 2:
        pytest.skip("sample_data/bigearthnet/s1 holds fewer than two patches")
    return patches[:2]


def _vv_vh(patch: Path) -> str:
    return f"{patch / (patch.name + '_VV.tif')},{patch / (patch.name + '_VH.tif')}"


def test_enum_choices_are_what_geogan_accepts():
    from geogan.bands import SAR_UNITS
    from geogan.devices import PRECISIONS

    assert glue.UNIT_CHOICES == ("auto",) + SAR_UNITS
    assert glue.PRECISION_CHOICES[0] == "auto" and set(glue.PRECISION_CHOICES) <= set(PRECISIONS)
    assert [glue.stated(c) for c in glue.UNIT_CHOICES] == [None, "linear", "amplitude", "db"]


@pytest.mark.parametrize("parts, source, expected", [
    # what QgsProviderRegistry.decodeUri('gdal', source) returns in QGIS 3.22 (recorded there)
    ({"layerName": None, "path": "/data/a.zip", "vsiPrefix": "/vsizip/", "vsiSuffix": "/x/b.tif"},
     "/vsizip//data/a.zip/x/b.tif", "/vsizip//data/a.zip/x/b.tif"),
    ({"layerName": None, "path": "/data/a.tif"}, "/data/a.tif", "/data/a.tif"),
    ({"layerName": "tbl", "path": "/data/a.gpkg"}, "GPKG:/data/a.gpkg:tbl", "GPKG:/data/a.gpkg:tbl"),
    ({"layerName": None, "path": 'NETCDF:"/d/x.nc":var'}, 'NETCDF:"/d/x.nc":var', 'NETCDF:"/d/x.nc":var'),
    ({"layerName": None, "path": "/data/a,b.tif"}, "/data/a,b.tif", "/data/a,b.tif"),
])
def test_gdal_name_is_what_gdal_opens_for_the_layer(parts, source, expected):
    assert glue.gdal_name(parts, source) == expected


def test_scene_specs_are_one_per_line_or_semicolon_separated():
    assert glue.scene_specs(None) == [] and glue.scene_specs(" \n ; \n") == []
    text = " /s1/a_VV.tif,/s1/a_VH.tif ; @/lists/more.txt\n\n/s1/*.tif\r\n/vsizip//d/x.zip/b.tif;"
    assert glue.scene_specs(text) == ["/s1/a_VV.tif,/s1/a_VH.tif", "@/lists/more.txt", "/s1/*.tif",
                                      "/vsizip//d/x.zip/b.tif"]


def test_typed_relative_scene_paths_are_taken_relative_to_the_project_folder(tmp_path):
    home = str(tmp_path)
    odd = tmp_path / "odd,name.tif"
    odd.write_bytes(b"")
    text = ("S1/a_VV.tif,S1/a_VH.tif\n@lists/more.txt; s1/*.tif\n/abs/b.tif;~/c.tif\n"
            "/vsizip//d/x.zip/b.tif;odd,name.tif\nS2")
    assert glue.scene_specs(text, home) == [
        f"{home}/S1/a_VV.tif,{home}/S1/a_VH.tif", f"@{home}/lists/more.txt", f"{home}/s1/*.tif",
        "/abs/b.tif", "~/c.tif", "/vsizip//d/x.zip/b.tif", str(odd), f"{home}/S2"]
    assert glue.scene_specs("a.tif,b.tif", None) == ["a.tif,b.tif"]  # unsaved project: as typed
    assert glue.scene_specs("/x/a.tif,b.tif", home) == [f"/x/a.tif,{home}/b.tif"]


def test_a_typed_relative_scene_is_found_beside_the_project(tmp_path, make_raster, monkeypatch):
    vv = make_raster("s_VV.tif", np.full((1, 8, 8), -12.0, np.float32))
    vh = make_raster("s_VH.tif", np.full((1, 8, 8), -18.0, np.float32))
    monkeypatch.chdir("/")  # QGIS started from a desktop launcher
    scene = glue.single_scene(None, f"{vv.name},{vh.name}", "Input raster", ToolError, str(vv.parent))
    assert scene.parts == (str(vv), str(vh))
    with pytest.raises(ToolError) as info:
        glue.single_scene(None, "s_VV.tif", "Input raster", ToolError, str(tmp_path / "elsewhere"))
    assert "elsewhere/s_VV.tif': no such file" in str(info.value)
    assert glue.domain_inputs([], "s_*.tif", "Domain A", ToolError, str(vv.parent)) == [f"{vv.parent}/s_*.tif"]


def test_domain_inputs_take_layers_or_scene_paths_never_both_or_neither(tmp_path):
    odd = str(tmp_path / "odd,name[1].tif")  # a layer's file name is never read as scene syntax
    inputs = glue.domain_inputs([odd, "/d/b.tif"], "", "Domain A", ToolError)
    assert inputs == [geogan.Scene((odd,)), geogan.Scene(("/d/b.tif",))]
    assert glue.domain_inputs([], "a.tif,b.tif;c.tif", "Domain A", ToolError) == ["a.tif,b.tif", "c.tif"]
    with pytest.raises(ToolError) as both:
        glue.domain_inputs(["/d/a.tif"], "/d/c.tif", "Domain B", ToolError)
    with pytest.raises(ToolError) as neither:
        glue.domain_inputs([], "  \n", "Domain B", ToolError)
    for info in (both, neither):
        assert str(info.value).startswith("Domain B: give raster layers or scene paths") and "\n" not in str(info.value)
    assert "not both" in str(both.value) and "VV.tif,VH.tif = one scene" in str(neither.value)


def test_chips_from_comma_joined_scene_paths_with_stated_db_units(tmp_path):
    """What Export chips passes for two S1 patches typed as 'VV,VH' scenes with units 'db'."""
    patches = _s1_patches()
    rng = np.random.default_rng(3)
    b = tmp_path / "b.tif"
    import rasterio

    with rasterio.open(patches[0] / f"{patches[0].name}_VV.tif") as ref:
        profile = dict(driver="GTiff", width=ref.width, height=ref.height, count=3, dtype="uint8", crs=ref.crs,
                       transform=ref.transform)
    with rasterio.open(b, "w", **profile) as ds:
        ds.write(rng.integers(1, 255, (3, profile["height"], profile["width"])).astype("uint8"))
    a = glue.domain_inputs([], "\n".join(_vv_vh(p) for p in patches), "Domain A", ToolError)
    summary = run_with_feedback(geogan.export_chips, FakeFeedback(), ToolError, a,
                                glue.domain_inputs([str(b)], None, "Domain B", ToolError), tmp_path / "chips",
                                units_a=glue.stated("db"), units_b=glue.stated("auto"), tile_size=32,
                                val_fraction=0.0, min_valid=0.5)
    spec = summary.domains["a"]
    assert (spec.kind, spec.count, spec.units) == ("sar", 2, "db")
    assert summary.sources["a"] == [_vv_vh(p) for p in patches]
    assert summary.counts["a"]["train"] == 2 * 16  # 120 px: 4x4 chips of 32 px, the last ones flush with the edge


def test_single_scene_is_a_layer_or_one_typed_scene(tmp_path, make_raster):
    vv = make_raster("s_VV.tif", np.full((1, 8, 8), -12.0, np.float32))
    vh = make_raster("s_VH.tif", np.full((1, 8, 8), -18.0, np.float32))
    assert glue.single_scene(str(vv), None, "Input raster", ToolError) == geogan.Scene((str(vv),))
    scene = glue.single_scene(None, f" {vv},{vh} ", "Input raster", ToolError)
    assert scene.parts == (str(vv), str(vh)) and scene.name == "s"
    assert glue.single_scene(None, "/vsizip//d/x.zip/b.tif", "Input raster", ToolError).parts == (
        "/vsizip//d/x.zip/b.tif",)  # GDAL decides whether it exists
    for text, needle in ((f"{vv};{vh}", "names 2 scenes"), (str(tmp_path / "s_*.tif"), "names 2 scenes"),
                         (str(tmp_path / "missing.tif"), "missing.tif': no such file"),
                         ("", "give a raster layer or a scene path")):
        with pytest.raises(ToolError) as info:
            glue.single_scene(None, text, "Input raster", ToolError)
        assert needle in str(info.value) and "\n" not in str(info.value), text
    assert "geogan:translate_batch" in _error(lambda: glue.single_scene(None, f"{vv};{vh}", "Input raster", ToolError))
    assert "not both" in _error(lambda: glue.single_scene(str(vv), str(vh), "Input raster", ToolError))


def _error(call) -> str:
    with pytest.raises(ToolError) as info:
        call()
    return str(info.value)


def test_aoi_arguments_map_the_three_parameters_onto_export_chips():
    utm, wgs = "PROJCS[utm]", "GEOGCS[wgs84]"
    assert glue.aoi_arguments({"aoi": None, "aoi_a": None, "aoi_b": None}, ToolError) == {}
    assert glue.aoi_arguments({"aoi": ("POLYGON((0 0,1 0,1 1,0 0))", utm), "aoi_a": None}, ToolError) == {
        "aoi": "POLYGON((0 0,1 0,1 1,0 0))", "aoi_crs": utm}
    assert glue.aoi_arguments({"aoi": ("P1", utm), "aoi_b": ("P2", utm)}, ToolError) == {
        "aoi": "P1", "aoi_b": "P2", "aoi_crs": utm}
    assert "not all three" in _error(lambda: glue.aoi_arguments(
        {"aoi": ("P", utm), "aoi_a": ("P", utm), "aoi_b": ("P", utm)}, ToolError))
    assert "different CRSs" in _error(lambda: glue.aoi_arguments({"aoi_a": ("P", utm), "aoi_b": ("P", wgs)}, ToolError))


def test_per_domain_aois_reach_export_chips(tmp_path, make_raster):
    """AOI for A and AOI for B (different places): each domain keeps only its own AOI's chips."""
    rng = np.random.default_rng(4)
    a = make_raster("a.tif", (rng.random((1, 64, 64)) + 0.1).astype("float32"), origin=(500000.0, 5000000.0))
    b = make_raster("b.tif", rng.integers(1, 255, (3, 64, 64)).astype("uint8"), origin=(600000.0, 5000000.0))
    # the upper-left 32x32 px chip of A, the lower-right one of B (10 m pixels)
    left_a = "POLYGON((500000 4999680,500320 4999680,500320 5000000,500000 5000000,500000 4999680))"
    right_b = "POLYGON((600330 4999360,600640 4999360,600640 4999670,600330 4999670,600330 4999360))"
    from pyproj import CRS

    utm = CRS.from_epsg(32633).to_wkt()
    args = glue.aoi_arguments({"aoi": None, "aoi_a": (left_a, utm), "aoi_b": (right_b, utm)}, ToolError)
    summary = run_with_feedback(geogan.export_chips, FakeFeedback(), ToolError, [a], [b], tmp_path / "chips",
                                tile_size=32, val_fraction=0.0, min_valid=0.5, **args)
    assert summary.counts["a"]["train"] == 1 and summary.counts["b"]["train"] == 1
    assert summary.skipped["a"]["outside_aoi"] == 3 and summary.skipped["b"]["outside_aoi"] == 3


def _tiny_model(path: Path, training: dict | None = None) -> Path:
    """A seeded, untrained 2-band SAR (linear) → 3-band uint8 model: enough to translate scenes
    (``training``: its training summary, e.g. the STAC asset keys it was trained with)."""
    import torch

    from geogan.bands import BandStats, DomainSpec
    from geogan.modelfile import TranslationModel, save_model
    from geogan.models.registry import build_generator

    def spec(kind, n, dtype, lo, hi, nodata=None, units=None):
        stats = tuple(BandStats(band=i + 1, count=1000, mean=(lo + hi) / 2, std=0.2, min=lo, max=hi, p2=lo, p98=hi,
                                mean_db=-8.0, std_db=3.0, min_db=-25.0, max_db=2.0, p2_db=-20.0, p98_db=0.0)
                      for i in range(n))
        return DomainSpec(kind=kind, bands=tuple(range(1, n + 1)), dtype=dtype, nodata=nodata, stats=stats,
                          resolution=(10.0, 10.0), units=units)

    torch.manual_seed(0)
    a, b = spec("sar", 2, "float32", 0.01, 1.0, units="linear"), spec("optical", 3, "uint8", 10, 240, nodata=0)
    arch = {"model": "pix2pix", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
    return save_model(TranslationModel({"a": a, "b": b}, {"a2b": build_generator("resnet_6blocks", 2, 3, ngf=4)},
                                       arch, training), path)


def test_a_batch_logs_each_failure_raises_at_the_end_and_resumes(tmp_path, make_raster, one_torch_thread):
    rng = np.random.default_rng(5)
    sar = lambda seed: (10 ** (rng.uniform(-20, 0, (1, 40, 48)) / 10)).astype(np.float32)  # noqa: E731
    make_raster("one.tif", np.concatenate([sar(1), sar(2)]))
    vv, vh = make_raster("two_VV.tif", sar(3)), make_raster("two_VH.tif", sar(4))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    model = _tiny_model(tmp_path / "m.geogan")
    text = f"{tmp_path / 'one.tif'}\n{vv},{vh}; {broken}"
    out = tmp_path / "out"
    settings = dict(tile_size=32, overlap=8, device="cpu", precision=glue.PRECISION_CHOICES[1],
                    units=glue.stated("auto"))

    fb = FakeFeedback()
    result = run_with_feedback(geogan.translate_rasters, fb, ToolError, model,
                               glue.domain_inputs([], text, "Input rasters", ToolError), out, **settings)
    message = _error(lambda: glue.report_batch(result, fb, ToolError))
    assert message.startswith("1 of 3 scene(s) failed: ") and "broken.tif" in message and "\n" not in message
    assert len(fb.of("error")) == 1 and "broken.tif" in fb.of("error")[0]
    assert any("scene failed (the batch goes on)" in w for w in fb.of("warning"))  # logged as it happened
    assert fb.of("info")[-1].startswith("3 scene(s) in ") and "2 written, 0 skipped" in fb.of("info")[-1]
    assert sorted(p.name for p in out.glob("*.tif")) == ["one.tif", "two.tif"]

    broken.unlink()
    fb = FakeFeedback()
    again = run_with_feedback(geogan.translate_rasters, fb, ToolError, model,
                              glue.domain_inputs([], f"{tmp_path / 'one.tif'}\n{vv},{vh}", "Input rasters", ToolError),
                              out, **settings)
    glue.report_batch(again, fb, ToolError)  # nothing failed: no error
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"] and not fb.of("error")


# ------------------------------------------------------------------------------------------
# STAC JSON scene paths and the "asset keys" parameters (issue 23)
# ------------------------------------------------------------------------------------------

def _stac_json(path: Path, patches: list[Path]) -> Path:
    """An ItemCollection of BigEarthNet patches (one asset per band file, hrefs relative to ``path``),
    written as plain JSON: what a saved STAC API search looks like."""
    import json

    features = [{"type": "Feature", "stac_version": "1.0.0", "id": p.name, "geometry": None, "links": [],
                 "properties": {"datetime": "2017-06-13T10:00:00Z"},
                 "assets": {tif.stem.rsplit("_", 1)[1]: {"href": os.path.relpath(tif, path.parent)}
                            for tif in sorted(p.glob("*.tif"))}} for p in patches]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _s2_of(s1_patch: Path) -> Path:
    import json

    meta = json.loads(next(s1_patch.glob("*_labels_metadata.json")).read_text())
    return BIGEARTHNET / "s2" / meta["corresponding_s2_patch"]


def test_asset_keys_blank_means_geogans_default():
    assert glue.asset_keys(None) is None and glue.asset_keys("  ") is None
    assert glue.asset_keys(" VV,VH ") == "VV,VH"


def test_chips_from_stac_scene_paths_with_asset_keys(tmp_path):
    """What Export chips passes for STAC JSON scene paths (relative to the project) and its asset keys."""
    patches = _s1_patches()
    _stac_json(tmp_path / "cat" / "s1.json", patches)
    _stac_json(tmp_path / "cat" / "s2.json", [_s2_of(p) for p in patches])
    a = glue.domain_inputs([], "cat/s1.json", "Domain A", ToolError, str(tmp_path))
    b = glue.domain_inputs([], "cat/s2.json", "Domain B", ToolError, str(tmp_path))
    summary = run_with_feedback(geogan.export_chips, FakeFeedback(), ToolError, a, b, tmp_path / "chips",
                                assets_a=glue.asset_keys("VV,VH"), assets_b=glue.asset_keys("B04,B03,B02"),
                                tile_size=120, val_fraction=0.0)
    assert summary.sources["a"] == [_vv_vh(p) for p in patches]
    assert (summary.domains["a"].count, summary.domains["b"].count) == (2, 3)
    message = _error(lambda: run_with_feedback(geogan.export_chips, FakeFeedback(), ToolError, a, b, tmp_path / "c2",
                                               assets_a=None, assets_b="B04", tile_size=120))
    assert "s1.json': a STAC input needs the asset keys" in message and "\n" not in message
    message = _error(lambda: run_with_feedback(geogan.export_chips, FakeFeedback(), ToolError, a, b, tmp_path / "c3",
                                               assets_a="VV,HH", assets_b="B04", tile_size=120))
    assert "has no asset 'HH' (it has: VH, VV)" in message and "\n" not in message


def test_translate_a_stac_item_defaults_to_the_models_keys_and_writes_its_item(tmp_path, one_torch_thread):
    import json

    patch = _s1_patches()[0]
    items = _stac_json(tmp_path / "s1.json", [patch])
    trained = _tiny_model(tmp_path / "m.geogan", {"assets": {"a": ["VV", "VH"], "b": ["B04", "B03", "B02"]}})
    scene = glue.single_scene(None, str(items), "Input raster", ToolError, assets=None, model=trained)
    assert scene.parts == tuple(_vv_vh(patch).split(",")) and scene.item.id == patch.name
    swapped = glue.single_scene(None, str(items), "Input raster", ToolError, assets="VH,VV", model=trained)
    assert swapped.parts == tuple(reversed(scene.parts))
    bare = _tiny_model(tmp_path / "bare.geogan")  # no keys recorded: the user must give them
    assert "needs the asset keys" in _error(lambda: glue.single_scene(None, str(items), "Input raster", ToolError,
                                                                      model=bare))
    fb = FakeFeedback()
    (tmp_path / "out").mkdir()
    result = run_with_feedback(geogan.translate_raster, fb, ToolError, trained, scene, tmp_path / "out" / "t.tif",
                               tile_size=32, overlap=8, device="cpu", cog=True)
    glue.catalogue_single(result.path, scene, trained, fb, ToolError)
    item = json.loads((tmp_path / "out" / "t.json").read_text())
    assert item["id"] == patch.name and item["assets"]["data"]["href"] == "./t.tif"
    assert [b["name"] for b in item["assets"]["data"]["bands"]] == ["B04", "B03", "B02"]
    assert (tmp_path / "out" / "collection.json").is_file() and "t.json: its STAC item" in fb.of("info")[-1]
    plain = tmp_path / "plain.tif"
    glue.catalogue_single(result.path.rename(plain), geogan.Scene((str(plain),)), trained, fb, ToolError)
    assert not plain.with_suffix(".json").exists()  # not from STAC: one file, as geogan predict


def test_translate_many_stac_items_with_asset_keys(tmp_path, one_torch_thread):
    patches = _s1_patches()
    items = _stac_json(tmp_path / "s1.json", patches)
    model = _tiny_model(tmp_path / "m.geogan")
    scenes = glue.domain_inputs([], str(items), "Input rasters", ToolError)
    fb = FakeFeedback()
    result = run_with_feedback(geogan.translate_rasters, fb, ToolError, model, scenes, tmp_path / "out",
                               assets=glue.asset_keys("VV,VH"), tile_size=32, overlap=8, device="cpu", cog=None)
    glue.report_batch(result, fb, ToolError)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{p.name}.{ext}" for p in patches for ext in ("tif", "json")] + ["collection.json"])
    import rasterio

    with rasterio.open(tmp_path / "out" / f"{patches[0].name}.tif") as ds:  # unticked COG box: COG for STAC
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    message = _error(lambda: run_with_feedback(geogan.translate_rasters, FakeFeedback(), ToolError, model,
                                               glue.domain_inputs([str(tmp_path / "out" / f"{patches[0].name}.tif")],
                                                                  None, "Input rasters", ToolError),
                                               tmp_path / "o2", assets="VV", tile_size=32, overlap=8, device="cpu"))
    assert "no input is a STAC" in message and "\n" not in message

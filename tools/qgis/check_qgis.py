"""Headless proof that the geogan Processing provider works inside a real QGIS.

Run by ``tools/qgis_check.sh`` with the Python of a venv made from QGIS's Python
(``--system-site-packages``) and ``QT_QPA_PLATFORM=offscreen``. It starts ``QgsApplication``,
initialises Processing, registers the provider exactly as the plugin does, lists its algorithms,
then runs ``processing.run`` for ``geogan:chips``, a tiny ``geogan:train`` and
``geogan:translate`` on ``sample_data/`` and checks with QGIS's own API that:

* importing geogan is clean (no torch/rasterio at import, no output, no logging set-up);
* the translated raster loads as a valid ``QgsRasterLayer`` with the input's CRS and extent;
* progress was reported from 0 to 100;
* a cancel requested mid-translation stops it promptly and leaves no output (nor temp) file;
* a geogan error reaches QGIS as a ``QgsProcessingException`` carrying geogan's message;
* training progress is one 0→100 sweep with one log line per epoch (the trainer's events);
* an incompatible geogan version is refused in one line.

``--plugins DIR`` imports the plugin from DIR (``tools/qgis/build_plugin.sh``'s zip unpacked into
a QGIS profile's plugins folder by ``tools/qgis_check.sh``); the default is the source folder.
Prints one PASS/FAIL line per check and exits non-zero if any failed.
    usage: check_qgis.py [--workdir DIR] [--keep] [--plugins DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for plugins in ("/usr/share/qgis/python/plugins", "/usr/lib/qgis/python/plugins"):
    if os.path.isdir(plugins) and plugins not in sys.path:
        sys.path.append(plugins)

RESULTS: list[tuple[bool, str]] = []


def report(ok: bool, what: str, detail: str = "") -> bool:
    RESULTS.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f" — {detail}" if detail else ""), flush=True)
    return ok


def check_clean_import() -> None:
    """geogan must be cheap and silent to import inside QGIS's Python (the plugin imports it)."""
    before = set(sys.modules)
    root_handlers = list(logging.getLogger().handlers)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        import geogan  # noqa: F401
    new = {m.split(".")[0] for m in set(sys.modules) - before}
    heavy = sorted(new & {"torch", "rasterio", "numpy", "shapely", "pyproj", "yaml", "tqdm", "click"})
    quiet = not out.getvalue() and not err.getvalue()
    # A library may (and should) give its own logger a NullHandler; nothing else may change.
    logging_untouched = logging.getLogger().handlers == root_handlers and all(
        isinstance(h, logging.NullHandler) for h in logging.getLogger("geogan").handlers)
    report(not heavy and quiet and logging_untouched, "import geogan inside QGIS is light and silent",
           f"heavy modules loaded: {heavy or 'none'}; output: {'none' if quiet else repr(out.getvalue() + err.getvalue())}; "
           f"logging handlers {'unchanged' if logging_untouched else 'changed'}")


def make_feedback_class():
    from qgis.core import QgsProcessingFeedback

    class RecordingFeedback(QgsProcessingFeedback):
        """Keeps every progress value and message; can cancel itself once progress passes a value.

        ``setProgress`` is overridden (geogan's adapter calls it from Python) rather than
        listening to ``progressChanged``, because QgsFeedback only emits that signal when the
        value moves by 0.1, so the initial 0 would never be seen.
        """

        def __init__(self, cancel_above: float | None = None) -> None:
            super().__init__()
            self.progress_values: list[float] = []
            self.texts: list[str] = []
            self.infos: list[str] = []
            self.errors: list[str] = []
            self.cancel_above = cancel_above
            self.updates_after_cancel = 0

        def setProgress(self, value: float) -> None:  # noqa: N802
            if self.isCanceled():
                self.updates_after_cancel += 1
            self.progress_values.append(float(value))
            super().setProgress(value)
            if self.cancel_above is not None and value > self.cancel_above and not self.isCanceled():
                self.cancel()

        def setProgressText(self, text: str) -> None:  # noqa: N802
            self.texts.append(text)
            super().setProgressText(text)

        def pushInfo(self, info: str) -> None:  # noqa: N802
            self.infos.append(info)
            super().pushInfo(info)

        def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802,N803
            self.errors.append(error)
            super().reportError(error, fatalError)

    return RecordingFeedback


def sample_inputs(workdir: Path) -> dict:
    """sample_data/ rasters when present, else small self-made ones (same roles)."""
    sample = ROOT / "sample_data"
    names = {"a": "sar_train.tif", "b": "rgb_train.tif", "test": "sar_test.tif"}
    if all((sample / n).exists() for n in names.values()):
        return {k: str(sample / n) for k, n in names.items()}
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    print("note: sample_data/ is incomplete; using small synthetic rasters", flush=True)
    rng = np.random.default_rng(0)
    made = {}
    for key, (count, dtype, size) in {"a": (2, "float32", 256), "b": (3, "uint8", 256),
                                      "test": (2, "float32", 200)}.items():
        yy, xx = np.mgrid[0:size, 0:size]
        base = (np.sin(xx / 9.0) + np.cos(yy / 13.0) + 2.0) / 4.0
        data = np.stack([base * (i + 1) + 0.05 * rng.random((size, size)) for i in range(count)])
        data = (data * 80).astype(dtype) if dtype == "uint8" else (data * 0.3 + 0.01).astype(dtype)
        path = workdir / f"synthetic_{key}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count, dtype=dtype,
                           crs="EPSG:32633", transform=from_origin(500000, 4200000, 10, 10),
                           nodata=0 if dtype == "float32" else None) as ds:
            ds.write(data)
        made[key] = str(path)
    return made


def aoi_layer(*raster_paths: str):
    """A memory polygon layer over the upper half of each raster, to exercise the AOI parameter
    (unpaired A and B rasters may cover different places; the AOI must touch both)."""
    from qgis.core import QgsFeature, QgsGeometry, QgsRasterLayer, QgsRectangle, QgsVectorLayer

    layer = None
    for path in raster_paths:
        ref = QgsRasterLayer(path, "ref", "gdal")
        ext, crs = ref.extent(), ref.crs()
        del ref
        if layer is None:
            layer = QgsVectorLayer(f"Polygon?crs={crs.authid()}", "aoi", "memory")
        rect = QgsRectangle(ext.xMinimum(), ext.yMinimum() + ext.height() / 2, ext.xMaximum(), ext.yMaximum())
        feat = QgsFeature()
        feat.setGeometry(QgsGeometry.fromRect(rect))
        layer.dataProvider().addFeatures([feat])
    layer.updateExtents()
    return layer


def listing(folder: Path) -> set:
    return {p.name for p in folder.iterdir()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--plugins", type=Path, default=ROOT / "tools" / "qgis",
                        help="folder holding geogan_provider/ (default: the source folder)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.plugins))

    from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    check_clean_import()
    import geogan
    import geogan_provider
    from geogan_provider.plugin import GeoganPlugin

    from qgis.core import Qgis

    print(f"QGIS {Qgis.QGIS_VERSION}, Python {sys.version.split()[0]}", flush=True)
    plugin = GeoganPlugin(None)
    plugin.initProcessing()
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("geogan")
    ids = sorted(a.id() for a in provider.algorithms()) if provider else []
    for alg in (provider.algorithms() if provider else []):
        print(f"  {alg.id():<20} {alg.displayName():<18} group: {alg.group()}", flush=True)
    report(ids == ["geogan:chips", "geogan:train", "geogan:translate"],
           "provider 'geogan' registered with its algorithms", ", ".join(ids))
    version = provider.versionInfo() if provider else ""
    report(Path(geogan_provider.__file__).resolve().parent.parent == args.plugins.resolve()
           and (version == geogan.__version__ or args.plugins == ROOT / "tools" / "qgis"),
           "the plugin comes from the folder given and reports its built version",
           f"{geogan_provider.__file__}, versionInfo {version!r}, geogan {geogan.__version__}")

    Feedback = make_feedback_class()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geogan-qgis-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = sample_inputs(workdir)
    import rasterio

    print(f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}) beside QGIS's GDAL "
          f"{__import__('osgeo.gdal', fromlist=['gdal']).__version__}", flush=True)
    try:
        # -- chips -------------------------------------------------------------------------
        chips = workdir / "chips"
        fb = Feedback()
        t0 = time.perf_counter()
        res = processing.run("geogan:chips", {
            "A": [inputs["a"]], "B": [inputs["b"]], "TILE_SIZE": 64, "MIN_VALID": 0.5,
            "VAL_FRACTION": 0.2, "AOI": aoi_layer(inputs["a"], inputs["b"]), "OUTPUT": str(chips),
        }, feedback=fb)
        n_train = res.get("TRAIN_A", 0)
        report((chips / "geogan_chips.json").exists() and n_train > 0 and res.get("TRAIN_B", 0) > 0,
               "processing.run('geogan:chips') wrote a chips export",
               f"{res.get('TRAIN_A')}+{res.get('VAL_A')} A chips, {res.get('TRAIN_B')}+{res.get('VAL_B')} B chips "
               f"(AOI: upper halves) in {time.perf_counter() - t0:.1f} s; progress max {max(fb.progress_values, default=0):.0f}%")

        # -- train -------------------------------------------------------------------------
        config = workdir / "train.yaml"
        # The file sets the small discriminator; the algorithm's fields override ngf, epochs, crop.
        config.write_text("model: cyclegan\ngenerator: resnet_6blocks\nngf: 32\nndf: 8\nn_layers_d: 2\n"
                          "epochs: 5\nepochs_decay: 0\ncrop_size: 64\nlog_every: 1\n", encoding="utf-8")
        run_dir = workdir / "run"
        fb = Feedback()
        t0 = time.perf_counter()
        res = processing.run("geogan:train", {
            "CONFIG": str(config), "DATA": str(chips), "NGF": 8, "EPOCHS": 1, "CROP_SIZE": 32, "BATCH_SIZE": 4,
            "DEVICE": 2,  # cpu
            "OUTPUT": str(run_dir),
        }, feedback=fb)
        model_file = Path(res.get("MODEL_FILE", ""))
        values = fb.progress_values
        epoch_lines = [m for m in fb.infos if m.startswith("epoch ")]
        report(model_file.is_file() and values == sorted(values) and values[-1:] == [100.0]
               and [m.split(" done")[0] for m in epoch_lines] == ["epoch 1/1"],
               "processing.run('geogan:train') trained a tiny model (config file + overrides: ngf 8, 1 epoch, crop 32), "
               "progress one 0→100 sweep, one log line per epoch",
               f"{model_file.name} in {time.perf_counter() - t0:.1f} s; {len(values)} progress values "
               f"{min(values, default=-1):.0f}% → {max(values, default=-1):.0f}%; epoch lines {epoch_lines}")

        # -- cancel mid-training -------------------------------------------------------------
        cancel_run = workdir / "run_cancelled"
        fb = Feedback(cancel_above=0.0)  # cancel as soon as the first training step is done
        raised = ""
        try:
            processing.run("geogan:train", {
                "CONFIG": str(config), "DATA": str(chips), "NGF": 8, "EPOCHS": 1, "CROP_SIZE": 32,
                "BATCH_SIZE": 4, "DEVICE": 2, "OUTPUT": str(cancel_run),
            }, feedback=fb)
        except QgsProcessingException as exc:
            raised = str(exc)
        left = sorted(p.name for p in cancel_run.rglob("*")) if cancel_run.exists() else []
        report("cancel" in raised.lower() and not (cancel_run / "model.geogan").exists()
               and fb.updates_after_cancel == 0 and not any(".part" in name for name in left),
               "a cancel mid-training stops after the current step, with no model file and nothing half-written",
               f"stopped at {max(fb.progress_values, default=0):.0f}% of the epoch, {fb.updates_after_cancel} "
               f"update(s) after the cancel; error: {raised!r}; left in the run folder: {left or 'nothing'}")

        # -- translate ---------------------------------------------------------------------
        out_dir = workdir / "translated"
        out_dir.mkdir()
        out = out_dir / "sar_test_translated.tif"
        fb = Feedback()
        t0 = time.perf_counter()
        res = processing.run("geogan:translate", {
            "MODEL": str(model_file), "INPUT": inputs["test"], "DIRECTION": 0, "TILE_SIZE": 64,
            "OVERLAP": 16, "BATCH_SIZE": 4, "DEVICE": 1, "OUTPUT": str(out),
        }, feedback=fb)
        elapsed = time.perf_counter() - t0
        values = fb.progress_values
        report(res.get("OUTPUT") == str(out) and out.is_file(),
               "processing.run('geogan:translate') returned the output raster under OUTPUT",
               f"{res.get('OUTPUT')} in {elapsed:.1f} s")
        report(bool(values) and min(values) == 0 and values[-1] == 100 and max(values) == 100,
               "translation progress reported from 0 to 100",
               f"{len(values)} updates: first {values[0] if values else None}, last {values[-1] if values else None}")
        layer = QgsRasterLayer(str(out), "translated", "gdal")
        ref = QgsRasterLayer(inputs["test"], "input", "gdal")
        report(layer.isValid(), "output loads as a valid QgsRasterLayer",
               f"{layer.width()}x{layer.height()}, {layer.bandCount()} band(s)")
        report(layer.crs() == ref.crs() and ref.crs().isValid(), "output CRS equals the input's",
               f"{layer.crs().authid()} vs {ref.crs().authid()}")
        tol = 1e-6 * max(ref.rasterUnitsPerPixelX(), ref.rasterUnitsPerPixelY())
        same_extent = (abs(layer.extent().xMinimum() - ref.extent().xMinimum()) <= tol
                       and abs(layer.extent().xMaximum() - ref.extent().xMaximum()) <= tol
                       and abs(layer.extent().yMinimum() - ref.extent().yMinimum()) <= tol
                       and abs(layer.extent().yMaximum() - ref.extent().yMaximum()) <= tol
                       and (layer.width(), layer.height()) == (ref.width(), ref.height()))
        report(same_extent, "output extent and grid equal the input's",
               f"{layer.extent().toString(3)} ({layer.width()}x{layer.height()}) vs "
               f"{ref.extent().toString(3)} ({ref.width()}x{ref.height()})")
        del layer, ref

        # -- temporary output (what the toolbox uses by default) ---------------------------
        fb = Feedback()
        res = processing.run("geogan:translate", {
            "MODEL": str(model_file), "INPUT": inputs["test"], "TILE_SIZE": 64, "OVERLAP": 16,
            "OUTPUT": "TEMPORARY_OUTPUT",
        }, feedback=fb)
        tmp_out = res.get("OUTPUT", "")
        report(tmp_out.endswith(".tif") and Path(tmp_out).is_file()
               and QgsRasterLayer(tmp_out, "tmp", "gdal").isValid(),
               "TEMPORARY_OUTPUT becomes a GeoTIFF that loads", tmp_out)

        # -- cancel mid-translation ----------------------------------------------------------
        cancel_dir = workdir / "cancelled"
        cancel_dir.mkdir()
        cancelled_out = cancel_dir / "cancelled.tif"
        fb = Feedback(cancel_above=0.0)  # cancel as soon as the first tile batch is done
        raised = ""
        t0 = time.perf_counter()
        try:
            processing.run("geogan:translate", {
                "MODEL": str(model_file), "INPUT": inputs["test"], "TILE_SIZE": 64, "OVERLAP": 16,
                "BATCH_SIZE": 1, "DEVICE": 1, "OUTPUT": str(cancelled_out),
            }, feedback=fb)
        except QgsProcessingException as exc:
            raised = str(exc)
        leftovers = sorted(listing(cancel_dir))
        messages = " | ".join([raised] + fb.errors)
        report(bool(raised) and "cancel" in messages.lower() and not cancelled_out.exists() and not leftovers
               and max(fb.progress_values, default=100) < 100,
               "a cancel mid-translation stops it and leaves no output file",
               f"stopped at {max(fb.progress_values, default=0):.1f}% after {time.perf_counter() - t0:.1f} s, "
               f"{fb.updates_after_cancel} progress update(s) after the cancel; error: {messages!r}; "
               f"files left in the output folder: {leftovers or 'none'}")

        # -- a geogan error becomes a QgsProcessingException with geogan's message ------------
        fb = Feedback()
        raised = ""
        missing = workdir / "no_such_model.geogan"
        try:
            processing.run("geogan:translate", {
                "MODEL": str(missing), "INPUT": inputs["test"], "OUTPUT": str(workdir / "never.tif"),
            }, feedback=fb)
        except QgsProcessingException as exc:
            raised = str(exc)
        report(str(missing) in raised and "\n" not in raised.strip()
               and not (workdir / "never.tif").exists(),
               "a geogan error reaches QGIS as QgsProcessingException with geogan's one-line message",
               repr(raised))

        # -- an incompatible geogan is refused in one line ------------------------------------
        real_version = geogan.__version__
        geogan.__version__ = "99.0.0"
        raised = ""
        try:
            processing.run("geogan:translate", {
                "MODEL": str(model_file), "INPUT": inputs["test"], "OUTPUT": str(workdir / "never2.tif"),
            }, feedback=Feedback())
        except QgsProcessingException as exc:
            raised = str(exc)
        finally:
            geogan.__version__ = real_version
        report("geogan 99.0.0" in raised and "does not fit this plugin" in raised and "\n" not in raised.strip()
               and not (workdir / "never2.tif").exists(),
               "an incompatible geogan version is refused with one line", repr(raised))
    finally:
        plugin.unload()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        app.exitQgis()

    failed = [what for ok, what in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} QGIS checks passed" +
          (f"; FAILED: {'; '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Headless proof that the geogan Processing provider works inside a real QGIS.

Run by ``tools/qgis_check.sh`` with the Python of a venv made from QGIS's Python
(``--system-site-packages``) and ``QT_QPA_PLATFORM=offscreen``. It starts ``QgsApplication``,
initialises Processing, registers the provider exactly as the plugin does, lists its algorithms,
then runs ``processing.run`` for ``geogan:chips``, a tiny ``geogan:train``, ``geogan:translate``
and ``geogan:translate_batch`` on ``sample_data/`` and checks with QGIS's own API that:

* importing geogan is clean (no torch/rasterio at import, no output, no logging set-up);
* the translated raster loads as a valid ``QgsRasterLayer`` with the input's CRS and extent;
* progress was reported from 0 to 100;
* a cancel requested mid-translation stops it promptly and leaves no output (nor temp) file;
* a geogan error reaches QGIS as a ``QgsProcessingException`` carrying geogan's message;
* training progress is one 0→100 sweep with one log line per epoch (the trainer's events);
* an incompatible geogan version is refused in one line;
* scene paths work where layers do: chips from comma-joined one-file-per-band scenes (the real
  BigEarthNet Sentinel-1 VV,VH and Sentinel-2 B04,B03,B02 files) with stated dB units and an AOI
  per domain in different CRSs; a translation of a comma-joined scene equals the translation of
  the same bands in one file; layers and scene paths both or neither is one clear line;
* a batch translation logs each failed scene, fails at the end, and resumes (skips complete
  outputs) when run again.

``--plugins DIR`` imports the plugin from DIR (``tools/qgis/build_plugin.sh``'s zip unpacked into
a QGIS profile's plugins folder by ``tools/qgis_check.sh``); the default is the source folder.
Prints one PASS/FAIL line per check and exits non-zero if any failed.
    usage: check_qgis.py [--workdir DIR] [--keep] [--plugins DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
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
            self.warnings: list[str] = []
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

        def pushWarning(self, warning: str) -> None:  # noqa: N802
            self.warnings.append(warning)
            super().pushWarning(warning)

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


def values_end_at_100(values: list) -> bool:
    return bool(values) and values == sorted(values) and values[-1] == 100


def listing(folder: Path) -> set:
    return {p.name for p in folder.iterdir()}


def half_layer(path: str, crs_authid: str | None = None):
    """A memory polygon layer over the upper half of one raster, in the raster's CRS or (edges
    densified, reprojected) in ``crs_authid``."""
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsGeometry,
                           QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer)

    ref = QgsRasterLayer(path, "ref", "gdal")
    ext, crs = ref.extent(), ref.crs()
    del ref
    geom = QgsGeometry.fromRect(QgsRectangle(ext.xMinimum(), ext.yMinimum() + ext.height() / 2,
                                             ext.xMaximum(), ext.yMaximum()))
    if crs_authid:
        target = QgsCoordinateReferenceSystem(crs_authid)
        geom = geom.densifyByDistance(ext.width() / 50)
        geom.transform(QgsCoordinateTransform(crs, target, QgsProject.instance()))
        crs = target
    layer = QgsVectorLayer(f"Polygon?crs={crs.authid()}", "aoi", "memory")
    feat = QgsFeature()
    feat.setGeometry(geom)
    layer.dataProvider().addFeatures([feat])
    layer.updateExtents()
    return layer


def band_scenes(workdir: Path, inputs: dict) -> dict:
    """Scenes of one file per band, as products come: the real BigEarthNet Sentinel-1 (VV, VH;
    float32 dB) and Sentinel-2 (B04, B03, B02; uint16) patches of sample_data/bigearthnet when
    present, else the bands of the sample A raster split into single-band files."""
    s1 = sorted((ROOT / "sample_data" / "bigearthnet" / "s1").glob("S1*"))[:2]
    s2 = sorted((ROOT / "sample_data" / "bigearthnet" / "s2").glob("S2*"))[:2]
    if len(s1) == 2 and len(s2) == 2:
        return {"a": [",".join(str(d / f"{d.name}_{pol}.tif") for pol in ("VV", "VH")) for d in s1],
                "b": [",".join(str(d / f"{d.name}_{band}.tif") for band in ("B04", "B03", "B02")) for d in s2],
                "units_a": "db", "source": "BigEarthNet S1 VV,VH + S2 B04,B03,B02"}
    print("note: sample_data/bigearthnet is missing; splitting the sample A raster into band files", flush=True)
    return {"a": [",".join(split_bands(inputs["a"], workdir / "split_a", "a"))], "b": [inputs["b"]],
            "units_a": None, "source": "the sample A raster split into band files"}


def split_bands(src: str, folder: Path, stem: str, window=None) -> list[str]:
    """Each band of ``src`` (or of a window of it) as its own single-band GeoTIFF, in band order."""
    import rasterio

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with rasterio.open(src) as ds:
        profile = dict(driver="GTiff", count=1, dtype=ds.dtypes[0], crs=ds.crs, nodata=ds.nodata,
                       width=window.width if window else ds.width, height=window.height if window else ds.height,
                       transform=ds.window_transform(window) if window else ds.transform)
        for band in range(1, ds.count + 1):
            path = folder / f"{stem}_B{band}.tif"
            with rasterio.open(path, "w", **profile) as out:
                out.write(ds.read(band, window=window), 1)
            paths.append(str(path))
    return paths


def crop(src: str, dst: Path, window) -> str:
    """A window of ``src`` as a GeoTIFF of its own (small batch scenes)."""
    import rasterio

    with rasterio.open(src) as ds:
        profile = dict(driver="GTiff", count=ds.count, dtype=ds.dtypes[0], crs=ds.crs, nodata=ds.nodata,
                       width=window.width, height=window.height, transform=ds.window_transform(window))
        with rasterio.open(dst, "w", **profile) as out:
            out.write(ds.read(window=window))
    return str(dst)


def same_grid(path: str, ref_path: str) -> tuple[bool, str]:
    """Whether two rasters load in QGIS with the same CRS, extent and size (to 1e-6 pixel)."""
    from qgis.core import QgsRasterLayer

    layer, ref = QgsRasterLayer(path, "out", "gdal"), QgsRasterLayer(ref_path, "ref", "gdal")
    tol = 1e-6 * max(ref.rasterUnitsPerPixelX(), ref.rasterUnitsPerPixelY())
    a, b = layer.extent(), ref.extent()
    ok = (layer.isValid() and ref.crs().isValid() and layer.crs() == ref.crs()
          and (layer.width(), layer.height()) == (ref.width(), ref.height())
          and all(abs(x - y) <= tol for x, y in ((a.xMinimum(), b.xMinimum()), (a.xMaximum(), b.xMaximum()),
                                                 (a.yMinimum(), b.yMinimum()), (a.yMaximum(), b.yMaximum()))))
    return ok, f"{layer.crs().authid()} {a.toString(1)} ({layer.width()}x{layer.height()})"


def raised_by(processing, alg: str, params: dict, feedback) -> str:
    """The QgsProcessingException message of a run ('' if it did not raise)."""
    from qgis.core import QgsProcessingException

    try:
        processing.run(alg, params, feedback=feedback)
    except QgsProcessingException as exc:
        return str(exc)
    return ""


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
    report(ids == ["geogan:chips", "geogan:train", "geogan:translate", "geogan:translate_batch"],
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

        # -- chips from scene paths: one file per band, dB units, an AOI per domain ---------------
        scenes = band_scenes(workdir, inputs)
        first_a, first_b = scenes["a"][0].split(",")[0], scenes["b"][0].split(",")[0]
        scene_chips = workdir / "chips_scenes"
        fb = Feedback()
        t0 = time.perf_counter()
        res = processing.run("geogan:chips", {
            "SCENES_A": "\n".join(scenes["a"]), "SCENES_B": " ; ".join(scenes["b"]),
            "UNITS_A": 3 if scenes["units_a"] == "db" else 0, "TILE_SIZE": 32, "MIN_VALID": 0.5,
            "VAL_FRACTION": 0.0, "AOI_A": half_layer(first_a), "AOI_B": half_layer(first_b, "EPSG:4326"),
            "OUTPUT": str(scene_chips),
        }, feedback=fb)
        meta = json.loads((scene_chips / "geogan_chips.json").read_text(encoding="utf-8")) \
            if (scene_chips / "geogan_chips.json").exists() else {"domains": {}}
        dom_a, dom_b = meta["domains"].get("a", {}), meta["domains"].get("b", {})
        bands_a, bands_b = len(scenes["a"][0].split(",")), len(scenes["b"][0].split(","))
        # BigEarthNet: 120 px patches, 32 px chips in 4 rows (the last flush with the edge); the upper
        # half of the first patch of each domain holds 2 rows of 4, the second patch none.
        expected = 8 if scenes["units_a"] == "db" else None
        counts = (res.get("TRAIN_A"), res.get("TRAIN_B"))
        report(len(dom_a.get("bands", [])) == bands_a and len(dom_b.get("bands", [])) == bands_b
               and dom_a.get("sources") == scenes["a"]
               and dom_a.get("units") == (scenes["units_a"] or dom_a.get("units"))
               and all(c and (expected is None or c == expected) for c in counts)
               and any("reprojected to EPSG:4326" in m for m in fb.infos),
               "processing.run('geogan:chips') on comma-joined one-file-per-band scene paths, SAR units stated, "
               "an AOI per domain (A in UTM, B in EPSG:4326)",
               f"{scenes['source']}: A {bands_a} bands ({dom_a.get('units')}), B {bands_b} bands; "
               f"{counts[0]} A and {counts[1]} B chips (expected {expected or 'some'} each) in "
               f"{time.perf_counter() - t0:.1f} s")
        both = raised_by(processing, "geogan:chips", {
            "A": [inputs["a"]], "SCENES_A": inputs["a"], "B": [inputs["b"]], "OUTPUT": str(workdir / "never_chips"),
        }, Feedback())
        neither = raised_by(processing, "geogan:chips", {
            "A": [inputs["a"]], "SCENES_B": " \n ", "OUTPUT": str(workdir / "never_chips"),
        }, Feedback())
        report(both.startswith("Domain A: give raster layers or scene paths, not both")
               and neither.startswith("Domain B: give raster layers or scene paths (")
               and "\n" not in both + neither and not (workdir / "never_chips").exists(),
               "chips with both or neither of layers and scene paths for a domain: one clear line",
               f"{both!r}; {neither!r}")

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

        # -- translate a comma-joined scene: the bands of the test raster as one file each --------
        band_files = split_bands(inputs["test"], workdir / "split_test", "test")
        joined_out = out_dir / "joined_translated.tif"
        fb = Feedback()
        res = processing.run("geogan:translate", {
            "MODEL": str(model_file), "INPUT_SCENE": ",".join(band_files), "DIRECTION": 0, "TILE_SIZE": 64,
            "OVERLAP": 16, "BATCH_SIZE": 4, "DEVICE": 1, "PRECISION": 1, "UNITS": 0, "OUTPUT": str(joined_out),
        }, feedback=fb)
        import numpy as np
        import rasterio

        grid_ok, grid = same_grid(str(joined_out), inputs["test"])
        with rasterio.open(out) as one, rasterio.open(joined_out) as joined:
            identical = one.count == joined.count and np.array_equal(one.read(), joined.read())
        report(res.get("OUTPUT") == str(joined_out) and grid_ok and identical
               and any(m.startswith("Input scene of 2 files") for m in fb.infos),
               "processing.run('geogan:translate') on a comma-joined scene (one file per band, precision fp32) "
               "writes on the input's CRS/extent exactly what the one-file input gave",
               f"{len(band_files)} band files → {grid}; pixels {'identical' if identical else 'DIFFER'}")
        both = raised_by(processing, "geogan:translate", {
            "MODEL": str(model_file), "INPUT": inputs["test"], "INPUT_SCENE": ",".join(band_files),
            "OUTPUT": str(workdir / "never3.tif")}, Feedback())
        several = raised_by(processing, "geogan:translate", {
            "MODEL": str(model_file), "INPUT_SCENE": ";".join(band_files), "OUTPUT": str(workdir / "never3.tif")},
            Feedback())
        report(both.startswith("Input raster: give a raster layer or a scene path, not both")
               and "names 2 scenes" in several and "geogan:translate_batch" in several
               and "\n" not in both + several and not (workdir / "never3.tif").exists(),
               "translate with both a layer and a scene path, or with several scenes: one clear line",
               f"{both!r}; {several!r}")

        # -- translate many: a failed scene is logged, the batch fails at the end, a rerun resumes --
        from rasterio.windows import Window

        batch_in = workdir / "batch_in"
        batch_in.mkdir()
        one_file = crop(inputs["test"], batch_in / "scene1.tif", Window(0, 0, 160, 128))
        pair = split_bands(inputs["test"], batch_in, "scene2", Window(200, 100, 144, 112))
        broken = batch_in / "broken.tif"
        broken.write_bytes(b"this is not a GeoTIFF")
        batch_out = workdir / "batch_out"
        batch = {"MODEL": str(model_file), "TILE_SIZE": 64, "OVERLAP": 16, "DEVICE": 1, "OUTPUT": str(batch_out)}
        fb = Feedback()
        t0 = time.perf_counter()
        raised = raised_by(processing, "geogan:translate_batch",
                           {**batch, "SCENES": f"{one_file}\n{','.join(pair)} ; {broken}"}, fb)
        written = sorted(listing(batch_out)) if batch_out.exists() else []
        failure_warnings = [w for w in fb.warnings if w.startswith("scene failed (the batch goes on)")]
        report(raised.startswith("1 of 3 scene(s) failed: ") and "broken.tif" in raised and "\n" not in raised
               and len(fb.errors) == 1 and "broken.tif" in fb.errors[0]
               # each written scene with its STAC Item, and the folder's collection (issue 23)
               and written == ["collection.json", "scene1.json", "scene1.tif", "scene2.json", "scene2.tif"]
               and len(failure_warnings) == 1 and "broken.tif" in failure_warnings[0],
               "processing.run('geogan:translate_batch') goes on after a failed scene, logs it (one pushWarning), "
               "and fails at the end",
               f"{raised!r}; log errors {fb.errors}; warnings {fb.warnings}; written {written} in "
               f"{time.perf_counter() - t0:.1f} s")
        broken.unlink()
        fb = Feedback()
        res = processing.run("geogan:translate_batch", {**batch, "SCENES": f"{one_file}\n{','.join(pair)}"},
                             feedback=fb)
        grids = [same_grid(path, ref) for path, ref in zip(res.get("OUTPUT_LAYERS", []), (one_file, pair[0]))]
        report((res.get("WRITTEN"), res.get("SKIPPED"), res.get("FAILED")) == (0, 2, 0) and len(grids) == 2
               and all(ok for ok, _ in grids) and values_end_at_100(fb.progress_values),
               "a rerun of the batch skips the complete outputs (resumable); each output is on its input's grid",
               f"written {res.get('WRITTEN')}, skipped {res.get('SKIPPED')}, failed {res.get('FAILED')}; "
               f"{[g for _, g in grids]}; {next((m for m in fb.infos if ' scene(s) in ' in m), 'no summary')}")

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

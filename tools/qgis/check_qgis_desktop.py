"""Run inside the QGIS desktop application (``qgis --code``): the plugin as a user gets it.

Started by ``tools/qgis_check.sh`` under Xvfb with the plugin installed and enabled in a
throw-away profile. Checks that QGIS loaded the plugin through ``classFactory``/``initGui``,
that the toolbox has the four algorithms, that their dialogs build and keep the values set
(scene paths, units, precision) with the optional layer fields left empty, and that
``processing.runAndLoadResults`` of Translate raster adds a valid layer on the input's CRS and
extent. Writes PASS/FAIL lines to ``$GEOGAN_DESKTOP_RESULT`` and quits QGIS without any save
dialog.
    env: GEOGAN_DESKTOP_RESULT, GEOGAN_DESKTOP_MODEL, GEOGAN_DESKTOP_INPUT
"""
import os
import traceback

lines = []
try:
    import processing
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.utils import active_plugins

    provider = QgsApplication.processingRegistry().providerById("geogan")
    ids = sorted(a.id() for a in provider.algorithms()) if provider else []
    ok = "geogan_provider" in active_plugins and ids == ["geogan:chips", "geogan:train", "geogan:translate", "geogan:translate_batch"]
    lines.append(f"{'PASS' if ok else 'FAIL'}: QGIS desktop loaded the plugin and its toolbox algorithms — {', '.join(ids) or 'none'}")
    src = os.environ["GEOGAN_DESKTOP_INPUT"]
    # Each algorithm's dialog builds its widgets, and the scene-path fields (multi-line text) and
    # the new choices come back from the widgets as they were set.
    scenes = f"{src},{src}\n@/data/more_scenes.txt"
    preset = {"geogan:chips": {"SCENES_A": scenes, "UNITS_A": 3, "SCENES_B": src},
              "geogan:train": {},
              "geogan:translate": {"MODEL": os.environ["GEOGAN_DESKTOP_MODEL"], "INPUT_SCENE": f"{src},{src}",
                                   "UNITS": 3, "PRECISION": 1},
              "geogan:translate_batch": {"MODEL": os.environ["GEOGAN_DESKTOP_MODEL"], "SCENES": scenes,
                                         "PRECISION": 1}}
    # With a raster layer in the project, the optional layer fields must stay empty: a layer
    # picked by default beside typed scene paths would be refused as "not both".
    QgsProject.instance().addMapLayer(QgsRasterLayer(src, "a layer in the project", "gdal"))
    layer_field = {"geogan:chips": "A", "geogan:translate": "INPUT", "geogan:translate_batch": "INPUT"}
    round_trip = {}
    for alg_id, values in preset.items():
        dlg = processing.createAlgorithmDialog(alg_id, values)
        got = dlg.mainWidget().createProcessingParameters() if dlg is not None and dlg.mainWidget() else {}
        round_trip[alg_id] = (all(got.get(k) == v for k, v in values.items()) and bool(got)
                              and not got.get(layer_field.get(alg_id, "-")))
        if dlg is not None:
            dlg.deleteLater()
    ok = all(round_trip.values())
    lines.append(f"{'PASS' if ok else 'FAIL'}: QGIS desktop opens each algorithm's dialog and its widgets keep the "
                 f"scene paths, units and precision set, layer fields left empty — {round_trip}")
    processing.runAndLoadResults("geogan:translate", {
        "MODEL": os.environ["GEOGAN_DESKTOP_MODEL"], "INPUT": src, "TILE_SIZE": 64, "OVERLAP": 16,
        "OUTPUT": "TEMPORARY_OUTPUT"})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "Translated raster"]
    ref = QgsRasterLayer(src, "input", "gdal")
    ok = (len(layers) == 1 and layers[0].isValid() and layers[0].crs() == ref.crs()
          and layers[0].extent() == ref.extent())
    detail = (f"{layers[0].name()}: {layers[0].crs().authid()} {layers[0].extent().toString(1)}" if layers
              else "no layer added")
    lines.append(f"{'PASS' if ok else 'FAIL'}: QGIS desktop runAndLoadResults('geogan:translate') added the layer on the input's CRS/extent — {detail}")
except Exception:
    lines.append("FAIL: QGIS desktop check raised: " + traceback.format_exc().replace("\n", " | "))
with open(os.environ["GEOGAN_DESKTOP_RESULT"], "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines) + "\n")
os._exit(0)  # quit at once: no "save project?" dialog, no teardown of the offscreen GUI

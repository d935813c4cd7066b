"""The geogan Processing algorithms: Export chips, Train, Translate raster.

Each algorithm only converts QGIS parameters into arguments of geogan's Python API
(``geogan.export_chips``, ``geogan.train``, ``geogan.translate_raster``) and runs it with a
progress adapter around the Processing feedback (``geogan.QgisFeedbackProgress``; for training
:class:`.feedback.TrainingProgress` on top); geogan errors come back
as ``QgsProcessingException`` with geogan's one-line message (:mod:`.glue`). geogan itself is
imported only when an algorithm runs, so the toolbox lists the algorithms even in a QGIS whose
Python lacks torch or geogan, and says in one line how to install (or which version to install)
when one is run.
"""
from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
)

from .feedback import TrainingProgress
from .glue import band_list, import_geogan, plugin_metadata, run_with_feedback, train_settings

GROUP_ID = "geogan"
GROUP = "Raster translation (GAN)"
KINDS = ["auto", "sar", "optical", "multispectral", "dsm", "generic"]
DEVICES = ["auto", "cpu", "cuda"]
BLENDS = ["hann", "linear", "none"]
DIRECTIONS = ["a2b", "b2a"]


def _advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


def layer_path(layer: Any, what: str) -> str:
    """The file behind a raster layer; geogan reads files with rasterio, not QGIS data providers."""
    if layer is None:
        raise QgsProcessingException(f"{what}: no raster layer given")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{what}: layer '{layer.name()}' is served by the '{layer.providerType()}' provider; "
            "geogan needs a raster file (e.g. a GeoTIFF) — export the layer to a file first")
    path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or layer.source()
    return path


class GeoganAlgorithm(QgsProcessingAlgorithm):
    """What the three algorithms share: the group, translation helpers and optional values."""

    def group(self) -> str:
        return GROUP

    def groupId(self) -> str:
        return GROUP_ID

    def createInstance(self) -> "GeoganAlgorithm":
        return type(self)()

    def helpUrl(self) -> str:
        homepage = plugin_metadata("homepage")
        return f"{homepage}#qgis" if homepage else ""

    @staticmethod
    def _given(parameters: dict, name: str) -> bool:
        value = parameters.get(name)
        return value is not None and value != ""

    def _optional_int(self, parameters: dict, name: str, context: Any) -> Optional[int]:
        return self.parameterAsInt(parameters, name, context) if self._given(parameters, name) else None

    def _optional_double(self, parameters: dict, name: str, context: Any) -> Optional[float]:
        return self.parameterAsDouble(parameters, name, context) if self._given(parameters, name) else None


class ExportChipsAlgorithm(GeoganAlgorithm):
    """geogan.export_chips: cut domain A and domain B rasters into training chips."""

    A, B, BANDS_A, BANDS_B, KIND_A, KIND_B = "A", "B", "BANDS_A", "BANDS_B", "KIND_A", "KIND_B"
    TILE_SIZE, STRIDE, MIN_VALID, VAL_FRACTION = "TILE_SIZE", "STRIDE", "MIN_VALID", "VAL_FRACTION"
    PAIRED, SEED, AOI, OUTPUT = "PAIRED", "SEED", "AOI", "OUTPUT"
    TRAIN_A, TRAIN_B, VAL_A, VAL_B, METADATA = "TRAIN_A", "TRAIN_B", "VAL_A", "VAL_B", "METADATA"

    def name(self) -> str:
        return "chips"

    def displayName(self) -> str:
        return "Export chips"

    def shortHelpString(self) -> str:
        return (
            "Cuts domain A rasters (e.g. SAR) and domain B rasters (e.g. optical) into GeoTIFF "
            "training chips plus a geogan_chips.json metadata file, ready for <b>Train</b>.<br>"
            "<b>Paired</b>: B is resampled onto each A raster's grid and chips are cut at the same "
            "places (Pix2Pix); unpaired chips suit CycleGAN.<br>"
            "<b>Bands</b>: comma-separated 1-based band numbers (empty = all bands).<br>"
            "<b>Minimum valid fraction</b>: a chip is kept only if this share of its pixels is valid "
            "(not nodata/masked, and for SAR > 0).<br>"
            "<b>Area of interest</b>: only chips overlapping its polygons are written.<br>"
            "A cancelled run leaves the output folder as it was.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.A, "Domain A rasters", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.B, "Domain B rasters", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS_A, "Domain A bands (e.g. 1,2; empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS_B, "Domain B bands (e.g. 3,2,1; empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.KIND_A, "Domain A kind", options=KINDS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.KIND_B, "Domain B kind", options=KINDS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Chip size (pixels)", QgsProcessingParameterNumber.Integer,
            defaultValue=256, minValue=16))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE, "Stride (pixels; empty = chip size)", QgsProcessingParameterNumber.Integer,
            optional=True, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_VALID, "Minimum valid fraction", QgsProcessingParameterNumber.Double,
            defaultValue=0.95, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.VAL_FRACTION, "Validation fraction", QgsProcessingParameterNumber.Double,
            defaultValue=0.1, minValue=0.0, maxValue=0.9))
        self.addParameter(QgsProcessingParameterBoolean(
            self.PAIRED, "Paired (co-registered A and B, for Pix2Pix)", defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.AOI, "Area of interest", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.SEED, "Random seed (validation split)", QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0)))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Chips folder"))
        for key, label in ((self.TRAIN_A, "Training chips, A"), (self.TRAIN_B, "Training chips, B"),
                           (self.VAL_A, "Validation chips, A"), (self.VAL_B, "Validation chips, B")):
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(QgsProcessingOutputFile(self.METADATA, "Chips metadata (geogan_chips.json)"))

    def _aoi(self, parameters: dict, context: Any, feedback: Any) -> tuple[Optional[str], Optional[str]]:
        """The AOI layer's polygons as one WKT string plus the layer's CRS as WKT."""
        if not self._given(parameters, self.AOI):
            return None, None
        source = self.parameterAsSource(parameters, self.AOI, context)
        if source is None:
            return None, None
        geoms = [f.geometry() for f in source.getFeatures() if f.hasGeometry()]
        if not geoms:
            raise QgsProcessingException("Area of interest: the layer has no polygon")
        union = QgsGeometry.unaryUnion(geoms)
        crs = source.sourceCrs()
        if not crs.isValid():
            raise QgsProcessingException("Area of interest: the layer has no valid CRS")
        feedback.pushInfo(f"Area of interest: {len(geoms)} polygon(s) in {crs.authid() or 'custom CRS'}")
        return union.asWkt(), crs.toWkt()

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)

        a = [layer_path(lyr, "Domain A") for lyr in self.parameterAsLayerList(parameters, self.A, context)]
        b = [layer_path(lyr, "Domain B") for lyr in self.parameterAsLayerList(parameters, self.B, context)]
        if not a or not b:
            raise QgsProcessingException("give at least one raster for domain A and one for domain B")
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        kind_a = KINDS[self.parameterAsEnum(parameters, self.KIND_A, context)]
        kind_b = KINDS[self.parameterAsEnum(parameters, self.KIND_B, context)]
        aoi, aoi_crs = self._aoi(parameters, context, feedback)
        summary = run_with_feedback(
            geogan.export_chips, feedback, QgsProcessingException, a, b, out,
            bands_a=band_list(self.parameterAsString(parameters, self.BANDS_A, context)),
            bands_b=band_list(self.parameterAsString(parameters, self.BANDS_B, context)),
            kind_a=None if kind_a == "auto" else kind_a,
            kind_b=None if kind_b == "auto" else kind_b,
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            stride=self._optional_int(parameters, self.STRIDE, context),
            min_valid=self.parameterAsDouble(parameters, self.MIN_VALID, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            paired=self.parameterAsBoolean(parameters, self.PAIRED, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            aoi=aoi, aoi_crs=aoi_crs,
        )
        for line in summary.lines():
            feedback.pushInfo(line)
        return {
            self.OUTPUT: str(summary.out_dir),
            self.METADATA: str(summary.metadata_path),
            self.TRAIN_A: summary.counts["a"]["train"], self.VAL_A: summary.counts["a"]["val"],
            self.TRAIN_B: summary.counts["b"]["train"], self.VAL_B: summary.counts["b"]["val"],
        }


class TrainAlgorithm(GeoganAlgorithm):
    """geogan.train: fit a CycleGAN / Pix2Pix on a chips folder, from a config file plus overrides."""

    CONFIG, DATA, MODEL, EPOCHS, EPOCHS_DECAY = "CONFIG", "DATA", "MODEL", "EPOCHS", "EPOCHS_DECAY"
    BATCH_SIZE, CROP_SIZE, NGF, LR, DEVICE, RESUME = "BATCH_SIZE", "CROP_SIZE", "NGF", "LR", "DEVICE", "RESUME"
    OUTPUT, MODEL_FILE = "OUTPUT", "MODEL_FILE"
    MODELS = ["from config", "cyclegan", "pix2pix"]
    DEVICE_CHOICES = ["from config"] + DEVICES

    def name(self) -> str:
        return "train"

    def displayName(self) -> str:
        return "Train"

    def shortHelpString(self) -> str:
        return (
            "Trains a CycleGAN (unpaired chips) or Pix2Pix (paired chips) on a folder written by "
            "<b>Export chips</b> and writes <i>model.geogan</i> into the output folder.<br>"
            "Settings come from an optional YAML config file (geogan's <i>TrainConfig</i> keys; "
            "relative <i>data</i>/<i>out</i> paths are relative to the file); any field filled in "
            "here overrides the file. Training on the CPU is slow: use a GPU (device cuda) for real "
            "runs.<br>Cancel stops after the current step and writes a checkpoint; run again with "
            "<b>Resume</b> to continue.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        self.addParameter(QgsProcessingParameterFile(
            self.CONFIG, "Config file (YAML)", QgsProcessingParameterFile.File,
            fileFilter="YAML files (*.yaml *.yml)", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.DATA, "Chips folder (overrides 'data')", QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, "Model (overrides 'model')", options=self.MODELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, "Epochs at full learning rate (overrides 'epochs')",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS_DECAY, "Epochs of learning-rate decay (overrides 'epochs_decay')",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Batch size (overrides 'batch_size')",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device (overrides 'device')", options=self.DEVICE_CHOICES, defaultValue=0))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.CROP_SIZE, "Crop size (overrides 'crop_size')",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=16)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.NGF, "Generator filters (overrides 'ngf')",
            QgsProcessingParameterNumber.Integer, optional=True, minValue=1)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.LR, "Learning rate (overrides 'lr')",
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.0)))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            self.RESUME, "Resume from the output folder's last checkpoint", defaultValue=False)))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, "Training output folder (overrides 'out')", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputFile(self.MODEL_FILE, "Model file"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)
        from geogan.config import TrainConfig, from_mapping

        model = self.MODELS[self.parameterAsEnum(parameters, self.MODEL, context)]
        device = self.DEVICE_CHOICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        out = self.parameterAsString(parameters, self.OUTPUT, context) if self._given(parameters, self.OUTPUT) else None
        overrides = {
            "data": self.parameterAsFile(parameters, self.DATA, context) if self._given(parameters, self.DATA) else None,
            "out": out,
            "model": None if model == "from config" else model,
            "epochs": self._optional_int(parameters, self.EPOCHS, context),
            "epochs_decay": self._optional_int(parameters, self.EPOCHS_DECAY, context),
            "batch_size": self._optional_int(parameters, self.BATCH_SIZE, context),
            "crop_size": self._optional_int(parameters, self.CROP_SIZE, context),
            "ngf": self._optional_int(parameters, self.NGF, context),
            "lr": self._optional_double(parameters, self.LR, context),
            "device": None if device == "from config" else device,
        }
        config_path = self.parameterAsFile(parameters, self.CONFIG, context) if self._given(parameters, self.CONFIG) else None
        try:
            settings = train_settings(config_path, overrides)
            cfg = from_mapping(TrainConfig, settings, source=f"'{config_path}'" if config_path else "settings")
        except geogan.GeoganError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(f"Training a {cfg.model} ({cfg.generator}, ngf {cfg.ngf}) on {cfg.data} for "
                          f"{cfg.epochs}+{cfg.epochs_decay} epochs into {cfg.out}")
        training = TrainingProgress(geogan.QgisFeedbackProgress(feedback), feedback, cfg.epochs + cfg.epochs_decay)
        model_path = run_with_feedback(geogan.train, feedback, QgsProcessingException, cfg, progress=training,
                                       on_event=training.on_event,
                                       resume=self.parameterAsBoolean(parameters, self.RESUME, context))
        feedback.pushInfo(f"Model written to {model_path}")
        return {self.MODEL_FILE: str(model_path), self.OUTPUT: str(cfg.out)}


class TranslateRasterAlgorithm(GeoganAlgorithm):
    """geogan.translate_raster: run a trained model over a whole raster, tile by tile."""

    MODEL, INPUT, DIRECTION, BANDS, TILE_SIZE, OVERLAP = "MODEL", "INPUT", "DIRECTION", "BANDS", "TILE_SIZE", "OVERLAP"
    BATCH_SIZE, DEVICE, BLEND, COG, OUTPUT = "BATCH_SIZE", "DEVICE", "BLEND", "COG", "OUTPUT"

    def name(self) -> str:
        return "translate"

    def displayName(self) -> str:
        return "Translate raster"

    def shortHelpString(self) -> str:
        return (
            "Translates a raster into the other domain with a trained geogan model (a "
            "<i>.geogan</i> file from <b>Train</b>), e.g. SAR to optical. The output has the "
            "input's grid, CRS and extent, the target domain's bands and data type, and nodata "
            "where the input was invalid.<br>"
            "<b>Direction</b>: a2b translates domain A inputs into domain B (Pix2Pix models only "
            "have a2b).<br>"
            "<b>Tile size / overlap</b>: the raster is processed in overlapping tiles that are "
            "blended together; more overlap hides seams.<br>"
            "Cancel stops after the current batch of tiles and leaves no output file.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model file (.geogan)", QgsProcessingParameterFile.File,
            fileFilter="geogan models (*.geogan);;All files (*)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterEnum(
            self.DIRECTION, "Direction", options=DIRECTIONS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Input bands (e.g. 1,2; empty = the model's)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size (pixels)", QgsProcessingParameterNumber.Integer,
            defaultValue=256, minValue=16))
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, "Tile overlap (pixels)", QgsProcessingParameterNumber.Integer,
            defaultValue=64, minValue=0))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Tiles per batch", QgsProcessingParameterNumber.Integer,
            defaultValue=8, minValue=1)))
        self.addParameter(_advanced(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=DEVICES, defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterEnum(
            self.BLEND, "Blending of overlapping tiles", options=BLENDS, defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            self.COG, "Write a Cloud Optimized GeoTIFF", defaultValue=False)))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Translated raster"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)

        src = layer_path(self.parameterAsRasterLayer(parameters, self.INPUT, context), "Input raster")
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        model_path = self.parameterAsFile(parameters, self.MODEL, context)
        run_with_feedback(
            geogan.translate_raster, feedback, QgsProcessingException, model_path, src, dst,
            direction=DIRECTIONS[self.parameterAsEnum(parameters, self.DIRECTION, context)],
            bands=band_list(self.parameterAsString(parameters, self.BANDS, context)),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            blend=BLENDS[self.parameterAsEnum(parameters, self.BLEND, context)],
            cog=self.parameterAsBoolean(parameters, self.COG, context),
            # QGIS asked before choosing an existing file (or made a fresh temporary one).
            overwrite=True,
        )
        return {self.OUTPUT: dst}

"""The geogan Processing algorithms: Export chips, Train, Translate raster, Translate many rasters.

Each algorithm only converts QGIS parameters into arguments of geogan's Python API
(``geogan.export_chips``, ``geogan.train``, ``geogan.translate_raster``,
``geogan.translate_rasters``) and runs it with a
progress adapter around the Processing feedback (``geogan.QgisFeedbackProgress``; for training
:class:`.feedback.TrainingProgress` on top); geogan errors come back
as ``QgsProcessingException`` with geogan's one-line message (:mod:`.glue`). geogan itself is
imported only when an algorithm runs, so the toolbox lists the algorithms even in a QGIS whose
Python lacks torch or geogan, and says in one line how to install (or which version to install)
when one is run.

Inputs are raster layers or, where products come as one file per band (Sentinel-1 VV/VH,
Sentinel-2 band files), text in geogan's scene syntax (``VV.tif,VH.tif``, ``@list.txt``, globs,
folders, GDAL paths, STAC Item/ItemCollection/Catalog JSON with the asset keys to stack), expanded
by geogan itself (:func:`.glue.domain_inputs`).
"""
from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputMultipleLayers,
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
from .glue import (
    PRECISION_CHOICES,
    UNIT_CHOICES,
    aoi_arguments,
    asset_keys,
    band_list,
    catalogue_single,
    domain_inputs,
    gdal_name,
    import_geogan,
    plugin_metadata,
    report_batch,
    run_with_feedback,
    single_scene,
    stated,
    train_settings,
)

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
    """The file (GDAL name) behind a raster layer; geogan reads files with rasterio, not QGIS data
    providers."""
    if layer is None:
        raise QgsProcessingException(f"{what}: no raster layer given")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{what}: layer '{layer.name()}' is served by the '{layer.providerType()}' provider; "
            "geogan needs a raster file (e.g. a GeoTIFF) — export the layer to a file first")
    return gdal_name(QgsProviderRegistry.instance().decodeUri("gdal", layer.source()), layer.source())


def project_folder(context: Any) -> Optional[str]:
    """The current project's folder, against which typed relative scene paths are taken (None for
    an unsaved project: they then stay relative to QGIS's working folder)."""
    project = context.project() if context is not None else None
    return (project.homePath() if project is not None else "") or None


def _multiline(name: str, description: str) -> QgsProcessingParameterString:
    return QgsProcessingParameterString(name, description, multiLine=True, optional=True)


class GeoganAlgorithm(QgsProcessingAlgorithm):
    """What the algorithms share: the group, the help link and optional values."""

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
    SCENES_A, SCENES_B, UNITS_A, UNITS_B = "SCENES_A", "SCENES_B", "UNITS_A", "UNITS_B"
    ASSETS_A, ASSETS_B = "ASSETS_A", "ASSETS_B"
    TILE_SIZE, STRIDE, MIN_VALID, VAL_FRACTION = "TILE_SIZE", "STRIDE", "MIN_VALID", "VAL_FRACTION"
    PAIRED, SEED, AOI, AOI_A, AOI_B, OUTPUT = "PAIRED", "SEED", "AOI", "AOI_A", "AOI_B", "OUTPUT"
    TRAIN_A, TRAIN_B, VAL_A, VAL_B, METADATA = "TRAIN_A", "TRAIN_B", "VAL_A", "VAL_B", "METADATA"

    def name(self) -> str:
        return "chips"

    def displayName(self) -> str:
        return "Export chips"

    def shortHelpString(self) -> str:
        return (
            "Cuts domain A rasters (e.g. SAR) and domain B rasters (e.g. optical) into GeoTIFF "
            "training chips plus a geogan_chips.json metadata file, ready for <b>Train</b>.<br>"
            "<b>Rasters or scene paths</b>: give each domain either raster layers or scene paths, "
            "one scene per line (or separated by <i>;</i>). A scene path may be several files "
            "joined by commas, stacked band after band as one scene (<i>S1_VV.tif,S1_VH.tif</i>; "
            "Sentinel-2 band files at 10/20/60 m are resampled onto the finest grid), "
            "<i>@list.txt</i> (one scene per line), a glob (<i>/data/s1/*.tif</i>), a folder or a "
            "GDAL path (<i>/vsizip/...</i>). Use absolute paths.<br>"
            "<b>STAC</b>: a scene path may be a STAC Item, ItemCollection (a saved search) or "
            "Catalog JSON, a file or URL: each item is one scene made of the files of the "
            "<b>asset keys</b> given for that domain, in order (<i>VV,VH</i>; <i>B04,B03,B02</i>).<br>"
            "<b>Paired</b>: B is resampled onto each A raster's grid and chips are cut at the same "
            "places (Pix2Pix); unpaired chips suit CycleGAN.<br>"
            "<b>Bands</b>: comma-separated 1-based band numbers (empty = all bands).<br>"
            "<b>SAR units</b> (advanced): linear power, amplitude or dB; <i>auto</i> infers them "
            "from the values (negative values mean dB).<br>"
            "<b>Minimum valid fraction</b>: a chip is kept only if this share of its pixels is valid "
            "(not nodata/masked; SAR in linear units or amplitude: > 0).<br>"
            "<b>Area of interest</b>: only chips overlapping its polygons are written; give one for "
            "both domains, or one for A and/or one for B (unpaired data from different places).<br>"
            "A cancelled run leaves the output folder as it was.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        for layers, scenes, domain in ((self.A, self.SCENES_A, "A"), (self.B, self.SCENES_B, "B")):
            self.addParameter(QgsProcessingParameterMultipleLayers(
                layers, f"Domain {domain} rasters", QgsProcessing.TypeRaster, optional=True))
            self.addParameter(_multiline(
                scenes, f"Domain {domain} scene paths, instead of layers (one per line; a.tif,b.tif = one scene)"))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS_A, "Domain A bands (e.g. 1,2; empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS_B, "Domain B bands (e.g. 3,2,1; empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.ASSETS_A, "Domain A STAC asset keys (e.g. VV,VH; for STAC JSON scene paths)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.ASSETS_B, "Domain B STAC asset keys (e.g. B04,B03,B02; for STAC JSON scene paths)", optional=True))
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
        for name, label in ((self.AOI, "Area of interest (both domains)"),
                            (self.AOI_A, "Area of interest of domain A only"),
                            (self.AOI_B, "Area of interest of domain B only")):
            self.addParameter(QgsProcessingParameterFeatureSource(
                name, label, [QgsProcessing.TypeVectorPolygon], optional=True))
        for name, domain in ((self.UNITS_A, "A"), (self.UNITS_B, "B")):
            self.addParameter(_advanced(QgsProcessingParameterEnum(
                name, f"Domain {domain} SAR units (auto = inferred from the values)", options=UNIT_CHOICES,
                defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterNumber(
            self.SEED, "Random seed (validation split)", QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0)))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Chips folder"))
        for key, label in ((self.TRAIN_A, "Training chips, A"), (self.TRAIN_B, "Training chips, B"),
                           (self.VAL_A, "Validation chips, A"), (self.VAL_B, "Validation chips, B")):
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(QgsProcessingOutputFile(self.METADATA, "Chips metadata (geogan_chips.json)"))

    def _aoi_layer(self, parameters: dict, name: str, what: str, context: Any,
                   feedback: Any) -> Optional[tuple[QgsGeometry, QgsCoordinateReferenceSystem]]:
        """One AOI parameter's polygons as one geometry, with the layer's CRS."""
        if not self._given(parameters, name):
            return None
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            return None
        geoms = [f.geometry() for f in source.getFeatures() if f.hasGeometry()]
        if not geoms:
            raise QgsProcessingException(f"{what}: the layer has no polygon")
        crs = source.sourceCrs()
        if not crs.isValid():
            raise QgsProcessingException(f"{what}: the layer has no valid CRS")
        feedback.pushInfo(f"{what}: {len(geoms)} polygon(s) in {crs.authid() or 'custom CRS'}")
        return QgsGeometry.unaryUnion(geoms), crs

    def _aois(self, parameters: dict, context: Any, feedback: Any) -> dict:
        """export_chips's aoi / aoi_a / aoi_b / aoi_crs. geogan takes one CRS for them all, so
        layers in different CRSs are reprojected to WGS 84 (edges densified first)."""
        found = {key: self._aoi_layer(parameters, name, what, context, feedback)
                 for key, name, what in (("aoi", self.AOI, "Area of interest"),
                                         ("aoi_a", self.AOI_A, "Area of interest of A"),
                                         ("aoi_b", self.AOI_B, "Area of interest of B"))}
        given = {k: v for k, v in found.items() if v is not None}
        if len({crs.toWkt() for _, crs in given.values()}) > 1:
            wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
            given = {k: (_reprojected(geom, crs, wgs84, context), wgs84) for k, (geom, crs) in given.items()}
            feedback.pushInfo("Areas of interest in different CRSs: reprojected to EPSG:4326")
        return aoi_arguments({k: (geom.asWkt(), crs.toWkt()) for k, (geom, crs) in given.items()},
                             QgsProcessingException)

    def _domain(self, parameters: dict, layers: str, scenes: str, domain: str, context: Any) -> list:
        files = [layer_path(lyr, f"Domain {domain}") for lyr in self.parameterAsLayerList(parameters, layers, context)]
        return domain_inputs(files, self.parameterAsString(parameters, scenes, context), f"Domain {domain}",
                             QgsProcessingException, project_folder(context))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)

        a = self._domain(parameters, self.A, self.SCENES_A, "A", context)
        b = self._domain(parameters, self.B, self.SCENES_B, "B", context)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        summary = run_with_feedback(
            geogan.export_chips, feedback, QgsProcessingException, a, b, out,
            bands_a=band_list(self.parameterAsString(parameters, self.BANDS_A, context)),
            bands_b=band_list(self.parameterAsString(parameters, self.BANDS_B, context)),
            assets_a=asset_keys(self.parameterAsString(parameters, self.ASSETS_A, context)),
            assets_b=asset_keys(self.parameterAsString(parameters, self.ASSETS_B, context)),
            kind_a=stated(KINDS[self.parameterAsEnum(parameters, self.KIND_A, context)]),
            kind_b=stated(KINDS[self.parameterAsEnum(parameters, self.KIND_B, context)]),
            units_a=stated(UNIT_CHOICES[self.parameterAsEnum(parameters, self.UNITS_A, context)]),
            units_b=stated(UNIT_CHOICES[self.parameterAsEnum(parameters, self.UNITS_B, context)]),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            stride=self._optional_int(parameters, self.STRIDE, context),
            min_valid=self.parameterAsDouble(parameters, self.MIN_VALID, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            paired=self.parameterAsBoolean(parameters, self.PAIRED, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            **self._aois(parameters, context, feedback),
        )
        for line in summary.lines():
            feedback.pushInfo(line)
        return {
            self.OUTPUT: str(summary.out_dir),
            self.METADATA: str(summary.metadata_path),
            self.TRAIN_A: summary.counts["a"]["train"], self.VAL_A: summary.counts["a"]["val"],
            self.TRAIN_B: summary.counts["b"]["train"], self.VAL_B: summary.counts["b"]["val"],
        }


def _reprojected(geom: QgsGeometry, crs: QgsCoordinateReferenceSystem, target: QgsCoordinateReferenceSystem,
                 context: Any) -> QgsGeometry:
    """``geom`` in ``target``, its straight edges densified first so they stay where they were."""
    result = QgsGeometry(geom)
    box = result.boundingBox()
    step = max(box.width(), box.height()) / 64
    if step > 0:
        result = result.densifyByDistance(step)
    problem = f"Area of interest: cannot reproject from {crs.authid() or 'its CRS'} to {target.authid()}"
    try:
        failed = result.transform(QgsCoordinateTransform(crs, target, context.transformContext()))
    except QgsCsException as exc:
        raise QgsProcessingException(f"{problem} ({exc})") from None
    if failed:
        raise QgsProcessingException(problem)
    return result


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


class TranslateParameters(GeoganAlgorithm):
    """The translation settings that Translate raster and Translate many rasters share."""

    MODEL, DIRECTION, BANDS, UNITS, TILE_SIZE, OVERLAP = "MODEL", "DIRECTION", "BANDS", "UNITS", "TILE_SIZE", "OVERLAP"
    BATCH_SIZE, DEVICE, PRECISION, BLEND, COG, TTA = "BATCH_SIZE", "DEVICE", "PRECISION", "BLEND", "COG", "TTA"
    ASSETS = "ASSETS"

    SHARED_HELP = (
        "<b>Direction</b>: a2b translates domain A inputs into domain B (Pix2Pix models only "
        "have a2b).<br>"
        "<b>Input units</b>: a SAR input's units (linear power, amplitude, dB); <i>auto</i> infers "
        "them from the values. An input in other units than the model was trained on is "
        "converted.<br>"
        "<b>STAC asset keys</b>: for a STAC Item, ItemCollection or Catalog JSON input, the "
        "assets whose files are the input bands, in order (<i>VV,VH</i>); empty = the keys the "
        "model was trained with. Outputs from STAC are Cloud Optimized GeoTIFFs, each with a "
        "STAC Item (<i>NAME.json</i>) beside it and the folder's <i>collection.json</i>.<br>"
        "<b>Tile size / overlap</b>: the raster is processed in overlapping tiles that are "
        "blended together; more overlap hides seams.<br>"
        "<b>Precision</b> (advanced): <i>auto</i> is bf16 on GPUs that run it natively, fp16 on "
        "older GPUs, fp32 on the CPU.<br>"
        "<b>Test-time augmentation</b> (advanced): averages the translations of every orientation "
        "the model was trained under (8 times the work): less speckle copied into the output, "
        "the same edges.<br>")

    def _add_model(self) -> None:
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "Model file (.geogan)", QgsProcessingParameterFile.File,
            fileFilter="geogan models (*.geogan);;All files (*)"))

    def _add_settings(self) -> None:
        self.addParameter(QgsProcessingParameterEnum(
            self.DIRECTION, "Direction", options=DIRECTIONS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Input bands (e.g. 1,2; empty = the model's)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.UNITS, "Input SAR units (auto = inferred from the values)", options=UNIT_CHOICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.ASSETS, "STAC asset keys of the input bands (e.g. VV,VH; empty = the model's)", optional=True))
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
            self.PRECISION, "Precision", options=PRECISION_CHOICES, defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterEnum(
            self.BLEND, "Blending of overlapping tiles", options=BLENDS, defaultValue=0)))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            self.COG, "Write a Cloud Optimized GeoTIFF (always for STAC inputs)", defaultValue=False)))
        self.addParameter(_advanced(QgsProcessingParameterBoolean(
            self.TTA, "Test-time augmentation (average the trained orientations)", defaultValue=False)))

    def _settings(self, parameters: dict, context: Any) -> dict:
        """The keyword arguments of translate_raster / translate_rasters that both algorithms take."""
        return dict(
            direction=DIRECTIONS[self.parameterAsEnum(parameters, self.DIRECTION, context)],
            bands=band_list(self.parameterAsString(parameters, self.BANDS, context)),
            units=stated(UNIT_CHOICES[self.parameterAsEnum(parameters, self.UNITS, context)]),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            precision=PRECISION_CHOICES[self.parameterAsEnum(parameters, self.PRECISION, context)],
            blend=BLENDS[self.parameterAsEnum(parameters, self.BLEND, context)],
            cog=self.parameterAsBoolean(parameters, self.COG, context) or None,  # None: geogan's, COG for STAC
            tta=self.parameterAsBoolean(parameters, self.TTA, context),
        )


class TranslateRasterAlgorithm(TranslateParameters):
    """geogan.translate_raster: run a trained model over a whole raster, tile by tile."""

    INPUT, INPUT_SCENE, OUTPUT = "INPUT", "INPUT_SCENE", "OUTPUT"

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
            "<b>Input</b>: a raster layer, or a scene path instead: files joined by commas are "
            "stacked band after band as one scene (<i>S1_VV.tif,S1_VH.tif</i>; bands on different "
            "grids are resampled onto the finest), a GDAL path (<i>/vsizip/...</i>) or a STAC Item "
            "JSON (its asset keys' files).<br>"
            + self.SHARED_HELP +
            "Cancel stops after the current batch of tiles and leaves no output file.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        self._add_model()
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster", optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.INPUT_SCENE, "Input scene path, instead of a layer (a.tif,b.tif = one scene of two files)",
            optional=True))
        self._add_settings()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Translated raster"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)

        layer_file = None
        if self._given(parameters, self.INPUT):
            layer_file = layer_path(self.parameterAsRasterLayer(parameters, self.INPUT, context), "Input raster")
        model_path = self.parameterAsFile(parameters, self.MODEL, context)
        settings = self._settings(parameters, context)
        src = single_scene(layer_file, self.parameterAsString(parameters, self.INPUT_SCENE, context),
                           "Input raster", QgsProcessingException, project_folder(context),
                           assets=asset_keys(self.parameterAsString(parameters, self.ASSETS, context)),
                           model=model_path, direction=settings["direction"])
        if src.is_multi:
            feedback.pushInfo(f"Input scene of {len(src.parts)} files, stacked in order: {src.label}")
        settings["cog"] = bool(settings["cog"]) or src.item is not None  # COG for a STAC Item, as geogan predict
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        result = run_with_feedback(
            geogan.translate_raster, feedback, QgsProcessingException, model_path, src, dst, **settings,
            # QGIS asked before choosing an existing file (or made a fresh temporary one).
            overwrite=True,
        )
        feedback.pushInfo(f"Wrote {result.path}: {result.width}x{result.height}, {result.count} band(s) "
                          f"{result.dtype}, nodata {result.nodata}; {result.tiles} tile(s) on {result.device} "
                          f"({result.precision}) in {result.seconds:.1f} s")
        catalogue_single(result.path, src, model_path, feedback, QgsProcessingException)
        return {self.OUTPUT: dst}


class TranslateManyAlgorithm(TranslateParameters):
    """geogan.translate_rasters: many scenes into a folder, resumable, going on after a failure."""

    INPUT, SCENES, OVERWRITE, OUTPUT = "INPUT", "SCENES", "OVERWRITE", "OUTPUT"
    WRITTEN, SKIPPED, FAILED, OUTPUT_LAYERS = "WRITTEN", "SKIPPED", "FAILED", "OUTPUT_LAYERS"

    def name(self) -> str:
        return "translate_batch"

    def displayName(self) -> str:
        return "Translate many rasters"

    def shortHelpString(self) -> str:
        return (
            "Translates many scenes with one trained model into an output folder: one "
            "<i>&lt;scene name&gt;.tif</i> per scene, each on its input's grid, CRS and extent.<br>"
            "<b>Inputs</b>: raster layers, or scene paths, one per line (or separated by <i>;</i>): "
            "a file, files joined by commas (one scene of their bands, <i>S1_VV.tif,S1_VH.tif</i>), "
            "<i>@list.txt</i> (one scene per line), a glob (<i>/data/s1/*.tif</i>), a folder or a "
            "GDAL path, or a STAC Item, ItemCollection or Catalog JSON (each item one scene, named "
            "by its id). Use absolute paths.<br>"
            "<b>Resumable</b>: an output that is already complete is skipped unless <b>Replace "
            "complete outputs</b> is ticked, so a stopped or failed batch continues where it "
            "stopped. A scene that fails is reported in the log and the others go on; the "
            "algorithm fails at the end if any scene failed.<br>"
            + self.SHARED_HELP +
            "Cancel stops after the current batch of tiles; finished outputs are kept, the "
            "current one is not written.")

    def initAlgorithm(self, config: Optional[dict] = None) -> None:
        self._add_model()
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, "Input rasters", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(_multiline(
            self.SCENES, "Input scene paths, instead of layers (one per line; a.tif,b.tif = one scene; "
                         "@list.txt, glob, folder)"))
        self._add_settings()
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Replace complete outputs (otherwise they are skipped)", defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        for key, label in ((self.WRITTEN, "Scenes written"), (self.SKIPPED, "Scenes skipped (already complete)"),
                           (self.FAILED, "Scenes failed")):
            self.addOutput(QgsProcessingOutputNumber(key, label))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, "Translated rasters"))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        geogan = import_geogan(QgsProcessingException)

        files = [layer_path(lyr, "Input rasters") for lyr in self.parameterAsLayerList(parameters, self.INPUT, context)]
        scenes = domain_inputs(files, self.parameterAsString(parameters, self.SCENES, context), "Input rasters",
                               QgsProcessingException, project_folder(context))
        out_dir = self.parameterAsString(parameters, self.OUTPUT, context)
        result = run_with_feedback(
            geogan.translate_rasters, feedback, QgsProcessingException,
            self.parameterAsFile(parameters, self.MODEL, context), scenes, out_dir,
            overwrite=self.parameterAsBoolean(parameters, self.OVERWRITE, context),
            assets=asset_keys(self.parameterAsString(parameters, self.ASSETS, context)),
            **self._settings(parameters, context),
        )
        report_batch(result, feedback, QgsProcessingException)
        return {
            self.OUTPUT: str(result.out_dir),
            self.WRITTEN: len(result.written), self.SKIPPED: len(result.skipped), self.FAILED: len(result.failed),
            self.OUTPUT_LAYERS: [str(o.output) for o in result.outcomes],
        }

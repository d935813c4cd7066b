"""The geogan Processing provider: id ``geogan``, so algorithms are ``geogan:chips``,
``geogan:train``, ``geogan:translate`` and ``geogan:translate_batch``."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

from .algorithms import ExportChipsAlgorithm, TrainAlgorithm, TranslateManyAlgorithm, TranslateRasterAlgorithm
from .glue import plugin_metadata


class GeoganProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "geogan"

    def name(self) -> str:
        return "geogan"

    def longName(self) -> str:
        return "geogan — GAN translation of georeferenced rasters"

    def versionInfo(self) -> str:
        return plugin_metadata("version")  # written by tools/qgis/build_plugin.sh from geogan's

    def loadAlgorithms(self) -> None:
        for alg in (ExportChipsAlgorithm(), TrainAlgorithm(), TranslateRasterAlgorithm(), TranslateManyAlgorithm()):
            self.addAlgorithm(alg)

    # geogan writes GeoTIFFs only, so a temporary output is a .tif whatever the user's default.
    def supportedOutputRasterLayerExtensions(self) -> list:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"

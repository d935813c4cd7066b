"""Registers and unregisters the provider with the Processing registry."""
from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsApplication

from .provider import GeoganProvider


class GeoganPlugin:
    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: Optional[GeoganProvider] = None

    def initProcessing(self) -> None:  # noqa: N802
        """Called by QGIS (also by qgis_process, which has no GUI) to add the provider."""
        if self.provider is None:
            self.provider = GeoganProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

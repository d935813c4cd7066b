"""geogan QGIS plugin: adds the geogan Processing provider (Export chips, Train, Translate raster).

Nothing here imports qgis or geogan at module level, so the pure-Python helpers
(``geogan_provider.feedback``, ``geogan_provider.glue``) import anywhere, e.g. in geogan's
test suite without QGIS.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point (also called by qgis_process for Processing plugins)."""
    from .environment import add_venv
    from .plugin import GeoganPlugin

    try:
        add_venv()  # $GEOGAN_VENV, if set
    except FileNotFoundError as exc:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(str(exc), "geogan", Qgis.Warning)
    return GeoganPlugin(iface)

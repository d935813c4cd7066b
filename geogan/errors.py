"""One exception hierarchy for geogan.

Every error the library raises on bad input derives from :class:`GeoganError`, so callers
(the CLI, a QGIS script) can catch one root. Each concrete error is also the matching
builtin exception, so plain Python callers can catch ``FileNotFoundError`` or ``ValueError``
without knowing geogan (the pattern of rasterio's ``RasterioIOError(RasterioError, OSError)``).

Messages are one line and name the file and what is wrong with it.
"""
from __future__ import annotations


class GeoganError(Exception):
    """Root of every geogan error."""


class InputError(GeoganError, OSError):
    """An input file or directory is missing, unreadable or not what was expected."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path does not exist."""


class RasterError(InputError):
    """A raster cannot be opened, or lacks what the step needs (CRS, bands, grid)."""


class OutputError(GeoganError, OSError):
    """An output cannot be written (exists, unwritable directory, same as the input, disk full)."""


class BusyError(OutputError):
    """An output is being written by another live geogan process (its lock is held)."""


class ConfigError(GeoganError, ValueError):
    """A configuration key or option value is invalid."""


class BandMismatchError(GeoganError, ValueError):
    """Band counts or dtypes disagree between a raster, a chips export or a model."""


class ModelFileError(GeoganError, ValueError):
    """A model file is missing, corrupt, from a newer format or not a geogan model."""


class CheckpointError(GeoganError, ValueError):
    """A training checkpoint is missing or does not belong to this run's architecture."""


class DeviceError(GeoganError, RuntimeError):
    """The requested compute device is not available."""


class Cancelled(GeoganError):
    """The caller asked to stop (a progress object's ``cancelled()`` returned True)."""


def describe(path: object) -> str:
    """Render a path for an error message: quoted (so spaces stay visible) and printable.

    A file name that is not valid UTF-8 reaches Python as lone surrogates, which no terminal can
    print; such bytes are shown as ``\\xNN`` escapes instead of raising while reporting an error.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return f"'{text}'"

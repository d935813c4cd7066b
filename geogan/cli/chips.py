"""``geogan chips``: cut A/B rasters into training chips (thin wrapper over :func:`geogan.chips.export_chips`)."""
from __future__ import annotations

from typing import Optional

import click

from . import bounded_gdal_cache, cli
from .signals import stop_requested

_UNITS = click.Choice(["linear", "amplitude", "db"], case_sensitive=False)

_SCENES_HELP = ("a file; comma-joined files as the bands of one scene (VV.tif,VH.tif; files at 10/20 m are "
                "resampled onto the finest grid); @list.txt (one scene per line); a quoted glob; a folder; "
                "a GDAL path (/vsizip/..., /vsicurl/...); a STAC Item, ItemCollection or Catalog JSON (file or URL; "
                "each item one scene of the --assets-a/--assets-b files). Repeat for more scenes.")


@cli.command("chips")
@click.option("--a", "a", multiple=True, required=True, metavar="SCENE", help="Domain A input: " + _SCENES_HELP)
@click.option("--b", "b", multiple=True, required=True, metavar="SCENE",
              help="Domain B input, as --a (with --paired one scene per A scene, in order, or one for all).")
@click.option("--out", "out", required=True, metavar="DIR",
              help="Output directory (new, empty, or a previous chips export to replace).")
@click.option("--bands-a", default=None, metavar="LIST",
              help="1-based bands of A in order, e.g. 1,2 (default: all but alpha).")
@click.option("--bands-b", default=None, metavar="LIST", help="1-based bands of B in order, e.g. 3,2,1.")
@click.option("--assets-a", default=None, metavar="KEYS",
              help="With STAC inputs (Item, ItemCollection, Catalog JSON): the asset keys whose files are A's bands, "
                   "in order, e.g. VV,VH.")
@click.option("--assets-b", default=None, metavar="KEYS",
              help="With STAC inputs: the asset keys of B's bands, in order, e.g. B04,B03,B02.")
@click.option("--kind-a", default=None, metavar="KIND",
              help="sar, optical, multispectral, dsm or generic (default: inferred from names and values; "
                   "the summary says why).")
@click.option("--kind-b", default=None, metavar="KIND", help="Kind of domain B (default: inferred).")
@click.option("--units-a", default=None, type=_UNITS,
              help="SAR units of A: linear (power), amplitude or db (default: inferred from the values; "
                   "checked against them when given).")
@click.option("--units-b", default=None, type=_UNITS, help="SAR units of B (default: inferred).")
@click.option("--assume-crs-a", default=None, metavar="CRS",
              help="CRS of A files that have a geotransform but no CRS (EPSG:32633, WKT or a PROJ string); a file "
                   "with another CRS of its own is refused.")
@click.option("--assume-crs-b", default=None, metavar="CRS", help="CRS of B files without one (as --assume-crs-a).")
@click.option("--tile-size", default=256, show_default=True, type=int, help="Chip side in pixels (>= 16).")
@click.option("--stride", default=None, type=int,
              help="Step between chips in pixels (default: tile size; smaller overlaps).")
@click.option("--min-valid", default=0.95, show_default=True, type=float,
              help="Keep a chip only if at least this fraction of its pixels is valid in every band.")
@click.option("--aoi", default=None, metavar="FILE|WKT",
              help="Area of interest of both domains: GeoJSON or WKT file, or a WKT/GeoJSON string (EPSG:4326 "
                   "unless stated).")
@click.option("--aoi-a", default=None, metavar="FILE|WKT", help="Area of interest of domain A only (instead of --aoi).")
@click.option("--aoi-b", default=None, metavar="FILE|WKT", help="Area of interest of domain B only (instead of --aoi).")
@click.option("--aoi-crs", default=None, metavar="CRS",
              help="CRS of a WKT AOI, or of a GeoJSON without a 'crs' member (default EPSG:4326).")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of chips set aside for validation, by spatial blocks (whole rasters when they are "
                   "small); a warning says when it cannot be met.")
@click.option("--paired", is_flag=True, help="Resample B onto A's grid; chip k of A and B cover the same ground.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the validation block draw.")
def chips_command(a: tuple[str, ...], b: tuple[str, ...], out: str, bands_a: Optional[str], bands_b: Optional[str],
                  assets_a: Optional[str], assets_b: Optional[str],
                  kind_a: Optional[str], kind_b: Optional[str], units_a: Optional[str], units_b: Optional[str],
                  assume_crs_a: Optional[str], assume_crs_b: Optional[str],
                  tile_size: int, stride: Optional[int], min_valid: float, aoi: Optional[str], aoi_a: Optional[str],
                  aoi_b: Optional[str], aoi_crs: Optional[str], val_fraction: float, paired: bool, seed: int) -> None:
    """Cut A and B rasters into georeferenced train/val chips plus geogan_chips.json."""
    from ..chips import export_chips
    from ..progress import TqdmProgress

    bar = TqdmProgress(desc="chips", is_cancelled=stop_requested, disable=None, leave=False)
    try:
        with bounded_gdal_cache():
            summary = export_chips(
                list(a), list(b), out, bands_a=bands_a, bands_b=bands_b, kind_a=kind_a, kind_b=kind_b,
                units_a=units_a.lower() if units_a else None, units_b=units_b.lower() if units_b else None,
                assume_crs_a=assume_crs_a, assume_crs_b=assume_crs_b, assets_a=assets_a, assets_b=assets_b,
                tile_size=tile_size, stride=stride, min_valid=min_valid, aoi=aoi, aoi_a=aoi_a, aoi_b=aoi_b,
                aoi_crs=aoi_crs, val_fraction=val_fraction, paired=paired, seed=seed, progress=bar,
            )
    finally:
        bar.close()
    for line in summary.lines():
        click.echo(line)

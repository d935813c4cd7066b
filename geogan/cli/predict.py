"""``geogan predict`` and ``geogan evaluate``: thin wrappers over :func:`geogan.predict.translate_raster`
and :func:`geogan.evaluate.evaluate_rasters`."""
from __future__ import annotations

import json
from typing import Optional

import click

from . import cli

_BLENDS = ("hann", "linear", "none")
_COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
_CLI_GDAL_CACHEMAX_MB = 256


@cli.command("predict")
@click.argument("model", metavar="MODEL.geogan")
@click.argument("src", metavar="INPUT.tif")
@click.argument("dst", metavar="OUTPUT.tif")
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True,
              help="Which generator to run (Pix2Pix models have only a2b).")
@click.option("--bands", default=None, metavar="LIST",
              help="1-based input bands in order, e.g. 1,2 (default: the bands the model was trained on).")
@click.option("--tile-size", default=256, show_default=True, type=int,
              help="Tile side in pixels (a multiple of the generator's size multiple).")
@click.option("--overlap", default=64, show_default=True, type=int,
              help="Pixels shared by neighbouring tiles (0 <= overlap < tile size / 2).")
@click.option("--batch-size", default=8, show_default=True, type=int, help="Tiles per network call.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="Compute device: auto uses CUDA when available.")
@click.option("--blend", type=click.Choice(_BLENDS), default="hann", show_default=True,
              help="How overlaps are merged: tapered weights (hann, linear) or centre crop (none).")
@click.option("--cog", is_flag=True, help="Write a Cloud Optimized GeoTIFF with overviews.")
@click.option("--compress", type=click.Choice(_COMPRESSIONS), default="deflate", show_default=True,
              help="GeoTIFF compression.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--allow-ungeoreferenced", is_flag=True,
              help="Translate an input without CRS/geotransform (the output has none either).")
def predict_command(model: str, src: str, dst: str, direction: str, bands: Optional[str], tile_size: int,
                    overlap: int, batch_size: int, device: str, blend: str, cog: bool, compress: str,
                    overwrite: bool, allow_ungeoreferenced: bool) -> None:
    """Translate INPUT.tif with a trained model into OUTPUT.tif on the same grid."""
    from ..predict import translate_raster
    from ..progress import TqdmProgress

    bar = TqdmProgress(desc="predict", unit="tile", disable=None, leave=False)
    try:
        with _bounded_gdal_cache():
            result = translate_raster(model, src, dst, direction=direction, bands=bands, tile_size=tile_size,
                                      overlap=overlap, batch_size=batch_size, device=device, blend=blend,
                                      cog=cog, compress=compress, overwrite=overwrite,
                                      allow_ungeoreferenced=allow_ungeoreferenced, progress=bar)
    finally:
        bar.close()
    click.echo(f"wrote {result.path}: {result.width}x{result.height}, {result.count} band(s) {result.dtype}, "
               f"nodata {result.nodata}; {result.tiles} tile(s) on {result.device} in {result.seconds:.1f} s")


def _bounded_gdal_cache():
    """GDAL's block cache keeps what it read up to 5 % of RAM, so a scene's blocks would pile up
    in the process; the predictor needs about one strip of blocks. The CLI owns its process, so it
    caps the cache (unless GDAL_CACHEMAX is set); the library leaves a caller's GDAL alone."""
    import os

    import rasterio

    if os.environ.get("GDAL_CACHEMAX"):
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=_CLI_GDAL_CACHEMAX_MB)


@cli.command("evaluate")
@click.argument("prediction", metavar="PREDICTION.tif")
@click.argument("truth", metavar="TRUTH.tif")
@click.option("--bands", default=None, metavar="LIST",
              help="1-based bands to compare, e.g. 1,2,3 (default: all; both rasters on the same grid).")
@click.option("--classes", default=None, metavar="CLASSES.tif",
              help="Integer class raster on the same grid (e.g. land cover): adds per-class scores "
                   "and which class each class was painted as.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_command(prediction: str, truth: str, bands: Optional[str], classes: Optional[str],
                     as_json: bool) -> None:
    """MAE, RMSE, PSNR, SSIM (and SAM for 3+ bands) of PREDICTION.tif against TRUTH.tif."""
    from ..evaluate import evaluate_rasters

    report = evaluate_rasters(prediction, truth, bands=bands, classes=classes)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)

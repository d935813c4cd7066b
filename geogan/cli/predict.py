"""``geogan predict``, ``geogan evaluate`` and ``geogan inspect``: thin wrappers over
:func:`geogan.predict.translate_raster`, :func:`geogan.predict.translate_rasters`,
:func:`geogan.evaluate.evaluate_rasters` and :func:`geogan.provenance.inspect_file`."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import click

from . import bounded_gdal_cache, cli
from .signals import stop_requested

_BLENDS = ("hann", "linear", "none")
_COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


@cli.command("predict")
@click.argument("model", metavar="MODEL.geogan")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.argument("output", metavar="OUTPUT")
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True,
              help="Which generator to run (Pix2Pix models have only a2b).")
@click.option("--bands", default=None, metavar="LIST",
              help="1-based input bands in order, e.g. 1,2 (default: the bands the model was trained on).")
@click.option("--units", type=click.Choice(["linear", "amplitude", "db"]), default=None,
              help="SAR input units (default: inferred from the values); converted when the model was trained "
                   "on others.")
@click.option("--tile-size", default=256, show_default=True, type=int,
              help="Tile side in pixels (a multiple of the generator's size multiple).")
@click.option("--overlap", default=64, show_default=True, type=int,
              help="Pixels shared by neighbouring tiles (0 <= overlap < tile size / 2).")
@click.option("--batch-size", default=8, show_default=True, type=int, help="Tiles per network call.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
              help="Compute device: auto uses CUDA when available (with --engine ray: each worker's own GPU).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Network precision: auto is bf16 on GPUs that run it natively, fp16 on older GPUs, fp32 on "
                   "the CPU.")
@click.option("--blend", type=click.Choice(_BLENDS), default="hann", show_default=True,
              help="How overlaps are merged: tapered weights (hann, linear) or centre crop (none).")
@click.option("--cog/--no-cog", default=None,
              help="Write Cloud Optimized GeoTIFFs with overviews (default: yes for STAC inputs, no otherwise).")
@click.option("--assets", default=None, metavar="KEYS",
              help="With STAC inputs (Item, ItemCollection, Catalog JSON): the asset keys whose files are the "
                   "input bands, in order, e.g. VV,VH (default: the asset keys the model was trained with).")
@click.option("--compress", type=click.Choice(_COMPRESSIONS), default="deflate", show_default=True,
              help="GeoTIFF compression.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing OUTPUT (in a batch: every existing output, also complete ones and "
                   "another model's).")
@click.option("--allow-ungeoreferenced", is_flag=True,
              help="Translate an input without CRS/geotransform (the output has none either).")
@click.option("--assume-crs", default=None, metavar="CRS",
              help="CRS of inputs that have a geotransform but no CRS (EPSG:32633, WKT or a PROJ string); the "
                   "outputs carry it. An input with another CRS of its own is refused.")
@click.option("--tta", is_flag=True,
              help="Test-time augmentation: average every orientation the model was trained under "
                   "(8x the network's work; less copied speckle, the same edges).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="How a batch runs: in this process, or on Ray (this machine's GPUs and cores, or a cluster; "
                   "pip install 'geogan[ray]'): scenes scheduled as workers free up, retried when a worker dies.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="With --engine ray: the cluster to run on (ray://HOST:10001, or auto for the one this "
                   "machine belongs to); default: a local Ray runtime started for the batch.")
@click.option("--ray-workers", default=None, type=click.IntRange(min=1), metavar="N",
              help="With --engine ray: how many workers (default: one per GPU; without GPUs, one per 4 cores).")
def predict_command(model: str, inputs: tuple[str, ...], output: str, direction: str, bands: Optional[str],
                    units: Optional[str], tile_size: int, overlap: int, batch_size: int, device: str,
                    precision: str, blend: str, cog: Optional[bool], assets: Optional[str], compress: str,
                    overwrite: bool, allow_ungeoreferenced: bool, assume_crs: Optional[str], tta: bool, engine: str,
                    ray_address: Optional[str], ray_workers: Optional[int]) -> None:
    """Translate INPUT with a trained model into OUTPUT on the same grid.

    \b
    One scene:    geogan predict MODEL IN.tif OUT.tif
    Many scenes:  geogan predict MODEL @scenes.txt OUTDIR/      (also a glob, a folder or several INPUTs)
    Many GPUs:    geogan predict MODEL @scenes.txt OUTDIR/ --engine ray [--ray-address ADDRESS]

    INPUT is a raster, a GDAL path (/vsizip/...), the comma-joined files of one scene (VV.tif,VH.tif;
    Sentinel-2 bands at 10/20 m are resampled onto the finest grid), @list.txt (one scene per line), a
    glob, a folder, or a STAC Item, ItemCollection or Catalog JSON (each item one scene of its --assets
    files, named by its id; COG outputs, each with a STAC Item NAME.json beside it). Many scenes give
    one OUTDIR/<scene name>.tif each, its STAC Item OUTDIR/<scene name>.json and OUTDIR/collection.json; outputs already complete are
    skipped when the same model with the same options made them (so a stopped batch resumes); an
    existing output another model or other options made is refused (--overwrite replaces it); a
    scene another live run is writing is left to it; a failed scene does not stop the others, and
    the exit status is 1 if any failed or was refused.
    """
    options = dict(direction=direction, bands=bands, units=units, tile_size=tile_size, overlap=overlap,
                   batch_size=batch_size, blend=blend, cog=cog, compress=compress,
                   allow_ungeoreferenced=allow_ungeoreferenced, assume_crs=assume_crs, tta=tta)
    _refuse_torchrun()
    with bounded_gdal_cache():
        single = _single_scene(model, inputs, output, direction, assets)
        if single is None:
            engine_options = dict(engine=engine, ray_address=ray_address, ray_workers=ray_workers)
            _predict_batch(model, inputs, output, dict(options, assets=assets), device, precision, overwrite,
                           engine_options)
        else:
            _predict_one(model, single, output, options, device, precision, overwrite)


def _refuse_torchrun() -> None:
    """Prediction is spread by Ray, not torchrun: N torchrun processes would each translate every scene."""
    from ..errors import ConfigError
    from ..torchrun_env import job_place

    if job_place().distributed:
        raise ConfigError("geogan predict does not shard scenes under torchrun; run it once with --engine ray "
                          "to use every GPU of this machine or of a Ray cluster")


def _single_scene(model: str, inputs: tuple[str, ...], output: str, direction: str, assets: Optional[str]) -> Any:
    """The scene of the single-scene form (one scene into a file name), or None for a batch (an output
    folder, or several scenes)."""
    from ..errors import ConfigError
    from ..stac import expand_for_model

    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        return None
    scenes = expand_for_model(list(inputs), model, direction, assets)
    if len(scenes) > 1:
        raise ConfigError(f"{len(scenes)} scenes need an output folder: end {output!r} with / "
                          "(one <scene name>.tif each)")
    return scenes[0]


def _predict_one(model: str, src: Any, dst: str, options: dict, device: str, precision: str,
                 overwrite: bool) -> None:
    from ..predict import translate_raster
    from ..progress import TqdmProgress
    from ..stac import catalogue_output, default_cog

    bar = TqdmProgress(desc="predict", unit="tile", is_cancelled=stop_requested, disable=None, leave=False)
    options = dict(options, cog=default_cog(options.get("cog"), [src]))
    try:
        result = translate_raster(model, src, dst, device=device, precision=precision, overwrite=overwrite,
                                  progress=bar, **options)
    finally:
        bar.close()
    click.echo(f"wrote {result.path}: {result.width}x{result.height}, {result.count} band(s) {result.dtype}, "
               f"nodata {result.nodata}; {result.tiles} tile(s) on {result.device} ({result.precision}) in "
               f"{result.seconds:.1f} s")
    catalogued = catalogue_output(result.path, src, model)  # from a STAC Item: its Item, the folder's collection
    if catalogued is not None:
        item, collection = catalogued
        click.echo(f"wrote {item}: its STAC item" + (f", listed in {collection}" if collection else ""))


def _predict_batch(model: str, inputs: tuple[str, ...], out_dir: str, options: dict, device: str, precision: str,
                   overwrite: bool, engine_options: dict) -> None:
    from ..predict import translate_rasters
    from ..progress import TqdmProgress

    bar = TqdmProgress(desc="predict", unit="scene", is_cancelled=stop_requested, disable=None, leave=False)
    try:
        result = translate_rasters(model, list(inputs), out_dir, overwrite=overwrite, progress=bar, device=device,
                                   precision=precision, **engine_options, **options)
    finally:
        bar.close()
    _report(result)


def _report(result: Any) -> None:
    """The summary and the scenes left to another run on stdout; each failure on one line on stderr;
    exit 1 if anything failed (another model's output in the folder counts as a failure)."""
    click.echo(f"geogan predict: {result.summary()}")
    for o in result.busy:
        click.echo(f"  {o.note}")
    for o in result.failed:
        click.echo(f"geogan: error: {o.describe_failure()}", err=True)
    if not result.ok:
        raise click.exceptions.Exit(1)



@cli.command("evaluate")
@click.argument("prediction", metavar="PREDICTION")
@click.argument("truth", metavar="TRUTH")
@click.option("--bands", default=None, metavar="LIST",
              help="1-based bands to compare, e.g. 1,2,3 (default: all; both rasters on the same grid).")
@click.option("--assets", default=None, metavar="KEYS",
              help="When TRUTH is a STAC Item JSON: the asset keys whose files are its bands, in order, e.g. "
                   "B04,B03,B02.")
@click.option("--prediction-assets", default=None, metavar="KEYS",
              help="When PREDICTION is a STAC Item JSON: its asset keys (default: data, the GeoTIFF of the "
                   "Item predict writes beside each output).")
@click.option("--classes", default=None, metavar="CLASSES.tif",
              help="Integer class raster on the same grid (e.g. land cover): adds per-class scores "
                   "and which class each class was painted as.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_command(prediction: str, truth: str, bands: Optional[str], assets: Optional[str],
                     prediction_assets: Optional[str], classes: Optional[str], as_json: bool) -> None:
    """MAE, RMSE, PSNR, SSIM (and SAM for 3+ bands) of PREDICTION against TRUTH.

    Each is a raster, comma-joined files of one scene (B04.tif,B03.tif,B02.tif), or a STAC Item
    JSON (file or URL): TRUTH's --assets files, stacked in order; PREDICTION's "data" asset (the
    NAME.json predict writes beside NAME.tif)."""
    from ..evaluate import evaluate_rasters

    report = evaluate_rasters(prediction, truth, bands=bands, classes=classes, assets=assets,
                              prediction_assets=prediction_assets)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


@cli.command("inspect")
@click.argument("path", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_command(path: str, as_json: bool) -> None:
    """What made a prediction, or what a model file holds.

    \b
    A GeoTIFF: its grid and the provenance geogan predict wrote into it (model hash and file,
    direction, input bands and units, tiles, blend, TTA, precision, geogan version).
    A model file: its SHA-256, the digest predictions record, the architecture and each domain.
    """
    from ..provenance import inspect_file

    info = inspect_file(path)
    if as_json:
        click.echo(json.dumps({k: v for k, v in info.items() if k != "lines"}, indent=2, default=str))
    else:
        for line in info["lines"]:
            click.echo(line)

"""translate_raster: one scene in, one verified GeoTIFF out, on exactly the input's grid.

:class:`ScenePipeline` is the algorithm, read top to bottom: strips in, tiles through the network,
blended, rows out; the threaded reader and writer behind it are in :mod:`.stages` and the
arithmetic in :mod:`.grid`.

:class:`Predictor` holds what does not change from scene to scene (the model on its device, the
precision, the checked options) so a batch loads the model once; :func:`translate_raster` is
one Predictor call. Each output is written to a temporary file beside the destination, under a
lock on the destination, verified block by block (GDAL does not report every failed write,
e.g. on a full disk) and only then renamed into place. The checks of the input (bands, dtypes,
tiling, SAR units, "looks unlike the training data") close the module.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .. import provenance, raster
from ..bands import (SAR_UNITS, DomainSpec, UnitsGuess, check_stated_units, doubt_stated_units, infer_units,
                     normalize, units_name)
from ..errors import (BandMismatchError, Cancelled, ConfigError, GeoganError, ModelFileError, OutputError, RasterError,
                      describe)
from ..notices import with_warnings
from ..outputs import OutputLock, temp_path
from ..progress import Progress, ProgressLike, as_progress
from ..scenes import Scene, SceneLike, as_scene
from ..tiling import BLENDS
from . import tta
from .grid import DEFAULT_PANEL_WIDTH, DevicePixels, Panel, RowBlender, TileGrid, plan_panels
from .stages import (END, UNITS_PENDING, ArrayRecycler, BlockWriter, BufferPool, Channel, FinishedRows, PanelDone,
                     PipelineState, Prefetch, Strip, StripReader, TileBatch, chunk_rows, io_errors, network_threads,
                     ordered_map, read_workers, run_in_thread, tile_batches, torch_threads)

log = logging.getLogger(__name__)

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


@dataclass(frozen=True)
class PredictionResult(os.PathLike):
    """What :func:`translate_raster` wrote. Usable as a path (``os.fspath(result)``)."""

    path: Path
    direction: str
    width: int
    height: int
    count: int
    dtype: str
    nodata: Optional[float]
    tiles: int
    tiles_translated: int
    seconds: float
    device: str
    #: The input as given (comma-joined files for a multi-file scene).
    scene: str = ""
    #: "fp32", "bf16" or "fp16": the precision the network ran in.
    precision: str = "fp32"
    #: The input's SAR units (converted to the model's when they differ); None for other kinds.
    units: Optional[str] = None
    #: Column panels the scene was processed in (memory is bounded by one panel).
    panels: int = 1
    #: The ``GEOGAN_*`` tags written into the output: model, direction, bands, options (:mod:`geogan.provenance`).
    provenance: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The warnings of this translation, as the CLI prints them (see :mod:`geogan.notices`).
    warnings: tuple[str, ...] = ()

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class PredictOptions:
    """Checked prediction options (see :func:`translate_raster`)."""

    direction: str = "a2b"
    bands: Union[None, str, Sequence[int]] = None
    tile_size: int = 256
    overlap: int = 64
    batch_size: int = 8
    blend: str = "hann"
    cog: bool = False
    compress: str = "deflate"
    units: Optional[str] = None
    allow_ungeoreferenced: bool = False
    panel_width: int = DEFAULT_PANEL_WIDTH
    channels_last: bool = False
    #: Test-time augmentation: average the orientations the model was trained under (:mod:`.tta`).
    tta: bool = False
    #: The CRS of inputs that have a geotransform but no CRS (``--assume-crs``), as EPSG:n or WKT.
    assume_crs: Optional[str] = None

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        fix("assume_crs", raster.check_crs_option(self.assume_crs))
        fix("blend", str(self.blend).lower())
        fix("compress", str(self.compress or "none").lower())
        fix("units", check_units_option(self.units))
        for name in ("tile_size", "overlap", "batch_size", "panel_width"):
            fix(name, int(getattr(self, name)))
        if self.blend not in BLENDS:
            raise ConfigError(f"unknown blend {self.blend!r} (expected one of {', '.join(BLENDS)})")
        if self.compress not in COMPRESSIONS:
            raise ConfigError(f"unknown compression {self.compress!r} (expected one of {', '.join(COMPRESSIONS)})")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}")
        if self.panel_width < 1:
            raise ConfigError(f"panel width must be at least 1, not {self.panel_width}")


class Predictor:
    """A model ready on its device, with checked options: translates scenes one after another."""

    def __init__(self, model_or_path: Any, options: PredictOptions, *, device: Any = "auto",
                 precision: Any = "auto", local_rank: Optional[int] = None) -> None:
        from ..devices import choose_precision, resolve_device
        from ..modelfile import TranslationModel, load_model

        self.options = options
        self.device = resolve_device(device, local_rank=local_rank)
        self.precision = choose_precision(precision, self.device, where="--precision")
        if isinstance(model_or_path, TranslationModel):
            self.model, self.model_name = model_or_path, "model"
        else:
            self.model, self.model_name = load_model(model_or_path, "cpu"), describe(model_or_path)
        d = options.direction
        if d not in self.model.generators:
            have = ", ".join(self.model.directions) or "none"
            raise ModelFileError(f"{self.model_name}: this model cannot translate {d!r} (it has: {have})")
        self.source, self.target = self.model.source(d), self.model.target(d)
        check_target_dtype(self.target, self.model_name, d)
        check_tiling(options.tile_size, options.overlap, self.model)
        self.nodata = output_nodata(self.target)
        self.out_spec = dataclasses.replace(self.target, nodata=self.nodata)
        self.model_tags = provenance.model_identity(self.model)  # once: a hash of every weight
        self.model.to(self.device)  # a caller's model moves to the chosen device (and stays there)
        net = self.model.generators[d]
        if options.channels_last:
            import torch

            net.to(memory_format=torch.channels_last)
        group = tta.orientations(self.model.training, self.model_name) if options.tta else ((0, False),)
        self.translator = Translator(net, self.device, self.precision, options.channels_last, self.target.count,
                                     options.tile_size, self.model_name, d, group)

    @property
    def precision_name(self) -> str:
        return self.precision or "fp32"

    def expected_output(self, scene: SceneLike) -> tuple[tuple[int, int, int, str], dict[str, str]]:
        """(width, height, bands, dtype) of the output for ``scene`` and the provenance tags this
        Predictor would write there (opens its header only; the units are the stated option)."""
        sc = as_scene(scene)
        with raster.open_raster(sc, require_georeference=False) as ds:
            band_list = choose_bands(self.options.bands, ds.count, self.source, sc.label)
            shape = (ds.width, ds.height, self.out_spec.count, self.out_spec.dtype)
        return shape, self.output_tags(band_list, None, sc.label)

    def output_tags(self, band_list: Sequence[int], units: Optional[str], scene: str = "") -> dict[str, str]:
        """The ``GEOGAN_*`` tags of an output of this Predictor (:mod:`geogan.provenance`)."""
        from .. import __version__

        o = self.options
        return provenance.prediction_provenance(
            self.model_tags, direction=o.direction, source_bands=band_list, units_option=o.units, units=units,
            source_kind=self.source.kind, target_kind=self.target.kind, tile_size=o.tile_size, overlap=o.overlap,
            blend=o.blend, tta_orientations=len(self.translator.orientations), precision=self.precision_name,
            version=__version__, scene=scene)

    @with_warnings
    def translate(self, src: SceneLike, dst: Union[str, os.PathLike], *, overwrite: bool = False,
                  progress: ProgressLike = None) -> PredictionResult:
        """Translate one scene into ``dst`` (see :func:`translate_raster`)."""
        started = time.perf_counter()
        scene, dst_p, opts = raster.assuming_crs(src, self.options.assume_crs), Path(dst), self.options
        prog = as_progress(progress)
        with raster.open_raster(scene, require_georeference=False) as ds:
            georef = self._check_input(ds, scene)
            band_list = choose_bands(opts.bands, ds.count, self.source, scene.label)
            raster.check_output_path(dst_p, overwrite=overwrite, inputs=[scene])
            plan = self._plan(ds, scene, band_list)  # its reader starts decoding while the sample is read
            try:
                data, masks = read_sample(ds, band_list, scene.label)
                units = input_units(self.source, data, masks, opts.units, scene.label)
                warn_if_unlike_training(ds, data, masks, band_list, self.source, units, scene.label, georef)
                del data, masks
                plan.reader.set_units(units)
                tags = self.output_tags(band_list, units, scene.label)
                with OutputLock(dst_p, "prediction", label=provenance.fingerprint(tags)):
                    # another run may have finished meanwhile
                    raster.check_output_path(dst_p, overwrite=overwrite, inputs=[scene])
                    stats = self._write_scene(ds, scene, band_list, units, georef, dst_p, prog, tags, plan)
            finally:
                plan.reader.shutdown()
            width, height = ds.width, ds.height
        return PredictionResult(path=dst_p, direction=opts.direction, width=width, height=height,
                                count=self.out_spec.count, dtype=self.out_spec.dtype, nodata=self.nodata,
                                tiles=stats[0], tiles_translated=stats[1], seconds=time.perf_counter() - started,
                                device=str(self.device), scene=scene.label, precision=self.precision_name,
                                units=units, panels=stats[2], provenance=tags)

    def _check_input(self, ds: Any, scene: Scene) -> bool:
        check_input_dtype(ds, scene.label)
        georef = raster.is_georeferenced(ds)
        if not georef:
            if not self.options.allow_ungeoreferenced:
                raise RasterError(f"{describe(scene.label)}: {raster.georeference_problem(ds, allow_hint=True)}")
            log.warning("%s has no CRS or geotransform; the output will not be georeferenced either",
                        describe(scene.label))
        return georef

    def _profile(self, ds: Any, georef: bool) -> dict:
        o = self.options
        profile = raster.gtiff_profile(width=ds.width, height=ds.height, count=self.out_spec.count,
                                       dtype=self.out_spec.dtype, crs=ds.crs if georef else None,
                                       transform=ds.transform, nodata=self.nodata, compress=o.compress)
        if o.compress != "none":
            profile["NUM_THREADS"] = "ALL_CPUS"  # GDAL compresses finished blocks in parallel
        return profile

    def _plan(self, ds: Any, scene: Scene, band_list: list[int]) -> "ScenePlan":
        """The tile grid, the column panels and a reader that has begun decoding the first panel's
        first chunks (those decoded before the units are known are masked and normalised when taken)."""
        o = self.options
        grid = TileGrid.for_scene(ds.height, ds.width, o.tile_size, o.overlap, o.blend)
        profile = self._profile(ds, georef=False)  # panel edges on the output's blocks
        panels = plan_panels(grid, o.panel_width, profile["blockxsize"] if profile.get("tiled") else ds.width)
        workers = read_workers(self.device.type == "cuda")
        reader = StripReader(scene, band_list, self.source, UNITS_PENDING, grid, workers,
                             chunk_rows=chunk_rows(ds.block_shapes[0][0]))
        reader.begin(panels[0])
        return ScenePlan(grid, panels, reader)

    def _write_scene(self, ds: Any, scene: Scene, band_list: list[int], units: Optional[str], georef: bool,
                     dst: Path, prog: Any, tags: dict[str, str], plan: "ScenePlan") -> tuple[int, int, int]:
        """Translate into a verified temporary file and rename it onto ``dst``; returns (tiles, translated, panels)."""
        o = self.options
        profile = self._profile(ds, georef)
        grid, panels = plan.grid, plan.panels
        job = SceneJob(scene, band_list, self.source, units, self.out_spec, grid, panels, o.batch_size, prog,
                       self.model_name, o.direction, plan.reader)

        def verify(path: Path) -> None:
            raster.verify_raster(path, width=ds.width, height=ds.height, count=self.out_spec.count,
                                 dtype=self.out_spec.dtype, label=dst)
            check_tags_written(path, tags, dst)

        with raster.atomic_output(dst, verify=verify, what="prediction") as tmp:
            if o.cog:
                plain = temp_path(dst, ".tif", kind="plain")
                try:
                    stats = self._run(job, profile, plain, dst, tags)
                    verify(plain)
                    write_cog(plain, tmp, o.compress, dst)
                finally:
                    for leftover in (plain, Path(str(plain) + ".aux.xml")):
                        with contextlib.suppress(OSError):
                            leftover.unlink()
            else:
                stats = self._run(job, profile, tmp, dst, tags)
        return stats[0], stats[1], len(panels)

    def _run(self, job: SceneJob, profile: dict, path: Path, dst: Path, tags: dict[str, str]) -> tuple[int, int]:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path, "w", **profile) as out, self._cudnn_autotune():
                    for i, desc in enumerate(self.out_spec.band_descriptions[:self.out_spec.count], start=1):
                        if desc:
                            out.set_band_description(i, str(desc))
                    out.update_tags(**tags)  # before any pixel: a file renamed into place always has them
                    stats = ScenePipeline(job, self.translator, self.device, out, dst).run()
        except io_errors() as exc:
            if isinstance(exc, GeoganError):
                raise
            raise raster.write_failed(dst, exc) from None
        if stats[1] == 0:
            raise RasterError(f"{describe(job.scene.label)}: no valid pixel anywhere in the input (all nodata, "
                              "masked or non-finite), so the output would be empty; nothing was written")
        return stats

    @contextlib.contextmanager
    def _cudnn_autotune(self):
        """Let cuDNN pick its fastest kernels for the fixed tile size (restored afterwards)."""
        if self.device.type != "cuda":
            yield
            return
        import torch

        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = before


#: Batches waiting between the reader and the network; rows waiting for the writer.
QUEUE_DEPTH = 3


@dataclass
class SceneJob:
    """What the pipeline needs to translate one scene (the output dataset is opened by the caller)."""

    scene: Scene
    bands: list[int]
    source: DomainSpec
    units: Optional[str]
    target: DomainSpec          # with the output's nodata
    grid: TileGrid
    panels: list[Panel]
    batch_size: int
    progress: Progress
    model_name: str
    direction: str
    reader: StripReader         # begun before the units were known (see Predictor._plan)


@dataclass
class ScenePlan:
    """A scene's tile grid and panels, and the reader already decoding its first rows."""

    grid: TileGrid
    panels: list[Panel]
    reader: StripReader


class Translator:
    """The network stage: a batch of normalised tiles → float32 outputs on the device."""

    def __init__(self, net: Any, device: Any, precision: Optional[str], channels_last: bool, out_count: int,
                 tile: int, model_name: str, direction: str, orientations: tuple = ((0, False),)) -> None:
        from ..devices import torch_dtype
        from ..models import cpuconv

        self.net, self.device = net, device
        #: test-time augmentation (:mod:`geogan.predict.tta`); the identity alone = none
        self.orientations = tuple(orientations)
        self.autocast_dtype = torch_dtype(precision)
        self.channels_last = channels_last
        self.expected = (out_count, tile, tile)
        self.model_name, self.direction = model_name, direction
        #: on the CPU, tiles through the network one at a time where its convolutions are faster so
        #: (NNPACK's kernels for single images, :mod:`geogan.models.cpuconv`); batches still cut,
        #: blend and write as many tiles at a time
        self.one_by_one = (device.type == "cpu" and self.autocast_dtype is None  # (autocast: no NNPACK)
                           and cpuconv.runs_single_images_faster(net))

    def upload(self, tiles: Any) -> Any:
        """Queue the copy of a batch to the device (asynchronous from page-locked memory)."""
        return tiles.to(self.device, non_blocking=True)

    def __call__(self, x: Any) -> Any:
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            if self.one_by_one and x.shape[0] > 1:
                y = torch.cat([self._translate(x[i:i + 1]) for i in range(x.shape[0])])
            else:
                y = self._translate(x)
        if tuple(y.shape[1:]) != self.expected or y.shape[0] != x.shape[0]:
            raise ModelFileError(f"{self.model_name}: generator {self.direction} returned shape {tuple(y.shape)}, "
                                 f"expected {(x.shape[0],) + self.expected}")
        return y.float()

    def _translate(self, x: Any) -> Any:
        return self.net(x) if self.orientations == ((0, False),) else tta.average_over(self.net, x, self.orientations)


class ScenePipeline:
    """The linear driver: runs a :class:`SceneJob` into an open output dataset; returns (tiles, translated).

    On the CPU batches go through the network on one thread per torch thread (one core each; the
    tiles' blending weights are applied there), the driver adds them up (numpy) and the writer
    denormalises. On CUDA every step of the driver is queued on the GPU without waiting: the
    batch is copied from page-locked memory, translated, blended, turned into final pixels
    (:class:`~geogan.predict.grid.DevicePixels`) and copied back asynchronously; the writer waits
    for that copy's event. ``device_pixels`` and ``full_batches`` (short batches run at full size,
    one input shape for cuDNN) default to True on CUDA; a test sets them on the CPU to run the GPU
    path's logic where there is no GPU.
    """

    def __init__(self, job: SceneJob, translator: Translator, device: Any, dataset: Any, dst_label: Any, *,
                 device_pixels: Optional[bool] = None, full_batches: Optional[bool] = None) -> None:
        self.job, self.translator, self.device = job, translator, device
        self.dataset, self.dst_label = dataset, dst_label
        self.cuda = device.type == "cuda"
        self.full_batches = self.cuda if full_batches is None else full_batches
        on_device = self.cuda if device_pixels is None else device_pixels
        self.pixels = DevicePixels(job.target, device) if on_device else None
        self.blend_device = device if on_device else None  # None: numpy on the host
        self.blenders: dict[int, RowBlender] = {}
        self.blocks = ArrayRecycler()  # numpy row blocks, reused once written
        self.total = job.grid.n_rows * sum(p.j1 - p.j0 for p in job.panels)
        self.translated = self.skipped = 0

    def run(self) -> tuple[int, int]:
        """Strips in, tiles through the network, blended, rows out."""
        job, g, state = self.job, self.job.grid, PipelineState()
        workers, each = network_threads(self.cuda)
        pool = BufferPool((job.batch_size, job.source.count, g.tile, g.tile), QUEUE_DEPTH + workers + 2,
                          pinned=self.cuda)
        reader = job.reader
        tiled = self.dataset.profile.get("tiled")
        writer = BlockWriter(self.dataset, job.panels, job.target, self.dataset.block_shapes[0][0] if tiled else 1,
                             to_pixels=self.pixels.to_numpy if self.pixels is not None else None, max_rows=g.stride)
        to_writer = Channel(state, QUEUE_DEPTH)
        stages = [run_in_thread(writer.run, state, "geogan-write", to_writer,
                                wrap_error=lambda e: self._writing_error(e))]
        job.progress.update(0, self.total, "tiles")
        try:
            strips = reader.strips(job.panels, state)                                # strips in,
            batches = Prefetch(tile_batches(strips, g, pool, job.batch_size, state),  # cut into batches
                               state, QUEUE_DEPTH, "geogan-read", wrap_error=reader.reading_error)
            stages.append(batches.thread)
            # tiles through the network (on the CPU several batches at once, one core each)
            for batch, (y, event) in ordered_map(self._network, batches, workers, partial(torch_threads, each)):
                for i, (p, r, j) in enumerate(batch.where):
                    self._blender(p).add(y[i], r, j)  # blended
                if batch.n:
                    pool.release(batch.buffer, event)  # after blending: on the CPU ``y`` may be a view of it
                    self.translated += batch.n
                for strip in batch.finished:
                    for rows in self._finished_rows(strip):             # rows out
                        to_writer.put(rows)
                self._report(batch)
            to_writer.put(END)
            stages[0].join()
            state.raise_failure()
        finally:
            state.stop()
            for t in stages:
                t.join()
        return self.total, self.translated

    def _network(self, batch: TileBatch) -> tuple[Any, Any]:
        """A batch's tiles through the network (any thread): the outputs, and on CUDA the event after
        which its buffer may be refilled. Numpy outputs where blending runs on the host."""
        import torch

        if not batch.n:
            return None, None
        with torch.inference_mode():
            x = self.translator.upload(batch.buffer if self.full_batches else batch.buffer[:batch.n])
            event = None
            if self.cuda:
                event = torch.cuda.Event()
                event.record()  # the buffer may be refilled once its copy to the device is done
            y = self.translator(x)
        return (y.numpy() if self.blend_device is None else y), event

    def _finished_rows(self, strip: Strip) -> list[Any]:
        """The row blocks tile row ``strip.row`` finished (two after the last row), then the panel's end."""
        g, p = self.job.grid, strip.panel.index
        last = strip.row == g.n_rows - 1
        out: list[Any] = [self._rows(strip, k) for k in ((strip.row, g.n_rows) if last else (strip.row,))]
        if last:
            out.append(PanelDone(p))
            self.blenders.pop(p, None)
        self.skipped += strip.has_valid.count(False)  # tiles without a valid pixel are not translated
        return [o for o in out if o is not None]

    def _rows(self, strip: Strip, k: int) -> Optional[Any]:
        """Row block ``k`` of the strip's panel with the input's validity of its rows (None: empty block)."""
        import torch

        y0, y1, data = self._blender(strip.panel.index).finish(k)
        if y1 <= y0:
            return None
        valid = None if strip.valid is None else strip.valid[y0 - strip.y0:y1 - strip.y0]
        if data is None or valid is None or not valid.any():
            return FinishedRows(strip.panel.index, y0, y1 - y0, None, None)  # no valid pixel: all nodata
        ready = None
        if self.pixels is not None:
            data = self.pixels(data)
            if self.cuda:  # back to the host asynchronously: the writer waits for the event
                pixels, data = data, torch.empty(data.shape, dtype=data.dtype, pin_memory=True)
                data.copy_(pixels, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record()
        return FinishedRows(strip.panel.index, y0, y1 - y0, data, valid, ready)

    def _report(self, batch: TileBatch) -> None:
        self.job.progress.update(self.translated + self.skipped, self.total, "tiles")
        if self.job.progress.cancelled():
            raise Cancelled(f"translation of {describe(self.job.scene.label)} cancelled")

    def _blender(self, p: int) -> RowBlender:
        if p not in self.blenders:
            self.blenders[p] = RowBlender(self.job.grid, self.job.panels[p], self.job.target.count,
                                          self.blend_device, empty=self.blocks.empty)
        return self.blenders[p]

    def _writing_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, io_errors()) and not isinstance(exc, GeoganError):
            return raster.write_failed(self.dst_label, exc)
        return exc


def check_tags_written(path: Path, tags: dict[str, str], label: Path) -> None:
    """Refuse a written file whose provenance tags did not read back (checked before the rename)."""
    found = provenance.read_provenance(path)
    lost = sorted(k for k, v in tags.items() if found.get(k) != v)
    if lost:
        raise OutputError(f"{describe(label)}: the written file lacks its provenance tags ({', '.join(lost)}); "
                          "nothing was written")


def write_cog(plain: Path, dst: Path, compress: str, label: Path) -> None:
    """Copy a finished GeoTIFF into a Cloud Optimized GeoTIFF (GDAL's COG driver, with overviews)."""
    import rasterio.shutil

    options = {"BIGTIFF": "IF_SAFER", "OVERVIEWS": "AUTO", "RESAMPLING": "AVERAGE", "BLOCKSIZE": 512}
    if compress != "none":
        options["COMPRESS"] = compress.upper()
        options["PREDICTOR"] = "YES"
    else:
        options["COMPRESS"] = "NONE"
    try:
        rasterio.shutil.copy(plain, dst, driver="COG", **options)
    except io_errors() as exc:
        raise OutputError(f"{describe(label)}: writing the Cloud Optimized GeoTIFF failed ({raster.first_line(exc)}); "
                          f"{raster.disk_hint(dst)}") from None


@with_warnings
def translate_raster(model_or_path: Any, src: SceneLike, dst: Union[str, os.PathLike], *,
                     direction: str = "a2b", bands: Union[None, str, Sequence[int]] = None,
                     tile_size: int = 256, overlap: int = 64, batch_size: int = 8, device: Any = "auto",
                     precision: Any = "auto", units: Optional[str] = None, blend: str = "hann",
                     cog: bool = False, compress: str = "deflate", overwrite: bool = False,
                     allow_ungeoreferenced: bool = False, progress: ProgressLike = None,
                     panel_width: int = DEFAULT_PANEL_WIDTH, channels_last: bool = False,
                     tta: bool = False, assume_crs: Optional[str] = None) -> PredictionResult:
    """Translate the scene ``src`` with a trained model and write ``dst`` on the same grid.

    ``model_or_path`` is a :class:`~geogan.modelfile.TranslationModel` or a ``.geogan`` file;
    ``src`` any scene geogan reads (a file, a GDAL path, ``"VV.tif,VH.tif"``, a list of files,
    a :class:`~geogan.scenes.Scene`). The output has the input's width, height, CRS and
    transform, and the target domain's band count, dtype and nodata
    (:func:`~geogan.predict.output_nodata`); pixels invalid in the input are nodata in the
    output. ``bands`` picks the input bands (default: those the model was trained on);
    ``units`` states a SAR input's units (default: inferred; converted when they differ from the
    model's). ``precision``: ``auto`` (bf16 on GPUs that run it natively, fp16 on older GPUs,
    fp32 on the CPU), ``fp32``, ``bf16`` or ``fp16``. Memory is bounded by one column panel of at
    most ``panel_width`` pixels. Progress is reported in tiles; a cancel raises
    :class:`~geogan.errors.Cancelled` within one batch. Nothing is left at ``dst`` unless the
    whole scene was written and verified; a second run into the same ``dst`` is refused while
    this one is alive. ``tta`` averages the tile's translations in every orientation the model
    was trained under (8 with ``augment: all``; as many times the network's work): less copied
    speckle and invented detail, the same edges (:mod:`geogan.predict.tta`). The result's
    ``warnings`` lists the warnings the call logged (the sentences the CLI prints).
    ``assume_crs`` (an EPSG code, WKT or PROJ string) is the CRS of an input that has a
    geotransform but no CRS; the output carries it. An input with another CRS of its own is refused.
    """
    options = PredictOptions(direction=direction, bands=bands, tile_size=tile_size, overlap=overlap,
                             batch_size=batch_size, blend=blend, cog=cog, compress=compress, units=units,
                             allow_ungeoreferenced=allow_ungeoreferenced, panel_width=panel_width,
                             channels_last=channels_last, tta=tta, assume_crs=assume_crs)
    predictor = Predictor(model_or_path, options, device=device, precision=precision)
    return predictor.translate(src, dst, overwrite=overwrite, progress=progress)


# --------------------------------------------------------------------------- the input checks
# Before a scene is translated: bands, dtypes, tiling, SAR units, and whether the input looks like
# what the model was trained on. Warnings are logged (the CLI shows them); what would give a wrong
# result is refused in one line instead.

#: Side of the decimated sample read to compare the input with the training data.
SAMPLE_SIDE = 512
#: Share of a sample that may be invalid before the user is warned that the output will be mostly nodata.
MOSTLY_NODATA = 0.9


def output_nodata(spec: DomainSpec) -> float:
    """The nodata value written for a target domain, outside its valid range when nobody declared one.

    The spec's own value if it has one; NaN for float outputs. For integers, from the training
    statistics: the dtype's minimum when every band's minimum lies above it (0 for unsigned
    imagery whose darkest value is 1 or more, -32768 for a DEM), else the dtype's maximum when
    every band stays below it, else (the data span the whole dtype) the minimum, with valid pixels
    kept one step above it by :func:`geogan.bands.cast_to_dtype`.
    """
    if spec.nodata is not None:
        return float(spec.nodata)
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return float("nan")
    info = np.iinfo(dt)
    mins = [s.min for s in spec.stats if s.min is not None and np.isfinite(s.min)]
    maxs = [s.max for s in spec.stats if s.max is not None and np.isfinite(s.max)]
    if mins and min(mins) > info.min:
        return float(info.min)
    if maxs and max(maxs) < info.max:
        return float(info.max)
    log.info("the training data span the whole %s range; output nodata is %d and valid pixels of that value "
             "become %d", dt.name, info.min, info.min + 1)
    return float(info.min)


def check_target_dtype(spec: DomainSpec, model_name: str, direction: str) -> None:
    """A model whose target dtype cannot be written as a GeoTIFF band (e.g. complex64) is refused."""
    if spec.dtype not in raster.SUPPORTED_DTYPES:
        raise ModelFileError(f"{model_name}: direction {direction} produces {spec.dtype} pixels, which geogan cannot "
                             f"write (supported: {', '.join(raster.SUPPORTED_DTYPES)})")


def check_input_dtype(ds: Any, label: str) -> None:
    bad = sorted({d for d in ds.dtypes if np.dtype(d).kind == "c"})
    if bad:
        raise RasterError(f"{describe(label)}: complex pixels ({', '.join(bad)}) cannot be translated; "
                          "convert them to intensity or amplitude first")


def check_tiling(tile_size: int, overlap: int, model: Any) -> None:
    mult = model.size_multiple
    gen = model.architecture.get("generator", "generator")
    if tile_size <= 0 or tile_size % mult:
        raise ConfigError(f"tile size {tile_size} is not a positive multiple of {mult} (the {gen} generator needs it)")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise ConfigError(f"overlap {overlap} does not fit tile size {tile_size} (need 0 <= overlap < tile size / 2)")


def check_units_option(units: Optional[str]) -> Optional[str]:
    if units is None:
        return None
    u = str(units).strip().lower()
    if u not in SAR_UNITS:
        raise ConfigError(f"unknown SAR units {units!r} (expected one of {', '.join(SAR_UNITS)})")
    return u


def choose_bands(bands: Union[None, str, Sequence[int]], count: int, spec: DomainSpec, label: str) -> list[int]:
    """The input bands to feed the network, in order.

    Default: the bands recorded in the model when training picked a deliberate subset or
    order that this raster has (e.g. 4,3,2 of a 13-band scene, or 1,2,3 of a 4-band file); all
    bands when the model was trained on all bands of an equally wide raster. Anything else asks
    for ``--bands``.
    """
    listed = ",".join(map(str, spec.bands))
    expects = f"model expects {spec.count} band(s) ({spec.kind}: bands {listed})"
    if bands is not None and not (isinstance(bands, str) and not bands.strip()):
        chosen = raster.parse_bands(bands, count, label)
        if len(chosen) != spec.count:
            raise BandMismatchError(f"{expects}; --bands names {len(chosen)} of {describe(label)}")
        return chosen
    trivial = tuple(spec.bands) == tuple(range(1, spec.count + 1))
    if trivial and count == spec.count:
        return list(spec.bands)
    # Bands 1..k are a deliberate pick when training read them from wider rasters (recorded since
    # issue 20); a model trained on every band of a k-band raster asks which bands of a wider one.
    picked = not trivial or (spec.source_count is not None and spec.source_count > spec.count)
    if picked and max(spec.bands) <= count:
        log.info("using bands %s of %s, as in training", listed, describe(label))
        return list(spec.bands)
    raise BandMismatchError(f"{expects}; {describe(label)} has {count} — use --bands")


# ------------------------------------------------------------------------------ the sample

def read_sample(ds: Any, bands: list[int], label: str) -> tuple[np.ndarray, np.ndarray]:
    """A cheap sample of the scene: a decimated read from overviews when the file has them (or is
    small), else a 4×4 grid of small windows (a decimated read without overviews decodes every block)."""
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    if ds.overviews(bands[0]) or max(ds.width, ds.height) <= SAMPLE_SIDE:
        scale = max(1, math.ceil(max(ds.width, ds.height) / SAMPLE_SIDE))
        shape = (len(bands), max(1, ds.height // scale), max(1, ds.width // scale))
        try:
            return (ds.read(bands, out_shape=shape, resampling=Resampling.nearest),
                    ds.read_masks(bands, out_shape=shape, resampling=Resampling.nearest))
        except RasterioError as exc:
            raise RasterError(f"{describe(label)}: reading a decimated sample of the whole raster failed "
                              f"({raster.first_line(exc)}); the file may be truncated or damaged") from None
    side = SAMPLE_SIDE // 4
    bh, bw = ds.block_shapes[0]
    parts, mparts = [], []
    for fy in (0.125, 0.375, 0.625, 0.875):
        for fx in (0.125, 0.375, 0.625, 0.875):
            w, h = min(side, ds.width), min(side, ds.height)
            x0 = min(max(0, int(fx * ds.width) - w // 2), ds.width - w)
            y0 = min(max(0, int(fy * ds.height) - h // 2), ds.height - h)
            x0, y0 = _on_blocks(x0, bw, ds.width - w), _on_blocks(y0, bh, ds.height - h)
            d, m = raster.read_window(ds, bands, Window(x0, y0, w, h))
            parts.append(d)
            mparts.append(m)
    return np.concatenate(parts, axis=2), np.concatenate(mparts, axis=2)


def _on_blocks(start: int, block: int, last: int) -> int:
    """``start`` moved back onto the block grid (when that is no further than ``last``): a window on
    block edges decodes a quarter of the blocks an unaligned one does."""
    return min(start - start % block, last) if 0 < block <= SAMPLE_SIDE else start


def input_units(spec: DomainSpec, data: np.ndarray, masks: np.ndarray, stated: Optional[str],
                label: str) -> Optional[str]:
    """The SAR units of the input: as stated (checked against the values) or read from them.

    Converting to the model's units happens only when the units are known: stated, or proven by
    the values (negative values are dB; integers amplitude numbers; positive floats that only
    one reading puts within backscatter's levels, see :func:`geogan.bands.infer_units`), and a
    warning says so. Values that could be linear power or amplitude are read in the model's
    units when those are among the two, with a warning naming the guess and ``--units``;
    when the model was trained on dB (neither reading), the input is refused until ``--units``
    says which. None for other kinds.
    """
    if spec.kind != "sar":
        if stated is not None:
            raise ConfigError(f"--units {stated}: the model's source domain is {spec.kind}, not SAR; units are for "
                              "SAR backscatter only")
        return None
    usable = np.all(masks > 0, axis=0)
    per_band = data[:, usable].astype(np.float64)
    values = per_band[np.isfinite(per_band)]
    if stated is not None:
        problem = check_stated_units(stated, values)
        if problem:
            raise RasterError(f"{describe(label)}: {problem}")
        doubt = doubt_stated_units(stated, values)
        if doubt:
            log.warning("%s: %s", describe(label), doubt)
        units, reason = stated, "as stated"
    else:
        guess = infer_units(values, str(data.dtype))
        units, reason = guess.units, guess.reason
        if not guess.sure:
            return _guessed_units(spec, guess, per_band, label)
    if units != spec.units:
        log.warning("%s: SAR in %s (%s) but the model was trained on %s; converting the input to the model's units",
                    describe(label), units_name(units), reason, units_name(spec.units))
    else:
        log.info("%s: SAR in %s (%s), as the model was trained", describe(label), units_name(units), reason)
    return units


def _guessed_units(spec: DomainSpec, guess: UnitsGuess, per_band: np.ndarray, label: str) -> str:
    """Units the values leave open, settled by the training data where it can: each reading's
    per-band median in dB either lies within the training range (2nd–98th percentile in dB) or not.
    Only the model's units fit: those, quietly (the same product as in training: Sentinel-1 power
    with median -15 dB is -30 dB as amplitude). Both fit, or the training data cannot tell: the
    model's units, with a warning naming the guess and ``--units``. Otherwise refused: the input
    would be converted on a guess."""
    readings = sorted({guess.units, guess.alternative} - {None})
    fits = {u: _fits_training(spec, per_band, u) for u in set(readings) | {spec.units}}
    others = [u for u in readings if u != spec.units]
    if spec.units in readings and fits[spec.units] and not any(fits[u] for u in others):
        log.info("%s: SAR read as %s, as the model was trained: only that reading lies within the training data's "
                 "range (%s)", describe(label), units_name(spec.units), guess.reason)
        return spec.units
    if spec.units in readings and fits[spec.units] is not False:
        tail = "".join(f"; if they are {units_name(u)}, state --units {u} and they will be converted" for u in others)
        log.warning("%s: SAR units not stated; read as %s, as the model was trained, but the values could be "
                    "either (%s)%s", describe(label), units_name(spec.units), guess.reason, tail)
        return spec.units
    options = " or ".join(f"--units {u}" for u in readings)
    raise RasterError(f"{describe(label)}: SAR units not stated and the values do not tell ({guess.reason}); the "
                      f"model was trained on {units_name(spec.units)}, so the input would be converted on a guess: "
                      f"state {options}")


def _fits_training(spec: DomainSpec, per_band: np.ndarray, units: str) -> Optional[bool]:
    """Whether every band's median, read in ``units``, lies within the training data's 2nd–98th
    percentile in dB; None when the model has no dB percentiles or the sample no positive value."""
    for i, s in enumerate(spec.stats):
        v = per_band[i] if i < per_band.shape[0] else np.empty(0)
        v = v[np.isfinite(v) & (v > 0)] if units != "db" else v[np.isfinite(v)]
        if not v.size or s.p2_db is None or s.p98_db is None:
            return None
        median = float(np.median(v))
        db = median if units == "db" else (10.0 if units == "linear" else 20.0) * math.log10(median)
        if not s.p2_db <= db <= s.p98_db:
            return False
    return True


def warn_if_unlike_training(ds: Any, data: np.ndarray, masks: np.ndarray, bands: list[int], spec: DomainSpec,
                            units: Optional[str], label: str, georef: bool) -> float:
    """Warn (never fail) when the input's resolution, validity or values differ from the training data.

    Returns the share of the sample that is valid.
    """
    if georef and (spec.resolution is not None or spec.ground_resolution is not None):
        _check_resolution(ds, spec, label)
    valid = raster.valid_mask(ds, data, masks, spec.kind, units=units)
    share = float(valid.mean()) if valid.size else 0.0
    if share == 0.0:
        log.warning("%s: no valid pixel in a sample of the input (all nodata, masked or non-finite); the output "
                    "will be nodata wherever the input is", describe(label))
        return share
    if share < 1.0 - MOSTLY_NODATA:
        log.warning("%s: %.0f%% of a sample of the input is nodata, masked or invalid; most of the output will "
                    "be nodata", describe(label), 100 * (1 - share))
    norm = normalize(data, spec, valid, units=units)
    lo, hi = spec.ranges()
    for i, band in enumerate(bands):
        values = norm[i][valid]
        median = float(np.median(values))
        far = float(np.mean(np.abs(values) > 3.0))
        if abs(median) > 2.0 or far > 0.5:
            log.warning("%s: band %d looks unlike the training data (%s); check the sensor, units and scaling",
                        describe(label), band, _unlike(median, far, lo[i], hi[i], spec.kind))
    return share


def _unlike(median: float, far: float, lo: float, hi: float, kind: str) -> str:
    """What made a band look unlike the training data: its median off the training range, the
    share of the sample far outside it, or both (``median`` and ``far`` in normalised units, where
    the training range is -1..1)."""
    unit = " dB" if kind == "sar" else ""
    span = f"the training range {lo:.4g}..{hi:.4g}{unit}"
    parts = []
    if abs(median) > 2.0:
        level = lo + (median + 1.0) * (hi - lo) / 2.0
        parts.append(f"its median {level:.4g}{unit} lies far {'above' if median > 0 else 'below'} {span}")
    if far > 0.5:
        parts.append(f"{100 * far:.0f}% of a sample lies far outside " + ("it" if parts else span))
    return ", and ".join(parts)


#: Relative difference of ground pixel sizes above which the input is said to differ from training.
RESOLUTION_TOLERANCE = 0.1


def _check_resolution(ds: Any, spec: DomainSpec, label: str) -> None:
    """Warn when the input's pixels differ by more than 10 % from the training data's, compared in
    metres on the ground (:func:`geogan.raster.ground_resolution`) whatever either CRS is: 10 m in
    US feet (32.8 ft) is the same, 1 arc-second (~31 m) is not 10 m."""
    got = raster.ground_resolution(ds.crs, ds.transform, ds.width, ds.height)
    want = spec.ground_resolution or _training_ground_size(spec, got, ds)
    if got is None or want is None:
        return
    (rx, ry), (sx, sy) = got, want
    tol = RESOLUTION_TOLERANCE
    if sx > 0 and sy > 0 and (abs(rx - sx) > tol * sx or abs(ry - sy) > tol * sy):
        log.warning("%s: pixel size %s on the ground differs by more than 10%% from the training data's %s; "
                    "resample the input to the training resolution for best results", describe(label),
                    _metres(rx, ry), _metres(sx, sy))


def _metres(x: float, y: float) -> str:
    return f"{x:.3g} m" if abs(x - y) <= 0.005 * max(x, y) else f"{x:.3g} x {y:.3g} m"


def _training_ground_size(spec: DomainSpec, got: Optional[tuple[float, float]],
                          ds: Any) -> Optional[tuple[float, float]]:
    """The training pixel size in metres for model files from before it was recorded: linear CRS
    units times their size in metres; degrees at the input scene's centre latitude (where the
    training data most likely were). None when the training CRS is unknown or unreadable."""
    if spec.resolution is None:
        return None
    sx, sy = spec.resolution
    if not spec.crs:  # no training CRS recorded: its sizes are taken in the input's CRS units
        if got is None:
            return None
        rx, ry = raster.resolution(ds)
        return (got[0] * sx / rx, got[1] * sy / ry) if rx > 0 and ry > 0 else None
    from rasterio.crs import CRS

    try:
        crs = CRS.from_user_input(spec.crs)
        if not crs.is_geographic:
            factor = crs.linear_units_factor[1]
            return sx * factor, sy * factor
        lat = _centre_latitude(ds)
    except Exception:  # an unreadable CRS in an old model: no comparison rather than a wrong one
        return None
    if lat is None:
        return None
    metres_per_degree = math.pi / 180.0 * raster.EARTH_RADIUS
    return sx * metres_per_degree * math.cos(math.radians(lat)), sy * metres_per_degree


def _centre_latitude(ds: Any) -> Optional[float]:
    from rasterio.warp import transform as warp_points

    x, y = ds.transform * (ds.width / 2.0, ds.height / 2.0)
    try:
        _, lat = warp_points(ds.crs, "EPSG:4326", [x], [y])
    except Exception:
        return None
    return float(lat[0]) if math.isfinite(lat[0]) else None

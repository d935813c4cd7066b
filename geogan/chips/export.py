"""``export_chips``: inputs → plan → chips read, checked and written → metadata → swap in.

The steps, each in its own module: :mod:`.sources` reads what the inputs are and samples
their pixels; :mod:`.plan` decides kinds, units, windows, AOI and the validation split without
reading a chip; this module reads every planned window, keeps chips with enough valid pixels,
streams their statistics and hands them to :mod:`.writer`; :mod:`.metadata` records the
result; :mod:`.workdir` swaps the finished export in.

Validity: a chip is kept when at least ``min_valid`` of its pixels are valid in every chosen
band (:func:`geogan.raster.valid_mask`: GDAL's mask for nodata / internal mask / alpha, finite,
and for SAR in linear power or amplitude > 0; any finite dB is valid), and never when it has no
valid pixel at all. Statistics (:class:`geogan.bands.StatsAccumulator`) are over the valid
pixels of every kept chip of the domain, train and validation.

Paired mode: B is read on each A raster's exact grid — directly when the grids are equal,
else through a warp (:func:`geogan.raster.warped_onto`, window by window) with nearest
neighbour for class maps and bilinear otherwise. B chips carry A's grid, B's nodata, and an
internal mask from the warp's alpha (B's own mask plus its footprint). Give one B raster per A
raster (paired in order) or a single B raster for every A raster.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..bands import DomainSpec, StatsAccumulator
from ..errors import InputError, OutputError, describe
from ..notices import with_warnings
from ..outputs import os_reason
from ..progress import ProgressLike, as_progress, check_cancelled
from ..raster import read_window, valid_mask, warped_onto
from ..scenes import Scene
from .aoi import AOI, load_aoi
from .metadata import FORMAT, FORMAT_VERSION, METADATA_NAME, aoi_record, metadata_bytes
from .plan import (DomainChoice, ExportOptions, ExportPlan, check_pair_counts, check_stated, choose_domain, names_of,
                   plan_export)
from .sources import Inputs, Source, expand_inputs, inspect_domain, read_samples, warn_if_bands_given_as_scenes
from .workdir import ExportDir, check_out_dir
from .writer import ChipWriter

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DOMAINS = ("a", "b")


# ------------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class ChipSummary:
    """What :func:`export_chips` wrote.

    ``counts[d]`` = {"train": n, "val": m}; ``skipped[d]`` = chips not written and why:
    ``invalid`` (below min_valid), ``outside_aoi``, ``val_overlap`` (training windows that
    would overlap a validation chip), in paired mode ``partner_invalid`` (the other side
    failed min_valid), and for SAR in linear power or amplitude ``negative`` (of the
    ``invalid`` ones, those that failed only because negative values are invalid there: dB
    data would).
    ``sources[d]`` and ``small_rasters[d]`` name rasters by their absolute paths (a scene's
    files comma-joined). ``kind_reasons``/``units_reasons`` say why each kind and SAR units
    were chosen; ``validation[d]`` what the validation split did and what was kept of it;
    ``recovered`` what was put back from an interrupted earlier run, if anything; ``warnings``
    the export's warnings, as the CLI prints them.
    """

    out_dir: Path
    metadata_path: Path
    paired: bool
    counts: dict[str, dict[str, int]]
    skipped: dict[str, dict[str, int]]
    domains: dict[str, DomainSpec]
    sources: dict[str, list[str]]
    small_rasters: dict[str, list[str]] = field(default_factory=dict)
    kind_reasons: dict[str, str] = field(default_factory=dict)
    units_reasons: dict[str, Optional[str]] = field(default_factory=dict)
    validation: dict[str, str] = field(default_factory=dict)
    recovered: Optional[str] = None
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """A short human summary (the CLI prints it)."""
        out = []
        for d in DOMAINS:
            spec = self.domains[d]
            units = f" in {spec.units}" if spec.units else ""
            out.append(f"{d}: {spec.kind}{units}, bands {list(spec.bands)} {spec.dtype} from "
                       f"{len(self.sources[d])} raster(s): {self.counts[d]['train']} train + {self.counts[d]['val']} "
                       f"val chips; skipped: {skipped_text(d, self.skipped[d])}")
            why = f"   kind {spec.kind}: {self.kind_reasons.get(d, '?')}"
            if spec.units:
                why += f"; units {spec.units}: {self.units_reasons.get(d, '?')}"
            out.append(why)
            if self.validation.get(d):
                out.append(f"   validation: {self.validation[d]}")
        if self.recovered:
            out.append(self.recovered)
        out.append(f"metadata: {self.metadata_path}")
        return out


def skipped_text(domain: str, skipped: dict[str, int], min_valid: Optional[float] = None) -> str:
    """What was skipped, in words: ``3 below --min-valid 0.95 (2 of them only for negative values …:
    looks like dB, use --units-a db), 4 outside the AOI``."""
    threshold = f" {min_valid:g}" if min_valid is not None else ""
    parts = []
    if skipped.get("invalid"):
        text = f"{skipped['invalid']} below --min-valid{threshold}"
        if skipped.get("negative"):
            text += (f" ({skipped['negative']} of them only for negative values, which linear power or amplitude "
                     f"cannot be: looks like dB, use --units-{domain} db)")
        parts.append(text)
    for key, words in (("partner_invalid", "whose paired chip was below --min-valid"),
                       ("outside_aoi", "outside the AOI"), ("val_overlap", "overlapping validation chips")):
        if skipped.get(key):
            parts.append(f"{skipped[key]} {words}")
    return ", ".join(parts) or "none"


# ------------------------------------------------------------------------------- tallies

@dataclass
class DomainTally:
    """What happened to one domain's chips, counted as they stream through."""

    paired: bool
    train: int = 0
    val: int = 0
    invalid: int = 0
    negative: int = 0
    partner_invalid: int = 0
    outside_aoi: int = 0
    val_overlap: int = 0

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val}

    def skipped(self) -> dict[str, int]:
        out = {"invalid": self.invalid, "outside_aoi": self.outside_aoi, "val_overlap": self.val_overlap}
        if self.paired:
            out["partner_invalid"] = self.partner_invalid
        if self.negative:
            out["negative"] = self.negative
        return out

    def kept(self, split: str) -> None:
        if split == "val":
            self.val += 1
        else:
            self.train += 1


class Ticker:
    """Progress over all chip windows of the export; checks for a cancel at every chip."""

    def __init__(self, progress: ProgressLike, total: int) -> None:
        self.progress = as_progress(progress)
        self.total = total
        self.done = 0

    def tick(self, message: str) -> None:
        check_cancelled(self.progress, "chip export")
        self.done += 1
        self.progress.update(self.done, self.total, message)


# ------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Chip:
    """One window's pixels, GDAL masks and validity, and the internal mask its file carries."""

    data: np.ndarray
    valid: np.ndarray
    file_mask: Optional[np.ndarray]


class Verdict:
    """Whether a chip has enough valid pixels, and, when not, whether it failed only for values that
    are mostly negative (valid in dB, invalid in linear power or amplitude): the dB hint."""

    def __init__(self, ds, data: np.ndarray, masks: np.ndarray, choice: DomainChoice, min_valid: float) -> None:
        self.valid = valid_mask(ds, data, masks, choice.kind, choice.units)
        self.ok = enough_valid(self.valid, min_valid)
        self.negative = False
        if not self.ok and choice.kind == "sar" and choice.units != "db":
            generic = valid_mask(ds, data, masks, "generic")
            with np.errstate(invalid="ignore"):  # mostly negative values, as dB backscatter has
                self.negative = enough_valid(generic, min_valid) and float((data[:, generic] < 0).mean()) > 0.5


def enough_valid(valid: np.ndarray, min_valid: float) -> bool:
    n_valid = int(np.count_nonzero(valid))
    return n_valid > 0 and n_valid >= min_valid * valid.size


def read_chip(ds, src: Source, window, nodata: Optional[int] = None) -> tuple[np.ndarray, np.ndarray,
                                                                              Optional[np.ndarray]]:
    """Data, GDAL masks and the chip file's internal mask (when the source has one) of a window.
    No mask is read where GDAL says every pixel is valid; with ``nodata`` (:func:`integer_nodata`)
    the masks are computed from the data as GDAL would (a pixel is valid where it is not nodata),
    without GDAL reading the window a second time."""
    if nodata is not None:
        data, _ = read_window(ds, src.bands, window, masks=False)
        return data, data != nodata, None
    data, masks = read_window(ds, src.bands, window, masks=not src.all_valid)
    return data, masks, (np.all(masks > 0, axis=0) if src.has_mask else None)


def integer_nodata(ds, src: Source) -> Optional[int]:
    """The nodata value when GDAL's mask of every chosen band is that value alone on integer
    pixels (its mask is then ``data != nodata``), else None. Decided once per raster: the same
    rule decided window by window (:func:`geogan.raster.read_window`) cost more than GDAL's own
    mask read on 256 px chips, this one comparison a fifth of it."""
    from rasterio.enums import MaskFlags

    dtype, nodata = np.dtype(src.dtype), ds.nodata
    if dtype.kind not in "ui" or nodata is None or not float(nodata).is_integer():
        return None
    if not np.iinfo(dtype).min <= nodata <= np.iinfo(dtype).max:
        return None
    flags = ds.mask_flag_enums
    return int(nodata) if all(flags[b - 1] == [MaskFlags.nodata] for b in src.bands) else None


class PartnerReader:
    """Domain B read on an A raster's exact grid: directly when the grids are equal, else
    through a warp whose alpha band marks B's footprint and mask. A context manager."""

    def __init__(self, ds_a, src_b: Source, choice: DomainChoice) -> None:
        self.src = src_b
        self._stack = contextlib.ExitStack()
        try:
            self.ds = self._stack.enter_context(src_b.open(choice.resampling))
            self.nodata = integer_nodata(self.ds, src_b)
            same = (self.ds.crs == ds_a.crs and self.ds.transform == ds_a.transform
                    and (self.ds.width, self.ds.height) == (ds_a.width, ds_a.height))
            self.vrt, self.alpha = (None, 0) if same else warped_onto(
                self.ds, crs=ds_a.crs, transform=ds_a.transform, width=ds_a.width, height=ds_a.height,
                resampling=choice.resampling)
            if self.vrt is not None:
                self._stack.enter_context(self.vrt)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> "PartnerReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, window) -> tuple[Any, np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """(dataset, data, masks, file mask) of B over A's ``window``."""
        if self.vrt is None:
            return (self.ds, *read_chip(self.ds, self.src, window, self.nodata))
        stacked, _ = read_window(self.vrt, list(self.src.bands) + [self.alpha], window, masks=False)
        data, inside = stacked[:-1], stacked[-1] > 0
        if self.src.nodata is not None:
            data = np.where(inside[None], data, np.array(self.src.nodata, dtype=data.dtype))
        masks = np.broadcast_to(np.where(inside, np.uint8(255), np.uint8(0)), data.shape)
        return self.vrt, data, masks, inside


def chip_name(src: Source, window) -> str:
    return f"{src.name}_r{int(window.row_off):06d}_c{int(window.col_off):06d}.tif"


# ------------------------------------------------------------------------------- the run

class ExportRun:
    """Reads every planned window, keeps chips with enough valid pixels, writes them and streams
    their statistics; the tallies and accumulators are its state."""

    def __init__(self, plan: ExportPlan, sources: dict[str, list[Source]], choices: dict[str, DomainChoice],
                 writer: ChipWriter, ticker: Ticker) -> None:
        self.plan, self.sources, self.choices = plan, sources, choices
        self.writer, self.ticker = writer, ticker
        self.min_valid = plan.options.min_valid
        self.tally = {d: DomainTally(plan.options.paired, outside_aoi=plan.domain(d).outside_aoi,
                                     val_overlap=plan.domain(d).val_overlap) for d in DOMAINS}
        self.stats = {d: StatsAccumulator(len(sources[d][0].bands), sources[d][0].dtype, choices[d].kind,
                                          seed=plan.options.seed, units=choices[d].units) for d in DOMAINS}

    def run(self) -> None:
        if self.plan.options.paired:
            self._run_paired()
        else:
            for d in DOMAINS:
                self._run_domain(d)

    def _run_domain(self, d: str) -> None:
        from rasterio.windows import transform as window_transform

        choice = self.choices[d]
        for ri, chips in self.plan.domain(d).by_raster():
            src = self.sources[d][ri]
            with src.open(choice.resampling) as ds:
                nodata = integer_nodata(ds, src)
                for chip in chips:
                    self.ticker.tick(f"{d}: {src.name}")
                    data, masks, file_mask = read_chip(ds, src, chip.window, nodata)
                    verdict = Verdict(ds, data, masks, choice, self.min_valid)
                    if not verdict.ok:
                        self._reject(d, verdict)
                        continue
                    self._keep(d, src, chip_name(src, chip.window), chip.split, data, verdict.valid, file_mask,
                               ds.crs, window_transform(chip.window, ds.transform))

    def _run_paired(self) -> None:
        for ri, chips in self.plan.a.by_raster():
            src_a = self.sources["a"][ri]
            src_b = self.sources["b"][self.plan.partners[ri]]
            with src_a.open(self.choices["a"].resampling) as ds_a, \
                    PartnerReader(ds_a, src_b, self.choices["b"]) as partner:
                nodata_a = integer_nodata(ds_a, src_a)
                for chip in chips:
                    self.ticker.tick(f"pair: {src_a.name}")
                    self._pair(ds_a, src_a, partner, chip, nodata_a)

    def _pair(self, ds_a, src_a: Source, partner: PartnerReader, chip, nodata_a: Optional[int]) -> None:
        from rasterio.windows import transform as window_transform

        data_a, masks_a, file_mask_a = read_chip(ds_a, src_a, chip.window, nodata_a)
        verdict_a = Verdict(ds_a, data_a, masks_a, self.choices["a"], self.min_valid)
        if not verdict_a.ok:
            self._reject("a", verdict_a, partner="b")
            return
        ds_b, data_b, masks_b, file_mask_b = partner.read(chip.window)
        verdict_b = Verdict(ds_b, data_b, masks_b, self.choices["b"], self.min_valid)
        if not verdict_b.ok:
            self._reject("b", verdict_b, partner="a")
            return
        name, transform = chip_name(src_a, chip.window), window_transform(chip.window, ds_a.transform)
        self._keep("a", src_a, name, chip.split, data_a, verdict_a.valid, file_mask_a, ds_a.crs, transform)
        self._keep("b", partner.src, name, chip.split, data_b, verdict_b.valid, file_mask_b, ds_a.crs, transform)

    def _reject(self, d: str, verdict: Verdict, partner: Optional[str] = None) -> None:
        self.tally[d].invalid += 1
        self.tally[d].negative += int(verdict.negative)
        if partner is not None:
            self.tally[partner].partner_invalid += 1

    def _keep(self, d: str, src: Source, name: str, split: str, data: np.ndarray, valid: np.ndarray,
              file_mask: Optional[np.ndarray], crs, transform) -> None:
        self.writer.write(f"{split}_{d}", name, data, mask=file_mask, nodata=src.nodata, crs=crs,
                          transform=transform, descriptions=src.descriptions)
        self.stats[d].update(data, valid)
        self.tally[d].kept(split)

    def check_training_chips(self) -> None:
        """A domain without a single training chip is an error that says why."""
        for d in DOMAINS:
            tally = self.tally[d]
            if tally.train == 0:
                reasons = skipped_text(d, tally.skipped(), self.min_valid)
                if tally.val:
                    reasons += f"; {tally.val} set aside for validation"
                raise InputError(f"{names_of(self.sources[d])}: no training chips kept for domain {d} ({reasons})")

    def warn_if_validation_dropped(self) -> None:
        """Warn when the chips kept miss the validation fraction the windows met (e.g. no chip of the
        validation blocks had enough valid pixels); paired, both domains have the same chips: once."""
        for d in ("a",) if self.plan.options.paired else DOMAINS:
            note = self.plan.domain(d).split.kept_warning(self.tally[d].train, self.tally[d].val)
            if note:
                log.warning("%s: %s", "domains a and b" if self.plan.options.paired else f"domain {d}", note)

    def specs(self) -> dict[str, DomainSpec]:
        """Each domain's spec: kind, bands, dtype, nodata, statistics, grid (paired B: A's grid), units."""
        out = {}
        for d in DOMAINS:
            first = self.sources[d][0]
            grid = self.sources["a"][0] if (self.plan.options.paired and d == "b") else first
            out[d] = DomainSpec(kind=self.choices[d].kind, bands=first.bands, dtype=first.dtype, nodata=first.nodata,
                                stats=self.stats[d].result(first.bands), crs=grid.crs.to_wkt(), resolution=grid.res,
                                band_descriptions=first.descriptions, units=self.choices[d].units,
                                ground_resolution=grid.ground_res, source_count=first.count)
        return out


# ------------------------------------------------------------------------------- the API

@with_warnings
def export_chips(
    a: Inputs,
    b: Inputs,
    out: PathLike,
    *,
    bands_a: Union[None, str, Sequence[int]] = None,
    bands_b: Union[None, str, Sequence[int]] = None,
    kind_a: Optional[str] = None,
    kind_b: Optional[str] = None,
    units_a: Optional[str] = None,
    units_b: Optional[str] = None,
    assume_crs_a: Optional[str] = None,
    assume_crs_b: Optional[str] = None,
    assets_a: Union[None, str, Sequence[str]] = None,
    assets_b: Union[None, str, Sequence[str]] = None,
    tile_size: int = 256,
    stride: Optional[int] = None,
    min_valid: float = 0.95,
    aoi: Any = None,
    aoi_a: Any = None,
    aoi_b: Any = None,
    aoi_crs: Optional[str] = None,
    val_fraction: float = 0.1,
    paired: bool = False,
    seed: int = 0,
    compress: Optional[str] = None,
    progress: ProgressLike = None,
) -> ChipSummary:
    """Cut the A and B rasters into training/validation chips in ``out`` (see :mod:`geogan.chips`).

    ``a``/``b``: a path, a :class:`~geogan.scenes.Scene`, or a list of them, each in any syntax
    of :mod:`geogan.scenes` (``"VV.tif,VH.tif"`` is one scene of two bands, ``@list.txt``, a glob,
    a folder, a GDAL path, a STAC Item, ItemCollection or Catalog JSON file or URL, a dict or a
    pystac object). ``assets_a``/``assets_b`` (``"VV,VH"`` or a list) are the asset keys whose
    files become a STAC input's bands, in order (:mod:`geogan.stac`). ``kind_*`` and ``units_*``
    (SAR: linear, amplitude, db) are inferred when not given; ``assume_crs_a``/``assume_crs_b``
    (EPSG code, WKT or PROJ string) are the CRS of that domain's files that have a geotransform
    but no CRS; ``aoi`` limits both domains, ``aoi_a``/``aoi_b`` one each (instead of ``aoi``).
    ``compress``: chip compression (default ZSTD level 1 where GDAL has it, else DEFLATE).
    Returns a :class:`ChipSummary`; raises a one-line :class:`~geogan.errors.GeoganError` on bad
    input, :class:`~geogan.errors.Cancelled` if ``progress`` asks to stop; either way ``out`` is
    left as it was.
    """
    from rasterio.errors import NodataShadowWarning

    with warnings.catch_warnings():
        # A 4-band image with nodata *and* an alpha band: GDAL's mask follows nodata, which is
        # what valid_mask wants; rasterio's warning about it would only be noise here.
        warnings.simplefilter("ignore", NodataShadowWarning)
        options = ExportOptions(tile_size=tile_size, stride=stride, min_valid=min_valid, val_fraction=val_fraction,
                                paired=bool(paired), seed=seed)
        stated = {"a": (kind_a, units_a), "b": (kind_b, units_b)}
        for d in DOMAINS:
            check_stated(d, *stated[d])
        out_dir = Path(out)
        check_out_dir(out_dir)  # fail fast; checked again under the lock
        scenes = {"a": expand_inputs(a, "a", assume_crs_a, assets_a),
                  "b": expand_inputs(b, "b", assume_crs_b, assets_b)}
        if options.paired:
            check_pair_counts(len(scenes["a"]), len(scenes["b"]))
        sources = {"a": _domain_sources(scenes["a"], bands_a, "a"), "b": _domain_sources(scenes["b"], bands_b, "b")}
        choices = {d: _choose(d, sources[d], options.tile_size, *stated[d]) for d in DOMAINS}
        regions = _regions(aoi, aoi_a, aoi_b, aoi_crs)
        plan = plan_export(sources, options, regions)
        for message in plan.a.warnings + plan.b.warnings:
            log.warning("%s", message)
        return _write_export(out_dir, plan, sources, choices, regions, compress, progress)


def _domain_sources(scenes: list[Scene], bands: Any, domain: str) -> list[Source]:
    sources = inspect_domain(scenes, bands, domain)
    warn_if_bands_given_as_scenes(scenes, [s.count for s in sources], domain)
    return sources


def _choose(domain: str, sources: list[Source], tile_size: int, kind: Optional[str],
            units: Optional[str]) -> DomainChoice:
    needed = kind is None or kind in ("sar", "generic") or units is not None  # generic: is it a class map?
    samples = read_samples(sources, tile_size) if needed else []
    choice = choose_domain(domain, sources, samples, kind, units)
    log.info("domain %s: %s", domain, choice.describe())
    return choice


def _regions(aoi: Any, aoi_a: Any, aoi_b: Any, aoi_crs: Optional[str]) -> dict[str, Optional[AOI]]:
    both = load_aoi(aoi, aoi_crs) if aoi is not None else None
    return {"a": load_aoi(aoi_a, aoi_crs) if aoi_a is not None else both,
            "b": load_aoi(aoi_b, aoi_crs) if aoi_b is not None else both}


def _write_export(out_dir: Path, plan: ExportPlan, sources: dict[str, list[Source]],
                  choices: dict[str, DomainChoice], regions: dict[str, Optional[AOI]], compress: Optional[str],
                  progress: ProgressLike) -> ChipSummary:
    ticker = Ticker(progress, plan.total)
    # Durability once per export: the chips, then one flush of them, then the manifest, then the swap
    with ExportDir(out_dir) as target, ChipWriter(target.work, out_dir, target.kept, compress) as writer:
        run = ExportRun(plan, sources, choices, writer, ticker)
        run.run()
        run.check_training_chips()
        run.warn_if_validation_dropped()
        specs = run.specs()
        meta = build_metadata(plan, sources, choices, specs, run, regions)
        check_cancelled(ticker.progress, "chip export")
        writer.flush()
        writer.write_manifest(METADATA_NAME, metadata_bytes(meta))
        try:
            target.commit()
        except OSError as exc:
            raise OutputError(f"{describe(out_dir)}: replacing the export failed ({os_reason(exc)}); "
                              f"{target.kept}") from None
        recovered = target.recovered
    return ChipSummary(
        out_dir=out_dir, metadata_path=out_dir / METADATA_NAME, paired=plan.options.paired,
        counts={d: run.tally[d].counts() for d in DOMAINS}, skipped={d: run.tally[d].skipped() for d in DOMAINS},
        domains=specs, sources={d: [s.label for s in sources[d]] for d in DOMAINS},
        small_rasters={d: [sources[d][i].label for i in plan.domain(d).small] for d in DOMAINS},
        kind_reasons={d: choices[d].kind_reason for d in DOMAINS},
        units_reasons={d: choices[d].units_reason for d in DOMAINS},
        validation={d: plan.domain(d).split.describe_kept(run.tally[d].train, run.tally[d].val) for d in DOMAINS},
        recovered=recovered,
    )


def build_metadata(plan: ExportPlan, sources: dict[str, list[Source]], choices: dict[str, DomainChoice],
                   specs: dict[str, DomainSpec], run: ExportRun, regions: dict[str, Optional[AOI]]) -> dict:
    """The metadata dict (see :mod:`geogan.chips.metadata` for the keys)."""
    from ..stac import asset_keys

    o = plan.options
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "paired": o.paired,
        "tile_size": int(o.tile_size),
        "stride": int(o.stride),
        "chip_size": [int(o.tile_size), int(o.tile_size)],
        "min_valid": float(o.min_valid),
        "val_fraction": float(o.val_fraction),
        "seed": int(o.seed),
        "val_block": {d: plan.domain(d).split.block for d in DOMAINS},
        "val_split": {d: _split_record(plan, d) for d in DOMAINS},
        "resampling_b": choices["b"].resampling if o.paired else None,
        "aoi": {d: aoi_record(regions[d]) for d in DOMAINS},
        "domains": {d: {**specs[d].to_dict(), "sources": [s.label for s in sources[d]],
                        "chips": run.tally[d].counts(), "kind_reason": choices[d].kind_reason,
                        "units_reason": choices[d].units_reason, "resampling": choices[d].resampling}
                    for d in DOMAINS},
        "skipped": {d: run.tally[d].skipped() for d in DOMAINS},
        "small_rasters": {d: [sources[d][i].label for i in plan.domain(d).small] for d in DOMAINS},
        "assets": {d: asset_keys(s.scene for s in sources[d]) for d in DOMAINS},
    }


def _split_record(plan: ExportPlan, d: str) -> dict:
    split = plan.domain(d).split
    return {"unit": split.unit, "block": split.block, "units": split.units, "val_units": split.val_units,
            "fraction": round(split.achieved, 4), "description": split.describe()}

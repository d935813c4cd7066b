"""Many scenes into one folder: one output per scene, resumable, going on after a failure.

:func:`translate_rasters` loads the model once and translates each scene into
``OUT_DIR/<scene name>.tif``. An output that already exists is skipped (unless ``overwrite``)
only when it reads back complete (right size, bands and dtype, every block on disk) *and* its
provenance tags say this model made it with the same pixel-affecting options
(:mod:`geogan.provenance`); any other existing output — another model's, other options', one
without tags — is refused with one line naming what made it, and the batch is not ``ok``. So a
long batch that was interrupted continues where it stopped, and never keeps a wrong output.
Outputs are only ever renamed into place once complete, so an interruption never leaves a
half-written one. A scene that fails is recorded with its one-line error and the batch goes on.

Batches that share a folder cooperate: a scene whose output lock a live run holds is that run's
work, recorded as "busy" (left to it), not as a failure. A batch that writes nothing removes
the folders it created (only those, only while empty).

Two engines run a batch: ``local`` (the default) translates the scenes one after another in this
process; ``ray`` hands them to Ray actors on this machine's GPUs and cores or on a cluster
(:mod:`geogan.predict.ray_engine`), which schedule, retry and scale. Both handle each scene with
:func:`translate_one`, so skipping, refusing and "busy" mean the same on either.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from .. import provenance, raster, stac
from ..errors import BusyError, Cancelled, ConfigError, GeoganError, OutputError, describe
from ..notices import with_warnings
from ..outputs import check_writable_dir, os_reason
from ..progress import ProgressLike, as_progress
from ..scenes import Scene, SceneLike
from .scene import PredictionResult, PredictOptions, Predictor

log = logging.getLogger(__name__)

WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"
#: How a batch is run: in this process, or on Ray (``pip install geogan[ray]``).
ENGINES = ("local", "ray")
#: A scene whose output lock a live run holds: that run's work, neither done here nor failed.
BUSY = "busy"


@dataclass(frozen=True)
class SceneOutcome:
    """What became of one scene of a batch."""

    scene: str                  # the scene as given (comma-joined files for a multi-file scene)
    output: Path
    status: str                 # "written", "skipped" (already complete), "busy" (another run's) or "failed"
    error: Optional[str] = None
    result: Optional[PredictionResult] = None
    seconds: float = 0.0
    #: The warnings logged while this scene was handled, as the CLI prints them.
    warnings: tuple[str, ...] = ()
    #: Why a "busy" scene was left alone (which live run holds it).
    note: Optional[str] = None

    def describe_failure(self) -> str:
        """The error as one line that names the scene once."""
        error = self.error or "failed"
        return error if describe(self.scene) in error or self.scene in error else f"{describe(self.scene)}: {error}"


@dataclass(frozen=True)
class BatchResult:
    """Every scene's outcome, in input order."""

    outcomes: tuple[SceneOutcome, ...]
    out_dir: Path
    seconds: float
    #: Every warning of the batch, as the CLI prints them (each scene's are also on its outcome).
    warnings: tuple[str, ...] = ()

    @property
    def written(self) -> list[SceneOutcome]:
        return [o for o in self.outcomes if o.status == WRITTEN]

    @property
    def skipped(self) -> list[SceneOutcome]:
        return [o for o in self.outcomes if o.status == SKIPPED]

    @property
    def busy(self) -> list[SceneOutcome]:
        """Scenes another live run was writing: left to it, not failures."""
        return [o for o in self.outcomes if o.status == BUSY]

    @property
    def failed(self) -> list[SceneOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line: how many scenes were written, skipped and failed, where, in how long."""
        busy = f"{len(self.busy)} left to another run, " if self.busy else ""
        return (f"{len(self.outcomes)} scene(s) in {self.seconds:.1f} s: {len(self.written)} written, "
                f"{len(self.skipped)} skipped (already complete), {busy}{len(self.failed)} failed → "
                f"{self.out_dir}")


def output_name(scene: Scene) -> str:
    """The output file name for a scene: its name (see :attr:`geogan.scenes.Scene.name`) + ``.tif``."""
    return f"{scene.name}.tif"


def plan_outputs(scenes: Sequence[Scene], out_dir: Path) -> list[tuple[Scene, Path]]:
    """Each scene with its output path; two scenes that would write the same file are refused."""
    seen: dict[str, Scene] = {}
    plan = []
    for scene in scenes:
        name = output_name(scene)
        if name in seen:
            raise ConfigError(f"{describe(seen[name].label)} and {describe(scene.label)} would both be written to "
                              f"{describe(out_dir / name)}; give them different file names or predict them into "
                              "different folders")
        seen[name] = scene
        plan.append((scene, out_dir / name))
    return plan


def check_complete(path: Path, expected: tuple[int, int, int, str]) -> Optional[str]:
    """None when ``path`` is a complete output of the expected (width, height, bands, dtype), else why not."""
    width, height, count, dtype = expected
    try:
        raster.verify_raster(path, width=width, height=height, count=count, dtype=dtype)
    except GeoganError as exc:
        return str(exc)
    return None


@with_warnings
def translate_rasters(model_or_path: Any, scenes: Union[SceneLike, Iterable[SceneLike]],
                      out_dir: Union[str, os.PathLike], *, overwrite: bool = False, progress: ProgressLike = None,
                      device: Any = "auto", precision: Any = "auto", engine: str = "local",
                      ray_address: Optional[str] = None, ray_workers: Optional[int] = None,
                      **options: Any) -> BatchResult:
    """Translate many scenes into ``out_dir`` (created if needed), one ``<scene name>.tif`` each.

    ``scenes``: scenes or specs as :func:`geogan.scenes.expand_scenes` takes them (paths,
    comma-joined scenes, ``@list.txt``, globs, folders, GDAL paths, STAC JSON). ``options`` are those of
    :func:`~geogan.predict.translate_raster` (direction, bands, tile_size, overlap, batch_size,
    blend, cog, compress, units, ...), and ``assets``: the STAC asset keys of a STAC input's bands
    (default: those the model was trained with); ``cog`` defaults to True for STAC inputs. Each
    output gets its STAC Item (``NAME.json``) and the folder a ``collection.json`` of every Item
    in it (:mod:`geogan.stac`). Complete outputs are skipped unless ``overwrite``; a scene
    that fails is recorded and the batch goes on; a cancel stops at once. ``progress`` counts
    scenes and shows the current scene's tiles in its message. ``engine="ray"`` runs the batch on
    Ray (a local runtime, or the cluster at ``ray_address``; ``ray_workers`` actors, default one
    per GPU) with the same outcomes. Each outcome's ``warnings`` holds what was logged while its
    scene was handled, the result's all of the call's (the sentences the CLI prints).
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    prog = as_progress(progress)
    out = Path(out_dir)
    found = stac.expand_for_model(scenes, model_or_path, options.get("direction", "a2b"), options.pop("assets", None))
    options["cog"] = stac.default_cog(options.get("cog"), found)  # COG by default for STAC inputs
    plan = plan_outputs(found, out)
    created = _output_dir(out)
    try:
        if engine == "ray":
            outcomes = _run_on_ray(model_or_path, plan, overwrite, prog, device, precision, ray_address,
                                   ray_workers, options)
        else:
            predictor = Predictor(model_or_path, PredictOptions(**options), device=device, precision=precision)
            outcomes = _run_plan(predictor, plan, overwrite, prog)
        if any(o.status in (WRITTEN, SKIPPED) for o in outcomes):
            stac.write_collection(out)  # every Item in the folder, this run's and earlier ones'
    finally:
        remove_if_empty(created)  # a batch that wrote nothing leaves no folder it made behind
    return BatchResult(tuple(outcomes), out, time.perf_counter() - started)


def _run_plan(predictor: Predictor, plan: list[tuple[Scene, Path]], overwrite: bool, prog: Any) -> list[SceneOutcome]:
    """Each scene in turn, its warnings on its outcome; a cancel stops at once."""
    outcomes = []
    for i, (scene, dst) in enumerate(plan):
        prog.update(i, len(plan), scene.name)
        outcomes.append(translate_one(predictor, scene, dst, overwrite, _SceneProgress(prog, i, len(plan), scene.name)))
        if prog.cancelled():
            raise Cancelled("batch prediction cancelled")
    prog.update(len(plan), len(plan), "done")
    return outcomes


def _run_on_ray(model_or_path: Any, plan: list[tuple[Scene, Path]], overwrite: bool, prog: Any, device: Any,
                precision: Any, address: Optional[str], workers: Optional[int], options: dict) -> list[SceneOutcome]:
    """The plan on Ray actors; the options and the model are checked here first (on the CPU), so a
    wrong direction or tile size is one line, not one failure per actor."""
    from . import ray_engine

    Predictor(model_or_path, PredictOptions(**options), device="cpu", precision="fp32")
    prog.update(0, len(plan), "starting Ray")
    return ray_engine.run_batch(model_or_path, plan, overwrite=overwrite, options=options, device=device,
                                precision=precision, address=address, workers=workers, progress=prog)


@with_warnings
def translate_one(predictor: Predictor, scene: Scene, dst: Path, overwrite: bool,
                  progress: Any = None) -> SceneOutcome:
    """Translate one scene of a batch, skip it (complete, same model and options), or leave it to the
    live run that holds its lock; never raises but for a cancel. Every engine handles a scene here."""
    started = time.perf_counter()
    try:
        if not dst.parent.is_dir():  # another run sharing the folder removed it as empty: make it again
            _output_dir(dst.parent)
        if dst.exists() and not overwrite:
            return _existing(predictor, scene, dst)
        try:
            result = predictor.translate(scene, dst, overwrite=overwrite, progress=progress)
        except BusyError as exc:  # another live run is writing it: its work if it makes what we would
            return _busy(predictor, scene, dst, exc, time.perf_counter() - started)
        except OutputError:
            if overwrite or not dst.exists():
                raise
            return _existing(predictor, scene, dst)  # another run finished it meanwhile
        stac.write_item(dst, scene, in_collection=True, model=predictor.model)  # NAME.json beside NAME.tif
        return SceneOutcome(scene.label, dst, WRITTEN, result=result, seconds=result.seconds)
    except Cancelled:
        raise
    except GeoganError as exc:
        message = str(exc)
    except Exception as exc:  # an unexpected failure of one scene must not end the batch
        message = f"{type(exc).__name__}: {raster.first_line(exc)}"
    outcome = SceneOutcome(scene.label, dst, FAILED, error=message, seconds=time.perf_counter() - started)
    log.warning("scene failed (the batch goes on): %s", outcome.describe_failure())
    return outcome


def _busy(predictor: Predictor, scene: Scene, dst: Path, exc: BusyError, seconds: float) -> SceneOutcome:
    """A scene whose lock a live run holds: left to it ("busy") when its lock says it makes this
    model's output with these options (or says nothing: an older geogan); refused when it makes another."""
    pid, label = getattr(exc, "owner", None), getattr(exc, "label", None)
    who = f"another geogan run (PID {pid})" if pid else "another geogan run"
    mine = provenance.fingerprint(predictor.expected_output(scene)[1])
    if label and label.startswith("geogan-prediction ") and label != mine:
        raise OutputError(f"{describe(dst)}: being written by {who} with another model or other options; "
                          "use --overwrite once it has finished to replace it")
    note = f"{describe(dst)}: being written by {who}; left to it"
    log.info("%s", note)
    return SceneOutcome(scene.label, dst, BUSY, note=note, seconds=seconds)


def _existing(predictor: Predictor, scene: Scene, dst: Path) -> SceneOutcome:
    """Skip an existing output only when it is complete and this model with these options made it;
    otherwise refuse it with one line (:class:`OutputError`) naming what made it."""
    expected, wanted = predictor.expected_output(scene)
    problem = check_complete(dst, expected)
    if problem is not None:
        raise OutputError(f"{describe(dst)}: exists but is not a complete prediction of this scene ({problem}); "
                          "use --overwrite to replace it")
    why = provenance.refusal(provenance.read_provenance(dst), wanted)
    if why is not None:
        raise OutputError(f"{describe(dst)}: exists, {why}; use --overwrite to replace it")
    stac.write_item(dst, scene, in_collection=True, model=predictor.model)  # a kept output is catalogued too
    return SceneOutcome(scene.label, dst, SKIPPED)


def _output_dir(out: Path) -> list[Path]:
    """Create the output folder; returns the folders this call made (deepest first), to remove if empty."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{describe(out)}: is a file; give a folder for the outputs of several scenes")
    missing = []
    p = out
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
                created.insert(0, d)
            except FileExistsError:  # another run made it meanwhile: theirs, never ours to remove
                pass
        check_writable_dir(out, out)
    except OSError as exc:
        remove_if_empty(created)
        if isinstance(exc, GeoganError):
            raise
        raise OutputError(f"{describe(out)}: cannot create the output folder ({os_reason(exc)})") from None
    return created


def remove_if_empty(created: Sequence[Path]) -> None:
    """Remove folders this run created, deepest first, while they are empty (``rmdir`` only: a folder
    holding anything — an output, another run's lock or temporary file — stays)."""
    for d in created:
        try:
            os.rmdir(d)
        except OSError:
            return


class _SceneProgress:
    """One scene's tile progress, shown as the batch's message; cancelling the batch cancels the scene."""

    def __init__(self, parent: Any, index: int, count: int, name: str) -> None:
        self.parent, self.index, self.count, self.name = parent, index, count, name

    def update(self, done: int, total: int, message: str = "") -> None:
        self.parent.update(self.index, self.count, f"{self.name}: {done}/{total} tiles")

    def cancelled(self) -> bool:
        return self.parent.cancelled()

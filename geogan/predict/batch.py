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
the folders it created (only those, only while empty). Under ``torchrun`` each rank takes its
own share of the scenes (``rank``, ``world_size``); :mod:`geogan.predict.distributed` gathers
the summary.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from .. import provenance, raster
from ..errors import BusyError, Cancelled, ConfigError, GeoganError, OutputError, describe
from ..notices import with_warnings
from ..outputs import check_writable_dir, os_reason
from ..progress import ProgressLike, as_progress
from ..scenes import Scene, SceneLike, expand_scenes
from .core import PredictionResult, PredictOptions, Predictor

log = logging.getLogger(__name__)

WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"
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
    rank: int = 0
    #: The warnings logged while this scene was handled, as the CLI prints them.
    warnings: tuple[str, ...] = ()
    #: Why a "busy" scene was left alone (which live run holds it).
    note: Optional[str] = None

    def describe_failure(self) -> str:
        """The error as one line that names the scene once."""
        error = self.error or "failed"
        return error if describe(self.scene) in error or self.scene in error else f"{describe(self.scene)}: {error}"

    def to_dict(self) -> dict:
        """Plain values (for the summary exchanged between torchrun ranks)."""
        return {"scene": self.scene, "output": str(self.output), "status": self.status, "error": self.error,
                "seconds": self.seconds, "rank": self.rank, "warnings": list(self.warnings), "note": self.note}

    @classmethod
    def from_dict(cls, d: dict) -> "SceneOutcome":
        return cls(scene=d["scene"], output=Path(d["output"]), status=d["status"], error=d.get("error"),
                   seconds=float(d.get("seconds", 0.0)), rank=int(d.get("rank", 0)),
                   warnings=tuple(d.get("warnings", ())), note=d.get("note"))


@dataclass(frozen=True)
class BatchResult:
    """Every scene's outcome, in input order (a torchrun rank's: its own share)."""

    outcomes: tuple[SceneOutcome, ...]
    out_dir: Path
    seconds: float
    rank: int = 0
    world_size: int = 1
    #: Ranks of a torchrun job that failed outright or were lost, one line each (rank 0's merged result).
    rank_problems: tuple[str, ...] = field(default=())
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
        return not self.failed and not self.rank_problems

    def summary(self) -> str:
        """One line: how many scenes were written, skipped and failed, where, in how long."""
        ranks = f" on {self.world_size} ranks" if self.world_size > 1 else ""
        lost = f", {len(self.rank_problems)} rank(s) failed or lost" if self.rank_problems else ""
        busy = f"{len(self.busy)} left to another run, " if self.busy else ""
        return (f"{len(self.outcomes)} scene(s){ranks} in {self.seconds:.1f} s: {len(self.written)} written, "
                f"{len(self.skipped)} skipped (already complete), {busy}{len(self.failed)} failed{lost} → "
                f"{self.out_dir}")

    def rank_lines(self) -> list[str]:
        """Per rank of a torchrun job: what it wrote, skipped and failed."""
        lines = []
        for r in range(self.world_size):
            mine = [o for o in self.outcomes if o.rank == r]
            count = lambda status: sum(o.status == status for o in mine)  # noqa: E731
            busy = f"{count(BUSY)} left to another run, " if count(BUSY) else ""
            lines.append(f"rank {r}: {count(WRITTEN)} written, {count(SKIPPED)} skipped, {busy}{count(FAILED)} failed")
        return lines

    def to_dict(self) -> dict:
        """This rank's outcome as plain values (what a torchrun rank posts for rank 0)."""
        return {"rank": self.rank, "seconds": self.seconds, "outcomes": [o.to_dict() for o in self.outcomes],
                "warnings": list(self.warnings)}


def merge_results(payloads: dict, out_dir: Path, seconds: float) -> BatchResult:
    """Rank 0: the whole job's result from every rank's posted :meth:`BatchResult.to_dict` (None: lost;
    ``{"fatal": message}``: the rank failed outright), outcomes back in input order."""
    world = len(payloads)
    indexed, problems, warnings = [], [], []
    for r in range(world):
        payload = payloads.get(r)
        if payload is None:
            problems.append(f"rank {r} stopped reporting before it finished (its scenes may be missing)")
        elif payload.get("fatal"):
            problems.append(f"rank {r} failed: {payload['fatal']}")
        else:
            warnings.extend(w for w in payload.get("warnings", ()) if w not in warnings)
            for i, o in enumerate(payload.get("outcomes", [])):
                indexed.append((i * world + r, SceneOutcome.from_dict(o)))  # round robin: shard()'s order
    outcomes = tuple(o for _, o in sorted(indexed, key=lambda t: t[0]))
    return BatchResult(outcomes, out_dir, seconds, 0, world, tuple(problems), tuple(warnings))


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


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Rank ``rank``'s share of ``items`` (round robin: the same split on every rank and every rerun)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in a world of {world_size} process(es)")
    return list(items[rank::world_size])


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
                      device: Any = "auto", precision: Any = "auto", rank: int = 0, world_size: int = 1,
                      local_rank: Optional[int] = None, **options: Any) -> BatchResult:
    """Translate many scenes into ``out_dir`` (created if needed), one ``<scene name>.tif`` each.

    ``scenes``: scenes or specs as :func:`geogan.scenes.expand_scenes` takes them (paths,
    comma-joined scenes, ``@list.txt``, globs, folders, GDAL paths). ``options`` are those of
    :func:`~geogan.predict.translate_raster` (direction, bands, tile_size, overlap, batch_size,
    blend, cog, compress, units, ...). Complete outputs are skipped unless ``overwrite``; a scene
    that fails is recorded and the batch goes on; a cancel stops at once. ``progress`` counts
    scenes and shows the current scene's tiles in its message. Returns every scene's outcome;
    under torchrun (``rank`` of ``world_size``) only this rank's share is translated. Each
    outcome's ``warnings`` holds what was logged while its scene was handled, the result's all of
    the call's (the sentences the CLI prints).
    """
    started = time.perf_counter()
    prog = as_progress(progress)
    out = Path(out_dir)
    plan = shard(plan_outputs(expand_scenes(scenes, what="input"), out), rank, world_size)
    created = _output_dir(out)
    try:
        if not plan:  # a torchrun rank with nothing to do (more ranks than scenes) leaves at once
            log.info("rank %d of %d: no scene to translate", rank, world_size)
            return BatchResult((), out, time.perf_counter() - started, rank, world_size)
        predictor = Predictor(model_or_path, PredictOptions(**options), device=device, precision=precision,
                              local_rank=local_rank)
        outcomes = _run_plan(predictor, plan, overwrite, prog, rank)
    finally:
        remove_if_empty(created)  # a batch that wrote nothing leaves no folder it made behind
    return BatchResult(tuple(outcomes), out, time.perf_counter() - started, rank, world_size)


def _run_plan(predictor: Predictor, plan: list[tuple[Scene, Path]], overwrite: bool, prog: Any,
              rank: int) -> list[SceneOutcome]:
    """Each scene in turn, its warnings on its outcome; a cancel stops at once."""
    outcomes = []
    for i, (scene, dst) in enumerate(plan):
        prog.update(i, len(plan), scene.name)
        outcomes.append(_one(predictor, scene, dst, overwrite, _SceneProgress(prog, i, len(plan), scene.name), rank))
        if prog.cancelled():
            raise Cancelled("batch prediction cancelled")
    prog.update(len(plan), len(plan), "done")
    return outcomes


@with_warnings
def _one(predictor: Predictor, scene: Scene, dst: Path, overwrite: bool, progress: Any, rank: int) -> SceneOutcome:
    """Translate one scene of a batch, skip it (complete, same model and options), or leave it to the
    live run that holds its lock; never raises but for a cancel."""
    started = time.perf_counter()
    try:
        if not dst.parent.is_dir():  # another run sharing the folder removed it as empty: make it again
            _output_dir(dst.parent)
        if dst.exists() and not overwrite:
            return _existing(predictor, scene, dst, rank)
        try:
            result = predictor.translate(scene, dst, overwrite=overwrite, progress=progress)
        except BusyError as exc:  # another live run is writing it: its work if it makes what we would
            return _busy(predictor, scene, dst, exc, time.perf_counter() - started, rank)
        except OutputError:
            if overwrite or not dst.exists():
                raise
            return _existing(predictor, scene, dst, rank)  # another run finished it meanwhile
        return SceneOutcome(scene.label, dst, WRITTEN, result=result, seconds=result.seconds, rank=rank)
    except Cancelled:
        raise
    except GeoganError as exc:
        message = str(exc)
    except Exception as exc:  # an unexpected failure of one scene must not end the batch
        message = f"{type(exc).__name__}: {raster.first_line(exc)}"
    outcome = SceneOutcome(scene.label, dst, FAILED, error=message, seconds=time.perf_counter() - started, rank=rank)
    log.warning("scene failed (the batch goes on): %s", outcome.describe_failure())
    return outcome


def _busy(predictor: Predictor, scene: Scene, dst: Path, exc: BusyError, seconds: float, rank: int) -> SceneOutcome:
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
    return SceneOutcome(scene.label, dst, BUSY, note=note, seconds=seconds, rank=rank)


def _existing(predictor: Predictor, scene: Scene, dst: Path, rank: int) -> SceneOutcome:
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
    return SceneOutcome(scene.label, dst, SKIPPED, rank=rank)


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

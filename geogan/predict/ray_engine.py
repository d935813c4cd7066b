"""Many scenes on Ray: an engine that schedules, retries and scales the batch for us.

``translate_rasters(..., engine="ray")`` (``geogan predict ... --engine ray``) hands the scenes
of a batch to a pool of Ray actors, each holding one loaded :class:`~geogan.predict.scene.Predictor`
(the model is loaded once per worker, not once per scene):

* **dynamic scheduling**: an actor takes the next scene as soon as it is free, so scenes of
  different sizes never leave a GPU idle while another still has a queue;
* **retries**: when a worker process dies (SIGKILL, the OOM killer, a preempted node), Ray
  restarts its actor and runs the scene it held again (``max_restarts``/``max_task_retries``).
  Outputs are written to a temporary name and renamed into place once verified, so the dead
  attempt leaves no partial output; its temporary file carries the dead process's id and is
  removed by the retry (:func:`geogan.outputs.remove_stale_temps`);
* **a damaged scene fails alone**: the scene's error is returned as its outcome, not raised, so
  Ray does not retry it and the batch goes on;
* **resumable**: complete outputs of the same model and options are skipped, exactly as the
  in-process engine does (the same per-scene function runs inside the actor).

With no address a local Ray runtime is started with this machine's cores and GPUs (and shut down
at the end); with one (``ray://host:10001``, ``auto``) the batch runs on that cluster, whose
workers must see the model, the inputs and the output folder at the same paths (a shared
filesystem or object-store paths GDAL reads, such as ``/vsis3/``). Ray is an optional extra:
``pip install geogan[ray]``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import Cancelled, ConfigError
from ..scenes import Scene

log = logging.getLogger(__name__)

#: How often the driver looks for a cancel while scenes run (seconds).
POLL_S = 0.5
#: How many times a scene is tried again after its worker process died.
RETRIES = 3
#: Cores one CPU-only actor uses (its torch threads and reader threads); a CPU-only cluster gets
#: ``total cores // this`` actors.
CORES_PER_CPU_WORKER = 4


@dataclass(frozen=True)
class RayPlan:
    """How many actors, with what resources each, and on which device they run."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    device: str


def plan_workers(resources: dict, scenes: int, workers: Optional[int] = None) -> RayPlan:
    """One actor per GPU of the cluster; with no GPU, actors of a few cores each (pure, tested).

    Never more actors than scenes: an actor loads the model, which is wasted without a scene.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        n = gpus if workers is None else workers
        return RayPlan(max(1, min(n, scenes)), 1.0, max(1.0, min(4.0, cpus // max(n, 1))), "cuda")
    per = min(CORES_PER_CPU_WORKER, cpus)
    n = max(1, cpus // per) if workers is None else workers
    return RayPlan(max(1, min(n, scenes)), 0.0, float(max(1, cpus // max(n, 1))), "cpu")


class SceneWorker:
    """A Ray actor's state: one predictor, reused for every scene the actor is given."""

    def __init__(self, model: Any, options: dict, device: str, precision: Any, threads: int) -> None:
        import torch

        from .scene import PredictOptions, Predictor

        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor(model, PredictOptions(**options), device=device, precision=precision)

    def translate(self, scene: Scene, dst: str, overwrite: bool) -> Any:
        """The scene's outcome (with the warnings logged while it ran), as the local engine makes it."""
        from .batch import translate_one

        return translate_one(self.predictor, scene, Path(dst), overwrite)


def run_batch(model_or_path: Any, plan: Sequence[tuple[Scene, Path]], *, overwrite: bool, options: dict,
              device: Any, precision: Any, address: Optional[str], workers: Optional[int],
              progress: Any) -> list[Any]:
    """Every scene's outcome, in ``plan`` order, translated by Ray actors."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address)
    try:
        resources = dict(ray.cluster_resources())
        if str(device) == "cpu":  # asked for the CPU: GPUs in the cluster are not this batch's
            resources.pop("GPU", None)
        layout = plan_workers(resources, len(plan), workers)
        log.info("ray: %d worker(s), %s each", layout.workers,
                 f"{layout.gpus_per_worker:g} GPU" if layout.gpus_per_worker else f"{layout.cpus_per_worker:g} CPU")
        return _Scheduler(ray, model_or_path, layout, options, precision, overwrite).run(plan, progress)
    finally:
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed: pip install 'geogan[ray]'") from None
    return ray


def _init(ray: Any, address: Optional[str]) -> None:
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                  configure_logging=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"--ray-address {address}: cannot connect to a Ray cluster ({exc})") from None


class _Scheduler:
    """The driver's loop: a free actor takes the next scene; outcomes are put back in input order."""

    def __init__(self, ray: Any, model: Any, layout: RayPlan, options: dict, precision: Any,
                 overwrite: bool) -> None:
        self.ray, self.overwrite = ray, overwrite
        actor = ray.remote(num_gpus=layout.gpus_per_worker, num_cpus=layout.cpus_per_worker,
                           max_restarts=RETRIES, max_task_retries=RETRIES)(SceneWorker)
        # Held for the whole batch: a restarted actor is built again from it (Ray drops an object
        # nobody references, and the restart would then fail).
        self.model_ref = ray.put(str(Path(model).resolve()) if isinstance(model, (str, os.PathLike)) else model)
        self.actors = [actor.remote(self.model_ref, options, layout.device, precision, int(layout.cpus_per_worker))
                       for _ in range(layout.workers)]

    def run(self, plan: Sequence[tuple[Scene, Path]], progress: Any) -> list[Any]:
        todo = list(enumerate(plan))[::-1]
        running: dict[Any, tuple[int, Any]] = {}
        outcomes: list[Any] = [None] * len(plan)
        idle = list(self.actors)
        done = 0
        try:
            while todo or running:
                while todo and idle:
                    i, (scene, dst) = todo.pop()
                    actor = idle.pop()
                    running[actor.translate.remote(scene, str(dst), self.overwrite)] = (i, actor)
                ready, _ = self.ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    i, actor = running.pop(ref)
                    outcomes[i] = self._outcome(ref, plan[i])
                    idle.append(actor)
                    done += 1
                    progress.update(done, len(plan), plan[i][0].name)
                if progress.cancelled():
                    raise Cancelled("batch prediction cancelled")
        finally:
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
        return outcomes

    def _outcome(self, ref: Any, item: tuple[Scene, Path]) -> Any:
        """The scene's outcome, its warnings re-logged here; a scene whose retries ran out fails alone."""
        from .batch import FAILED, SceneOutcome

        try:
            outcome = self.ray.get(ref)
        except Exception as exc:  # the actor died more often than it may be restarted
            scene, dst = item
            error = f"{scene.label}: the Ray worker translating it died {RETRIES + 1} times ({type(exc).__name__})"
            log.warning("scene failed (the batch goes on): %s", error)
            return SceneOutcome(scene.label, dst, FAILED, error=error)
        for message in outcome.warnings:  # logged in the actor: logged again here, for the CLI and the result
            log.warning("%s", message)
        return outcome


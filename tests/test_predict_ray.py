"""Many scenes on Ray (a local runtime): the same outputs as the in-process engine, a killed worker
costs no scene, a damaged scene fails alone, a rerun skips complete outputs. CI installs the
``ray`` extra, so nothing here is skipped there."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from conftest import save_tiny_sar_to_rgb_model, scene, write_raster
from geogan.errors import ConfigError
from geogan.outputs import TEMP_MARK
from geogan.predict import translate_rasters
from geogan.predict.ray_engine import plan_workers

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'geogan[ray]')")

OPTS = dict(tile_size=32, overlap=8, device="cpu")


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (starting one takes seconds); the engine uses it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def model_file(tmp_path):
    return save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")


def sar(path: Path, shape=(40, 48), seed=0, nodata_corner: bool = False) -> Path:
    data = (10 ** (scene(shape, lo=-20, hi=0, seed=seed) / 10)).astype(np.float32)
    if nodata_corner:
        data[:, :10, :12] = np.nan
    return write_raster(path, data, nodata=float("nan") if nodata_corner else None)


def scenes_in(directory: Path, n: int = 3, shape=(40, 48)) -> list[Path]:
    directory.mkdir(exist_ok=True)
    return [sar(directory / f"s{i}.tif", shape=shape, seed=i, nodata_corner=i == 1) for i in range(n)]


def read_all(path: Path) -> tuple:
    with rasterio.open(path) as ds:
        return ds.read(), ds.read_masks(), ds.crs, ds.transform, ds.nodata, ds.dtypes


def debris(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------- pure

def test_one_worker_per_gpu_and_never_more_than_scenes():
    assert plan_workers({"GPU": 4, "CPU": 32}, scenes=10).workers == 4
    assert plan_workers({"GPU": 4, "CPU": 32}, scenes=10).device == "cuda"
    assert plan_workers({"GPU": 4, "CPU": 32}, scenes=2).workers == 2
    cpu = plan_workers({"CPU": 2}, scenes=5)
    assert (cpu.workers, cpu.gpus_per_worker, cpu.cpus_per_worker, cpu.device) == (1, 0.0, 2.0, "cpu")
    assert plan_workers({"CPU": 16}, scenes=9).workers == 4
    assert plan_workers({"CPU": 16}, scenes=9, workers=2).cpus_per_worker == 8.0


def test_an_unknown_engine_is_one_line(tmp_path, model_file):
    with pytest.raises(ConfigError, match="engine"):
        translate_rasters(model_file, scenes_in(tmp_path / "in", 1), tmp_path / "out", engine="spark", **OPTS)


# --------------------------------------------------------------------------- on a local runtime

def test_ray_matches_the_in_process_engine(tmp_path, model_file, ray_runtime):
    inputs = scenes_in(tmp_path / "in")
    local = translate_rasters(model_file, inputs, tmp_path / "local", **OPTS)
    on_ray = translate_rasters(model_file, inputs, tmp_path / "ray", engine="ray", **OPTS)
    assert local.ok and on_ray.ok
    assert [o.status for o in on_ray.outcomes] == ["written"] * 3
    assert [o.scene for o in on_ray.outcomes] == [o.scene for o in local.outcomes]
    for a, b in zip(local.outcomes, on_ray.outcomes):
        got, want = read_all(b.output), read_all(a.output)
        np.testing.assert_array_equal(got[0], want[0])  # pixels
        np.testing.assert_array_equal(got[1], want[1])  # masks
        assert got[2:] == want[2:]  # CRS, transform, nodata, dtypes
    assert debris(tmp_path / "ray") == []


def test_a_rerun_on_ray_skips_complete_outputs(tmp_path, model_file, ray_runtime):
    inputs = scenes_in(tmp_path / "in", 2)
    first = translate_rasters(model_file, inputs, tmp_path / "out", engine="ray", **OPTS)
    stamps = [o.output.stat().st_mtime_ns for o in first.outcomes]
    again = translate_rasters(model_file, inputs, tmp_path / "out", engine="ray", **OPTS)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert [o.output.stat().st_mtime_ns for o in again.outcomes] == stamps


def test_a_damaged_scene_fails_alone(tmp_path, model_file, ray_runtime):
    inputs = scenes_in(tmp_path / "in", 2)
    broken = tmp_path / "in" / "broken.tif"
    broken.write_bytes(inputs[0].read_bytes()[:300])  # a truncated GeoTIFF
    result = translate_rasters(model_file, [inputs[0], broken, inputs[1]], tmp_path / "out", engine="ray", **OPTS)
    assert [o.status for o in result.outcomes] == ["written", "failed", "written"]
    assert not result.ok
    assert "broken.tif" in result.outcomes[1].describe_failure()
    assert "\n" not in result.outcomes[1].describe_failure()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["s0.tif", "s1.tif"]


class _KillFirstWriter:
    """Watches the output folder and SIGKILLs the process that writes the first temporary output
    it sees (the PID is in geogan's temporary names): a Ray worker dying mid-scene."""

    def __init__(self, out: Path) -> None:
        self.out, self.killed = out, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        from geogan.outputs import temp_owner

        while not self.stop.is_set() and self.killed is None:
            for p in self.out.iterdir() if self.out.exists() else ():
                pid = next((temp_owner(p.name, t) for t in ("s0.tif", "s1.tif", "s2.tif")
                            if temp_owner(p.name, t)), None)
                if pid and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            self.stop.wait(0.005)


def test_a_killed_worker_costs_no_scene_and_leaves_no_debris(tmp_path, model_file, ray_runtime):
    inputs = scenes_in(tmp_path / "in", 3, shape=(900, 900))  # long enough to be caught writing
    out = tmp_path / "out"
    killer = _KillFirstWriter(out)
    killer.thread.start()
    try:
        result = translate_rasters(model_file, inputs, out, engine="ray", **OPTS)
    finally:
        killer.stop.set()
        killer.thread.join()
    assert killer.killed is not None, "no worker was seen writing"
    assert result.ok, [o.error for o in result.outcomes]
    assert [o.status for o in result.outcomes] == ["written"] * 3
    assert debris(out) == [] and sorted(p.name for p in out.glob("*.tif")) == ["s0.tif", "s1.tif", "s2.tif"]
    assert sorted(p.name for p in out.glob("*.json")) == ["collection.json", "s0.json", "s1.json", "s2.json"]
    reference = translate_rasters(model_file, inputs[:1], tmp_path / "ref", **OPTS)
    np.testing.assert_array_equal(read_all(out / "s0.tif")[0], read_all(reference.outcomes[0].output)[0])


def test_the_cli_runs_a_batch_on_ray(tmp_path, model_file, ray_runtime):
    from click.testing import CliRunner

    from geogan.cli import cli

    inputs = scenes_in(tmp_path / "in", 2)
    listing = tmp_path / "scenes.txt"
    listing.write_text("\n".join(str(p) for p in inputs) + "\n")
    res = CliRunner().invoke(cli, ["predict", str(model_file), f"@{listing}", f"{tmp_path / 'out'}/",
                                   "--engine", "ray", "--tile-size", "32", "--overlap", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "2 written" in res.stderr or "2 written" in res.output
    assert TEMP_MARK not in "".join(p.name for p in (tmp_path / "out").iterdir())

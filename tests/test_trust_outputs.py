"""Outputs a user can trust (issue 20, and issue 21's cooperating batches): provenance tags in every
prediction, a resumed batch that keeps only this model's outputs, evaluate and inspect showing
what made a prediction, no empty folder left by a batch that wrote nothing, a damaged model file
called damaged, locks and liveness that are safe on Windows (simulated here), and two batches
sharing a folder without calling each other's scenes failures."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import geogan_env, run_geogan, save_tiny_sar_to_rgb_model, scene, write_raster
from geogan import errors, outputs, provenance
from geogan.evaluate import evaluate_rasters
from geogan.modelfile import TranslationModel, file_sha256, load_model, model_digest, save_model
from geogan.predict import translate_raster, translate_rasters

OPTS = dict(tile_size=32, overlap=8, device="cpu")


def sar(path: Path, shape=(40, 48), seed=0) -> Path:
    return write_raster(path, (10 ** (scene(shape, lo=-20, hi=0, seed=seed) / 10)).astype(np.float32))


@pytest.fixture
def model_a(tmp_path) -> Path:
    return save_tiny_sar_to_rgb_model(tmp_path / "model_a.geogan")


@pytest.fixture
def model_b(tmp_path, model_a) -> Path:
    """Another model of the same shape: the same network with one weight tensor changed."""
    m = load_model(model_a)
    with torch.no_grad():
        next(m.generators["a2b"].parameters()).add_(0.25)
    return save_model(m, tmp_path / "model_b.geogan")


@pytest.fixture
def scenes(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        sar(d / f"s{i}.tif", seed=i)
    return d


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --------------------------------------------------------------------------- provenance tags

def test_every_prediction_carries_its_provenance_and_it_reads_back(tmp_path, model_a, scenes):
    for cog in (False, True):
        dst = tmp_path / f"o{int(cog)}.tif"
        result = translate_raster(model_a, scenes / "s0.tif", dst, cog=cog, blend="linear", **OPTS)
        tags = provenance.read_provenance(dst)
        assert tags == dict(result.provenance)
        assert tags["GEOGAN_MODEL_SHA256"] == file_sha256(model_a) and tags["GEOGAN_MODEL_FILE"] == "model_a.geogan"
        assert tags["GEOGAN_MODEL_DIGEST"] == model_digest(load_model(model_a))
        assert (tags["GEOGAN_DIRECTION"], tags["GEOGAN_SOURCE_BANDS"]) == ("a2b", "1,2")
        assert (tags["GEOGAN_SOURCE_UNITS"], tags["GEOGAN_UNITS_OPTION"]) == ("linear", "auto")
        assert (tags["GEOGAN_TILE_SIZE"], tags["GEOGAN_OVERLAP"], tags["GEOGAN_BLEND"]) == ("32", "8", "linear")
        assert (tags["GEOGAN_TTA_ORIENTATIONS"], tags["GEOGAN_PRECISION"]) == ("1", "fp32")
        assert tags["GEOGAN_VERSION"] and tags["GEOGAN_SCENE"].endswith("s0.tif")


def test_a_model_in_memory_is_named_by_its_digest_and_changed_weights_drop_the_file_hash(tmp_path, model_a, scenes):
    loaded = load_model(model_a)
    same = translate_raster(loaded, scenes / "s0.tif", tmp_path / "loaded.tif", **OPTS).provenance
    assert same["GEOGAN_MODEL_SHA256"] == file_sha256(model_a)  # as loaded from the file, weights unchanged
    with torch.no_grad():
        next(loaded.generators["a2b"].parameters()).mul_(2)
    changed = translate_raster(loaded, scenes / "s0.tif", tmp_path / "changed.tif", **OPTS).provenance
    assert "GEOGAN_MODEL_SHA256" not in changed and "GEOGAN_MODEL_FILE" not in changed
    assert changed["GEOGAN_MODEL_DIGEST"] == model_digest(loaded) != same["GEOGAN_MODEL_DIGEST"]
    built = TranslationModel(loaded.domains, loaded.generators, loaded.architecture)
    assert model_digest(built) == changed["GEOGAN_MODEL_DIGEST"]  # the digest ignores where a model came from
    assert provenance.describe_model(changed).startswith("a model built in memory, digest ")


def test_which_tags_must_match_is_decided_by_the_pure_functions():
    model = {provenance.DIGEST: "d" * 64, provenance.SHA256: "f" * 64, provenance.FILE: "m.geogan"}
    base = dict(direction="a2b", source_bands=[1, 2], units_option=None, units="db", source_kind="sar",
                target_kind="optical", tile_size=256, overlap=64, blend="hann", tta_orientations=1,
                precision="bf16", version="1", scene="x.tif")
    wanted = provenance.prediction_provenance(model, **base)
    assert provenance.refusal(wanted, wanted) is None
    # recorded, not compared: precision (a device's), inferred units, version, scene
    other_device = provenance.prediction_provenance(model, **{**base, "precision": "fp32", "units": "linear",
                                                              "version": "2", "scene": "y.tif"})
    assert provenance.refusal(other_device, wanted) is None
    # same file bytes: the same model even when a newer geogan computes the digest differently
    assert provenance.refusal({**wanted, provenance.DIGEST: "e" * 64}, wanted) is None
    other = provenance.prediction_provenance({provenance.DIGEST: "a" * 64, provenance.SHA256: "b" * 64,
                                              provenance.FILE: "old.geogan"}, **base)
    assert provenance.refusal(other, wanted) == ("made by another model (sha256 bbbbbbbbbbbb, old.geogan; this "
                                                 "run's is sha256 ffffffffffff, m.geogan)")
    options = provenance.prediction_provenance(model, **{**base, "overlap": 32, "units_option": "db"})
    assert provenance.refusal(options, wanted) == ("made by this model with other options (stated units db, "
                                                   "not auto; overlap 32, not 64)")
    assert "records no geogan provenance" in provenance.refusal({"GEOGAN_VERSION": "0.1"}, wanted)


# --------------------------------------------------------------------------- resuming a batch

def test_a_batch_over_another_models_outputs_refuses_them_and_overwrite_replaces_them(tmp_path, model_a, model_b,
                                                                                       scenes):
    out = tmp_path / "out"
    assert translate_rasters(model_a, [str(scenes)], out, **OPTS).ok
    before = contents(out)
    result = translate_rasters(model_b, [str(scenes)], out, **OPTS)
    assert not result.ok and [o.status for o in result.outcomes] == ["failed", "failed"]
    assert contents(out) == before  # A's outputs untouched
    short = file_sha256(model_a)[:12]
    for o in result.failed:
        line = o.describe_failure()
        assert "\n" not in line and "made by another model" in line and short in line and "model_a.geogan" in line
        assert "--overwrite" in line and o.output.name in line
    replaced = translate_rasters(model_b, [str(scenes)], out, overwrite=True, **OPTS)
    assert replaced.ok and [o.status for o in replaced.outcomes] == ["written", "written"]
    assert provenance.read_provenance(out / "s0.tif")["GEOGAN_MODEL_FILE"] == "model_b.geogan"
    assert contents(out) != before


def test_same_model_same_options_is_skipped_other_options_are_refused(tmp_path, model_a, scenes):
    out = tmp_path / "out"
    translate_rasters(model_a, [str(scenes)], out, **OPTS)
    before = contents(out)
    # the model object loaded from the same file; compression changes no pixel
    again = translate_rasters(load_model(model_a), [str(scenes)], out, compress="zstd", **OPTS)
    assert again.ok and [o.status for o in again.outcomes] == ["skipped", "skipped"]
    other = translate_rasters(model_a, [str(scenes)], out, **{**OPTS, "overlap": 4})
    assert not other.ok and all("other options (overlap 8, not 4)" in o.error for o in other.failed)
    resaved = load_model(model_a)  # the same weights in another file (a training summary added)
    resaved.training = {"config": {"augment": "flips"}}
    resaved = save_model(resaved, tmp_path / "resaved.geogan")
    assert file_sha256(resaved) != file_sha256(model_a)
    same = translate_rasters(resaved, [str(scenes)], out, **OPTS)
    assert [o.status for o in same.outcomes] == ["skipped", "skipped"]  # same digest: the same model
    tta = translate_rasters(resaved, [str(scenes)], out, tta=True, **OPTS)
    assert not tta.ok and all("other options (TTA orientations 1, not 4)" in o.error for o in tta.failed)
    assert contents(out) == before


def test_outputs_without_provenance_are_refused_not_kept(tmp_path, model_a, scenes):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(2):  # complete 3-band uint8 rasters of the right size: what an older geogan wrote
        write_raster(out / f"s{i}.tif", np.full((3, 40, 48), 7, np.uint8), nodata=0)
    before = contents(out)
    result = translate_rasters(model_a, [str(scenes)], out, **OPTS)
    assert not result.ok and all("records no geogan provenance" in o.error and "--overwrite" in o.error
                                 for o in result.failed)
    assert contents(out) == before


def test_cli_batch_over_another_models_outputs_exits_1_and_evaluate_and_inspect_show_provenance(tmp_path, model_a,
                                                                                                model_b, scenes):
    out = tmp_path / "out"
    args = ["--tile-size", "32", "--overlap", "8", "--device", "cpu"]
    assert run_geogan("predict", model_a, scenes, f"{out}/", *args).returncode == 0
    before = contents(out)
    res = run_geogan("predict", model_b, scenes, f"{out}/", *args)
    assert res.returncode == 1 and "0 written, 0 skipped (already complete), 2 failed" in res.stdout
    errors_ = [line for line in res.stderr.splitlines() if line.startswith("geogan: error:")]
    assert len(errors_) == 2 and all("made by another model" in e and "model_a.geogan" in e for e in errors_)
    assert contents(out) == before
    ev = run_geogan("evaluate", out / "s0.tif", out / "s1.tif")
    assert ev.returncode == 0 and f"made by model sha256 {file_sha256(model_a)[:12]}, model_a.geogan" in ev.stdout
    assert "direction a2b: sar bands 1,2 -> optical" in ev.stdout
    shown = run_geogan("inspect", out / "s0.tif")
    assert shown.returncode == 0 and "tiles 32 px, overlap 8, blend hann" in shown.stdout
    model_info = json.loads(run_geogan("inspect", "--json", model_b).stdout)
    assert model_info["kind"] == "model" and model_info["sha256"] == file_sha256(model_b)
    assert model_info["domains"]["a"]["kind"] == "sar"


def test_the_evaluation_report_carries_the_predictions_provenance(tmp_path, model_a, scenes):
    pred = translate_raster(model_a, scenes / "s0.tif", tmp_path / "p.tif", **OPTS)
    report = evaluate_rasters(pred, pred)
    assert report.provenance == dict(pred.provenance) and report.to_dict()["provenance"]["GEOGAN_DIRECTION"] == "a2b"
    plain = evaluate_rasters(scenes / "s0.tif", scenes / "s0.tif")
    assert plain.provenance == {} and any("none recorded" in line for line in plain.lines())


# --------------------------------------------------------------------------- no empty folder left behind

def test_a_batch_that_writes_nothing_removes_the_folders_it_created_and_only_those(tmp_path, model_a):
    d = tmp_path / "in"
    d.mkdir()
    (d / "bad.tif").write_bytes(b"II*\x00 not a tiff")
    fresh = tmp_path / "new" / "deeper"
    result = translate_rasters(model_a, [str(d)], fresh, **OPTS)
    assert not result.ok and not (tmp_path / "new").exists()
    with pytest.raises(errors.ModelFileError):  # fails before any scene: the model is missing
        translate_rasters(tmp_path / "missing.geogan", [str(d)], fresh, **OPTS)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert not translate_rasters(model_a, [str(d)], kept, **OPTS).ok
    assert kept.is_dir() and list(kept.iterdir()) == []
    parent = tmp_path / "parent"
    parent.mkdir()
    translate_rasters(model_a, [str(d)], parent / "made", **OPTS)
    assert parent.is_dir() and not (parent / "made").exists()


def test_the_cli_leaves_no_empty_folder_after_a_batch_that_fails_on_its_inputs(tmp_path, model_a):
    for name in ("bad1.tif", "bad2.tif"):
        (tmp_path / name).write_bytes(b"not a raster")
    res = run_geogan("predict", model_a, tmp_path / "bad1.tif", tmp_path / "bad2.tif", f"{tmp_path / 'out'}/",
                     "--device", "cpu")
    assert res.returncode == 1 and "2 failed" in res.stdout and not (tmp_path / "out").exists()
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"{tmp_path / 'gone1.tif'}\n{tmp_path / 'gone2.tif'}\n")
    res = run_geogan("predict", model_a, f"@{listing}", f"{tmp_path / 'out'}/", "--device", "cpu")
    assert res.returncode == 1 and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- damaged model files

def test_flipped_bytes_in_the_pickle_are_called_damaged_naming_the_file(tmp_path, model_a):
    data = model_a.read_bytes()
    with zipfile.ZipFile(model_a) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    verdicts = set()
    for off in range(start, start + info.file_size, max(1, info.file_size // 60)):
        broken = bytearray(data)
        broken[off] ^= 0x20
        path = tmp_path / "broken.geogan"
        path.write_bytes(bytes(broken))
        try:
            load_model(path)
            verdicts.add("loaded")  # a byte that changes no value (the checksums still match)
        except errors.ModelFileError as exc:
            message = str(exc)
            assert message.startswith(f"'{path}': model file is damaged"), message
            assert "Python objects" not in message and "\n" not in message
            verdicts.add("crc" if "fails its CRC-32 check" in message else "other damage")
    assert "crc" in verdicts


class Foreign:
    """An object no geogan model file holds."""


def test_an_intact_foreign_pickle_is_still_told_apart_from_damage(tmp_path):
    foreign = tmp_path / "foreign.geogan"
    torch.save({"format": "geogan-model", "x": Foreign()}, foreign)
    with pytest.raises(errors.ModelFileError) as info:
        load_model(foreign)
    assert "holds Python objects" in str(info.value) and "damaged" not in str(info.value)


# --------------------------------------------------------------------------- Windows, simulated

class FakeKernel32:
    """OpenProcess / GetExitCodeProcess / CloseHandle as Windows answers them for one PID."""

    def __init__(self, handle: int, exit_code: int = 259, error: int = 0) -> None:
        self.handle, self.exit_code, self.error, self.closed = handle, exit_code, error, []

    def OpenProcess(self, access, inherit, pid):  # noqa: N802 (the Windows API's names)
        assert access == 0x1000 and inherit is False
        return self.handle

    def GetExitCodeProcess(self, handle, code_ref):  # noqa: N802
        code_ref._obj.value = self.exit_code
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.closed.append(handle)
        return 1


@pytest.fixture
def windows(monkeypatch):
    """sys.platform reads win32 and os.kill must not be called (on Windows it terminates the process)."""
    def no_kill(*args):
        raise AssertionError("os.kill called on Windows")

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "kill", no_kill)

    def use(k32: FakeKernel32) -> FakeKernel32:
        monkeypatch.setattr(outputs, "_kernel32", lambda: k32)
        monkeypatch.setattr(outputs, "_last_error", lambda: k32.error)
        return k32

    return use


@pytest.mark.parametrize("k32, alive", [
    (FakeKernel32(handle=0, error=87), False),          # ERROR_INVALID_PARAMETER: no such process
    (FakeKernel32(handle=0, error=5), True),            # ERROR_ACCESS_DENIED: exists, not ours
    (FakeKernel32(handle=42, exit_code=259), True),     # STILL_ACTIVE
    (FakeKernel32(handle=42, exit_code=0), False),      # exited, someone still holds a handle
])
def test_liveness_on_windows_asks_openprocess_never_a_signal(windows, k32, alive):
    k32 = windows(k32)
    assert outputs.pid_alive(4711) is alive
    assert k32.closed == ([42] if k32.handle else [])


def test_debris_of_a_gone_process_is_removed_on_windows_and_a_live_ones_kept(tmp_path, windows):
    windows(FakeKernel32(handle=0, error=87))
    gone = tmp_path / ".out.tif.geogan-4711-ab12cd34.part.tif"
    gone.write_bytes(b"debris")
    assert outputs.remove_stale_temps(tmp_path / "out.tif") == [gone] and not gone.exists()
    windows(FakeKernel32(handle=42, exit_code=259))
    live = tmp_path / ".out.tif.geogan-4712-ab12cd34.part.tif"
    live.write_bytes(b"being written")
    assert outputs.remove_stale_temps(tmp_path / "out.tif") == [] and live.exists()


@pytest.mark.parametrize("raised, alive", [(ProcessLookupError, False), (PermissionError, True),
                                           (OverflowError, False), (None, True)])
def test_liveness_on_posix_is_signal_zero(monkeypatch, raised, alive):
    monkeypatch.setattr(sys, "platform", "linux")
    calls = []

    def kill(pid, sig):
        calls.append((pid, sig))
        if raised is not None:
            raise raised()

    monkeypatch.setattr(os, "kill", kill)
    assert outputs.pid_alive(4711) is alive and calls == [(4711, 0)]


def test_locks_go_through_filelock_and_the_owner_is_readable_past_the_locked_byte(tmp_path, monkeypatch):
    target = tmp_path / "out.tif"
    with outputs.OutputLock(target, "prediction") as lock:
        raw = lock.path.read_bytes()
        assert raw[:1] == b" " and raw.strip() == str(os.getpid()).encode()  # byte 0 is what Windows locks
        monkeypatch.setattr(outputs, "lock_descriptor", lambda fd, blocking: False)  # as held by someone else
        with pytest.raises(errors.BusyError, match=rf"in use by another geogan process \(PID {os.getpid()}\)"):
            outputs.OutputLock(target, "prediction").acquire()

    def no_locks(fd, blocking):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(outputs, "lock_descriptor", no_locks)
    with pytest.raises(errors.OutputError, match=r"cannot lock the prediction \(No locks available\)$"):
        outputs.OutputLock(target, "prediction").acquire()
    assert list(tmp_path.iterdir()) == [tmp_path / ".out.tif.geogan.lock"] or not list(tmp_path.iterdir())


def test_a_lock_released_where_open_files_cannot_be_unlinked_is_still_removed(tmp_path, monkeypatch):
    lock = outputs.OutputLock(tmp_path / "out.tif", "prediction").acquire()
    real_unlink, tries = os.unlink, []

    def windows_unlink(path, *args, **kwargs):  # Windows: an open file cannot be deleted
        tries.append(lock._fd)
        if lock._fd is not None or len(tries) == 1:
            raise PermissionError(errno.EACCES, "The process cannot access the file")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", windows_unlink)
    lock.release()
    assert len(tries) == 2 and not lock.path.exists()


# --------------------------------------------------------------------------- batches sharing a folder

HOLDER = """
import sys, time
from geogan.outputs import OutputLock
lock = OutputLock(sys.argv[1], "prediction", label=sys.argv[2] if len(sys.argv) > 2 else None).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold(path: Path, *label: str) -> subprocess.Popen:
    """Another live geogan process holding the output lock of ``path`` (as a run writing it does)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *label], stdout=subprocess.PIPE,
                            env=geogan_env())
    assert proc.stdout.readline().strip() == b"locked"
    return proc


@pytest.fixture
def held(tmp_path):
    """OUT/s0.tif locked by a live process whose lock says nothing of what it makes (an older geogan)."""
    out = tmp_path / "out"
    out.mkdir()
    proc = hold(out / "s0.tif")
    yield out, proc
    proc.kill()
    proc.wait()


def fingerprint_of(model: Path, src: Path) -> str:
    from geogan.predict import PredictOptions, Predictor

    predictor = Predictor(model, PredictOptions(tile_size=32, overlap=8), device="cpu")
    return provenance.fingerprint(predictor.expected_output(src)[1])


def test_a_scene_another_run_writes_with_another_model_is_a_conflict_not_left_to_it(tmp_path, model_a, model_b,
                                                                                      scenes):
    out = tmp_path / "out"
    out.mkdir()
    for holder_model, status in ((model_a, "busy"), (model_b, "failed")):
        holder = hold(out / "s0.tif", fingerprint_of(holder_model, scenes / "s0.tif"))
        try:
            result = translate_rasters(model_a, [str(scenes / "s0.tif")], out, **OPTS)
        finally:
            holder.kill()
            holder.wait()
        assert [o.status for o in result.outcomes] == [status] and result.ok is (status == "busy")
    assert f"being written by another geogan run (PID {holder.pid}) with another model or other options" in \
        result.failed[0].error and "--overwrite once it has finished" in result.failed[0].error


def test_a_running_prediction_says_in_its_lock_what_it_makes(tmp_path, model_a, scenes):
    dst = tmp_path / "o.tif"
    seen = []

    class Peek:
        def update(self, done, total, message=""):
            seen.append((tmp_path / ".o.tif.geogan.lock").read_text().splitlines())

        def cancelled(self):
            return False

    translate_raster(model_a, scenes / "s0.tif", dst, progress=Peek(), **OPTS)
    assert seen and seen[0] == [f" {os.getpid()}", fingerprint_of(model_a, scenes / "s0.tif")]
    assert not (tmp_path / ".o.tif.geogan.lock").exists()


def test_a_scene_another_live_run_is_writing_is_left_to_it_not_failed(tmp_path, model_a, scenes, held):
    out, holder = held
    result = translate_rasters(model_a, [str(scenes)], out, **OPTS)
    assert [o.status for o in result.outcomes] == ["busy", "written"] and result.ok and not result.failed
    assert f"being written by another geogan run (PID {holder.pid}); left to it" in result.busy[0].note
    assert "1 written, 0 skipped (already complete), 1 left to another run, 0 failed" in result.summary()
    assert not (out / "s0.tif").exists()
    holder.kill()
    holder.wait()
    again = translate_rasters(model_a, [str(scenes)], out, **OPTS)  # the holder is gone: its scene is ours now
    assert [o.status for o in again.outcomes] == ["written", "skipped"] and again.ok


def test_cli_batches_sharing_a_folder_exit_0_with_a_note(tmp_path, model_a, scenes, held):
    out, holder = held
    res = run_geogan("predict", model_a, scenes, f"{out}/", "--tile-size", "32", "--overlap", "8", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "1 left to another run, 0 failed" in res.stdout
    assert f"being written by another geogan run (PID {holder.pid}); left to it" in res.stdout
    assert "error" not in res.stderr


def test_a_folder_another_run_removed_as_empty_is_made_again(tmp_path, model_a, scenes, monkeypatch):
    """Run 1 made OUT and wrote nothing (it removes OUT) while run 2, which found OUT there, was still
    loading its model: run 2's scenes must not fail for want of the folder."""
    from geogan.predict import batch

    out = tmp_path / "out"
    real = batch.Predictor

    def slow_start(*args, **kwargs):  # run 1 finishes between run 2's folder check and its first scene
        predictor = real(*args, **kwargs)
        out.rmdir()
        return predictor

    monkeypatch.setattr(batch, "Predictor", slow_start)
    result = translate_rasters(model_a, [str(scenes)], out, **OPTS)
    assert result.ok and [o.status for o in result.outcomes] == ["written", "written"]

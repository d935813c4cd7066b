"""Model files and checkpoints that are damaged, foreign or malformed: one line each, never loaded silently."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAINING, largest_zip_record, make_chips, make_spec

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(tmp_path: Path) -> Path:
    """A small real model file (no training needed: the networks as initialised)."""
    from geogan.modelfile import TranslationModel, save_model
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    nets = {"a2b": build_generator("resnet_6blocks", 2, 3, ngf=4), "b2a": build_generator("resnet_6blocks", 3, 2, ngf=4)}
    arch = {"model": "cyclegan", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "upsample": "transpose",
            "size_multiple": 4, "tile_size": 32}
    domains = {"a": make_spec("sar", 2), "b": make_spec("optical", 3, "uint8")}
    return save_model(TranslationModel(domains, nets, arch, {"epochs": 1}), tmp_path / "model.geogan")


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


def _rewrite(path: Path, mutate) -> Path:
    payload = torch.load(path, weights_only=True)
    mutate(payload)
    torch.save(payload, path)
    return path


def test_one_flipped_byte_in_the_weights_is_refused(tmp_path):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    path = _model(tmp_path)
    before = load_model(path).translate(np.full((2, 32, 32), 0.01, np.float32), "a2b")
    offset, size = largest_zip_record(path)
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)  # torch itself reads it without complaint
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert "damaged" in _one_line(info) and "weights" in str(info.value) and "sha256" in str(info.value)
    assert before.shape == (3, 32, 32)


def test_edited_metadata_is_refused(tmp_path):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    path = _rewrite(_model(tmp_path), lambda p: p["domains"]["b"]["stats"][0].update(p98=9999.0))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert "metadata" in _one_line(info)


@pytest.mark.parametrize("version", [0, -5, "1", 1.0, True, None])
def test_format_version_must_be_a_positive_integer(tmp_path, version):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    path = _rewrite(_model(tmp_path), lambda p: p.update(format_version=version))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert "format_version" in _one_line(info) and "positive integer" in str(info.value)


def test_unsupported_dtypes_and_malformed_entries_are_one_line(tmp_path):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    def unsigned(p):  # no checksum: these test the validation, not the checksum
        p.pop("checksum")

    cases = {
        "complex64": lambda p: p["domains"]["b"].update(dtype="complex64"),
        "int8": lambda p: p["domains"]["a"].update(dtype="int8"),
        "kind": lambda p: p["domains"]["a"].update(kind="radar"),
        "stats": lambda p: p["domains"]["a"].update(stats="none"),
        "generators": lambda p: p.update(generators=[1, 2]),
        "direction": lambda p: p["generators"].update(c2d={}),
        "weight dtype": lambda p: p["generators"]["a2b"].update({"model.1.weight": torch.zeros(3, dtype=torch.int64)}),
        "architecture": lambda p: p["architecture"].update(ngf="64"),
        "generator": lambda p: p["architecture"].update(generator="unet_9000"),
        "domain missing": lambda p: p["domains"].pop("b"),
    }
    for name, mutate in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path = _rewrite(_model(folder), lambda p: (unsigned(p), mutate(p)))
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        text = _one_line(info)
        assert "model.geogan" in text, (name, text)


def test_complex64_target_names_the_dtype(tmp_path):
    from geogan.errors import ModelFileError
    from geogan.modelfile import load_model

    path = _rewrite(_model(tmp_path), lambda p: (p.pop("checksum"), p["domains"]["b"].update(dtype="complex64")))
    with pytest.raises(ModelFileError, match="complex64") as info:
        load_model(path)
    assert "domain B" in _one_line(info)


def test_a_plain_pickle_is_not_a_model_file(tmp_path):
    from geogan.errors import CheckpointError, ModelFileError
    from geogan.modelfile import load_model
    from geogan.trainer import load_checkpoint

    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"format": "geogan-model", "weights": [1, 2, 3]}))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert _one_line(info).endswith("not a geogan model file (not a PyTorch archive)")
    assert "weights_only" not in str(info.value) and "PyTorch 2.6" not in str(info.value)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "not a geogan training checkpoint" in _one_line(info)


def test_a_model_file_without_a_checksum_still_loads(tmp_path, caplog):
    from geogan.modelfile import load_model

    path = _rewrite(_model(tmp_path), lambda p: p.pop("checksum"))
    with caplog.at_level(logging.DEBUG, logger="geogan"):
        model = load_model(path)
    assert model.directions == ["a2b", "b2a"]
    assert any("no checksum" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_saved_files_carry_verifiable_checksums(tmp_path):
    from geogan.modelfile import payload_checksum, payload_digest

    payload = torch.load(_model(tmp_path), weights_only=True)
    assert payload["checksum"] == payload_checksum(payload)
    assert payload["checksum"]["algorithm"] == "sha256" and len(payload["checksum"]["weights"]) == 64
    # the digest is of values, not of pickling: equal content, equal digest; any change, another
    assert payload_digest({"b": [1, (2.5, "x")], "a": torch.ones(2)}) == payload_digest({"a": torch.ones(2),
                                                                                         "b": [1, (2.5, "x")]})
    assert payload_digest({"a": torch.ones(2)}) != payload_digest({"a": torch.ones(2, dtype=torch.float64)})


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
@pytest.fixture
def trained(tmp_path):
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    cfg = dict(TINY_TRAINING, data=str(chips), out=str(tmp_path / "run"))
    train(cfg)
    return cfg, tmp_path / "run" / "checkpoint.pt"


@pytest.mark.parametrize("damage", [
    ("missing", lambda ck: ck.pop("iteration"), "missing 'iteration'"),
    ("wrong type", lambda ck: ck.update(epoch="1"), "'epoch' is a str"),
    ("bool counter", lambda ck: ck.update(iteration=True), "'iteration' is a bool"),
    ("ranks", lambda ck: ck.update(ranks=[]), "ranks"),
    ("model keys", lambda ck: ck["model"].pop("optimizers"), "missing 'optimizers'"),
    ("negative", lambda ck: ck.update(batch_in_epoch=-1), "negative"),
    ("version", lambda ck: ck.update(format_version="1"), "positive integer"),
], ids=lambda d: d[0] if isinstance(d, tuple) else str(d))
def test_a_malformed_checkpoint_is_one_line(trained, damage):
    from geogan.errors import CheckpointError
    from geogan.trainer import train

    cfg, path = trained
    _, mutate, expected = damage

    def unsigned(ck):
        ck.pop("sha256")
        mutate(ck)

    _rewrite(path, unsigned)
    with pytest.raises(CheckpointError) as info:
        train(cfg, resume=True)
    assert expected in _one_line(info)


def test_a_damaged_checkpoint_is_refused_by_its_digest(trained):
    from geogan.errors import CheckpointError
    from geogan.trainer import load_checkpoint

    _, path = trained
    _rewrite(path, lambda ck: ck["model"]["nets"]["G_a2b"]["model.1.weight"].mul_(1.001))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "damaged" in _one_line(info)


def test_a_checkpoint_whose_weights_do_not_fit_is_one_line(trained):
    from geogan.errors import CheckpointError
    from geogan.trainer import train

    cfg, path = trained

    def shrink(ck):
        ck.pop("sha256")
        ck["model"]["nets"]["G_a2b"]["model.1.weight"] = torch.zeros(1)

    _rewrite(path, shrink)
    with pytest.raises(CheckpointError) as info:
        train(cfg, resume=True)
    assert "does not fit" in _one_line(info)


# --------------------------------------------------------------------------------------------
# a run that cannot take its first step leaves nothing behind (issue 20)
# --------------------------------------------------------------------------------------------
def _damage_chips(folder: Path) -> None:
    """Keep each chip's header, cut its pixel data: opening works, reading the first batch fails."""
    for chip in folder.glob("*.tif"):
        data = chip.read_bytes()
        chip.write_bytes(data[: len(data) // 2])


class _StopAtOnce:
    def update(self, done, total, message=""):
        pass

    def cancelled(self) -> bool:
        return True


def test_a_run_that_fails_on_its_first_batch_leaves_no_debris(tmp_path):
    from geogan.errors import GeoganError
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    _damage_chips(chips / "train_a")
    fresh = tmp_path / "new" / "run"
    with pytest.raises(GeoganError):
        train(dict(TINY_TRAINING, data=str(chips), out=str(fresh)))
    assert not (tmp_path / "new").exists()  # the folders this run created are gone again

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(GeoganError):
        train(dict(TINY_TRAINING, data=str(chips), out=str(kept)))
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]  # no config.yaml, losses.csv, previews/


def test_a_run_stopped_before_its_first_step_writes_nothing(tmp_path):
    from geogan.errors import Cancelled
    from geogan.trainer import train

    chips = make_chips(tmp_path / "chips", n_train=2)
    with pytest.raises(Cancelled, match="before its first step"):
        train(dict(TINY_TRAINING, data=str(chips), out=str(tmp_path / "run")), progress=_StopAtOnce())
    assert not (tmp_path / "run").exists()

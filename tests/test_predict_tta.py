"""Test-time augmentation (geogan/predict/tta.py): the orientations, their undoing and the
average as pure tensor code, then through translate_raster, the CLI and the model file's record
of how its chips were augmented."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from torch import nn

from conftest import make_spec, scene, write_raster
from geogan import errors
from geogan.cli import cli
from geogan.modelfile import TranslationModel, save_model
from geogan.predict import translate_raster
from geogan.predict.scene import Translator
from geogan.predict.tta import ORIENTATIONS, average_over, orient, unorient


def _numpy_orient(x: np.ndarray, o) -> np.ndarray:
    k, flip = o
    y = np.rot90(x, k, axes=(2, 3))
    return y[..., ::-1] if flip else y


def _numpy_unorient(y: np.ndarray, o) -> np.ndarray:
    k, flip = o
    y = y[..., ::-1] if flip else y
    return np.rot90(y, -k, axes=(2, 3))


def test_orientations_are_the_square_symmetries_and_undo_exactly():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    seen = set()
    for o in ORIENTATIONS["all"]:
        y = orient(x, o)
        np.testing.assert_array_equal(y.numpy(), _numpy_orient(x.numpy(), o))
        assert torch.equal(unorient(y, o), x)
        seen.add(tuple(y[0, 0].flatten().tolist()))
    assert len(seen) == 8  # eight distinct images of an asymmetric tile
    assert set(ORIENTATIONS["flips"]) <= set(ORIENTATIONS["all"])
    flips = {tuple(orient(x, o)[0, 0].flatten().tolist()) for o in ORIENTATIONS["flips"]}
    expected = {tuple(a.flatten().tolist()) for a in (x[0, 0].numpy(), x[0, 0].numpy()[:, ::-1],
                                                      x[0, 0].numpy()[::-1, :], x[0, 0].numpy()[::-1, ::-1])}
    assert flips == expected  # identity, left-right, up-down and both: what augment "flips" draws


def test_average_is_the_mean_of_the_undone_translations():
    torch.manual_seed(0)
    net = nn.Conv2d(2, 3, 3, padding=1)  # an asymmetric kernel: each orientation gives another output
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        got = average_over(net, x, ORIENTATIONS["all"])
        outs = [_numpy_unorient(net(torch.from_numpy(_numpy_orient(x.numpy(), o).copy())).numpy(), o)
                for o in ORIENTATIONS["all"]]
    np.testing.assert_allclose(got.numpy(), np.mean(outs, axis=0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, net(x).detach(), atol=1e-3)


def _model(augment, net=None) -> TranslationModel:
    torch.manual_seed(0)
    spec = make_spec()
    net = net or nn.Conv2d(2, 2, 1)
    training = {"config": {"augment": augment}} if augment else {}
    return TranslationModel({"a": spec, "b": spec}, {"a2b": net},
                            {"model": "pix2pix", "generator": "conv", "size_multiple": 4}, training)


def test_a_pointwise_network_is_unchanged_by_tta_and_the_grid_is_kept(tmp_path):
    src = write_raster(tmp_path / "in.tif", scene((70, 90)))
    plain = translate_raster(_model("all"), src, tmp_path / "plain.tif", tile_size=32, overlap=8)
    tta = translate_raster(_model("all"), src, tmp_path / "tta.tif", tile_size=32, overlap=8, tta=True)
    with rasterio.open(plain.path) as a, rasterio.open(tta.path) as b:
        assert (a.transform, a.crs, a.shape) == (b.transform, b.crs, b.shape)
        assert (a.tags()["GEOGAN_TTA_ORIENTATIONS"], b.tags()["GEOGAN_TTA_ORIENTATIONS"]) == ("1", "8")
        np.testing.assert_allclose(b.read(), a.read(), rtol=1e-5, atol=1e-6)


def test_tta_uses_the_trained_orientations():
    net = nn.Conv2d(2, 2, 3, padding=1)
    from geogan.predict.scene import PredictOptions, Predictor

    for augment, n in (("all", 8), ("flips", 4)):
        predictor = Predictor(_model(augment, net), PredictOptions(tile_size=32, overlap=8, tta=True), device="cpu")
        assert isinstance(predictor.translator, Translator) and len(predictor.translator.orientations) == n
    plain = Predictor(_model("crop", net), PredictOptions(tile_size=32, overlap=8), device="cpu")
    assert plain.translator.orientations == ((0, False),)


@pytest.mark.parametrize("augment, reason", [("crop", "trained without flips or rotations \\(augment: crop\\)"),
                                             (None, "does not record how its training chips were augmented")])
def test_tta_is_refused_for_a_model_that_never_saw_other_orientations(tmp_path, augment, reason):
    src = write_raster(tmp_path / "in.tif", scene((40, 40)))
    with pytest.raises(errors.ConfigError, match=reason):
        translate_raster(_model(augment), src, tmp_path / "out.tif", tile_size=32, overlap=8, tta=True)
    assert not (tmp_path / "out.tif").exists()
    from geogan.models.registry import build_generator

    net = build_generator("resnet_6blocks", 2, 2, ngf=4)
    saved = TranslationModel(_model(augment).domains, {"a2b": net}, {"model": "pix2pix", "generator": "resnet_6blocks",
                             "ngf": 4, "dropout": False, "size_multiple": 4}, _model(augment).training)
    path = save_model(saved, tmp_path / "m.geogan")
    result = CliRunner().invoke(cli, ["predict", str(path), str(src), str(tmp_path / "cli.tif"), "--tta",
                                      "--tile-size", "32", "--overlap", "8"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert "m.geogan" in result.output and not (tmp_path / "cli.tif").exists()
    assert result.output.startswith("geogan: error: ") and "test-time augmentation" in result.output

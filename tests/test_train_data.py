"""Datasets, augmentation, configuration loading and preview rendering for training."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import make_chips  # noqa: E402

from geogan.data import Augmentation, ChipDataset, open_chips  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_augmentation_crops_inside_without_resampling():
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    rng = np.random.default_rng(0)
    for _ in range(50):
        aug = Augmentation.draw(rng, (8, 8), 4, "all")
        y = aug.apply(x)
        assert y.shape == (2, 4, 4)
        window = x[:, aug.top:aug.top + 4, aug.left:aug.left + 4]
        assert sorted(y.ravel()) == sorted(window.ravel())  # the same pixels, only moved
    flips = Augmentation.draw(np.random.default_rng(1), (8, 8), 8, "flips")
    assert flips.rot90 == 0
    crop = Augmentation.draw(np.random.default_rng(1), (8, 8), 4, "crop")
    assert not (crop.flip_rows or crop.flip_cols or crop.rot90)
    assert Augmentation.draw(rng, (8, 8), 4, "none") == Augmentation(2, 2, 4)


def test_paired_items_share_the_augmentation(tmp_path):
    chips = make_chips(tmp_path / "chips", a=(3, "optical", "uint8"), b=(3, "optical", "uint8"),
                       relation=lambda x: x, paired=True, n_train=3, size=32, holes=True)
    ds = ChipDataset(open_chips(chips), 16, seed=3)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert item["a"].shape == (3, 16, 16) and item["a_valid"].shape == (1, 16, 16)
            assert torch.equal(item["a_valid"], item["b_valid"])
            assert torch.allclose(item["a"], item["b"], atol=0.05)


def test_items_are_a_function_of_seed_epoch_and_index(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=4)
    export = open_chips(chips)
    ds1, ds2 = ChipDataset(export, 16, seed=0), ChipDataset(export, 16, seed=0)
    ds1.set_epoch(2)
    ds2.set_epoch(2)
    assert all(torch.equal(ds1[i]["b"], ds2[i]["b"]) for i in range(4))
    ds2.set_epoch(3)
    assert any(not torch.equal(ds1[i]["a"], ds2[i]["a"]) for i in range(4))


def test_invalid_pixels_are_masked_not_black(tmp_path):
    chips = make_chips(tmp_path / "chips", a=(1, "dsm", "float32"), b=(3, "optical", "uint8"), nodata_a=-9999.0,
                       holes=True, n_train=1)
    item = ChipDataset(open_chips(chips), 32, augment="none")[0]
    valid = item["a_valid"][0]
    assert not valid[:8, :8].any() and valid[8:, 8:].all()
    assert (item["a"][0][~valid] == 0).all()  # neutral, and excluded from the losses by the mask
    assert item["a"][0][valid].abs().max() < 1.5


def test_load_train_config_sources_and_overrides(tmp_path):
    from geogan.errors import ConfigError
    from geogan.trainer import load_train_config

    path = tmp_path / "c.yaml"
    path.write_text("model: pix2pix\namp: false\nngf: 16\n")
    cfg = load_train_config(path, {"epochs": 3, "batch_size": None})
    assert (cfg.model, cfg.generator, cfg.dropout, cfg.amp, cfg.ngf, cfg.epochs, cfg.batch_size) == \
        ("pix2pix", "unet_256", True, "off", 16, 3, 1)
    default = load_train_config(None, {"data": "d", "out": "o"})
    assert (default.generator, default.dropout, default.amp, default.lambda_cycle) == ("resnet_9blocks", False, "auto", 10.0)
    assert load_train_config({"amp": True}).amp == "auto"
    assert load_train_config(cfg, {"ngf": 32}).ngf == 32
    path.write_text("lambda_cycel: 3\n")
    with pytest.raises(ConfigError, match="lambda_cycel"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="batch_size"):
        load_train_config({"batch_size": "two"})
    with pytest.raises(ConfigError, match="augment"):
        load_train_config({"augment": "scale"})


def test_preview_display_bands():
    from conftest import make_spec as spec

    from geogan.bands import DomainSpec
    from geogan.trainer import _display_bands, to_display

    assert _display_bands(spec("sar", 2)) == [0]
    assert _display_bands(spec("dsm", 1)) == [0]
    assert _display_bands(spec("optical", 3)) == [0, 1, 2]
    ms = spec("multispectral", 5)
    named = DomainSpec(ms.kind, ms.bands, ms.dtype, ms.nodata, ms.stats,
                       band_descriptions=("Coastal", "Blue", "Green", "Red", "NIR"))
    assert _display_bands(named) == [3, 2, 1]
    assert _display_bands(ms) == [0, 1, 2]
    img = to_display(np.zeros((2, 4, 4), np.float32), spec("sar", 2), np.eye(4, dtype=bool))
    assert img.shape == (3, 4, 4) and img.dtype == np.uint8 and img[0, 0, 0] == 127 and img[0, 0, 1] == 0


def test_example_config_documents_the_defaults():
    from pathlib import Path

    from geogan.config import TrainConfig
    from geogan.trainer import load_train_config

    example = Path(__file__).resolve().parents[1] / "tools" / "train_example.yaml"
    assert load_train_config(example, {"data": "d", "out": "o"}) == TrainConfig(data="d", out="o")


def test_loader_workers_give_the_same_batches(tmp_path):
    from geogan.trainer import train
    from conftest import TINY_TRAINING as TINY
    from geogan.modelfile import read_payload

    chips = make_chips(tmp_path / "chips", n_train=4)
    a = read_payload(train(dict(TINY, data=str(chips), out=str(tmp_path / "w0"), num_workers=0)))["generators"]
    b = read_payload(train(dict(TINY, data=str(chips), out=str(tmp_path / "w2"), num_workers=2)))["generators"]
    assert all(torch.equal(a["a2b"][k], b["a2b"][k]) for k in a["a2b"])


def test_geogan_train_is_the_function_even_after_importing_the_module():
    import geogan
    import geogan.trainer  # the module has its own name: it cannot shadow geogan.train
    from geogan.errors import ConfigError

    with pytest.raises(ConfigError, match="data"):
        geogan.train({"out": "x"})
    assert geogan.train is geogan.trainer.train
    assert geogan.load_train_config is geogan.trainer.load_train_config

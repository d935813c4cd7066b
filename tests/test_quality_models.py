"""The quality options of issue 11: semi-supervised CycleGAN, multi-scale discriminators and
feature matching (Pix2PixHD), the pinned GAN losses, the Pix2Pix defaults (vanilla loss, a
generator that fits the crop) and what CycleGAN's discriminators see. Tiny networks on the
CPU; chips exports made here by ``geogan.export_chips`` from rasters written in a temp dir."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_raster

torch = pytest.importorskip("torch")

from geogan.bands import BandStats, DomainSpec  # noqa: E402
from geogan.config import TrainConfig, default_generator, min_discriminator_input  # noqa: E402
from geogan.errors import BandMismatchError, CheckpointError, ConfigError  # noqa: E402
from geogan.models.cyclegan import CycleGAN  # noqa: E402
from geogan.models.discriminators import (MultiscaleDiscriminator, NLayerDiscriminator,  # noqa: E402
                                          build_discriminator, receptive_field)
from geogan.models.losses import GANLoss, feature_matching  # noqa: E402
from geogan.models.pix2pix import Pix2Pix  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(ngf=4, ndf=4, n_layers_d=2, generator="resnet_6blocks", crop_size=32, batch_size=2, epochs=1,
            epochs_decay=0, pool_size=2, log_every=1, checkpoint_every=0, device="cpu")


def spec(kind: str, n: int) -> DomainSpec:
    return DomainSpec(kind, tuple(range(1, n + 1)), "float32", None,
                      tuple(BandStats(i + 1, 10, 0.5, 0.1, 0.0, 1.0, 0.1, 0.9, -10, 2, -20, 0, -15, -5)
                            for i in range(n)))


def _images(n: int, c: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _ones(n: int, size: int = 32) -> torch.Tensor:
    return torch.ones(n, 1, size, size, dtype=torch.bool)


# ------------------------------------------------------------------------------ GAN losses
def test_lsgan_is_mse_against_one_and_zero():
    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    loss = GANLoss("lsgan")
    assert torch.equal(loss(x, True), torch.nn.functional.mse_loss(x, torch.ones_like(x)))
    assert torch.equal(loss(x, False), torch.nn.functional.mse_loss(x, torch.zeros_like(x)))
    assert loss(x, True).item() == pytest.approx(((x - 1) ** 2).mean().item())


def test_vanilla_is_bce_with_logits():
    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    loss = GANLoss("vanilla")
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.equal(loss(x, True), bce(x, torch.ones_like(x)))
    assert torch.equal(loss(x, False), bce(x, torch.zeros_like(x)))
    assert loss(x, True).item() == pytest.approx(torch.log1p(torch.exp(-x)).mean().item(), rel=1e-5)


def test_gan_loss_of_several_scales_is_their_mean():
    maps = [torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 2, 2), -1.0)]
    loss = GANLoss("lsgan")
    assert loss(maps, True).item() == pytest.approx((0.25 + 4.0) / 2)


# ------------------------------------------------------------------------------ discriminators
def _without_norm(d: NLayerDiscriminator) -> NLayerDiscriminator:
    """Instance norm's statistics span the whole image; the patch map's local window is the rest."""
    d.model = torch.nn.Sequential(*[torch.nn.Identity() if isinstance(m, torch.nn.InstanceNorm2d) else m
                                    for m in d.model])
    return d


def _footprint(net: torch.nn.Module, size: int, out_index) -> tuple[int, int]:
    """Rows and columns of the input that one output value depends on (non-zero gradient)."""
    x = torch.randn(1, 2, size, size, requires_grad=True)
    out = net(x)
    out[out_index].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)) > 0)
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("n_layers, expected", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_matches_the_gradient_footprint(n_layers, expected):
    assert receptive_field(n_layers) == expected
    net = _without_norm(NLayerDiscriminator(2, ndf=4, n_layers=n_layers))
    centre = (0, 0, 6, 6)  # an interior output value: its window lies inside a 160-pixel input
    assert _footprint(net, 160, centre) == (expected, expected)


def test_multiscale_discriminator_shapes_and_receptive_fields():
    d = MultiscaleDiscriminator(5, ndf=4, n_layers=3, num_d=3)
    maps = d(torch.zeros(2, 5, 256, 256))
    assert [m.shape for m in maps] == [(2, 1, 30, 30), (2, 1, 14, 14), (2, 1, 6, 6)]
    assert [receptive_field(3, k) for k in range(3)] == [70, 141, 283]
    torch.manual_seed(0)
    d2 = MultiscaleDiscriminator(2, ndf=4, n_layers=2, num_d=2)
    for scale in d2.scales:
        _without_norm(scale)
    # the coarse scale sees 2x the patch plus the 3x3 pooling window: (34 - 1) * 2 + 3 = 69 pixels
    assert receptive_field(2, 1) == 69
    coarse = _MapOf(d2, 1)
    assert _footprint(coarse, 192, (0, 0, 4, 4)) == (69, 69)
    fine = _MapOf(d2, 0)
    assert _footprint(fine, 192, (0, 0, 8, 8)) == (34, 34)


class _MapOf(torch.nn.Module):
    def __init__(self, d: MultiscaleDiscriminator, scale: int) -> None:
        super().__init__()
        self.d, self.scale = d, scale

    def forward(self, x):
        return self.d(x)[self.scale]


def test_features_are_every_block_then_the_patch_map():
    d = build_discriminator("multiscale", 3, ndf=4, n_layers=3, num_d=2)
    feats = d(torch.zeros(1, 3, 64, 64), features=True)
    assert len(feats) == 2 and all(len(f) == 5 for f in feats)  # n_layers + 1 blocks, then the map
    assert [tuple(t.shape[1:]) for t in feats[0]] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 7, 7), (1, 6, 6)]
    assert torch.equal(feats[1][-1], d(torch.zeros(1, 3, 64, 64))[1])
    single = build_discriminator("patch", 3, ndf=4, n_layers=3)
    assert len(single(torch.zeros(1, 3, 64, 64), features=True)) == 1
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("pixel", 3)


def test_feature_matching_is_pix2pixhd_weighted_l1_of_the_blocks():
    fake = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2), torch.full((1, 1, 1, 1), 9.0)],
            [torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 1, 1), torch.full((1, 1, 1, 1), 9.0)]]
    real = [[torch.ones(1, 2, 4, 4), torch.full((1, 3, 2, 2), 2.0), torch.zeros(1, 1, 1, 1)],
            [torch.ones(1, 2, 2, 2), torch.zeros(1, 3, 1, 1), torch.zeros(1, 1, 1, 1)]]
    # per scale weight 1/2, per block 4/2 (two blocks); the patch maps are left out
    assert feature_matching(fake, real).item() == pytest.approx(0.5 * 2 * (1 + 2) + 0.5 * 2 * (1 + 0))
    assert feature_matching(real, real).item() == 0.0
    f = [[t.clone().requires_grad_() for t in s] for s in fake]
    r = [[t.clone().requires_grad_() for t in s] for s in real]
    feature_matching(f, r).backward()
    assert r[0][0].grad is None and f[0][0].grad is not None  # the real side is not trained by it


# ------------------------------------------------------------------------------ config and defaults
@pytest.mark.parametrize("crop, expected", [(256, "unet_256"), (512, "unet_256"), (128, "unet_128"),
                                            (64, "unet_64"), (96, "unet_32"), (120, "resnet_9blocks")])
def test_pix2pix_default_generator_fits_the_crop(crop, expected):
    assert default_generator("pix2pix", crop) == expected
    cfg = TrainConfig(model="pix2pix", crop_size=crop)
    assert cfg.generator == expected and cfg.gan_mode == "vanilla" and cfg.dropout is True
    assert default_generator("cyclegan", crop) == "resnet_9blocks"


def test_paper_losses_and_pix2pixhd_defaults():
    assert TrainConfig().gan_mode == "lsgan" and TrainConfig(model="pix2pix").gan_mode == "vanilla"
    assert TrainConfig(model="pix2pix", gan_mode="lsgan").gan_mode == "lsgan"
    assert TrainConfig().lambda_feat == 0.0
    hd = TrainConfig(model="pix2pix", discriminator="multiscale")
    assert hd.lambda_feat == 10.0 and hd.num_d == 3
    assert min_discriminator_input(3) == 24
    with pytest.raises(ConfigError, match="3 discriminator scales of a 64-pixel crop leave 16 pixels"):
        TrainConfig(model="pix2pix", discriminator="multiscale", crop_size=64)
    with pytest.raises(ConfigError, match="data_paired.*cyclegan"):
        TrainConfig(model="pix2pix", data_paired="pairs")
    with pytest.raises(ConfigError, match="lambda_paired must be >= 0"):
        TrainConfig(lambda_paired=-1)


# ------------------------------------------------------------------------------ models
def _cyclegan_batch(n: int = 2, paired: bool = True) -> dict:
    batch = {"a": _images(n, 2, seed=1), "b": _images(n, 3, seed=2), "a_valid": _ones(n), "b_valid": _ones(n)}
    if paired:
        batch.update(pa=_images(n, 2, seed=3), pb=_images(n, 3, seed=4), pa_valid=_ones(n), pb_valid=_ones(n))
    return batch


def _semi(**kw) -> CycleGAN:
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "data_paired": "pairs", **kw})
    return CycleGAN(cfg, spec("sar", 2), spec("optical", 3), torch.device("cpu"))


def test_semi_supervised_l1_is_zero_where_the_pairs_are_invalid():
    """A true B equal to G_a2b's output wherever the pair is valid, and far off elsewhere: the
    paired term is exactly 0; counting every pixel it is not."""
    model = _semi()
    batch = _cyclegan_batch()
    model.set_input(batch)
    with torch.no_grad():
        fake_pb = model.nets["G_a2b"](model.pair_a)
    invalid_a = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    invalid_a[:, :, :10] = True  # a swath edge in the paired A
    invalid_b = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    invalid_b[:, :, :, -7:] = True  # and a hole in the paired B
    bad = invalid_a | invalid_b
    batch.update(pb=torch.where(bad, torch.full_like(fake_pb, 5.0), fake_pb), pa_valid=~invalid_a, pb_valid=~invalid_b)
    model.set_input(batch)
    model.paired_losses()
    assert model.losses["paired_a2b"].item() == 0.0
    assert torch.equal(model.pair_valid, ~bad)
    batch.update(pa_valid=_ones(2), pb_valid=_ones(2))
    model.set_input(batch)
    model.paired_losses()
    assert model.losses["paired_a2b"].item() > 1.0


@pytest.mark.parametrize("direction, target", [("a2b", "pb"), ("b2a", "pa")])
def test_semi_supervised_term_ignores_what_lies_in_invalid_pixels(direction, target):
    """Changing a pair's true image only where the pair is invalid leaves its L1 term and the
    generator's gradients unchanged; changing it where the pair is valid does not."""
    def run(fill: float, where_valid: bool) -> tuple[float, list]:
        model = _semi()
        batch = _cyclegan_batch()
        invalid = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
        invalid[:, :, 5:20, 3:17] = True
        region = ~invalid if where_valid else invalid
        batch[target] = torch.where(region, torch.full_like(batch[target], fill), batch[target])
        batch[f"{target}_valid"] = ~invalid
        model.set_input(batch)
        model.paired_losses()
        loss = model.losses[f"paired_{direction}"]
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.nets[f"G_{direction}"].parameters()]

    base, base_grads = run(0.0, where_valid=False)
    same, same_grads = run(0.9, where_valid=False)
    assert base == same and base > 0
    assert all(torch.equal(g, h) for g, h in zip(base_grads, same_grads))
    assert run(0.9, where_valid=True)[0] != base


def test_semi_supervised_step_adds_the_paired_losses():
    model = _semi(discriminator="multiscale", num_d=2, lambda_feat=10.0)
    assert model.loss_names[-4:] == ("paired_a2b", "paired_b2a", "feat_a2b", "feat_b2a")
    model.set_input(_cyclegan_batch())
    model.optimize_parameters()
    losses = model.current_losses()
    assert losses["paired_a2b"] > 0 and losses["paired_b2a"] > 0 and losses["feat_a2b"] > 0
    with pytest.raises(ValueError, match="pairs"):
        model.set_input(_cyclegan_batch(paired=False))
    plain = CycleGAN(TrainConfig(**TINY), spec("sar", 2), spec("optical", 3), torch.device("cpu"))
    assert "paired_a2b" not in plain.loss_names


def test_pair_discriminators_judge_source_and_target_side_by_side():
    """With lambda_pair_gan, D_pair_a2b sees (A, B) and D_pair_b2a (B, A): the real pair, then the
    pair with the generator's output, invalid pixels hidden; their terms join the step's losses."""
    model = _semi(lambda_pair_gan=2.0)
    assert model.loss_names[-4:] == ("pair_gan_a2b", "pair_gan_b2a", "D_pair_a2b", "D_pair_b2a")
    batch = _cyclegan_batch()
    batch["pa_valid"][:, :, :6] = False
    seen = {}
    for name in ("D_pair_a2b", "D_pair_b2a"):
        model.nets[name].register_forward_hook(lambda m, inp, out, name=name: seen.setdefault(name, []).append(inp[0]))
    before = [p.detach().clone() for p in model.nets["D_pair_a2b"].parameters()]
    model.set_input(batch)
    model.optimize_parameters()
    valid = batch["pa_valid"] & batch["pb_valid"]
    for name, source, target in (("D_pair_a2b", "pa", "pb"), ("D_pair_b2a", "pb", "pa")):
        fake_step, real_step, fake_for_d = seen[name]  # generator step, then D: real, fake
        n = batch[source].shape[1]
        assert real_step.shape[1] == 5 and torch.equal(real_step[:, :n], batch[source] * valid)
        assert torch.equal(real_step[:, n:], batch[target] * valid)
        assert torch.equal(fake_step[:, :n], real_step[:, :n]) and torch.equal(fake_for_d, fake_step)
        assert torch.all(fake_step[:, n:][~valid.expand(-1, fake_step.shape[1] - n, -1, -1)] == 0)
    losses = model.current_losses()
    assert all(losses[k] > 0 for k in ("pair_gan_a2b", "pair_gan_b2a", "D_pair_a2b", "D_pair_b2a"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.nets["D_pair_a2b"].parameters()))
    assert "D_pair_a2b" not in _semi().nets


def test_pair_gan_term_reaches_the_generator_and_is_weighted():
    """The pair GAN term is lambda_pair_gan x the GAN loss of D_pair on (A, fake B), and its
    gradient reaches G_a2b."""
    terms = {}
    for weight in (1.0, 3.0):
        model = _semi(lambda_pair_gan=weight)
        model.set_input(_cyclegan_batch())
        model.paired_losses()
        terms[weight] = model.losses["pair_gan_a2b"]
    assert terms[3.0].item() == pytest.approx(3 * terms[1.0].item(), rel=1e-6)
    model = _semi(lambda_pair_gan=1.0)
    model.set_input(_cyclegan_batch())
    model.paired_losses()
    model.losses["pair_gan_a2b"].backward()
    assert all(p.grad is None for p in model.nets["G_b2a"].parameters())
    assert sum(p.grad.abs().sum() for p in model.nets["G_a2b"].parameters()) > 0
    with pytest.raises(ConfigError, match="lambda_pair_gan.*data_paired"):
        TrainConfig(**TINY, lambda_pair_gan=1.0)


def test_cyclegan_discriminators_see_reals_with_the_batches_nodata_footprint():
    torch.manual_seed(0)
    model = CycleGAN(TrainConfig(**TINY), spec("sar", 2), spec("optical", 3), torch.device("cpu"))
    batch = _cyclegan_batch(paired=False)
    batch["a_valid"][:, :, :, :9] = False  # a SAR swath edge in A; B has a hole of its own
    batch["b_valid"][:, :, 20:, 20:] = False
    seen = {}
    for name in ("D_a", "D_b"):
        model.nets[name].register_forward_hook(lambda m, inp, out, name=name: seen.setdefault(name, []).append(inp[0]))
    model.set_input(batch)
    model.optimize_parameters()
    footprint = (batch["a_valid"] & batch["b_valid"]).expand(-1, 3, -1, -1)
    for name in ("D_a", "D_b"):
        for x in seen[name]:  # generator step (fake), then D step (real, pooled fake)
            assert torch.all(x[~footprint[:, :x.shape[1]]] == 0), name
    real_b_seen = seen["D_b"][1]
    assert torch.equal(real_b_seen, batch["b"] * (batch["a_valid"] & batch["b_valid"]))


def test_pix2pixhd_step_with_multiscale_discriminator_and_feature_matching():
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "model": "pix2pix", "discriminator": "multiscale", "num_d": 2})
    model = Pix2Pix(cfg, spec("sar", 2), spec("optical", 3), torch.device("cpu"))
    assert isinstance(model.nets["D"], MultiscaleDiscriminator) and model.nets["D"].scales[0].model[0].in_channels == 5
    model.set_input({"a": _images(2, 2), "b": _images(2, 3), "a_valid": _ones(2), "b_valid": _ones(2)})
    model.optimize_parameters()
    losses = model.current_losses()
    assert set(losses) == {"G_gan", "G_l1", "D_real", "D_fake", "G_feat"} and losses["G_feat"] > 0


# ------------------------------------------------------------------------------ training runs
def _scene(tmp_path: Path, name: str, size: int, seed: int, hole: bool = False) -> tuple[Path, Path]:
    """A SAR (linear power) and an RGB raster of one smooth random scene, co-registered."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = sum(np.sin(2 * np.pi * (rng.uniform(0.5, 3) * yy + rng.uniform(0.5, 3) * xx) + rng.uniform(0, 6))
               for _ in range(3))
    base = (base - base.min()) / (base.max() - base.min())
    sar = np.stack([10 ** ((base * 20 - 25) / 10), 10 ** ((base * 15 - 30) / 10)]).astype(np.float32)
    if hole:
        sar[:, : size // 5, : size // 5] = 0.0
    rgb = np.stack([base * 200 + 20, (1 - base) * 200 + 20, base * 100 + 50]).astype(np.uint8)
    return (write_raster(tmp_path / f"{name}_sar.tif", sar, nodata=0.0),
            write_raster(tmp_path / f"{name}_rgb.tif", rgb))


def _exports(tmp_path: Path, size: int = 64, tile: int = 32) -> tuple[Path, Path]:
    from geogan import export_chips

    sar, _ = _scene(tmp_path, "one", size, 0, hole=True)
    _, rgb = _scene(tmp_path, "two", size, 1)
    psar, prgb = _scene(tmp_path, "pair", size, 2)
    kw = dict(kind_a="sar", kind_b="optical", tile_size=tile, stride=tile // 2, min_valid=0.5, val_fraction=0.0)
    export_chips(sar, rgb, tmp_path / "chips", **kw)
    export_chips(psar, prgb, tmp_path / "pairs", paired=True, **kw)
    return tmp_path / "chips", tmp_path / "pairs"


def _generators(path: Path) -> dict:
    from geogan.modelfile import read_payload

    return read_payload(path)["generators"]


@pytest.mark.parametrize("pair_gan", [0.0, 0.5])
def test_semi_supervised_training_round_trips_through_the_model_file_and_resumes(tmp_path, pair_gan):
    from geogan import Cancelled, CallbackProgress
    from geogan.modelfile import load_model, read_payload
    from geogan.trainer import train

    chips, pairs = _exports(tmp_path)
    cfg = dict(TINY, data=str(chips), data_paired=str(pairs), lambda_paired=7.5, batch_size=1, epochs=2,
               discriminator="multiscale", num_d=2, lambda_feat=3.0, lambda_pair_gan=pair_gan)
    straight = train(dict(cfg, out=str(tmp_path / "straight")))
    payload = read_payload(straight)
    config = payload["training"]["config"]
    assert config["data_paired"] == str(pairs) and config["lambda_paired"] == 7.5 and config["lambda_feat"] == 3.0
    assert TrainConfig(**config) == TrainConfig(**cfg, out=str(tmp_path / "straight"))  # the config round-trips
    arch = payload["architecture"]
    assert arch["semi_supervised"] is True and arch["discriminator"] == "multiscale" and arch["num_d"] == 2
    assert arch["pair_gan"] is (pair_gan > 0) and config["lambda_pair_gan"] == pair_gan
    assert payload["training"]["paired_chips"] == len(list((pairs / "train_a").glob("*.tif")))
    assert load_model(straight).directions == ["a2b", "b2a"]
    header = (tmp_path / "straight" / "losses.csv").read_text().splitlines()[0]
    pair_terms = ",pair_gan_a2b,pair_gan_b2a,D_pair_a2b,D_pair_b2a" if pair_gan else ""
    assert header.endswith("paired_a2b,paired_b2a,feat_a2b,feat_b2a" + pair_terms)

    seen = []
    stop = CallbackProgress(on_update=lambda d, t, m: seen.append(d), is_cancelled=lambda: len(seen) >= 3)
    with pytest.raises(Cancelled):
        train(dict(cfg, out=str(tmp_path / "resumed"), log_every=1), progress=stop)
    resumed = train(dict(cfg, out=str(tmp_path / "resumed"), log_every=1), resume=True)
    a, b = _generators(straight), _generators(resumed)
    assert all(torch.equal(a[d][k], b[d][k]) for d in a for k in a[d])  # pairs drawn as a function of the step


def test_resuming_with_another_discriminator_is_refused(tmp_path):
    from geogan.trainer import train

    chips, pairs = _exports(tmp_path)
    cfg = dict(TINY, data=str(chips), out=str(tmp_path / "run"))
    train(cfg)
    with pytest.raises(CheckpointError, match="discriminator='patch'.*discriminator='multiscale'"):
        train(dict(cfg, discriminator="multiscale", num_d=2), resume=True)
    semi = dict(cfg, data_paired=str(pairs), out=str(tmp_path / "semi"))
    train(semi)
    with pytest.raises(CheckpointError, match="pair_gan=False.*pair_gan=True"):
        train(dict(semi, lambda_pair_gan=1.0), resume=True)


def test_paired_export_must_match_the_unpaired_domains(tmp_path):
    from geogan import export_chips
    from geogan.trainer import train

    chips, pairs = _exports(tmp_path)
    base = dict(TINY, data=str(chips), out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="data_paired.*unpaired export.*--paired"):
        train(dict(base, data_paired=str(chips)))
    psar, prgb = _scene(tmp_path, "dsm", 64, 3)
    export_chips(prgb, psar, tmp_path / "swapped", kind_a="optical", kind_b="sar", tile_size=32, stride=16,
                 min_valid=0.5, val_fraction=0.0, paired=True)
    with pytest.raises(BandMismatchError, match="paired domain A is 3-band optical uint8 but the unpaired chips' A "
                                                "is 2-band sar float32") as info:
        train(dict(base, data_paired=str(tmp_path / "swapped")))
    assert "\n" not in str(info.value) and "swapped" in str(info.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_pix2pix_trains_on_120_pixel_chips_with_the_default_generator(tmp_path):
    from geogan import export_chips
    from geogan.modelfile import load_model
    from geogan.trainer import train

    sar, rgb = _scene(tmp_path, "big", 240, 4)
    export_chips(sar, rgb, tmp_path / "chips", kind_a="sar", kind_b="optical", tile_size=120, stride=120,
                 val_fraction=0.0, paired=True)
    cfg = {k: v for k, v in TINY.items() if k != "generator"}
    path = train(dict(cfg, data=str(tmp_path / "chips"), out=str(tmp_path / "run"), model="pix2pix", crop_size=120,
                      batch_size=1, n_layers_d=3))
    model = load_model(path)
    assert model.architecture["generator"] == "resnet_9blocks" and model.architecture["gan_mode"] == "vanilla"
    out = model.translate(np.full((2, 120, 120), 0.01, np.float32))
    assert out.shape == (3, 120, 120) and out.dtype == np.uint8


def test_a_unet_chosen_for_the_crop_is_rebuilt_by_load_model(tmp_path):
    from geogan.modelfile import load_model
    from geogan.trainer import train

    chips, _ = _exports(tmp_path, size=96, tile=64)
    paired_chips = tmp_path / "pairs"
    cfg = {k: v for k, v in TINY.items() if k != "generator"}
    path = train(dict(cfg, data=str(paired_chips), out=str(tmp_path / "run"), model="pix2pix", crop_size=64))
    model = load_model(path)
    assert model.architecture["generator"] == "unet_64" and model.architecture["unet_depth"] == 6
    assert model.size_multiple == 64


def test_model_files_from_before_these_options_still_load(tmp_path):
    from geogan.modelfile import TranslationModel, load_model, save_model
    from geogan.models.registry import build_generator

    old_arch = {"model": "pix2pix", "generator": "unet_256", "ngf": 4, "dropout": True, "upsample": "transpose",
                "gan_mode": "lsgan", "size_multiple": 256, "tile_size": 256}
    net = build_generator("unet_256", 2, 3, ngf=4, dropout=True)
    save_model(TranslationModel({"a": spec("sar", 2), "b": spec("optical", 3)}, {"a2b": net}, old_arch),
               tmp_path / "old.geogan")
    model = load_model(tmp_path / "old.geogan")
    assert model.size_multiple == 256
    x = torch.zeros(1, 2, 256, 256)
    assert torch.equal(model.generators["a2b"](x), net.eval()(x))


# ------------------------------------------------------------------------------ generator normalisation
@pytest.mark.parametrize("norm, layer", [("instance", torch.nn.InstanceNorm2d), ("batch", torch.nn.BatchNorm2d),
                                         ("none", torch.nn.Identity)])
def test_generator_norm_choices_keep_the_layer_numbering(norm, layer):
    from geogan.models.registry import build_generator

    net = build_generator("resnet_6blocks", 2, 3, ngf=4, norm=norm)
    assert isinstance(net.model[2], layer) and isinstance(net.model[1], torch.nn.Conv2d)
    plain = build_generator("resnet_6blocks", 2, 3, ngf=4)
    convs = lambda n: [k for k, m in n.named_modules() if isinstance(m, torch.nn.Conv2d)]  # noqa: E731
    assert convs(net) == convs(plain)  # the same convolutions under the same names, whatever the norm
    unet = build_generator("unet_32", 2, 3, ngf=4, norm=norm)
    assert unet(torch.zeros(2, 2, 32, 32)).shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="unknown normalisation"):
        build_generator("resnet_6blocks", 2, 3, norm="layer")


@pytest.mark.parametrize("name", ["resnet_6blocks", "resnet_skip_6blocks"])
def test_without_normalisation_a_pixel_depends_only_on_its_neighbourhood(name):
    """norm none: the output inside a tile equals the output of the whole image there (tiles agree)."""
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    net = build_generator(name, 2, 3, ngf=4, norm="none").eval()
    x = torch.randn(1, 2, 256, 256)
    with torch.no_grad():
        whole = net(x)
        tile = net(x[:, :, 64:192, 64:192])
    # the receptive field reaches ~60 pixels: compare the tile's centre, far from its padded border
    assert torch.allclose(tile[:, :, 60:68, 60:68], whole[:, :, 124:132, 124:132], atol=1e-5)
    instance = build_generator(name, 2, 3, ngf=4, norm="instance").eval()
    with torch.no_grad():
        differs = instance(x[:, :, 64:192, 64:192])[:, :, 60:68, 60:68] - instance(x)[:, :, 124:132, 124:132]
    assert differs.abs().max() > 1e-3  # instance norm: each tile has its own statistics


@pytest.mark.parametrize("upsample", ["resize", "transpose"])
def test_skip_generator_sees_the_same_neighbourhood_and_passes_full_resolution_features(upsample):
    """resnet_skip: the ResNet generator's receptive field (no global bottleneck, so tiles bigger
    than the crop behave like it), plus skips: its last layer takes the stem's full-resolution
    features and the first upsampling's output concatenated with the half-resolution ones."""
    from geogan.models.generators import ResnetSkipGenerator
    from geogan.models.registry import SIZE_MULTIPLE, build_generator

    torch.manual_seed(0)
    skip = build_generator("resnet_skip_6blocks", 2, 3, ngf=4, norm="none", upsample=upsample)
    plain = build_generator("resnet_6blocks", 2, 3, ngf=4, norm="none", upsample=upsample)
    assert isinstance(skip, ResnetSkipGenerator) and SIZE_MULTIPLE["resnet_skip_6blocks"] == skip.size_multiple == 4
    centre = (0, 0, 80, 80)
    assert _footprint(skip, 160, centre) == _footprint(plain, 160, centre)
    head = skip.head[1]
    assert head.in_channels == 2 * 4 and skip.up2[-3 if upsample == "resize" else 0].in_channels == 4 * 4
    seen = {}
    skip.head.register_forward_hook(lambda m, i, o: seen.__setitem__("head", i[0]))  # hooks must return None
    skip.stem.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o))
    x = torch.randn(2, 2, 36, 44)
    assert skip(x).shape == (2, 3, 36, 44)
    assert torch.equal(seen["head"][:, 4:], seen["stem"])  # the stem's features reach the head unchanged


def test_norm_is_recorded_and_rebuilt_from_the_model_file(tmp_path):
    from geogan.modelfile import load_model
    from geogan.trainer import train

    chips, _ = _exports(tmp_path)
    path = train(dict(TINY, data=str(chips), out=str(tmp_path / "run"), norm="batch"))
    model = load_model(path)
    assert model.architecture["norm"] == "batch"
    assert isinstance(model.generators["a2b"].model[2], torch.nn.BatchNorm2d)
    assert model.architecture["upsample"] == "resize"  # the measured default


@pytest.mark.parametrize("size_name", ["CPU", "GPU"])
def test_every_route_of_the_quality_benchmark_is_a_valid_config(size_name):
    """tools/bench_quality.py runs for an hour a seed: a route it cannot train should fail here."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "bench_quality.py"
    spec_ = importlib.util.spec_from_file_location("bench_quality", path)
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    size = getattr(bench, size_name)
    for route in bench.ROUTES:
        cfg = bench.route_config(route, size, seed=1, upsample="resize", steps_per_epoch=10)
        if route == "semi":
            cfg["data_paired"] = "pairs"
        config = TrainConfig(**cfg, data="chips", out="run")
        assert config.epochs + config.epochs_decay == round(size["steps"] / 10)
    semi = TrainConfig(**bench.route_config("semi", size, 0, "resize", 10), data_paired="pairs")
    assert semi.lambda_pair_gan > 0 and semi.discriminator == "multiscale" and semi.generator.startswith("resnet_skip")


# ------------------------------------------------------------------------------ sub-pixel upsampling
@pytest.mark.parametrize("name, size", [("resnet_6blocks", 32), ("resnet_skip_6blocks", 32), ("unet_32", 32)])
def test_subpixel_generators_keep_the_shapes(name, size):
    from geogan.models.generators import SubpixelUpsample
    from geogan.models.registry import build_generator

    net = build_generator(name, 2, 3, ngf=4, upsample="subpixel")
    assert any(isinstance(m, SubpixelUpsample) for m in net.modules())
    assert not any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.Upsample)) for m in net.modules())
    assert net(torch.randn(2, 2, size, size)).shape == (2, 3, size, size)


def test_icnr_starts_the_subpixel_layer_as_nearest_neighbour_upsampling():
    """At initialisation (also after the papers' normal init) the 4 sub-pixels of each output are equal."""
    from geogan.models.generators import SubpixelUpsample, init_weights

    torch.manual_seed(0)
    layer = init_weights(torch.nn.Sequential(SubpixelUpsample(6, 5)))[0]
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        y = layer(x)
        low = layer.conv(x)[:, 0::4]  # the first sub-pixel filter of each output channel
    assert y.shape == (2, 5, 16, 16)
    assert torch.allclose(y, torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest"))
    assert y.std() > 0  # not trivially zero


def _phase_spread(y: torch.Tensor) -> float:
    """How much the 4 positions of each 2×2 cell differ on average (0: no period-2 pattern)."""
    inner = y[..., 8:-8, 8:-8]
    phases = torch.stack([inner[..., i::2, j::2] for i in range(2) for j in range(2)])
    return float(phases.std(dim=0).mean())


def test_subpixel_generator_has_no_checkerboard_at_initialisation():
    """A constant image through an untrained generator: constant out with subpixel, a checkerboard with
    the papers' transposed convolutions (the artefact ICNR exists to avoid)."""
    from geogan.models.generators import init_weights
    from geogan.models.registry import build_generator

    x = torch.full((1, 2, 64, 64), 0.3)
    spreads = {}
    for upsample in ("subpixel", "transpose"):
        torch.manual_seed(0)
        net = init_weights(build_generator("resnet_6blocks", 2, 3, ngf=8, norm="none", upsample=upsample)).eval()
        with torch.no_grad():
            spreads[upsample] = _phase_spread(net(x))
    assert spreads["subpixel"] < 1e-6 < spreads["transpose"]


def test_subpixel_is_recorded_and_rebuilt_from_the_model_file(tmp_path):
    from geogan.modelfile import load_model
    from geogan.trainer import train

    chips, _ = _exports(tmp_path)
    path = train(dict(TINY, data=str(chips), out=str(tmp_path / "run"), upsample="subpixel"))
    model = load_model(path)
    assert model.architecture["upsample"] == "subpixel"
    from geogan.modelfile import read_payload

    stored = read_payload(path)["generators"]["a2b"]
    x = torch.randn(1, 2, 32, 32)
    rebuilt = model.generators["a2b"]
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in stored.items())
    assert rebuilt(x).shape == (1, 3, 32, 32)

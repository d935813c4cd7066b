"""Unit tests of the GAN building blocks: PatchGAN, losses, history pool, schedule, one training step."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from geogan.bands import BandStats, DomainSpec  # noqa: E402
from geogan.config import TrainConfig  # noqa: E402
from geogan.models.cyclegan import CycleGAN, ImagePool, identity_decision, lr_factor  # noqa: E402
from geogan.models.discriminators import NLayerDiscriminator, receptive_field  # noqa: E402
from geogan.models.losses import GANLoss, masked_l1  # noqa: E402
from geogan.models.pix2pix import Pix2Pix  # noqa: E402


def spec(kind: str, n: int, dtype: str = "float32") -> DomainSpec:
    return DomainSpec(kind, tuple(range(1, n + 1)), dtype, None,
                      tuple(BandStats(i + 1, 10, 0.5, 0.1, 0.0, 1.0, 0.1, 0.9, -10, 2, -20, 0, -15, -5)
                            for i in range(n)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = TrainConfig(ngf=8, ndf=8, n_layers_d=2, generator="resnet_6blocks", pool_size=2, crop_size=32)


def test_patchgan_is_70x70_and_takes_any_band_count():
    assert receptive_field(3) == 70
    d = NLayerDiscriminator(8, ndf=8, n_layers=3)
    assert d(torch.zeros(1, 8, 256, 256)).shape == (1, 1, 30, 30)  # the papers' 30×30 patch map
    assert NLayerDiscriminator(2, ndf=8, n_layers=2)(torch.zeros(2, 2, 32, 32)).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("mode", ["lsgan", "vanilla"])
def test_gan_loss_prefers_the_right_side(mode):
    loss = GANLoss(mode)
    real_looking = torch.full((1, 1, 4, 4), 1.0 if mode == "lsgan" else 5.0)
    assert loss(real_looking, True) < loss(real_looking, False)
    with pytest.raises(ValueError):
        GANLoss("wgan")


def test_masked_l1_ignores_invalid_pixels():
    pred = torch.zeros(1, 2, 4, 4)
    target = torch.zeros(1, 2, 4, 4)
    target[..., :2, :] = 1.0  # wrong in the top half only
    target[..., 2:, :] = 0.0
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., 2:, :] = True  # ...which is invalid
    assert masked_l1(pred, target, valid).item() == 0.0
    assert masked_l1(pred, target, torch.ones_like(valid)).item() == pytest.approx(0.5)
    none = masked_l1(pred, target, torch.zeros_like(valid))
    assert torch.isfinite(none) and none.item() == 0.0


def test_image_pool_keeps_history_and_round_trips():
    pool = ImagePool(2, seed=0)
    first = [pool.query(torch.full((1, 1, 2, 2), float(i))) for i in range(2)]
    assert [f.item() if f.numel() == 1 else f[0, 0, 0, 0].item() for f in first] == [0.0, 1.0]
    state = pool.state_dict()
    twin = ImagePool(2, seed=123)
    twin.load_state_dict(state, "cpu")
    for i in range(2, 12):
        x = torch.full((1, 1, 2, 2), float(i))
        assert torch.equal(pool.query(x), twin.query(x))
    assert ImagePool(0).query(x) is x
    assert any(pool.query(torch.full((1, 1, 2, 2), 99.0))[0, 0, 0, 0] != 99.0 for _ in range(20))


def test_learning_rate_constant_then_linear_to_zero():
    factors = [lr_factor(e, 3, 3) for e in range(6)]
    assert factors[:3] == [1.0, 1.0, 1.0]
    assert factors[3:] == pytest.approx([0.75, 0.5, 0.25])
    assert lr_factor(6, 3, 3) == 0.0


def test_identity_decision_by_count_and_kind():
    assert identity_decision(spec("optical", 3), spec("optical", 3), 0.5) == (True, "on")
    on, why = identity_decision(spec("sar", 2), spec("optical", 3), 0.5)
    assert not on and "2 band(s)" in why and "padding" in why
    on, why = identity_decision(spec("sar", 2), spec("generic", 2), 0.5)
    assert not on and "sar" in why and "generic" in why
    assert identity_decision(spec("optical", 3), spec("optical", 3), 0.0)[0] is False


def _batch(ca: int, cb: int, n: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"a": torch.rand(n, ca, 32, 32, generator=g) * 2 - 1, "b": torch.rand(n, cb, 32, 32, generator=g) * 2 - 1,
            "a_valid": torch.ones(n, 1, 32, 32, dtype=torch.bool), "b_valid": torch.ones(n, 1, 32, 32, dtype=torch.bool)}


def test_cyclegan_step_updates_all_networks_with_band_counts():
    torch.manual_seed(0)
    model = CycleGAN(TINY, spec("sar", 2), spec("multispectral", 8), torch.device("cpu"))
    assert model.nets["G_a2b"](torch.zeros(1, 2, 32, 32)).shape == (1, 8, 32, 32)
    assert model.nets["G_b2a"](torch.zeros(1, 8, 32, 32)).shape == (1, 2, 32, 32)
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in model.nets.items()}
    model.set_input(_batch(2, 8, 2))
    model.optimize_parameters()
    for k, net in model.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters())), k
        assert all(p.requires_grad for p in net.parameters())  # discriminators unfrozen again
    losses = model.current_losses()
    assert set(losses) == set(CycleGAN.loss_names) and losses["idt_a"] == 0.0
    assert len(model.pools["a"].images) == 2


def test_pix2pix_conditional_discriminator_sees_both_domains():
    torch.manual_seed(0)
    model = Pix2Pix(TINY, spec("dsm", 1), spec("optical", 3), torch.device("cpu"))
    assert model.nets["D"].model[0].in_channels == 4
    model.set_input(_batch(1, 3))
    model.optimize_parameters()
    assert model.current_losses()["G_l1"] > 0
    assert set(model.generators()) == {"a2b"}


def test_bf16_autocast_step_on_cpu_stays_finite():
    torch.manual_seed(0)
    model = CycleGAN(TINY, spec("optical", 3), spec("optical", 3), torch.device("cpu"), amp_dtype=torch.bfloat16)
    model.set_input(_batch(3, 3))
    model.optimize_parameters()
    assert all(torch.isfinite(torch.tensor(v)) for v in model.current_losses().values())
    assert model.nets["G_a2b"].model[1].weight.dtype == torch.float32  # master weights stay fp32


@pytest.mark.parametrize("cls", [CycleGAN, Pix2Pix])
def test_freezing_without_requires_grad_changes_gives_the_same_updates(cls):
    """Compiled networks keep requires_grad (a flip would make Dynamo recompile): the frozen
    discriminators' gradients of the generator step are dropped before their own step, so three
    steps end with exactly the weights the papers' freeze gives."""
    def run(keep: bool) -> dict:
        torch.manual_seed(0)
        model = cls(TINY, spec("optical", 3), spec("optical", 3), torch.device("cpu"))
        model.keep_requires_grad = keep
        for _ in range(3):
            model.set_input(_batch(3, 3, 2))
            model.optimize_parameters()
        if keep:
            assert all(p.requires_grad for n in model.nets.values() for p in n.parameters())
        return model.state_dict()["nets"]

    frozen, kept = run(False), run(True)
    for net in frozen:
        for key in frozen[net]:
            assert torch.equal(frozen[net][key], kept[net][key]), (net, key)

"""CycleGAN (Zhu et al. 2017) for any pair of band counts, and what Pix2Pix shares with it.

Two generators (A→B, B→A) and two PatchGAN discriminators (``D_a`` judges A images,
``D_b`` judges B images). One training step reads like the algorithm:

1. forward: ``fake_b = G_a2b(a)``, ``rec_a = G_b2a(fake_b)``, and the same from B;
2. freeze both discriminators and step the generators on
   GAN loss + λ·cycle loss (both ways) + 0.5·λ·identity loss;
3. unfreeze the discriminators and step them on real vs. a fake drawn from a history pool
   of the last 50 fakes (Shrivastava et al.), which damps oscillation.

Cycle and identity losses are masked means over valid pixels (:func:`masked_l1`).

**Identity loss across band counts.** Identity feeds B images into ``G_a2b`` and asks for
them back unchanged, which only makes sense when both domains have the same bands with the
same meaning. It is used when the band counts *and* kinds match (RGB→RGB, SAR→SAR) and
turned off, with a logged notice, otherwise: with different counts the shapes do not fit,
and with equal counts but different kinds (2-band SAR vs. a 2-band generic raster) band i
of A and band i of B are different physical quantities normalised differently, so asking
the generator to pass one through as the other would teach it a wrong mapping. Bands are
never padded or repeated to make the shapes fit.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch import nn

from ..bands import DomainSpec
from .discriminators import build_discriminator
from .generators import init_weights
from .losses import GANLoss, feature_matching, masked_l1
from .registry import build_generator
from .wrapping import set_frozen, unwrap

#: name, network → the network as the training step calls it (compiled, in its own DDP).
NetWrapper = Callable[[str, nn.Module], nn.Module]


def identity_decision(spec_a: DomainSpec, spec_b: DomainSpec, lambda_identity: float) -> tuple[bool, str]:
    """Whether the identity loss applies to this pair of domains, and why (for the log and model file)."""
    if lambda_identity <= 0:
        return False, "off (lambda_identity = 0)"
    if spec_a.count != spec_b.count:
        return False, (f"off: domain A has {spec_a.count} band(s) and B has {spec_b.count}; identity "
                       "needs each generator to accept the other domain's bands, which would mean padding")
    if spec_a.kind != spec_b.kind:
        return False, (f"off: domain A is {spec_a.kind} and B is {spec_b.kind}; band i of one is not band i "
                       "of the other, so passing one through as the other would teach a wrong mapping")
    return True, "on"


class ImagePool:
    """A history of generated images (reference ``ImagePool``): half the time D sees an older fake.

    Uses its own ``random.Random`` so its choices are reproducible and can be checkpointed.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() > 0.5:
                i = self.rng.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"images": [im.detach().cpu().clone() for im in self.images],
                "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict, device: Any) -> None:
        self.images = [im.to(device) for im in state["images"]]
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """Learning-rate multiplier for 0-based ``epoch``: 1 for ``epochs``, then linear to 0 over ``epochs_decay``."""
    return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)


class GanModel:
    """Networks, optimizers, schedules and mixed precision shared by both models.

    ``nets`` holds the networks as the step calls them: bare, or after :meth:`wrap_networks`
    compiled and each in its own DistributedDataParallel (which averages gradients across
    processes while backward runs). Checkpoints, model files and previews use the bare ones.
    """

    generator_names: tuple[str, ...] = ()
    discriminator_names: tuple[str, ...] = ()
    loss_names: tuple[str, ...] = ()

    def __init__(self, cfg: Any, device: torch.device, amp_dtype: Optional[torch.dtype] = None,
                 channels_last: bool = False) -> None:
        self.cfg = cfg
        self.device = device
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.nets: dict[str, nn.Module] = {}
        self.losses: dict[str, torch.Tensor] = {}
        #: Freeze a network for a step by taking it out of its DDP reducer only, leaving its
        #: parameters' requires_grad alone (set by :meth:`wrap_networks` for compiled networks).
        self.keep_requires_grad = False
        self.criterion_gan = GANLoss(cfg.gan_mode)
        use_scaler = amp_dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    # -- construction -------------------------------------------------------------------------
    def _finish_build(self) -> None:
        #: Images enter the networks in the dtype they were built in (float32; float64 in exactness tests).
        self.image_dtype = torch.get_default_dtype()
        for net in self.nets.values():
            init_weights(net)
            net.to(self.device)
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            net.train()
        # One fused kernel updates every parameter of a network group: on CUDA no per-tensor launches,
        # on the CPU one pass over each tensor instead of one per operation (2.5x faster at ngf 64).
        adam = {"betas": (self.cfg.beta1, 0.999), "lr": self.cfg.lr,
                "fused": True if self.device.type in ("cuda", "cpu") else None}
        self.optimizers = {
            "G": torch.optim.Adam(self._params(self.generator_names), **adam),
            "D": torch.optim.Adam(self._params(self.discriminator_names), **adam),
        }
        rule = lambda epoch: lr_factor(epoch, self.cfg.epochs, self.cfg.epochs_decay)  # noqa: E731
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, rule) for k, o in self.optimizers.items()}

    def _params(self, names: Iterable[str]) -> list[nn.Parameter]:
        return [p for n in names for p in self.nets[n].parameters()]

    def wrap_networks(self, wrap: NetWrapper, compiled: bool = False) -> None:
        """Replace each network by ``wrap(name, net)`` for the step (the optimizers keep the same parameters).

        ``compiled``: the wrapper compiles, so the discriminator freeze must not flip
        ``requires_grad`` (Dynamo guards on it and would keep two graphs and re-check every step):
        see :meth:`set_requires_grad`.
        """
        self.nets = {name: wrap(name, net) for name, net in self.nets.items()}
        self.keep_requires_grad = compiled

    def bare_nets(self) -> dict[str, nn.Module]:
        """Name → the network without its compile/DDP wrappers (what is saved and previewed)."""
        return {name: unwrap(net) for name, net in self.nets.items()}

    @contextlib.contextmanager
    def bare(self) -> Iterator[None]:
        """Run the enclosed code (a preview on one process) on the bare networks in eval mode."""
        wrapped = self.nets
        self.nets = self.bare_nets()
        for net in self.nets.values():
            net.eval()
        try:
            yield
        finally:
            for net in self.nets.values():
                net.train()
            self.nets = wrapped

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, dtype=self.image_dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -- the pieces of a step -------------------------------------------------------------------
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def set_requires_grad(self, nets: Iterable[nn.Module], flag: bool) -> None:
        """Unfreeze (True) or freeze (False) networks; a frozen DDP network also leaves its reducer.

        With compiled networks only the reducer part is done: the frozen discriminators' weight
        gradients are then computed in the generator step, never all-reduced, and dropped by their
        optimizer's ``zero_grad`` before their own step, so the updates are the same.
        """
        for net in nets:
            set_frozen(net, not flag, keep_requires_grad=self.keep_requires_grad)

    def _step(self, name: str, loss: torch.Tensor) -> None:
        """Backward ``loss`` (scaled under fp16; DDP averages gradients meanwhile), step optimizer ``name``."""
        optimizer = self.optimizers[name]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def _end_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def update_learning_rate(self) -> None:
        """Call once at the end of every epoch."""
        for s in self.schedulers.values():
            s.step()

    @property
    def lr(self) -> float:
        return float(self.optimizers["G"].param_groups[0]["lr"])

    def current_losses(self) -> dict[str, float]:
        """The last step's losses as numbers (one device-to-host copy for all of them)."""
        names = [k for k in self.loss_names if k in self.losses]
        if not names:
            return {}
        values = torch.stack([self.losses[k].detach().float().reshape(()) for k in names]).cpu().tolist()
        return dict(zip(names, values))

    def generators(self) -> dict[str, nn.Module]:
        """Direction name → bare generator network, as the model file stores them."""
        return {name.split("_", 1)[1]: unwrap(self.nets[name]) for name in self.generator_names}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "nets": {k: {n: t.detach().cpu().clone() for n, t in net.state_dict().items()}
                     for k, net in self.bare_nets().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, net in self.bare_nets().items():
            net.load_state_dict(state["nets"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def local_state(self) -> dict:
        """State that differs between data-parallel processes (history pools)."""
        return {}

    def load_local_state(self, state: dict) -> None:
        pass

    def reseed_local(self, seed: int) -> None:
        """Give the per-process random choices (history pools) a stream of their own."""


def hide_invalid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Set pixels that had no valid source to 0, as real images carry them, so D cannot tell by them."""
    return x * valid.to(x.dtype)


class CycleGAN(GanModel):
    """Unpaired translation A ↔ B with cycle consistency; semi-supervised with extra pairs.

    **What the discriminators see.** A fake B carries A's nodata footprint (``G_a2b`` has no
    valid source there) and a real B its own. Both discriminators therefore see every image —
    real or fake — with the *union* of the current A and B batches' footprints set to 0
    (``footprint = valid_a & valid_b``, per batch element): real B with an A-like footprint,
    fake B with a B-like one. No image carries a hole pattern that only fakes have, so nodata
    is no cue for real vs. fake.

    **Semi-supervised.** When the batch holds co-registered pairs (``pa``, ``pb``: the config's
    ``data_paired``), each step also adds ``lambda_paired`` × the masked L1 of ``G_a2b(pa)`` vs
    ``pb`` and of ``G_b2a(pb)`` vs ``pa`` over pixels valid in both, and with ``lambda_feat`` > 0
    the discriminators' feature matching on those pairs. The pairs anchor which A class maps
    to which B class, which cycle consistency alone cannot (a cycle-consistent permutation of
    classes — water painted urban and urban painted water — is a perfectly good optimum of
    the unpaired losses).

    **Conditional discriminators on the pairs** (``lambda_pair_gan`` > 0). ``D_b`` and ``D_a``
    judge single images, so they reward *some* realistic colour for a road, not the road's
    own. Two more discriminators judge the pairs side by side as Pix2Pix's does: ``D_pair_a2b``
    sees (A, B) and ``D_pair_b2a`` sees (B, A), real pair vs. the pair with the generator's
    output. Their GAN terms (× ``lambda_pair_gan``) tie each output to its input's structure,
    and with ``lambda_feat`` > 0 feature matching uses them instead of ``D_b``/``D_a`` (as
    Pix2PixHD, whose discriminators are conditional too).
    """

    generator_names = ("G_a2b", "G_b2a")
    discriminator_names = ("D_a", "D_b")
    loss_names = ("D_a", "G_a2b", "cycle_a", "idt_a", "D_b", "G_b2a", "cycle_b", "idt_b")
    paired_loss_names = ("paired_a2b", "paired_b2a")
    feature_loss_names = ("feat_a2b", "feat_b2a")
    pair_gan_loss_names = ("pair_gan_a2b", "pair_gan_b2a")
    pair_discriminator_loss_names = ("D_pair_a2b", "D_pair_b2a")

    def __init__(self, cfg: Any, spec_a: DomainSpec, spec_b: DomainSpec, device: torch.device,
                 amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False, seed: int = 0) -> None:
        super().__init__(cfg, device, amp_dtype, channels_last)
        ca, cb = spec_a.count, spec_b.count
        d = {"kind": cfg.discriminator, "ndf": cfg.ndf, "n_layers": cfg.n_layers_d,
             "num_d": cfg.num_d}
        self.nets = {
            "G_a2b": build_generator(cfg.generator, ca, cb, cfg.ngf, cfg.dropout, cfg.upsample, cfg.norm),
            "G_b2a": build_generator(cfg.generator, cb, ca, cfg.ngf, cfg.dropout, cfg.upsample, cfg.norm),
            "D_a": build_discriminator(in_channels=ca, **d),
            "D_b": build_discriminator(in_channels=cb, **d),
        }
        self.semi_supervised = bool(cfg.data_paired)
        self.feature_matching = self.semi_supervised and cfg.lambda_feat > 0
        self.pair_gan = self.semi_supervised and cfg.lambda_pair_gan > 0
        if self.pair_gan:
            self.nets["D_pair_a2b"] = build_discriminator(in_channels=ca + cb, **d)
            self.nets["D_pair_b2a"] = build_discriminator(in_channels=ca + cb, **d)
            self.discriminator_names = self.discriminator_names + ("D_pair_a2b", "D_pair_b2a")
        pair_terms = self.pair_gan_loss_names + self.pair_discriminator_loss_names
        self.loss_names = (self.loss_names + (self.paired_loss_names if self.semi_supervised else ())
                           + (self.feature_loss_names if self.feature_matching else ())
                           + (pair_terms if self.pair_gan else ()))
        self.use_identity, self.identity_note = identity_decision(spec_a, spec_b, cfg.lambda_identity)
        self.pools = {"a": ImagePool(cfg.pool_size, seed), "b": ImagePool(cfg.pool_size, seed + 1)}
        self._finish_build()

    def set_input(self, batch: dict) -> None:
        self.real_a, self.real_b = self._image(batch["a"]), self._image(batch["b"])
        # non_blocking: from the loader's pinned memory on CUDA, so the host does not wait for the GPU
        self.valid_a = batch["a_valid"].to(self.device, non_blocking=True)
        self.valid_b = batch["b_valid"].to(self.device, non_blocking=True)
        self.footprint = self.valid_a & self.valid_b
        if self.semi_supervised:
            if "pa" not in batch:
                raise ValueError("a semi-supervised CycleGAN needs batches with pairs (pa, pb)")
            self.pair_a, self.pair_b = self._image(batch["pa"]), self._image(batch["pb"])
            self.pair_valid = (batch["pa_valid"] & batch["pb_valid"]).to(self.device, non_blocking=True)

    def forward(self) -> None:
        G_a2b, G_b2a = self.nets["G_a2b"], self.nets["G_b2a"]
        with self.autocast():
            self.fake_b = G_a2b(self.real_a)
            self.rec_a = G_b2a(self.fake_b)
            self.fake_a = G_b2a(self.real_b)
            self.rec_b = G_a2b(self.fake_a)

    def generator_loss(self) -> torch.Tensor:
        """The generators' total loss of this step (each term also in ``self.losses``); the caller backpropagates it."""
        cfg, nets = self.cfg, self.nets
        lam = cfg.lambda_cycle
        with self.autocast():
            if self.use_identity:
                idt_b = nets["G_a2b"](self.real_b)  # G_a2b should leave B images as they are
                idt_a = nets["G_b2a"](self.real_a)
                self.losses["idt_b"] = masked_l1(idt_b, self.real_b, self.valid_b) * lam * cfg.lambda_identity
                self.losses["idt_a"] = masked_l1(idt_a, self.real_a, self.valid_a) * lam * cfg.lambda_identity
            else:
                self.losses["idt_a"] = self.losses["idt_b"] = torch.zeros((), device=self.device)
            self.losses["G_a2b"] = self.criterion_gan(nets["D_b"](hide_invalid(self.fake_b, self.footprint)), True)
            self.losses["G_b2a"] = self.criterion_gan(nets["D_a"](hide_invalid(self.fake_a, self.footprint)), True)
        self.losses["cycle_a"] = masked_l1(self.rec_a, self.real_a, self.valid_a) * lam
        self.losses["cycle_b"] = masked_l1(self.rec_b, self.real_b, self.valid_b) * lam
        names = ["G_a2b", "G_b2a", "cycle_a", "cycle_b", "idt_a", "idt_b"]
        if self.semi_supervised:
            self.paired_losses()
            generator_terms = self.paired_loss_names + self.feature_loss_names + self.pair_gan_loss_names
            names += [n for n in generator_terms if n in self.loss_names]
        return sum(self.losses[k] for k in names)

    def paired_losses(self) -> None:
        """The semi-supervised terms: masked L1 on the pairs both ways (and the discriminators' terms)."""
        nets, cfg, valid = self.nets, self.cfg, self.pair_valid
        with self.autocast():
            self.fake_pb = nets["G_a2b"](self.pair_a)
            self.fake_pa = nets["G_b2a"](self.pair_b)
        self.losses["paired_a2b"] = masked_l1(self.fake_pb, self.pair_b, valid) * cfg.lambda_paired
        self.losses["paired_b2a"] = masked_l1(self.fake_pa, self.pair_a, valid) * cfg.lambda_paired
        if self.pair_gan or self.feature_matching:
            with self.autocast():
                for direction in ("a2b", "b2a"):
                    self.paired_adversarial_losses(direction)

    def pair_views(self, direction: str, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source, real target, fake target) of one direction's pairs, invalid pixels hidden."""
        valid = self.pair_valid
        source, target = (self.pair_a, self.pair_b) if direction == "a2b" else (self.pair_b, self.pair_a)
        return hide_invalid(source, valid), hide_invalid(target, valid), hide_invalid(fake, valid)

    def paired_adversarial_losses(self, direction: str) -> None:
        """One direction's generator terms from the discriminators on the pairs.

        With the conditional pair discriminator: its GAN term, and feature matching on it;
        without: feature matching on the single-image discriminator (``D_b`` for a2b).
        """
        fake = self.fake_pb if direction == "a2b" else self.fake_pa
        source, real, fake = self.pair_views(direction, fake)
        if self.pair_gan:
            D = self.nets[f"D_pair_{direction}"]
            real, fake = torch.cat([source, real], 1), torch.cat([source, fake], 1)
        else:
            D = self.nets["D_b" if direction == "a2b" else "D_a"]
        fake_features = D(fake, features=True)
        if self.pair_gan:
            gan = self.criterion_gan([f[-1] for f in fake_features], True)
            self.losses[f"pair_gan_{direction}"] = gan * self.cfg.lambda_pair_gan
        if self.feature_matching:
            with torch.no_grad():
                real_features = D(real, features=True)
            self.losses[f"feat_{direction}"] = feature_matching(fake_features, real_features) * self.cfg.lambda_feat

    def real_fake_loss(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One discriminator's loss: ``real`` judged real, ``fake`` (detached) judged fake, averaged."""
        with self.autocast():
            loss_real = self.criterion_gan(net(real), True)
            loss_fake = self.criterion_gan(net(fake.detach()), False)
        return (loss_real + loss_fake) * 0.5

    def discriminator_loss(self) -> torch.Tensor:
        """The discriminators' total loss of this step (each term also in ``self.losses``)."""
        fake_b = self.pools["b"].query(hide_invalid(self.fake_b, self.footprint))
        fake_a = self.pools["a"].query(hide_invalid(self.fake_a, self.footprint))
        real_b = hide_invalid(self.real_b, self.footprint)
        real_a = hide_invalid(self.real_a, self.footprint)
        self.losses["D_b"] = self.real_fake_loss(self.nets["D_b"], real_b, fake_b)
        self.losses["D_a"] = self.real_fake_loss(self.nets["D_a"], real_a, fake_a)
        total = self.losses["D_a"] + self.losses["D_b"]
        if self.pair_gan:
            for direction, fake in (("a2b", self.fake_pb), ("b2a", self.fake_pa)):
                source, real, fake = self.pair_views(direction, fake)
                name = f"D_pair_{direction}"
                self.losses[name] = self.real_fake_loss(self.nets[name], torch.cat([source, real], 1),
                                                          torch.cat([source, fake], 1))
                total = total + self.losses[name]
        return total

    def optimize_parameters(self) -> None:
        """One training step: forward, freeze D, step G, unfreeze D, step D (with the history pools)."""
        discriminators = [self.nets[name] for name in self.discriminator_names]
        self.forward()
        self.set_requires_grad(discriminators, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        self._step("G", self.generator_loss())
        self.set_requires_grad(discriminators, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        self._step("D", self.discriminator_loss())
        self._end_step()

    @torch.no_grad()
    def visuals(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """real/fake/reconstructed images for a preview, in normalised units on the CPU."""
        G_a2b, G_b2a = self.nets["G_a2b"], self.nets["G_b2a"]
        a, b = self._image(a), self._image(b)
        with self.autocast():
            fake_b = G_a2b(a)
            rec_a = G_b2a(fake_b)
            fake_a = G_b2a(b)
            rec_b = G_a2b(fake_a)
        out = {"real_a": a, "fake_b": fake_b, "rec_a": rec_a, "real_b": b, "fake_a": fake_a, "rec_b": rec_b}
        return {k: v.float().cpu() for k, v in out.items()}

    def local_state(self) -> dict:
        return {"pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_local_state(self, state: dict) -> None:
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], self.device)

    def reseed_local(self, seed: int) -> None:
        for offset, pool in enumerate(self.pools.values()):
            pool.rng = random.Random(seed + offset)

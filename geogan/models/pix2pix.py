"""Pix2Pix (Isola et al. 2017): paired translation A → B with a conditional PatchGAN, and the
Pix2PixHD (Wang et al. 2018) sharpening options.

The discriminator sees the input and an output side by side (the bands of A and B
concatenated: ``count_a + count_b`` channels) and judges whether the pair is real. The
generator is pushed by that GAN loss (the paper's vanilla cGAN loss by default) plus
λ (100) × an L1 loss to the true B, a masked mean over pixels valid in both A and B. The
step follows the reference ``optimize_parameters``: forward, step D, freeze D, step G.

``discriminator: multiscale`` replaces the single PatchGAN by Pix2PixHD's ``num_d`` PatchGANs
on the pair and its average-pooled copies, and ``lambda_feat`` > 0 adds Pix2PixHD's
feature-matching loss: L1 between the discriminator's activations on (A, fake B) and on
(A, real B) at every block and scale. L1 alone is minimised by the conditional *mean* — a
blur; the adversarial and feature-matching terms reward the real images' local structure.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..bands import DomainSpec
from .cyclegan import GanModel, hide_invalid
from .discriminators import build_discriminator
from .losses import feature_matching, masked_l1
from .registry import build_generator


class Pix2Pix(GanModel):
    """Paired translation A → B."""

    generator_names = ("G_a2b",)
    discriminator_names = ("D",)
    loss_names = ("G_gan", "G_l1", "D_real", "D_fake")

    def __init__(self, cfg: Any, spec_a: DomainSpec, spec_b: DomainSpec, device: torch.device,
                 amp_dtype: Optional[torch.dtype] = None, channels_last: bool = False, seed: int = 0) -> None:
        super().__init__(cfg, device, amp_dtype, channels_last)
        ca, cb = spec_a.count, spec_b.count
        self.nets = {
            "G_a2b": build_generator(cfg.generator, ca, cb, cfg.ngf, cfg.dropout, cfg.upsample, cfg.norm),
            "D": build_discriminator(cfg.discriminator, ca + cb, cfg.ndf, cfg.n_layers_d, cfg.num_d),
        }
        self.feature_matching = cfg.lambda_feat > 0
        if self.feature_matching:
            self.loss_names = self.loss_names + ("G_feat",)
        self.use_identity, self.identity_note = False, "off (pix2pix has no identity loss)"
        self._finish_build()

    def set_input(self, batch: dict) -> None:
        self.real_a, self.real_b = self._image(batch["a"]), self._image(batch["b"])
        self.valid = (batch["a_valid"] & batch["b_valid"]).to(self.device, non_blocking=True)

    def forward(self) -> None:
        with self.autocast():
            self.fake_b = self.nets["G_a2b"](self.real_a)

    def discriminator_loss(self) -> torch.Tensor:
        """The discriminators' total loss of this step (each term also in ``self.losses``)."""
        D = self.nets["D"]
        fake_b = hide_invalid(self.fake_b, self.valid).detach()
        real_b = hide_invalid(self.real_b, self.valid)
        with self.autocast():
            self.losses["D_fake"] = self.criterion_gan(D(torch.cat([self.real_a, fake_b], 1)), False)
            self.losses["D_real"] = self.criterion_gan(D(torch.cat([self.real_a, real_b], 1)), True)
        return (self.losses["D_fake"] + self.losses["D_real"]) * 0.5

    def generator_loss(self) -> torch.Tensor:
        """The generators' total loss of this step (each term also in ``self.losses``); the caller backpropagates it."""
        D = self.nets["D"]
        fake_b = hide_invalid(self.fake_b, self.valid)
        with self.autocast():
            fake_features = D(torch.cat([self.real_a, fake_b], 1), features=True)
            self.losses["G_gan"] = self.criterion_gan([f[-1] for f in fake_features], True)
            if self.feature_matching:
                with torch.no_grad():
                    real_features = D(torch.cat([self.real_a, hide_invalid(self.real_b, self.valid)], 1),
                                      features=True)
                self.losses["G_feat"] = feature_matching(fake_features, real_features) * self.cfg.lambda_feat
        self.losses["G_l1"] = masked_l1(self.fake_b, self.real_b, self.valid) * self.cfg.lambda_l1
        return sum(self.losses[k] for k in ("G_gan", "G_l1", "G_feat") if k in self.loss_names)

    def optimize_parameters(self) -> None:
        """One training step: forward, step D, freeze D, step G."""
        D = self.nets["D"]
        self.forward()
        self.set_requires_grad([D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        self._step("D", self.discriminator_loss())
        self.set_requires_grad([D], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        self._step("G", self.generator_loss())
        self.set_requires_grad([D], True)
        self._end_step()

    @torch.no_grad()
    def visuals(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        a, b = self._image(a), self._image(b)
        with self.autocast():
            fake_b = self.nets["G_a2b"](a)
        return {k: v.float().cpu() for k, v in {"real_a": a, "fake_b": fake_b, "real_b": b}.items()}

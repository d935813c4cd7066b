"""GAN objectives and pixel losses that skip invalid pixels.

Invalid pixels (nodata, masked, non-finite, SAR <= 0) reach the networks as 0, the middle of
the normalised range. They must not count in the cycle, identity or L1 losses: a masked
mean averages only over valid pixels, so a chip that is 30 % nodata is not rewarded for
predicting "grey" there.
"""
from __future__ import annotations

import torch
from torch import nn


class GANLoss(nn.Module):
    """The adversarial objective: ``lsgan`` (least squares, CycleGAN's default) or ``vanilla``
    (the original cGAN's binary cross-entropy on logits, Pix2Pix's default).

    Called with a discriminator's raw output and whether it should be judged real. A list of
    outputs (a multi-scale discriminator) gives the mean of their losses, so the adversarial
    term keeps the weight it has beside the pixel losses whatever the number of scales.
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode == "lsgan":
            self.loss = nn.MSELoss()
        elif mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        else:
            raise ValueError(f"unknown gan_mode {mode!r}")
        self.mode = mode

    def forward(self, prediction, target_is_real: bool) -> torch.Tensor:
        if isinstance(prediction, (list, tuple)):
            return sum(self.forward(p, target_is_real) for p in prediction) / len(prediction)
        prediction = prediction.float()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return self.loss(prediction, target)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid pixels only.

    ``valid`` is (batch, 1, row, col) or (batch, band, row, col), True where the pixel counts.
    With no valid pixel at all the loss is 0 (and has a gradient of 0), not NaN.
    """
    diff = (prediction.float() - target.float()).abs()
    weight = valid.to(diff.dtype).expand_as(diff)
    return (diff * weight).sum() / weight.sum().clamp_min(1.0)


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """Pix2PixHD's discriminator feature-matching loss: L1 between the discriminator's
    activations on a fake and on the matching real image, every block of every scale.

    ``fake``/``real`` are ``D(..., features=True)`` (per scale: blocks, then the patch map, which is
    left out). Weighted as in Pix2PixHD: 1/num_d per scale and 4/(n_layers+1) per block; the
    real side is detached (the discriminator is not trained by this loss).
    """
    num_d = len(fake)
    total = torch.zeros((), device=fake[0][0].device)
    for f_scale, r_scale in zip(fake, real):
        blocks = len(f_scale) - 1
        weight = (1.0 / num_d) * (4.0 / blocks)
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + weight * (f.float() - r.detach().float()).abs().mean()
    return total

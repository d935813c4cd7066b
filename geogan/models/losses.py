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
    """The adversarial objective: ``lsgan`` (least squares, CycleGAN's default) or ``vanilla`` (BCE).

    Called with a discriminator's raw output and whether it should be judged real.
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

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
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

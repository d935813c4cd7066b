"""Test-time augmentation: translate each tile under the flips and rotations the model was
trained with, undo each transform on its output, and average (pure tensor code).

A generator trained on flipped and rotated chips has learnt the same mapping in every
orientation, up to noise: the speckle it copies into its output and the details it invents
differ from one orientation to the next, while what the input supports does not. Averaging the
orientations keeps the second and cancels much of the first, without the blur of a smoothing
filter (edges stay where the input puts them). The cost is one network pass per orientation.

Only the orientations seen in training are used (the model file records ``augment``):
``all`` = the 8 rotations and reflections of the square, ``flips`` = identity, the two flips
and the half turn; a model trained without them (``crop``) cannot use test-time augmentation:
other orientations are images unlike its training (for SAR, another look direction).
"""
from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigError

#: (quarter turns counter-clockwise, then a left-right flip) of each orientation.
Orientation = tuple[int, bool]
ORIENTATIONS: dict[str, tuple[Orientation, ...]] = {
    "all": tuple((k, f) for k in range(4) for f in (False, True)),
    "flips": ((0, False), (0, True), (2, False), (2, True)),  # identity, left-right, half turn, up-down
}


def orientations(training: dict, model_name: str) -> tuple[Orientation, ...]:
    """The orientations a model was trained under (its training config's ``augment``)."""
    augment: Optional[str] = (training.get("config") or {}).get("augment")
    if augment is None:
        raise ConfigError(f"{model_name}: the model file does not record how its training chips were augmented, "
                          "so test-time augmentation cannot know which orientations the model has seen")
    if augment not in ORIENTATIONS:
        raise ConfigError(f"{model_name}: trained without flips or rotations (augment: {augment}); test-time "
                          "augmentation would show it orientations it never saw (for SAR: another look direction)")
    return ORIENTATIONS[augment]


def orient(x: Any, o: Orientation) -> Any:
    """(batch, band, row, col) tensor → the same tiles in orientation ``o``."""
    import torch

    k, flip = o
    y = torch.rot90(x, k, dims=(2, 3)) if k else x
    return torch.flip(y, dims=(3,)) if flip else y


def unorient(y: Any, o: Orientation) -> Any:
    """Undo :func:`orient` on the network's output."""
    import torch

    k, flip = o
    y = torch.flip(y, dims=(3,)) if flip else y
    return torch.rot90(y, -k, dims=(2, 3)) if k else y


def average_over(net: Any, x: Any, group: tuple[Orientation, ...]) -> Any:
    """Mean of ``unorient(net(orient(x, o)), o)`` over the orientations (float32 accumulation)."""
    total = None
    for o in group:
        y = unorient(net(orient(x, o)), o).float()
        total = y if total is None else total.add_(y)
    return total / len(group)

"""How a network is wrapped for training: ``torch.compile`` and DistributedDataParallel, and back.

Each network of a GAN (two generators, one or two discriminators) gets its *own* DDP wrapper,
the way GAN frameworks do it: gradients are bucketed and all-reduced while backward runs, and a
network that a step freezes (the discriminators during the generator step) is taken out of its
reducer for that step, so its parameters are never touched and DDP does not wait for gradients
that a single process would not compute either. The step code keeps calling ``nets["D_b"](x)``
(or another of the network's methods, e.g. ``features``: :class:`NetworkDDP` routes those
through DDP's forward too); checkpoints and model files always store :func:`unwrap`'s bare
network, so their keys never carry ``module.`` or ``_orig_mod.`` prefixes.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class _MethodRouter(nn.Module):
    """DDP only watches ``forward``; this lets any method of the network run as its forward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any, _geogan_method: str = "forward", **kwargs: Any) -> Any:
        return getattr(self.net, _geogan_method)(*args, **kwargs)


class NetworkDDP(DistributedDataParallel):
    """DDP around one network; ``ddp.features(x)`` runs the network's ``features`` through DDP's forward."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        router = super().__getattr__("module")
        attr = getattr(router.net, name)
        if inspect.ismethod(attr) and not name.startswith("_"):
            return functools.partial(self, _geogan_method=name)
        return attr


def wrap_network(net: nn.Module, *, compile: bool = False, ddp: bool = False,
                 device: Optional[torch.device] = None, process_group: Any = None) -> nn.Module:
    """``net`` compiled (``torch.compile``) and/or in its own DDP (``ddp``), ready for the step code.

    DDP broadcasts rank 0's parameters when it is built, so every process starts from the same
    weights. ``find_unused_parameters`` stays off: every parameter of a network that is not
    frozen gets a gradient in every step (a frozen one is excluded, see :func:`set_frozen`), and
    that check costs a graph traversal per forward and breaks several forwards per backward.
    """
    wrapped: nn.Module = torch.compile(net) if compile else net
    if ddp:
        cuda = device is not None and device.type == "cuda"
        # The networks hold no buffers (instance norm keeps no running statistics), so there is
        # nothing to broadcast before each forward.
        wrapped = NetworkDDP(_MethodRouter(wrapped), device_ids=[device.index] if cuda else None,
                             gradient_as_bucket_view=True, process_group=process_group)
    return wrapped


def unwrap(net: nn.Module) -> nn.Module:
    """The bare network inside any DDP / method-router / ``torch.compile`` wrappers."""
    while True:
        if isinstance(net, DistributedDataParallel):
            net = net.module
        elif isinstance(net, _MethodRouter):
            net = net.net
        elif hasattr(net, "_orig_mod") and isinstance(getattr(net, "_orig_mod"), nn.Module):
            net = net._orig_mod
        else:
            return net


def _ddp_of(net: nn.Module) -> Optional[DistributedDataParallel]:
    while not isinstance(net, DistributedDataParallel):
        inner = getattr(net, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return None
        net = inner
    return net


def set_frozen(net: nn.Module, frozen: bool) -> None:
    """Freeze or unfreeze a (possibly wrapped) network's parameters for the coming step.

    A frozen network under DDP runs outside its reducer (what ``no_sync`` does): backward
    passes through it to the networks before it, but it expects and reduces no gradients.
    """
    for p in net.parameters():
        p.requires_grad_(not frozen)
    ddp = _ddp_of(net)
    if ddp is not None:
        ddp.require_backward_grad_sync = not frozen

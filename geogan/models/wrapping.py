"""How a network is wrapped for training: ``torch.compile`` and DistributedDataParallel, and back.

Each network of a GAN (two generators, one or two discriminators) gets its *own* DDP wrapper,
the way GAN frameworks do it: gradients are bucketed and all-reduced while backward runs (for an
eager network; a network compiled inside DDP has its gradients reduced when its backward ends,
not during it), and a network that a step freezes (the discriminators during the generator step) is taken out of its
reducer for that step, so its parameters are never touched and DDP does not wait for gradients
that a single process would not compute either. The step code calls each network through its
forward (``nets["D_b"](x)``, ``nets["D"](x, features=True)``); checkpoints and model files always
store :func:`unwrap`'s bare network, so their keys never carry ``module.`` or ``_orig_mod.``
prefixes.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def sync_batch_norm(net: nn.Module) -> nn.Module:
    """``net`` with every BatchNorm as a SyncBatchNorm: statistics over the whole job's batch, and
    running statistics that stay identical on every process (torch's SyncBatchNorm runs on GPUs)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def wrap_network(net: nn.Module, *, compile: bool = False, ddp: bool = False,
                 device: Optional[torch.device] = None, process_group: Any = None) -> nn.Module:
    """``net`` compiled (``torch.compile``) and/or in its own DDP (``ddp``), ready for the step code.

    DDP broadcasts rank 0's parameters when it is built, so every process starts from the same
    weights. ``find_unused_parameters`` stays off: every parameter of a network that is not
    frozen gets a gradient in every step (a frozen one is excluded, see :func:`set_frozen`), and
    that check costs a graph traversal per forward and breaks several forwards per backward.
    """
    if ddp and device is not None and device.type == "cuda":
        net = sync_batch_norm(net)  # the same parameters and buffers, so optimizers and saving are unchanged
    wrapped: nn.Module = torch.compile(net) if compile else net
    if ddp:
        cuda = device is not None and device.type == "cuda"
        # No buffer is broadcast before each forward: instance norm keeps none, and batch norm runs
        # as SyncBatchNorm (see TrainingRun.prepare), whose running statistics agree on every rank.
        wrapped = DistributedDataParallel(wrapped, device_ids=[device.index] if cuda else None,
                                          gradient_as_bucket_view=True, process_group=process_group,
                                          **_no_buffer_sync())
    return wrapped


def _no_buffer_sync() -> dict:
    """DDP's keyword for "no buffer broadcast before each forward" in this torch (renamed in 2.13)."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def unwrap(net: nn.Module) -> nn.Module:
    """The bare network inside any DDP / ``torch.compile`` wrappers."""
    while True:
        if isinstance(net, DistributedDataParallel):
            net = net.module
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


def set_frozen(net: nn.Module, frozen: bool, keep_requires_grad: bool = False) -> None:
    """Freeze or unfreeze a (possibly wrapped) network's parameters for the coming step.

    A frozen network under DDP runs outside its reducer (what ``no_sync`` does): backward
    passes through it to the networks before it, but it expects and reduces no gradients.
    ``keep_requires_grad`` leaves ``requires_grad`` as it is (compiled networks: flipping it
    makes Dynamo recompile); the caller then discards the gradients the frozen step computed.
    """
    if not keep_requires_grad:
        for p in net.parameters():
            p.requires_grad_(not frozen)
    ddp = _ddp_of(net)
    if ddp is not None:
        ddp.require_backward_grad_sync = not frozen

"""Compute devices and precision, chosen once for training and prediction alike.

``resolve_device("auto")`` is CUDA when torch sees a GPU, else the CPU; ``cuda:N`` is checked
against the GPUs present; under ``torchrun`` each local rank takes its own GPU. Mixed precision
(:func:`choose_precision`) follows what the hardware does natively: bf16 on GPUs of compute
capability 8.0 and newer (A100, H100, RTX 30xx+), fp16 with loss scaling on older GPUs (V100,
T4: ``torch.cuda.is_bf16_supported()`` also says yes there, through slow emulation), and fp32
on the CPU (this CPU's bf16 is emulated: hundreds of times slower, measured).
"""
from __future__ import annotations

from typing import Any, Optional

from .errors import ConfigError, DeviceError

PRECISIONS = ("auto", "off", "fp32", "bf16", "fp16")


def resolve_device(device: Any = "auto", local_rank: Optional[int] = None):
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | a torch.device → a checked ``torch.device``.

    ``local_rank`` (a torchrun process) picks GPU ``local_rank`` for ``auto``/``cuda``. Asking for
    CUDA where there is none, or for a GPU index that does not exist, is one :class:`DeviceError`.
    """
    import torch

    name = str(device) if isinstance(device, torch.device) else str(device or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise DeviceError(f"unsupported device {device!r} (expected auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but torch sees no CUDA GPU (use --device cpu or auto)")
    count = torch.cuda.device_count()
    index = dev.index if dev.index is not None else (local_rank or 0)
    if index >= count:
        raise DeviceError(f"device 'cuda:{index}' requested but only {count} CUDA device(s) exist "
                          f"(numbered 0 to {count - 1})")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def native_bf16(device) -> bool:
    """True where bf16 runs natively: CUDA compute capability 8.0 or newer."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def choose_precision(mode: Any, device, *, where: str = "config: amp") -> Optional[str]:
    """The autocast dtype name for ``mode`` on ``device``: ``"bf16"``, ``"fp16"`` or None (fp32).

    ``auto``: bf16 where native, fp16 (with a GradScaler in training) on older GPUs, fp32 on the
    CPU. ``fp16`` on the CPU is refused (no fast fp16 kernels there); ``bf16`` on a GPU without
    native bf16 is refused rather than silently emulated.
    """
    if isinstance(mode, bool):
        mode = "auto" if mode else "off"
    mode = str(mode).lower()
    if mode not in PRECISIONS:
        raise ConfigError(f"{where}: {mode!r} is not one of {', '.join(PRECISIONS)}")
    cuda = getattr(device, "type", str(device)) == "cuda"
    if mode in ("off", "fp32"):
        return None
    if mode == "auto":
        if not cuda:
            return None
        return "bf16" if native_bf16(device) else "fp16"
    if mode == "fp16" and not cuda:
        raise ConfigError(f"{where}: fp16 needs a CUDA device; on the CPU use bf16 or off")
    if mode == "bf16" and cuda and not native_bf16(device):
        raise ConfigError(f"{where}: bf16 is not native on this GPU (compute capability < 8.0); use fp16 or auto")
    return mode


def torch_dtype(precision: Optional[str]):
    """``"bf16"`` / ``"fp16"`` / None → the torch dtype for autocast (None: no autocast)."""
    import torch

    return {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

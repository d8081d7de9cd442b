"""Which device to compute on (checked against what this PyTorch build can use), its peak memory, and the
fast settings for it (channels-last default, cudnn.benchmark, TF32)."""

from __future__ import annotations

import re
import resource
import sys

import torch
from torch import nn

from .errors import InfoProError, shown


def pick_device(name: str, flag: str = "--device") -> torch.device:
    """`auto` (CUDA when available, else the CPU) or a device string this PyTorch can allocate on."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InfoProError(f"{flag} {shown(name)} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InfoProError(f"{flag} {name} asked for, but this PyTorch sees no CUDA device; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InfoProError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    if device.type == "meta":
        raise InfoProError(f"{flag} meta holds shapes only and cannot train; use auto, cpu or cuda")
    # mps, xpu, ...: usable only if this build supports the device type and sees one.
    try:
        torch.zeros(1, device=device).add_(1).cpu()
    except Exception as error:  # each backend fails in its own way (RuntimeError, AssertionError, ImportError)
        reason = re.split(r"(?<=\.)\s", (str(error).strip().splitlines() or [type(error).__name__])[0])[0][:160]
        raise InfoProError(f"{flag} {name}: this PyTorch ({torch.__version__}) cannot use it ({reason}); "
                           f"use auto, cpu or cuda") from None
    return device


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA: the allocator's peak; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "cpu_max_rss"


def is_convolutional(module: nn.Module) -> bool:
    """Whether 2-D convolutions, the layers channels-last memory format speeds up, hold most of `module`'s
    weights (a ResNet or DenseNet: yes; a ViT, whose only convolution embeds the patches: no)."""
    conv = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))
    return conv > sum(p.numel() for p in module.parameters()) / 2


def use_fast_settings(device: torch.device, tf32: bool = True) -> dict[str, bool]:
    """The process-wide settings that make training fastest on `device`; returns what was set.

    CUDA: cuDNN picks the fastest convolution algorithm for each shape (`cudnn.benchmark`; the shapes of
    a run repeat every step), and on Ampere or newer float32 matmuls and convolutions run in TF32
    (`tf32=False` keeps full float32). The CPU has neither setting.
    """
    if device.type != "cuda":
        return {}
    torch.backends.cudnn.benchmark = True
    ampere = torch.cuda.get_device_capability(device)[0] >= 8
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32 and ampere
    return {"cudnn_benchmark": True, "tf32": tf32 and ampere}

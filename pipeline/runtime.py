"""Device choice, numeric precision and memory figures: the only place that knows about CUDA settings."""
from __future__ import annotations

import resource
import sys

import torch

from .errors import ConfigError


def select_device(name: str) -> torch.device:
    """`auto` takes CUDA where there is one, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: no CUDA device is available to this PyTorch "
                              f"(build {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"device {name}: MPS is not available")
    elif device.type != "cpu":
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def channels_last(device: torch.device) -> bool:
    """Whether the model runs in channels_last (NHWC) layout: on CUDA, where cuDNN's Tensor Core kernels
    want it. The image being optimised stays NCHW-contiguous (PyTorch's L-BFGS flattens gradients with
    .view(-1)); the first convolution converts its three channels."""
    return device.type == "cuda"


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(memory_format=torch.channels_last) if channels_last(device) else model


def resolve_precision(device: torch.device, precision: str) -> str:
    """What `precision` means on `device`: `auto` is TF32 on CUDA devices that have it (Ampere, compute
    capability 8.0, and newer: PyTorch's own default for convolutions) and strict fp32 everywhere else."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return "tf32"
    return "fp32"


def configure(device: torch.device, precision: str) -> torch.dtype | None:
    """Set cuDNN autotuning and TF32 for `precision` (resolve_precision); return the autocast dtype (bf16) or None.
    CUDA's settings are left alone on other devices: there `tf32` computes in fp32, and `bf16` runs the network
    under the CPU's bf16 autocast."""
    precision = resolve_precision(device, precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed frame sizes: autotune each convolution once
        tf32 = precision in ("tf32", "bf16")  # fp32 is strict: no TF32 even where PyTorch would allow it
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return torch.bfloat16 if precision == "bf16" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: CUDA memory allocated on a GPU, the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a GPU (None on the CPU, where the OS pages)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def available_memory(device: torch.device) -> int | None:
    """Bytes a run may use: free GPU memory, or the OS's MemAvailable on the CPU (None if unknown)."""
    if device.type == "cuda":
        return free_memory(device)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None

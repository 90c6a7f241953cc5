"""Which device a run uses, and how it is described in config.json."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from cnnlab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for, but CUDA is not available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name} does not exist: {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps asked for, but MPS is not available; use --device cpu")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights (or, without any, its buffers) are; the CPU for neither."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    return str(device)


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name where Linux gives it (two 2-core machines here differed 3 to 4x in
    speed, so a run's time means little without it), else what `platform` knows: the
    architecture."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()

"""A run's surroundings: its device, its folder, its determinism, and the rules for resuming it."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import torch

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.train.checkpoint import atomic_write_text

# Settings a resumed run may change: they decide where and how fast it runs, not what it learns.
# `epochs` may grow too, unless a schedule was planned around the old number of epochs.
RESUMABLE_OVERRIDES = {
    "device",
    "threads",
    "cpu_slices",
    "progress",
    "data_dir",
    "download",
    "checkpoint_every",
    "log_every",
    "tensorboard",
    "eval_every",
    "epochs",
}


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


def _version(package: str) -> str | None:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of giving them back to the OS.

    Why: glibc hands blocks from 128 KB up back to the OS when freed, so every training step's
    activations arrive as fresh pages that fault on first touch. LeNet, batch 128, 100 steps on
    one core: 300-450k page faults with the defaults, 108k with these thresholds, and steps
    1.2-1.5x faster. Blocks up to 32 MB (the largest threshold every glibc accepts) are kept;
    the process's memory then stays at its peak, which it reaches in the first step anyway.
    Process-wide and not undone: it changes where memory comes from, not any result. Returns
    whether it applied (not on other C libraries or systems).
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(
        libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 2**31 - 1)
    )


def set_determinism(cfg: TrainConfig, device: torch.device) -> list[str]:
    """Seed everything; with cfg.deterministic, force deterministic kernels. Returns caveats."""
    torch.manual_seed(cfg.seed)
    caveats: list[str] = []
    if not cfg.deterministic:
        return caveats
    # cuBLAS needs a fixed workspace to be deterministic; it is read when CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    if cfg.compile:
        caveats.append("torch.compile may pick different kernels on another machine or version")
    if device.type == "mps":
        caveats.append("MPS has no deterministic mode: GPU reductions may differ between runs")
    if cfg.dataset.startswith("folder:"):
        caveats.append("image decoding and resizing may differ between Pillow versions")
    caveats.append("results are bit-exact only on the same hardware, thread count and versions")
    return caveats


def default_run_name(cfg: TrainConfig) -> str:
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.dataset.split(":")[-1]).name or "data")
    return f"{cfg.model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(cfg: TrainConfig) -> Path:
    """Decide the run folder and check it can be used, without writing anything yet."""
    run_dir = Path(cfg.out_dir) / (cfg.name or default_run_name(cfg))
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder; choose another --name")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not cfg.overwrite:
        raise ConfigError(
            f"run directory {run_dir} already exists; resume it with "
            f"`cnnlab train --resume {run_dir}`, pick another --name, or pass --overwrite"
        )
    for parent in [run_dir.parent, *run_dir.parent.parents]:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise ConfigError(f"cannot write under {parent}; choose a writable --out-dir")
            break
    return run_dir


def create_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make the folder (replacing an old run only when asked to)."""
    if overwrite and run_dir.is_dir():
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create {run_dir}: {err.strerror}; choose a writable --out-dir"
        ) from None


def write_config_json(run_dir: Path, cfg: TrainConfig, device: torch.device, extra: dict) -> None:
    """config.json: the resolved config, the versions and the device, for whoever reads it later."""
    info = {
        "config": cfg.to_dict(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),  # no import: it takes 2+ s
        },
        "device": describe_device(device),
        **extra,
    }
    atomic_write_text(run_dir / "config.json", json.dumps(info, indent=2) + "\n")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return (
            f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    return str(device)


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The saved config with the few overrides a resume may make; anything else is a conflict."""
    cfg = TrainConfig.from_dict(saved, source=f"{run_dir}/last.pt config")
    for key, value in overrides.items():
        if value == saved.get(key) or (key == "betas" and list(value) == saved.get(key)):
            continue
        schedule_planned = key == "epochs" and saved.get("scheduler") in ("cosine", "onecycle")
        if key not in RESUMABLE_OVERRIDES or schedule_planned:
            raise ConfigError(
                f"--resume: {key}={value!r} conflicts with the run's {key}={saved.get(key)!r}; "
                "resume with the run's settings or start a new run with --name"
            )
        setattr(cfg, key, value)
    cfg.out_dir, cfg.name, cfg.overwrite = str(run_dir.parent), run_dir.name, False
    return cfg.validate()


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second one stops now)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


class TrainingInterrupted(Exception):
    """Raised after a signal once the checkpoint is written; carries the shell's exit code."""

    def __init__(self, signum: int, run_dir: Path, epoch: int, step: int):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} at epoch {epoch + 1}, step {step}; checkpoint saved. "
            f"Resume with: cnnlab train --resume {run_dir}"
        )

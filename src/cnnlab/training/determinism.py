"""Seeding a run, and what `--deterministic` forces and cannot promise."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from cnnlab.config import TrainConfig
from cnnlab.data.specs import parse_dataset_name


def seed_run(cfg: TrainConfig) -> None:
    """Seed torch's generators for a run, and (with --deterministic) fix cuBLAS's workspace,
    which CUDA reads when it starts: both before the model is built."""
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def deterministic_kernels(deterministic: bool) -> Iterator[None]:
    """With --deterministic, deterministic kernels only (and no cuDNN autotuning) while the
    run trains; torch's own settings, warn-only mode included, come back after. Without it,
    torch's settings are left as the caller has them."""
    if not deterministic:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def determinism_caveats(cfg: TrainConfig, device: torch.device) -> list[str]:
    """What --deterministic cannot promise for this run (nothing without it)."""
    caveats: list[str] = []
    if not cfg.deterministic:
        return caveats
    if cfg.compile:
        caveats.append("torch.compile may pick different kernels on another machine or version")
    if device.type == "mps":
        caveats.append("MPS has no deterministic mode: GPU reductions may differ between runs")
    if parse_dataset_name(cfg.dataset).kind == "folder":
        caveats.append("image decoding and resizing may differ between Pillow versions")
    caveats.append("results are bit-exact only on the same hardware, thread count and versions")
    return caveats

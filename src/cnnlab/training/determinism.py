"""Seeding a run, and what `--deterministic` forces and cannot promise."""

from __future__ import annotations

import os

import torch

from cnnlab.config import TrainConfig
from cnnlab.data.specs import parse_dataset_name


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
    if parse_dataset_name(cfg.dataset).kind == "folder":
        caveats.append("image decoding and resizing may differ between Pillow versions")
    caveats.append("results are bit-exact only on the same hardware, thread count and versions")
    return caveats

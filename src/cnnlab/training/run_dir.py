"""A run's folder: its name, the checks before anything is written, and creating it."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from cnnlab.config import TrainConfig
from cnnlab.data.specs import parse_dataset_name
from cnnlab.errors import ConfigError


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def default_run_name(cfg: TrainConfig) -> str:
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", parse_dataset_name(cfg.dataset).short)
    model = cfg.model.rpartition(":")[2]  # your own FILE.py:Name: its Name
    return f"{model}-{dataset}-{timestamp()}"


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

"""A run's folder: its name, the checks before anything is written, and creating it."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

from cnnlab.config import TrainConfig
from cnnlab.data.specs import parse_dataset_name
from cnnlab.errors import ConfigError


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def default_run_name(cfg: TrainConfig) -> str:
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", parse_dataset_name(cfg.dataset).short)
    model = cfg.model.rpartition(":")[2]  # your own FILE.py:Name: its Name
    return f"{model}-{dataset}-{timestamp()}"


def prepare_run_dir(cfg: TrainConfig, *, may_continue: bool = False) -> Path:
    """Decide the run folder and check it can be used, without writing anything yet.
    `may_continue`: a folder with a last.pt passes (the checkpoint, read later, decides
    whether this config continues it: trainer.same_run)."""
    run_dir = Path(cfg.out_dir) / (cfg.name or default_run_name(cfg))
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder; choose another --name")
    for parent in [run_dir.parent, *run_dir.parent.parents]:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise ConfigError(f"cannot write under {parent}; choose a writable --out-dir")
            break
    if run_dir.is_dir() and in_use(run_dir):
        raise ConfigError(
            f"run {run_dir} is in use by another cnnlab process; wait for it to end, or "
            "choose another --name"
        )
    taken = run_dir.is_dir() and any(run_dir.iterdir()) and not cfg.overwrite
    continuing = may_continue and (run_dir / "last.pt").is_file()
    if taken and not continuing and never_trained(run_dir) is None:
        raise ConfigError(
            f"run directory {run_dir} already exists; resume it with "
            f"`cnnlab train --resume {run_dir}`, pick another --name, or pass --overwrite"
        )
    return run_dir


def never_trained(run_dir: Path) -> list[Path] | None:
    """The files of a run stopped during start-up, before its first checkpoint (Ctrl-C,
    SIGTERM, SIGKILL), when `run_dir` holds nothing else: cnnlab's config.json, TensorBoard
    events, an empty metrics.jsonl, a killed writer's temporary files, the lock of no live
    process. The same --name replaces them. None when anything else is there (a checkpoint,
    a file of the user's): the folder is kept."""
    found = []
    for entry in run_dir.iterdir():
        name = entry.name
        ours = (
            (name == "config.json" and _written_by_a_run(entry))
            or name.startswith("events.out.tfevents.")
            or (name.startswith(".") and name.endswith(".tmp"))
            or (name == "metrics.jsonl" and entry.stat().st_size == 0)
            or name == LOCK
        )
        if not (entry.is_file() and not entry.is_symlink() and ours):
            return None
        found.append(entry)
    return found


def _written_by_a_run(path: Path) -> bool:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("config"), dict) and "versions" in info


def clear_start(run_dir: Path) -> None:
    """Remove what a run stopped during start-up left (`never_trained`'s files), if that is
    all the folder holds; the folder stays."""
    for path in never_trained(run_dir) or []:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot clear {path} (left by a run stopped while starting): {err.strerror}; "
                "remove it, or choose another --name"
            ) from None


def create_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make the folder (replacing an old run only when asked to; what a start that never
    trained left is cleared: `never_trained`)."""
    try:
        if overwrite and run_dir.is_dir():
            shutil.rmtree(run_dir)
        elif run_dir.is_dir():
            clear_start(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create {run_dir}: {err.strerror}; choose a writable --out-dir"
        ) from None


LOCK = ".lock"  # locked (flock) by the process writing the run, while it runs (then removed)


def lock_run_dir(run_dir: Path) -> int | None:
    """Lock the run folder for this process (until `unlock`, or its exit: the kernel frees a
    dead process's lock); a ConfigError when another process has it. None where there is no
    flock (not POSIX): no lock."""
    if fcntl is None:
        return None
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"run {run_dir} is in use by another cnnlab process; wait for it to end, or "
            "choose another --name"
        ) from None
    return fd


def unlock(fd: int | None, run_dir: Path | None = None) -> None:
    """Free the lock; with `run_dir`, remove its file first (while still holding it), so a
    finished run leaves no trace of it (a killed one leaves it unheld: never_trained knows)."""
    if fd is None:
        return
    if run_dir is not None:
        (run_dir / LOCK).unlink(missing_ok=True)
    os.close(fd)  # closing the file frees its flock


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds the run folder's lock."""
    if fcntl is None or not (run_dir / LOCK).is_file():
        return False
    try:
        unlock(lock_run_dir(run_dir))
    except ConfigError:
        return True
    except OSError:  # a folder this user may not write: not a run of theirs in progress
        return False
    return False

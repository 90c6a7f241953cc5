"""What the command line refuses before it imports torch: importing it takes a second or more
(several on a busy machine), too long to wait for a typo. `check_command_line` runs before every
command: a --data-dir that is not a folder, a --dataset that names no data set, and the file or
folder a command is given that does not exist. train.py checks the whole config, recipe and
flags, the same way. The libraries check the same things again, in the same words, for Python
callers (all but --data-dir: a data_dir that is not there is passed over); here they are only
said sooner.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.data.specs import check_dataset_name
from cnnlab.errors import CheckpointError, ConfigError, RunFolderError

RUN_FOLDER_HINT = "give the folder `cnnlab train` printed"


def check_command_line(args: argparse.Namespace) -> None:
    """Refuse, in one line, what the command line alone shows to be wrong."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        what = "is a file" if Path(data_dir).expanduser().exists() else "does not exist"
        raise ConfigError(
            f"--data-dir {data_dir} {what}; give a folder holding data sets, or leave it out "
            "(`cnnlab datasets` shows where they are looked for)"
        )
    if getattr(args, "dataset", None) is not None:
        check_dataset_name(args.dataset)
    check = NAMED_PATHS.get(args.command)
    if check is not None:
        check(args)


def _checkpoint(args: argparse.Namespace) -> None:
    """eval, features, explain, export: a .pt file or a run folder."""
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise CheckpointError(
            f"checkpoint {args.checkpoint} does not exist; give a .pt file or a run folder"
        )


def _run_folder(args: argparse.Namespace) -> None:
    """plot, report: a run folder."""
    if args.run is not None and not Path(args.run).is_dir():
        what = "is a file" if Path(args.run).exists() else "does not exist"
        raise RunFolderError(f"run folder {args.run} {what}; {RUN_FOLDER_HINT}")


def _model_file(args: argparse.Namespace) -> None:
    """predict: a run folder, a checkpoint or an exported file."""
    if not Path(args.model_file).exists():
        raise CheckpointError(
            f"model file {args.model_file} does not exist; give a run folder, a .pt checkpoint, "
            "or an exported .onnx, .safetensors or .torchscript.pt file"
        )


def _summary_model(args: argparse.Namespace) -> None:
    """summary: a model name, or (a .pt name or a path, as inspect/sources.py tells them
    apart) a checkpoint or a run folder."""
    text = args.model
    if text is None or Path(text).exists() or not (text.endswith(".pt") or "/" in text):
        return
    raise CheckpointError(
        f"{text} does not exist; give a model name, a .pt file or a run folder (`cnnlab models` "
        "lists the names)"
    )


def _resume(args: argparse.Namespace) -> None:
    """train --resume: a run folder holding last.pt."""
    if args.resume is None:
        return
    folder = args.resume
    if folder.is_file():  # runs/x/last.pt: the folder around it was meant
        raise RunFolderError(f"--resume {folder} is a file; give its run folder, {folder.parent}")
    if not folder.is_dir():
        raise RunFolderError(f"run folder {folder} does not exist; {RUN_FOLDER_HINT}")
    if not (folder / "last.pt").is_file():
        raise CheckpointError(
            f"{folder} has no last.pt to resume from; {RUN_FOLDER_HINT}, or train again"
        )


NAMED_PATHS = {
    "eval": _checkpoint,
    "features": _checkpoint,
    "explain": _checkpoint,
    "export": _checkpoint,
    "plot": _run_folder,
    "report": _run_folder,
    "predict": _model_file,
    "summary": _summary_model,
    "train": _resume,
}

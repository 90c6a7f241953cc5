"""What a resumed run may change: where and how fast it runs, never what it learns.

The fields that may change are marked `resumable` in config/. `epochs` may grow too, unless
a schedule was planned around the old number of epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.config import TrainConfig, resumable_fields
from cnnlab.config.fields import FieldError
from cnnlab.data.own import given_in_python
from cnnlab.errors import ConfigError
from cnnlab.models.args import architecture_args
from cnnlab.training.stopping import Watch, selection_key, stop_reason

PLANNED_SCHEDULES = ("cosine", "onecycle", "linear")  # their shape depends on the epochs


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The saved config with the few overrides a resume may make; anything else is a conflict."""
    cfg = TrainConfig.from_dict(saved, source=f"{run_dir}/last.pt config")
    allowed = resumable_fields()
    for key, value in overrides.items():
        if value == saved.get(key) or (key == "betas" and list(value) == saved.get(key)):
            continue
        # a schedule, or lookahead's warm-up, planned for the run's number of steps
        planned = saved.get("scheduler") in PLANNED_SCHEDULES or saved.get("lookahead_decay")
        schedule_planned = key == "epochs" and bool(planned)
        if key not in allowed or schedule_planned:
            given, was = (repr(v).replace("{", "{{").replace("}", "}}")
                          for v in (value, saved.get(key)))  # fmt: skip
            raise FieldError(
                key,
                f"resuming: {{{key}}} {given} conflicts with the run's {was}; resume with the "
                "run's settings, or start a new run (another {name})",
            )
        setattr(cfg, key, value)
    cfg.out_dir, cfg.name, cfg.overwrite = str(run_dir.parent), run_dir.name, False
    return cfg.validate()


def check_resumable(
    saved: dict[str, Any], cfg: TrainConfig, model_args: dict, run_dir: Path, data: Any
) -> None:
    """The checkpoint must be unfinished (or get more epochs), fit the model built now, and go
    on with the data it trained on (`data`, as loaded or given now)."""
    if saved.get("finished") and saved["epoch"] >= cfg.epochs:
        raise ConfigError(
            f"run {run_dir} already finished its {saved['epoch']} epochs; pass --epochs N "
            f"(more than {saved['epoch']}) to train further, or start a new run (another "
            "--name, or --overwrite)"
        )
    check_not_stopped(saved, cfg, run_dir)
    check_same_data(saved, data, run_dir)  # first: the data says more than its arguments
    # a run started with --model-arg pretrained=true saved it there; its weights are in the
    # checkpoint now, so only the architecture must match
    if architecture_args(saved["model_args"]) != model_args or saved["model_name"] != cfg.model:
        raise ConfigError(
            f"run {run_dir} was trained with other data or model settings; "
            "resume it with the same data set"
        )


def check_not_stopped(saved: dict[str, Any], cfg: TrainConfig, run_dir: Path) -> None:
    """A run that stopped early goes on only when the settings it is resumed with would not
    have stopped it (a longer --early-stop-patience, 0, or a higher --target-accuracy)."""
    if not saved.get("stopped") or not saved["metrics"]:
        return
    last = saved["metrics"][-1]
    key = selection_key("val_accuracy" in last)
    watch = Watch(**saved.get("early_stop", {}))
    reason = stop_reason(cfg, key, last.get(key), saved["epoch"], watch)
    if reason is not None:
        raise ConfigError(
            f"run {run_dir} already stopped ({reason}); to train further, resume it with a "
            "larger --early-stop-patience (0: off) or --target-accuracy"
        )


def check_same_data(saved: dict[str, Any], data: Any, run_dir: Path) -> None:
    """A resumed run goes on with the data it trained on: the same classes and image shape, and
    data given in Python again (passed again, it could be other data). A data set on disk may
    have moved: its path is not compared."""
    python = [name for name in (saved["dataset"], data.name) if given_in_python(name)]
    same = (list(saved["class_names"]), list(saved["input_shape"])) == (
        list(data.class_names), list(data.input_shape),
    )  # fmt: skip
    if not same or (python and saved["dataset"] != data.name):
        raise ConfigError(
            f"run {run_dir} trained on {saved['dataset']} ({len(saved['class_names'])} classes, "
            f"{'×'.join(map(str, saved['input_shape']))}), not {data.name} "
            f"({data.num_classes} classes, {'×'.join(map(str, data.input_shape))}); resume it "
            "with the data it trained on"
        )

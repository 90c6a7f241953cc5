"""TrainConfig: every training setting, its one default, and what it means.

The same dataclass is filled from Python (`TrainConfig(model="lenet")`), from a TOML recipe
(`[train]` keys or top-level keys with the field names) and from `cnnlab train` flags, which are
generated from these fields (`--batch-size` is `batch_size`). Flags override the recipe.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from cnnlab.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
LOSSES = ("cross_entropy",)
SCHEDULERS = ("none", "step", "cosine", "onecycle")
INITS = ("default", "xavier", "kaiming")
PROGRESS = ("auto", "bar", "lines", "none")


def opt(help: str, default: Any = None, *, factory: Any = None) -> Any:
    """A config field with its `--help` text (the CLI flags are generated from these)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """A training run: each field is a `cnnlab train --flag` and a recipe key."""

    # --- what to train, on what ---
    model: str = opt("model name from `cnnlab models`", "lenet")
    model_args: dict[str, Any] = opt("extra builder arguments, n_chans1=32", factory=dict)
    dataset: str = opt(
        "built-in name, npz:PATH or folder:PATH (`cnnlab datasets`)", "fashion-mnist"
    )
    data_dir: str | None = opt("a folder to look in first for the data set files", None)
    download: bool = opt("download a built-in data set when it is not found on disk", True)
    image_size: int | None = opt(
        "resize folder: images to this size (default: first image's)", None
    )
    normalize: bool = opt(
        "scale pixels by the data set's mean/std (false: [0, 1] pixels, ToTensor alone)", True
    )
    augment: bool = opt("random crop (padding H/8) and horizontal flip on training batches", False)
    init: str = opt("weight init: default (PyTorch's or the seed's), xavier, kaiming", "default")

    # --- how long, how fast ---
    epochs: int = opt("number of passes over the training set", 10)
    batch_size: int = opt("training batch size", 256)
    eval_batch_size: int = opt("evaluation batch size (no gradients, so it can be larger)", 1024)

    # --- optimizer (seed 002's table), loss, schedule ---
    optimizer: str = opt("sgd, adam, adamw, rmsprop, adagrad, adadelta", "sgd")
    lr: float = opt("learning rate", 0.1)
    momentum: float = opt("sgd / rmsprop momentum", 0.0)
    dampening: float = opt("sgd dampening for momentum", 0.0)
    nesterov: bool = opt("sgd Nesterov momentum (needs momentum > 0, dampening 0)", False)
    weight_decay: float = opt("L2 penalty (decoupled for adamw)", 0.0)
    betas: tuple[float, float] = opt("adam / adamw moment coefficients", (0.9, 0.999))
    eps: float | None = opt("optimizer epsilon (default: the optimizer's own)", None)
    amsgrad: bool = opt("adam / adamw AMSGrad variant", False)
    loss: str = opt("loss on logits", "cross_entropy")
    label_smoothing: float = opt("cross-entropy label smoothing in [0, 1)", 0.0)
    class_weights: list[float] | None = opt("cross-entropy weight per class", None)
    scheduler: str = opt("LR schedule: none, step, cosine, onecycle", "none")
    step_size: int = opt("step schedule: epochs between LR drops", 30)
    gamma: float = opt("step schedule: LR factor at each drop", 0.1)

    # --- where, how reproducibly ---
    device: str = opt("auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps", "auto")
    seed: int = opt("seeds model init, shuffling and augmentation", 0)
    deterministic: bool = opt(
        "bit-exact reruns and resumes (torch deterministic algorithms)", False
    )
    threads: int = opt("CPU threads per op for torch (0: 1 with --cpu-slices, else torch's)", 0)
    cpu_slices: int = opt(
        "CPU: train slices of each batch in parallel threads (0: one per core; 1: off)", 0
    )
    fast_cpu_ops: bool = opt(
        "CPU: faster exact forms of 2x2 average pooling and 1-channel conv weight gradients", True
    )
    channels_last: bool = opt("NHWC memory format (helps on CUDA with tensor cores)", False)
    amp: bool = opt("bf16 autocast on CUDA", False)
    compile: bool = opt("torch.compile the model (slow to start, can be faster on GPU)", False)

    # --- what it leaves behind ---
    out_dir: str = opt("parent folder of run directories", "runs")
    name: str | None = opt("run directory name (default: model-dataset-timestamp)", None)
    overwrite: bool = opt("replace an existing run directory of the same name", False)
    eval_every: int = opt("evaluate on the test split every N epochs (and after the last)", 1)
    log_every: int = opt("log train_loss to TensorBoard every N steps", 100)
    checkpoint_every: int = opt("also save last.pt every N steps (0: at epoch ends only)", 0)
    tensorboard: bool = opt("write TensorBoard event files", True)
    progress: str = opt(
        "auto (bar on a terminal, a line per epoch otherwise), bar, lines, none", "auto"
    )

    def validate(self) -> TrainConfig:
        """Check every value; raise ConfigError with one line naming the field."""
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("scheduler", self.scheduler, SCHEDULERS)
        _check_choice("init", self.init, INITS)
        _check_choice("progress", self.progress, PROGRESS)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "momentum",
            "dampening",
            "weight_decay",
            "threads",
            "cpu_slices",
            "checkpoint_every",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("nesterov needs momentum > 0 and dampening 0; set --momentum 0.9")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"image_size must be at least 1, got {self.image_size}")
        if self.name is not None and (not self.name or "/" in self.name or self.name in ".."):
            raise ConfigError(f"name must be a plain folder name, got {self.name!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able values (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from plain values, refusing unknown keys and values of the wrong type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"valid keys are listed by `cnnlab train --help`"
            )
        hints = typing.get_type_hints(cls)
        converted = {k: coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()}
        return cls(**converted)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML recipe: top-level keys, or a `[train]` table, named like TrainConfig fields."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist; see recipes/ for examples") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe {path} cannot be read: {err}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe {path} is not valid TOML: {err}") from None
    values = dict(values.pop("train", {}), **values)
    TrainConfig.from_dict(values, source=str(path))  # fail early, with the file's name
    return values


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint; ints pass for floats, lists for tuples."""
    if value is None:
        if _allows_none(hint):
            return None
        raise ConfigError(f"{where} must not be empty")
    kind = _base_type(hint)
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        list: lambda v: (
            isinstance(v, list | tuple)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        ),
        tuple: lambda v: (
            isinstance(v, list | tuple)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        ),
    }[kind]
    if not ok(value):
        raise ConfigError(f"{where} must be {_type_word(kind)}, got {value!r}")
    if kind is float:
        return float(value)
    if kind in (list, tuple):
        return kind(float(x) for x in value)
    return value


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    origin = typing.get_origin(hint)
    return origin if origin is not None else hint


def _allows_none(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _type_word(kind: type) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return words.get(kind, {dict: "a table", list: "a list of numbers"}.get(kind, "a pair"))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value

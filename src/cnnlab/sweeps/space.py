"""A sweep's SPACE.toml: the fixed settings, what to search and how, read and checked whole
before any trial runs (no torch, no Optuna: a bad file costs no start-up).

    recipe = "lenet-fashion-mnist"        # optional: a recipe's values as the fixed settings
    epochs = 1                            # any TrainConfig field: fixed for every trial
    [search]                              # Optuna's terms
    lr = { low = 1e-3, high = 3.0, log = true }
    batch_size = { low = 32, high = 512, step = 32 }
    optimizer = ["sgd", "adam"]
    model_args = [{ n_chans1 = 16 }, { n_chans1 = 32 }]
    [study]
    objective = "val_accuracy"            # or val_loss
    trials = 20
    sampler = "tpe"                       # random, grid
    pruner = "median"                     # hyperband, none
    seed = 0

Every trial is judged on the validation split: a recipe that holds none out (the shipped
ones keep the tutorials' val_fraction 0) gets TrainConfig's default share, and no trial
evaluates the test split (eval_test false): a search that looked at the test split would
choose on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import TrainConfig, load_recipe
from cnnlab.config.fields import field_types
from cnnlab.errors import ConfigError

OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
STUDY_KEYS = ("objective", "direction", "trials", "sampler", "pruner", "seed")
DEFAULT_TRIALS = 20
# fields a trial may not set: where a trial goes is the sweep's to say, and every trial must
# be judged on the same validation split of the same data
NOT_SEARCHED = {
    "name": "each trial's folder is SWEEP/trials/<number>",
    "out_dir": "each trial's folder is SWEEP/trials/<number>",
    "overwrite": "trial folders are never replaced",
    "dataset": "every trial must be judged on the same data",
    "data_dir": "every trial must be judged on the same data",
    "val_fraction": "every trial must be judged on the same validation split",
    "test_fraction": "every trial must be judged on the same validation split",
    "eval_test": "a sweep's trials never evaluate the test split",
    "seed": "it draws the validation split too: each trial would be judged on another split",
}
NOT_FIXED = {"eval_test", "name", "out_dir", "overwrite"}


@dataclass(frozen=True)
class Param:
    """One searched field: a range (`low`..`high`, `log` or a `step`) or a list of `choices`.
    `name` is the TrainConfig field; Optuna's parameter has the same name."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    integer: bool = False  # an int field: Optuna's suggest_int

    def choice_labels(self) -> list[Any]:
        """The choices as Optuna stores them (None, bool, int, float or str): a table (a
        model_args choice) as its JSON text."""
        return [json.dumps(c, sort_keys=True) if isinstance(c, dict) else c for c in self.choices]

    def value_of(self, stored: Any) -> Any:
        """The setting a stored choice label stands for."""
        if self.choices and isinstance(stored, str):
            for choice, label in zip(self.choices, self.choice_labels(), strict=True):
                if label == stored:
                    return choice
        return stored

    def grid_values(self) -> list[Any] | None:
        """Every value, for the grid sampler (None: a continuous range has no grid)."""
        if self.choices:
            return self.choice_labels()
        if self.step is None and not self.integer:
            return None
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if self.integer:
            return [int(self.low + k * step) for k in range(count)]
        # 0.1 + 2 * 0.1 is 0.30000000000000004, outside a range that ends at 0.3
        return [round(self.low + k * step, 12) for k in range(count)]


@dataclass
class Space:
    """A parsed SPACE file: the trials' fixed TrainConfig values, the searched params, and the
    study's settings. `notes`: what the sweep changed in the fixed values, and why."""

    path: Path
    fixed: dict[str, Any]
    params: list[Param]
    objective: str = "val_accuracy"
    direction: str = "maximize"
    trials: int = DEFAULT_TRIALS
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def identity(self) -> str:
        """What a study continued from its folder must share with this file (not the number
        of trials, which a second command may raise)."""
        params = [dataclasses.asdict(p) for p in self.params]
        same = {
            "fixed": self.fixed, "params": params, "objective": self.objective,
            "direction": self.direction, "sampler": self.sampler, "pruner": self.pruner,
        }  # fmt: skip
        return json.dumps(same, sort_keys=True, default=str)

    def trial_values(self, searched: dict[str, Any]) -> dict[str, Any]:
        """A trial's TrainConfig values: the fixed ones with the searched ones on top."""
        by_name = {p.name: p for p in self.params}
        return {**self.fixed, **{k: by_name[k].value_of(v) for k, v in searched.items()}}

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid_values() for p in self.params}


def read_space(path: str | Path, trials: int | None = None) -> Space:
    """Read and check a SPACE file; `trials` (from --trials) overrides [study] trials. Any
    fault is one ConfigError line naming the file and the key."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"search space {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"search space {path} cannot be read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"search space {path} is not valid TOML: {err}") from None
    where = f"search space {path}"
    search, study = document.pop("search", None), document.pop("study", {})
    if not isinstance(search, dict) or not search:
        raise ConfigError(
            f"{where}: no [search] table; add one, like [search] lr = {{ low = 1e-3, high = 1 }}"
        )
    if not isinstance(study, dict):
        raise ConfigError(f"{where}: study must be a table ([study])")
    fixed, notes = _fixed_values(document, where)
    params = [_param(name, spec, fixed, where) for name, spec in search.items()]
    if (fixed.get("lr_find") or fixed.get("lr") == "find") and "lr" in search:
        raise ConfigError(f"{where}: lr_find sets each trial's lr itself; search lr or "
                          "find it, not both")  # fmt: skip
    space = Space(path, fixed, params, notes=notes, seed=fixed.get("seed", 0))
    _study_settings(space, study, where)
    if trials is not None:
        space.trials = trials
    if space.sampler == "grid":
        _check_grid(space, where)
    return space


def _fixed_values(document: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """The trials' fixed values: the recipe's, then the file's own (top level or [train])."""
    notes = []
    recipe = document.pop("recipe", None)
    values = load_recipe(recipe) if recipe is not None else {}
    for key in NOT_FIXED:  # a recipe's run name or folder: the sweep names its trials
        values.pop(key, None)
    own = dict(document.pop("train", {}), **document)
    for key in own:
        if key in NOT_FIXED:
            raise ConfigError(
                f"{where}: {key} is not a setting of a sweep's trials: "
                f"{NOT_SEARCHED.get(key, 'the sweep sets it')}"
            )
    values.update(own)
    try:
        cfg = TrainConfig.from_dict(values, source=where).validate()
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if cfg.val_fraction == 0:
        if "val_fraction" in own:
            raise ConfigError(
                f"{where}: val_fraction = 0 holds out no validation split, and a sweep must not "
                "choose on the test split; set val_fraction above 0 (or leave it out)"
            )
        values["val_fraction"] = TrainConfig.val_fraction
        notes.append(
            f"trials hold out val_fraction {TrainConfig.val_fraction:g} of the training images "
            "to be judged on (the recipe's 0 would choose on the test split)"
        )
    values["eval_test"] = False
    return values, notes


def _param(name: str, spec: Any, fixed: dict[str, Any], where: str) -> Param:
    """One [search] entry, checked: a field, a range or choices its field accepts."""
    kinds = field_types(TrainConfig)
    at = f"{where}: [search] {name}"
    if name not in kinds:
        raise ConfigError(
            f"{at}: unknown field; search any TrainConfig field (`cnnlab train "
            "--help` lists them as flags)"
        )
    if name in NOT_SEARCHED:
        raise ConfigError(f"{at}: not searchable: {NOT_SEARCHED[name]}")
    kind = kinds[name].kind
    if isinstance(spec, list):
        param = _choices(name, spec, at)
        values = list(param.choices)
    elif isinstance(spec, dict) and kind is not dict:
        param = _range(name, spec, kind, at)
        values = [param.low, param.high]
    else:
        raise ConfigError(
            f"{at}: give a range {{ low = ..., high = ... }} (with log = true or a step) or a "
            f"list of choices, got {spec!r}"
        )
    for value in values:
        try:
            TrainConfig.from_dict({**fixed, name: value}, source=where).validate()
        except ConfigError as err:
            raise ConfigError(f"{at} = {value!r}: {err}") from None
    return param


def _choices(name: str, spec: list[Any], at: str) -> Param:
    if not spec:
        raise ConfigError(f"{at}: an empty list of choices; give at least one")
    labels = [json.dumps(c, sort_keys=True, default=str) for c in spec]
    if len(set(labels)) < len(labels):
        raise ConfigError(f"{at}: a choice is listed twice in {spec!r}")
    return Param(name, choices=tuple(spec))


def _range(name: str, spec: dict[str, Any], kind: type, at: str) -> Param:
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(
            f"{at}: a range has low, high and optionally log or step, got {sorted(spec)}"
        )
    if kind not in (int, float):
        raise ConfigError(f"{at}: {name} is not a number; give a list of choices")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise ConfigError(f"{at}: low, high and step must be numbers, got {spec!r}")
    if kind is int and not all(isinstance(v, int) for v in numbers):
        raise ConfigError(f"{at}: {name} is a whole number; give whole low, high and step")
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{at}: low {low} is above high {high}; swap them")
    if low == high:
        raise ConfigError(
            f"{at}: an empty range (low = high = {low}); give {name} = {low} "
            "as a fixed value instead"
        )
    if log and low <= 0:
        raise ConfigError(f"{at}: a log range needs low above 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{at}: give log = true or a step, not both (Optuna's rule)")
    if step is not None and not 0 < step <= high - low:
        raise ConfigError(f"{at}: step must be above 0 and at most high - low, got {step}")
    return Param(name, low=low, high=high, log=log, step=step, integer=kind is int)


def _study_settings(space: Space, study: dict[str, Any], where: str) -> None:
    unknown = sorted(set(study) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown [study] key {unknown[0]!r}; the keys are {', '.join(STUDY_KEYS)}"
        )
    objective = study.get("objective", space.objective)
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ConfigError(
            f"{where}: [study] objective {objective!r}: choose "
            f"{' or '.join(OBJECTIVES)} (the validation split's; never the test's)"
        )
    direction = study.get("direction", OBJECTIVES[objective])
    if direction != OBJECTIVES[objective]:
        raise ConfigError(
            f"{where}: [study] direction {direction!r} would choose the worst "
            f"{objective}; it is {OBJECTIVES[objective]} (or leave it out)"
        )
    trials = study.get("trials", space.trials)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ConfigError(f"{where}: [study] trials must be a whole number above 0, got {trials!r}")
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        value = study.get(key, getattr(space, key))
        if value is False and key == "pruner":
            value = "none"
        if value not in allowed:
            raise ConfigError(
                f"{where}: [study] {key} {value!r}: choose one of {', '.join(allowed)}"
            )
        setattr(space, key, value)
    seed = study.get("seed", space.seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: [study] seed must be a whole number, got {seed!r}")
    space.objective, space.direction, space.trials, space.seed = objective, direction, trials, seed


def _check_grid(space: Space, where: str) -> None:
    """A grid needs a finite list of values per field; it holds at most its size of trials."""
    size = 1
    for param in space.params:
        values = param.grid_values()
        if values is None:
            raise ConfigError(
                f"{where}: [search] {param.name}: the grid sampler needs choices or a step, "
                "not a continuous range"
            )
        size *= len(values)
    if space.trials > size:
        space.notes.append(f"the grid has {size} points: {size} trials, not {space.trials}")
        space.trials = size

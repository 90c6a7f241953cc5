"""A run as a user asks for it: train (or resume), then the run's report.html.

`cnnlab.train(...)` and `cnnlab train` both end here. The training package knows nothing of
reports: whoever finishes a run asks for one, and that is this module, which sits above both.

    cnnlab.train(cnnlab.TrainConfig(model="lenet", epochs=10))
    cnnlab.train(model="lenet", epochs=3)                # the same, as keywords
    cnnlab.train(resume="runs/x", epochs=20)             # continue runs/x from its last.pt
    cnnlab.train(model=MyNet, train_data=ds, test_data=test_ds)   # your own model and data
    cnnlab.train_seeds(cnnlab.TrainConfig(...), [0, 1, 2])   # runs/NAME-seed0, ...
    cnnlab.train(model="lenet", optimizer="sgd", lr="find")   # the range test, then its rate
    cnnlab.lr_find(model="lenet", optimizer="sgd")       # the range test alone: curve, rate
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.config import TrainConfig, spell_lr_find
from cnnlab.errors import CnnlabError, ConfigError

if TYPE_CHECKING:
    from cnnlab.training.lr_find import LrFindResult
    from cnnlab.training.session import Given
    from cnnlab.training.trainer import TrainResult


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    model: Any = None,
    train_data: Any = None,
    test_data: Any = None,
    class_names: list[str] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a model: `train(TrainConfig(...))`, `train(model="lenet", epochs=3)`, or
    `train(resume="runs/x", epochs=20)` to continue a run from its last.pt, step for step.
    The run's report.html is written at the end unless the config says `report=False`.

    Your own work: `model` is a registered name, "FILE.py:Name" or "package.module:Name", an
    nn.Module class or a function returning one (built with `model_args`), or a module already
    built; `train_data` and `test_data` are torch Datasets of (image, label) items or
    (images, labels) pairs, in place of the config's data set (data/own.py). A run on data
    given here, or on a module object, needs them again to resume.

    `lr="find"` (or `lr_find=True`) runs the learning-rate range test first and trains at its
    suggestion (see `lr_find`); a resumed run keeps the rate it found."""
    from cnnlab.training.trainer import fit, resume_run

    overrides = spell_lr_find(overrides)
    given = _given(model, train_data, test_data, class_names, overrides, resume is not None)
    if resume is not None:
        if config is not None:
            raise ConfigError("give either a config or resume=RUN_DIR (with overrides), not both")
        return finish(resume_run(resume, given=given, **overrides), given.data)
    cfg = _config(config or TrainConfig(), overrides, given, "cnnlab.train")
    return finish(fit(cfg, given), given.data)


def lr_find(
    config: TrainConfig | None = None,
    *,
    model: Any = None,
    train_data: Any = None,
    test_data: Any = None,
    class_names: list[str] | None = None,
    out: str | Path | None = None,
    **overrides: Any,
) -> LrFindResult:
    """The learning-rate range test (`cnnlab lr-find`) of a config given as `train` takes one,
    own models and data included: `lr_find(model="mnist_cnn", dataset="mnist",
    optimizer="sgd", momentum=0.5)`. Returns the curve (`lrs`, `losses`, `smoothed`), the
    `suggestion` and how it was chosen (`rule`); `result.summary()` says both.

    Nothing is left changed: a model object given is put back as it was (weights, buffers,
    mode, device), the random generators too, and no run folder is made. `out` (an
    LrFindConfig's own `out` when that is the config): a folder to write lr_find.png and
    lr_find.json into."""
    from cnnlab.training.lr_find import lr_find_run, write_lr_find

    given = _given(model, train_data, test_data, class_names, overrides, False)
    cfg = _config(config or TrainConfig(), overrides, given, "cnnlab.lr_find")
    result = lr_find_run(cfg, given)
    folder = out if out is not None else getattr(cfg, "out", None)
    if folder is not None:
        write_lr_find(Path(folder), result)
    return result


def _config(config: TrainConfig, overrides: dict[str, Any], given: Given, source: str):
    """`config` (a TrainConfig, or an LrFindConfig) with the keyword `overrides` on top."""
    values = {**config.to_dict(), **overrides}
    if given.model is not None and values.get("model_args"):
        raise ConfigError(
            "model_args are for a model to build (a name or a class); this model is built "
            "already: give the class and model_args, or drop model_args"
        )
    return type(config).from_dict(values, source=source)


def train_seeds(config: TrainConfig, seeds: Iterable[int]) -> list[TrainResult]:
    """Train `config` once per seed, in order, one run folder each (`<name>-seed<k>`); every
    seed's config and folder is checked before the first one trains."""
    from cnnlab.training.seeds import seed_configs
    from cnnlab.training.trainer import fit

    return [finish(fit(cfg)) for cfg in seed_configs(config, list(seeds))]


def _given(
    model: Any, train_data: Any, test_data: Any, class_names: Any, overrides: dict, resuming: bool
) -> Given:
    """What `train` was handed besides a config, as the session takes it; a model by name
    or class becomes `overrides["model"]` (its registry name)."""
    from torch import nn

    from cnnlab.data.own import own_data
    from cnnlab.models.registry import register_object
    from cnnlab.training.session import Given

    given = Given()
    if isinstance(model, nn.Module):
        given.model = model
        overrides["model"] = register_object(type(model))
    elif isinstance(model, str):
        overrides["model"] = model
    elif model is not None:
        overrides["model"] = register_object(model)
    if resuming and "model" in overrides and given.model is None:
        overrides.pop("model")  # a resumed run rebuilds its own; an object is handed over
    if train_data is None and test_data is not None:
        raise ConfigError("give train_data too: test_data alone is for cnnlab.evaluate_checkpoint")
    if train_data is not None:
        given.data = own_data(train_data, test_data, class_names=class_names)
    return given


def finish(result: TrainResult, data: Any = None) -> TrainResult:
    """The end of a run every epoch of which ran (an interrupted one raised before this, and
    reports when resumed): its report.html, then where the run is, as the last line. `data`:
    the data given in Python, which the report's predictions are made on."""
    cfg = result.config
    if not result.main_process:  # under torchrun rank 0 writes and speaks for every process
        return result
    if cfg.report:
        report_run(result.run_dir, cfg, data)
    _say(cfg, f"run directory: {result.run_dir}")
    return result


def report_run(run_dir: Path, cfg: TrainConfig, data: Any = None) -> None:
    """report.html of a finished run, and a line saying where; a report that cannot be made
    (its data set gone, say) is that line, not a failure: the trained run is there either way."""
    from cnnlab.report.run_report import write_report

    try:
        path = write_report(run_dir, device=cfg.device, data_dir=cfg.data_dir, data=data)
    except CnnlabError as err:
        _say(cfg, f"report not written: {err}; try `cnnlab report {run_dir}`")
        return
    _say(cfg, f"report: {path}")


def _say(cfg: TrainConfig, text: str) -> None:
    """A line of the run's own output (none with progress="none")."""
    from cnnlab.training.outputs import Progress

    Progress(cfg.progress, cfg.epochs).message(text)

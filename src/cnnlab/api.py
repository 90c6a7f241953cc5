"""A run as a user asks for it: train (or resume), then the run's report.html.

`cnnlab.train(...)` and `cnnlab train` both end here. The training package knows nothing of
reports: whoever finishes a run asks for one, and that is this module, which sits above both.

    cnnlab.train(cnnlab.TrainConfig(model="lenet", epochs=10))
    cnnlab.train(model="lenet", epochs=3)                # the same, as keywords
    cnnlab.train(resume="runs/x", epochs=20)             # continue runs/x from its last.pt
    cnnlab.train_seeds(cnnlab.TrainConfig(...), [0, 1, 2])   # runs/NAME-seed0, ...
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.config import TrainConfig
from cnnlab.errors import CnnlabError, ConfigError

if TYPE_CHECKING:
    from cnnlab.training.trainer import TrainResult


def train(
    config: TrainConfig | None = None, *, resume: str | Path | None = None, **overrides: Any
) -> TrainResult:
    """Train a model: `train(TrainConfig(...))`, `train(model="lenet", epochs=3)`, or
    `train(resume="runs/x", epochs=20)` to continue a run from its last.pt, step for step.
    The run's report.html is written at the end unless the config says `report=False`."""
    from cnnlab.training.trainer import fit, resume_run

    if resume is not None:
        if config is not None:
            raise ConfigError("give either a config or resume=RUN_DIR (with overrides), not both")
        return finish(resume_run(resume, **overrides))
    values = {**(config or TrainConfig()).to_dict(), **overrides}
    return finish(fit(TrainConfig.from_dict(values, source="cnnlab.train")))


def train_seeds(config: TrainConfig, seeds: Iterable[int]) -> list[TrainResult]:
    """Train `config` once per seed, in order, one run folder each (`<name>-seed<k>`); every
    seed's config and folder is checked before the first one trains."""
    from cnnlab.training.seeds import seed_configs
    from cnnlab.training.trainer import fit

    return [finish(fit(cfg)) for cfg in seed_configs(config, list(seeds))]


def finish(result: TrainResult) -> TrainResult:
    """The end of a run every epoch of which ran (an interrupted one raised before this, and
    reports when resumed): its report.html, then where the run is, as the last line."""
    cfg = result.config
    if not result.main_process:  # under torchrun rank 0 writes and speaks for every process
        return result
    if cfg.report:
        report_run(result.run_dir, cfg)
    _say(cfg, f"run directory: {result.run_dir}")
    return result


def report_run(run_dir: Path, cfg: TrainConfig) -> None:
    """report.html of a finished run, and a line saying where; a report that cannot be made
    (its data set gone, say) is that line, not a failure: the trained run is there either way."""
    from cnnlab.report.run_report import write_report

    try:
        path = write_report(run_dir, device=cfg.device, data_dir=cfg.data_dir)
    except CnnlabError as err:
        _say(cfg, f"report not written: {err}; try `cnnlab report {run_dir}`")
        return
    _say(cfg, f"report: {path}")


def _say(cfg: TrainConfig, text: str) -> None:
    """A line of the run's own output (none with progress="none")."""
    from cnnlab.training.outputs import Progress

    Progress(cfg.progress, cfg.epochs).message(text)

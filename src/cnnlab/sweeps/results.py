"""What a sweep leaves: the table of its trials, the best trial as a ready recipe
(SWEEP/best.toml) and its command, the best trial's test accuracy (measured once, after the
search, for that trial alone) and SWEEP/sweep.html with Optuna's own plots.

The trials are ranked on the study's objective, the validation split's: the test split is
looked at once, for the chosen trial, and labelled so wherever it is shown.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import CnnlabError
from cnnlab.files import publish_text, sha256_of
from cnnlab.report import html as H
from cnnlab.report.comparison import duration, setting, text_table
from cnnlab.sweeps.space import Space
from cnnlab.sweeps.study import Tally
from cnnlab.sweeps.worker import TRIALS

BEST_RECIPE = "best.toml"
BEST_FACTS = "best.json"  # the best trial's test accuracy, measured once per best checkpoint
PAGE = "sweep.html"
STATE_WORDS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
               TrialState.FAIL: "failed"}  # fmt: skip


@dataclass
class SweepResult:
    """The done trials (best first), the best one (None: no trial completed), its test
    accuracy, and the files written."""

    sweep_dir: Path
    space: Space
    trials: list[FrozenTrial]
    best: FrozenTrial | None
    test_accuracy: float | None = None
    test_note: str = ""  # why the test accuracy is not measured here
    measured_before: list[int] = field(default_factory=list)  # best trials of earlier ends
    written: list[Path] = field(default_factory=list)
    retried: int = 0  # trials failed by a kill or Ctrl-C and run again

    @property
    def header(self) -> list[str]:
        return ["trial", "state", self.space.objective, "epochs", "time",
                *(p.name for p in self.space.params)]  # fmt: skip

    def cells(self) -> list[list[str]]:
        by_name = {p.name: p for p in self.space.params}
        return [
            [
                str(t.number), STATE_WORDS.get(t.state, t.state.name.lower()), _value(t),
                str(t.user_attrs.get("epochs", "-")),
                duration(t.user_attrs["seconds"]) if "seconds" in t.user_attrs else "-",
                *(setting(by_name[p].value_of(t.params[p])) if p in t.params else "-"
                  for p in by_name),
            ]
            for t in self.trials
        ]  # fmt: skip

    def table(self) -> str:
        return text_table(self.header, self.cells(), right=(0, 2, 3, 4))

    def best_lines(self) -> list[str]:
        """The best trial, its test accuracy (labelled), its recipe and command."""
        if self.best is None:
            return ["no trial completed: there is no best trial yet"]
        best, objective = self.best, self.space.objective
        lines = [f"best: trial {best.number}, {objective} {best.value:.4f} (validation split)"]
        if self.test_accuracy is not None:
            lines.append(
                f"its test accuracy, measured once after the sweep for this trial only: "
                f"{self.test_accuracy:.4f}"
            )
        elif self.test_note:
            lines.append(self.test_note)
        if self.measured_before:
            trials = ", ".join(map(str, self.measured_before))
            lines.append(f"(the test split was also measured for trial {trials}, the best "
                         "when this study ended before with fewer trials)")  # fmt: skip
        lines.append(f"its settings as a recipe: {self.sweep_dir / BEST_RECIPE}")
        lines.append(f"train it: cnnlab train --recipe {self.sweep_dir / BEST_RECIPE}")
        return lines

    def __str__(self) -> str:
        notes = [f"{self.retried} trial(s) stopped by a kill or Ctrl-C were run again"] * bool(
            self.retried
        )  # (each retry is a new trial with the stopped one's values)
        return "\n".join([self.table(), *notes, *self.best_lines()])


def _value(trial: FrozenTrial) -> str:
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return f"{trial.value:.4f}"
    last = trial.intermediate_values
    return f"({last[max(last)]:.4f})" if last else "-"  # a pruned trial: its last report


def sweep_results(
    study: optuna.Study, space: Space, sweep_dir: Path, *, device: str = "auto", final: bool = True
) -> SweepResult:
    """The table of the study's done trials and its best one; best.toml and sweep.html
    written. The best trial's test accuracy is measured when the study is done (`final`: no
    stop cut the command short), never at a stop, so a study's test split is looked at once
    per end it reaches, for the trial it chose."""
    done = Tally.of(study).done
    complete = [t for t in done if t.state == TrialState.COMPLETE and t.value is not None]
    best = None
    if complete:
        pick = max if space.direction == "maximize" else min
        best = pick(complete, key=lambda t: (t.value, -t.number))
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2}
    sign = -1 if space.direction == "maximize" else 1
    done.sort(key=lambda t: (order[t.state], sign * (t.value or 0.0), t.number))
    retried = sum("failed_trial" in t.system_attrs for t in study.get_trials(deepcopy=False))
    result = SweepResult(sweep_dir, space, done, best, retried=retried)
    if best is not None and final and len(done) >= space.trials:
        result.test_accuracy, result.test_note = best_test_accuracy(sweep_dir, best, device)
        result.measured_before = measured_trials(sweep_dir, best.number)
    if best is not None:
        result.written.append(write_best_recipe(result))
    result.written.append(write_page(result, study))
    return result


def trial_dir(sweep_dir: Path, trial: FrozenTrial) -> Path:
    return sweep_dir / TRIALS / str(trial.number)


def best_test_accuracy(sweep_dir: Path, best: FrozenTrial, device: str) -> tuple[float | None, str]:
    """The best trial's best.pt on the test split, and a note when it is not measured here:
    measured once per checkpoint (best.json keeps every measure taken, by trial), the first
    time the study's test split is looked at for that trial."""
    from cnnlab.training.evaluation import evaluate_checkpoint

    checkpoint = trial_dir(sweep_dir, best) / "best.pt"
    if not checkpoint.is_file():
        return None, (f"its test accuracy is measured where it ran: its folder is not in "
                      f"{sweep_dir / TRIALS} (another machine's sweep folder)")  # fmt: skip
    digest = sha256_of(checkpoint)
    measures = _measures(sweep_dir)
    for measure in measures:
        if measure.get("sha256") == digest:
            return measure["test_accuracy"], ""
    try:
        result, _ = evaluate_checkpoint(checkpoint, split="test", device=device)
    except CnnlabError as err:  # the data moved, say: the sweep's results stand without it
        return None, f"its test accuracy could not be measured: {err}"
    measures.append({"trial": best.number, "checkpoint": str(checkpoint), "sha256": digest,
                     "test_accuracy": result.accuracy, "test_loss": result.loss})  # fmt: skip
    publish_text(sweep_dir / BEST_FACTS, json.dumps({"measured": measures}, indent=2) + "\n")
    return result.accuracy, ""


def _measures(sweep_dir: Path) -> list[dict[str, Any]]:
    try:
        return json.loads((sweep_dir / BEST_FACTS).read_text(encoding="utf-8"))["measured"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def measured_trials(sweep_dir: Path, best: int) -> list[int]:
    """The other trials whose test accuracy this study measured: the best at an earlier end."""
    return sorted({m["trial"] for m in _measures(sweep_dir) if m.get("trial") != best})


def write_best_recipe(result: SweepResult) -> Path:
    """best.toml: the fixed settings and the best trial's values, a recipe `cnnlab train
    --recipe` reads (it evaluates the test split again, as any run does)."""
    best, space = result.best, result.space
    assert best is not None
    values = space.trial_values(dict(best.params))
    values.pop("eval_test", None)
    lines = [
        f"# The best trial of the sweep {result.sweep_dir} (trial {best.number}): "
        f"{space.objective} {best.value:.4f} on the validation split.",
    ]
    if result.test_accuracy is not None:
        lines.append(f"# Its test accuracy, measured once after the sweep: "
                     f"{result.test_accuracy:.4f}.")  # fmt: skip
    lines.append(f"# Train it: cnnlab train --recipe {result.sweep_dir / BEST_RECIPE}")
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    path = result.sweep_dir / BEST_RECIPE
    publish_text(path, "\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    """A TOML literal of a recipe value: strings, numbers, booleans, lists, tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML literal for {value!r}")


# Optuna's matplotlib plots, by title; each needs enough finished trials, else it is left out
PLOTS = (
    ("Optimization history", "plot_optimization_history"),
    ("Parameter importances", "plot_param_importances"),
    ("Parallel coordinates", "plot_parallel_coordinate"),
    ("Slice", "plot_slice"),
)


def optuna_figures(study: optuna.Study) -> list[tuple[str, bytes | str]]:
    """(title, PNG bytes) of each of Optuna's plots, or (title, why it is not drawn)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    from cnnlab.figures import render_png

    drawn: list[tuple[str, bytes | str]] = []
    for title, name in PLOTS:
        try:
            with warnings.catch_warnings():  # few trials: importances "equal", and the like
                warnings.simplefilter("ignore")
                axes = getattr(plots, name)(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            drawn.append((title, f"not drawn: {err}"))
            continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), 4.5)
        drawn.append((title, render_png(figure)))
        plt.close(figure)
    return drawn


def write_page(result: SweepResult, study: optuna.Study) -> Path:
    """SWEEP/sweep.html: self-contained, like a run's report."""
    space, sweep_dir = result.space, result.sweep_dir
    best = "".join(H.paragraph(line) for line in result.best_lines())
    links = "".join(
        f'<li><a href="{TRIALS}/{t.number}/report.html">trial {t.number}</a></li>'
        for t in result.trials
        if (trial_dir(sweep_dir, t) / "report.html").is_file()
    )
    table = H.table(result.header, result.cells(), numeric=(0, 2, 3, 4))
    notes = "".join(H.paragraph(note) for note in space.notes)
    figures = "".join(
        H.image(shot, alt=title, caption=title) if isinstance(shot, bytes)
        else H.paragraph(f"{title}: {shot}", "warn")
        for title, shot in (optuna_figures(study) if result.best is not None else [])
    )  # fmt: skip
    ranked = (
        f"{len(result.trials)} of {space.trials} trials done, ranked on {space.objective} "
        f"({space.direction}) of the validation split; sampler {space.sampler}, pruner "
        f"{space.pruner}."
    )
    body = (
        H.section("Best trial", best, "best")
        + H.section("Trials", H.paragraph(ranked) + notes + table, "trials")
        + H.section("Plots", figures or H.paragraph("no trial completed: nothing to plot"), "plots")
        + (H.section("Trial reports", f"<ul>{links}</ul>", "reports") if links else "")
    )
    page = H.page(f"cnnlab sweep {sweep_dir.name}", body, f"search space {space.path}")
    path = sweep_dir / PAGE
    publish_text(path, page)
    return path

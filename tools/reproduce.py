"""Rerun every seed experiment and the modern recipes on real data; write docs/RESULTS.md.

    make reproduce                       # everything (about 4 hours on 2 CPU cores)
    python tools/reproduce.py --only lenet-fashion-mnist,mnist-cnn
    python tools/reproduce.py --write-only   # the table again from the runs already there

A thin wrapper over cnnlab's commands: each run is `cnnlab train --recipe <name> --seed K`
(a recipe shipped in src/cnnlab/recipes/) in its own process, into
runs/reproduce/<name>-seed<K>/ (with its report.html); a run whose folder already holds every
epoch is kept, not trained again, so an interrupted `make reproduce` picks up where it stopped.
The ablation table is `cnnlab compare`'s. The numbers in RESULTS.md are read back from the run
folders (config.json, metrics.jsonl).
Data: Fashion-MNIST where cnnlab finds it; MNIST and CIFAR-10 from CNNLAB_DATA (the Makefile
points it at ../shared/data when that exists).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = Path("runs/reproduce")  # relative to the repository: the commands printed stay short
RESULTS = Path("docs/RESULTS.md")
ASSETS = Path("docs/results")  # the ablation plot and a copy of each experiment's report
TEMPLATE = Path(__file__).resolve().parent / "RESULTS.template.md"
CNNLAB = Path(sys.executable).parent / "cnnlab"


@dataclass(frozen=True)
class Experiment:
    """One recipe and what its seed reported (`reported`: text; `train`, `test`: the numbers
    to hold cnnlab's against, where the seed gives them)."""

    recipe: str  # a shipped recipe's name (src/cnnlab/recipes/<recipe>.toml)
    seed_doc: str  # "000".."004", or "modern"
    title: str
    seeds: tuple[int, ...]
    reported: str
    train: float | None = None
    test: tuple[float, ...] = ()
    target: float | None = None  # modern recipes: the test accuracy to reach (time to accuracy)
    on_exact: bool = False  # the target is for the test split's exact images (`cnnlab eval`)


SEED_EXPERIMENTS = [
    Experiment(
        "lenet-fashion-mnist",
        "001",
        "LeNet (sigmoid, avg-pool) on Fashion-MNIST, 10 epochs",
        (0, 1, 2),
        "test 0.772 and 0.827: the seed's own code, two runs on this machine "
        "(d2l's book: about 0.78)",
        test=(0.772, 0.827),
    ),
    Experiment(
        "mnist-cnn",
        "003",
        "simple CNN on MNIST, 6 epochs",
        (0, 1, 2),
        "train about 0.99 (it saves SGD_acc_0.99.pth)",
        train=0.99,
    ),
    Experiment(
        "mnist-cnn-deep",
        "003",
        "the homework's deeper CNN on MNIST, 6 epochs",
        (0, 1, 2),
        "less accurate than the simple CNN at the same epochs (no number)",
    ),
    Experiment(
        "cifar2-net",
        "000",
        "Net on CIFAR-2, 100 epochs",
        (0, 1, 2),
        "train 0.9368, val 0.8995",
        train=0.9368,
        test=(0.8995,),
    ),
    Experiment(
        "cifar2-net-res-deep",
        "000",
        "NetResDeep (10 blocks) on CIFAR-2, 100 epochs",
        (0,),
        "train 1.0, val 0.8835",
        train=1.0,
        test=(0.8835,),
    ),
    Experiment("cifar10-cnn", "004", "the CIFAR-10 CNN, 20 epochs", (0,), "no number given"),
]
# seed 000's ablation, in the seed's order; cifar2-net and -res-deep are above
ABLATION = ["cifar2-net", "cifar2-net-width", "cifar2-net-wd", "cifar2-net-dropout",
            "cifar2-net-batchnorm", "cifar2-net-res", "cifar2-net-res-deep"]  # fmt: skip
ABLATION_EXTRA = [
    Experiment(name, "000", f"seed 000 ablation: {name}", (0,), "no number given")
    for name in ABLATION[1:-1]
]
MODERN = [
    Experiment("fashion-mnist-modern", "modern", "Fashion-MNIST, modern recipe", (0, 1, 2),
               "target 0.92", target=0.92),
    Experiment("mnist-modern", "modern", "MNIST, modern recipe", (0, 1, 2),
               "target 0.993", target=0.993),
    Experiment("cifar2-modern", "modern", "CIFAR-2, modern recipe", (0,),
               "target 0.95", target=0.95),
    Experiment("cifar10-modern", "modern", "CIFAR-10, modern recipe", (0,),
               "target 0.85", target=0.85),
    # issue 31: time to accuracy with airbench's and tuomaso's methods
    Experiment("mnist-fast", "modern", "MNIST, fast recipe (one epoch)", (0, 1, 2),
               "target 0.99", target=0.99),
    Experiment("fashion-mnist-fast", "modern", "Fashion-MNIST, fast recipe (3 epochs)", (0, 1, 2),
               "target 0.92", target=0.92),
    Experiment("mnist-fast-993", "modern", "MNIST, fast recipe to 0.993 (2 epochs)", (0, 1, 2),
               "target 0.993", target=0.993),
    Experiment("cifar2-fast", "modern", "CIFAR-2, fast recipe (16 epochs)", (0, 1, 2),
               "target 0.95", target=0.95),
    Experiment("cifar10-fast", "modern", "CIFAR-10, fast recipe (6 epochs)", (0, 1, 2),
               "target 0.85", target=0.85),
    Experiment("cifar10-airbench", "modern", "CIFAR-10, airbench94's method (10 epochs)",
               (0, 1, 2), "target 0.94 on the lossless test images", target=0.94,
               on_exact=True),
]  # fmt: skip
EVERYTHING = [*SEED_EXPERIMENTS, *ABLATION_EXTRA, *MODERN]


def run_name(exp: Experiment, seed: int) -> str:
    return f"{exp.recipe}-seed{seed}"


def train_command(exp: Experiment, seed: int) -> list[str]:
    return [
        "cnnlab", "train", "--recipe", exp.recipe, "--seed", str(seed),
        "--out-dir", str(RUNS), "--name", run_name(exp, seed), "--progress", "lines",
    ]  # fmt: skip


def finished(run_dir: Path) -> bool:
    """True when the folder holds a run that did every epoch of its recipe and wrote its report."""
    from cnnlab.errors import CnnlabError
    from cnnlab.report.run_folder import read_run

    try:
        run = read_run(REPO / run_dir)
    except CnnlabError:
        return False
    return (
        len(run.metrics) == run.config.get("epochs") and (REPO / run_dir / "report.html").is_file()
    )


def train_missing(experiments: list[Experiment]) -> None:
    """Train every run that is not finished, one process each (its start-up counted)."""
    for exp in experiments:
        for seed in exp.seeds:
            if finished(RUNS / run_name(exp, seed)):
                print(f"kept: {RUNS / run_name(exp, seed)}", flush=True)
                continue
            command = [str(CNNLAB), *train_command(exp, seed)[1:], "--overwrite"]
            print(f"$ {shlex.join(train_command(exp, seed))}", flush=True)
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, check=True)
            print(f"  {time.perf_counter() - start:.0f} s", flush=True)


# --- the numbers ----------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 4) -> str:
    """`mean ± sample std` (just the value for one run)."""
    if not values:
        return "-"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def with_worst(accuracies: list[float]) -> str:
    """`spread`, and the worst run's accuracy where there are several (a target must hold for
    every seed)."""
    text = spread(accuracies)
    return text if len(accuracies) < 2 else f"{text} (worst {min(accuracies):.4f})"


def time_to_accuracy(run, target: float) -> float | None:
    """Process start to the end of the first evaluation at or above `target` (None: never)."""
    for row in run.metrics:
        if (row.get("test_accuracy") or 0.0) >= target and row.get("process_seconds"):
            return row["process_seconds"]
    return None


def seconds(value: float) -> str:
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.0f} s"


def read_runs(exp: Experiment) -> list:
    from cnnlab.report.run_folder import read_run

    return [
        read_run(REPO / RUNS / run_name(exp, s))
        for s in exp.seeds
        if finished(RUNS / run_name(exp, s))
    ]


def copy_report(exp: Experiment) -> str:
    """Copy the first seed's report.html into docs/results/; the link RESULTS.md gives."""
    source = REPO / RUNS / run_name(exp, exp.seeds[0]) / "report.html"
    target = REPO / ASSETS / f"{exp.recipe}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"[report](results/{target.name})"


def finished_model_train_accuracy(run) -> float:
    """`cnnlab eval RUN/last.pt --split train`: the trained model over every training image in
    eval mode, as seed 000's validate() measures its train accuracy."""
    from cnnlab.training.evaluation import evaluate_checkpoint

    result, _ = evaluate_checkpoint(run.path / "last.pt", split="train", device="cpu")
    return result.accuracy


def recipe_link(exp: Experiment) -> str:
    """The recipe's file, as a link from docs/RESULTS.md (the recipes ship in the package)."""
    return f"../src/cnnlab/recipes/{exp.recipe}.toml"


def experiment_row(exp: Experiment, runs: list) -> list[str]:
    """One row of the seed table: seed, experiment, seed's numbers, cnnlab's, time, rerun."""
    running = [r.metrics[-1]["train_accuracy"] for r in runs]
    after = [finished_model_train_accuracy(r) for r in runs]
    test = [r.last_epoch_accuracy for r in runs]
    wall = statistics.mean(r.wall_seconds for r in runs)
    return [
        exp.seed_doc, f"[{exp.title}]({recipe_link(exp)})", exp.reported,
        spread(running), spread(after), spread(test), str(len(runs)),
        str(runs[0].config["epochs"]), seconds(wall), copy_report(exp),
    ]  # fmt: skip


def exact_images_accuracy(run) -> float:
    """Accuracy on the test split's exact images alone (../shared/data's 1,017 lossless CIFAR-10
    test images): the run's own predictions (RUN/predictions.npz, its report's: best.pt, which
    for a run evaluated once is its last epoch's model) at the marked places, what `cnnlab eval
    RUN` prints, without scoring the split again."""
    from cnnlab.data import load_dataset
    from cnnlab.report.predictions import load_predictions

    marks = load_dataset(run.config["dataset"]).test.exact
    if marks is None:
        raise SystemExit(
            f"error: {run.path}'s test split marks no exact images; use ../shared/data"
        )
    predictions = load_predictions(run)
    right = predictions.labels == predictions.predicted
    return float(right[marks.numpy()].mean())


def modern_row(exp: Experiment, runs: list) -> list[str]:
    final = [r.last_epoch_accuracy for r in runs]
    if exp.on_exact:  # the last epoch's model on the exact images; the whole split beside it
        exact = [exact_images_accuracy(r) for r in runs]
        times = [r.metrics[-1]["process_seconds"] if a >= exp.target else None for r, a in
                 zip(runs, exact, strict=True)]  # fmt: skip
        final_text = f"{with_worst(exact)} lossless ({spread(final)} all)"
        best = "-"  # the whole split's best is not what its target is for
    else:
        times = [time_to_accuracy(r, exp.target) for r in runs]
        final_text, best = with_worst(final), spread([r.best_accuracy for r in runs])
    reached = [t for t in times if t is not None]
    tta = "not reached"
    if reached:
        tta = spread(reached, 0).replace(" ± ", " s ± ") + " s"
        tta += f" (worst {max(reached):.0f} s)" if 1 < len(reached) == len(runs) else ""
    if reached and len(reached) < len(runs):
        tta += f" ({len(reached)} of {len(runs)} runs)"
    return [
        f"[{exp.title}]({recipe_link(exp)})", f"{exp.target:.3f}", tta, final_text, best,
        str(len(runs)), str(runs[0].config["epochs"]),
        seconds(statistics.mean(r.metrics[-1]["process_seconds"] for r in runs)),
        copy_report(exp),
    ]  # fmt: skip


def environment(run) -> str:
    """Where a run ran: its device, cnnlab and torch versions (config.json)."""
    versions = run.info.get("versions") or {}
    return (
        f"{run.info.get('device', '?')}, cnnlab {versions.get('cnnlab', '?')}, "
        f"torch {versions.get('torch', '?')}, Python {versions.get('python', '?')}"
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def ablation_table() -> str:
    """`cnnlab compare` over the ablation's runs: its table, and its curves into docs/results/."""
    dirs = [
        str(RUNS / run_name(exp, seed))
        for exp in EVERYTHING if exp.recipe in ABLATION
        for seed in exp.seeds if finished(RUNS / run_name(exp, seed))
    ]  # fmt: skip
    if not dirs:
        return "(no ablation runs yet)"
    command = ["compare", *dirs, "--out", str(ASSETS)]
    result = subprocess.run(
        [str(CNNLAB), *command], cwd=REPO, check=True, capture_output=True, text=True
    )
    table = [line for line in result.stdout.splitlines() if not line.startswith("wrote ")]
    return "\n".join(table).strip()


def write_results() -> None:
    seed_rows, modern_rows, missing = [], [], []
    set_ups: dict[str, list[str]] = {}  # device and versions: the experiments run with them
    for exp in EVERYTHING:
        runs = read_runs(exp)
        if not runs:
            missing.append(exp.recipe)
            continue
        for set_up in dict.fromkeys(map(environment, runs)):
            set_ups.setdefault(set_up, []).append(exp.recipe)
        if exp.target:
            modern_rows.append(modern_row(exp, runs))
        elif exp in SEED_EXPERIMENTS:
            seed_rows.append(experiment_row(exp, runs))
    if len(set_ups) > 1:  # runs from several machines or versions: say which ran where
        set_up = "several set-ups: " + "; ".join(
            f"{where} ({', '.join(names)})" for where, names in set_ups.items()
        )
    else:
        set_up = next(iter(set_ups), "no runs yet")
    text = TEMPLATE.read_text().format(
        date=datetime.date.today().isoformat(),
        set_up=set_up,
        seed_table=markdown_table(
            ["seed", "experiment", "the seed reported", "train acc, last epoch",
             "train acc, finished model", "test acc", "runs", "epochs", "wall time / run",
             "report"],
            seed_rows,
        ),
        ablation=ablation_table(),
        modern_table=markdown_table(
            ["recipe", "target", "time to target", "final test acc", "best test acc", "runs",
             "epochs", "wall time / run", "report"],
            modern_rows,
        ),
        commands="\n".join(
            shlex.join(train_command(exp, exp.seeds[0])) + (
                f"   # seeds {','.join(map(str, exp.seeds))}" if len(exp.seeds) > 1 else ""
            )
            for exp in EVERYTHING
        ),
        missing=("Not run yet: " + ", ".join(missing) + ".") if missing else "",
    )  # fmt: skip
    (REPO / RESULTS).write_text(text)
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated recipe names (default: all)")
    parser.add_argument("--write-only", action="store_true", help="train nothing; write the page")
    args = parser.parse_args()
    chosen = EVERYTHING
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {exp.recipe for exp in EVERYTHING})
        if unknown:
            sys.exit(f"error: unknown experiment {', '.join(unknown)}; choose from "
                     f"{', '.join(exp.recipe for exp in EVERYTHING)}")  # fmt: skip
        chosen = [exp for exp in EVERYTHING if exp.recipe in names]
    os.chdir(REPO)
    if not args.write_only:
        train_missing(chosen)
    write_results()


if __name__ == "__main__":
    main()

"""The fast recipes beside the modern ones: time to the same target, in one run on one machine.

    python benchmarks/fast.py                       # every pair whose data is here
    python benchmarks/fast.py --only mnist,fashion  # the pairs of those data sets
    python benchmarks/fast.py --seed 1 --write      # also write results/fast-<machine>.md

Each recipe trains in a child process (`cnnlab train --recipe R --target-accuracy T`, start-up
and data loading included) and stops at the end of the first epoch whose test accuracy reaches
the target; its time to target is that epoch's `process_seconds`. Beside it:

- training FLOPs to the target: the summary's multiply-adds of one image × 6 (a multiply-add is
  2 FLOPs; backward costs about twice forward) × the images trained until then;
- the floor those FLOPs imply at this machine's float32 matmul rate (measured in this run), and
  how many times that floor the run took (start-up, data, evaluation and small kernels);
- examples/s while training, and the FLOP/s they make as a share of the matmul rate.

A fast recipe's FLOPs are what its method saves; its share of the matmul rate is what its
kernels waste. Only ratios measured in one run count (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import (
    BENCH_DIR,
    child_env,
    cnnlab_launcher,
    find_shared_data,
    header,
    machine_slug,
    matmul_peak_flops,
    read_metrics,
    run_child,
)
from cnnlab.config.recipes import shipped_recipes

FLOPS_PER_MULT_ADD = 2 * 3  # 2 FLOPs each; forward + backward ≈ 3 forwards


@dataclass(frozen=True)
class Pair:
    """A fast recipe and the modern recipe of its data set, both timed to `target`."""

    key: str  # the --only name: the data set
    title: str
    fast: str
    modern: str
    target: float
    train_images: int  # one epoch (the recipes hold nothing out: val_fraction 0)


PAIRS = [
    Pair("mnist", "MNIST to 0.99", "mnist-fast", "mnist-modern", 0.99, 60_000),
    Pair("mnist", "MNIST to 0.993", "mnist-fast-993", "mnist-modern", 0.993, 60_000),
    Pair("fashion", "Fashion-MNIST to 0.92", "fashion-mnist-fast", "fashion-mnist-modern", 0.92,
         60_000),
    Pair("cifar2", "CIFAR-2 to 0.95", "cifar2-fast", "cifar2-modern", 0.95, 10_000),
    Pair("cifar10", "CIFAR-10 to 0.85", "cifar10-fast", "cifar10-modern", 0.85, 50_000),
]  # fmt: skip
# recipes/cifar10-airbench.toml is not here: its target is for the 1,017 lossless test images
# (`cnnlab eval` scores them), and no other recipe reaches 0.94; docs/RESULTS.md has its figures


@dataclass
class Run:
    """One recipe trained until it reached the highest target asked of it."""

    recipe: str
    status: str = "ok"  # or why there are no numbers
    rows: list[dict] = field(default_factory=list)  # metrics.jsonl
    mult_adds: int = 0  # one image, forward


def train(recipe: str, stop_at: float, args: argparse.Namespace, work: Path) -> Run:
    """`recipe` trained until its test accuracy reaches `stop_at` (or its epochs end)."""
    cmd = [
        *cnnlab_launcher(), "train", "--recipe", recipe, "--seed", str(args.seed),
        "--target-accuracy", str(stop_at), "--out-dir", str(work), "--name", recipe,
        "--progress", "lines", "--device", args.device, "--no-report",
    ]  # fmt: skip
    log = work / f"{recipe}.log"
    code, _, _ = run_child(cmd, log, child_env(args.shared))
    if code != 0:
        return Run(recipe, f"failed (exit {code}), see {log}")
    from cnnlab.inspect.layer_summary import summary

    run_dir = work / recipe
    return Run(
        recipe, rows=read_metrics(run_dir), mult_adds=summary(run_dir, verbose=False).mult_adds
    )


def reached(run: Run, target: float) -> int | None:
    """How many epochs `run` took to reach `target`; None if it never did. (A recipe that
    evaluates only its last epoch, --eval-every, reaches it there or not at all.)"""
    rows = enumerate(run.rows)
    return next((i + 1 for i, r in rows if r.get("test_accuracy", 0.0) >= target), None)


def row(pair: Pair, run: Run, peak: float, reference: Run | None) -> str:
    epochs = reached(run, pair.target) if run.status == "ok" else None
    if epochs is None:
        best = max((r["test_accuracy"] for r in run.rows if "test_accuracy" in r), default=None)
        status = run.status if run.status != "ok" else f"not reached (best {best:.4f})"
        return f"| {pair.title} | `{run.recipe}` | {status} | | | | | | |"
    seconds = run.rows[epochs - 1]["process_seconds"]
    flops = run.mult_adds * FLOPS_PER_MULT_ADD * pair.train_images * epochs
    floor = flops / peak
    # examples/s is per epoch: over several, the per-image mean is the harmonic one
    speed = epochs / sum(1 / r["examples_per_second"] for r in run.rows[:epochs])
    rate = speed * run.mult_adds * FLOPS_PER_MULT_ADD
    ratio = ""
    if reference is not None and reference.status == "ok":
        reference_epochs = reached(reference, pair.target)
        if reference_epochs is not None:
            ratio = f"{reference.rows[reference_epochs - 1]['process_seconds'] / seconds:.1f}x"
    return (
        f"| {pair.title} | `{run.recipe}` | {seconds:.1f} s ({epochs} ep) | {ratio} "
        f"| {flops / 1e12:.2f} | {floor:.1f} s | {seconds / floor:.1f}x "
        f"| {speed:,.0f} | {rate / 1e9:.1f} ({rate / peak:.0%}) |"
    )


def table(lines: list[str]) -> list[str]:
    return [
        "### Time to target: fast recipes beside the modern ones",
        "",
        "| target | recipe | time to target | faster | training TFLOP | floor at matmul rate "
        "| time / floor | examples/s | GFLOP/s (share of matmul) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *lines,
        "",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    keys = sorted({pair.key for pair in PAIRS})
    parser.add_argument("--only", default="", help=f"data sets, comma-separated: {keys}")
    parser.add_argument("--seed", type=int, default=0, help="each recipe's --seed")
    parser.add_argument("--device", default="cpu", help="each run's --device")
    parser.add_argument("--data-dir", default=None, help="folder with mnist/ and cifar10/")
    parser.add_argument("--write", action="store_true", help="write results/fast-<machine>.md")
    args = parser.parse_args(argv)
    args.shared = find_shared_data(args.data_dir)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = [key for key in args.only.split(",") if key]
    pairs = [pair for pair in PAIRS if not only or pair.key in only]
    device = torch.device(args.device)
    peak = matmul_peak_flops(device)
    print(f"float32 matmul rate on {device}: {peak / 1e9:,.1f} GFLOP/s", flush=True)
    command = shlex.join(["python", "benchmarks/fast.py", *(argv or sys.argv[1:])])
    shipped = set(shipped_recipes())
    stop_at: dict[str, float] = {}  # each recipe's highest target among the pairs chosen
    for pair in pairs:
        for recipe in (pair.fast, pair.modern):
            stop_at[recipe] = max(stop_at.get(recipe, 0.0), pair.target)
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-fast-") as tmp:
        for recipe, target in stop_at.items():
            if recipe not in shipped:
                runs[recipe] = Run(recipe, "not a shipped recipe yet")
                continue
            print(f"{recipe}: training to {target} ...", flush=True)
            runs[recipe] = train(recipe, target, args, Path(tmp))
    lines = []
    for pair in pairs:
        modern = runs[pair.modern]
        lines += [row(pair, runs[pair.fast], peak, modern), row(pair, modern, peak, None)]
    out = header(device, peak, command) + table(lines)
    print("\n" + "\n".join(out))
    if args.write:
        path = BENCH_DIR / "results" / f"fast-{machine_slug(device)}.md"
        path.write_text("\n".join(out))
        print(f"wrote {path.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

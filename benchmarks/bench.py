"""Side by side, in one run on the same data: the seeds' own loops, PyTorch Lightning, and cnnlab.

    python benchmarks/bench.py --quick          # a few minutes: LeNet 3 epochs, mnist-cnn 1
    python benchmarks/bench.py --write          # full: LeNet 10, mnist-cnn 6, cifar10-cnn 1,
                                                # every modern recipe; writes results/<machine>.md
    python benchmarks/bench.py --startup-only   # the start-up table alone (about a minute)

Then the modern recipes (`cnnlab recipes '*modern'`; --quick: Fashion-MNIST alone) and their
time to accuracy: process start to the first evaluation at the target, start-up included.

Each way runs as its own child process (start-up and data loading count) and reports its test
accuracy and the wall time of its training loops; this script adds the process's wall time and
peak RSS, and the fraction of this machine's float32 matmul peak that training reached.
--quick and --write first time cnnlab's start-up (its commands, a training run's first step)
against `python -c "import torch"`.
See benchmarks/README.md for what the numbers mean and what they leave out.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.training.device import cpu_name
from seed_way import Model, MyConvModel, lenet

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WAYS = ("seed", "lightning", "cnnlab")
# where Debian's dataset-fashion-mnist puts the IDX .gz files (cnnlab looks there too)
FASHION_DIRS = [
    Path("/usr/share/datasets/fashion-mnist"),
    Path("/usr/local/share/datasets/fashion-mnist"),
]
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class Task:
    key: str  # the --only name, and seed_way.py's --task
    title: str
    recipe: str  # a shipped recipe's name (`cnnlab recipes`)
    full_epochs: int
    quick_epochs: int | None  # None: left out of --quick unless --only names it
    train_samples: int
    macs: int  # multiply-adds of one forward pass of one image (convolutions and Linear layers)
    make_net: Callable[[], nn.Module]  # the seed's model, to check `macs` against
    input_shape: tuple[int, ...]


TASKS = [
    # LeNet: conv1 6*28*28*(1*5*5) = 117,600; conv2 16*10*10*(6*5*5) = 240,000;
    # fc 400*120 + 120*84 + 84*10 = 58,920  ->  416,520
    Task("lenet", "LeNet on Fashion-MNIST (seed 001)", "lenet-fashion-mnist",
         10, 3, 60_000, 416_520, lenet, (1, 28, 28)),
    # conv1 10*24*24*(1*5*5) = 144,000; conv2 20*8*8*(10*5*5) = 320,000; fc 320*10 = 3,200
    Task("mnist", "mnist-cnn on MNIST (seed 003)", "mnist-cnn",
         6, 1, 60_000, 467_200, Model, (1, 28, 28)),
    # conv1 32*32*32*(3*25) = 2,457,600; conv2 32*16*16*(32*25) = 6,553,600;
    # conv3 64*8*8*(32*25) = 3,276,800; fc 1024*64 + 64*10 = 66,176  ->  12,354,176
    Task("cifar", "cifar10-cnn on CIFAR-10 (seed 004)", "cifar10-cnn",
         1, None, 50_000, 12_354_176, MyConvModel, (3, 32, 32)),
]  # fmt: skip


@dataclass(frozen=True)
class Target:
    """A modern recipe and the test accuracy it must reach: its time to accuracy is the
    process's wall time, start-up included, until an evaluation first reaches it (DAWNBench's
    and airbench's measure). cnnlab alone: the seeds have no such recipe."""

    key: str  # the --only name
    title: str
    recipe: str
    target: float
    quick: bool  # in --quick


TARGETS = [
    Target("fashion-modern", "Fashion-MNIST to 0.92", "fashion-mnist-modern", 0.92, True),
    Target("mnist-modern", "MNIST to 0.993", "mnist-modern", 0.993, False),
    Target("cifar2-modern", "CIFAR-2 to 0.95", "cifar2-modern", 0.95, False),
    Target("cifar10-modern", "CIFAR-10 to 0.85", "cifar10-modern", 0.85, False),
]  # fmt: skip


@dataclass
class Row:
    way: str
    status: str = "ok"  # or why the row has no numbers
    test_accuracy: float | None = None
    wall_seconds: float | None = None
    train_seconds: float | None = None
    peak_rss_mb: float | None = None


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of Conv2d and Linear layers for one image, from the shapes a forward gives."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0]
            total += output[0].numel() * per_output * module.kernel_size[1]
        else:
            total += module.in_features * module.out_features

    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        net(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return total


def matmul_peak_flops(device: torch.device) -> float:
    """float32 FLOP/s of a large square matmul, best of a few, with torch's default threads."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(20):  # best of many: the first ones warm up, others may share the CPU
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- data


def find_fashion_dir() -> Path | None:
    for folder in FASHION_DIRS:
        if all((folder / f"{name}.gz").is_file() for name in IDX_NAMES):
            return folder
    return None


def find_shared_data(explicit: str | None) -> Path | None:
    """--data-dir, else $CNNLAB_DATA, else the workspace's ../shared/data next to the repo."""
    candidates = [explicit, *os.environ.get("CNNLAB_DATA", "").split(os.pathsep)]
    candidates.append(str(REPO.parent / "shared" / "data"))
    for candidate in filter(None, candidates):
        if (Path(candidate) / "mnist").is_dir() or (Path(candidate) / "cifar10").is_dir():
            return Path(candidate)
    return None


def gunzip_idx(source: Path, target: Path) -> None:
    """torchvision reads uncompressed IDX files from <root>/<Class>/raw/ (download=False)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in IDX_NAMES:
        with gzip.open(source / f"{name}.gz", "rb") as src, open(target / name, "wb") as dst:
            shutil.copyfileobj(src, dst)


def prepare_data(root: Path, tasks: list[Task], shared: Path | None) -> dict[str, str]:
    """Build torchvision's layout under root for the seed and Lightning ways (untimed, like a
    finished download); return the tasks that cannot run, with the reason."""
    missing = {}
    root.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        if task.key == "lenet":
            fashion = find_fashion_dir()
            if fashion is None:
                missing["lenet"] = f"no Fashion-MNIST IDX files in {FASHION_DIRS[0]}"
            else:
                gunzip_idx(fashion, root / "FashionMNIST" / "raw")
        elif task.key == "mnist":
            if shared is None or not (shared / "mnist").is_dir():
                missing["mnist"] = "no mnist/ data: set CNNLAB_DATA or --data-dir"
            else:
                gunzip_idx(shared / "mnist", root / "MNIST" / "raw")
        elif shared is None or not (shared / "cifar10" / "train.npz").is_file():
            missing["cifar"] = "no cifar10/{train,test}.npz: set CNNLAB_DATA or --data-dir"
        else:
            (root / "cifar10").symlink_to((shared / "cifar10").resolve())
    return missing


# ---------------------------------------------------------------- running the ways


def run_child(cmd: list[str], log_path: Path, env: dict[str, str]) -> tuple[int, float, float]:
    """Run cmd to completion; return (exit code, wall seconds, peak RSS in MB).

    os.wait4 gives this child's rusage. Its ru_maxrss is the peak of the largest single process
    among the child and the descendants it waited for (DataLoader workers): not their sum.
    """
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    kib_per_unit = 1 / 1024 if sys.platform == "darwin" else 1  # macOS reports bytes
    return proc.returncode, wall, usage.ru_maxrss * kib_per_unit / 1024


def way_command(way: str, task: Task, epochs: int, device: str, work: Path) -> list[str]:
    if way == "cnnlab":
        return [
            *cnnlab_launcher(), "train", "--recipe", task.recipe, "--epochs", str(epochs),
            "--out-dir", str(work), "--name", "run", "--progress", "lines", "--device", device,
        ]  # fmt: skip
    cmd = [
        sys.executable, str(BENCH_DIR / f"{way}_way.py"), "--task", task.key,
        "--epochs", str(epochs), "--device", device, "--data-root", str(work.parent / "data"),
        "--result", str(work / "result.json"),
    ]  # fmt: skip
    return [*cmd, "--work-dir", str(work / "files")] if way == "seed" else cmd


def child_env(shared: Path | None) -> dict[str, str]:
    """The environment of a training child: unbuffered output (the log shows progress as it
    happens), and cnnlab finding mnist/ and cifar10/ in `shared` (seed and Lightning: tmp)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if shared is not None:
        env["CNNLAB_DATA"] = os.pathsep.join(filter(None, [str(shared), env.get("CNNLAB_DATA")]))
    return env


def read_metrics(run_dir: Path) -> list[dict]:
    """A finished cnnlab run's epoch rows (metrics.jsonl), as cnnlab's own reader gives them."""
    from cnnlab.report.run_folder import read_run

    return read_run(run_dir).metrics


def read_result(way: str, task: Task, work: Path) -> dict:
    """The way's own report: test accuracy and training-loop wall seconds."""
    if way != "cnnlab":
        return json.loads((work / "result.json").read_text())
    rows = read_metrics(work / "run")
    # examples_per_second is per epoch, training only, wall clock with batch waits included
    seconds = sum(task.train_samples / row["examples_per_second"] for row in rows)
    return {"test_accuracy": rows[-1]["test_accuracy"], "train_seconds": seconds}


def run_way(way: str, task: Task, epochs: int, device: str, tmp: Path, shared: Path | None) -> Row:
    work = tmp / f"{task.key}-{way}"
    work.mkdir()
    cmd = way_command(way, task, epochs, device, work)
    code, wall, rss = run_child(cmd, work / "log", child_env(shared))
    if code != 0:
        tail = (work / "log").read_text().strip().splitlines()[-5:]
        print(f"    {way} failed (exit {code}); last lines of its output:")
        print("\n".join(f"      {line}" for line in tail))
        return Row(way, status=f"failed (exit {code})")
    result = read_result(way, task, work)
    return Row(way, "ok", result["test_accuracy"], wall, result["train_seconds"], rss)


def time_to_accuracy(target: Target, device: str, tmp: Path, shared: Path | None) -> str:
    """Train the recipe in a child process; its table row: the time to the target and after."""
    work = tmp / target.key
    work.mkdir()
    cmd = [
        *cnnlab_launcher(), "train", "--recipe", target.recipe, "--out-dir", str(work),
        "--name", "run", "--progress", "lines", "--device", device, "--no-report",
    ]  # fmt: skip
    code, wall, _ = run_child(cmd, work / "log", child_env(shared))
    if code != 0:
        return f"| {target.title} | failed (exit {code}), see the log | | | | |"
    rows = read_metrics(work / "run")
    reached = next((r for r in rows if (r.get("test_accuracy") or 0) >= target.target), None)
    when = (
        f"{reached['process_seconds']:.0f} s (epoch {reached['epoch']})"
        if reached and reached.get("process_seconds")
        else "not reached"
    )
    best = max(r.get("test_accuracy") or 0 for r in rows)
    return (
        f"| {target.title} | `{target.recipe}` | {when} | {rows[-1]['test_accuracy']:.4f} "
        f"| {best:.4f} | {len(rows)} epochs, {wall:.0f} s |"
    )


def time_to_accuracy_table(rows: list[str]) -> list[str]:
    return [
        "### Time to accuracy: the modern recipes (cnnlab)",
        "",
        "| target | recipe | time to target | final test acc | best test acc | whole run |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


# ---------------------------------------------------------------- start-up


@dataclass(frozen=True)
class Probe:
    label: str
    args: tuple[str, ...]  # after the cnnlab launcher; () is the `import torch` reference
    max_ratio: float | None = None  # target: median under this times import torch's


PROBES = [
    Probe('python -c "import torch"', ()),
    Probe("cnnlab --help", ("--help",), 0.5),
    Probe("cnnlab train --help", ("train", "--help"), 0.5),
    Probe("cnnlab models", ("models",), 0.5),
    Probe("cnnlab datasets", ("datasets",), 0.5),
]
FIRST_STEP, TRAIN_WALL = "cnnlab train: first step", "cnnlab train: whole process"
FIRST_STEP_SLACK = 0.5  # target: first step within import torch + this many seconds
STARTUP_WARMUPS, STARTUP_RUNS = 1, 5


def cnnlab_launcher() -> list[str]:
    """The console script, as a user runs it; `python -m cnnlab` would add runpy's overhead."""
    script = Path(sys.executable).with_name("cnnlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cnnlab"]


def probe_command(probe: Probe) -> list[str]:
    if not probe.args:  # the reference, on the interpreter cnnlab runs on
        return [sys.executable, "-c", "import torch"]
    return [*cnnlab_launcher(), *probe.args]


def timed(cmd: list[str]) -> float | None:
    """Wall seconds of cmd as a whole child process, fork to exit; None if it fails."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        print(f"    {shlex.join(cmd[:3])} ... failed (exit {done.returncode}): {last}")
        return None
    return wall


def write_startup_data(folder: Path) -> None:
    """Random 28×28 images: the row times start-up, so the data only has to be small and valid."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, n in (("train", 2048), ("test", 512)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        np.savez(folder / f"{split}.npz", x=x, y=rng.integers(0, 10, n, dtype=np.int64))


def train_startup(tmp: Path, run: int, device: str) -> tuple[float | None, float | None]:
    """(whole-process wall s, its own startup_seconds) of a 1-epoch `cnnlab train`.

    Only the process knows when it started (before the interpreter) and when its first
    optimizer step came, so it writes that into the first row of its metrics.jsonl.
    """
    wall = timed([
        *cnnlab_launcher(), "train", "--model", "lenet", "--dataset", f"npz:{tmp / 'data'}",
        "--epochs", "1", "--progress", "none", "--out-dir", str(tmp / "runs"),
        "--name", f"r{run}", "--no-tensorboard", "--device", device,
    ])  # fmt: skip
    if wall is None:
        return None, None
    first = (tmp / "runs" / f"r{run}" / "metrics.jsonl").read_text().split("\n", 1)[0]
    return wall, json.loads(first).get("startup_seconds")


def measure_startup(device: str) -> dict[str, list[float | None]]:
    """Each command once per round, rounds interleaved (A B A B) so that drift on the machine
    hits all alike; the warm-up rounds (page cache, .pyc files) are dropped."""
    times: dict[str, list[float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-startup-") as tmp_name:
        tmp = Path(tmp_name)
        write_startup_data(tmp / "data")
        for run in range(STARTUP_WARMUPS + STARTUP_RUNS):
            print(f"start-up: round {run + 1}/{STARTUP_WARMUPS + STARTUP_RUNS} ...", flush=True)
            got = {probe.label: timed(probe_command(probe)) for probe in PROBES}
            got[TRAIN_WALL], got[FIRST_STEP] = train_startup(tmp, run, device)
            for label, seconds in got.items():
                if run >= STARTUP_WARMUPS:
                    times.setdefault(label, []).append(seconds)
    return times


def median(values: list[float | None]) -> float | None:
    return None if not values or None in values else statistics.median(values)


def times_text(seconds: float | None, ref: float | None) -> str:
    return f"{seconds / ref:.2f}×" if seconds is not None and ref else "–"


def startup_row(label: str, values: list[float | None], vs: str, target: str, met: str) -> str:
    if median(values) is None:
        return f"| {label} | failed | | | {target} | |"
    spread = f"{min(values):.2f}–{max(values):.2f}"
    return f"| {label} | {median(values):.2f} | {spread} | {vs} | {target} | {met} |"


def probe_row(probe: Probe, values: list[float | None], ref: float | None) -> str:
    got, vs = median(values), times_text(median(values), ref)
    if probe.max_ratio is None:
        return startup_row(probe.label, values, vs, "reference", "")
    met = "–" if got is None or not ref else "met" if got / ref < probe.max_ratio else "not met"
    return startup_row(probe.label, values, vs, f"under {probe.max_ratio}× import torch", met)


def first_step_row(times: dict[str, list[float | None]], ref: float | None) -> str:
    target = f"within import torch + {FIRST_STEP_SLACK} s"
    first = median(times[FIRST_STEP])
    if median(times[TRAIN_WALL]) is None or ref is None:
        return f"| {FIRST_STEP} | failed | | | {target} | |"
    if first is None:  # a cnnlab that does not write startup_seconds yet
        return f"| {FIRST_STEP} | n/a (metrics.jsonl has no startup_seconds) | | | {target} | |"
    met = "met" if first - ref <= FIRST_STEP_SLACK else "not met"
    vs = f"import torch + {first - ref:.2f} s"
    return startup_row(FIRST_STEP, times[FIRST_STEP], vs, target, met)


def startup_table(times: dict[str, list[float | None]]) -> list[str]:
    """A markdown table: each command's median against `import torch`'s, and its target."""
    ref, wall = median(times[PROBES[0].label]), median(times[TRAIN_WALL])
    wall_note = "for reference: 1 epoch of 2,048 images and a test pass"
    return [
        f"### Start-up: median of {STARTUP_RUNS} runs after {STARTUP_WARMUPS} warm-up, "
        "each a whole child process, interleaved",
        "",
        "| command | median s | min–max s | vs import torch | target | met |",
        "|---|---:|---:|---:|---|---|",
        *(probe_row(probe, times[probe.label], ref) for probe in PROBES),
        first_step_row(times, ref),
        startup_row(TRAIN_WALL, times[TRAIN_WALL], times_text(wall, ref), wall_note, ""),
        "",
    ]


# ---------------------------------------------------------------- the table


def ratio_text(row: Row, seed: Row | None) -> str:
    if row.way == "seed":
        return "1.00×"
    if seed is None or seed.wall_seconds is None or row.wall_seconds is None:
        return "–"
    speedup = seed.wall_seconds / row.wall_seconds
    return f"{speedup:.2f}× faster" if speedup >= 1 else f"{1 / speedup:.2f}× slower"


def table(task: Task, epochs: int, rows: list[Row], peak: float) -> list[str]:
    """A markdown table (readable as plain text) and a line of ratios against the seed."""
    seed = next((row for row in rows if row.way == "seed" and row.status == "ok"), None)
    samples = task.train_samples * epochs
    train_flops = 2 * 3 * task.macs * samples  # training step ≈ 3 forward passes
    lines = [
        f"### {task.title}: `{task.recipe}`, {epochs} epoch{'s' * (epochs != 1)}",
        "",
        "| way | test acc | wall s | wall vs seed | train s | train ex/s | peak RSS MB "
        "| of matmul peak |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.status != "ok":
            lines.append(f"| {row.way} | {row.status} | | | | | | |")
            continue
        lines.append(
            f"| {row.way} | {row.test_accuracy:.4f} | {row.wall_seconds:.1f} "
            f"| {ratio_text(row, seed)} | {row.train_seconds:.1f} "
            f"| {samples / row.train_seconds:,.0f} | {row.peak_rss_mb:.0f} "
            f"| {train_flops / row.train_seconds / peak:.2%} |"
        )
    others = [row for row in rows if row.way != "seed" and row.status == "ok"]
    if seed is not None and others:
        lines += ["", "; ".join(f"{row.way} {ratio_text(row, seed)} than seed" for row in others)]
    return [*lines, ""]


def machine_slug(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{os.cpu_count()}core-{cpu_name()}"
    name = re.sub(r"\((r|tm)\)|\bcpu\b(?!-)|@.*", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def header(device: torch.device, peak: float, command: str) -> list[str]:
    lightning = importlib.util.find_spec("lightning")
    versions = f"torch {torch.__version__}"
    if lightning is not None:
        from importlib.metadata import version

        versions += f", lightning {version('lightning')}"
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return [
        f"# cnnlab benchmark: {machine_slug(device)}",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores{gpu}; device `{device}`",
        f"- {versions}; Python {platform.python_version()}",
        f"- float32 matmul peak measured in this run: {peak / 1e9:,.1f} GFLOP/s",
        f"- command: `{command}`",
        "- only ratios within one run count; see benchmarks/README.md",
        "",
    ]


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LeNet 3 epochs, mnist-cnn 1")
    parser.add_argument("--epochs", type=int, help="epochs for every task (overrides the mode)")
    parser.add_argument("--only", default="", help="comma-separated: lenet,mnist,cifar, "
                        "fashion-modern,mnist-modern,cifar2-modern,cifar10-modern")  # fmt: skip
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated: seed,...")
    parser.add_argument("--device", default="auto", help="auto (cuda if there), cpu, cuda")
    parser.add_argument("--data-dir", help="folder with mnist/ and cifar10/ (or $CNNLAB_DATA)")
    parser.add_argument("--write", action="store_true", help="write results/<machine>.md")
    parser.add_argument("--startup-only", action="store_true",
                        help="print the start-up table alone (writes nothing)")  # fmt: skip
    args = parser.parse_args(argv)
    known = {"", *WAYS, *(t.key for t in TASKS), *(t.key for t in TARGETS)}
    unknown = {*args.only.split(","), *args.ways.split(",")} - known
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if unknown:
        parser.error(f"unknown name(s) in --only/--ways: {', '.join(sorted(unknown))}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[Task, int]]:
    """The tasks to run, with their epochs; says why a task is left out of --quick."""
    only = [key for key in args.only.split(",") if key]
    chosen = []
    for task in TASKS:
        if only and task.key not in only:
            continue
        epochs = task.quick_epochs if args.quick else task.full_epochs
        if epochs is None and not only:
            print(f"{task.key}: left out of --quick (an epoch takes minutes); --only {task.key}")
            continue
        chosen.append((task, args.epochs or epochs or task.full_epochs))
    return chosen


def plan_targets(args: argparse.Namespace) -> list[Target]:
    """The modern recipes to time: --quick the quick ones, --only those named, else all."""
    only = [key for key in args.only.split(",") if key]
    if only:
        return [target for target in TARGETS if target.key in only]
    return [target for target in TARGETS if target.quick or not args.quick]


def choose_ways(requested: str) -> list[str]:
    ways = [way for way in WAYS if way in requested.split(",")]
    if "lightning" in ways and importlib.util.find_spec("lightning") is None:
        print("lightning: not installed (pip install -e '.[bench]'); skipping its rows")
        ways.remove("lightning")
    return ways


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if args.startup_only:
        print("\n" + "\n".join(startup_table(measure_startup(device_name))))
        return 0
    device, ways, tasks = torch.device(device_name), choose_ways(args.ways), plan(args)
    for task, _ in tasks:  # the MACs in the comments above, checked against the real layers
        if count_macs(task.make_net(), task.input_shape) != task.macs:
            sys.exit(f"{task.key}: its layers no longer give {task.macs:,} MACs; fix TASKS")
    peak = matmul_peak_flops(device)
    print(f"float32 matmul peak on {device}: {peak / 1e9:,.1f} GFLOP/s")
    command = shlex.join(["python", "benchmarks/bench.py", *(argv or sys.argv[1:])])
    lines = header(device, peak, command)
    if args.quick or args.write:  # first, while nothing of the training runs is in the way
        startup_lines = startup_table(measure_startup(device_name))
        print("\n" + "\n".join(startup_lines), flush=True)
        lines += startup_lines
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        shared = find_shared_data(args.data_dir)
        missing = prepare_data(tmp / "data", [task for task, _ in tasks], shared)
        for task, epochs in tasks:
            if task.key in missing:
                print(f"{task.key}: skipped, {missing[task.key]}")
                lines += [f"### {task.title}: skipped, {missing[task.key]}", ""]
                continue
            rows = []
            for way in ways:
                print(f"{task.key} / {way}: {epochs} epoch(s) ...", flush=True)
                rows.append(run_way(way, task, epochs, device_name, tmp, shared))
            task_lines = table(task, epochs, rows, peak)
            print("\n" + "\n".join(task_lines), flush=True)
            lines += task_lines
        targets = plan_targets(args)
        if targets and "cnnlab" in ways:
            rows = []
            for target in targets:
                print(f"{target.key}: training until the end of its recipe ...", flush=True)
                rows.append(time_to_accuracy(target, device_name, tmp, shared))
            target_lines = time_to_accuracy_table(rows)
            print("\n" + "\n".join(target_lines), flush=True)
            lines += target_lines
    if args.write:
        out = BENCH_DIR / "results" / f"{machine_slug(device)}.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\n".join(lines))
        print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

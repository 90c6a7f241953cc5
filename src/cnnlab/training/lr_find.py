"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3; fastai's and Lightning's `lr_find`): a few hundred training steps with
the rate rising exponentially from start_lr to end_lr, stopped once the loss diverges, and a
rate suggested from the smoothed curve of loss against rate.

    result = find_lr(session, start_lr=1e-6, end_lr=10.0, steps=200)
    result.suggestion, result.rule      # 0.0458, "the middle of the fall (log scale): ..."
    write_lr_find(folder, result)       # lr_find.png (the curve, the suggestion marked) and
                                        # lr_find.json (the numbers)

Nothing the test does stays behind (`kept_as_it_was`): the run that trains afterwards is the
very run `--lr <suggestion>` trains.

The rule (`suggest`): the smoothed loss falls from the loss of a guess that ignores the image
(or from where it started, if lower) to its lowest; the suggestion is the middle, on the log
axis, of that fall, from where it had come 10% of the way down to where it had come 90%.
fastai's `valley` (the middle of the longest decreasing stretch) read from levels, which noise
moves little: a lone blip moves a slope, and so the steepest point (Lightning issue #1767); an
early dip that comes back up is before the fall's last start; and the fall ends where the loss
first comes near its lowest, not at the lowest point, which wanders along a flat bottom (0.03
and 0.14 for two seeds of adam on LeNet; fastai's "minimum/10" reads it). The smoothing is
centred (a running median, then a running mean): an exponential average (fastai's, beta 0.98)
puts every feature some 50 steps late.

A curve that never falls clearly below a guess's loss (the entropy of the classes seen: ln 10
for ten balanced classes) shows no learning, and its rates say nothing: LeNet's sigmoids under
plain SGD sit there for some 200 steps even at lr 0.9. The test then runs again over the upper
half of its rates with RETRY_FACTOR times the steps, and the suggestion is where the fall
began: a model leaves a plateau once it has taken enough steps, at whatever rate the test has
reached, and the rates of its fall are ones it bore for a few steps only (LeNet's fall runs
from 1.53 to 3.57; 10 epochs at 1.5, 2.3 and 3 reach 0.834, 0.821 and 0.793). docs/GUIDE.md
has the measurements.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.process import torch_threads_restored
from cnnlab.training.checkpoint import rng_state, set_rng_state
from cnnlab.training.cpu_split import SplitStep
from cnnlab.training.determinism import deterministic_kernels
from cnnlab.training.loop import BatchStep, forward_backward
from cnnlab.training.optim import make_optimizer, make_scheduler

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cnnlab.config import TrainConfig
    from cnnlab.training.session import Given, Session

DIVERGED = 4.0  # the recent loss above 4 × its lowest: diverged (fastai's and Lightning's bound)
RECENT = 0.9  # the divergence check's running average: about the last 10 steps
LEARNED = 0.95  # learning seen: the lowest smoothed loss at most 95% of a guess's
# the fall the rule reads: from where the smoothed loss had come 10% of the way down to its
# lowest (a noisy plateau's ups and downs are smaller) to where it had come 90% of the way
FALL_BEGUN, FALL_ENDED = 0.1, 0.9
RETRY_FACTOR = 4  # a test that saw no learning runs again with this many times the steps
PLOT_FILE, CURVE_FILE = "lr_find.png", "lr_find.json"


@dataclass
class Suggestion:
    """A rate read off a curve, how (one sentence), and the indices of the fall it was read
    from: where it had begun and where it had ended (None without a fall)."""

    lr: float | None
    how: str
    fall: tuple[int, int] | None = None


@dataclass
class LrFindResult:
    """A range test: its curve (one rate and loss per step, the loss as trained on that step's
    batch, and smoothed), the suggested rate and how it was chosen, and what the test was."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    rule: str
    start_lr: float
    end_lr: float
    steps: int  # asked for (the first test's)
    diverged: bool
    guess_loss: float  # the loss of a guess that ignores the image
    seconds: float  # every try, together
    tries: list[dict[str, Any]] = field(default_factory=list)  # each test that ran, in order
    fall: tuple[int, int] | None = None  # the indices of the fall the rule read
    plot: Path | None = None  # lr_find.png, once written

    def record(self) -> dict[str, Any]:
        """What config.json keeps of it (`lr_find`): the suggestion, the rule, the test."""
        return {
            "suggestion": self.suggestion,
            "rule": self.rule,
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "steps": self.steps,
            "steps_run": len(self.lrs),
            "diverged": self.diverged,
            "seconds": round(self.seconds, 2),
            "tries": self.tries,
        }

    def summary(self) -> str:
        """Two lines for the terminal: what ran, and the suggestion with its reason."""
        ran = f"{len(self.lrs)} steps" + (
            f", lr {self.lrs[0]:.3g} to {self.lrs[-1]:.3g}" if self.lrs else ""
        )
        stop = " (stopped: the loss diverged)" if self.diverged else ""
        if len(self.tries) > 1:
            first = self.tries[0]
            ran += (
                f" (the first test, {first['steps']} from {first['start_lr']:.3g}, learned nothing)"
            )
        head = f"range test: {ran}{stop}, {self.seconds:.1f} s"
        if self.suggestion is None:
            return f"{head}\nno suggestion: {self.rule}"
        return f"{head}\nsuggested lr: {self.suggestion:.3g} ({self.rule})"


# --- the test ---------------------------------------------------------------------------------


def rate_schedule(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """`steps` rates from start_lr to end_lr, each the one before times the same factor."""
    return np.geomspace(start_lr, end_lr, steps).tolist()


@dataclass
class RangeTest:
    """The raw outcome of one test: the rates it was given, a loss per step taken, and the
    class counts of the labels it trained on."""

    rates: list[float]
    losses: list[float]
    diverged: bool
    class_counts: list[int]
    seconds: float

    @property
    def lrs(self) -> list[float]:
        """The rates of the steps taken."""
        return self.rates[: len(self.losses)]

    @property
    def guess_loss(self) -> float:
        """The cross-entropy of the best guess that ignores the image: the classes' shares."""
        total = sum(self.class_counts)
        shares = [count / total for count in self.class_counts if count]
        return -sum(share * math.log(share) for share in shares)


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    loader: Any,
    rates: list[float],
    num_classes: int,
    *,
    autocast: torch.autocast | None = None,
    split: BatchStep | None = None,
) -> RangeTest:
    """One training step per rate of `rates` (the loader's batches, epoch after epoch), until
    the loss diverges: NaN or Inf (that step is not kept), or its running average above
    DIVERGED times its lowest. Each parameter group keeps its share of the first group's rate
    (fine-tuning's backbone at lr × backbone_lr_scale). The model and optimizer are changed:
    see kept_as_it_was. Not for lbfgs, whose line search sizes each step (the configs refuse
    it: TrainConfig.check_finder_optimizer)."""
    shares = [group["lr"] / optimizer.param_groups[0]["lr"] for group in optimizer.param_groups]
    counts = None
    losses: list[float] = []
    recent, lowest, diverged = 0.0, math.inf, False
    model.train()
    start = time.perf_counter()
    for step, (rate, (images, labels)) in enumerate(zip(rates, endless(loader), strict=False)):
        for group, share in zip(optimizer.param_groups, shares, strict=True):
            group["lr"] = rate * share
        optimizer.zero_grad(set_to_none=True)
        _, loss = forward_backward(model, loss_fn, images, labels, autocast, split)
        optimizer.step()
        seen = torch.bincount(labels, minlength=num_classes)
        counts = seen if counts is None else counts + seen
        value = loss.item()  # a few hundred host syncs: the stop needs each loss
        if not math.isfinite(value):
            diverged = True
            break
        losses.append(value)
        recent = RECENT * recent + (1 - RECENT) * value
        smoothed = recent / (1 - RECENT ** (step + 1))  # bias-corrected, as Adam's moments
        lowest = min(lowest, smoothed)
        if smoothed > DIVERGED * lowest:
            diverged = True
            break
    seconds = time.perf_counter() - start
    class_counts = counts.tolist() if counts is not None else [1] * num_classes
    return RangeTest(rates, losses, diverged, class_counts, seconds)


def endless(loader: Any) -> Iterator[Any]:
    """The loader's batches, epoch after epoch (a small data set has fewer than the test's
    steps); each epoch in the order training would see it."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


@contextlib.contextmanager
def kept_as_it_was(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
    """Put back after the block what training changes: the model as model_kept keeps it, its
    gradients, the optimizer's state and rates, every random generator (generators_kept)."""
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    params = list(model.parameters())
    grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
    with model_kept(model), generators_kept(device):
        try:
            yield
        finally:
            optimizer.load_state_dict(optimizer_state)
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad


def find_lr(session: Session, *, start_lr: float, end_lr: float, steps: int) -> LrFindResult:
    """The range test on the session's model, optimizer, loss and training batches, as its
    first epoch would train them (a frozen backbone frozen, --cpu-slices sliced, --amp
    autocast); everything is put back after. A test that saw no learning runs again over the
    upper half of the rates (log axis), RETRY_FACTOR times as long (see the module)."""
    cfg = session.cfg
    with torch_threads_restored(), deterministic_kernels(cfg.deterministic):
        if cfg.threads or isinstance(session.parts.split, SplitStep):  # as trainer.run does
            torch.set_num_threads(cfg.threads or 1)
        tests = [session_test(session, rate_schedule(start_lr, end_lr, steps))]
        if not learned(tests[0]):
            upper = rate_schedule(math.sqrt(start_lr * end_lr), end_lr, steps * RETRY_FACTOR)
            tests.append(session_test(session, upper))
    return result_of(tests, start_lr, end_lr, steps)


def session_test(session: Session, rates: list[float]) -> RangeTest:
    """One range test on the session's parts, all of which are put back after."""
    parts = session.parts
    autocast = torch.autocast(session.device.type, torch.bfloat16) if session.cfg.amp else None
    with kept_as_it_was(parts.model, parts.optimizer, session.device):
        parts.set_backbone_frozen(session.backbone_frozen(0))  # as the first epoch starts
        return range_test(
            parts.forward_model, parts.optimizer, parts.loss_fn, parts.train_loader, rates,
            parts.num_classes, autocast=autocast, split=parts.split,
        )  # fmt: skip


def learned(test: RangeTest) -> bool:
    """Whether the smoothed loss fell clearly below a guess's at some rate of the test."""
    return bool(test.losses) and min(smooth(test.losses)) <= LEARNED * test.guess_loss


def result_of(tests: list[RangeTest], start_lr: float, end_lr: float, steps: int) -> LrFindResult:
    """The last test's curve and suggestion, with every test's facts; the range and steps
    asked for."""
    test = tests[-1]
    smoothed = smooth(test.losses)
    after_plateau = len(tests) > 1  # a first test learned nothing
    suggestion = suggest(test.lrs, smoothed, test.guess_loss, after_plateau=after_plateau)
    tries = [
        {"start_lr": t.rates[0], "steps": len(t.rates), "steps_run": len(t.losses),
         "learned": learned(t)}
        for t in tests
    ]  # fmt: skip
    return LrFindResult(
        lrs=test.lrs, losses=test.losses, smoothed=smoothed, suggestion=suggestion.lr,
        rule=suggestion.how, start_lr=start_lr, end_lr=end_lr, steps=steps,
        diverged=test.diverged, guess_loss=test.guess_loss,
        seconds=sum(t.seconds for t in tests), tries=tries, fall=suggestion.fall,
    )  # fmt: skip


# --- the rule ---------------------------------------------------------------------------------


def smooth(losses: Iterable[float]) -> list[float]:
    """Each loss as the mean of the running medians (of 2h + 1 steps, h = steps / 40, at least
    2) around it: the median drops a lone spike, the mean evens out the rest. Centred, so the
    curve does not lag behind the rate as an exponential average does; near the ends the
    window is cut short."""
    values = np.asarray(list(losses), dtype=np.float64)
    half = max(2, len(values) // 40)

    def running(reduce: Any, series: np.ndarray) -> np.ndarray:
        return np.array(
            [reduce(series[max(0, i - half) : i + half + 1]) for i in range(len(series))]
        )

    return running(np.mean, running(np.median, values)).tolist() if len(values) else []


def suggest(
    lrs: list[float], smoothed: list[float], guess_loss: float, *, after_plateau: bool = False
) -> Suggestion:
    """The rule (see the module): the middle, on the log axis, of the smoothed loss's fall
    from 10% to 90% of the way down to its lowest; `after_plateau` (a first test learned
    nothing), the rate where that fall began. None when the loss never fell clearly below a
    guess's (`guess_loss`) or was lowest at the first rate."""
    if len(smoothed) < 3:
        return Suggestion(None, "the test stopped after fewer than 3 steps: lower --start-lr")
    curve = np.asarray(smoothed)
    lowest = int(np.argmin(curve))
    if curve[lowest] > LEARNED * guess_loss:
        return Suggestion(
            None,
            f"no learning seen: the smoothed loss never fell below {curve[lowest]:.3f}, and a "
            f"guess that ignores the image scores {guess_loss:.3f}; give a higher --end-lr or "
            "more --lr-find-steps",
        )
    # where it falls from: a guess's loss (an untrained model's first steps often only bring
    # it down to that, which is not learning), or lower when it started lower (fine-tuning)
    top = min(guess_loss, float(curve[: lowest + 1].max()))
    if lowest == 0 or top <= curve[lowest]:
        return Suggestion(
            None, f"the loss rose from the first rate, {lrs[0]:.3g}: lower --start-lr"
        )
    depth = top - curve[lowest]
    # the fall ends where the loss first comes within 10% of its lowest (a flat bottom's
    # lowest point wanders with the noise), and begins where it last stood 90% of the way
    # up before that (an early dip that comes back up is not part of it)
    end = int(np.argmax(curve <= top - FALL_ENDED * depth))
    above = np.nonzero(curve[:end] >= top - FALL_BEGUN * depth)[0]
    begin = int(above[-1]) if len(above) else 0
    still = "; it still fell at the last rate" if lowest == len(curve) - 1 else ""
    fell = (
        f"the smoothed loss fell from {top:.3f} to {curve[lowest]:.3f}, {FALL_BEGUN:.0%} of the "
        f"way by lr {lrs[begin]:.3g} and {FALL_ENDED:.0%} by {lrs[end]:.3g}{still}"
    )
    if after_plateau:
        how = (
            f"where the fall began, as the first test learned nothing: {fell}; a model that "
            "sat on a plateau falls once enough steps were taken, at rates it bears for a few "
            "steps only"
        )
        return Suggestion(round_rate(lrs[begin]), how, (begin, end))
    middle = math.sqrt(lrs[begin] * lrs[end])
    return Suggestion(
        round_rate(middle), f"the middle of the fall (log scale): {fell}", (begin, end)
    )


def round_rate(lr: float) -> float:
    """A rate to 3 significant digits: as it is printed, so a rerun with --lr gives it."""
    return float(f"{lr:.3g}")


# --- the finder's runs: `cnnlab lr-find` and `cnnlab train --lr find` -------------------------


def lr_find_run(cfg: TrainConfig, given: Given | None = None) -> LrFindResult:
    """The range test of `cfg` (`cnnlab lr-find`, `cnnlab.lr_find`): a session with no run
    folder, the test, and everything the caller had put back after: a model object's weights,
    buffers, mode, flags, layer classes and device (building a session moves it, and may
    initialise it and swap layers for faster CPU forms), and the random generators (building
    a session seeds them)."""
    from cnnlab.training.device import resolve_device
    from cnnlab.training.session import build_session

    # a TrainConfig without --lr find has not refused lbfgs (an LrFindConfig has)
    cfg.validate().check_finder_optimizer()
    model = given.model if given is not None else None
    with model_kept(model), generators_kept(resolve_device(cfg.device)):
        session = build_session(cfg, given=given, folder=False)
        try:
            return find_lr(
                session, start_lr=cfg.start_lr, end_lr=cfg.end_lr, steps=cfg.lr_find_steps
            )
        finally:
            session.parts.close()


def find_for_run(session: Session) -> LrFindResult:
    """`--lr find`: the range test on a new run's session, then the run set to train at the
    suggestion (use_suggestion). One process only: under torchrun each would test its own
    part of every batch and could suggest another rate."""
    from cnnlab.training.outputs import Progress

    cfg = session.cfg
    if session.world.launched:
        raise ConfigError(
            "--lr find runs in one process; run `cnnlab lr-find` with the same flags first, "
            "then give its rate as --lr under torchrun"
        )
    result = find_lr(session, start_lr=cfg.start_lr, end_lr=cfg.end_lr, steps=cfg.lr_find_steps)
    use_suggestion(session, result)
    Progress(cfg.progress, cfg.epochs).message(result.summary())
    return result


def recorded_lr_find(run_dir: Path) -> dict[str, Any]:
    """{"lr_find": record} from a run's config.json, when its rate was found (a resumed run
    keeps the record; it never runs the test again); else {}."""
    try:
        recorded = json.loads((run_dir / "config.json").read_text()).get("lr_find")
    except (OSError, ValueError, AttributeError):
        return {}
    return {"lr_find": recorded} if isinstance(recorded, dict) else {}


@contextlib.contextmanager
def model_kept(model: nn.Module | None) -> Iterator[None]:
    """Put a model object back after the block: its weights, buffers, mode, requires_grad
    flags, layer classes and device."""
    if model is None:
        yield
        return
    weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
    classes = [(module, type(module)) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    device, training = next(iter(weights.values()), torch.empty(0)).device, model.training
    try:
        yield
    finally:
        for module, cls in classes:
            module.__class__ = cls
        model.to(device)
        model.load_state_dict(weights)
        for param, flag in flags:
            param.requires_grad_(flag)
        model.train(training)


@contextlib.contextmanager
def generators_kept(device: torch.device) -> Iterator[None]:
    """Every random generator (torch's, numpy's, Python's; CUDA's on a CUDA `device`) as it
    was before the block."""
    saved = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(saved, device)


# --- using it, showing it ---------------------------------------------------------------------


def use_suggestion(session: Session, result: LrFindResult) -> None:
    """Train the session at the suggested rate: the config's lr, a new optimizer and schedule
    (the schedule's rates are fixed when it is made; the optimizer has not stepped), the
    checkpoints' config, and config.json's `lr_find` record."""
    if result.suggestion is None:
        raise ConfigError(f"--lr find: {result.rule}; or give --lr")
    cfg, parts = session.cfg, session.parts
    cfg.lr = result.suggestion
    parts.optimizer = make_optimizer(cfg, parts.model, parts.num_classes)
    parts.scheduler = make_scheduler(cfg, parts.optimizer, len(parts.train_loader))
    session.info.config = cfg.to_dict()
    session.facts["lr_find"] = result.record()


def lr_find_figure(result: LrFindResult) -> Figure:
    """Loss against rate on a log axis: each step's loss, the smoothed curve, the fall the
    rule read, a guess's loss, and the suggestion marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, lw=0.8, label="loss per step")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", lw=1.8, label="smoothed")
    ax.axhline(result.guess_loss, color="0.5", ls=":", lw=1, label="a guess ignoring the image")
    if result.fall is not None:
        begin, end = result.fall
        ax.axvspan(result.lrs[begin], result.lrs[end], color="tab:green", alpha=0.12,
                   label="the fall read (10% to 90%)")  # fmt: skip
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", lw=1.2)
        at = np.interp(np.log(result.suggestion), np.log(result.lrs), result.smoothed)
        ax.plot([result.suggestion], [float(at)], "o", color="tab:red",
                label=f"suggested lr {result.suggestion:.3g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    low, high = min(result.smoothed, default=0.0), max([*result.smoothed[:1], result.guess_loss])
    if high > low:  # the exploding end would flatten everything else
        ax.set_ylim(low - 0.1 * (high - low), high + 0.4 * (high - low))
    title = "learning-rate range test" + (" (stopped: diverged)" if result.diverged else "")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def write_lr_find(folder: Path, result: LrFindResult) -> list[Path]:
    """lr_find.png (the figure) and lr_find.json (the record and the curve) in `folder`."""
    from cnnlab.figures import render_png, write_pngs
    from cnnlab.files import publish_text, write_failure_as_config_error

    [plot] = write_pngs(folder, [(PLOT_FILE, render_png(lr_find_figure(result)))])
    curve = {**result.record(), "guess_loss": result.guess_loss, "lrs": result.lrs,
             "losses": result.losses, "smoothed": result.smoothed}  # fmt: skip
    with write_failure_as_config_error(folder / CURVE_FILE):
        publish_text(folder / CURVE_FILE, json.dumps(curve, indent=1) + "\n")
    result.plot = plot
    return [plot, folder / CURVE_FILE]

"""The training loop: train_one_epoch and evaluate, the seed's five steps in plain sight.

Loss and accuracy are summed on the device and read once per log interval or epoch, so the hot
path never waits for the host. `session.py` builds a run around this loop and `trainer.py`
runs it (checkpoints, logging, resume); `on_step` is its one hook into the loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training.cpu_split import loss_weight
from cnnlab.training.distributed import World
from cnnlab.training.mixing import Mixer
from cnnlab.training.optim import needs_closure


class BatchStep(Protocol):
    """A batch split into parts that run apart: slices on CPU threads (cpu_split.SplitStep)
    or torchrun's processes (distributed.ShardStep). Either gives the whole batch's gradient."""

    def forward_backward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(self, images: torch.Tensor) -> torch.Tensor: ...


class TrainingDiverged(CnnlabError):
    """The loss became NaN or Inf; nothing after the last good checkpoint was saved."""


@dataclass
class EpochSums:
    """Running sums of the epoch in progress, on the device (read them only when reporting)."""

    loss_sum: torch.Tensor  # sum over samples of the batch-mean loss × batch size
    correct: torch.Tensor  # samples classified correctly
    first_bad_step: torch.Tensor  # first step whose loss was NaN/Inf, or -1
    step_counter: torch.Tensor  # global step, mirrored on the device for first_bad_step
    seen: int = 0  # samples seen (a Python int: batch sizes are known without a sync)
    seconds: float = 0.0  # wall-clock training time, batch loading included

    @classmethod
    def zeros(cls, device: torch.device, step: int) -> EpochSums:
        def scalar(v: float, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(v, dtype=dtype, device=device)

        return cls(
            scalar(0, torch.float32),
            scalar(0, torch.int64),
            scalar(-1, torch.int64),
            scalar(step, torch.int64),
        )

    @property
    def device(self) -> torch.device:
        return self.loss_sum.device

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        self.loss_sum += loss.detach().float() * n
        self.correct += (logits.argmax(1) == labels).sum()
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad_step < 0)
        self.first_bad_step.copy_(torch.where(bad, self.step_counter, self.first_bad_step))
        self.step_counter += 1
        self.seen += n

    def totals(self, world: World) -> EpochTotals:
        """The sums over every process (one all-reduce under torchrun); reading them waits
        for the device."""
        if not world.launched:
            bad = int(self.first_bad_step)
            return EpochTotals(float(self.loss_sum), int(self.correct), self.seen, bad)
        seen = torch.tensor(float(self.seen), dtype=torch.float64, device=self.loss_sum.device)
        packed = torch.stack([self.loss_sum.double(), self.correct.double(), seen])
        loss_sum, correct, seen_all = world.sum(packed).tolist()
        bad = self.first_bad_step.double().reshape(1)  # the earliest of any process (-1: none)
        first_bad = world.smallest(torch.where(bad < 0, float("inf"), bad)).item()
        first_bad = -1 if first_bad == float("inf") else int(first_bad)
        return EpochTotals(loss_sum, round(correct), round(seen_all), first_bad)

    def state_dict(self, world: World) -> dict[str, Any]:
        """The sums of a part-done epoch over every process, for a checkpoint (a diverged run
        is never saved, so there is no bad step to keep)."""
        if not world.launched:
            loss_sum, correct, seen = self.loss_sum, self.correct, self.seen
        else:
            totals = self.totals(world)
            loss_sum = torch.tensor(totals.loss_sum, dtype=torch.float32)
            correct, seen = torch.tensor(totals.correct), totals.seen
        return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "seconds": self.seconds}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.loss_sum.copy_(saved["loss_sum"])
        self.correct.copy_(saved["correct"])
        self.seen, self.seconds = saved["seen"], saved["seconds"]


@dataclass
class EpochTotals:
    """EpochSums read on the host, summed over every process."""

    loss_sum: float
    correct: int
    seen: int
    first_bad_step: int  # the first step whose loss was NaN/Inf in any process, or -1


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    per_class_correct: list[int]
    per_class_total: list[int]
    # the same over the split's exact images alone, where it marks some as exact and others not
    exact: EvalResult | None = None

    @property
    def per_class_accuracy(self) -> list[float]:
        return [
            c / t if t else float("nan")
            for c, t in zip(self.per_class_correct, self.per_class_total, strict=True)
        ]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    sums: EpochSums,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    autocast: torch.autocast | None = None,
    split: BatchStep | None = None,
    on_step: Callable[[int], None] | None = None,
    accumulate: int = 1,
    max_grad_norm: float | None = None,
    mix: Mixer | None = None,
) -> None:
    """One pass over `loader`, calling `on_step(batches)` after every optimizer step.

    `accumulate` k: each step adds up the gradients of k batches (the epoch's last step may
    have fewer), as one batch k times larger would give them (GradientGroup). `max_grad_norm`:
    the gradient is scaled down to that norm at most before the step (clip_gradients). `mix`
    (mixing.py): the loss is taken on mixed images and label shares, the accuracy on the
    images' own labels."""
    model.train()
    lbfgs = needs_closure(optimizer)
    group = GradientGroup(optimizer, loss_fn, accumulate)
    start = time.perf_counter()
    for images, labels, steps in with_step_ends(loader, accumulate):  # already on the device
        targets = labels
        if mix is not None:  # mixup / cutmix: (B, classes) label shares
            images, targets = mix(images, labels)
        if lbfgs:  # 1.-5. with a closure LBFGS calls several times (see closure_step)
            logits, loss = closure_step(
                model, optimizer, loss_fn, images, targets, autocast, split, max_grad_norm
            )
            batches = 1
        else:
            if group.empty:
                optimizer.zero_grad(set_to_none=True)  # 1. forget the last step's gradients
            group.add(targets)  # (weighs this batch among the step's others)
            logits, loss = forward_backward(model, loss_fn, images, targets, autocast, split)
            group.merge()
            if steps:
                batches = group.finish()
                clip_gradients(optimizer, max_grad_norm)
                optimizer.step()  # 5. update the weights
        sums.add(loss, logits, labels)
        if not steps:  # more batches to add to this step's gradient
            continue
        if scheduler is not None:
            scheduler.step()
        if on_step is not None:
            sums.seconds += time.perf_counter() - start  # the hook's saves are not training
            on_step(batches)
            start = time.perf_counter()
    sums.seconds += time.perf_counter() - start


def with_step_ends(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]], accumulate: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(images, labels, whether a step follows this batch): every batch with accumulate 1;
    else every accumulate-th and the last (the next batch is read first to know it)."""
    if accumulate == 1:
        for images, labels in loader:
            yield images, labels, True
        return
    batches = iter(loader)
    current, count = next(batches, None), 0
    while current is not None:
        following = next(batches, None)
        count += 1
        yield *current, count % accumulate == 0 or following is None
        current = following


class GradientGroup:
    """The gradients of a step's batches added up as the gradient of their concatenation.

    Each backward gives its batch's mean-loss gradient g_i. The sum so far is held aside
    during a batch's backward and added to g_i after it, so the sum's order is fixed (slices
    on CPU threads add into .grad in the order they finish: with a third term there, the
    rounding would change from run to run). Before batch i the held sum is scaled by
    w_(i-1) / w_i (w: the batch's examples, or its summed class weights), so it is
    sum_j (w_j / w_i) g_j; `finish` scales by w_last / sum_j w_j, which leaves
    sum_j w_j g_j / sum_j w_j: the mean over every example of the step. With equal batches
    that is one multiplication by 1/k, at the end."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, accumulate: int
    ) -> None:
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.loss_fn, self.accumulate = loss_fn, accumulate
        self.batches, self.total, self.last = 0, 0.0, 0.0
        self.held: list[torch.Tensor | None] | None = None

    @property
    def empty(self) -> bool:
        return self.batches == 0

    def add(self, labels: torch.Tensor) -> None:
        """Before the backward of a batch of `labels`."""
        self.batches += 1
        if self.accumulate == 1:  # a step of one batch: its gradient as it is, no weighing
            return  # (class weights on a GPU would cost a sync per batch)
        weight = float(loss_weight(self.loss_fn, labels))
        if self.batches > 1:
            if weight != self.last:
                self._scale(self.last / weight)
            self.held = [p.grad for p in self.params]
            for param in self.params:
                param.grad = None
        self.total += weight
        self.last = weight

    def merge(self) -> None:
        """After the batch's backward: its gradient plus the sum held aside."""
        if self.held is None:
            return
        for param, held in zip(self.params, self.held, strict=True):
            if held is not None:
                param.grad = held if param.grad is None else param.grad.add_(held)
        self.held = None

    def finish(self) -> int:
        """Before the step: the mean over the step's examples. Returns how many batches the
        step adds up; the group starts anew."""
        if self.batches > 1:
            self._scale(self.last / self.total)
        batches, self.batches, self.total = self.batches, 0, 0.0
        return batches

    def _scale(self, factor: float) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, factor)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None) -> None:
    """Scale the gradient of every parameter the optimizer updates down to a total 2-norm of
    `max_norm` at most (torch's clip_grad_norm_); None: leave it."""
    if max_norm is None:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def forward_backward(
    model: nn.Module,
    loss_fn: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast: torch.autocast | None = None,
    split: BatchStep | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2.-4. of a training step; the logits (B, num_classes) and the batch's mean loss."""
    if split is not None:  # on parts of the batch, one CPU core or process each
        return split.forward_backward(images, labels)
    with autocast or contextlib.nullcontext():
        logits = model(images)  # 2. forward: (B, num_classes)
        loss = loss_fn(logits, labels)  # 3. loss (mean over the batch)
    loss.backward()  # 4. backward: gradients of the loss
    return logits, loss


def closure_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast: torch.autocast | None = None,
    split: BatchStep | None = None,
    max_grad_norm: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of an optimizer that re-evaluates the loss along its search (LBFGS).

    Returns the logits and loss of the first evaluation: the batch's loss before the update,
    as every other optimizer reports it. With `split`, every evaluation is sliced, so the
    gradient LBFGS sees is the whole batch's.
    """
    first: list[tuple[torch.Tensor, torch.Tensor]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        logits, loss = forward_backward(model, loss_fn, images, labels, autocast, split)
        clip_gradients(optimizer, max_grad_norm)
        if not first:
            first.append((logits.detach(), loss.detach()))
        return loss

    optimizer.step(closure)
    return first[0]


def scored_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tta: bool,
    translate: int = 0,
) -> torch.Tensor:
    """The logits a test image is scored by: its own, or with `tta` the mean of its own and its
    mirror image's (flip test-time augmentation, as airbench does). With `translate` pixels
    too, airbench's six views: that pair weighs one half, and the other half is the mean of
    the same pair for the image moved `translate` pixels down-right and up-left (reflect
    padding, so no black edge comes in)."""
    if not tta:
        return forward(images)
    logits = (forward(images) + forward(images.flip(3))) / 2
    if not translate:
        return logits
    height, width = images.shape[2:]
    padded = torch.nn.functional.pad(images, (translate,) * 4, mode="reflect")
    shift = 2 * translate
    moved = (padded[:, :, :height, :width], padded[:, :, shift:, shift:])  # down-right, up-left
    pairs = [(forward(view) + forward(view.flip(3))) / 2 for view in moved]
    return (logits + (pairs[0] + pairs[1]) / 2) / 2


@dataclass
class EvalSums:
    """An evaluation's sums, kept where the batches are: loss sum, correct and total per class."""

    loss_sum: torch.Tensor  # () float32
    correct: torch.Tensor  # (num_classes,) int64
    total: torch.Tensor  # (num_classes,) int64

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device) -> EvalSums:
        counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
        return cls(torch.zeros((), device=device), counts, counts.clone())

    def add(self, loss_fn: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> None:
        classes = self.total.shape[0]
        self.loss_sum += loss_fn(logits, labels).float() * labels.shape[0]
        self.correct += torch.bincount(labels[logits.argmax(1) == labels], minlength=classes)
        self.total += torch.bincount(labels, minlength=classes)

    def summed(self, world: World) -> EvalSums:
        """Every process's sums added up (one all-reduce of one float64 vector)."""
        if not world.launched:
            return self
        classes = self.total.shape[0]
        packed = world.sum(
            torch.cat(
                [self.loss_sum.double().reshape(1), self.correct.double(), self.total.double()]
            )
        )
        return EvalSums(packed[0], packed[1 : classes + 1].long(), packed[classes + 1 :].long())


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    num_classes: int,
    *,
    split: BatchStep | None = None,
    world: World | None = None,
    tta: bool = False,
    translate: int = 0,
) -> EvalResult:
    """Mean loss, accuracy and per-class counts over `loader`, summed on the device (and over
    every process of `world`, each of which evaluated its part of each batch); `tta` and
    `translate`: see scored_logits."""
    model.eval()
    forward = split.forward if split is not None else model
    sums = None
    for images, labels in loader:
        if sums is None:
            sums = EvalSums.zeros(num_classes, labels.device)
        if labels.shape[0] == 0:  # this process's part of a small last batch
            continue
        sums.add(loss_fn, scored_logits(forward, images, tta, translate), labels)
    if sums is not None and world is not None:
        sums = sums.summed(world)
    if sums is None or int(sums.total.sum()) == 0:
        raise CnnlabError("the evaluation split is empty; give a data set with test images")
    n = int(sums.total.sum())
    correct, total = sums.correct.tolist(), sums.total.tolist()
    return EvalResult(float(sums.loss_sum) / n, sum(correct) / n, correct, total)


def raise_if_diverged(first_bad_step: int, epoch: int, run_dir: Path) -> None:
    if first_bad_step >= 0:
        raise TrainingDiverged(
            f"the loss became NaN or Inf at step {first_bad_step + 1} (epoch {epoch + 1}); the "
            f"learning rate is likely too high. The last good checkpoint in {run_dir} is kept"
        )

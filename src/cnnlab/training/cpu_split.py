"""Data parallelism inside one CPU process: each core runs forward + backward on a slice.

Why: small CNNs like LeNet leave most cores idle. Their ops are too small for torch's intra-op
threads (on a 2-core machine one thread is faster than two), but every op releases the GIL, so
Python threads that each run a slice of the batch with one intra-op thread keep all cores busy.
Measured on 2 cores for LeNet, batch 256: 2 intra-op threads 9-12k examples/s, 1 thread 14k,
two slices in two threads 21k.

Why it is exact: each slice's loss is weighted by its share of the batch (`loss_weight`: its
examples, or with class weights their summed weights, the denominator of the mean), so the
summed gradients are the full batch's (up to float rounding). With two slices the sum g1 + g2
does not depend on which thread finishes first (float addition is commutative), so runs stay
bit-for-bit reproducible. With more slices the order can vary, so `--deterministic` uses two.

LBFGS: its step calls the loop's closure several times per batch, and each call runs the
sliced forward + backward, so every loss and gradient LBFGS sees is the whole batch's, exact
as for the other optimizers (tests/test_lbfgs.py compares it with the plain step). The slice
threads need no enable_grad: grad mode is per thread, and LBFGS's no_grad is only in its own.

Models with BatchNorm (statistics would be per slice) or dropout (threads would race for the
global RNG) are not split: `can_split` says so and the loop falls back to the plain step.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from cnnlab.process import usable_cores

_NOT_SPLITTABLE = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.dropout._DropoutNd,
    nn.GroupNorm,
    nn.LayerNorm,
)


def can_split(model: nn.Module) -> bool:
    """Whether slicing the batch leaves the step's meaning unchanged for this model."""
    return not any(isinstance(m, _NOT_SPLITTABLE) for m in model.modules())


def default_slices(deterministic: bool) -> int:
    """One slice per core we may use (two when bit-exact reruns are asked for)."""
    return 2 if deterministic else min(usable_cores(), 8)


def loss_weight(loss_fn: nn.Module, labels: torch.Tensor) -> int | torch.Tensor:
    """What these examples weigh in a batch's mean loss: their number, or with class weights
    the sum of their classes' weights (CrossEntropyLoss(weight=w) divides by Σ w[label]). Label
    shares (B, classes), mixup's, weigh their number: torch divides their loss by B."""
    weight = getattr(loss_fn, "weight", None)
    return labels.shape[0] if weight is None or labels.dim() == 2 else weight[labels].sum()


class SplitStep:
    """forward → loss → backward on `slices` slices of a batch, one thread each."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, slices: int):
        self.model, self.loss_fn, self.slices = model, loss_fn, slices
        self.pool = ThreadPoolExecutor(slices, thread_name_prefix="cnnlab-slice")

    def forward_backward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The full batch's logits (B, classes) and mean loss; gradients land in `.grad`."""
        batch = loss_weight(self.loss_fn, labels)
        parts = zip(images.chunk(self.slices), labels.chunk(self.slices), strict=True)
        futures = [
            self.pool.submit(self._slice, x, y, loss_weight(self.loss_fn, y) / batch)
            for x, y in parts
        ]
        results = [f.result() for f in futures]
        logits = torch.cat([r[0] for r in results])
        loss = torch.stack([r[1] for r in results]).sum()
        return logits, loss

    def _slice(self, images: torch.Tensor, labels: torch.Tensor, share: float):
        logits = self.model(images)
        loss = self.loss_fn(logits, labels) * share  # the slice's part of the batch mean
        loss.backward()
        return logits.detach(), loss.detach()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Inference on slices in parallel (for evaluation)."""
        chunks = images.chunk(self.slices)
        return torch.cat(list(self.pool.map(self._infer, chunks)))

    def _infer(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(images)

    def close(self) -> None:
        self.pool.shutdown()  # waits for the threads

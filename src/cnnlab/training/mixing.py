"""Mixup and CutMix: each training image mixed with another of its batch, and the labels alike.

torchvision's MixUp and CutMix do the mixing: one share lam ~ Beta(a, a) per batch, each image
paired with the one before it in the (shuffled) batch. The loss then takes the mixed labels as
class probabilities (B, classes), which cross-entropy reads as they are, with label smoothing
and class weights still applied. Accuracy while training stays on each image's own label.

Each batch's draws come from a generator seeded by (seed, epoch, batch, rank), as the loaders'
augmentation does, so a resumed run mixes as it would have whatever else drew random numbers
(a DataLoader's iterator draws its base seed from torch's global one). Under torchrun each
process mixes its own part of the batch, as timm and torchvision's references do: such a run
no longer takes exactly the steps of one process, as it does without mixing. The
learning-rate range test (`--lr find`) steps on unmixed batches: its stop and its check that
the loss fell compare with plain labels' loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cnnlab.data.loader import derive_seed

# what the training loop calls: a BatchMixer, or a function of the same shape
Mixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class BatchMixer:
    """(images, labels) -> (mixed images, (B, num_classes) label shares), for the Beta
    parameters given (0: that one off; both: each batch takes one of them, chance 1/2).
    `set_epoch` says where the run is, as the train loader's does."""

    def __init__(self, mixup: float, cutmix: float, num_classes: int, seed: int, rank: int = 0):
        from torchvision.transforms import v2  # only runs that mix pay for importing it

        choices = [v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup else []
        if cutmix:
            choices.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        self.transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
        self.seed, self.rank = seed, rank
        self.epoch, self.batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.batch = epoch, start_batch

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, self.batch = self.batch, self.batch + 1
        if labels.shape[0] == 0:  # a process's empty part of a small last batch
            return images, labels
        with torch.random.fork_rng(devices=[]):  # torch's own stream (dropout's) is left alone
            torch.manual_seed(derive_seed(self.seed, self.epoch, batch, self.rank))
            return self.transform(images, labels)  # (channels-last images stay so)


def batch_mixer(
    mixup: float, cutmix: float, num_classes: int, seed: int = 0, rank: int = 0
) -> BatchMixer | None:
    """A BatchMixer, or None when both are off."""
    if not mixup and not cutmix:
        return None
    return BatchMixer(mixup, cutmix, num_classes, seed, rank)

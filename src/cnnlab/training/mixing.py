"""Mixup and CutMix: each training image mixed with another of its batch, and the labels alike.

torchvision's MixUp and CutMix do the mixing: one share lam ~ Beta(a, a) per batch, each image
paired with the one before it in the (shuffled) batch. The loss then takes the mixed labels as
class probabilities (B, classes), which cross-entropy reads as they are, with label smoothing
and class weights still applied. Accuracy while training stays on each image's own label.

The draws come from torch's global generator, the one checkpoints save (as dropout's do), so
a resumed run mixes as it would have. Under torchrun each process mixes its own part of the
batch, as timm and torchvision's references do: such a run no longer takes exactly the steps
of one process, as it does without mixing. The learning-rate range test (`--lr find`) steps
on unmixed batches: its stop and its check that the loss fell compare with plain labels' loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Mixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def batch_mixer(mixup: float, cutmix: float, num_classes: int) -> Mixer | None:
    """(images, labels) -> (mixed images, (B, num_classes) label shares) for the Beta
    parameters given (0: that one off; both: each batch takes one of them, chance 1/2);
    None when both are off."""
    if not mixup and not cutmix:
        return None
    from torchvision.transforms import v2  # only runs that mix pay for importing it

    choices = [v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup else []
    if cutmix:
        choices.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if labels.shape[0] == 0:  # a process's empty part of a small last batch
            return images, labels
        mixed, shares = transform(images, labels)
        # roll() gives a contiguous result: keep the layout the model's convs run fastest on
        return mixed.contiguous(memory_format=layout(images)), shares

    return mix


def layout(images: torch.Tensor) -> torch.memory_format:
    """channels_last where `images` is laid out so (and not also plainly contiguous)."""
    channels_last = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
    plain = images.is_contiguous()
    return torch.channels_last if channels_last and not plain else torch.contiguous_format

"""Nets of the speed records: airbench's CIFAR-10 net and tuomaso's one-epoch MNIST net.

Both are written here from their papers' and repositories' descriptions (credited in each
description); the methods they train with are cnnlab settings (docs/GUIDE.md, "Training fast").
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.init import init_weights
from cnnlab.models.registry import check_widths, register_model
from cnnlab.models.shapes import feature_size

# airbench's batch norm: no learned scale (the weight is fixed at 1, as airbench94 sets
# requires_grad False), a bias that learns, eps 1e-12 and a fast running average (torch's
# momentum 0.4: airbench's 0.6 is the share of the old value)
AIRBENCH_BN = dict(eps=1e-12, momentum=0.4)


def airbench_norm(channels: int) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, **AIRBENCH_BN)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Sequential):
    """airbench's block: conv 3x3 → max-pool 2 → BN → GELU → conv 3x3 → BN → GELU (no biases
    in the convs: the batch norms' biases take their place)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__(
            nn.Conv2d(channels_in, channels_out, 3, padding="same", bias=False),
            nn.MaxPool2d(2),
            airbench_norm(channels_out),
            nn.GELU(),
            nn.Conv2d(channels_out, channels_out, 3, padding="same", bias=False),
            airbench_norm(channels_out),
            nn.GELU(),
        )


class AirbenchNet(nn.Module):
    """A 2x2 conv of 2·C·4 filters (the one --whiten-init sets from the images' patches), GELU,
    three ConvGroups that halve the side, a global max-pool, a Linear with no bias and the
    logits scaled by 1/9, as airbench94's net (Keller Jordan, arXiv 2404.00498)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        widths: tuple[int, int, int],
    ) -> None:
        super().__init__()
        whiten_width = 2 * in_channels * 2 * 2  # every 2x2 patch direction, both signs
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, bias=True)
        self.activate = nn.GELU()
        groups, previous = [], whiten_width
        for width in widths:
            groups.append(ConvGroup(previous, width))
            previous = width
        self.groups = nn.Sequential(*groups)
        layers = [self.whiten, nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2)]
        feature_size("airbench", layers, image_size)  # refuses images under 9x9
        self.head = nn.Linear(previous, num_classes, bias=False)
        self.logit_scale = 1 / 9  # airbench's Mul(1/9): smaller logits at the start

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, 32, 32)
        x = self.activate(self.whiten(x))  # (N, 24, 31, 31)
        x = self.groups(x)  # (N, 256, 3, 3)
        x = torch.amax(x, dim=(2, 3))  # (N, 256): airbench's MaxPool2d(3) at 32x32
        return self.head(x) * self.logit_scale  # (N, num_classes)


@register_model(
    input_shape=(3, 32, 32),
    num_classes=10,
    description="airbench94's CIFAR-10 net (Keller Jordan, arXiv 2404.00498): 2x2 whitening "
    "conv, three conv groups 64/256/256, GELU",
)
def airbench(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    widths: tuple[int, int, int] = (64, 256, 256),
) -> AirbenchNet:
    """airbench94's net; train it with recipes/cifar10-airbench.toml (its method) for 94%."""
    widths = check_widths(widths, "[64, 256, 256]", count=3)
    return init_weights(AirbenchNet(num_classes, in_channels, image_size, widths), init)


class MnistFast(nn.Module):
    """Conv(1,24,5) ReLU MaxPool2 Conv(24,32,3) ReLU MaxPool2 flatten Linear(800,256) ReLU
    Linear(256,10): the net of tuomaso/train_mnist_fast, 99% in one epoch (each ReLU computed
    after its pool: the same numbers)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, kernel_size=5)
        self.conv2 = nn.Conv2d(24, 32, kernel_size=3)
        self.pool = nn.MaxPool2d(2)
        layers = [self.conv1, self.pool, self.conv2, self.pool]
        height, width = feature_size("mnist_fast", layers, image_size)  # (5, 5) at 28x28
        self.fc1 = nn.Linear(32 * height * width, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 28, 28)
        # ReLU after the max-pool, on a quarter of the values: ReLU is monotone, so this gives
        # tuomaso's ReLU-then-pool numbers and gradients exactly (mnist-fast 1.1x faster)
        x = torch.relu(self.pool(self.conv1(x)))  # (N, 24, 12, 12)
        x = torch.relu(self.pool(self.conv2(x)))  # (N, 32, 5, 5)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))  # (N, 256)
        return self.fc2(x)  # (N, num_classes)


@register_model(
    input_shape=(1, 28, 28),
    num_classes=10,
    description="one-epoch MNIST net (tuomaso/train_mnist_fast): two convs, two Linear",
)
def mnist_fast(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    init: str = "default",
) -> MnistFast:
    """tuomaso's net; recipes/mnist-fast.toml trains it to 99% in one epoch."""
    return init_weights(MnistFast(num_classes, in_channels, image_size), init)

"""Seed 003's two MNIST CNNs: the simple one and the "homework" deeper one.

Both keep the seed's attribute names (conv1, linear, mp, activate, ...), so a state_dict saved by
the seed's `Model` loads into them; the max-pool and ReLU are the seed's own shared modules.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import feature_size


class MnistCNN(nn.Module):
    """Conv(1,10,5) MaxPool2 ReLU Conv(10,20,5) MaxPool2 ReLU flatten Linear(320,10)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.mp = nn.MaxPool2d(2)
        self.activate = nn.ReLU()
        layers = [self.conv1, self.mp, self.conv2, self.mp]
        height, width = feature_size("mnist_cnn", layers, image_size)  # (4, 4) at 28×28
        self.linear = nn.Linear(20 * height * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 28, 28)
        x = self.activate(self.mp(self.conv1(x)))  # (N, 10, 12, 12)
        x = self.activate(self.mp(self.conv2(x)))  # (N, 20, 4, 4)
        x = torch.flatten(x, 1)  # (N, 320), the seed's x.view(batch_size, -1)
        return self.linear(x)  # (N, num_classes)


class MnistCNNDeep(nn.Module):
    """Conv(1,24,1) Conv(24,16,3) Conv(16,8,3), each with MaxPool2 and ReLU, then three Linear
    layers with no activation between them, as the seed writes them."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 24, kernel_size=1)
        self.conv2 = nn.Conv2d(24, 16, kernel_size=3)
        self.conv3 = nn.Conv2d(16, 8, kernel_size=3)
        self.mp = nn.MaxPool2d(2)
        self.activate = nn.ReLU()
        layers = [self.conv1, self.mp, self.conv2, self.mp, self.conv3, self.mp]
        height, width = feature_size("mnist_cnn_deep", layers, image_size)  # (2, 2) at 28×28
        self.linear1 = nn.Linear(8 * height * width, 64)
        self.linear2 = nn.Linear(64, 128)
        self.linear3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 28, 28)
        x = self.activate(self.mp(self.conv1(x)))  # (N, 24, 14, 14)
        x = self.activate(self.mp(self.conv2(x)))  # (N, 16, 6, 6)
        x = self.activate(self.mp(self.conv3(x)))  # (N, 8, 2, 2)
        x = torch.flatten(x, 1)  # (N, 32)
        # No activation between these three, as in the seed: together they are one linear map.
        return self.linear3(self.linear2(self.linear1(x)))  # (N, num_classes)


@register_model(
    input_shape=(1, 28, 28),
    num_classes=10,
    seed="003",
    description="simple MNIST CNN: two 5×5 convs with max pooling and ReLU, one Linear",
)
def mnist_cnn(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    init: str = "default",
) -> MnistCNN:
    """Seed 003's MNIST model (trained there with SGD lr 0.01, momentum 0.5, 6 epochs)."""
    return init_weights(MnistCNN(num_classes, in_channels, image_size), init)


@register_model(
    input_shape=(1, 28, 28),
    num_classes=10,
    seed="003",
    description="seed 003's homework net: three convs, three Linear layers with no activation",
)
def mnist_cnn_deep(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    init: str = "default",
) -> MnistCNNDeep:
    """Seed 003's "homework" deeper model, kept as written.

    The seed reports it less accurate than `mnist_cnn` after the same epochs. A likely reason is
    in the code: Linear(32,64) Linear(64,128) Linear(128,10) with no activation between them
    compose to one linear map from 32 features to 10, so their 11,722 parameters can do no more
    than the 330 of a single Linear(32, 10); they only make it slower to train.
    """
    return init_weights(MnistCNNDeep(num_classes, in_channels, image_size), init)

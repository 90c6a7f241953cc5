"""LeNet-5 as seed 001 builds it (d2l's LeNet chapter, Fashion-MNIST), and its modern form."""

from __future__ import annotations

from torch import nn

from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import feature_size


@register_model(
    input_shape=(1, 28, 28),
    num_classes=10,
    seed="001",
    description="LeNet-5 as in d2l: sigmoid and average pooling (seed 001)",
)
def lenet(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    init: str = "default",
) -> nn.Sequential:
    """Seed 001's LeNet: Conv(1,6,5,p2) Sigmoid AvgPool(2,2) Conv(6,16,5) Sigmoid AvgPool(2,2)
    Flatten Linear(400,120) Sigmoid Linear(120,84) Sigmoid Linear(84,10); 61,706 parameters.

    The seed starts with Reshape(-1, 1, 28, 28), `x.view(-1, 1, 28, 28)`, so that a Sequential
    can take any batch; cnnlab's loaders already give (N, 1, 28, 28), and a fixed 28×28 view
    would break other sizes, so it is left out. Seed 001 trains it with init="xavier" and SGD
    lr 0.9. A plain nn.Sequential, so `for layer in model` shows each layer's output shape as the
    seed does.
    """
    return _lenet("lenet", nn.Sigmoid, nn.AvgPool2d, num_classes, in_channels, image_size, init)


@register_model(
    input_shape=(1, 28, 28),
    num_classes=10,
    seed="001",
    description="LeNet-5 in its modern form: ReLU and max pooling (seed 001's layers)",
)
def lenet_relu(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    init: str = "default",
) -> nn.Sequential:
    """Seed 001's LeNet with ReLU for Sigmoid and MaxPool for AvgPool, the form used today;
    same layers and 61,706 parameters. It may need a smaller learning rate than the seed's 0.9.
    """
    return _lenet("lenet_relu", nn.ReLU, nn.MaxPool2d, num_classes, in_channels, image_size, init)


def _lenet(
    model_name: str,
    activation: type[nn.Module],
    pool: type[nn.Module],
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    init: str,
) -> nn.Sequential:
    """The LeNet layers with the given activation and pooling; shapes for a 28×28 input."""
    features = [
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),  # (N, 6, 28, 28)
        activation(),
        pool(kernel_size=2, stride=2),  # (N, 6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5),  # (N, 16, 10, 10)
        activation(),
        pool(kernel_size=2, stride=2),  # (N, 16, 5, 5)
    ]
    height, width = feature_size(model_name, features, image_size)  # (5, 5) at 28×28
    model = nn.Sequential(
        *features,
        nn.Flatten(),  # (N, 400) at 28×28
        nn.Linear(16 * height * width, 120),
        activation(),
        nn.Linear(120, 84),
        activation(),
        nn.Linear(84, num_classes),  # (N, num_classes) logits
    )
    return init_weights(model, init)

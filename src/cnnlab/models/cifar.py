"""The CIFAR-10 CNN of seeds 002 and 004 (the course's `MyConvModel`)."""

from __future__ import annotations

from torch import nn

from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import feature_size


@register_model(
    input_shape=(3, 32, 32),
    num_classes=10,
    seed="004",
    description="CIFAR-10 CNN: three 5×5 convs with max pooling, two Linear layers",
)
def cifar10_cnn(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
) -> nn.Sequential:
    """Seeds 002/004: 3×(Conv 5×5 p2 + MaxPool2) with 32, 32, 64 channels, Flatten,
    Linear(1024,64), Linear(64,10); 145,578 parameters.

    As in the seeds there is no activation anywhere (the course explains non-linear activations
    but leaves them out of this model); max pooling is its only non-linearity. The seeds wrap the
    Sequential in a class as `self.model`; here the Sequential is the model.
    """
    features = [
        nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),  # (N, 32, 32, 32)
        nn.MaxPool2d(2),  # (N, 32, 16, 16)
        nn.Conv2d(32, 32, kernel_size=5, padding=2),  # (N, 32, 16, 16)
        nn.MaxPool2d(2),  # (N, 32, 8, 8)
        nn.Conv2d(32, 64, kernel_size=5, padding=2),  # (N, 64, 8, 8)
        nn.MaxPool2d(2),  # (N, 64, 4, 4)
    ]
    height, width = feature_size("cifar10_cnn", features, image_size)  # (4, 4) at 32×32
    model = nn.Sequential(
        *features,
        nn.Flatten(),  # (N, 1024) at 32×32
        nn.Linear(64 * height * width, 64),
        nn.Linear(64, num_classes),  # (N, num_classes) logits
    )
    return init_weights(model, init)

"""Where a classifier's head and stem are: the layers fine-tuning replaces, adapts and freezes.

Every model in the zoo, seed or torchvision, ends in one layer that maps features to class
scores: a Linear (LeNet's last, ResNet's `fc`, ViT's `heads.head`) or a 1×1 Conv2d
(SqueezeNet's `classifier.1`). It is the last such layer registered with num_classes outputs,
as PyTorch lists modules in the order their parents create them. The stem is the first Conv2d
(ResNet's `conv1`, ViT's patch embedding `conv_proj`).
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ModelError


def head_name(model: nn.Module, num_classes: int) -> str:
    """The path (`fc`, `classifier.6`) of the layer that outputs the `num_classes` scores."""
    found = None
    for name, module in model.named_modules():
        outputs = getattr(module, "out_features", getattr(module, "out_channels", None))
        if isinstance(module, (nn.Linear, nn.Conv2d)) and outputs == num_classes:
            found = name
    if found is None:
        raise ModelError(
            f"{type(model).__name__} has no Linear or Conv2d layer with {num_classes} outputs; "
            "cnnlab cannot tell its classifier head from its backbone"
        )
    return found


def first_conv_name(model: nn.Module) -> str:
    """The path (`conv1`, `features.0.0`) of the first Conv2d: the layer that sees the pixels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ModelError(f"{type(model).__name__} has no Conv2d layer")


def split_parameters(
    model: nn.Module, num_classes: int
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head parameters, backbone parameters): the head layer's, and every other one."""
    head = model.get_submodule(head_name(model, num_classes))
    head_ids = {id(p) for p in head.parameters()}
    head_params = list(head.parameters())
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return head_params, backbone

"""torchvision classifiers with a head for your classes (seed 002: "torchvision.models").

Seed 002 names these families (ResNet, VGG, AlexNet, EfficientNet, MobileNet), with or without
pretrained weights, and shows how to modify one by replacing its classifier head. Each builder
asks torchvision for the architecture by name, replaces the last Linear of the classifier when
num_classes is not ImageNet's 1000, and the first conv when in_channels is not 3 (RGB).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from cnnlab.errors import ModelError
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import require_input_size

IMAGENET_CLASSES = 1000
# torchvision name → (path of the first conv, path of the classifier's last Linear)
LAYER_PATHS = {
    "resnet18": ("conv1", "fc"),
    "mobilenet_v3_small": ("features.0.0", "classifier.3"),
    "efficientnet_b0": ("features.0.0", "classifier.1"),
    "vgg11": ("features.0", "classifier.6"),
    "alexnet": ("features.0", "classifier.6"),
}


def _build(
    torchvision_name: str,
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    init: str,
    pretrained: bool,
) -> nn.Module:
    """torchvision's `torchvision_name` (registered as tv_<name>), first conv and head fitted."""
    import torchvision  # here, not at the top: `import cnnlab` need not load torchvision

    if not isinstance(pretrained, bool):
        raise ModelError(f"pretrained must be True or False, got {pretrained!r}")
    if pretrained and init != "default":
        raise ModelError(f"init={init!r} would overwrite the pretrained weights; leave it default")
    if pretrained:
        model = _load_pretrained(torchvision_name)
    else:  # torchvision builds the head for num_classes itself, with its own init
        model = torchvision.models.get_model(
            torchvision_name, weights=None, num_classes=num_classes
        )
    conv_path, head_path = LAYER_PATHS[torchvision_name]
    head = model.get_submodule(head_path)
    if head.out_features != num_classes:  # only after loading the 1000-class ImageNet head
        model.set_submodule(head_path, nn.Linear(head.in_features, num_classes))
    if in_channels != 3:
        conv = model.get_submodule(conv_path)
        model.set_submodule(conv_path, _first_conv(conv, in_channels, pretrained))
    model_name = f"tv_{torchvision_name}"
    require_input_size(model_name, image_size, lambda h, w: _takes(model, in_channels, h, w))
    return init_weights(model, init)


def _load_pretrained(torchvision_name: str) -> nn.Module:
    """The model with torchvision's default ImageNet weights, downloaded to the torch hub cache."""
    import torchvision

    weights = torchvision.models.get_model_weights(torchvision_name).DEFAULT
    try:
        return torchvision.models.get_model(torchvision_name, weights=weights)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad file a RuntimeError
        reason = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelError(
            f"could not download the pretrained {torchvision_name} weights ({reason}); put "
            f"{Path(weights.url).name} from {weights.url} in {folder} or use pretrained=False"
        ) from err


def _first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """`conv` for `in_channels` inputs; pretrained RGB filters adapted as timm's
    `adapt_input_conv` does: summed for one channel (gray = R = G = B), else repeated and scaled
    by 3/in_channels so the output keeps its scale."""
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    if pretrained:
        weight = conv.weight.detach()  # (out, 3, k, k)
        if in_channels == 1:
            weight = weight.sum(dim=1, keepdim=True)
        else:
            weight = weight.repeat(1, math.ceil(in_channels / 3), 1, 1)[:, :in_channels]
            weight = weight * (3 / in_channels)
        with torch.no_grad():
            new.weight.copy_(weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _takes(model: nn.Module, in_channels: int, height: int, width: int) -> bool:
    """Whether `model` takes (2, C, H, W) images: a forward on the meta device, which computes
    shapes only (no memory, no arithmetic). A batch of 2, as batch norm in training needs two
    values per channel."""
    tensors = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
    }
    images = torch.empty(2, in_channels, height, width, device="meta")
    try:
        with torch.no_grad():
            functional_call(model, tensors, (images,))
    except (RuntimeError, ValueError):  # "Output size is too small", "Kernel size can't be ..."
        return False
    return True


# --- the builders -------------------------------------------------------------------------------

IMAGENET = dict(input_shape=(3, 224, 224), num_classes=IMAGENET_CLASSES, seed="torchvision")


@register_model(**IMAGENET, description="torchvision ResNet-18, a new head for num_classes")
def tv_resnet18(
    *,
    num_classes: int = IMAGENET_CLASSES,
    in_channels: int = 3,
    image_size: tuple[int, int] = (224, 224),
    init: str = "default",
    pretrained: bool = False,
) -> nn.Module:
    """torchvision's resnet18 (He et al. 2015); 11,689,512 parameters with 1000 classes.
    Takes any size from 1×1 (global average pooling before its head); 32×32 leaves 1×1 maps."""
    return _build("resnet18", num_classes, in_channels, image_size, init, pretrained)


@register_model(**IMAGENET, description="torchvision MobileNetV3-Small, a new head for num_classes")
def tv_mobilenet_v3_small(
    *,
    num_classes: int = IMAGENET_CLASSES,
    in_channels: int = 3,
    image_size: tuple[int, int] = (224, 224),
    init: str = "default",
    pretrained: bool = False,
) -> nn.Module:
    """torchvision's mobilenet_v3_small (Howard et al. 2019); 2,542,856 parameters with 1000
    classes. Takes any size from 1×1 (strided convs with padding, global average pooling)."""
    return _build("mobilenet_v3_small", num_classes, in_channels, image_size, init, pretrained)


@register_model(**IMAGENET, description="torchvision EfficientNet-B0, a new head for num_classes")
def tv_efficientnet_b0(
    *,
    num_classes: int = IMAGENET_CLASSES,
    in_channels: int = 3,
    image_size: tuple[int, int] = (224, 224),
    init: str = "default",
    pretrained: bool = False,
) -> nn.Module:
    """torchvision's efficientnet_b0 (Tan and Le 2019); 5,288,548 parameters with 1000 classes.
    Takes any size from 1×1 (strided convs with padding, global average pooling)."""
    return _build("efficientnet_b0", num_classes, in_channels, image_size, init, pretrained)


@register_model(**IMAGENET, description="torchvision VGG-11, a new head for num_classes")
def tv_vgg11(
    *,
    num_classes: int = IMAGENET_CLASSES,
    in_channels: int = 3,
    image_size: tuple[int, int] = (224, 224),
    init: str = "default",
    pretrained: bool = False,
) -> nn.Module:
    """torchvision's vgg11 (Simonyan and Zisserman 2014); 132,863,336 parameters with 1000
    classes, 123,642,856 of them in the classifier. Five 2×2 max-pools: at least 32×32."""
    return _build("vgg11", num_classes, in_channels, image_size, init, pretrained)


@register_model(**IMAGENET, description="torchvision AlexNet, a new head for num_classes")
def tv_alexnet(
    *,
    num_classes: int = IMAGENET_CLASSES,
    in_channels: int = 3,
    image_size: tuple[int, int] = (224, 224),
    init: str = "default",
    pretrained: bool = False,
) -> nn.Module:
    """torchvision's alexnet (Krizhevsky et al. 2012); 61,100,840 parameters with 1000 classes.
    An 11×11 stride-4 conv and three 3×3 stride-2 max-pools: at least 63×63."""
    return _build("alexnet", num_classes, in_channels, image_size, init, pretrained)

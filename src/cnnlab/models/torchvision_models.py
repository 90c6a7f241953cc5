"""Every torchvision classifier as `tv_<name>`, with a head for your classes (seed 002).

Seed 002 shows torchvision models, with or without pretrained weights, and how to modify one by
replacing its classifier head. Here every builder of `torchvision.models.list_models()` (ResNet,
VGG, EfficientNet, ViT, Swin, RegNet, ...) is registered as `tv_<name>`, generated from
torchvision's own metadata: the default input is the crop size of its DEFAULT weights (224,
299 for inception_v3, 518 for vit_h_14), the parameter count that `cnnlab models` shows is
the one those weights report. The registry imports this module only when a tv_ name is asked
for, as importing torchvision takes a second or two.

Head and stem. Without weights torchvision builds the head for num_classes itself. With weights
(pretrained=True, or weights_file=PATH) the 1000-class ImageNet model is loaded and its head,
the Linear (or SqueezeNet's 1×1 Conv2d) that gives the 1000 scores, is replaced by a fresh one
for num_classes. When in_channels is not 3 the first conv is replaced too; pretrained RGB
filters are summed for one channel, so a grey image (R = G = B) gives what it gave the RGB
model. GoogLeNet and Inception-v3 are built without their auxiliary heads (cnnlab's loop wants
one tensor of logits; the aux weights in a file are dropped, as torchvision drops them) and
with transform_input=False, which would re-normalise 3 channels with ImageNet's statistics
where cnnlab normalises with the data set's own.

Small images (MNIST's 28×28, CIFAR's 32×32). cnnlab keeps torchvision's stem as it is, stride
and pooling included, rather than swapping in a CIFAR-style stem: a pretrained first conv then
still means what it learned on ImageNet, and every tv_ model behaves as its paper and
torchvision describe it. Images too small for a model are resized instead, `cnnlab train
--image-size N` (it resizes every data set, the built-in ones included); a model that cannot
take the data's size says so with the smallest size it takes. Most take 32×32 (ResNets end in
global pooling: at 32×32 their last maps are 1×1, which trains but wastes the model; 64-128 is
a better trade on a CPU); AlexNet needs 63, Inception-v3 75, MaxViT 221 (221-224, 445-448, ...:
every stage must split into 7×7 windows); a ViT takes the one size it is built for, a multiple
of its patch (vit_b_16 at 32, 48, 64, ...), and with pretrained weights the size they were
trained at (224; 518 for vit_h_14), as its position embedding has one entry per patch.

Pretrained weights offline. pretrained=True reads torchvision's DEFAULT weights from torch's hub
cache (`torch.hub.get_dir()/checkpoints/`, the file torchvision itself would use) without
touching the network; when the file is not there it is downloaded with a timeout, and if that
fails the error names the file, its URL and the folder to put it in. weights_file=PATH loads a
state dict of the same architecture (.pth/.pt, or .safetensors) instead, e.g. copied from
another machine; it is adapted to num_classes and in_channels exactly as the download is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from cnnlab.errors import ModelError
from cnnlab.models.heads import first_conv_name, head_name
from cnnlab.models.init import init_weights
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import (
    LARGEST_SIDE,
    InputTooSmallError,
    conv_output_size,
    require_input_size,
)
from cnnlab.models.tv_weights import AUX_HEADS, load_weights, pretrained_file

IMAGENET_CLASSES = 1000
# torchvision's num_params for inception_v3 counts its aux head, which cnnlab leaves out:
# InceptionAux(768, 1000) = 1×1 conv 768*128 + bn 2*128, 5×5 conv 128*768*25 + bn 2*768 (convs
# without bias), fc 768*1000 + 1000 = 98,560 + 2,459,136 + 769,000
LEFT_OUT_PARAMETERS = {"inception_v3": 3_326_696}


class TorchvisionInputTooSmallError(InputTooSmallError):
    """InputTooSmallError that names the cure: cnnlab keeps torchvision's stems, so images
    smaller than a model takes are resized, and `--image-size N` resizes any data set."""

    def __init__(self, model_name: str, image_size: tuple[int, int], min_size: int) -> None:
        super().__init__(model_name, image_size, min_size)
        self.args = (f"{self.args[0]} (train with --image-size {min_size} or more)",)


def _build(
    tv_name: str,
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    init: str,
    pretrained: bool,
    weights_file: str | os.PathLike | None,
) -> nn.Module:
    """torchvision's `tv_name` (registered as tv_<name>), weights loaded, head and stem fitted."""
    model_name = f"tv_{tv_name}"
    loading = _check_weight_args(pretrained, weights_file, init)
    weights = _default_weights(tv_name)
    size_args = _size_args(tv_name, image_size, weights if pretrained else None)
    # with weights, the 1000-class ImageNet model the file is for; its head is replaced below
    model = _architecture(tv_name, IMAGENET_CLASSES if loading else num_classes, size_args, loading)
    if loading:
        if weights_file is not None:
            path = Path(weights_file)
        else:
            path = pretrained_file(tv_name, _default_weights(tv_name).url)
        load_weights(model, tv_name, path)
        if num_classes != IMAGENET_CLASSES:
            head = head_name(model, IMAGENET_CLASSES)
            model.set_submodule(head, _new_head(model.get_submodule(head), num_classes))
    if in_channels != 3:
        stem = first_conv_name(model)
        model.set_submodule(stem, _first_conv(model.get_submodule(stem), in_channels, loading))
    architecture = (tv_name, *sorted(size_args.items()), num_classes, in_channels)
    try:
        require_input_size(model_name, image_size,
                           lambda h, w: _fits(architecture, model, in_channels, h, w))  # fmt: skip
    except InputTooSmallError as err:
        raise TorchvisionInputTooSmallError(model_name, image_size, err.min_size) from None
    return init_weights(model, init)


def _check_weight_args(pretrained: Any, weights_file: Any, init: str) -> bool:
    """Whether weights are to be loaded; a ModelError for arguments that contradict."""
    if not isinstance(pretrained, bool):
        raise ModelError(f"pretrained must be True or False, got {pretrained!r}")
    if weights_file is not None and not isinstance(weights_file, str | os.PathLike):
        raise ModelError(f"weights_file must be a file path, got {weights_file!r}")
    if pretrained and weights_file is not None:
        raise ModelError("give pretrained=True (torchvision's download) or weights_file=PATH, "
                         "not both")  # fmt: skip
    loading = pretrained or weights_file is not None
    if loading and init != "default":
        raise ModelError(f"init={init!r} would overwrite the loaded weights; leave it default")
    return loading


def _default_weights(tv_name: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(tv_name).DEFAULT


def _architecture(
    tv_name: str, num_classes: int, size_args: dict[str, Any], loading: bool
) -> nn.Module:
    """torchvision's model without weights (loaded later, from a file cnnlab has checked)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, **size_args}
    if tv_name in AUX_HEADS:  # one logits tensor, inputs normalised as cnnlab normalises them
        kwargs.update(aux_logits=False, transform_input=False, init_weights=not loading)
    builder = torchvision.models.get_model_builder(tv_name)
    on_meta = torch.get_default_device().type == "meta"
    with (
        _regnet_widths_on_cpu() if tv_name.startswith("regnet_") else nullcontext(),
        _NoRandomFillsOnMeta() if on_meta else nullcontext(),
    ):
        return builder(weights=None, **kwargs)


class _NoRandomFillsOnMeta(TorchFunctionMode):
    """Skips the random init of meta tensors, which have no values to fill: there normal_ and
    uniform_ run PyTorch's Python decompositions, a millisecond or two a tensor, a quarter of
    the time of a meta build (min_input_size's, `with torch.device("meta")`)."""

    FILLS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FILLS and args[0].is_meta:
            return args[0]  # what the fill returns: the tensor, its shape and dtype unchanged
        return func(*args, **(kwargs or {}))


# --- the sizes a ViT and MaxViT take ------------------------------------------------------------


def _size_args(
    tv_name: str, image_size: tuple[int, int], weights: torchvision.models.WeightsEnum | None
) -> dict[str, Any]:
    """The builder arguments of the models whose layers are made for one input size: ViT (its
    position embedding has one entry per patch) and MaxViT (its attention windows tile each
    stage). Others take any size large enough, which `_takes` finds out."""
    model_name = f"tv_{tv_name}"
    if tv_name.startswith("vit_"):
        side = _square_side(model_name, image_size)
        if weights is not None and side != weights.meta["min_size"][0]:
            trained = weights.meta["min_size"][0]
            raise ModelError(
                f"the pretrained {model_name} weights are for {trained}×{trained} images (the "
                f"position embedding fixes the size), got {side}×{side}; use --image-size "
                f"{trained}, or pretrained=False to train one for {side}×{side}"
            )
        patch = int(tv_name.rsplit("_", 1)[1])  # torchvision's names end in it: vit_b_16
        _check_side(model_name, side, lambda s: s % patch == 0,
                    f"its {patch}×{patch} patches must tile the image")  # fmt: skip
        return {"image_size": side}
    if tv_name == "maxvit_t":
        side = _square_side(model_name, image_size)
        _check_side(model_name, side, _maxvit_t_fits,
                    "each of its 4 stages must split into 7×7 windows")  # fmt: skip
        return {"input_size": (side, side)}
    return {}


def _square_side(model_name: str, image_size: tuple[int, int]) -> int:
    height, width = image_size
    if height != width:
        raise ModelError(f"{model_name} is built for square images, got {height}×{width}; "
                         f"resize them with --image-size {max(height, width)}")  # fmt: skip
    return height


def _check_side(model_name: str, side: int, fits: Callable[[int], bool], why: str) -> None:
    """A ModelError naming the nearest sizes that fit, unless `fits(side)`."""
    if fits(side):
        return
    smallest = next(s for s in range(1, LARGEST_SIDE + 1) if fits(s))
    if side < smallest:
        raise TorchvisionInputTooSmallError(model_name, (side, side), smallest)
    below = next(s for s in range(side, 0, -1) if fits(s))
    above = next((s for s in range(side, LARGEST_SIDE + 1) if fits(s)), None)
    nearest = f"{below} or {above}" if above else f"{below}"  # none above at the largest sides
    raise ModelError(f"{model_name} cannot take {side}×{side} images: {why}; use "
                     f"--image-size {nearest}")  # fmt: skip


def _maxvit_t_fits(side: int) -> bool:
    """torchvision's MaxVit check: after the stem (a 3×3 stride-2 conv) each of the 4 blocks
    halves the map again, and works on it in 7×7 windows and a 7×7 grid."""
    side = conv_output_size(side, 3, 2, 1)
    for _ in range(4):
        side = conv_output_size(side, 3, 2, 1)
        if side < 7 or side % 7:
            return False
    return True


def _new_head(layer: nn.Module, num_classes: int) -> nn.Module:
    """A fresh `layer` with num_classes outputs: a Linear, or SqueezeNet's 1×1 Conv2d."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels, num_classes, layer.kernel_size, layer.stride,
                         layer.padding, bias=bias)  # fmt: skip
    return nn.Linear(layer.in_features, num_classes, bias=bias)


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


# `_takes`'s answers by (tv_name, size arguments, num_classes, in_channels, height, width): a
# rebuild (a checkpoint's, or a build after min_input_size's search) would repeat the meta
# forward, which costs 0.1-0.5 s a model on a CPU, batch norm's decompositions most. Safe, as
# these determine every layer's shape: the builder gets nothing else that changes one (aux heads
# and transform_input are fixed per tv_name, init and init_weights set values only), and weights
# do not either: a load checks every name and shape, and the one file that swaps layers,
# MNASNet's old-format stem, swaps in ones of the same kernels and strides.
_TAKES: dict[tuple[Any, ...], bool] = {}


def _fits(
    architecture: tuple[Any, ...], model: nn.Module, in_channels: int, height: int, width: int
) -> bool:
    """`_takes`, run once per architecture and size; `model` is one of that architecture."""
    key = (*architecture, height, width)
    if key not in _TAKES:
        _TAKES[key] = _takes(model, in_channels, height, width)
    return _TAKES[key]


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


@contextmanager
def _regnet_widths_on_cpu() -> Iterator[None]:
    """RegNet works its stage widths out with tensors and `.tolist()`, which a meta tensor
    cannot give, so `with torch.device("meta")` (min_input_size, `cnnlab models`, the tests)
    could not build one. Within this block that arithmetic runs on the CPU, plain ints come
    out, and the layers are still made on whatever device is the default."""
    from torchvision.models.regnet import BlockParams

    original = BlockParams.__dict__["from_init_params"]  # the classmethod itself

    def on_cpu(cls: type, *args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return original.__func__(cls, *args, **kwargs)

    BlockParams.from_init_params = classmethod(on_cpu)
    try:
        yield
    finally:
        BlockParams.from_init_params = original


# --- the builders, one per torchvision classifier -----------------------------------------------


def _builder(tv_name: str, side: int, doc: str) -> Callable[..., nn.Module]:
    """The keyword-only builder registered as tv_<tv_name>, for `side`×`side` RGB by default."""

    def builder(
        *,
        num_classes: int = IMAGENET_CLASSES,
        in_channels: int = 3,
        image_size: tuple[int, int] = (side, side),
        init: str = "default",
        pretrained: bool = False,
        weights_file: str | None = None,
    ) -> nn.Module:
        return _build(tv_name, num_classes, in_channels, image_size, init, pretrained,
                      weights_file)  # fmt: skip

    builder.__name__ = builder.__qualname__ = f"tv_{tv_name}"
    builder.__doc__ = doc
    return builder


def _register_all() -> None:
    for tv_name in torchvision.models.list_models(module=torchvision.models):
        weights = _default_weights(tv_name)
        side = weights.transforms().crop_size[0]
        family = type(weights).__name__.removesuffix("_Weights").replace("_", "-")
        top1 = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        parameters = weights.meta["num_params"] - LEFT_OUT_PARAMETERS.get(tv_name, 0)
        doc = (
            f"torchvision's {tv_name} ({family}); {parameters:,} parameters with 1000 classes.\n"
            f"pretrained=True loads its DEFAULT weights, {weights!r} ({top1}% ImageNet top-1 at "
            f"{side}×{side}), from {weights.url}."
        )
        register_model(
            name=f"tv_{tv_name}", input_shape=(3, side, side), num_classes=IMAGENET_CLASSES,
            description=f"torchvision {family} ({top1:.1f}% ImageNet top-1 pretrained), a new "
            "head for num_classes", seed="torchvision", parameters=parameters,
        )(_builder(tv_name, side, doc))  # fmt: skip


_register_all()

"""The details of the tv_ models (models/torchvision_models.py) that test_torchvision_models.py
leaves open: what registration files for each model (its entry, its builder's name, docstring
and defaults), how a first conv is adapted to in_channels (the numbers), a new head's settings,
the sizes a ViT or MaxViT is told to use, the model name in every size error, and which init
GoogLeNet gets with and without weights.

Each test exists because a mutation run left the path untested (a survivor of mutmut over
cnnlab.models.torchvision_models). Registration runs once when the module is imported, before
mutmut switches a mutant on, so the registration test runs `_register_all()` again into an
empty registry and checks what it files against values written out here. Nothing is
downloaded and no model is built on the CPU: the builds are on the meta device.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import InputTooSmallError, create_model, registry, torchvision_models
from cnnlab.models.heads import first_conv_name
from cnnlab.models.shapes import LARGEST_SIDE
from cnnlab.models.torchvision_models import (
    TorchvisionInputTooSmallError,
    _check_side,
    _first_conv,
    _new_head,
)


def refuse_network(*args, **kwargs):
    raise AssertionError("the network was used")


# --- registration -------------------------------------------------------------------------------


@pytest.fixture
def fresh_registry(monkeypatch) -> dict[str, registry.ModelInfo]:
    """What `_register_all()` files when run again into an empty registry (4 ms)."""
    monkeypatch.setattr(registry, "_MODELS", {})
    torchvision_models._register_all()
    return registry._MODELS


# the keyword-only arguments every tv_ builder takes, with their defaults but the image size
DEFAULTS = {"num_classes": 1000, "in_channels": 3, "init": "default", "pretrained": False,
            "weights_file": None}  # fmt: skip


def defaults(builder) -> dict:
    params = inspect.signature(builder).parameters.values()
    assert all(param.kind is inspect.Parameter.KEYWORD_ONLY for param in params)
    return {param.name: param.default for param in params}


def test_registration_files_every_torchvision_classifier_once(fresh_registry):
    names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
    assert sorted(fresh_registry) == sorted(f"tv_{name}" for name in names)
    assert len(fresh_registry) == len(names)


def test_registration_files_resnet18_from_its_weights_metadata(fresh_registry):
    info = fresh_registry["tv_resnet18"]
    assert (info.name, info.input_shape, info.num_classes) == ("tv_resnet18", (3, 224, 224), 1000)
    assert info.description == (
        "torchvision ResNet18 (69.8% ImageNet top-1 pretrained), a new head for num_classes"
    )
    assert (info.seed, info.parameters) == ("torchvision", 11_689_512)
    builder = info.builder
    assert builder.__name__ == builder.__qualname__ == "tv_resnet18"
    assert builder.__doc__ == (
        "torchvision's resnet18 (ResNet18); 11,689,512 parameters with 1000 classes.\n"
        "pretrained=True loads its DEFAULT weights, ResNet18_Weights.IMAGENET1K_V1 (69.758% "
        "ImageNet top-1 at 224×224), from https://download.pytorch.org/models/resnet18-f37072fd.pth."
    )
    assert defaults(builder) == {**DEFAULTS, "image_size": (224, 224)}


def test_registration_of_inception_v3_leaves_out_its_aux_head_and_takes_299(fresh_registry):
    # a family name with an underscore, another crop size, and LEFT_OUT_PARAMETERS' entry:
    # 27,161,264 in torchvision's metadata less the aux head's 3,326,696
    info = fresh_registry["tv_inception_v3"]
    assert (info.input_shape, info.parameters) == ((3, 299, 299), 23_834_568)
    assert info.description == (
        "torchvision Inception-V3 (77.3% ImageNet top-1 pretrained), a new head for num_classes"
    )
    assert info.builder.__doc__ == (
        "torchvision's inception_v3 (Inception-V3); 23,834,568 parameters with 1000 classes.\n"
        "pretrained=True loads its DEFAULT weights, Inception_V3_Weights.IMAGENET1K_V1 (77.294% "
        "ImageNet top-1 at 299×299), from "
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth."
    )
    assert defaults(info.builder) == {**DEFAULTS, "image_size": (299, 299)}


def test_a_registered_builder_called_bare_builds_the_default_model(fresh_registry, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    builder = fresh_registry["tv_squeezenet1_1"].builder
    assert defaults(builder) == {**DEFAULTS, "image_size": (224, 224)}
    with torch.device("meta"):
        model = builder()  # 1000 classes, RGB, 224×224, no weights
        assert model(torch.empty(2, 3, 224, 224)).shape == (2, 1000)
    assert isinstance(model, torchvision.models.SqueezeNet)
    assert model.classifier[1].out_channels == 1000 and model.features[0].in_channels == 3
    # weights_file reaches the build: a file that is not there is named
    with pytest.raises(ModelError, match=r"weights file nowhere\.pth does not exist"):
        builder(weights_file="nowhere.pth")


# --- the first conv for in_channels -------------------------------------------------------------


def rgb_conv() -> nn.Conv2d:
    """A 1×1 RGB conv with two filters, (1, 2, 3) and (4, 5, 6), and biases 0.5 and -0.5."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(2, 3, 1, 1))
        conv.bias.copy_(torch.tensor([0.5, -0.5]))
    return conv


@pytest.mark.parametrize(
    ("in_channels", "filters"),
    [
        (1, [[6.0], [15.0]]),  # summed: a gray image (R = G = B) gives what RGB gave
        (2, [[1.5, 3.0], [6.0, 7.5]]),  # R, G scaled by 3/2
        (4, [[0.75, 1.5, 2.25, 0.75], [3.0, 3.75, 4.5, 3.0]]),  # R, G, B, R scaled by 3/4
        (7, [[3 / 7, 6 / 7, 9 / 7, 3 / 7, 6 / 7, 9 / 7, 3 / 7],
             [12 / 7, 15 / 7, 18 / 7, 12 / 7, 15 / 7, 18 / 7, 12 / 7]]),  # RGB three times
    ],
)  # fmt: skip
def test_pretrained_rgb_filters_are_summed_or_repeated_and_scaled(in_channels, filters):
    new = _first_conv(rgb_conv(), in_channels, pretrained=True)
    assert new.weight.shape == (2, in_channels, 1, 1)
    assert torch.allclose(new.weight.view(2, in_channels), torch.tensor(filters))
    assert torch.equal(new.bias, torch.tensor([0.5, -0.5]))  # the biases kept


def test_a_new_first_conv_keeps_every_setting_but_its_input_channels():
    conv = nn.Conv2d(3, 6, 5, stride=2, padding=1, dilation=2, groups=3, padding_mode="reflect")
    new = _first_conv(conv, 6, pretrained=False)
    assert (new.in_channels, new.out_channels, new.kernel_size) == (6, 6, (5, 5))
    assert (new.stride, new.padding, new.dilation, new.groups) == ((2, 2), (1, 1), (2, 2), 3)
    assert new.padding_mode == "reflect" and new.bias is not None
    assert _first_conv(nn.Conv2d(3, 4, 3, bias=False), 1, pretrained=False).bias is None


def test_a_model_for_four_channels_gets_a_four_channel_stem():
    with torch.device("meta"):  # its size check runs a meta forward of 4-channel images
        model = create_model("tv_shufflenet_v2_x0_5", num_classes=5, in_channels=4, image_size=32)
    assert model.get_submodule(first_conv_name(model)).in_channels == 4


# --- weight arguments ---------------------------------------------------------------------------


def test_both_kinds_of_weights_at_once_is_refused_in_one_line():
    with pytest.raises(ModelError) as caught:
        create_model("tv_resnet18", pretrained=True, weights_file="w.pth")
    assert str(caught.value) == (
        "give pretrained=True (torchvision's download) or weights_file=PATH, not both"
    )


# --- the new head -------------------------------------------------------------------------------


def test_a_new_head_keeps_the_layers_settings_and_its_bias_or_none():
    conv = nn.Conv2d(8, 1000, 3, stride=2, padding=1, bias=False)
    head = _new_head(conv, 5)
    assert isinstance(head, nn.Conv2d) and (head.in_channels, head.out_channels) == (8, 5)
    assert (head.kernel_size, head.stride, head.padding) == ((3, 3), (2, 2), (1, 1))
    assert head.bias is None
    linear = _new_head(nn.Linear(8, 1000, bias=False), 5)
    assert (linear.in_features, linear.out_features, linear.bias) == (8, 5, None)


# --- sizes: every error names the model ---------------------------------------------------------


def test_a_model_too_small_for_the_images_is_named_in_the_error():
    with torch.device("meta"), pytest.raises(InputTooSmallError) as caught:
        create_model("tv_alexnet", image_size=32)
    assert str(caught.value) == (
        "tv_alexnet cannot take 32×32 images: its feature maps shrink to nothing; the smallest "
        "input it takes is 63×63, so resize the images to at least that or choose another model "
        "(train with --image-size 63 or more)"
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("tv_vit_b_16", {"image_size": (32, 48)},
         "tv_vit_b_16 is built for square images, got 32×48; resize them with --image-size 48"),
        ("tv_vit_b_16", {"image_size": 32, "pretrained": True},
         "the pretrained tv_vit_b_16 weights are for 224×224 images (the position embedding "
         "fixes the size), got 32×32; use --image-size 224, or pretrained=False to train one "
         "for 32×32"),
        # 47 is odd: the size below is found by counting down one at a time
        ("tv_vit_b_16", {"image_size": 47},
         "tv_vit_b_16 cannot take 47×47 images: its 16×16 patches must tile the image; use "
         "--image-size 32 or 48"),
        # the size above may be the largest side itself
        ("tv_vit_b_16", {"image_size": 4095},
         "tv_vit_b_16 cannot take 4095×4095 images: its 16×16 patches must tile the image; use "
         "--image-size 4080 or 4096"),
        # no multiple of 14 above 4090 up to the largest side (4102 is past it): the one below
        ("tv_vit_h_14", {"image_size": 4090},
         "tv_vit_h_14 cannot take 4090×4090 images: its 14×14 patches must tile the image; use "
         "--image-size 4088"),
        ("tv_maxvit_t", {"image_size": (224, 225)},
         "tv_maxvit_t is built for square images, got 224×225; resize them with --image-size 225"),
        ("tv_maxvit_t", {"image_size": 300},
         "tv_maxvit_t cannot take 300×300 images: each of its 4 stages must split into 7×7 "
         "windows; use --image-size 224 or 445"),
        ("tv_maxvit_t", {"image_size": 64},
         "tv_maxvit_t cannot take 64×64 images: its feature maps shrink to nothing; the "
         "smallest input it takes is 221×221, so resize the images to at least that or choose "
         "another model (train with --image-size 221 or more)"),
    ],
)  # fmt: skip
def test_a_one_size_model_says_which_sizes_it_takes(name, kwargs, message, monkeypatch):
    # these are refused before anything is built or read
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    monkeypatch.setattr(torchvision_models, "_architecture", refuse_network)
    with pytest.raises(ModelError) as caught:
        create_model(name, **kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fits", "side", "nearest"),
    [
        (lambda s: s == 1 or s >= 10, 5, "1 or 10"),  # 1 fits: not too small, 1 is below
        (lambda s: s in (10, LARGEST_SIDE + 1), 4000, "10"),  # none above the largest
    ],
)
def test_a_side_that_does_not_fit_is_told_the_nearest_that_do(fits, side, nearest):
    with pytest.raises(ModelError) as caught:
        _check_side("m", side, fits, "why")
    assert type(caught.value) is ModelError  # not InputTooSmallError: sizes below do fit
    message = f"m cannot take {side}×{side} images: why; use --image-size {nearest}"
    assert str(caught.value) == message


def test_a_side_below_the_only_one_that_fits_is_too_small():
    with pytest.raises(TorchvisionInputTooSmallError) as caught:
        _check_side("m", 100, lambda s: s == LARGEST_SIDE, "why")
    assert caught.value.min_size == LARGEST_SIDE
    assert str(caught.value).startswith("m cannot take 100×100 images")


# --- GoogLeNet's init ---------------------------------------------------------------------------


def test_googlenet_gets_torchvisions_init_only_when_no_weights_overwrite_it(monkeypatch):
    # torchvision's own init for GoogLeNet (a truncated normal, std 0.01: slow, torchvision
    # warns) when it is trained from scratch; skipped when a weights file overwrites it
    stds = []

    def trunc_normal(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        stds.append(std)
        return tensor

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", trunc_normal)
    monkeypatch.setattr(torchvision_models, "load_weights", lambda model, name, path: None)
    with torch.device("meta"):
        model = create_model("tv_googlenet", num_classes=3, image_size=64)
        assert stds and set(stds) == {0.01}
        # one logits tensor, inputs as cnnlab normalised them: torchvision's bools, not None
        assert model.aux_logits is False and model.transform_input is False
        stds.clear()
        create_model("tv_googlenet", num_classes=3, image_size=64, weights_file="w.pth")
    assert stds == []

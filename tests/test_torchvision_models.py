"""Every torchvision classifier as tv_<name>: registered from torchvision's own list without
importing torchvision for seed models, built with a head for num_classes and a stem for
in_channels at the sizes it can take, and pretrained weights that need no network when the file
is at hand. No test downloads anything: the hub cache is a temporary folder and the download
is replaced."""

from __future__ import annotations

import inspect
import math
import re
import socket

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnlab
from cnnlab.errors import ModelError
from cnnlab.models import (
    InputTooSmallError,
    catalog,
    count_parameters,
    create_model,
    list_models,
    min_input_size,
    model_info,
    torchvision_models,
    tv_weights,
)
from cnnlab.models.args import architecture_args
from cnnlab.models.heads import first_conv_name, head_name
from helpers import write_learnable_npz

TV_NAMES = list_models("tv_*")
# The weight-file tests load a small classifier with ResNet's kind of head (a Linear `fc`):
# ShuffleNet-V2 x0.5's 1.4 M tensors are written and read in a fraction of ResNet-18's 11.7 M.
SMALL = "tv_shufflenet_v2_x0_5"
SMALL_FILE = "shufflenetv2_x0.5-f707e7126e.pth"  # the name in torchvision's URL, as it caches it
SMALL_URL = f"https://download.pytorch.org/models/{SMALL_FILE}"


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- registration -------------------------------------------------------------------------------


def test_every_torchvision_classifier_is_registered_at_its_weights_crop_size():
    names = torchvision.models.list_models(module=torchvision.models)
    assert sorted(f"tv_{name}" for name in names) == TV_NAMES
    assert len(TV_NAMES) >= 80
    # the crop size of each one's DEFAULT weights, as torchvision's transforms give it
    sizes = {"tv_resnet18": 224, "tv_inception_v3": 299, "tv_vit_h_14": 518,
             "tv_swin_v2_t": 256, "tv_efficientnet_b7": 600, "tv_regnet_y_128gf": 384}  # fmt: skip
    for name, side in sizes.items():
        assert model_info(name).input_shape == (3, side, side)
    info = model_info("tv_resnet18")
    assert (info.seed, info.num_classes) == ("torchvision", 1000)
    assert info.description.startswith("torchvision ResNet18 (69.8% ImageNet top-1")
    assert list(inspect.signature(info.builder).parameters) == [
        "num_classes", "in_channels", "image_size", "init", "pretrained", "weights_file"
    ]  # fmt: skip


@pytest.mark.parametrize("name", TV_NAMES)
def test_every_model_gets_a_head_for_its_classes_and_a_stem_for_its_channels(name, monkeypatch):
    # the size check's meta forward would double the time of 80 builds; the tests below run it
    monkeypatch.setattr(torchvision_models, "_fits", lambda *args: True)  # caching no answer
    with torch.device("meta"):  # RegNet too, whose widths are worked out on the CPU
        model = create_model(name, num_classes=7, in_channels=1)
    head = model.get_submodule(head_name(model, 7))
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 7
    assert model.get_submodule(first_conv_name(model)).in_channels == 1


# the default models, built on the meta device, against the count `cnnlab models` shows
HANDFUL = ["tv_resnet18", "tv_googlenet", "tv_inception_v3", "tv_vit_h_14", "tv_regnet_x_400mf",
           "tv_squeezenet1_1", "tv_maxvit_t", "tv_swin_v2_t", "tv_densenet121"]  # fmt: skip


@pytest.mark.parametrize("name", HANDFUL)
def test_the_listed_count_is_the_default_models_and_it_gives_one_logits_tensor(name):
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name).train()
        logits = model(torch.empty(2, *info.input_shape))
    # torchvision's num_params, less Inception-v3's aux head; ViT-H-14 at 518 (its weights' size)
    assert count_parameters(model) == info.parameters
    assert type(logits) is torch.Tensor and logits.shape == (2, 1000)  # no aux outputs


def test_the_model_table_lists_torchvision_models_without_building_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("a torchvision model was built")

    monkeypatch.setattr(torchvision_models, "_build", refuse)
    rows = catalog.model_catalog("tv_*")
    assert [row["name"] for row in rows] == TV_NAMES
    assert {row["name"]: row["parameters"] for row in rows}["tv_resnet18"] == 11_689_512
    assert all(row["parameters"] == model_info(row["name"]).parameters for row in rows)


# that seed models build and train without importing torchvision is checked in the fresh
# `cnnlab train` of test_startup.py, which checks its garbage collector too: one interpreter


def test_an_unknown_name_suggests_torchvision_ones():
    with pytest.raises(ModelError, match="did you mean tv_resnet18 or tv_resnet34 or tv_resnet50"):
        create_model("resnet")


# --- sizes --------------------------------------------------------------------------------------


def test_a_model_too_small_for_the_images_names_the_resize_option():
    with torch.device("meta"), pytest.raises(InputTooSmallError) as caught:
        create_model("tv_alexnet", image_size=32)
    assert "smallest input it takes is 63×63" in one_line(caught)
    assert "--image-size 63" in str(caught.value)
    assert caught.value.min_size == 63


def test_regnet_builds_for_small_gray_images_and_on_the_meta_device():
    torch.manual_seed(0)
    model = create_model("tv_regnet_x_400mf", num_classes=10, in_channels=1, image_size=32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert min_input_size("tv_regnet_x_400mf", num_classes=10, in_channels=1) == 1


@pytest.mark.parametrize(("side", "tokens"), [(32, 2 * 2 + 1), (64, 4 * 4 + 1)])
def test_a_vit_without_weights_is_built_for_the_images_size(side, tokens):
    with torch.device("meta"):
        model = create_model("tv_vit_b_16", num_classes=10, in_channels=1, image_size=side)
        assert model(torch.empty(2, 1, side, side)).shape == (2, 10)
    # one position per 16×16 patch, plus the class token
    assert model.encoder.pos_embedding.shape == (1, tokens, 768)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 40}, "16×16 patches must tile the image; use --image-size 32 or 48"),
        ({"image_size": (32, 48)}, "built for square images, got 32×48; resize them with"),
        ({"image_size": 32, "pretrained": True},
         "weights are for 224×224 images .* got 32×32; use --image-size 224"),
    ],
)  # fmt: skip
def test_a_vit_says_which_sizes_it_takes(kwargs, message, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    with torch.device("meta"), pytest.raises(ModelError, match=message) as caught:
        create_model("tv_vit_b_16", **kwargs)
    one_line(caught)


def test_min_input_size_of_the_one_size_models_is_their_smallest_size():
    assert min_input_size("tv_vit_b_16") == 16  # one patch
    assert min_input_size("tv_vit_b_16", pretrained=True, weights_file="nowhere.pth") == 16
    # MaxViT-T: 221 → stem 111 → 56, 28, 14, 7: every stage a multiple of its 7×7 windows
    assert min_input_size("tv_maxvit_t") == 221
    with torch.device("meta"):
        for side in (221, 445):
            model = create_model("tv_maxvit_t", num_classes=3, image_size=side).eval()
            assert model(torch.empty(2, 3, side, side)).shape == (2, 3)
        with pytest.raises(ModelError, match="7×7 windows; use --image-size 224 or 445"):
            create_model("tv_maxvit_t", image_size=300)
        with pytest.raises(InputTooSmallError, match="--image-size 221"):
            create_model("tv_maxvit_t", image_size=64)


# --- training from scratch ----------------------------------------------------------------------


def test_a_model_without_weights_learns_at_32x32():
    torch.manual_seed(0)
    model = create_model("tv_resnet18", num_classes=4, in_channels=1, image_size=32).train()
    # torchvision's init ran (on the meta device it is skipped): Kaiming normal, fan_out, for
    # ReLU: std = sqrt(2 / (64*3*3)) ≈ 0.059
    assert model.layer1[0].conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    images, labels = torch.randn(8, 1, 32, 32), torch.arange(8) % 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = F.cross_entropy(model(images), labels)
    before.backward()
    optimizer.step()
    after = F.cross_entropy(model(images), labels)
    assert after.item() < before.item()


# --- weights from a file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    """Stands in for the ImageNet weights: a ShuffleNet-V2 x0.5 state dict of random values.
    Not seeded with training's default seed 0, which would give a model built without the file
    these very values."""
    torch.manual_seed(7)
    return torchvision.models.shufflenet_v2_x0_5().state_dict()


def save(state: dict[str, torch.Tensor], path) -> str:
    if str(path).endswith(".safetensors"):
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return str(path)


def assert_small_weights_adapted(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every tensor from `state` but the head's and the stem conv's (`conv1.0`, before its batch
    norm); the stem's RGB filters summed."""
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith(("fc.", "conv1.0.")):
            assert torch.equal(own[key], value), key
    # a gray image is R = G = B, so the summed filters see it as the RGB model would
    assert torch.allclose(model.conv1[0].weight, state["conv1.0.weight"].sum(1, keepdim=True))
    assert model.fc.out_features == 10


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_weights_file_is_loaded_and_adapted(suffix, small_state, tmp_path):
    path = save(small_state, tmp_path / f"imagenet{suffix}")
    model = create_model(SMALL, weights_file=path, num_classes=10, in_channels=1)
    assert_small_weights_adapted(model, small_state)
    assert model.model_args["weights_file"] == path
    assert_rebuilds_without_the_weights(model)


def assert_rebuilds_without_the_weights(model: nn.Module) -> None:
    """A checkpoint's model is rebuilt without its weight arguments, then takes its tensors."""
    rebuilt = create_model(model.model_name, **architecture_args(model.model_args))
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_weights_for_1000_rgb_classes_load_unchanged(small_state, tmp_path):
    model = create_model(SMALL, weights_file=save(small_state, tmp_path / "w.pth"))
    own = model.state_dict()
    assert all(torch.equal(own[key], value) for key, value in small_state.items())


def test_squeezenet_gets_a_new_conv_head(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.squeezenet1_1().state_dict()
    model = create_model("tv_squeezenet1_1", weights_file=save(state, tmp_path / "s.pth"),
                         num_classes=5, image_size=64).eval()  # fmt: skip
    assert isinstance(model.classifier[1], nn.Conv2d) and model.classifier[1].out_channels == 5
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert_rebuilds_without_the_weights(model)


def test_googlenet_weights_with_aux_heads_load_without_them(tmp_path):
    torch.manual_seed(0)
    full = torchvision.models.googlenet(aux_logits=True, init_weights=False)  # as in the file
    state = full.state_dict()
    model = create_model("tv_googlenet", weights_file=save(state, tmp_path / "g.pth"),
                         num_classes=3, image_size=64).train()  # fmt: skip
    assert model.aux1 is None and model.aux2 is None and not model.transform_input
    assert torch.equal(
        model.inception5b.branch1.conv.weight, state["inception5b.branch1.conv.weight"]
    )
    logits = model(torch.randn(2, 3, 64, 64))
    assert type(logits) is torch.Tensor and logits.shape == (2, 3)
    assert_rebuilds_without_the_weights(model)


def test_densenet_files_with_the_old_layer_names_load(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.densenet121().state_dict()
    # torchvision's own files say "denselayer1.norm.1.weight" for today's "denselayer1.norm1.weight"
    layer = r"(denselayer\d+\.(?:norm|conv))([12])\.(weight|bias|running_mean|running_var)$"
    old = {re.sub(layer, r"\1.\2.\3", key): value for key, value in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    model = create_model("tv_densenet121", weights_file=save(old, tmp_path / "d.pth"))
    own = model.state_dict()
    assert all(torch.equal(own[key], value) for key, value in state.items())


def test_a_file_for_another_architecture_says_what_does_not_fit(tmp_path):
    mobilenet = save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "m.pth")
    with pytest.raises(ModelError, match=rf"m\.pth is not a state dict of {SMALL}: .*missing"):
        create_model(SMALL, weights_file=mobilenet)
    ten_classes = torchvision.models.shufflenet_v2_x0_5(num_classes=10).state_dict()
    with pytest.raises(ModelError, match=rf"t\.pth does not fit {SMALL}: .*fc\.weight") as caught:
        create_model(SMALL, weights_file=save(ten_classes, tmp_path / "t.pth"))
    one_line(caught)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.pth", None, "does not exist"),
        ("w.safetensors", None, "does not exist"),
        ("w.pth", b"not a pickle", "cannot read .* as a state dict"),
        ("w.safetensors", b"not a header", "cannot read .* as a state dict"),
        ("w.pth", {"epoch": 3}, "holds a dict that is not a state dict"),
        ("w.pth", [torch.zeros(1)], "holds a list that is not a state dict"),
    ],
)
def test_a_weights_file_that_is_no_state_dict_is_a_model_error(name, content, message, tmp_path):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ModelError, match=message) as caught:
        create_model(SMALL, weights_file=str(path))
    assert str(path) in one_line(caught)


def test_a_safetensors_file_without_format_versions_loads_into_mnasnet(tmp_path):
    # MNASNet reads its layers' format version, which safetensors does not keep
    torch.manual_seed(0)
    state = torchvision.models.mnasnet0_5().state_dict()
    model = create_model("tv_mnasnet0_5", weights_file=save(state, tmp_path / "m.safetensors"))
    assert torch.equal(model.layers[0].weight, state["layers.0.weight"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pretrained": True, "weights_file": "w.pth"}, "not both"),
        ({"weights_file": "w.pth", "init": "xavier"}, "would overwrite the loaded weights"),
        ({"pretrained": True, "init": "kaiming"}, "would overwrite the loaded weights"),
        ({"pretrained": "yes"}, "pretrained must be True or False"),
        ({"weights_file": 3}, "weights_file must be a file path"),
    ],
)
def test_contradicting_weight_arguments_are_model_errors(kwargs, message, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    with pytest.raises(ModelError, match=message) as caught:
        create_model("tv_resnet18", **kwargs)
    one_line(caught)


# --- pretrained: the hub cache, else a bounded download -----------------------------------------


def refuse_network(*args, **kwargs):
    raise AssertionError("the network was used")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of the test's own: TORCH_HOME/hub/checkpoints."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no torch.hub.set_dir() in the way
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_pretrained_weights_in_the_hub_cache_load_without_the_network(
    hub, small_state, monkeypatch
):
    hub.mkdir(parents=True)
    save(small_state, hub / SMALL_FILE)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    model = create_model(SMALL, pretrained=True, num_classes=10, in_channels=1)
    assert_small_weights_adapted(model, small_state)


def test_pretrained_weights_are_downloaded_with_a_timeout_into_the_cache(
    hub, small_state, monkeypatch
):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix, socket.getdefaulttimeout()))
        save(small_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    model = create_model(SMALL, pretrained=True, num_classes=10, in_channels=1)
    assert_small_weights_adapted(model, small_state)
    dst = str(hub / SMALL_FILE)
    assert calls == [(SMALL_URL, dst, "f707e7126e", tv_weights.DOWNLOAD_TIMEOUT_S)]
    assert socket.getdefaulttimeout() is None  # put back
    create_model(SMALL, pretrained=True)  # the second time from the cache
    assert len(calls) == 1


def test_pretrained_weights_offline_say_which_file_goes_in_which_folder(hub, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise TimeoutError("timed out")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as caught:
        create_model(SMALL, pretrained=True)
    message = one_line(caught)
    assert f"could not download the pretrained {SMALL} weights (timed out)" in message
    assert f"put {SMALL_FILE} from {SMALL_URL} in {hub}" in message
    assert message.endswith("or use --weights-file PATH")


def test_train_pretrained_reaches_the_builder_and_a_resume_never_fetches_again(
    hub, small_state, tmp_path, monkeypatch, capsys
):
    from cnnlab.cli import main

    hub.mkdir(parents=True)
    save(small_state, hub / SMALL_FILE)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse_network)
    data = write_learnable_npz(tmp_path / "data", train=32, test=16, size=32)
    argv = [
        "train", "--model", SMALL, "--pretrained", "--freeze-backbone",
        "--dataset", f"npz:{data}", "--epochs", "1", "--batch-size", "16", "--lr", "0.01",
        "--out-dir", str(tmp_path / "runs"), "--name", "ft", "--progress", "none",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "ft"
    model = cnnlab.rebuild_model(run)
    for name, param in model.named_parameters():  # frozen since they were loaded
        if not name.startswith("fc."):
            expected = small_state[name]
            if name == "conv1.0.weight":  # one gray channel: the RGB filters summed
                expected = expected.sum(1, keepdim=True)
            assert torch.allclose(param, expected), name
    (hub / SMALL_FILE).unlink()  # the weights are in last.pt now
    assert main(["train", "--resume", str(run), "--epochs", "2", "--progress", "none"]) == 0
    assert len(cnnlab.load_checkpoint(run / "last.pt")["metrics"]) == 2

"""The model zoo: every seed model and five torchvision ones build, learn (finite gradients) and
fail usefully. The other torchvision classifiers are checked more cheaply, on the meta device, in
test_torchvision_models.py: running 80 of them for real takes minutes on two cores.

Parameter counts are worked out by hand from the seeds' layer lists, not read off the code:
conv = in*out*k*k + out (bias), linear = in*out + out, batch norm = 2*channels.
"""

from __future__ import annotations

import functools
import inspect
import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import (
    InputTooSmallError,
    conv_output_size,
    count_parameters,
    create_model,
    list_models,
    min_input_size,
    model_info,
    register_model,
    registry,
)
from cnnlab.models.cifar2 import ResBlock

ALL_MODELS = list_models()
SEED_MODELS = [name for name in ALL_MODELS if model_info(name).seed != "torchvision"]
TORCHVISION_MODELS = list_models("tv_*")
# the torchvision models registered before all of them were: the ones run for real here
FIVE_TORCHVISION = ["tv_alexnet", "tv_efficientnet_b0", "tv_mobilenet_v3_small", "tv_resnet18",
                    "tv_vgg11"]  # fmt: skip
TESTED_MODELS = SEED_MODELS + FIVE_TORCHVISION


@functools.cache  # min_input_size builds the model on the meta device: EfficientNet 0.3 s
def input_shape_for(name: str) -> tuple[int, int, int]:
    """A seed model's default input; torchvision ones at 32×32 (or their minimum) to stay fast."""
    info = model_info(name)
    if info.seed != "torchvision":
        return info.input_shape
    side = max(32, min_input_size(name))
    return (info.input_shape[0], side, side)


class BuiltModels(dict):
    """Each model at its test input, built (seeded by itself) the first time a test asks for
    it: pytest-xdist may hand the parameter-count tests at the end to another worker, which then
    builds those seed models only, not VGG-11 and the rest again."""

    def __missing__(self, name: str) -> nn.Module:
        with torch.random.fork_rng():  # the test's own random numbers stay as they were
            torch.manual_seed(0)
            model = self[name] = create_model(name, image_size=input_shape_for(name)[1:])
        return model


@pytest.fixture(scope="module")
def built_models() -> dict[str, nn.Module]:
    """One model per name at its test input, shared by the forward and backward tests (VGG-11
    alone takes over a second to build on two cores)."""
    return BuiltModels()


# --- every model --------------------------------------------------------------------------------


def test_the_zoo_has_every_seed_model_and_every_torchvision_classifier():
    assert SEED_MODELS == [
        "airbench", "cifar10_cnn", "lenet", "lenet_relu", "mnist_cnn", "mnist_cnn_deep",
        "mnist_fast", "net", "net_batchnorm", "net_dropout", "net_res", "net_res_deep",
        "net_res_stages", "net_width",
    ]  # fmt: skip
    classifiers = torchvision.models.list_models(module=torchvision.models)
    assert sorted(f"tv_{name}" for name in classifiers) == TORCHVISION_MODELS
    assert set(FIVE_TORCHVISION) <= set(TORCHVISION_MODELS)


@pytest.mark.parametrize("name", TESTED_MODELS)
@pytest.mark.parametrize("batch_size", [1, 7])
def test_forward_gives_one_row_of_logits_per_image(name, batch_size, built_models):
    model = built_models[name].eval()
    images = torch.randn(batch_size, *input_shape_for(name))
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (batch_size, model_info(name).num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", TESTED_MODELS)
def test_backward_gives_a_finite_gradient_for_every_parameter(name, built_models):
    model = built_models[name].train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    images = torch.randn(7, *input_shape_for(name))
    labels = torch.randint(0, model_info(name).num_classes, (7,))
    F.cross_entropy(model(images), labels).backward()
    for param_name, param in model.named_parameters():
        if not param.requires_grad:  # fixed by design (airbench's batch-norm scales): none
            assert param.grad is None, f"{name}.{param_name} is fixed but got a gradient"
            continue
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        # a NaN or inf anywhere makes the sum NaN or inf: one pass over VGG's 132M, no copy
        assert param.grad.sum().isfinite(), f"{name}.{param_name} has a non-finite gradient"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builder_defaults_are_the_registry_defaults(name):
    info = model_info(name)
    params = inspect.signature(info.builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert params["num_classes"].default == info.num_classes
    assert params["in_channels"].default == info.input_shape[0]
    assert tuple(params["image_size"].default) == info.input_shape[1:]
    assert params["init"].default == "default"
    assert info.description and "\n" not in info.description


# --- parameter counts, by hand from the seeds ---------------------------------------------------

SEED_PARAMETER_COUNTS = {
    # seed 001, LeNet: conv1 1*6*25+6 = 156, conv2 6*16*25+16 = 2416, fc1 400*120+120 = 48120,
    # fc2 120*84+84 = 10164, fc3 84*10+10 = 850 → 61,706
    "lenet": 61_706,
    "lenet_relu": 61_706,  # the same layers; ReLU and max-pooling have no parameters
    # seed 003: conv1 1*10*25+10 = 260, conv2 10*20*25+20 = 5020, linear 320*10+10 = 3210 → 8490
    "mnist_cnn": 8_490,
    # seed 003 homework: conv1 1*24*1+24 = 48, conv2 24*16*9+16 = 3472, conv3 16*8*9+8 = 1160,
    # linear1 32*64+64 = 2112, linear2 64*128+128 = 8320, linear3 128*10+10 = 1290 → 16,402
    "mnist_cnn_deep": 16_402,
    # seeds 002/004: conv1 3*32*25+32 = 2432, conv2 32*32*25+32 = 25632, conv3 32*64*25+64 =
    # 51264, fc1 1024*64+64 = 65600, fc2 64*10+10 = 650 → 145,578
    "cifar10_cnn": 145_578,
    # seed 000 Net: conv1 3*16*9+16 = 448, conv2 16*8*9+8 = 1160, fc1 512*32+32 = 16416,
    # fc2 32*2+2 = 66 → 18,090 (the book's count)
    "net": 18_090,
    # NetWidth(32): conv1 3*32*9+32 = 896, conv2 32*16*9+16 = 4624, fc1 1024*32+32 = 32800,
    # fc2 66 → 38,386
    "net_width": 38_386,
    "net_dropout": 38_386,  # NetWidth plus Dropout2d, which has no parameters
    # NetBatchNorm(32): NetWidth 38,386 + bn1 2*32 + bn2 2*16 = 96 → 38,482
    "net_batchnorm": 38_482,
    # NetRes(32): conv1 896, conv2 4624, conv3 16*16*9+16 = 2320, fc1 4*4*16*32+32 = 8224,
    # fc2 66 → 16,130
    "net_res": 16_130,
    # NetResDeep(32, 10): conv1 896, 10 blocks of (conv 32*32*9 = 9216 without bias + bn 64 =
    # 9280) = 92800, fc1 8*8*32*32+32 = 65568, fc2 66 → 159,330
    "net_res_deep": 159_330,
    # NetResStages((32, 64, 128), 1 block): each stage is conv c_in*c*9 (no bias) + bn 2c + a
    # ResBlock c*c*9 + 2c: 3*32*9 + 64 + 9216 + 64 = 10,208; 32*64*9 + 128 + 36864 + 128 =
    # 55,552; 64*128*9 + 256 + 147456 + 256 = 221,696; fc 128*2+2 = 258 → 287,714
    "net_res_stages": 287_714,
}


@pytest.mark.parametrize(("name", "expected"), SEED_PARAMETER_COUNTS.items())
def test_seed_models_have_the_parameter_count_worked_out_by_hand(name, expected, built_models):
    assert count_parameters(built_models[name]) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # ResNet-18 has 11,689,512; fc 512*1000+1000 = 513000 → 512*10+10 = 5130;
        # conv1 64*3*7*7 = 9408 (no bias) → 64*1*7*7 = 3136: 11,689,512 - 513000 + 5130 - 9408
        # + 3136 = 11,175,370
        ("tv_resnet18", 11_175_370),
        # MobileNetV3-Small has 2,542,856; classifier.3 1024*1000+1000 = 1,025,000 → 10,250;
        # features.0.0 16*3*3*3 = 432 (no bias) → 144: 2,542,856 - 1,025,000 + 10,250 - 432 + 144
        ("tv_mobilenet_v3_small", 1_527_818),
    ],
)
def test_torchvision_models_get_a_new_head_and_first_conv(name, expected):
    model = create_model(name, num_classes=10, in_channels=1, image_size=32)
    assert count_parameters(model) == expected
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_count_parameters_counts_a_shared_parameter_once_and_can_skip_frozen_ones():
    model = create_model("lenet")
    for param in model[0].parameters():  # conv1: 156 parameters
        param.requires_grad_(False)
    assert count_parameters(model) == 61_706
    assert count_parameters(model, trainable_only=True) == 61_706 - 156


# --- net_res_deep: distinct blocks, or the seed's shared one ------------------------------------


def test_net_res_deep_builds_ten_distinct_blocks():
    model = create_model("net_res_deep")
    blocks = list(model.resblocks)
    assert len(blocks) == 10
    assert len({id(block) for block in blocks}) == 10
    assert len({id(block.conv.weight) for block in blocks}) == 10


def test_net_res_deep_share_weights_repeats_one_block_as_the_seed_does():
    model = create_model("net_res_deep", share_weights=True)
    blocks = list(model.resblocks)
    assert len(blocks) == 10
    assert all(block is blocks[0] for block in blocks)
    # conv1 896 + ONE block 9280 + fc1 65568 + fc2 66 = 75,810 (not 159,330)
    assert count_parameters(model) == 75_810


def test_net_res_deep_default_init_is_the_seeds():
    torch.manual_seed(0)
    block = create_model("net_res_deep").resblocks[0]
    assert torch.all(block.batch_norm.weight == 0.5)
    assert torch.all(block.batch_norm.bias == 0)
    # Kaiming normal for ReLU: std = sqrt(2 / fan_in) = sqrt(2 / (32*3*3)) ≈ 0.0833
    assert block.conv.weight.std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.05)


def test_net_res_stages_halves_the_image_and_widens_the_channels_stage_by_stage():
    model = create_model("net_res_stages", widths=[8, 16, 24], blocks=2, in_channels=1,
                         image_size=28, num_classes=10).eval()  # fmt: skip
    images = torch.randn(2, 1, 28, 28)
    shapes, out = [], images
    with torch.no_grad():
        for stage in model.stages:
            out = stage(out)
            shapes.append(tuple(out.shape))
        # the head: the largest value of each channel, then one Linear
        assert torch.equal(model(images), model.fc(out.amax(dim=(2, 3))))
    assert shapes == [(2, 8, 14, 14), (2, 16, 7, 7), (2, 24, 3, 3)]
    assert [sum(isinstance(m, ResBlock) for m in stage) for stage in model.stages] == [2, 2, 2]


# --- train and eval mode ------------------------------------------------------------------------


def test_dropout_is_random_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = create_model("net_dropout")
    images = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.equal(model(images), model(images))
    model.eval()
    assert torch.equal(model(images), model(images))


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    torch.manual_seed(0)
    model = create_model("net_batchnorm")
    images = 3 + 2 * torch.randn(8, 3, 32, 32)  # far from the running mean 0, variance 1
    with torch.no_grad():
        eval_logits = model.eval()(images)
        train_logits = model.train()(images)
    assert not torch.allclose(train_logits, eval_logits, atol=1e-3)
    assert model.conv1_batchnorm.num_batches_tracked == 1  # training updated the running stats


# --- init schemes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [
        # lenet fc1: Linear(400, 120), 48,000 weights
        # PyTorch's default: uniform(±1/sqrt(fan_in)), std = 1/sqrt(400)/sqrt(3) ≈ 0.0289
        ("default", 1 / math.sqrt(400) / math.sqrt(3)),
        # xavier_uniform_: std = sqrt(2 / (fan_in + fan_out)) = sqrt(2 / 520) ≈ 0.0620
        ("xavier", math.sqrt(2 / 520)),
        # kaiming_normal_ for ReLU: std = sqrt(2 / fan_in) = sqrt(2 / 400) ≈ 0.0707
        ("kaiming", math.sqrt(2 / 400)),
    ],
)
def test_init_sets_the_weight_statistics_of_its_scheme(init, expected_std):
    torch.manual_seed(0)
    model = create_model("lenet", init=init)
    fc1 = model[7]
    assert fc1.weight.shape == (120, 400)
    assert fc1.weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert fc1.bias.abs().max().item() <= 1 / math.sqrt(400)  # biases keep PyTorch's init


@pytest.mark.parametrize("name", SEED_MODELS)
def test_xavier_and_kaiming_change_every_conv_and_linear_weight(name):
    weights = {}
    for init in ("default", "xavier", "kaiming"):
        torch.manual_seed(0)
        model = create_model(name, init=init)
        weights[init] = [
            m.weight.detach().clone()
            for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        ]
    for init in ("xavier", "kaiming"):
        for default, changed in zip(weights["default"], weights[init], strict=True):
            assert not torch.equal(default, changed)


# --- errors that say what to do -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "suggested"), [("lenett", "lenet"), ("LeNet", "lenet"), ("resnet", "tv_resnet18")]
)
def test_unknown_name_suggests_close_matches_and_the_models_command(wrong, suggested):
    with pytest.raises(ModelError, match=f"did you mean {suggested}.*`cnnlab models`") as caught:
        create_model(wrong)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "side", "smallest"), [("lenet", 8, 12), ("cifar10_cnn", 4, 8)])
def test_an_input_too_small_names_the_smallest_size(name, side, smallest):
    with pytest.raises(ModelError, match=f"smallest input it takes is {smallest}×{smallest}"):
        create_model(name, image_size=side)


@pytest.mark.parametrize("name", TESTED_MODELS)
def test_min_input_size_is_exactly_the_smallest_size_that_works(name):
    smallest = min_input_size(name)
    # by hand: lenet: padded conv s, pool s//2, conv s//2-4, pool (s//2-4)//2 ≥ 1 → s ≥ 12;
    # mnist_cnn: ((s-4)//2-4)//2 ≥ 1 → 16; mnist_cnn_deep: ((s//2-2)//2-2)//2 ≥ 1 → 20;
    # cifar10_cnn, net_res: three pools, s//8 ≥ 1 → 8; the other net*: s//4 ≥ 1 → 4; VGG-11:
    # five pools → 32; AlexNet: 11×11/4 conv, three 3×3/2 pools → 63; airbench: 2×2 conv, three
    # pools, (s-1)//8 ≥ 1 → 9; mnist_fast: ((s-4)//2-2)//2 ≥ 1 → 12; the rest pad all: 1
    hand = {"lenet": 12, "lenet_relu": 12, "mnist_cnn": 16, "mnist_cnn_deep": 20,
            "cifar10_cnn": 8, "net_res": 8, "net_res_stages": 8, "tv_vgg11": 32,
            "tv_alexnet": 63, "airbench": 9, "mnist_fast": 12}  # fmt: skip
    assert smallest == hand.get(name, 4 if name.startswith("net") else 1)
    if smallest > 1:
        with torch.device("meta"), pytest.raises(InputTooSmallError):
            create_model(name, image_size=smallest - 1)
    if name in SEED_MODELS:
        model = create_model(name, image_size=smallest).eval()
        channels = model_info(name).input_shape[0]
        assert model(torch.randn(2, channels, smallest, smallest)).shape[0] == 2


def test_unknown_keyword_arguments_list_the_accepted_ones():
    with pytest.raises(ModelError, match="lenet does not take n_chans1; it takes num_classes"):
        create_model("lenet", n_chans1=32)
    with pytest.raises(ModelError, match="n_chans1, n_blocks, share_weights"):
        create_model("net_res_deep", n_block=3)


@pytest.mark.parametrize(
    "kwargs",
    [{"init": "he"}, {"num_classes": 0}, {"in_channels": 2.5}, {"image_size": (28, 28, 1)},
     {"image_size": -3}, {"n_chans1": 1}, {"dropout": 1.0}],
)  # fmt: skip
def test_bad_values_are_model_errors(kwargs):
    with pytest.raises(ModelError):
        create_model("net_dropout", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"widths": 32}, "widths must be a list"), ({"widths": []}, "widths must be a list"),
     ({"widths": [32, 0]}, "widths must be an integer of at least 1, got 0"),
     ({"blocks": -1}, "blocks must be an integer of at least 0"),
     ({"image_size": 4}, "smallest input it takes is 8×8")],
)  # fmt: skip
def test_net_res_stages_refuses_bad_widths_blocks_and_sizes(kwargs, message):
    with pytest.raises(ModelError, match=message):
        create_model("net_res_stages", **kwargs)


@pytest.mark.parametrize(
    ("widths", "message"),
    [("16,32,64", r"widths must be a list of channel counts, like \[64, 256, 256\], got '16,32"),
     ([16, 32], "widths takes 3 numbers, one per stage, like \\[64, 256, 256\\], got 2"),
     ([16, 32, 0], "widths must be an integer of at least 1, got 0")],
)  # fmt: skip
def test_airbench_refuses_widths_that_are_not_three_channel_counts(widths, message):
    """A --model-arg widths=16,32,64 (no brackets) is a string: said as such, not read digit by
    digit."""
    with pytest.raises(ModelError, match=message):
        create_model("airbench", widths=widths)


def test_a_taken_name_cannot_be_registered_again():
    def lenet(*, num_classes=10, in_channels=1, image_size=(28, 28), init="default"):
        return nn.Linear(1, 1)

    decorate = register_model(input_shape=(1, 28, 28), num_classes=10, description="x", seed="001")
    with pytest.raises(ModelError, match="'lenet' is already registered"):
        decorate(lenet)
    assert model_info("lenet").builder is not lenet


def test_a_registered_builder_is_listed_and_built(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # undone after the test

    @register_model(input_shape=(1, 4, 4), num_classes=3, description="t", seed="001", name="tiny")
    def tiny_builder(*, num_classes=3, in_channels=1, image_size=(4, 4), init="default"):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] ** 2, num_classes))

    assert "tiny" in list_models("t*")
    assert create_model("tiny")(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_list_models_filters_with_a_shell_pattern_and_sorts():
    assert list_models("net_res*") == ["net_res", "net_res_deep", "net_res_stages"]
    assert list_models() == sorted(list_models())
    assert list_models("nothing*") == []


# --- rebuilding from saved arguments ------------------------------------------------------------

ROUND_TRIP_ARGS = {
    "net_width": {"n_chans1": 8},
    "net_dropout": {"n_chans1": 8, "dropout": 0.2},
    "net_batchnorm": {"n_chans1": 8},
    "net_res": {"n_chans1": 8},
    "net_res_deep": {"n_chans1": 8, "n_blocks": 3},
    "net_res_stages": {"widths": [4, 8, 6], "blocks": 2},
}


@pytest.mark.parametrize("name", SEED_MODELS)
def test_saved_arguments_rebuild_the_same_architecture(name):
    # what the training engine passes and saves: image_size as a list, as JSON gives it back
    side = 2 * min_input_size(name) + 5
    kwargs = dict(num_classes=3, in_channels=2, image_size=[side, side + 3], init="xavier",
                  **ROUND_TRIP_ARGS.get(name, {}))  # fmt: skip
    model = create_model(name, **kwargs).eval()
    rebuilt = create_model(name, **kwargs).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    images = torch.randn(2, 2, side, side + 3)
    with torch.no_grad():
        assert torch.equal(model(images), rebuilt(images))
    # the model also keeps every argument, defaults included, and they survive JSON
    assert set(model.model_args) == set(inspect.signature(model_info(name).builder).parameters)
    again = create_model(model.model_name, **json.loads(json.dumps(model.model_args)))
    again.load_state_dict(model.state_dict(), strict=True)
    assert model.model_args["image_size"] == (side, side + 3)


@pytest.mark.parametrize("name", FIVE_TORCHVISION)
def test_a_torchvision_architecture_rebuilds_for_a_checkpoint(name):
    with torch.device("meta"):  # shapes only: VGG-11 and AlexNet take seconds to initialise
        model = create_model(name, num_classes=5, in_channels=1, image_size=[64, 80])
        rebuilt = create_model(name, **model.model_args)
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        with pytest.raises(RuntimeError, match="size mismatch"):
            create_model(name, num_classes=6, in_channels=1).load_state_dict(model.state_dict())


# --- other input sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "fc_inputs"),
    [
        ("net", (3, 64, 64), 8 * 16 * 16),  # two pools: 64 → 16, conv2 has 8 channels
        ("net", (3, 32, 48), 8 * 8 * 12),
        ("lenet", (1, 32, 32), 16 * 6 * 6),  # 32 → conv p2 32 → pool 16 → conv 12 → pool 6
        ("lenet_relu", (3, 28, 28), 16 * 5 * 5),
        ("mnist_cnn", (1, 32, 32), 20 * 5 * 5),  # 32 → 28 → 14 → 10 → 5
        ("mnist_cnn_deep", (1, 64, 64), 8 * 6 * 6),  # 64 → 32 → 30 → 15 → 13 → 6
        ("cifar10_cnn", (3, 64, 40), 64 * 8 * 5),  # three pools: 64 → 8, 40 → 5
        ("net_res", (3, 40, 40), 16 * 5 * 5),  # three pools: 40 → 5
        ("net_res_deep", (3, 64, 64), 32 * 16 * 16),
    ],
)
def test_models_take_other_input_sizes(name, shape, fc_inputs):
    model = create_model(name, in_channels=shape[0], image_size=shape[1:], num_classes=4).eval()
    first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_linear.in_features == fc_inputs
    assert model(torch.randn(3, *shape)).shape == (3, 4)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected"),
    [(32, 3, 1, 1, 32), (28, 5, 1, 0, 24), (224, 11, 4, 2, 55), (7, 2, 2, 0, 3), (1, 3, 1, 0, 0)],
)
def test_conv_output_size_is_seed_000s_formula(size, kernel, stride, padding, expected):
    assert conv_output_size(size, kernel, stride, padding) == expected

"""airbench's methods as cnnlab settings (issue 31): each checked against what it computes,
written out the plain way (numpy, a loop, torch's own functions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data import FolderLoader, Split, TensorLoader, make_loader
from cnnlab.data.augment import Augment, alternating_flips, augment_batch, crop, reflected
from cnnlab.data.loader import seeded_generator
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models.init import (
    dirac_init,
    first_conv,
    image_patches,
    patch_whitening,
    whiten_first_conv,
)
from cnnlab.training.loop import scored_logits
from helpers import Recording, collect


def images(n: int = 6, channels: int = 3, size: int = 7, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)


# ---- padding and the crop ------------------------------------------------------------------


def test_reflected_coordinates_are_numpys_reflect():
    size = 5
    coords = torch.arange(-4, size + 4)
    expected = np.pad(np.arange(size), 4, mode="reflect")  # [4 3 2 1 0 1 2 3 4 3 2 1 0]
    assert reflected(coords, size).tolist() == expected.tolist()


@pytest.mark.parametrize("padding", [1, 3, 6])
def test_reflect_crop_is_a_window_of_the_numpy_reflect_padded_image(padding):
    batch = images(n=5, size=7)
    top = torch.tensor([0, 2 * padding, 1, padding, 2 * padding - 1])
    left = torch.tensor([2 * padding, 0, padding, 1, 2])
    out = crop(batch, padding, top, left, "reflect")
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    for i in range(len(batch)):
        padded = np.pad(batch[i].numpy(), ((0, 0), (padding,) * 2, (padding,) * 2), "reflect")
        window = padded[:, top[i] : top[i] + 7, left[i] : left[i] + 7]
        assert np.array_equal(out[i].numpy(), window), i


def test_zero_crop_is_unchanged_by_the_reflect_path():
    batch = images(n=4, size=6)
    top, left = torch.tensor([0, 4, 2, 1]), torch.tensor([4, 0, 3, 2])
    out = crop(batch, 2, top, left)
    for i in range(4):
        padded = np.pad(batch[i].numpy(), ((0, 0), (2, 2), (2, 2)))
        assert np.array_equal(out[i].numpy(), padded[:, top[i] : top[i] + 6, left[i] : left[i] + 6])


def test_augment_padding_zero_only_flips_and_none_only_crops():
    batch = images(n=32, size=8)
    no_crop = augment_batch(batch, torch.Generator().manual_seed(0), how=Augment(padding=0))
    for i in range(32):  # each image is itself or its mirror, never moved
        assert torch.equal(no_crop[i], batch[i]) or torch.equal(no_crop[i], batch[i].flip(2))
    assert any(torch.equal(no_crop[i], batch[i].flip(2)) for i in range(32))
    no_flip = Augment(padding=2, flip="none")
    cropped = augment_batch(batch, torch.Generator().manual_seed(0), how=no_flip)
    draws = torch.randint(0, 5, (2, 32), generator=torch.Generator().manual_seed(0))
    assert torch.equal(cropped, crop(batch, 2, draws[0], draws[1]))


def test_augment_reflects_when_asked():
    batch = images(n=8, size=5)
    how = Augment(padding=3, pad_mode="reflect", flip="none")
    out = augment_batch(batch, torch.Generator().manual_seed(2), how=how)
    draws = torch.randint(0, 7, (2, 8), generator=torch.Generator().manual_seed(2))
    assert torch.equal(out, crop(batch, 3, draws[0], draws[1], "reflect"))
    assert not torch.equal(out, crop(batch, 3, draws[0], draws[1]))


def test_default_augment_draws_as_before():
    """The default settings keep the draws of runs made before they existed: crop offsets
    first, then the flip coins, from the one generator."""
    batch = images(n=16, size=8)
    out = augment_batch(batch, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 3, (2, 16), generator=generator)  # padding 8 // 8 = 1
    flip = torch.rand(16, generator=generator) < 0.5
    expected = crop(batch, 1, offsets[0], offsets[1])
    expected = torch.where(flip.view(-1, 1, 1, 1), expected.flip(3), expected)
    assert torch.equal(out, expected)


# ---- alternating flip ----------------------------------------------------------------------


def test_alternating_flips_turn_every_image_the_other_way_each_epoch():
    coins = torch.tensor([True, False, False, True, True])
    index = torch.tensor([4, 0, 1])
    assert alternating_flips(coins, index, 0).tolist() == [True, True, False]
    assert alternating_flips(coins, index, 1).tolist() == [False, False, True]
    assert alternating_flips(coins, index, 6).tolist() == [True, True, False]


def flip_seen(split: Split, epoch: int, folder: bool = False, **kwargs) -> dict[int, bool]:
    """{image: mirrored?} over one epoch of a loader with --flip alternate and no crop: a
    TensorLoader, or (`folder`) a FolderLoader reading the images one by one."""
    settings = dict(
        batch_size=4, mean=(0.0,) * 3, std=(1 / 255,) * 3, seed=5,
        augment=Augment(padding=0, flip="alternate"), **{"shuffle": True, **kwargs},
    )  # fmt: skip
    if folder:
        dataset = list(zip(split.images, split.labels, strict=True))
        loader = FolderLoader(dataset, num_workers=0, **settings)
    else:
        loader = TensorLoader(split.images, split.labels, **settings)
    loader.set_epoch(epoch)
    seen = {}
    for x, y in collect(loader):
        for image, label in zip(x, y, strict=True):
            original = split.images[label].float()
            assert torch.equal(image, original) or torch.equal(image, original.flip(2))
            seen[int(label)] = not torch.equal(image, original)
    return seen


def test_alternate_flip_shows_each_image_both_ways_in_two_epochs_under_any_sharding():
    split = Split(images(n=18, size=5, seed=1), torch.arange(18))  # label i: image i
    first, second = flip_seen(split, 0), flip_seen(split, 1)
    assert sorted(first) == list(range(18))
    assert all(first[i] != second[i] for i in range(18))
    assert 3 <= sum(first.values()) <= 15  # a coin per image, not one for all
    assert flip_seen(split, 2) == first  # and again
    halves = [flip_seen(split, 1, rank=rank, world_size=2) for rank in (0, 1)]
    assert {**halves[0], **halves[1]} == second  # an image is flipped whichever process has it
    # the coins: one draw per image from (seed, 2), whatever the order or the loader
    coins = torch.rand(18, generator=seeded_generator(5, 2)) < 0.5
    assert first == {i: bool(coins[i]) for i in range(18)}
    assert flip_seen(split, 0, shuffle=False) == first
    assert flip_seen(split, 0, folder=True) == first
    assert flip_seen(split, 1, folder=True, shuffle=False) == second


def test_reflect_padding_as_wide_as_the_image_is_refused_before_a_file_is_written(tmp_path):
    from cnnlab.training.session import check_reflections

    cfg = TrainConfig(augment=True, pad_mode="reflect", crop_padding=28)
    with pytest.raises(ConfigError, match=r"crop_padding must be below the images' side \(28\)"):
        check_reflections(cfg, (1, 28, 28))
    check_reflections(TrainConfig(augment=True, pad_mode="reflect", crop_padding=27), (1, 28, 28))
    check_reflections(TrainConfig(augment=True, crop_padding=40), (1, 28, 28))  # zeros: any


# ---- test-time views -----------------------------------------------------------------------


class Recorder(nn.Module):
    """A 'model' that returns a number per view of what it was shown, and keeps the views."""

    def __init__(self) -> None:
        super().__init__()
        self.views: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.views.append(x.clone())
        return torch.stack([x.flatten(1) @ torch.linspace(-1, 1, x[0].numel())] * 2, 1)


def test_tta_translate_scores_airbenchs_six_views_with_their_weights():
    x = torch.randn(3, 2, 6, 6)
    model = Recorder()
    logits = scored_logits(model, x, tta=True, translate=1)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    down_right = torch.from_numpy(padded[:, :, :6, :6])  # pixel (i, j) now shows (i-1, j-1)
    up_left = torch.from_numpy(padded[:, :, 2:, 2:])
    assert torch.equal(down_right[:, :, 1:, 1:], x[:, :, :5, :5])
    expected_views = [x, x.flip(3), down_right, down_right.flip(3), up_left, up_left.flip(3)]
    assert len(model.views) == 6
    for seen, expected in zip(model.views, expected_views, strict=True):
        assert torch.equal(seen, expected)
    score = [Recorder()(view) for view in expected_views]
    weighted = (score[0] + score[1]) / 4 + (score[2] + score[3] + score[4] + score[5]) / 8
    torch.testing.assert_close(logits, weighted)


def test_tta_views_without_translate_and_without_tta():
    x = torch.randn(2, 1, 5, 5)
    model = Recorder()
    torch.testing.assert_close(scored_logits(model, x, tta=False, translate=2), model(x))
    model = Recorder()
    both = scored_logits(model, x, tta=True)
    assert len(model.views) == 2
    torch.testing.assert_close(both, (Recorder()(x) + Recorder()(x.flip(3))) / 2)


def test_tta_translate_needs_tta():
    with pytest.raises(ConfigError, match="tta_translate needs tta"):
        TrainConfig(tta_translate=1).validate()
    TrainConfig(tta=True, tta_translate=1).validate()


# ---- a run with them -----------------------------------------------------------------------


@pytest.mark.parametrize("translate", [2, 0], ids=["six views", "mirror only"])
def test_a_run_with_reflect_crops_alternate_flips_and_six_views_is_scored_the_same_later(
    npz_data, tmp_path, translate
):
    """The settings reach the run (config.json), its test accuracy is the views' score, and
    `cnnlab eval` and the report's predictions score the checkpoint the same way."""
    import json

    import cnnlab
    from cnnlab.report.predictions import load_predictions

    result = cnnlab.train(
        model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64, lr=3e-3, augment=True,
        crop_padding=3, pad_mode="reflect", flip="alternate", tta=True, tta_translate=translate,
        val_fraction=0, out_dir=str(tmp_path), name="views", progress="none",
        tensorboard=False, report=False,
    )  # fmt: skip
    saved = json.loads((result.run_dir / "config.json").read_text())
    settings = ("crop_padding", "pad_mode", "flip", "tta_translate")
    assert [saved["config"][key] for key in settings] == [3, "reflect", "alternate", translate]
    recorded = result.metrics[-1]["test_accuracy"]
    evaluated, _ = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt")
    assert evaluated.accuracy == recorded
    plain, _ = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt", tta=False)
    predictions = load_predictions(result.run_dir)  # best.pt: the one epoch
    assert float((predictions.labels == predictions.predicted).mean()) == pytest.approx(recorded)
    # the same six views' probabilities: their cross-entropy is the evaluation's loss
    assert -np.log(predictions.p_true).mean() == pytest.approx(evaluated.loss, rel=1e-5)
    assert plain.accuracy != recorded or plain.loss != evaluated.loss  # other logits


# ---- whitening and identity init -----------------------------------------------------------


def correlated_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Float images (n, 2, 6, 6) whose pixels correlate (a smooth field plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.randn(n, 2, 3, 3, generator=generator).repeat_interleave(2, 2)
    smooth = smooth.repeat_interleave(2, 3)
    return smooth + 0.3 * torch.randn(n, 2, 6, 6, generator=generator) + 0.5


def test_image_patches_are_every_window():
    x = correlated_images(n=3)
    patches = image_patches(x, (2, 3))
    assert patches.shape == (3 * 5 * 4, 2, 2, 3)
    expected = [x[b, :, i : i + 2, j : j + 3] for b in range(3) for i in range(5) for j in range(4)]
    assert sorted(map(lambda t: t.flatten().tolist(), expected)) == sorted(
        p.flatten().tolist() for p in patches
    )


def test_whitening_filters_make_the_patch_responses_uncorrelated_with_unit_variance():
    patches = image_patches(correlated_images(), (2, 2))  # D = 2·2·2 = 8
    filters = patch_whitening(patches, eps=1e-9)
    assert filters.shape == (16, 2, 2, 2)
    assert torch.equal(filters[8:], -filters[:8])
    flat = patches.reshape(len(patches), -1).double()
    responses = flat @ filters[:8].reshape(8, -1).double().T  # (N, 8)
    second_moment = responses.T @ responses / len(patches)
    torch.testing.assert_close(second_moment, torch.eye(8, dtype=torch.float64), atol=1e-3, rtol=0)
    # largest direction first: before scaling, the first filter's responses vary the most
    raw = flat @ (filters[:8].reshape(8, -1).double().T / filters[:8].reshape(8, -1).norm(dim=1))
    variances = (raw**2).mean(0)
    assert torch.all(variances[:-1] >= variances[1:] - 1e-9)
    # eps shrinks each direction's variance to λ / (λ + eps)
    eigenvalues = torch.linalg.eigvalsh(flat.T @ flat / len(flat)).flip(0)
    shrunk = patch_whitening(patches, eps=0.5)[:8].reshape(8, -1).double()
    torch.testing.assert_close(
        ((flat @ shrunk.T) ** 2).mean(0), eigenvalues / (eigenvalues + 0.5), atol=1e-4, rtol=0
    )


def test_whiten_first_conv_fills_as_many_filters_as_it_has():
    images = correlated_images()
    narrow = nn.Sequential(nn.Conv2d(2, 3, 2), nn.ReLU(), nn.Conv2d(3, 4, 3))
    kept = narrow[2].weight.clone()
    conv = whiten_first_conv(narrow, images, eps=1e-3)
    assert conv is narrow[0]
    expected = patch_whitening(image_patches(images, (2, 2)), 1e-3)
    torch.testing.assert_close(conv.weight.detach(), expected[:3])
    assert torch.equal(narrow[2].weight, kept)
    wide = nn.Conv2d(2, 20, 2)
    start = wide.weight.detach().clone()
    whiten_first_conv(wide, images, eps=1e-3)
    torch.testing.assert_close(wide.weight.detach()[:16], expected)
    assert torch.equal(wide.weight[16:], start[16:])
    with pytest.raises(ModelError, match=r"^Sequential has no Conv2d to whiten; remove"):
        whiten_first_conv(nn.Sequential(nn.Flatten(), nn.Linear(72, 2)), images, eps=1e-3)


def test_dirac_init_makes_same_padded_convs_pass_their_input_through():
    model = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1, bias=False),  # keeps its width: the identity
        nn.Conv2d(3, 5, 3, padding="same", bias=False),  # widens: first 3 channels pass
        nn.Conv2d(5, 5, 3, bias=False),  # not padded: left alone
        nn.Conv2d(5, 5, 3, stride=2, padding=1, bias=False),  # strided: left alone
    )
    untouched = [model[i].weight.detach().clone() for i in (1, 2, 3)]
    assert dirac_init(model) == 2
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(model[0](x), x)
    out = model[1](x)
    assert torch.equal(out[:, :3], x)
    assert torch.equal(model[1].weight[3:], untouched[0][3:])  # the other two keep their init
    assert torch.equal(model[2].weight, untouched[1]) and torch.equal(model[3].weight, untouched[2])


def test_a_whitened_run_keeps_its_filters_fixed_through_training_and_resume(npz_data, tmp_path):
    import cnnlab
    from cnnlab.data import load_dataset
    from cnnlab.data.holdout import with_validation

    settings = dict(
        model="lenet_relu", dataset=npz_data, batch_size=64, lr=3e-3, whiten_init=True,
        whiten_images=100, whiten_eps=1e-2, dirac_init=True, out_dir=str(tmp_path),
        name="white", progress="none", tensorboard=False, report=False,
    )  # fmt: skip
    first = cnnlab.train(epochs=1, **settings)
    data = with_validation(load_dataset(npz_data), 0.1, 0)
    images = torch.cat([x for x, _ in collect(make_loader(data, "train", batch_size=30))])[:100]
    expected = patch_whitening(image_patches(images, (5, 5)), 1e-2)[:6]
    conv = first_conv(first.model)
    torch.testing.assert_close(conv.weight.detach(), expected)
    assert not conv.weight.requires_grad and conv.bias.requires_grad
    resumed = cnnlab.train(resume=first.run_dir, epochs=2)
    assert torch.equal(first_conv(resumed.model).weight.detach(), conv.weight.detach())
    assert len(resumed.metrics) == 2


# ---- the nets ------------------------------------------------------------------------------


def test_airbench_net_is_airbench94s():
    from cnnlab.models.shapes import InputTooSmallError

    model = cnnlab_model("airbench")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 24, (2, 2)), (24, 64, (3, 3)), (64, 64, (3, 3)), (64, 256, (3, 3)),
        (256, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (3, 3)),
    ]  # fmt: skip
    assert [c.bias is not None for c in convs] == [True] + [False] * 6
    group = [type(layer).__name__ for layer in model.groups[0]]
    assert group == ["Conv2d", "MaxPool2d", "BatchNorm2d", "GELU", "Conv2d", "BatchNorm2d", "GELU"]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6
    assert all(n.eps == 1e-12 and n.momentum == 0.4 and not n.weight.requires_grad for n in norms)
    # 312 whitening + 1,967,616 in the 3x3 convs + 2,304 batch norm + 2,560 head
    assert sum(p.numel() for p in model.parameters()) == 1_972_792
    x = torch.randn(2, 3, 32, 32)
    features = model.groups(model.activate(model.whiten(x)))  # train mode: batch statistics
    assert features.shape == (2, 256, 3, 3)
    torch.testing.assert_close(model(x), model.head(features.amax((2, 3))) / 9, rtol=1e-5, atol=0)
    assert cnnlab_model("airbench", image_size=(9, 9))(torch.randn(2, 3, 9, 9)).shape == (2, 10)
    with pytest.raises(InputTooSmallError, match=r"^airbench cannot take 8×8 images"):
        cnnlab_model("airbench", image_size=(8, 8))


def test_mnist_fast_is_tuomasos_net():
    from cnnlab.models.shapes import InputTooSmallError

    model = cnnlab_model("mnist_fast")
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (24, 1, 5, 5), "conv1.bias": (24,), "conv2.weight": (32, 24, 3, 3),
        "conv2.bias": (32,), "fc1.weight": (256, 800), "fc1.bias": (256,),
        "fc2.weight": (10, 256), "fc2.bias": (10,),
    }  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == 215_194
    x = torch.randn(3, 1, 28, 28)
    pool = nn.functional.max_pool2d
    hidden = pool(torch.relu(model.conv1(x)), 2)  # tuomaso's order: ReLU, then the pool
    hidden = pool(torch.relu(model.conv2(hidden)), 2).reshape(3, 800)
    expected = model.fc2(torch.relu(model.fc1(hidden)))
    expected.square().sum().backward()
    tuomasos = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got = model(x)  # ReLU after the pool: the same numbers and gradients, not just close ones
    got.square().sum().backward()
    assert torch.equal(got, expected)
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, tuomasos.pop(0)), name
    with pytest.raises(InputTooSmallError, match=r"^mnist_fast cannot take 11×11 images"):
        cnnlab_model("mnist_fast", image_size=(11, 11))


def cnnlab_model(name: str, **arguments) -> nn.Module:
    from cnnlab.models import create_model

    torch.manual_seed(0)
    return create_model(name, **arguments)


# ---- schedules, rates and gradients --------------------------------------------------------


def test_linear_schedule_is_airbenchs_straight_lines():
    from cnnlab.training.optim import make_scheduler

    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    cfg = TrainConfig(scheduler="linear", epochs=4, lr=2.0, optimizer="sgd")
    schedule = make_scheduler(cfg, optimizer, batches_per_epoch=25)  # 100 steps
    rates = []
    for _ in range(101):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = np.interp(np.arange(101), [0, 23, 100], [0.2 * 2, 2.0, 0.07 * 2])
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-12)


def test_linear_schedule_counts_steps_not_batches_when_accumulating():
    from cnnlab.training.optim import make_scheduler

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = TrainConfig(scheduler="linear", epochs=1, accumulate_batches=4, warmup_fraction=0.5)
    schedule = make_scheduler(cfg, optimizer, batches_per_epoch=10)  # 3 steps: 4 + 4 + 2
    assert schedule.lr_lambdas[0](1.5) == pytest.approx(1.0)


def test_onecycle_without_momentum_cycling_keeps_the_momentum():
    from cnnlab.training.optim import make_optimizer, make_scheduler

    model = nn.Linear(2, 2)
    for cycle, expected in ((True, 0.95), (False, 0.9)):
        cfg = TrainConfig(optimizer="sgd", momentum=0.9, scheduler="onecycle", epochs=1,
                          cycle_momentum=cycle)  # fmt: skip
        optimizer = make_optimizer(cfg.validate(), model)
        make_scheduler(cfg, optimizer, batches_per_epoch=10)
        assert optimizer.param_groups[0]["momentum"] == expected


def test_lr_batch_size_scales_the_rate_linearly_with_the_steps_batch():
    from cnnlab.training.optim import make_optimizer

    model = nn.Linear(2, 2)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=512, lr_batch_size=128).validate()
    assert make_optimizer(cfg, model).param_groups[0]["lr"] == pytest.approx(0.4)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=64, lr_batch_size=256,
                      accumulate_batches=2).validate()  # fmt: skip
    assert make_optimizer(cfg, model).param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="lr_batch_size scales a given rate"):
        TrainConfig(lr_batch_size=128, lr_find=True).validate()


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


def batch_list(sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(n, 1, 6, 6, generator=generator),
            torch.randint(0, 3, (n,), generator=generator),
        )
        for n in sizes
    ]


def gradients_after(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("sliced", [False, True], ids=["plain", "cpu slices"])
def test_accumulated_batches_give_the_gradient_of_their_concatenation(sliced):
    from cnnlab.training.cpu_split import SplitStep
    from cnnlab.training.loop import EpochSums, train_one_epoch

    batches = batch_list([4, 4, 4, 4, 4, 3])  # steps of 3 batches: 12 images, then 7
    model = tiny_net()
    optimizer = Recording(model.parameters(), lr=0.0)  # lr 0: every step sees the same weights
    split = SplitStep(model, nn.CrossEntropyLoss(), 2) if sliced else None
    steps = []
    train_one_epoch(
        model, batches, optimizer, nn.CrossEntropyLoss(), EpochSums.zeros(torch.device("cpu"), 0),
        split=split, on_step=steps.append, accumulate=3,
    )  # fmt: skip
    assert steps == [3, 3]
    for seen, group in zip(optimizer.seen, (batches[:3], batches[3:]), strict=True):
        reference = tiny_net()
        images = torch.cat([x for x, _ in group])
        labels = torch.cat([y for _, y in group])
        nn.functional.cross_entropy(reference(images), labels).backward()
        for got, expected in zip(seen, gradients_after(reference), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    if split is not None:
        split.close()


def test_an_epoch_of_fewer_batches_than_accumulate_steps_once():
    from cnnlab.training.loop import with_step_ends

    marks = [ends for _, _, ends in with_step_ends(batch_list([2, 2]), 5)]
    assert marks == [False, True]
    assert [ends for _, _, ends in with_step_ends(batch_list([2] * 4), 2)] == [False, True] * 2


def test_max_grad_norm_clips_as_torch_does():
    from cnnlab.training.loop import EpochSums, train_one_epoch

    batches = batch_list([8])
    model = tiny_net()
    optimizer = Recording(model.parameters(), lr=0.0)
    sums = EpochSums.zeros(torch.device("cpu"), 0)
    train_one_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), sums, max_grad_norm=0.05)
    reference = tiny_net()
    nn.functional.cross_entropy(reference(batches[0][0]), batches[0][1]).backward()
    before = torch.cat([g.flatten() for g in gradients_after(reference)]).norm()
    assert before > 0.05  # so the clip does something here
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
    for got, expected in zip(optimizer.seen[0], gradients_after(reference), strict=True):
        torch.testing.assert_close(got, expected)
    assert torch.cat([g.flatten() for g in optimizer.seen[0]]).norm() == pytest.approx(
        0.05, rel=1e-5
    )


def test_batch_norm_settings_reach_every_layer_and_leave_the_scale_out_of_training():
    from cnnlab.training.optim import make_optimizer
    from cnnlab.training.session import set_batch_norms

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3),
                          nn.BatchNorm2d(4, affine=False))  # fmt: skip
    set_batch_norms(model, 0.4, scale_fixed=True)
    assert [model[1].momentum, model[3].momentum] == [0.4, 0.4]
    assert not model[1].weight.requires_grad and model[1].bias.requires_grad
    optimizer = make_optimizer(TrainConfig().validate(), model)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model[1].weight) not in held and id(model[1].bias) in held
    set_batch_norms(model, None, scale_fixed=False)
    assert model[1].momentum == 0.4  # None: left as it is


# ---- lookahead -----------------------------------------------------------------------------


def test_lookahead_follows_airbenchs_formula_step_by_step():
    from cnnlab.training.lookahead import Lookahead

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    lookahead = Lookahead(model, decay=0.9, every=2, total_steps=7)
    names = [n for n, v in model.state_dict().items() if v.is_floating_point()]
    assert "1.running_mean" in names and "1.num_batches_tracked" not in names
    average = {n: model.state_dict()[n].clone().double() for n in names}
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 8):
        with torch.no_grad():  # an 'optimizer step': the weights move
            for name in names:
                model.state_dict()[name].add_(torch.randn(model.state_dict()[name].shape,
                                                          generator=generator))  # fmt: skip
        moved = {n: model.state_dict()[n].clone().double() for n in names}
        lookahead.after_step(step)
        if step == 7:  # the last step: the weights become the average
            expected = average
        elif step % 2 == 0:
            rho = 0.9**2 * (step / 7) ** 3
            average = {n: rho * average[n] + (1 - rho) * moved[n] for n in names}
            expected = average
        else:
            expected = moved
        for name in names:
            torch.testing.assert_close(model.state_dict()[name].double(), expected[name])


def test_lookahead_decay_is_checked():
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"lookahead_decay must be in \[0, 1\)"):
            TrainConfig(lookahead_decay=bad).validate()


def test_a_lookahead_run_interrupted_mid_epoch_resumes_bit_for_bit(npz_data, tmp_path, monkeypatch):
    """The average is in the checkpoint: a run stopped by Ctrl-C in its second epoch and
    resumed ends on the weights of one that ran straight through; its epochs cannot change
    (the warm-up counts the run's steps)."""
    import os
    import signal

    import cnnlab
    from cnnlab.training import trainer
    from cnnlab.training.checkpoint import load_checkpoint
    from cnnlab.training.signals import TrainingInterrupted

    settings = dict(
        model="mnist_cnn", dataset=npz_data, batch_size=32, lr=3e-3, scheduler="linear",
        lookahead_decay=0.9, lookahead_every=3, accumulate_batches=2, epochs=2,
        deterministic=True, progress="none", tensorboard=False, report=False, out_dir=str(tmp_path),
    )  # fmt: skip
    straight = cnnlab.train(name="straight", **settings)
    steps = straight.metrics[-1]["step"]  # 11 batches of 32 (345 images), 6 steps an epoch
    assert steps == 12
    # the schedule steps with the optimizer: after epoch 1, 6 of its 12 steps are done
    after_six = np.interp(6, [0, 0.23 * 12, 12], [0.2, 1, 0.07]) * 3e-3
    assert straight.metrics[0]["lr"] == pytest.approx(after_six)
    original = trainer.StepHook.__call__

    def ctrl_c_at_step_8(hook, batches=1):
        if hook.session.state.step == 7:  # the handler stops the run after step 8
            os.kill(os.getpid(), signal.SIGINT)
        original(hook, batches)

    monkeypatch.setattr(trainer.StepHook, "__call__", ctrl_c_at_step_8)
    with pytest.raises(TrainingInterrupted):
        cnnlab.train(name="cut", **settings)
    monkeypatch.setattr(trainer.StepHook, "__call__", original)
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (saved["step"], saved["batch_in_epoch"]) == (8, 4)
    assert "lookahead_state" in saved
    with pytest.raises(ConfigError, match="epochs 3 conflicts with the run's 2"):
        cnnlab.train(resume=tmp_path / "cut", epochs=3)
    resumed = cnnlab.train(resume=tmp_path / "cut")
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.metrics[-1]["test_accuracy"] == straight.metrics[-1]["test_accuracy"]


def test_batch_norm_biases_learn_faster_and_decay_as_fast():
    from cnnlab.training.optim import make_optimizer

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    cfg = TrainConfig(optimizer="sgd", lr=0.2, weight_decay=5e-4, bn_bias_lr_scale=64)
    main, biases = make_optimizer(cfg.validate(), model).param_groups
    assert [id(p) for p in biases["params"]] == [id(model[1].bias)]
    assert len(main["params"]) == 5  # conv weight and bias, bn weight, linear weight and bias
    assert (main["lr"], main["weight_decay"]) == (0.2, 5e-4)
    assert biases["lr"] == pytest.approx(12.8)
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(0.2 * 5e-4)
    with pytest.raises(ConfigError, match="bn_bias_lr_scale takes a parameter group"):
        TrainConfig(bn_bias_lr_scale=64, freeze_backbone=True).validate()


def test_accumulation_weighs_batches_by_their_class_weights_and_steps_in_pairs():
    """With class weights a batch weighs the sum of its labels' weights, as
    CrossEntropyLoss(weight=w) divides by it; steps of 2 batches, the last one alone."""
    from cnnlab.training.loop import EpochSums, train_one_epoch

    weights = torch.tensor([0.5, 2.0, 1.0])
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    batches = batch_list([5, 3, 4, 2, 6])
    model = tiny_net()
    optimizer = Recording(model.parameters(), lr=0.0)
    steps = []
    train_one_epoch(
        model, batches, optimizer, loss_fn, EpochSums.zeros(torch.device("cpu"), 0),
        on_step=steps.append, accumulate=2,
    )  # fmt: skip
    assert steps == [2, 2, 1]
    groups = (batches[:2], batches[2:4], batches[4:])
    for seen, group in zip(optimizer.seen, groups, strict=True):
        reference = tiny_net()
        images, labels = torch.cat([x for x, _ in group]), torch.cat([y for _, y in group])
        loss_fn(reference(images), labels).backward()
        for got, expected in zip(seen, gradients_after(reference), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


class SometimesUsed(nn.Module):
    """A model whose second layer only sees batches of more than 3 images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.extra = nn.Linear(36, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first(x.flatten(1))
        return self.extra(out) if len(x) > 3 else out


def test_a_parameter_one_batch_of_the_step_leaves_out_keeps_the_others_gradient():
    from cnnlab.training.loop import EpochSums, train_one_epoch

    batches = batch_list([4, 2])  # the second batch leaves out `extra`
    model = SometimesUsed()
    optimizer = Recording(model.parameters(), lr=0.0)
    sums = EpochSums.zeros(torch.device("cpu"), 0)
    train_one_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), sums, accumulate=2)
    reference = SometimesUsed()
    for x, y in batches:  # each batch's share: its images of the six
        (nn.functional.cross_entropy(reference(x), y) * len(y) / 6).backward()
    for got, expected in zip(optimizer.seen[0], gradients_after(reference), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


class RecordingLBFGS(torch.optim.LBFGS):
    """LBFGS that keeps the gradient its closure leaves, at each step."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.seen: list[torch.Tensor] = []

    def step(self, closure):
        def recorded():
            loss = closure()
            grads = [p.grad.flatten() for group in self.param_groups for p in group["params"]]
            self.seen.append(torch.cat(grads).clone())
            return loss

        return super().step(recorded)


def test_lbfgs_steps_once_a_batch_with_its_gradient_clipped():
    from cnnlab.training.loop import EpochSums, train_one_epoch

    model = tiny_net()
    optimizer = RecordingLBFGS(model.parameters(), lr=0.1, max_iter=2)
    steps = []
    train_one_epoch(
        model, batch_list([8, 8]), optimizer, nn.CrossEntropyLoss(),
        EpochSums.zeros(torch.device("cpu"), 0), on_step=steps.append, max_grad_norm=0.01,
    )  # fmt: skip
    assert steps == [1, 1]
    assert optimizer.seen and all(g.norm() <= 0.01 * (1 + 1e-5) for g in optimizer.seen)


def test_an_empty_loader_gives_no_steps_when_accumulating():
    from cnnlab.training.loop import with_step_ends

    assert list(with_step_ends([], 2)) == []


# ---- the settings reach what they configure ------------------------------------------------


def test_a_runs_settings_reach_its_loader_layers_optimizer_and_lookahead(npz_data, tmp_path):
    from cnnlab.training.session import build_session

    cfg = TrainConfig(
        model="airbench", model_args={"widths": [8, 8, 8]}, dataset=npz_data, batch_size=64,
        epochs=3, optimizer="sgd", lr=0.1, augment=True, crop_padding=3, pad_mode="reflect",
        flip="alternate", bn_momentum=0.3, bn_scale_fixed=True, bn_bias_lr_scale=8,
        dirac_init=True, lookahead_decay=0.9, lookahead_every=4, accumulate_batches=2,
        scheduler="linear", out_dir=str(tmp_path), progress="none",
    )  # fmt: skip
    parts = build_session(cfg, folder=False).parts
    assert parts.train_loader.augment == Augment(3, "reflect", "alternate")
    norms = [m for m in parts.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(n.momentum == 0.3 and not n.weight.requires_grad for n in norms)
    main, biases = parts.optimizer.param_groups
    assert {id(p) for p in biases["params"]} == {id(n.bias) for n in norms}
    assert biases["lr"] == pytest.approx(8 * main["lr"])
    keeps_width = parts.model.groups[0][4].weight  # a 3x3 same-padded conv, 8 to 8 channels
    assert torch.equal(keeps_width[:, :, 1, 1], torch.eye(8))
    assert len(parts.train_loader) == 6  # 346 images of 384 (10% held out), batches of 64
    assert (parts.lookahead.every, parts.lookahead.total_steps) == (4, 3 * 3)  # 3 steps an epoch
    assert parts.scheduler.lr_lambdas[0](0) == pytest.approx(0.2)


def test_max_grad_norm_bounds_how_far_a_run_moves_the_weights(npz_data, tmp_path):
    """Plain SGD moves the weights by lr × the gradient each step: clipped to norm c, a run
    of n steps moves them by n · lr · c at most (unclipped, these gradients are far larger)."""
    import math

    import cnnlab
    from cnnlab.training.session import build_session

    settings = dict(
        model="mnist_cnn", dataset=npz_data, batch_size=64, epochs=1, optimizer="sgd", lr=0.5,
        max_grad_norm=1e-3, val_fraction=0, out_dir=str(tmp_path), progress="none",
        tensorboard=False, report=False,
    )  # fmt: skip
    start = build_session(TrainConfig(**settings), folder=False).parts.model.state_dict()
    start = {name: value.clone() for name, value in start.items()}
    result = cnnlab.train(name="clipped", **settings)
    moved = math.sqrt(sum(
        float((value - start[name]).pow(2).sum())
        for name, value in result.model.state_dict().items()
    ))  # fmt: skip
    steps = result.metrics[-1]["step"]
    assert steps == 6
    assert 0 < moved <= steps * 0.5 * 1e-3 * (1 + 1e-4)

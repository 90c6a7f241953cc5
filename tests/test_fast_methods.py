"""airbench's methods as cnnlab settings (issue 31): each checked against what it computes,
written out the plain way (numpy, a loop, torch's own functions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.data import Split, TensorLoader
from cnnlab.data.augment import Augment, alternating_flips, augment_batch, crop, reflected
from cnnlab.errors import ConfigError
from cnnlab.training.loop import scored_logits
from helpers import collect


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


def flip_seen(split: Split, epoch: int, **kwargs) -> dict[int, bool]:
    """{image: mirrored?} over one epoch of a loader with --flip alternate and no crop."""
    loader = TensorLoader(
        split.images, split.labels, batch_size=4, mean=(0.0,) * 3, std=(1 / 255,) * 3,
        shuffle=True, seed=5, augment=Augment(padding=0, flip="alternate"), **kwargs,
    )  # fmt: skip
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


def test_a_run_with_reflect_crops_alternate_flips_and_six_views_is_scored_the_same_later(
    npz_data, tmp_path
):
    """The settings reach the run (config.json), its test accuracy is the six views' score,
    and `cnnlab eval` and the report's predictions score the checkpoint the same way."""
    import json

    import cnnlab
    from cnnlab.report.predictions import load_predictions

    result = cnnlab.train(
        model="mnist_cnn", dataset=npz_data, epochs=1, batch_size=64, lr=3e-3, augment=True,
        crop_padding=3, pad_mode="reflect", flip="alternate", tta=True, tta_translate=2,
        val_fraction=0, out_dir=str(tmp_path), name="views", progress="none",
        tensorboard=False, report=False,
    )  # fmt: skip
    saved = json.loads((result.run_dir / "config.json").read_text())
    settings = ("crop_padding", "pad_mode", "flip", "tta_translate")
    assert [saved["config"][key] for key in settings] == [3, "reflect", "alternate", 2]
    recorded = result.metrics[-1]["test_accuracy"]
    evaluated, _ = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt")
    assert evaluated.accuracy == recorded
    plain, _ = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt", tta=False)
    predictions = load_predictions(result.run_dir)  # best.pt: the one epoch
    assert float((predictions.labels == predictions.predicted).mean()) == pytest.approx(recorded)
    assert plain.accuracy != recorded or plain.loss != evaluated.loss  # other logits

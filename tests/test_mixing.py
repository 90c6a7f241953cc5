"""--mixup and --cutmix (training/mixing.py): what each does to a batch, what the loss and the
gradient are taken on, and that a mixing run learns and resumes bit for bit."""

from __future__ import annotations

import itertools
import os
import signal

import pytest
import torch
from torch import nn

from cnnlab.training.mixing import batch_mixer
from helpers import Recording

CLASSES = 5


def batch(n: int = 4, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels whose neighbours differ (so each label share can be read apart)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator), torch.arange(n) % CLASSES


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(labels, CLASSES).float()


def test_mixup_blends_each_image_with_the_one_before_and_its_labels_alike():
    images, labels = batch()
    mixed, shares = batch_mixer(0.4, 0.0, CLASSES, seed=3)(images, labels)
    lam = float(shares[0, labels[0]])  # image 0's own share
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.roll(1, 0))
    torch.testing.assert_close(shares, lam * one_hot(labels) + (1 - lam) * one_hot(labels.roll(1)))


def test_cutmix_pastes_one_box_of_the_image_before_and_shares_labels_by_area():
    images, labels = batch(size=16)
    before = images.roll(1, 0)
    seen_boxes = set()
    for seed in range(20):
        mixed, shares = batch_mixer(0.0, 1.0, CLASSES, seed=seed)(images, labels)
        pasted = (mixed != images).any(dim=(0, 1))  # (H, W): where the box is
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        area = len(rows) * len(cols)
        if area:  # one solid box, filled from the image before
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            assert pasted[box].all() and int(pasted.sum()) == area
            assert torch.equal(mixed[..., box[0], box[1]], before[..., box[0], box[1]])
            seen_boxes.add((int(rows[0]), int(cols[0]), area))
        torch.testing.assert_close(mixed[..., ~pasted], images[..., ~pasted])
        own = 1 - area / 16**2
        expected = own * one_hot(labels) + (1 - own) * one_hot(labels.roll(1))
        torch.testing.assert_close(shares, expected)
    assert len(seen_boxes) > 10  # the box moves and changes size from batch to batch


def test_with_both_each_batch_takes_one_or_the_other():
    images, labels = batch(size=16)
    mix = batch_mixer(0.4, 1.0, CLASSES)
    kinds = []
    for _ in range(30):  # the batch count moves on: each call draws anew
        mixed, _ = mix(images, labels)
        changed = (mixed != images).any(dim=(0, 1))
        kinds.append("mixup" if changed.all() else "cutmix")
        if kinds[-1] == "cutmix":  # outside the box every pixel is the image's own
            torch.testing.assert_close(mixed[..., ~changed], images[..., ~changed])
    assert 5 < kinds.count("mixup") < 25


def test_each_batchs_draws_follow_the_seed_epoch_batch_and_rank_alone():
    """A resumed run's mixer, set to the epoch and batch it stopped at, draws what the
    uninterrupted one drew there, whatever torch's global generator holds, and leaves it
    alone (dropout's masks come from it)."""
    images, labels = batch(size=16)
    straight = batch_mixer(0.4, 1.0, CLASSES, seed=7)
    straight.set_epoch(2)
    drawn = [straight(images, labels)[0] for _ in range(5)]
    resumed = batch_mixer(0.4, 1.0, CLASSES, seed=7)
    resumed.set_epoch(2, start_batch=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(resumed(images, labels)[0], drawn[3])
    assert torch.equal(resumed(images, labels)[0], drawn[4])
    assert torch.equal(torch.get_rng_state(), state)
    for i, j in itertools.combinations(range(5), 2):  # a new draw each batch
        assert not torch.equal(drawn[i], drawn[j]), (i, j)
    for other in ({"seed": 8}, {"seed": 7, "rank": 1}):
        mixer = batch_mixer(0.4, 1.0, CLASSES, **other)
        mixer.set_epoch(2, start_batch=3)
        assert not torch.equal(mixer(images, labels)[0], drawn[3])
    earlier = batch_mixer(0.4, 1.0, CLASSES, seed=7)
    earlier.set_epoch(1, start_batch=3)
    assert not torch.equal(earlier(images, labels)[0], drawn[3])


def test_off_is_none_and_the_layout_is_kept():
    assert batch_mixer(0.0, 0.0, CLASSES) is None
    images, labels = batch()
    for mix in (batch_mixer(0.4, 0.0, CLASSES), batch_mixer(0.0, 1.0, CLASSES)):
        mixed, _ = mix(images.to(memory_format=torch.channels_last), labels)
        assert mixed.is_contiguous(memory_format=torch.channels_last)
        assert not mixed.is_contiguous()
        mixed, _ = mix(images, labels)
        assert mixed.is_contiguous()
    empty = (images[:0], labels[:0])  # a torchrun process's empty part of a last batch
    assert batch_mixer(0.4, 1.0, CLASSES)(*empty) == empty


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, CLASSES))


@pytest.mark.parametrize("sliced", [False, True], ids=["plain", "cpu slices"])
def test_a_step_takes_the_gradient_of_the_mixed_batches_and_counts_accuracy_on_own_labels(sliced):
    """Two mixed batches a step, class weights and label smoothing: the gradient is the
    weighted cross-entropy of the mixed images against their label shares, over both."""
    from cnnlab.training.cpu_split import SplitStep
    from cnnlab.training.loop import EpochSums, train_one_epoch

    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2, 1, 1, 3]), label_smoothing=0.1)
    batches = [batch(n, seed=n) for n in (4, 6)]
    mix = batch_mixer(0.4, 1.0, CLASSES)
    given = []

    def recorded(images, labels):
        given.append(mix(images, labels))
        return given[-1]

    model = tiny_net()
    optimizer = Recording(model.parameters(), lr=0.0)  # lr 0: the step sees the first weights
    split = SplitStep(model, loss_fn, 2) if sliced else None
    sums = EpochSums.zeros(torch.device("cpu"), 0)
    torch.manual_seed(1)
    train_one_epoch(
        model, batches, optimizer, loss_fn, sums, split=split, accumulate=2, mix=recorded
    )
    reference = tiny_net()
    images = torch.cat([x for x, _ in given])
    shares = torch.cat([s for _, s in given])
    logits = reference(images)
    loss_fn(logits, shares).backward()
    expected = [p.grad for p in reference.parameters()]
    for got, want in zip(optimizer.seen[0], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    own = torch.cat([y for _, y in batches])
    assert int(sums.correct) == int((logits.argmax(1) == own).sum())
    if split is not None:
        split.close()


def test_a_mixing_run_learns_and_resumes_bit_for_bit(npz_data, tmp_path, monkeypatch):
    """Mixup and CutMix draw by the run's seed, epoch and batch: a run stopped by Ctrl-C
    mid-epoch and resumed ends on the weights of one that ran straight through."""
    import cnnlab
    from cnnlab.training import trainer
    from cnnlab.training.signals import TrainingInterrupted

    settings = dict(
        model="mnist_cnn", dataset=npz_data, batch_size=32, optimizer="adam", lr=3e-3, epochs=2,
        mixup=0.4, cutmix=1.0, deterministic=True, progress="none", tensorboard=False,
        report=False, out_dir=str(tmp_path),
    )  # fmt: skip
    straight = cnnlab.train(name="straight", **settings)
    assert straight.metrics[-1]["test_accuracy"] > 0.6  # 4 classes: chance is 0.25
    plain = cnnlab.train(name="plain", **{**settings, "mixup": 0.0, "cutmix": 0.0})
    assert plain.metrics[-1]["train_loss"] < straight.metrics[-1]["train_loss"]  # mixed: harder
    original = trainer.StepHook.__call__

    def ctrl_c_at_step_16(hook, batches=1):
        if hook.session.state.step == 15:
            os.kill(os.getpid(), signal.SIGINT)
        original(hook, batches)

    monkeypatch.setattr(trainer.StepHook, "__call__", ctrl_c_at_step_16)
    with pytest.raises(TrainingInterrupted):
        cnnlab.train(name="cut", **settings)
    monkeypatch.setattr(trainer.StepHook, "__call__", original)
    resumed = cnnlab.train(resume=tmp_path / "cut")
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.metrics[-1]["train_loss"] == straight.metrics[-1]["train_loss"]


@pytest.mark.parametrize(
    ("settings", "kinds"),
    [({"mixup": 0.3}, [("MixUp", 0.3)]), ({"cutmix": 0.7}, [("CutMix", 0.7)]),
     ({"mixup": 0.3, "cutmix": 0.7}, [("MixUp", 0.3), ("CutMix", 0.7)]), ({}, None)],
)  # fmt: skip
def test_the_settings_reach_the_runs_mixer(npz_data, tmp_path, settings, kinds):
    from cnnlab.config import TrainConfig
    from cnnlab.training.session import build_session

    cfg = TrainConfig(
        model="mnist_cnn", dataset=npz_data, seed=5, out_dir=str(tmp_path), progress="none",
        **settings,
    )  # fmt: skip
    mix = build_session(cfg, folder=False).parts.mix
    if kinds is None:
        assert mix is None
        return
    chosen = getattr(mix.transform, "transforms", [mix.transform])
    assert [(type(t).__name__, t.alpha) for t in chosen] == kinds
    assert {t.num_classes for t in chosen} == {4} and (mix.seed, mix.rank) == (5, 0)

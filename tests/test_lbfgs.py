"""LBFGS: it learns, its step through train_one_epoch is torch's own, and --cpu-slices keeps it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.training import fit
from cnnlab.training.cpu_split import SplitStep
from cnnlab.training.loop import EpochSums, train_one_epoch
from cnnlab.training.optim import make_optimizer, make_scheduler, needs_closure
from helpers import write_learnable_npz

LR, MAX_ITER = 0.5, 8


class CountingLoss(nn.CrossEntropyLoss):
    """Cross-entropy that counts its calls (one per closure evaluation, or per slice)."""

    calls = 0

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(logits, labels)


def batch_and_model() -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    torch.manual_seed(0)
    model = create_model("mnist_cnn", num_classes=4, in_channels=1)
    return torch.randn(32, 1, 28, 28), torch.randint(0, 4, (32,)), model


def lbfgs_config(line_search: bool = False, **overrides) -> TrainConfig:
    return TrainConfig(
        optimizer="lbfgs",
        lr=LR,
        lbfgs_max_iter=MAX_ITER,
        lbfgs_line_search=line_search,
        **overrides,
    )


def step_through_loop(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, line_search=False, slices=0
) -> tuple[EpochSums, CountingLoss]:
    """One LBFGS step of train_one_epoch on one batch (sliced when `slices` is given)."""
    optimizer = make_optimizer(lbfgs_config(line_search), model)
    assert needs_closure(optimizer)
    loss_fn = CountingLoss()
    sums = EpochSums.zeros(torch.device("cpu"), 0)
    split = SplitStep(model, loss_fn, slices) if slices else None
    try:
        train_one_epoch(model, [(images, labels)], optimizer, loss_fn, sums, split=split)
    finally:
        if split is not None:
            split.close()
    return sums, loss_fn


def test_lbfgs_training_lowers_the_loss_and_learns(tmp_path):
    data = "npz:" + str(write_learnable_npz(tmp_path / "data"))
    result = fit(
        TrainConfig(
            model="mnist_cnn",
            dataset=data,
            epochs=2,
            batch_size=128,
            optimizer="lbfgs",
            lr=1.0,
            out_dir=str(tmp_path / "runs"),
            name="lbfgs",
            progress="none",
            tensorboard=False,
        )
    )
    first, last = result.metrics
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert last["test_accuracy"] > 0.8  # 4 classes: chance is 0.25


@pytest.mark.parametrize("line_search", [False, True])
def test_one_lbfgs_step_in_the_loop_is_torchs_lbfgs_step(line_search):
    images, labels, model = batch_and_model()
    reference, before = copy.deepcopy(model), copy.deepcopy(model)

    sums, loss_fn = step_through_loop(model, images, labels, line_search=line_search)

    optimizer = torch.optim.LBFGS(
        reference.parameters(),
        lr=LR,
        max_iter=MAX_ITER,
        line_search_fn="strong_wolfe" if line_search else None,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(reference(images), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert loss_fn.calls > 1  # LBFGS really re-evaluated the batch within the step
    for (name, p), q, p0 in zip(
        model.named_parameters(), reference.parameters(), before.parameters(), strict=True
    ):
        assert not torch.equal(p, p0), f"{name} did not move"
        torch.testing.assert_close(p, q, msg=name)
    # the epoch's sums hold the first evaluation: the batch's loss and accuracy before the step
    with torch.no_grad():
        logits = before(images)
        loss_before = nn.functional.cross_entropy(logits, labels)
    assert sums.seen == 32
    torch.testing.assert_close(sums.loss_sum / sums.seen, loss_before)
    assert int(sums.correct) == int((logits.argmax(1) == labels).sum())


def test_lbfgs_step_on_two_cpu_slices_equals_the_plain_step():
    images, labels, plain = batch_and_model()
    sliced = copy.deepcopy(plain)
    plain_sums, _ = step_through_loop(plain, images, labels)
    sliced_sums, loss_fn = step_through_loop(sliced, images, labels, slices=2)
    assert loss_fn.calls > 2  # two slices per evaluation, several evaluations
    for (name, p), q in zip(plain.named_parameters(), sliced.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(sliced_sums.loss_sum, plain_sums.loss_sum)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"weight_decay": 1e-4}, "lbfgs has no weight_decay"), ({"eps": 1e-8}, "lbfgs has no eps")],
)
def test_lbfgs_refuses_options_it_does_not_have(overrides, message):
    _, _, model = batch_and_model()
    with pytest.raises(ConfigError, match=message):
        make_optimizer(lbfgs_config(**overrides), model)


def test_other_optimizers_take_no_closure_and_onecycle_accepts_lbfgs():
    _, _, model = batch_and_model()
    assert not needs_closure(make_optimizer(TrainConfig(optimizer="sgd"), model))
    optimizer = make_optimizer(lbfgs_config(scheduler="onecycle"), model)
    assert make_scheduler(lbfgs_config(scheduler="onecycle"), optimizer, batches_per_epoch=3)


def test_every_lbfgs_setting_reaches_torchs_optimizer():
    _, _, model = batch_and_model()
    cfg = TrainConfig(
        optimizer="lbfgs", lr=0.25, lbfgs_max_iter=3, lbfgs_history_size=7, lbfgs_line_search=True
    )
    defaults = make_optimizer(cfg, model).defaults
    assert (defaults["lr"], defaults["max_iter"], defaults["history_size"]) == (0.25, 3, 7)
    assert defaults["line_search_fn"] == "strong_wolfe"

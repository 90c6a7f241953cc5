"""Numbers a user trusts, each checked against plain torch written here: an epoch's train loss
and accuracy, the gradient of an unevenly sliced batch, a resumed dropout run, and the optimizer
settings that reach the optimizer."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.models import create_model
from cnnlab.training import trainer
from cnnlab.training.cpu_split import SplitStep
from cnnlab.training.optim import make_optimizer
from helpers import write_learnable_npz

TRAIN, BATCH = 71, 16  # 4 full batches and a last one of 7 (71 % 16 == 7)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny data set whose last training batch is smaller than the others."""
    root = tmp_path_factory.mktemp("uneven")
    return "npz:" + str(write_learnable_npz(root, train=TRAIN, test=16, size=16))


def config(data: str, out: Path, **overrides) -> TrainConfig:
    values = dict(
        model="mnist_cnn", dataset=data, epochs=1, batch_size=BATCH, optimizer="sgd", lr=0.05,
        out_dir=str(out), name="run", progress="none", tensorboard=False, report=False,
        val_fraction=0.0,  # every training image, as the plain torch replay takes them
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    calls: list[tuple[torch.Tensor, torch.Tensor]]  # (input, logits) of each model call

    def logits(self) -> torch.Tensor:
        """The batch's logits in batch order, whether the model saw it whole or in slices."""

        def offset(call):  # where this call's input starts in the batch
            n = call[0].shape[0]
            starts = range(self.images.shape[0] - n + 1)
            return next(i for i in starts if torch.equal(self.images[i : i + n], call[0]))

        return torch.cat([out for _, out in sorted(self.calls, key=offset)])


@dataclass
class Recording:
    start: nn.Module | None = None  # the model as it was before its first step
    epochs: list[list[Batch]] = field(default_factory=list)


def record_training(monkeypatch: pytest.MonkeyPatch) -> Recording:
    """Record every training batch and the model's outputs on it, around the real loop."""
    recording, real = Recording(), trainer.train_one_epoch

    def recording_epoch(model, loader, *args, **kwargs):
        if recording.start is None:
            recording.start = copy.deepcopy(model)
        batches: list[Batch] = []

        def hook(module, inputs, output):  # slices call it from their threads
            batches[-1].calls.append((inputs[0].detach().clone(), output.detach().clone()))

        def batches_of(loader):
            for images, labels in loader:
                batches.append(Batch(images.clone(), labels.clone(), []))
                yield images, labels

        handle = model.register_forward_hook(hook)
        try:
            real(model, batches_of(loader), *args, **kwargs)
        finally:
            handle.remove()
        recording.epochs.append(batches)

    monkeypatch.setattr(trainer, "train_one_epoch", recording_epoch)
    return recording


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the examples of -log softmax at the label, in float64."""
    log_p = logits.double().log_softmax(1)
    return -log_p.gather(1, labels[:, None]).mean()


# --- 1. an epoch's train loss and train accuracy ------------------------------------------------


@pytest.mark.parametrize("slices", [1, 2])
def test_epoch_train_loss_and_accuracy_are_the_means_over_every_example(
    data, tmp_path, monkeypatch, slices
):
    """metrics.jsonl's train_loss / train_accuracy are what the epoch's logits say, per
    example: a smaller last batch must not count as much as a full one."""
    recording = record_training(monkeypatch)
    result = cnnlab.train(config(data, tmp_path, epochs=2, momentum=0.9, cpu_slices=slices))
    rows = metrics_rows(result.run_dir)
    assert len(rows) == len(recording.epochs) == 2
    for row, batches in zip(rows, recording.epochs, strict=True):
        assert [b.labels.shape[0] for b in batches] == [BATCH] * 4 + [7]
        assert all(len(b.calls) == slices for b in batches)  # sliced when asked
        logits = torch.cat([b.logits() for b in batches])
        labels = torch.cat([b.labels for b in batches])
        loss = cross_entropy(logits, labels).item()
        correct = int((logits.argmax(1) == labels).sum())
        assert row["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert row["train_accuracy"] == correct / TRAIN
        # the check has teeth: averaging per batch would be off by far more than 1e-5
        per_batch = sum(cross_entropy(b.logits(), b.labels).item() for b in batches) / 5
        assert per_batch != pytest.approx(loss, rel=1e-4)


# --- 2. --cpu-slices on a batch that does not split evenly --------------------------------------


@pytest.mark.parametrize("class_weights", [None, [1.0, 2.0, 4.0, 8.0]], ids=["plain", "weighted"])
@pytest.mark.parametrize(("batch", "slices"), [(7, 2), (7, 3), (10, 4)])
def test_sliced_gradient_of_an_uneven_batch_is_the_full_batch_gradient(
    batch, slices, class_weights
):
    """Each slice counts by its share of the batch (4/7 and 3/7, not 1/2 each); with class
    weights, by its share of the batch's summed weights, the mean's denominator."""
    torch.manual_seed(0)
    model = create_model("mnist_cnn", num_classes=4, in_channels=1, image_size=[16, 16])
    reference = copy.deepcopy(model)
    images, labels = torch.randn(batch, 1, 16, 16), torch.randint(0, 4, (batch,))
    weight = None if class_weights is None else torch.tensor(class_weights)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    split = SplitStep(model, loss_fn, slices)
    try:
        logits, loss = split.forward_backward(images, labels)
    finally:
        split.close()
    full_logits = reference(images)
    full_loss = loss_fn(full_logits, labels)  # mean over the batch, one backward
    full_loss.backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        diff = (p.grad - q.grad).abs().max().item()
        assert diff < 1e-6, f"{name}.grad is off by {diff:.3g}"
    torch.testing.assert_close(logits, full_logits.detach(), rtol=0, atol=1e-6)
    assert loss.item() == pytest.approx(full_loss.item(), rel=1e-6)


def replay(start: nn.Module, epochs: list[list[Batch]], make) -> nn.Module:
    """Plain torch: `make(params)`'s optimizer driven by hand over the recorded batches."""
    model = copy.deepcopy(start).train()
    optimizer = make(model.parameters())
    for batch in (b for epoch in epochs for b in epoch):
        optimizer.zero_grad()
        F.cross_entropy(model(batch.images), batch.labels).backward()
        optimizer.step()
    return model


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max((x - y).abs().max().item() for x, y in pairs)


def test_sliced_run_with_an_uneven_last_batch_matches_a_plain_full_batch_replay(
    data, tmp_path, monkeypatch
):
    """A run on 2 slices (its last batch 4 + 3) learns what whole batches learn in plain torch."""
    recording = record_training(monkeypatch)
    result = cnnlab.train(config(data, tmp_path, cpu_slices=2))
    assert [len(b.calls) for b in recording.epochs[0]] == [2] * 5  # every batch was sliced
    expected = replay(recording.start, recording.epochs, lambda p: torch.optim.SGD(p, lr=0.05))
    assert (diff := max_difference(result.model, expected)) < 1e-6, diff


# --- 3. bit-exact resume of a run that uses randomness (dropout) --------------------------------


def test_resumed_dropout_run_is_bit_identical_to_an_uninterrupted_one(data, tmp_path):
    """Dropout draws from torch's RNG, so a resume must restore it to draw the same masks."""
    run = dict(model="net_dropout", momentum=0.9, deterministic=True)
    straight = cnnlab.train(config(data, tmp_path, name="straight", epochs=3, **run))
    dropouts = [m for m in straight.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert dropouts and all(m.p > 0 for m in dropouts)
    x = torch.randn(8, 1, 16, 16)
    assert not torch.equal(straight.model.train()(x), straight.model(x))  # masks are random
    cnnlab.train(config(data, tmp_path, name="resumed", epochs=1, **run))
    resumed = cnnlab.train(resume=tmp_path / "resumed", epochs=3)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []  # bit for bit
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in straight.metrics]


# --- 4. optimizer settings reach the optimizer --------------------------------------------------

# every optimizer setting TrainConfig has, for each optimizer, as (config, param_groups) values
SETTINGS = {
    "sgd": ({"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}, {}),
    "sgd-nesterov": ({"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, {}),
    "adam": ({"betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "weight_decay": 1e-3}, {}),
    "adamw": ({"betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "weight_decay": 0.05}, {}),
    "rmsprop": ({"momentum": 0.5, "eps": 1e-7, "weight_decay": 1e-3}, {}),
    "adagrad": ({"eps": 1e-9, "weight_decay": 1e-3}, {}),
    "adadelta": ({"eps": 1e-5, "weight_decay": 1e-3}, {}),
    "lbfgs": (
        {"lbfgs_max_iter": 7, "lbfgs_history_size": 9, "lbfgs_line_search": True},
        {"max_iter": 7, "history_size": 9, "line_search_fn": "strong_wolfe"},
    ),
}
TORCH_CLASSES = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta, "lbfgs": torch.optim.LBFGS,
}  # fmt: skip


def test_every_optimizer_setting_of_trainconfig_is_covered_here():
    """A new optimizer field in TrainConfig must join SETTINGS, or it goes unchecked."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    fields = set(names[names.index("optimizer") + 1 : names.index("loss")]) - {"lr"}
    assert fields == {key for settings, _ in SETTINGS.values() for key in settings}


@pytest.mark.parametrize("case", SETTINGS)
def test_make_optimizer_passes_every_setting_to_the_torch_optimizer(case):
    """param_groups hold exactly the values the config asked for."""
    settings, renamed = SETTINGS[case]
    name = case.split("-")[0]
    cfg = TrainConfig(optimizer=name, lr=0.03, **settings).validate()
    optimizer = make_optimizer(cfg, nn.Linear(3, 2))
    assert type(optimizer) is TORCH_CLASSES[name]
    group = optimizer.param_groups[0]
    expected = {"lr": 0.03, **{k: v for k, v in settings.items() if not k.startswith("lbfgs")}}
    assert {k: group[k] for k in expected} == expected
    assert {k: group[k] for k in renamed} == renamed


TRAINED = ["sgd", "sgd-nesterov", "adam", "adamw", "rmsprop"]


@pytest.mark.parametrize("case", TRAINED)
def test_trained_weights_equal_plain_torch_optimizer_with_the_same_settings(
    data, tmp_path, monkeypatch, case
):
    """cnnlab.train's weights are those of torch's optimizer, with the settings, driven by hand
    on the same start and batches; and not those of the optimizer's defaults."""
    settings, _ = SETTINGS[case]
    name, lr = case.split("-")[0], 0.01 if case.startswith("adam") else 0.05
    recording = record_training(monkeypatch)
    result = cnnlab.train(config(data, tmp_path, optimizer=name, lr=lr, cpu_slices=1, **settings))
    torch_class = TORCH_CLASSES[name]
    expected = replay(
        recording.start, recording.epochs, lambda p: torch_class(p, lr=lr, **settings)
    )
    defaults = replay(recording.start, recording.epochs, lambda p: torch_class(p, lr=lr))
    assert (diff := max_difference(result.model, expected)) < 1e-6, diff
    # and the settings matter: the optimizer's defaults end elsewhere
    assert (diff := max_difference(result.model, defaults)) > 1e-4, diff

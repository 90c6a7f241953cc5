"""Fine-tuning in the training engine: a frozen backbone, its unfreezing, the backbone's own
learning rate, starting weights (--pretrained / --weights-file), and resuming in any phase.

The models are seed models (LeNet: its head is its last layer, `model[-1]`, so the tests find it
without cnnlab.models.heads) trained for a few steps; weights are snapshotted by spies on the
session's make_optimizer (the weights a run starts from) and the trainer's end_epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import cnnlab
from cnnlab.config import TrainConfig
from cnnlab.training import session as session_module
from cnnlab.training import trainer as trainer_module
from cnnlab.training.optim import make_optimizer, make_scheduler
from cnnlab.training.resume_rules import check_resumable
from helpers import write_learnable_npz

LENET_HEAD = "11"  # lenet(_relu): a Sequential whose 12th layer, Linear(84, classes), is the head


def config(npz_data: str, out: Path, **overrides) -> TrainConfig:
    values = dict(
        model="lenet", dataset=npz_data, epochs=1, batch_size=64, optimizer="sgd", lr=0.5,
        out_dir=str(out), name="run", progress="none", tensorboard=False, val_fraction=0.0,
    )  # fmt: skip
    return TrainConfig(**{**values, **overrides})


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def is_head(name: str) -> bool:
    return name.split(".")[0] == LENET_HEAD


@pytest.fixture
def start_weights(monkeypatch) -> dict[str, torch.Tensor]:
    """Filled with the weights the run starts from: the optimizer is made from the new model."""
    seen: dict[str, torch.Tensor] = {}
    real = session_module.make_optimizer

    def spy(cfg, model, *args):
        seen.update(snapshot(model))
        return real(cfg, model, *args)

    monkeypatch.setattr(session_module, "make_optimizer", spy)
    return seen


@pytest.fixture
def epoch_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Filled with the weights at the end of each epoch's training."""
    seen: list[dict[str, torch.Tensor]] = []
    real = trainer_module.end_epoch

    def spy(session, *args):
        seen.append(snapshot(session.parts.model))
        return real(session, *args)

    monkeypatch.setattr(trainer_module, "end_epoch", spy)
    return seen


def assert_frozen_and_head_trained(before, after) -> None:
    assert LENET_HEAD + ".weight" in after
    for name, value in after.items():
        if is_head(name):
            assert not torch.equal(value, before[name]), name
        else:
            assert torch.equal(value, before[name]), name


@pytest.mark.parametrize(
    "overrides",
    [
        # two slices on threads, faster CPU ops, bit-exact mode; decoupled weight decay
        dict(cpu_slices=2, fast_cpu_ops=True, deterministic=True, optimizer="adamw", lr=1e-2,
             weight_decay=0.1),
        # the plain step; momentum and weight decay would move a frozen weight given a grad
        dict(cpu_slices=1, fast_cpu_ops=False, momentum=0.9, weight_decay=0.1),
    ],
    ids=["sliced-fast-deterministic-adamw", "plain-sgd-momentum"],
)  # fmt: skip
def test_a_frozen_backbone_stays_bit_for_bit_while_the_head_learns(
    npz_data, tmp_path, start_weights, capsys, overrides
):
    cfg = config(npz_data, tmp_path, freeze_backbone=True, progress="lines", **overrides)
    result = cnnlab.train(cfg)
    assert_frozen_and_head_trained(start_weights, snapshot(result.model))
    head_size = sum(p.numel() for p in result.model[-1].parameters())
    assert head_size == 84 * 4 + 4
    info = json.loads((result.run_dir / "config.json").read_text())
    assert info["trainable_parameters"] == head_size
    assert info["parameters"] == sum(p.numel() for p in result.model.parameters())
    assert info["config"]["freeze_backbone"] is True
    out = capsys.readouterr().out
    assert out.count("backbone frozen: training the head's 340 of 61,196 parameters") == 1
    assert "unfrozen" not in out
    assert all(p.requires_grad for p in result.model.parameters())  # handed back trainable


def test_the_backbone_trains_from_the_unfreeze_epoch_on(
    npz_data, tmp_path, start_weights, epoch_weights, capsys
):
    cfg = config(
        npz_data, tmp_path, epochs=2, freeze_backbone=True, unfreeze_epoch=1, progress="lines"
    )
    cnnlab.train(cfg)
    after_first, after_second = epoch_weights
    assert_frozen_and_head_trained(start_weights, after_first)
    for name, value in after_second.items():
        assert not torch.equal(value, after_first[name]), name
    out = capsys.readouterr().out.splitlines()
    assert "backbone frozen for 1 epoch: training the head" in out[1]
    assert out.index("epoch 2: backbone unfrozen, training all parameters") == 4  # after row 1


def test_one_sgd_step_moves_the_backbone_by_its_share_of_the_lr(npz_data, tmp_path, start_weights):
    from cnnlab.data import load_dataset, make_loader

    lr, scale = 0.5, 0.1
    # one batch of all 384 images: one step, whose gradient does not depend on the order
    # lenet_relu: sigmoid LeNet's first layers get gradients too small to tell scales apart
    cfg = config(
        npz_data, tmp_path, model="lenet_relu", batch_size=384, lr=lr, backbone_lr_scale=scale
    )
    trained = cnnlab.train(cfg).model
    data = load_dataset(npz_data)
    images, labels = next(iter(make_loader(data, "train", batch_size=len(data.train))))
    model = cnnlab.create_model("lenet_relu", num_classes=4)
    model.load_state_dict(start_weights)  # lenet has no buffers
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    moved = snapshot(trained)
    for name, param in model.named_parameters():
        step = (lr if is_head(name) else lr * scale) * param.grad.double()
        change = start_weights[name].double() - moved[name].double()
        assert step.abs().max() > 5e-5, name  # far above atol: a wrong scale would show
        torch.testing.assert_close(change, step, rtol=1e-3, atol=2e-7, msg=name)


def test_onecycle_step_and_cosine_schedule_each_group_from_its_own_lr():
    model = cnnlab.create_model("lenet", num_classes=4)
    cfg = TrainConfig(
        optimizer="sgd", lr=0.2, momentum=0.9, freeze_backbone=True, backbone_lr_scale=0.25,
        scheduler="onecycle", epochs=2,
    )  # fmt: skip
    optimizer = make_optimizer(cfg, model, 4)
    head, backbone = optimizer.param_groups
    assert [id(p) for p in head["params"]] == [id(p) for p in model[-1].parameters()]
    assert len(backbone["params"]) == len(list(model.parameters())) - 2
    scheduler = make_scheduler(cfg, optimizer, batches_per_epoch=10)
    history = []
    for _ in range(20):
        history.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert history[0] == pytest.approx([0.2 / 25, 0.05 / 25])  # one-cycle's div_factor 25
    assert [max(lrs) for lrs in zip(*history, strict=True)] == pytest.approx([0.2, 0.05])
    for kind, after_one in (("step", [0.1, 0.025]), ("cosine", [0.1, 0.025])):
        cfg.scheduler, cfg.step_size, cfg.gamma = kind, 1, 0.5
        optimizer = make_optimizer(cfg, model, 4)
        scheduler = make_scheduler(cfg, optimizer, batches_per_epoch=10)
        optimizer.step()
        scheduler.step()  # cosine over 2 epochs: halfway after one
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(after_one), kind


def test_without_fine_tuning_the_optimizer_keeps_its_one_group():
    model = cnnlab.create_model("lenet", num_classes=4)
    (group,) = make_optimizer(TrainConfig(optimizer="adam", lr=0.01), model).param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]


def test_resuming_before_the_unfreeze_epoch_matches_the_uninterrupted_run(npz_data, tmp_path):
    settings = dict(
        epochs=3, optimizer="adam", lr=3e-3, freeze_backbone=True, unfreeze_epoch=2,
        backbone_lr_scale=0.5, deterministic=True,
    )  # fmt: skip
    straight = cnnlab.train(config(npz_data, tmp_path, name="straight", **settings))
    cnnlab.train(config(npz_data, tmp_path, name="resumed", **{**settings, "epochs": 1}))
    saved = cnnlab.load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert len(saved["optimizer_state"]["param_groups"]) == 2
    resumed = cnnlab.train(resume=tmp_path / "resumed", epochs=3)
    for a, b in zip(straight.metrics, resumed.metrics, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["lr"] == b["lr"] == 3e-3
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_lbfgs_freezes_but_refuses_a_backbone_lr_scale(npz_data, tmp_path, start_weights):
    with pytest.raises(cnnlab.ConfigError, match="lbfgs takes one learning rate") as info:
        cnnlab.train(config(npz_data, tmp_path, optimizer="lbfgs", backbone_lr_scale=0.1))
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()
    result = cnnlab.train(
        config(
            npz_data, tmp_path, optimizer="lbfgs", batch_size=128, lbfgs_max_iter=3,
            freeze_backbone=True, cpu_slices=2,
        )
    )  # fmt: skip
    assert_frozen_and_head_trained(start_weights, snapshot(result.model))


@pytest.mark.parametrize(
    "overrides", [dict(pretrained=True), dict(weights_file="weights.pth")], ids=str
)
def test_starting_weights_on_a_seed_model_are_refused_before_anything_is_written(
    npz_data, tmp_path, overrides
):
    (tmp_path / "weights.pth").touch()
    overrides = {k: str(tmp_path / v) if k == "weights_file" else v for k, v in overrides.items()}
    with pytest.raises(cnnlab.ConfigError, match=r"are for tv_\* models") as info:
        cnnlab.train(config(npz_data, tmp_path / "runs", **overrides))
    assert "\n" not in str(info.value) and "lenet" in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_that_kept_pretrained_in_its_model_args_still_resumes(tmp_path):
    args = dict(num_classes=4, in_channels=1, image_size=[28, 28], init="default")
    data = SimpleNamespace(name="npz:x", class_names=list("abcd"), input_shape=(1, 28, 28))
    saved = {
        "model_name": "tv_resnet18",
        "model_args": {**args, "pretrained": True},
        "dataset": "npz:x",
        "class_names": list("abcd"),
        "input_shape": [1, 28, 28],
    }
    cfg = TrainConfig(model="tv_resnet18")
    check_resumable(saved, cfg, args, tmp_path, data)  # the weights are in the checkpoint now
    with pytest.raises(cnnlab.ConfigError, match="other data or model settings"):
        check_resumable(saved, cfg, {**args, "init": "xavier"}, tmp_path, data)


def test_a_weights_file_starts_a_tv_model_and_is_never_read_again(tmp_path):
    """Needs tv_* builders that take weights_file (models/torchvision_models.py)."""
    import torchvision

    data = write_learnable_npz(tmp_path / "data", train=32, test=16, size=32)
    # a small model with ResNet's kind of head, a Linear `fc`: 1.4 M tensors, ResNet-18's 11.7 M
    imagenet = torchvision.models.shufflenet_v2_x0_5().state_dict()
    weights = tmp_path / "shufflenet.pth"
    torch.save(imagenet, weights)
    cfg = config(
        f"npz:{data}", tmp_path / "runs", model="tv_shufflenet_v2_x0_5", weights_file=str(weights),
        freeze_backbone=True, batch_size=16, lr=0.01,
    )  # fmt: skip
    result = cnnlab.train(cfg)
    adapted = {"conv1.0.weight", "fc.weight", "fc.bias"}  # 1 input channel, 4 classes
    for name, param in result.model.named_parameters():
        if name not in adapted:  # from the file, and frozen since
            assert torch.equal(param, imagenet[name]), name
    assert result.model.fc.out_features == 4
    saved = cnnlab.load_checkpoint(result.run_dir / "last.pt")
    assert "weights_file" not in saved["model_args"] and "pretrained" not in saved["model_args"]
    assert saved["config"]["weights_file"] == str(weights)
    weights.unlink()  # a resume takes its weights from last.pt
    resumed = cnnlab.train(resume=result.run_dir, epochs=2)
    assert len(resumed.metrics) == 2


def test_closing_a_run_unfreezes_without_rewrapping_ddp():
    """At the end of a run (or after an error on one rank) the backbone learns again, and
    the DDP step is closed, not wrapped anew: a new DDP wrapper is a collective, which a rank
    closing alone would wait in for --dist-timeout."""
    from cnnlab.training.distributed import ShardStep
    from cnnlab.training.session import RunParts

    calls = []

    class Shards(ShardStep):
        def __init__(self):  # no process group here: only the calls are of interest
            pass

        def follow_requires_grad(self):
            calls.append("rewrap")

        def close(self):
            calls.append("close")

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    backbone = list(model[0].parameters())
    parts = RunParts(
        model=model, forward_model=model, train_loader=[], test_loader=[],
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
        loss_fn=torch.nn.CrossEntropyLoss(), num_classes=2, backbone=backbone, split=Shards(),
    )  # fmt: skip
    parts.set_backbone_frozen(True)
    assert calls == ["rewrap"] and not any(p.requires_grad for p in backbone)
    parts.close()
    assert calls == ["rewrap", "close"]
    assert all(p.requires_grad for p in model.parameters())

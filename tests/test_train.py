"""The training engine: learning happens, the run directory holds what it promises, resume."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.training import checkpoint as ckpt
from cnnlab.training import session as session_module
from cnnlab.training.device import cpu_name
from helpers import relocate_checkpoint, write_learnable_npz


def small_config(npz_data: str, out: Path, **overrides) -> cnnlab.TrainConfig:
    values = dict(
        model="mnist_cnn",
        dataset=npz_data,
        epochs=3,
        batch_size=32,
        optimizer="adam",
        lr=3e-3,
        out_dir=str(out),
        name="run",
        progress="none",
        log_every=4,
        val_fraction=0.0,  # every training image: the step counts below are images / batch
    )
    values.update(overrides)
    return cnnlab.TrainConfig(**values)


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> str:
    """`npz:PATH` of 128 training and 32 test images (4 classes): for the tests whose runs
    compare with each other or themselves, not with chance, a third of npz_data's work. With
    val_fraction 0 and batch 32, an epoch is 4 steps."""
    return "npz:" + str(write_learnable_npz(tmp_path_factory.mktemp("few"), train=128, test=32))


@pytest.fixture(scope="module")
def trained(npz_data, tmp_path_factory) -> cnnlab.TrainResult:
    # with the default validation split: 10 of each class's 96 training images held out
    out = tmp_path_factory.mktemp("runs")
    return cnnlab.train(small_config(npz_data, out, val_fraction=cnnlab.TrainConfig.val_fraction))


def test_training_lifts_accuracy_far_above_chance(trained):
    first, last = trained.metrics[0], trained.metrics[-1]
    assert last["test_accuracy"] > 0.8  # 4 classes: chance is 0.25
    assert last["train_loss"] < first["train_loss"]


def test_metrics_file_has_one_row_per_epoch_with_explicit_epoch_and_step(trained):
    rows = [
        json.loads(line) for line in (trained.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["step"] for r in rows] == [11, 22, 33]  # 344 samples / batch 32
    for key in (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "examples_per_second",
        "epoch_seconds",
        "lr",
    ):
        assert all(isinstance(r[key], float) for r in rows), key
    assert rows == trained.metrics


def test_metrics_rows_carry_the_seconds_since_the_process_started(trained):
    # time to accuracy: the first row's process_seconds counts the start-up and the first epoch
    rows = trained.metrics
    elapsed = [r["process_seconds"] for r in rows]
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == len(elapsed)
    assert elapsed[1] - elapsed[0] >= rows[1]["epoch_seconds"] * 0.99


def test_config_json_records_config_versions_and_device(trained):
    info = json.loads((trained.run_dir / "config.json").read_text())
    assert info["config"]["model"] == "mnist_cnn"
    assert set(info["versions"]) == {"python", "torch", "torchvision", "cnnlab"}
    assert info["device"] == f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"
    assert info["data"] == {
        "location": info["data"]["location"], "train": 344, "val": 40, "test": 128,
    }  # fmt: skip
    assert info["selection"] == "val"
    assert info["parameters"] == sum(p.numel() for p in trained.model.parameters())


def test_cpu_name_is_linux_model_name_else_the_architecture(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
    )
    assert cpu_name(cpuinfo) == "AMD EPYC 7B13"
    architecture = platform.processor() or platform.machine()
    cpuinfo.write_text("processor\t: 0\nmodel name\t:\n")  # an empty name says nothing
    assert cpu_name(cpuinfo) == architecture
    assert cpu_name(tmp_path / "absent") == architecture  # not Linux


def test_config_json_and_checkpoints_say_the_same_about_the_run(trained):
    """One RunInfo feeds both, so what they share cannot drift apart."""
    info = json.loads((trained.run_dir / "config.json").read_text())
    saved = ckpt.load_checkpoint(trained.run_dir / "last.pt")
    for key in ("model_name", "model_args", "class_names", "mean", "std", "input_shape"):
        assert info[key] == saved[key], key
    assert info["dataset"] == saved["dataset"] and info["dataset"].startswith("npz:")
    assert info["config"] == saved["config"]


def test_tensorboard_events_hold_the_seed_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained.run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    epoch_tags = {
        "epoch": "epoch",
        "train_loss": "train_loss_epoch",
        "train_accuracy": "train_accuracy",
        "val_loss": "val_loss",
        "val_accuracy": "val_accuracy",
        "test_loss": "test_loss",
        "test_accuracy": "test_accuracy",
        "lr": "lr",
        "examples_per_second": "examples_per_second",
    }
    assert {"train_loss", *epoch_tags.values()} <= tags
    # every epoch metric at the global step of the epoch's end, as metrics.jsonl says
    steps = [row["step"] for row in trained.metrics]
    assert steps == [11, 22, 33]  # 344 images / batch 32 = 11 steps an epoch
    for key, tag in epoch_tags.items():
        scalars = events.Scalars(tag)
        assert [e.step for e in scalars] == steps, tag
        expected = [row[key] for row in trained.metrics]
        assert [e.value for e in scalars] == pytest.approx(expected, rel=1e-6), tag
    assert [e.step for e in events.Scalars("train_loss")] == list(range(4, 34, 4))


def test_checkpoint_round_trip_gives_identical_predictions(trained, npz_data):
    state = cnnlab.load_checkpoint(trained.run_dir / "last.pt")
    model = cnnlab.rebuild_model(state).eval()
    trained.model.eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), trained.model(x))
    assert state["class_names"] == ["class0", "class1", "class2", "class3"]
    assert state["epoch"] == 3 and state["finished"]


def test_best_checkpoint_holds_the_best_test_accuracy(trained):
    best = cnnlab.load_checkpoint(trained.run_dir / "best.pt")
    assert best["best_accuracy"] == max(r["test_accuracy"] for r in trained.metrics)


def test_gpu_saved_checkpoint_loads_on_cpu(trained, tmp_path):
    gpu_file = tmp_path / "from-gpu.pt"
    relocate_checkpoint(trained.run_dir / "last.pt", gpu_file, "cuda:0")
    if not torch.cuda.is_available():  # the rewrite is real: plain torch.load refuses it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu_file, weights_only=True)
    state = cnnlab.load_checkpoint(gpu_file, map_location="cpu")
    assert state["model_state"]["conv1.weight"].device.type == "cpu"
    model = cnnlab.rebuild_model(state)
    x = torch.randn(2, 1, 28, 28)
    trained.model.eval()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), trained.model(x))


def test_resume_continues_at_the_right_epoch_and_matches_an_uninterrupted_run(few_images, tmp_path):
    straight = cnnlab.train(small_config(few_images, tmp_path, name="straight", deterministic=True))
    cnnlab.train(small_config(few_images, tmp_path, name="resumed", epochs=2, deterministic=True))
    first = ckpt.load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert first["epoch"] == 2 and first["optimizer_state"]["state"]  # Adam moments saved
    resumed = cnnlab.train(resume=tmp_path / "resumed", epochs=3)
    assert [r["epoch"] for r in resumed.metrics] == [1, 2, 3]
    for a, b in zip(straight.metrics, resumed.metrics, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["test_accuracy"] == b["test_accuracy"]
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_of_a_finished_run_is_refused(trained):
    with pytest.raises(cnnlab.ConfigError, match="already finished its 3 epochs"):
        cnnlab.train(resume=trained.run_dir)


def test_resume_with_a_conflicting_setting_is_refused(trained):
    with pytest.raises(
        cnnlab.ConfigError, match=r"resuming: lr 0\.5 conflicts with the run.s 0\.003;"
    ):
        cnnlab.train(resume=trained.run_dir, epochs=5, lr=0.5)


def test_existing_run_directory_is_not_overwritten(npz_data, trained):
    cfg = small_config(npz_data, trained.run_dir.parent, name=trained.run_dir.name)
    with pytest.raises(cnnlab.ConfigError, match="already exists"):
        cnnlab.train(cfg)


def test_onecycle_and_step_schedules_change_the_learning_rate(few_images, tmp_path):
    one = cnnlab.train(
        small_config(
            few_images,
            tmp_path,
            name="one",
            scheduler="onecycle",
            epochs=2,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
        )
    )
    step = cnnlab.train(
        small_config(
            few_images,
            tmp_path,
            name="step",
            scheduler="step",
            step_size=1,
            gamma=0.5,
            epochs=2,
            optimizer="sgd",
            lr=0.05,
        )
    )
    assert one.metrics[0]["lr"] != one.metrics[1]["lr"]
    assert step.metrics[1]["lr"] == pytest.approx(0.025)
    saved = ckpt.load_checkpoint(tmp_path / "one" / "last.pt")
    assert saved["scheduler_state"]["last_epoch"] == 8  # one-cycle steps every batch: 2 × 4


@pytest.mark.parametrize("optimizer", cnnlab.config.OPTIMIZERS)
def test_every_optimizer_makes_the_loss_fall(few_images, tmp_path, optimizer):
    # plain SGD at 1e-2 needs npz_data's 12 steps an epoch to fall by far more than 5%; at 0.05
    # its second epoch's loss is a quarter of the first's or less on these 4 steps
    lr = {"sgd": 0.05, "adadelta": 1.0, "lbfgs": 0.5}.get(optimizer, 1e-2)
    config = small_config(
        few_images, tmp_path, epochs=2, optimizer=optimizer, lr=lr, momentum=0.0, tensorboard=False
    )
    result = cnnlab.train(config)
    first, second = (row["train_loss"] for row in result.metrics)
    assert second < first * 0.95, (first, second)


def test_cpu_slices_give_the_same_accuracy_as_the_plain_step(npz_data, tmp_path):
    # 2 epochs: the test accuracy is 1.0 after the first, a third would change nothing
    plain = cnnlab.train(small_config(npz_data, tmp_path, name="plain", cpu_slices=1, epochs=2))
    sliced = cnnlab.train(small_config(npz_data, tmp_path, name="sliced", cpu_slices=2, epochs=2))
    # the same gradients up to float rounding: the runs stay within a couple of test images
    assert abs(plain.metrics[-1]["test_accuracy"] - sliced.metrics[-1]["test_accuracy"]) < 0.03
    assert abs(plain.metrics[0]["train_loss"] - sliced.metrics[0]["train_loss"]) < 1e-3


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    npz_data, tmp_path, monkeypatch
):
    with pytest.raises(cnnlab.CnnlabError, match=r"NaN or Inf at step \d+ .*learning rate"):
        cnnlab.train(
            small_config(
                npz_data, tmp_path, name="wild", optimizer="sgd", lr=1e30, checkpoint_every=2
            )
        )
    assert not (tmp_path / "wild" / "last.pt").exists()  # nothing diverged was saved

    cnnlab.train(small_config(npz_data, tmp_path, name="good", epochs=1, checkpoint_every=5))
    before = (tmp_path / "good" / "last.pt").read_bytes()

    class NanAfterThreeSteps(torch.nn.CrossEntropyLoss):
        calls = 0

        def forward(self, logits, labels):
            NanAfterThreeSteps.calls += 1
            loss = super().forward(logits, labels)
            return loss * float("nan") if NanAfterThreeSteps.calls > 3 else loss

    monkeypatch.setattr(session_module, "make_loss", lambda *a: NanAfterThreeSteps())
    with pytest.raises(cnnlab.CnnlabError, match="NaN or Inf at step 16 "):
        # one loss call per step (cpu_slices=1); the NaN at step 16 is caught at the log interval
        cnnlab.train(resume=tmp_path / "good", epochs=2, checkpoint_every=0, cpu_slices=1)
    assert (tmp_path / "good" / "last.pt").read_bytes() == before


def test_normalize_false_trains_on_0_1_pixels_and_says_so_in_the_checkpoint(npz_data, tmp_path):
    from cnnlab.data import load_dataset, make_loader

    data = load_dataset(npz_data, normalize=False)
    images, _ = next(iter(make_loader(data, "train", batch_size=64)))
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.5
    result = cnnlab.train(small_config(npz_data, tmp_path, epochs=1, normalize=False))
    saved = ckpt.load_checkpoint(result.run_dir / "last.pt")
    assert saved["mean"] == [0.0] and saved["std"] == [1.0]

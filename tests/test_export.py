"""`cnnlab export`: each format is written, checked against PyTorch, loadable with its card.

ONNX export costs ~3 s a model, so it runs twice: the tiny run (module fixture) and a
net_res_deep with shared weights through the CLI. The other seed models go to TorchScript and
safetensors, from checkpoints made here without training (their data set is nowhere, so they
are checked on random inputs, which the result must say).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.config import ExportConfig
from cnnlab.deploy import export
from cnnlab.deploy.export import export_model
from cnnlab.deploy.model_card import SUFFIXES, sidecar_path
from cnnlab.deploy.model_file import ONNX_CARD_KEY, TORCHSCRIPT_CARD_FILE, load_model_file
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from helpers import checksums, write_learnable_npz

FORMATS = ("onnx", "torchscript", "safetensors")


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory) -> dict[str, export.ExportResult]:
    """A copy of the tiny run exported to every format, each to its default place."""
    run = tmp_path_factory.mktemp("export") / "tiny"
    shutil.copytree(tiny_run, run)
    return {fmt: export_model(run, format=fmt) for fmt in FORMATS}


@pytest.fixture(scope="module")
def test_images(tiny_run: Path) -> torch.Tensor:
    """Every test image of the tiny run (128), normalised as it was trained."""
    from cnnlab.data import make_loader
    from cnnlab.training.evaluation import load_trained_data

    state = load_checkpoint(tiny_run / "best.pt")
    data = load_trained_data(state, tiny_run / "best.pt")
    return torch.cat([x for x, _ in make_loader(data, "test", batch_size=1000)])


def test_every_format_is_written_beside_the_checkpoint_and_checked(exported, tiny_run):
    run = exported["onnx"].checkpoint.parent
    for fmt, result in exported.items():
        assert result.checkpoint == run / "best.pt"
        assert result.path == run / ("best" + SUFFIXES[fmt])
        assert result.card_path == run / "best.json"
        assert result.size_bytes == result.path.stat().st_size > 1000
        assert result.real_images and result.checked_images == 64
        assert result.batch_sizes == (64, 1, 37)
        assert 0 <= result.max_abs_diff <= 1e-4
        lines = str(result).splitlines()
        assert len(lines) == 3 and str(result.path) in lines[0]
        assert f"64 test images of npz:{tiny_run.parent.parent / 'data'} in batches" in lines[2]
        assert "in batches of 64, 1, 37: max |Δlogit|" in lines[2]
    assert exported["safetensors"].max_abs_diff == 0  # the same weights in the same model
    assert not list(run.glob(".*"))  # no temporary file left


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_file_gives_the_checkpoints_scores(exported, test_images, fmt):
    checkpoint = load_model_file(exported[fmt].checkpoint)
    loaded = load_model_file(exported[fmt].path)
    assert loaded.kind == fmt and loaded.card == checkpoint.card
    expected, got = checkpoint.logits(test_images), loaded.logits(test_images)
    assert got.shape == (128, 4)
    assert (got - expected).abs().max() <= 1e-4
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_card_beside_the_files_says_what_the_model_is(exported):
    run = exported["onnx"].checkpoint.parent
    card = json.loads((run / "best.json").read_text())
    state = load_checkpoint(run / "best.pt")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(rows, key=lambda row: row["test_accuracy"])
    assert card["model_name"] == "mnist_cnn"
    assert card["class_names"] == state["class_names"] and len(card["class_names"]) == 4
    assert card["input_shape"] == [1, 28, 28]
    assert card["mean"] == list(state["mean"]) and card["std"] == list(state["std"])
    assert card["metrics"]["epoch"] == best["epoch"]
    assert card["metrics"]["test_accuracy"] == best["test_accuracy"]


def test_onnx_file_holds_its_card_and_takes_any_batch_size(exported, test_images):
    import onnx
    import onnxruntime

    path = exported["onnx"].path
    model = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata[ONNX_CARD_KEY]) == json.loads(exported["onnx"].card_path.read_text())
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # named, not fixed
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = load_model_file(exported["onnx"].checkpoint).logits(test_images[:37])
    for n in (1, 37):
        (logits,) = session.run(None, {"images": test_images[:n].numpy()})
        assert logits.shape == (n, 4)
        assert np.abs(logits - expected[:n].numpy()).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_file_holds_its_card(exported):
    extra = {TORCHSCRIPT_CARD_FILE: ""}
    torch.jit.load(str(exported["torchscript"].path), _extra_files=extra)
    card = json.loads(exported["torchscript"].card_path.read_text())
    assert json.loads(extra[TORCHSCRIPT_CARD_FILE]) == card


def test_rebuild_model_takes_exported_files(exported, test_images):
    run = exported["onnx"].checkpoint.parent
    expected = cnnlab.rebuild_model(run).eval()(test_images[:8])
    for file in (run / "best.safetensors", run / "best.json", run / "best.torchscript.pt"):
        model = cnnlab.rebuild_model(file)
        assert not model.training
        assert (model(test_images[:8]) - expected).abs().max() <= 1e-5, file
    with pytest.raises(CheckpointError, match="ONNX file: onnxruntime runs it"):
        cnnlab.rebuild_model(run / "best.onnx")


def test_safetensors_without_its_card_is_one_line_naming_it(exported, tmp_path):
    alone = tmp_path / "model.safetensors"
    shutil.copy(exported["safetensors"].path, alone)
    with pytest.raises(CheckpointError, match=r"model\.json is missing") as info:
        load_model_file(alone)
    assert "\n" not in str(info.value)


def test_a_json_is_a_model_only_as_the_card_beside_its_safetensors(exported, tmp_path):
    card = tmp_path / "model.json"
    shutil.copy(exported["safetensors"].card_path, card)
    with pytest.raises(
        CheckpointError,
        match=r"model\.json is a \.json file with no "
        r"model\.safetensors beside it, not a model; give a run folder",
    ) as info:
        load_model_file(card)
    assert "\n" not in str(info.value)
    shutil.copy(card, tmp_path / "net.json")
    (tmp_path / "net.onnx").touch()  # a card beside an ONNX file: the ONNX file is the model
    with pytest.raises(
        CheckpointError,
        match=r"net\.json is the model card of .*net\.onnx, "
        r"not a model; give .*net\.onnx itself",
    ):
        load_model_file(tmp_path / "net.json")
    shutil.copy(exported["safetensors"].path, tmp_path / "model.safetensors")
    assert load_model_file(card).kind == "safetensors"


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"format": "cnnlab-model", "version": 1', "not JSON"),
        ('{"format": "cnnlab-model", "version": 1, "model_name": "mnist_cnn"}', "damaged"),
        ('{"format": "something else"}', "no 'cnnlab-model' marker"),
    ],
)
def test_damaged_card_is_one_line(exported, tmp_path, text, message):
    weights = tmp_path / "model.safetensors"
    shutil.copy(exported["safetensors"].path, weights)
    (tmp_path / "model.json").write_text(text)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model_file(weights)
    assert "\n" not in str(info.value)


def test_out_is_checked_before_anything_is_written(tiny_run, tmp_path):
    cases = [
        (tmp_path / "no" / "such" / "m.onnx", "onnx", "folder that does not exist"),
        (tmp_path, "onnx", "is a folder; give a file name like"),
        (tmp_path / "m.onnx", "safetensors", "must end in .safetensors"),
        (tmp_path / "m.pt", "torchscript", "must end in .torchscript.pt"),
    ]
    for out, fmt, message in cases:
        with pytest.raises(ConfigError, match=message):
            export_model(tiny_run, format=fmt, out=out)
    (tmp_path / "notes.json").write_text("my own notes, not a model card")
    with pytest.raises(ConfigError, match=r"notes\.json exists and is not a cnnlab model card"):
        export_model(tiny_run, format="safetensors", out=tmp_path / "notes.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


def test_out_refusals_name_the_path_and_what_to_give(tmp_path):
    checkpoint = tmp_path / "lenet.pt"  # output_path reads nothing: it need not exist
    (tmp_path / "m.json").mkdir()
    (tmp_path / "n.json").write_text("my own notes")
    cases = [
        (tmp_path, f"--out {tmp_path} is a folder; give a file name like {tmp_path}/lenet.onnx"),
        (tmp_path / "no" / "m.onnx",
         f"--out {tmp_path}/no/m.onnx is in a folder that does not exist; create {tmp_path}/no "
         "first"),
        (tmp_path / "m.onnx",
         f"{tmp_path}/m.json (the model card to write) is a folder; give --out another name"),
        (tmp_path / "n.onnx",
         f"{tmp_path}/n.json exists and is not a cnnlab model card; move it or give --out another "
         "name (the card is written beside the file as <stem>.json)"),
    ]  # fmt: skip
    for out, expected in cases:
        with pytest.raises(ConfigError) as info:
            export.output_path(checkpoint, "onnx", str(out))
        assert str(info.value) == expected


def test_a_run_folder_without_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as info:
        export_model(tmp_path, format="safetensors")
    assert str(info.value) == (
        f"{tmp_path} has no best.pt or last.pt; give a run folder with a checkpoint or a .pt file"
    )


def test_export_model_names_itself_in_its_argument_errors():
    # what the Python call was given, in the words of a Python call (not of --flags)
    for args, expected in (
        ({"checkpoint": ""}, "give a checkpoint to export: a run folder or a .pt file"),
        ({"checkpoint": "x", "formt": "onnx"},
         "export_model: unknown key(s) formt; valid keys are listed by `cnnlab export --help`"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            export_model(**args)
        assert str(info.value) == expected


def test_a_failed_copy_into_place_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def disk_full(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "publish", disk_full)
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    with pytest.raises(ConfigError) as info:
        export_model(checkpoint, format="safetensors")
    assert str(info.value) == f"cannot write {tmp_path}/lenet.safetensors: No space left on device"


def test_existing_file_is_replaced_by_a_checked_one(tiny_run, tmp_path):
    out = tmp_path / "model.torchscript.pt"
    out.write_bytes(b"an older export")
    sidecar_path(out).write_text('{"format": "cnnlab-model", "version": 1}')  # a damaged card
    cfg = ExportConfig(checkpoint=str(tiny_run), format="torchscript", out=str(out))
    result = export_model(cfg)
    assert result.path == out and load_model_file(out).kind == "torchscript"
    assert json.loads(sidecar_path(out).read_text())["model_name"] == "mnist_cnn"
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.torchscript.pt"]


def test_failed_check_writes_nothing_and_keeps_the_old_file(tiny_run, tmp_path, monkeypatch):
    from safetensors.torch import save_model

    def perturbed(model, card, path):  # an exporter that gets the weights slightly wrong
        wrong = copy.deepcopy(model)
        with torch.no_grad():
            next(wrong.parameters()).add_(0.01)
        save_model(wrong, str(path))

    monkeypatch.setitem(export.WRITERS, "safetensors", perturbed)
    for out in (tmp_path / "new.safetensors", tmp_path / "old.safetensors"):
        if out.name.startswith("old"):
            export_model(tiny_run, format="torchscript", out=out.with_name("x.torchscript.pt"))
            out.write_bytes(b"the file from before")
        before = checksums(tmp_path)
        with pytest.raises(CheckpointError, match="differ from PyTorch's by up to") as info:
            export_model(tiny_run, format="safetensors", out=out)
        assert "nothing was written" in str(info.value) and "\n" not in str(info.value)
        assert checksums(tmp_path) == before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_onnx_packages_missing_is_one_line(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript fails
    with pytest.raises(ConfigError) as info:
        export_model(tiny_run, format="onnx", out=tmp_path / "m.onnx")
    assert str(info.value) == (
        "--format onnx needs onnx, onnxruntime and onnxscript (onnxscript is missing): "
        "pip install 'cnnlab[onnx]'"
    )
    assert not list(tmp_path.iterdir())


def fake_checkpoint(folder: Path, name: str, **args) -> Path:
    """An untrained `name` as a cnnlab checkpoint whose data set is nowhere; BatchNorm's
    running statistics are moved off 0 and 1 so that eval mode is not the identity."""
    model = cnnlab.create_model(name, num_classes=3, **args)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    channels, size = model.model_args["in_channels"], model.model_args["image_size"]
    state = {
        "format": "cnnlab-checkpoint", "version": 1, "model_name": name,
        "model_args": model.model_args, "class_names": ["a", "b", "c"],
        "mean": [0.5] * channels, "std": [0.25] * channels,
        "input_shape": [channels, *size], "dataset": f"npz:{folder / 'gone'}", "config": {},
        "model_state": model.state_dict(), "metrics": [],
    }  # fmt: skip
    path = folder / f"{name}.pt"
    save_checkpoint(state, path)
    return path


@pytest.mark.parametrize(
    "name, args",
    [
        ("lenet", {}),
        ("cifar10_cnn", {}),
        ("net_batchnorm", {}),
        ("net_res_deep", {"n_blocks": 3, "n_chans1": 8, "share_weights": True}),
    ],
)
def test_seed_models_export_to_torchscript_and_safetensors(tmp_path, name, args):
    checkpoint = fake_checkpoint(tmp_path, name, **args)
    images = torch.randn(5, *load_checkpoint(checkpoint)["input_shape"])
    expected = cnnlab.rebuild_model(checkpoint).eval()(images)
    for fmt in ("torchscript", "safetensors"):
        result = export_model(checkpoint, format=fmt)
        assert not result.real_images and "random inputs" in str(result)
        assert result.max_abs_diff <= 1e-4
        assert (load_model_file(result.path).logits(images) - expected).abs().max() <= 1e-5


def test_random_probe_is_the_same_inputs_whatever_torchs_global_seed(tmp_path):
    # a failed check on random inputs must fail again when the export is run again
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    state = load_checkpoint(checkpoint)
    probes = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        probes.append(export.load_probe(state, checkpoint, None))
    first, second = probes
    assert first.real is False and first.dataset == f"npz:{tmp_path / 'gone'}"
    assert first.images.shape == (64, 1, 28, 28)
    assert torch.equal(first.images, second.images)


def test_probe_finds_the_data_set_in_data_dir(tmp_path, fake_data_root):
    # `cnnlab export --data-dir`: a run trained on mnist elsewhere is checked on its test
    # images here (the fake mnist has 32), not on random inputs
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    state = {**load_checkpoint(checkpoint), "dataset": "mnist", "class_names": list("0123456789")}
    probe = export.load_probe(state, checkpoint, str(fake_data_root))
    assert probe.real is True and probe.dataset == "mnist"
    assert probe.images.shape == (32, 1, 28, 28)
    state["class_names"] = ["a", "b", "c"]  # found, but not what the model was trained on
    with pytest.raises(CheckpointError, match=f"^{checkpoint} is a lenet for 3 classes at"):
        export.load_probe(state, checkpoint, str(fake_data_root))


def test_export_is_checked_on_the_test_images_in_data_dir(tmp_path, fake_data_root):
    # `cnnlab export --data-dir`: a model trained on mnist on another machine
    model = cnnlab.create_model("lenet", num_classes=10)
    state = load_checkpoint(fake_checkpoint(tmp_path, "lenet"))
    state.update(dataset="mnist", class_names=list("0123456789"), model_args=model.model_args,
                 model_state=model.state_dict())  # fmt: skip
    save_checkpoint(state, tmp_path / "mnist.pt")
    start = time.perf_counter()
    result = export_model(tmp_path / "mnist.pt", format="safetensors", data_dir=fake_data_root)
    assert 0 < result.seconds <= time.perf_counter() - start
    assert result.real_images and result.checked_images == 32  # the fake mnist's test split
    assert "32 test images of mnist in batches of 32, 1, 31" in str(result)
    save_checkpoint({**state, "class_names": ["a", "b", "c"]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=f"^{tmp_path / 'other.pt'} is a lenet for 3 class"):
        export_model(tmp_path / "other.pt", format="safetensors", data_dir=fake_data_root)


def test_probe_of_a_data_set_without_test_images_is_random(tmp_path):
    # found, but with nothing to check on: the same random inputs as a data set not found
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    state = load_checkpoint(checkpoint)
    empty = write_learnable_npz(tmp_path / "empty", classes=3, train=12, test=0)
    probe = export.load_probe({**state, "dataset": f"npz:{empty}"}, checkpoint, None)
    assert probe.real is False and probe.dataset == f"npz:{empty}"
    assert torch.equal(probe.images, export.load_probe(state, checkpoint, None).images)


@pytest.fixture
def lenet_file(tmp_path) -> tuple[Path, torch.nn.Module, dict]:
    """(an exported .safetensors of an untrained LeNet, the model, its card)."""
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    result = export_model(checkpoint, format="safetensors")
    model = cnnlab.rebuild_model(checkpoint).eval()
    return result.path, model, json.loads(result.card_path.read_text())


def test_check_file_runs_each_batch_size_once(lenet_file, monkeypatch):
    path, model, card = lenet_file
    images = torch.randn(5, 1, 28, 28)
    for n, sizes in ((5, (5, 1, 4)), (2, (2, 1)), (1, (1,))):  # n, 1, then n - 1 up to 37
        assert export.check_file(path, model, card, export.Probe(images[:n], False, "d")) == (
            0.0, sizes
        )  # fmt: skip
    monkeypatch.setattr(export, "TOLERANCE", 0.0)  # at most TOLERANCE: an exact file passes
    assert export.check_file(path, model, card, export.Probe(images, False, "d"))[0] == 0.0


def test_check_file_says_what_it_checked_on_when_it_fails(lenet_file):
    path, model, card = lenet_file
    images = torch.randn(5, 1, 28, 28)
    wrong = copy.deepcopy(model)
    with torch.no_grad():
        next(wrong.parameters()).add_(0.5)
    for real, inputs in ((True, "on test images"), (False, "on random inputs")):
        with pytest.raises(CheckpointError) as info:
            export.check_file(path, wrong, card, export.Probe(images, real, "d"))
        assert f" {inputs} (tolerance 1e-04); nothing was written" in str(info.value)
    other = {**card, "class_names": ["x", "y", "z"]}
    with pytest.raises(CheckpointError) as info:
        export.check_file(path, model, other, export.Probe(images, False, "d"))
    assert str(info.value) == "the exported lenet.safetensors does not give back its model card"


def test_logits_of_another_shape_are_a_nan_difference():
    assert math.isnan(export._max_abs_diff(torch.zeros(2, 3), torch.zeros(2, 4)))
    assert export._max_abs_diff(torch.ones(2, 3), torch.zeros(2, 3)) == 1.0


def test_a_nan_difference_at_any_batch_size_is_the_worst():
    # max(0.0, nan) is 0.0: one batch size's NaN after a good one passed the check before
    assert math.isnan(export._worst([0.0, float("nan"), 1e-7]))
    assert export._worst([1e-7, 3e-6, 0.0]) == 3e-6


def test_check_file_fails_logits_of_another_shape(lenet_file):
    # a file whose logits cannot be compared is a NaN difference, which fails the check
    path, _, card = lenet_file
    four_classes = cnnlab.create_model("lenet", num_classes=4).eval()
    with pytest.raises(CheckpointError, match=r"differ from PyTorch's by up to nan on random"):
        export.check_file(
            path, four_classes, card, export.Probe(torch.randn(3, 1, 28, 28), False, "d")
        )


def test_a_writer_that_leaves_more_than_one_file_is_refused(tmp_path, monkeypatch):
    # ONNX over 2 GB puts its weights beside the file: copying only the file would lose them
    def with_data(model, card, path):
        export._write_safetensors(model, card, path)
        path.with_name("weights.data").write_bytes(b"external data")
        path.with_name("more.data").write_bytes(b"external data")

    monkeypatch.setitem(export.WRITERS, "safetensors", with_data)
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    with pytest.raises(CheckpointError) as info:
        export_model(checkpoint, format="safetensors")
    assert str(info.value) == (
        "the export wrote more.data, weights.data besides lenet.safetensors; a model this large "
        "cannot be one file: try --format safetensors"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]


def test_torchscript_file_holds_its_card_without_the_sidecar(tmp_path):
    # the module docstring's promise: an ONNX or TorchScript file is complete on its own
    result = export_model(fake_checkpoint(tmp_path, "lenet"), format="torchscript")
    card = json.loads(result.card_path.read_text())
    result.card_path.unlink()
    assert load_model_file(result.path).card == card


def test_a_model_that_cannot_be_traced_is_one_line(tmp_path, monkeypatch):
    # the first line of the tracer's error, cut at 150 characters, and what to try instead
    def untraceable(*args, **kwargs):
        raise RuntimeError("x" * 200 + "\nthe rest of a long message")

    monkeypatch.setattr(torch.jit, "trace", untraceable)
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    expected = f"lenet cannot be traced to TorchScript ({'x' * 149}…); try --format safetensors"
    with pytest.raises(CheckpointError) as info:
        export_model(checkpoint, format="torchscript")
    assert str(info.value) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]


def test_a_model_that_cannot_be_exported_to_onnx_is_one_line(tmp_path, monkeypatch):
    # as for TorchScript: the exporter's first line, cut at 150 characters, and what to try
    def unsupported(*args, **kwargs):
        raise RuntimeError("y" * 200 + "\nthe rest of a long message")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    checkpoint = fake_checkpoint(tmp_path, "lenet")
    with pytest.raises(CheckpointError) as info:
        export_model(checkpoint, format="onnx")
    assert str(info.value) == (
        f"lenet cannot be exported to ONNX ({'y' * 149}…); try --format torchscript or safetensors"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.pt"]


def test_cli_onnx_export_prints_only_its_own_lines(tmp_path, capfd):
    import onnx

    checkpoint = fake_checkpoint(
        tmp_path, "net_res_deep", n_blocks=2, n_chans1=8, share_weights=True
    )
    capfd.readouterr()
    code = main(["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "r.onnx")])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith(f"exported {checkpoint} to {tmp_path}/r.onnx")
    assert "64 random inputs" in lines[2]
    assert lines[3] == (
        f"note: not checked on test images: npz:{tmp_path / 'gone'} is not on this machine "
        "(--data-dir gives its folder)"
    )
    assert load_model_file(tmp_path / "r.onnx").card["model_args"]["share_weights"] is True
    # what a deployment sees without cnnlab: named input and output, a batch dimension by name
    graph = onnx.load(str(tmp_path / "r.onnx")).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["logits"]
    for value in (graph.input[0], graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"

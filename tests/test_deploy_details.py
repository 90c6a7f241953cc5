"""Reading model files (deploy/model_file.py, model_card.py): which kind each file is, where
its card comes from, the refusals (each one line naming the file at fault), and the own-model
sources a card records.

Most files are written here without `cnnlab export` (a LeNet's weights and a card, a traced
LeNet, an ONNX graph made with onnx.helper), so each test takes milliseconds; test_export.py
checks what the exporter writes. Several tests exist because docs/TESTING.md's mutation run
showed the path untested (a survivor of `mutmut run "cnnlab.deploy*"`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import cnnlab
from cnnlab.deploy.export import export_model
from cnnlab.deploy.model_card import INPUT, card_from_checkpoint, parse_card, sidecar_path
from cnnlab.deploy.model_file import load_model_file, model_file_kind
from cnnlab.errors import CheckpointError, ModelError, first_line
from cnnlab.files import installed_version

MY_NET = """
from torch import nn


class MyNet(nn.Module):
    def __init__(self, num_classes, in_channels=1, width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))
"""


def card_of(model: torch.nn.Module, class_names: list[str]) -> dict:
    """The model card cnnlab export would write for `model` (without metrics and versions),
    as it reads back from JSON (image_size a list)."""
    args = model.model_args
    card = {
        "format": "cnnlab-model", "version": 1, "model_name": model.model_name,
        "model_args": dict(args), "class_names": class_names,
        "input_shape": [args["in_channels"], *args["image_size"]], "mean": [0.5], "std": [0.25],
    }  # fmt: skip
    return json.loads(json.dumps(card))


@pytest.fixture(scope="module")
def lenet() -> tuple[dict[str, torch.Tensor], dict]:
    """(a 3-class LeNet's weights, its card)."""
    model = cnnlab.create_model("lenet", num_classes=3)
    return model.state_dict(), card_of(model, ["a", "b", "c"])


def write_pair(folder: Path, tensors: dict[str, torch.Tensor], card: dict) -> Path:
    """model.safetensors and its sidecar model.json in `folder`; the .safetensors path."""
    weights = folder / "model.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(weights))
    (folder / "model.json").write_text(json.dumps(card))
    return weights


def test_a_checkpoints_card_says_what_the_model_is():
    # tuples where a loaded checkpoint may hold them: the card holds JSON's lists
    state = {
        "model_name": "lenet", "class_names": ("a", "b", "c"), "input_shape": (1, 28, 28),
        "model_args": {"num_classes": 3, "in_channels": 1, "image_size": (28, 28),
                       "pretrained": True},  # how it was trained, not what to build
        "mean": (0.5,), "std": (0.25,), "dataset": "npz:/data",
        "metrics": [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 0.6},
                    {"epoch": 3, "train_loss": 0.3, "test_accuracy": 0.75, "lr": 0.1}],
    }  # fmt: skip
    versions = {"cnnlab": installed_version("cnnlab"), "torch": installed_version("torch")}
    assert card_from_checkpoint(state) == {
        "format": "cnnlab-model", "version": 1, "model_name": "lenet",
        "model_args": {"num_classes": 3, "in_channels": 1, "image_size": (28, 28)},
        "class_names": ["a", "b", "c"], "input_shape": [1, 28, 28], "mean": [0.5],
        "std": [0.25], "dataset": "npz:/data",
        "metrics": {"epoch": 3, "train_loss": 0.3, "test_accuracy": 0.75},  # the last row's
        "input": INPUT, "versions": versions,
    }  # fmt: skip
    own = {**state, "metrics": [], "model_source": {"module": "nets"}}
    card = card_from_checkpoint(own)
    assert card["metrics"] == {} and card["model_source"] == {"module": "nets"}
    assert "model_source" not in card_from_checkpoint({**state, "model_source": None})


@pytest.mark.parametrize(
    "card, why",
    [
        ("[]", "is not a cnnlab model card (no 'cnnlab-model' marker)"),
        ('{"format": "cnnlab-model", "version": 2}',
         "is a model card of version 2; this cnnlab reads up to 1: upgrade cnnlab"),
        ('{"format": "cnnlab-model", "version": "1"}',
         "is a model card of version '1'; this cnnlab reads up to 1: upgrade cnnlab"),
        ('{"format": "cnnlab-model", "version": 1, "model_name": "lenet", "model_args": {}, '
         '"class_names": ["a"], "input_shape": [1, 28, 28], "mean": [0.5], "std": 0.25}',
         "is a damaged model card: std missing"),
        ('{"format": "cnnlab-model", "version": 1}',
         "is a damaged model card: model_name, model_args, class_names, input_shape, mean, "
         "std missing"),
    ],
)  # fmt: skip
def test_a_card_that_cannot_be_used_says_why(card, why):
    with pytest.raises(CheckpointError) as info:
        parse_card(card, "d/m.json")
    assert str(info.value) == f"d/m.json {why}"


def test_a_card_of_this_version_is_read():
    text = json.dumps(card_of(cnnlab.create_model("lenet", num_classes=3), ["a", "b", "c"]))
    assert parse_card(text, "m.json")["class_names"] == ["a", "b", "c"]
    assert parse_card(text.encode(), "m.json") == parse_card(text, "m.json")  # bytes too


def test_the_sidecar_is_named_after_the_stem_of_each_format():
    assert sidecar_path("d/best.onnx") == Path("d/best.json")
    assert sidecar_path("d/best.torchscript.pt") == Path("d/best.json")
    assert sidecar_path("d/best.safetensors") == Path("d/best.json")
    # a name that is only the ending has no stem: its card is named after the whole name
    assert sidecar_path("d/.onnx") == Path("d/.onnx.json")


def test_each_file_is_told_by_its_name_and_what_its_archive_holds(lenet, tmp_path):
    weights = write_pair(tmp_path, *lenet)
    script = write_torchscript(tmp_path / "net.torchscript.pt", {})
    torch.save({"not": "compiled code"}, tmp_path / "data.pt")  # a zip without code/
    kinds = {
        weights: "safetensors", tmp_path / "model.json": "safetensors", script: "torchscript",
        tmp_path / "x.onnx": "onnx", tmp_path / "data.pt": "checkpoint", tmp_path: "checkpoint",
    }  # fmt: skip
    assert {path: model_file_kind(path) for path in kinds} == kinds


def test_a_model_file_that_does_not_exist_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_model_file(tmp_path / "gone.pt")
    assert str(info.value) == (
        f"model file {tmp_path}/gone.pt does not exist; give a run folder, a .pt checkpoint, or "
        "an exported .onnx, .safetensors or .torchscript.pt file"
    )


def test_the_pair_as_written_loads(lenet, tmp_path):
    # the refusals below change one thing of this pair: it must load as it is
    tensors, card = lenet
    weights = write_pair(tmp_path, tensors, card)
    for given in (weights, tmp_path / "model.json"):  # the card given: its weights are read
        loaded = load_model_file(given)
        assert loaded.path == weights and loaded.kind == "safetensors"
        model = loaded.module
        assert all(torch.equal(model.state_dict()[name], t) for name, t in tensors.items())


def another_shape(tensors, card):
    return tensors, {**card, "model_args": {**card["model_args"], "num_classes": 4}}


def one_missing(tensors, card):
    return {name: t for name, t in tensors.items() if name != "11.bias"}, card


def one_too_many(tensors, card):
    return {**tensors, "extra.weight": torch.zeros(2)}, card


@pytest.mark.parametrize("change", [another_shape, one_missing, one_too_many])
def test_weights_that_are_not_the_cards_model_are_refused(lenet, tmp_path, change):
    # load_state_dict(strict=False) lets a missing or extra tensor through: _load_weights must
    # count them itself, or a model with fresh random weights would predict
    weights = write_pair(tmp_path, *change(*lenet))
    expected = (
        f"{weights} does not hold the weights of lenet as model.json describes it; "
        "export the model again"
    )
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model_file(weights)


def test_a_safetensors_file_that_is_not_one_is_refused_naming_it(lenet, tmp_path):
    weights = write_pair(tmp_path, *lenet)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(weights))} is not a readable "):
        load_model_file(weights)


@pytest.mark.parametrize("given", ["model.safetensors", "model.json"])
def test_a_damaged_card_is_named_whichever_file_is_given(lenet, tmp_path, given):
    # the card is read by read_sidecar (the weights given) or _load_safetensors (the card
    # given); either way the message must say which file is damaged
    write_pair(tmp_path, *lenet)
    (tmp_path / "model.json").write_text('{"format": "cnnlab-model"')
    expected = f"{tmp_path / 'model.json'} is not a cnnlab model card (not JSON)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model_file(tmp_path / given)


@pytest.mark.parametrize("given", ["model.safetensors", "model.json"])
def test_a_folder_where_the_card_should_be_is_one_line(lenet, tmp_path, given):
    # an OSError other than a missing file (here: a folder) is a CheckpointError, not a traceback
    weights = write_pair(tmp_path, *lenet)
    (tmp_path / "model.json").unlink()
    (tmp_path / "model.json").mkdir()
    assert weights.is_file()
    expected = f"{tmp_path / 'model.json'} cannot be read: [Errno 21] Is a directory"
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}"):
        load_model_file(tmp_path / given)


def write_torchscript(path: Path, extra: dict[str, str]) -> Path:
    """A traced 3-class LeNet saved with these extra files, as torch.jit.save writes it."""
    model = cnnlab.create_model("lenet", num_classes=3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in 2.14
        traced = torch.jit.trace(model, torch.zeros(2, 1, 28, 28))
        torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def test_a_torchscript_file_without_its_own_card_reads_the_sidecar(lenet, tmp_path):
    # a TorchScript file traced elsewhere, with a card written beside it (as for ONNX)
    path = write_torchscript(tmp_path / "net.torchscript.pt", {})
    (tmp_path / "net.json").write_text(json.dumps(lenet[1]))
    loaded = load_model_file(path)
    assert loaded.path == path and loaded.kind == "torchscript"
    assert loaded.card == lenet[1]


def test_a_torchscripts_damaged_own_card_is_named_in_one_line(tmp_path):
    path = write_torchscript(tmp_path / "net.torchscript.pt", {"cnnlab.json": "{"})
    expected = f"{path} is not a cnnlab model card (not JSON)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model_file(path)


def test_a_broken_torchscript_archive_is_one_line_with_the_reason(tmp_path):
    # the archive has compiled code, so it is taken as TorchScript, but torch.jit cannot read it
    path = tmp_path / "net.torchscript.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("net/code/__torch__.py", "not code")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(Exception) as reason:  # what torch.jit says about it
            torch.jit.load(str(path))
    expected = f"{path} is not a readable TorchScript file ({first_line(reason.value)})"
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model_file(path)


def write_onnx(path: Path, metadata: dict[str, str]) -> Path:
    """An ONNX file as another tool writes it (no torch export: milliseconds): 28x28 grey
    images to 3 logits, the mean pixel each, with these metadata_props."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((784, 3), 1 / 784, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "net", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def test_an_onnx_file_carries_its_card_or_reads_it_beside(lenet, tmp_path):
    card = lenet[1]
    inside = write_onnx(tmp_path / "inside.onnx", {"cnnlab": json.dumps(card)})  # no sidecar
    beside = write_onnx(tmp_path / "beside.onnx", {})
    (tmp_path / "beside.json").write_text(json.dumps({**card, "class_names": ["x", "y", "z"]}))
    for path, names in ((inside, ["a", "b", "c"]), (beside, ["x", "y", "z"])):
        loaded = load_model_file(path)
        assert loaded.path == path and loaded.kind == "onnx" and loaded.class_names == names
        assert torch.allclose(loaded.logits(torch.ones(2, 1, 28, 28)), torch.ones(2, 3))


def test_an_onnx_files_damaged_card_or_a_broken_file_is_one_line(tmp_path):
    damaged = write_onnx(tmp_path / "damaged.onnx", {"cnnlab": "{"})
    expected = f"{damaged} is not a cnnlab model card (not JSON)"
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model_file(damaged)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError) as info:
        load_model_file(broken)
    assert str(info.value).startswith(f"{broken} is not a readable ONNX model ([ONNXRuntimeError]")
    assert "\n" not in str(info.value)


def test_an_onnx_file_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    path = tmp_path / "net.onnx"
    path.touch()
    with pytest.raises(CheckpointError) as info:
        load_model_file(path)
    assert str(info.value) == (
        f"{path} is an ONNX file and onnxruntime is not installed; "
        "pip install 'cnnlab[onnx]' (make setup does)"
    )


def test_a_hand_written_utf8_card_is_read_as_utf8_whatever_the_locale(lenet, tmp_path):
    # JSON is UTF-8 (RFC 8259), and a card may be written by other tools with é as two bytes;
    # a child process with an ASCII locale and no UTF-8 mode shows the card is not read with
    # the locale's encoding (Windows' cp1252 would turn "café" into "cafÃ©")
    weights = write_pair(tmp_path, *lenet)
    card = {**lenet[1], "class_names": ["café", "b", "c"]}
    (tmp_path / "model.json").write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    code = (
        "import sys; from cnnlab.deploy.model_card import read_sidecar; "
        "print(ascii(read_sidecar(sys.argv[1])['class_names'][0]))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(weights)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ascii("café")


def test_an_own_models_safetensors_is_rebuilt_from_its_recorded_source(tmp_path):
    # the card records where the model's code is (model_source); loading the weights checks
    # that code before it runs it, and says which model file needs it when it has changed
    from cnnlab.models.own import model_source
    from cnnlab.training.checkpoint import FORMAT, VERSION, save_checkpoint

    net = tmp_path / "my_net.py"
    net.write_text(MY_NET)
    name = f"{net}:MyNet"
    model = cnnlab.create_model(name, num_classes=3, in_channels=1, image_size=12)
    save_checkpoint(
        {
            "format": FORMAT, "version": VERSION, "model_name": name,
            "model_args": dict(model.model_args), "class_names": ["a", "b", "c"],
            "mean": [0.5], "std": [0.25], "input_shape": [1, 12, 12],
            "dataset": f"npz:{tmp_path / 'gone'}", "config": {}, "model_state": model.state_dict(),
            "model_source": model_source(name), "metrics": [],
        },
        tmp_path / "own.pt",
    )  # fmt: skip
    weights = export_model(tmp_path / "own.pt", format="safetensors").path
    from_checkpoint = load_model_file(tmp_path / "own.pt")
    assert from_checkpoint.path == tmp_path / "own.pt" and from_checkpoint.kind == "checkpoint"
    loaded = load_model_file(weights)
    assert loaded.card["model_source"] == model_source(name)
    images = torch.randn(2, 1, 12, 12)
    assert torch.equal(loaded.logits(images), model.eval()(images))
    net.write_text(MY_NET + "\n# an edit\n")
    with pytest.raises(ModelError, match=f"^{re.escape(str(weights))} needs {re.escape(str(net))}"):
        load_model_file(weights)
    checkpoint = re.escape(str(tmp_path / "own.pt"))
    with pytest.raises(ModelError, match=f"^{checkpoint} needs {re.escape(str(net))}"):
        export_model(tmp_path / "own.pt", format="safetensors")  # exporting it again
    with pytest.raises(ModelError, match=f"^{checkpoint} needs {re.escape(str(net))}"):
        load_model_file(tmp_path / "own.pt")

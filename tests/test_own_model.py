"""Your own model (a file, a module, a class, a function or a built module) and your own data
(a Dataset or tensors), and the defaults a first command trains with."""

from __future__ import annotations

import json
import multiprocessing
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import cnnlab
from cnnlab.cli import main
from cnnlab.data.own import own_data
from cnnlab.models import own, registry
from helpers import skip_png_encoding

MY_NET = '''
import torch
from torch import nn


class MyNet(nn.Module):
    """A small net of my own."""

    def __init__(self, num_classes, in_channels=1, width=8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def wide_net(num_classes, width=16) -> nn.Module:
    return MyNet(num_classes, width=width)


def plain_function(num_classes):
    return MyNet(num_classes)
'''

QUICK = ["--epochs", "2", "--batch-size", "32", "--progress", "none", "--no-tensorboard"]


def write_net(folder: Path, text: str = MY_NET) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_net.py"
    path.write_text(textwrap.dedent(text))
    return path


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def own_run(tmp_path: Path, npz_data: str, capsys) -> tuple[Path, Path]:
    """(the model file, far from the project, and a finished run of it on npz_data)."""
    net = write_net(tmp_path / "elsewhere" / "models")
    runs = tmp_path / "runs"
    argv = ["train", "--model", f"{net}:MyNet", "--model-arg", "width=6", "--dataset", npz_data]
    assert main([*argv, *QUICK, "--out-dir", str(runs), "--no-report"]) == 0
    capsys.readouterr()
    (run,) = runs.iterdir()
    return net, run


def test_a_model_file_trains_and_every_command_works_on_its_run(
    own_run, tmp_path, capsys, monkeypatch
):
    net, run = own_run
    skip_png_encoding(monkeypatch)  # the pages are read as text
    assert run.name.startswith("MyNet-learnable")  # named after the class, not the path
    config = json.loads((run / "config.json").read_text())
    assert config["model_name"] == f"{net}:MyNet"
    assert config["model_args"]["width"] == 6 and config["model_args"]["num_classes"] == 4
    assert config["model_source"] == {
        "file": str(net),
        "sha256": __import__("hashlib").sha256(net.read_bytes()).hexdigest(),
    }
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert main(["eval", str(run / "last.pt")]) == 0
    assert f"test accuracy  {rows[-1]['test_accuracy']:.4f}" in capsys.readouterr().out
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert (run / "best.onnx").is_file() and "max |Δlogit|" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    assert "MyNet" in (run / "report.html").read_text()
    assert main(["summary", str(run)]) == 0
    assert "head" in capsys.readouterr().out
    image = tmp_path / "digit.png"
    from PIL import Image

    with np.load(Path(config["dataset"].removeprefix("npz:")) / "test.npz") as test:
        Image.fromarray(test["x"][0]).save(image)
    for model_file in (run, run / "best.onnx"):
        assert main(["predict", str(model_file), str(image)]) == 0
        assert "digit.png  class" in capsys.readouterr().out
    # --resume rebuilds it from the file, and goes on from epoch 2
    assert main(["train", "--resume", str(run), "--epochs", "3", "--progress", "none"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]


def test_a_moved_or_changed_model_file_is_named_in_one_line(own_run, capsys):
    net, run = own_run
    moved = net.with_name("moved.py")
    net.rename(moved)
    assert main(["eval", str(run)]) == 2
    assert last_line(capsys) == (
        f"error: {run} needs its model's code, {net}, which is not there any more; put the "
        f"file back at that path (sha256 {json.loads((run / 'config.json').read_text())['model_source']['sha256'][:12]}…) "  # noqa: E501
        f"to rebuild {net}:MyNet"
    )
    moved.rename(net)
    net.write_text(net.read_text() + "\n# an edit\n")
    for argv in (["eval", str(run)], ["train", "--resume", str(run), "--epochs", "3"]):
        assert main(argv) == 2
        line = last_line(capsys)
        assert f"needs {net} as it was when the run trained" in line, line
        assert "the file has changed since" in line
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # nothing trained


def test_a_checkpoint_cannot_make_cnnlab_call_what_is_not_a_model(tiny_run, tmp_path):
    """A run folder names the code that rebuilds its model, with arguments. A crafted one is
    refused before anything it names is called: a function that is not a model builder
    (`os:system`), a function of an installed package that says it returns a module but runs
    the text it is given (torch.fx's reduce_graph_module), a name reached through another
    module, a file by a relative path or without the source cnnlab records, and a file of the
    Python installation."""
    from cnnlab.training.checkpoint import save_checkpoint

    state = cnnlab.load_checkpoint(tiny_run / "best.pt")
    marker = tmp_path / "called"
    payload = f"open({str(marker)!r}, 'w').close()\n"
    evil = tmp_path / "evil.py"
    evil.write_text(payload + "import torch\nclass Net(torch.nn.Module): pass\n")
    fx = "torch.fx.graph_module"
    crafted_runs = [
        ("os:system", {"command": f"touch {marker}"}, {"module": "os"},
         r"os:system is builtin_function_or_method, not an nn.Module class"),
        (f"{fx}:reduce_graph_module",
         {"body": {"_code": "def forward(self, x):\n return x\n"}, "import_block": payload},
         {"module": fx}, r"is a function of an installed package"),
        (f"{__name__}:torch.fx.graph_module.reduce_graph_module", {}, {"module": __name__},
         r"is defined in torch.fx.graph_module, not in module test_own_model"),
        ("evil.py:Net", {}, None, r"names its model evil.py:Net without the source"),
        (f"{evil}:Net", {}, None, r"without the source cnnlab records with it"),
        (f"{evil}:Net", {}, {"file": str(evil.with_name("other.py")), "sha256": "0" * 64},
         r"without the source cnnlab records with it"),
        (f"{Path(torch.__file__).parent / 'fx' / 'graph_module.py'}:GraphModule", {},
         {"file": str(Path(torch.__file__).parent / "fx" / "graph_module.py"),
          "sha256": __import__("cnnlab.files").files.sha256_of(
              Path(torch.__file__).parent / "fx" / "graph_module.py")},
         r"is part of the Python installation; name an installed model by its module"),
    ]  # fmt: skip
    for name, args, source, expected in crafted_runs:
        crafted = {**state, "model_name": name, "model_args": args, "model_source": source}
        save_checkpoint(crafted, tmp_path / "crafted.pt")
        with pytest.raises(cnnlab.ModelError, match=expected):
            cnnlab.rebuild_model(tmp_path / "crafted.pt")
    assert not marker.exists()


def test_a_module_path_and_a_function_build_the_model(tmp_path, npz_data, monkeypatch):
    package = tmp_path / "site" / "mypackage"
    write_net(package)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    result = cnnlab.train(
        model="mypackage.my_net:wide_net", model_args={"width": 5}, dataset=npz_data,
        epochs=1, batch_size=64, out_dir=str(tmp_path / "runs"), name="fn", progress="none",
        tensorboard=False, report=False,
    )  # fmt: skip
    state = cnnlab.load_checkpoint(result.run_dir)
    assert state["model_source"] == {"module": "mypackage.my_net"}
    assert state["model_args"]["width"] == 5
    rebuilt = cnnlab.rebuild_model(result.run_dir)
    assert rebuilt.head.in_features == 5 * 16  # width 5 reached the function
    for key, value in rebuilt.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key].cpu())


class Tiny(nn.Module):
    """A module-level class: importable as test_own_model:Tiny."""

    def __init__(self, num_classes: int = 4, width: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(width * 4, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def quick_train(tmp_path: Path, name: str, **options):
    values = dict(epochs=1, batch_size=64, out_dir=str(tmp_path / "runs"), name=name,
                  progress="none", tensorboard=False, report=False)  # fmt: skip
    return cnnlab.train(**{**values, **options})


def test_a_class_or_a_built_module_trains_from_python(tmp_path, npz_data, monkeypatch):
    skip_png_encoding(monkeypatch)  # the pages are read as text
    by_class = quick_train(tmp_path, "cls", model=Tiny, model_args={"width": 3}, dataset=npz_data)
    assert by_class.config.model == f"{__name__}:Tiny"
    assert cnnlab.rebuild_model(by_class.run_dir).net[0].out_channels == 3
    assert by_class.config.model not in cnnlab.list_models()  # a registry of names only

    # a module built with its defaults: rebuilt from the class alone, the trained one itself
    module = Tiny()
    by_module = quick_train(tmp_path, "obj", model=module, dataset=npz_data)
    assert by_module.model is module
    state = cnnlab.load_checkpoint(by_module.run_dir)
    assert "hidden_args" not in state["model_source"]
    assert torch.equal(cnnlab.rebuild_model(by_module.run_dir).net[4].weight, module.net[4].weight)

    # built with arguments cnnlab cannot see: trained and reported; this process rebuilds it
    # (its report did), another says how to make a run it can rebuild
    hidden = quick_train(tmp_path, "hidden", model=Tiny(width=7), dataset=npz_data)
    assert cnnlab.rebuild_model(hidden.run_dir).net[0].out_channels == 7
    assert main(["report", str(hidden.run_dir)]) == 0
    state = cnnlab.load_checkpoint(hidden.run_dir)
    own._INSTANCES.pop(state["model_source"]["instance"])  # as in another process
    with pytest.raises(cnnlab.ModelError, match=r"given to cnnlab.train as an object, Tiny"):
        cnnlab.rebuild_model(hidden.run_dir)
    with pytest.raises(cnnlab.ConfigError, match="model_args are for a model to build"):
        quick_train(tmp_path, "x", model=Tiny(), model_args={"width": 2}, dataset=npz_data)


class Returns(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.make = make

    def forward(self, x):
        return self.make(self.conv(x))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 3)),
         r"^Sequential gives 3 outputs per image but the data has 4 classes; make its last "
         r"layer output 4"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(4)),
         r"^Sequential cannot take this data's images: a batch of shape 2×1×28×28 gave "
         r"RuntimeError: .*3 channels.*; check its input channels \(1\) and image size \(28×28\)"),
        (Returns(lambda y: y.mean(dim=(2, 3), keepdim=True)),
         r"^Returns turned a batch of shape 2×1×28×28 into \(2, 2, 1, 1\), not \(N, K\) logits "
         r"\(2, 4\); flatten"),
        (Returns(lambda y: (y, y)),
         r"^Returns returned tuple for a batch of shape 2×1×28×28; it must return one tensor"),
    ],
    ids=["classes", "channels", "not 2-d", "tuple"],
)  # fmt: skip
def test_a_model_that_does_not_fit_the_data_is_refused_before_training(
    model, expected, tmp_path, npz_data
):
    with pytest.raises(cnnlab.ModelError, match=expected):
        quick_train(tmp_path, "bad", model=model, dataset=npz_data)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "{dir}/none.py:MyNet"], "model file {dir}/none.py does not exist; give "
         "--model path/to/file.py:Name or package.module:Name"),
        (["--model", "{dir}/my_net.py:Nope"], "{dir}/my_net.py has no Nope; the classes and "
         "functions it defines: MyNet, wide_net, plain_function"),
        (["--model", "{dir}/my_net.py:torch"], "{dir}/my_net.py:torch is module, not an "
         "nn.Module class or a function that returns one"),
        (["--model", "no_such_module_here:Net"], "cannot import module no_such_module_here "
         "(ModuleNotFoundError: No module named 'no_such_module_here'); install it, or give the "
         "file: --model path/to/file.py:Name"),
        (["--model", "{dir}/my_net.py:MyNet", "--model-arg", "depth=2"], "{dir}/my_net.py:MyNet "
         "does not take depth; it takes num_classes, in_channels, image_size, init, width"),
        (["--model", "{dir}/my_net.py:MyNet", "--model-arg", "in_channels=3"], "--model-arg "
         "in_channels: in_channels comes from the data (1 here); remove it"),
        (["--model", "{dir}/broken.py:Net"], "importing {dir}/broken.py failed: NameError: name "
         "'undefined_name' is not defined"),
        (["--model", "{dir}/my_net.py:plain_function"], "{dir}/my_net.py:plain_function is a "
         "function that does not say it returns an nn.Module; annotate it (def plain_function(...)"
         " -> nn.Module:), as cnnlab calls only functions that say they build a model (a "
         "checkpoint names the code that rebuilds it)"),
    ],
    ids=["no file", "no name", "not a model", "no module", "unknown arg", "data's arg", "broken",
         "unannotated"],
)  # fmt: skip
def test_bad_model_names_get_one_line_and_exit_2(argv, expected, tmp_path, npz_data, capsys):
    folder = tmp_path / "models"
    write_net(folder)
    (folder / "broken.py").write_text("undefined_name\n")
    argv = [part.format(dir=folder) for part in argv]
    code = main(["train", *argv, "--dataset", npz_data, *QUICK, "--out-dir", str(tmp_path / "r")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: " + expected.format(dir=folder)
    assert not (tmp_path / "r").exists()


class Pictures(Dataset):
    """Seed 004's kind of Dataset: ToTensor pixels (floats in [0, 1]) and int labels."""

    def __init__(self, npz: Path, split: str, count: int | None = None):
        with np.load(npz / f"{split}.npz") as arrays:
            self.x, self.y = arrays["x"][:count], arrays["y"][:count]
        self.classes = ["circle", "square", "cross", "star"]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return torch.from_numpy(self.x[index]).float().div(255)[None], int(self.y[index])


def test_a_dataset_of_the_users_trains_and_the_report_is_written(
    tmp_path, npz_data, reports_on, capsys
):
    folder = Path(npz_data.removeprefix("npz:"))
    train, test = Pictures(folder, "train"), Pictures(folder, "test")
    result = quick_train(
        tmp_path, "mine", model="mnist_cnn", train_data=train, test_data=test, epochs=3,
        batch_size=32, lr=3e-3, report=True,
    )  # fmt: skip
    assert result.metrics[-1]["test_accuracy"] > 0.6  # chance: 0.25
    assert (result.run_dir / "report.html").is_file()
    assert "report not written" not in capsys.readouterr().out
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["dataset"] == "python:Pictures"
    assert config["class_names"] == ["circle", "square", "cross", "star"]
    assert config["data"]["location"] == (
        "given in Python (test_own_model.Pictures: 384 train, 128 test images)"
    )
    # the same data again: resumed, and evaluated to the run's own last accuracy
    with pytest.raises(cnnlab.ConfigError, match=r"python:Pictures was given to cnnlab.train"):
        cnnlab.train(resume=result.run_dir, epochs=4)
    # (no second report: the first one is the one checked, and drawing one takes seconds)
    resumed = cnnlab.train(
        resume=result.run_dir, epochs=4, train_data=train, test_data=test, report=False
    )
    assert len(resumed.metrics) == 4
    evaluated, names = cnnlab.evaluate_checkpoint(result.run_dir / "last.pt", test_data=test)
    assert evaluated.accuracy == resumed.metrics[-1]["test_accuracy"]
    assert names == config["class_names"]
    assert main(["eval", str(result.run_dir)]) == 2
    assert "give the same data again" in capsys.readouterr().err


def test_given_data_follows_the_config_and_a_resume_needs_the_same_data(tmp_path, npz_data):
    folder = Path(npz_data.removeprefix("npz:"))
    train, test = Pictures(folder, "train"), Pictures(folder, "test")
    run = quick_train(tmp_path, "raw", model="mnist_cnn", train_data=train, test_data=test,
                      normalize=False, image_size=20)  # fmt: skip
    config = json.loads((run.run_dir / "config.json").read_text())
    assert (config["mean"], config["std"], config["input_shape"]) == ([0.0], [1.0], [1, 20, 20])
    other = (torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.arange(8) % 4)
    with pytest.raises(
        cnnlab.ConfigError,
        match=r"trained on python:Pictures \(4 classes, "
        r"1×20×20\), not python:tensors \(4 classes, 1×20×20\); resume it",
    ):
        cnnlab.train(resume=run.run_dir, epochs=2, train_data=other, test_data=other)
    assert len((run.run_dir / "metrics.jsonl").read_text().splitlines()) == 1  # not resumed


def test_a_bad_item_read_by_worker_processes_is_one_line(monkeypatch):
    from cnnlab.data import own as own_data_module

    class OneBad(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, index):
            label = "seven" if index == 33 else index % 2
            return torch.zeros(1, 4, 4), label

    class TwoSizes(OneBad):
        def __getitem__(self, index):
            return torch.zeros(1, 4 + (index == 5), 4), 0

    monkeypatch.setattr(own_data_module, "WORKERS_FROM", 2)  # worker processes from 2 items
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(OneBad(), GOOD)
    assert str(caught.value) == "train label 33 is 'seven'; a label is a class index, an int"
    # the workers are gone when the error arrives: left to a garbage collection, they held
    # its next pass for 5 s each
    assert multiprocessing.active_children() == []
    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(TwoSizes(), GOOD)
    assert str(caught.value) == (
        "train_data's images differ in shape; give images of one size (a Resize transform)"
    )

    class Missing(OneBad):
        def __getitem__(self, index):
            if index == 7:
                raise FileNotFoundError(f"no such file: img{index}.png\nmore lines")
            return super().__getitem__(index)

    with pytest.raises(cnnlab.DataFormatError) as caught:
        own_data(GOOD, Missing())
    assert str(caught.value) == (
        "reading test_data failed: FileNotFoundError: no such file: img7.png"
    )
    assert multiprocessing.active_children() == []


def test_a_dataset_too_big_for_memory_is_read_batch_by_batch_to_the_same_run(
    tmp_path, npz_data, monkeypatch
):
    """The in-memory path and the DataLoader path give the same epochs, number for number."""
    from cnnlab.data import own

    folder = Path(npz_data.removeprefix("npz:"))
    # half the images: still 3 training batches an epoch, the last one short (173 after the
    # validation split), and whole epochs to compare
    splits = Pictures(folder, "train", 192), Pictures(folder, "test", 64)
    options = dict(model="mnist_cnn", epochs=2, batch_size=64, lr=3e-3)
    in_memory = quick_train(tmp_path, "memory", train_data=splits[0], test_data=splits[1],
                            **options)  # fmt: skip
    monkeypatch.setattr(own, "memory_budget", lambda: 0)
    data = own_data(*splits)
    assert isinstance(data.train, own.PixelItems) and isinstance(data.test, own.PixelItems)
    streamed = quick_train(tmp_path, "stream", train_data=splits[0], test_data=splits[1],
                           **options)  # fmt: skip
    keys = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    for a, b in zip(in_memory.metrics, streamed.metrics, strict=True):
        assert [a[k] for k in keys] == [b[k] for k in keys]


def test_tensors_and_every_image_form_become_the_same_uint8_pixels():
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 1, 5, 7), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    expected = torch.from_numpy(pixels)
    forms = {
        "uint8": pixels,
        "ToTensor floats": torch.from_numpy(pixels).float() / 255,
        "float64 numpy": pixels / 255.0,
        "int64": pixels.astype(np.int64),
        "(N, H, W)": pixels[:, 0],
    }
    for form, images in forms.items():
        data = own_data((images, labels), (images, torch.from_numpy(labels)))
        assert torch.equal(data.train.images, expected), form
        assert data.input_shape == (1, 5, 7) and data.class_names == ["0", "1", "2"], form
    assert data.name == "python:tensors"

    class Items(Dataset):
        def __init__(self, kind):
            self.kind = kind

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            image = pixels[i, 0]
            item = Image.fromarray(image) if self.kind == "pil" else image  # (H, W) array
            return item, torch.tensor(labels[i])

    for kind in ("pil", "array"):
        data = own_data(Items(kind), Items(kind), class_names=["a", "b", "c"])
        assert torch.equal(data.train.images, expected), kind
        assert data.train.labels.tolist() == labels.tolist()
    mean, std = data.mean[0], data.std[0]
    assert mean == pytest.approx(pixels.mean() / 255) and std == pytest.approx(pixels.std() / 255)


class Pairs(Dataset):
    def __init__(self, item):
        self.item = item

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return self.item


GOOD = (torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize(
    ("train", "test", "expected"),
    [
        ((torch.randn(4, 1, 8, 8), GOOD[1]), GOOD,
         r"^train_data's images holds floats from -.* to .*, not pixels in \[0, 1\]; cnnlab "
         r"normalises images itself"),
        ((torch.zeros(4, 8, 8, 3), GOOD[1]), GOOD,
         r"^train_data's images has shape \(4, 8, 8, 3\), channels last; give channels first"),
        ((GOOD[0], torch.tensor([0, 1])), GOOD,
         r"^train_data has 4 images and labels of shape \(2,\); give one class index per image"),
        ((GOOD[0], torch.tensor([0, -1, 0, 1])), GOOD, r"^train_data has a negative label"),
        ((GOOD[0], torch.tensor([0.0, 1.0, 0.0, 1.0])), GOOD,
         r"^train_data's labels are torch.float32; give class indices"),
        (GOOD, (torch.zeros(4, 1, 9, 9), GOOD[1]),
         r"^train images are 1×8×8 but test images are 1×9×9"),
        (GOOD, None, r"^give test_data too"),
        ("images.npz", GOOD, r"^train_data is str; give a torch Dataset"),
        (Pairs((torch.zeros(1, 8, 8), 1.5)), GOOD, r"^train label 0 is 1.5; a label is a class"),
        (Pairs(torch.zeros(1, 8, 8)), GOOD, r"^train item 0 is Tensor, not \(image, label\)"),
        ((torch.full((4, 1, 8, 8), 300), GOOD[1]), GOOD,
         r"^train_data's images holds integers from 300 to 300, not 0..255 pixels"),
    ],
    ids=["normalised", "channels last", "label count", "negative", "float labels",
         "sizes differ", "no test", "a path", "float label", "no label", "over 255"],
)  # fmt: skip
def test_bad_data_from_python_gets_one_line(train, test, expected):
    with pytest.raises(cnnlab.CnnlabError, match=expected) as caught:
        own_data(train, test)
    assert "\n" not in str(caught.value)


def test_too_few_class_names_are_refused():
    with pytest.raises(cnnlab.DataFormatError, match=r"a label is 1 but there are 1 class names"):
        own_data(GOOD, GOOD, class_names=["only"])


def test_register_model_is_public_and_needs_no_tutorial_tag(tmp_path, npz_data, monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @cnnlab.register_model(input_shape=(1, 28, 28), num_classes=10)
    def my_small_net(*, num_classes, in_channels, image_size, init="default", width=4):
        """Mine: one conv and a head."""
        return Tiny(num_classes, width)

    assert "my_small_net" in cnnlab.list_models()
    info = registry.model_info("my_small_net")
    assert (info.seed, info.description) == ("", "Mine: one conv and a head.")
    result = quick_train(tmp_path, "reg", model="my_small_net", dataset=npz_data)
    assert result.model.net[0].out_channels == 4
    with pytest.raises(cnnlab.ModelError, match="a model name has no colon"):
        cnnlab.register_model(input_shape=(1, 8, 8), num_classes=2, name="a:b")(my_small_net)

    @cnnlab.register_model(input_shape=(1, 28, 28), num_classes=10)
    def three_classes(*, num_classes, in_channels, image_size, init="default"):
        return Tiny(3)  # whatever the data has

    with pytest.raises(cnnlab.ModelError, match=r"^Tiny gives 3 outputs|^three_classes gives 3"):
        quick_train(tmp_path, "bad", model="three_classes", dataset=npz_data)


def test_installed_packages_register_models_through_entry_points(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "plugin_nets-1.0.dist-info").mkdir(parents=True)
    (site / "plugin_nets-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plugin-nets\nVersion: 1.0\n"
    )
    (site / "plugin_nets-1.0.dist-info" / "entry_points.txt").write_text(
        "[cnnlab.models]\nnets = plugin_nets\nbroken = plugin_broken\n"
    )
    (site / "plugin_broken.py").write_text("raise ImportError('a dependency is missing')\n")
    (site / "plugin_nets.py").write_text(
        textwrap.dedent('''
        import cnnlab
        from torch import nn

        @cnnlab.register_model(input_shape=(1, 28, 28), num_classes=10)
        def plugin_net(*, num_classes, in_channels, image_size, init="default"):
            """A net an installed package registers."""
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
        ''')
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.delitem(sys.modules, "plugin_nets", raising=False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", [])
    assert main(["models", "plugin*"]) == 0  # the broken plugin hides no other model
    assert "A net an installed package registers" in capsys.readouterr().out
    with pytest.raises(
        cnnlab.ModelError,
        match=r"\(a plugin broken \(plugin_broken\) failed to "
        r"load: ImportError: a dependency is missing\)$",
    ):
        registry.model_info("plugin_other")


def test_the_bare_command_learns_where_the_old_defaults_stayed_at_chance(tmp_path, npz_data):
    """`cnnlab train` with no model or optimizer flag: LeNet, adam at 3e-3. On the same small
    data and steps, the old defaults (sgd at 0.1) stay at chance (0.25), as LeNet's sigmoids
    did for 3 epochs of real Fashion-MNIST."""
    common = ["--dataset", npz_data, "--epochs", "3", "--batch-size", "32", "--progress", "none",
              "--no-tensorboard", "--no-report", "--out-dir", str(tmp_path)]  # fmt: skip
    assert main(["train", *common, "--name", "new"]) == 0
    assert main(["train", *common, "--name", "old", "--optimizer", "sgd", "--lr", "0.1"]) == 0
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert (config["config"]["model"], config["config"]["optimizer"]) == ("lenet", "adam")
    assert config["config"]["lr"] == 3e-3 and config["config"]["normalize"] is True
    new, old = (
        json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
        for name in ("new", "old")
    )
    assert new["test_accuracy"] >= 0.6 and old["test_accuracy"] <= 0.35
    assert (new["lr"], old["lr"]) == (3e-3, 0.1)  # as the optimizers' param_groups held them


def test_every_shipped_recipe_sets_its_optimizer_and_rate():
    """So the defaults can change without moving a tutorial's numbers."""
    from cnnlab.config.recipes import shipped_recipes

    for name in shipped_recipes():
        values = cnnlab.load_recipe(name)
        assert {"model", "dataset", "optimizer", "lr", "batch_size", "epochs"} <= set(values), name


def test_an_unset_lr_is_the_optimizers_own_and_is_recorded():
    from cnnlab.config import DEFAULT_LR

    for optimizer, rate in DEFAULT_LR.items():
        assert cnnlab.TrainConfig(optimizer=optimizer).validate().lr == rate
    assert cnnlab.TrainConfig(optimizer="sgd", lr=0.5).validate().lr == 0.5

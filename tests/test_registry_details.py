"""The model registry's details (models/registry.py, models/shapes.py) that test_models.py and
test_own_model.py leave open: what an entry records (a registered builder's, your own model's),
when your own model's entry is made again, plugins loaded once with their errors cut to one
line, what min_input_size ignores, and the words of the refusals.

Every test that files a model works on copies of the registry's tables (monkeypatch), so nothing
leaks into the global registry; the models are a few layers built on the meta device, so each
test takes milliseconds. They exist because docs/TESTING.md's mutation run showed the rule
untested (a survivor of `mutmut run "cnnlab.models*"`).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import registry
from cnnlab.models.registry import (
    ModelInfo,
    create_model,
    min_input_size,
    model_info,
    register_model,
    register_object,
)
from cnnlab.models.shapes import LARGEST_SIDE, InputTooSmallError, feature_size, smallest_side


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies of the registry's tables for one test: what it files is gone after it. The seed
    models are filed first, so that a look-up that imports them does not file them in a copy."""
    model_info("lenet")
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_TARGETS", dict(registry._TARGETS))
    monkeypatch.setattr(registry, "_GIVEN", set(registry._GIVEN))


# --- what an entry records ----------------------------------------------------------------------


def test_a_registered_builder_files_its_name_parameters_and_first_docstring_line(own_registry):
    def builder(*, num_classes, in_channels, image_size, init="default"):
        """First line.

        More that `cnnlab models` does not show.
        """
        return nn.Flatten()

    register_model(input_shape=(1, 4, 4), num_classes=3, name="mine", parameters=1234)(builder)
    assert model_info("mine") == ModelInfo("mine", builder, (1, 4, 4), 3, "First line.", "", 1234)


def test_a_builder_without_docstring_or_description_has_an_empty_description(own_registry):
    @register_model(input_shape=(1, 4, 4), num_classes=3)
    def bare(*, num_classes, in_channels, image_size, init="default"):
        return nn.Flatten()

    assert model_info("bare").description == ""
    assert create_model("bare").model_name == "bare"


NETS = """
from torch import nn


class Documented(nn.Module):
    \"\"\"Two channels in, five classes out.

    The rest of the docstring.
    \"\"\"

    def __init__(self, num_classes=5, in_channels=2, image_size=12):
        super().__init__()
        self.head = nn.Linear(in_channels, num_classes)


def plain(num_classes) -> nn.Module:
    return nn.Linear(3, num_classes)


class Bare(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(3, num_classes)


class Refuses(nn.Module):
    def __init__(self, num_classes):
        raise ValueError("no layers for that")
"""


def write_nets(folder: Path, text: str = NETS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nets.py"
    path.write_text(text)
    return path


def test_your_own_models_entry_has_its_defaults_and_docstring_and_no_seed(tmp_path, own_registry):
    path = write_nets(tmp_path)
    documented = model_info(f"{path}:Documented")
    assert (documented.input_shape, documented.num_classes) == ((2, 12, 12), 5)
    assert (documented.description, documented.seed) == ("Two channels in, five classes out.", "")
    # no docstring: the line says where it is
    plain = model_info(f"{path}:plain")
    assert (plain.input_shape, plain.num_classes) == ((3, 32, 32), 10)
    assert (plain.description, plain.seed) == (f"your own model, {path}:plain", "")
    # nor for a class, which does not take nn.Module's ("Base class for all neural network...")
    assert model_info(f"{path}:Bare").description == f"your own model, {path}:Bare"


def test_your_own_models_failure_names_the_class_even_with_a_colon_in_its_path(
    tmp_path, own_registry
):
    # a Windows path ("C:\\...\\nets.py:Refuses") has two colons: the class is after the last
    path = write_nets(tmp_path / "C:drive")
    with torch.device("meta"), pytest.raises(ModelError) as caught:
        create_model(f"{path}:Refuses")
    assert str(caught.value) == "Refuses(num_classes=10) failed: no layers for that"


def test_your_own_model_is_filed_again_when_its_file_changes_and_only_then(tmp_path, own_registry):
    path = write_nets(tmp_path)
    first = model_info(f"{path}:Documented")
    assert model_info(f"{path}:Documented") is first  # the same file: the entry it has
    write_nets(tmp_path, NETS.replace("num_classes=5", "num_classes=7"))
    assert model_info(f"{path}:Documented").num_classes == 7  # not the stale 5


def test_a_notebooks_model_cannot_be_built_outside_it():
    with pytest.raises(ModelError) as caught:
        model_info("__main__:MyNet")
    assert str(caught.value) == (
        "__main__:MyNet was defined in a notebook or an interactive session, which alone can "
        "build it; there, give the class again (cnnlab.train(model=...)), or put it in a file "
        "and use --model FILE.py:Name"
    )


# --- objects given from Python ------------------------------------------------------------------


def test_a_class_given_from_python_is_built_by_its_name_without_importing_it(own_registry):
    class Local(nn.Module):  # no import finds a class defined in a function
        def __init__(self, num_classes=4):
            super().__init__()
            self.head = nn.Linear(2, num_classes)

    key = register_object(Local)
    assert create_model(key).head.out_features == 4


def no_annotation(num_classes=10):
    return nn.Linear(1, num_classes)


class Maker:
    """A callable object: no __qualname__ of its own."""

    def __call__(self, num_classes=10):
        return nn.Linear(1, num_classes)

    def __repr__(self) -> str:
        return "Maker()"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (42, "model must be a name, an nn.Module, an nn.Module class or a function returning "
             "one, got int"),
        (no_annotation, "no_annotation is a function that does not say it returns an "
                        "nn.Module; annotate it"),
        (Maker(), "Maker() is Maker, not an nn.Module class or a function that returns one"),
    ],
    ids=["not callable", "function", "callable object"],
)  # fmt: skip
def test_what_cannot_be_given_as_a_model_is_named_in_the_refusal(target, message, own_registry):
    with pytest.raises(ModelError) as caught:
        register_object(target)
    assert str(caught.value).startswith(message)


# --- plugins ------------------------------------------------------------------------------------


class BrokenEntry:
    name, value = "broken", "plugin_broken"

    def load(self):
        raise ImportError("x" * 200)  # a long word: cut where it must be


def test_plugins_load_once_and_a_broken_ones_error_is_cut_to_120_characters(monkeypatch):
    calls = []

    def entry_points(*, group):
        calls.append(group)
        return [BrokenEntry()]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_BROKEN_PLUGINS", [])
    registry._load_plugins()
    registry._load_plugins()  # every list_models, every unknown name: loaded already
    assert calls == ["cnnlab.models"]
    assert registry._BROKEN_PLUGINS == [
        "broken (plugin_broken) failed to load: ImportError: " + "x" * 119 + "…"
    ]


# --- min_input_size -----------------------------------------------------------------------------


def pooled(*, num_classes, in_channels, image_size, init="default", pools=1, pretrained=False,
           weights_file=None):  # fmt: skip
    """`pools` 2×2 max pools and a head; loads weights before it looks at the size."""
    if pretrained or weights_file:
        raise ModelError("this test has no weights to load")
    layers = [nn.MaxPool2d(2) for _ in range(pools)]
    height, width = feature_size("pooled", layers, image_size)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_channels * height * width, 2))


@pytest.fixture
def pooled_registered(own_registry) -> None:
    register_model(input_shape=(1, 8, 8), num_classes=2)(pooled)


def test_min_input_size_builds_with_the_models_own_arguments(pooled_registered):
    assert [min_input_size("pooled", pools=pools) for pools in (1, 3)] == [2, 8]


def test_min_input_size_ignores_the_image_size_and_weights_it_is_given(pooled_registered):
    # a run's model_args hold its image_size and weights: the smallest size is the model's
    args = {"pools": 2, "image_size": 64, "pretrained": True, "weights_file": "w.pth"}
    assert min_input_size("pooled", **args) == 4
    assert min_input_size("lenet", image_size=(28, 28)) == 12


# --- shapes -------------------------------------------------------------------------------------


def test_an_input_too_small_error_is_one_line_saying_what_to_do():
    with torch.device("meta"), pytest.raises(InputTooSmallError) as caught:
        create_model("lenet", image_size=(8, 10))
    assert str(caught.value) == (
        "lenet cannot take 8×10 images: its feature maps shrink to nothing; the smallest input "
        "it takes is 12×12, so resize the images to at least that or choose another model"
    )


def test_smallest_side_searches_from_1_to_the_largest_side():
    assert smallest_side(lambda height, width: True) == 1
    assert smallest_side(lambda height, width: height >= 1000) == 1000
    # nothing fits: one past the bound, reported as is
    assert smallest_side(lambda height, width: False) == LARGEST_SIDE + 1 == 4097

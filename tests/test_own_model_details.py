"""Your own model's details (models/own.py) that test_own_model.py and test_registry_details.py
leave open: the name a class given from Python is filed under (a function's local class, a
script's, a notebook's), what reaches the model (the data's facts, as an int side or (H, W)),
how its builder is called and says so when it fails, what a file's import sees, the module
objects kept for rebuilding, and the words of the refusals (one line each, naming the file).

Every test that files a model works on copies of the registry's tables (monkeypatch), so nothing
leaks into the global registry; the models are a Linear layer or two, so each test takes
milliseconds. They exist because docs/TESTING.md's mutation run showed the rule untested (a
survivor of `mutmut run "cnnlab.models*"`).
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import own, registry
from cnnlab.models.registry import create_model, model_info, register_model, register_object

SPEC_FORMS = "path/to/file.py:Name or package.module:Name"


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies of the registry's tables for one test (as in test_registry_details.py): what it
    files is gone after it."""
    model_info("lenet")
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_TARGETS", dict(registry._TARGETS))
    monkeypatch.setattr(registry, "_GIVEN", set(registry._GIVEN))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path.resolve()


NETS = '''
from torch import nn


class Sizes(nn.Module):
    """Keeps what it was given."""

    def __init__(self, num_classes, in_channels=1, image_size=28, width=4):
        super().__init__()
        self.given = (in_channels, image_size)
        self.head = nn.Linear(width, num_classes)


class Picky(nn.Module):
    def __init__(self, num_classes, in_channels, depth=1):
        raise ValueError(f"depth {depth} is too deep\\nand a second line")


def not_a_module(num_classes) -> nn.Module:
    return [nn.Linear(2, num_classes)]
'''


@pytest.fixture
def nets(tmp_path: Path, own_registry) -> Path:
    return write(tmp_path / "models", "nets.py", NETS)


# --- what reaches the model, and how its builder fails ------------------------------------------


def test_the_datas_channels_and_size_reach_the_model_a_square_as_its_side(nets):
    # the model's own defaults (1 channel, 28) must not win over what the run asks for
    square = create_model(f"{nets}:Sizes", in_channels=3, image_size=(8, 8))
    assert square.given == (3, 8)
    oblong = create_model(f"{nets}:Sizes", in_channels=2, image_size=(8, 6))
    assert oblong.given == (2, (8, 6))


def test_your_own_models_builder_is_called_like_a_registered_one(nets):
    builder = model_info(f"{nets}:Sizes").builder
    # the data's facts and init keyword-only, as a built-in builder's, then its own arguments
    assert str(inspect.signature(builder)) == (
        "(*, num_classes=None, in_channels=None, image_size=None, init='default', width=4)"
    )
    # init left out: the model as its class made it
    assert builder(num_classes=3, in_channels=1, image_size=(8, 8)).head.out_features == 3


def test_a_failing_model_is_named_with_every_argument_it_was_given(nets):
    with pytest.raises(ModelError) as caught:
        create_model(f"{nets}:Picky", num_classes=3, in_channels=1, depth=2)
    # image_size is not in its signature: not given, not named
    assert str(caught.value) == (
        "Picky(num_classes=3, in_channels=1, depth=2) failed: depth 2 is too deep"
    )


def test_a_function_that_returns_no_module_is_refused_naming_what_it_returned(nets):
    with pytest.raises(ModelError) as caught:
        create_model(f"{nets}:not_a_module")
    assert str(caught.value) == "not_a_module returned list, not an nn.Module"


# --- the name a class given from Python is filed under ------------------------------------------


def test_a_class_defined_in_a_function_is_filed_under_its_module_without_locals(own_registry):
    class Local(nn.Module):
        def __init__(self, num_classes=4):
            super().__init__()
            self.head = nn.Linear(2, num_classes)

    key = register_object(Local)
    name = "test_a_class_defined_in_a_function_is_filed_under_its_module_without_locals.Local"
    assert key == f"{__name__}:{name}"
    # the registry's refusal of that name again says which module filed it
    with pytest.raises(ModelError) as caught:
        register_model(input_shape=(1, 4, 4), num_classes=2, name=key)(Local)
    assert str(caught.value) == (
        f"a model named {key!r} is already registered by {__name__}; register this one under "
        "another name"
    )


@pytest.mark.parametrize("script", [True, False], ids=["script", "notebook"])
def test_a_scripts_class_is_filed_under_its_file_and_a_notebooks_under_main(
    script, tmp_path, monkeypatch, own_registry
):
    main = types.ModuleType("__main__")  # `python train.py`, or a kernel (no __file__)
    if script:
        main.__file__ = str(tmp_path / "train.py")
    monkeypatch.setitem(sys.modules, "__main__", main)

    class MyNet(nn.Module):
        __module__, __qualname__ = "__main__", "MyNet"

    expected = f"{tmp_path.resolve() / 'train.py'}:MyNet" if script else "__main__:MyNet"
    assert register_object(MyNet) == expected


# --- module objects kept for this process's rebuilds --------------------------------------------


def test_each_module_object_kept_is_rebuilt_as_a_copy_of_itself(monkeypatch):
    monkeypatch.setattr(own, "_INSTANCES", {})
    kept = [nn.Linear(2, 3), nn.Linear(2, 5)]
    tokens = [own.keep_instance(module) for module in kept]
    for module, token in zip(kept, tokens, strict=True):
        source = {"module": "mypackage.nets", "hidden_args": "Linear", "instance": token}
        rebuilt = own.build_recorded("mypackage.nets:Linear", {}, source, "run")
        assert rebuilt.out_features == module.out_features  # its own, not the other one
        # a checkpoint's weights loaded into the rebuilt model leave the trained one alone
        rebuilt.load_state_dict({"weight": torch.zeros_like(module.weight),
                                 "bias": torch.zeros_like(module.bias)})  # fmt: skip
        assert module.weight.abs().sum() > 0


# --- importing a file or a module ---------------------------------------------------------------


def test_a_model_file_that_is_not_there_is_named(tmp_path, own_registry):
    path = tmp_path.resolve() / "none.py"
    with pytest.raises(ModelError) as caught:
        model_info(f"{path}:Net")
    assert str(caught.value) == f"model file {path} does not exist; give --model {SPEC_FORMS}"


def test_a_model_file_that_cannot_be_read_is_named(tmp_path):
    folder = tmp_path.resolve() / "nets.py"  # a folder with a .py name
    folder.mkdir()
    with pytest.raises(ModelError) as caught:
        own.model_source(f"{folder}:Net")
    assert str(caught.value) == f"cannot read the model file {folder}: Is a directory"


def test_a_model_file_imports_the_file_beside_it_before_any_other_of_that_name(
    tmp_path, monkeypatch, own_registry, request
):
    module = "beside_nets_for_test"
    request.addfinalizer(lambda: sys.modules.pop(module, None))
    write(tmp_path / "elsewhere", f"{module}.py", "WIDTH = 5\n")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # first on sys.path
    write(tmp_path / "models", f"{module}.py", "WIDTH = 3\n")
    text = f"from torch import nn\nfrom {module} import WIDTH\n\n\ndef net() -> nn.Module:\n"
    path = write(tmp_path / "models", "nets.py", text + "    return nn.Linear(WIDTH, 2)\n")
    assert create_model(f"{path}:net").in_features == 3
    assert str(path.parent) not in sys.path  # only while it loads


def test_an_import_error_is_cut_to_160_characters_for_a_file_and_120_for_a_module(
    tmp_path, monkeypatch, own_registry
):
    path = write(tmp_path, "broken.py", "raise ValueError('x' * 200)\n")
    with pytest.raises(ModelError) as caught:
        model_info(f"{path}:Net")
    assert str(caught.value) == f"importing {path} failed: ValueError: {'x' * 159}…"

    write(tmp_path / "site", "broken_module_for_test.py", "raise ValueError('y' * 200)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ModelError) as caught:
        model_info("broken_module_for_test:Net")
    assert str(caught.value) == (
        f"cannot import module broken_module_for_test (ValueError: {'y' * 119}…); install it, "
        "or give the file: --model path/to/file.py:Name"
    )


# --- what a file offers, and what it may name ---------------------------------------------------

IMPORTS = """
from torch import nn
from torch.nn import Linear


def _helper() -> nn.Module:
    return Linear(1, 1)
"""


def test_the_names_a_file_offers_are_its_own_public_classes_and_functions(tmp_path, own_registry):
    # imported classes and private helpers are not offered
    path = write(tmp_path / "a", "nets.py", IMPORTS)
    with pytest.raises(ModelError) as caught:
        model_info(f"{path}:Net")
    assert str(caught.value) == f"{path} has no Net; the classes and functions it defines: none"

    path = write(tmp_path / "b", "nets.py", IMPORTS + "\n\nclass Net(nn.Module):\n    pass\n")
    with pytest.raises(ModelError) as caught:
        model_info(f"{path}:Nett")
    assert str(caught.value) == f"{path} has no Nett; the classes and functions it defines: Net"


def test_a_class_a_file_imports_is_named_where_it_is_defined(tmp_path, own_registry):
    path = write(tmp_path, "nets.py", IMPORTS)
    with pytest.raises(ModelError) as caught:
        model_info(f"{path}:Linear")
    assert str(caught.value) == (
        f"{path}:Linear is defined in torch.nn.modules.linear, not in {path}; name it where it "
        "is defined"
    )


def test_installed_code_is_refused_with_what_to_name_instead(own_registry):
    torch_init = Path(torch.__file__).resolve()
    with pytest.raises(ModelError) as caught:
        model_info(f"{torch_init}:Tensor")
    assert str(caught.value) == (
        f"{torch_init} is part of the Python installation; name an installed model by its "
        "module, package.module:Name"
    )
    # a function of an installed package, even one that says it returns an nn.Module
    name = "torch.fx.graph_module:reduce_graph_module"
    with pytest.raises(ModelError) as caught:
        model_info(name)
    assert str(caught.value) == (
        f"{name} is a function of an installed package; cnnlab calls functions of your own code "
        "only (a checkpoint names what rebuilds it): name the nn.Module class it builds"
    )


def test_a_run_naming_code_cnnlab_did_not_record_is_refused_before_it_runs(tmp_path):
    name = f"{tmp_path / 'nets.py'}:Net"
    with pytest.raises(ModelError) as caught:
        own.check_recorded(name, None, "runs/a")
    assert str(caught.value) == (
        f"runs/a names its model {name} without the source cnnlab records with it; it was not "
        "saved by cnnlab or is damaged, so its code is not run"
    )
    # an object given to cnnlab.train, in a session that is gone: its arguments are unknown
    recorded = {"file": str(tmp_path / "nets.py"), "sha256": "0" * 64, "hidden_args": "Net(3)",
                "instance": "from another session"}  # fmt: skip
    with pytest.raises(ModelError) as caught:
        own.check_recorded(name, recorded, "runs/a")
    assert str(caught.value) == (
        "runs/a: its model was given to cnnlab.train as an object, Net(3), whose arguments "
        "cnnlab cannot see to build it again; train with the class and its arguments "
        "(cnnlab.train(model=MyNet, model_args={...}) or --model FILE.py:MyNet --model-arg k=v) "
        "to rebuild it outside that session"
    )

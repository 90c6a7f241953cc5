"""The model table's cache (models/catalog.py) and details of the seed models (lenet.py,
mnist.py, cifar2.py) that the model zoo's tests in test_models.py leave open.

The table `cnnlab models` prints is computed once and cached under a key made of what it is built
from: a stale table must not be served after cnnlab, torch or torchvision is upgraded, a model
plugin is installed, upgraded or removed, or a model source file is edited. Here the computation
is replaced by a counter (building the real table takes seconds; test_startup.py checks that),
so each test shows, in milliseconds, when the table is computed again and when the cache answers.

The seed-model tests build their models themselves, at small widths: each checks one rule (the
model's name in a too-small-input error, where dropout and batch norm sit, the skip connections,
the seed's attributes). They exist because docs/TESTING.md's mutation run showed the rule
untested (a survivor of `mutmut run "cnnlab.models*"`).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import InputTooSmallError, catalog, count_parameters, create_model
from cnnlab.models.cifar2 import ResBlock

# --- the cached model table ---------------------------------------------------------------------


class CountedTables:
    """Stands in for catalog._compute: table N is [{"name": "tableN"}]."""

    def __init__(self) -> None:
        self.computed = 0

    def __call__(self) -> list[dict]:
        self.computed += 1
        return [{"name": f"table{self.computed}"}]


@pytest.fixture
def tables(monkeypatch) -> CountedTables:
    counted = CountedTables()
    monkeypatch.setattr(catalog, "_compute", counted)
    return counted


def served() -> str:
    """The table model_catalog serves, asked twice: the second answer must come from the cache
    that the first wrote (a table that is not saved costs every call the full computation)."""
    [row] = catalog.model_catalog()
    assert catalog.model_catalog() == [row]
    return row["name"]


@pytest.mark.parametrize("package", ["cnnlab", "torch", "torchvision"])
def test_a_new_cnnlab_torch_or_torchvision_version_computes_the_table_again(
    package, tables, monkeypatch
):
    real = catalog.installed_version
    assert served() == "table1"
    # only this one package is upgraded: its version alone must be part of the key
    monkeypatch.setattr(catalog, "installed_version",
                        lambda name: "99.0" if name == package else real(name))  # fmt: skip
    assert served() == "table2"
    assert tables.computed == 2  # the new table was saved beside the old one and served again


def test_installing_upgrading_or_removing_a_model_plugin_computes_the_table_again(
    tables, monkeypatch
):
    plugins: list[SimpleNamespace] = []

    def entry_points(*, group):  # importlib.metadata's, for an environment with `plugins`
        return list(plugins) if group == "cnnlab.models" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    def plugin(version: str | None) -> SimpleNamespace:
        dist = SimpleNamespace(version=version) if version else None
        return SimpleNamespace(name="tinyzoo", value="tinyzoo.models", dist=dist)

    assert served() == "table1"
    plugins[:] = [plugin("1.0")]  # installed
    assert served() == "table2"
    plugins[:] = [plugin("2.0")]  # upgraded: new models may be in it
    assert served() == "table3"
    # an entry point with no distribution behind it (a plugin on sys.path, not installed)
    plugins[:] = [plugin(None)]
    assert served() == "table4"
    plugins[:] = []  # removed: its models must leave the table
    assert served() == "table1"  # the first table, still cached under the first key
    assert tables.computed == 4


def test_editing_a_model_source_file_computes_the_table_again(tables, tmp_path, monkeypatch):
    # an installed cnnlab's models/ folder is not the test's to edit: _key reads the folder next
    # to the module's __file__, so point that at a folder of its own
    models = tmp_path / "models"
    models.mkdir()
    (models / "catalog.py").write_text("# the catalog\n")
    mine = models / "mine.py"
    mine.write_text("WIDTH = 8\n")
    os.utime(mine, ns=(10**18, 10**18))
    monkeypatch.setattr(catalog, "__file__", str(models / "catalog.py"))
    assert served() == "table1"
    mine.write_text("WIDTH = 16\n")  # a longer file
    os.utime(mine, ns=(10**18, 10**18))
    assert served() == "table2"
    mine.write_text("WIDTH = 32\n")  # the same size, written later
    os.utime(mine, ns=(2 * 10**18, 2 * 10**18))
    assert served() == "table3"
    (models / "notes.txt").write_text("not a model source")
    assert served() == "table3"


def test_the_table_is_saved_into_a_cache_folder_that_does_not_exist_yet(
    tables, tmp_path, monkeypatch
):
    cache = tmp_path / "new" / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    assert served() == "table1"
    assert tables.computed == 1
    [saved] = (cache / "models").glob("catalog-*.json")
    assert saved.read_text(encoding="utf-8") == '[{"name": "table1"}]'


# --- the model named in a too-small-input error -------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["lenet", "lenet_relu", "mnist_cnn", "mnist_cnn_deep", "net", "net_width", "net_dropout",
     "net_batchnorm", "net_res", "net_res_deep", "net_res_stages"],
)  # fmt: skip
def test_a_too_small_input_error_starts_with_the_models_name(name):
    with pytest.raises(InputTooSmallError, match=f"^{name} cannot take 2×3 images: "):
        create_model(name, image_size=(2, 3))


# --- cifar2.py: dropout, batch norm, skip connections -------------------------------------------


@pytest.mark.parametrize("dropout", ["0.5", None, 0, 0.0, 1, True])
def test_dropout_must_be_a_probability_strictly_between_0_and_1(dropout):
    message = f"dropout must be a probability between 0 and 1, got {dropout!r}"
    with pytest.raises(ModelError, match=f"^{re.escape(message)}$"):
        create_model("net_dropout", dropout=dropout)


@pytest.mark.parametrize("name", ["net", "net_width"])
def test_net_and_net_width_have_no_dropout_training_changes_nothing(name):
    torch.manual_seed(0)
    model = create_model(name)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.train()(images), model.eval()(images))
    # the seed's Net and NetWidth: `print(model)` and `cnnlab summary` show no dropout layer
    assert not any(isinstance(module, nn.Dropout2d) for module in model.modules())


def test_net_dropout_drops_whole_channels_after_both_conv_blocks():
    torch.manual_seed(0)
    model = create_model("net_dropout", n_chans1=8, dropout=0.5, image_size=8).train()
    seen = {}
    model.conv2.register_forward_pre_hook(lambda m, args: seen.update(conv2=args[0]))
    model.fc1.register_forward_pre_hook(lambda m, args: seen.update(fc1=args[0]))
    model(torch.randn(4, 3, 8, 8))
    # after block 1: (4, 8, 4, 4); after block 2, flattened: (4, 4*2*2); p = 0.5 of 32 and 16
    # channels: some are zero all over, and with probability 1 - 2^-32 not all
    channels = [seen["conv2"].flatten(2), seen["fc1"].reshape(4, 4, 4)]
    for maps in channels:
        zero = (maps == 0).all(dim=2)
        assert zero.any() and not zero.all()


def test_batch_norm_and_bias_free_convs_give_hand_counted_parameters():
    # net_batchnorm, n_chans1=8: conv1 3*8*9+8 = 224, bn1 2*8 = 16, conv2 8*4*9+4 = 292,
    # bn2 2*4 = 8, fc1 4*8*8*32+32 = 8224, fc2 32*2+2 = 66 → 8830
    assert count_parameters(create_model("net_batchnorm", n_chans1=8)) == 8_830
    # net_res_stages, widths (4, 8), 1 block: stage 1 conv 3*4*9 = 108 (no bias) + bn 8 +
    # ResBlock 4*4*9 + 8 = 152 → 268; stage 2 conv 4*8*9 = 288 + bn 16 + ResBlock 8*8*9 + 16 =
    # 592 → 896; fc 8*2+2 = 18 → 1182
    model = create_model("net_res_stages", widths=[4, 8], blocks=1, image_size=16)
    assert count_parameters(model) == 1_182


@pytest.mark.parametrize(("name", "kwargs"), [("net_res", {}), ("net_res_deep", {"n_blocks": 1})])
def test_net_res_convs_keep_an_odd_image_size(name, kwargs):
    # 30 → 15 → 7 → 3 with convs that keep H×W; a first conv that grew it (32 → 16 → 8 → 4)
    # would give fc1 more inputs than it was built for
    model = create_model(name, n_chans1=8, image_size=30, **kwargs).eval()
    assert model(torch.randn(2, 3, 30, 30)).shape == (2, 2)


def test_net_res_adds_the_skip_before_the_last_pool():
    torch.manual_seed(0)
    model = create_model("net_res", n_chans1=8).eval()
    nn.init.zeros_(model.conv3.weight)  # relu(conv3(out)) is 0: only the skip is left
    nn.init.zeros_(model.conv3.bias)
    seen = {}
    model.conv3.register_forward_pre_hook(lambda m, args: seen.update(skip=args[0]))
    model.fc1.register_forward_pre_hook(lambda m, args: seen.update(fc1=args[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen["skip"].abs().sum() > 0
    assert torch.equal(seen["fc1"], torch.flatten(F.max_pool2d(seen["skip"], 2), 1))


def test_a_res_block_whose_conv_is_zero_passes_its_input_through():
    torch.manual_seed(0)
    block = ResBlock(4).eval()
    nn.init.zeros_(block.conv.weight)  # relu(batch_norm(0)) is 0: the skip connection is left
    images = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert torch.equal(block(images), images)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("net_width", {}), ("net_dropout", {}), ("net_res", {}), ("net_res_deep", {"n_blocks": 1})],
)
def test_the_seeds_n_chans1_attribute_is_kept(name, kwargs):
    # the seed's classes keep n_chans1 and its forward reads it (view(-1, 8 * 8 * n_chans1 // 2))
    assert create_model(name, n_chans1=8, **kwargs).n_chans1 == 8

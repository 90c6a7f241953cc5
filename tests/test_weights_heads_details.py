"""ImageNet weights files (models/tv_weights.py) and where a model's head and stem are
(models/heads.py): the cache folder and the bounded download, reading a file as tensors only
(never running code, tensors saved on a GPU), each refusal's one line, and the layer found.

The weights here are a few tensors of toy models (tv_weights checks names and shapes, whatever
the architecture), the download is a stand-in and the MNASNet is built on the meta device, so
each test takes milliseconds; test_torchvision_models.py loads real torchvision weight files.
Every test exists because a mutation run showed the path untested (a survivor of
`mutmut run "cnnlab.models*"`).
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import tv_weights
from cnnlab.models.heads import first_conv_name, head_name
from helpers import relocate_checkpoint

URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
# a library's error whose first line is 81 characters: one more than the 80 the reason keeps
LONG_ERROR = "read of the weights stalled after 20 seconds with 1 byte of 46 MB in; retry later"
LONG_ERROR_CUT = "read of the weights stalled after 20 seconds with 1 byte of 46 MB in; retry…"
MESSAGE_END = "; give ImageNet weights of this architecture"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of the test's own: TORCH_HOME/hub/checkpoints."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no torch.hub.set_dir() in the way
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def socket_timeout():
    """The process's default socket timeout, put back after the test."""
    previous = socket.getdefaulttimeout()
    yield
    socket.setdefaulttimeout(previous)


def toy() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 1), nn.Linear(2, 3))


# --- pretrained: the hub cache and the download --------------------------------------------------


def test_a_download_goes_into_a_cache_folder_that_already_holds_other_weights(hub, monkeypatch):
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").write_bytes(b"cached before")

    def download(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    path = tv_weights.pretrained_file("resnet18", URL)
    assert path == hub / "resnet18-f37072fd.pth" and path.read_bytes() == b"weights"


def test_a_failed_download_gives_the_first_80_characters_of_the_reason(hub, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise OSError(f"{LONG_ERROR}\nTraceback details")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as caught:
        tv_weights.pretrained_file("resnet18", URL)
    assert f"pretrained tv_resnet18 weights ({LONG_ERROR_CUT}); put " in str(caught.value)


def test_a_download_puts_back_the_socket_timeout_the_process_had(socket_timeout, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append(socket.getdefaulttimeout())

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    socket.setdefaulttimeout(5.0)  # another library's setting, which the download must not keep
    tv_weights.download(URL, tmp_path / "resnet18-f37072fd.pth")
    assert calls == [tv_weights.DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() == 5.0


def test_a_file_name_without_a_hash_is_downloaded_unchecked(tmp_path, monkeypatch):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    url = "https://example.org/models/my-weights.pth"  # no "-<hex>." in it: nothing to check
    tv_weights.download(url, tmp_path / "my-weights.pth")
    assert calls == [(url, str(tmp_path / "my-weights.pth"), None)]


# --- reading a file ------------------------------------------------------------------------------


def test_a_missing_weights_file_says_which_files_are_taken(tmp_path):
    path = tmp_path / "w.pth"
    with pytest.raises(ModelError) as caught:
        tv_weights.read_state_dict(path)
    assert str(caught.value) == (
        f"weights file {path} does not exist; give the path of a state dict "
        "(.pth, .pt or .safetensors)"
    )


def test_weights_saved_on_a_gpu_are_read_onto_the_cpu(tmp_path):
    state = {"0.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(state, tmp_path / "cpu.pth")
    # the bytes torch.save writes on a GPU machine: without map_location this needs CUDA
    relocate_checkpoint(tmp_path / "cpu.pth", tmp_path / "gpu.pth")
    read = tv_weights.read_state_dict(tmp_path / "gpu.pth")
    assert read["0.weight"].device == torch.device("cpu")
    assert torch.equal(read["0.weight"], state["0.weight"])


class RunsCode:
    """Pickles as a call to os.mkdir(marker): what a malicious weights file can hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_weights_file_never_runs_code_even_where_torch_is_told_to_allow_it(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    path = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": RunsCode(marker)}, path)
    # turns torch.load's default to full unpickling: only an explicit weights_only=True holds
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelError) as caught:
        tv_weights.read_state_dict(path)
    assert not marker.exists()
    message = str(caught.value)
    assert message.startswith(f"cannot read {path} as a state dict (")
    assert message.endswith("give a file saved with torch.save(model.state_dict()) or safetensors")


def test_an_unreadable_file_gives_the_first_80_characters_of_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"truncated")

    def load(*args, **kwargs):
        raise RuntimeError(f"{LONG_ERROR}\nTraceback details")

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(ModelError) as caught:
        tv_weights.read_state_dict(path)
    assert str(caught.value) == (
        f"cannot read {path} as a state dict ({LONG_ERROR_CUT}); give a file saved with "
        "torch.save(model.state_dict()) or safetensors"
    )


def test_a_file_of_other_values_says_to_save_the_state_dict(tmp_path):
    path = tmp_path / "w.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelError) as caught:
        tv_weights.read_state_dict(path)
    assert str(caught.value) == (
        f"{path} holds a list that is not a state dict (names to tensors); save model.state_dict()"
    )


# --- loading into the model ----------------------------------------------------------------------


def test_a_file_in_batch_norms_old_format_loads(tmp_path):
    # files saved before BatchNorm counted its batches (version 1) have no num_batches_tracked:
    # BatchNorm fills it in when the file's format versions reach it
    torch.manual_seed(0)
    state = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).state_dict()
    del state["1.num_batches_tracked"]
    state._metadata["1"]["version"] = 1
    torch.save(state, tmp_path / "old.pth")
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    tv_weights.load_weights(model, "toy", tmp_path / "old.pth")
    assert torch.equal(model[0].weight, state["0.weight"])
    assert model[1].num_batches_tracked == 0


def test_a_file_in_a_format_the_model_refuses_says_why(tmp_path):
    # MNASNet refuses any format version but 1 and 2 with a ValueError of its own words
    state = OrderedDict({"layers.0.weight": torch.zeros(16, 3, 3, 3)})
    state._metadata = {"": {"version": 3}}
    path = tmp_path / "future.pth"
    torch.save(state, path)
    with torch.device("meta"):
        model = torchvision.models.mnasnet0_5()
    with pytest.raises(ModelError) as caught:
        tv_weights.load_weights(model, "mnasnet0_5", path)
    message = str(caught.value)
    assert message.startswith(f"{path} does not fit tv_mnasnet0_5: ") and MESSAGE_END in message
    assert "instead of 3" in message  # MNASNet's reason, as no "size mismatch" line is there


def test_a_shape_that_does_not_fit_is_named_in_at_most_160_characters(tmp_path):
    name = "classifier_head_for_the_classes_of_this_data_set"
    torch.save(nn.Sequential(OrderedDict({name: nn.Linear(4, 10, bias=False)})).state_dict(),
               tmp_path / "ten.pth")  # fmt: skip
    model = nn.Sequential(OrderedDict({name: nn.Linear(4, 3, bias=False)}))
    with pytest.raises(ModelError) as caught:
        tv_weights.load_weights(model, "toy", tmp_path / "ten.pth")
    message = str(caught.value)
    start = f"{tmp_path / 'ten.pth'} does not fit tv_toy: "
    assert message.startswith(start) and message.endswith(MESSAGE_END)
    mismatch = message[len(start) : -len(MESSAGE_END)]
    # torch's line (about 180 characters here) cut to 160
    assert mismatch.startswith(f"size mismatch for {name}.weight: copying a param with shape")
    assert len(mismatch) == 160


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        ({"drop": "1.bias"}, "1 of its tensors missing (1.bias)"),
        ({"add": "2.weight"}, "1 unknown ones (2.weight)"),
        ({"drop": "1.bias", "add": "1.beta"},
         "1 of its tensors missing (1.bias), 1 unknown ones (1.beta)"),
    ],
    ids=["missing", "unknown", "both"],
)  # fmt: skip
def test_a_file_with_other_tensor_names_says_which_are_missing_or_unknown(change, parts, tmp_path):
    state = toy().state_dict()
    if "drop" in change:
        del state[change["drop"]]
    if "add" in change:
        state[change["add"]] = torch.zeros(3)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as caught:
        tv_weights.load_weights(toy(), "toy", path)
    assert str(caught.value) == f"{path} is not a state dict of tv_toy: {parts}{MESSAGE_END}"


# --- the head and the stem -----------------------------------------------------------------------


class Embedder(nn.Module):
    """A classifier that also registers a projection after its head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.classes = nn.Linear(8, 3)
        self.embed = nn.Linear(8, 16)


def test_the_head_is_the_layer_with_the_class_count_not_the_last_layer():
    assert head_name(Embedder(), 3) == "classes"


def test_a_model_without_a_layer_for_its_classes_says_so():
    with pytest.raises(ModelError) as caught:
        head_name(Embedder(), 5)
    assert str(caught.value) == (
        "Embedder has no Linear or Conv2d layer with 5 outputs; "
        "cnnlab cannot tell its classifier head from its backbone"
    )


def test_a_model_without_a_conv_has_no_stem():
    with pytest.raises(ModelError) as caught:
        first_conv_name(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    assert str(caught.value) == "Sequential has no Conv2d layer"

"""ImageNet weights for the tv_* models: torchvision's own file, downloaded into torch's hub
cache with every wait bounded, or a user's file (--weights-file), read as tensors only
(`torch.load(weights_only=True)` or safetensors) and loaded with every name and shape checked.
"""

from __future__ import annotations

import re
import socket
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from cnnlab.errors import ModelError, first_line

# the auxiliary classifiers that GoogLeNet and Inception-v3 train with, left out here
AUX_HEADS = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# seconds a connect or a read of the weights download may stall before it is given up
DOWNLOAD_TIMEOUT_S = 20
# "resnet18-f37072fd.pth": the start of the file's SHA-256, as torch.hub checks it
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
# DenseNet files name layers "norm.1" ('.' is no longer allowed in a module name): torchvision
# renames them when it loads its own weights, and so does cnnlab
OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def pretrained_file(tv_name: str, url: str) -> Path:
    """torchvision's DEFAULT weights file (at `url`) in torch's hub cache, downloaded there if
    missing."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(urlparse(url).path).name  # where torchvision itself caches it
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        download(url, path)
    except (OSError, RuntimeError) as err:  # offline, a timeout, a bad hash, a read-only cache
        reason = first_line(err, 80)
        raise ModelError(
            f"could not download the pretrained tv_{tv_name} weights ({reason}); put {path.name} "
            f"from {url} in {folder}, or use --weights-file PATH"
        ) from None
    return path


def download(url: str, path: Path) -> None:
    """Download with every connect and read bounded: urllib would wait forever on a network
    that accepts the connection and sends nothing."""
    match = HASH_IN_NAME.search(path.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path), match.group(1) if match else None)
    finally:
        socket.setdefaulttimeout(previous)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .pth/.pt (torch.save) or .safetensors file, on the CPU."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; give the path of a state dict "
                         "(.pth, .pt or .safetensors)")  # fmt: skip
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip, safetensors and EOF errors: the file is no state dict
        reason = first_line(err, 80)
        raise ModelError(
            f"cannot read {path} as a state dict ({reason}); give a file saved with "
            "torch.save(model.state_dict()) or safetensors"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds a {type(state).__name__} that is not a state dict (names "
                         "to tensors); save model.state_dict()")  # fmt: skip
    return state


def load_weights(model: nn.Module, tv_name: str, path: Path) -> None:
    """The state dict in `path` into `model`, every name and shape matching, else a ModelError."""
    loaded = read_state_dict(path)
    aux = AUX_HEADS.get(tv_name, ())
    state = OrderedDict(
        (OLD_DENSENET_KEY.sub(r"\1\2", key), value)
        for key, value in loaded.items()
        if not key.startswith(aux)
    )
    # the layers' format versions, which torch.save keeps and safetensors drops: without them
    # MNASNet refuses to load, so a file without is taken to be in today's format
    state._metadata = getattr(loaded, "_metadata", None) or model.state_dict()._metadata
    try:
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError) as err:  # shapes that differ, a format MNASNet refuses
        mismatch = next(
            (line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)
        )
        raise ModelError(f"{path} does not fit tv_{tv_name}: {mismatch[:160]}; give ImageNet "
                         "weights of this architecture") from None  # fmt: skip
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        parts = [f"{len(missing)} of its tensors missing ({missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unknown ones ({unexpected[0]})"] if unexpected else []
        raise ModelError(f"{path} is not a state dict of tv_{tv_name}: {', '.join(parts)}; give "
                         "ImageNet weights of this architecture")  # fmt: skip

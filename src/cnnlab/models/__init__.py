"""The model zoo: every CNN of the seeds, and torchvision classifiers, by name.

    from cnnlab.models import create_model, list_models
    model = create_model("lenet", init="xavier")          # seed 001's LeNet
    model = create_model("net_res_deep", n_blocks=20)     # seed 000's deep ResNet, deeper
    model = create_model("tv_resnet18", num_classes=10, in_channels=1, pretrained=True)

`registry.py` holds the registry and `create_model`; each family has its own file (lenet, mnist,
cifar, cifar2, torchvision_models), whose builders register themselves when the registry is
first asked. torchvision_models registers every torchvision classifier as tv_<name>; as it
imports torchvision (a second or two), the registry loads it only for a tv_ name, the full list
or an unknown name, never for a seed model (tv_weights.py reads their ImageNet weights).
`own.py` builds your own model, named `path/to/file.py:Name` or `package.module:Name`, and
records and checks where its code is; installed packages register theirs through the
`cnnlab.models` entry point group. `heads.py` finds a model's classifier head and stem;
`args.py` says which builder arguments make the architecture; `catalog.py` is the table `cnnlab
models` prints, cached so listing needs no torch. Names here are imported on first use.
"""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE = {
    "ModelInfo": "registry",
    "count_parameters": "registry",
    "create_model": "registry",
    "list_models": "registry",
    "min_input_size": "registry",
    "model_info": "registry",
    "register_model": "registry",
    "INIT_SCHEMES": "init",
    "init_weights": "init",
    "InputTooSmallError": "shapes",
    "conv_output_size": "shapes",
    "model_catalog": "catalog",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)

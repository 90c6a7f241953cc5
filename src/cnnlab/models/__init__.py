"""The model zoo: every CNN of the seeds, and torchvision classifiers, by name.

    from cnnlab.models import create_model, list_models
    model = create_model("lenet", init="xavier")          # seed 001's LeNet
    model = create_model("net_res_deep", n_blocks=20)     # seed 000's deep ResNet, deeper

`registry.py` holds the registry and `create_model`; each family has its own file (lenet, mnist,
cifar, cifar2, torchvision_models), whose builders register themselves when imported here.
"""

from cnnlab.models import cifar, cifar2, lenet, mnist, torchvision_models  # noqa: F401 (registers)
from cnnlab.models.init import INIT_SCHEMES, init_weights
from cnnlab.models.registry import (
    ModelInfo,
    count_parameters,
    create_model,
    list_models,
    min_input_size,
    model_info,
    register_model,
)
from cnnlab.models.shapes import InputTooSmallError, conv_output_size

__all__ = [
    "INIT_SCHEMES",
    "InputTooSmallError",
    "ModelInfo",
    "conv_output_size",
    "count_parameters",
    "create_model",
    "init_weights",
    "list_models",
    "min_input_size",
    "model_info",
    "register_model",
]

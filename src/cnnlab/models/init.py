"""Weight initialisation schemes every builder takes as `init=`."""

from __future__ import annotations

from torch import nn

from cnnlab.config import INITS as INIT_SCHEMES  # the one list, with the --init flag's help
from cnnlab.errors import ModelError


def check_init(init: str) -> None:
    """Raise ModelError unless `init` is one of INIT_SCHEMES."""
    if init not in INIT_SCHEMES:
        raise ModelError(f"unknown init {init!r}; use one of {', '.join(INIT_SCHEMES)}")


def init_weights(model: nn.Module, init: str) -> nn.Module:
    """Re-initialise the weights of every Conv2d and Linear layer of `model` in place.

    xavier: `xavier_uniform_`, seed 001's recipe for LeNet (d2l's `init_weights`);
    kaiming: `kaiming_normal_` for ReLU networks (He et al. 2015), as seed 000 uses in its ResBlock.
    Biases and batch-norm parameters keep their values, as in seed 001.
    """
    check_init(init)
    if init == "default":
        return model
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if init == "xavier":
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model

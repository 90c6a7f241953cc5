"""Weight initialisation schemes every builder takes as `init=`, and the data-driven ones a
run applies after building (--whiten-init, --dirac-init: airbench's)."""

from __future__ import annotations

import torch
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


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first Conv2d (in registration order: the one its images meet first in every
    model here)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ModelError(f"{type(model).__name__} has no Conv2d to whiten; remove --whiten-init")
    return conv


def patch_whitening(patches: torch.Tensor, eps: float) -> torch.Tensor:
    """Filters that whiten `patches` (N, C, kh, kw): the eigenvectors of their (uncentred)
    covariance, largest first, each divided by sqrt(eigenvalue + eps), then the same negated:
    (2 · C·kh·kw, C, kh, kw). Filter k's response to the patches has variance
    λk / (λk + eps), near 1, and different filters' responses do not correlate (airbench's
    whitening init)."""
    count, channels, height, width = patches.shape
    flat = patches.reshape(count, -1).double()
    covariance = flat.T @ flat / count  # (D, D), D = C·kh·kw
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    scaled = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.flip(0)  # (D, D), largest first
    filters = scaled.reshape(-1, channels, height, width).float()
    return torch.cat([filters, -filters])


def image_patches(images: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Every kh×kw patch (stride 1, no padding) of float images (B, C, H, W): (N, C, kh, kw)."""
    channels = images.shape[1]
    patches = images.unfold(2, kernel[0], 1).unfold(3, kernel[1], 1)  # (B, C, H', W', kh, kw)
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, *kernel)


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float) -> nn.Conv2d:
    """Set the first conv's filters to whiten the patches of `images` (normalised, (B, C, H,
    W)): as many of patch_whitening's filters as it has, largest directions first (filters
    past 2·C·kh·kw keep their values). Its bias is left to learn. Returns the conv."""
    conv = first_conv(model)
    if conv.groups != 1 or conv.in_channels != images.shape[1]:
        raise ModelError(
            f"--whiten-init needs a first conv that sees every channel of the images; "
            f"{type(model).__name__}'s takes {conv.in_channels} channels in {conv.groups} groups"
        )
    filters = patch_whitening(image_patches(images.float().cpu(), conv.kernel_size), eps)
    count = min(len(filters), conv.out_channels)
    conv.weight[:count] = filters[:count].to(conv.weight.device, conv.weight.dtype)
    return conv


@torch.no_grad()
def dirac_init(model: nn.Module) -> int:
    """Identity init (airbench's): every conv of stride 1, odd kernel and 'same' padding
    passes its input through at the start, its first min(in, out) filters set by
    torch.nn.init.dirac_ (a conv that keeps its width is the identity; a widening one passes
    the input on in its first channels, the others keep their init). Biases are kept.
    Returns how many convs were set."""
    count = 0
    for conv in model.modules():
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.stride != (1, 1):
            continue
        kh, kw = conv.kernel_size
        same = conv.padding == "same" or conv.padding == (kh // 2, kw // 2)
        if kh % 2 == 1 and kw % 2 == 1 and same and conv.dilation == (1, 1):
            keep = min(conv.in_channels, conv.out_channels)
            nn.init.dirac_(conv.weight[:keep])
            count += 1
    return count

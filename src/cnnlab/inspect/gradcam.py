"""Where a model looked: Grad-CAM and input-gradient saliency of a batch of images.

    from cnnlab.inspect.gradcam import explain_batch
    found = explain_batch(model, x)             # x: (N, C, H, W), normalised as trained
    found.heatmap        # (N, H, W) Grad-CAM at the input's resolution, each image's max = 1
    found.cam            # (N, h, w) the same before upsampling, at the layer's resolution
    found.saliency       # (N, H, W) |d score / d pixel|, max over channels, max = 1

Grad-CAM (Selvaraju et al., 2017, arXiv 1610.02391) weighs the K maps A_k (h × w) of one layer
by how much the class score y_c grows with each, averaged over the map, and keeps the positive
part of the sum:  alpha_k = mean_ij dy_c/dA_k[i, j],  cam = ReLU(sum_k alpha_k A_k). y_c is the
class's logit (the pre-softmax score), as in the paper and Captum's LayerGradCam. The map is
upsampled bilinearly to the input's size and scaled so that each image's largest value is 1 (an
all-zero map stays zero: nothing in that layer raised the score).

The layer is by default the last nn.Conv2d the forward pass calls: its output, before any
activation, batch norm or pooling (as `cnnlab features` draws it). Any module can be named
instead by its path (`layer4`, `features.7`); a module called more than once gives its last call.
A 1 × 1 layer cannot say where: `Explained.where_note` says so and which layer to name instead.

Saliency (Simonyan et al., 2013, arXiv 1312.6034) is the gradient of the same score with respect
to the input, its absolute value's maximum over channels. Both come from one forward and one
backward pass in eval mode; the model's train/eval modes are restored after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError, ModelError
from cnnlab.training.device import model_device


@dataclass
class Explained:
    """Grad-CAM and saliency of N images, on the CPU; `target[i]` is the class explained."""

    layer: str  # the module path whose output Grad-CAM weighs
    logits: torch.Tensor  # (N, K) the model's output
    target: torch.Tensor  # (N,) int64: the class whose score was followed back
    cam: torch.Tensor  # (N, h, w) ReLU(sum_k alpha_k A_k), unscaled
    heatmap: torch.Tensor  # (N, H, W) cam upsampled to the input, each image's max 1
    saliency: torch.Tensor  # (N, H, W) max over channels of |d y_c / d x|, each image's max 1

    @property
    def where_note(self) -> str | None:
        """A sentence when the layer's maps are 1 × 1 (a heatmap that cannot say where)."""
        h, w = self.cam.shape[1:]
        if h * w > 1:
            return None
        return (
            f"layer {self.layer} gives 1×1 maps for this input size, so its heatmap cannot say "
            "where: name an earlier layer with a larger output (layer=... / --layer)"
        )


def explain_batch(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    layer: str | None = None,
) -> Explained:
    """Grad-CAM of `layer` (default: the last Conv2d called) and saliency for the images
    `x` (N, C, H, W), the model's input as it was trained (normalised). `target` is the class
    to explain: one for all, one per image, or None for each image's predicted class."""
    if x.ndim != 4:
        raise ConfigError(f"explain wants images as (N, C, H, W), got shape {tuple(x.shape)}")
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        convs = [name for name, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise ModelError(
            f"{type(model).__name__} has no layer named {layer!r}; its conv layers are "
            f"{', '.join(convs) or 'none'} (any module path will do)"
        )
    watched = (
        [(layer, modules[layer])]
        if layer is not None
        else [(name, m) for name, m in modules.items() if isinstance(m, nn.Conv2d)]
    )
    if not watched:
        raise ModelError(f"{type(model).__name__} has no Conv2d layer: name one with layer=...")
    device = model_device(model)
    inputs = x.detach().to(device=device, dtype=torch.float32).requires_grad_(True)
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.enable_grad():
            layer_name, activation, logits = _forward(model, inputs, watched)
            chosen = _targets(target, logits)
            score = logits.gather(1, chosen[:, None]).sum()  # images are independent in eval
            d_activation, d_input = torch.autograd.grad(score, [activation, inputs])
    finally:
        for module, training in modes:
            module.training = training
    alpha = d_activation.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = F.relu((alpha * activation).sum(dim=1)).detach()  # (N, h, w)
    heatmap = F.interpolate(cam[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)
    saliency = d_input.abs().amax(dim=1)  # (N, H, W)
    return Explained(
        layer=layer_name,
        logits=logits.detach().float().cpu(),
        target=chosen.cpu(),
        cam=cam.float().cpu(),
        heatmap=scaled(heatmap[:, 0]).cpu(),
        saliency=scaled(saliency.detach()).cpu(),
    )


def _forward(
    model: nn.Module, inputs: torch.Tensor, watched: list[tuple[str, nn.Module]]
) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(name, output) of the last watched module called, and the model's output."""
    calls: list[tuple[str, torch.Tensor]] = []

    def keep(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                raise ModelError(f"layer {name} returns {type(output).__name__}, not one tensor")
            calls.append((name, output))
            # the next layer gets a copy: an in-place ReLU after a conv would otherwise
            # overwrite the activations kept here (and their place in the graph)
            return output.clone()

        return hook

    handles = [m.register_forward_hook(keep(name or "model")) for name, m in watched]
    try:
        logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ModelError(
            f"{type(model).__name__} must return class scores (N, classes) to be explained"
        )
    if not calls:
        raise ModelError(f"the forward pass of {type(model).__name__} never called that layer")
    name, activation = calls[-1]
    if activation.ndim != 4:
        raise ModelError(
            f"layer {name} gives shape {tuple(activation.shape)}, not maps (N, C, h, w): "
            "name a conv layer or a block of them"
        )
    return name, activation, logits


def _targets(target: int | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """(N,) the class to explain per image; a class out of range is a ConfigError."""
    n, classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    chosen = torch.as_tensor(target, dtype=torch.int64, device=logits.device).reshape(-1)
    if chosen.numel() == 1:
        chosen = chosen.expand(n)
    if chosen.numel() != n:
        raise ConfigError(f"give one target class, or one per image ({n}), not {chosen.numel()}")
    if bool(((chosen < 0) | (chosen >= classes)).any()):
        raise ConfigError(f"target class out of range: the model has classes 0 to {classes - 1}")
    return chosen


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) maps each divided by its own maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(dim=1).clamp(min=torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None]


def overlay(pixels: Any, heatmap: Any, alpha: float = 0.5, cmap: str = "jet") -> Any:
    """uint8 (H, W, 3): the uint8 image (C, H, W) (grey or RGB) blended with the heatmap
    (H, W, values 0-1) through `cmap`: (1 - alpha) · image + alpha · colour."""
    import matplotlib
    import numpy as np

    image = np.asarray(pixels, dtype=np.float64)
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    colour = matplotlib.colormaps[cmap](np.asarray(heatmap, dtype=np.float64))[..., :3] * 255
    blended = (1 - alpha) * rgb.transpose(1, 2, 0) + alpha * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)

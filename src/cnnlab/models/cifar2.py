"""Seed 000's CIFAR-2 models (airplane vs bird), from "Deep Learning with PyTorch", chapter 8.

The seed grows one small tanh CNN step by step: wider (`net_width`), regularised (`net_dropout`,
`net_batchnorm`), deeper with skip connections (`net_res`, `net_res_deep`). As in the seed,
layers with weights are modules and the parameter-free tanh, ReLU and max-pooling are
functional, and the attribute names are the seed's, so the seed's state_dicts load.
Every conv is 3×3 with padding 1, which keeps H×W; each max_pool2d(2) halves it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.init import init_weights
from cnnlab.models.registry import check_int, check_widths, register_model
from cnnlab.models.shapes import require_input_size


def _pooled_size(model_name: str, image_size: tuple[int, int], n_pools: int) -> tuple[int, int]:
    """(H, W) after `n_pools` 2×2 max-pools (the 3×3 convs with padding 1 keep it): 32 → 8 for 2."""

    def pooled(height: int, width: int) -> tuple[int, int]:
        return height // 2**n_pools, width // 2**n_pools

    require_input_size(model_name, image_size, lambda h, w: min(pooled(h, w)) >= 1)
    return pooled(*image_size)


class Net(nn.Module):
    """Seed 000's `Net`, `NetWidth`, `NetDropout` and `NetBatchNorm` in one class: two blocks of
    conv → [batch norm] → tanh → max-pool → [dropout], then Linear → tanh → Linear.

    Batch norm and dropout are nn.Identity when switched off, so forward reads the same for all.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        n_chans1: int,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(in_channels, n_chans1, kernel_size=3, padding=1)
        self.conv1_batchnorm = nn.BatchNorm2d(n_chans1) if batch_norm else nn.Identity()
        self.conv1_dropout = nn.Dropout2d(p=dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv2_batchnorm = nn.BatchNorm2d(n_chans1 // 2) if batch_norm else nn.Identity()
        self.conv2_dropout = nn.Dropout2d(p=dropout) if dropout else nn.Identity()
        height, width = _pooled_size(model_name, image_size, n_pools=2)  # (8, 8) at 32×32
        self.fc1 = nn.Linear(n_chans1 // 2 * height * width, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, 32, 32)
        out = torch.tanh(self.conv1_batchnorm(self.conv1(x)))  # (N, n, 32, 32)
        out = self.conv1_dropout(F.max_pool2d(out, 2))  # (N, n, 16, 16)
        out = torch.tanh(self.conv2_batchnorm(self.conv2(out)))  # (N, n/2, 16, 16)
        out = self.conv2_dropout(F.max_pool2d(out, 2))  # (N, n/2, 8, 8)
        # flatten(1), not the seed's view(-1, 512): a wrong size then fails instead of silently
        # folding pixels into the batch dimension.
        out = torch.flatten(out, 1)  # (N, 8*8*n/2)
        out = torch.tanh(self.fc1(out))  # (N, 32)
        return self.fc2(out)  # (N, num_classes)


class NetRes(nn.Module):
    """Seed 000's `NetRes`: three ReLU convs (n, n/2, n/2), a skip connection around the third."""

    def __init__(
        self, num_classes: int, in_channels: int, image_size: tuple[int, int], n_chans1: int
    ) -> None:
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(in_channels, n_chans1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(n_chans1 // 2, n_chans1 // 2, kernel_size=3, padding=1)
        height, width = _pooled_size("net_res", image_size, n_pools=3)  # (4, 4) at 32×32
        self.fc1 = nn.Linear(n_chans1 // 2 * height * width, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, 32, 32)
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)  # (N, n, 16, 16)
        out = F.max_pool2d(torch.relu(self.conv2(out)), 2)  # (N, n/2, 8, 8)
        skip = out
        # The seed's order: add the skip to relu(conv3(out)), then pool the sum.
        out = F.max_pool2d(torch.relu(self.conv3(out)) + skip, 2)  # (N, n/2, 4, 4)
        out = torch.flatten(out, 1)  # (N, 4*4*n/2)
        out = torch.relu(self.fc1(out))  # (N, 32)
        return self.fc2(out)  # (N, num_classes)


class ResBlock(nn.Module):
    """Seed 000's ResBlock: conv 3×3 (no bias: batch norm adds one) → BatchNorm → ReLU, + input.

    The seed's init: Kaiming-normal conv weights for ReLU, batch-norm weight 0.5 and bias 0, so
    each block starts close to the identity and a deep stack trains.
    """

    def __init__(self, n_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_chans, n_chans, kernel_size=3, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(num_features=n_chans)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        nn.init.constant_(self.batch_norm.weight, 0.5)
        nn.init.zeros_(self.batch_norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, n, H, W), kept
        out = torch.relu(self.batch_norm(self.conv(x)))
        return out + x


class NetResDeep(nn.Module):
    """Seed 000's deep `Net`: conv, `n_blocks` ResBlocks, pooling, Linear → ReLU → Linear."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        n_chans1: int,
        n_blocks: int,
        share_weights: bool,
    ) -> None:
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = nn.Conv2d(in_channels, n_chans1, kernel_size=3, padding=1)
        if share_weights:
            # The seed's `n_blocks * [ResBlock(n)]`: a list of n_blocks references to ONE block.
            blocks = n_blocks * [ResBlock(n_chans1)]
        else:
            blocks = [ResBlock(n_chans1) for _ in range(n_blocks)]
        self.resblocks = nn.Sequential(*blocks)
        height, width = _pooled_size("net_res_deep", image_size, n_pools=2)  # (8, 8) at 32×32
        self.fc1 = nn.Linear(n_chans1 * height * width, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, 32, 32)
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)  # (N, n, 16, 16)
        out = self.resblocks(out)  # (N, n, 16, 16)
        out = F.max_pool2d(out, 2)  # (N, n, 8, 8)
        out = torch.flatten(out, 1)  # (N, 8*8*n)
        out = torch.relu(self.fc1(out))  # (N, 32)
        return self.fc2(out)  # (N, num_classes)


def _check_dropout(dropout: float) -> float:
    """`dropout` if it is a probability in (0, 1), else a ModelError."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 < dropout < 1:
        raise ModelError(f"dropout must be a probability between 0 and 1, got {dropout!r}")
    return float(dropout)


# --- the builders -------------------------------------------------------------------------------

CIFAR2 = dict(input_shape=(3, 32, 32), num_classes=2, seed="000")


@register_model(**CIFAR2, description="seed 000's Net: two 3×3 convs (16, 8) with tanh, max-pool")
def net(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
) -> Net:
    """Seed 000's first CNN: Conv(3,16,3,p1) tanh maxpool2 Conv(16,8,3,p1) tanh maxpool2 flatten
    Linear(512,32) tanh Linear(32,2); 18,090 parameters. Reported: train acc 0.9368, val 0.8995.

    The seed writes it first as an nn.Sequential that has no Flatten between the last pool and
    Linear(512, 32), so it fails on (N, 8, 8, 8) feature maps; here it is flattened, as the
    seed's `Net` class does with view(-1, 512).
    """
    model = Net("net", num_classes, in_channels, image_size, n_chans1=16)
    return init_weights(model, init)


@register_model(**CIFAR2, description="seed 000's NetWidth: net with n_chans1 (32) conv channels")
def net_width(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    n_chans1: int = 32,
) -> Net:
    """Seed 000's NetWidth: conv1 3→n, conv2 n→n/2, fc 8*8*n/2 → 32 → 2 (more capacity, and
    more overfitting, than `net`); 38,386 parameters at n_chans1=32."""
    n_chans1 = check_int("n_chans1", n_chans1, 2)
    model = Net("net_width", num_classes, in_channels, image_size, n_chans1)
    return init_weights(model, init)


@register_model(**CIFAR2, description="seed 000's NetDropout: net_width with Dropout2d(0.4)")
def net_dropout(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    n_chans1: int = 32,
    dropout: float = 0.4,
) -> Net:
    """Seed 000's NetDropout: `net_width` with Dropout2d(p=dropout, 0.4 in the seed) after each
    conv block, which zeroes whole channels in training and nothing in eval mode; 38,386
    parameters at n_chans1=32."""
    n_chans1 = check_int("n_chans1", n_chans1, 2)
    model = Net(
        "net_dropout", num_classes, in_channels, image_size, n_chans1, _check_dropout(dropout)
    )
    return init_weights(model, init)


@register_model(**CIFAR2, description="seed 000's NetBatchNorm: net_width with BatchNorm2d")
def net_batchnorm(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    n_chans1: int = 32,
) -> Net:
    """Seed 000's NetBatchNorm: `net_width` with BatchNorm2d after each conv, before tanh;
    38,482 parameters at n_chans1=32 (the running mean and variance are buffers, not counted)."""
    n_chans1 = check_int("n_chans1", n_chans1, 2)
    model = Net("net_batchnorm", num_classes, in_channels, image_size, n_chans1, batch_norm=True)
    return init_weights(model, init)


@register_model(**CIFAR2, description="seed 000's NetRes: three ReLU convs, one skip connection")
def net_res(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    n_chans1: int = 32,
) -> NetRes:
    """Seed 000's NetRes: convs n, n/2, n/2 with ReLU, the third with a skip connection,
    fc 4*4*n/2 → 32 → 2; 16,130 parameters at n_chans1=32."""
    n_chans1 = check_int("n_chans1", n_chans1, 2)
    model = NetRes(num_classes, in_channels, image_size, n_chans1)
    return init_weights(model, init)


@register_model(**CIFAR2, description="seed 000's NetResDeep: n_blocks (10) residual blocks")
def net_res_deep(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    n_chans1: int = 32,
    n_blocks: int = 10,
    share_weights: bool = False,
) -> NetResDeep:
    """Seed 000's NetResDeep: conv 3→n, n_blocks ResBlocks, fc 8*8*n → 32 → 2; 159,330
    parameters at the defaults. The seed trains it with SGD lr 3e-3 (train acc 1.0, val 0.8835).

    The seed builds the stack as `nn.Sequential(*(n_blocks * [ResBlock(n)]))`. Multiplying a list
    repeats its element, not a copy of it: the list holds n_blocks references to ONE ResBlock, so
    all "ten" blocks share one set of weights (75,810 parameters in all, not 159,330). cnnlab
    builds n_blocks distinct blocks; share_weights=True builds the seed's shared stack on purpose.
    init="default" is the seed's init of the blocks (see ResBlock).
    """
    n_chans1 = check_int("n_chans1", n_chans1, 2)
    n_blocks = check_int("n_blocks", n_blocks, 0)
    if not isinstance(share_weights, bool):
        raise ModelError(f"share_weights must be True or False, got {share_weights!r}")
    model = NetResDeep(num_classes, in_channels, image_size, n_chans1, n_blocks, share_weights)
    return init_weights(model, init)


class NetResStages(nn.Module):
    """Seed 000's ResBlocks in stages that halve H×W and widen the channels, as ResNets do.

    Each stage: conv 3×3 to its width (no bias) → max-pool 2 → BatchNorm → ReLU, then `blocks`
    ResBlocks at that size; the head: global max-pool → Linear. The seed's NetResDeep keeps all
    its blocks at 16×16 with 32 channels; moving the later blocks to 8×8 and 4×4 lets them be
    wider for about the same work (the layout of airbench's CIFAR-10 net).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: tuple[int, int],
        widths: tuple[int, ...],
        blocks: int,
    ) -> None:
        super().__init__()
        _pooled_size("net_res_stages", image_size, n_pools=len(widths))
        stages, previous = [], in_channels
        for width in widths:
            downsample = [
                nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            stages.append(nn.Sequential(*downsample, *(ResBlock(width) for _ in range(blocks))))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 3, 32, 32)
        out = self.stages(x)  # (N, widths[-1], 4, 4) for three stages
        out = torch.amax(out, dim=(2, 3))  # (N, widths[-1]): global max-pool
        return self.fc(out)  # (N, num_classes)


@register_model(
    **CIFAR2,
    description="net_res_deep's ResBlocks in three stages (32, 64, 128 channels; 16, 8, 4 px)",
)
def net_res_stages(
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    init: str = "default",
    widths: tuple[int, ...] = (32, 64, 128),
    blocks: int = 1,
) -> NetResStages:
    """Not in the seed: the modern recipes' model (`cnnlab recipes '*modern'`). Stages of (conv →
    max-pool → BatchNorm → ReLU, `blocks` of seed 000's ResBlock), widths (32, 64, 128), a global
    max-pool and one Linear; 287,714 parameters at the defaults for 2 classes."""
    widths = check_widths(widths, "[32, 64, 128]")
    blocks = check_int("blocks", blocks, 0)
    model = NetResStages(num_classes, in_channels, image_size, widths, blocks)
    return init_weights(model, init)

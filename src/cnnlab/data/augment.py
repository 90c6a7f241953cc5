"""Batched augmentation: random crop with padding and horizontal flip on whole batches.

As in airbench, one call handles a batch (B, C, H, W) with tensor ops on its device; there is
no Python loop over samples. Random numbers come from a CPU torch.Generator, so a given seed
gives the same augmentation on any device.
"""

from __future__ import annotations

import torch


def augment_padding(height: int) -> int:
    """The crop padding for images `height` pixels high: H // 8 (4 for 32x32, as in
    torchvision's RandomCrop(32, padding=4) recipe for CIFAR; 3 for 28x28)."""
    return max(1, height // 8)


def crop(
    images: torch.Tensor,
    padding: int,
    top: torch.Tensor,
    left: torch.Tensor,
) -> torch.Tensor:
    """Pad each image by `padding` on every side and cut the original size at (top[i], left[i]).

    images: (B, C, H, W); top, left: (B,) integers in [0, 2 * padding]; the padding is 0
    (black uint8 pixels). Returns (B, C, H, W) of the same dtype.
    """
    batch, channels, height, width = images.shape
    device = images.device
    padded_shape = (batch, channels, height + 2 * padding, width + 2 * padding)
    padded = images.new_zeros(padded_shape)
    padded[:, :, padding : padding + height, padding : padding + width] = images
    # one gather with broadcast index tensors picks every sample's own window
    rows = (top.to(device).view(batch, 1) + torch.arange(height, device=device)).view(
        batch, 1, height, 1
    )
    cols = (left.to(device).view(batch, 1) + torch.arange(width, device=device)).view(
        batch, 1, 1, width
    )
    samples = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    chans = torch.arange(channels, device=device).view(1, channels, 1, 1)
    return padded[samples, chans, rows, cols]  # (B, C, H, W)


def random_crop(
    images: torch.Tensor,
    padding: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Zero-pad by `padding` and crop back at a random offset per sample, like torchvision's
    RandomCrop(size, padding=padding) applied to each image of the batch (B, C, H, W)."""
    offsets = torch.randint(0, 2 * padding + 1, (2, images.shape[0]), generator=generator)
    return crop(images, padding, offsets[0], offsets[1])


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image of (B, C, H, W) left-right with probability 0.5."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5  # (B,)
    flip = flip.to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(3), images)


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The training augmentation: random crop (padding H // 8) then random horizontal flip."""
    images = random_crop(images, augment_padding(images.shape[2]), generator)
    return random_flip(images, generator)

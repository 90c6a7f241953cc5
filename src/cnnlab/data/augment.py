"""Batched augmentation: random crop with padding (zeros or reflected), horizontal flip (random
or airbench's alternating) and JPEG compression on whole batches.

As in airbench, one call handles a batch (B, C, H, W) with tensor ops on its device; there is
no Python loop over samples. Random numbers come from a CPU torch.Generator, so a given seed
gives the same augmentation on any device. Under torchrun a process holds rows `rows` of a
batch: the draws are made for the whole batch and its rows are taken, so an image is augmented
the same way whichever process trains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
import torch

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """How a training batch is augmented: crop `padding` pixels (None: H // 8, 0: no crop) of
    `pad_mode` padding, then `flip` (random: each image with chance 1/2; alternate: airbench's
    derandomised flip, each image one way in even epochs and the other way in odd ones, which
    one decided once per image by a seeded coin; none)."""

    padding: int | None = None
    pad_mode: str = "zeros"
    flip: str = "random"

    def padding_for(self, height: int) -> int:
        return augment_padding(height) if self.padding is None else self.padding


def augment_padding(height: int) -> int:
    """The crop padding for images `height` pixels high: H // 8 (4 for 32x32, as in
    torchvision's RandomCrop(32, padding=4) recipe for CIFAR; 3 for 28x28)."""
    return max(1, height // 8)


def reflected(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates in [-size + 1, 2 * size - 1) mapped into the image as reflect padding
    maps them (numpy's and torch's 'reflect': the edge pixel is not repeated)."""
    coords = coords.abs()
    return torch.where(coords >= size, 2 * (size - 1) - coords, coords)


def crop(
    images: torch.Tensor,
    padding: int,
    top: torch.Tensor,
    left: torch.Tensor,
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """Pad each image by `padding` on every side and cut the original size at (top[i], left[i]).

    images: (B, C, H, W); top, left: (B,) integers in [0, 2 * padding]; the padding is 0
    (black pixels) or, with pad_mode "reflect", the image reflected at its edges (padding
    below H and W). Returns (B, C, H, W) of the same dtype.
    """
    batch, channels, height, width = images.shape
    device = images.device
    # one gather with broadcast index tensors picks every sample's own window
    rows = top.to(device).view(batch, 1) + torch.arange(height, device=device)  # (B, H)
    cols = left.to(device).view(batch, 1) + torch.arange(width, device=device)  # (B, W)
    if pad_mode == "reflect":  # read straight from the image, no padded copy
        source = images
        rows, cols = reflected(rows - padding, height), reflected(cols - padding, width)
    else:
        padded_shape = (batch, channels, height + 2 * padding, width + 2 * padding)
        source = images.new_zeros(padded_shape)
        source[:, :, padding : padding + height, padding : padding + width] = images
    samples = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    chans = torch.arange(channels, device=device).view(1, channels, 1, 1)
    return source[samples, chans, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]


def random_crop(
    images: torch.Tensor,
    padding: int,
    generator: torch.Generator,
    rows: tuple[int, int, int] | None = None,
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """Pad by `padding` and crop back at a random offset per sample, like torchvision's
    RandomCrop(size, padding=padding, padding_mode=...) applied to each image of the batch
    (B, C, H, W). `rows` (start, stop, batch): the images are those rows of a larger batch
    (see the top)."""
    start, stop, batch = rows or (0, images.shape[0], images.shape[0])
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)[:, start:stop]
    return crop(images, padding, offsets[0], offsets[1], pad_mode)


def random_flip(
    images: torch.Tensor, generator: torch.Generator, rows: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Mirror each image of (B, C, H, W) left-right with probability 0.5."""
    start, stop, batch = rows or (0, images.shape[0], images.shape[0])
    flip = torch.rand(batch, generator=generator)[start:stop] < 0.5  # (B,)
    return flipped_where(images, flip)


def flipped_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, H, W) mirrored left-right where `flip` (B,) is true."""
    flip = flip.to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(3), images)


def alternating_flips(coins: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: image i is mirrored in epoch e where coins[i] xor (e odd),
    so over any two epochs in a row it is seen once each way. coins: (N,) bool, one per
    image of the data set; indices: (B,) the batch's images. Returns (B,) bool."""
    return coins[indices.cpu()] ^ bool(epoch % 2)


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    rows: tuple[int, int, int] | None = None,
    how: Augment = Augment(),
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training augmentation: random crop (padding H // 8 unless `how` says), then the
    flip: random, or `flips` (B,) bool where `how.flip` is alternate (alternating_flips)."""
    padding = how.padding_for(images.shape[2])
    if padding:
        images = random_crop(images, padding, generator, rows, how.pad_mode)
    if how.flip == "alternate":
        return flipped_where(images, flips)
    if how.flip == "random":
        return random_flip(images, generator, rows)
    return images


def jpeg_round_trip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A uint8 (C, H, W) CPU image saved as JPEG at `quality` (1-100) and decoded again, with
    Pillow (what decoded ../shared/data's JPEG test images). C is 1 (grey) or 3 (RGB)."""
    from PIL import Image

    channels = image.shape[0]
    if channels not in (1, 3):
        raise ConfigError(f"jpeg_quality needs grey or RGB images, these have {channels} channels")
    pixels = image.permute(1, 2, 0).numpy()  # (H, W, C)
    buffer = BytesIO()
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(
        buffer, format="JPEG", quality=quality
    )
    decoded = torch.from_numpy(np.asarray(Image.open(buffer)).copy())  # (H, W) or (H, W, 3)
    return decoded.view(*image.shape[1:], channels).permute(2, 0, 1)


class JpegCopies:
    """The JPEG round trips of a data set's images, each made the first time it is asked for
    and kept, by the image's place in the data set, on the images' device: the round trip is a
    function of the image alone, so a later epoch's copy is the same bytes (which images are
    compressed is drawn as before). For in-memory data sets, whose memory this doubles (every
    torchrun process keeps its own): CIFAR-10's loader at quality 75 takes a third of its time
    by the fourth epoch (a 2-core AMD EPYC; Pillow takes ~0.24 ms an image)."""

    def __init__(self, images: torch.Tensor, quality: int) -> None:
        self.quality = quality
        self.store = torch.empty_like(images)  # (N, C, H, W) uint8: row i is image i's copy
        self.made = torch.zeros(len(images), dtype=torch.bool)  # which rows hold one

    def of(self, images: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
        """The copies of `images` (B, C, H, W), which are the data set's images at `places`
        (B,), coding those not coded before."""
        places = places.cpu()
        new = ~self.made[places]
        if new.any():
            fresh = images[new.to(images.device)].cpu()
            coded = torch.stack([jpeg_round_trip(image, self.quality) for image in fresh])
            self.store[places[new].to(self.store.device)] = coded.to(self.store.device)
            self.made[places[new]] = True
        return self.store[places.to(self.store.device)]


def random_jpeg(
    images: torch.Tensor,
    quality: int,
    generator: torch.Generator,
    rows: tuple[int, int, int] | None = None,
    *,
    copies: JpegCopies | None = None,
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replace each uint8 image of (B, C, H, W) with probability 0.5 by its JPEG round trip at
    `quality`: for test images that were saved as JPEG (most of ../shared/data's CIFAR-10 test
    set) while the training images are lossless, so the net learns to ignore the artifacts.
    Pillow codes one image at a time on the CPU (~0.24 ms for 32x32 RGB); with `copies` (of
    the data set at this quality) and the images' places in the data set (`indices`, (B,)),
    each image is coded once."""
    if (copies is None) != (indices is None):
        raise ValueError("random_jpeg takes copies and indices together, or neither")
    start, stop, batch = rows or (0, images.shape[0], images.shape[0])
    chosen = (torch.rand(batch, generator=generator)[start:stop] < 0.5).nonzero().flatten()
    if len(chosen) == 0:
        return images
    on_device = chosen.to(images.device)
    originals = images.index_select(0, on_device)
    if copies is not None:
        compressed = copies.of(originals, indices.cpu()[chosen])
    else:
        compressed = torch.stack([jpeg_round_trip(image, quality) for image in originals.cpu()])
    result = images.clone()
    result[on_device] = compressed.to(images.device)
    return result

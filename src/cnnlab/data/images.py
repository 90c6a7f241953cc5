"""One image file → the tensor a model was trained on: read, convert, resize, normalise.

    pixels = read_image("cat.jpg", channels=3, size=(32, 32))   # uint8 (3, 32, 32)
    x = normalize(pixels, mean, std)                             # float32, as the loaders give

Images are converted and resized exactly as `folder:` data sets read theirs (folder.py): PIL
`convert` to the model's mode ("L" for 1 channel, "RGB" for 3), then torchvision's Resize on a
PIL image, which is PIL's bilinear `resize` to (H, W) (called here directly, so reading one
file does not wait seconds for torchvision). `normalize` is the loaders' own formula, so an
image read here gives the same floats as the same pixels in a batch.

Which files fit which model (the channel rule):

* 1-channel model: any 8-bit image, converted to grayscale (PIL's "L", ITU-R 601-2 luma).
* 3-channel model: any 8-bit image, converted to RGB (grey is repeated in all three channels,
  palette and CMYK images are expanded).
* An alpha channel is accepted when every pixel is opaque (screenshots are often RGBA), and
  refused when some pixel is transparent: the model never saw transparency, and dropping it
  would show the model whatever colour hides under the transparent pixels (often black), not
  what the user sees.
* 16-bit and 32-bit images (PIL modes I;16, I, F) are refused: PIL converts them to 8 bits by
  clipping at 255, not by scaling, which turns most of a 16-bit image white.
* A model trained on other than 1 or 3 channels (an npz: data set can have 2 or 4) cannot take
  an image file at all.
* Of an animation or a multi-page file, the first frame is read (as folder: data sets do).

Every failure is a DataFormatError with one line naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.loader import _Normalise
from cnnlab.errors import DataFormatError, first_line

MODES = {1: "L", 3: "RGB"}  # the PIL mode a model with this many input channels is given
WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}  # and every "I;16..." mode


def read_image(path: str | Path, channels: int, size: int | Sequence[int]) -> torch.Tensor:
    """The image file at `path` as uint8 (channels, H, W), converted as the module docstring
    says and resized to `size` ((H, W), or one number for a square)."""
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    image = open_image(path, channels)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)  # (H, W) or (H, W, 3), a copy torch may own
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def open_image(path: str | Path, channels: int) -> Image.Image:
    """The decoded PIL image at `path`, converted to the mode of a `channels`-channel model
    ("L" or "RGB"), full size; DataFormatError for anything the channel rule refuses."""
    path = Path(path)
    if channels not in MODES:
        raise DataFormatError(
            f"the model takes {channels}-channel images; an image file gives 1 (grayscale) or "
            f"3 (RGB), so {path} cannot be shown to it"
        )
    if not path.exists():
        raise DataFormatError(f"image {path} does not exist")
    if path.is_dir():
        raise DataFormatError(f"image {path} is a folder; give an image file")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            _check_convertible(image, path, channels)
            return image.convert(MODES[channels])
    except DataFormatError:
        raise
    except Exception as err:  # PIL raises many kinds for broken or foreign files
        raise DataFormatError(_unreadable(path, err)) from None


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (C, H, W) or (N, C, H, W) → float32 (pixel / 255 - mean) / std per channel,
    on the images' device: the loaders' formula (loader._Normalise), bit for bit."""
    batched = images.ndim == 4
    batch = images if batched else images.unsqueeze(0)
    if batch.ndim != 4:
        raise ValueError(f"normalize wants (C, H, W) or (N, C, H, W) images, got {images.shape}")
    out = _Normalise(mean, std, batch.shape[1], batch.device)(batch)
    return out if batched else out[0]


def _check_convertible(image: Image.Image, path: Path, channels: int) -> None:
    mode = image.mode
    if mode in WIDE_MODES or mode.startswith("I;16"):
        kind = WIDE_MODES.get(mode, "16-bit")
        raise DataFormatError(
            f"{path} has {kind} pixels (PIL mode {mode}); the model takes 8-bit images, and "
            "PIL would clip these at 255: save it as an 8-bit PNG or JPEG first"
        )
    if _has_transparency(image):
        alpha = image.convert("RGBA").getchannel("A")
        lowest, _ = alpha.getextrema()
        if lowest < 255:
            raise DataFormatError(
                f"{path} has transparent pixels (PIL mode {mode}); the model takes "
                f"{MODES[channels]} images without transparency: flatten it onto a background "
                "first"
            )


def _has_transparency(image: Image.Image) -> bool:
    has = getattr(image, "has_transparency_data", None)  # Pillow 10.1+
    if has is not None:
        return bool(has)
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _unreadable(path: Path, err: Exception) -> str:
    if isinstance(err, PermissionError):
        return f"image {path} cannot be read: permission denied"
    text = first_line(err)
    if "cannot identify image file" in text:
        return f"{path} is not an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)"
    return f"{path} is not a readable image ({type(err).__name__}: {text}); fix or replace it"

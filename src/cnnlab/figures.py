"""matplotlib Figures without pyplot and without torch: grids of tiles, PNG bytes, PNG files.

Every picture cnnlab draws (filters, feature maps, plots, the compare curves) is a
`matplotlib.figure.Figure` made without pyplot: it draws on the Agg canvas whatever the backend
(no display needed, no backend switched under a notebook, nothing left open in pyplot's list).
`tile_figure` pastes small images (filters, feature maps) into one figure under their labels,
of the pixel size `grid_layout` gives beforehand; `render_png` makes any figure PNG bytes and
`write_pngs` writes them. inspect/ and report/ both draw with these: they live here, below both.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# A report shows these figures at their own pixel size, so a point is what it is on screen there:
# labels at FONT points are 12.5 pixels high, and eight columns of tiles (1,040 pixels) fit the
# report's 1,100-pixel column without being scaled down.
DPI = 100  # pixels per inch of every tile figure (filters, feature maps, input.png)
TILE = 1.3  # inches per tile (130 pixels): small maps are drawn with nearest-neighbour pixels
TITLE = 0.6  # inches above the tiles for the figure's two title lines
MIN_WIDTH = 6.0  # inches: room for the two title lines when there are few tiles
MAX_COLUMNS = 8
FONT = 9  # points, tile labels and the subtitle; the title is one point larger
LABEL_HEIGHT = 18  # pixels above each tile for its label (FONT points and the descenders)


def render_png(fig: Figure) -> bytes:
    """The figure as PNG bytes: RGB (no alpha), white background, of its exact pixel size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    fig.set_facecolor("white")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buffer = io.BytesIO()
    # zlib's default level: optimize=True made the files 3% smaller and took 5 times as long
    # (0.44 s against 0.09 s for a report's figures)
    Image.fromarray(rgb).save(buffer, format="png")
    return buffer.getvalue()


@dataclass(frozen=True)
class GridLayout:
    """Where the tiles of a figure go: `columns` × `rows` tiles under a title band."""

    tiles: int
    columns: int
    rows: int

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) in inches."""
        return max(self.columns * TILE, MIN_WIDTH), self.rows * TILE + TITLE

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        width, height = self.size
        return round(width * DPI), round(height * DPI)


def grid_layout(tiles: int, columns: int | None = None) -> GridLayout:
    """About square (at most MAX_COLUMNS wide), or `columns` wide (one filter per row)."""
    tiles = max(int(tiles), 1)
    if columns is None:
        columns = min(math.ceil(math.sqrt(tiles)), MAX_COLUMNS)
    columns = max(1, min(columns, tiles))
    return GridLayout(tiles, columns, math.ceil(tiles / columns))


def tile_figure(
    layout: GridLayout, tiles: list[np.ndarray], labels: list[str], title: str, subtitle: str
) -> Figure:
    """A figure of layout.pixels: the tiles pasted row by row into one image (one axes, fast
    for 64 tiles), each under its label, below the two title lines."""
    from matplotlib.figure import Figure

    width, height = layout.pixels
    tile, band = round(TILE * DPI), round(TITLE * DPI)
    label_h, pad = LABEL_HEIGHT, 4  # pixels: the label above each tile, the margin around it
    canvas = np.full((layout.rows * tile, width, 3), 255, dtype=np.uint8)
    left0 = (width - layout.columns * tile) // 2
    fig = Figure(figsize=layout.size, dpi=DPI)
    for i, (pixels, label) in enumerate(zip(tiles, labels, strict=True)):
        row, col = divmod(i, layout.columns)
        fitted = fit(pixels, tile - label_h - pad, tile - 2 * pad)
        top = row * tile + label_h + (tile - label_h - pad - fitted.shape[0]) // 2
        left = left0 + col * tile + (tile - fitted.shape[1]) // 2
        canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
        x, y = (left0 + col * tile + tile / 2) / width, 1 - (band + row * tile + 2) / height
        fig.text(x, y, label, ha="center", va="top", fontsize=FONT)
    ax = fig.add_axes((0, 0, 1, layout.rows * tile / height))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    titles(fig, title, subtitle)
    return fig


def titles(fig: Figure, title: str, subtitle: str) -> None:
    height = fig.get_figheight()
    fig.text(0.5, 1 - 0.06 / height, title, ha="center", va="top", fontsize=FONT + 1)
    fig.text(0.5, 1 - 0.3 / height, subtitle, ha="center", va="top", fontsize=FONT, color="0.3")


def fit(tile: np.ndarray, box_h: int, box_w: int) -> np.ndarray:
    """`tile` enlarged by a whole factor (crisp pixels) or shrunk (box filter) to fit a box."""
    from PIL import Image

    h, w = tile.shape[:2]
    k = min(box_h // h, box_w // w)
    if k >= 1:
        return tile.repeat(k, axis=0).repeat(k, axis=1)
    scale = min(box_h / h, box_w / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(tile).resize(size, Image.Resampling.BOX))


def shorten(text: str, limit: int = 40) -> str:
    """`text`, or its start and end around an ellipsis when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    keep = (limit - 1) // 2
    return f"{text[:keep]}…{text[-keep:]}"


def write_pngs(folder: Path, pngs: list[tuple[str, bytes]]) -> list[Path]:
    """Write each (file name, PNG bytes) into `folder` (made if needed), each file atomically,
    readable by all; a ConfigError names the file that could not be written."""
    from cnnlab.files import publish_bytes, write_failure_as_config_error

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output folder {folder}: {err.strerror or err}") from None
    paths = []
    for name, data in pngs:
        path = folder / name
        with write_failure_as_config_error(path):
            publish_bytes(path, data)
        paths.append(path)
    return paths

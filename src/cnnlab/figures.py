"""matplotlib Figures to PNG bytes, without pyplot and without torch.

Every picture cnnlab draws (filters, feature maps, plots, the compare curves) is a
`matplotlib.figure.Figure` made without pyplot: it draws on the Agg canvas whatever the backend
(no display needed, no backend switched under a notebook, nothing left open in pyplot's list).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def render_png(fig: Figure) -> bytes:
    """The figure as PNG bytes: RGB (no alpha), white background, of its exact pixel size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    fig.set_facecolor("white")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="png", optimize=True)
    return buffer.getvalue()

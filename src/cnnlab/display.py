"""What a Jupyter notebook shows of cnnlab's objects: small HTML tables and PNG pictures.

A notebook asks an object for `_repr_html_` (or `_repr_png_`) when a cell ends with it. A run's
result, a run folder, a model summary and a comparison answer with a table (and the curves);
predictions and explanations with their picture. These helpers write that HTML, with inline
styles only (a notebook page has its own stylesheet), and are used from every layer above.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

RIGHT = "text-align: right; font-variant-numeric: tabular-nums"


def html_table(
    header: Sequence[str] | None, rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()
) -> str:
    """A table of `rows` under `header` (None: no header); `numeric` columns right-aligned."""
    right = set(numeric)

    def cell(tag: str, k: int, value: Any) -> str:
        style = f' style="{RIGHT}"' if k in right else ' style="text-align: left"'
        return f"<{tag}{style}>{html.escape(str(value))}</{tag}>"

    head = ""
    if header is not None:
        head = "<thead><tr>" + "".join(cell("th", k, v) for k, v in enumerate(header)) + "</tr>"
        head += "</thead>"
    body = "".join(
        "<tr>" + "".join(cell("td", k, v) for k, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


def png_image(png: bytes, alt: str = "") -> str:
    """An <img> of PNG bytes, inline (a data URI), never wider than the output area."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" style="max-width: 100%">'
    )


def heading(text: str) -> str:
    return f"<p><strong>{html.escape(text)}</strong></p>"


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"

"""Self-contained HTML pages: styles inline, images embedded as data: URIs, no script and no
request to any network, so a page opens offline, mails as one file and prints. The page itself
never scrolls sideways: a table wider than the window scrolls inside its own box, and a figure
wider than it is scaled down to fit.

    page("LeNet on Fashion-MNIST", section("Curves", image(png, "curves")) + ...)
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; overflow-wrap: break-word; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.table { overflow-x: auto; margin: 0.6em 0; }
table { border-collapse: collapse; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
th { background: #f6f6f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td { white-space: nowrap; }  /* a row is one line; a wide table scrolls in its .table box */
td:last-child:not(.num) { white-space: normal; }  /* but free text (a value, a folder) wraps */
tr.chosen td { background: #eef6ee; font-weight: 600; }
tr.group td { border-top: 2px solid #bbb; }
pre { background: #f8f8f8; padding: 0.7em; white-space: pre-wrap; font-size: 12px;
      line-height: 1.3; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top;
         max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.warn { color: #a40; }
@media print { body { max-width: none; } section { break-inside: avoid-page; } }
"""


def page(title: str, body: str, subtitle: str = "") -> str:
    """A whole HTML document: `body` is already HTML (made by the helpers below)."""
    sub = f'<p class="sub">{escape(subtitle)}</p>\n' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{sub}{body}</body>\n</html>\n"
    )


def section(title: str, body: str, anchor: str | None = None) -> str:
    """A titled <section>; `anchor` is its id (default: the title, lower-case, dashed)."""
    anchor = anchor or "-".join(title.lower().split())
    return f'<section id="{escape(anchor)}">\n<h2>{escape(title)}</h2>\n{body}\n</section>\n'


def image(png: bytes, alt: str, caption: str = "") -> str:
    """A PNG embedded in the page, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">{cap}</figure>\n'


def table(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[object]],
    numeric: Iterable[int] = (),
    row_classes: Mapping[int, str] | None = None,
) -> str:
    """A table of text cells (escaped), in a box that scrolls sideways when the table is wider
    than the page; columns in `numeric` are right-aligned, and row i (from 0, the header not
    counted) gets the CSS class `row_classes[i]` (STYLE's `chosen`, `group`). Without a
    `header`, the first column names each row."""
    right = set(numeric)
    classes = row_classes or {}

    def tr(i: int) -> str:
        return f'<tr class="{escape(classes[i])}">' if i in classes else "<tr>"

    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=num' if i in right else ''}>{escape(str(v))}</{tag}>"
            for i, v in enumerate(values)
        )

    if header is None:  # a list of facts: name, value
        body = "".join(
            f"{tr(i)}<th>{escape(str(row[0]))}</th>{cells(row[1:], 'td')}</tr>\n"
            for i, row in enumerate(rows)
        )
        return f'<div class="table"><table>\n{body}</table></div>\n'
    body = "".join(f"{tr(i)}{cells(row, 'td')}</tr>\n" for i, row in enumerate(rows))
    return f'<div class="table"><table>\n<tr>{cells(header, "th")}</tr>\n{body}</table></div>\n'


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>\n"


def paragraph(text: str, css_class: str = "") -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return f"<p{attr}>{escape(text)}</p>\n"

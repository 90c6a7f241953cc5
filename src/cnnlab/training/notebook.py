"""A run's progress in Jupyter: one output area redrawn in place, as d2l's Animator does.

In a notebook `cnnlab.train(...)` (progress "auto" or "notebook") shows two things that update
where they are instead of printing line after line: a progress bar with the running train loss
and accuracy and the time left, and a board of the curves (the report's curves figure: loss,
accuracy, learning rate) with the table of finished epochs under it, redrawn once per epoch.
Messages (the run folder, the report) are kept under the board. IPython's display handles do
the redrawing; nothing here needs ipywidgets, and nothing is imported outside a notebook.
"""

from __future__ import annotations

import html
import sys
from typing import Any

from cnnlab.display import html_table, png_image, preformatted


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where print has no terminal to redraw)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


class NotebookView:
    """The output area of one run in a notebook: `bar` (a progress bar and the running
    figures), then `board` (the curves, the epochs table, the messages)."""

    def __init__(self, columns: tuple[Any, ...], epochs: int):
        from IPython.display import HTML, display

        self.columns = columns  # EpochMetric: the table's columns, as the progress lines'
        self.epochs = epochs  # the curves' x axis runs to the run's last epoch from the start
        self.rows: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.bar = display(HTML(""), display_id=True)
        self.board = display(HTML(""), display_id=True)

    def progress(self, label: str, done: int, total: int, running: str) -> None:
        """The bar: `label` (epoch 3/10), `done` of `total` batches, then `running` text."""
        from IPython.display import HTML

        bar = f'<progress value="{done}" max="{max(total, 1)}" style="width: 16em"></progress>'
        text = html.escape(f"{label} {done}/{total}{running}")
        self.bar.update(HTML(f'<div style="font-family: monospace">{bar} {text}</div>'))

    def end_epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._draw_board()

    def message(self, text: str) -> None:
        self.messages.append(text)
        self._draw_board()

    def close(self) -> None:
        """The bar goes (its last state is in the table); the board stays."""
        from IPython.display import HTML

        self.bar.update(HTML(""))

    def _draw_board(self) -> None:
        from IPython.display import HTML

        parts = [run_html(self.rows, self.columns, epochs=self.epochs)] if self.rows else []
        parts += [preformatted(text) for text in self.messages]
        self.board.update(HTML("".join(parts)))


def run_html(
    rows: list[dict[str, Any]],
    columns: tuple[Any, ...],
    facts: list[tuple[str, str]] = (),
    epochs: int | None = None,
) -> str:
    """A run as a notebook shows it: `facts` (name, value), the curves of its epoch `rows`
    (the report's figure; its x axis to `epochs`) and the table of them under the `columns`
    (EpochMetric)."""
    from cnnlab.curves import curves_figure
    from cnnlab.figures import render_png

    parts = [html_table(None, facts)] if facts else []
    if rows:
        figure = curves_figure(rows, epochs)
        parts.append(png_image(render_png(figure), "loss and accuracy per epoch"))
    titles = [metric.title for metric in columns]
    cells = [[metric.report_cell(row) for metric in columns] for row in rows]
    parts.append(html_table(titles, cells, numeric=range(len(columns))))
    return "".join(parts)

"""The HTML helpers of report/html.py, called on small inputs: the document's head (doctype,
language, charset, viewport, title, the style sheet) and its optional subtitle, a section's
anchor, an embedded image with and without a caption, tables with and without a header (text
escaped, `num` cells, `chosen`/`group` rows, plain rows), paragraphs, and the CSS rules the
module docstring promises (tables scroll in their box, figures scale down, print layout).

Each test takes well under a millisecond; test_report.py checks a whole page written of a run.
These tests exist because docs/TESTING.md's mutation run showed these details untested
(survivors of mutmut in report/html.py).
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser

from cnnlab.report.html import STYLE, image, page, paragraph, preformatted, section, table


class Parts(HTMLParser):
    """Everything a page is made of, in order: ("decl", text), ("start", tag, attrs),
    ("end", tag) and ("data", text) for text that is not only white space."""

    def __init__(self, text: str):
        super().__init__()
        self.parts: list[tuple] = []
        self.feed(text)
        self.close()

    def handle_decl(self, decl):
        self.parts.append(("decl", decl))

    def handle_starttag(self, tag, attrs):
        self.parts.append(("start", tag, dict(attrs)))

    def handle_endtag(self, tag):
        self.parts.append(("end", tag))

    def handle_data(self, data):
        if data.strip():
            self.parts.append(("data", data))


def test_page_head_declares_language_charset_viewport_title_and_style():
    text = page("LeNet <on> Fashion & co", "<p>x</p>\n")
    assert text.startswith("<!DOCTYPE html>\n<html")  # standards mode, nothing before it
    assert Parts(text).parts[:10] == [
        ("decl", "DOCTYPE html"),
        ("start", "html", {"lang": "en"}),
        ("start", "head", {}),
        ("start", "meta", {"charset": "utf-8"}),
        ("start", "meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        ("start", "title", {}),
        ("data", "LeNet <on> Fashion & co"),  # escaped in the text, read back as written
        ("end", "title"),
        ("start", "style", {}),
        ("data", STYLE),
    ]
    assert "<title>LeNet &lt;on&gt; Fashion &amp; co</title>" in text


def test_page_body_is_title_then_the_given_html_without_a_subtitle_by_default():
    text = page("Run", "<p>x</p>\n")
    assert text.endswith("</head>\n<body>\n<h1>Run</h1>\n<p>x</p>\n</body>\n</html>\n")
    assert 'class="sub"' not in text


def test_page_subtitle_is_an_escaped_sub_paragraph_under_the_title():
    text = page("Run", "<p>x</p>\n", subtitle="a < b")
    assert '<h1>Run</h1>\n<p class="sub">a &lt; b</p>\n<p>x</p>\n</body>' in text


def test_section_anchor_defaults_to_the_title_lower_case_and_dashed():
    assert section("Top  Losses\tby Class", "<p>x</p>") == (
        '<section id="top-losses-by-class">\n<h2>Top  Losses\tby Class</h2>\n<p>x</p>\n</section>\n'
    )


def test_section_keeps_a_given_anchor_and_escapes_title_and_anchor():
    assert section("A & B", "", anchor='a"b') == (
        '<section id="a&quot;b">\n<h2>A &amp; B</h2>\n\n</section>\n'
    )


def test_image_without_caption_is_a_bare_figure_with_the_png_as_data_uri():
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    data = base64.b64encode(png).decode()
    assert image(png, 'curves "loss" & <acc>') == (
        f'<figure><img src="data:image/png;base64,{data}" '
        'alt="curves &quot;loss&quot; &amp; &lt;acc&gt;"></figure>\n'
    )


def test_image_caption_is_an_escaped_figcaption_after_the_image():
    text = image(b"png", "alt", caption="epoch <3> & more")
    assert text.endswith('alt="alt"><figcaption>epoch &lt;3&gt; &amp; more</figcaption></figure>\n')


def test_table_with_header_marks_numeric_cells_and_row_classes_only():
    text = table(
        ["model", "acc"],
        [["a<b", 0.5], ["c & d", 1], ["e", "f"]],
        numeric=[1],
        row_classes={1: "chosen", 2: "group"},
    )
    assert text == (
        '<div class="table"><table>\n'
        "<tr><th>model</th><th class=num>acc</th></tr>\n"
        "<tr><td>a&lt;b</td><td class=num>0.5</td></tr>\n"
        '<tr class="chosen"><td>c &amp; d</td><td class=num>1</td></tr>\n'
        '<tr class="group"><td>e</td><td class=num>f</td></tr>\n'
        "</table></div>\n"
    )


def test_table_without_header_names_each_row_in_a_th():
    # the first column is the row's name (a th, never `num`); columns count from the value
    text = table(None, [["lr", 0.1, "x"], ["<dir>", 3, "y"]], numeric=[0], row_classes={1: "warn"})
    assert text == (
        '<div class="table"><table>\n'
        "<tr><th>lr</th><td class=num>0.1</td><td>x</td></tr>\n"
        '<tr class="warn"><th>&lt;dir&gt;</th><td class=num>3</td><td>y</td></tr>\n'
        "</table></div>\n"
    )


def test_paragraph_and_preformatted_escape_their_text():
    assert paragraph("a < b & c") == "<p>a &lt; b &amp; c</p>\n"
    assert paragraph("careful", "warn") == '<p class="warn">careful</p>\n'
    assert preformatted("x <y>\n  z") == "<pre>x &lt;y&gt;\n  z</pre>\n"


def test_style_has_the_rules_the_docstring_promises():
    rules = " ".join(STYLE.split())
    assert ".table { overflow-x: auto;" in rules  # a wide table scrolls inside its box
    assert "figure img { max-width: 100%; height: auto;" in rules  # a wide figure scales down
    assert "td.num, th.num { text-align: right;" in rules  # the `num` cells table() marks
    assert "tr.chosen td {" in rules and "tr.group td {" in rules
    assert "@media print {" in rules

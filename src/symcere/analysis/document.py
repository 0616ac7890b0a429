"""A small document builder: headings, paragraphs, bullet lists, tables, figures and raw blocks, rendered as
Markdown and as one self-contained HTML page (figures embedded as base64 PNG).

Inline markup is ``**bold**`` and ```code```. A table given a ``csv_name`` is also written as CSV next to the
report (atomically, :mod:`symcere.io`).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symcere.errors import SymcereError
from symcere.io import write_text
from symcere.tables import csv_table, markdown_table

__all__ = ["Document", "highlight", "inline_html"]

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "td.text{text-align:left;max-width:700px}"
    "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}"
    "mark{background:#ffe066;padding:0 .1em}code{background:#f4f4f4;padding:0 .2em}"
    ".caption{color:#555;font-style:italic}"
)


def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    return "" if v is None else str(v)


def inline_html(text: str) -> str:
    """HTML-escape ``text`` and turn ``**bold**`` and ```code``` into tags."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def highlight(text: str, words: Iterable[str], style: str = "markdown") -> str:
    """``text`` with every occurrence of ``words`` (whole words, case-insensitive) emphasised: Markdown
    ``**word**`` or HTML ``<mark>word</mark>`` (the rest HTML-escaped)."""
    targets = sorted({w.lower() for w in words if w}, key=len, reverse=True)
    if style not in ("markdown", "html"):
        raise SymcereError(f"style must be 'markdown' or 'html', got {style!r}")
    if not targets:
        return html.escape(text) if style == "html" else text
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in targets) + r")(?!\w)", re.IGNORECASE)
    if style == "markdown":
        return pattern.sub(lambda m: f"**{m.group(1)}**", text)
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(1))}</mark>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


class Document:
    """A document built once and rendered as Markdown (:meth:`markdown`) and as self-contained HTML
    (:meth:`html`). ``files`` lists the CSVs and figures it refers to (all inside ``out_dir``)."""

    def __init__(self, out_dir: Path, title: str) -> None:
        self.out_dir = Path(out_dir)
        self.title = title
        self.blocks: list[tuple[str, Any]] = []
        self.files: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        digits: int = 4,
        csv_name: str | None = None,
        caption: str | None = None,
    ) -> None:
        """A table of ``rows`` (floats with ``digits`` decimals; all values in full in the CSV)."""
        cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
        if csv_name:
            self.files.append(write_text(self.out_dir / csv_name, csv_table(rows, cols)))
        self.blocks.append(("table", (list(rows), cols, digits, caption, csv_name)))

    def figure(self, path: Path, caption: str) -> None:
        """A PNG already written to ``path``."""
        self.files.append(path)
        self.blocks.append(("figure", (path, caption)))

    def raw(self, markdown: str, html_text: str) -> None:
        """A block given ready-made in both formats."""
        self.blocks.append(("raw", (markdown, html_text)))

    def extend(self, other: Document) -> None:
        """Append the blocks and files of ``other``."""
        self.blocks += other.blocks
        self.files += other.files

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            if kind == "heading":
                out += ["#" * b[0] + " " + b[1], ""]
            elif kind == "para":
                out += [b, ""]
            elif kind == "bullets":
                out += [f"- {x}" for x in b] + [""]
            elif kind == "table":
                rows, cols, digits, caption, csv_name = b
                if caption:
                    out += [f"*{caption}*" + (f" (`{csv_name}`)" if csv_name else ""), ""]
                out += [markdown_table(rows, cols, digits), ""]
            elif kind == "figure":
                path, caption = b
                out += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
            elif kind == "raw":
                out += [b[0], ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, b in self.blocks:
            if kind == "heading":
                out.append(f"<h{b[0]}>{inline_html(b[1])}</h{b[0]}>")
            elif kind == "para":
                out.append(f"<p>{inline_html(b)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{inline_html(x)}</li>" for x in b) + "</ul>")
            elif kind == "table":
                out += _html_table(*b)
            elif kind == "figure":
                path, caption = b
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{inline_html(caption)}</figcaption></figure>"
                )
            elif kind == "raw":
                out.append(b[1])
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _html_table(
    rows: Sequence[Mapping[str, Any]], cols: Sequence[str], digits: int, caption: str | None, csv_name: str | None
) -> list[str]:
    out = []
    if caption:
        tail = f" (<code>{html.escape(csv_name)}</code>)" if csv_name else ""
        out.append(f'<p class="caption">{inline_html(caption)}{tail}</p>')
    if not rows:
        out.append("<p>(no rows)</p>")
        return out
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), digits))}</td>" for c in cols) + "</tr>" for r in rows
    )
    out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return out

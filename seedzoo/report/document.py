"""A report as sections of paragraphs, tables and figures, written as Markdown or as one
self-contained HTML page (styles inline, figures as base64 data URIs)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    """Rows of text cells under a header; ``numeric`` columns are right-aligned."""

    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]


@dataclass(frozen=True)
class Figure:
    """A PNG file and what it shows."""

    path: Path
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)
    level: int = 2


def _markdown_table(table: Table) -> str:
    rule = ["---:" if numeric else "---" for numeric in table.numeric]
    lines = [table.header, rule, *table.rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def markdown_block(block: str | Table | Figure, folder: Path) -> str:
    """``block`` in Markdown, for a file in ``folder`` (figures linked relative to it)."""
    if isinstance(block, Table):
        return _markdown_table(block)
    if isinstance(block, Figure):
        link = Path(os.path.relpath(block.path, folder)).as_posix()
        return f"![{block.caption}]({link})\n\n*{block.caption}*"
    return block


def to_markdown(title: str, sections: list[Section], folder: Path) -> str:
    """The report in Markdown, for a file in ``folder`` (figures linked relative to it)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        parts += [markdown_block(block, folder) for block in section.blocks]
    return "\n\n".join(parts) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f3f7; }
tr:nth-child(even) td { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; }
"""


def _html_table(table: Table) -> str:
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f'<{tag}{" class=num" if numeric else ""}>{html.escape(value)}</{tag}>'
                       for value, numeric in zip(values, table.numeric, strict=True))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in table.rows)
    return (f"<table><thead><tr>{cells('th', table.header)}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _html_block(block: str | Table | Figure) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        caption = html.escape(block.caption)
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>")
    return f"<p>{html.escape(block)}</p>"


def to_html(title: str, sections: list[Section]) -> str:
    """The report as one HTML page that needs no other file and no network."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        parts += [_html_block(block) for block in section.blocks]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")

"""The report document and its two renderings: one self-contained HTML page and a Markdown twin.

A report is a :class:`Document`: a title, a few header lines and an ordered list of
:class:`Section` s, each with a stable ``id`` and a list of blocks (:class:`Para`,
:class:`KeyValues`, :class:`Table`, :class:`Figure`, :class:`FigureGrid`, :class:`Details`,
:class:`Pre`). The builders in ``ptychotrace.report`` decide *what* goes in; this module only
decides *how* it is written, so the HTML page and the Markdown twin always hold the same sections
in the same order.

HTML: inline CSS, images as ``data:image/png;base64`` URIs, no script, no external resource, every
piece of text escaped with ``html.escape``. Markdown: GitHub-flavoured pipe tables, an
``<a id="...">`` anchor before each section heading (the same ids as the HTML), figures as
``![alt](relative/path.png)`` links to PNG files on disk (each :class:`Figure` must have ``path``
set before ``render_markdown``).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Para", "KeyValues", "Table", "Cell", "Figure", "FigureGrid", "Group", "Details", "Pre",
           "Section",
           "Document", "Block", "render_html", "render_markdown", "iter_figures"]

#: Tones a paragraph or a cell can carry (CSS class ``tone-<name>``).
TONES = ("ok", "bad", "warn", "missing", "note")


@dataclass
class Cell:
    """A table cell with a tone (e.g. a violated check shown in red)."""

    text: str
    tone: str | None = None


@dataclass
class Para:
    text: str
    tone: str | None = None


@dataclass
class KeyValues:
    """A two-column table of labelled values."""

    items: list[tuple[str, str | Cell]]
    caption: str | None = None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str | Cell]]
    caption: str | None = None
    #: Indices of columns holding numbers (right-aligned, tabular digits in HTML).
    numeric: tuple[int, ...] = ()


@dataclass
class Figure:
    """A PNG figure. ``data`` is embedded in the HTML; ``path`` (a file on disk) is what the
    Markdown twin links to. ``name`` is the file name to use when the figure was generated and
    has to be written next to the report."""

    data: bytes
    caption: str
    alt: str
    path: Path | None = None
    name: str | None = None


@dataclass
class FigureGrid:
    """Figures (or notices) in a grid with row and column headings."""

    col_headers: list[str]
    row_headers: list[str]
    cells: list[list[Figure | Para]]


@dataclass
class Pre:
    """Preformatted text (a traceback)."""

    text: str


@dataclass
class Group:
    """Blocks laid side by side where the page is wide enough (small tables); in Markdown, one
    after the other."""

    blocks: list[Block]


@dataclass
class Details:
    """A collapsed block (HTML ``<details>``; in Markdown a bold heading and the content)."""

    summary: str
    blocks: list[Block]


Block = Para | KeyValues | Table | Figure | FigureGrid | Group | Details | Pre


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    tone: str | None = None


@dataclass
class Document:
    title: str
    kind: str
    header: list[tuple[str, str]]
    sections: list[Section]


def iter_figures(blocks: list[Block]):
    """Every Figure inside ``blocks`` (grids and details included), in document order."""
    for b in blocks:
        if isinstance(b, Figure):
            yield b
        elif isinstance(b, FigureGrid):
            for row in b.cells:
                yield from (c for c in row if isinstance(c, Figure))
        elif isinstance(b, (Details, Group)):
            yield from iter_figures(b.blocks)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
CSS = """
:root { --fg: #1d2330; --muted: #5c6576; --line: #d9dee7; --bg-alt: #f5f7fa; --accent: #2456a6; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "Liberation Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
header.report { border-bottom: 3px solid var(--accent); margin-bottom: 12px; padding-bottom: 8px; }
header.report h1 { margin: 0 0 6px; font-size: 26px; }
header.report dl { display: flex; flex-wrap: wrap; gap: 4px 24px; margin: 0; color: var(--muted);
  font-size: 13px; }
header.report dt { font-weight: 600; } header.report dd { margin: 0 0 0 6px; }
header.report .pair { display: flex; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 14px; padding: 8px 0 4px; font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section { margin-top: 28px; }
section > h2 { font-size: 20px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
p { margin: 6px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13.5px; }
caption { caption-side: top; text-align: left; font-weight: 600; color: var(--muted); padding: 2px 0 4px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top;
  max-width: 36em; overflow-wrap: break-word; }
th { background: #eaeef4; font-weight: 600; }
tbody tr:nth-child(even) td { background: var(--bg-alt); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { white-space: nowrap; background: var(--bg-alt); font-weight: 500; }
td.tone-bad, span.tone-bad { color: #a4161a; font-weight: 600; }
td.tone-ok, span.tone-ok { color: #1b6e3a; font-weight: 600; }
td.tone-warn { color: #8a5a00; font-weight: 600; }
p.tone-missing, td.tone-missing { color: var(--muted); font-style: italic; }
p.tone-note { color: var(--muted); font-size: 13.5px; }
p.tone-bad, p.tone-warn, p.tone-ok { padding: 6px 10px; border-left: 4px solid; border-radius: 2px; }
p.tone-bad { background: #fdecea; border-color: #c62828; }
p.tone-warn { background: #fff6e0; border-color: #e0a100; }
p.tone-ok { background: #eaf6ee; border-color: #2e7d32; }
section.tone-bad { border: 2px solid #c62828; background: #fdecea; border-radius: 6px; padding: 10px 16px; }
section.tone-bad > h2 { color: #a4161a; border-color: #e6a5a5; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 2px; }
table.grid { border: none; }
table.grid th, table.grid tbody tr td { border: none; background: none; padding: 4px 6px; text-align: center; }
table.grid th[scope=row] { writing-mode: vertical-rl; transform: rotate(180deg); color: var(--muted); }
table.grid figure { margin: 0; }
table.grid img { width: 330px; }
img.pixelated { image-rendering: pixelated; }
.cards { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
.cards > div { max-width: 100%; }
details { margin: 6px 0 10px; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--bg-alt); border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto;
  font-size: 12.5px; line-height: 1.4; }
code { font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tone_attr(tone: str | None, extra: str = "") -> str:
    classes = " ".join(c for c in (extra, f"tone-{tone}" if tone else "") if c)
    return f' class="{classes}"' if classes else ""


def _td(value: str | Cell, numeric: bool = False) -> str:
    text, tone = (value.text, value.tone) if isinstance(value, Cell) else (value, None)
    return f"<td{_tone_attr(tone, 'num' if numeric else '')}>{_e(text)}</td>"


def _data_uri(fig: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(fig.data).decode("ascii")


def _png_width(data: bytes) -> int | None:
    """Pixel width from the PNG header (IHDR), None when the bytes are not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return int.from_bytes(data[16:20], "big")


def _figure_html(fig: Figure) -> str:
    # a small PNG (a raw image array saved pixel for pixel) is enlarged without blurring
    width = _png_width(fig.data)
    cls = ' class="pixelated"' if width is not None and width < 200 else ""
    return (f'<figure><img{cls} src="{_data_uri(fig)}" alt="{_e(fig.alt)}">'
            f"<figcaption>{_e(fig.caption)}</figcaption></figure>")


def _block_html(b: Block) -> str:
    if isinstance(b, Para):
        return f"<p{_tone_attr(b.tone)}>{_e(b.text)}</p>"
    if isinstance(b, KeyValues):
        cap = f"<caption>{_e(b.caption)}</caption>" if b.caption else ""
        rows = "".join(f'<tr><th scope="row">{_e(k)}</th>{_td(v)}</tr>' for k, v in b.items)
        return f'<div class="scroll"><table class="kv">{cap}<tbody>{rows}</tbody></table></div>'
    if isinstance(b, Table):
        cap = f"<caption>{_e(b.caption)}</caption>" if b.caption else ""
        head = "".join(f'<th scope="col">{_e(h)}</th>' for h in b.headers)
        body = "".join("<tr>" + "".join(_td(c, i in b.numeric) for i, c in enumerate(row)) + "</tr>"
                       for row in b.rows)
        return (f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")
    if isinstance(b, Figure):
        return _figure_html(b)
    if isinstance(b, FigureGrid):
        head = "<tr><th></th>" + "".join(f'<th scope="col">{_e(h)}</th>' for h in b.col_headers) \
            + "</tr>"
        body = "".join(
            f'<tr><th scope="row">{_e(rh)}</th>'
            + "".join(f"<td>{_figure_html(c) if isinstance(c, Figure) else _block_html(c)}</td>"
                      for c in row) + "</tr>"
            for rh, row in zip(b.row_headers, b.cells, strict=True))
        return f'<div class="scroll"><table class="grid">{head}{body}</table></div>'
    if isinstance(b, Group):
        return '<div class="cards">' + "".join(f"<div>{_block_html(x)}</div>" for x in b.blocks) \
            + "</div>"
    if isinstance(b, Details):
        inner = "".join(_block_html(x) for x in b.blocks)
        return f"<details><summary>{_e(b.summary)}</summary>{inner}</details>"
    if isinstance(b, Pre):
        return f"<pre>{_e(b.text)}</pre>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_html(doc: Document, generator: str = "ptychotrace report") -> str:
    """The self-contained HTML page of ``doc``."""
    header = "".join(f'<div class="pair"><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>' for k, v in doc.header)
    toc = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in doc.sections)
    sections = "\n".join(
        f'<section id="{_e(s.id)}"{_tone_attr(s.tone)}>\n<h2>{_e(s.title)}</h2>\n'
        + "\n".join(_block_html(b) for b in s.blocks) + "\n</section>"
        for s in doc.sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="{_e(generator)}">\n'
            f"<title>{_e(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f'<body data-report-kind="{_e(doc.kind)}">\n<main>\n'
            f'<header class="report"><h1>{_e(doc.title)}</h1><dl>{header}</dl></header>\n'
            f'<nav class="toc" aria-label="sections">{toc}</nav>\n'
            f"{sections}\n"
            f"<footer>Written by {_e(generator)}. Self-contained: images are embedded; "
            "no scripts, no external resources.</footer>\n"
            "</main>\n</body>\n</html>\n")


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _md_text(text: object) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_cell(value: str | Cell) -> str:
    if isinstance(value, Cell):
        text = _md_text(value.text)
        return f"**{text}**" if value.tone in ("bad", "warn") and text else text
    return _md_text(value)


def _md_link(fig: Figure, md_dir: Path) -> str:
    if fig.path is None:
        raise ValueError(f"figure {fig.alt!r} has no file on disk for the Markdown twin")
    rel = Path(os.path.relpath(fig.path, md_dir)).as_posix()
    return f"![{_md_text(fig.alt)}]({rel.replace(' ', '%20')})"


def _md_table(headers: list[str], rows: list[list[str | Cell]]) -> list[str]:
    out = ["| " + " | ".join(_md_text(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def _block_md(b: Block, md_dir: Path) -> list[str]:
    if isinstance(b, Para):
        if b.tone in ("bad", "warn"):
            return [f"> **{b.text}**", ""]
        return [f"*{b.text}*" if b.tone in ("missing", "note") else b.text, ""]
    if isinstance(b, KeyValues):
        cap = [f"**{b.caption}**", ""] if b.caption else []
        return cap + _md_table(["field", "value"], [[k, v] for k, v in b.items]) + [""]
    if isinstance(b, Table):
        cap = [f"**{b.caption}**", ""] if b.caption else []
        return cap + _md_table(b.headers, b.rows) + [""]
    if isinstance(b, Figure):
        return [_md_link(b, md_dir), "", f"*{b.caption}*", ""]
    if isinstance(b, FigureGrid):
        rows = [[Cell(_md_text(rh))] + [Cell(_md_link(c, md_dir) if isinstance(c, Figure)
                                             else _md_text(c.text)) for c in row]
                for rh, row in zip(b.row_headers, b.cells, strict=True)]
        # links must not be escaped: build the table by hand
        out = ["| | " + " | ".join(_md_text(h) for h in b.col_headers) + " |",
               "|" + "|".join("---" for _ in range(len(b.col_headers) + 1)) + "|"]
        out += ["| " + " | ".join(c.text for c in row) + " |" for row in rows]
        captions = [f.caption for f in iter_figures([b])]
        return out + [""] + [f"- {c}" for c in captions] + [""]
    if isinstance(b, Group):
        return [line for x in b.blocks for line in _block_md(x, md_dir)]
    if isinstance(b, Details):
        out = [f"**{b.summary}**", ""]
        for x in b.blocks:
            out += _block_md(x, md_dir)
        return out
    if isinstance(b, Pre):
        return ["```", b.text.rstrip("\n"), "```", ""]
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_markdown(doc: Document, md_dir: str | os.PathLike,
                    generator: str = "ptychotrace report") -> str:
    """The Markdown twin of ``doc``; figure links are relative to ``md_dir``."""
    md_dir = Path(md_dir)
    out = [f"# {doc.title}", ""]
    out += [f"- **{k}**: {v}" for k, v in doc.header] + [""]
    out += ["Sections: " + " · ".join(f"[{s.title}](#{s.id})" for s in doc.sections), ""]
    for s in doc.sections:
        out += [f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        for b in s.blocks:
            out += _block_md(b, md_dir)
    out += ["---", f"*Written by {generator}; the HTML twin embeds the same figures.*", ""]
    return "\n".join(out)

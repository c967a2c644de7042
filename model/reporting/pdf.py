"""Markdown report → PDF, through Typst (the `typst` PyPI package: offline, its own embedded fonts).

`markdown_to_typst` turns the report's Markdown (CommonMark + GitHub pipe tables, parsed with markdown-it-py) into
a Typst document; `write_pdf` compiles it and writes the PDF atomically.

Every piece of the author's text reaches Typst as a string literal (`#"..."`), never as Typst markup, so characters
that mean something to Typst (# $ * _ @ < > \\ ` [ ] ~ = / etc.) come out literally. HTML blocks and inline HTML
(e.g. the `<!-- discussion Q3 -->` markers) are dropped, the text around and between them is kept. The output is
deterministic: no creation date is written and only the fonts embedded in the typst package are used (system fonts
are ignored), so the same Markdown gives the same PDF bytes on any machine.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from model.errors import UserError
from model.files import write_file

__all__ = ["PdfError", "markdown_to_typst", "pdf_bytes", "write_pdf"]

# Code blocks: DejaVu Sans Mono (advance 0.602 em) at 8 pt in a block with 6 pt inset on an A4 page with 2 cm margins
# gives (481.9 pt - 12 pt) / 4.82 pt ≈ 97 columns; a run without spaces longer than this is cut into pieces (Typst
# itself wraps at spaces and after "/" but would let an unbreakable run overflow the page). A few columns of margin
# cover glyphs taken from a fallback font.
_CODE_COLUMNS = 94
_TAB_SIZE = 4
_WIDEST_TABLE = 14  # columns; a wider table of fewer rows than columns is set on its side in the PDF
# A table's text is 9 pt, shrunk down to 8 pt (and no further: print must stay readable) to fit the text width; a
# table wider than that at 8 pt is cut into several, each repeating the first column. Its width is estimated from
# its cells' characters: Libertinus Serif's digits and lower-case letters average about half an em.
_TABLE_TEXT_WIDTH = 481.9  # pt: A4 less 2 cm margins
_CHARACTER = 0.5 * 8.0  # pt, a character at 8 pt
_CELL_INSET = 2 * 0.45 * 8.0  # pt, a cell's inset on both sides at 8 pt
_PLACED_DPI = 150  # an image is never placed larger than its pixels at this resolution

# Image formats Typst 0.15 decodes.
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf"})

_PREAMBLE = """\
#set document(title: {title}, date: none)
#set page(paper: "a4", margin: 2cm, numbering: "1 / 1")
#set text(font: "Libertinus Serif", size: 11pt, lang: "en", hyphenate: false)
#set par(justify: true)
#set heading(numbering: none)
#show heading: set block(above: 1.4em, below: 0.8em)
#show heading.where(level: 1): set text(size: 18pt)
#show heading.where(level: 2): set text(size: 14pt)
#show heading.where(level: 3): set text(size: 12pt)
#show heading.where(level: 4): set text(size: 11pt)
#show raw: set text(font: "DejaVu Sans Mono")
#show raw.where(block: true): set text(size: 8pt)
#show raw.where(block: true): set par(justify: false)
#show link: set text(fill: rgb("#1f4e99"))
#show figure.caption: set text(size: 10pt)

#let report-code(lang, source) = block(
  width: 100%, fill: luma(246), stroke: 0.4pt + luma(200), inset: 6pt, radius: 2pt,
  raw(block: true, lang: lang, source),
)

#let report-quote(body) = block(
  width: 100%, inset: (left: 10pt, y: 3pt), stroke: (left: 2pt + luma(170)), body,
)

// A table at 9 pt, or at the smaller size (down to 8 pt) at which its natural width fits the text width; the font
// is shrunk rather than the table scaled so that a long table still breaks across pages. Beyond that, Typst's auto
// columns wrap the cells (the Markdown side cuts tables too wide for 8 pt into several).
#let report-table(columns, aligns, header, cells) = layout(region => {
  let make() = table(
    columns: columns,
    align: aligns,
    inset: 0.45em,
    stroke: 0.4pt + luma(160),
    fill: (_, y) => if y == 0 { luma(235) },
    table.header(..header.map(cell => strong(cell))),
    ..cells,
  )
  let natural = measure({ set text(size: 9pt); make() }).width
  let factor = if natural > 0pt { calc.min(1, calc.max(0.98 * region.width / natural, 8 / 9)) } else { 1 }
  set text(size: 9pt * factor)
  set par(justify: false)
  make()
})

// An image at the text width, or narrower where its pixels at 150 dpi give less (never enlarged past them), or
// shorter if that would make it taller than most of a page.
#let report-image(path, widest) = layout(region => {
  let img = image(path, width: calc.min(region.width, widest))
  if measure(img).height > 17cm { image(path, height: 17cm) } else { img }
})

#let report-missing(note) = block(
  width: 100%, inset: 10pt, stroke: (paint: luma(150), thickness: 0.5pt, dash: "dashed"),
  align(center, text(fill: luma(80), note)),
)

"""

_COMMENT = re.compile(r"<!--.*?-->|<!--.*\Z", re.DOTALL)
_SCRIPT_STYLE = re.compile(r"<(script|style|textarea)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(
    r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<![A-Za-z][^<>]*>|<\?.*?\?>|<!\[CDATA\[.*?\]\]>", re.DOTALL
)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_EXTERNAL_LINK = re.compile(r"^(?:https?|ftp|mailto):", re.IGNORECASE)
_ALIGN = re.compile(r"text-align:\s*(left|center|right)")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough")


def _string(text: str) -> str:
    """A Typst string literal holding `text` exactly (NUL and lone surrogates, which Typst refuses, become U+FFFD)."""
    out = []
    for ch in text:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append("\\u{%x}" % (0xFFFD if unicodedata.category(ch) == "Cs" or ch == "\0" else ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _wrap_code(source: str) -> str:
    """Tabs expanded, and every run without whitespace wider than the code block cut at `_CODE_COLUMNS` columns."""
    lines = []
    for line in source.expandtabs(_TAB_SIZE).split("\n"):
        if _columns(line) <= _CODE_COLUMNS:
            lines.append(line)
            continue
        pieces = []
        for run in re.split(r"(\s+)", line):
            while _columns(run) > _CODE_COLUMNS:
                cut, width = 0, 0
                while cut < len(run) and width + _columns(run[cut]) <= _CODE_COLUMNS:
                    width += _columns(run[cut])
                    cut += 1
                pieces.append(run[:cut] + "\n")
                run = run[cut:]
            pieces.append(run)
        lines.append("".join(pieces))
    return "\n".join(lines)


def _transposed(rows: list[list[SyntaxTreeNode]]) -> list[list[SyntaxTreeNode]]:
    """A wide table of few rows turned on its side, one row per column: four runs' figures in 22 columns cannot be
    read on a page, the same figures in 22 rows of five columns can. (markdown-it gives every row the header's
    number of cells.)"""
    return [list(column) for column in zip(*rows, strict=True)]


def _column_groups(rows: list[list[SyntaxTreeNode]]) -> list[list[list[SyntaxTreeNode]]]:
    """The table's columns cut into groups that fit the text width at 8 pt, each group after the first led by
    the first column again (what names the rows); one group when the whole table fits."""
    widths = [
        max(len(_plain(row[c].children[0]) if row[c].children else "") for row in rows) * _CHARACTER + _CELL_INSET
        for c in range(len(rows[0]))
    ]
    groups: list[list[int]] = [[]]
    used = 0.0
    for column, width in enumerate(widths):
        if groups[-1] and used + width > _TABLE_TEXT_WIDTH:
            groups.append([0])
            used = widths[0]
        groups[-1].append(column)
        used += width
    return [[[row[c] for c in group] for row in rows] for group in groups]


def _widest(path: Path) -> str:
    """The widest an image may be placed, as a Typst length: its pixels at `_PLACED_DPI` (read from its header); the
    text width for a vector image, or a file Pillow cannot read (Typst then says what is wrong with it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return f"{image.size[0] / _PLACED_DPI:.3f}in"
    except (OSError, UnidentifiedImageError, ValueError):
        return f"{_TABLE_TEXT_WIDTH}pt"


def _plain(node: SyntaxTreeNode) -> str:
    """The text of an inline node and its descendants, without markup."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


class _Inline:
    """Typst markup for a run of inline content; consecutive text goes into one string literal."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.text: list[str] = []

    def add_text(self, text: str) -> None:
        self.text.append(text)

    def add_markup(self, markup: str) -> None:
        self.flush()
        if markup:
            self.parts.append(markup)

    def flush(self) -> None:
        if self.text:
            joined = "".join(self.text)
            if joined:
                self.parts.append("#" + _string(joined))
            self.text = []

    def markup(self) -> str:
        self.flush()
        return "".join(self.parts)


class _Renderer:
    def __init__(self, base: Path) -> None:
        self.base = Path(os.path.abspath(base))
        self.title: str | None = None

    # blocks

    def blocks(self, nodes: Iterable[SyntaxTreeNode], html_depth: int = 0) -> str:
        rendered = (self.block(node, html_depth) for node in nodes)
        return "\n\n".join(text for text in rendered if text)

    def block(self, node: SyntaxTreeNode, html_depth: int = 0) -> str:
        kind = node.type
        if kind == "heading":
            level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
            inline = node.children[0] if node.children else None
            if level == 1 and self.title is None and inline is not None:
                self.title = _plain(inline).strip() or None
            body = self.inline(inline.children) if inline is not None else ""
            return f"#heading(level: {level})[{body}]"
        if kind == "paragraph":
            return self.paragraph(node)
        if kind in ("bullet_list", "ordered_list"):
            return self.list_block(node, html_depth)
        if kind in ("fence", "code_block"):
            lang = node.info.strip().split()[0] if node.info.strip() else ""
            source = _wrap_code(node.content.removesuffix("\n"))
            return f"#report-code({_string(lang) if lang else 'none'}, {_string(source)})"
        if kind == "blockquote":
            return f"#report-quote[{self.blocks(node.children, html_depth)}]"
        if kind == "hr":
            return "#line(length: 100%, stroke: 0.5pt + luma(150))"
        if kind == "table":
            return self.table(node)
        if kind == "html_block":
            return self.html_block(node.content, html_depth)
        if kind == "inline":
            return self.inline(node.children)
        if node.children:
            return self.blocks(node.children, html_depth)
        return f"#{_string(node.content)}" if node.content.strip() else ""

    def paragraph(self, node: SyntaxTreeNode) -> str:
        inline = node.children[0] if node.children else None
        if inline is None:
            return ""
        children = inline.children
        meaningful = [
            c for c in children if not (c.type == "softbreak" or (c.type == "text" and not c.content.strip()))
        ]
        if meaningful and all(c.type == "image" for c in meaningful):
            return "\n\n".join(self.figure(c) for c in meaningful)
        return self.inline(children)

    def list_block(self, node: SyntaxTreeNode, html_depth: int) -> str:
        items = [c for c in node.children if c.type == "list_item"]
        tight = all(p.hidden for item in items for p in item.children if p.type == "paragraph")
        args = [f"tight: {'true' if tight else 'false'}"]
        if node.type == "ordered_list":
            start = node.attrs.get("start", 1)
            args.insert(0, f"start: {int(start) if str(start).isdigit() else 1}")
            function = "enum"
        else:
            function = "list"
        separator = "\n" if tight else "\n\n"
        bodies = []
        for item in items:
            rendered = (self.block(child, html_depth) for child in item.children)
            bodies.append("[" + separator.join(text for text in rendered if text) + "]")
        return f"#{function}({', '.join(args + bodies)})"

    def table(self, node: SyntaxTreeNode) -> str:
        rows: list[list[SyntaxTreeNode]] = []
        for section in node.children:
            for row in section.children:
                rows.append([cell for cell in row.children if cell.type in ("th", "td")])
        if not rows:
            return ""
        on_side = len(rows[0]) > _WIDEST_TABLE and 2 <= len(rows) < len(rows[0])
        if on_side:
            rows = _transposed(rows)
        return "\n\n".join(self._table(part, on_side) for part in _column_groups(rows))

    def _table(self, rows: list[list[SyntaxTreeNode]], on_side: bool) -> str:
        header, body = rows[0], rows[1:]
        columns = max(1, len(header))
        aligns = []
        for cell in header if not on_side else ():  # on its side, a column mixes the columns' alignments
            match = _ALIGN.search(str(cell.attrs.get("style", "")))
            aligns.append(match.group(1) if match else "left")
        aligns += ["left"] * (columns - len(aligns))

        def cells(row: Sequence[SyntaxTreeNode]) -> list[str]:
            out = [f"[{self.inline(cell.children[0].children) if cell.children else ''}]" for cell in row[:columns]]
            return out + ["[]"] * (columns - len(out))

        header_cells = ", ".join(cells(header))
        body_cells = ", ".join(c for row in body for c in cells(row))
        return (
            f"#report-table({columns}, ({', '.join(aligns)},), ({header_cells},), ({body_cells}{',' if body else ''}))"
        )

    def html_block(self, content: str, html_depth: int) -> str:
        """An HTML block without its comments and tags; the text left is kept (re-read as Markdown once)."""
        text = _COMMENT.sub("", _SCRIPT_STYLE.sub("", content))
        text = _TAG.sub("", _BR.sub("\n", text))
        if not text.strip():
            return ""
        if html_depth == 0:
            return self.blocks(SyntaxTreeNode(_parser().parse(text)).children, html_depth=1)
        paragraphs = [" ".join(chunk.split()) for chunk in re.split(r"\n\s*\n", text)]
        return "\n\n".join(f"#{_string(p)}" for p in paragraphs if p)

    # figures

    def image_path(self, src: str) -> tuple[str | None, str]:
        """(path for Typst relative to the root `base`, or None; the note to show when None)."""
        if _URL_SCHEME.match(src) or src.startswith("//"):
            return None, f"(figure not embedded: {src})"
        decoded = unquote(src)
        for candidate in dict.fromkeys((decoded, src)):
            full = os.path.abspath(os.path.join(self.base, candidate))
            if os.path.commonpath([full, str(self.base)]) != str(self.base):
                return None, f"(figure outside the report folder: {decoded})"
            if os.path.isfile(full):
                if Path(full).suffix.lower() not in _IMAGE_SUFFIXES:
                    return None, f"(figure format not supported: {decoded})"
                return "/" + Path(os.path.relpath(full, self.base)).as_posix(), ""
        return None, f"(figure missing: {decoded})"

    def figure(self, node: SyntaxTreeNode) -> str:
        path, note = self.image_path(str(node.attrs.get("src", "")))
        caption = self.inline(node.children)
        if path is not None:
            body = f"report-image({_string(path)}, {_widest(self.base / path.lstrip('/'))})"
        else:
            body = f"report-missing({_string(note)})"
        caption_arg = f", caption: [{caption}]" if caption else ""
        return f"#figure({body}, kind: image{caption_arg})"

    # inline

    def inline(self, nodes: Iterable[SyntaxTreeNode]) -> str:
        out = _Inline()
        self.add_inline(out, nodes)
        return out.markup()

    def add_inline(self, out: _Inline, nodes: Iterable[SyntaxTreeNode]) -> None:
        for node in nodes:
            kind = node.type
            if kind == "text":
                out.add_text(node.content)
            elif kind == "softbreak":
                out.add_text(" ")
            elif kind == "hardbreak":
                out.add_markup("#linebreak()")
            elif kind == "code_inline":
                out.add_markup(f"#raw({_string(node.content)})")
            elif kind in ("em", "strong", "s"):
                function = {"em": "emph", "strong": "strong", "s": "strike"}[kind]
                out.add_markup(f"#{function}[{self.inline(node.children)}]")
            elif kind == "link":
                href = str(node.attrs.get("href", ""))
                text = self.inline(node.children)
                if _EXTERNAL_LINK.match(href):
                    out.add_markup(f"#link({_string(href)})[{text or '#' + _string(href)}]")
                else:
                    out.add_markup(text)
            elif kind == "image":
                out.add_markup(self.figure(node))
            elif kind == "html_inline":
                if _BR.fullmatch(node.content.strip()):
                    out.add_markup("#linebreak()")
            elif node.children:
                self.add_inline(out, node.children)
            elif node.content:
                out.add_text(node.content)


def markdown_to_typst(markdown: str, base: Path) -> str:
    """A Typst document for `markdown`, whose image paths are relative to `base` (the Markdown file's folder).

    Images are referenced from the Typst project root, which must be `base` when compiling (as `write_pdf` does).
    """
    renderer = _Renderer(base)
    body = renderer.blocks(SyntaxTreeNode(_parser().parse(markdown)).children)
    title = _string(renderer.title) if renderer.title else "none"
    return _PREAMBLE.replace("{title}", title) + body + "\n"


class PdfError(UserError):
    """The report could not be made into a PDF."""


def pdf_bytes(markdown_path: Path) -> bytes:
    """The Markdown report at ``markdown_path`` as an A4 PDF. PdfError (one line: the Markdown file and
    Typst's first error) when Typst cannot compile it, or is not installed."""
    markdown_path = Path(markdown_path)
    try:
        markdown = markdown_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PdfError(f"{markdown_path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        import typst
    except ImportError:
        raise PdfError(
            f"{markdown_path}: no PDF: the typst package is not installed (pip install -r requirements.txt)"
        ) from None
    base = markdown_path.resolve().parent
    source = markdown_to_typst(markdown, base)
    try:
        # The source goes in as bytes: typst-py compiles it as a virtual main file at the root, writing nothing there.
        # (typst.Compiler rather than typst.compile: the stub of compile types input and root as one TypeVar, so
        # bytes input with a str root fails mypy, while the call itself is fine.)
        compiler = typst.Compiler(root=str(base), ignore_system_fonts=True)
        # untagged: poppler (pdftotext, pdffonts) misreads the tagged catalog's /MarkInfo and prints a syntax error
        data = compiler.compile(input=source.encode("utf-8"), format="pdf", pdf_tags=False)
    except typst.TypstError as err:
        message = str(getattr(err, "message", "") or err).strip()
        first = message.splitlines()[0].strip() if message else type(err).__name__
        raise PdfError(f"{markdown_path}: Typst could not compile the report: {first}") from None
    if not isinstance(data, bytes):
        raise PdfError(f"{markdown_path}: Typst returned no PDF")
    return data


def write_pdf(markdown_path: Path, pdf_path: Path) -> Path:
    """Compile the Markdown report at ``markdown_path`` into ``pdf_path`` (written whole); returns ``pdf_path``."""
    write_file(Path(pdf_path), pdf_bytes(markdown_path))
    return Path(pdf_path)

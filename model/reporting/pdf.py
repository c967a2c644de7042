"""Markdown report → PDF, through Typst (the `typst` PyPI package: offline, its own embedded fonts).

`markdown_to_typst` turns the report's Markdown (CommonMark and GitHub's pipe tables, parsed by markdown-it-py) into
a Typst document; `pdf_bytes` compiles it. Every piece of the author's text reaches Typst as a string literal
(`#"..."`), never as markup, so characters that mean something to Typst come out literally. HTML (the
`<!-- discussion -->` markers too) is dropped, the text around and inside it kept. A heading is the target of the
report's links to it (`[title](#anchor)`), as on GitHub. The output is deterministic: no date, only the fonts
embedded in the typst package.
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

# A code block: DejaVu Sans Mono (0.602 em) at 8 pt, 6 pt inset, on an A4 page with 2 cm margins holds
# (481.9 pt - 12 pt) / 4.82 pt ≈ 97 columns (a few kept for glyphs of a fallback font). A longer line is cut at a
# space (a shell command goes on after " \", so that it can be copied), never inside a word or a path.
CODE_COLUMNS = 94
TEXT_WIDTH = 481.9  # pt: A4 less 2 cm margins
CELL_CHARACTER, CELL_INSET = 0.5 * 8.0, 2 * 0.45 * 8.0  # pt: a character of a table at 8 pt, a cell's two insets
WIDEST_TABLE = 14  # columns; a wider table of fewer rows than columns is set on its side
SHORT_TABLE = 12  # rows a table keeps together on one page (a longer one breaks, its header repeated)
PLACED_DPI = 150  # an image is never placed larger than its pixels at this resolution
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf"})  # what Typst decodes
SHELL = ("bash", "sh", "shell", "console")

PREAMBLE = Path(__file__).with_name("report.typ")  # the page, text, tables and figures: Typst's own file

COMMENT = re.compile(r"<!--.*?-->|<!--.*\Z", re.DOTALL)
SCRIPT = re.compile(r"<(script|style|textarea)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<![A-Za-z][^<>]*>|<\?.*?\?>|<!\[CDATA\[.*?\]\]>", re.DOTALL)
BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
EXTERNAL = re.compile(r"^(?:https?|ftp|mailto):", re.IGNORECASE)
ALIGN = re.compile(r"text-align:\s*(left|center|right)")
ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough")


def anchor(title: str) -> str:
    """The anchor GitHub gives a heading (what the report's links to a section use)."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def string(text: str) -> str:
    """A Typst string literal holding ``text`` exactly (NUL and lone surrogates, refused by Typst, become U+FFFD)."""
    out = []
    for ch in text:
        kind = unicodedata.category(ch)
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif kind in ("Cc", "Cs", "Zl", "Zp"):
            out.append("\\u{%x}" % (0xFFFD if kind == "Cs" or ch == "\0" else ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def wrap_code(source: str, shell: bool) -> str:
    """Tabs expanded; a line wider than the block cut at its last space that fits (a shell line going on after
    " \\"); a word wider than the block alone cut where it must (a shell joins the pieces again after "\\")."""
    end, lines = (" \\" if shell else ""), []
    for line in source.expandtabs(4).split("\n"):
        while columns(line) > CODE_COLUMNS:
            room = CODE_COLUMNS - len(end)
            while columns(line[:room]) > room:
                room -= 1
            cut = line.rfind(" ", 0, room + 1)
            if cut > len(line) - len(line.lstrip()):  # a space past the indentation: the line goes on after it
                lines.append(line[:cut] + end)
                line = ("    " if shell else "") + line[cut + 1 :]
            else:
                lines.append(line[:room] + end.strip())
                line = line[room:]
        lines.append(line)
    return "\n".join(lines)


def plain(node: SyntaxTreeNode) -> str:
    """The text of an inline node and its descendants, without markup."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(plain(child) for child in node.children)


def widest(path: Path) -> str:
    """The widest an image may be placed: its pixels at PLACED_DPI (the text width where Pillow cannot read it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return f"{image.size[0] / PLACED_DPI:.3f}in"
    except (OSError, UnidentifiedImageError, ValueError):
        return f"{TEXT_WIDTH}pt"


def column_groups(rows: list[list[SyntaxTreeNode]]) -> list[list[list[SyntaxTreeNode]]]:
    """The table's columns cut into groups that fit the text width at 8 pt, each group after the first led by the
    first column again (what names the rows); one group when the whole table fits."""
    text = lambda cell: plain(cell.children[0]) if cell.children else ""  # noqa: E731
    widths = [max(len(text(row[c])) for row in rows) * CELL_CHARACTER + CELL_INSET for c in range(len(rows[0]))]
    groups, used = [list[int]()], 0.0
    for column, width in enumerate(widths):
        if groups[-1] and used + width > TEXT_WIDTH:
            groups.append([0])
            used = widths[0]
        groups[-1].append(column)
        used += width
    return [[[row[c] for c in group] for row in rows] for group in groups]


class Renderer:
    def __init__(self, base: Path, targets: set[str]) -> None:
        self.base = Path(os.path.abspath(base))
        self.targets = targets  # the headings' anchors: what a link within the document may go to
        self.labelled: set[str] = set()  # a label names one heading: the first of its anchor
        self.title: str | None = None

    def blocks(self, nodes: Iterable[SyntaxTreeNode], nested: bool = False) -> str:
        """The blocks in order; a paragraph that leads into a table or a code block is kept on its page."""
        nodes, out = list(nodes), []
        for node, after in zip(nodes, [*nodes[1:], None]):
            text = self.block(node, nested)
            leads = node.type == "paragraph" and after is not None and after.type in ("table", "fence", "code_block")
            out.append(f"#block(sticky: true)[{text}]" if leads and text else text)
        return "\n\n".join(text for text in out if text)

    def block(self, node: SyntaxTreeNode, nested: bool = False) -> str:
        kind = node.type
        if kind == "heading":
            return self.heading(node)
        if kind == "paragraph":
            inline = node.children[0].children if node.children else []
            shown = [c for c in inline if not (c.type == "softbreak" or (c.type == "text" and not c.content.strip()))]
            if shown and all(c.type == "image" for c in shown):
                return "\n\n".join(self.figure(c) for c in shown)
            return self.inline(inline)
        if kind in ("bullet_list", "ordered_list"):
            return self.list_block(node, nested)
        if kind in ("fence", "code_block"):
            lang = node.info.strip().split()[0] if node.info.strip() else ""
            source = wrap_code(node.content.removesuffix("\n"), lang in SHELL)
            return f"#report-code({string(lang) if lang else 'none'}, {string(source)})"
        if kind == "blockquote":
            return f"#report-quote[{self.blocks(node.children, nested)}]"
        if kind == "hr":
            return "#line(length: 100%, stroke: 0.5pt + luma(150))"
        if kind == "table":
            return self.table(node)
        if kind == "html_block":
            return self.html(node.content, nested)
        if node.children:
            return self.blocks(node.children, nested)
        return f"#{string(node.content)}" if node.content.strip() else ""

    def heading(self, node: SyntaxTreeNode) -> str:
        level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
        inline = node.children[0] if node.children else None
        text = plain(inline).strip() if inline is not None else ""
        if level == 1 and self.title is None:
            self.title = text or None
        label = f" <{anchor(text)}>" if anchor(text) and anchor(text) not in self.labelled else ""
        self.labelled.add(anchor(text))
        return f"#heading(level: {level})[{self.inline(inline.children if inline else [])}]{label}"

    def list_block(self, node: SyntaxTreeNode, nested: bool) -> str:
        items = [c for c in node.children if c.type == "list_item"]
        tight = all(p.hidden for item in items for p in item.children if p.type == "paragraph")
        args = [f"tight: {'true' if tight else 'false'}"]
        if node.type == "ordered_list":
            start = node.attrs.get("start", 1)
            args.insert(0, f"start: {int(start) if str(start).isdigit() else 1}")
        separator = "\n" if tight else "\n\n"
        for item in items:
            args.append("[" + separator.join(t for child in item.children if (t := self.block(child, nested))) + "]")
        return f"#{'enum' if node.type == 'ordered_list' else 'list'}({', '.join(args)})"

    def table(self, node: SyntaxTreeNode) -> str:
        rows = [[c for c in row.children if c.type in ("th", "td")] for part in node.children for row in part.children]
        on_side = len(rows[0]) > WIDEST_TABLE and 2 <= len(rows) < len(rows[0])
        if on_side:  # four runs' figures in 22 columns cannot be read on a page; 22 rows of five columns can
            rows = [list(column) for column in zip(*rows, strict=True)]
        return "\n\n".join(self.table_part(part, on_side) for part in column_groups(rows))

    def table_part(self, rows: list[list[SyntaxTreeNode]], on_side: bool) -> str:
        header, body = rows[0], rows[1:]
        width = max(1, len(header))
        found = [ALIGN.search(str(cell.attrs.get("style", ""))) for cell in header]
        aligns = ["left" if on_side or m is None else m.group(1) for m in found] + ["left"] * (width - len(found))

        def cells(row: Sequence[SyntaxTreeNode]) -> list[str]:
            out = [f"[{self.inline(cell.children[0].children) if cell.children else ''}]" for cell in row[:width]]
            return out + ["[]"] * (width - len(out))

        body_cells = ", ".join(c for row in body for c in cells(row)) + ("," if body else "")
        head, breakable = ", ".join(cells(header)), "true" if len(body) > SHORT_TABLE else "false"
        return f"#report-table({width}, ({', '.join(aligns)},), ({head},), ({body_cells}), {breakable})"

    def html(self, content: str, nested: bool) -> str:
        """An HTML block without its comments and tags; the text left is read as Markdown (once)."""
        text = TAG.sub("", BR.sub("\n", COMMENT.sub("", SCRIPT.sub("", content))))
        if not text.strip():
            return ""
        if not nested:
            return self.blocks(SyntaxTreeNode(parser().parse(text)).children, nested=True)
        return "\n\n".join(f"#{string(' '.join(p.split()))}" for p in re.split(r"\n\s*\n", text) if p.strip())

    def figure(self, node: SyntaxTreeNode) -> str:
        path, note = self.image_path(str(node.attrs.get("src", "")))
        body = f"report-missing({string(note)})"
        if path:
            body = f"report-image({string(path)}, {widest(self.base / path[1:])})"
        caption = self.inline(node.children)
        return f"#figure({body}, kind: image, placement: auto{f', caption: [{caption}]' if caption else ''})"

    def image_path(self, src: str) -> tuple[str, str]:
        """(the image's path for Typst, from the root ``base``, and ""), or ("", the note shown instead)."""
        if URL.match(src):
            return "", f"(figure not embedded: {src})"
        decoded = unquote(src)
        for candidate in dict.fromkeys((decoded, src)):
            full = os.path.abspath(os.path.join(self.base, candidate))
            if os.path.commonpath([full, str(self.base)]) != str(self.base):
                return "", f"(figure outside the report folder: {decoded})"
            if os.path.isfile(full):
                if Path(full).suffix.lower() not in IMAGE_SUFFIXES:
                    return "", f"(figure format not supported: {decoded})"
                return "/" + Path(os.path.relpath(full, self.base)).as_posix(), ""
        return "", f"(figure missing: {decoded})"

    def inline(self, nodes: Iterable[SyntaxTreeNode]) -> str:
        """Typst markup for a run of inline content; consecutive text goes into one string literal."""
        parts, text = list[str](), list[str]()

        def markup(code: str) -> None:
            if "".join(text):
                parts.append("#" + string("".join(text)))
            text.clear()
            parts.append(code)

        for node in nodes:
            kind = node.type
            if kind in ("text", "softbreak"):
                text.append(node.content if kind == "text" else " ")
            elif kind == "hardbreak" or (kind == "html_inline" and BR.fullmatch(node.content.strip())):
                markup("#linebreak()")
            elif kind == "code_inline":
                markup(f"#raw({string(node.content)})")
            elif kind in ("em", "strong", "s"):
                markup(f"#{ {'em': 'emph', 'strong': 'strong', 's': 'strike'}[kind] }[{self.inline(node.children)}]")
            elif kind == "link":
                markup(self.link(str(node.attrs.get("href", "")), self.inline(node.children)))
            elif kind == "image":
                markup(self.figure(node))
            elif kind != "html_inline" and node.children:
                markup(self.inline(node.children))
            elif kind != "html_inline":
                text.append(node.content)
        markup("")
        return "".join(parts)

    def link(self, href: str, text: str) -> str:
        if EXTERNAL.match(href):
            return f"#link({string(href)})[{text or '#' + string(href)}]"
        if href.startswith("#") and href[1:] in self.targets:
            return f"#link(<{href[1:]}>)[{text}]"
        return text


def markdown_to_typst(markdown: str, base: Path) -> str:
    """A Typst document for ``markdown``, its image paths relative to ``base`` (the Markdown file's folder), which
    must be the Typst project's root when compiling (as ``pdf_bytes`` does)."""
    tree = SyntaxTreeNode(parser().parse(markdown))
    titles = [plain(n.children[0]).strip() for n in tree.walk() if n.type == "heading" and n.children]
    renderer = Renderer(base, {anchor(t) for t in titles if anchor(t)})
    body = renderer.blocks(tree.children)
    title = string(renderer.title) if renderer.title else "none"
    return f"#set document(title: {title}, date: none)\n{PREAMBLE.read_text(encoding='utf-8')}{body}\n"


class PdfError(UserError):
    """The report could not be made into a PDF."""


def pdf_bytes(markdown_path: Path) -> bytes:
    """The Markdown report at ``markdown_path`` as an A4 PDF. PdfError (one line: the Markdown file and Typst's first
    error) when Typst cannot compile it, or is not installed."""
    try:
        markdown = Path(markdown_path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PdfError(f"{markdown_path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        import typst
    except ImportError:
        raise PdfError(
            f"{markdown_path}: no PDF: the typst package is not installed (pip install -r requirements.txt)"
        ) from None
    base = Path(markdown_path).resolve().parent
    try:  # the source as bytes: a virtual main file at the root, nothing written there; untagged: poppler misreads
        compiler = typst.Compiler(root=str(base), ignore_system_fonts=True)  # a tagged catalog's /MarkInfo
        data = compiler.compile(input=markdown_to_typst(markdown, base).encode("utf-8"), format="pdf", pdf_tags=False)
    except typst.TypstError as err:
        first = (str(getattr(err, "message", "") or err).strip() or type(err).__name__).splitlines()[0]
        raise PdfError(f"{markdown_path}: Typst could not compile the report: {first}") from None
    if not isinstance(data, bytes):
        raise PdfError(f"{markdown_path}: Typst returned no PDF")
    return data


def write_pdf(markdown_path: Path, pdf_path: Path) -> Path:
    """Compile the Markdown report at ``markdown_path`` into ``pdf_path`` (written whole); returns ``pdf_path``."""
    write_file(Path(pdf_path), pdf_bytes(markdown_path))
    return Path(pdf_path)

"""model.reporting.pdf: a report-like Markdown file compiled by the real typst, read back with poppler-utils."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy
import pytest

from model.reporting.pdf import PdfError, markdown_to_typst, wrap_code, write_pdf

POPPLER = ("pdftotext", "pdftoppm", "pdffonts")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in POPPLER),
    reason="poppler-utils (pdftotext, pdftoppm, pdffonts) not installed: apt-get install poppler-utils",
)

# Characters that mean something to Typst (and most of them to Markdown): they must come out as written.
SPECIALS = '# $x$ *a* _b_ @ref <tag> \\ [x] ~ // c /* d */ "q" 50 % #set `t` = a/b + c - d'
# Left alone by Markdown, so written as is.
RAW_SPECIALS = '$x$ @ref \\ [x] ~ // c /* d */ "q" 50 % #set #let = a/b + c - d ] ) } ; : ='
UNICODE = "é → × – ≥"
COMMAND = "python train.py " + " ".join(f"--option-{i} value{i}" for i in range(18))
COMMAND += " --output " + "/".join(f"folder{i}" for i in range(8)) + "/" + "x" * 20  # a path wraps nowhere in it
COLUMNS = ["label", "images", "accuracy", "precision", "recall", "f1", "mean IoU", "IoU>0.5", "TP", "FP", "FN", "ms"]
ROWS = [
    ["airplane", "1,234", "0.873", "0.912", "0.861", "0.886", "0.714", "0.802", "1,001", "97", "162", "12.5"],
    ["face", "435", "0.951", "0.944", "0.958", "0.951", "0.781", "0.905", "417", "25", "18", "11.9"],
    ["motorcycle", "798", "0.902", "0.897", "0.910", "0.903", "0.736", "0.844", "726", "83", "72", "12.1"],
]
LABELS = ["airplane", "face", "motorcycle"]
STUDENT = "The deeper network overfits after epoch 12; augmentation helps the face class most."


def markdown_escape(text: str) -> str:
    """`text` with every ASCII punctuation character backslash-escaped, so that Markdown shows it literally."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


def pipe_table(columns: list[str], rows: list[list[str]]) -> str:
    """A table as pandas' DataFrame.to_markdown writes it: an index column, numbers right-aligned."""
    lines = [
        "|    | " + " | ".join(columns) + " |",
        "|---:|" + "|".join(":---" if c == "label" else "---:" for c in columns) + "|",
    ]
    lines += [f"| {i} | " + " | ".join(row) + " |" for i, row in enumerate(rows)]
    return "\n".join(lines)


def draw_figure(path: Path) -> None:
    """A plot-like PNG: axes and a curve."""
    image = numpy.full((300, 480, 3), 255, numpy.uint8)
    cv2.line(image, (40, 260), (460, 260), (0, 0, 0), 2)
    cv2.line(image, (40, 260), (40, 20), (0, 0, 0), 2)
    points = numpy.array([[40 + x, 260 - int(200 * (1 - numpy.exp(-x / 90)))] for x in range(0, 420, 5)], numpy.int32)
    cv2.polylines(image, [points], False, (200, 80, 20), 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


REPORT = f"""\
# Practical 1 report ({UNICODE})

## Training

We trained the detector with:

```bash
{COMMAND}
```

- data: `output/01-dataset` with *1,234* airplanes
- models:
  1. **simple**
  2. deeper, see [the table](report/comparison.csv), [Typst](https://typst.app) and [above](#training)

{pipe_table(COLUMNS, ROWS)}

![Loss curves of the *simple* model](report/fig.png)

## Discussion

<!-- discussion Q3 -->
{STUDENT}

Specials: {markdown_escape(SPECIALS)}

Raw: {RAW_SPECIALS}

> A quoted remark.

---
<!-- end of discussion Q3 -->
"""


def pdftotext(pdf: Path, *options: str) -> str:
    return subprocess.run(["pdftotext", *options, str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def words(pdf: Path) -> str:
    """The text of `pdf` (pdftotext -layout) with every run of whitespace made one space."""
    return " ".join(pdftotext(pdf, "-layout").split())


def table_font_sizes(pdf: Path) -> list[tuple[int, float, str]]:
    """(page, size in pt, character) of every character set inside a table's grid. A table is found by its
    strokes, the only ones the report draws 0.4 pt thick in luma(160) (model/reporting/pdf.py's report-table);
    touching strokes are merged into one box per table, and a character belongs to a table when its centre lies in
    that box. pdfminer gives a character's size as placed on the page (font size times the text and page matrices)."""
    layout = pytest.importorskip("pdfminer.layout", reason="pip install -r requirements-dev.txt (pdfminer.six)")
    from pdfminer.high_level import extract_pages

    found = []
    for page in extract_pages(str(pdf)):
        items = list(_descendants(page))
        grids = _merged([x.bbox for x in items if isinstance(x, (layout.LTLine, layout.LTRect)) and _grid_stroke(x)])
        for char in items:
            if isinstance(char, layout.LTChar) and char.get_text().strip():
                x, y = (char.x0 + char.x1) / 2, (char.y0 + char.y1) / 2
                if any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in grids):
                    found.append((page.pageid, char.size, char.get_text()))
    return found


def _descendants(item):
    from pdfminer.layout import LTChar

    for child in item:
        yield child
        if hasattr(child, "__iter__") and not isinstance(child, LTChar):
            yield from _descendants(child)


def _grid_stroke(item) -> bool:
    colour = item.stroking_color
    grey = colour[0] if isinstance(colour, (tuple, list)) else colour
    return bool(item.stroke) and abs(item.linewidth - 0.4) < 0.01 and grey is not None and abs(grey - 160 / 255) < 0.01


def _merged(boxes: list[tuple[float, float, float, float]], slack: float = 1.0) -> list[tuple[float, ...]]:
    """Boxes that touch merged, until none does."""
    merged = [tuple(b) for b in boxes]
    changed = True
    while changed:
        changed, out = False, list[tuple[float, ...]]()
        for box in merged:
            for i, other in enumerate(out):
                if all((box[k] <= other[k + 2] + slack and other[k] <= box[k + 2] + slack) for k in (0, 1)):
                    out[i] = (*map(min, box[:2], other[:2]), *map(max, box[2:], other[2:]))
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return merged


def placed_images(pdf: Path) -> list[tuple[int, int, int, int, int]]:
    """(page, width px, height px, x ppi, y ppi) of every placement of a raster image, from `pdfimages -list`
    (its ppi: pixels over the size the image is drawn at; an alpha mask's rows left out)."""
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in listing.splitlines()[2:]]
    return [(int(r[0]), int(r[3]), int(r[4]), int(r[12]), int(r[13])) for r in rows if r[2] == "image"]


POPPLER_READERS = (["pdfinfo"], ["pdffonts"], ["pdfimages", "-list"], ["pdftotext", "-layout"])


def poppler_complaints(pdf: Path) -> dict[str, str]:
    """What each of poppler's readers prints on stderr reading ``pdf`` (nothing, for a well-formed PDF)."""
    said = {}
    for reader in POPPLER_READERS:
        args = [*reader, str(pdf)] + (["-"] if reader[0] == "pdftotext" else [])
        said[" ".join(reader)] = subprocess.run(args, check=True, capture_output=True, text=True).stderr
    return said


def write_report(folder: Path, markdown: str, image: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        draw_figure(folder / "report" / "fig.png")
    path = folder / "report.md"
    path.write_text(markdown, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report-like Markdown compiled once."""
    markdown = write_report(tmp_path_factory.mktemp("report"), REPORT)
    pdf = markdown.parent / "pdf" / "report.pdf"
    assert write_pdf(markdown, pdf) == pdf
    return pdf


def test_text_comes_out_literally(report):
    text = words(report)
    for row in ROWS:
        for value in row:
            assert value in text
    for column in COLUMNS:
        assert column in text
    assert STUDENT in text
    assert f"Specials: {SPECIALS}" in text
    assert f"Raw: {RAW_SPECIALS}" in text
    assert UNICODE in text
    assert COMMAND in text.replace(" \\ ", " ")  # cut at spaces only, each piece going on after " \\"
    assert "Loss curves of the simple model" in text
    assert "A quoted remark." in text
    assert "<!--" not in text and "-->" not in text and "discussion Q3" not in text


def test_a_link_to_a_heading_goes_there_and_a_word_wider_than_a_code_block_is_cut(tmp_path):
    source = markdown_to_typst(REPORT, tmp_path)
    assert '#heading(level: 2)[#"Training"] <training>' in source and "#link(<training>)" in source
    assert wrap_code("x" * 200, shell=True).splitlines() == ["x" * 92 + "\\", "x" * 92 + "\\", "x" * 16]


def test_nothing_runs_off_the_page(report):
    """Every word (code line and 12-column table included) lies inside the 2 cm margins."""
    boxes = pdftotext(report, "-bbox")
    page_width = float(re.search(r'<page width="([\d.]+)"', boxes).group(1))  # type: ignore[union-attr]
    margin = 2 / 2.54 * 72
    found = [(float(a), float(b)) for a, b in re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"', boxes)]
    assert len(found) > 100
    assert all(x_min >= margin - 1 and x_max <= page_width - margin + 1 for x_min, x_max in found)


def test_page_one_renders(report, tmp_path):
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(report), str(tmp_path / "page")], check=True
    )
    (png,) = tmp_path.glob("page*.png")
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape[0] > image.shape[1] > 300  # A4 portrait at 50 dpi: 413 × 585
    assert (image < 100).sum() > 500
    assert image.min() != image.max()


def test_fonts_are_embedded(report):
    rows = subprocess.run(["pdffonts", str(report)], check=True, capture_output=True, text=True).stdout.splitlines()[2:]
    assert rows
    for row in rows:
        assert row.split()[-5] == "yes", row  # name, type…, encoding, emb, sub, uni, object, generation


def test_same_markdown_same_bytes(report, tmp_path):
    again = write_pdf(report.parent.parent / "report.md", tmp_path / "again.pdf")
    assert again.read_bytes() == report.read_bytes()
    write_pdf(report.parent.parent / "report.md", report)  # over itself
    assert again.read_bytes() == report.read_bytes()
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.pdf"]
    assert sorted(p.name for p in report.parent.parent.iterdir()) == ["pdf", "report", "report.md"]


def test_missing_image_shows_a_note(tmp_path):
    markdown = write_report(
        tmp_path, "# Report\n\n![Precision–recall curve](report/absent.png)\n\nAfter.\n", image=False
    )
    text = words(write_pdf(markdown, tmp_path / "report.pdf"))
    assert "(figure missing: report/absent.png)" in text
    assert "Precision–recall curve" in text and "After." in text


def test_compile_error_is_one_line(tmp_path):
    markdown = write_report(tmp_path, "# Report\n\n![A figure](report/fig.png)\n")
    pdf = write_pdf(markdown, tmp_path / "report.pdf")
    before = pdf.read_bytes()
    (tmp_path / "report" / "fig.png").write_bytes(b"not a PNG at all")
    with pytest.raises(PdfError) as caught:
        write_pdf(markdown, pdf)
    message = str(caught.value)
    assert str(markdown) in message and "\n" not in message and "Traceback" not in message
    assert pdf.read_bytes() == before  # the old PDF stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "report.md", "report.pdf"]


def test_html_is_dropped_and_text_kept(tmp_path):
    markdown = (
        "<!-- discussion Q1 --> First answer.\n\n"
        "Inline <span>kept</span> text <!-- hidden --> and<br>more.\n\n"
        "<div>\nInside a div.\n</div>\n\n"
        "<script>alert(1)</script>\n\n"
        "<!-- end of discussion Q1 -->\n"
    )
    source = markdown_to_typst(markdown, tmp_path)
    assert "<!--" not in source and "span" not in source and "alert" not in source
    text = words(write_pdf(write_report(tmp_path, markdown, image=False), tmp_path / "report.pdf"))
    assert "First answer." in text and "Inline kept text and more." in text and "Inside a div." in text
    assert "discussion" not in text and "alert" not in text


def test_every_construct_compiles_with_special_text(tmp_path):
    """Headings, nested lists, quotes, links, inline code, table cells and captions all carry Typst's characters."""
    escaped = markdown_escape(SPECIALS)
    markdown = "\n\n".join(
        [
            f"# {escaped}",
            f"#### {escaped}",
            f"1. {escaped}\n   - {escaped}\n     - {escaped}",
            f"> {escaped}",
            f'[{escaped}](https://example.com/?a=1&b="2") and [{escaped}](../x.csv)',
            f"`` {SPECIALS} ``",
            f"| {escaped.replace('|', '')} | b |\n|---|---|\n| {escaped} | |",
            f"![{escaped}](report/none.png)",
            f"~~~\n{SPECIALS}\n~~~",
            "Tab\tand NUL \0 and *emphasis with `code`* and **bold _nested_**.",
        ]
    )
    text = words(write_pdf(write_report(tmp_path, markdown, image=False), tmp_path / "report.pdf"))
    assert text.count(SPECIALS) == 13, text


def test_a_wide_table_of_few_rows_is_set_on_its_side(tmp_path):
    """A comparison of three runs in 20 columns comes out as 20 rows: each column name with its three values
    on one line, in order (the same cells, readable on a page)."""
    columns = ["run"] + [f"figure_{i}" for i in range(19)]
    rows = [[f"run-{r}"] + [f"{r}.{i:03d}" for i in range(19)] for r in range(3)]
    table = "\n".join(
        ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )
    markdown = write_report(tmp_path, f"# Report\n\n{table}\n", image=False)
    lines = [
        " ".join(line.split())
        for line in pdftotext(write_pdf(markdown, tmp_path / "report.pdf"), "-layout").splitlines()
    ]
    assert "run run-0 run-1 run-2" in lines
    for i in range(19):
        assert f"figure_{i} 0.{i:03d} 1.{i:03d} 2.{i:03d}" in lines


def test_poppler_reads_it_without_complaint(report):
    """Untagged (typst's pdf_tags off): poppler 22 misreads a tagged catalog's `/Suspects false` and prints
    "Syntax Error: Suspects object is wrong type"; no reader may print anything on stderr."""
    assert poppler_complaints(report) == {" ".join(reader): "" for reader in POPPLER_READERS}
    info = subprocess.run(["pdfinfo", str(report)], check=True, capture_output=True, text=True).stdout
    assert re.search(r"^Tagged:\s+no$", info, re.M), info


def test_every_table_is_set_at_8_points_at_least(tmp_path):
    """A table too wide for the page at 9 pt shrinks down to 8 pt and no further: wider, it is cut into column
    groups (each led by the first column again) or, with fewer rows than columns, set on its side. Measured in the
    PDF: every character inside a table's grid; and every cell's text is still there."""
    long = [f"a_rather_long_column_name_{i}" for i in range(13)]
    wide = pipe_table(["label", *long], [[label, *(f"{0.1 * i:.4f}" for i in range(13))] for label in LABELS])
    many_rows = pipe_table(["label", *long[:9]], [[f"row{r}", *(f"{r}.{i}" for i in range(9))] for r in range(20)])
    markdown = f"# Tables\n\n{pipe_table(COLUMNS, ROWS)}\n\n{wide}\n\n{many_rows}\n"
    pdf = write_pdf(write_report(tmp_path, markdown, image=False), tmp_path / "report.pdf")
    sizes = table_font_sizes(pdf)
    assert len(sizes) > 1000
    assert min(size for _, size, _ in sizes) >= 8 - 0.01, sorted({round(size, 2) for _, size, _ in sizes})
    text = words(pdf)
    for value in [*COLUMNS, *long, *(f"{0.1 * i:.4f}" for i in range(13)), "row19", "19.8"]:
        assert value in text, value


def test_no_image_is_placed_larger_than_its_pixels_at_150_dpi(tmp_path):
    """A small image keeps its pixels at 150 dpi (never enlarged to the text width); a large one is shrunk to the
    text width, and so placed at more than 150 dpi."""
    small, large = tmp_path / "report" / "small.png", tmp_path / "report" / "large.png"
    draw_figure(small)  # 480 px: 3.2 in at 150 dpi
    image = cv2.imread(str(small))
    assert image is not None
    large.write_bytes(cv2.imencode(".png", cv2.resize(image, (1600, 1000)))[1].tobytes())
    markdown = "# Figures\n\n![Small](report/small.png)\n\n![Large](report/large.png)\n"
    pdf = write_pdf(write_report(tmp_path, markdown, image=False), tmp_path / "report.pdf")
    placed = placed_images(pdf)
    assert [(w, h) for _, w, h, _, _ in placed] == [(480, 300), (1600, 1000)]
    assert all(min(x_ppi, y_ppi) >= 150 for *_, x_ppi, y_ppi in placed), placed
    assert placed[0][3] == 150 and placed[1][3] > 200  # the large one at the text width: 1600 px on 6.7 in

"""The practical's report draft: the plan's sections grouped by the part of the practical they answer, each
under a heading that names its question, with the commands that were run, its tables (Markdown, CSV, LaTeX),
figures, observations computed from the numbers, and a marked place for the student's own discussion; and the
same as a PDF.

Every number comes from the runs' own files: history.csv, and the evaluations stored in each run's
evaluations/ folder (evaluated again only when the checkpoint or the rows changed). A figure is drawn again only
when what it is drawn from changed, and the PDF compiled again only when the report or a figure did. The report
folder's files are the toolkit's (its manifest): a file there that the toolkit did not write is never replaced,
and whatever the student wrote in report.md is kept (model/reporting/documents.py).

    doc/report.md      the draft (edit between the discussion markers)
    doc/report.pdf     the same, to hand in (typst)
    doc/report/        its tables (.csv, .md, .tex) and figures
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from model.annotations import Problems, read_annotations
from model.files import Folder
from model.practical.context import FIGURE_DIGESTS, Content, Context
from model.practical.plan import Section, shown_path
from model.practical.sections import BUILDERS
from model.practical.sections.common import anchor
from model.reporting.documents import Previous, discussion, kept_text, read_previous
from model.reporting.pdf import PdfError, pdf_bytes
from model.reporting.tables import to_markdown, write_table

REPORT = "report.md"
PDF = "report.pdf"
GENERATED = ".report.generated.md"  # the report as the toolkit last wrote it: what tells the student's text apart
SIGNATURE = "written by `python compare.py --practical"
PARTS = {
    "Part 1": "Part 1: a first classification network",
    "Part 2": "Part 2: a deeper network and a pretrained one",
    "Part 3": "Part 3: bounding-box regression",
    "Part 4": "Part 4: classic approaches, and two detectors to read about",
    "Extras": "Beyond the practical",
}
TRAINING_FIGURES = (
    "Training figures are measured in evaluation mode (dropout off), as eval.py measures them. A column named "
    "`train_accuracy` (or `train_*`) is eval.py's figure on the whole training split; one named "
    "`train_sample_accuracy` (`train_sample_*`), like every curve, is what each epoch measures on a fixed sample of "
    "the training split, as large as the validation split (the whole split where that is smaller)."
)


def report_folder(folder: Path) -> Folder:
    return Folder(folder, "compare.py --practical", "--out")


def read_student_text(folder: Path) -> Previous:
    current = folder / REPORT
    generated = folder / GENERATED
    return read_previous(
        current.read_text(encoding="utf-8") if current.exists() else None,
        generated.read_text(encoding="utf-8") if generated.exists() else None,
    )


def write_report(ctx: Context, folder: Path, title: str) -> Path:
    """report.md, report.pdf and report/ in ``folder`` (through ``ctx.sink``, committed by the caller):
    every section of the plan, the student's text kept from the previous version."""
    previous = read_student_text(folder)
    for line in previous.warnings():
        ctx.echo(line)
    parts = [f"# {title}", "", intro(ctx), "", "Contents:", ""]
    parts += contents(ctx.plan.sections)
    current_part = ""
    for section in ctx.plan.sections:
        if section.part != current_part:
            current_part = section.part
            parts += ["", f"## {PARTS[current_part]}"]
        ctx.echo(f"Section {section.id}: {section.title}")
        ctx.section = section
        body, prompt = section_body(ctx, section)
        parts += ["", f"### {section.title}", "", *body]
        parts += ["", discussion(section.id, previous.discussions.get(section.id), prompt)]
    parts += kept_text(previous, [s.id for s in ctx.plan.sections])
    text = "\n".join(parts).rstrip() + "\n"
    ctx.sink.write_text(REPORT, text, editable=True)
    ctx.sink.write_text(GENERATED, text)
    write_pdf(ctx, folder, text)
    ctx.echo(f"Figures: {len(ctx.drawn)} drawn, {len(ctx.kept)} kept as the last report drew them (same inputs)")
    ctx.sink.write_text(FIGURE_DIGESTS, json.dumps(ctx.digests, indent=1, sort_keys=True) + "\n")
    return folder / REPORT


def write_pdf(ctx: Context, folder: Path, text: str) -> None:
    """report.pdf, compiled again only when the report's text or one of its figures changed."""
    digest = hashlib.sha256(json.dumps([text, ctx.digests], sort_keys=True).encode()).hexdigest()
    kept = folder / PDF
    if ctx.previous_digests.get(PDF) == digest and kept.is_file():
        ctx.sink.write_bytes(PDF, kept.read_bytes())
        ctx.digests[PDF] = digest
        ctx.echo(f"{PDF}: kept (the same report and figures)")
        return
    try:
        ctx.sink.write_bytes(PDF, pdf_bytes(ctx.sink.folder / REPORT))
        ctx.digests[PDF] = digest
    except PdfError as error:  # e.g. typst missing on a machine with its own packages: the rest is written
        ctx.echo(f"warning: {error}")


def contents(sections: list[Section]) -> list[str]:
    lines, current = [], ""
    for section in sections:
        if section.part != current:
            current = section.part
            lines.append(f"- [{PARTS[current]}](#{anchor(PARTS[current])})")
        lines.append(f"  - [{section.title}](#{anchor(section.title)})")
    return lines


def section_body(ctx: Context, section: Section) -> tuple[list[str], str]:
    """The section's Markdown and its discussion's prompt."""
    parts: list[str] = []
    ready = ctx.ready(section.runs)
    absent = [f"{r} ({ctx.found[r].describe(ctx.planned(r).options.epochs)})" for r in section.runs if r not in ready]
    if absent:
        parts += [f"Not trained yet: {', '.join(absent)}.", ""]
    partly = [
        f"{r} ({ctx.found[r].describe(ctx.planned(r).options.epochs)})"
        for r in ready
        if ctx.found[r].state == "partial"
    ]
    if partly:
        parts += [f"Partly trained (its best model so far is reported): {', '.join(partly)}.", ""]
    if not ready and section.runs:
        return parts, default_prompt(Content())
    content = BUILDERS[section.kind](ctx, section, ready)
    return parts + render(ctx, section, content), content.prompt or default_prompt(content)


def default_prompt(content: Content) -> str:
    shows = "the figures and numbers" if content.figures else "the numbers"
    return f"what {shows} show, why, and what you would try next"


def intro(ctx: Context) -> str:
    rows = len(read_annotations(ctx.dataset, Problems(skip=True))) if ctx.dataset else 0
    where = f"the dataset in {shown_path(ctx.dataset)} ({rows} images)" if ctx.dataset else "the course dataset"
    return (
        f"A draft, {SIGNATURE}{' --quick' if ctx.plan.quick else ''}` from the runs in "
        f"{shown_path(ctx.plan.output_dir)}/ on {where}, one section per question of the practical. Every number, "
        f"table and figure below comes from those runs' files (history.csv, and the evaluations eval.py stores in each "
        f"run's evaluations/ folder); the commands reproduce them. {TRAINING_FIGURES} Running it again rewrites this "
        f"file, report.pdf and report/, and keeps what you write between a section's discussion markers (text you "
        f"write elsewhere is kept too, moved to the end). Tables are also in report/ as CSV and LaTeX "
        f"(\\usepackage{{booktabs}})."
    )


def render(ctx: Context, section: Section, content: Content) -> list[str]:
    parts = ["Commands:", "", "```bash", *content.commands, "```", ""] if content.commands else []
    for number, (caption, full) in enumerate(content.tables, start=1):
        table = full.dropna(axis=1, how="all")  # e.g. the box columns of classification-only networks
        paths = write_table(ctx.sink, f"report/{section.id}-table-{number}", table, caption)
        parts += [
            f"*{caption}* ([CSV]({_link(ctx, paths['csv'])}), [LaTeX]({_link(ctx, paths['tex'])}))",
            "",
            to_markdown(table, 3),
            "",
        ]
    for caption, path in content.figures:
        parts += [f"![{caption}]({_link(ctx, path)})", ""]
    for paragraph in content.text:  # each its own paragraph
        parts += [paragraph, ""]
    if content.observations:
        parts += ["Observations (computed from the numbers above):", ""]
        parts += [f"- {line}" for line in content.observations]
    return parts


def _link(ctx: Context, path: Path) -> str:
    return Path(path).relative_to(ctx.sink.owned.folder).as_posix()

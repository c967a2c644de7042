"""The practical's report draft: one section per question of the plan, in the practical's order, each
with the commands that were run, its tables (Markdown, CSV, LaTeX), figures, observations computed from
the numbers, and a marked place for the student's own discussion; and the same as a PDF.

Every number comes from the runs' own files: history.csv, and the evaluations stored in each run's
evaluations/ folder (evaluated again only when the checkpoint or the rows changed). The report folder's
files are the toolkit's (its manifest): a file there that the toolkit did not write is never replaced,
and whatever the student wrote in report.md is kept (model/reporting/documents.py).

    doc/report.md      the draft (edit between the discussion markers)
    doc/report.pdf     the same, to hand in (typst)
    doc/report/        its tables (.csv, .md, .tex) and figures
"""

from __future__ import annotations

import re
from pathlib import Path

from model.core.owned import OwnedFolder
from model.data.annotations import Problems, read_annotations
from model.practical.context import Content, Context
from model.practical.plan import Section, shown_path
from model.practical.sections import BUILDERS
from model.reporting.documents import Previous, discussion, kept_text, read_previous
from model.reporting.pdf import PdfError, pdf_bytes
from model.reporting.tables import to_markdown, write_table

REPORT = "report.md"
PDF = "report.pdf"
GENERATED = ".report.generated.md"  # the report as the toolkit last wrote it: what tells the student's text apart
READING = "No run answers this question: it asks you to read. Your notes go in the discussion below."
SIGNATURE = "written by `python compare.py --practical"


def report_folder(folder: Path) -> OwnedFolder:
    """The report's folder; a report of an earlier version (no manifest) is recognised by its text."""

    def legacy(name: str, _path: Path) -> bool:
        report = folder / REPORT
        ours = report.exists() and SIGNATURE in report.read_text(encoding="utf-8", errors="replace")
        return ours and (name == REPORT or name.startswith("report/"))

    return OwnedFolder(folder, writer="compare.py --practical", option="--out", legacy=legacy)


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
    parts += [f"- [{s.title}](#{_anchor(s.title)})" for s in ctx.plan.sections]
    for section in ctx.plan.sections:
        ctx.echo(f"Section {section.id}: {section.title}")
        parts += ["", f"## {section.title}", "", *section_body(ctx, section)]
        parts += ["", discussion(section.id, previous.discussions.get(section.id))]
    parts += kept_text(previous, [s.id for s in ctx.plan.sections])
    text = "\n".join(parts).rstrip() + "\n"
    ctx.sink.write_text(REPORT, text, editable=True)
    ctx.sink.write_text(GENERATED, text)
    try:
        ctx.sink.write_bytes(PDF, pdf_bytes(ctx.sink.folder / REPORT))
    except PdfError as error:  # e.g. typst missing on a machine with its own packages: the rest is written
        ctx.echo(f"warning: {error}")
    return folder / REPORT


def section_body(ctx: Context, section: Section) -> list[str]:
    if section.kind == "reading":
        return [READING, ""]
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
    if ready:
        parts += render(ctx, section, BUILDERS[section.kind](ctx, section, ready))
    return parts


def intro(ctx: Context) -> str:
    rows = len(read_annotations(ctx.dataset, Problems(skip=True))) if ctx.dataset else 0
    where = f"the dataset in {shown_path(ctx.dataset)} ({rows} images)" if ctx.dataset else "the course dataset"
    return (
        f"A draft, {SIGNATURE}{' --quick' if ctx.plan.quick else ''}` from the runs in "
        f"{shown_path(ctx.plan.output_dir)}/ "
        f"on {where}. Every number, table and figure below comes from those runs' files (history.csv, and the "
        f"evaluations eval.py stores in each run's evaluations/ folder); the commands reproduce them. Training figures "
        f"are measured in evaluation mode (dropout off), as eval.py measures them, unless a table says otherwise: "
        f"on the whole training split where a table gives eval.py's figures, elsewhere (the curves, and the figures "
        f"at a run's best epoch) on the fixed sample of training images each epoch measures: as many as the "
        f"validation split holds, or the whole training split where that is smaller. "
        f"Running it again rewrites this file, report.pdf and report/, and keeps what you write between a section's "
        f"discussion markers (text you write elsewhere is kept too, moved to the end). Tables are also in report/ as "
        f"CSV and LaTeX (\\usepackage{{booktabs}})."
    )


def render(ctx: Context, section: Section, content: Content) -> list[str]:
    parts = ["Commands:", "", "```bash", *content.commands, "```", ""]
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


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")

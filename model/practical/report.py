"""The practical's report draft: what is left to write first, then the plan's sections grouped by the part of the
practical they answer, each under a heading that names its question and what ran, with the commands that ran, its
tables (Markdown, CSV, LaTeX), figures, observations computed from the numbers, and a marked place for the student's
discussion; and the same as a PDF.

Every number comes from the runs' own files: history.csv, and the evaluations stored in each run's evaluations/
(evaluated again only when the checkpoint or the rows changed). A figure is drawn again only when what it is drawn
from changed, the PDF compiled again only when the report or a figure did; what the student wrote in report.md is
kept (model/practical/documents.py).

    doc/report.md      the draft (edit between the discussion markers)
    doc/report.pdf     the same, to hand in (typst)
    doc/report/        its tables (.csv, .md, .tex) and figures
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from model.annotations import WEB_IMAGES, Problems, read_annotations, read_rows
from model.evaluate import Inference, ensure_evaluation, read_per_image
from model.files import Folder, Staging
from model.metrics import ImageResults
from model.options import DEFAULTS, TrainOptions
from model.practical.documents import discussion, is_placeholder, kept_text, read_previous
from model.practical.plan import Plan, Section, Status, shown_path
from model.reporting.pdf import PdfError, anchor, pdf_bytes
from model.reporting.tables import to_markdown, write_table
from model.runs import CLOCK_COLUMNS, Run

TITLE = "Practical 1: CNN detectors for airplane, face and motorcycle: report draft"
REPORT, PDF, GENERATED = "report.md", "report.pdf", ".report.generated.md"  # the last: the report as last written
FIGURE_DIGESTS = "report/.figure-inputs.json"  # figure -> digest of what it was drawn from; report.pdf -> its own
DRAWING_CODE = ("reporting/figures.py", "draw.py", "plots.py")  # a change there redraws every figure
QUICK = " (quick mode)"  # the report's title says so
FROM_SCRATCH = "from scratch"  # a ResNet trained without ImageNet weights: said in its label
PARTS = {
    "Part 1": "Part 1: a first classification network",
    "Part 2": "Part 2: a deeper network and a pretrained one",
    "Part 3": "Part 3: bounding-box regression",
    "Part 4": "Part 4: classic approaches, and two detectors to read about",
    "Extras": "Beyond the practical",
}
INTRO = (
    "A draft, written by `python compare.py --practical{quick}` from the runs in {runs}/ on {data}, one section per "
    "question of the practical. Every number, table and figure below comes from those runs' files (history.csv, and "
    "the evaluations eval.py stores in each run's evaluations/ folder); the commands reproduce them. Training figures "
    "are measured in evaluation mode (dropout off), as eval.py measures them: a column named `train_accuracy` (or "
    "`train_*`) is eval.py's figure on the whole training split; one named `train_sample_accuracy` "
    "(`train_sample_*`), like every curve, is what each epoch measures on a fixed sample of the training split, as "
    "large as the validation split (the whole split where that is smaller). Running it again rewrites this file, "
    "report.pdf and report/, and keeps what you write between a section's discussion markers (text you write "
    "elsewhere is kept too, moved to the end). Tables are also in report/ as CSV and LaTeX (\\usepackage{{booktabs}})."
)
LEFT_TITLE = (
    "**Left to do before handing this report in** (the list shrinks as you write; it goes once nothing is left):"
)
LEFT = {  # what a section may still wait for, as the list at the top of the report says it
    "discussion": "discussion(s) to write",
    "internet": "section(s) waiting for internet images (put them in `web_images/images/<label>/`, then run the plan "
    "again)",
    "weights": "section(s) run without ImageNet weights (doc/troubleshooting.md, 'ImageNet weights offline'; then run "
    "the plan again)",
    "reading": "reading(s) to write up",
}


@dataclass
class Content:
    """What one section shows."""

    commands: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    observations: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # other paragraphs (error analyses, pointers, code blocks)
    prompt: str = ""  # what the student's discussion should say, when not the usual
    waiting: str = ""  # what the section waits for before it can be handed in (a key of LEFT)


@dataclass
class Context:
    """What a section reads (the plan, its runs through their Run, their stored evaluations) and where it writes (the
    report folder's staged change, ``sink``); what the sections before it showed."""

    plan: Plan
    found: dict[str, Status]
    inference: Inference
    sink: Staging
    dataset: Path | None
    echo: Callable[[str], None]
    workers: int = 1
    web: Path = WEB_IMAGES
    previous_digests: dict[str, str] = field(default_factory=dict)  # of the figures the report folder holds
    digests: dict[str, str] = field(default_factory=dict)
    section: Section | None = None  # the section being written
    shown: dict[str, Section] = field(default_factory=dict)  # material (a run's curves, a figure's bytes) -> section
    drawn: list[str] = field(default_factory=list)  # the figures drawn (again) for this report
    kept: list[str] = field(default_factory=list)  # those taken as they were: drawn from the same inputs before
    placed: dict[str, str] = field(default_factory=dict)  # the digest of a figure's bytes -> its file
    _cache: dict[Any, Any] = field(default_factory=dict)

    def run(self, name: str) -> Run:
        return self.plan.run(name)

    def ready(self, runs: Sequence[str]) -> list[str]:
        """The runs that have a best model (finished, or at least one epoch done)."""
        return [r for r in runs if self.run(r).checkpoint_path("best").exists()]

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def history(self, name: str) -> list[dict[str, float]]:
        return self.cached(("history", name), self.run(name).history)

    def options(self, name: str) -> TrainOptions:
        """What the run trained with (its checkpoint's: from scratch where the plan had to), else what it will."""
        ready = self.run(name).has_run
        return self.cached(("options", name), self.run(name).options if ready else lambda: self.plan.runs[name].options)

    def label(self, name: str) -> str:
        """The run's name, with "from scratch" where a ResNet had no ImageNet weights."""
        options = self.options(name)
        return f"{name} ({FROM_SCRATCH})" if options.model == "resnet" and not options.pretrained else name

    def split_sizes(self, name: str) -> dict[str, int]:
        return {s: len(read_rows(self.run(name).split_path(s), Problems(skip=True))) for s in ("train", "val", "test")}

    def evaluation(self, name: str, which: str = "best", split: str = "test") -> dict[str, Any]:
        """The stored evaluation of the run's ``which``.pth on its own ``split`` (evaluated when missing)."""
        evaluate = lambda: ensure_evaluation(self.run(name), which, split, self.inference, self.workers, self.echo)[0]  # noqa: E731
        return self.cached((name, which, split), evaluate)

    def figures(self, name: str, which: str = "best", split: str = "test") -> dict[str, Any]:
        return self.evaluation(name, which, split)["figures"]

    def per_image(self, name: str, which: str = "best") -> ImageResults:
        path = self.run(name).evaluation_path(which, "test").with_name(f"{which}.test.images.csv")
        return read_per_image(path, self.evaluation(name, which)["classes"])

    def internet(self, name: str) -> tuple[dict[str, Any], ImageResults]:
        stored, csv = ensure_evaluation(self.run(name), "best", Path(self.web), self.inference, self.workers, self.echo)
        return stored["figures"], read_per_image(csv, stored["classes"])

    def once(self, material: str) -> Section | None:
        """The section that showed ``material`` already, or None (then this one shows it)."""
        earlier = self.shown.setdefault(material, self.section) if self.section else None
        return earlier if earlier is not self.section else None

    def twin(self, run: str, material: str) -> tuple[str, Section] | None:
        """An earlier run that showed ``material`` (e.g. "best-vs-last") and trained with the same options to the same
        numbers (quick mode's 200 epochs are the template's 2), and the section that showed it: shown once, there."""
        earlier = [(key.split(":", 1)[1], s) for key, s in self.shown.items() if key.startswith(f"{material}:")]
        same = [(o, s) for o, s in earlier if o != run and not self.options(o).differences(self.options(run))]
        return next(((o, s) for o, s in same if unclocked(self.history(o)) == unclocked(self.history(run))), None)

    def title(self, section: Section) -> str:
        """The section's heading, its placeholders filled from what its first run trained with (or will)."""
        options = self.options(section.runs[0]) if section.runs else DEFAULTS
        units = {"epochs": "{} epochs", "batch_size": "batch {}", "image_size": "{} px", "lr": "learning rate {:g}"}
        differ = [n for n in units if getattr(options, n) != getattr(DEFAULTS, n)]
        shown = ", ".join(units[n].format(getattr(options, n)) for n in differ)
        shown = f"{shown} (the template's settings otherwise)" if differ else "the template's settings"
        weights = "with ImageNet weights" if options.pretrained else f"{FROM_SCRATCH} (no ImageNet weights)"
        filled = {"epochs": str(options.epochs), "weights": weights, "setting": shown}
        return re.sub(r"\{(epochs|weights|setting)\}", lambda m: filled[m[1]], section.title)  # any other brace: as is

    def pointer(self, earlier: Section, what: str) -> str:
        """One line sending the reader to the section that shows ``what`` already."""
        return f"{what}: see [{self.title(earlier)}](#{anchor(self.title(earlier))}) above."

    def figure(self, content: Content, name: str, caption: str, draw: Callable[[], bytes | None], *inputs: Any) -> None:
        """The figure ``report/name`` in ``content``: drawn by ``draw`` (None: nothing to show), or, when the report
        folder holds it drawn from the same ``inputs``, taken as it is; a figure an earlier section shows, the same
        image, is pointed to instead."""
        relative = f"report/{name}"
        drawn_from = json.dumps([drawing_code(), name, *inputs], default=str, sort_keys=True)
        digest = hashlib.sha256(drawn_from.encode()).hexdigest()
        drawn_as, _, same_as = self.previous_digests.get(relative, "").partition("=")  # "=": pointed to another
        existing = self.sink.owned.folder / (same_as or relative)
        if drawn_as == digest and existing.is_file():
            data: bytes | None = existing.read_bytes()
            self.kept.append(relative)
        elif (data := draw()) is not None:
            self.drawn.append(relative)
        if data is None:
            return
        image = hashlib.sha256(data).hexdigest()
        if earlier := self.once(f"figure:{image}"):
            content.text.append(self.pointer(earlier, f"The same figure, {caption[0].lower()}{caption[1:]}"))
            self.digests[relative] = f"{digest}={self.placed[image]}"
            return
        self.digests[relative], self.placed[image] = digest, relative
        content.figures.append((caption, self.sink.write_bytes(relative, data)))


Builder = Callable[[Context, Section, list[str]], Content]  # a section kind's function (model/practical/sections)


@functools.cache
def drawing_code() -> str:
    root = Path(__file__).resolve().parent.parent
    return hashlib.sha256(b"".join((root / name).read_bytes() for name in DRAWING_CODE)).hexdigest()


def unclocked(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in history]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def report_folder(folder: Path) -> Folder:
    return Folder(folder, "compare.py --practical", "--out")


def read_digests(folder: Path) -> dict[str, str]:
    try:
        values = json.loads((folder / FIGURE_DIGESTS).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}
    except (OSError, ValueError):
        return {}


def write_report(ctx: Context, folder: Path, builders: Mapping[str, Builder]) -> tuple[Path, list[str]]:
    """report.md, report.pdf and report/ in ``folder`` (through ``ctx.sink``, committed by the caller): what is left
    to write, then every section of the plan, the student's text kept from the previous version; the lines that say
    on the terminal what is left."""
    read = lambda path: path.read_text(encoding="utf-8") if path.exists() else None  # noqa: E731
    previous = read_previous(read(folder / REPORT), read(folder / GENERATED))
    for line in previous.warnings():
        ctx.echo(line)
    body: list[str] = []
    contents: list[str] = []  # a link to each part and each section
    left: dict[str, list[Section]] = {}
    for section in ctx.plan.sections:
        if section.part != (ctx.section.part if ctx.section else ""):
            body += ["", f"## {PARTS[section.part]}"]
            contents.append(f"- [{PARTS[section.part]}](#{anchor(PARTS[section.part])})")
        contents.append(f"  - [{ctx.title(section)}](#{anchor(ctx.title(section))})")
        ctx.echo(f"Section {section.id}: {ctx.title(section)}")
        ctx.section = section
        content = section_content(ctx, section, builders)
        text = previous.discussions.get(section.id)
        unwritten = text is None or is_placeholder(text)
        for what in (content.waiting, ("discussion" if section.runs else "reading") if unwritten else ""):
            if what:
                left.setdefault(what, []).append(section)
        body += ["", f"### {ctx.title(section)}", "", *render(ctx, section, content)]
        shown = "the figures and numbers" if content.figures else "the numbers"
        prompt = content.prompt or f"what {shown} show, why, and what you would try next"
        body += ["", discussion(section.id, text, prompt)]
    head = [f"# {TITLE}{QUICK if ctx.plan.quick else ''}", "", intro(ctx), "", *left_to_do(ctx, left), "Contents:", ""]
    text = "\n".join([*head, *contents, *body, *kept_text(previous, [s.id for s in ctx.plan.sections])]).rstrip() + "\n"
    ctx.sink.write_text(REPORT, text, editable=True)
    ctx.sink.write_text(GENERATED, text)
    write_pdf(ctx, folder, text)
    ctx.echo(f"Figures: {len(ctx.drawn)} drawn, {len(ctx.kept)} kept as the last report drew them (same inputs)")
    ctx.sink.write_text(FIGURE_DIGESTS, json.dumps(ctx.digests, indent=1, sort_keys=True) + "\n")
    said = [f"  {len(s)} {LEFT[k].split(' (')[0]}: {', '.join(x.id for x in s)}" for k, s in left.items()]
    opening = f"Left to write in {folder / REPORT} before handing it in (its first lines link each):"
    return folder / REPORT, [opening, *said] if said else []


def left_to_do(ctx: Context, left: dict[str, list[Section]]) -> list[str]:
    """The list of what is left before the report is handed in, each item with a link to its section; none when
    nothing is."""
    if not left:
        return []
    links = {k: ", ".join(f"[{s.id}](#{anchor(ctx.title(s))})" for s in left[k]) for k in LEFT if k in left}
    return [LEFT_TITLE, "", *(f"- {len(left[k])} {LEFT[k]}: {links[k]}" for k in links), ""]


def write_pdf(ctx: Context, folder: Path, text: str) -> None:
    """report.pdf, compiled again only when the report's text or one of its figures changed."""
    digest = hashlib.sha256(json.dumps([text, ctx.digests], sort_keys=True).encode()).hexdigest()
    kept = folder / PDF
    try:
        if ctx.previous_digests.get(PDF) == digest and kept.is_file():
            ctx.sink.write_bytes(PDF, kept.read_bytes())
            ctx.echo(f"{PDF}: kept (the same report and figures)")
        else:
            ctx.sink.write_bytes(PDF, pdf_bytes(ctx.sink.folder / REPORT))
        ctx.digests[PDF] = digest
    except PdfError as error:  # e.g. typst missing on a machine with its own packages: the rest is written
        ctx.echo(f"warning: {error}")


def section_content(ctx: Context, section: Section, builders: Mapping[str, Builder]) -> Content:
    """The section's content (``builders``: the function of each kind), after a line on its runs not trained yet or
    partly trained."""
    ready = ctx.ready(section.runs)
    said = lambda r: f"{r} ({ctx.found[r].describe(ctx.plan.runs[r].options.epochs)})"  # noqa: E731
    unready = [said(r) for r in section.runs if r not in ready]
    text = [f"Not trained yet: {', '.join(unready)}."] if unready else []
    if partly := [said(r) for r in ready if ctx.found[r].state == "partial"]:
        text.append(f"Partly trained (its best model so far is reported): {', '.join(partly)}.")
    if not ready and section.runs:
        return Content(text=text)
    content = builders[section.kind](ctx, section, ready)
    if "{weights}" in section.title and any(ctx.plan.runs[r].imagenet and not ctx.options(r).pretrained for r in ready):
        content.waiting = "weights"
    content.text[:0] = text
    return content


def intro(ctx: Context) -> str:
    rows = len(read_annotations(ctx.dataset, Problems(skip=True))) if ctx.dataset else 0
    data = f"the dataset in {shown_path(ctx.dataset)} ({rows} images)" if ctx.dataset else "the course dataset"
    return INTRO.format(quick=" --quick" if ctx.plan.quick else "", runs=shown_path(ctx.plan.output_dir), data=data)


def render(ctx: Context, section: Section, content: Content) -> list[str]:
    parts = ["Commands:", "", "```bash", *content.commands, "```", ""] if content.commands else []
    link = lambda path: Path(path).relative_to(ctx.sink.owned.folder).as_posix()  # noqa: E731
    for number, (caption, full) in enumerate(content.tables, start=1):
        table = full.dropna(axis=1, how="all")  # e.g. the box columns of classification-only networks
        paths = write_table(ctx.sink, f"report/{section.id}-table-{number}", table, caption)
        csv, tex = link(paths["csv"]), link(paths["tex"])
        parts += [f"*{caption}* ([CSV]({csv}), [LaTeX]({tex}))", "", to_markdown(table, 3), ""]
    parts += [f"![{caption}]({link(path)})\n" for caption, path in content.figures]
    parts += [f"{paragraph}\n" for paragraph in content.text]
    if content.observations:
        parts += [
            "Observations (computed from the numbers above):",
            "",
            *(f"- {line}" for line in content.observations),
        ]
    return parts

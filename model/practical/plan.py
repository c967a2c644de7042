"""The practical's plan (practical.toml): its runs and report sections, read and checked, and what each
run's folder holds (through its Run: one rule for "is it trained?").

    [defaults] args = "..."        given to every run before its own
    [quick]    args, image_size, epochs, demo_images, no_pretrained: the plan at reduced scale
    [[run]]    name, args (train.py's options), optional
    [[section]] id, title, kind, runs, optional

Every key is checked (a typo names the closest valid key), every run's args are parsed as train.py
parses them (model/training/command.py), before anything trains.
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import config
from model.core.errors import UserError
from model.network import imagenet_weights_file, min_image_size, takes_option
from model.runs.run import Run, RunError
from model.training.command import describe_failure, options_from_args
from model.training.options import TrainOptions, flag

PLAN_FILE = config.PROJECT_ROOT / "practical.toml"
SECTION_KINDS = (
    "best-vs-last",
    "long",
    "fractions",
    "ablation",
    "internet",
    "comparison",
    "loss-weights",
    "frozen-vs-fine-tuned",
    "classic",
    "augment",
    "architectures",
    "reading",  # a question answered by reading, not by a run: the section holds only the student's notes
)
KEYS = {
    "defaults": {"args"},
    "quick": {"args", "image_size", "epochs", "demo_images", "no_pretrained"},
    "run": {"name", "args", "optional"},
    "section": {"id", "title", "kind", "runs", "optional"},
}
COURSE_RESOURCES = "--gres=shard:1 --cpus-per-task=8 --mem=12G"  # the course's srun options


class PlanError(UserError):
    """The plan file, or what the runs' folders hold, does not allow the plan to go on."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    args: tuple[str, ...]  # train.py's options: the plan's defaults, the run's own, the quick mode's
    options: TrainOptions  # what train.py makes of them
    optional: bool = False


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    kind: str
    runs: tuple[str, ...]
    optional: bool = False


@dataclass
class Status:
    """What a planned run's folder holds: the Run's status, or skipped (the plan will not train it here)."""

    state: str  # finished | partial | missing | skipped
    epoch: int = 0  # epochs done
    why: str = ""  # for skipped runs

    def describe(self, planned: int) -> str:
        if self.state == "partial":
            return f"interrupted after epoch {self.epoch} of {planned}: resumes"
        return {"finished": "finished: kept", "missing": "to train", "skipped": f"skipped ({self.why})"}[self.state]


@dataclass
class Plan:
    """The runs and sections of practical.toml, as chosen (--only, --quick)."""

    runs: dict[str, PlannedRun]
    sections: list[Section]
    output_dir: Path  # the runs go into output_dir/<name>/
    quick: dict[str, Any] = field(default_factory=dict)  # the [quick] table, when in quick mode

    def folder(self, name: str) -> Path:
        return self.output_dir / name

    def run(self, name: str) -> Run:
        return Run(self.folder(name))

    def shown(self, run: PlannedRun, dataset: Path | None) -> str:
        """The command as a user would type it in the project's folder."""
        argv = ["python", *self.command(run, dataset)[1:-1]]  # without --resume-if-started: what a user types
        return shlex.join(shown_path(a) for a in argv)

    def command(self, run: PlannedRun, dataset: Path | None) -> list[str]:
        """The train.py command that trains the run, or goes on with it when its folder holds it."""
        where = ["--dataset", str(dataset)] if dataset is not None else []
        train = [sys.executable, str(config.PROJECT_ROOT / "train.py")]
        return [
            *train,
            *run.args,
            *where,
            "--output-dir",
            str(self.output_dir),
            "--name",
            run.name,
            "--resume-if-started",
        ]


# ----------------------------------------------------------------------------------------------
# Reading the plan
# ----------------------------------------------------------------------------------------------
def read_document(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file (check --plan)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: cannot be read as a text file ({error})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{path}: not valid TOML ({error})") from None
    check_keys(document, path)
    if not document.get("run") or not document.get("section"):
        raise PlanError(f"{path}: the plan holds no [[run]] or no [[section]]: a plan needs both (see practical.toml)")
    return document


def _unknown(keys: Sequence[str], known: set[str], where: str, path: Path) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            raise PlanError(f"{path}: {where}: unknown key {key!r}{hint}")


def check_keys(document: dict[str, Any], path: Path) -> None:
    """Every table and key of the plan is one the plan knows: a typo is never silently ignored."""
    _unknown(list(document), set(KEYS), "top level", path)
    for table in ("defaults", "quick"):
        if not isinstance(document.get(table, {}), dict):
            raise PlanError(f"{path}: [{table}] must be a table")
        _unknown(list(document.get(table, {})), KEYS[table], f"[{table}]", path)
    for table in ("run", "section"):
        entries = document.get(table, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PlanError(f"{path}: [[{table}]] must be an array of tables")
        for number, entry in enumerate(entries, start=1):
            _unknown(
                list(entry), KEYS[table], f"[[{table}]] {number} ({entry.get('name') or entry.get('id') or '?'})", path
            )


def split_args(text: Any, path: Path, where: str) -> list[str]:
    if not isinstance(text, str):
        raise PlanError(f"{path}: {where}: args must be a string of train.py options")
    try:
        return shlex.split(text)
    except ValueError as error:
        raise PlanError(f"{path}: {where}: {error} in its args {text!r}; close the quote") from None


def parse_run(args: list[str], path: Path, name: str) -> TrainOptions:
    try:
        return options_from_args(args)
    except Exception as error:  # click's usage errors and OptionError: a typo is found before anything trains
        raise PlanError(f"{path}: run {name}: {describe_failure(error)} (in its args: {shlex.join(args)})") from None


def read_runs(document: dict[str, Any], path: Path, quick: bool) -> dict[str, PlannedRun]:
    defaults = split_args(document.get("defaults", {}).get("args", ""), path, "[defaults]")
    settings = document.get("quick", {}) if quick else {}
    runs: dict[str, PlannedRun] = {}
    for number, entry in enumerate(document.get("run", []), start=1):
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in runs:
            raise PlanError(
                f"{path}: run {number} needs a name of its own, of letters, digits, '.', '_' and '-' (got {name!r})"
            )
        args = [*defaults, *split_args(entry.get("args", ""), path, f"run {name}")]
        options = parse_run(args, path, name)
        if quick:
            args = quick_args(args, options, settings, path)
            options = parse_run(args, path, name)
        runs[name] = PlannedRun(name, tuple(args), options, bool(entry.get("optional", False)))
    return runs


def quick_args(args: list[str], options: TrainOptions, settings: dict[str, Any], path: Path) -> list[str]:
    """A run's args at the [quick] table's scale."""
    args = [*_without(args, "--epochs"), *split_args(settings.get("args", ""), path, "[quick]")]
    args += ["--epochs", str(min(options.epochs, int(settings.get("epochs", options.epochs))))]
    if "image_size" in settings:  # each network at this side, or at its smallest where that is larger
        args += ["--image-size", str(max(int(settings["image_size"]), min_image_size(options.model)))]
    if settings.get("no_pretrained") and takes_option(options.model, "pretrained"):
        args = [*_without(args, "--weights"), "--no-pretrained"]
    return args


def shown_path(path: str | Path | None) -> str:
    """A path as a user types it in the project's folder: relative to it when inside it."""
    if path is None:
        return ""
    path = Path(path)
    inside = path.is_absolute() and path.is_relative_to(config.PROJECT_ROOT)
    return str(path.relative_to(config.PROJECT_ROOT)) if inside else str(path)


def read_sections(document: dict[str, Any], path: Path, runs: dict[str, PlannedRun]) -> list[Section]:
    sections: list[Section] = []
    for number, entry in enumerate(document.get("section", []), start=1):
        section = Section(
            str(entry.get("id", "")),
            str(entry.get("title", "")),
            str(entry.get("kind", "")),
            tuple(entry.get("runs", ())),
            bool(entry.get("optional", False)),
        )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", section.id) or section.id in {x.id for x in sections}:
            raise PlanError(
                f"{path}: section {number} needs an id of its own, of letters, digits, '.', '_' and '-' "
                f"(got {section.id!r})"
            )
        if section.kind not in SECTION_KINDS:
            raise PlanError(
                f"{path}: section {section.id}: kind {section.kind!r} is none of {', '.join(SECTION_KINDS)}"
            )
        missing = [run for run in section.runs if run not in runs]
        if section.kind == "reading" and section.runs:
            raise PlanError(f"{path}: section {section.id}: a reading section has no runs (remove its runs)")
        if missing or (not section.runs and section.kind != "reading"):
            raise PlanError(
                f"{path}: section {section.id} names run(s) {', '.join(missing) or '(none)'} that the plan lacks"
            )
        sections.append(section)
    return sections


def load_plan(path: Path, output_dir: Path, quick: bool, only: str | None, for_report: bool = False) -> Plan:
    """The plan of ``path``, each run's options parsed (and so checked) as train.py parses them,
    restricted to the sections ``only`` names (ids or their prefixes, e.g. "Part3"); optional sections
    only when named. ``for_report``: every section, and the optional ones named or already started."""
    document = read_document(path)
    runs = read_runs(document, path, quick)
    sections = read_sections(document, path, runs)
    chosen = _select(sections, only, path)
    if for_report:  # the report covers the whole plan: --only chooses what trains, not what is reported
        chosen = [s for s in sections if s in chosen or not s.optional or _started(s, output_dir)]
    needed = dict.fromkeys(run for section in chosen for run in section.runs)
    return Plan({name: runs[name] for name in needed}, chosen, output_dir, document.get("quick", {}) if quick else {})


def _without(args: list[str], option: str) -> list[str]:
    """``args`` without ``option`` and its value."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def _started(section: Section, output_dir: Path) -> bool:
    """Whether one of the section's runs has a model to report (an optional section is reported then)."""
    return any(Run(output_dir / run).has_run for run in section.runs)


def _select(sections: list[Section], only: str | None, path: Path) -> list[Section]:
    if not only:
        return [s for s in sections if not s.optional]
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [s for s in sections if any(s.id == w or s.id.startswith(w) for w in wanted)]
    unmatched = [w for w in wanted if not any(s.id == w or s.id.startswith(w) for s in sections)]
    if unmatched or not wanted:
        raise PlanError(
            f"--only {only}: no section {', '.join(unmatched) or '(none named)'} in {path} (sections: "
            f"{', '.join(s.id for s in sections)})"
        )
    return chosen


# ----------------------------------------------------------------------------------------------
# What exists
# ----------------------------------------------------------------------------------------------
def run_status(plan: Plan, run: PlannedRun, dataset: Path | None) -> Status:
    """The run's folder through its Run: finished, partly trained (it resumes) or missing. A folder trained
    with other options, on another dataset, damaged, or written by a running process, is a PlanError."""
    folder = plan.run(run.name)
    try:
        status = folder.status()
        held = folder.held_by()
    except RunError as error:
        raise PlanError(str(error)) from None
    if held is not None:
        raise PlanError(
            f"{folder.folder} is being written by {held}: wait for it to finish (or stop it), then run the plan again"
        )
    if status.state == "missing":
        return Status("missing")
    recorded = folder.options()
    differs = recorded.differences(run.options)
    if differs and set(differs) <= {"pretrained", "freeze"} and run.options.pretrained and not recorded.pretrained:
        differs = []  # trained from scratch where ImageNet weights were missing: kept, and the report says so
    if differs:
        shown = ", ".join(f"{n}={getattr(recorded, n)!r} (plan: {getattr(run.options, n)!r})" for n in differs[:3])
        raise PlanError(
            f"{folder.folder} was trained with other options than the plan's {run.name}: {shown}; "
            f"move it away (or rename the run in the plan) to train it as planned"
        )
    trained_on = folder.checkpoint("last", mmap=True).dataset
    if dataset is not None and trained_on is not None and trained_on.resolve() != dataset.resolve():
        raise PlanError(
            f"{folder.folder} was trained on {trained_on}, not on {dataset}: move it away to train "
            f"{run.name} on this dataset, or pass --dataset {trained_on}"
        )
    return Status(status.state, status.epoch)


def lacking_weights(plan: Plan, found: dict[str, Status]) -> list[str]:
    """The runs to train that need ResNet-18's ImageNet weights this machine does not have."""
    weights = imagenet_weights_file()
    return [
        name
        for name, run in plan.runs.items()
        if found[name].state != "finished"
        and run.options.pretrained
        and run.options.weights is None
        and not weights.exists()
    ]


def statuses(plan: Plan, dataset: Path | None) -> dict[str, Status]:
    return {name: run_status(plan, run, dataset) for name, run in plan.runs.items()}


def weights_missing_line(lacking: Sequence[str]) -> str:
    weights = imagenet_weights_file()
    return (
        f"ResNet-18's ImageNet weights are not in {weights.parent} (this machine may be offline): "
        f"{', '.join(lacking)} will train from scratch (no ImageNet weights), and the report says so. Put "
        f"{weights.name} there (README, 'ResNet's ImageNet weights') to train them as planned, or pass "
        f"--skip-unavailable to leave them out"
    )


def from_scratch(run: PlannedRun) -> PlannedRun:
    """The run without ImageNet weights: what the plan trains offline (its options say so)."""
    args = [*_without(list(run.args), "--weights"), "--no-pretrained"]
    return PlannedRun(run.name, tuple(args), options_from_args(args), run.optional)


__all__ = ["COURSE_RESOURCES", "PLAN_FILE", "Plan", "PlanError", "PlannedRun", "Section", "Status", "flag", "load_plan"]

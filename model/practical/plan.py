"""The practical's plan (practical.toml): its runs and report sections, read and checked against the plan's schema,
and what each run's folder holds (through its Run: one rule for "is it trained?").

    [defaults] args = "..."        given to every run before its own (an option that does not apply to a run,
                                   e.g. --box-weight for a classification run, is left out there, said once)
    [quick]    args, image_size, epochs, demo_images, no_pretrained: the plan at reduced scale
    [[run]]    name, args (train.py's options), optional
    [[section]] id, title, kind, runs, optional: one question of the practical in the report

Every key and type is checked (a typo names the closest valid key); a name or an id given twice, a run no section
reads, and args the plan sets itself (--output-dir, --name, --dataset) are refused; every run's args are parsed as
train.py parses them: all before anything trains, with the file, the entry and the fix in the message.
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import config
from model.errors import UserError
from model.network import NETWORKS, imagenet_weights_file
from model.options import TrainOptions, at_tiny_scale, flag, given_names, parse
from model.runs import Run

# Each table's keys and the type of their values ("list": of strings); "*" marks the keys an entry needs.
SCHEMA: dict[str, dict[str, str]] = {
    "defaults": {"args": "str"},
    "quick": {"args": "str", "image_size": "int", "epochs": "int", "demo_images": "int", "no_pretrained": "bool"},
    "run": {"name": "*str", "args": "str", "optional": "bool"},
    "section": {"id": "*str", "title": "*str", "kind": "*str", "runs": "list", "optional": "bool"},
}
KINDS = {  # a kind of value: what it must be, and the test of a value
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("a whole number of at least 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ('a list of names, e.g. ["a", "b"]', lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
}
SET_BY_THE_PLAN = ("--output-dir", "--name", "--dataset", "--resume", "--resume-if-started", "--overwrite")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class PlanError(UserError):
    """The plan file, or what the runs' folders hold, does not allow the plan to go on."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    args: tuple[str, ...]  # train.py's options: the plan's defaults, the run's own, the quick mode's
    options: TrainOptions  # what train.py makes of them
    optional: bool = False
    imagenet: bool = False  # its network starts from ImageNet weights at full scale (quick mode trains it without)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    kind: str
    runs: tuple[str, ...]
    optional: bool = False

    @property
    def part(self) -> str:
        """The part of the practical it answers, from its id ("Part 3" for P3-Q8; "Extras" otherwise)."""
        found = re.match(r"P(\d)-", self.id)
        return f"Part {found.group(1)}" if found else "Extras"


@dataclass
class Status:
    """What a planned run's folder holds, or skipped (the plan will not train it here)."""

    state: str  # finished | partial | missing | skipped
    epoch: int = 0  # epochs done
    why: str = ""  # for skipped runs

    def describe(self, planned: int) -> str:
        if self.state == "partial":
            return f"interrupted after epoch {self.epoch} of {planned}: resumes"
        return {"finished": "finished: kept", "missing": "to train", "skipped": f"skipped ({self.why})"}[self.state]

    @property
    def to_train(self) -> bool:
        return self.state in ("missing", "partial")


@dataclass
class Plan:
    """The runs and sections of practical.toml, as chosen (--only, --quick)."""

    runs: dict[str, PlannedRun]
    sections: list[Section]
    output_dir: Path  # the runs go into output_dir/<name>/
    quick: dict[str, Any] = field(default_factory=dict)  # the [quick] table, in quick mode
    notes: list[str] = field(default_factory=list)  # what reading the plan left out, said once

    def run(self, name: str) -> Run:
        return Run(self.output_dir / name)

    def command(self, name: str, dataset: Path | None) -> list[str]:
        """The train.py command that trains the run, or goes on with it when its folder holds it."""
        where = ["--dataset", str(dataset)] if dataset is not None else []
        output = ["--output-dir", str(self.output_dir), "--name", name, "--resume-if-started"]
        return [sys.executable, str(config.PROJECT_ROOT / "train.py"), *self.runs[name].args, *where, *output]

    def shown(self, name: str, dataset: Path | None) -> str:
        """The command as a user types it in the project's folder (without --resume-if-started)."""
        return shlex.join(["python", *(shown_path(a) for a in self.command(name, dataset)[1:-1])])


def shown_path(path: str | Path) -> str:
    """A path as a user types it in the project's folder: relative to it when inside it."""
    path = Path(path)
    inside = path.is_absolute() and path.is_relative_to(config.PROJECT_ROOT)
    return str(path.relative_to(config.PROJECT_ROOT)) if inside else str(path)


# ----------------------------------------------------------------------------------------------
# Reading the plan
# ----------------------------------------------------------------------------------------------
def read_document(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file (check --plan)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: cannot be read as a text file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{path}: not valid TOML ({error})") from None
    unknown(document, SCHEMA, "top level", path)
    for table in ("defaults", "quick"):
        if not isinstance(entry := document.get(table, {}), dict):
            raise PlanError(f"{path}: [{table}] must be a table")
        check_entry(entry, table, f"[{table}]", path)
    for table in ("run", "section"):
        entries = document.get(table, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PlanError(f"{path}: [[{table}]] must be an array of tables")
        for number, entry in enumerate(entries, start=1):
            check_entry(entry, table, f"[[{table}]] {number} ({entry.get('name') or entry.get('id') or '?'})", path)
    if not document.get("run") or not document.get("section"):
        raise PlanError(f"{path}: the plan holds no [[run]] or no [[section]]: a plan needs both (see practical.toml)")
    return document


def unknown(keys: Collection[str], known: Collection[str], where: str, path: Path) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            raise PlanError(f"{path}: {where}: unknown key {key!r}{hint}")


def check_entry(entry: dict[str, Any], table: str, where: str, path: Path) -> None:
    """Every key of the entry one its table knows, of its type (a list of strings, each once); its needed keys."""
    unknown(entry, SCHEMA[table], where, path)
    for key, kind in SCHEMA[table].items():
        if key not in entry:
            if kind.startswith("*"):
                raise PlanError(f"{path}: {where}: needs a {key}")
            continue
        value, (wanted, fits) = entry[key], KINDS[kind.lstrip("*")]
        if not fits(value):
            raise PlanError(f"{path}: {where}: {key} = {value!r} must be {wanted}")
        if isinstance(value, list) and len(set(value)) != len(value):
            twice = sorted({v for v in value if value.count(v) > 1})
            raise PlanError(f"{path}: {where}: {key} names {', '.join(twice)} twice; name each once")


def split_args(text: Any, path: Path, where: str) -> list[str]:
    try:
        args = shlex.split(text)
    except ValueError as error:
        raise PlanError(f"{path}: {where}: {error} in its args {text!r}; close the quote") from None
    for option in (arg.split("=", 1)[0] for arg in args):
        if option in SET_BY_THE_PLAN:
            raise PlanError(
                f"{path}: {where}: its args hold {option}, which the plan sets itself (runs go into --output-dir/"
                f"<run name>, on the plan's --dataset); remove it"
            )
    return args


def parse_run(args: list[str], path: Path, name: str, lenient: Collection[str] = ()) -> tuple[TrainOptions, list[str]]:
    """A run's options, and the options of ``lenient`` (the plan's defaults) left out where they do not apply."""
    try:
        return parse(args, frozenset(lenient))
    except UserError as error:  # a typo is found before anything trains
        raise PlanError(f"{path}: run {name}: {error} (in its args: {shlex.join(args)})") from None


def read_runs(document: dict[str, Any], path: Path, quick: bool) -> tuple[dict[str, PlannedRun], list[str]]:
    """The plan's runs, and a note for each option of [defaults] left out of the runs it does not apply to."""
    defaults = split_args(document.get("defaults", {}).get("args", ""), path, "[defaults]")
    try:
        lenient = given_names(defaults)
    except UserError as error:
        raise PlanError(f"{path}: [defaults]: {error} (in its args: {shlex.join(defaults)})") from None
    runs: dict[str, PlannedRun] = {}
    left_out: dict[str, list[str]] = {}
    for number, entry in enumerate(document["run"], start=1):
        name = entry["name"]
        check_name(name, runs, path, f"run {number} needs a name")
        args = [*defaults, *split_args(entry.get("args", ""), path, f"run {name}")]
        options, dropped = parse_run(args, path, name, lenient)
        imagenet = "pretrained" in NETWORKS[options.model].options() and options.pretrained
        if quick:
            args = quick_args(args, options, document.get("quick", {}), path)
            options, dropped = parse_run(args, path, name, lenient)
        for option in dropped:
            left_out.setdefault(option, []).append(name)
        runs[name] = PlannedRun(name, tuple(args), at_tiny_scale(options), entry.get("optional", False), imagenet)
    notes = [
        f"note: [defaults] {flag(o)} does not apply to {', '.join(n)}: left out there"
        for o, n in sorted(left_out.items())
    ]
    return runs, notes


def quick_args(args: list[str], options: TrainOptions, settings: dict[str, Any], path: Path) -> list[str]:
    """A run's args at the [quick] table's scale."""
    args = [*without(args, "--epochs"), *split_args(settings.get("args", ""), path, "[quick]")]
    args += ["--epochs", str(min(options.epochs, settings.get("epochs", options.epochs)))]
    if "image_size" in settings:  # each network at this side, or at its smallest where that is larger
        args += ["--image-size", str(max(settings["image_size"], NETWORKS[options.model].min_image_size))]
    if settings.get("no_pretrained") and "pretrained" in NETWORKS[options.model].options():
        args = [*without(args, "--weights"), "--no-pretrained"]
    return args


def check_name(name: str, taken: Collection[str], path: Path, what: str) -> None:
    """A run's name or a section's id: one of its own, of the characters NAME allows (``what``: who needs it)."""
    if not NAME.fullmatch(name) or name in taken:
        raise PlanError(f"{path}: {what} of its own, of letters, digits, '.', '_' and '-' (got {name!r})")


def without(args: list[str], option: str) -> list[str]:
    """``args`` without ``option`` and its value."""
    kept, skip = [], False
    for arg in args:
        if not skip and arg != option and not arg.startswith(f"{option}="):
            kept.append(arg)
        skip = arg == option and not skip
    return kept


def read_sections(document: dict[str, Any], path: Path, runs: Mapping[str, PlannedRun],
                  kinds: Mapping[str, bool] | None) -> list[Section]:  # fmt: skip
    sections: list[Section] = []
    for number, entry in enumerate(document["section"], start=1):
        section = Section(**{**entry, "runs": tuple(entry.get("runs", ()))})  # the keys SCHEMA["section"] allows
        check_name(section.id, {x.id for x in sections}, path, f"section {number} needs an id")
        if kinds is not None and section.kind not in kinds:
            raise PlanError(f"{path}: section {section.id}: kind {section.kind!r} is none of {', '.join(kinds)}")
        if kinds is not None and kinds[section.kind] != bool(section.runs):
            needs = "names the runs it reads" if kinds[section.kind] else "reads no run (remove its runs)"
            raise PlanError(f"{path}: section {section.id}: a {section.kind} section {needs}")
        if missing := [run for run in section.runs if run not in runs]:
            raise PlanError(f"{path}: section {section.id} names run(s) {', '.join(missing)} that the plan lacks")
        sections.append(section)
    if unread := [name for name in runs if not any(name in s.runs for s in sections)]:
        raise PlanError(
            f"{path}: run {unread[0]} is read by no section, so nothing would report it; add it to a section's runs, "
            "or remove it"
        )
    return sections


def load_plan(path: Path, output_dir: Path, quick: bool, only: str | None, for_report: bool = False,
              kinds: Mapping[str, bool] | None = None) -> Plan:  # fmt: skip
    """The plan of ``path``, each run's options parsed (and so checked) as train.py parses them, restricted to the
    sections ``only`` names (ids or their prefixes, e.g. "P3"); optional sections only when named. ``for_report``:
    every section, and the optional ones named or started. ``kinds``: the section kinds the report knows, and whether
    their sections read runs."""
    document = read_document(path)
    runs, notes = read_runs(document, path, quick)
    sections = read_sections(document, path, runs, kinds)
    chosen = select(sections, only, path)
    if for_report:  # the report covers the whole plan: --only chooses what trains, not what is reported
        started = lambda s: any(Run(output_dir / run).has_run for run in s.runs)  # noqa: E731
        chosen = [s for s in sections if s in chosen or not s.optional or started(s)]
    needed = {name: runs[name] for section in chosen for name in section.runs}
    return Plan(needed, chosen, output_dir, document.get("quick", {}) if quick else {}, notes)


def select(sections: list[Section], only: str | None, path: Path) -> list[Section]:
    """The sections ``--only`` names: an id, or a prefix of it ending where a part of the id does ("P1" and "P1-Q9"
    name P1-Q9.1; "P1-Q1" does not name P1-Q10)."""
    if only is None:
        return [s for s in sections if not s.optional]
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    names = lambda w, s: s.id == w or s.id.startswith((f"{w}-", f"{w}."))  # noqa: E731
    unmatched = [w for w in wanted if not any(names(w, s) for s in sections)]
    if unmatched or not wanted:
        raise PlanError(
            f"--only {only}: no section {', '.join(unmatched) or '(none named)'} in {path} (sections: "
            f"{', '.join(s.id for s in sections)})"
        )
    return [s for s in sections if any(names(w, s) for w in wanted)]


# ----------------------------------------------------------------------------------------------
# What exists
# ----------------------------------------------------------------------------------------------
def run_status(plan: Plan, run: PlannedRun, dataset: Path | None) -> Status:
    """The run's folder through its Run: finished, partly trained (it resumes) or missing. A folder trained with other
    options, on another dataset, damaged, or written by a running process, is a UserError (the Run's own, or a
    PlanError)."""
    folder = plan.run(run.name)
    status, held = folder.status(), folder.held_by()
    if held is not None:
        raise PlanError(
            f"{folder.folder} is being written by {held}: wait for it to finish (or stop it), then run the plan again"
        )
    if status.state == "missing":
        return Status("missing")
    recorded = folder.options()
    differs = recorded.differences(run.options)
    if set(differs) <= {"pretrained", "freeze"} and run.options.pretrained and not recorded.pretrained:
        differs = []  # trained from scratch where ImageNet weights were missing: kept, and the report says so
    if differs:
        shown = ", ".join(f"{n}={getattr(recorded, n)!r} (plan: {getattr(run.options, n)!r})" for n in differs[:3])
        raise PlanError(
            f"{folder.folder} was trained with other options than the plan's {run.name}: {shown}; move it away (or "
            "rename the run in the plan) to train it as planned"
        )
    trained_on = folder.checkpoint("last", mmap=True).dataset
    if dataset is not None and trained_on is not None and trained_on.resolve() != dataset.resolve():
        raise PlanError(
            f"{folder.folder} was trained on {trained_on}, not on {dataset}: move it away to train {run.name} on this "
            f"dataset, or pass --dataset {trained_on}"
        )
    return Status(status.state, status.epoch)


def statuses(plan: Plan, dataset: Path | None) -> dict[str, Status]:
    return {name: run_status(plan, run, dataset) for name, run in plan.runs.items()}


def lacking_weights(plan: Plan, found: dict[str, Status]) -> list[str]:
    """The runs to train that need ResNet-18's ImageNet weights this machine does not have."""
    if imagenet_weights_file().exists():
        return []
    return [name for name, run in plan.runs.items() if found[name].state != "finished" and run.options.weights is None
            and run.options.pretrained and "pretrained" in NETWORKS[run.options.model].options()]  # fmt: skip


def from_scratch(run: PlannedRun) -> PlannedRun:
    """The run without ImageNet weights: what the plan trains offline (its options say so)."""
    args = [*without(list(run.args), "--weights"), "--no-pretrained"]
    return PlannedRun(run.name, tuple(args), at_tiny_scale(parse(args)[0]), run.optional, run.imagenet)

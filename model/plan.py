"""The practical's plan (practical.toml): its runs and report sections, what each run's folder holds,
the checks made before anything trains, time estimates, and running what is missing, locally or as
Slurm jobs.

A run is finished when its last.pth holds all its planned epochs, interrupted when it holds fewer
(it is resumed from there), missing when there is no run folder; a folder trained with other options
than the plan's is refused rather than reused or replaced.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from model import config
from model.checkpoint import Checkpoint, CheckpointError
from model.errors import UserError
from model.files import write_text
from model.network import (
    build_model,
    count_parameters,
    imagenet_weights_file,
    min_image_size,
    takes_option,
)
from model.options import TrainOptions
from model.runtime import place_model, select_device, synchronize

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
)
# The options a finished run must share with its plan entry (the others say where and how it ran).
COMPARED = tuple(
    f.name
    for f in fields(TrainOptions)
    if f.name
    not in {
        "dataset",
        "weights",
        "output_dir",
        "name",
        "overwrite",
        "workers",
        "device",
        "precision",
        "compile",
        "cache",
    }
)
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
    """What a planned run's folder holds."""

    state: str  # finished | interrupted | missing | skipped
    epoch: int = 0  # epochs done
    why: str = ""  # for skipped runs

    def describe(self, planned: int) -> str:
        if self.state == "interrupted":
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

    def shown(self, run: PlannedRun, dataset: Path | None, status: Status) -> str:
        """The command as a user would type it in the project's folder."""
        argv = ["python", *self.command(run, dataset, status)[1:]]
        return shlex.join(
            str(Path(a).relative_to(config.PROJECT_ROOT))
            if Path(a).is_absolute() and Path(a).is_relative_to(config.PROJECT_ROOT)
            else a
            for a in argv
        )

    def command(self, run: PlannedRun, dataset: Path | None, status: Status) -> list[str]:
        """The train.py command that trains (or, when interrupted, resumes) the run."""
        train = [sys.executable, str(config.PROJECT_ROOT / "train.py")]
        if status.state == "interrupted":
            return [*train, "--resume", str(self.folder(run.name) / config.LAST_CHECKPOINT)]
        where = ["--dataset", str(dataset)] if dataset is not None else []
        return [*train, *run.args, *where, "--output-dir", str(self.output_dir), "--name", run.name]


def load_plan(
    path: Path,
    parse: Callable[[Sequence[str]], TrainOptions],
    output_dir: Path,
    quick: bool,
    only: str | None,
    for_report: bool = False,
) -> Plan:
    """The plan of ``path``, each run's options parsed (and so checked) by ``parse`` (train.py's),
    restricted to the sections ``only`` names (ids or their prefixes, e.g. "Part3"); optional sections
    only when named. ``for_report``: every section, and the optional ones named or already started."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file (check --plan)") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{path}: not valid TOML ({error})") from None
    unknown = sorted(set(document) - {"defaults", "quick", "run", "section"})
    if unknown:
        raise PlanError(
            f"{path}: unknown table(s) {', '.join(unknown)} (a plan has [defaults], [quick], [[run]] and [[section]])"
        )
    defaults = shlex.split(document.get("defaults", {}).get("args", ""))
    settings = document.get("quick", {}) if quick else {}
    runs: dict[str, PlannedRun] = {}
    for number, entry in enumerate(document.get("run", []), start=1):
        name = entry.get("name")
        if not name or name in runs or "/" in name:
            raise PlanError(f"{path}: run {number} needs a name of its own (got {name!r})")
        args = [*defaults, *shlex.split(entry.get("args", ""))]
        options = _parse(parse, args, path, name)
        if quick:
            args = [*_without(args, "--epochs"), *shlex.split(settings.get("args", ""))]
            args += ["--epochs", str(min(options.epochs, int(settings.get("epochs", options.epochs))))]
            if "image_size" in settings:  # each network at this side, or at its smallest where that is larger
                args += ["--image-size", str(max(int(settings["image_size"]), min_image_size(options.model)))]
            if settings.get("no_pretrained") and takes_option(options.model, "pretrained"):
                args.append("--no-pretrained")
            options = _parse(parse, args, path, name)
        runs[name] = PlannedRun(name, tuple(args), options, bool(entry.get("optional", False)))
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
                f"{path}: section {number} needs an id and a kind among {', '.join(SECTION_KINDS)} (got "
                f"{section.id!r}, {section.kind!r})"
            )
        missing = [run for run in section.runs if run not in runs]
        if missing:
            raise PlanError(f"{path}: section {section.id} names run(s) {', '.join(missing)} that the plan lacks")
        sections.append(section)
    chosen = _select(sections, only, path)
    if for_report:  # the report covers the whole plan: --only chooses what trains, not what is reported
        chosen = [s for s in sections if s in chosen or not s.optional or _started(s, output_dir)]
    needed = dict.fromkeys(run for section in chosen for run in section.runs)
    return Plan({name: runs[name] for name in needed}, chosen, output_dir, settings if quick else {})


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


def _parse(parse: Callable[[Sequence[str]], TrainOptions], args: list[str], path: Path, name: str) -> TrainOptions:
    try:
        return parse(args)
    except Exception as error:  # click's usage errors: a typo in the plan is found before anything trains
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        raise PlanError(f"{path}: run {name}: {message} (in its args: {shlex.join(args)})") from None


def _started(section: Section, output_dir: Path) -> bool:
    """Whether one of the section's runs has a model to report (an optional section is reported then)."""
    return any((output_dir / run / config.BEST_CHECKPOINT).exists() for run in section.runs)


def _select(sections: list[Section], only: str | None, path: Path) -> list[Section]:
    if not only:
        return [s for s in sections if not s.optional]
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [s for s in sections if any(s.id == w or s.id.startswith(w) for w in wanted)]
    unmatched = [w for w in wanted if not any(s.id == w or s.id.startswith(w) for s in sections)]
    if unmatched:
        raise PlanError(
            f"--only {only}: no section {', '.join(unmatched)} in {path} (sections: "
            f"{', '.join(s.id for s in sections)})"
        )
    return chosen


# ----------------------------------------------------------------------------------------------
# What exists
# ----------------------------------------------------------------------------------------------
def run_status(plan: Plan, run: PlannedRun, dataset: Path | None) -> Status:
    """Finished, interrupted (resumable) or missing; a folder trained otherwise, or on another dataset,
    is a PlanError."""
    last = plan.folder(run.name) / config.LAST_CHECKPOINT
    if not last.exists():
        if any(plan.folder(run.name).glob("*.pth")):
            raise PlanError(
                f"{plan.folder(run.name)}: holds a best.pth but no last.pth; move it away to retrain {run.name}"
            )
        return Status("missing")
    try:
        checkpoint = Checkpoint.load(last)
    except CheckpointError as error:
        raise PlanError(f"{error}; move {plan.folder(run.name)} away to retrain {run.name}") from None
    differs = [name for name in COMPARED if getattr(checkpoint.options, name) != getattr(run.options, name)]
    if differs:
        shown = ", ".join(
            f"{n}={getattr(checkpoint.options, n)!r} (plan: {getattr(run.options, n)!r})" for n in differs[:3]
        )
        raise PlanError(
            f"{plan.folder(run.name)} was trained with other options than the plan's {run.name}: {shown}; "
            f"move it away (or rename the run in the plan) to train it as planned"
        )
    trained_on = checkpoint.dataset
    if dataset is not None and trained_on is not None and trained_on.resolve() != dataset.resolve():
        raise PlanError(
            f"{plan.folder(run.name)} was trained on {trained_on}, not on {dataset}: move it away to train "
            f"{run.name} on this dataset, or pass --dataset {trained_on}"
        )
    stopped_early = run.options.patience and checkpoint.epoch > 0 and checkpoint.stale_epochs >= run.options.patience
    if checkpoint.epoch >= run.options.epochs or stopped_early:
        return Status("finished", checkpoint.epoch)
    return Status("interrupted", checkpoint.epoch)


def statuses(
    plan: Plan, dataset: Path | None, skip_unavailable: bool, interactive: bool, ask: Callable[[str], bool]
) -> dict[str, Status]:
    """Every planned run's status; runs that need ImageNet weights this machine lacks are skipped
    when the user agrees (``skip_unavailable``, or asked on a terminal), else a PlanError says so."""
    found = {name: run_status(plan, run, dataset) for name, run in plan.runs.items()}
    weights = imagenet_weights_file()
    lacking = [
        name
        for name, run in plan.runs.items()
        if found[name].state != "finished"
        and run.options.pretrained
        and takes_option(run.options.model, "pretrained")
        and run.options.weights is None
        and not weights.exists()
    ]
    if lacking:
        why = f"ResNet-18's ImageNet weights are not in {weights.parent}"
        question = (
            f"{why}, and this machine may be offline: {', '.join(lacking)} need them. Skip these runs and go "
            f"on with the others?"
        )
        if not (skip_unavailable or (interactive and ask(question))):
            raise PlanError(
                f"{why}: runs {', '.join(lacking)} need them. Download {weights.name} there (see README, "
                f"'ResNet's ImageNet weights'), or pass --skip-unavailable to train the others"
            )
        for name in lacking:
            found[name] = Status("skipped", why="no ImageNet weights")
    return found


def check_disk(plan: Plan, found: dict[str, Status], images: int) -> None:
    """Room for the checkpoints of the runs to train and for the decoded images, before anything starts."""
    needed = 0
    sizes = set()
    for name, run in plan.runs.items():
        if found[name].state in ("missing", "interrupted"):
            model = build_model(run.options.model, 3, load_weights=False, **run.options.network_options)
            parameters, _ = count_parameters(model)
            needed += parameters * 4 * 5  # best.pth, last.pth and its optimizer's two moments, and a temporary
            sizes.add(run.options.image_size)
    needed += sum(images * 3 * size * size for size in sizes)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(plan.output_dir).free
    if needed > 0.9 * free:
        raise PlanError(
            f"{plan.output_dir}: {free / 2**30:.1f} GiB free, the runs need about {needed / 2**30:.1f} GiB "
            f"(checkpoints and decoded images); free some space or pass --output-dir on a larger disk"
        )


# ----------------------------------------------------------------------------------------------
# How long
# ----------------------------------------------------------------------------------------------
def split_sizes(options: TrainOptions, rows: int) -> tuple[int, int]:
    """(training, validation) images of a run on a dataset of ``rows`` rows."""
    if options.splits is not None:
        return rows, 0  # unknown without reading them: an upper bound
    train, val = int(options.cut_val * rows), int(options.cut_test * rows) - int(options.cut_val * rows)
    return max(1, round(train * options.train_fraction)), val


@dataclass
class Estimate:
    seconds: float
    source: str  # "history" (measured epochs of a run) or "probe" (a few batches timed now)


def estimate(plan: Plan, found: dict[str, Status], rows: int, device_name: str) -> dict[str, Estimate]:
    """Seconds each run still needs: seconds per image from the epochs already measured in a run of the
    same network, image size, head and augmentation when there is one, else from a few batches timed now."""
    per_image: dict[tuple, tuple[float, str]] = {}  # speed key -> (seconds per image, where it comes from)
    for name, run in plan.runs.items():  # measured epochs first
        history = plan.folder(name) / config.HISTORY_FILE
        if history.exists() and found[name].state != "skipped":
            rows_seen = _history_rows(history)
            train, val = split_sizes(run.options, rows)
            if rows_seen:
                seconds = sum(r["seconds"] for r in rows_seen) / len(rows_seen) / max(1, train + val)
                per_image.setdefault(_speed_key(run.options), (seconds, "history"))
    device = select_device(device_name)
    out = {}
    for name, run in plan.runs.items():
        status = found[name]
        if status.state in ("finished", "skipped"):
            out[name] = Estimate(0.0, "done" if status.state == "finished" else "skipped")
            continue
        key = _speed_key(run.options)
        if key not in per_image:
            per_image[key] = (probe(run.options, device), "probe")
        seconds, source = per_image[key]
        train, val = split_sizes(run.options, rows)
        out[name] = Estimate((run.options.epochs - status.epoch) * (train + val) * seconds, source)
    return out


def _speed_key(options: TrainOptions) -> tuple:
    return options.model, options.image_size, options.box_head, options.augment != "off", options.freeze


def _history_rows(path: Path) -> list[dict[str, float]]:
    import pandas as pd

    return [{str(k): float(v) for k, v in row.items()} for row in pd.read_csv(path).to_dict("records")]


def probe(options: TrainOptions, device: torch.device, batches: int = 2) -> float:
    """Seconds per image of an epoch (a training step and a validation step per image, weighted as
    an epoch weights them), timed on ``batches`` batches of random images."""
    torch.manual_seed(0)
    model = place_model(build_model(options.model, 3, load_weights=False, **options.network_options), device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    size = options.image_size
    x = torch.randn(options.batch_size, 3, size, size, device=device)
    labels = torch.zeros(options.batch_size, dtype=torch.int64, device=device)

    def step() -> None:
        model.train()
        logits, boxes = model(x)
        loss = torch.nn.functional.cross_entropy(logits, labels) + (boxes.sum() if boxes is not None else 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    synchronize(device)
    began = time.perf_counter()
    for _ in range(batches):
        step()
    synchronize(device)
    # an epoch also validates (about a third of a training step per image) and writes its files
    return 1.1 * (time.perf_counter() - began) / (batches * options.batch_size)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------
def train_locally(plan: Plan, found: dict[str, Status], dataset: Path | None, echo: Callable[[str], None]) -> None:
    """Each run to train or resume, one after the other, as train.py processes; stops at the first that fails."""
    todo = [name for name in plan.runs if found[name].state in ("missing", "interrupted")]
    for number, name in enumerate(todo, start=1):
        command = plan.command(plan.runs[name], dataset, found[name])
        echo(f"[{number}/{len(todo)}] {plan.shown(plan.runs[name], dataset, found[name])}")
        done = subprocess.run(command)
        if done.returncode != 0:
            raise PlanError(
                f"run {name} stopped with status {done.returncode} (see above); run compare.py --practical "
                f"again to go on: finished runs are kept, interrupted ones resume"
            )


def submit_to_slurm(
    plan: Plan,
    found: dict[str, Status],
    dataset: Path | None,
    report_args: list[str],
    resources: str,
    echo: Callable[[str], None],
) -> tuple[str | None, str]:
    """The runs to train as one job array (each task one train.py command, resumed when interrupted),
    then the report as a job that starts once every task succeeded; their job ids."""
    queued = _queued_jobs(plan.output_dir)
    if queued:
        raise PlanError(
            f"--slurm: jobs {', '.join(queued)} of this plan ({plan.output_dir}) are still queued or running; "
            f"wait for them (squeue --me) or cancel them (scancel {' '.join(queued)}) before submitting again"
        )
    folder = plan.output_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [name for name in plan.runs if found[name].state in ("missing", "interrupted")]
    commands = [shlex.join(["srun", *plan.command(plan.runs[name], dataset, found[name])]) for name in todo]
    # Each task decides when it starts: a requeued task finds the last.pth its first start wrote and resumes.
    lines = [
        "\t".join(
            (
                str(plan.folder(name) / config.LAST_CHECKPOINT),
                shlex.join(["srun", *plan.command(plan.runs[name], dataset, Status("missing"))]),
                shlex.join(["srun", *plan.command(plan.runs[name], dataset, Status("interrupted"))]),
            )
        )
        for name in todo
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tasks = folder / f"tasks-{stamp}.txt"
    write_text(tasks, "".join(f"{line}\n" for line in lines))
    marker = f"--comment=cvpr-plan:{plan.output_dir}"  # finds this plan's jobs in the queue
    logs = folder / "%x-%A_%a.out"
    options = shlex.split(resources)
    array = None
    if todo:
        array = _sbatch(
            [
                "--array",
                f"0-{len(todo) - 1}",
                "--job-name",
                "cvpr-plan",
                marker,
                "--signal",
                "USR1@120",
                f"--output={logs}",
                *options,
                str(config.PROJECT_ROOT / "slurm" / "plan_task.sbatch"),
                str(tasks),
            ]
        )
        for number, (name, command) in enumerate(zip(todo, commands)):
            echo(f"task {number}: {name}: {command}")
    after = ["--dependency", f"afterok:{array}", "--kill-on-invalid-dep=yes"] if array else []
    report = _sbatch(
        [
            *after,
            "--job-name",
            "cvpr-report",
            marker,
            f"--export=ALL,CVPR_PYTHON={sys.executable}",
            f"--output={folder / '%x-%j.out'}",
            *options,
            str(config.PROJECT_ROOT / "slurm" / "plan_report.sbatch"),
            *report_args,
        ]
    )
    return array, report


def _queued_jobs(output_dir: Path) -> list[str]:
    """Ids of this user's queued or running jobs submitted for the plan whose runs go to ``output_dir``."""
    if shutil.which("squeue") is None:
        return []
    listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i %k"], capture_output=True, text=True)
    return [
        line.split(" ", 1)[0]
        for line in listed.stdout.splitlines()
        if line.partition(" ")[2].strip() == f"cvpr-plan:{output_dir}"
    ]


def _sbatch(args: list[str]) -> str:
    if shutil.which("sbatch") is None:
        raise PlanError("--slurm: sbatch is not on this machine's PATH (submit from a Slurm login node)")
    done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, cwd=config.PROJECT_ROOT)
    if done.returncode != 0:
        raise PlanError(f"--slurm: sbatch refused the job ({(done.stderr.strip().splitlines() or [''])[-1]})")
    return done.stdout.strip().split(";")[0]


def with_quick_dataset(plan: Plan, dataset: Path | None) -> Path | None:
    """Quick mode's own small demo set (unless --dataset names one), generated once."""
    if not plan.quick or dataset is not None:
        return dataset
    from model import demo

    root = plan.output_dir / "demo"
    demo.ensure(root, int(plan.quick.get("demo_images", 240)), config.DEMO_SEED)
    return root


def total(estimates: dict[str, Estimate]) -> float:
    return math.fsum(e.seconds for e in estimates.values())

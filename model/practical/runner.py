"""Running the practical's plan: check everything first, then train what is missing (one run after the
other, several at once with --jobs, or as a Slurm job array), then write the report.

Each run is a ``train.py ... --resume-if-started`` process: it starts the run, or goes on with it when its
folder holds it, and a finished run has nothing to do; the run's folder lock keeps two processes from
writing one run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from model import config, demo, env
from model.annotations import DataError, Problems, read_annotations
from model.dataset import find_dataset, locate_dataset, read_splits
from model.device import usable_cpus
from model.files import make_folder, refuse_data_folder, write_file
from model.practical.estimate import check_disk, estimate, format_duration, total
from model.practical.plan import (
    Plan,
    PlanError,
    Status,
    from_scratch,
    lacking_weights,
    load_plan,
    statuses,
    weights_missing_line,
)
from model.practical.settings import PracticalSettings

MAX_JOBS_ON_A_GPU = 4  # runs at once on one GPU with --jobs auto (a small network leaves a GPU mostly idle)


def section_kinds() -> dict[str, bool]:
    """The section kinds the report has a builder for, and whether their sections read runs (imported here: the
    plan is read without them)."""
    from model.practical.sections import READS_RUNS

    return dict(READS_RUNS)


@contextmanager
def plan_dataset(
    plan: Plan, explicit: Path | None, echo: Callable[[str], None], dry_run: bool
) -> Iterator[tuple[Path, Path]]:
    """The plan's dataset, said in one line: --dataset or $CVPR_DATASET (in quick mode too), else the course's;
    else the demo set (quick mode: its own small one), generated once. Yields (the folder to read now, the folder
    the runs will read): for a dry run, which writes nothing, a demo set not generated yet is read from a
    temporary copy."""
    found = find_dataset(explicit)
    if found is not None:
        how = "--dataset" if explicit is not None else f"${env.DATASET}" if env.dataset() is not None else "found"
        echo(f"Dataset: {found} ({how})")
        yield found.resolve(), found.resolve()
        return
    root = (plan.output_dir / "demo" if plan.quick else config.DEMO_DATASET).resolve()
    images = int(plan.quick.get("demo_images", 240)) if plan.quick else config.DEMO_IMAGES
    if dry_run and not demo.is_complete(root, images, config.DEMO_SEED):
        with tempfile.TemporaryDirectory(prefix="cvpr-dry-run-") as scratch:
            echo(f"Dataset: the demo set {root} of {images} images (not generated yet: checked in a temporary copy)")
            yield locate_dataset(None, lambda _line: None, Path(scratch) / "demo", images).resolve(), root
        return
    generated = not demo.is_complete(root, images, config.DEMO_SEED)
    located = locate_dataset(None, lambda _line: None, root, images).resolve()
    echo(f"Dataset: the demo set {located} ({images} images{', generated now' if generated else ''})")
    yield located, located


def prepare_plan(
    settings: PracticalSettings, echo: Callable[[str], None], dataset: Path, plan: Plan
) -> tuple[Plan, dict[str, Status]]:
    """Every run's status; runs needing ImageNet weights this machine lacks train from scratch (said now, before
    any epoch) or, with --skip-unavailable, are skipped; then every check each run to train makes before its first
    epoch, made now on the same data (the dry run's too): a plan fails before it trains, not at its eighth run."""
    found = statuses(plan, dataset)
    lacking = lacking_weights(plan, found)
    if lacking and settings.skip_unavailable:
        echo(f"ResNet-18's ImageNet weights are missing: skipping {', '.join(lacking)} (--skip-unavailable)")
        found.update({name: Status("skipped", why="no ImageNet weights") for name in lacking})
    elif lacking:
        echo(weights_missing_line(lacking))
        plan.runs.update({name: from_scratch(plan.runs[name]) for name in lacking})
        found.update(
            {name: statuses(Plan({name: plan.runs[name]}, [], plan.output_dir), dataset)[name] for name in lacking}
        )
    for line in plan.notes:
        echo(line)
    check_runs(plan, found, dataset, echo)
    return plan, found


def check_runs(plan: Plan, found: dict[str, Status], dataset: Path, echo: Callable[[str], None]) -> None:
    """The data checks of every run to start (its rows, its split: train.py's own, with its own messages)."""
    for name, run in plan.runs.items():
        if found[name].state != "missing":
            continue
        try:
            read_splits(replace(run.options, dataset=dataset), lambda line, name=name: echo(f"run {name}: {line}"))
        except DataError as error:
            raise PlanError(f"run {name}: {error}") from None


def choose_jobs(jobs: int, device: str) -> int:
    """--jobs: as given; 0 (auto): several runs at once on a CUDA GPU (each a process of its own, so a
    small network's host-bound steps overlap), one at a time on a CPU or MPS (they would share its cores)."""
    if jobs > 0:
        return jobs
    import torch

    on_gpu = device in ("auto", "cuda") and torch.cuda.is_available()
    return max(1, min(MAX_JOBS_ON_A_GPU, usable_cpus() // 2)) if on_gpu else 1


def train_locally(
    plan: Plan, found: dict[str, Status], dataset: Path | None, echo: Callable[[str], None], jobs: int = 1
) -> None:
    """Each run to train or go on with, as train.py processes: one after the other, or ``jobs`` at once
    (each with its share of the CPU threads and its output in OUTPUT_DIR/logs/); stops starting new ones
    at the first that fails."""
    todo = [name for name in plan.runs if found[name].state in ("missing", "partial")]
    if jobs <= 1 or len(todo) <= 1:
        for number, name in enumerate(todo, start=1):
            echo(f"[{number}/{len(todo)}] {plan.shown(plan.runs[name], dataset)}")
            done = subprocess.run(plan.command(plan.runs[name], dataset))
            if done.returncode != 0:
                raise PlanError(
                    f"run {name} stopped with status {done.returncode} (see above); run the same command again to go "
                    f"on: finished runs are kept, interrupted ones resume"
                )
        return
    run_at_once(plan, todo, dataset, echo, jobs)


def run_at_once(plan: Plan, todo: list[str], dataset: Path | None, echo: Callable[[str], None], jobs: int) -> None:
    logs = plan.output_dir / "logs"
    make_folder(logs)
    environment = {**os.environ, "OMP_NUM_THREADS": str(max(1, usable_cpus() // jobs)), "PYTHONUNBUFFERED": "1"}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    waiting = list(todo)
    running: dict[str, tuple[subprocess.Popen, Any, Path]] = {}
    failed: list[str] = []
    finished = 0
    while waiting or running:
        while waiting and len(running) < jobs and not failed:
            name = waiting.pop(0)
            log = logs / f"{name}-{stamp}.log"
            handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed when the process ends)
            echo(f"[started {len(todo) - len(waiting)}/{len(todo)}] {plan.shown(plan.runs[name], dataset)} > {log}")
            running[name] = (
                subprocess.Popen(
                    plan.command(plan.runs[name], dataset), stdout=handle, stderr=subprocess.STDOUT, env=environment
                ),
                handle,
                log,
            )
        if failed and not running:
            break
        time.sleep(0.2)
        for name, (process, handle, log) in list(running.items()):
            if process.poll() is None:
                continue
            handle.close()
            del running[name]
            finished += 1
            if process.returncode == 0:
                echo(f"[done {finished}/{len(todo)}] {name}")
            else:
                failed.append(name)
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
                echo(f"[failed] {name} (status {process.returncode}): {tail[0]} (log: {log})")
    if failed:
        raise PlanError(
            f"run(s) {', '.join(failed)} failed (their logs in {logs}); run the same command again to go on: "
            f"finished runs are kept, interrupted ones resume"
        )


# ----------------------------------------------------------------------------------------------
# Slurm
# ----------------------------------------------------------------------------------------------
def submit_to_slurm(
    plan: Plan,
    found: dict[str, Status],
    dataset: Path | None,
    report_args: list[str],
    resources: str,
    echo: Callable[[str], None],
) -> tuple[str | None, str]:
    """The runs to train as one job array (each task one train.py command, which goes on with its run when
    the task is requeued), then the report as a job that starts once every task succeeded; their job ids."""
    queued = _queued_jobs(plan.output_dir)
    if queued:
        raise PlanError(
            f"--slurm: jobs {', '.join(queued)} of this plan ({plan.output_dir}) are still queued or running; "
            f"wait for them (squeue --me) or cancel them (scancel {' '.join(queued)}) before submitting again"
        )
    try:
        options = shlex.split(resources)
    except ValueError as error:
        raise PlanError(f"--resources {resources!r}: {error}; close the quote") from None
    if shutil.which("sbatch") is None:
        raise PlanError("--slurm: sbatch is not on this machine's PATH (submit from a Slurm login node)")
    folder = plan.output_dir / "slurm"
    todo = [name for name in plan.runs if found[name].state in ("missing", "partial")]
    commands = [shlex.join(["srun", *plan.command(plan.runs[name], dataset)]) for name in todo]
    marker = f"--comment=cvpr-plan:{plan.output_dir}"  # finds this plan's jobs in the queue
    array = None
    if todo:
        tasks = folder / f"tasks-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        write_file(tasks, "".join(f"{command}\n" for command in commands).encode())
        try:
            array = _sbatch(
                [
                    *("--array", f"0-{len(todo) - 1}", "--job-name", "cvpr-plan", marker, "--signal", "USR1@120"),
                    f"--output={folder / '%x-%A_%a.out'}",
                    *options,
                    str(config.PROJECT_ROOT / "slurm" / "plan_task.sbatch"),
                    str(tasks),
                ]
            )
        except BaseException:
            tasks.unlink(missing_ok=True)  # no job was submitted to read it
            raise
        for number, (name, command) in enumerate(zip(todo, commands)):
            echo(f"task {number}: {name}: {command}")
    after = ["--dependency", f"afterok:{array}", "--kill-on-invalid-dep=yes"] if array else []
    report = _sbatch(
        [
            *after,
            *("--job-name", "cvpr-report", marker),
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


def report_args(settings: PracticalSettings, dataset: Path) -> list[str]:
    """compare.py's options for the report job: the same plan, runs, report folder and dataset."""
    return [
        *("--plan", str(settings.plan_file.resolve()), "--output-dir", str(settings.runs_dir)),
        *("--out", str(settings.report_dir), "--dataset", str(dataset), "--precision", settings.precision),
        *(["--quick"] if settings.quick else []),
        *(["--only", settings.only] if settings.only else []),
        *(["--skip-unavailable"] if settings.skip_unavailable else []),
    ]


def dataset_rows(dataset: Path) -> int:
    return len(read_annotations(dataset, Problems(skip=True)))


# ----------------------------------------------------------------------------------------------
# The whole story
# ----------------------------------------------------------------------------------------------
def run_practical(settings: PracticalSettings, echo: Callable[[str], None], print_table: Callable[[Any], None]) -> None:
    """--practical: check everything, then train what the plan lacks (or submit it), then the report."""
    started = time.monotonic()
    refuse_data_folder(settings.runs_dir, "--output-dir")  # the runs' folder: checked before anything else is
    kinds = section_kinds()
    plan = load_plan(settings.plan_file.resolve(), settings.runs_dir, settings.quick, settings.only, kinds=kinds)
    if not settings.report_only and not settings.dry_run:  # the report's folder too is refused before any training
        from model.practical.report import report_folder

        report_folder(settings.report_dir).check_place()
    with plan_dataset(plan, settings.dataset, echo, settings.dry_run) as (dataset, trained_on):
        if not settings.report_only:
            plan, found = prepare_plan(settings, echo, dataset, plan)
            rows = dataset_rows(dataset)
            check_disk(plan, found, rows)
            if settings.dry_run:
                estimates = estimate(plan, found, rows, settings.device, dataset)
                print_table(dry_run_table(plan, found, estimates, settings, trained_on))
                echo(
                    f"Estimated time: {format_duration(total(estimates))} to train what is missing (from the epochs "
                    f"already measured in {plan.output_dir}, else a few batches timed now) and write the report "
                    f"{settings.report_dir / 'report.md'} with report.pdf. Every run's data checks passed; the dry run "
                    "wrote nothing."
                )
                return
            if settings.slurm:
                array, report = submit_to_slurm(
                    plan, found, dataset, report_args(settings, dataset), settings.resources, echo
                )
                echo(
                    f"Submitted: runs {'job array ' + array if array else '(none to train)'}, report job {report} "
                    f"(after the runs succeed); logs in {settings.runs_dir / 'slurm'}/. Submit again after a time "
                    "limit or a preemption: finished runs are kept, interrupted ones resume."
                )
                return
            train_locally(plan, found, dataset, echo, choose_jobs(settings.jobs, settings.device))
        path = write_plan_report(settings, echo, dataset, kinds)
    echo(
        f"Wrote {path}, {path.with_suffix('.pdf').name} and their tables and figures in {path.parent / 'report'}/ "
        f"({format_duration(time.monotonic() - started)} in all)"
    )


def write_plan_report(
    settings: PracticalSettings, echo: Callable[[str], None], dataset: Path, kinds: dict[str, bool]
) -> Path:
    """The report of the whole plan (--only chose what trained), the runs without ImageNet weights said."""
    from model.evaluate import Inference
    from model.practical.context import Context, read_digests
    from model.practical.report import report_folder, write_report

    plan = load_plan(
        settings.plan_file.resolve(), settings.runs_dir, settings.quick, settings.only, for_report=True, kinds=kinds
    )
    found = statuses(plan, dataset)
    found.update(
        {
            n: Status("skipped", why="no ImageNet weights")
            for n in lacking_weights(plan, found)
            if settings.skip_unavailable
        }
    )
    inference = Inference.on(settings.device, settings.precision, settings.batch_size)
    title = "Practical 1: CNN detectors for airplane, face and motorcycle: report draft" + (
        " (quick mode)" if settings.quick else ""
    )
    folder = report_folder(settings.report_dir)
    with folder.staged() as change:
        ctx = Context(plan, found, inference, change, dataset, echo, usable_cpus())
        ctx.previous_digests = read_digests(settings.report_dir)
        return write_report(ctx, settings.report_dir, title)


def dry_run_table(
    plan: Plan, found: dict[str, Status], estimates: dict, settings: PracticalSettings, dataset: Path
) -> Any:
    """Each run's status, estimate and command."""
    from rich.table import Table

    table = Table(
        title=f"The plan {settings.plan_file.name}: {len(plan.runs)} run(s) in {plan.output_dir}, dataset {dataset}"
    )
    for column in ("run", "status", "estimate", "command"):
        table.add_column(column)
    for name, run in plan.runs.items():
        e = estimates[name]
        table.add_row(
            name,
            found[name].describe(run.options.epochs),
            f"{format_duration(e.seconds)} ({e.source})" if e.seconds else "-",
            plan.shown(run, dataset),
        )
    table.add_row("(the report)", "after the runs", format_duration(estimates["report"].seconds), "")
    return table

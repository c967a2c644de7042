"""compare.py --practical: check everything first, then train what is missing (one run after the other, several at
once with --jobs, or as a Slurm job array), then write the report and say what is left to write in it.

Each run is a ``train.py ... --resume-if-started`` process: it starts the run, or goes on with it when its folder
holds it, and a finished run has nothing to do; the run's folder lock keeps two processes from writing one run.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model import config, demo, env
from model.annotations import DataError, Problems, read_annotations
from model.dataset import default_demo, find_dataset, locate_dataset, read_splits
from model.device import select_device, usable_cpus
from model.errors import UserError
from model.files import make_folder, refuse_data_folder, write_file
from model.network import imagenet_weights_file
from model.practical.plan import Plan, PlanError, Status, from_scratch, lacking_weights, load_plan, statuses

COURSE_RESOURCES = "--gres=shard:1 --cpus-per-task=8 --mem=12G"  # the course's srun options
PLAN_FILE = config.PROJECT_ROOT / "practical.toml"
MAX_JOBS_ON_A_GPU = 4  # runs at once on one GPU with --jobs 0 (a small network leaves a GPU mostly idle)
Echo = Callable[[str], None]


@dataclass(frozen=True)
class PracticalSettings:
    """compare.py --practical's options."""

    plan_file: Path = PLAN_FILE
    quick: bool = False
    only: str | None = None
    dry_run: bool = False
    slurm: bool = False
    resources: str = COURSE_RESOURCES
    report_only: bool = False
    skip_unavailable: bool = False
    output_dir: Path | None = None
    out: Path | None = None
    dataset: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    jobs: int = 0  # 0: several on a CUDA GPU, one on a CPU

    def __post_init__(self) -> None:
        if self.only is not None and not [w for w in self.only.split(",") if w.strip()]:
            raise UserError(f"--only {self.only!r}: names no section; give section ids (e.g. --only Q3,Part2)")
        modes = (("--dry-run", self.dry_run), ("--slurm", self.slurm), ("--report-only", self.report_only))
        chosen = [name for name, on in modes if on]
        if len(chosen) > 1:
            raise UserError(f"{' and '.join(chosen)} do not go together: choose one")
        if self.jobs > 1 and (self.slurm or self.report_only):
            raise UserError("--jobs is for training here; it does not go with --slurm or --report-only")

    @property
    def runs_dir(self) -> Path:  # absolute: Slurm jobs start in the project's folder, wherever this was called from
        return (self.output_dir or config.OUTPUT_DIR / ("practical-quick" if self.quick else "practical")).resolve()

    @property
    def report_dir(self) -> Path:
        return (self.out or (self.runs_dir if self.quick else Path("doc"))).resolve()


def run_practical(settings: PracticalSettings, echo: Echo, print_table: Callable[[Any], None]) -> None:
    """--practical: check everything, then train what the plan lacks (or submit it), then the report."""
    from model.practical.estimate import check_disk, dry_run_table, estimate, format_duration
    from model.practical.report import report_folder
    from model.practical.sections import READS_RUNS

    started = time.monotonic()
    refuse_data_folder(settings.runs_dir, "--output-dir")  # the runs' folder: checked before anything else is
    if not settings.slurm:  # here, not after the runs: they would train on the CPU and the report then fail
        select_device(settings.device)
    plan = load_plan(settings.plan_file.resolve(), settings.runs_dir, settings.quick, settings.only, kinds=READS_RUNS)
    if not settings.report_only and not settings.dry_run:  # the report's folder too is refused before any training
        report_folder(settings.report_dir).check_place()
    with plan_dataset(plan, settings.dataset, echo, settings.dry_run) as (dataset, trained_on):
        if not settings.report_only:
            found = prepare_plan(settings, echo, dataset, plan)
            rows = len(read_annotations(dataset, Problems(skip=True)))
            check_disk(plan, found, rows)
            if settings.dry_run:
                estimates, note = estimate(plan, found, rows, settings.device)
                print_table(dry_run_table(plan, found, estimates, settings.plan_file.name, trained_on))
                total = format_duration(sum(e.seconds for e in estimates.values()))
                echo(
                    f"Estimated time: {total}{note} to train what is missing and write the report "
                    f"{settings.report_dir / 'report.md'} with report.pdf. Every run's data checks passed; the dry run "
                    "wrote nothing."
                )
                return
            if settings.slurm:
                array, report = submit_to_slurm(plan, found, dataset, settings, echo)
                echo(
                    f"Submitted: runs {'job array ' + array if array else '(none to train)'}, report job {report} "
                    f"(after the runs succeed); logs in {settings.runs_dir / 'slurm'}/. Submit again after a time "
                    "limit or a preemption: finished runs are kept, interrupted ones resume."
                )
                return
            train_locally(plan, found, dataset, echo, choose_jobs(settings.jobs, settings.device))
        path, left = write_plan_report(settings, echo, dataset)
    echo(
        f"Wrote {path}, {path.with_suffix('.pdf').name} and their tables and figures in {path.parent / 'report'}/ "
        f"({format_duration(time.monotonic() - started)} in all)"
    )
    for line in left:
        echo(line)


@contextmanager
def plan_dataset(plan: Plan, explicit: Path | None, echo: Echo, dry_run: bool) -> Iterator[tuple[Path, Path]]:
    """The plan's dataset, said in one line: --dataset or $CVPR_DATASET (in quick mode too), else the course's; else
    the demo set train.py would use (quick mode: its own small one), generated once. Yields (the folder to read now,
    the folder the runs will read): a dry run, which writes nothing, reads a demo set not generated yet from a
    temporary copy."""
    if (found := find_dataset(explicit)) is not None:
        how = "--dataset" if explicit is not None else f"${env.DATASET}" if env.dataset() is not None else "found"
        echo(f"Dataset: {found} ({how})")
        yield found.resolve(), found.resolve()
        return
    root, images = (plan.output_dir / "demo", plan.quick.get("demo_images", 240)) if plan.quick else default_demo()
    root = root.resolve()
    complete = demo.is_complete(root, images, config.DEMO_SEED)
    if dry_run and not complete:
        with tempfile.TemporaryDirectory(prefix="cvpr-dry-run-") as scratch:
            echo(f"Dataset: the demo set {root} of {images} images (not generated yet: checked in a temporary copy)")
            yield locate_dataset(None, lambda _line: None, Path(scratch) / "demo", images).resolve(), root
        return
    located = locate_dataset(None, lambda _line: None, root, images).resolve()
    echo(f"Dataset: the demo set {located} ({images} images{'' if complete else ', generated now'})")
    yield located, located


def prepare_plan(settings: PracticalSettings, echo: Echo, dataset: Path, plan: Plan) -> dict[str, Status]:
    """Every run's status; the runs needing ImageNet weights this machine lacks train from scratch (said now, before
    any epoch) or, with --skip-unavailable, are skipped; then every check each run to train makes before its first
    epoch, made now on the same data (the dry run's too): a plan fails before it trains, not at its eighth run."""
    found = statuses(plan, dataset)
    if lacking := lacking_weights(plan, found):
        if settings.skip_unavailable:
            echo(f"ResNet-18's ImageNet weights are missing: skipping {', '.join(lacking)} (--skip-unavailable)")
            found.update({name: Status("skipped", why="no ImageNet weights") for name in lacking})
        else:
            weights = imagenet_weights_file()
            echo(
                f"ResNet-18's ImageNet weights are not in {weights.parent} (this machine may be offline): "
                f"{', '.join(lacking)} will train from scratch (no ImageNet weights), and the report says so. Put "
                f"{weights.name} there (doc/troubleshooting.md, 'ImageNet weights offline') to train them as planned, "
                "or pass --skip-unavailable to leave them out"
            )
            plan.runs.update({name: from_scratch(plan.runs[name]) for name in lacking})
            found.update(statuses(Plan({n: plan.runs[n] for n in lacking}, [], plan.output_dir), dataset))
    for line in plan.notes:
        echo(line)
    for name, run in plan.runs.items():  # train.py's own data checks, with its own messages
        if found[name].state == "missing":
            try:  # read_splits speaks before the loop moves on: the lambda's ``name`` is this run's
                read_splits(replace(run.options, dataset=dataset), lambda line: echo(f"run {name}: {line}"))  # noqa: B023
            except DataError as error:
                raise PlanError(f"run {name}: {error}") from None
    return found


def choose_jobs(jobs: int, device: str) -> int:
    """--jobs: as given; 0: several runs at once on a CUDA GPU (each a process, so that a small network's host-bound
    steps overlap), one at a time on a CPU or MPS (they would share its cores)."""
    if jobs > 0:
        return jobs
    import torch

    on_gpu = device in ("auto", "cuda") and torch.cuda.is_available()
    return max(1, min(MAX_JOBS_ON_A_GPU, usable_cpus() // 2)) if on_gpu else 1


def train_locally(plan: Plan, found: dict[str, Status], dataset: Path | None, echo: Echo, jobs: int = 1) -> None:
    """Each run to train or go on with, as a train.py process: one after the other, or ``jobs`` at once (each with its
    share of the CPU threads, its output in OUTPUT_DIR/logs/); no new one starts once one failed."""
    todo = [name for name in plan.runs if found[name].to_train]
    again = "run the same command again to go on: finished runs are kept, interrupted ones resume"
    if jobs <= 1 or len(todo) <= 1:
        for number, name in enumerate(todo, start=1):
            echo(f"[{number}/{len(todo)}] {plan.shown(name, dataset)}")
            if (status := subprocess.run(plan.command(name, dataset)).returncode) != 0:
                raise PlanError(f"run {name} stopped with status {status} (see above); {again}")
        return
    logs, stamp = plan.output_dir / "logs", time.strftime("%Y%m%d-%H%M%S")
    make_folder(logs)
    environment = {**os.environ, "OMP_NUM_THREADS": str(max(1, usable_cpus() // jobs)), "PYTHONUNBUFFERED": "1"}
    waiting, running, failed, finished = list(todo), dict[str, tuple[subprocess.Popen, Any, Path]](), list[str](), 0
    while waiting or running:
        while waiting and len(running) < jobs and not failed:
            name = waiting.pop(0)
            log = logs / f"{name}-{stamp}.log"
            handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed when the process ends)
            echo(f"[started {len(todo) - len(waiting)}/{len(todo)}] {plan.shown(name, dataset)} > {log}")
            process = subprocess.Popen(
                plan.command(name, dataset), stdout=handle, stderr=subprocess.STDOUT, env=environment
            )
            running[name] = (process, handle, log)
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
                tail = (log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or [""])[-1]
                echo(f"[failed] {name} (status {process.returncode}): {tail} (log: {log})")
    if failed:
        raise PlanError(f"run(s) {', '.join(failed)} failed (their logs in {logs}); {again}")


def write_plan_report(settings: PracticalSettings, echo: Echo, dataset: Path) -> tuple[Path, list[str]]:
    """The report of the whole plan (--only chose what trained), the runs without ImageNet weights said; its path
    and the lines that say what is left to write in it."""
    from model.evaluate import Inference
    from model.practical.report import Context, read_digests, report_folder, write_report
    from model.practical.sections import BUILDERS, READS_RUNS

    plan = load_plan(settings.plan_file.resolve(), settings.runs_dir, settings.quick, settings.only, True, READS_RUNS)
    found = statuses(plan, dataset)
    if settings.skip_unavailable:
        found.update({n: Status("skipped", why="no ImageNet weights") for n in lacking_weights(plan, found)})
    inference = Inference.on(settings.device, settings.precision, settings.batch_size)
    with report_folder(settings.report_dir).staged() as change:
        ctx = Context(plan, found, inference, change, dataset, echo, usable_cpus())
        ctx.previous_digests = read_digests(settings.report_dir)
        return write_report(ctx, settings.report_dir, BUILDERS)


# ----------------------------------------------------------------------------------------------
# Slurm
# ----------------------------------------------------------------------------------------------
def submit_to_slurm(
    plan: Plan, found: dict[str, Status], dataset: Path, settings: PracticalSettings, echo: Echo
) -> tuple[str | None, str]:
    """The runs to train as one job array (each task one train.py command, which goes on with its run when the task
    is requeued), then the report as a job that starts once every task succeeded; their job ids."""
    if shutil.which("sbatch") is None:
        raise PlanError("--slurm: sbatch is not on this machine's PATH (submit from a Slurm login node)")
    if queued := queued_jobs(plan.output_dir):
        raise PlanError(
            f"--slurm: jobs {', '.join(queued)} of this plan ({plan.output_dir}) are still queued or running; wait for "
            f"them (squeue --me) or cancel them (scancel {' '.join(queued)}) before submitting again"
        )
    try:
        options = shlex.split(settings.resources)
    except ValueError as error:
        raise PlanError(f"--resources {settings.resources!r}: {error}; close the quote") from None
    folder, marker = plan.output_dir / "slurm", f"--comment=cvpr-plan:{plan.output_dir}"  # finds the plan's jobs
    todo = [name for name in plan.runs if found[name].to_train]
    commands = [shlex.join(["srun", *plan.command(name, dataset)]) for name in todo]
    array = None
    if todo:
        tasks = folder / f"tasks-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        write_file(tasks, "".join(f"{command}\n" for command in commands).encode())
        try:
            array_options = ["--array", f"0-{len(todo) - 1}", "--job-name", "cvpr-plan", marker, "--signal", "USR1@120"]
            array_options += [f"--output={folder / '%x-%A_%a.out'}", *options]
            array = sbatch(array_options, "plan_task.sbatch", [str(tasks)])
        except BaseException:
            tasks.unlink(missing_ok=True)  # no job was submitted to read it
            raise
        for number, (name, command) in enumerate(zip(todo, commands)):
            echo(f"task {number}: {name}: {command}")
    after = ["--dependency", f"afterok:{array}", "--kill-on-invalid-dep=yes"] if array else []
    report_options = [*after, "--job-name", "cvpr-report", marker, f"--export=ALL,CVPR_PYTHON={sys.executable}"]
    report_options += [f"--output={folder / '%x-%j.out'}", *options]
    return array, sbatch(report_options, "plan_report.sbatch", report_args(settings, dataset))


def queued_jobs(output_dir: Path) -> list[str]:
    """Ids of this user's queued or running jobs submitted for the plan whose runs go to ``output_dir``."""
    if shutil.which("squeue") is None:
        return []
    listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i %k"], capture_output=True, text=True)
    jobs = (line.partition(" ") for line in listed.stdout.splitlines())
    return [job for job, _, comment in jobs if comment.strip() == f"cvpr-plan:{output_dir}"]


def sbatch(options: list[str], script: str, args: list[str]) -> str:
    """Submit slurm/``script`` with sbatch's ``options`` and the script's ``args``; the job's id."""
    command = ["sbatch", "--parsable", *options, str(config.PROJECT_ROOT / "slurm" / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=config.PROJECT_ROOT)
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

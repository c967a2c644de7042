"""Shared fixtures: small demo datasets written once per test session, and a runner for the scripts."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from reference import direct_predictions, template_printout  # noqa: F401  (the tests import them from here)

pytest.register_assert_rewrite("catalogue")  # the bad-input catalogue's runner, a plugin of its two test files

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
COURSE_SPLITS = DATA / "course-splits"  # the course's real split files: all 2,033 rows and boxes


def pytest_configure(config):
    """The suite's workers share the cores: each one's torch (and each script it runs) takes its share of the
    threads, as the plan's runs at once do. Four busy-waiting OpenMP threads on 2 cores train at half speed."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Decoded-image caches of the tests (and of the scripts they run) go to a temporary folder; CPU
    computations stay fp32 on a CPU with native bfloat16 too."""
    os.environ["CVPR_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["CVPR_CPU_BF16"] = "0"  # in-process tests too compute in fp32 on any CPU
    yield
    os.environ.pop("CVPR_CACHE_DIR", None)


def python(*args: str) -> list[str]:
    """The command line of `python ARGS` as the tests start it."""
    return [sys.executable, *args]


def course_rows() -> list[tuple]:
    """The 2,033 rows of the course's split files, as (filename, x1, y1, x2, y2, label)."""
    rows = []
    for name in ("training_data.csv", "val_data.csv", "test_data.csv"):
        with open(COURSE_SPLITS / name, newline="") as handle:
            rows += [(row[0], *map(float, row[1:5]), row[5]) for row in csv.reader(handle)]
    return rows


def made_once(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` once for the whole session, by whichever test worker asks first (the others wait for it
    and share the folder, which no test changes); the folder."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker else base  # the session's folder, above each worker's own
    folder, done = shared / f"shared-{name}", shared / f"shared-{name}.done"
    with open(shared / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def course_dataset(tmp_path_factory) -> Path:
    """The course dataset's shape: its 2,033 real rows and boxes (zero-height one included), each
    image drawn to fit its box, the annotation files in the course's file-name order (made once a session)."""
    from model import demo

    made = made_once(
        tmp_path_factory, "course", lambda to: demo.generate(to / "01-dataset", seed=0, rows=course_rows())
    )
    return made / "01-dataset"


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """45 demo images (18 airplane, 9 face, 18 motorcycle)."""
    from model import demo

    return demo.generate(tmp_path_factory.mktemp("demo") / "dataset", images=45, seed=1)


def cpu_only(environment: dict[str, str]) -> dict[str, str]:
    """The environment of a script a non-CUDA test runs: no GPU visible, so that "auto" is the CPU on a GPU
    machine too, and fp32 there on a CPU with native bfloat16 too (the pinned numbers, "on cpu" lines and
    bit-exact resumes are the CPU's in fp32)."""
    return {**environment, "CUDA_VISIBLE_DEVICES": "", "CVPR_CPU_BF16": "0"}


@dataclass
class Done:
    """What a command gave: its exit status and its output (and, for a signalled process, whether it was sent)."""

    returncode: int
    stdout: str
    stderr: str
    sent: bool = True


def invoke(args: Sequence[str], environ: dict[str, str | None] | None = None, cwd: Path = ROOT) -> Done:
    """``python ARGS`` (a script, or ``-m MODULE``) in this process: its click command through CliRunner, with
    ``environ``'s variables set (None: unset) and ``cwd`` the current folder for the call; an exception that
    escapes ``main`` is in stderr as Python would print it."""
    import compare
    import eval as eval_script
    import model.caltech
    import model.demo
    import predict
    import train

    commands = {"train.py": train.main, "eval.py": eval_script.main, "predict.py": predict.main,
                "compare.py": compare.main, "model.demo": model.demo.main,
                "model.caltech": model.caltech.main}  # fmt: skip
    name, rest = (args[1], args[2:]) if args[0] == "-m" else (Path(args[0]).name, args[1:])
    environ = {"CVPR_DATASET": None, "DISPLAY": None, "WAYLAND_DISPLAY": None, **(environ or {})}
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(commands[name], [str(a) for a in rest], env=environ, prog_name=name)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(result.exception))
    return Done(result.exit_code, result.stdout, err)


def run_main(*args: str, cwd: Path | None = None, env: dict | None = None, **_ignored) -> Done:
    """A script run in the test's own process, where the process boundary changes nothing (the ``script``
    fixture): the same files, OpenCV and mounts, its exit status and output as a process would give them."""
    return invoke(args, env, cwd or ROOT)


def run_script(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600, gpu: bool = False):
    """Run one of the project's scripts as a process, as a user would, with stdout not a terminal (and, unless
    ``gpu``, on the CPU): for exit statuses through the shell, signals, and what a process start decides."""
    environment = {k: v for k, v in os.environ.items() if k != "CVPR_DATASET"}  # tests name their data
    environment.update(PYTHONUNBUFFERED="1", **(env or {}))
    environment = environment if gpu else cpu_only(environment)
    command = python(*args)
    return subprocess.run(command, cwd=cwd or ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def script():
    return run_main


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_dataset) -> Path:
    """A Simple detector trained 3 epochs at 64 px on the demo set; its run folder."""
    out = tmp_path_factory.mktemp("run")
    tiny = ["--epochs", "3", "--image-size", "64", "--batch-size", "8", "--cut-val", "0.6", "--cut-test", "0.7"]
    done = run_main("train.py", "--dataset", str(demo_dataset), "--output-dir", str(out), *tiny)
    assert done.returncode == 0, done.stderr
    return out


# the files that take longest, handed to the workers first (xdist's --dist loadfile gives out whole files in the
# order collected): the last file to start is then a short one, and both workers finish at about the same time
LONGEST = ["practical", "docs", "plan", "guides", "bad_input_faults", "train", "slurm", "gpu_check"]


def pytest_collection_modifyitems(config, items):
    """The longest files first; tests marked cuda run where a CUDA GPU is visible and are skipped elsewhere (CI has
    none)."""
    order = {f"test_{name}.py": rank for rank, name in enumerate(LONGEST)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU visible (run on a GPU machine: python -m pytest -m cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


QUICK = ["compare.py", "--practical", "--quick"]


def sections(plan: Path = ROOT / "practical.toml") -> list[dict]:
    """The plan's report sections (the optional ones left out)."""
    return [s for s in tomllib.loads(plan.read_text())["section"] if not s.get("optional")]


@pytest.fixture(scope="session")
def quick(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The quick plan, trained and reported once for the session: (runs folder, report folder, process).
    Tests that change its runs work on a copy."""
    base = tmp_path_factory.mktemp("practical")
    runs, out = base / "runs", base / "report"
    done = run_script(*QUICK, "--output-dir", str(runs), "--out", str(out), timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return runs, out, done


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A real filesystem of ``size`` (a tmpfs) mounted at ``path`` for the block; skips without root."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])


@functools.cache  # asked once a process: a node just done with a job is "completing" for a moment
def slurm_available() -> bool:
    """Whether a Slurm controller answers with a usable node; where CI requires one (CVPR_REQUIRE_SLURM),
    its absence is an error, not a skip."""
    running = False
    if shutil.which("sinfo") is not None:
        try:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
            running = state.returncode == 0 and any(s in state.stdout for s in ("idle", "mix", "alloc", "completing"))
        except subprocess.TimeoutExpired:
            pass
    if not running and os.environ.get("CVPR_REQUIRE_SLURM"):
        raise RuntimeError("CVPR_REQUIRE_SLURM is set but no Slurm answers (run .ci/slurm-up.sh)")
    return running


def wait_for_job(job_id: str, timeout: float = 900) -> str:
    """Wait until the job has left the queue; its final state (scontrol keeps it a few minutes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True, text=True)
        if queued.returncode == 0 and not queued.stdout.strip():
            break
        if "DependencyNeverSatisfied" in queued.stdout:  # a job it waits for failed: it never starts
            subprocess.run(["scancel", job_id])
            return "DEPENDENCY_NEVER_SATISFIED"
        time.sleep(1)
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return next((f.split("=", 1)[1] for f in shown.split() if f.startswith("JobState=")), "UNKNOWN")


def job_logs(folder: Path) -> str:
    """The tail of every job log in ``folder``, to show why a job failed."""
    return "\n".join(f"{log.name}: {log.read_text()[-600:]}" for log in sorted(folder.glob("*.out")))


def default_signals() -> None:
    """For a child that is sent signals (Popen's preexec_fn): SIGINT as a terminal gives it. A shell without job
    control starts a background command (`bash .ci/run &`) with SIGINT ignored, its children inherit that,
    and Python then installs no KeyboardInterrupt: a Ctrl-C test would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_training(args: list[str], after: str, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Run ``train.py args`` and send it a real ``signum`` once it prints a line starting with ``after``
    (e.g. "epoch   1/2": preempted after its first epoch); (exit status, stdout, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cpu_only({**os.environ, "PYTHONUNBUFFERED": "1"}),
        preexec_fn=default_signals,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(after):
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + out, err


def history(folder: Path) -> list[dict[str, float]]:
    """A run's history.csv as numbers, without the clock's columns (wall and CPU time differ between runs)."""
    from model.runs import CLOCK_COLUMNS

    rows = csv.DictReader((folder / "history.csv").read_text().splitlines())
    return [{k: float(v) for k, v in row.items() if k not in CLOCK_COLUMNS} for row in rows]


def stored(folder: Path, which: str = "best", set_id: str = "test") -> dict:
    """The figures of an evaluation eval.py stored: in a run folder's evaluations/, or in an --out folder."""
    base = folder / "evaluations" if (folder / "evaluations").is_dir() else folder
    return json.loads((base / f"{which}.{set_id}.json").read_text())["figures"]

"""Shared fixtures: small demo datasets written once per test session, and a runner for the scripts."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path

import cv2
import numpy
import pytest
import torch
from torchvision.ops import box_iou

from model.device import usable_cpus
from model.annotations import Problems, read_rows
from model.runs import Checkpoint

pytest.register_assert_rewrite("bad_inputs")  # the catalogue's helpers, a plugin of the two bad-input files

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
WARM = Path(__file__).resolve().parent / "warm_python.py"
COURSE_SPLITS = DATA / "course-splits"  # the course's real split files: all 2,033 rows and boxes


def pytest_configure(config):
    """The suite's workers share the cores: each one's torch (and each script it runs) takes its share of the
    threads, as the plan's runs at once do. Four busy-waiting OpenMP threads on 2 cores train at half speed."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, usable_cpus() // workers)
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


@pytest.fixture(scope="session", autouse=True)
def warm_python(tmp_path_factory):
    """The worker's warm Python (tests/warm_python.py): the scripts' runs skip the imports of torch, torchvision
    and matplotlib (3 s a process here); $CVPR_FRESH_PYTHON=1 starts every one the usual way."""
    from warm_python import FRESH, SUPPORTED, VARIABLE

    if os.environ.get(FRESH) == "1" or not SUPPORTED:
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="warm-"))  # a short path: a socket's is at most 107 bytes
    executable = python_shim(folder)
    log_file = tmp_path_factory.mktemp("warm-python") / "server.log"  # kept with the session's folders: which runs
    with open(log_file, "w") as log:  # started fresh, and why
        server = subprocess.Popen(
            [sys.executable, "-u", str(WARM), "--serve", str(folder / "socket"), str(executable)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # its runs end with it
        )
    assert server.stdout is not None and server.stdout.readline() == "ready\n", log_file.read_text()
    os.environ[VARIABLE] = str(folder / "socket")
    yield
    os.environ.pop(VARIABLE, None)
    os.killpg(server.pid, signal.SIGTERM)
    server.wait()
    shutil.rmtree(folder, ignore_errors=True)


def python(*args: str) -> list[str]:
    """The command line of `python ARGS` as the tests start it: through the warm Python where one serves."""
    return [sys.executable, "-I", "-S", str(WARM), *args]


def python_shim(folder: Path) -> Path:
    """``folder/python``: an executable that runs `python ARGS` as the tests do (a script: a symlink would lose
    the venv)."""
    shim = folder / "python"
    shim.write_text(f'#!/bin/sh\nexec {shlex.join(python())} "$@"\n')
    shim.chmod(0o755)
    return shim


def course_rows() -> list[tuple]:
    """The 2,033 rows of the course's split files, as (filename, x1, y1, x2, y2, label)."""
    return [
        (r.filename, *r.box, r.label)
        for name in ("training_data.csv", "val_data.csv", "test_data.csv")
        for r in read_rows(COURSE_SPLITS / name, Problems(skip=False))
    ]


def made_once(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` once for the whole session, by whichever test worker asks first (the others wait for it
    and share the folder, which no test changes); the folder."""
    import fcntl

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

    return (
        made_once(
            tmp_path_factory, "course", lambda folder: demo.generate(folder / "01-dataset", seed=0, rows=course_rows())
        )
        / "01-dataset"
    )


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


def run_script(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600, gpu: bool = False):
    """Run one of the project's scripts as a user would, with stdout not a terminal (and, unless ``gpu``,
    on the CPU)."""
    environment = {k: v for k, v in os.environ.items() if k != "CVPR_DATASET"}  # tests name their data
    environment.update(PYTHONUNBUFFERED="1", **(env or {}))
    environment = environment if gpu else cpu_only(environment)
    command = python(*args)
    return subprocess.run(command, cwd=cwd or ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def script():
    return run_script


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_dataset) -> Path:
    """A Simple detector trained 3 epochs at 64 px on the demo set; its run folder."""
    out = tmp_path_factory.mktemp("run")
    done = run_script(
        "train.py",
        "--dataset",
        str(demo_dataset),
        "--output-dir",
        str(out),
        "--epochs",
        "3",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--cut-val",
        "0.6",
        "--cut-test",
        "0.7",
    )
    assert done.returncode == 0, done.stderr
    return out


def direct_predictions(run: Path, split_file: str, checkpoint_name: str = "best.pth"):
    """The rows of a split file through the run's model, one image at a time, with OpenCV and torch
    only (none of the toolkit's loaders): the reference the scripts' figures are checked against."""
    checkpoint = Checkpoint(run / checkpoint_name)
    size = checkpoint.image_size
    model = checkpoint.build_model()
    root = checkpoint.dataset
    mean = torch.tensor(checkpoint.mean).view(3, 1, 1)
    std = torch.tensor(checkpoint.std).view(3, 1, 1)
    rows = [line.split(",") for line in (run / split_file).read_text().splitlines()]
    assert root is not None
    out = []
    for filename, x1, y1, x2, y2, label in rows:
        bgr = cv2.imread(str(root / "images" / label / filename))
        assert bgr is not None, filename
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        x = (torch.from_numpy(small).permute(2, 0, 1).float() / 255 - mean) / std
        with torch.no_grad():
            logits, boxes = model(x[None])
        true_box = torch.tensor([float(x1), float(y1), float(x2), float(y2)], dtype=torch.float64)
        pred_box = boxes[0].double() * torch.tensor([w, h, w, h]) if boxes is not None else true_box * math.nan
        iou = box_iou(pred_box[None], true_box[None])[0, 0].item()
        predicted = checkpoint.classes[int(logits.argmax())]
        out.append(
            {
                "key": f"{label}/{filename}",
                "label": label,
                "predicted": predicted,
                "iou": iou,
                "corner": (pred_box - true_box).abs().mean().item(),
            }
        )
    return checkpoint.classes, out


def template_printout(sets: dict[str, list[tuple[str, str]]], labels: list[str]) -> str:
    """What the course template's eval.py prints once it has evaluated the sets, given each set's
    (true, predicted) label per image: the template's own print calls, as the course reference
    quotes them (labels as Python booleans, numpy's mean and sum)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns about the mean of an empty set, and prints nan
        for mode, pairs in sets.items():
            all_results = [true == predicted for true, predicted in pairs]
            print(f"\n*** {mode} set accuracy")
            print(f"\tMean accuracy for all labels: {numpy.mean(numpy.array(all_results))}")
            for label in labels:
                results = [true == predicted for true, predicted in pairs if true == label]
                print(f"\n\tMean accuracy for label {label}: {numpy.mean(numpy.array(results))}")
                print(f"\t\t {numpy.sum(results)} over {len(results)} samples")
    return out.getvalue()


# The files whose tests are independent commands on small shared folders: spread over the workers one test at a
# time. Every other file keeps its tests on one worker, in order, so that its costly fixtures (the quick plan, the
# pinned runs, a module's trained runs) are made once; the course-shaped dataset's two files share one worker.
SPREAD = frozenset({"test_bad_input_data.py", "test_bad_input_faults.py"})
TOGETHER = {"test_safety.py": "course", "test_course_data.py": "course"}
BY_FIRST_PARAMETER = frozenset({"test_docs.py"})  # one scope per document: its commands depend on each other only


def pytest_xdist_make_scheduler(config, log):
    """pyproject's --dist loadscope, with the scopes above. (Not --dist loadgroup: pytest-xdist 3.8 marks a group
    on ``item._nodeid``, which pytest 9.2's ``nodeid`` no longer reads, so every test was scheduled alone.)"""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class FileScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            name = file.rsplit("/", 1)[-1]
            if name in BY_FIRST_PARAMETER and "[" in nodeid:
                return f"{file}[{nodeid.split('[', 1)[1].split('-', 1)[0]}]"
            return nodeid if name in SPREAD else TOGETHER.get(name, file)

    return FileScopes(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_collection_modifyitems(config, items):
    """The spread files' tests last: small scopes that fill the workers' ends, so that none waits idle for
    another's long file. Tests marked cuda run where a CUDA GPU is visible and are skipped elsewhere (CI has none)."""
    items.sort(key=lambda item: item.path.name in SPREAD)  # stable: each file's tests stay in order
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


def stored(folder: Path, which: str = "best", set_id: str = "test") -> dict:
    """The figures of an evaluation eval.py stored: in a run folder's evaluations/, or in an --out folder."""
    import json

    base = folder / "evaluations" if (folder / "evaluations").is_dir() else folder
    return json.loads((base / f"{which}.{set_id}.json").read_text())["figures"]

"""train.py under a real Slurm: the course's srun command and batch scripts (.ci/slurm-up.sh starts one).

Skipped where no Slurm controller answers, unless CVPR_REQUIRE_SLURM is set (CI sets it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT


def slurm_running() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return state.returncode == 0 and ("idle" in state.stdout or "mix" in state.stdout)


if not slurm_running():
    if os.environ.get("CVPR_REQUIRE_SLURM"):
        raise RuntimeError("CVPR_REQUIRE_SLURM is set but no Slurm answers (run .ci/slurm-up.sh)")
    pytest.skip("no Slurm controller answers (bring one up with .ci/slurm-up.sh)", allow_module_level=True)

TINY = ["--epochs", "2", "--image-size", "64", "--batch-size", "16"]


def test_course_srun_command(tmp_path, demo_dataset):
    """`srun --gres=shard:1 --cpus-per-task=8 --mem=12GB python3 train.py`, unchanged."""
    done = subprocess.run(
        [
            "srun",
            "--gres=shard:1",
            "--cpus-per-task=8",
            "--mem=12GB",
            sys.executable,
            "train.py",
            "--dataset",
            str(demo_dataset),
            "--output-dir",
            str(tmp_path),
            *TINY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout  # no progress-bar escape codes in Slurm logs
    assert len([line for line in done.stdout.splitlines() if line.startswith("epoch ")]) == 2
    config = json.loads((tmp_path / "config.json").read_text())
    facts = json.loads((tmp_path / "run.json").read_text())
    assert facts["slurm"]["job_id"].isdigit() and facts["slurm"]["node"]
    # Slurm grants 8 CPUs in its books; the process may use only its affinity: the smaller wins
    assert config["workers"] == min(8, len(os.sched_getaffinity(0)))


def test_srun_passes_the_exit_status_of_a_bad_option(tmp_path):
    done = subprocess.run(
        ["srun", sys.executable, "train.py", "--epochs", "0", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Invalid value for '--epochs'" in done.stderr


def test_sbatch_training_script(tmp_path, demo_dataset):
    log = tmp_path / "train-%j.out"
    done = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--output={log}",
            "slurm/train.sbatch",
            "--dataset",
            str(demo_dataset),
            "--output-dir",
            str(tmp_path),
            "--name",
            "batch",
            *TINY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.strip().split()[-1]
    text = (tmp_path / f"train-{job_id}.out").read_text()
    assert f"job {job_id} on" in text and "epoch   2/2" in text and "Best epoch" in text
    assert {"best.pth", "last.pth", "history.csv", "config.json"} <= {p.name for p in (tmp_path / "batch").iterdir()}
    failing = subprocess.run(
        ["sbatch", "--wait", f"--output={tmp_path / 'bad-%j.out'}", "slurm/train.sbatch", "--model", "nonexistent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failing.returncode != 0  # sbatch --wait returns the job's exit status


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


def test_resubmitting_with_finished_and_interrupted_runs_ends_with_the_comparison(tmp_path, demo_dataset):
    """`bash slurm/submit_all.sh` again after a preemption: the finished run succeeds at once, the
    interrupted one trains its last epoch, and the comparison job (afterok) runs."""
    out, doc = tmp_path / "output", tmp_path / "doc"
    common = ["--dataset", str(demo_dataset), "--output-dir", str(out), *TINY]
    finished = subprocess.run(
        [sys.executable, "train.py", "--model", "simple", "--name", "simple", *common],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr
    process = subprocess.Popen(
        [sys.executable, "train.py", "--model", "deeper", "--name", "deeper", *common],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("epoch   1/2"):
            process.send_signal(signal.SIGTERM)  # preempted after its first epoch
            break
    process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM
    env = {**os.environ, "MODELS": "simple deeper", "OUTPUT_DIR": str(out), "REPORT_DIR": str(doc), "RESUME": "1"}
    submitted = subprocess.run(
        ["bash", "slurm/submit_all.sh", *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert submitted.returncode == 0, submitted.stderr
    compare_job = submitted.stdout.split("comparison: job ")[1].split(",")[0]
    assert wait_for_job(compare_job) == "COMPLETED"
    rows = (doc / "comparison.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["simple", "deeper"]
    assert [line.split(",")[0] for line in (out / "deeper" / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_the_practicals_plan_as_slurm_jobs(tmp_path):
    """compare.py --practical --slurm: the runs to train as a job array (a finished run kept, an
    interrupted one resumed), then the report job once they succeeded; submitted again, nothing is
    trained twice."""
    runs, out = tmp_path / "runs", tmp_path / "report"
    plan = ["compare.py", "--practical", "--quick", "--only", "Q3,Part3-Q4", "--output-dir", str(runs)]
    dataset = runs / "demo"
    finished = subprocess.run(
        [sys.executable, *plan, "--only", "Q3", "--out", str(tmp_path / "first")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # p1-template, trained locally
    assert finished.returncode == 0, finished.stderr
    kept = (runs / "p1-template" / "best.pth").read_bytes()
    quick = ["--image-size", "64", "--batch-size", "16", "--epochs", "2", "--dataset", str(dataset)]
    process = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "--box-weight",
            "10",
            *quick,
            "--output-dir",
            str(runs),
            "--name",
            "p3-simple-box-10",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("epoch   1/2"):
            process.send_signal(signal.SIGTERM)  # preempted after one of its two epochs
            break
    process.communicate(timeout=300)
    submitted = subprocess.run(
        [sys.executable, *plan, "--slurm", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "p3-simple-box-10: srun" in submitted.stdout and "--resume" in submitted.stdout
    assert "p1-template" not in submitted.stdout.split("Submitted")[0]  # finished: not submitted
    report_job = re.search(r"report job (\d+)", submitted.stdout)
    assert report_job, submitted.stdout
    assert wait_for_job(report_job[1]) == "COMPLETED", job_logs(runs / "slurm")
    assert (runs / "p1-template" / "best.pth").read_bytes() == kept
    rows = (runs / "p3-simple-box-10" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # resumed, not restarted
    report = (out / "report.md").read_text()
    assert "## Part 1, Q2-Q3 and Q6-Q7" in report and "## Part 3, Q4: the weights of the two loss terms" in report
    table = (out / "report" / "Part3-Q4-table-1.csv").read_text().splitlines()
    assert len(table) == 4 and "Not trained yet" not in report
    again = subprocess.run(
        [sys.executable, *plan, "--slurm", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "runs (none to train)" in again.stdout
    report_job = re.search(r"report job (\d+)", again.stdout)
    assert report_job, again.stdout
    assert wait_for_job(report_job[1]) == "COMPLETED", job_logs(runs / "slurm")

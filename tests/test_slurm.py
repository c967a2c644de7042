"""train.py under a real Slurm: the course's srun command and batch scripts (.ci/slurm-up.sh starts one).

Skipped where no Slurm controller answers, unless CVPR_REQUIRE_SLURM is set (CI sets it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, interrupt_training, job_logs, run_main, slurm_available, wait_for_job

if not slurm_available():
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
    assert facts["workers"] == min(8, len(os.sched_getaffinity(0))) and "workers" not in config


def test_srun_passes_the_exit_status_of_a_bad_option(tmp_path):
    done = subprocess.run(
        ["srun", sys.executable, "train.py", "--epochs", "0", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Error: Invalid value for '--epochs': 0 is not in the range" in done.stderr


def submit(*args: str) -> str:
    """``sbatch ARGS`` from the project's folder: the job's id."""
    done = subprocess.run(["sbatch", "--parsable", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sbatch_training_script(tmp_path, demo_dataset):
    log = tmp_path / "train-%j.out"
    common = ["--dataset", str(demo_dataset), "--output-dir", str(tmp_path), "--name", "batch", *TINY]
    job_id = submit(f"--output={log}", "slurm/train.sbatch", *common)
    assert wait_for_job(job_id) == "COMPLETED", job_logs(tmp_path)
    text = (tmp_path / f"train-{job_id}.out").read_text()
    assert f"job {job_id} on" in text and "epoch   2/2" in text and "Best epoch" in text
    assert {"best.pth", "last.pth", "history.csv", "config.json"} <= {p.name for p in (tmp_path / "batch").iterdir()}
    failing = submit(f"--output={tmp_path / 'bad-%j.out'}", "slurm/train.sbatch", "--model", "nonexistent")
    assert wait_for_job(failing) == "FAILED"  # the job ends with train.py's exit status


def test_resubmitting_with_finished_and_interrupted_runs_ends_with_the_comparison(tmp_path, demo_dataset):
    """`bash slurm/submit_all.sh` again after a preemption: the finished run succeeds at once, the
    interrupted one trains its last epoch, and the comparison job (afterok) runs."""
    out, doc = tmp_path / "output", tmp_path / "doc"
    common = ["--dataset", str(demo_dataset), "--output-dir", str(out), *TINY]
    finished = run_main("train.py", "--model", "simple", "--name", "simple", *common)
    assert finished.returncode == 0, finished.stderr
    status, _, _ = interrupt_training(["--model", "deeper", "--name", "deeper", *common], after="epoch   1/2")
    assert status == 128 + signal.SIGTERM  # preempted after its first epoch
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

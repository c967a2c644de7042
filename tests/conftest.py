"""Shared fixtures: small demo datasets written once per test session, and a runner for the scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """45 demo images (18 airplane, 9 face, 18 motorcycle)."""
    from model import demo

    return demo.generate(tmp_path_factory.mktemp("demo") / "dataset", images=45, seed=1)


def run_script(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run one of the project's scripts as a user would, with stdout not a terminal."""
    environment = {k: v for k, v in os.environ.items() if k != "CVPR_DATASET"}  # tests name their data
    environment.update(PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd or ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def script():
    return run_script


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_dataset) -> Path:
    """A Simple detector trained 3 epochs at 64 px on the demo set; its run folder."""
    out = tmp_path_factory.mktemp("run")
    done = run_script("train.py", "--dataset", str(demo_dataset), "--output-dir", str(out), "--epochs", "3",
                      "--image-size", "64", "--batch-size", "8", "--cut-val", "0.6", "--cut-test", "0.7")
    assert done.returncode == 0, done.stderr
    return out

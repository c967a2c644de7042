"""The docs are true: every shell command of README.md (its ```bash blocks, and the commands of its question
tables; doc/*.md's in tests/test_guides.py, on another worker) runs, in order, at the smallest scale (CVPR_TINY=1),
in a copy of the project a student would have (a few internet images, a Caltech-101 download, ImageNet weights in
torchvision's cache); doc/options.md is the scripts' own --help, generated here.

    python tests/test_docs.py     # writes doc/options.md again (after a change of an option)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("train.py", "eval.py", "predict.py", "compare.py")
GUIDES = sorted(p for p in (ROOT / "doc").glob("*.md") if p.name != "report.md")  # tests/test_guides.py runs them
DOCS = [ROOT / "README.md", *GUIDES]
SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest")  # what .ci/run does itself
OPTIONS = ROOT / "doc" / "options.md"
AFTER_THE_README = {"troubleshooting.md"}  # the guides whose commands use output/last.pth, output/test_data.csv


# ----------------------------------------------------------------------------------------------
# The options reference
# ----------------------------------------------------------------------------------------------
def options_reference() -> str:
    """doc/options.md: each script's --help as it prints it, then the environment variables model/env.py
    reads (its docstring)."""
    import model.env

    from conftest import python

    parts = [
        "# Every option",
        "",
        "Generated from the scripts' own `--help` (`python tests/test_docs.py` writes it; a test checks it is up to "
        "date). The checks behind every range are `TrainOptions`' (model/options.py).",
    ]
    for script in SCRIPTS:
        done = subprocess.run(
            python(script, "--help"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": "110"},
        )
        parts += ["", f"## `python {script}`", "", "```text", done.stdout.rstrip(), "```"]
    variables = (model.env.__doc__ or "").split("\n\n", 1)[1].rstrip()
    parts += [
        "",
        "## Environment variables",
        "",
        "Read in model/env.py only, whose docstring this is:",
        "",
        "```text",
        variables,
        "```",
        "",
    ]
    return "\n".join(parts)


def test_the_options_reference_is_up_to_date():
    assert OPTIONS.read_text(encoding="utf-8") == options_reference(), "run: python tests/test_docs.py"


# ----------------------------------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------------------------------
def commands_of(path: Path) -> list[str]:
    """The shell commands of a document: each line of its ```bash blocks (a trailing backslash joins the next),
    and, in the README, the commands in the cells of its tables; in the order they appear."""
    found: list[str] = []
    block = False
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if block:
            line = pending + line.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
            elif line and not line.startswith("#"):
                found += [part.strip() for part in line.split("&&")]
        elif path.name == "README.md" and line.startswith("|"):
            found += [c for c in re.findall(r"`([^`]+)`", line) if c.startswith(("python ", "srun "))]
    return [c for c in found if not c.startswith(SETUP)]


def every_command(documents: list[Path] = DOCS) -> list[tuple[str, int, str]]:
    return [(path.name, number, command) for path in documents for number, command in enumerate(commands_of(path))]


def test_the_docs_show_commands():
    """The README gives the question tables' commands, each Part 1 and 2 one without a box head, and names that
    never collide (each run its own folder)."""
    readme = commands_of(ROOT / "README.md")
    trains = [c for c in readme if c.startswith("python train.py")]
    assert len(trains) >= 12 and len(every_command()) >= 30
    names = [m.group(1) for c in trains for m in [re.search(r"--name (\S+)", c)] if m]
    assert len(names) == len(set(names)), names
    table = (ROOT / "README.md").read_text().split("### Part 3")[0].split("### Part 1")[1]
    for command in re.findall(r"`(python train\.py[^`]*)`", table):
        assert "--no-box-head" in command or command.endswith("--help"), command


def slurm_runs() -> bool:
    from conftest import slurm_available

    return slurm_available()


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> Callable[[str], tuple[Path, dict[str, str]]]:
    """For each document, a copy of the project as a student has it, and the environment its commands run in;
    for a guide that uses the run the README's first command made, after that command. One copy a document: the
    file's tests run in order on one worker (pyproject's --dist loadfile)."""
    made: dict[str, tuple[Path, dict[str, str]]] = {}

    def project(document: str) -> tuple[Path, dict[str, str]]:
        if document not in made:
            copy, environ = student_project(tmp_path_factory.mktemp(document))
            if document in AFTER_THE_README:
                first = commands_of(ROOT / "README.md")[0]
                subprocess.run(["bash", "-c", first], cwd=copy, env=environ, capture_output=True, check=True)
            made[document] = copy, environ
        return made[document]

    return project


def not_the_projects(folder: str, names: list[str]) -> set[str]:
    """What a copy of the project leaves out (shutil.copytree's ignore): what .gitignore ignores (the runs in
    output/, the dataset, caches, checkpoints), the virtual env, git's folder, and the folders of tools that
    ignore themselves (.mypy_cache, .ruff_cache): the project as a clone, a ZIP or `git archive` gives it."""
    here = Path(folder)
    kept = {ROOT / "output": {"README.md", "logs"}, ROOT / "output" / "logs": {".gitkeep"}}.get(here)
    left = {".git", ".venv", "__pycache__", ".pytest_cache", *(["dataset"] if here == ROOT else [])}

    def ignored(name: str) -> bool:
        own = here / name / ".gitignore"
        return (
            name in left
            or name.endswith((".pyc", ".pth", ".pt", ".ckpt"))
            or (kept is not None and name not in kept)
            or (own.is_file() and "*" in own.read_text().split())
        )

    return {name for name in names if ignored(name)}


def student_project(base: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the project in ``base`` with a student's internet images, a Caltech-101 download and ImageNet
    weights in torchvision's cache; the environment its commands run in."""
    from test_caltech import write_caltech

    from model import demo

    copy = base / "project"
    shutil.copytree(ROOT, copy, ignore=not_the_projects)
    pictures = demo.generate(base / "pictures", images=6, seed=7)
    for image in (pictures / "images").rglob("*.jpg"):  # a student's internet images, two per label
        shutil.copy2(image, copy / "web_images" / "images" / image.parent.name / f"web_{image.name}")
    caltech = write_caltech(base / "download", copies=60)  # 300 images: the plan's 0.5 % split holds one
    shutil.move(caltech / "caltech-101", copy / "caltech101")
    hub = base / "torch" / "hub" / "checkpoints"  # ImageNet weights where torchvision keeps them (random ones)
    hub.mkdir(parents=True)
    import torch
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), hub / "resnet18-f37072fd.pth")
    shim = base / "bin" / "python"  # `python` in a command is this interpreter (a symlink would lose the venv)
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("CVPR_DATASET", "DISPLAY", "WAYLAND_DISPLAY")}
    environ.update(
        CVPR_TINY="1",
        CVPR_CACHE_DIR=str(base / "cache"),
        CVPR_CPU_BF16="0",
        CUDA_VISIBLE_DEVICES="",
        TORCH_HOME=str(base / "torch"),
        PATH=f"{shim.parent}:{os.environ['PATH']}",
        PYTHONUNBUFFERED="1",
    )
    return copy, environ


def as_tested(command: str) -> str | None:
    """The command as the test runs it (None: not here): a plan as its dry run."""
    if command.startswith(("srun ", "sbatch ")) and not slurm_runs():
        return None
    if "--practical" in command:
        command = command.replace(" --slurm", "")
        command += "" if "--dry-run" in command else " --dry-run"
    return command


@pytest.mark.parametrize("document, number, command", every_command([ROOT / "README.md"]))
def test_every_command_of_the_readme_runs(projects, document, number, command):
    run_documented(projects, document, command)


def run_documented(projects, document: str, command: str) -> None:
    copy, environ = projects(document)
    tested = as_tested(command)
    if tested is None:
        pytest.skip("no Slurm answers here")
    done = subprocess.run(["bash", "-c", tested], cwd=copy, env=environ, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{document}: {tested}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    assert "Traceback" not in done.stderr
    if tested.startswith("sbatch "):  # "Submitted batch job N": the job must run to its end
        from conftest import job_logs, wait_for_job

        assert wait_for_job(done.stdout.split()[-1]) == "COMPLETED", job_logs(copy / "output" / "logs")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    OPTIONS.write_text(options_reference(), encoding="utf-8")
    print(f"wrote {OPTIONS}")

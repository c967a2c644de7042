"""The GPU check: one command that, on a machine with a CUDA GPU, measures everything the toolkit claims
about its GPU path, in at most 9 minutes, with only the packages that machine has (its torch may not be
the pinned one: the versions are recorded), and writes it all into one folder as at most eight files.

    python3 -m benchmarks.gpu_check OUT          # on a GPU machine
    python3 -m benchmarks.gpu_check OUT --tiny   # anywhere, in about half a minute on a CPU (CI runs it)

Stages, each with its own time limit, its progress printed as it goes (a stage that fails or runs out
of time is recorded as such, and the next one runs):

  1. versions       python, torch, torchvision, CUDA, cuDNN, the GPU and its driver, the other packages
  2. dataset        a course-sized dataset: the course's 2,033 rows (tests/data/course-splits), images drawn
  3. cuda tests     python -m pytest -m cuda (tests/test_cuda.py), the no-host-sync-per-batch check included
  4. benchmark      python -m benchmarks.speed: four models, fp32 and bf16, resident and streamed batches,
                    the template's pipeline, peak memory
  5. plan           python compare.py --practical on the course-sized set: every run (ResNet from scratch:
                    no weights can be downloaded there), several at once (--jobs), then the report

OUT then holds: gpu-check.md (the summary: the targets and how they fared), benchmark-gpu.md (what
doc/benchmark-gpu.md should hold), versions.txt, report.md and report.pdf (the plan's report), and
logs.tar.gz (every stage's log, the report's tables and figures, the runs' histories).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ROOT / "tests" / "data" / "course-splits"
PACKAGES = (
    *("torch", "torchvision", "numpy", "opencv-python", "opencv-python-headless", "pandas", "matplotlib", "click"),
    *("rich", "scipy", "tabulate", "jinja2", "markdown-it-py", "typst", "pytest", "pytest-xdist"),
)
TARGETS = (  # issue 21: the full plan on one H200 with a course-sized dataset
    ("plan_minutes", "the full plan, report included", "≤ 10 min"),
    ("real_vs_compute", "every model's real training pass against compute-only", "≥ 0.9"),
    ("simple_epoch", "Simple's epoch (toolkit, bf16)", "≤ 0.5 s"),
    ("speedup", "epoch speed-up over the template's pipeline, every model", "≥ 10×"),
)


@dataclass
class Stage:
    name: str
    command: list[str]
    limit: float  # seconds
    env: dict[str, str] = field(default_factory=dict)
    status: str = "not run"
    seconds: float = 0.0


def run_stage(stage: Stage, logs: Path) -> None:
    """Run one stage, its output into its log and, line by line, onto the console."""
    log = logs / f"{stage.name.replace(' ', '-')}.log"
    print(f"[gpu-check] {stage.name}: {' '.join(stage.command)} (at most {stage.limit:.0f} s)", flush=True)
    began = time.monotonic()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **stage.env}
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(
            stage.command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                handle.write(line)
                if time.monotonic() - began > stage.limit:
                    process.kill()
                    stage.status = "out of time"
                    break
                if any(word in line for word in ("Error", "passed", "failed", "Wrote", "[done", "[started", "epoch  ")):
                    print(f"    {line.rstrip()[:160]}", flush=True)
        finally:
            process.wait()
    stage.seconds = time.monotonic() - began
    if stage.status != "out of time":
        stage.status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    print(f"[gpu-check] {stage.name}: {stage.status} in {stage.seconds:.0f} s", flush=True)


def versions() -> str:
    """What this machine runs the check with."""
    lines = [f"python {platform.python_version()} ({sys.executable})", f"platform {platform.platform()}"]
    for name in PACKAGES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    try:
        import torch

        lines.append(f"torch.version.cuda {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}")
        if torch.cuda.is_available():
            properties = torch.cuda.get_device_properties(0)
            lines.append(
                f"GPU {properties.name}, {properties.total_memory / 2**30:.0f} GiB, capability "
                f"{properties.major}.{properties.minor}"
            )
    except Exception as error:  # a torch that cannot load is what this line must say
        lines.append(f"torch cannot load: {error}")
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        lines.append(f"nvidia-smi: {smi.stdout.strip()}")
    lines.append(f"CPUs {os.cpu_count()}")
    return "\n".join(lines) + "\n"


def stages(out: Path, tiny: bool) -> list[Stage]:
    """The check's stages; ``tiny``: the same at a size a CPU does in half a minute (one run of the plan)."""
    data, runs, report = (str(out / "work" / name) for name in ("dataset", "runs", "report"))
    python = sys.executable
    device = "cpu" if tiny else "cuda"
    if tiny:
        make = ["--images", "120", "--seed", "1"]
        bench = ["--models", "simple", "--batch-size", "8", "--batches", "1", "--repeats", "1", "--precisions", "fp32"]
        plan = ["--quick", "--only", "P1-Q7"]  # one run and its report: the stage works
    else:
        make = [f"--rows={SPLITS / f}" for f in ("training_data.csv", "val_data.csv", "test_data.csv")]
        bench = ["--precisions", "fp32,bf16", "--repeats", "2", "--streamed", "--images", "course"]
        plan = []
    tests = ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-n", "0", "tests/test_cuda.py"]
    speed = ["-m", "benchmarks.speed", "--device", device, "--dataset", data, *bench]
    practical = [
        "compare.py",
        "--practical",
        "--dataset",
        data,
        "--output-dir",
        runs,
        "--out",
        report,
        "--device",
        device,
    ]
    return [
        Stage("dataset", [python, "-m", "model.demo", data, *make], 240),
        Stage("cuda tests", [python, *tests], 120, {"CVPR_ANY_VERSIONS": "1"}),
        Stage("benchmark", [python, *speed, "--out", str(out / "benchmark-gpu.md")], 180),
        Stage("plan", [python, *practical, *plan], 240 if tiny else 330),
    ]


def epoch_times(runs: Path) -> dict[str, float]:
    """Each run's mean epoch seconds (training and validation passes), from its history.csv."""
    times = {}
    for history in sorted(runs.glob("*/history.csv")):
        rows = list(csv.DictReader(history.read_text().splitlines()))
        if rows:
            times[history.parent.name] = sum(float(r["seconds"]) for r in rows) / len(rows)
    return times


def benchmark_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ") and not line.startswith("| model")]
    header = next((line for line in path.read_text().splitlines() if line.startswith("| model")), "")
    names = [c.strip() for c in header.strip("|").split("|")]
    return [dict(zip(names, (c.strip() for c in line.strip("|").split("|")))) for line in lines]


def measured_targets(out: Path, plan: Stage) -> dict[str, str]:
    rows = benchmark_rows(out / "benchmark-gpu.md")
    resident = [r for r in rows if r.get("batches") == "resident"]
    found: dict[str, str] = {}
    if plan.status == "ok":
        found["plan_minutes"] = f"{plan.seconds / 60:.1f} min"
    if resident:
        found["real_vs_compute"] = ", ".join(f"{r['model']} {r['precision']} {r['2/1']}" for r in resident)
        simple = [r for r in resident if r["model"] == "simple"]
        if simple:
            found["simple_epoch"] = ", ".join(f"{r['precision']} {r['epoch s toolkit']} s" for r in simple)
        found["speedup"] = ", ".join(f"{r['model']} {r['precision']} {r['epoch speed-up']}×" for r in resident)
    return found


def summary(out: Path, stages_run: list[Stage], tiny: bool) -> str:
    plan = next(s for s in stages_run if s.name == "plan")
    found = measured_targets(out, plan)
    lines = [
        "# GPU check" + (" (tiny mode, on the CPU: the check works, its numbers mean nothing)" if tiny else ""),
        "",
        "```",
        (out / "versions.txt").read_text().rstrip(),
        "```",
        "",
        "| stage | status | seconds |",
        "|---|---|---|",
        *(f"| {s.name} | {s.status} | {s.seconds:.0f} |" for s in stages_run),
        "",
        "| target | goal | measured |",
        "|---|---|---|",
        *(f"| {what} | {goal} | {found.get(key, 'not measured')} |" for key, what, goal in TARGETS),
        "",
        "Mean epoch seconds of each run of the plan (training and validation passes, from its history.csv):",
        "",
        *(f"- {name}: {seconds:.2f} s" for name, seconds in epoch_times(out / "work" / "runs").items()),
    ]
    return "\n".join(lines) + "\n"


def pack(out: Path) -> None:
    """report.md and report.pdf beside the summary; the rest (logs, report folder, histories) in one archive."""
    report = out / "work" / "report"
    for name in ("report.md", "report.pdf"):
        if (report / name).exists():
            shutil.copyfile(report / name, out / name)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as archive:
        archive.add(out / "logs", arcname="logs")
        if (report / "report").exists():
            archive.add(report / "report", arcname="report")
        for history in sorted((out / "work" / "runs").glob("*/history.csv")):
            archive.add(history, arcname=f"histories/{history.parent.name}.csv")
    shutil.rmtree(out / "logs")
    shutil.rmtree(out / "work")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the check's files (created; must be empty or missing)")
    parser.add_argument("--tiny", action="store_true", help="the same stages at a size a CPU does in half a minute")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if not args.tiny:
        import torch

        from model.device import why_no_cuda

        if not torch.cuda.is_available():  # its stages would pass by skipping, then train for minutes on the CPU
            print(f"Error: {why_no_cuda()}: the check measures a CUDA GPU; run it on a GPU machine (or pass --tiny "
                  "to try its stages on a CPU)", file=sys.stderr)  # fmt: skip
            return 1
    if out.exists() and any(out.iterdir()):
        print(f"Error: {out}: not empty; give a new folder for the check's files", file=sys.stderr)
        return 1
    (out / "logs").mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    (out / "versions.txt").write_text(versions())
    print((out / "versions.txt").read_text(), flush=True)
    todo = stages(out, args.tiny)
    for stage in todo:
        run_stage(stage, out / "logs")
    (out / "gpu-check.md").write_text(summary(out, todo, args.tiny))
    pack(out)
    print(
        f"[gpu-check] done in {time.monotonic() - began:.0f} s: {', '.join(sorted(p.name for p in out.iterdir()))}",
        flush=True,
    )
    return 0 if all(s.status == "ok" for s in todo) else 1


if __name__ == "__main__":
    sys.exit(main())

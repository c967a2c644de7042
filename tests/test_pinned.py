"""Behaviour pinned across refactors: the same commands give the same files and numbers, on any machine.

The recorded outputs (tests/data/pinned_outputs.json) are written by this module's `record()`. What does
not depend on the processor is compared exactly: split files, options, labels (every predicted label and
every count of right and wrong), file formats, keys. Numbers are compared within a tolerance measured
across processors and thread counts: between an AVX-512 machine and an AVX2 one, and between 1, 2 and 4
threads, the largest relative difference seen was 1.6e-3 (a mean IoU of a few images), so a number may
differ by 5e-3 of itself, or by 1e-4 near 0; a number printed inside a line (predict.py's confidence and
IoU) by one unit of its last digit more.

    python tests/test_pinned.py     # re-record, after a change that is meant to change the numbers
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import tempfile
from pathlib import Path

import pytest

from conftest import run_main

ROOT = Path(__file__).resolve().parent.parent
RECORD = Path(__file__).resolve().parent / "data" / "pinned_outputs.json"
RUNS = {
    "simple": ["--epochs", "2", "--image-size", "64", "--batch-size", "8"],
    "deeper": shlex.split(
        "--model deeper --epochs 2 --image-size 64 --batch-size 8 --no-box-head --lr-schedule cosine --optimizer sgd"
        " --lr 0.01 --dropout 0 --no-batchnorm"
    ),
}
# wall-clock measurements
VARYING = {"seconds", "train_eval_seconds", "cpu_seconds", "seconds_per_epoch", "infer_ms_batched", "infer_ms_single"}


def run(*args: str, cwd: Path = ROOT) -> str:
    done = run_main(*args, cwd=cwd, env={"CVPR_CPU_BF16": "0"})  # the CPU's fp32 numbers on any CPU
    assert done.returncode == 0, done.stderr
    return done.stdout


REL, ABS = 5e-3, 1e-4  # measured across processors and thread counts (see the module's docstring)
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")


def outputs(work: Path) -> dict:
    """Every pinned output of the commands, from a fresh demo set in ``work``."""
    dataset = work / "data"
    run("-m", "model.demo", str(dataset), "--images", "45", "--seed", "1")
    pinned: dict = {}
    for name, args in RUNS.items():
        where = ["--dataset", str(dataset), "--output-dir", str(work), "--name", name]
        run("train.py", *where, "--precision", "fp32", *args)
        folder = work / name
        config = json.loads((folder / "config.json").read_text())
        for key in ("dataset", "output_dir", "overwrite", "workers"):  # places; how the run was started
            config.pop(key, None)
        history = [
            {k: v for k, v in row.items() if k not in VARYING}
            for row in csv.DictReader((folder / "history.csv").read_text().splitlines())
        ]
        run("eval.py", str(folder / "best.pth"), "--out", str(work / f"eval_{name}"))
        evaluations = {
            shown: json.loads((work / f"eval_{name}" / f"best.{split}.json").read_text())
            for split, shown in (("train", "train"), ("val", "validation"), ("test", "test"))
        }
        saved, rows = str(work / f"shown_{name}"), str(folder / "test_data.csv")
        predicted = run("predict.py", "--model", str(folder / "best.pth"), "--save", saved, rows)
        pinned[name] = {
            "config": config,
            "history": history,
            "eval": {shown: e["figures"] for shown, e in evaluations.items()},
            "epoch": evaluations["test"]["epoch"],
            "splits": {f: (folder / f).read_text() for f in ("training_data.csv", "val_data.csv", "test_data.csv")},
            "predict": [line.split(": ", 1)[1] for line in predicted.splitlines() if ": predicted " in line],
        }
    run("compare.py", *(str(work / name) for name in RUNS), "--out", str(work / "doc"), "--precision", "fp32")
    pinned["comparison"] = [
        {k: v for k, v in row.items() if k not in VARYING}
        for row in csv.DictReader(Path(work / "doc" / "comparison.csv").read_text().splitlines())
    ]
    return json.loads(json.dumps(pinned))


def close(a: float, b: float, unit: float = 0.0) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL, abs_tol=ABS + unit)


def same(recorded, now, where: str = "") -> None:
    """Equal: numbers within the measured tolerance, everything else exactly (integers too: counts)."""
    if isinstance(recorded, dict):
        assert sorted(recorded) == sorted(now), f"{where}: keys {sorted(recorded)} != {sorted(now)}"
        for key in recorded:
            same(recorded[key], now[key], f"{where}/{key}")
    elif isinstance(recorded, list):
        assert len(recorded) == len(now), where
        for i, (a, b) in enumerate(zip(recorded, now)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(recorded, float) and isinstance(now, (int, float)):
        assert close(recorded, float(now)), f"{where}: {recorded} != {now}"
    elif isinstance(recorded, str) and isinstance(now, str) and "\n" not in recorded:
        same_line(recorded, now, where)
    else:
        assert recorded == now, f"{where}: {recorded!r} != {now!r}"


def same_line(recorded: str, now: str, where: str) -> None:
    """A line (a CSV cell, a line of predict.py): its words exactly, its decimals within the tolerance
    (and one unit of their last printed digit), its whole numbers exactly."""
    words = NUMBER.split(recorded), NUMBER.split(now)
    assert words[0] == words[1], f"{where}: {recorded!r} != {now!r}"
    for a, b in zip(NUMBER.findall(recorded), NUMBER.findall(now)):
        if "." not in a or "." not in b:
            assert a == b, f"{where}: {recorded!r} != {now!r}"
            continue
        unit = 10.0 ** -len(a.split(".")[1])
        assert close(float(a), float(b), unit), f"{where}: {recorded!r} != {now!r}"


@pytest.fixture(scope="module")
def current(tmp_path_factory) -> dict:
    return outputs(tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("part", [*RUNS, "comparison"])
def test_the_commands_give_the_recorded_files_and_numbers(current, part):
    recorded = json.loads(RECORD.read_text())
    same(recorded[part], current[part], part)


def record() -> None:
    with tempfile.TemporaryDirectory() as work:
        RECORD.write_text(json.dumps(outputs(Path(work)), indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD}")


if __name__ == "__main__":
    record()

"""Behaviour pinned across refactors: the same commands give the same files and numbers.

The recorded outputs (tests/data/pinned_outputs.json) were written by this module's `record()`
before the code was restructured, and checked bit for bit on the machine that recorded them after
it. Here they are compared with a relative tolerance of 1e-5, since another CPU may order its
floating-point sums differently; labels, counts, split files and options must be equal.

    python tests/test_pinned.py     # re-record, after a change that is meant to change the numbers
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD = Path(__file__).resolve().parent / "data" / "pinned_outputs.json"
RUNS = {
    "simple": ["--epochs", "2", "--image-size", "64", "--batch-size", "8"],
    "deeper": [
        "--model",
        "deeper",
        "--epochs",
        "2",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--no-box-head",
        "--lr-schedule",
        "cosine",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--dropout",
        "0",
        "--no-batchnorm",
    ],
}
VARYING = {"seconds", "seconds_per_epoch", "infer_ms_batched", "infer_ms_single"}  # wall-clock measurements


def run(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def outputs(work: Path) -> dict:
    """Every pinned output of the commands, from a fresh demo set in ``work``."""
    dataset = work / "data"
    run("-m", "model.demo", str(dataset), "--images", "45", "--seed", "1")
    pinned: dict = {}
    for name, args in RUNS.items():
        run("train.py", "--dataset", str(dataset), "--output-dir", str(work), "--name", name, *args)
        folder = work / name
        config = json.loads((folder / "config.json").read_text())
        for key in ("dataset", "output_dir", "overwrite", "run", "resume"):  # places; how the run was started
            config.pop(key, None)
        history = [
            {k: v for k, v in row.items() if k not in VARYING}
            for row in csv.DictReader((folder / "history.csv").read_text().splitlines())
        ]
        run("eval.py", str(folder / "best.pth"), "--out", str(folder))
        figures = json.loads((folder / "eval_best.json").read_text())
        for figures_of_set in figures["sets"].values():
            figures_of_set.pop("file")
        predicted = run(
            "predict.py",
            "--model",
            str(folder / "best.pth"),
            "--save",
            str(work / f"shown_{name}"),
            str(folder / "test_data.csv"),
        ).splitlines()
        pinned[name] = {
            "config": config,
            "history": history,
            "eval": figures["sets"],
            "epoch": figures["epoch"],
            "splits": {f: (folder / f).read_text() for f in ("training_data.csv", "val_data.csv", "test_data.csv")},
            "predict": [line.split(": ", 1)[1] for line in predicted if ": predicted " in line],
        }
    run("compare.py", *(str(work / name) for name in RUNS), "--out", str(work / "doc"))
    pinned["comparison"] = [
        {k: v for k, v in row.items() if k not in VARYING}
        for row in csv.DictReader(Path(work / "doc" / "comparison.csv").read_text().splitlines())
    ]
    return json.loads(json.dumps(pinned))


def same(recorded, now, where: str = "") -> None:
    """Equal, numbers (also inside CSV strings) to a relative 1e-5."""
    if isinstance(recorded, dict):
        assert sorted(recorded) == sorted(now), where
        for key in recorded:
            same(recorded[key], now[key], f"{where}/{key}")
    elif isinstance(recorded, list):
        assert len(recorded) == len(now), where
        for i, (a, b) in enumerate(zip(recorded, now)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(recorded, float) or (isinstance(recorded, str) and _number(recorded) is not None):
        a, b = _number(str(recorded)), _number(str(now))
        assert a is not None, where
        assert b is not None and (a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5)), (
            f"{where}: {recorded} != {now}"
        )
    else:
        assert recorded == now, f"{where}: {recorded!r} != {now!r}"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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

"""compare.py on tiny trained runs: every file, figures equal to eval.py's, classic baselines, --train."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from model.reporting.comparison import TIMING_COLUMNS

from conftest import stored

FIGURES = ["loss_curves.png", "accuracy_iou_curves.png", "per_label.png", "confusion_matrices.png"]
FIGURES += ["iou_histograms.png", "robustness.png"]
TABLES = ["comparison.md", "comparison.csv", "comparison.tex", "errors.md", "robustness.md", "robustness.csv"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, trained_run, demo_dataset, script):
    """output/simple already trained (kept), output/deeper trained by --train, then compared twice."""
    base = tmp_path_factory.mktemp("compare")
    shutil.copytree(trained_run, base / "output" / "simple")
    simple_before = (base / "output" / "simple" / "best.pth").read_bytes()
    command = ["compare.py", "--train", "simple,deeper", "--epochs", "1", "--image-size", "64"]
    command += ["--dataset", str(demo_dataset), "--output-dir", str(base / "output"), "--out", str(base / "doc")]
    command += ["--classic", "--robustness"]
    first = script(*command)
    assert first.returncode == 0, first.stdout + first.stderr
    first_tables = {name: (base / "doc" / name).read_text() for name in TABLES}
    second = script(*command)
    assert second.returncode == 0, second.stderr
    return base, first, second, first_tables, simple_before


def test_train_trains_only_what_is_missing(compared):
    base, first, second, _, simple_before = compared
    assert f"{base / 'output' / 'simple'}: already trained (finished: " in first.stdout
    trained = [line for line in first.stdout.splitlines() if line.startswith("[1/")]
    assert len(trained) == 1 and "--model deeper" in trained[0] and "--model simple" not in first.stdout
    assert (base / "output" / "simple" / "best.pth").read_bytes() == simple_before
    assert "python train.py" not in second.stdout  # nothing left to train
    assert (base / "output" / "deeper" / "best.pth").exists()


def test_every_file_written_and_not_empty(compared):
    base, *_ = compared
    doc = base / "doc"
    for name in FIGURES + TABLES:
        assert (doc / name).stat().st_size > 0, name
    for name in FIGURES + [f"failures_{m}.jpg" for m in ("simple", "deeper")]:
        image = cv2.imread(str(doc / name))
        assert image is not None and image.std() > 10, name  # not blank
    rows = list(csv.DictReader(Path(doc / "comparison.csv").read_text().splitlines()))
    assert [r["model"] for r in rows] == ["simple", "deeper", "hog_svm", "haar_face"]
    columns = ["parameters", "trainable", "seconds_per_epoch", "best_epoch", "train_sample_loss", "val_accuracy"]
    columns += ["test_loss", "test_accuracy", "test_mean_iou", "test_iou_at_0.5", "accuracy_face", "iou_airplane"]
    for column in [*columns, "infer_ms_batched", "infer_ms_single", "device"]:
        assert rows[0][column] != "", column
    assert "\\begin{tabular}" in (doc / "comparison.tex").read_text()
    errors = (doc / "errors.md").read_text()
    assert "## simple" in errors and "## haar_face" in errors and "Worst cases" in errors


def test_table_figures_equal_evals(compared, script):
    base, *_ = compared
    for name in ("simple", "deeper"):
        done = script("eval.py", str(base / "output" / name / "best.pth"), "--split", "test")
        assert done.returncode == 0, done.stderr
        figures = stored(base / "output" / name)
        table = csv.DictReader((base / "doc" / "comparison.csv").read_text().splitlines())
        row = next(r for r in table if r["model"] == name)
        assert float(row["test_accuracy"]) == pytest.approx(figures["overall"]["accuracy"])
        assert float(row["test_mean_iou"]) == pytest.approx(figures["overall"]["mean_iou"])
        assert float(row["test_loss"]) == pytest.approx(figures["loss"])
        for label, per_label in figures["per_label"].items():
            if per_label["images"] == 0:  # a class absent from the test split has no figure
                assert per_label["accuracy"] is None and row[f"accuracy_{label}"] == ""
            else:
                assert float(row[f"accuracy_{label}"]) == pytest.approx(per_label["accuracy"])


def test_classic_baselines_score_on_the_demo_set(compared):
    base, *_ = compared
    rows = {r["model"]: r for r in csv.DictReader(Path(base / "doc" / "comparison.csv").read_text().splitlines())}
    for name in ("hog_svm", "haar_face"):
        assert 0.0 <= float(rows[name]["test_accuracy"]) <= 1.0
        assert 0.0 < float(rows[name]["test_mean_iou"]) <= 1.0  # edge and Haar boxes overlap some objects
        assert rows[name]["parameters"] == ""


def test_rerun_gives_the_same_tables(compared):
    base, _, _, first_tables, _ = compared
    for name in TABLES:
        now = (base / "doc" / name).read_text()
        if name.startswith("comparison"):  # inference timings are measured anew
            now, before = (_drop_timing(t, name) for t in (now, first_tables[name]))
        else:
            before = first_tables[name]
        assert now == before, name


def _drop_timing(text: str, name: str) -> list[list[str]]:
    rows = [
        line.split("," if name.endswith(".csv") else "|" if name.endswith(".md") else "&") for line in text.splitlines()
    ]
    header = next((r for r in rows if any(c.strip().replace("\\_", "_") == TIMING_COLUMNS[0] for c in r)), None)
    if header is None:
        return rows
    drop = {i for i, c in enumerate(header) if c.strip().replace("\\_", "_") in TIMING_COLUMNS}
    return [[c for i, c in enumerate(r) if i not in drop] for r in rows]


def test_no_runs_is_a_usage_error(script):
    done = script("compare.py")
    assert done.returncode == 2 and "give run folders or checkpoints" in done.stderr
    missing = script("compare.py", "/nonexistent/run")
    assert missing.returncode == 1 and "no best.pth there" in missing.stderr


def test_a_partly_trained_run_is_said_in_the_terminal_and_in_the_table(tmp_path, trained_run, script):
    """A run stopped after 1 of 3 planned epochs: its scores are shown, and said to be an unfinished run's."""
    run = tmp_path / "stopped"
    shutil.copytree(trained_run, run)
    last = torch.load(run / "last.pth", map_location="cpu", weights_only=True)
    last["options"]["epochs"] = last["epoch"] + 2
    torch.save(last, run / "last.pth")
    done = script("compare.py", str(run), "--out", str(tmp_path / "doc"))
    assert done.returncode == 0, done.stderr
    said = f"Warning: {run} is partly trained: {last['epoch']} of {last['epoch'] + 2} epochs"
    assert said in done.stdout and said in (tmp_path / "doc" / "comparison.md").read_text()

"""The course's own data: its 2,033 real rows and boxes, its split, its template's printout.

The dataset is rebuilt from the course's split files (tests/data/course-splits, the real rows):
each image is drawn to fit its real box, so every row, box, file name and class count is the
course's, the zero-height airplane box included.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from model import config
from model.annotations import Problems, class_names, read_annotations, read_rows, split_rows
from model.classic import run_baselines
from model.engine import DetectionLoss
from model.metrics import summarize

from conftest import COURSE_SPLITS, direct_predictions, template_printout

ZERO_HEIGHT = "image_0118.jpg,104,38,126,38,airplane"  # Caltech-101's own annotation, kept by the course
SHORT = ["--epochs", "1", "--image-size", "64"]  # only shortens training; the data path is the default one


@pytest.fixture(scope="module")
def course_run(tmp_path_factory, course_dataset, script):
    """`python train.py` as on the course cluster: the dataset found by itself, no data option."""
    out = tmp_path_factory.mktemp("course-run")
    done = script("train.py", "--output-dir", str(out), *SHORT, env={"CVPR_DATASET": str(course_dataset)})
    return out, done


def test_train_with_no_option_trains_on_the_course_rows(course_run, course_dataset):
    out, done = course_run
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: kept 1 odd row(s): {course_dataset / 'annotations' / 'airplane.csv'}:118: box "
        f"104,38,126,38 has zero height; kept (it trains the classifier, its box loss stays finite)"
    ]
    assert "splits: train 1626, val 203, test 204" in done.stdout
    history = (out / config.HISTORY_FILE).read_text().splitlines()
    assert len(history) == 2 and "nan" not in history[1] and "inf" not in history[1]


def test_the_split_written_is_the_courses_byte_for_byte(course_run):
    out, _ = course_run
    for filename in config.SPLIT_FILES.values():
        assert (out / filename).read_bytes() == (COURSE_SPLITS / filename).read_bytes(), filename
    assert ZERO_HEIGHT in (out / "training_data.csv").read_text().splitlines()  # the zero-height row trained


def test_only_the_course_clusters_file_order_gives_the_courses_split(course_dataset):
    """The rule, on the real rows: files in the course's listdir order, rows in file order, then the
    template's random.seed(0) shuffle. Every other file order gives another split."""
    rows = read_annotations(course_dataset, Problems(skip=False))
    assert [r.label for r in rows][:1] == ["motorcycle"] and class_names(rows) == ["airplane", "face", "motorcycle"]
    course = [(COURSE_SPLITS / f).read_text().split("\n") for f in config.SPLIT_FILES.values()]
    ours = split_rows(rows)
    assert [[r.to_row() for r in ours[name]] for name in ("train", "val", "test")] == course
    by_label = {label: [r.to_row() for r in rows if r.label == label] for label in class_names(rows)}
    for order in itertools.permutations(by_label):
        shuffled = [row for label in order for row in by_label[label]]
        random.seed(0)  # the template's own calls
        random.shuffle(shuffled)
        assert (shuffled[1626:1829] == course[1]) == (order == ("motorcycle", "airplane", "face")), order


def test_strict_mode_stops_at_the_zero_height_row(course_dataset, script, tmp_path):
    done = script("train.py", "--dataset", str(course_dataset), "--output-dir", str(tmp_path / "o"), "--strict", *SHORT)
    assert done.returncode == 1 and not (tmp_path / "o").exists()
    assert done.stderr.strip().splitlines() == [
        f"Error: {course_dataset / 'annotations' / 'airplane.csv'}:118: box 104,38,126,38 has zero height; kept (it "
        f"trains the classifier, its box loss stays finite) (--strict stops on such rows; fix the row, or drop "
        f"--strict to keep it)"
    ]


def test_eval_prints_the_templates_block_character_for_character(course_run, script):
    out, _ = course_run
    done = script("eval.py", str(out / "best.pth"))
    assert done.returncode == 0, done.stderr
    sets = {}
    for mode, filename in (("train", "training_data.csv"), ("validation", "val_data.csv"), ("test", "test_data.csv")):
        classes, direct = direct_predictions(out, filename)
        sets[mode] = [(d["label"], d["predicted"]) for d in direct]
    expected = template_printout(sets, classes)
    start = done.stdout.index("\n*** train set accuracy")
    assert done.stdout[start : start + len(expected)] == expected


def test_given_split_files_are_used_as_they_are(course_dataset, script, tmp_path):
    """--splits: the template's output/ (here the course's own files); the train fraction still cuts."""
    given = ["train.py", "--dataset", str(course_dataset), "--splits", str(COURSE_SPLITS)]
    done = script(*given, "--output-dir", str(tmp_path), "--train-fraction", "0.05", *SHORT)
    assert done.returncode == 0, done.stderr
    for name in ("val_data.csv", "test_data.csv"):
        assert (tmp_path / name).read_bytes() == (COURSE_SPLITS / name).read_bytes()
    kept = (tmp_path / "training_data.csv").read_text().splitlines()
    course = (COURSE_SPLITS / "training_data.csv").read_text().splitlines()
    assert 70 <= len(kept) <= 90 and kept == [row for row in course if row in set(kept)]  # 5 % per class, in order
    both = script(*given, "--cut-val", "0.5", "--output-dir", str(tmp_path / "x"))
    assert both.returncode == 1 and "--cut-val does not apply with --splits " in both.stderr
    assert not (tmp_path / "x").exists()


def test_classic_baselines_beat_the_majority_class_on_the_course_rows(course_dataset):
    """Fitted on every third training row (542 images: all 1,626 gave the same verdict, 99.5 and 96.1 % against 99.0
    and 96.1 %, in twice the time), scored on the whole test split."""
    problems = Problems(skip=False)
    train = read_rows(COURSE_SPLITS / "training_data.csv", problems)[::3]
    test = read_rows(COURSE_SPLITS / "test_data.csv", problems)
    classes = class_names(train)
    majority = max(sum(r.label == c for r in test) for c in classes) / len(test)
    for name, baseline in run_baselines(course_dataset, train, test, classes, DetectionLoss()).items():
        predicted = np.unique(baseline.results.predicted_labels)
        assert len(predicted) == len(classes), f"{name} predicts only {predicted}"
        assert summarize(baseline.results)["overall"]["accuracy"] > majority + 0.3, name

"""eval.py and predict.py on a tiny trained model, checked against an independent computation."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.draw import PREDICTED, TRUE

from conftest import direct_predictions, python, stored, template_printout


def test_eval_block_line_by_line_and_json_equal_direct_computation(trained_run, script):
    done = script("eval.py", str(trained_run / "best.pth"), "--split", "test", "--failures")
    assert done.returncode == 0, done.stderr
    classes, direct = direct_predictions(trained_run, "test_data.csv")
    correct = [d["predicted"] == d["label"] for d in direct]
    expected = template_printout({"test": [(d["label"], d["predicted"]) for d in direct]}, classes)
    assert done.stdout.startswith(expected)  # the template's printout, character for character
    report = stored(trained_run)
    ious = np.array([d["iou"] for d in direct])
    assert report["overall"]["images"] == len(direct)
    assert report["overall"]["accuracy"] == pytest.approx(np.mean(correct))
    assert report["overall"]["mean_iou"] == pytest.approx(ious.mean(), abs=1e-5)
    assert report["overall"]["iou_at_threshold"] == pytest.approx(np.mean(ious >= 0.5))
    assert report["overall"]["detection_accuracy"] == pytest.approx(np.mean(np.array(correct) & (ious >= 0.5)))
    assert report["overall"]["corner_error_px"] == pytest.approx(np.mean([d["corner"] for d in direct]), abs=1e-3)
    for label in classes:
        mine = [d for d in direct if d["label"] == label]
        assert report["per_label"][label]["mean_iou"] == pytest.approx(np.mean([d["iou"] for d in mine]), abs=1e-5)
    matrix = np.zeros((3, 3), int)
    for d in direct:
        matrix[classes.index(d["label"]), classes.index(d["predicted"])] += 1
    assert report["confusion"]["matrix"] == matrix.tolist()
    for name in ("best.test.images.csv", "best.test.confusion.png"):
        assert (trained_run / "evaluations" / name).stat().st_size > 0
    # the failure list names every failing image
    failing = {d["key"] for d in direct if d["predicted"] != d["label"] or d["iou"] < 0.5}
    assert all(key in done.stdout for key in failing)


def test_eval_sets_default_to_the_three_splits_and_to_none_with_csv(trained_run, script, tmp_path):
    headers = lambda out: [line for line in out.splitlines() if line.startswith("*** ")]  # noqa: E731
    model, val_rows = str(trained_run / "best.pth"), str(trained_run / "val_data.csv")
    every = script("eval.py", model, "--out", str(tmp_path))
    assert headers(every.stdout) == [f"*** {s} set accuracy" for s in ("train", "validation", "test")]
    rows = script("eval.py", model, "--csv", val_rows, "--out", str(tmp_path))
    assert headers(rows.stdout) == ["*** val_data set accuracy"]
    both = script("eval.py", model, "--split", "test", "--csv", val_rows, "--out", str(tmp_path))
    assert headers(both.stdout) == ["*** test set accuracy", "*** val_data set accuracy"]


def test_an_empty_test_split_is_refused_when_asked_for_and_left_out_otherwise(tmp_path, demo_dataset, script):
    tiny = ["--epochs", "1", "--image-size", "64", "--cut-val", "0.7", "--cut-test", "1.0"]
    done = script("train.py", "--dataset", str(demo_dataset), "--output-dir", str(tmp_path), *tiny)
    assert done.returncode == 0 and (tmp_path / "test_data.csv").read_text() == ""
    asked = script("eval.py", str(tmp_path / "best.pth"), "--split", "test", "--out", str(tmp_path / "ev"))
    assert asked.returncode == 1 and len(asked.stderr.strip().splitlines()) == 1, asked.stderr
    assert "test_data.csv: the run's test split is empty" in asked.stderr and not (tmp_path / "ev").exists()
    every = script("eval.py", str(tmp_path / "best.pth"), "--out", str(tmp_path / "ev"))
    assert every.returncode == 0 and "warning: " in every.stderr and "test_data.csv" in every.stderr
    headers = [line for line in every.stdout.splitlines() if line.startswith("*** ")]
    assert headers == ["*** train set accuracy", "*** validation set accuracy"]
    compared = script("compare.py", str(tmp_path), "--out", str(tmp_path / "doc"))
    assert compared.returncode == 1 and len(compared.stderr.strip().splitlines()) == 1
    assert "test_data.csv: the run's test split is empty" in compared.stderr


def eval_failures(run: Path) -> set[str]:
    with open(run / "best.val.images.csv") as handle:
        return {"/".join(Path(r["path"]).parts[-2:]) for r in csv.DictReader(handle) if r["failure"] == "1"}


def test_failures_only_shows_exactly_evals_failures(trained_run, script, tmp_path):
    assert script("eval.py", str(trained_run / "best.pth"), "--split", "val", "--out", str(tmp_path)).returncode == 0
    expected = eval_failures(tmp_path)
    model, val_rows = str(trained_run / "best.pth"), str(trained_run / "val_data.csv")
    done = script("predict.py", "--model", model, "--failures-only", "--save", str(tmp_path / "shown"), val_rows)
    assert done.returncode == 0, done.stderr
    shown = {line.split(":")[0] for line in done.stdout.splitlines() if "FAILURE" in line}
    assert shown == expected and len(list((tmp_path / "shown").glob("[!.]*"))) == len(expected)
    everything = script("predict.py", "--model", model, "--save", str(tmp_path / "all"), val_rows)
    rows = len((trained_run / "val_data.csv").read_text().splitlines())
    assert len(list((tmp_path / "all").glob("[!.]*"))) == rows
    assert f"{rows} image(s) shown of {rows}, {len(expected)} failure(s)" in everything.stdout


def test_headless_mode_saves_and_says_where(trained_run, script, tmp_path, demo_dataset):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    images = tmp_path / "web" / "images" / "face"
    images.mkdir(parents=True)
    for name in ("image_0001.jpg", "image_0002.jpg"):
        shutil.copy(demo_dataset / "images" / "face" / name, images / name)
    (images / "broken.jpg").write_bytes(b"not an image")
    command = python(str(Path.cwd() / "predict.py"), "--model", str(trained_run / "best.pth"), str(images.parent))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    no_window = "warning: no window: no display (DISPLAY is not set); writing the annotated images to "
    assert no_window + "output/predictions/" in done.stdout
    assert "unreadable image " in done.stderr and "broken.jpg (OpenCV cannot decode it), skipped" in done.stderr
    saved = sorted(p.name for p in (tmp_path / "output" / "predictions").glob("[!.]*"))
    assert saved == ["0000_face_broken.jpg", "0001_face_image_0001.jpg", "0002_face_image_0002.jpg"][1:]
    assert "(true face)" in done.stdout


def test_gallery_holds_the_drawn_boxes(trained_run, script, tmp_path):
    model, test_rows = str(trained_run / "best.pth"), str(trained_run / "test_data.csv")
    gallery = ["--gallery", str(tmp_path / "g.png"), "--cam"]
    done = script("predict.py", "--model", model, "--save", str(tmp_path / "s"), *gallery, test_rows)
    assert done.returncode == 0, done.stderr
    image = cv2.imread(str(tmp_path / "g.png"))
    for colour in (PREDICTED, TRUE):
        assert np.all(image == colour, axis=2).sum() > 100, colour


def test_bad_checkpoint_and_bad_input(trained_run, script, tmp_path):
    (tmp_path / "junk.pth").write_text("junk")
    for command in (
        ["eval.py", str(tmp_path / "junk.pth")],
        ["predict.py", "--model", str(tmp_path / "junk.pth"), str(trained_run / "test_data.csv")],
    ):
        done = script(*command)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
        assert "junk.pth: not a checkpoint written by this toolkit" in done.stderr
    missing = script("eval.py", str(tmp_path / "none.pth"))
    assert missing.returncode == 1 and "none.pth: no such checkpoint" in missing.stderr
    bad_csv = tmp_path / "rows.csv"
    bad_csv.write_text("image_0001.jpg,1,2,3,face\n")
    done = script("eval.py", str(trained_run / "best.pth"), "--csv", str(bad_csv))
    assert done.returncode == 1 and "rows.csv:1: expected 6 fields" in done.stderr


def test_eval_stops_on_an_unreadable_image_or_skips_it(trained_run, script, tmp_path, demo_dataset):
    root = tmp_path / "data"
    shutil.copytree(demo_dataset, root)
    first = (trained_run / "test_data.csv").read_text().splitlines()[0].split(",")
    (root / "images" / first[5] / first[0]).write_bytes(b"garbage")
    args = ["eval.py", str(trained_run / "best.pth"), "--split", "test", "--dataset", str(root), "--out", str(tmp_path)]
    failed = script(*args)
    assert failed.returncode == 1 and f"unreadable image {root / 'images' / first[5] / first[0]}" in failed.stderr
    skipped = script(*args, "--skip-bad-rows")
    assert skipped.returncode == 0 and "skipped 1 bad row(s)" in skipped.stdout


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_real_display_under_xvfb(trained_run, script, tmp_path):
    display = ":93"
    xvfb = ["Xvfb", display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"]
    server = subprocess.Popen(xvfb, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        model, test_rows = str(trained_run / "best.pth"), str(trained_run / "test_data.csv")
        command = [sys.executable, str(Path.cwd() / "predict.py"), "--model", model, "--delay", "50", test_rows]
        environ = {**os.environ, "DISPLAY": display}
        done = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
    finally:
        server.terminate()
        server.wait()
    assert done.returncode == 0, done.stderr
    rows = len((trained_run / "test_data.csv").read_text().splitlines())
    assert f"{rows} image(s) shown of {rows}" in done.stdout and "annotated images in" not in done.stdout
    assert not (tmp_path / "output").exists()  # shown, not saved


def test_a_folder_of_images_beside_a_label_folder_is_read_whole(trained_run, script, tmp_path, demo_dataset):
    """Images at a folder's top and in its <label>/ subfolder are all predicted; failures need true labels."""
    faces = sorted((demo_dataset / "images" / "face").glob("*.jpg"))
    (tmp_path / "mixed" / "face").mkdir(parents=True)
    shutil.copy(faces[0], tmp_path / "mixed" / "face" / "labelled.jpg")
    for face in faces[1:3]:
        shutil.copy(face, tmp_path / "mixed" / face.name)
    done = script("predict.py", "--model", str(trained_run / "best.pth"), "--save", str(tmp_path / "shown"),
                  str(tmp_path / "mixed"))  # fmt: skip
    assert done.returncode == 0 and "3 image(s) shown of 3" in done.stdout, done.stderr
    plain = script("predict.py", "--model", str(trained_run / "best.pth"), "--failures-only", "--save",
                   str(tmp_path / "failed"), *(str(tmp_path / "mixed" / f.name) for f in faces[1:3]))  # fmt: skip
    assert plain.returncode == 0 and "failures need the true labels" in plain.stdout, plain.stderr

"""Reading the course layout: rows, classes, splits, tensors, dataset discovery and bad input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model import config
from model.annotations import (
    Annotation,
    DataError,
    Problems,
    class_names,
    read_annotations,
    read_rows,
    split_rows,
    subsample,
    write_rows_text,
)
from model.dataset import DetectionDataset, check_box, find_dataset, locate_dataset
from model.engine import DeviceBatches
from model.images import box_to_pixels, normalize

from conftest import DATA


def make_dataset(root: Path, rows_by_label: dict[str, list[str]], size=(120, 80)) -> Path:
    """A dataset whose images are plain grey rectangles of ``size`` (width, height)."""
    (root / "annotations").mkdir(parents=True)
    for label, rows in rows_by_label.items():
        (root / "images" / label).mkdir(parents=True)
        for row in rows:
            image = np.full((size[1], size[0], 3), 128, np.uint8)
            cv2.imwrite(str(root / "images" / label / row.split(",")[0]), image)
        (root / "annotations" / f"{label}.csv").write_text("\n".join(rows))
    return root


# ---- the course's own split files ----------------------------------------------------------
@pytest.mark.parametrize("name, count", [("training_data.csv", 1626), ("val_data.csv", 203), ("test_data.csv", 204)])
def test_course_split_files_parse_as_they_are(name, count):
    rows = read_rows(DATA / "course-splits" / name, Problems(skip=False))
    assert len(rows) == count  # the template's 1,626 / 203 / 204 cut of 2,033 rows
    assert {r.label for r in rows} == {"airplane", "face", "motorcycle"}
    assert len({r.key for r in rows}) == count  # unique as label/filename ...
    assert len({r.filename for r in rows}) < count  # ... though file names repeat across classes


def test_rows_round_trip_in_course_format(tmp_path):
    rows = read_rows(DATA / "course-splits" / "val_data.csv", Problems(skip=False))
    (tmp_path / "val.csv").write_text(write_rows_text(rows))
    original = (DATA / "course-splits" / "val_data.csv").read_text().splitlines()
    assert (tmp_path / "val.csv").read_text().splitlines() == original


def test_last_line_without_newline_and_blank_lines(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("image_0001.jpg,1,2,30,40,face\n\nimage_0002.jpg,5,6,70,80,face")
    rows = read_rows(path, Problems(skip=False))
    expected = [("image_0001.jpg", (1, 2, 30, 40), 1), ("image_0002.jpg", (5, 6, 70, 80), 3)]
    assert [(r.filename, r.box, r.line) for r in rows] == expected


# ---- classes -------------------------------------------------------------------------------
def test_classes_sorted_and_hidden_or_stray_entries_ignored(tmp_path):
    labels = ("motorcycle", "airplane", "face")
    root = make_dataset(tmp_path / "d", {label: [f"image_0001.jpg,1,1,50,50,{label}"] for label in labels})
    (root / "images" / ".DS_Store").write_bytes(b"\0")
    (root / "images" / "notes").mkdir()  # a stray folder without annotations
    (root / "annotations" / "._face.csv").write_bytes(b"\x00\x05garbage")  # macOS resource fork
    (root / "annotations" / "README.txt").write_text("not annotations")
    rows = read_annotations(root, Problems(skip=False))
    assert class_names(rows) == ["airplane", "face", "motorcycle"]
    # files in the course cluster's order (the template's split is drawn from it), classes sorted
    assert [r.key for r in rows] == ["motorcycle/image_0001.jpg", "airplane/image_0001.jpg", "face/image_0001.jpg"]


# ---- tensors -------------------------------------------------------------------------------
def test_tensors_rgb_resized_normalised_and_boxes_by_original_size(tmp_path):
    root = tmp_path / "d"
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "face").mkdir(parents=True)
    image = np.zeros((100, 200, 3), np.uint8)  # height 100, width 200
    image[:, :, 2] = 255  # pure red in OpenCV's BGR order
    cv2.imwrite(str(root / "images" / "face" / "red.png"), image)
    (root / "annotations" / "face.csv").write_text("red.png,20,10,180,90,face")
    rows = read_annotations(root, Problems(skip=False))
    data = DetectionDataset(root, rows, ["face"], 64, Problems(skip=False))
    assert data.images.shape == (1, 3, 64, 64) and data.images.dtype == torch.uint8
    assert data.images[0, 0].float().mean() == 255 and data.images[0, 1:].float().max() == 0  # RGB
    assert torch.allclose(data.boxes[0], torch.tensor([0.1, 0.1, 0.9, 0.9]))
    assert data.sizes.tolist() == [[200, 100]]
    x, label, _box = data[0]
    mean, std = config.IMAGENET_MEAN, config.IMAGENET_STD
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and label == 0
    assert torch.allclose(x[0], torch.full((64, 64), (1 - mean[0]) / std[0]))
    assert torch.allclose(x[1], torch.full((64, 64), (0 - mean[1]) / std[1]))
    assert torch.allclose(box_to_pixels(data.boxes, data.sizes), torch.tensor([[20.0, 10, 180, 90]]))


def test_images_decoded_once_into_memory(demo_dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(demo_dataset, root)
    rows = read_annotations(root, Problems(skip=False))
    data = DetectionDataset(root, rows, class_names(rows), 32, Problems(skip=False), workers=2)
    shutil.rmtree(root / "images")  # every later epoch must come from the cache
    batches = DeviceBatches(data, torch.device("cpu"))
    order = torch.Generator().manual_seed(0)
    seen = torch.cat([batch.labels for batch in batches.batches(8, order)])
    assert len(seen) == len(rows)
    first = next(batches.batches(8))
    assert first.images.dtype == torch.uint8 and first.images.shape == (8, 3, 32, 32) and first.boxes.shape == (8, 4)
    assert normalize(first.images, config.IMAGENET_MEAN, config.IMAGENET_STD).dtype == torch.float32


# ---- splits --------------------------------------------------------------------------------
def test_split_cuts_like_the_template():
    rows = [Annotation(f"image_{i:04d}.jpg", 0, 0, 1, 1, "face") for i in range(2033)]
    splits = split_rows(rows, 0.8, 0.9, seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1626, 203, 204]
    assert split_rows(rows, 0.8, 0.9, seed=0) == splits and split_rows(rows, 0.8, 0.9, seed=1) != splits
    assert {r.key for part in splits.values() for r in part} == {r.key for r in rows}


def test_subsample_is_stratified_with_one_per_class_at_least():
    sizes = (("a", 100), ("b", 40), ("c", 3))
    rows = [Annotation(f"{i}.jpg", 0, 0, 1, 1, label) for label, n in sizes for i in range(n)]
    kept = subsample(rows, 0.1)
    counts = {label: sum(r.label == label for r in kept) for label in "abc"}
    assert counts == {"a": 10, "b": 4, "c": 1}
    assert kept == [r for r in rows if r in kept]  # order kept


# ---- finding the dataset -------------------------------------------------------------------
def test_discovery_order(tmp_path, monkeypatch, demo_dataset):
    explicit, from_env, course, local = (tmp_path / n for n in ("explicit", "env", "course", "local"))
    for folder in (explicit, from_env, course, local):
        shutil.copytree(demo_dataset, folder)
    monkeypatch.setattr(config, "COURSE_DATASET", course)
    monkeypatch.setattr(config, "LOCAL_DATASET", local)
    monkeypatch.setenv("CVPR_DATASET", str(from_env))
    assert find_dataset(explicit) == explicit
    assert find_dataset(None) == from_env
    monkeypatch.delenv("CVPR_DATASET")
    assert find_dataset(None) == course
    shutil.rmtree(course)
    assert find_dataset(None) == local
    shutil.rmtree(local)
    assert find_dataset(None) is None


def test_demo_generated_when_nothing_found(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "COURSE_DATASET", tmp_path / "none1")
    monkeypatch.setattr(config, "LOCAL_DATASET", tmp_path / "none2")
    monkeypatch.setattr(config, "DEMO_DATASET", tmp_path / "demo")
    monkeypatch.setattr(config, "DEMO_IMAGES", 12)
    monkeypatch.delenv("CVPR_DATASET", raising=False)
    log = io.StringIO()
    assert locate_dataset(None, log.write, tmp_path / "demo", 12) == tmp_path / "demo"
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and "generated the demo dataset in" in lines[0] and str(tmp_path / "demo") in lines[0]
    assert len(read_annotations(tmp_path / "demo", Problems(skip=False))) == 12
    again = io.StringIO()
    locate_dataset(None, again.write, tmp_path / "demo", 12)  # second time: reused, not rewritten
    assert "using the demo dataset" in again.getvalue()


@pytest.mark.parametrize("where", ["explicit", "env"])
def test_named_dataset_that_is_missing_is_an_error(tmp_path, where, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        if where == "explicit":
            find_dataset(missing)
        else:
            monkeypatch.setenv("CVPR_DATASET", str(missing))
            find_dataset(None)


# ---- bad input -----------------------------------------------------------------------------
GOOD = "image_0001.jpg,10,10,60,50,face"
BAD_ROWS = {
    "fields": ("image_0002.jpg,10,10,60,face", "expected 6 fields"),
    "non_numeric": ("image_0002.jpg,10,ten,60,50,face", "non-numeric coordinate"),
    "x_order": ("image_0002.jpg,60,10,10,50,face", "is inverted (endX < startX or endY < startY)"),
    "y_order": ("image_0002.jpg,10,50,60,40,face", "is inverted (endX < startX or endY < startY)"),
    "outside": ("image_0002.jpg,10,10,400,50,face", "outside the 120x80 image"),
    "negative": ("image_0002.jpg,-30,10,60,50,face", "starts outside the image"),
    "unknown_label": ("image_0002.jpg,10,10,60,50,dog", "unknown label 'dog'"),
}


def load(root: Path, skip: bool) -> tuple[list, Problems]:
    problems = Problems(skip=skip)
    rows = read_annotations(root, problems)
    data = DetectionDataset(root, rows, class_names(rows), 32, problems)
    return data.rows, problems


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_named_with_file_and_line_or_skipped(tmp_path, case):
    bad, reason = BAD_ROWS[case]
    root = make_dataset(tmp_path / "d", {"face": [GOOD, "image_0002.jpg,10,10,60,50,face"]})
    (root / "annotations" / "face.csv").write_text(f"{GOOD}\n{bad}")
    with pytest.raises(DataError) as error:
        load(root, skip=False)
    message = str(error.value)
    assert message.count("face.csv:2: ") == 1 and reason in message and "--skip-bad-rows" in message
    assert "\n" not in message
    rows, problems = load(root, skip=True)
    assert [r.filename for r in rows] == ["image_0001.jpg"]
    summary = problems.summary()
    assert summary is not None and summary.startswith("skipped 1 bad row(s):") and reason in summary


@pytest.mark.parametrize(
    "box, kept, oddity",
    [
        ((10, 20, 10, 50), (10, 20, 10, 50), "has zero width; kept"),
        ((10, 20, 60, 20), (10, 20, 60, 20), "has zero height; kept"),
        ((121, 10, 122, 50), (120, 10, 120, 50), "was clipped to the 120x80 image"),  # never inverted by clipping
        ((-1, -2, 60, 50), (0, 0, 60, 50), "was clipped to the 120x80 image"),
    ],
)
def test_odd_boxes_are_kept_with_a_warning_or_stop_in_strict_mode(box, kept, oddity):
    x1, y1, x2, y2 = box
    row = Annotation("a.jpg", x1, y1, x2, y2, "face", "a.csv", 3)
    problems = Problems(skip=False)
    assert check_box(row, 120, 80, problems) == kept
    warning = problems.warning()
    assert warning is not None and warning.startswith("warning: kept ") and oddity in warning
    assert f"a.csv:3: box {','.join(map(str, box))} " in warning
    with pytest.raises(DataError, match=f"a.csv:3: .*{oddity}.*--strict stops on such rows"):
        check_box(row, 120, 80, Problems(skip=False, strict=True))


@pytest.mark.parametrize("case, reason", [("missing", "missing image"), ("unreadable", "unreadable image")])
def test_missing_or_unreadable_image(tmp_path, case, reason):
    root = make_dataset(tmp_path / "d", {"face": [GOOD, "image_0002.jpg,10,10,60,50,face"]})
    target = root / "images" / "face" / "image_0002.jpg"
    target.unlink() if case == "missing" else target.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=f"face.csv:2: {reason} .*image_0002.jpg"):
        load(root, skip=False)
    rows, problems = load(root, skip=True)
    assert len(rows) == 1 and len(problems.items) == 1


def test_empty_annotations_folder(tmp_path):
    root = make_dataset(tmp_path / "d", {"face": [GOOD]})
    (root / "annotations" / "face.csv").unlink()
    with pytest.raises(DataError, match=r"annotations: no \.csv annotation file"):
        load(root, skip=False)


def test_duplicate_image_rows(tmp_path):
    root = make_dataset(tmp_path / "d", {"face": [GOOD]})
    (root / "annotations" / "face.csv").write_text(f"{GOOD}\n{GOOD}")
    with pytest.raises(DataError, match=r"face\.csv:2: face/image_0001\.jpg is annotated twice"):
        load(root, skip=False)


def test_skip_summary_lists_the_first_few():
    problems = Problems(skip=True)
    for i in range(8):
        problems.report(f"a.csv:{i}", "bad")
    summary = problems.summary()
    assert summary is not None and summary.startswith("skipped 8 bad row(s): a.csv:0: bad")
    assert summary.endswith("and 3 more")


def test_train_stops_on_a_bad_row_and_skips_it_on_request(tmp_path, demo_dataset, script):
    root = tmp_path / "d"
    shutil.copytree(demo_dataset, root)
    path = root / "annotations" / "face.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",", ";", 1)
    path.write_text("\n".join(lines))
    args = ["train.py", "--dataset", str(root), "--epochs", "1", "--image-size", "64"]
    args += ["--output-dir", str(tmp_path / "o")]
    failed = script(*args)
    assert failed.returncode == 1
    fields = "filename,startX,startY,endX,endY,label"
    expected = f"Error: {path}:4: expected 6 fields {fields}, got 5 (fix or remove the row, or pass --skip-bad-rows"
    assert failed.stderr.strip().splitlines() == [expected + " to skip such rows)"]
    assert not (tmp_path / "o").exists()  # nothing written by a broken run
    done = script(*args, "--skip-bad-rows")
    assert done.returncode == 0, done.stderr
    assert f"skipped 1 bad row(s): {path}:4: expected 6 fields" in done.stdout

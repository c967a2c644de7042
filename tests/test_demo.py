"""The demo dataset: course layout, determinism, tight boxes, balance, and not linearly solvable."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import demo, demo_images
from model.annotations import Problems, class_names, read_annotations, split_rows
from model.dataset import DetectionDataset
from model.images import pairwise_iou


@pytest.mark.parametrize("label", demo_images.CLASSES)
def test_box_is_the_tight_bound_of_the_drawn_object(label):
    for index in range(15):
        sample = demo_images.render(label, seed=7, index=index)
        x1, y1, x2, y2 = sample.box
        mask = sample.mask > 0
        height, width = mask.shape
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()  # touches top and bottom edges
        assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()  # touches left and right edges
        assert mask.sum() == mask[y1:y2, x1:x2].sum()  # nothing drawn outside
        assert sample.image.shape == (height, width, 3) and sample.image.dtype == np.uint8


def test_sizes_and_scale_like_caltech():
    samples = [demo_images.render(label, 0, i) for label in demo_images.CLASSES for i in range(30)]
    widths = [s.image.shape[1] for s in samples]
    heights = [s.image.shape[0] for s in samples]
    assert min(widths) >= 200 and max(widths) <= 500 and 250 <= np.median(widths) <= 350
    assert min(heights) >= 180 and max(heights) <= 500
    box_share = [
        ((s.box[2] - s.box[0]) * (s.box[3] - s.box[1])) / (s.image.shape[0] * s.image.shape[1]) for s in samples
    ]
    assert min(box_share) > 0.03 and max(box_share) < 0.95  # objects are large but never the whole image


def test_generation_is_deterministic_and_in_course_layout(tmp_path):
    a = demo.generate(tmp_path / "a", images=30, seed=5)
    b = demo.generate(tmp_path / "b", images=30, seed=5)
    c = demo.generate(tmp_path / "c", images=30, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    assert not filecmp.cmp(a / "annotations" / "face.csv", c / "annotations" / "face.csv", shallow=False)
    assert sorted(p.name for p in (a / "annotations").iterdir()) == ["airplane.csv", "face.csv", "motorcycle.csv"]
    text = (a / "annotations" / "face.csv").read_text()
    assert not text.endswith("\n") and text.splitlines()[0].endswith(",face")  # course style: no final newline
    rows = read_annotations(a, Problems(skip=False))
    assert {r.label: 0 for r in rows}.keys() == set(demo_images.CLASSES)
    assert (a / "images" / "airplane" / "image_0001.jpg").exists() and (
        a / "images" / "face" / "image_0001.jpg"
    ).exists()
    # the written boxes are the rendered ones
    first_face = demo_images.render("face", 5, 0)
    assert text.splitlines()[0] == "image_0001.jpg," + ",".join(map(str, first_face.box)) + ",face"
    assert demo.is_complete(a, 30, 5) and not demo.is_complete(a, 30, 6)


def test_class_balance_follows_the_course_set():
    assert demo.class_counts(2033) == demo.COURSE_COUNTS
    counts = demo.class_counts(600)
    assert sum(counts.values()) == 600 and counts["face"] < counts["motorcycle"] <= counts["airplane"]


def test_command_line_writes_a_dataset(tmp_path, script):
    done = script("-m", "model.demo", str(tmp_path / "d"), "--images", "12", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "Wrote 12 demo images" in done.stdout
    assert len(list((tmp_path / "d" / "images").rglob("*.jpg"))) == 12


def test_a_linear_model_does_not_solve_it(tmp_path):
    """Ridge regression on pixels: near-chance labels, boxes no better than the mean box."""
    root = demo.generate(tmp_path / "d", images=450, seed=11)
    rows = read_annotations(root, Problems(skip=False))
    classes = class_names(rows)
    splits = split_rows(rows, 0.8, 0.8 + 1e-9, seed=0)
    train = DetectionDataset(root, splits["train"], classes, 32, Problems(skip=False))
    test = DetectionDataset(root, splits["test"], classes, 32, Problems(skip=False))
    x = train.images.flatten(1).double() / 255
    mean = x.mean(0)

    def design(images):
        return torch.cat([images.flatten(1).double() / 255 - mean, torch.ones(len(images), 1)], 1)

    a, a_test = design(train.images), design(test.images)

    def solve(target):
        return torch.linalg.solve(a.T @ a + 10 * torch.eye(a.shape[1], dtype=a.dtype), a.T @ target)

    accuracy = ((a_test @ solve(F.one_hot(train.labels).double())).argmax(1) == test.labels).double().mean()
    majority = torch.bincount(test.labels).max() / len(test)
    assert accuracy < majority + 0.2
    iou = pairwise_iou((a_test @ solve(train.boxes.double())).clamp(0, 1).float(), test.boxes).mean()
    mean_box_iou = pairwise_iou(train.boxes.mean(0, keepdim=True).expand(len(test), 4), test.boxes).mean()
    assert iou < mean_box_iou + 0.05 and iou < 0.45

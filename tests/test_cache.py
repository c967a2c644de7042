"""The decode cache: reused across runs, rebuilt when an image or an annotation changes, memory-mapped
when the images do not fit in memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest
import torch

from model import images as images_module
from model.annotations import Problems, class_names, read_annotations
from model.dataset import DetectionDataset
from model.engine import DeviceBatches
from model.images import ImageCache


@pytest.fixture()
def dataset_copy(tmp_path, demo_dataset):
    root = tmp_path / "data"
    shutil.copytree(demo_dataset, root)
    return root


def build(root, cache_dir, size=32):
    rows = read_annotations(root, Problems(skip=False))
    return rows, ImageCache.build(root, rows, size, Problems(skip=False), workers=2, cache_dir=cache_dir)


def test_cache_is_reused_and_equal_to_decoding(dataset_copy, tmp_path):
    _, first = build(dataset_copy, tmp_path / "cache")
    assert not first.from_disk and len(list((tmp_path / "cache").glob("*.npy"))) == 2  # images and sizes
    _rows, second = build(dataset_copy, tmp_path / "cache")
    assert second.from_disk
    _, fresh = build(dataset_copy, None)
    assert torch.equal(second.images, fresh.images) and torch.equal(second.sizes, fresh.sizes)
    copy = tmp_path / "moved"
    shutil.copytree(dataset_copy, copy)  # same content elsewhere: same cache
    assert build(copy, tmp_path / "cache")[1].from_disk


def test_cache_rebuilt_when_an_image_changes(dataset_copy, tmp_path):
    _, before = build(dataset_copy, tmp_path / "cache")
    target = dataset_copy / "images" / "face" / "image_0002.jpg"
    image = cv2.imread(str(target))
    assert image is not None
    cv2.imwrite(str(target), 255 - image)  # same size and name, other pixels
    _rows, after = build(dataset_copy, tmp_path / "cache")
    assert not after.from_disk and len(list((tmp_path / "cache").glob("*.sizes.npy"))) == 2
    i = after.index["face/image_0002.jpg"]
    assert not torch.equal(before.images[i], after.images[i])
    j = after.index["face/image_0001.jpg"]
    assert torch.equal(before.images[j], after.images[j])


def test_cache_rebuilt_when_an_annotation_changes(dataset_copy, tmp_path):
    build(dataset_copy, tmp_path / "cache")
    path = dataset_copy / "annotations" / "airplane.csv"
    lines = path.read_text().splitlines()
    name, x1, y1, x2, y2, label = lines[0].split(",")
    lines[0] = ",".join([name, str(int(x1) + 1), y1, x2, y2, label])
    path.write_text("\n".join(lines))
    assert not build(dataset_copy, tmp_path / "cache")[1].from_disk


def test_damaged_cache_file_is_rebuilt(dataset_copy, tmp_path):
    build(dataset_copy, tmp_path / "cache")
    for file in (tmp_path / "cache").glob("*.npy"):
        file.write_bytes(b"broken")
    rows, again = build(dataset_copy, tmp_path / "cache")
    assert not again.from_disk and again.images.shape == (len(rows), 3, 32, 32)


def test_too_large_for_memory_stays_memory_mapped(dataset_copy, monkeypatch):
    rows = read_annotations(dataset_copy, Problems(skip=False))
    classes = class_names(rows)
    in_memory = DetectionDataset(dataset_copy, rows, classes, 32, Problems(skip=False))
    monkeypatch.setattr(images_module, "fits_in_memory", lambda _nbytes: False)  # nothing fits: decoded to a file
    mapped = DetectionDataset(dataset_copy, rows, classes, 32, Problems(skip=False))
    if (maps := Path("/proc/self/maps")).exists():  # Linux: the pages are a mapping of a file already unlinked
        held = [line for line in maps.read_text().splitlines() if ".cache.npy." in line]
        assert held and all(line.endswith("(deleted)") for line in held)
    idx = torch.tensor([5, 0, 17])
    assert torch.equal(mapped.gather(idx), in_memory.images[idx])
    assert torch.equal(mapped.images, in_memory.images)
    order = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    cpu = torch.device("cpu")
    pairs = zip(DeviceBatches(mapped, cpu).batches(8, order[0]), DeviceBatches(in_memory, cpu).batches(8, order[1]))
    for a, b in pairs:
        assert torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.boxes, b.boxes)

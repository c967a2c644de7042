"""Importing the original Caltech-101 layout (.mat boxes written by the test itself)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from model.annotations import Problems, class_names, read_annotations
from model.caltech import CATEGORIES
from model.dataset import DetectionDataset

# (top, bottom, left, right) per image, as Caltech's box_coord
BOXES = {
    "airplanes": [(30, 137, 49, 349), (10, 90, 5, 300)],
    "Faces": [(20, 180, 60, 200)],
    "Motorbikes": [(15, 150, 31, 230), (0, 160, 2, 250)],
}


def write_caltech(root: Path, copies: int = 1) -> Path:
    """A miniature Caltech-101 inside an extra folder level, as its archive unpacks; each box ``copies`` times."""
    base = root / "caltech-101"
    for image_folder, annotation_folder in CATEGORIES.values():
        (base / "101_ObjectCategories" / image_folder).mkdir(parents=True)
        (base / "Annotations" / annotation_folder).mkdir(parents=True)
        for i, (top, bottom, left, right) in enumerate(BOXES[image_folder] * copies, start=1):
            image = np.random.default_rng(i).integers(0, 255, (200, 400, 3), dtype=np.uint8)
            cv2.imwrite(str(base / "101_ObjectCategories" / image_folder / f"image_{i:04d}.jpg"), image)
            scipy.io.savemat(
                str(base / "Annotations" / annotation_folder / f"annotation_{i:04d}.mat"),
                {"box_coord": np.array([[top, bottom, left, right]], dtype=np.uint16), "obj_contour": np.zeros((2, 4))},
            )
    (base / "101_ObjectCategories" / "BACKGROUND_Google").mkdir()
    return root


def test_import_writes_the_course_layout(tmp_path, script):
    source = write_caltech(tmp_path / "src")
    done = script("-m", "model.caltech", str(source), str(tmp_path / "dataset"))
    assert done.returncode == 0, done.stderr
    assert "Wrote 5 images (2 airplane, 1 face, 2 motorcycle)" in done.stdout
    rows = read_annotations(tmp_path / "dataset", Problems(skip=False))
    assert class_names(rows) == ["airplane", "face", "motorcycle"]
    assert (tmp_path / "dataset" / "annotations" / "airplane.csv").read_text().splitlines() == [
        "image_0001.jpg,49,30,349,137,airplane",  # the course set's first row, from [30 137 49 349]
        "image_0002.jpg,5,10,300,90,airplane",
    ]
    motorcycle = (tmp_path / "dataset" / "annotations" / "motorcycle.csv").read_text().splitlines()
    assert motorcycle[1] == "image_0002.jpg,2,0,250,160,motorcycle"
    data = DetectionDataset(tmp_path / "dataset", rows, class_names(rows), 32, Problems(skip=False))
    assert len(data) == 5


def test_box_clipped_to_image(tmp_path):
    from model.caltech import import_caltech

    source = write_caltech(tmp_path / "src")
    mat = source / "caltech-101" / "Annotations" / "Faces_2" / "annotation_0001.mat"
    scipy.io.savemat(str(mat), {"box_coord": np.array([[20, 205, 60, 402]])})  # the image is 400 x 200
    import_caltech(source, tmp_path / "dataset")
    assert (tmp_path / "dataset" / "annotations" / "face.csv").read_text() == "image_0001.jpg,60,20,400,200,face"


def test_a_box_outside_its_image_is_refused_never_written_inverted(tmp_path, script):
    source = write_caltech(tmp_path / "src")
    mat = source / "caltech-101" / "Annotations" / "Faces_2" / "annotation_0001.mat"
    scipy.io.savemat(str(mat), {"box_coord": np.array([[20, 180, 420, 480]])})  # left of 420 in a 400-wide image
    done = script("-m", "model.caltech", str(source), str(tmp_path / "dataset"))
    assert done.returncode == 1 and "annotation_0001.mat: its box 420,20,480,180 lies outside" in done.stderr
    assert not (tmp_path / "dataset").exists()


def test_missing_annotation_and_wrong_folder_are_named(tmp_path, script):
    source = write_caltech(tmp_path / "src")
    (source / "caltech-101" / "Annotations" / "Faces_2" / "annotation_0001.mat").unlink()
    failed = script("-m", "model.caltech", str(source), str(tmp_path / "dataset"))
    assert failed.returncode == 1 and "annotation_0001.mat: missing annotation for" in failed.stderr
    wrong = script("-m", "model.caltech", str(tmp_path), str(tmp_path / "other"))
    assert wrong.returncode == 1 and "no 101_ObjectCategories/ folder found" in wrong.stderr

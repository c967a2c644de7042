"""Nothing deletes or overwrites data it did not write: the demo generator, the Caltech importer,
train.py (--overwrite too) and the decode cache, on a real-looking dataset and on web_images/."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import demo
from model.files import is_temporary

from conftest import ROOT, python


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture()
def real_looking(tmp_path, course_dataset) -> Path:
    """A dataset that is not a demo: the course-shaped one's airplane files, its marker gone, a note added."""
    root = tmp_path / "01-dataset"
    (root / "images").mkdir(parents=True)
    shutil.copytree(course_dataset / "images" / "airplane", root / "images" / "airplane")
    shutil.copytree(course_dataset / "annotations", root / "annotations")
    (root / "notes.txt").write_text("where each image came from")
    return root


@pytest.fixture()
def web_images(tmp_path) -> Path:
    """A copy of the project's web_images/ with one internet image in it."""
    folder = tmp_path / "web_images"
    shutil.copytree(ROOT / "web_images", folder)
    cv2.imwrite(str(folder / "images" / "face" / "me.jpg"), np.full((120, 90, 3), 200, np.uint8))
    (folder / "annotations.csv").write_text("me.jpg,10,10,80,110,face")
    return folder


@pytest.mark.parametrize("which", ["real_looking", "web_images"])
def test_demo_generator_refuses_a_folder_it_did_not_write(which, request, script):
    folder = request.getfixturevalue(which)
    before = snapshot(folder)
    done = script("-m", "model.demo", str(folder), "--images", "12")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert f"{folder}: holds " in done.stderr and "that the demo generator did not write" in done.stderr
    assert snapshot(folder) == before


def test_demo_generator_replaces_only_its_own_dataset(tmp_path):
    root = demo.generate(tmp_path / "demo", images=12, seed=1)
    demo.generate(root, images=15, seed=2)  # its own files: replaced
    assert len(list((root / "images").rglob("*.jpg"))) == 15 and demo.is_complete(root, 15, 2)
    (root / "images" / "face" / "mine.jpg").write_bytes(b"a picture of my own")
    before = snapshot(root)
    with pytest.raises(demo.DemoError, match=r"holds images/face/mine\.jpg that the demo generator did not write"):
        demo.generate(root, images=12, seed=1)
    assert snapshot(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folder left beside it


@pytest.mark.parametrize("which", ["real_looking", "web_images"])
def test_caltech_importer_refuses_a_folder_that_holds_anything(which, request, script, tmp_path):
    folder = request.getfixturevalue(which)
    before = snapshot(folder)
    source = tmp_path / "caltech"
    (source / "101_ObjectCategories").mkdir(parents=True)
    (source / "Annotations").mkdir()
    done = script("-m", "model.caltech", str(source), str(folder))
    assert done.returncode == 1 and f"{folder}: exists and is not empty" in done.stderr
    assert snapshot(folder) == before


@pytest.mark.parametrize("which", ["real_looking", "web_images"])
def test_train_refuses_to_write_a_run_into_data(which, request, script, demo_dataset):
    folder = request.getfixturevalue(which)
    before = snapshot(folder)
    for extra in ([], ["--overwrite"]):
        tiny = ["--epochs", "1", "--image-size", "64", *extra]
        done = script("train.py", "--dataset", str(demo_dataset), "--output-dir", str(folder), *tiny)
        assert done.returncode == 1 and f"{folder} holds data (images/) that train.py did not write" in done.stderr
    assert snapshot(folder) == before


BUILD = """
import sys
from pathlib import Path
from model.images import ImageCache
from model.annotations import Problems, read_annotations
root, cache = Path(sys.argv[1]), Path(sys.argv[2])
rows = read_annotations(root, Problems(skip=False))
built = ImageCache.build(root, rows, 96, Problems(skip=False), workers=1, cache_dir=cache)
fresh = ImageCache.build(root, rows, 96, Problems(skip=False))
print(int(built.images.sum()), built.sizes.tolist() == fresh.sizes.tolist())
"""


def test_jobs_building_the_same_cache_at_once_cannot_corrupt_it(tmp_path, demo_dataset):
    """Array tasks on one dataset: each writes its own temporary file and renames it whole."""
    command = python("-c", BUILD, str(demo_dataset), str(tmp_path))
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = {p.communicate(timeout=300)[0] for p in processes}
    assert all(p.returncode == 0 for p in processes)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert outputs == {again.stdout} and again.stdout.strip().endswith("True")  # same pixels, read back whole
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)] and len(list(tmp_path.iterdir())) == 2

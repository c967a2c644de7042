"""More bad inputs (the catalogue of tests/bad_inputs.py, same machinery, same four properties): outputs
written into a dataset or over a user's file, half-written outputs after a failure, inputs ignored in
silence, data that passes but should not, and vague messages.

Two kinds beyond bad_inputs.py's: ``output`` (an output option of a script aimed at a dataset, a folder of
internet images, or a file of the user's) and ``ignored`` (an option, a value or a variable the code reads
and then drops or misreads without a word).

Every case runs a real command on real files, as the cases of bad_inputs.py do. A case whose command
would write into the current folder runs in a folder of its own (``cwd``), never in the project's.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_inputs import (
    CLASSES,
    CUTS,
    DRY_RUN,
    PLAN,
    PRACTICAL,
    RUN,
    SECTION,
    TINY,
    TINY_RUN,
    Case,
    Env,
    plan,
    python,
    remove,
    replace_line,
    steps,
    train,
    write,
)

PREDICT = ("predict.py", "--model", "{run}/best.pth")
EVAL = ("eval.py", "{run}/best.pth")
TEST_ROWS = "{run}/test_data.csv"  # the tiny run's 9 test rows: predict.py's usual input
HUGE = "99999999999999999999999"  # an integer no C type holds
REPORT_ONLY = (
    "compare.py",
    "--practical",
    "--plan",
    "{case}/plan.toml",
    "--output-dir",
    "{case}/runs",
    "--report-only",
    "--dataset",
    "{ds}",
)


# ----------------------------------------------------------------------------------------------
# Setup helpers
# ----------------------------------------------------------------------------------------------
def folder(relative: str) -> Callable[[Env], None]:
    """An empty folder under the case folder (a working folder, an empty PATH)."""
    return lambda env: Path(env.format(relative)).mkdir(parents=True, exist_ok=True)


def variable(name: str, value: str) -> Callable[[Env], None]:
    """An environment variable of the command."""

    def setup(env: Env) -> None:
        env.environ[name] = value

    return setup


def no_x_server(env: Env) -> None:
    """DISPLAY=:99, or the next number whose X socket no server holds (Xvfb often takes :99)."""
    number = next(n for n in range(99, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    if Path(f"/tmp/.X{number}-lock").exists():
        pytest.skip(f"an X server may answer on :{number}")
    env.environ["DISPLAY"] = f":{number}"


def web_like(env: Env) -> Path:
    """A folder of internet images as web_images/ is (images/<label>/ and annotations.csv), not named so."""
    web = env.case / "web"
    faces = web / "images" / "face"
    faces.mkdir(parents=True)
    for image in sorted((env.shared("tiny_demo") / "images" / "face").glob("*.jpg"))[:3]:
        shutil.copy(image, faces / image.name)
    (web / "annotations.csv").write_text("image_0001.jpg,146,15,310,235,face\n")
    return web


def first_prediction_name(env: Env) -> str:
    """The file name predict.py --save gives the first of the run's test rows."""
    filename, *_box, label = (env.run / "test_data.csv").read_text().splitlines()[0].split(",")
    return f"0000_{label}_{Path(filename).stem}.jpg"


def users_prediction(env: Env) -> None:
    """The user's own picture in --save's folder, under the name predict.py gives its first image."""
    saved = env.case / "pred"
    saved.mkdir()
    (saved / first_prediction_name(env)).write_bytes(b"my own annotated picture\n")


def users_run_folder(with_checkpoint: bool) -> Callable[[Env], None]:
    """A folder out/mine/ the toolkit never wrote (no manifest), holding the user's files of run names."""

    def setup(env: Env) -> None:
        mine = env.case / "out" / "mine"
        mine.mkdir(parents=True)
        if with_checkpoint:
            (mine / "best.pth").write_bytes(b"a classmate's model, sent by mail\n")
        (mine / "config.json").write_text('{"my": "notes on the settings I want to try"}\n')
        (mine / "history.csv").write_text("epoch,what I saw\n1,the loss went down\n")

    return setup


def copied_splits(edit: Callable[[dict[str, list[str]]], None]) -> Callable[[Env], None]:
    """{case}/my_splits: the run's three split files, edited (split name -> rows)."""

    def setup(env: Env) -> None:
        files = {"train": "training_data.csv", "val": "val_data.csv", "test": "test_data.csv"}
        rows = {split: (env.run / name).read_text().splitlines() for split, name in files.items()}
        edit(rows)
        target = env.case / "my_splits"
        target.mkdir()
        for split, name in files.items():
            (target / name).write_text("\n".join(rows[split]))

    return setup


def faces_only_in_test(rows: dict[str, list[str]]) -> None:
    faces = [r for r in rows["train"] if r.endswith(",face")]
    assert faces, "the tiny run's training split holds no face: the case cannot be built"
    rows["train"] = [r for r in rows["train"] if not r.endswith(",face")]
    rows["test"] += faces


def training_row_in_test(rows: dict[str, list[str]]) -> None:
    rows["test"].append(rows["train"][0])


def one_class_dataset(env: Env) -> None:
    """{case}/one_class: the demo set's faces only."""
    other = env.case / "one_class"
    shutil.copytree(env.shared("tiny_demo"), other)
    for label in ("airplane", "motorcycle"):
        shutil.rmtree(other / "images" / label)
        (other / "annotations" / f"{label}.csv").unlink()


def run_without_test_split(env: Env) -> None:
    """{case}/no_test: a run trained with --cut-test 1.0 (its test split is empty)."""
    args = ["train.py", "--dataset", str(env.shared("tiny_demo")), "--output-dir", str(env.case / "no_test")]
    done = python([*args, *TINY, "--cut-val", "0.6", "--cut-test", "1.0"], env.environment())
    assert done.returncode == 0, f"could not train the run without a test split: {done.stderr[-800:]}"


def edit_config_lr(env: Env) -> None:
    """A hand edit of the run's config.json (the learning rate), its checkpoints left as they are."""
    path = env.run / "config.json"
    values = json.loads(path.read_text())
    values["lr"] = 0.01
    path.write_text(json.dumps(values, indent=2) + "\n")


def plain_pictures(env: Env) -> None:
    """{case}/pics: two pictures, no <label>/ folder, no images/ folder."""
    pics = env.case / "pics"
    pics.mkdir()
    for image in sorted((env.shared("tiny_demo") / "images" / "face").glob("*.jpg"))[:2]:
        shutil.copy(image, pics / image.name)


def flat_web_images(env: Env) -> None:
    """{case}/web/images/ holding pictures directly, without the <label>/ folders web_images/ needs."""
    images = env.case / "web" / "images"
    images.mkdir(parents=True)
    for image in sorted((env.shared("tiny_demo") / "images" / "face").glob("*.jpg"))[:2]:
        shutil.copy(image, images / image.name)


def full_disk(name: str, free: int) -> Callable[[Env], object]:
    return lambda env: env.small_disk(name, free=free)


def full_at_the_manifest(env: Env) -> None:
    """A tmpfs with room for every file of an evaluation of the three splits, not for its manifest: the
    files' sizes are measured by one evaluation into a scratch folder first (outside the case's folders)."""
    scratch = Path(tempfile.mkdtemp(dir=env.cache.parent, prefix="measure-"))
    try:
        done = python(["eval.py", str(env.run / "best.pth"), "--out", str(scratch)], env.environment())
        assert done.returncode == 0, f"could not measure an evaluation: {done.stderr[-800:]}"
        block = os.sysconf("SC_PAGE_SIZE")
        needed = sum(
            math.ceil(p.stat().st_size / block) * block for p in scratch.iterdir() if not p.name.startswith(".")
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env.small_disk("full_out", free=needed + block // 2)


def readonly_empty(name: str) -> Callable[[Env], object]:
    return lambda env: env.readonly(name, lambda path: None)


# A train.py under an address-space limit of 600 MB above what the interpreter holds once torch is imported:
# what a login node's `ulimit -v` or a small memory share does to --image-size 3000 (30 images: an 810 MB cache).
OUT_OF_MEMORY = (
    "import resource, runpy, sys\n"
    "import cv2, numpy, torch\n"
    "held = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmSize:')) * 1024\n"
    "resource.setrlimit(resource.RLIMIT_AS, (held + (600 << 20), resource.RLIM_INFINITY))\n"
    "sys.argv = ['train.py', *sys.argv[1:]]\n"
    "runpy.run_path('train.py', run_name='__main__')\n"
)

OUT_OF_MEMORY_TRAIN = (
    *("-c", OUT_OF_MEMORY, "--dataset", "{ds}", "--output-dir", "{case}/out", *TINY, *CUTS),
    *("--image-size", "3000", "--workers", "1"),
)

SLURM = (*PRACTICAL, "--slurm", "--dataset", "{ds}", "--out", "{case}/report")
ORPHAN = RUN.replace('"tiny"', '"orphan"')
PLAN_INTO_DATASET = (
    *("compare.py", "--practical", "--plan", "{case}/plan.toml"),
    *("--output-dir", "{ds}/images", "--dry-run", "--dataset", "{ds}"),
)
TRAIN_INTO_DATASET = (
    *("compare.py", "--train", "simple", "--epochs", "1", "--image-size", "64"),
    *("--output-dir", "{ds}/annotations", "--dataset", "{ds}", "--out", "{case}/report"),
)

# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------
MORE_CASES: list[Case] = [
    # ---- outputs written into a dataset, a folder of internet images, or over a user's file --------------------
    Case(
        "eval-out-dataset-annotations",
        None,
        (*EVAL, "--split", "test", "--dataset", "{ds}", "--out", "{ds}/annotations"),
        ("--out", "ds/annotations"),
        today="silent",
        kind="output",
        right="one line: --out lies in a dataset (its CSV would become an annotation file); nothing written",
    ),
    Case(
        "eval-out-dataset-class-images",
        None,
        (*EVAL, "--split", "test", "--out", "{ds}/images/face"),
        ("--out", "ds/images/face"),
        today="silent",
        kind="output",
        right="one line: --out lies in a dataset; nothing written",
    ),
    Case(
        "eval-out-dataset-root",
        None,
        (*EVAL, "--split", "test", "--out", "{ds}"),
        ("--out", "ds"),
        today="silent",
        kind="output",
        right="one line: --out is a dataset folder; nothing written",
    ),
    Case(
        "eval-out-web-images-folder",
        web_like,
        (*EVAL, "--split", "test", "--out", "{case}/web"),
        ("--out", "web"),
        today="silent",
        kind="output",
        right="one line: --out is a folder of internet images (images/, annotations.csv); nothing written",
    ),
    Case(
        "eval-out-web-images-class-folder",
        web_like,
        (*EVAL, "--split", "test", "--out", "{case}/web/images/face"),
        ("--out", "web/images/face"),
        today="silent",
        kind="output",
        right="one line: --out lies in a folder of internet images (its PNG would be scored as a face)",
    ),
    Case(
        "compare-out-dataset-annotations",
        None,
        ("compare.py", "{run}", "--out", "{ds}/annotations"),
        ("--out", "ds/annotations"),
        today="silent",
        kind="output",
        right="one line: --out lies in a dataset (comparison.csv would become an annotation file), before evaluating",
    ),
    Case(
        "compare-out-dataset-class-images",
        None,
        ("compare.py", "{run}", "--out", "{ds}/images/face"),
        ("--out", "ds/images/face"),
        today="silent",
        kind="output",
        right="one line: --out lies in a dataset, before evaluating",
    ),
    Case(
        "compare-out-web-images-folder",
        web_like,
        ("compare.py", "{run}", "--out", "{case}/web"),
        ("--out", "web"),
        today="silent",
        kind="output",
        right="one line: --out is a folder of internet images, before evaluating",
    ),
    Case(
        "predict-save-dataset-class-images",
        None,
        (*PREDICT, "--save", "{ds}/images/face", TEST_ROWS),
        ("--save", "ds/images/face"),
        today="silent",
        kind="output",
        right="one line: --save lies in a dataset (the drawn images would become training faces)",
    ),
    Case(
        "predict-save-dataset-root",
        None,
        (*PREDICT, "--save", "{ds}", TEST_ROWS),
        ("--save", "ds"),
        today="silent",
        kind="output",
        right="one line: --save is a dataset folder",
    ),
    Case(
        "predict-save-web-images-class-folder",
        web_like,
        (*PREDICT, "--save", "{case}/web/images/face", TEST_ROWS),
        ("--save", "web/images/face"),
        today="silent",
        kind="output",
        right="one line: --save lies in a folder of internet images (the drawn images would be scored next time)",
    ),
    Case(
        "predict-gallery-dataset-class-images",
        None,
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{ds}/images/face/g.png", TEST_ROWS),
        ("--gallery", "ds/images/face"),
        today="silent",
        kind="output",
        right="one line: --gallery lies in a dataset, before any image is drawn or saved",
    ),
    Case(
        "predict-gallery-web-images-folder",
        web_like,
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{case}/web/images/face/g.png", TEST_ROWS),
        ("--gallery", "web/images/face"),
        today="silent",
        kind="output",
        right="one line: --gallery lies in a folder of internet images, before any image is saved",
    ),
    Case(
        "predict-gallery-csv-in-annotations",
        None,
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{ds}/annotations/gallery.csv", TEST_ROWS),
        ("--gallery",),
        today="traceback",
        kind="output",
        right="one line: --gallery lies in a dataset (and is a PNG or JPEG file), before any image is saved",
    ),
    Case(
        "practical-report-out-dataset-annotations",
        plan(PLAN),
        (*REPORT_ONLY, "--out", "{ds}/annotations"),
        ("--out", "ds/annotations"),
        today="silent",
        kind="output",
        right="one line: the report's --out lies in a dataset; nothing written",
    ),
    Case(
        "practical-report-out-dataset-class-images",
        plan(PLAN),
        (*REPORT_ONLY, "--out", "{ds}/images/face"),
        ("--out", "ds/images/face"),
        today="silent",
        kind="output",
        right="one line: the report's --out lies in a dataset; nothing written",
    ),
    Case(
        "practical-runs-dir-in-dataset",
        plan(PLAN),
        PLAN_INTO_DATASET,
        ("--output-dir", "ds/images"),
        today="silent",
        kind="output",
        right="one line (also in a dry run): the plan's --output-dir lies in a dataset, where no run can go",
    ),
    Case(
        "compare-train-output-dir-in-dataset",
        None,
        TRAIN_INTO_DATASET,
        ("--output-dir",),
        today="vague",
        kind="output",
        right="one line naming --output-dir (it lies in a dataset), not 'training simple failed'",
    ),
    Case(
        "train-overwrite-users-folder-without-manifest",
        users_run_folder(with_checkpoint=True),
        train("--name", "mine", "--overwrite"),
        ("best.pth",),
        today="silent",
        kind="output",
        right="one line: out/mine/ has no manifest, its best.pth is not the toolkit's; nothing replaced",
    ),
    Case(
        "train-replaces-users-config-json-without-manifest",
        users_run_folder(with_checkpoint=False),
        train("--name", "mine"),
        (("config.json", "history.csv"),),
        today="silent",
        kind="output",
        right="one line: out/mine/ (no manifest) holds config.json and history.csv of the user's; nothing replaced",
    ),
    Case(
        "train-output-dir-empty-string",
        steps(folder("{case}/project"), write("{case}/project/README.md", "my project\n")),
        ("{root}/train.py", "--dataset", "{ds}", "--output-dir", "", *TINY, *CUTS),
        ("--output-dir",),
        cwd="{case}/project",
        today="silent",
        kind="output",
        right="one line: --output-dir is empty (a run never goes into the current folder by accident)",
    ),
    Case(
        "train-name-is-a-users-file",
        write("{case}/out/notes.txt", "my notes\n"),
        train("--name", "notes.txt"),
        ("notes.txt",),
        today="one-line",
        kind="output",
        right="one line: out/notes.txt is a file of the user's, not a run folder",
    ),
    Case(
        "eval-out-users-file-of-an-output-name",
        write("{case}/ev/best.test.json", '{"my": "own results"}\n'),
        (*EVAL, "--split", "test", "--out", "{case}/ev"),
        ("best.test.json",),
        today="one-line",
        kind="output",
        right="one line: ev/best.test.json is not eval.py's, left as it is (before evaluating)",
    ),
    Case(
        "eval-out-is-a-users-file",
        write("{case}/results.txt", "my results\n"),
        (*EVAL, "--split", "test", "--out", "{case}/results.txt"),
        ("results.txt",),
        today="one-line",
        kind="output",
        right="one line: --out is a file of the user's",
    ),
    Case(
        "compare-out-users-comparison-md",
        write("{case}/report/comparison.md", "# my own comparison, typed by hand\n"),
        ("compare.py", "{run}", "--out", "{case}/report"),
        ("comparison.md",),
        today="one-line",
        kind="output",
        right="one line: report/comparison.md is not compare.py's, left as it is (before evaluating)",
    ),
    Case(
        "compare-out-users-figure",
        write("{case}/report/loss_curves.png", b"\x89PNG my own plot"),
        ("compare.py", "{run}", "--out", "{case}/report"),
        ("loss_curves.png",),
        today="one-line",
        kind="output",
        right="one line: report/loss_curves.png is not compare.py's, left as it is (before evaluating)",
    ),
    Case(
        "predict-save-users-file-of-an-output-name",
        users_prediction,
        (*PREDICT, "--save", "{case}/pred", TEST_ROWS),
        ("0000_",),
        today="one-line",
        kind="output",
        right="one line naming the user's file of the same name in --save's folder; nothing written",
    ),
    Case(
        "predict-gallery-users-file",
        write("{case}/g.png", b"\x89PNG my own gallery"),
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{case}/g.png", TEST_ROWS),
        ("g.png",),
        today="data changed",
        kind="output",
        right="one line: g.png is the user's, before anything is saved (--save's folder stays absent)",
    ),
    Case(
        "practical-report-out-users-report-md",
        steps(plan(PLAN), write("{case}/report/report.md", "# My report\n\nWritten by hand over two weeks.\n")),
        (*REPORT_ONLY, "--out", "{case}/report"),
        ("report.md",),
        today="one-line",
        kind="output",
        right="one line: report/report.md is the user's (not the toolkit's report), left as it is",
    ),
    Case(
        "demo-generator-into-dataset-class-folder",
        None,
        ("-m", "model.data.demo", "{ds}/images/face", "--images", "30", "--seed", "1"),
        ("ds/images/face",),
        today="one-line",
        kind="output",
        right="one line: the folder lies in a dataset",
    ),
    # ---- tracebacks on numbers and file names ------------------------------------------------------------------
    Case(
        "seed-huge",
        None,
        train("--seed", HUGE),
        ("--seed",),
        today="traceback",
        kind="number",
        right="one line: --seed must be below 2**32 (or 2**63)",
    ),
    Case(
        "image-size-huge",
        None,
        train("--image-size", HUGE),
        ("--image-size",),
        today="traceback",
        kind="number",
        right="one line: --image-size is far too large",
    ),
    Case(
        "batch-size-huge",
        None,
        train("--batch-size", HUGE),
        ("--batch-size",),
        accepted=True,
        today="silent",
        kind="number",
        right="a warning (or one line) naming --batch-size: more than the 18 training images, one batch of them",
    ),
    Case(
        "workers-huge",
        None,
        train("--workers", HUGE),
        ("--workers",),
        accepted=True,
        today="silent",
        kind="number",
        right="a warning (or one line) naming --workers: far more threads than CPUs (and images)",
    ),
    Case(
        "eval-batch-size-huge",
        None,
        (*EVAL, "--split", "test", "--batch-size", HUGE, "--out", "{case}/ev"),
        ("--batch-size",),
        accepted=True,
        today="silent",
        kind="number",
        right="a warning (or one line) naming --batch-size: more than the set's images, one batch of them",
    ),
    Case(
        "predict-gallery-pth-extension",
        None,
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{case}/out.pth", TEST_ROWS),
        ("--gallery",),
        today="traceback",
        kind="mistake",
        right="one line: --gallery is a .png or .jpg file, before any image is saved",
    ),
    Case(
        "predict-display-without-x-server",
        steps(folder("{case}/work"), no_x_server),
        ("{root}/predict.py", "--model", "{run}/best.pth", TEST_ROWS),
        ("DISPLAY",),
        accepted=True,
        cwd="{case}/work",
        today="vague",
        kind="mistake",
        right="accepted with a warning naming DISPLAY (no X server answers): the images saved to files instead",
    ),
    Case(
        "predict-wayland-display-without-server",
        steps(folder("{case}/work"), variable("WAYLAND_DISPLAY", "wayland-99")),
        ("{root}/predict.py", "--model", "{run}/best.pth", TEST_ROWS),
        ("WAYLAND_DISPLAY",),
        accepted=True,
        cwd="{case}/work",
        today="vague",
        kind="mistake",
        right="accepted with a warning naming WAYLAND_DISPLAY (no window possible): the images saved to files",
    ),
    # ---- half-written on failure ------------------------------------------------------------------------------
    Case(
        "predict-gallery-read-only-after-save",
        readonly_empty("locked"),
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{case}/locked/g.png", TEST_ROWS),
        ("locked",),
        today="data changed",
        kind="write",
        right="one line naming the read-only folder of --gallery, before anything is saved (pred/ stays absent)",
    ),
    Case(
        "predict-gallery-disk-full-after-save",
        full_disk("full_out", 8 * 1024),
        (*PREDICT, "--save", "{case}/pred", "--gallery", "{case}/full_out/g.png", TEST_ROWS),
        ("full_out",),
        today="data changed",
        kind="write",
        right="one line naming the full disk of --gallery; --save's images not left without their gallery",
    ),
    Case(
        "predict-save-new-folder-disk-full",
        full_disk("full_out", 16 * 1024),
        (*PREDICT, "--save", "{case}/full_out/pred", TEST_ROWS),
        ("full_out",),
        today="data changed",
        kind="write",
        right="one line naming the full folder; no empty pred/ folder left",
    ),
    Case(
        "eval-out-new-folder-disk-full",
        full_disk("full_out", 48 * 1024),
        (*EVAL, "--out", "{case}/full_out/ev"),
        ("full_out",),
        today="data changed",
        kind="write",
        right="one line naming the full folder; no folder and no evaluation file left",
    ),
    Case(
        "eval-out-disk-full-at-the-manifest",
        full_at_the_manifest,
        (*EVAL, "--out", "{case}/full_out"),
        ("full_out",),
        today="data changed",
        kind="write",
        right="one line naming the full folder; none of the nine files left without their manifest",
    ),
    Case(
        "compare-out-new-folder-disk-full",
        full_disk("full_out", 64 * 1024),
        ("compare.py", "{run}", "--out", "{case}/full_out/report"),
        ("full_out",),
        today="data changed",
        kind="write",
        right="one line naming the full folder; no empty report/ folder left",
    ),
    Case(
        "practical-slurm-without-sbatch",
        steps(plan(PLAN), folder("{case}/nobin"), lambda env: env.environ.update(PATH=str(env.case / "nobin"))),
        SLURM,
        ("sbatch",),
        today="data changed",
        kind="write",
        right="one line: sbatch is not on PATH, before anything is written (no slurm/tasks-*.txt left)",
    ),
    # ---- ignored in silence -----------------------------------------------------------------------------------
    Case(
        "no-box-head-with-box-loss-and-weight",
        None,
        train("--no-box-head", "--box-loss", "giou", "--box-weight", "5"),
        (("--box-loss", "--box-weight"),),
        accepted=True,
        today="silent",
        kind="ignored",
        right="one line (or a warning): --box-loss and --box-weight do nothing with --no-box-head",
    ),
    Case(
        "predict-cam-with-augment-preview",
        None,
        (*PREDICT, "--cam", "--augment-preview", "2", "--save", "{case}/pred", TEST_ROWS),
        ("--cam",),
        today="silent",
        kind="ignored",
        right="one line: --cam draws predictions, --augment-preview draws none: they do not go together",
    ),
    Case(
        "predict-augment-without-preview",
        None,
        (*PREDICT, "--augment", "strong", "--save", "{case}/pred", TEST_ROWS),
        ("--augment",),
        accepted=True,
        today="silent",
        kind="ignored",
        right="a warning (or one line): --augment is --augment-preview's policy, ignored without it",
    ),
    Case(
        "predict-gallery-max-without-gallery",
        None,
        (*PREDICT, "--gallery-max", "4", "--save", "{case}/pred", TEST_ROWS),
        ("--gallery-max",),
        accepted=True,
        today="silent",
        kind="ignored",
        right="a warning (or one line): --gallery-max without --gallery does nothing",
    ),
    Case(
        "predict-delay-with-save",
        None,
        (*PREDICT, "--delay", "500", "--save", "{case}/pred", TEST_ROWS),
        ("--delay",),
        accepted=True,
        today="silent",
        kind="ignored",
        right="a warning (or one line): --delay is for the screen, ignored with --save",
    ),
    Case(
        "config-epochs-true",
        write("{case}/epochs.json", '{"epochs": true}'),
        train("--config", "{case}/epochs.json"),
        ("epochs.json",),
        today="silent",
        kind="ignored",
        right="one line: epochs in epochs.json is a boolean, not a number of epochs (true is not read as 1)",
    ),
    Case(
        "config-seed-fraction",
        write("{case}/seed.json", '{"seed": 2.5}'),
        train("--config", "{case}/seed.json"),
        ("seed.json",),
        today="silent",
        kind="ignored",
        right="one line: seed in seed.json must be a whole number (2.5 is not read as 2)",
    ),
    Case(
        "compare-same-run-twice",
        None,
        ("compare.py", "{run}", "{run}", "--out", "{case}/report"),
        (re.compile(r"case/run\b"),),
        today="silent",
        kind="ignored",
        right="one line: RUNS names one run twice (or compared once, with a warning)",
    ),
    Case(
        "compare-run-and-its-checkpoint",
        None,
        ("compare.py", "{run}", "{run}/best.pth", "--out", "{case}/report"),
        (re.compile(r"case/run\b"),),
        today="silent",
        kind="ignored",
        right="one line: RUNS names one model twice (the folder and its best.pth)",
    ),
    Case(
        "compare-epochs-without-train",
        None,
        ("compare.py", "{run}", "--epochs", "5", "--out", "{case}/report"),
        ("--epochs",),
        accepted=True,
        today="silent",
        kind="ignored",
        right="a warning (or one line): --epochs goes with --train only",
    ),
    Case(
        "compare-output-dir-without-train",
        None,
        ("compare.py", "{run}", "--output-dir", "{case}/elsewhere", "--out", "{case}/report"),
        ("--output-dir",),
        accepted=True,
        today="silent",
        kind="ignored",
        right="a warning (or one line): --output-dir goes with --train or --practical only",
    ),
    Case(
        "practical-report-only-with-dry-run",
        plan(PLAN),
        (*REPORT_ONLY, "--dry-run", "--out", "{case}/report"),
        (("--dry-run", "--report-only"),),
        today="silent",
        kind="ignored",
        right="one line: --dry-run and --report-only do not go together (today the report is written)",
    ),
    Case(
        "env-cvpr-deterministic-yes",
        variable("CVPR_DETERMINISTIC", "yes"),
        train(),
        ("CVPR_DETERMINISTIC",),
        today="silent",
        kind="ignored",
        right="one line naming CVPR_DETERMINISTIC: 1 or 0",
    ),
    Case(
        "env-cvpr-cpu-bf16-maybe",
        variable("CVPR_CPU_BF16", "maybe"),
        train(),
        ("CVPR_CPU_BF16",),
        today="silent",
        kind="ignored",
        right="one line naming CVPR_CPU_BF16: 0 or unset",
    ),
    Case(
        "env-cvpr-keep-memory-no",
        variable("CVPR_KEEP_MEMORY", "no"),
        train(),
        ("CVPR_KEEP_MEMORY",),
        today="silent",
        kind="ignored",
        right="one line naming CVPR_KEEP_MEMORY: 0 or 1 ('no' keeps the memory)",
    ),
    Case(
        "env-slurm-cpus-per-task-eight",
        variable("SLURM_CPUS_PER_TASK", "eight"),
        train(),
        ("SLURM_CPUS_PER_TASK",),
        today="silent",
        kind="ignored",
        right="one line naming SLURM_CPUS_PER_TASK: a whole number",
    ),
    Case(
        "env-slurm-cpus-per-task-zero",
        variable("SLURM_CPUS_PER_TASK", "0"),
        train(),
        ("SLURM_CPUS_PER_TASK",),
        today="silent",
        kind="ignored",
        right="one line naming SLURM_CPUS_PER_TASK: at least 1",
    ),
    Case(
        "name-with-a-newline",
        None,
        train("--name", "part1\nlong"),
        ("--name",),
        today="silent",
        kind="ignored",
        right="one line: --name is one plain folder name (no newline or control character)",
    ),
    Case(
        "resume-after-config-json-edit",
        edit_config_lr,
        ("train.py", "--resume", "{run}/last.pth", "--epochs", "2"),
        ("config.json",),
        accepted=True,
        may_change=("{run}/*",),
        today="silent",
        kind="ignored",
        right="one line (or a warning) naming config.json: it differs from last.pth's options (lr), which resume",
    ),
    # ---- plans: wrong types and dropped entries ---------------------------------------------------------------
    Case(
        "plan-run-optional-string",
        plan(RUN.replace("args =", 'optional = "yes"\nargs =') + SECTION),
        DRY_RUN,
        ("optional",),
        today="silent",
        kind="plan",
        right="one line: optional is true or false, not a string",
    ),
    Case(
        "plan-section-optional-string-no",
        plan(PLAN + 'optional = "no"\n'),
        DRY_RUN,
        ("optional",),
        today="silent",
        kind="plan",
        right="one line: optional is true or false (the string 'no' makes the section optional)",
    ),
    Case(
        "plan-section-runs-duplicated",
        plan(PLAN.replace('runs = ["tiny"]', 'runs = ["tiny", "tiny"]')),
        DRY_RUN,
        ("tiny", "Q3"),
        today="silent",
        kind="plan",
        right="one line: section Q3 names run tiny twice",
    ),
    Case(
        "plan-section-runs-a-string",
        plan(RUN.replace('"tiny"', '"b"') + SECTION.replace('runs = ["tiny"]', 'runs = "bb"')),
        DRY_RUN,
        ("runs", "Q3"),
        today="silent",
        kind="plan",
        right="one line: runs of section Q3 is a list of run names (the string 'bb' is not runs b, b)",
    ),
    Case(
        "plan-section-runs-a-number",
        plan(PLAN.replace('runs = ["tiny"]', "runs = 5")),
        DRY_RUN,
        ("runs", "Q3"),
        today="traceback",
        kind="plan",
        right="one line: runs of section Q3 is a list of run names",
    ),
    Case(
        "plan-section-kind-a-list",
        plan(PLAN.replace('kind = "best-vs-last"', 'kind = ["best-vs-last"]')),
        DRY_RUN,
        ("kind", "Q3"),
        today="one-line",
        kind="plan",
        right="one line: kind of section Q3 is a string",
    ),
    Case(
        "plan-run-name-a-number",
        plan(RUN.replace('name = "tiny"', "name = 5") + SECTION),
        DRY_RUN,
        ("name",),
        today="one-line",
        kind="plan",
        right="one line: a run's name is a string",
    ),
    Case(
        "plan-defaults-args-a-list",
        plan('[defaults]\nargs = ["--epochs", "1"]\n\n' + PLAN),
        DRY_RUN,
        ("[defaults]", "args"),
        today="one-line",
        kind="plan",
        right="one line: [defaults] args is a string of train.py options",
    ),
    Case(
        "plan-quick-epochs-a-string",
        plan('[quick]\nepochs = "two"\n\n' + PLAN),
        (*DRY_RUN, "--quick"),
        ("epochs", "[quick]"),
        today="traceback",
        kind="plan",
        right="one line: [quick] epochs is a whole number",
    ),
    Case(
        "plan-quick-image-size-a-string",
        plan('[quick]\nimage_size = "small"\n\n' + PLAN),
        (*DRY_RUN, "--quick"),
        ("image_size", "[quick]"),
        today="traceback",
        kind="plan",
        right="one line: [quick] image_size is a whole number",
    ),
    Case(
        "plan-quick-no-pretrained-a-string",
        plan('[quick]\nno_pretrained = "no"\n\n' + PLAN),
        (*DRY_RUN, "--quick"),
        ("no_pretrained", "[quick]"),
        today="silent",
        kind="plan",
        right="one line: [quick] no_pretrained is true or false (the string 'no' reads as true)",
    ),
    Case(
        "plan-only-empty",
        plan(PLAN),
        (*DRY_RUN, "--only", ""),
        ("--only",),
        today="silent",
        kind="plan",
        right="one line: --only names no section (the whole plan is not what an empty list means)",
    ),
    Case(
        "plan-run-in-no-section",
        plan(RUN + ORPHAN + SECTION),
        DRY_RUN,
        ("orphan",),
        accepted=True,
        today="silent",
        kind="plan",
        right="a warning (or one line): run orphan is in no section, so it is never trained",
    ),
    Case(
        "plan-args-output-dir",
        plan(RUN.replace(TINY_RUN, TINY_RUN + " --output-dir mine") + SECTION),
        DRY_RUN,
        ("--output-dir", "tiny"),
        today="silent",
        kind="plan",
        right="one line: run tiny's args give --output-dir, which the plan sets (--output-dir of compare.py)",
    ),
    Case(
        "plan-args-name",
        plan(RUN.replace(TINY_RUN, TINY_RUN + " --name other") + SECTION),
        DRY_RUN,
        ("--name", "tiny"),
        today="silent",
        kind="plan",
        right="one line: run tiny's args give --name, which the plan sets (the run's name)",
    ),
    # ---- data that passes but should not ----------------------------------------------------------------------
    Case(
        "annotation-file-deleted-with-images",
        remove("{ds}/annotations/face.csv"),
        train(),
        (("face.csv", "images/face"),),
        accepted=True,
        today="silent",
        kind="dataset",
        right="a warning (or one line): images/face/ holds images but annotations/face.csv is missing",
    ),
    Case(
        "coordinate-with-an-underscore",
        replace_line("face", 3, "image_0003.jpg,133,6,2_40,142,face"),
        train(),
        ("face.csv:3",),
        today="silent",
        kind="dataset",
        right="one line naming face.csv:3: 2_40 is not a coordinate (not read as 240)",
    ),
    Case(
        "coordinate-in-fullwidth-digits",
        replace_line("face", 3, "image_0003.jpg,133,6,\uff12\uff14\uff10,142,face"),
        train(),
        ("face.csv:3",),
        today="silent",
        kind="dataset",
        right="one line naming face.csv:3: the coordinate is not in ASCII digits",
    ),
    Case(
        "class-missing-from-the-training-split",
        copied_splits(faces_only_in_test),
        train("--splits", "{case}/my_splits", cuts=False),
        ("face", "training_data.csv"),
        accepted=True,
        today="silent",
        kind="dataset",
        right="a warning (or one line): class face has no row in training_data.csv (it could never be learned)",
    ),
    Case(
        "training-row-also-in-test-split",
        copied_splits(training_row_in_test),
        train("--splits", "{case}/my_splits", cuts=False),
        ("test_data.csv",),
        today="one-line",
        kind="dataset",
        right="one line: a row of training_data.csv is in test_data.csv too (the test would not be held out)",
    ),
    Case(
        "one-class-dataset",
        one_class_dataset,
        ("train.py", "--dataset", "{case}/one_class", "--output-dir", "{case}/out", *TINY, *CUTS),
        ("one_class", CLASSES),
        today="silent",
        kind="dataset",
        right="one line: one_class holds a single class, nothing to classify (val accuracy would be 1.0)",
    ),
    Case(
        "eval-empty-test-split",
        write("{run}/test_data.csv", ""),
        (*EVAL, "--split", "test", "--out", "{case}/ev"),
        (("test_data.csv", "test split"),),
        accepted=True,
        today="silent",
        kind="dataset",
        right="a warning (or one line): the test split is empty; no 'nan over 0 samples' file written as a result",
    ),
    Case(
        "eval-run-trained-without-test-split",
        run_without_test_split,
        ("eval.py", "{case}/no_test/best.pth", "--split", "test", "--out", "{case}/ev"),
        (("test_data.csv", "test split"),),
        accepted=True,
        today="silent",
        kind="dataset",
        right="a warning (or one line): the run's test split is empty (--cut-test 1.0); 'nan over 0 samples' says so",
    ),
    Case(
        "compare-run-without-test-split",
        run_without_test_split,
        ("compare.py", "{case}/no_test", "--out", "{case}/report"),
        (("test_data.csv", "test split"),),
        accepted=True,
        today="one-line",
        kind="dataset",
        right="a warning (or one line): the run's test split is empty (trained with --cut-test 1.0)",
    ),
    # ---- vague messages -----------------------------------------------------------------------------------
    Case(
        "weights-a-text-file",
        write("{case}/resnet18.pth", "404: Not Found\n"),
        train("--model", "resnet", "--weights", "{case}/resnet18.pth"),
        (("--weights", "resnet18.pth"),),
        today="vague",
        kind="mistake",
        right="one line: resnet18.pth is not a weights file (a text file: an interrupted download?)",
    ),
    Case(
        "image-size-3000-out-of-memory",
        None,
        OUT_OF_MEMORY_TRAIN,
        ("--image-size",),
        today="vague",
        kind="mistake",
        right="one line: not enough memory for --image-size 3000 (the images need 810 MB), not a cache-file error",
    ),
    Case(
        "eval-split-given-twice",
        None,
        (*EVAL, "--split", "test", "--split", "test", "--out", "{case}/ev"),
        ("--split",),
        forbid=("--csv",),
        today="vague",
        kind="mistake",
        right="one line: --split test is given twice (or evaluated once)",
    ),
    Case(
        "predict-annotate-folder-without-label-folders",
        plain_pictures,
        (*PREDICT, "--annotate", "{case}/pics"),
        ("<label>",),
        today="vague",
        kind="mistake",
        right="one line saying the layout --annotate wants: FOLDER/images/<label>/*.jpg (and annotations.csv)",
    ),
    Case(
        "predict-annotate-images-without-label-folders",
        flat_web_images,
        (*PREDICT, "--annotate", "{case}/web/images"),
        ("<label>",),
        today="vague",
        kind="mistake",
        right="one line: the pictures of web/images/ need a <label>/ folder each (not 'needs a display')",
    ),
]

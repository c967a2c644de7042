"""The practical's plan end to end at reduced scale (compare.py --practical --quick): every run, every question
of the practical under its heading with its material, the report's numbers read back from the runs' own files,
its galleries checked against the per-image results, its PDF measured (table text, image resolution); the checks
made before anything trains; and the same plan through a real Slurm (skipped where none answers)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_pdf import placed_images, poppler_complaints, table_font_sizes

from model import config
from model.files import Folder
from model.evaluate import Inference
from model.metrics import IOU_THRESHOLDS, ImageResults, accuracy_by_iou, average_precision
from model.practical.context import Content, Context
from model.practical.plan import Section, load_plan
from model.practical.sections import BUILDERS, READS_RUNS
from model.practical.sections.common import anchor
from model.practical.sections.part1 import internet_observation
from model.practical.sections.part2 import add_galleries
from model.reporting.comparison import model_galleries
from model.reporting.figures import BOX_EXAMPLES
from model.reporting.model_report import ModelReport

from conftest import (
    QUICK,
    ROOT,
    direct_predictions,
    run_script,
    sections,
)

# The questions of the practical, by part, as the report must head them: Part 1 Q1-Q10 (Q9 in its three parts),
# Part 2 Q1-Q4, Part 3 Q1-Q9; Part 4's two questions have no number (the classic approaches, the reading).
QUESTIONS = {
    "Part 1": ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9.1", "Q9.2", "Q9.3", "Q10"],
    "Part 2": ["Q1", "Q2", "Q3", "Q4"],
    "Part 3": ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9"],
    "Part 4": ["Classic OpenCV approaches", "TinaFace and YOLO"],
}
POINTER = re.compile(r"^(?P<what>.+): see \[(?P<title>[^\]]+)\]\(#(?P<anchor>[a-z0-9-]+)\) above\.$", re.M)


def table(out: Path, section: str, number: int = 1) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "report" / f"{section}-table-{number}.csv").read_text().splitlines()))


def history(runs: Path, run: str) -> dict[int, dict[str, str]]:
    rows = csv.DictReader((runs / run / config.HISTORY_FILE).read_text().splitlines())
    return {int(row["epoch"]): row for row in rows}


def evaluation(runs: Path, run: str, which: str = "best", split: str = "test") -> dict:
    """The stored evaluation (its JSON) of a run's checkpoint on its own split."""
    return json.loads((runs / run / "evaluations" / f"{which}.{split}.json").read_text())


def per_image(runs: Path, csv_name: str, run: str) -> list[dict[str, str]]:
    """A stored per-image CSV of a run's evaluations/ (e.g. best.test.images.csv)."""
    return list(csv.DictReader((runs / run / "evaluations" / csv_name).read_text().splitlines()))


def report_sections(report: str) -> dict[tuple[str, str], str]:
    """Each ### section's body (up to the next heading of level 2 or 3) by (the part it is under, its title)."""
    found: dict[tuple[str, str], str] = {}
    part, title, body = "", None, list[str]()
    for line in [*report.splitlines(), "## end"]:
        if line.startswith(("## ", "### ")):
            if title is not None:
                found[(part, title)] = "\n".join(body)
            title, body = (line[4:], []) if line.startswith("### ") else (None, [])
            part = line[3:].split(":")[0] if line.startswith("## ") else part
        else:
            body.append(line)
    return found


def paragraphs(report: str) -> list[str]:
    """The report's paragraphs and list items, whitespace made one space; code blocks and tables left out
    (a table's rows repeat where two runs happen to score the same)."""
    text = re.sub(r"```.*?```", "", report, flags=re.S)
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or lines[0].startswith("|"):
            continue
        if all(line.startswith(("- ", "  ")) for line in lines):
            out += [" ".join(item.split()) for item in re.split(r"^- ", block, flags=re.M) if item.strip()]
        else:
            out.append(" ".join(block.split()))
    return out


def markdown_tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every Markdown table of ``text``: (the paragraph just before it, its rows as cells by column name)."""
    blocks = re.split(r"\n\s*\n", text)
    found = []
    for before, block in zip(["", *blocks], blocks):
        if block.startswith("|"):
            lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()]
            found.append((before.strip(), [dict(zip(lines[0], row)) for row in lines[2:]]))
    return found


def figures_named(report: str, part: str) -> list[tuple[str, str]]:
    """(caption, file) of every figure whose file name holds ``part``."""
    return re.findall(rf"!\[([^\]]*)\]\((report/[^)]*{re.escape(part)}[^)]*)\)", report)


def test_every_run_trains_and_every_section_is_written(quick):
    runs, out, done = quick
    plan = tomllib.loads((ROOT / "practical.toml").read_text())
    needed = {run for section in sections() for run in section.get("runs", [])}  # a reading section has none
    assert needed == {r["name"] for r in plan["run"] if not r.get("optional")}
    for run in needed:
        assert (runs / run / "best.pth").exists() and (runs / run / "last.pth").exists(), run
    assert f"[{len(needed)}/{len(needed)}] python train.py" in done.stdout  # each as a train.py process
    report = (out / "report.md").read_text()
    assert [line[4:] for line in report.splitlines() if line.startswith("### ")] == [s["title"] for s in sections()]
    parts = [line[3:].split(":")[0] for line in report.splitlines() if line.startswith("## ")]
    assert parts == list(QUESTIONS), parts  # each part once, in order
    for section in sections():
        assert f"<!-- discussion {section['id']} -->" in report, section["id"]
    for link in re.findall(r"\]\((report/[^)]+)\)", report):  # every table and figure it links exists
        assert (out / link).stat().st_size > 0, link
    assert "Not trained yet" not in report and "Observations (computed from the numbers above)" in report


def test_every_question_has_a_heading_with_its_material_or_a_pointer(quick):
    """Every question of the practical is found under a heading that names it, in its part; its section holds its
    material (a table, a figure, eval.py's printout, observations, the reading's notes) or sends the reader, in one
    line, to the section that shows it; and every such pointer names a heading of the report."""
    _, out, _ = quick
    report = (out / "report.md").read_text()
    found = report_sections(report)
    anchors = {anchor(title) for _, title in found}
    assert len(anchors) == len(found)  # one heading, one anchor
    for part, questions in QUESTIONS.items():
        titles = [title for where, title in found if where == part]
        for question in questions:
            named = [t for t in titles if t.startswith(f"{question}. " if question.startswith("Q") else question)]
            assert len(named) == 1, (part, question, titles)
            body = found[(part, named[0])]
            material = ("|:--", "![", "```text", "Observations (computed", "No run answers", "No internet images")
            assert any(m in body for m in material) or POINTER.search(body), (part, question, body[:500])
    for pointer in POINTER.finditer(report):
        assert pointer["anchor"] in anchors and anchor(pointer["title"]) == pointer["anchor"], pointer[0]
    q1 = found[("Part 1", next(t for p, t in found if p == "Part 1" and t.startswith("Q1. ")))]
    for shown in ("| label ", "image width", "box width", "box share", "| training ", "| validation ", "| test "):
        assert shown in q1, shown  # images and boxes per class, their sizes, the split
    assert "-examples.jpg" in q1  # a few images with their boxes drawn
    part3 = {t.split(".")[0]: body for (p, t), body in found.items() if p == "Part 3"}
    assert "box_regressor" in part3["Q1"] and "Sigmoid" in part3["Q1"]  # the box head, from the code
    assert "Detector.forward" in part3["Q2"]
    assert "box in [0, 1]" in part3["Q3"] and "box_to_unit" in part3["Q3"]
    assert "model/experiment/loss.py" in part3["Q4"] and "GIoU" in part3["Q4"]  # the loss, from the code
    assert re.search(r"^The loss of p3-simple .*: see \[Q4\. ", part3["Q5"], re.M)  # pointed to, not copied
    assert "The detection view" in part3["Q8"] and "accuracy_by_iou.png" in part3["Q8"]
    classic = found[("Part 4", next(t for p, t in found if p == "Part 4" and t.startswith("Classic")))]
    assert re.search(r"^The networks' error analysis: see \[Q8\. ", classic, re.M)  # not Part 3 Q8's copied
    assert "#### p3-" not in classic and "#### hog_svm" in classic
    for (part, title), body in found.items():  # a prompt speaks of figures only where the section has some
        prompt = re.search(r"^_Your discussion: (.*)\._$", body, re.M)
        assert prompt is None or ("figures" in prompt[1]) == ("![" in body), (part, title, prompt)


def test_no_paragraph_of_more_than_200_characters_appears_twice(quick):
    """What several sections share (a run's setting, the note that there are no internet images yet, a gallery,
    an error analysis) is written once; the others point there."""
    _, out, _ = quick
    counted = Counter(p for p in paragraphs((out / "report.md").read_text()) if len(p) > 200)
    assert not [p[:120] for p, n in counted.items() if n > 1]


def test_the_reports_numbers_are_the_runs_own(quick):
    """Read back from each run's history.csv, its stored evaluations and split files, and the dataset's files."""
    runs, out, _ = quick
    for section, run in (("P1-Q7", "p1-template"), ("P1-Q9.3", "p1-plain-200")):
        rows = {row["model"]: row for row in table(out, section)}
        for which in ("best", "last"):
            row = rows[f"{which}.pth"]
            assert int(row["epoch"]) == evaluation(runs, run, which)["epoch"]
            for split, column in (("test", "test_accuracy"), ("val", "val_accuracy"), ("train", "train_accuracy")):
                assert float(row[column]) == evaluation(runs, run, which, split)["figures"]["overall"]["accuracy"]
    for row in table(out, "P1-Q3"):  # the last model on each split
        split = {"train": "train", "validation": "val", "test": "test"}[row["split"]]
        figures = evaluation(runs, "p1-template", "last", split)["figures"]["overall"]
        assert float(row["accuracy"]) == figures["accuracy"] and int(row["images"]) == figures["images"]
    for row in table(out, "P1-Q9.1"):
        figures = evaluation(runs, row["run"])
        assert float(row["test_accuracy"]) == figures["figures"]["overall"]["accuracy"]
        assert int(row["training_images"]) == len((runs / row["run"] / "training_data.csv").read_text().splitlines())
    for row in table(out, "P2-Q4") + table(out, "P3-Q8"):
        run = row["model"].split(" (")[0]
        figures = evaluation(runs, run)["figures"]["overall"]
        assert float(row["test_accuracy"]) == pytest.approx(figures["accuracy"], abs=1e-12)
        seconds = [float(r["seconds"]) for r in history(runs, run).values()]
        assert float(row["seconds_per_epoch"]) == pytest.approx(sum(seconds) / len(seconds))
    for row in table(out, "P3-Q4"):
        figures = evaluation(runs, row["run"])["figures"]["overall"]
        assert float(row["test_mean_iou"]) == pytest.approx(figures["mean_iou"], abs=1e-12)
        assert float(row["box_weight"]) == json.loads((runs / row["run"] / "config.json").read_text())["box_weight"]
    dataset = runs / "demo"
    counts = {f.stem: len(f.read_text().splitlines()) for f in (dataset / "annotations").glob("*.csv")}
    assert {row["label"]: int(row["boxes"]) for row in table(out, "P1-Q1")} == {**counts, "all": sum(counts.values())}
    for row in table(out, "P1-Q1", 2):  # the split of the template's run, per class
        split = {"training": "training_data", "validation": "val_data", "test": "test_data"}[row.pop("split")]
        labels = Counter(line.split(",")[-1] for line in (runs / "p1-template" / f"{split}.csv").read_text().split())
        assert {k: int(v) for k, v in row.items()} == {**labels, "all": sum(labels.values())}


def test_the_detection_view_is_a_direct_count_of_the_per_image_results(quick):
    """P3-Q8's detection accuracy at each IoU threshold, counted here from each run's per-image CSV (its IoU to
    4 decimals: a count must lie between the counts at t - 0.00005 and t + 0.00005)."""
    runs, out, _ = quick
    rows = table(out, "P3-Q8", 2)
    assert [row["model"].split(" (")[0] for row in rows] == ["p3-simple", "p3-deeper", "p3-vgg", "p3-resnet-fine-tuned"]
    for row in rows:
        images = per_image(runs, "best.test.images.csv", row["model"].split(" (")[0])
        right = [float(i["iou"]) for i in images if i["true_label"] == i["predicted_label"]]
        for t in IOU_THRESHOLDS:
            low, high = (sum(iou >= t + d for iou in right) / len(images) for d in (5e-5, -5e-5))
            assert low <= float(row[f"acc@{t:.2f}"]) <= high, (row["model"], t)
        assert 0 <= float(row["mAP@[.5:.95]"]) <= float(row["AP50"]) <= 1


def test_a_second_run_trains_nothing_draws_nothing_and_writes_the_same_files(quick):
    """Run again with nothing to train, the report is made from what is stored: no training, no evaluation, no
    figure drawn (each taken as it is, its inputs unchanged), no PDF compiled; every file the same bytes."""
    runs, out, _ = quick
    files = lambda: {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # noqa: E731
    before = files()
    again = run_script(*QUICK, "--output-dir", str(runs), "--out", str(out), timeout=900)
    assert again.returncode == 0, again.stderr
    assert "python train.py" not in again.stdout and not re.search(r"^Evaluating ", again.stdout, re.M)
    assert re.search(r"^Figures: 0 drawn, \d+ kept", again.stdout, re.M) and "report.pdf: kept" in again.stdout
    after = files()
    assert after.keys() == before.keys()
    assert [str(name) for name in after if after[name] != before[name]] == []


def test_a_second_run_keeps_the_students_discussion(quick, tmp_path):
    runs, trained_out, _ = quick
    out = tmp_path / "report"
    shutil.copytree(trained_out, out)
    report = out / "report.md"
    before = report.read_text()
    marker = "<!-- discussion P1-Q3 -->\n"
    mine = "The best epoch comes early: **our reading**, kept across runs."
    start = before.index(marker) + len(marker)
    without = before[:start] + before[before.index("\n<!-- end of discussion P1-Q3 -->") :]  # its placeholder out
    report.write_text(without.replace(marker, marker + mine, 1))
    again = run_script(*QUICK, "--output-dir", str(runs), "--out", str(out), timeout=900)
    assert again.returncode == 0, again.stderr
    assert "python train.py" not in again.stdout.split("Section ")[0]  # nothing trained
    after = report.read_text()
    assert mine in after and after.replace(mine, "") == without
    assert "report.pdf: kept" not in again.stdout  # the text changed: the PDF is compiled again


def gallery_results(runs: Path, out: Path, name: str) -> list[dict[str, str]]:
    """The per-image results a gallery file of the report is drawn from: a network's best model on its test
    split, or a classic approach's, fitted on the first run of Part 4."""
    stem = Path(name).stem.split("_", 1)[1]
    if (runs / stem).is_dir():
        return per_image(runs, "best.test.images.csv", stem)
    first = next(s for s in sections() if s["id"] == "P4-classic")["runs"][0]
    return per_image(runs, f"classic-{stem}.test.images.csv", first)


def test_a_gallery_of_boxes_shows_the_best_and_the_lowest_iou_among_right_labels(quick):
    """Each boxes gallery's caption, read against its per-image results: the best are the highest IoU of the test
    images with the right label, "the lowest" the lowest of those (never an image of the wrong label)."""
    runs, out, _ = quick
    report = (out / "report.md").read_text()
    galleries = figures_named(report, "-boxes_")
    assert len(galleries) >= 5
    caption = re.compile(r"the (\d+) best \(IoU ([\d.]+)(?: to [\d.]+)?\)(?:, then the (\d+) lowest \(IoU ([\d.]+))?")
    for text, link in galleries:
        found = caption.search(text)
        assert found, text
        right = sorted(
            (float(r["iou"]) for r in gallery_results(runs, out, link) if r["true_label"] == r["predicted_label"]),
            reverse=True,
        )
        best = min(BOX_EXAMPLES, len(right))
        assert int(found[1]) == best and float(found[2]) == pytest.approx(right[0], abs=0.0051), text
        if found[3]:
            assert int(found[3]) == min(BOX_EXAMPLES, len(right) - best), text
            assert float(found[4]) == pytest.approx(right[-1], abs=0.0051), text  # the lowest right-label IoU


def test_no_failure_shown_is_a_right_prediction(quick):
    """Every "worst case" row of the error analyses is a wrong label, or a right label whose box has IoU < 0.5;
    every row of misclassifications names two labels; every gallery of failures counts the test split's
    misclassified images."""
    runs, out, _ = quick
    report = (out / "report.md").read_text()
    tables = markdown_tables(report)
    worst = [row for before, rows in tables if before.startswith("Worst cases (") for row in rows]
    assert len(worst) >= 20
    for row in worst:
        assert row["true"] != row["predicted"] or float(row["IoU"]) < 0.5, row
    confused = [row["true → predicted"] for _, rows in tables for row in rows if "true → predicted" in row]
    assert len(confused) >= 10
    for pair in confused:
        true, _, predicted = pair.partition(" → ")
        assert true != predicted or pair == "(none)", pair
    galleries = figures_named(report, "failures")
    assert len(galleries) >= 10
    for text, link in galleries:
        which = "last" if "last.pth" in text else "best"
        rows = (
            per_image(runs, f"{which}.test.images.csv", link.split("-failures")[0].split("P1-Q4-")[1])
            if "P1-Q4-" in link
            else gallery_results(runs, out, link)
        )
        wrong = sum(r["true_label"] != r["predicted_label"] for r in rows)
        assert re.search(rf"\b(the|of the) {wrong} misclassified test image", text), (text, wrong)


class Recorded:
    """What a section builder's Context does with figures and pointers, without a report folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def once(self, material: str) -> Section | None:
        return None

    def write_figure(self, name: str, draw: Any, *inputs: Any) -> Path | None:
        data = draw()
        if data is None:
            return None
        (self.folder / name).write_bytes(data)
        return self.folder / name


def right_results(iou: bool) -> ImageResults:
    """Four images, every label right; with boxes (IoU 0.9) or without."""
    labels = np.array([0, 1, 2, 0])
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (4, 1))
    return ImageResults(
        [Path(f"x/{i}.jpg") for i in range(4)], ["a", "b", "c"], labels, labels.copy(), np.full(4, 0.9),
        np.full(4, 0.9) if iou else None, boxes, boxes.copy() if iou else None,
    )  # fmt: skip


def test_a_gallery_with_nothing_to_show_says_so_in_one_line(tmp_path):
    section = Section("S", "Q0. A section", "comparison", ())
    for boxes in (False, True):
        report = ModelReport("net", "simple", "cpu", results=right_results(boxes), key="net")
        galleries = model_galleries(report, "S-")
        assert [g.name for g in galleries] == (["S-boxes_net.jpg"] if boxes else [])
        content = Content()
        add_galleries(cast(Context, Recorded(tmp_path)), section, content, [report])
        assert content.text == ["net: every test image has the right label: no misclassified image to show."]


def test_the_internet_sentence_names_networks_that_tie():
    rows = [{"run": name, "images": 6, "right": right} for name, right in (("a", 4), ("b", 4), ("c", 2), ("d", 4))]
    tie = "a, b and d get the most internet images right (4 of 6, a tie); c the fewest (2)."
    assert internet_observation(rows) == tie
    assert internet_observation(rows[:2]) == "All 2 networks get 4 of the 6 internet images right."
    assert internet_observation(rows[1:3]) == "b gets the most internet images right (4 of 6); c the fewest (2)."


def test_the_internet_sections_show_what_their_commands_draw(quick, tmp_path):
    """With internet images (a few of the demo set's, some with a box in annotations.csv), an internet section
    scores every image for each network, and its command (predict.py) writes the very gallery the section shows."""
    runs, _, _ = quick
    web = tmp_path / "web"
    rows = []
    for label in ("airplane", "face", "motorcycle"):
        (web / "images" / label).mkdir(parents=True)
        lines = (runs / "demo" / "annotations" / f"{label}.csv").read_text().splitlines()[:2]
        for line in lines:
            shutil.copy(runs / "demo" / "images" / label / line.split(",")[0], web / "images" / label)
        rows.append(lines[0])  # the first image of each class with its box, the second by its label alone
    (web / "annotations.csv").write_text("\n".join(rows) + "\n")
    copied = tmp_path / "runs"  # hard links: the runs' files are only ever replaced whole, never changed in place
    shutil.copytree(runs, copied, copy_function=os.link, ignore=shutil.ignore_patterns("demo"))
    plan = load_plan(ROOT / "practical.toml", copied, quick=True, only=None, for_report=True, kinds=READS_RUNS)
    section = next(s for s in plan.sections if s.id == "P3-Q9")
    with Folder(tmp_path / "doc", writer="the test", option="--out").staged() as sink:
        ctx = Context(plan, {}, Inference.on(torch.device("cpu")), sink, runs / "demo", print, web=web)
        ctx.section = section
        content = BUILDERS["internet"](ctx, section, list(section.runs))
    (caption, shown), *others = content.figures
    assert len(others) == len(section.runs) - 1 and "every internet image" in caption
    (_, frame), *_ = content.tables
    assert list(frame["images"]) == [6] * len(section.runs) and list(frame["images_with_box"]) == [3] * 4
    argv = shlex.split(content.commands[0])
    assert argv[:3] == ["python", "predict.py", "--model"]
    drawn = run_script(*argv[1:], cwd=ROOT)
    assert drawn.returncode == 0, drawn.stderr
    gallery = cv2.imread(argv[argv.index("--gallery") + 1])
    ours = cv2.imread(str(shown))
    assert gallery is not None and ours is not None and gallery.shape == ours.shape
    assert np.abs(gallery.astype(int) - ours).mean() < 2  # the same drawing (each JPEG-encoded once)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[i] with b[i], boxes (N, 4) as x1, y1, x2, y2."""
    top_left, bottom_right = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def coco_ap(iou: np.ndarray, predicted: np.ndarray, true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """COCO's average precision per (IoU threshold, class with a true box) when every image has one true box and one
    scored prediction: a class's predictions by score (ties in image order), a true positive where the label and
    the box (IoU >= t) are right; the precision envelope read at COCO's 101 recall points; a class never predicted
    gets 0, a class no image has is left out."""
    classes, points = np.unique(true), np.linspace(0, 1, 101)
    ap = np.zeros((len(IOU_THRESHOLDS), len(classes)))
    for k, c in enumerate(classes):
        mine = np.flatnonzero(predicted == c)
        mine = mine[np.argsort(-score[mine], kind="mergesort")]
        for i, t in enumerate(IOU_THRESHOLDS):
            hit = (true[mine] == c) & (iou[mine] >= t)
            recall = np.cumsum(hit) / np.sum(true == c)
            precision = np.cumsum(hit) / np.arange(1, len(mine) + 1)
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            at = np.searchsorted(recall, points, side="left")
            ap[i, k] = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0).mean()
    return ap


def synthetic_results(seed: int = 0, images: int = 60) -> ImageResults:
    """Random boxes of 224-px images, predicted with noise (IoU about 0.3 to 0.9), 80 % of the labels right, random
    confidences; two predictions of a class no image has (COCO leaves that class out)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 134, (images, 2))
    true_boxes = np.hstack([corner, corner + rng.uniform(34, 90, (images, 2))])
    predicted_boxes = true_boxes + rng.normal(0, 6, (images, 4))
    predicted_boxes[:, 2:] = np.maximum(predicted_boxes[:, 2:], predicted_boxes[:, :2] + 1)
    true = rng.integers(0, 3, images)
    predicted = np.where(rng.random(images) < 0.8, true, rng.integers(0, 3, images))
    predicted[:2] = 3
    return ImageResults(
        [Path(f"x/{i}.jpg") for i in range(images)], ["a", "b", "c", "d"], true, predicted,
        rng.random(images).astype(np.float32), paired_iou(predicted_boxes, true_boxes), true_boxes, predicted_boxes,
    )  # fmt: skip


def test_torchmetrics_map_is_a_direct_coco_computation():
    """average_precision (torchmetrics' MeanAveragePrecision, COCO's thresholds given exactly) on one box per image
    equals COCO's AP computed here directly, for mAP@[.5:.95], AP50 and AP75."""
    results = synthetic_results()
    assert results.iou is not None
    ap = coco_ap(results.iou, results.predicted_labels, results.true_labels, results.confidence)
    scores = average_precision(results)
    assert 0.1 < ap.mean() < 0.9  # a case with something to rank
    assert scores["map"] == pytest.approx(ap.mean(), abs=1e-6)
    assert scores["map_50"] == pytest.approx(ap[0].mean(), abs=1e-6)
    assert scores["map_75"] == pytest.approx(ap[5].mean(), abs=1e-6)  # 0.5, 0.55, ..., 0.75: the sixth


def test_accuracy_by_iou_is_a_direct_count():
    results = synthetic_results(seed=1)
    assert results.iou is not None
    for t, accuracy in zip(IOU_THRESHOLDS, accuracy_by_iou(results)):
        pairs = zip(results.predicted_labels, results.true_labels, results.iou)
        right = sum(predicted == true and iou >= t for predicted, true, iou in pairs)
        assert accuracy == right / len(results.paths), t
    assert math.isclose(IOU_THRESHOLDS[0], 0.5) and math.isclose(IOU_THRESHOLDS[-1], 0.95) and len(IOU_THRESHOLDS) == 10


def test_the_reports_training_accuracy_is_an_evaluation_mode_pass(quick):
    """Q7's training accuracy (of best.pth and last.pth) equals what an evaluation-mode pass of the model
    over the training split's rows gives, computed here with OpenCV and torch alone (dropout off)."""
    runs, out, _ = quick
    for row in table(out, "P1-Q7"):
        _, direct = direct_predictions(runs / "p1-template", "training_data.csv", row["model"])
        right = sum(d["predicted"] == d["label"] for d in direct)
        assert float(row["train_accuracy"]) == pytest.approx(right / len(direct), abs=1e-12), row["model"]


def test_every_figure_the_report_links_has_something_in_every_panel(quick):
    """Each figure the report links is read back: a matplotlib figure (PNG) says where its panels are (its
    "Axes" text); the inside of each must hold coloured marks (curves, bars, cells), never a blank panel; a
    gallery (JPEG) must hold an image."""
    _, out, _ = quick
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.(?:png|jpg))\)", report)
    assert len(links) >= 20
    for link in links:
        image = cv2.imread(str(out / link))
        assert image is not None and image.std() > 5, link
        panels = Image.open(out / link).info.get("Axes")
        for number, extents in enumerate(panels.split(";") if panels else []):
            left, bottom, right, top = (float(v) for v in extents.split(","))
            h, w = image.shape[:2]
            inside = image[int((1 - top) * h) + 3 : int((1 - bottom) * h) - 3, int(left * w) + 3 : int(right * w) - 3]
            colourful = (inside.max(axis=2).astype(int) - inside.min(axis=2)) > 60
            assert colourful.mean() > 0.002, f"{link}: panel {number + 1} is blank"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext, pdftoppm)")
def test_the_pdf_holds_the_reports_tables_figures_and_discussions(quick, tmp_path):
    """report.pdf is the same content: its text read back holds every section's title, the numbers of the
    tables, the discussion places; its pages render, with the figures in them."""
    _, out, _ = quick
    pdf = out / "report.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    for section in sections():
        assert " ".join(section["title"].split())[:40] in flat, section["id"]
    for row in table(out, "P1-Q7") + table(out, "P3-Q4"):
        assert f"{float(row['test_accuracy']):.3f}" in text
    assert "Your discussion" in flat and "<!--" not in text
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "3", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 3 and all(float(np.asarray(cv2.imread(str(p))).std()) > 5 for p in pages)
    linked = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.(?:png|jpg))\)", (out / "report.md").read_text())
    assert len(placed_images(pdf)) == len(linked)  # every figure the report links is in it, once


@pytest.mark.skipif(shutil.which("pdfimages") is None, reason="needs poppler-utils (pdfimages, pdffonts)")
def test_the_pdf_reads_at_print_size(quick):
    """Measured in report.pdf: no table's text below 8 pt, no figure placed larger than its pixels at 150 dpi;
    and poppler's readers print no error."""
    _, out, _ = quick
    pdf = out / "report.pdf"
    sizes = table_font_sizes(pdf)
    assert len({page for page, _, _ in sizes}) >= 10  # the report's tables were found
    assert min(size for _, size, _ in sizes) >= 8 - 0.01, sorted({round(size, 2) for _, size, _ in sizes})
    placed = placed_images(pdf)
    assert placed and all(min(x_ppi, y_ppi) >= 150 for *_, x_ppi, y_ppi in placed), placed
    assert not any(poppler_complaints(pdf).values()), poppler_complaints(pdf)


def test_a_discussion_of_a_section_no_longer_in_the_plan_is_kept(tmp_path, demo_dataset):
    plan = write_plan(tmp_path / "plan.toml", '[[run]]\nname = "r"\nargs = ""\n', '"r"', kind="best-vs-last")
    report = tmp_path / "doc" / "report.md"
    report.parent.mkdir()
    report.write_text(  # a report of the toolkit's earlier version, with a section the plan has no more
        "# Report\n\nA draft, written by `python compare.py --practical` from the runs ...\n\n"
        "<!-- discussion Old -->\nWhat I wrote.\n<!-- end of discussion Old -->\n"
    )
    args = ["--output-dir", str(tmp_path / "runs"), "--dataset", str(demo_dataset), "--out", str(tmp_path / "doc")]
    done = run_script("compare.py", "--practical", "--plan", str(plan), "--report-only", *args)
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "Not trained yet: r (to train)." in text
    assert "## Discussions of sections not in this report" in text and "What I wrote." in text


def test_a_reading_section_holds_the_students_notes_and_no_run(tmp_path, demo_dataset):
    """Part 4's TinaFace/YOLO question is read, not run: its section needs no run, and keeps the student's notes
    when the report is written again."""
    plan = write_plan(tmp_path / "plan.toml", '[[run]]\nname = "r"\nargs = ""\n', '"r"', kind="best-vs-last")
    with plan.open("a") as more:  # a plan needs a run: one read by another section, beside the reading one
        more.write('\n[[section]]\nid = "R"\ntitle = "Two detectors to read about"\nkind = "reading"\n')
    args = ["--plan", str(plan), "--output-dir", str(tmp_path / "runs"), "--dataset", str(demo_dataset)]
    args += ["--out", str(tmp_path / "doc")]
    assert run_script("compare.py", "--practical", "--report-only", *args).returncode == 0
    report = tmp_path / "doc" / "report.md"
    text = report.read_text()
    reading = text.split("### Two detectors to read about")[1]
    assert "No run answers this question: it asks you to read." in reading and "Not trained yet" not in reading
    report.write_text(text.replace("<!-- end of discussion R -->", "YOLO: one pass.\n<!-- end of discussion R -->"))
    assert run_script("compare.py", "--practical", "--report-only", *args).returncode == 0
    assert "YOLO: one pass." in report.read_text()
    with plan.open("a") as more:  # a reading section that names runs is refused in one line
        more.write('\n[[section]]\nid = "R2"\ntitle = "More reading"\nkind = "reading"\nruns = ["r"]\n')
    refused = run_script("compare.py", "--practical", "--report-only", *args)
    assert refused.returncode == 1 and "section R2: a reading section reads no run" in refused.stderr


def write_plan(path: Path, runs: str, section_runs: str, kind: str = "comparison") -> Path:
    path.write_text(
        f'[defaults]\nargs = "--epochs 1 --image-size 64"\n{runs}\n[[section]]\nid = "S"\n'
        f'title = "One section"\nkind = "{kind}"\nruns = [{section_runs}]\n'
    )
    return path

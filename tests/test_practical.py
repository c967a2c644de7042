"""The practical's plan end to end at reduced scale (compare.py --practical --quick): every run, every question under a
heading that names it and says what ran, the report's numbers read back from the runs' own files, what is left to
write listed first, every caption checked against what it shows, its PDF measured (text, tables, images)."""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_pdf import placed_images, poppler_complaints, table_font_sizes

import compare
from model import config
from model.evaluate import Inference
from model.files import Folder
from model.metrics import IOU_THRESHOLDS, ImageResults, accuracy_by_iou, average_precision
from model.practical.plan import load_plan
from model.practical.report import Context
from model.practical.sections import BUILDERS, READS_RUNS
from model.practical.sections.internet import internet_observation
from model.practical.sections.part1 import mistakes
from model.reporting.figures import BOX_EXAMPLES

from conftest import ROOT, direct_predictions, run_script, sections

QUESTIONS = {  # as the report must head them; Part 4's two questions have no number
    "Part 1": ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9.1", "Q9.2", "Q9.3", "Q10"],
    "Part 2": ["Q1", "Q2", "Q3", "Q4"],
    "Part 3": ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9"],
    "Part 4": ["Classic OpenCV approaches", "TinaFace and YOLO"],
}
POINTER = re.compile(r"^(?P<what>.+): see \[(?P<title>[^\]]+)\]\(#(?P<anchor>[a-z0-9-]+)\) above\.$", re.M)
PLACEHOLDER = re.compile(r"<!-- discussion (\S+) -->\n_Your discussion: [^\n]*\._\n<!-- end of discussion")


def practical(*args: str) -> tuple[int, str]:
    """compare.py --practical in the test's own process: (exit status, output)."""
    done = CliRunner().invoke(compare.main, ["--practical", *args])
    return done.exit_code, done.output + (f"{done.exception!r}" if done.exit_code not in (0, 1, 2) else "")


def table(out: Path, section: str, number: int = 1) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "report" / f"{section}-table-{number}.csv").read_text().splitlines()))


def evaluation(runs: Path, run: str, which: str = "best", split: str = "test") -> dict:
    return json.loads((runs / run / "evaluations" / f"{which}.{split}.json").read_text())


def per_image(runs: Path, csv_name: str, run: str) -> list[dict[str, str]]:
    return list(csv.DictReader((runs / run / "evaluations" / csv_name).read_text().splitlines()))


def report_sections(report: str) -> dict[str, tuple[str, str, str]]:
    """Each ### section by its id (its discussion's marker): (its part, its heading, its body)."""
    found, part = {}, ""
    for block in re.split(r"^(?=#{2,3} )", report, flags=re.M):
        if block.startswith("## "):
            part = block[3:].split(":")[0]
        elif block.startswith("### ") and (marker := re.search(r"<!-- discussion (\S+) -->", block)):
            title, _, body = block[4:].partition("\n")
            found[marker[1]] = (part, title, body)
    return found


def markdown_tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Every Markdown table of ``text``: (the paragraph just before it, its rows as cells by column name)."""
    blocks = re.split(r"\n\s*\n", text)
    found = []
    for before, block in zip(["", *blocks], blocks):
        if block.startswith("|"):
            lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()]
            found.append((before.strip(), [dict(zip(lines[0], row)) for row in lines[2:]]))
    return found


def figures_named(report: str, part: str = "") -> list[tuple[str, str]]:
    """(caption, file) of every figure whose file name holds ``part``."""
    return re.findall(rf"!\[([^\]]*)\]\((report/[^)]*{re.escape(part)}[^)]*)\)", report)


def config_of(runs: Path, run: str) -> dict:
    return json.loads((runs / run / "config.json").read_text())


def test_every_question_is_headed_by_what_ran_with_its_material(quick):
    """Every run trains (each a train.py process); every question of the practical is under a heading that names it,
    in its part, with its material or a one-line pointer to the section that shows it; a heading claims no epochs,
    weights or settings its runs did not use; every table and figure the report links exists, each image once."""
    runs, out, done = quick
    needed = {run for section in sections() for run in section.get("runs", [])}
    assert f"[{len(needed)}/{len(needed)}] python train.py" in done.stdout
    report = (out / "report.md").read_text()
    found = report_sections(report)
    assert list(found) == [s["id"] for s in sections()]
    assert [line[3:].split(":")[0] for line in report.splitlines() if line.startswith("## ")] == list(QUESTIONS)
    for part, questions in QUESTIONS.items():  # each question under one heading of its part that names it
        titles = [title for where, title, _ in found.values() if where == part]
        assert [len([t for t in titles if t.startswith(f"{q}. " if q[0] == "Q" else q)]) for q in questions] == [
            1
        ] * len(questions)
    for section in sections():
        part, title, body = found[section["id"]]
        material = ("|:--", "![", "```text", "Observations (computed", "No run answers", "No internet images")
        assert any(m in body for m in material) or POINTER.search(body), (title, body[:300])
        used = [config_of(runs, r) for r in section.get("runs", [])]
        for epochs in re.findall(r"(\d+) epochs", title):
            assert int(epochs) in {c["epochs"] for c in used}, title
        assert "ImageNet weights" not in title.replace("no ImageNet weights", "") or all(c["pretrained"] for c in used)
        assert "pretrained" not in title and ("with the template's settings" not in title or used[0]["epochs"] == 20), (
            title
        )
    anchors = {re.sub(r"[^a-z0-9 -]", "", t.lower()).replace(" ", "-") for _, t, _ in found.values()}
    for pointer in POINTER.finditer(report):
        assert pointer["anchor"] in anchors, pointer[0]
    links = re.findall(r"\]\((report/[^)]+)\)", report)
    assert all((out / link).stat().st_size > 0 for link in links)
    images = [link for link in links if link.endswith((".png", ".jpg"))]
    contents = [(out / link).read_bytes() for link in images]
    assert len(images) == len(set(images)) and len(contents) == len(set(contents))  # every image once, by bytes too
    assert "Not trained yet" not in report


def test_the_list_of_what_is_left_counts_the_placeholders(quick):
    """Before the contents: each discussion still a placeholder, each section waiting for internet images or ImageNet
    weights, the reading, each with its count and a link to its section; the plan's last lines say the same."""
    _, out, done = quick
    report = (out / "report.md").read_text()
    head = report.split("Contents:")[0]
    found = report_sections(report)
    reading = [s["id"] for s in sections() if "runs" not in s]
    placeholders = [i for i in PLACEHOLDER.findall(report) if i not in reading]
    waiting = {
        "discussion": placeholders,
        "internet images": [s["id"] for s in sections() if s["kind"] == "internet"],
        "ImageNet weights": [s["id"] for s in sections() if "{weights}" in s["title"]],
        "reading": reading,
    }
    for what, ids in waiting.items():
        line = next(line for line in head.splitlines() if line.startswith("- ") and what in line)
        assert line.startswith(f"- {len(ids)} ")
        linked = re.findall(r"\[([^\]]+)\]\(#([a-z0-9-]+)\)", line)
        assert [i for i, _ in linked] == ids
        assert all(a == re.sub(r"[^a-z0-9 -]", "", found[i][1].lower()).replace(" ", "-") for i, a in linked)
        assert re.search(rf"^  {len(ids)} [^:]*: {', '.join(map(re.escape, ids))}$", done.stdout, re.M), what
    assert done.stdout.rstrip().endswith(", ".join(reading))  # the plan's last lines


def test_the_reports_numbers_are_the_runs_own(quick):
    """Read back from each run's history.csv, its stored evaluations and split files, and the dataset's files."""
    runs, out, _ = quick
    for row in table(out, "P1-Q7"):
        figures = {s: evaluation(runs, "p1-template", row["model"][:4], s) for s in ("train", "val", "test")}
        assert int(row["epoch"]) == figures["test"]["epoch"]
        for split, found in figures.items():
            assert float(row[f"{split}_accuracy"]) == found["figures"]["overall"]["accuracy"]
    for row in table(out, "P1-Q3"):
        split = {"train": "train", "validation": "val", "test": "test"}[row["split"]]
        assert (
            float(row["accuracy"]) == evaluation(runs, "p1-template", "last", split)["figures"]["overall"]["accuracy"]
        )
    for row in table(out, "P1-Q9.1"):
        assert float(row["test_accuracy"]) == evaluation(runs, row["run"])["figures"]["overall"]["accuracy"]
        assert int(row["training_images"]) == len((runs / row["run"] / "training_data.csv").read_text().splitlines())
    for row in table(out, "P2-Q4") + table(out, "P3-Q8"):
        run = row["model"].split(" (")[0]
        assert float(row["test_accuracy"]) == pytest.approx(evaluation(runs, run)["figures"]["overall"]["accuracy"])
        seconds = [float(r["seconds"]) for r in csv.DictReader((runs / run / config.HISTORY_FILE).open())]
        assert float(row["seconds_per_epoch"]) == pytest.approx(sum(seconds) / len(seconds))
    for row in table(out, "P3-Q4"):
        assert float(row["test_mean_iou"]) == pytest.approx(
            evaluation(runs, row["run"])["figures"]["overall"]["mean_iou"]
        )
        assert float(row["box_weight"]) == config_of(runs, row["run"])["box_weight"]
    counts = {f.stem: len(f.read_text().splitlines()) for f in (runs / "demo" / "annotations").glob("*.csv")}
    assert {row["label"]: int(row["boxes"]) for row in table(out, "P1-Q1")} == {**counts, "all": sum(counts.values())}
    for row in table(out, "P3-Q8", 2):  # the detection view, counted here from the per-image IoUs (to 4 decimals)
        images = per_image(runs, "best.test.images.csv", row["model"].split(" (")[0])
        right = [float(i["iou"]) for i in images if i["true_label"] == i["predicted_label"]]
        for t in IOU_THRESHOLDS:
            low, high = (sum(iou >= t + d for iou in right) / len(images) for d in (5e-5, -5e-5))
            assert low <= float(row[f"acc@{t:.2f}"]) <= high, (row["model"], t)
    for row in table(out, "P1-Q7"):  # the training accuracy: an evaluation-mode pass, computed with OpenCV and torch
        _, direct = direct_predictions(runs / "p1-template", "training_data.csv", row["model"])
        assert float(row["train_accuracy"]) == pytest.approx(
            sum(d["predicted"] == d["label"] for d in direct) / len(direct)
        )


def test_quick_mode_says_what_ran_and_no_more(quick):
    """A run that repeats another's numbers is pointed to; best against last, when one epoch, is said to be one
    model; no overfitting verdict from two epochs; Part 1 Q1 shows where each question's code lives, every
    function it names defined there."""
    _, out, _ = quick
    found = report_sections((out / "report.md").read_text())
    q8 = found["P1-Q8"][2]
    assert POINTER.search(q8) and "same options as p1-template" in q8 and "|:--" not in q8
    assert "no clear overfitting" not in q8 and "hold the same model" in found["P1-Q7"][2]
    rows = table(out, "P1-Q1", 3)
    assert len(rows) >= 20
    for row in rows:
        tree = ast.parse((ROOT / row["file"]).read_text())
        assert any(getattr(node, "name", None) == row["function"] for node in ast.walk(tree)), row
    assert "-failures.jpg" in found["P1-Q9.1"][2]  # Q9.1's failure cases


def gallery_rows(runs: Path, link: str, which: str = "best") -> list[dict[str, str]]:
    """The per-image results a gallery of the report is drawn from: a run's, or a classic method's (fitted on the
    first run of Part 4)."""
    name = Path(link).stem
    section = max((s["id"] for s in sections() if name.startswith(f"{s['id']}-")), key=len)
    key = name.removeprefix(f"{section}-").removesuffix("-failures")
    key = key.split("_", 1)[1] if key.startswith(("failures_", "boxes_")) else key
    if (runs / key).is_dir():
        return per_image(runs, f"{which}.test.images.csv", key)
    return per_image(runs, f"classic-{key}.test.images.csv", "p3-simple")


def test_every_caption_says_what_it_shows(quick):
    """IoU only in the captions of figures of runs with a box head; galleries of boxes show the best and the lowest
    IoU among the images their method answered; every table of worst cases says when it lists the first N of M;
    every gallery of failures counts the misclassified images; every figure has marks in each panel."""
    runs, out, _ = quick
    report = (out / "report.md").read_text()
    found = report_sections(report)
    for section in sections():
        if section.get("runs") and not any(config_of(runs, r)["box_head"] for r in section["runs"]):
            assert not [c for c, _ in figures_named(found[section["id"]][2]) if "IoU" in c], section["id"]
    caption = re.compile(r"the (\d+) best \(IoU ([\d.]+)(?: to [\d.]+)?\)(?:, then the (\d+) lowest \(IoU ([\d.]+))?")
    galleries = figures_named(report, "-boxes_")
    assert len(galleries) >= 5
    for text, link in galleries:
        own = [r for r in gallery_rows(runs, link) if "haar_face" not in link or r["predicted_label"] == "face"]
        right = sorted((float(r["iou"]) for r in own if r["true_label"] == r["predicted_label"]), reverse=True)
        shown = caption.search(text)
        assert shown and int(shown[1]) == min(BOX_EXAMPLES, len(right)), text
        assert float(shown[2]) == pytest.approx(right[0], abs=0.0051), text
        assert not shown[3] or float(shown[4]) == pytest.approx(right[-1], abs=0.0051), text
    worst = [(before, rows) for before, rows in markdown_tables(report) if before.startswith("Worst cases (")]
    assert len(worst) >= 10
    for before, rows in worst:
        listed = re.match(r"Worst cases \((?:the first (\d+) of (\d+)|all (\d+)) ", before)
        assert listed, before
        assert len(rows) == int(listed[1] or listed[3]) and (listed[3] or int(listed[2]) > len(rows)), before
        assert all(r["true"] != r["predicted"] or float(r["IoU"]) < 0.5 for r in rows)
    for text, link in figures_named(report, "failures"):
        rows = gallery_rows(runs, link, "last" if "last.pth" in text else "best")
        wrong = sum(r["true_label"] != r["predicted_label"] for r in rows)
        assert re.search(rf"\b(the|of the) {wrong} misclassified test image", text), (text, wrong)
    for link in re.findall(r"!\[[^\]]*\]\((report/[^)]+\.png)\)", report):
        image, panels = cv2.imread(str(out / link)), Image.open(out / link).info.get("Axes")
        assert image is not None and image.std() > 5, link
        for extents in panels.split(";") if panels else []:
            left, bottom, right_edge, top = (float(v) for v in extents.split(","))
            h, w = image.shape[:2]
            inside = image[
                int((1 - top) * h) + 3 : int((1 - bottom) * h) - 3, int(left * w) + 3 : int(right_edge * w) - 3
            ]
            assert ((inside.max(axis=2).astype(int) - inside.min(axis=2)) > 60).mean() > 0.002, link


def test_ties_are_named_as_ties():
    labels, predicted = np.array([0, 0, 0, 1, 1, 2]), np.array([1, 2, 0, 0, 1, 2])
    paths = [Path(f"x/{i}.jpg") for i in range(6)]
    results = ImageResults(paths, ["a", "b", "c"], labels, predicted, np.full(6, 0.9), None, np.zeros((6, 4)), None)
    assert (
        mistakes(results)
        == "the most frequent mistakes, tied at 1 each: a taken for b, a taken for c and b taken for a"
    )
    rows = [{"run": name, "images": 6, "right": right} for name, right in (("a", 4), ("b", 4), ("c", 2), ("d", 4))]
    assert (
        internet_observation(rows) == "a, b and d get the most internet images right (4 of 6, a tie); c the fewest (2)."
    )
    assert internet_observation(rows[:2]) == "All 2 networks get 4 of the 6 internet images right."


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext, pdfimages)")
def test_the_pdf_is_the_report_at_print_size(quick):
    """report.pdf holds every section's title, the tables' numbers, the places for discussions, `<label>` where the
    Markdown has it, every figure once; no table's text below 8 pt, no figure beyond 150 dpi; poppler complains of
    nothing."""
    _, out, _ = quick
    pdf, report = out / "report.pdf", (out / "report.md").read_text()
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    for _, title, _ in report_sections(report).values():
        assert " ".join(title.split())[:40] in flat, title
    for row in table(out, "P1-Q7") + table(out, "P3-Q4"):
        assert f"{float(row['test_accuracy']):.3f}" in text
    assert "Your discussion" in flat and "<!--" not in text and "web_images/images/<label>/" in flat
    assert len(placed_images(pdf)) == len(re.findall(r"!\[[^\]]*\]\((report/[^)]+\.(?:png|jpg))\)", report))
    sizes = table_font_sizes(pdf)
    assert len({page for page, _, _ in sizes}) >= 10 and min(size for _, size, _ in sizes) >= 8 - 0.01
    assert all(min(x_ppi, y_ppi) >= 150 for *_, x_ppi, y_ppi in placed_images(pdf))
    assert not any(poppler_complaints(pdf).values())


def test_a_second_run_writes_the_same_files_and_keeps_the_students_text(quick, tmp_path):
    """Run again with nothing to train: no training, no evaluation, no figure drawn, no PDF compiled, every file the
    same bytes. A discussion written in report.md is kept, and leaves the list of what is left to write."""
    runs, trained_out, _ = quick
    out = tmp_path / "report"
    shutil.copytree(trained_out, out)
    files = lambda: {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # noqa: E731
    before = files()
    status, said = practical("--quick", "--report-only", "--output-dir", str(runs), "--out", str(out))
    assert (
        status == 0
        and not re.search(r"^Evaluating ", said, re.M)
        and re.search(r"^Figures: 0 drawn, \d+ kept", said, re.M)
    ), said
    assert "report.pdf: kept" in said and files() == before
    report = out / "report.md"
    marker, mine = "<!-- discussion P1-Q3 -->\n", "The best epoch comes early: **our reading**, kept across runs."
    text = report.read_text()
    start = text.index(marker) + len(marker)
    report.write_text(text[:start] + mine + text[text.index("\n<!-- end of discussion P1-Q3 -->") :])
    status, said = practical("--quick", "--report-only", "--output-dir", str(runs), "--out", str(out))
    after = report.read_text()
    assert status == 0 and mine in after and "report.pdf: kept" not in said
    assert "[P1-Q3](#" not in after.split("Contents:")[0] and "P1-Q3, " not in said.split("Left to write")[1]


def test_a_reading_section_and_a_dropped_one_keep_the_students_text(tmp_path, demo_dataset):
    """Part 4's reading needs no run and keeps the student's notes; a discussion of a section no longer in the plan is
    kept at the end; with every discussion written, nothing is listed as left."""
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[defaults]\nargs = "--epochs 1 --image-size 64"\n[[run]]\nname = "r"\nargs = ""\n[[section]]\nid = "S"\n'
        'title = "One section"\nkind = "best-vs-last"\nruns = ["r"]\n[[section]]\nid = "R"\ntitle = "To read"\n'
        'kind = "reading"\n'
    )
    args = [
        "--plan",
        str(plan),
        "--output-dir",
        str(tmp_path / "runs"),
        "--dataset",
        str(demo_dataset),
        "--out",
        str(tmp_path / "doc"),
    ]
    report = tmp_path / "doc" / "report.md"
    assert practical("--report-only", *args)[0] == 0
    old = "<!-- discussion Old -->\nWhat I wrote.\n<!-- end of discussion Old -->\n"  # a section since removed
    report.write_text(report.read_text() + old)
    status, said = practical("--report-only", *args)
    assert status == 0, said
    text = report.read_text()
    assert "Not trained yet: r (to train)." in text and "No run answers this question" in text.split("### To read")[1]
    assert "## Discussions of sections not in this report" in text and "What I wrote." in text
    for section in ("S", "R"):
        text = text.replace(
            f"\n<!-- end of discussion {section} -->", f"\nNotes on {section}.\n<!-- end of discussion {section} -->"
        )
    report.write_text(text)
    status, said = practical("--report-only", *args)
    assert status == 0 and "Notes on R." in report.read_text() and "Left to" not in report.read_text() + said
    with plan.open("a") as more:  # a reading section that names runs is refused in one line
        more.write('\n[[section]]\nid = "R2"\ntitle = "More reading"\nkind = "reading"\nruns = ["r"]\n')
    status, said = practical("--report-only", *args)
    assert status == 1 and "section R2: a reading section reads no run" in said


def test_the_internet_sections_show_what_their_commands_draw(quick, tmp_path):
    """With internet images (a few of the demo set's, some with a box in annotations.csv), an internet section scores
    every image for each network, and its command (predict.py) writes the very gallery the section shows."""
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
        ctx = Context(plan, {}, Inference.on("cpu"), sink, runs / "demo", print, web=web, section=section)
        content = BUILDERS["internet"](ctx, section, list(section.runs))
    (caption, shown), *others = content.figures
    assert len(others) == len(section.runs) - 1 and "every internet image" in caption
    (_, frame), *_ = content.tables
    assert list(frame["images"]) == [6] * len(section.runs) and list(frame["images_with_box"]) == [3] * 4
    argv = shlex.split(content.commands[0])
    drawn = run_script(*argv[1:], cwd=ROOT)
    assert drawn.returncode == 0, drawn.stderr
    gallery, ours = cv2.imread(argv[argv.index("--gallery") + 1]), cv2.imread(str(shown))
    assert gallery is not None and ours is not None and gallery.shape == ours.shape
    assert np.abs(gallery.astype(int) - ours).mean() < 2  # the same drawing (each JPEG-encoded once)


def test_map_and_accuracy_by_iou_are_direct_computations():
    """average_precision (torchmetrics, COCO's thresholds) on one box per image equals COCO's AP computed here
    directly; accuracy_by_iou equals a direct count."""
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 134, (60, 2))
    true_boxes = np.hstack([corner, corner + rng.uniform(34, 90, (60, 2))])
    predicted_boxes = true_boxes + rng.normal(0, 6, (60, 4))
    predicted_boxes[:, 2:] = np.maximum(predicted_boxes[:, 2:], predicted_boxes[:, :2] + 1)
    true = rng.integers(0, 3, 60)
    predicted = np.where(rng.random(60) < 0.8, true, rng.integers(0, 3, 60))
    predicted[:2] = 3  # a class no image has: COCO leaves it out
    top_left, bottom_right = (
        np.maximum(predicted_boxes[:, :2], true_boxes[:, :2]),
        np.minimum(predicted_boxes[:, 2:], true_boxes[:, 2:]),
    )
    inter = np.clip(bottom_right - top_left, 0, None).prod(1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    iou, score = inter / (area(predicted_boxes) + area(true_boxes) - inter), rng.random(60).astype(np.float32)
    results = ImageResults([Path(f"x/{i}.jpg") for i in range(60)], ["a", "b", "c", "d"], true, predicted, score, iou,
                           true_boxes, predicted_boxes)  # fmt: skip
    classes, points = np.unique(true), np.linspace(0, 1, 101)
    ap = np.zeros((len(IOU_THRESHOLDS), len(classes)))
    for k, c in enumerate(classes):
        mine = np.flatnonzero(predicted == c)
        mine = mine[np.argsort(-score[mine], kind="mergesort")]
        for i, t in enumerate(IOU_THRESHOLDS):
            hit = (true[mine] == c) & (iou[mine] >= t)
            recall, precision = np.cumsum(hit) / np.sum(true == c), np.cumsum(hit) / np.arange(1, len(mine) + 1)
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            at = np.searchsorted(recall, points, side="left")
            ap[i, k] = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0).mean()
    scores = average_precision(results)
    assert 0.1 < ap.mean() < 0.9 and scores["map"] == pytest.approx(ap.mean(), abs=1e-6)
    assert scores["map_50"] == pytest.approx(ap[0].mean(), abs=1e-6) and scores["map_75"] == pytest.approx(
        ap[5].mean(), abs=1e-6
    )
    for t, accuracy in zip(IOU_THRESHOLDS, accuracy_by_iou(results)):
        assert accuracy == sum(p == r and i >= t for p, r, i in zip(predicted, true, iou)) / 60, t
    assert math.isclose(IOU_THRESHOLDS[0], 0.5) and math.isclose(IOU_THRESHOLDS[-1], 0.95) and len(IOU_THRESHOLDS) == 10

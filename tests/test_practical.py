"""The practical's plan end to end at reduced scale (compare.py --practical --quick): every run,
every section of the report, its numbers read back from the runs' own files, and the checks made
before anything trains; and the same plan through a real Slurm (skipped where none answers)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from model import config
from model.core.runtime import usable_cpus
from model.data import demo
from model.runs.run import CLOCK_COLUMNS

from conftest import (
    QUICK,
    ROOT,
    cpu_only,
    direct_predictions,
    interrupt_training,
    job_logs,
    run_script,
    sections,
    slurm_available,
    small_disk,
    wait_for_job,
)


def table(out: Path, section: str, number: int = 1) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "report" / f"{section}-table-{number}.csv").read_text().splitlines()))


def history(runs: Path, run: str) -> dict[int, dict[str, str]]:
    rows = csv.DictReader((runs / run / config.HISTORY_FILE).read_text().splitlines())
    return {int(row["epoch"]): row for row in rows}


def evaluation(runs: Path, run: str, which: str = "best", split: str = "test") -> dict:
    """The stored evaluation (its JSON) of a run's checkpoint on its own split."""
    return json.loads((runs / run / "evaluations" / f"{which}.{split}.json").read_text())


def test_every_run_trains_and_every_section_is_written(quick):
    runs, out, done = quick
    plan = tomllib.loads((ROOT / "practical.toml").read_text())
    needed = {run for section in sections() for run in section.get("runs", [])}  # a reading section has none
    assert needed == {r["name"] for r in plan["run"] if not r.get("optional")}
    for run in needed:
        assert (runs / run / "best.pth").exists() and (runs / run / "last.pth").exists(), run
    assert f"[{len(needed)}/{len(needed)}] python train.py" in done.stdout  # each as a train.py process
    report = (out / "report.md").read_text()
    assert [line[3:] for line in report.splitlines() if line.startswith("## ")] == [s["title"] for s in sections()]
    for section in sections():
        assert f"<!-- discussion {section['id']} -->" in report, section["id"]
    for link in re.findall(r"\]\((report/[^)]+)\)", report):  # every table and figure it links exists
        assert (out / link).stat().st_size > 0, link
    assert "Not trained yet" not in report and "Observations (computed from the numbers above)" in report


def test_the_reports_numbers_are_the_runs_own(quick):
    """Read back from each run's history.csv and its stored evaluations."""
    runs, out, _ = quick
    for section, run in (("Q3", "p1-template"), ("Q9.3", "p1-plain-200")):
        rows = {row["model"]: row for row in table(out, section)}
        for which in ("best", "last"):
            figures = evaluation(runs, run, which)
            row = rows[f"{which}.pth"]
            assert int(row["epoch"]) == figures["epoch"]
            assert float(row["test_accuracy"]) == figures["figures"]["overall"]["accuracy"]
            assert float(row["val_accuracy"]) == evaluation(runs, run, which, "val")["figures"]["overall"]["accuracy"]
            assert (
                float(row["train_accuracy"]) == evaluation(runs, run, which, "train")["figures"]["overall"]["accuracy"]
            )
    for row in table(out, "Q9.1"):
        figures = evaluation(runs, row["run"])
        assert float(row["test_accuracy"]) == figures["figures"]["overall"]["accuracy"]
        assert int(row["training_images"]) == len((runs / row["run"] / "training_data.csv").read_text().splitlines())
    for row in table(out, "Part2") + table(out, "Part3-Q8"):
        figures = evaluation(runs, row["model"].split(" (")[0])["figures"]["overall"]
        assert float(row["test_accuracy"]) == pytest.approx(figures["accuracy"], abs=1e-12)
        seconds = [float(r["seconds"]) for r in history(runs, row["model"].split(" (")[0]).values()]
        assert float(row["seconds_per_epoch"]) == pytest.approx(sum(seconds) / len(seconds))
    for row in table(out, "Part3-Q4"):
        figures = evaluation(runs, row["run"])["figures"]["overall"]
        assert float(row["test_mean_iou"]) == pytest.approx(figures["mean_iou"], abs=1e-12)
        assert float(row["box_weight"]) == json.loads((runs / row["run"] / "config.json").read_text())["box_weight"]


def test_a_second_run_trains_nothing_keeps_the_discussion_and_writes_the_same_report(quick):
    runs, out, _ = quick
    report = out / "report.md"
    before = report.read_text()
    marker = "<!-- discussion Q3 -->\n"
    mine = "The best epoch comes early: **our reading**, kept across runs."
    start = before.index(marker) + len(marker)
    report.write_text(before[:start] + mine + before[before.index("\n<!-- end of discussion Q3 -->") :])
    again = run_script(*QUICK, "--output-dir", str(runs), "--out", str(out), timeout=900)
    assert again.returncode == 0, again.stderr
    assert "python train.py" not in again.stdout.split("Section ")[0]  # nothing trained
    after = report.read_text()
    assert mine in after and after.replace(mine, "") == before.replace(
        "_Your discussion: what the figures show, why, and what you would try next._", "", 1
    )


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
    """Part 4's TinaFace/YOLO question is read, not run: its section needs no run, keeps the student's notes
    when the report is written again, and one that names runs is refused in one line."""
    plan = write_plan(tmp_path / "plan.toml", '[[run]]\nname = "r"\nargs = ""\n', "", kind="reading")
    args = ["--plan", str(plan), "--output-dir", str(tmp_path / "runs"), "--dataset", str(demo_dataset)]
    args += ["--out", str(tmp_path / "doc")]
    assert run_script("compare.py", "--practical", "--report-only", *args).returncode == 0
    report = tmp_path / "doc" / "report.md"
    text = report.read_text()
    assert "No run answers this question: it asks you to read." in text and "Not trained yet" not in text
    report.write_text(text.replace("<!-- end of discussion S -->", "YOLO: one pass.\n<!-- end of discussion S -->"))
    assert run_script("compare.py", "--practical", "--report-only", *args).returncode == 0
    assert "YOLO: one pass." in report.read_text()
    write_plan(plan, '[[run]]\nname = "r"\nargs = ""\n', '"r"', kind="reading")
    refused = run_script("compare.py", "--practical", "--report-only", *args)
    assert refused.returncode == 1 and "section S: a reading section has no runs" in refused.stderr


def test_the_dry_run_lists_what_exists_and_what_would_run(quick, tmp_path):
    runs, _, _ = quick
    shutil.copytree(runs, tmp_path / "runs", ignore=shutil.ignore_patterns("demo"))
    shutil.rmtree(tmp_path / "runs" / "p3-vgg")
    done = run_script(
        *QUICK,
        "--dry-run",
        "--only",
        "Part3-Q8",
        "--output-dir",
        str(tmp_path / "runs"),
        "--dataset",
        str(runs / "demo"),
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"p3-simple\s+│ finished: kept", done.stdout) and re.search(r"p3-vgg\s+│ to train", done.stdout)
    assert "p1-template" not in done.stdout  # --only: the runs of that section alone
    assert "Estimated time to train what is missing:" in done.stdout and not (tmp_path / "runs" / "p3-vgg").exists()


def write_plan(path: Path, runs: str, section_runs: str, kind: str = "comparison") -> Path:
    path.write_text(
        f'[defaults]\nargs = "--epochs 1 --image-size 64"\n{runs}\n[[section]]\nid = "S"\n'
        f'title = "One section"\nkind = "{kind}"\nruns = [{section_runs}]\n'
    )
    return path


def test_a_typo_in_the_plan_stops_before_anything_trains(tmp_path, demo_dataset):
    plan = write_plan(tmp_path / "plan.toml", '[[run]]\nname = "a"\nargs = "--epohcs 3"\n', '"a"')
    done = run_script(
        "compare.py",
        "--practical",
        "--plan",
        str(plan),
        "--output-dir",
        str(tmp_path / "runs"),
        "--dataset",
        str(demo_dataset),
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert f"{plan}: run a: No such option '--epohcs'. Did you mean '--epochs'?" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_without_imagenet_weights_the_resnet_runs_train_from_scratch_and_say_so(tmp_path, demo_dataset):
    plan = write_plan(
        tmp_path / "plan.toml",
        '[[run]]\nname = "small"\nargs = ""\n[[run]]\nname = "res"\nargs = "--model resnet"\n',
        '"small", "res"',
    )
    env = {"TORCH_HOME": str(tmp_path / "empty-torch-home")}  # no weights there; CI cannot download them
    runs, doc = tmp_path / "runs", tmp_path / "doc"
    args = ["compare.py", "--practical", "--plan", str(plan), "--output-dir", str(runs), "--dataset", str(demo_dataset)]
    args += ["--out", str(doc)]
    dry = run_script(*args, "--dry-run", env=env)  # no terminal: it only reports, and exits 0
    assert dry.returncode == 0, dry.stderr
    assert "res will train from scratch (no ImageNet weights)" in dry.stdout and not runs.joinpath("res").exists()
    done = run_script(*args, env=env)
    assert done.returncode == 0, done.stderr
    said = done.stdout.index("will train from scratch")
    assert said < done.stdout.index("epoch   1/1")  # said before the first epoch
    assert json.loads((runs / "res" / "config.json").read_text())["pretrained"] is False
    report = (doc / "report.md").read_text()
    assert "res (from scratch (no ImageNet weights))" in report and "Not trained yet" not in report
    skipped = run_script(*args, "--skip-unavailable", "--output-dir", str(tmp_path / "other"), env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert not (tmp_path / "other" / "res").exists()


def test_a_run_trained_otherwise_is_refused_not_replaced(tmp_path, demo_dataset, script):
    first = write_plan(tmp_path / "a.toml", '[[run]]\nname = "r"\nargs = ""\n', '"r"')
    args = ["--output-dir", str(tmp_path / "runs"), "--dataset", str(demo_dataset), "--out", str(tmp_path / "doc")]
    assert script("compare.py", "--practical", "--plan", str(first), *args).returncode == 0
    before = (tmp_path / "runs" / "r" / "best.pth").read_bytes()
    second = write_plan(tmp_path / "b.toml", '[[run]]\nname = "r"\nargs = "--dropout 0"\n', '"r"')
    done = script("compare.py", "--practical", "--plan", str(second), *args)
    assert done.returncode == 1 and "was trained with other options than the plan's r: dropout=0.5" in done.stderr
    other = demo.generate(tmp_path / "other-dataset", images=30, seed=5)
    args[3] = str(other)
    elsewhere = script("compare.py", "--practical", "--plan", str(first), *args)
    assert elsewhere.returncode == 1 and f"was trained on {demo_dataset}, not on {other}" in elsewhere.stderr
    assert (tmp_path / "runs" / "r" / "best.pth").read_bytes() == before


def test_options_of_the_other_mode_are_refused(tmp_path):
    mixed = run_script("compare.py", "--practical", "--epochs", "3", "--output-dir", str(tmp_path))
    assert mixed.returncode == 2 and "--epochs does not go with --practical" in mixed.stderr
    alone = run_script("compare.py", "--quick", "--out", str(tmp_path))
    assert alone.returncode == 2 and "--quick goes with --practical" in alone.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_disk_too_small_is_said_before_anything_trains(tmp_path, demo_dataset):
    with small_disk(tmp_path / "small", "1m") as small:
        plan = write_plan(tmp_path / "plan.toml", '[[run]]\nname = "v"\nargs = "--model vgg"\n', '"v"')
        done = run_script(
            "compare.py", "--practical", "--plan", str(plan), "--output-dir", str(small), "--dataset", str(demo_dataset)
        )
        assert done.returncode == 1 and f"{small}: 0.0 GiB free, the runs need about" in done.stderr
        assert list(small.iterdir()) == []


@pytest.mark.skipif(not slurm_available(), reason="no Slurm controller answers (bring one up with .ci/slurm-up.sh)")
def test_the_quick_plan_as_slurm_jobs(quick, tmp_path):
    """compare.py --practical --quick --slurm on the quick plan with one run never trained and one
    preempted after one of its two epochs: those two as a job array (the finished ones kept, the
    interrupted one resumed), then the report job, with every section; submitted again, nothing is
    trained twice and the report job runs alone."""
    trained, _, _ = quick
    runs, out = tmp_path / "runs", tmp_path / "report"
    dataset = trained / "demo"
    # hard links: the runs' files are only ever replaced whole (atomic writes), never changed in place
    shutil.copytree(trained, runs, copy_function=os.link, ignore=shutil.ignore_patterns("demo", "slurm"))
    shutil.rmtree(runs / "p3-vgg")  # never trained
    shutil.rmtree(runs / "p3-simple-box-10")  # trained below, then preempted
    kept = (runs / "p1-template" / "best.pth").read_bytes()
    as_planned = ["--box-weight", "10", "--batch-size", "16", "--epochs", "2", "--image-size", "64"]
    where = ["--dataset", str(dataset), "--output-dir", str(runs), "--name", "p3-simple-box-10"]
    status, _, _ = interrupt_training([*as_planned, *where], after="epoch   1/2")
    assert status == 128 + signal.SIGTERM  # preempted after one of its two epochs
    plan = [sys.executable, *QUICK, "--dataset", str(dataset), "--output-dir", str(runs), "--out", str(out)]
    submitted = subprocess.run(
        [*plan, "--slurm"], cwd=ROOT, env=cpu_only(dict(os.environ)), capture_output=True, text=True, timeout=300
    )
    assert submitted.returncode == 0, submitted.stderr
    tasks = submitted.stdout.split("Submitted")[0]
    assert re.findall(r"task \d+: (\S+): srun", tasks) == ["p3-simple-box-10", "p3-vgg"]
    assert "--resume" in tasks and "p1-template" not in tasks  # finished runs are not submitted
    report_job = re.search(r"report job (\d+)", submitted.stdout)
    assert report_job, submitted.stdout
    assert wait_for_job(report_job[1]) == "COMPLETED", job_logs(runs / "slurm")
    assert (runs / "p1-template" / "best.pth").read_bytes() == kept
    rows = (runs / "p3-simple-box-10" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # resumed, not restarted
    report = (out / "report.md").read_text()
    assert [line[3:] for line in report.splitlines() if line.startswith("## ")] == [s["title"] for s in sections()]
    assert "Not trained yet" not in report and "Partly trained" not in report
    assert len((out / "report" / "Part3-Q4-table-1.csv").read_text().splitlines()) == 4
    again = subprocess.run(
        [*plan, "--slurm", "--only", "Q9.1"],
        cwd=ROOT,
        env=cpu_only(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "runs (none to train)" in again.stdout, again.stderr
    report_job = re.search(r"report job (\d+)", again.stdout)
    assert report_job, again.stdout
    assert wait_for_job(report_job[1]) == "COMPLETED", job_logs(runs / "slurm")
    assert (out / "report.md").read_text() == report  # --only chooses what trains; the report keeps every section


def test_runs_at_once_give_what_runs_one_after_the_other_give(tmp_path, demo_dataset):
    """--jobs 2: two train.py processes at once (each with half the CPU threads, its output in a log);
    the same histories and weights as the same runs one at a time with as many threads."""
    plan = write_plan(
        tmp_path / "plan.toml",
        '[[run]]\nname = "a"\nargs = "--seed 1"\n[[run]]\nname = "b"\nargs = "--seed 2 --no-box-head"\n',
        '"a", "b"',
    )
    threads = str(max(1, usable_cpus() // 2))
    common = ["compare.py", "--practical", "--plan", str(plan), "--dataset", str(demo_dataset)]
    together = run_script(*common, "--jobs", "2", "--output-dir", str(tmp_path / "w1"), "--out", str(tmp_path / "d1"))
    assert together.returncode == 0, together.stdout[-2000:] + together.stderr
    assert together.stdout.count("[started") == 2 and len(list((tmp_path / "w1" / "logs").glob("*.log"))) == 2
    apart = run_script(
        *common, "--output-dir", str(tmp_path / "w2"), "--out", str(tmp_path / "d2"), env={"OMP_NUM_THREADS": threads}
    )
    assert apart.returncode == 0, apart.stderr
    for run in ("a", "b"):
        histories = [without_clocks(tmp_path / w / run / "history.csv") for w in ("w1", "w2")]
        assert histories[0] == histories[1], run
        weights = [torch.load(tmp_path / w / run / "best.pth", weights_only=True)["state_dict"] for w in ("w1", "w2")]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), run


def without_clocks(path: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in row.items() if k not in CLOCK_COLUMNS}
        for row in csv.DictReader(path.read_text().splitlines())
    ]


def test_the_reports_training_accuracy_is_an_evaluation_mode_pass(quick):
    """Q3's training accuracy (of best.pth and last.pth) equals what an evaluation-mode pass of the model
    over the training split's rows gives, computed here with OpenCV and torch alone (dropout off)."""
    runs, out, _ = quick
    for row in table(out, "Q3"):
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
    for row in table(out, "Q3") + table(out, "Part3-Q4"):
        assert f"{float(row['test_accuracy']):.3f}" in text
    assert "Your discussion" in flat and "<!--" not in text
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "3", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 3 and all(float(np.asarray(cv2.imread(str(p))).std()) > 5 for p in pages)
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert len(images.strip().splitlines()) - 2 >= 20  # the report's figures are in it

"""One owner for a run's folder (model/runs.py) and for the folders of generated documents
(model/files.py): nothing of the user's lost, no two runs mixed, no figure from the wrong rows.
Each case was a reproduction on the toolkit before its run folder had an owner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.files import is_temporary

from conftest import ROOT, cpu_only, interrupt_training, run_main, small_disk, stored

TINY = ["--epochs", "1", "--image-size", "64", "--batch-size", "8"]


def train(dataset: Path, out: Path, *extra: str, env: dict | None = None):
    return run_main("train.py", "--dataset", str(dataset), "--output-dir", str(out), *TINY, *extra, env=env)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def run_with_notes(tmp_path, demo_dataset) -> Path:
    """A trained run, evaluated, with the student's own files beside it."""
    assert train(demo_dataset, tmp_path, "--name", "r").returncode == 0
    run = tmp_path / "r"
    assert run_main("eval.py", str(run / "best.pth"), "--split", "test").returncode == 0
    (run / "eval_plan.md").write_text("what I will evaluate")  # named like the old eval_* glob
    (run / "eval_mine").mkdir()
    (run / "eval_mine" / "notes.txt").write_text("a folder of mine")
    (run / "notes.md").write_text("my observations")
    return run


MINE = {
    "eval_plan.md": b"what I will evaluate",
    "eval_mine/notes.txt": b"a folder of mine",
    "notes.md": b"my observations",
}


def test_overwrite_replaces_exactly_the_toolkits_files(run_with_notes, demo_dataset):
    run = run_with_notes
    done = train(demo_dataset, run.parent, "--name", "r", "--overwrite", "--seed", "5")
    assert done.returncode == 0, done.stderr
    now = files(run)
    assert {k: now[k] for k in MINE} == MINE  # the student's files and folder, untouched
    assert not (run / "evaluations").exists()  # the replaced run's evaluations went with it
    assert json.loads((run / "config.json").read_text())["seed"] == 5
    manifest = json.loads((run / "manifest.json").read_text())["files"]
    assert not set(manifest) & set(MINE) and "best.pth" in manifest


def test_an_interrupted_overwrite_keeps_the_old_run_whole(run_with_notes, demo_dataset):
    """Ctrl-C during the new run's first epoch: the old run is as it was, nothing of the new one is left."""
    run = run_with_notes
    before = files(run)
    args = ["--dataset", str(demo_dataset), "--output-dir", str(run.parent), "--name", "r", "--overwrite"]
    args += ["--epochs", "2", "--image-size", "64"]
    status, out, _ = interrupt_training(args, after="Training simple", signum=signal.SIGINT)
    assert status == 128 + signal.SIGINT, out
    assert "nothing of it was kept" in out and files(run) == before
    assert not [p for p in run.iterdir() if is_temporary(p) or p.name == ".lock"]


def test_an_overwrite_on_a_full_disk_keeps_the_old_run(tmp_path, demo_dataset):
    with small_disk(tmp_path / "disk", "3m") as disk:
        assert train(demo_dataset, disk, "--name", "r").returncode == 0
        (disk / "r" / "notes.md").write_text("mine")
        before = files(disk / "r")
        filler = disk / "filler"  # leaves less room than a second run's checkpoints need
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * max(0, free - 200_000))
        done = train(demo_dataset, disk, "--name", "r", "--overwrite", "--no-cache")
        assert done.returncode == 1 and "no space left on the disk" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert files(disk / "r") == before


def test_two_processes_on_one_run_folder(tmp_path, demo_dataset):
    """The second train.py into the same folder is refused, naming the first; the folder holds one run."""
    # a fresh Python: the refusal names the first one's pid, which must be the process started here
    args = [sys.executable, "train.py", "--dataset", str(demo_dataset), "--output-dir", str(tmp_path), "--name", "r"]
    args += ["--epochs", "3", "--image-size", "64", "--batch-size", "8"]
    env = cpu_only(dict(os.environ))
    first = subprocess.Popen(
        [*args, "--seed", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "r" / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run([*args, "--seed", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"is being written by train.py (pid {first.pid} on" in second.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["seed"] == 1 and json.loads((tmp_path / "r" / "run.json").read_text())["command"].endswith("--seed 1")
    assert not (tmp_path / "r" / ".lock").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, demo_dataset):
    args = ["--dataset", str(demo_dataset), "--output-dir", str(tmp_path), "--name", "r"]
    args += ["--epochs", "3", "--image-size", "64"]
    status, _, _ = interrupt_training(args, after="epoch   1/3", signum=signal.SIGKILL)
    assert status == -signal.SIGKILL and (tmp_path / "r" / ".lock").exists()  # left behind, held by no one
    done = run_main("train.py", "--resume", str(tmp_path / "r" / "last.pth"))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "r" / ".lock").exists()


@pytest.mark.parametrize("where", ["dataset/images", "web_images/images", "name"])
def test_a_run_never_lands_in_data_or_outside_output_dir(tmp_path, demo_dataset, where):
    dataset = tmp_path / "dataset"
    shutil.copytree(demo_dataset, dataset)
    web = tmp_path / "web_images"
    shutil.copytree(ROOT / "web_images", web)
    (web / "annotations.csv").write_text("")
    before = {p: files(p) for p in (dataset, web)}
    if where == "name":
        done = train(demo_dataset, tmp_path / "out", "--name", "../x")
        assert "--name '../x': a run's name is one plain folder name" in done.stderr
        assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()
    else:
        done = train(demo_dataset, tmp_path / where)
        assert "that train.py did not write: a run goes into a folder of its own" in done.stderr
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert {p: files(p) for p in (dataset, web)} == before


def test_eval_of_another_file_never_poses_as_the_runs_test_split(run_with_notes, tmp_path, demo_dataset):
    """eval.py --csv some/where/test.csv is stored under that file's identity; the run's own test
    evaluation stays; the report and compare read only the run's own test split as "test"."""
    run = run_with_notes
    own = stored(run)
    other = tmp_path / "some" / "where" / "test.csv"
    other.parent.mkdir(parents=True)
    rows = (run / "training_data.csv").read_text().splitlines()[:6]
    other.write_text("\n".join(rows))
    done = run_main("eval.py", str(run / "best.pth"), "--csv", str(other), "--dataset", str(demo_dataset))
    assert done.returncode == 0, done.stderr
    assert "Wrote " + str(run / "evaluations" / "best.rows-test-") in done.stdout
    assert stored(run) == own and len(list((run / "evaluations").glob("best.rows-test-*.json"))) == 1
    same_stem = tmp_path / "elsewhere" / "test.csv"
    same_stem.parent.mkdir()
    same_stem.write_text("\n".join(rows[:3]))
    two = run_main("eval.py", str(run / "best.pth"), "--csv", str(same_stem), "--dataset", str(demo_dataset))
    assert two.returncode == 0 and len(list((run / "evaluations").glob("best.rows-test-*.json"))) == 2
    both = run_main(
        "eval.py", str(run / "best.pth"), "--csv", str(other), "--csv", str(same_stem), "--dataset", str(demo_dataset)
    )
    assert both.returncode == 1 and "a set named 'test' is already evaluated" in both.stderr


def test_compare_never_replaces_a_file_it_did_not_write(run_with_notes, tmp_path):
    doc = tmp_path / "doc"
    doc.mkdir()
    (doc / "errors.md").write_text("my own error analysis")
    done = run_main("compare.py", str(run_with_notes), "--out", str(doc))
    assert done.returncode == 1 and "errors.md: not written by compare.py (a file of yours?)" in done.stderr
    assert sorted(p.name for p in doc.iterdir()) == ["errors.md"]
    assert (doc / "errors.md").read_text() == "my own error analysis"
    (doc / "errors.md").unlink()
    assert run_main("compare.py", str(run_with_notes), "--out", str(doc)).returncode == 0
    (doc / "comparison.md").write_text((doc / "comparison.md").read_text() + "\nmy note")
    edited = run_main("compare.py", str(run_with_notes), "--out", str(doc))
    assert edited.returncode == 1 and "comparison.md: changed since compare.py wrote it" in edited.stderr
    assert (doc / "comparison.md").read_text().endswith("my note")


def report_only(tmp_path: Path, demo_dataset: Path, out: Path):
    plan = tmp_path / "plan.toml"
    if not plan.exists():
        plan.write_text(
            '[[run]]\nname = "r"\nargs = "--epochs 1 --image-size 64"\n'
            '[[section]]\nid = "Q8"\ntitle = "One section"\nkind = "best-vs-last"\nruns = ["r"]\n'
        )
    args = ["--plan", str(plan), "--output-dir", str(tmp_path / "runs"), "--dataset", str(demo_dataset)]
    return run_main("compare.py", "--practical", "--report-only", *args, "--out", str(out))


def test_the_report_never_replaces_a_report_md_it_did_not_write(tmp_path, demo_dataset):
    out = tmp_path / "doc"
    out.mkdir()
    (out / "report.md").write_text("# My own report\n\nWritten by hand.\n")
    done = report_only(tmp_path, demo_dataset, out)
    assert done.returncode == 1 and "report.md: not written by compare.py --practical" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "# My own report\n\nWritten by hand.\n"


def test_a_students_text_is_kept_whatever_its_markers_look_like(tmp_path, demo_dataset):
    """A discussion whose end marker lost a space is kept in place; text written outside every marker
    (under a title, between the placeholders) is kept too, moved to the end, and named in a warning."""
    out = tmp_path / "doc"
    assert report_only(tmp_path, demo_dataset, out).returncode == 0
    report = out / "report.md"
    text = report.read_text()
    placeholder = "_Your discussion: what the numbers show, why, and what you would try next._"
    end = "<!-- end of discussion Q8 -->"
    text = text.replace(f"{placeholder}\n{end}", "The loss turns up.\n<!-- end of discussion Q8-->")
    text = text.replace("### One section\n", "### One section\n\nA note of mine under the title.\n")
    report.write_text(text)
    again = report_only(tmp_path, demo_dataset, out)
    assert again.returncode == 0, again.stderr
    assert "warning: kept 1 passage(s) you wrote outside the discussion markers" in again.stdout
    after = report.read_text()
    assert "<!-- discussion Q8 -->\nThe loss turns up.\n<!-- end of discussion Q8 -->" in after
    kept = after.split("## Text kept from the previous version", 1)[1]
    assert "A note of mine under the title." in kept
    third = report_only(tmp_path, demo_dataset, out)  # nothing new: the same report, the note still once
    assert third.returncode == 0 and report.read_text() == after


@pytest.mark.parametrize("how", ["removed", "moved"])
def test_a_run_folder_removed_or_moved_during_training_stops_it(tmp_path, demo_dataset, how):
    """rm -rf or mv of the run folder after epoch 1: one line, exit 1, and no half run recreated at the old path."""
    args = ["train.py", "--dataset", str(demo_dataset), "--output-dir", str(tmp_path), "--name", "r", *TINY]
    process = subprocess.Popen([sys.executable, *args, "--epochs", "20"], cwd=ROOT, env=cpu_only(dict(os.environ)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("epoch   1/20"):
            shutil.rmtree(tmp_path / "r") if how == "removed" else (tmp_path / "r").rename(tmp_path / "r-old")
            break
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "the run folder was removed or moved away during training" in err and not (tmp_path / "r").exists()
    if how == "moved":  # the moved run is whole as of its first epoch, and resumes from there
        assert torch.load(tmp_path / "r-old" / "last.pth", weights_only=True)["epoch"] >= 1

"""train.py end to end as a subprocess on a tiny demo set, and its pieces in-process."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.annotations import Problems, read_rows
from model.checkpoint import Checkpoint
from model.engine import LearningRate
from model.files import is_temporary
from model.network import NETWORKS
from model.runs import CLOCK_COLUMNS, HISTORY_COLUMNS, improves

from conftest import ROOT, cpu_only, interrupt_training

TINY = ["--epochs", "2", "--image-size", "64", "--batch-size", "16"]


def train(script, dataset: Path, out: Path, *extra: str):
    return script("train.py", "--dataset", str(dataset), "--output-dir", str(out), *TINY, *extra)


@pytest.mark.parametrize("name", NETWORKS)
def test_every_model_trains_and_writes_every_file(tmp_path, demo_dataset, script, name):
    extra = ["--no-pretrained"] if name == "resnet" else []
    done = train(script, demo_dataset, tmp_path, "--model", name, "--name", name, *extra)
    assert done.returncode == 0, done.stderr
    run = tmp_path / name
    expected = {"best.pth", "last.pth", "history.csv", "convergence_plot.png", "config.json", "run.json"}
    assert expected | {"training_data.csv", "val_data.csv", "test_data.csv"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if is_temporary(p)]
    # one flushed line per epoch off a terminal, no progress-bar control codes
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "\x1b" not in done.stdout and "iou" in epoch_lines[0]
    history = list(csv.DictReader(Path(run / "history.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in history] == [1, 2]
    for column in HISTORY_COLUMNS[1:]:
        assert np.isfinite(float(history[0][column])), column
    checkpoint = torch.load(run / "best.pth", weights_only=True)
    assert checkpoint["model"]["name"] == name and checkpoint["classes"] == ["airplane", "face", "motorcycle"]
    assert checkpoint["image_size"] == 64 and checkpoint["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert checkpoint["splits"]["test"] == "test_data.csv"
    assert {"optimizer", "history", "best"} <= set(torch.load(run / "last.pth", weights_only=True))
    model = Checkpoint(run / "best.pth").build_model()
    logits, boxes = model(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, 3) and boxes.shape == (2, 4)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == name and "run" not in config  # the options alone: --config re-runs them
    facts = json.loads((run / "run.json").read_text())
    assert facts["classes"] == ["airplane", "face", "motorcycle"] and facts["dataset"] == str(demo_dataset.resolve())


def test_split_files_sizes_cuts_and_train_fraction(tmp_path, demo_dataset, script):
    cuts = ["--cut-val", "0.6", "--cut-test", "0.8", "--train-fraction", "0.5"]
    done = train(script, demo_dataset, tmp_path, *cuts, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    sizes = {
        name: len(read_rows(tmp_path / f"{name}.csv", Problems(skip=False)))
        for name in ("training_data", "val_data", "test_data")
    }
    # 45 rows: train int(0.6 * 45) = 27, halved per class; val 36 - 27 = 9; test 45 - 36 = 9
    assert sizes["val_data"] == 9 and sizes["test_data"] == 9 and 12 <= sizes["training_data"] <= 15
    all_rows = {r.key for name in sizes for r in read_rows(tmp_path / f"{name}.csv", Problems(skip=False))}
    assert len(all_rows) == sum(sizes.values())  # no image in two splits
    assert Checkpoint(tmp_path / "best.pth").data["splits"]["train"] == "training_data.csv"


def test_plot_is_drawn_with_both_curves(tmp_path, demo_dataset, script):
    assert train(script, demo_dataset, tmp_path).returncode == 0
    image = cv2.imread(str(tmp_path / "convergence_plot.png"))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 900
    blue = np.all(np.abs(image.astype(int) - (180, 119, 31)) < 30, axis=2).sum()  # matplotlib tab:blue (BGR)
    orange = np.all(np.abs(image.astype(int) - (14, 127, 255)) < 30, axis=2).sum()  # tab:orange
    assert blue > 200 and orange > 200  # train and validation curves are there
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_second_run_never_overwrites_the_first(tmp_path, demo_dataset, script):
    assert train(script, demo_dataset, tmp_path, "--epochs", "1").returncode == 0
    before = (tmp_path / "best.pth").read_bytes()
    again = train(script, demo_dataset, tmp_path, "--epochs", "1")
    assert again.returncode == 1 and "already holds a run" in again.stderr and "--name" in again.stderr
    assert (tmp_path / "best.pth").read_bytes() == before
    assert train(script, demo_dataset, tmp_path, "--epochs", "1", "--overwrite", "--seed", "3").returncode == 0
    assert (tmp_path / "best.pth").read_bytes() != before


def test_config_file_reruns_an_experiment(tmp_path, demo_dataset, script):
    first = train(script, demo_dataset, tmp_path, "--name", "a", "--dropout", "0", "--no-batchnorm", "--epochs", "1")
    assert first.returncode == 0
    rerun = script("train.py", "--config", str(tmp_path / "a" / "config.json"), "--name", "b")
    assert rerun.returncode == 0, rerun.stderr
    configs = [json.loads((tmp_path / n / "config.json").read_text()) for n in "ab"]
    a, b = ({k: v for k, v in c.items() if k not in ("run", "name")} for c in configs)
    assert a == b
    first_epochs = [(tmp_path / n / "history.csv").read_text().splitlines()[1].split(",")[1:6] for n in "ab"]
    assert first_epochs[0] == first_epochs[1]  # same seed, same numbers
    (tmp_path / "typo.json").write_text('{"epohcs": 3}')
    typo = script("train.py", "--config", str(tmp_path / "typo.json"))
    assert typo.returncode == 2 and "unknown option(s) epohcs" in typo.stderr


def test_diverging_loss_stops_with_a_message(tmp_path, demo_dataset, script):
    done = train(script, demo_dataset, tmp_path, "--optimizer", "sgd", "--lr", "1e6", "--epochs", "3")
    assert done.returncode == 1
    assert "the loss is not finite" in done.stderr and "lower --lr" in done.stderr
    assert not tmp_path.joinpath("best.pth").exists() and "nothing of this run was kept" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cut-val", "0.9", "--cut-test", "0.8"], "--cut-val 0.9 must be below --cut-test (0.8)"),
        (["--model", "alexnet"], "'alexnet' is not one of 'simple', 'deeper', 'vgg', 'resnet'"),
        (["--lr", "0"], "'--lr': 0.0 is not in the range 0.0<x<=1000000.0"),
        (["--fine-tune"], "--fine-tune does not apply with --model simple; drop it"),
        (["--no-box-head", "--box-loss", "giou"], "--box-loss does not apply with --no-box-head; drop it"),
        (["--seed", "9" * 23], f"'--seed': {'9' * 23} is not in the range 0<=x<=4294967295"),
        (["--dataset", "/nonexistent/data"], "--dataset /nonexistent/data: no images/ and annotations/ folders"),
        (["--device", "cuda"], "--device cuda: "),
        (["--image-size", "48"], "--image-size 48 is too small for --model simple (at least 64 px)"),
    ],
)
def test_bad_options_rejected_with_a_clear_message(tmp_path, script, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = script("train.py", "--output-dir", str(tmp_path), *args)
    assert done.returncode != 0 and message in done.stderr
    assert not list(tmp_path.iterdir())


def test_cosine_schedule_resumed_with_more_epochs_goes_on_to_zero(tmp_path, demo_dataset, script):
    """Epoch e of E trains at lr (1 + cos(pi (e - 1) / E)) / 2; --resume --epochs 6 re-plans over 6:
    it neither restarts from --lr nor sits at 0."""
    args = ["--dataset", str(demo_dataset), "--output-dir", str(tmp_path), "--image-size", "64"]
    args += ["--lr", "0.001", "--lr-schedule", "cosine"]
    assert script("train.py", *args, "--epochs", "3").returncode == 0
    resumed = script("train.py", "--resume", str(tmp_path / "last.pth"), "--epochs", "6")
    assert resumed.returncode == 0, resumed.stderr
    lrs = [float(row["lr"]) for row in csv.DictReader(Path(tmp_path / "history.csv").read_text().splitlines())]
    totals = [3] * 3 + [6] * 3
    planned = [0.001 * (1 + math.cos(math.pi * (e - 1) / total)) / 2 for e, total in zip(range(1, 7), totals)]
    assert lrs == pytest.approx(planned, rel=1e-6)
    assert 0.001 > lrs[3] > lrs[4] > lrs[5] > 0


def test_plateau_halves_after_three_epochs_without_a_lower_val_loss():
    schedule, lrs = LearningRate("plateau", 1.0, 20), list[float]()
    for loss in (1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.85, 0.85, 0.85, 0.85):
        lrs.append(schedule.at(len(lrs) + 1))
        schedule.observe(loss)
    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    restored = LearningRate("plateau", 1.0, 20)
    restored.load_state_dict(schedule.state_dict())
    assert restored.at(11) == schedule.at(11) == 0.25


def test_best_model_rule_breaks_ties_by_lower_loss():
    best = {"val_accuracy": 0.9, "val_loss": 0.5}
    assert improves(0.9, 0.4, best) and improves(0.95, 0.9, best) and improves(0.1, 9.0, None)
    assert not improves(0.9, 0.5, best) and not improves(0.9, 0.6, best) and not improves(0.85, 0.1, best)


def test_workers_capped_by_slurm_cpus_per_task(monkeypatch):
    from model.device import usable_cpus

    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    assert usable_cpus() == affinity
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert usable_cpus() == affinity


RESUMABLE = ["--epochs", "6", "--image-size", "64", "--batch-size", "4"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, demo_dataset, script) -> Path:
    out = tmp_path_factory.mktemp("straight")
    done = script("train.py", "--dataset", str(demo_dataset), "--output-dir", str(out), *RESUMABLE)
    assert done.returncode == 0, done.stderr
    return out


def comparable(history_csv: Path) -> list[list[str]]:
    """history.csv without the clock's columns (wall and CPU time differ between runs)."""
    rows = list(csv.reader(Path(history_csv).read_text().splitlines()))
    keep = [i for i, name in enumerate(rows[0]) if name not in CLOCK_COLUMNS]
    return [[row[i] for i in keep] for row in rows]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_signal_then_resume_equals_an_uninterrupted_run(tmp_path, demo_dataset, uninterrupted, signum, script):
    args = ["--dataset", str(demo_dataset), "--output-dir", str(tmp_path), *RESUMABLE]
    status, message, err = interrupt_training(args, after="epoch   2/6", signum=signum)  # while epoch 3 trains
    assert status == 128 + signum, err
    assert f"Interrupted by {signal.Signals(signum).name} during epoch 3" in message
    assert f"Resume with: python train.py --resume {tmp_path / 'last.pth'}" in message
    assert torch.load(tmp_path / "last.pth", weights_only=True)["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # nothing half-written
    resumed = script("train.py", "--resume", str(tmp_path / "last.pth"))  # no signal now: in this process
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(tmp_path / "history.csv") == comparable(uninterrupted / "history.csv")
    for name in ("best.pth", "last.pth"):
        mine, theirs = (torch.load(d / name, weights_only=True) for d in (tmp_path, uninterrupted))
        assert mine["epoch"] == theirs["epoch"]
        assert all(torch.equal(mine["state_dict"][k], theirs["state_dict"][k]) for k in mine["state_dict"])


def test_resume_refuses_other_options_and_finished_runs(tmp_path, uninterrupted, script):
    other = script("train.py", "--resume", str(uninterrupted / "last.pth"), "--lr", "0.1")
    allowed = "only --epochs, --device, --workers, --dataset, --precision, --compile may be given"
    assert other.returncode == 2 and allowed in other.stderr
    before = (uninterrupted / "last.pth").read_bytes()
    finished = script("train.py", "--resume", str(uninterrupted / "last.pth"))  # a resubmitted finished job
    assert finished.returncode == 0 and "has trained its 6 epochs; nothing to do" in finished.stdout
    assert (uninterrupted / "last.pth").read_bytes() == before
    config = str(uninterrupted / "config.json")
    with_config = script("train.py", "--resume", str(uninterrupted / "last.pth"), "--config", config)
    assert with_config.returncode == 2 and "--config and --resume do not go together" in with_config.stderr
    best = script("train.py", "--resume", str(uninterrupted / "best.pth"))
    assert best.returncode == 1 and "holds no training state" in best.stderr


def test_progress_bars_on_a_terminal(tmp_path, demo_dataset):
    """Under a real pseudo-terminal, rich draws a progress bar and still prints each epoch's line."""
    import pty

    leader, follower = pty.openpty()
    command = [sys.executable, "train.py", "--dataset", str(demo_dataset), "--output-dir", str(tmp_path), *TINY]
    environ = cpu_only({**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"})
    process = subprocess.Popen(command, cwd=ROOT, stdin=follower, stdout=follower, stderr=follower, env=environ)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=300) == 0
    output = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in output and "━" in output  # escape codes and bar characters: a live progress bar
    assert "epoch 2/2" in output  # the bar's description
    assert "epoch   2/2  train loss" in output  # the epoch summary line, printed above the bar

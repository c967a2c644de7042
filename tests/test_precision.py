"""Mixed precision, device-resident batches and --compile, on the CPU (the CUDA ones: test_cuda.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.annotations import Problems, class_names, read_annotations
from model.checkpoint import Checkpoint
from model.dataset import DetectionDataset
from model.device import cpu_has_native_bf16, resolve_precision
from model.engine import DeviceBatches, place_splits

from conftest import history, run_main, run_script, stored

TINY = ["--image-size", "64", "--batch-size", "8", "--cut-val", "0.6", "--cut-test", "0.8"]


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16_and_every_precision_resolves(tmp_path, monkeypatch):
    monkeypatch.delenv("CVPR_CPU_BF16", raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == ("bf16" if cpu_has_native_bf16() else "fp32")
    for flags, native in (
        ("fpu sse avx2 fma", False),
        ("fpu avx512f avx512_bf16 avx512_vnni", True),
        ("amx_bf16 amx_tile", True),
    ):
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags\t\t: {flags}\n")
        assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native, flags
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        precision = resolve_precision(name, cpu)
        with precision.autocast():
            out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
        assert out.dtype == dtype
        assert precision.grad_scaler().is_enabled() == (name == "fp16")  # only fp16 needs its loss scaled


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_records_itself_and_resumes_exactly(tmp_path, demo_dataset, script, precision):
    """fp16 keeps its gradient scaler's state in last.pth: 1 epoch, then 1 more after --resume, equal 2 epochs in
    one go."""
    common = ["--dataset", str(demo_dataset), *TINY, "--precision", precision]
    straight = script("train.py", *common, "--output-dir", str(tmp_path / "straight"), "--epochs", "2")
    assert straight.returncode == 0, straight.stderr
    assert f"computing in {precision} on cpu" in straight.stdout
    assert json.loads((tmp_path / "straight" / "run.json").read_text())["precision"] == precision
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["precision"] == precision
    half = script("train.py", *common, "--output-dir", str(tmp_path / "half"), "--epochs", "1")
    assert half.returncode == 0, half.stderr
    last = torch.load(tmp_path / "half" / "last.pth", weights_only=True)
    assert bool(last["scaler"]) == (precision == "fp16")  # the scale and its growth tracker
    resumed = script("train.py", "--resume", str(tmp_path / "half" / "last.pth"), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert history(tmp_path / "half") == history(tmp_path / "straight")
    for row in history(tmp_path / "straight"):
        assert all(value == value for value in row.values())  # no NaN


def test_eval_runs_in_the_precision_asked_for(trained_run, script, tmp_path):
    done = script(
        "eval.py", str(trained_run / "best.pth"), "--split", "test", "--precision", "bf16", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    fp32 = script("eval.py", str(trained_run / "best.pth"), "--split", "test", "--out", str(tmp_path / "fp32"))
    bf16_figures = stored(tmp_path)["overall"]
    fp32_figures = stored(tmp_path / "fp32")["overall"]
    assert fp32.returncode == 0 and bf16_figures["images"] == fp32_figures["images"]
    assert abs(bf16_figures["mean_iou"] - fp32_figures["mean_iou"]) < 0.05  # bf16 keeps 8 bits of mantissa


def split(demo_dataset: Path) -> DetectionDataset:
    rows = read_annotations(demo_dataset, Problems(skip=False))
    return DetectionDataset(demo_dataset, rows, class_names(rows), 32, Problems(skip=False))


def test_resident_and_streamed_batches_are_the_same_batches(demo_dataset):
    """The streamed path (synchronous copies: MPS's, or a device too small) against the resident one."""
    data = split(demo_dataset)
    cpu = torch.device("cpu")
    resident, streamed = DeviceBatches(data, cpu, resident=True), DeviceBatches(data, cpu, resident=False)
    orders = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    pairs = list(zip(resident.batches(7, orders[0]), streamed.batches(7, orders[1]), strict=True))
    assert len(pairs) == resident.num_batches(7) == 7  # 45 images: six batches of 7 and one of 3
    for a, b in pairs:
        for name in ("images", "labels", "boxes", "host_boxes"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert [b.resident for b in place_splits([data, data], cpu)] == [True, True]
    assert "in host memory" in resident.describe()


def test_compile_trains_like_eager(tmp_path, demo_dataset):
    """45 images cut 27 / 9 / 9, batches of 9: two graphs to compile (training and evaluation). A process of its own:
    inductor keeps what it compiled for the rest of a process."""
    common = [
        "--dataset",
        str(demo_dataset),
        "--image-size",
        "64",
        "--batch-size",
        "9",
        "--cut-val",
        "0.6",
        "--cut-test",
        "0.8",
        "--epochs",
        "2",
    ]
    compiled = run_script("train.py", *common, "--output-dir", str(tmp_path / "compiled"), "--compile")
    assert compiled.returncode == 0, compiled.stderr
    eager = run_main("train.py", *common, "--output-dir", str(tmp_path / "eager"))
    assert eager.returncode == 0, eager.stderr
    for a, b in zip(history(tmp_path / "compiled"), history(tmp_path / "eager"), strict=True):
        assert a == pytest.approx(b, rel=1e-3, abs=3e-4)  # fused kernels round differently (1.1e-4 seen, 1 thread)
    checkpoint = Checkpoint(tmp_path / "compiled" / "best.pth")  # the model itself, not the compiled wrapper
    assert checkpoint.build_model() is not None


def test_compile_where_it_cannot_is_a_one_line_error(tmp_path, demo_dataset):
    args = ["--dataset", str(demo_dataset), *TINY, "--epochs", "1", "--output-dir", str(tmp_path / "o"), "--compile"]
    done = run_script("train.py", *args, env={"CXX": "/bin/false"})  # inductor then finds no compiler
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "--compile: torch.compile cannot compile the model here (" in done.stderr
    assert "train without --compile" in done.stderr and not (tmp_path / "o").exists()

"""The CUDA paths, run where a GPU is visible (python -m pytest -m cuda); skipped elsewhere."""

from __future__ import annotations

import json

import pytest
import torch

from model.annotations import Problems, class_names, read_annotations
from model.dataset import DetectionDataset
from model.engine import DeviceBatches

from conftest import history, run_script, stored

pytestmark = pytest.mark.cuda

TINY = ["--image-size", "64", "--batch-size", "8", "--cut-val", "0.6", "--cut-test", "0.8"]


def gpu_script(*args: str, **options):
    """A script run with the GPU visible (the other tests hide it), deterministic kernels on."""
    return run_script(*args, gpu=True, env={"CVPR_DETERMINISTIC": "1"}, **options)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_training_on_the_gpu_in_each_precision(tmp_path, demo_dataset, precision):
    done = gpu_script(
        "train.py",
        "--dataset",
        str(demo_dataset),
        *TINY,
        "--epochs",
        "2",
        "--device",
        "cuda",
        "--precision",
        precision,
        "--output-dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "resident on cuda" in done.stdout  # 45 small images always fit
    facts = json.loads((tmp_path / "run.json").read_text())
    expected = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if precision == "auto" else precision
    assert facts["precision"] == expected and facts["device"].startswith("cuda")
    assert all(value == value for row in history(tmp_path) for value in row.values())


def test_resume_on_the_gpu_goes_on_as_if_never_stopped(tmp_path, demo_dataset):
    common = ["--dataset", str(demo_dataset), *TINY, "--device", "cuda", "--precision", "fp16"]
    assert gpu_script("train.py", *common, "--epochs", "4", "--output-dir", str(tmp_path / "straight")).returncode == 0
    assert gpu_script("train.py", *common, "--epochs", "2", "--output-dir", str(tmp_path / "half")).returncode == 0
    last = torch.load(tmp_path / "half" / "last.pth", weights_only=True)
    last["rng"]["cuda"] = [last["rng"]["cuda"][0]] * 4  # written on a node with 4 GPUs; this one has fewer
    torch.save(last, tmp_path / "half" / "last.pth")
    resumed = gpu_script("train.py", "--resume", str(tmp_path / "half" / "last.pth"), "--epochs", "4")
    assert resumed.returncode == 0, resumed.stderr
    for a, b in zip(history(tmp_path / "half"), history(tmp_path / "straight"), strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)  # cuDNN may pick other kernels between processes


def test_streamed_batches_from_pinned_memory_equal_resident_ones(demo_dataset):
    rows = read_annotations(demo_dataset, Problems(skip=False))
    data = DetectionDataset(demo_dataset, rows, class_names(rows), 32, Problems(skip=False))
    cuda = torch.device("cuda")
    resident, streamed = DeviceBatches(data, cuda, resident=True), DeviceBatches(data, cuda, resident=False)
    orders = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for a, b in zip(resident.batches(8, orders[0]), streamed.batches(8, orders[1]), strict=True):
        assert a.images.is_cuda and b.images.is_cuda
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.boxes, b.boxes)


def test_a_checkpoint_evaluates_on_the_other_device(tmp_path, demo_dataset, trained_run):
    """Trained on the CPU, evaluated on the GPU; trained on the GPU, evaluated on the CPU."""
    for run, folder in ((trained_run, tmp_path / "cpu-trained"), (tmp_path / "gpu", tmp_path / "gpu-trained")):
        if run != trained_run:
            done = gpu_script(
                "train.py",
                "--dataset",
                str(demo_dataset),
                *TINY,
                "--epochs",
                "1",
                "--device",
                "cuda",
                "--output-dir",
                str(run),
            )
            assert done.returncode == 0, done.stderr
        figures = {}
        for device in ("cpu", "cuda"):
            done = gpu_script(
                "eval.py",
                str(run / "best.pth"),
                "--split",
                "test",
                "--device",
                device,
                "--precision",
                "fp32",
                "--out",
                str(folder / device),
            )
            assert done.returncode == 0, done.stderr
            figures[device] = stored(folder / device)["overall"]
        assert figures["cpu"]["images"] == figures["cuda"]["images"]
        assert figures["cpu"]["mean_iou"] == pytest.approx(figures["cuda"]["mean_iou"], abs=1e-3)


@pytest.mark.parametrize("augment", ["off", "strong"])
def test_no_host_sync_per_batch(demo_dataset, augment):
    """A training pass's batches, augmentation, steps and running sums never make the host wait for the
    GPU (torch.cuda.set_sync_debug_mode raises at the first synchronising call)."""
    from model.augment import POLICIES, Augmenter
    from model.device import place_model, resolve_precision
    from model.engine import DetectionLoss, Totals, make_optimizer, train_step
    from model.network import build_model

    rows = read_annotations(demo_dataset, Problems(skip=False))
    data = DetectionDataset(demo_dataset, rows, class_names(rows), 64, Problems(skip=False))
    cuda = torch.device("cuda")
    batches = DeviceBatches(data, cuda, resident=True)
    model = place_model(build_model("simple", 3, image_size=64), cuda)
    optimizer = make_optimizer("adam", list(model.parameters()), 1e-4, 0.0, cuda)
    precision = resolve_precision("auto", cuda)
    scaler, loss_fn = precision.grad_scaler(), DetectionLoss()
    augmenter = Augmenter(POLICIES[augment], 0) if augment != "off" else None
    totals = Totals(cuda)
    warm = next(batches.batches(8))  # the first step initialises cuDNN and the optimizer's state
    train_step(
        model, batches.normalize(warm.images, True), warm.labels, warm.boxes, loss_fn, optimizer, precision, scaler
    )
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches.batches(8, torch.Generator().manual_seed(0)):
            if augmenter is None:
                x, boxes = batches.normalize(batch.images, True), batch.boxes
            else:
                x, boxes = augmenter(batch.images, batch.host_boxes, data.mean, data.std)
            losses, logits, pred = train_step(model, x, batch.labels, boxes, loss_fn, optimizer, precision, scaler)
            totals.add(losses, logits, pred, batch.labels, boxes)
    finally:
        torch.cuda.set_sync_debug_mode("default")

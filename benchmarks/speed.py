"""Where the time goes: compute-only vs the toolkit's real training pass vs the course template's
naive pipeline, inference throughput and latency, peak memory, and growth with dataset size.

    python -m benchmarks.speed                      # all four models, writes doc/benchmark.md
    python -m benchmarks.speed --models simple --repeats 5

Every figure is the median of --repeats runs, all measured in this one process on this machine.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import torch
from torch.utils.data import DataLoader, Dataset

from model import config, demo
from model.annotations import Problems, class_names, image_path, read_annotations, split_rows
from model.dataset import DetectionDataset
from model.engine import evaluate, to_device, train_one_epoch
from model.images import network_input, read_image_rgb
from model.losses import DetectionLoss
from model.network import MODEL_NAMES, build_model, model_options
from model.runtime import DEVICES, place_model, select_device, synchronize, usable_cpus, uses_channels_last


def median_time(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``function`` over ``repeats`` runs, after one warm-up run."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):  # Linux: "5" resets the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class NaiveDataset(Dataset):
    """The course template's way: decode and resize the image on every access."""

    def __init__(self, root: Path, rows, classes):
        self.root, self.rows, self.index = root, rows, {c: i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        image = read_image_rgb(image_path(self.root, row))
        assert image is not None, row.where
        h, w = image.shape[:2]
        x = network_input(image, config.IMAGE_SIZE)[0]
        box = torch.tensor([row.x1 / w, row.y1 / h, row.x2 / w, row.y2 / h], dtype=torch.float32)
        return x, self.index[row.label], box


def naive_epoch(model, train_loader, val_loader, loss_fn, optimizer, device) -> None:
    """Template epoch: a training pass, then in eval mode a second pass over the training split and
    a validation pass, decoding every image each time."""
    model.train()
    for x, labels, boxes in train_loader:
        x, labels, boxes = x.to(device), labels.to(device), boxes.to(device)
        logits, pred = model(x)
        loss = loss_fn(logits, pred, labels, boxes)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        for loader in (train_loader, val_loader):
            for x, labels, boxes in loader:
                x, labels, boxes = x.to(device), labels.to(device), boxes.to(device)
                loss_fn(*model(x), labels, boxes)


def benchmark_model(
    name: str, root: Path, rows: dict, classes, device, batch_size: int, batches: int, repeats: int, workers: int
) -> dict[str, float]:
    torch.manual_seed(0)
    # every network trained from scratch and fully (a frozen or pretrained backbone would time something else)
    model = build_model(name, len(classes), **model_options(name, pretrained=False, freeze=False))
    channels_last = uses_channels_last(device)
    model = place_model(model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = DetectionLoss()
    n_train = batch_size * batches
    train_rows, val_rows = rows["train"][:n_train], rows["val"][: max(batch_size, n_train // 8)]
    reset_peak_memory(device)
    train = DetectionDataset(root, train_rows, classes, config.IMAGE_SIZE, Problems(skip=False), workers)
    val = DetectionDataset(root, val_rows, classes, config.IMAGE_SIZE, Problems(skip=False), workers)
    generator = torch.Generator().manual_seed(0)

    # 1. compute only: batches already on the device, normalised, in the training layout
    ready = [
        (
            to_device(train.images[i : i + batch_size], train, device, channels_last),
            train.labels[i : i + batch_size].to(device),
            train.boxes[i : i + batch_size].to(device),
        )
        for i in range(0, len(train), batch_size)
    ]

    def compute_only() -> None:
        model.train()
        for x, labels, boxes in ready:
            logits, pred = model(x)
            loss = loss_fn(logits, pred, labels, boxes)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    # 2. the toolkit's training pass
    def toolkit_pass() -> None:
        train_one_epoch(model, train, loss_fn, optimizer, device, batch_size, generator, channels_last)

    def toolkit_epoch() -> None:
        toolkit_pass()
        evaluate(model, val, loss_fn, device, batch_size, channels_last)

    # 3. the template's pipeline: its memory format (plain NCHW), decoding on every access, and a
    # second no-grad pass over the training split each epoch (the same weights, copied)
    naive_model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    naive_optimizer = torch.optim.Adam(naive_model.parameters(), lr=1e-4)
    naive_train = DataLoader(
        NaiveDataset(root, train_rows, classes), batch_size=batch_size, shuffle=True, num_workers=0
    )
    naive_val = DataLoader(NaiveDataset(root, val_rows, classes), batch_size=batch_size, num_workers=0)

    def naive_pass() -> None:
        naive_model.train()
        for x, labels, boxes in naive_train:
            logits, pred = naive_model(x.to(device))
            loss = loss_fn(logits, pred, labels.to(device), boxes.to(device))[0]
            naive_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            naive_optimizer.step()

    # 4. inference: eval's batched path and predict's one-image path (preprocessing included)
    image = read_image_rgb(image_path(root, val_rows[0]))
    assert image is not None

    def single_image() -> None:
        with torch.no_grad():
            model.eval()
            model(network_input(image, config.IMAGE_SIZE, device))

    t_compute = median_time(compute_only, repeats, device)
    t_real = median_time(toolkit_pass, repeats, device)
    t_naive = median_time(naive_pass, repeats, device)
    t_epoch = median_time(toolkit_epoch, repeats, device)
    t_naive_epoch = median_time(
        lambda: naive_epoch(naive_model, naive_train, naive_val, loss_fn, naive_optimizer, device), repeats, device
    )
    t_infer = median_time(lambda: evaluate(model, val, loss_fn, device, 64, channels_last), repeats, device)
    t_single = median_time(single_image, max(repeats, 10), device)
    return {
        "compute": len(train) / t_compute,
        "real": len(train) / t_real,
        "naive": len(train) / t_naive,
        "epoch_s": t_epoch,
        "naive_epoch_s": t_naive_epoch,
        "infer": len(val) / t_infer,
        "single_ms": 1000 * t_single,
        "peak_mb": peak_memory_mb(device),
        "train_images": len(train),
        "val_images": len(val),
    }


def simple_epoch(model, train, val, loss_fn, optimizer, device, batch_size, generator) -> None:
    channels_last = uses_channels_last(device)
    train_one_epoch(model, train, loss_fn, optimizer, device, batch_size, generator, channels_last)
    evaluate(model, val, loss_fn, device, batch_size, channels_last)


def scaling(root_for: Callable[[int], Path], sizes: list[int], device, batch_size: int, workers: int) -> list[dict]:
    """Simple network: cache build time and size, and toolkit epoch time, per dataset size."""
    out = []
    for size in sizes:
        root = root_for(size)
        rows = read_annotations(root, Problems(skip=False))
        classes = class_names(rows)
        splits = split_rows(rows)
        reset_peak_memory(device)
        start = time.perf_counter()
        train = DetectionDataset(root, splits["train"], classes, config.IMAGE_SIZE, Problems(skip=False), workers)
        val = DetectionDataset(root, splits["val"], classes, config.IMAGE_SIZE, Problems(skip=False), workers)
        decode_s = time.perf_counter() - start
        torch.manual_seed(0)
        model = build_model("simple", len(classes))
        model = place_model(model, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = DetectionLoss()
        generator = torch.Generator().manual_seed(0)

        seconds = median_time(
            functools.partial(simple_epoch, model, train, val, loss_fn, optimizer, device, batch_size, generator),
            1,
            device,
        )
        cache_mb = (train.images.numel() + val.images.numel()) / 2**20
        out.append(
            {
                "images": size,
                "decode_s": decode_s,
                "cache_mb": cache_mb,
                "epoch_s": seconds,
                "peak_mb": peak_memory_mb(device),
            }
        )
    return out


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    return (
        f"{cpu}, {usable_cpus()} cores"
        f"{gpu}; torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}; "
        f"Python {platform.python_version()}"
    )


@click.command(context_settings={"show_default": True})
@click.option("--models", default=",".join(MODEL_NAMES), help="Comma-separated models.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option(
    "--batches",
    type=click.IntRange(min=1),
    default=None,
    help="Training batches per measured pass  [default: 15; 1 for the larger models on a CPU]",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Runs per figure; the median is kept.")
@click.option("--scale/--no-scale", default=True, help="Also measure 0.5x, 1x, 2x the demo set (Simple).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("doc/benchmark.md"))
def main(models, device, batch_size, batches, repeats, scale, out) -> None:
    """Benchmark training and inference of the four models on the demo set at 224 px."""
    torch_device = select_device(device)
    workers = usable_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        roots: dict[int, Path] = {}

        def root_for(size: int) -> Path:
            if size not in roots:
                roots[size] = demo.generate(Path(tmp) / f"demo{size}", size, config.DEMO_SEED)
            return roots[size]

        root = root_for(config.DEMO_IMAGES)
        rows = read_annotations(root, Problems(skip=False))
        classes = class_names(rows)
        splits = split_rows(rows)
        results = {}
        for name in [m.strip() for m in models.split(",") if m.strip()]:
            n = batches or (15 if name == "simple" or torch_device.type != "cpu" else 1)
            click.echo(f"{name}: {n} batches of {batch_size}, median of {repeats}...", err=True)
            results[name] = benchmark_model(name, root, splits, classes, torch_device, batch_size, n, repeats, workers)
        growth = (
            scaling(
                root_for,
                [config.DEMO_IMAGES // 2, config.DEMO_IMAGES, config.DEMO_IMAGES * 2],
                torch_device,
                batch_size,
                workers,
            )
            if scale
            else []
        )
    text = render(results, growth, machine(torch_device), batch_size, repeats)
    click.echo(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"Wrote {out}", err=True)


def render(results: dict, growth: list[dict], description: str, batch_size: int, repeats: int) -> str:
    lines = [
        "# Benchmark",
        "",
        f"Machine: {description}.",
        "",
        f"Demo set at {config.IMAGE_SIZE} px, batch {batch_size}, median of {repeats} runs after a warm-up. "
        "Throughputs in images per second. (1) compute only: forward, backward and optimizer step on batches "
        "already on the device, normalised, channels-last; (2) the toolkit's training pass "
        "(`train_one_epoch` from the uint8 cache); (3) the course template's pipeline: decode and resize on "
        "every access, plain NCHW memory format as in the template. Epochs: training pass and validation pass "
        "(toolkit) against training pass, second no-grad pass over the training split and validation pass, decoding "
        "every time (template).",
        "",
        "| model | train images | (1) compute | (2) toolkit | 2/1 | (3) naive | 2/3 | epoch s toolkit | "
        "epoch s naive | epoch speed-up | inference img/s | single image ms | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['train_images']} | {r['compute']:.1f} | {r['real']:.1f} | "
            f"{r['real'] / r['compute']:.2f} | {r['naive']:.1f} | {r['real'] / r['naive']:.2f} | "
            f"{r['epoch_s']:.2f} | {r['naive_epoch_s']:.2f} | {r['naive_epoch_s'] / r['epoch_s']:.2f} | "
            f"{r['infer']:.1f} | {r['single_ms']:.1f} | {r['peak_mb']:.0f} |"
        )
    if growth:
        lines += [
            "",
            "Growth with dataset size (Simple network, train + validation splits decoded, one epoch):",
            "",
            "| demo images | decode s | cache MB | epoch s | peak MB |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {g['images']} | {g['decode_s']:.2f} | {g['cache_mb']:.0f} | {g['epoch_s']:.2f} | {g['peak_mb']:.0f} |"
            for g in growth
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

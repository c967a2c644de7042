"""Where the time goes: compute only vs the toolkit's real training pass vs the course template's
pipeline, inference throughput and latency, and peak memory, in fp32 and in mixed precision.

    python -m benchmarks.speed                          # CPU: the demo set, writes doc/benchmark.md
    python -m benchmarks.speed --device cuda            # GPU: a course-sized set, writes doc/benchmark-gpu.md
    python -m benchmarks.speed --models simple --repeats 5 --precisions fp32

Every figure is the median of --repeats runs after a warm-up, all measured in this one process.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import torch
from torch.utils.data import DataLoader, Dataset

from model import config, demo
from model.annotations import (
    Annotation,
    Problems,
    class_names,
    image_path,
    read_annotations,
    read_rows,
    split_rows,
)
from model.augment import POLICIES, Augmenter
from model.dataset import DetectionDataset
from model.device import (
    DEVICES,
    Precision,
    channels_last,
    keep_freed_memory,
    place_model,
    prepare_device,
    resolve_precision,
    select_device,
    synchronize,
    usable_cpus,
)
from model.engine import (
    Compute,
    DetectionLoss,
    DeviceBatches,
    evaluate,
    make_optimizer,
    place_splits,
    train_one_epoch,
    train_step,
)
from model.files import is_dataset
from model.images import decode_image, network_input
from model.network import NETWORKS, Detector, build_model
from model.options import TrainOptions

BEGIN, END = "<!-- benchmark: python -m benchmarks.speed -->", "<!-- end of benchmark -->"
COURSE_SPLITS = Path(__file__).resolve().parent.parent / "tests" / "data" / "course-splits"


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


@contextlib.contextmanager
def peak_memory(device: torch.device, into: dict[str, float]) -> Iterator[None]:
    """Peak memory (MB) of the block: allocated on the GPU, or the process's resident set on the CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):  # Linux: "5" resets the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
    yield
    if device.type == "cuda":
        into["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                into["peak_mb"] = int(line.split()[1]) / 1024


class TemplateDataset(Dataset):
    """The course template's way: decode and resize the image on every access (in a DataLoader worker)."""

    def __init__(self, root: Path, rows: list[Annotation], classes: list[str]):
        self.root, self.rows, self.index = root, rows, {c: i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        row = self.rows[i]
        image = decode_image(image_path(self.root, row))[0]
        assert image is not None, row.where
        h, w = image.shape[:2]
        box = torch.tensor([row.x1 / w, row.y1 / h, row.x2 / w, row.y2 / h], dtype=torch.float32)
        x = network_input(image, config.IMAGE_SIZE, "cpu", config.IMAGENET_MEAN, config.IMAGENET_STD)[0]
        return x, self.index[row.label], box


@dataclass
class Setting:
    """One model in one precision on one device, with its data."""

    name: str
    device: torch.device
    precision: Precision
    batch_size: int
    train: DetectionDataset
    val: DetectionDataset
    workers: int
    resident: bool | None = None  # None: as training decides (resident when the splits fit); False: streamed


def bench_options(name: str) -> dict:
    """The constructor options of network ``name`` from scratch, every layer trained (a frozen or pretrained
    backbone would time something else)."""
    scratch: dict[str, Any] = {"pretrained": False, "freeze": False} if "pretrained" in NETWORKS[name].options() else {}
    return TrainOptions(model=name, **scratch).network_options


def run_setting(s: Setting, repeats: int) -> dict[str, float]:
    """Every figure of one model in one precision."""
    torch.manual_seed(0)
    # every network from scratch and fully trained: a frozen or pretrained backbone would time something else
    model: Detector = place_model(build_model(s.name, 3, **bench_options(s.name)), s.device)
    optimizer = make_optimizer("adam", list(model.parameters()), 1e-4, 0.0, s.device)
    scaler = s.precision.grad_scaler()
    loss_fn = DetectionLoss()
    generator = torch.Generator().manual_seed(0)
    compute = Compute(s.batch_size, s.precision, channels_last(s.device))
    figures: dict[str, float] = {}
    with peak_memory(s.device, figures):
        if s.resident is None:
            train, val = place_splits([s.train, s.val], s.device)
        else:
            train, val = (DeviceBatches(d, s.device, resident=s.resident) for d in (s.train, s.val))
        figures["resident"] = float(train.resident)

        # 1. compute only: batches already on the device, normalised, in the toolkit's layout
        ready = [
            (train.normalize(b.images, compute.channels_last), b.labels, b.boxes) for b in train.batches(s.batch_size)
        ]

        def compute_only() -> None:
            model.train()
            for x, labels, boxes in ready:
                train_step(model, x, labels, boxes, loss_fn, optimizer, s.precision, scaler)

        # 2. the toolkit's training pass and epoch (training pass and validation pass)
        def toolkit_pass() -> None:
            train_one_epoch(model, train, loss_fn, optimizer, scaler, generator, compute)

        def toolkit_epoch() -> None:
            toolkit_pass()
            evaluate(model, val, loss_fn, compute)

        figures["compute"] = len(train) / median_time(compute_only, repeats, s.device)
        figures["real"] = len(train) / median_time(toolkit_pass, repeats, s.device)
        figures["epoch_s"] = median_time(toolkit_epoch, repeats, s.device)
        # --train-eval sample: the training figures in evaluation mode, on as many images as validation has
        figures["train_eval_share"] = (
            median_time(lambda: evaluate(model, val, loss_fn, compute), repeats, s.device) / figures["epoch_s"]
        )
        figures["infer"] = len(val) / median_time(
            lambda: evaluate(model, val, loss_fn, replace(compute, batch_size=64)), repeats, s.device
        )
        figures.update(augment_costs(s, train, figures["real"], repeats))
    figures.update(template_figures(s, model, loss_fn, repeats))
    figures["single_ms"] = 1000 * single_image_latency(s, model, repeats)
    figures.update(train_images=len(s.train), val_images=len(s.val))
    return figures


def augment_costs(s: Setting, train: DeviceBatches, real: float, repeats: int) -> dict[str, float]:
    """--augment light and strong: milliseconds per batch, and the share of the toolkit's training pass."""
    figures = {}
    for policy in ("light", "strong"):
        augmenter = Augmenter(POLICIES[policy], seed=0)

        def augment_pass(augmenter: Augmenter = augmenter) -> None:
            for b in train.batches(s.batch_size):
                augmenter(b.images, b.host_boxes, s.train.mean, s.train.std)

        seconds = median_time(augment_pass, repeats, s.device)
        figures[f"augment_{policy}_share"] = seconds / (len(train) / real)
        figures[f"augment_{policy}_ms"] = 1000 * seconds / train.num_batches(s.batch_size)
    return figures


def template_figures(s: Setting, model: Detector, loss_fn: DetectionLoss, repeats: int) -> dict[str, float]:
    """The course template's pipeline on the same weights: plain NCHW, a DataLoader decoding every
    image on access (its workers: the CPUs on CUDA, 2 elsewhere), and, each epoch, a second no-grad
    pass over the training split besides the validation pass."""
    template = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    optimizer = torch.optim.Adam(template.parameters(), lr=1e-4)
    scaler = s.precision.grad_scaler()
    workers = s.workers if s.device.type == "cuda" else 2
    pin = s.device.type == "cuda"

    def loader(dataset: DetectionDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            TemplateDataset(dataset.root, dataset.rows, dataset.classes),
            batch_size=s.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )

    train_loader, val_loader = loader(s.train, True), loader(s.val, False)

    def step(x: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor, learn: bool) -> None:
        x, labels, boxes = x.to(s.device), labels.to(s.device), boxes.to(s.device)
        with s.precision.autocast():
            logits, pred = template(x)
        loss = loss_fn(logits, pred, labels, boxes)[0]
        if learn:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def template_pass() -> None:
        template.train()
        for x, labels, boxes in train_loader:
            step(x, labels, boxes, learn=True)

    def template_epoch() -> None:
        template_pass()
        template.eval()
        with torch.no_grad():
            for batches in (train_loader, val_loader):
                for x, labels, boxes in batches:
                    step(x, labels, boxes, learn=False)

    keep_freed_memory(False)  # as the template's process allocates (model/device.py)
    try:
        return {
            "template": len(s.train) / median_time(template_pass, repeats, s.device),
            "template_epoch_s": median_time(template_epoch, repeats, s.device),
        }
    finally:
        if s.device.type == "cpu":
            keep_freed_memory(True)


def single_image_latency(s: Setting, model: Detector, repeats: int) -> float:
    """predict.py's path: one image decoded, resized, normalised and run."""
    image = decode_image(image_path(s.val.root, s.val.rows[0]))[0]
    assert image is not None

    def one() -> None:
        model.eval()
        with torch.no_grad(), s.precision.autocast():
            model(network_input(image, config.IMAGE_SIZE, s.device, config.IMAGENET_MEAN, config.IMAGENET_STD))

    return median_time(one, max(repeats, 10), s.device)


def course_sized_rows() -> list[tuple[str, float, float, float, float, str]]:
    """The course's 2,033 rows and boxes (tests/data/course-splits), for a dataset of its size."""
    problems = Problems(skip=False)
    return [
        (r.filename, *r.box, r.label)
        for f in config.SPLIT_FILES.values()
        for r in read_rows(COURSE_SPLITS / f, problems)
    ]


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    gpu = ""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        gpu = f", GPU {properties.name} ({properties.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return (
        f"{cpu}, {usable_cpus()} cores{gpu}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"device {device}; Python {platform.python_version()}"
    )


@click.command(context_settings={"show_default": True})
@click.option("--models", default=",".join(NETWORKS), help="Comma-separated models.")
@click.option("--device", default="auto", type=click.Choice(DEVICES))
@click.option("--precisions", default="fp32,auto", help="Comma-separated --precision values to measure.")
@click.option(
    "--images",
    type=click.Choice(["course", "demo"]),
    default=None,
    help="course: the course's 2,033 rows (1,626 train + 203 val); demo: 600 demo images  "
    "[default: course on a GPU, demo on a CPU]",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option(
    "--batches",
    type=click.IntRange(min=1),
    default=None,
    help="Training batches per measured pass  [default: all on a GPU; on a CPU 15, 1 for the larger models]",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Runs per figure; the median is kept.")
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A dataset folder to measure on instead of generating --images' set.",
)
@click.option("--streamed", is_flag=True, help="On a GPU, also measure the streamed path (batches from pinned memory).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="[default: doc/benchmark-gpu.md on CUDA, doc/benchmark.md elsewhere]",
)
def main(
    models: str,
    device: str,
    precisions: str,
    images: str | None,
    batch_size: int,
    batches: int | None,
    repeats: int,
    dataset: Path | None,
    streamed: bool,
    out: Path | None,
) -> None:
    """Benchmark training and inference of the four models at 224 px."""
    torch_device = select_device(device)
    prepare_device(torch_device)  # as training prepares it (cuDNN's autotuner; the CPU's allocator)
    on_gpu = torch_device.type != "cpu"
    images = images or ("course" if on_gpu else "demo")
    out = out or Path("doc/benchmark-gpu.md" if torch_device.type == "cuda" else "doc/benchmark.md")
    paths = [None, False] if streamed and on_gpu else [None]
    results: dict[tuple[str, str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, train, val in benchmark_splits(dataset or Path(tmp), images, models, batch_size, batches, on_gpu):
            for precision_name in dict.fromkeys(p.strip() for p in precisions.split(",")):
                precision = resolve_precision(precision_name, torch_device)
                for resident in paths:
                    key = (name, precision.name, "streamed" if resident is False else "as trained")
                    if key in results:
                        continue  # auto resolved to one already measured (fp32 on a CPU)
                    click.echo(f"{' '.join(key)}: {len(train)} training images, median of {repeats}...", err=True)
                    setting = Setting(name, torch_device, precision, batch_size, train, val, usable_cpus(), resident)
                    results[key] = run_setting(setting, repeats)
    text = render(results, machine(torch_device), images, batch_size, repeats)
    click.echo(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_section(out, BEGIN, END, text)
    click.echo(f"Wrote {out}", err=True)


def write_section(path: Path, begin: str, end: str, section: str) -> None:
    """The section between ``begin`` and ``end`` of ``path`` replaced (or added at the end, with them);
    the rest of the file (another command's section) kept as it is."""
    section = section if section.startswith(begin) else f"{begin}\n{section.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text, encoding="utf-8")


def benchmark_splits(
    folder: Path, images: str, models: str, batch_size: int, batches: int | None, on_gpu: bool
) -> Iterator[tuple[str, DetectionDataset, DetectionDataset]]:
    """Each model's training and validation splits (a part of them on a CPU, where a pass is slow)."""
    if is_dataset(folder):
        root = folder
    elif images == "course":
        root = demo.generate(folder / "course", seed=config.DEMO_SEED, rows=course_sized_rows())
    else:
        root = demo.generate(folder / "demo", config.DEMO_IMAGES, config.DEMO_SEED)
    rows = read_annotations(root, Problems(skip=False))
    classes = class_names(rows)
    splits = split_rows(rows)
    for name in [m.strip() for m in models.split(",") if m.strip()]:
        n = batches or (None if on_gpu else 15 if name == "simple" else 1)
        train_rows = splits["train"][: n * batch_size] if n else splits["train"]
        val_rows = splits["val"][: max(batch_size, len(train_rows) // 8)] if n else splits["val"]
        problems = Problems(skip=False)
        train = DetectionDataset(root, train_rows, classes, config.IMAGE_SIZE, problems, usable_cpus())
        val = DetectionDataset(root, val_rows, classes, config.IMAGE_SIZE, problems, usable_cpus())
        yield name, train, val


def render(
    results: dict[tuple[str, str, str], dict[str, float]], description: str, images: str, batch_size: int, repeats: int
) -> str:
    lines = [
        "# Benchmark" + (" (GPU)" if "GPU" in description else ""),
        "",
        f"Machine: {description}.",
        "",
        f"{'The course-sized set (the course 2,033 rows, drawn images)' if images == 'course' else 'The demo set'} "
        f"at {config.IMAGE_SIZE} px, batch {batch_size}, median of {repeats} runs after a warm-up; throughputs in "
        "training images per second. (1) compute only: forward, backward and optimizer step on batches already on "
        "the device, normalised, in the toolkit's layout; (2) the toolkit's training pass (`train_one_epoch` from "
        "the decoded uint8 split, resident on the device when it fits, or streamed from pinned memory); (3) the "
        "course template's pipeline: a DataLoader decoding and resizing every image on access, plain NCHW. Epochs: "
        "the toolkit's training and validation passes, against the template's training pass, second no-grad pass "
        "over the training split and validation pass. Train-eval: the training figures in evaluation mode "
        "(`--train-eval sample`, as many training images as the validation split holds), as a share of the epoch. "
        "Augmentation: the time of `--augment light` / `strong` per batch of the pass, and its share of the "
        "toolkit's training pass. Peak memory: allocated on the GPU, resident set on the CPU.",
        "",
        "| model | precision | batches | train images | (1) compute | (2) toolkit | 2/1 | (3) template | 2/3 "
        "| epoch s toolkit | epoch s template | epoch speed-up | train-eval share | inference img/s | single image ms "
        "| augment light ms (share) | augment strong ms (share) | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, precision, _path), r in results.items():
        path = "resident" if r["resident"] else "streamed"
        lines.append(
            f"| {name} | {precision} | {path} | {r['train_images']:.0f} | {r['compute']:.1f} | {r['real']:.1f} | "
            f"{r['real'] / r['compute']:.2f} | {r['template']:.1f} | {r['real'] / r['template']:.2f} | "
            f"{r['epoch_s']:.2f} | {r['template_epoch_s']:.2f} | {r['template_epoch_s'] / r['epoch_s']:.2f} | "
            f"{100 * r['train_eval_share']:.1f} % | {r['infer']:.1f} | {r['single_ms']:.1f} | "
            f"{r['augment_light_ms']:.1f} ({100 * r['augment_light_share']:.1f} %) | {r['augment_strong_ms']:.1f} "
            f"({100 * r['augment_strong_share']:.1f} %) | {r.get('peak_mb', float('nan')):.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

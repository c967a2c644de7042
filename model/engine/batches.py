"""A split's batches on the device that computes them.

    images  (B, 3, S, S) uint8 RGB on the device (normalised there by the loops)
    labels  (B,) int64, boxes (B, 4) float32 xyxy in [0, 1], on the device

Two paths, chosen once per run and named in its first lines:
- resident: the whole split is copied to the device once (about 300 MB for the course set at
  224 px); each batch is then gathered there, with no host work per batch. On the CPU the host
  tensors are the device's own: training takes this path, with no copy.
- streamed: when the split does not fit in the device's free memory, each batch is gathered on
  the host into a page-locked (pinned) buffer and copied asynchronously on a side stream, the next
  batch being prepared while the current one computes (CUDA); on MPS the copies are synchronous,
  from the gathered batch, since MPS is known to read pageable memory wrongly when asked to copy
  asynchronously.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from model.dataset import DetectionDataset

DEVICE_SHARE = 0.5  # the training splits are made resident only while they take at most this share of free memory


@dataclass
class Batch:
    indices: torch.Tensor  # (B,) positions in the split, on the CPU
    images: torch.Tensor  # (B, 3, S, S) uint8 on the device
    labels: torch.Tensor  # (B,) int64 on the device
    boxes: torch.Tensor  # (B, 4) float32 on the device
    host_boxes: torch.Tensor  # (B, 4) float32, the same boxes on the CPU (augmentation draws from them)

    def boxes_on_host(self) -> torch.Tensor:
        return self.host_boxes


def copies_asynchronously(tensor: torch.Tensor, device: torch.device) -> bool:
    """Whether a copy of ``tensor`` to ``device`` may be asynchronous: only from page-locked host
    memory to CUDA, the one case where that is both safe and useful (MPS is known to read pageable
    temporaries wrongly when asked to copy them asynchronously)."""
    return device.type == "cuda" and tensor.device.type == "cpu" and tensor.is_pinned()


def free_device_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate; None for the CPU (its memory is the host's)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    free = free_device_memory(device)
    return free is None or nbytes <= DEVICE_SHARE * free


class DeviceBatches:
    """The batches of one split on ``device``, resident or streamed (see the module's docstring)."""

    def __init__(self, dataset: DetectionDataset, device: torch.device, resident: bool = True):
        self.dataset, self.device = dataset, device
        self.resident = resident
        self.labels = dataset.labels.to(device)  # small: always on the device
        self.boxes = dataset.boxes.to(device)
        # the normalisation's constants, on the device once (a tensor made from Python numbers per batch
        # would be a host-to-device copy, and a wait, per batch)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(dataset.mean, dtype=torch.float32).view(shape).mul(255.0).to(device)
        self._std = torch.tensor(dataset.std, dtype=torch.float32).view(shape).mul(255.0).to(device)
        self.images: torch.Tensor | None = None
        if self.resident and device.type != "cpu":
            self.images = dataset.images.to(device)
        self._staging: list[torch.Tensor] = []  # pinned host buffers of the streamed path (CUDA)
        self._copied: list[torch.cuda.Event] = []
        self._stream: torch.cuda.Stream | None = None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 RGB on the device -> float32, normalised with the dataset's mean and std."""
        return (images.float() - self._mean) / self._std

    @property
    def nbytes(self) -> int:
        return self.dataset.images_nbytes

    def __len__(self) -> int:
        return len(self.dataset)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """The split in batches, in random order (drawn from ``generator``, on the CPU whatever the
        device, so that a run's order does not depend on where it trains) or in order."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        chunks = [order[start : start + batch_size] for start in range(0, len(self), batch_size)]
        if self.resident:
            on_device = order.to(self.device)  # once per epoch: the batches are sliced from it on the device
            for start, indices in zip(range(0, len(self), batch_size), chunks):
                yield self._resident(indices, on_device[start : start + batch_size])
        elif self.device.type == "cuda":
            yield from self._streamed_cuda(chunks, batch_size)
        else:
            for indices in chunks:
                gathered = self.dataset.gather(indices)  # a pageable temporary: copied synchronously
                images = gathered.to(self.device, non_blocking=copies_asynchronously(gathered, self.device))
                yield Batch(indices, images, *self._targets(indices))

    def _targets(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        on_device = indices.to(self.device, non_blocking=self.device.type == "cuda")
        return self.labels[on_device], self.boxes[on_device], self.dataset.boxes[indices]

    def _resident(self, indices: torch.Tensor, on_device: torch.Tensor) -> Batch:
        host_boxes = self.dataset.boxes[indices]
        if self.images is None:  # the CPU: the dataset's tensors are the device's
            return Batch(indices, self.dataset.gather(indices), self.labels[indices], self.boxes[indices], host_boxes)
        return Batch(indices, self.images[on_device], self.labels[on_device], self.boxes[on_device], host_boxes)

    def _streamed_cuda(self, chunks: list[torch.Tensor], batch_size: int) -> Iterator[Batch]:
        """Batch i+1 is gathered into a pinned buffer and its copy started before batch i is handed
        out, so the host work and the copy overlap batch i's compute; two buffers alternate."""
        if not self._staging or len(self._staging[0]) < batch_size:
            shape = (batch_size, *self.dataset.image_shape)
            self._staging = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
            self._copied = [torch.cuda.Event() for _ in range(2)]
            self._stream = torch.cuda.Stream(self.device)
        pending: tuple[Batch, torch.cuda.Event] | None = None
        for number, indices in enumerate(chunks):
            slot = number % 2
            self._copied[slot].synchronize()  # the buffer's previous copy is done: it may be overwritten
            buffer = self._staging[slot][: len(indices)]
            self.dataset.gather_into(indices, buffer)
            with torch.cuda.stream(self._stream):
                images = buffer.to(self.device, non_blocking=copies_asynchronously(buffer, self.device))
                self._copied[slot].record()
            staged = (Batch(indices, images, *self._targets(indices)), self._copied[slot])
            if pending is not None:
                yield self._ready(*pending)
            pending = staged
        if pending is not None:
            yield self._ready(*pending)

    def _ready(self, batch: Batch, copied: torch.cuda.Event) -> Batch:
        """Make the compute stream wait for the batch's own copy, and keep its memory until it is used."""
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        batch.images.record_stream(current)
        return batch

    def describe(self) -> str:
        size = f"{self.nbytes / 2**20:.0f} MB"
        if self.resident:
            return (
                f"in host memory, the CPU's own ({size})"
                if self.device.type == "cpu"
                else f"resident on {self.device} ({size}, copied once)"
            )
        how = "pinned host memory, asynchronous copies" if self.device.type == "cuda" else "host memory"
        return f"streamed from {how} ({size}: more than the free {self.device} memory allows)"


def place_splits(datasets: list[DetectionDataset], device: torch.device) -> list[DeviceBatches]:
    """The splits' batches on ``device``: all resident when together they fit, else all streamed."""
    resident = fits_on_device(sum(d.images_nbytes for d in datasets), device)
    return [DeviceBatches(d, device, resident) for d in datasets]

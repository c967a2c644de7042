"""Where code runs: device choice, worker count, Slurm facts, terminal or log output."""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from model.core import env
from model.core.errors import UserError
from model.core.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")

DEVICES = ("auto", "cpu", "cuda", "mps")
ModelT = TypeVar("ModelT", bound="torch.nn.Module")


class DeviceError(UserError):
    """The device asked for is not there."""


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit device that is not there raises DeviceError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is visible (use --device auto or cpu)")
    if name == "mps" and not mps_available():
        raise DeviceError("--device mps: Apple's MPS backend is not available here (use --device auto or cpu)")
    return torch.device(name)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by Slurm's --cpus-per-task.

    Slurm may grant more CPUs in its bookkeeping than the process's affinity allows, and the
    affinity may be wider than the job's share; the smaller one is right.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    slurm = env.slurm_cpus()
    return max(1, min(cpus, slurm) if slurm else cpus)


def slurm_facts() -> dict[str, str]:
    """Slurm job id and node when running inside a job, else {}."""
    job = env.slurm_job()
    return {"job_id": job["job_id"], "node": job.get("node", socket.gethostname())} if job else {}


def synchronize(device: torch.device) -> None:
    """Wait for the accelerator's queued work, so that a timer measures it (CUDA and MPS)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device``: on CUDA through page-locked memory, asynchronously (a copy from
    pageable memory would make the host wait for the GPU)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def keep_freed_memory(keep: bool = True) -> None:
    """On Linux (glibc), serve the large activation buffers of a CPU training step from the heap and keep
    them when freed ($CVPR_KEEP_MEMORY=0 turns it off).

    A batch's activations (about 200 MB each at 224 px, batch 32) are above glibc's mmap threshold, so each
    is mapped afresh and every page faulted in and zeroed by the kernel: about half of a CPU epoch went
    there (doc/benchmark.md, "Where a CPU epoch's time goes"). Kept, the next batch reuses them: the same
    numbers, about twice as fast; the process keeps its peak memory until it exits.
    """
    if not env.keep_memory() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, 0 if keep else 65536)  # keep=False: glibc's defaults (the benchmark's template pipeline)
    mallopt(m_trim_threshold, 2**31 - 1 if keep else 128 * 1024)


def prepare_device(device: torch.device) -> None:
    """cuDNN's autotuner on CUDA (fixed input size: it picks the fastest kernels), TF32 off for float32
    matrix products so that fp32 means fp32; both replaced by deterministic kernels with
    $CVPR_DETERMINISTIC=1, where a resumed run must equal an uninterrupted one bit for bit."""
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not env.deterministic()
        torch.backends.cudnn.deterministic = env.deterministic()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def uses_channels_last(device: torch.device) -> bool:
    """Channels-last convolutions are about 2x faster on CPU (oneDNN) and use tensor cores on CUDA."""
    return device.type in ("cpu", "cuda")


def place_model(model: ModelT, device: torch.device) -> ModelT:
    """The model on ``device``, in the memory layout its convolutions run fastest in there."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if uses_channels_last(device) else model


class Reporter:
    """Rich progress bars on a terminal; one flushed plain line per message otherwise (srun, CI)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._progress = None

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def progress(self):
        """Yields ``start(description, total) -> advance()``; nothing is drawn off a terminal."""
        if not self.interactive:
            yield lambda description, total: lambda: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        task = progress.add_task("", total=1)

        def start(description: str, total: int):
            progress.reset(task, description=description, total=total)
            return lambda: progress.advance(task)

        progress.start()
        self._progress = progress
        try:
            yield start
        finally:
            progress.stop()
            self._progress = None


class Interrupted(Exception):
    """A stop was requested by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Turns SIGINT (Ctrl-C), SIGTERM (preemption, scancel) and SIGUSR1 (Slurm's warning before the
    time limit, with ``--signal=USR1@120``) into a request that ``check()`` raises as Interrupted
    at the next safe point. A second Ctrl-C stops at once."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, _frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopOnSignal:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

"""Where and how a network computes: the device, its precision, the CPU threads, and a run's terminal output
and stop signals.

    fp32  no autocast
    bf16  autocast to bfloat16 (float32's range: no loss scaling needed)
    fp16  autocast to float16, with a gradient scaler so that small gradients do not flush to 0
    auto  bf16 on a CUDA GPU that has it, else fp16 there; bf16 on a CPU with native bfloat16 instructions (AMX,
          AVX-512 BF16: about twice as fast), fp32 on other CPUs (bf16 emulated: 2-7 times slower) and on MPS
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from model import env
from model.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu; an explicit device that is not there is a UserError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: {why_no_cuda()} (use --device auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: Apple's MPS backend is not available here (use --device auto or cpu)")
    return torch.device(name)


def why_no_cuda() -> str:
    """Why torch sees no CUDA GPU, in words a student can act on."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build of torch"
    if granted := env.gpu_granted():
        return (f"a GPU is granted ({granted}) but this torch (built for CUDA {torch.version.cuda}) cannot use it: the "
                f"NVIDIA driver is likely older than CUDA {torch.version.cuda}; install a torch built for the driver's "
                "CUDA version (nvidia-smi shows it)")  # fmt: skip
    return "no CUDA GPU is visible"


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by Slurm's --cpus-per-task."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    slurm = env.slurm_cpus()
    return max(1, min(cpus, slurm) if slurm else cpus)


def synchronize(device: torch.device) -> None:
    """Wait for the accelerator's queued work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def keep_freed_memory(keep: bool = True) -> None:
    """On Linux (glibc), keep the large activation buffers of a CPU step when freed ($CVPR_KEEP_MEMORY=0: not).

    A batch's activations (about 200 MB each at 224 px, batch 32) are above glibc's mmap threshold: each would be
    mapped afresh and every page faulted in and zeroed by the kernel, about half of a CPU epoch
    (doc/benchmark.md). Kept, the next batch reuses them: the same numbers, twice as fast."""
    if not env.keep_memory() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return
    mallopt(-4, 0 if keep else 65536)  # M_MMAP_MAX: no mmap'ed allocation (False: glibc's default)
    mallopt(-1, 2**31 - 1 if keep else 128 * 1024)  # M_TRIM_THRESHOLD: never give the heap's top back


def prepare_device(device: torch.device) -> None:
    """cuDNN's autotuner on CUDA and TF32 off (fp32 means fp32), replaced by deterministic kernels with
    $CVPR_DETERMINISTIC=1 (a resumed run then equals an uninterrupted one bit for bit on a GPU too)."""
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not env.deterministic()
        torch.backends.cudnn.deterministic = env.deterministic()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def channels_last(device: torch.device) -> bool:
    """Channels-last convolutions are about 2x faster on a CPU (oneDNN) and use tensor cores on CUDA."""
    return device.type in ("cpu", "cuda")


M = TypeVar("M", bound=torch.nn.Module)


def place_model(model: M, device: torch.device) -> M:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last(device) else model


@dataclass(frozen=True)
class Precision:
    """A resolved precision (fp32, bf16 or fp16) on one kind of device."""

    name: str
    device_type: str

    def autocast(self) -> AbstractContextManager[None]:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]
        return torch.autocast(self.device_type, dtype=dtype, enabled=self.name != "fp32")

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Scales the loss before backward for fp16 (a pass-through otherwise); its state is in last.pth."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """$CVPR_CPU_BF16 when set (the tests set 0: fp32 numbers everywhere), else the CPU's flags (Linux)."""
    if (told := env.cpu_bf16()) is not None:
        return told
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``--precision`` on ``device``: auto chosen, the others checked."""
    if name == "auto" and device.type == "cuda":
        name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif name == "auto":
        name = "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or auto")
    if name != "fp32" and not torch.amp.is_autocast_available(device.type):
        raise UserError(f"--precision {name}: no autocast on {device.type}; use fp32 or auto")
    return Precision(name, device.type)


# ----------------------------------------------------------------------------------------------
# A run's terminal output and stop signals
# ----------------------------------------------------------------------------------------------
class Reporter:
    """Rich progress bars on a terminal; one flushed plain line per message otherwise (srun, CI, a log)."""

    def __init__(self) -> None:
        self.progress = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            self.progress = Progress("{task.description}", *columns)
            self.task = self.progress.add_task("", total=1)

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def start(self, description: str, total: int) -> None:
        if self.progress is not None:
            self.progress.reset(self.task, description=description, total=total)
            self.progress.start()  # (once: a started Progress ignores it)

    def ticking(self, check: Callable[[], None]) -> Callable[[], None]:
        """What each batch calls: the bar advanced, then ``check`` (a signal stops at the next batch)."""

        def tick() -> None:
            if self.progress is not None:
                self.progress.advance(self.task)
            check()

        return tick

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class Interrupted(Exception):
    """A stop asked for by a signal; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals():
    """SIGINT (Ctrl-C), SIGTERM (preemption, scancel) and SIGUSR1 (Slurm's warning before the time limit, with
    --signal=USR1@120) become a request the yielded ``check()`` raises as Interrupted at the next safe point; a
    second Ctrl-C stops at once."""
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)

    def check() -> None:
        if received:
            raise Interrupted(received[0])

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield check
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

"""Mixed precision: which autocast a run computes in, and its gradient scaler.

    fp32  no autocast
    bf16  autocast to bfloat16 (same range as float32: no scaling needed)
    fp16  autocast to float16, with a gradient scaler so that small gradients do not flush to 0
    auto  bf16 on a CUDA GPU that supports it, else fp16 there; bf16 on a CPU with native bfloat16
          instructions (AMX or AVX-512 BF16: about twice as fast there), fp32 on other CPUs (where
          bf16 is emulated and 2-7 times slower) and on MPS (not measured)

Losses and metrics are always computed in float32 (model/experiment/loss.py casts the outputs).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model.core import env
from model.core.errors import UserError
from model.core.lazy import LazyModule

if TYPE_CHECKING:
    import torch
else:
    torch = LazyModule("torch")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # torch's dtype names


class PrecisionError(UserError):
    """A precision this device cannot compute in."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision (fp32, bf16 or fp16) on one kind of device."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, DTYPES[self.name])

    def autocast(self) -> AbstractContextManager[None]:
        """Around the forward pass: the network's layers compute in ``dtype`` where it is safe."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.name != "fp32")

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Scales the loss before backward for fp16 (a pass-through otherwise); its state is in last.pth."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 in hardware (Linux: its flags; elsewhere: no). $CVPR_CPU_BF16 says it
    instead when set (0: auto then stays fp32 on the CPU: the tests set it, so that their numbers are fp32's
    everywhere)."""
    told = env.cpu_bf16()
    if told is not None:
        return told
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in NATIVE_BF16_FLAGS)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``--precision`` on ``device``: auto chosen, the others checked."""
    if name not in PRECISIONS:
        raise PrecisionError(f"--precision {name}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or auto"
        )
    if name != "fp32" and not torch.amp.is_autocast_available(device.type):
        raise PrecisionError(f"--precision {name}: no autocast on {device.type}; use fp32 or auto")
    return Precision(name, device.type)

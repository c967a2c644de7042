"""Every environment variable the toolkit reads, read here and only here, each strictly.

A value the toolkit cannot use is an error naming the variable and what it takes (``CVPR_DETERMINISTIC=yes``
is not silently "off"). Variables are read when asked for, so a test or a job may set them at any time.

    CVPR_DATASET          the course dataset's folder (after --dataset, before the course cluster's path)
    CVPR_CACHE_DIR        where decoded images are kept (default output/cache/)
    CVPR_DETERMINISTIC    1: deterministic GPU kernels (a resumed run equals an uninterrupted one bit for bit)
    CVPR_CPU_BF16         0 or 1: whether this CPU computes in bfloat16 under --precision auto (default: its flags)
    CVPR_KEEP_MEMORY      0: give freed CPU memory back to the system after each batch (default 1: keep it)
    MPLBACKEND            matplotlib's backend, checked: the toolkit draws its figures into files (Agg)
    CVPR_TINY             1: every run at the smallest scale (1 epoch, each network's smallest input side,
                          a small demo set, the dry run's timings from one step): what the docs' commands test
                          runs them with (doc/troubleshooting.md)
    SLURM_CPUS_PER_TASK   Slurm's --cpus-per-task: caps the threads a job uses
    SLURM_JOB_ID, SLURMD_NODENAME   the Slurm job a run or a lock belongs to
    DISPLAY, WAYLAND_DISPLAY        a screen for predict.py's windows
"""

from __future__ import annotations

import os
from pathlib import Path

from model.errors import UserError

DATASET = "CVPR_DATASET"
CACHE_DIR = "CVPR_CACHE_DIR"
DETERMINISTIC = "CVPR_DETERMINISTIC"
CPU_BF16 = "CVPR_CPU_BF16"
KEEP_MEMORY = "CVPR_KEEP_MEMORY"
TINY = "CVPR_TINY"
SLURM_CPUS = "SLURM_CPUS_PER_TASK"
SWITCHES = (DETERMINISTIC, CPU_BF16, KEEP_MEMORY, TINY)  # each 0 or 1


def switch(name: str) -> bool | None:
    """A 0-or-1 variable: True, False, or None when unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    if value.strip() not in ("0", "1"):
        raise UserError(f"${name}={value!r}: expected 0 or 1; set it to 0 or 1, or unset it")
    return value.strip() == "1"


def folder(name: str) -> Path | None:
    """A variable naming a folder; None when unset (set but empty: refused, not taken for the current folder)."""
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise UserError(f"${name} is set but empty: set it to a folder, or unset it")
    return Path(value)


def dataset() -> Path | None:
    return folder(DATASET)


def cache_dir() -> Path | None:
    return folder(CACHE_DIR)


def deterministic() -> bool:
    return bool(switch(DETERMINISTIC))


def cpu_bf16() -> bool | None:
    return switch(CPU_BF16)


def keep_memory() -> bool:
    return switch(KEEP_MEMORY) is not False


def tiny() -> bool:
    return bool(switch(TINY))


def slurm_cpus() -> int | None:
    """Slurm's --cpus-per-task, when running inside a job that sets it."""
    value = os.environ.get(SLURM_CPUS)
    if not value:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"${SLURM_CPUS}={value!r}: expected a whole number of CPUs (Slurm sets it); unset it")
    return int(value)


def slurm_job() -> dict[str, str]:
    """The Slurm job id and node when running inside a job, else {}."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    node = os.environ.get("SLURMD_NODENAME")
    return {"job_id": job, **({"node": node} if node else {})}


def gpu_granted() -> str | None:
    """The GPU a job was granted (CUDA_VISIBLE_DEVICES, Slurm's GPU variables), or None."""
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE"):
        value = os.environ.get(name)
        if value and value.strip() not in ("", "-1", "NoDevFiles", "0" if name == "SLURM_GPUS_ON_NODE" else "_"):
            return f"{name}={value}"
    return None


def display() -> str | None:
    """The screen predict.py would open its windows on, as the variable that names it ("DISPLAY=:0"), or None."""
    return next((f"{name}={os.environ[name]}" for name in ("DISPLAY", "WAYLAND_DISPLAY") if os.environ.get(name)), None)


def check_all() -> None:
    """Every variable read, so that a bad value is refused before any work starts (each command calls it first)."""
    for name in SWITCHES:
        switch(name)
    dataset()
    cache_dir()
    slurm_cpus()
    if (value := os.environ.get("MPLBACKEND")) is not None:  # read when matplotlib is imported, which then fails
        try:
            import matplotlib  # noqa: F401
        except ValueError:
            raise UserError(f"$MPLBACKEND={value!r}: not a backend matplotlib knows; unset it (the toolkit draws its "
                            "figures into files with Agg)") from None  # fmt: skip

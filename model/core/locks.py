"""One writer per folder: a lock file naming who holds it (host, process, Slurm job, command).

The lock is the kernel's (``flock``) on ``FOLDER/.lock``: it is released when its process ends, however
it ends, so a lock file left by a killed process is simply taken over by the next writer. The file's
text only says who holds it, for the refusal message. Used by a run's folder (train.py, eval.py) and by
the folders of generated documents (compare.py, the practical's report).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from model.core import env
from model.core.errors import UserError
from model.core.files import HOST, make_folder, write_error

LOCK_FILE = ".lock"


class LockedError(UserError):
    """Another process writes the folder."""


def describe_holder(holder: dict[str, Any]) -> str:
    job = f", Slurm job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return (
        f"{holder.get('command', 'a process')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}{job}, "
        f"since {holder.get('since', '?')})"
    )


def _stop_hint(holder: dict[str, Any]) -> str:
    if holder.get("slurm_job"):
        return f"scancel {holder['slurm_job']}"
    return f"kill {holder.get('pid', 'PID')}"


class FolderLock:
    """``with FolderLock(folder, "train.py"):`` holds ``folder`` for this process, or raises LockedError."""

    def __init__(self, folder: Path, purpose: str):
        self.folder, self.purpose = Path(folder), purpose
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None  # who held it before, when that process had ended

    def holder(self) -> dict[str, Any] | None:
        """Who holds the folder now, or None when no running process does."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read(fd) or {"command": "another process"}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> FolderLock:
        make_folder(self.folder)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise write_error(self.path, error) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd) or {"command": "another process"}
                os.close(fd)
                raise LockedError(
                    f"{self.folder} is being written by {describe_holder(holder)}: wait for it to finish, or stop "
                    f"it ({_stop_hint(holder)}), or choose another folder"
                ) from None
            if self._same_file(fd):
                break
            os.close(fd)  # the file was removed by its previous holder after we opened it: try again
        previous = _read(fd)
        self.took_over = previous or None
        self._write_holder(fd)
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_ino, here.st_dev) == (mine.st_ino, mine.st_dev)

    def _write_holder(self, fd: int) -> None:
        holder = {
            "command": self.purpose,
            "host": HOST,
            "pid": os.getpid(),
            "slurm_job": env.slurm_job().get("job_id"),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": sys.argv,
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its text is missing
            pass

    def release(self) -> None:
        if self._fd is None:
            return
        with suppress(OSError):
            self.path.unlink()  # while still held: a process that opened it before retries (_same_file)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        value = json.loads(text) if text.strip() else {}
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}

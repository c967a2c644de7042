"""One writer per folder: ``with FolderLock(folder, "train.py"):`` holds it, or a UserError names the holder.

The kernel's flock on ``FOLDER/.lock`` goes with its process however it ends, so a lock file a killed process left
is simply taken over; the file's text only names the holder. (The filelock package leaves its file behind, where a
failed command must leave nothing new, and says nobody who holds a lock.)
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import suppress
from pathlib import Path

from model import env
from model.errors import UserError
from model.files import HOST, make_folder, write_error


class FolderLock:
    """The lock of ``folder`` for ``purpose`` (what the refusal of another writer says)."""

    def __init__(self, folder: Path, purpose: str):
        self.path, self.purpose = Path(folder) / ".lock", purpose
        self.fd: int | None = None

    def holder(self) -> str | None:
        """Who holds the folder now, or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            return _holder(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        make_folder(self.path.parent)
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise write_error(self.path, error) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                stop = "scancel JOB" if "Slurm job" in holder else "kill PID"
                raise UserError(
                    f"{self.path.parent} is being written by {holder}: wait for it to finish, or stop it ({stop}), or "
                    f"choose another folder"
                ) from None
            if os.path.exists(self.path) and os.path.samestat(os.fstat(fd), os.stat(self.path)):
                self.fd = fd  # else its holder removed it after we opened it: try again
            else:
                os.close(fd)
        job = env.slurm_job().get("job_id")
        text = f"{self.purpose} (pid {os.getpid()} on {HOST}{f', Slurm job {job}' if job else ''}, since "
        with suppress(OSError):  # a full disk: the lock holds all the same, only its text is missing
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{text}{time.strftime('%Y-%m-%d %H:%M:%S')}) {sys.argv}".encode(), 0)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.fd is not None:
            with suppress(OSError):
                self.path.unlink()  # while still held: a process that opened it before retries
            os.close(self.fd)
            self.fd = None


def _holder(fd: int) -> str:
    with suppress(OSError):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        return text.split(") ", 1)[0] + ")" if ") " in text else "another process"
    return "another process"

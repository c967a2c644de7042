"""Writing files safely: one helper for every write, complete files only, nothing left behind, never into data.

Every file the toolkit writes goes through ``write_bytes`` (or ``atomic_path`` for writers that need a
path): the bytes go to a temporary file beside the target, which is renamed onto it once whole, so a
reader sees the old file or the new one, never a part. An OS error (read-only folder, no space, quota,
a file where a folder should be) becomes one ``WriteError`` line naming the path and, for space, how
much was needed. Temporary names carry the host and process id, so that a temporary file left by a
killed process is recognised and removed at the next start (``remove_stale_temporaries``).

No write lands inside a data folder (a dataset: images/ and annotations/; a folder of internet images:
images/ and annotations.csv, or web_images/), recognised by its layout wherever it is: the rule is here,
so every command and every output option keeps it. Only the writers whose work is a dataset's own files
(the demo generator, the Caltech-101 importer, the boxes predict.py --annotate draws) say ``data=True``.
Folders that hold the toolkit's outputs beside a user's files are model/core/owned.py's.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from model.core.errors import UserError, describe_os_error

HOST = socket.gethostname().replace(".", "_") or "host"
FOREIGN_TEMPORARY_AGE = 24 * 3600  # a temporary file of another host is stale after this many seconds
SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)


class WriteError(UserError):
    """A file could not be written: read-only, no space, quota, or a path that is not a folder."""


def megabytes(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MB" if nbytes < 2**30 else f"{nbytes / 2**30:.1f} GiB"


def free_space(path: Path) -> int | None:
    """Bytes free on the disk of ``path`` (or of its nearest existing parent)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def write_error(path: Path, error: OSError, needed: int | None = None) -> WriteError:
    """The one-line form of a failed write of ``path``."""
    if error.errno in SPACE_ERRORS:
        free = free_space(path)
        amounts = [f"needs about {megabytes(needed)}" if needed else "", f"{megabytes(free)} free" if free else ""]
        shown = ", ".join(a for a in amounts if a)
        what = "disk quota exceeded" if error.errno == errno.EDQUOT else "no space left on the disk"
        return WriteError(
            f"{path}: cannot write: {what}{f' ({shown})' if shown else ''}; free some space or write elsewhere"
        )
    error.filename = str(path) if error.filename is None else error.filename
    return WriteError(f"cannot write {path}: {describe_os_error(error)}")


def make_folder(folder: Path) -> None:
    """``folder`` and its parents; a WriteError when that is impossible."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"{folder}: a file stands where a folder is expected; choose another folder") from None
    except OSError as error:
        raise write_error(Path(folder), error) from None


def temporary_name(name: str) -> str:
    """``.NAME.HOST.PID.RANDOM.tmp``: hidden, and telling who made it."""
    return f".{name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def is_temporary(path: Path) -> bool:
    """A temporary file of ``temporary_name`` (only a killed process leaves one behind)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def is_stale(path: Path) -> bool:
    """Whether the temporary ``path`` was left by a process that is gone."""
    return not _owner_alive(path)


def _owner_alive(path: Path) -> bool:
    parts = path.name[: -len(".tmp")].rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return True  # not a name the toolkit gives: not the toolkit's to remove
    host, pid = parts[1], int(parts[2])
    if host != HOST:
        return _younger_than(path, FOREIGN_TEMPORARY_AGE)
    return process_alive(pid)


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime < seconds
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` that a process now gone left (a kill during a
    write); the paths removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        if is_temporary(path) and is_stale(path):
            with suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    return removed


class DataFolderError(WriteError):
    """A write would land inside a dataset or a folder of internet images."""


def refuse_data_folder(path: Path, option: str = "") -> None:
    """A DataFolderError when ``path`` is, or lies inside, a data folder (``option``: what chose the path)."""
    around = data_folder_around(path)
    if around is not None:
        given = f"{option} {path}" if option else str(path)
        where = "is" if Path(path).resolve() == around else f"lies inside {around}, which is"
        raise DataFolderError(
            f"{given}: {where} a data folder (images/ with annotations): the toolkit never writes into one; choose "
            f"a folder of its own{f' for {option}' if option else ''}"
        )


@contextmanager
def atomic_path(path: Path, needed: int | None = None, data: bool = False) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; renamed onto ``path`` when the block ends without
    error, removed otherwise. OS errors become a WriteError naming ``path`` (``needed``: the bytes it
    needs, said when the disk is full). ``data``: the file is a dataset's own (else a data folder is refused)."""
    path = Path(path)
    if not data:
        refuse_data_folder(path.parent)
    make_folder(path.parent)
    tmp = path.parent / temporary_name(path.name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise write_error(path, error, needed) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, content: bytes, data: bool = False) -> None:
    """Atomically write ``content`` to ``path``; a WriteError (with the size needed when the disk is full).
    ``data``: the file is a dataset's own (see the module's docstring)."""
    with atomic_path(path, needed=len(content), data=data) as tmp, open(tmp, "wb") as handle:
        handle.write(content)


def write_text(path: Path, text: str, data: bool = False) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"), data)


def reserve(path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` for the file ``path`` now, so that a full disk is an error here rather than
    a crash later (a memory-mapped file written past the disk's end kills the process with SIGBUS)."""
    try:
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, nbytes)
    except AttributeError:  # macOS, Windows: no posix_fallocate
        return
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot reserve
            return
        raise


# ----------------------------------------------------------------------------------------------
# Data folders: never written into
# ----------------------------------------------------------------------------------------------
def holds_data(folder: Path) -> str | None:
    """What in ``folder`` shows it holds a dataset or images of its own (``images/``,
    ``annotations/``), or None."""
    folder = Path(folder)
    for name in ("images", "annotations"):
        if (folder / name).is_dir():
            return f"{name}/"
    return None


def is_dataset(folder: Path) -> bool:
    """The course layout: images/<label>/ and annotations/<label>.csv."""
    return (Path(folder) / "images").is_dir() and (Path(folder) / "annotations").is_dir()


def is_data_folder(folder: Path) -> bool:
    """A dataset (images/ and annotations/) or a folder of internet images (web_images/, or one with its
    images/ and annotations.csv)."""
    folder = Path(folder)
    if not (folder / "images").is_dir():
        return False
    return is_dataset(folder) or (folder / "annotations.csv").exists() or folder.name == "web_images"


def data_folder_around(path: Path) -> Path | None:
    """The data folder that ``path`` is, or lies inside of (a dataset, web_images/), or None."""
    resolved = Path(path).resolve()
    for folder in (resolved, *resolved.parents):
        if is_data_folder(folder):
            return folder
    return None

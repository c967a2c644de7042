"""Every file the toolkit writes: whole or not at all, never into data, never over a file it did not write.

    write_file(path, data)              a temporary file beside ``path``, then os.replace: a reader sees the
                                        old file or the new one, never a part; an OS error is one WriteError line
    folder = Folder(out, "compare.py", "--out")
    with folder.staged() as change:     several files written aside, put in place together (or none of them)
        change.write_text("comparison.md", text)

A folder the toolkit writes beside a user's files lists its own in a manifest (``.toolkit-files.json``, a run's
``manifest.json``): a name it does not list, or a file changed since it was written, is refused and left as it
is. No write lands inside a data folder (a dataset's images/ and annotations/, a folder of internet images):
the rule is here, so every command and every output option keeps it; only the dataset writers (the demo
generator, the Caltech-101 importer, the boxes predict.py --annotate draws) say ``data=True``. A temporary name
carries the host and process id, so what a killed process left is recognised and removed by the next writer.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from model.errors import UserError, describe_os_error

HOST = socket.gethostname().replace(".", "_") or "host"
MANIFEST_FORMAT = "cvpr-toolkit-files"


class WriteError(UserError):
    """A file could not be written: read-only, no space, quota, a data folder, a path that is not a folder."""


def megabytes(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MB" if nbytes < 2**30 else f"{nbytes / 2**30:.1f} GiB"


def write_error(path: Path, error: OSError, needed: int | None = None) -> WriteError:
    """The one-line form of a failed write of ``path`` (with the room it needed, for a full disk)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(next((p for p in (Path(path), *Path(path).parents) if p.exists()), Path("/"))).free
        amounts = (f"needs about {megabytes(needed)}, " if needed else "") + f"{megabytes(free)} free"
        what = "disk quota exceeded" if error.errno == errno.EDQUOT else "no space left on the disk"
        return WriteError(f"{path}: cannot write: {what} ({amounts}); free some space or write elsewhere")
    error.filename = str(path) if error.filename is None else error.filename
    return WriteError(f"cannot write {path}: {describe_os_error(error)}")


def read_json(path: Path, missing: Any = None) -> Any:
    """The JSON document in ``path``: ``missing`` when there is no such file, None when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return missing
    except (OSError, ValueError):
        return None


def make_folder(folder: Path) -> None:
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
    return path.name.startswith(".") and path.name.endswith(".tmp")


def is_stale(path: Path) -> bool:
    """Whether the temporary ``path`` was left by a process that is gone (another host's: after a day)."""
    parts = path.name[: -len(".tmp")].rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return False  # not a name the toolkit gives
    if parts[1] != HOST:
        with suppress(OSError):
            return time.time() - path.lstat().st_mtime > 24 * 3600
        return False
    try:
        os.kill(int(parts[2]), 0)
    except OSError as error:  # no such process: gone; another user's: alive
        return isinstance(error, ProcessLookupError)
    return False


def remove_stale_temporaries(folder: Path) -> None:
    """What a killed process left in ``folder``: its temporary files and staging folders."""
    with suppress(OSError):
        for path in Path(folder).iterdir():
            if is_temporary(path) and is_stale(path):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def write_file(path: Path, data: bytes, data_folder: bool = False) -> None:
    """``data`` into ``path``, whole: a temporary file beside it, renamed onto it. ``data_folder``: the file is a
    dataset's own (anything else refuses a data folder)."""
    path = Path(path)
    if not data_folder:
        refuse_data_folder(path.parent)
    make_folder(path.parent)
    tmp = path.parent / temporary_name(path.name)
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(path, error, len(data)) from None
        raise


# ----------------------------------------------------------------------------------------------
# Data folders: never written into
# ----------------------------------------------------------------------------------------------
def is_dataset(folder: Path) -> bool:
    """The course layout: images/<label>/ and annotations/<label>.csv."""
    return (Path(folder) / "images").is_dir() and (Path(folder) / "annotations").is_dir()


def data_folder_around(path: Path) -> Path | None:
    """The data folder ``path`` is or lies inside (a dataset; a folder of internet images: images/ with
    annotations.csv, or web_images/), or None."""
    resolved = Path(path).resolve()
    for folder in (resolved, *resolved.parents):
        if (folder / "images").is_dir() and (
            is_dataset(folder) or (folder / "annotations.csv").exists() or folder.name == "web_images"
        ):
            return folder
    return None


def refuse_data_folder(path: Path, option: str = "") -> None:
    if (around := data_folder_around(path)) is not None:
        given = f"{option} {path}" if option else str(path)
        where = "is" if Path(path).resolve() == around else f"lies inside {around}, which is"
        raise WriteError(
            f"{given}: {where} a data folder (images/ with annotations): the toolkit never writes into one; choose "
            f"a folder of its own{f' for {option}' if option else ''}"
        )


# ----------------------------------------------------------------------------------------------
# Folders the toolkit shares with a user: its manifest, and changes put in place together
# ----------------------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class Folder:
    """A folder and the files in it the toolkit wrote (its manifest: name -> content hash, or None where
    ``hashes`` is off: a run's checkpoints, large and rewritten each epoch)."""

    def __init__(self, folder: Path, writer: str, option: str, manifest: str = ".toolkit-files.json", hashes=True):
        self.folder, self.writer, self.option, self.hashes = Path(folder), writer, option, hashes
        self.manifest_path = self.folder / manifest

    def check_place(self) -> None:
        """Before anything is written: not a data folder, and no file where it (or a parent) should be."""
        refuse_data_folder(self.folder, self.option)
        existing = next(f for f in (self.folder, *self.folder.parents) if f.exists())
        if not existing.is_dir():
            raise WriteError(f"{self.option} {self.folder}: {existing} is a file, not a folder; choose another folder")

    def manifest(self) -> dict[str, str | None]:
        document = read_json(self.manifest_path, missing={"format": MANIFEST_FORMAT, "files": {}})  # none yet
        files = document.get("files") if isinstance(document, dict) else None
        if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise UserError(
                f"{self.manifest_path}: not a manifest the toolkit wrote (damaged or edited?); move {self.folder} away "
                f"or choose another {self.option}"
            )
        return {str(name): (str(digest) if digest else None) for name, digest in files.items()}

    def owned(self) -> list[str]:
        """The toolkit's files that are here now."""
        return sorted(name for name in self.manifest() if (self.folder / name).is_file())

    def refusal(self, name: str, manifest: dict[str, str | None], editable: bool = False) -> str | None:
        """Why the file ``name`` may not be replaced, or None (absent, or the toolkit's and unchanged)."""
        path = self.folder / name
        kept, choose = "so it is left as it is; move it away", f", or choose another {self.option}"
        if not path.exists() and not path.is_symlink():
            return None
        if path.is_dir() or path.is_symlink():
            return f"{path}: a folder or a link stands where {self.writer} writes a file; move it away{choose}"
        if name not in manifest:
            return f"{path}: not written by {self.writer} (a file of yours?), {kept}{choose}"
        if editable or manifest[name] is None or manifest[name] == file_sha256(path):
            return None
        return f"{path}: changed since {self.writer} wrote it, {kept} (or delete it) to have it written again{choose}"

    def check(self, names: Iterable[str], editable: Iterable[str] = ()) -> None:
        manifest, free = self.manifest(), set(editable)
        if refused := [r for r in (self.refusal(n, manifest, n in free) for n in names) if r]:
            more = f" (and {len(refused) - 1} more file(s) like it)" if len(refused) > 1 else ""
            raise UserError(refused[0] + more)

    def manifest_bytes(self, entries: dict[str, str | None], removed: Iterable[str] = ()) -> bytes:
        files = {**self.manifest(), **{name: (d if self.hashes else None) for name, d in entries.items()}}
        for name in removed:
            files.pop(name, None)
        document = {"format": MANIFEST_FORMAT, "writer": self.writer, "files": dict(sorted(files.items()))}
        return (json.dumps(document, indent=1) + "\n").encode()

    def write(self, name: str, data: bytes) -> Path:
        """One file now, whole, recorded in the manifest (which is rewritten only for a new name or a hash)."""
        self.check([name])
        write_file(self.folder / name, data)
        if self.hashes or name not in self.manifest():
            write_file(self.manifest_path, self.manifest_bytes({name: sha256(data)}))
        return self.folder / name

    @contextmanager
    def staged(self) -> Iterator[Staging]:
        """A change written aside and put in place whole when the block ends (discarded on an error)."""
        change = Staging(self)
        try:
            yield change
            if not change.committed:
                change.commit()
        finally:
            change.discard()


class Staging:
    """The files of one change, in a hidden folder inside the folder (same disk: each move is a rename)."""

    def __init__(self, owned: Folder):
        owned.check_place()
        self.owned, self.folder = owned, owned.folder / temporary_name("staging")
        self.made: Path | None = None  # the topmost folder this change made: removed if nothing is committed
        self.hashes: dict[str, str | None] = {}
        self.editable: set[str] = set()
        self.committed = False

    def write_bytes(self, name: str, data: bytes, editable: bool = False) -> Path:
        if not self.folder.exists():
            missing = [f for f in (self.owned.folder, *self.owned.folder.parents) if not f.exists()]
            self.made = self.made or (missing[-1] if missing else None)
            make_folder(self.owned.folder)
            remove_stale_temporaries(self.owned.folder)
            make_folder(self.folder)
        write_file(self.folder / name, data)
        self.hashes[name] = sha256(data)
        if editable:
            self.editable.add(name)
        return self.owned.folder / name

    def write_text(self, name: str, text: str, editable: bool = False) -> Path:
        return self.write_bytes(name, text.encode("utf-8"), editable)

    def commit(self, replace_all: bool = False) -> None:
        """Every name checked, then the files moved into place and the manifest rewritten; ``replace_all``: the
        toolkit's other files there (a replaced run's) go. Nothing changes when a name is refused."""
        owned = self.owned
        owned.check(self.hashes, self.editable)
        leaving = sorted(set(owned.owned()) - set(self.hashes)) if replace_all else []
        if self.hashes or leaving:
            manifest = self.folder / temporary_name("manifest")  # a disk too full for it stops before any move
            write_file(manifest, owned.manifest_bytes(self.hashes, removed=leaving))
            trash = owned.folder / temporary_name("replaced")
            try:
                for name in [*leaving, *(n for n in self.hashes if (owned.folder / n).exists())]:
                    _move(owned.folder / name, trash / name)
                for name in self.hashes:
                    _move(self.folder / name, owned.folder / name)
                os.replace(manifest, owned.manifest_path)
            except OSError as error:
                raise write_error(owned.folder, error) from None
            shutil.rmtree(trash, ignore_errors=True)
            for name in leaving:  # folders the removed files leave empty (a replaced run's evaluations/)
                _remove_empty(owned.folder / parent for parent in Path(name).parents[:-1])
        self.committed, self.made = True, None
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.made is not None and not self.committed:  # the folders this change made, while still empty
            _remove_empty(f for f in [self.owned.folder, *self.owned.folder.parents] if f.is_relative_to(self.made))


class Outputs:
    """One command's outputs in several folders: each checked when named, all put in place together at the end
    (every name checked first), none on an error."""

    def __init__(self) -> None:
        self.changes: list[Staging] = []

    def folder(self, folder: Path, writer: str, option: str, names: Iterable[str] = ()) -> Staging:
        change = Staging(Folder(folder, writer, option))
        change.owned.check(names)
        self.changes.append(change)
        return change

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        try:
            if kind is None:
                for change in self.changes:
                    change.owned.check(change.hashes, change.editable)
                for change in self.changes:
                    change.commit()
        finally:
            for change in self.changes:
                change.discard()


def _remove_empty(folders: Iterable[Path]) -> None:
    """Each of ``folders`` in turn, up to the first that is not empty (which rmdir refuses)."""
    with suppress(OSError):
        for folder in folders:
            folder.rmdir()


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)

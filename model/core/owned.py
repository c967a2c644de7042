"""Folders the toolkit writes into beside the user's own files: a manifest says which files are the
toolkit's, so that it replaces or removes exactly those and never a file of the user's.

    folder = OwnedFolder(Path("doc"), writer="compare.py", option="--out")
    with folder.staged() as change:          # everything or nothing: files go to a staging folder ...
        change.write_text("comparison.md", text)
    # ... and are moved into place together once every name is checked (Staging.commit)

    with Outputs() as outputs:               # one command's outputs in several folders, all or nothing
        images = outputs.folder(OwnedFolder(save_dir, writer="predict.py", option="--save"))
        ...

A folder is checked when it is first named (``check_place``: never a data folder, never a file), before
the command does its work; a name the manifest does not list, or (with content hashes) a file changed since
the toolkit wrote it, is refused with one line and left as it is. Files a user is meant to edit
(``editable``, the report's Markdown) may differ from what was written: their writer keeps what the user
wrote. A failed command leaves the folders as they were: no staging folder, no folder it made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from model.core.errors import UserError
from model.core.files import (
    WriteError,
    atomic_path,
    is_stale,
    is_temporary,
    make_folder,
    refuse_data_folder,
    temporary_name,
    write_bytes,
    write_error,
)

MANIFEST_FORMAT = "cvpr-toolkit-files"


class ForeignFileError(UserError):
    """A file the toolkit would replace is not the toolkit's (or was changed since it wrote it)."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OwnedFolder:
    """A folder, and the files in it the toolkit wrote (its manifest).

    ``hashes``: the manifest records each file's content, so that a file changed by hand is not replaced
    (documents); without, names only (a run's checkpoints, large and rewritten each epoch). ``legacy``
    tells, for a folder without a manifest (written by an earlier version), whether a file is the toolkit's.
    """

    def __init__(
        self,
        folder: Path,
        *,
        writer: str,
        option: str,
        manifest: str = ".toolkit-files.json",
        hashes: bool = True,
        legacy: Callable[[str, Path], bool] = lambda _name, _path: False,
    ):
        self.folder, self.writer, self.option = Path(folder), writer, option
        self.manifest_path = self.folder / manifest
        self.hashes, self.legacy = hashes, legacy

    def check_place(self) -> None:
        """Before anything is written: the folder is not, and is not inside, a data folder, and no file stands
        where it (or one of its parents) should be."""
        refuse_data_folder(self.folder, self.option)
        for folder in (self.folder, *self.folder.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise WriteError(
                        f"{self.option} {self.folder}: {folder} is a file, not a folder; choose another {self.option}"
                    )
                return

    # ------------------------------------------------------------------------------------------
    # What is the toolkit's
    # ------------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, str | None]:
        """Relative name -> content hash (None without hashes) of every file the toolkit wrote here."""
        try:
            document = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise ForeignFileError(
                f"{self.manifest_path}: damaged (not the toolkit's JSON); move {self.folder} away or choose another "
                f"{self.option}"
            ) from None
        files = document.get("files") if isinstance(document, dict) else None
        if document.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ForeignFileError(f"{self.manifest_path}: not a manifest of the toolkit; choose another {self.option}")
        return {str(k): (str(v) if v else None) for k, v in files.items()}

    @property
    def has_manifest(self) -> bool:
        return self.manifest_path.exists()

    def owned(self) -> list[str]:
        """The names of the toolkit's files that are here now."""
        if self.has_manifest:
            return sorted(name for name in self.manifest() if (self.folder / name).is_file())
        return sorted(
            str(p.relative_to(self.folder))
            for p in self.folder.rglob("*")
            if p.is_file() and self.legacy(str(p.relative_to(self.folder)), p)
        )

    def refusal(self, name: str, editable: bool = False, manifest: dict[str, str | None] | None = None) -> str | None:
        """Why the file ``name`` may not be replaced, or None when it may (absent, or the toolkit's)."""
        path = self.folder / name
        if not path.exists() and not path.is_symlink():
            return None
        if path.is_dir() or path.is_symlink():
            return (
                f"{path}: a folder or a link stands where {self.writer} writes a file; move it away, or choose "
                f"another {self.option}"
            )
        manifest = self.manifest() if manifest is None else manifest
        if not self.has_manifest:
            if self.legacy(name, path):
                return None
        elif name in manifest:
            if editable or not self.hashes or manifest[name] is None or manifest[name] == file_sha256(path):
                return None
            return (
                f"{path}: changed since {self.writer} wrote it, so it is left as it is; move it away (or delete it) to "
                f"have it written again, or choose another {self.option}"
            )
        return (
            f"{path}: not written by {self.writer} (a file of yours?), so it is left as it is; move it away, or choose "
            f"another {self.option}"
        )

    def check(self, names: Iterable[str], editable: Iterable[str] = ()) -> None:
        """ForeignFileError naming the first of ``names`` that may not be replaced (and how many more)."""
        manifest = self.manifest()
        free = set(editable)
        refused = [r for r in (self.refusal(n, n in free, manifest) for n in names) if r]
        if refused:
            more = f" (and {len(refused) - 1} more file(s) like it)" if len(refused) > 1 else ""
            raise ForeignFileError(refused[0] + more)

    # ------------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------------
    def manifest_bytes(self, entries: dict[str, str | None], removed: Iterable[str] = ()) -> bytes:
        """The manifest once ``entries`` are written and ``removed`` are gone."""
        manifest: dict[str, str | None] = self.manifest() if self.has_manifest else dict.fromkeys(self.owned())
        manifest.update({name: (digest if self.hashes else None) for name, digest in entries.items()})
        for name in removed:
            manifest.pop(name, None)
        text = json.dumps(
            {"format": MANIFEST_FORMAT, "writer": self.writer, "files": dict(sorted(manifest.items()))}, indent=1
        )
        return (text + "\n").encode()

    def record(self, entries: dict[str, str | None], removed: Iterable[str] = ()) -> None:
        write_bytes(self.manifest_path, self.manifest_bytes(entries, removed))

    def write_bytes(self, name: str, data: bytes, editable: bool = False) -> Path:
        """Write one file now (atomically) and record it."""
        self.check_place()
        self.check([name], [name] if editable else [])
        write_bytes(self.folder / name, data)
        self.record({name: sha256(data)})
        return self.folder / name

    def write_text(self, name: str, text: str, editable: bool = False) -> Path:
        return self.write_bytes(name, text.encode("utf-8"), editable)

    def remove(self, names: Iterable[str]) -> None:
        """Remove the toolkit's files ``names`` (only files, only those the manifest lists)."""
        names = [n for n in names if n in set(self.owned())]
        for name in names:
            with suppress(FileNotFoundError):
                (self.folder / name).unlink()
        self.record({}, removed=names)

    @contextmanager
    def staged(self) -> Iterator[Staging]:
        """A change written aside and moved into place whole by ``commit`` (discarded on an error)."""
        staging = Staging(self)
        try:
            yield staging
        except BaseException:
            staging.discard()
            raise
        try:
            if not staging.committed:
                staging.commit()
        finally:
            staging.discard()

    def remove_stale_staging(self) -> None:
        """Staging folders of processes that are gone (killed during a write)."""
        with suppress(OSError):
            for path in self.folder.iterdir():
                if path.is_dir() and is_temporary(path) and is_stale(path):
                    shutil.rmtree(path, ignore_errors=True)


class Staging:
    """The files of one change, in a hidden folder inside the owned folder (same disk: moves are renames),
    made when the first file is written; the folders it had to make are removed again if nothing is committed."""

    def __init__(self, owned: OwnedFolder):
        owned.check_place()
        self.owned = owned
        self.folder = owned.folder / temporary_name("staging")
        self.made: Path | None = None  # the topmost folder this change made (removed when it commits nothing)
        self.hashes: dict[str, str | None] = {}
        self.editable: set[str] = set()
        self.committed = False

    def _ready(self) -> Path:
        if not self.folder.exists():
            missing = [f for f in (self.owned.folder, *self.owned.folder.parents) if not f.exists()]
            make_folder(self.owned.folder)
            self.made = self.made or (missing[-1] if missing else None)
            self.owned.remove_stale_staging()
            try:
                self.folder.mkdir()
            except OSError as error:
                raise write_error(self.folder, error) from None
        return self.folder

    def write_bytes(self, name: str, data: bytes, editable: bool = False) -> Path:
        write_bytes(self._ready() / name, data)
        self.hashes[name] = sha256(data)
        if editable:
            self.editable.add(name)
        return self.owned.folder / name

    def write_text(self, name: str, text: str, editable: bool = False) -> Path:
        return self.write_bytes(name, text.encode("utf-8"), editable)

    @contextmanager
    def path(self, name: str) -> Iterator[Path]:
        """A path to write the file ``name`` to (for writers that want one); recorded once written."""
        with atomic_path(self._ready() / name) as tmp:
            yield tmp
        self.hashes[name] = file_sha256(self.folder / name) if self.owned.hashes else None

    def final(self, name: str) -> Path:
        """Where ``name`` will be once committed."""
        return self.owned.folder / name

    def check(self) -> None:
        """Every name may be written (none is a file of the user's): what commit checks first."""
        self.owned.check(self.hashes, self.editable)

    def commit(self, replace_all: bool = False) -> None:
        """Check every name, then move the files into place; with ``replace_all``, the toolkit's other
        files there (a previous run's) are removed. Nothing is changed when a name is refused."""
        owned = self.owned
        self.check()
        if not self.hashes and not replace_all:
            self.committed = True
            self.discard()
            return
        previous = set(owned.owned())
        leaving = sorted((previous - set(self.hashes)) if replace_all else set())
        # the new manifest is written aside first: a disk too full for it stops the change before any move
        staged_manifest = self.folder / temporary_name("manifest")
        write_bytes(staged_manifest, owned.manifest_bytes(self.hashes, removed=leaving))
        trash = owned.folder / temporary_name("replaced")
        try:
            for name in [*leaving, *(n for n in self.hashes if (owned.folder / n).exists())]:
                _move(owned.folder / name, trash / name)
            for name in self.hashes:
                _move(self.folder / name, owned.folder / name)
            os.replace(staged_manifest, owned.manifest_path)
        except OSError as error:
            raise write_error(owned.folder, error) from None
        self.committed, self.made = True, None
        shutil.rmtree(trash, ignore_errors=True)
        self.discard()
        for name in leaving:  # folders the toolkit's removed files leave empty (a run's evaluations/)
            _remove_empty_parents(owned.folder / name, owned.folder)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.made is not None and not self.committed:  # the folders this change made, when still empty
            for folder in [self.owned.folder, *self.owned.folder.parents]:
                if not folder.is_relative_to(self.made):
                    break
                try:
                    folder.rmdir()
                except OSError:
                    break


class Outputs:
    """One command's outputs, in one or more owned folders: each folder checked when named (before the work),
    each file staged beside its target, and every file put in place together once all of them are written
    and every name is checked; on an error, or a name refused, nothing is changed."""

    def __init__(self) -> None:
        self.changes: list[Staging] = []

    def folder(self, owned: OwnedFolder) -> Staging:
        change = Staging(owned)
        self.changes.append(change)
        return change

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        try:
            if kind is None:
                for change in self.changes:
                    change.check()
                for change in self.changes:
                    change.commit()
        finally:
            for change in self.changes:
                if not change.committed:
                    change.discard()


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _remove_empty_parents(path: Path, top: Path) -> None:
    for folder in path.parents:
        if folder == top or not folder.is_relative_to(top):
            return
        try:
            folder.rmdir()
        except OSError:
            return

"""Writing files safely: complete files only, and never over data the toolkit did not write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; renamed onto ``path`` when the block ends
    without error, removed otherwise. Readers see the old file or the new one, never a part of it,
    even when several processes write the same file at once (the last rename wins)."""
    path = Path(path)
    # the suffix is kept last, so that writers choosing a format by extension (matplotlib) still can
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def is_temporary(path: Path) -> bool:
    """A file left by ``atomic_path`` (only a killed process leaves one)."""
    return path.name.startswith(".") and ".tmp" in path.name


def holds_data(folder: Path) -> str | None:
    """What in ``folder`` shows it holds a dataset or images of its own, or None.

    Writers that may replace their own files refuse such folders: a dataset, web_images/ and
    the like are never written into.
    """
    folder = Path(folder)
    for name in ("images", "annotations"):
        if (folder / name).is_dir():
            return f"{name}/"
    return None

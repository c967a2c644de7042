"""Decoded images, once per dataset and image size, optionally persisted as a memory-mapped file.

The file is keyed by the content of the dataset: every row (so an annotation change rebuilds it),
the bytes of every image (so an edited image does too, while a copied dataset reuses it) and the
image size. It is a plain ``.npy`` array of (N, 3, S, S) uint8 opened memory-mapped, so a dataset
larger than memory is paged in from disk instead of failing; the same happens without a cache
folder when the images would not fit in RAM (a temporary file is used then).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from model import config
from model.core import env
from model.core.files import (
    WriteError,
    make_folder,
    remove_stale_temporaries,
    reserve,
    temporary_name,
    write_bytes,
    write_error,
)
from model.data.annotations import Annotation, DataError, Problems, image_path
from model.data.images import decode_image, resize_square

CACHE_VERSION = 1
RAM_SHARE = 0.5  # without a cache folder, decode into RAM only while it takes at most this share of free memory


def cache_folder() -> Path:
    """Where decoded images are kept: $CVPR_CACHE_DIR, else output/cache/."""
    return env.cache_dir() or config.CACHE_DIR


def dataset_key(root: Path, rows: Sequence[Annotation], image_size: int) -> str:
    """Content hash of the rows (in a canonical order), their images' bytes and the image size."""
    digest = hashlib.sha256(f"cvpr-cache v{CACHE_VERSION} {image_size}px\n".encode())
    for row in sorted(rows, key=lambda r: r.key):
        digest.update(row.to_row().encode() + b"\n")
        try:
            digest.update(image_path(root, row).read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()[:32]


def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown (macOS, Windows): assume it fits


def fits_in_memory(nbytes: int) -> bool:
    """Whether ``nbytes`` may be held in RAM: at most RAM_SHARE of the memory available now."""
    return nbytes <= RAM_SHARE * available_memory()


class ImageCache:
    """``images`` (N, 3, S, S) uint8 RGB and ``sizes`` (N, 2) original (width, height) of ``rows``;
    ``decoded[i]`` is False where the image was missing or unreadable (reported to ``problems``)."""

    def __init__(
        self,
        rows: Sequence[Annotation],
        images: torch.Tensor,
        sizes: torch.Tensor,
        decoded: torch.Tensor,
        from_disk: bool,
    ):
        self.rows, self.images, self.sizes, self.decoded, self.from_disk = list(rows), images, sizes, decoded, from_disk
        self.index = {row.key: i for i, row in enumerate(self.rows)}

    @classmethod
    def build(
        cls,
        root: Path,
        rows: Sequence[Annotation],
        image_size: int,
        problems: Problems,
        workers: int = 1,
        cache_dir: Path | None = None,
        interrupt: Callable[[], None] = lambda: None,
    ) -> ImageCache:
        """Decode ``rows`` (or read them from ``cache_dir``); ``interrupt`` is called before each image
        and may raise to stop (a signal): no partial file is left behind then."""
        rows = sorted(rows, key=lambda r: r.key)
        shape = (len(rows), 3, image_size, image_size)
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{dataset_key(root, rows, image_size)}.npy"
            if path.exists():
                try:
                    return cls._load(rows, path)
                except (OSError, ValueError):
                    pass  # a damaged file is rebuilt below
        if path is None and fits_in_memory(int(np.prod(shape))):
            buffer = np.empty(shape, dtype=np.uint8)
            sizes, decoded = _decode(root, rows, image_size, buffer, workers, problems, interrupt)
            return cls(rows, torch.from_numpy(buffer), torch.from_numpy(sizes), torch.from_numpy(decoded), False)
        # on disk: in the cache folder, or (too large for RAM, no cache folder) a temporary file
        folder = _usable_folder(path.parent if path is not None else Path(tempfile.gettempdir()))
        tmp = folder / temporary_name("cache.npy")
        try:
            buffer = _open_buffer(tmp, shape)
            sizes, decoded = _decode(root, rows, image_size, buffer, workers, problems, interrupt)
            buffer.flush()  # type: ignore[attr-defined]
            del buffer
            if path is not None and decoded.all():  # complete caches only, each file renamed into place whole
                sizes_file = io.BytesIO()
                np.save(sizes_file, sizes)
                write_bytes(path.with_suffix(".sizes.npy"), sizes_file.getvalue())
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
                cache = cls._load(rows, path)
                cache.from_disk = False  # decoded by this run
                return cache
            images = torch.from_numpy(np.load(tmp, mmap_mode="c"))
            return cls(rows, images, torch.from_numpy(sizes), torch.from_numpy(decoded), False)
        finally:
            tmp.unlink(missing_ok=True)  # an open mapping stays valid; its space is freed when it closes

    @classmethod
    def _load(cls, rows: Sequence[Annotation], path: Path) -> ImageCache:
        images = np.load(path, mmap_mode="c")  # copy-on-write mapping: writable for torch, never written back
        sizes = np.load(path.with_suffix(".sizes.npy"))
        if images.shape[0] != len(rows) or sizes.shape != (len(rows), 2):
            raise ValueError(f"{path}: does not match its rows")
        return cls(
            rows, torch.from_numpy(images), torch.from_numpy(sizes), torch.ones(len(rows), dtype=torch.bool), True
        )

    def lookup(self, rows: Sequence[Annotation]) -> torch.Tensor:
        """(len(rows),) indices into ``images``; KeyError when a row is not cached."""
        return torch.tensor([self.index[row.key] for row in rows], dtype=torch.int64)


def _usable_folder(folder: Path) -> Path:
    """The cache folder, made if needed, its stale temporary files (of killed runs) removed."""
    try:
        make_folder(folder)
    except WriteError as error:
        named = env.cache_dir()
        where = f"${env.CACHE_DIR}={named}: " if named else ""
        raise WriteError(f"{where}{error} (or pass --no-cache)") from None
    remove_stale_temporaries(folder)
    return folder


def _open_buffer(tmp: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A memory-mapped (N, 3, S, S) uint8 array in the file ``tmp``, its disk space reserved now (a full
    disk is then a WriteError here, not a crash while decoding)."""
    try:
        buffer = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        reserve(tmp, os.path.getsize(tmp))
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_error(tmp.parent / "cache.npy", error, int(np.prod(shape))) from None
    return buffer


def _decode(
    root: Path,
    rows: Sequence[Annotation],
    image_size: int,
    buffer: np.ndarray,
    workers: int,
    problems: Problems,
    interrupt: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize each row's image into ``buffer`` (N, 3, S, S); returns the original
    (width, height) per row and whether it could be decoded. Missing or unreadable images are
    reported to ``problems``."""
    sizes = np.zeros((len(rows), 2), dtype=np.int64)
    decoded = np.zeros(len(rows), dtype=bool)

    problem: list[str | None] = [None] * len(rows)

    def decode(i: int) -> None:  # cv2 releases the GIL: threads decode in parallel
        interrupt()
        image, problem[i] = decode_image(image_path(root, rows[i]))
        if image is not None:
            sizes[i] = (image.shape[1], image.shape[0])
            buffer[i] = resize_square(image, image_size).transpose(2, 0, 1)
            decoded[i] = True

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(decode, range(len(rows))))
    if rows and not decoded.any() and all(not image_path(root, row).exists() for row in rows):
        raise DataError(
            f"{root / 'images'}: none of the {len(rows)} images of the rows is there (has the dataset moved?); "
            f"pass --dataset with the folder that holds them"
        )
    for i in map(int, np.flatnonzero(~decoded)):
        problems.report(rows[i].where, str(problem[i]))
    return sizes, decoded

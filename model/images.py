"""Images and boxes as the networks see them, and the decoded images kept once per dataset and image size.

    images  (B, 3, S, S) uint8 RGB, resized square; normalised (ImageNet's mean and std) on the device
    boxes   (B, 4) float32 xyxy divided by the ORIGINAL image's width and height, in [0, 1]

The decode cache is a plain ``.npy`` (N, 3, S, S) uint8 file opened memory-mapped, keyed by the content of every
row, of every image's bytes and of the image size: an edited image or row rebuilds it, a copied dataset reuses it,
and a dataset larger than memory is paged in from disk instead of failing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from model import env
from model.annotations import Annotation, DataError, Problems, image_path
from model.files import WriteError, make_folder, remove_stale_temporaries, temporary_name, write_error, write_file
from model.network import ordered


def decode_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(H, W, 3) uint8 RGB of the file, upright as its EXIF orientation says (as a viewer shows it, and as its
    box was drawn), or None and what is wrong: missing, unreadable, truncated (libjpeg would fill a cut JPEG's
    end with grey, saying so on stderr without a file name)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        return None, f"missing image {path if Path(path).name.isprintable() else repr(str(path))}{near_name(path)}"
    except OSError as error:
        return None, f"unreadable image {path} ({error.strerror})"
    head = data[:8].tobytes()
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        return None, f"truncated image {path} (no JPEG end marker: a half-copied file?)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:].tobytes():
        return None, f"truncated image {path} (no PNG end chunk: a half-copied file?)"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # BGR; grey images come with 3 channels
    if image is None:
        return None, f"unreadable image {path} (OpenCV cannot decode it)"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def near_name(path: Path) -> str:
    """A missing file's look-alike in its folder (another Unicode form, a byte-order mark, another case), said."""

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).replace("\ufeff", "").casefold()

    folder = Path(path).parent
    for other in sorted(folder.iterdir()) if folder.is_dir() else []:
        if key(other.name) == key(Path(path).name):
            return f" (the folder holds {other.name!r}, the row names {Path(path).name!r}: rename one to the other)"
    return ""


def stored_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (Pillow opens files lazily): no decode."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3); area averaging when shrinking avoids aliasing."""
    interpolation = cv2.INTER_AREA if size < min(image.shape[:2]) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, S, S) uint8 RGB -> (B, 3, S, S) float32 normalised; run it on the target device."""
    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return (images.float() - mean_t) / std_t


def network_input(image_rgb: np.ndarray, size: int, device, mean: Sequence[float], std: Sequence[float]):
    """One (H, W, 3) uint8 RGB image -> (1, 3, S, S) float32, resized and normalised on ``device``."""
    return normalize(to_chw_uint8(resize_square(image_rgb, size))[None].to(device), mean, std)


def box_to_unit(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel xyxy of an image of (width, height) -> xyxy in [0, 1]."""
    x1, y1, x2, y2 = box
    return (x1 / width, y1 / height, x2 / width, y2 / height)


def box_to_pixels(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy in [0, 1] and (B, 2) original (width, height) -> (B, 4) xyxy in pixels."""
    return boxes * torch.as_tensor(sizes, dtype=boxes.dtype, device=boxes.device).repeat(1, 2)


def pairwise_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """IoU of pred[i] with true[i]: (B, 4), (B, 4) xyxy -> (B,); 0 where the union is empty (torchvision's
    box_iou computes every pair, (B, B): only the diagonal is wanted)."""
    pred = ordered(pred)
    lt, rb = torch.maximum(pred[:, :2], true[:, :2]), torch.minimum(pred[:, 2:], true[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = (pred[:, 2:] - pred[:, :2]).prod(dim=1) + (true[:, 2:] - true[:, :2]).prod(dim=1) - inter
    return inter / union.clamp(min=1e-12)


# ----------------------------------------------------------------------------------------------
# The decode cache
# ----------------------------------------------------------------------------------------------
def row_digests(root: Path, rows: Sequence[Annotation]) -> dict[str, str]:
    """Per row (by key), a hash of the row and of its image's bytes: what a fingerprint or a cache key is made of,
    each image read once."""
    digests = {}
    for row in rows:
        digest = hashlib.sha256(row.to_row().encode() + b"\n")
        try:
            digest.update(image_path(root, row).read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
        digests[row.key] = digest.hexdigest()
    return digests


def fingerprint(digests: dict[str, str], rows: Sequence[Annotation], salt: str = "") -> str:
    """The rows' content (their boxes and labels, their images' bytes) in one hash, whatever their order: a run
    records its splits', so that a resume, an evaluation or a comparison on other pictures is told apart."""
    text = salt + "".join(sorted(digests[row.key] for row in rows))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fits_in_memory(nbytes: int) -> bool:
    """Whether ``nbytes`` may be held in RAM: at most half of the memory available now."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return True  # unknown (macOS, Windows): assume it fits
    return nbytes <= 0.5 * available


class ImageCache:
    """``images`` (N, 3, S, S) uint8 and ``sizes`` (N, 2) original (width, height) of ``rows``, sorted by key;
    ``decoded[i]`` False where the image was missing or unreadable (reported to the Problems)."""

    def __init__(self, rows, images: np.ndarray, sizes: np.ndarray, decoded: np.ndarray, from_disk: bool):
        self.rows, self.from_disk = list(rows), from_disk
        self.images, self.sizes, self.decoded = (torch.from_numpy(a) for a in (images, sizes, decoded))
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
        digests: dict[str, str] | None = None,
    ) -> ImageCache:
        """Decode ``rows`` (or read them from ``cache_dir``); ``interrupt`` is called before each image and may
        raise to stop (a signal): no partial file is left behind then."""
        rows = sorted(rows, key=lambda r: r.key)
        shape = (len(rows), 3, image_size, image_size)
        path = None
        if cache_dir is not None:  # the cache's key: the rows' fingerprint at this image size
            key = fingerprint(digests or row_digests(root, rows), rows, f"cvpr-cache v2 {image_size}px\n")
            path = Path(cache_dir) / f"{key}.npy"
            with contextlib.suppress(OSError, ValueError):  # none there, or a damaged file: decoded again
                return cls._load(rows, path, from_disk=True)
        elif fits_in_memory(int(np.prod(shape))):
            buffer = np.empty(shape, dtype=np.uint8)
            sizes, decoded = _decode(root, rows, image_size, buffer, workers, problems, interrupt)
            return cls(rows, buffer, sizes, decoded, False)
        folder = path.parent if path is not None else Path(tempfile.gettempdir())  # too large for RAM: a file
        try:
            make_folder(folder)
        except WriteError as error:
            named = f" (${env.CACHE_DIR})" if env.cache_dir() else ""
            raise WriteError(f"{error}{named}, or pass --no-cache") from None
        remove_stale_temporaries(folder)
        tmp = folder / temporary_name("cache.npy")
        try:
            buffer = _open_buffer(tmp, shape)
            sizes, decoded = _decode(root, rows, image_size, buffer, workers, problems, interrupt)
            buffer.flush()
            del buffer
            if path is not None and decoded.all():  # complete caches only, each file put in place whole
                sizes_file = io.BytesIO()
                np.save(sizes_file, sizes)
                write_file(path.with_suffix(".sizes.npy"), sizes_file.getvalue())
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
                return cls._load(rows, path, from_disk=False)  # decoded by this run
            return cls(rows, np.load(tmp, mmap_mode="c"), sizes, decoded, False)
        finally:
            tmp.unlink(missing_ok=True)  # an open mapping stays valid; its space is freed when it closes

    @classmethod
    def _load(cls, rows: Sequence[Annotation], path: Path, from_disk: bool) -> ImageCache:
        images = np.load(path, mmap_mode="c")  # copy-on-write: writable for torch, never written back
        sizes = np.load(path.with_suffix(".sizes.npy"))
        if images.shape[0] != len(rows) or sizes.shape != (len(rows), 2):
            raise ValueError(f"{path}: does not match its rows")
        return cls(rows, images, sizes, np.ones(len(rows), dtype=bool), from_disk)


def _open_buffer(tmp: Path, shape: tuple[int, ...]) -> np.memmap:
    """A memory-mapped (N, 3, S, S) uint8 array in ``tmp``, its disk space reserved now: a full disk is a
    WriteError here, not a SIGBUS while decoding."""
    try:
        buffer = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        if hasattr(os, "posix_fallocate"):
            with open(tmp, "r+b") as handle:
                try:
                    os.posix_fallocate(handle.fileno(), 0, os.path.getsize(tmp))
                except OSError as error:
                    if error.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: a file system that cannot reserve
                        raise
    except OSError as error:  # its caller removes ``tmp``
        raise write_error(tmp.parent / "cache.npy", error, int(np.prod(shape))) from None
    return buffer


@contextlib.contextmanager
def c_stderr() -> Iterator[list[str]]:
    """What C libraries print on the process's stderr meanwhile (libjpeg's "Corrupt JPEG data", naming no file),
    captured into the list it gives (one text once the block ends), to be said with the file it is about."""
    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            said.append(capture.read().decode("utf-8", "replace"))


def _decode(root, rows, image_size, buffer, workers, problems, interrupt) -> tuple[np.ndarray, np.ndarray]:
    """Each row's image decoded and resized into ``buffer`` (N, 3, S, S); the original (width, height) per row
    and whether it decoded. What cannot be decoded is reported to ``problems``."""
    sizes = np.zeros((len(rows), 2), dtype=np.int64)
    problem: list[str | None] = [None] * len(rows)  # None where the image decoded

    def decode(i: int) -> None:  # cv2 releases the GIL: threads decode in parallel
        interrupt()
        image, problem[i] = decode_image(image_path(root, rows[i]))
        if image is not None:
            sizes[i] = (image.shape[1], image.shape[0])
            buffer[i] = resize_square(image, image_size).transpose(2, 0, 1)

    with c_stderr() as said, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(decode, range(len(rows))))
    if "Corrupt JPEG data" not in said[0]:
        sys.stderr.write(said[0])  # what else a library said, as it said it
    # libjpeg named no file: each image that decoded is decoded alone again, to find the one it spoke of
    for i in [i for i, p in enumerate(problem) if p is None] if "Corrupt JPEG data" in said[0] else []:
        with c_stderr() as alone:
            decode_image(image_path(root, rows[i]))
        if "Corrupt JPEG data" in alone[0]:
            problem[i] = f"corrupt image {image_path(root, rows[i])} (libjpeg: {alone[0].strip()})"
    decoded = np.array([p is None for p in problem], dtype=bool)
    if rows and not decoded.any() and not any(image_path(root, row).exists() for row in rows):
        raise DataError(
            f"{root / 'images'}: none of the {len(rows)} images of the rows is there (has the dataset moved?); pass "
            "--dataset with the folder that holds them"
        )
    for i in np.flatnonzero(~decoded).tolist():
        problems.report(rows[i].where, str(problem[i]))
    return sizes, decoded

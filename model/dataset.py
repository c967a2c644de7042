"""One split of the dataset as the tensors the networks eat (where the dataset is: model/data/location.py).

images  (N, 3, S, S) uint8 RGB, decoded once (model/data/cache.py) and normalised on the device
labels  (N,) int64, index into the sorted class names
boxes   (N, 4) float32, xyxy divided by the ORIGINAL image width and height, in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from model import config
from model.data.annotations import Annotation, Problems, check_box, image_path
from model.data.cache import ImageCache, fits_in_memory
from model.data.images import box_to_unit, normalize


class DetectionDataset(torch.utils.data.Dataset):
    """Rows of one split, decoded once (by an ImageCache, shared between splits when given).

    ``images`` (N, 3, S, S) uint8 RGB, ``labels`` (N,) int64, ``boxes`` (N, 4) float32 xyxy in
    [0, 1], ``sizes`` (N, 2) int64 original (width, height). ``rows`` are the rows kept (bad ones
    are reported or, with ``problems.skip``, dropped). A split that would not fit in memory stays
    memory-mapped in the cache and is gathered batch by batch.
    """

    def __init__(
        self,
        root: Path,
        rows: Sequence[Annotation],
        classes: Sequence[str],
        image_size: int,
        problems: Problems,
        workers: int = 1,
        mean: Sequence[float] = config.IMAGENET_MEAN,
        std: Sequence[float] = config.IMAGENET_STD,
        cache=None,
    ):
        self.root, self.classes, self.image_size = Path(root), list(classes), image_size
        self.mean, self.std = tuple(mean), tuple(std)
        if cache is None or any(row.key not in cache.index for row in rows):
            cache = ImageCache.build(root, rows, image_size, problems, workers)
        index = {name: i for i, name in enumerate(self.classes)}
        kept, positions, labels, boxes = [], [], [], []
        for row, i in zip(rows, cache.lookup(rows).tolist()):
            if not cache.decoded[i]:
                continue  # reported when the cache decoded it
            width, height = (int(v) for v in cache.sizes[i])
            box = check_box(row, width, height, problems)
            if box is None:
                continue
            kept.append(row)
            positions.append(i)
            labels.append(index[row.label])
            boxes.append(box_to_unit(box, width, height))
        self.rows = kept
        position = torch.tensor(positions, dtype=torch.int64)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        self.sizes = cache.sizes[position].reshape(-1, 2)
        nbytes = len(kept) * 3 * image_size * image_size
        if fits_in_memory(nbytes):
            self._source, self._position = cache.images[position], None  # contiguous, in memory
        else:
            self._source, self._position = cache.images, position  # memory-mapped, gathered per batch

    @property
    def images(self) -> torch.Tensor:
        """(N, 3, S, S) uint8; materialised from the memory map when the split did not fit in RAM."""
        return self._source if self._position is None else self._source[self._position]

    @images.setter
    def images(self, value: torch.Tensor) -> None:
        self._source, self._position = value, None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def images_nbytes(self) -> int:
        return len(self) * 3 * self.image_size * self.image_size

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) indices -> (B, 3, S, S) uint8."""
        return self._source[idx if self._position is None else self._position[idx]]

    def gather_into(self, idx: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The same into ``out`` (B, 3, S, S) uint8, e.g. a page-locked buffer: no temporary."""
        return torch.index_select(self._source, 0, idx if self._position is None else self._position[idx], out=out)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        """(3, S, S) float32 normalised image, label index, (4,) box in [0, 1] (for DataLoader users)."""
        return normalize(self.gather(torch.tensor([i])), self.mean, self.std)[0], self.labels[i], self.boxes[i]

    def paths(self) -> list[Path]:
        return [image_path(self.root, row) for row in self.rows]

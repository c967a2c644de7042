"""predict.py's settings: what to show, how and where; checked when built, before torch is imported.

Three things predict.py does, each with the options that go with it (an option of another one is refused,
never silently ignored): predictions (the default), ``--augment-preview N`` (what training feeds the network)
and ``--annotate`` (drawing the boxes of internet images with the mouse).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model import config
from model.core.errors import UserError

GALLERY_FORMATS = (".png", ".jpg", ".jpeg")  # what the gallery is encoded as (OpenCV's encoder of its suffix)
DEFAULT_SAVE_DIR = config.OUTPUT_DIR / "predictions"
DEFAULT_GALLERY_MAX = 24
DEFAULT_IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class PredictSettings:
    """predict.py's options; None (or False) where an option was not given."""

    inputs: tuple[Path, ...]
    checkpoint: Path = config.OUTPUT_DIR / config.BEST_CHECKPOINT
    failures_only: bool = False
    iou_threshold: float | None = None
    save_dir: Path | None = None
    gallery: Path | None = None
    gallery_max: int | None = None
    cam: bool = False
    delay: int | None = None
    dataset: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    skip_bad_rows: bool = False
    augment_preview: int | None = None
    augment: str | None = None
    annotate: bool = False

    def __post_init__(self) -> None:
        self._check_mode()
        if self.gallery is not None and self.gallery.suffix.lower() not in GALLERY_FORMATS:
            raise UserError(
                f"--gallery {self.gallery}: a gallery is an image; end its name with {', '.join(GALLERY_FORMATS)}"
            )
        if self.gallery_max is not None and self.gallery is None:
            raise UserError("--gallery-max goes with --gallery; drop it (or add --gallery FILE)")
        if self.delay is not None and self.save_dir is not None:
            raise UserError("--delay is the time each image stays in the window: it does not go with --save; drop it")

    def _check_mode(self) -> None:
        """The options of predictions, --augment-preview and --annotate do not mix."""
        given = {
            "--failures-only": self.failures_only,
            "--iou-threshold": self.iou_threshold is not None,
            "--cam": self.cam,
            "--gallery": self.gallery is not None,
            "--augment": self.augment is not None,
            "--save": self.save_dir is not None,
            "--delay": self.delay is not None,
        }
        allowed = {
            "--augment-preview": ("--augment", "--save", "--delay"),
            "--annotate": (),
            "": ("--failures-only", "--iou-threshold", "--cam", "--gallery", "--save", "--delay"),
        }[self.mode]
        extra = [name for name, on in given.items() if on and name not in allowed]
        if extra:
            what = f"with {self.mode}" if self.mode else "without --augment-preview"
            raise UserError(f"{extra[0]} does not go {what}; drop it")
        if self.augment_preview is not None and self.annotate:
            raise UserError("--augment-preview and --annotate are two things predict.py does: choose one")

    @property
    def mode(self) -> str:
        return "--annotate" if self.annotate else "--augment-preview" if self.augment_preview is not None else ""

    @property
    def threshold(self) -> float:
        return DEFAULT_IOU_THRESHOLD if self.iou_threshold is None else self.iou_threshold

    @property
    def thumbnails(self) -> int:
        """How many images the gallery takes (0: no gallery)."""
        return 0 if self.gallery is None else self.gallery_max or DEFAULT_GALLERY_MAX

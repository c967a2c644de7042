"""Where the dataset is: --dataset, then $CVPR_DATASET, then the course cluster's folder, then ./dataset; else
the generated demo set. A path given explicitly (option or variable) that holds no dataset is an error, never
a silent fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from model import config
from model.core import env
from model.core.files import is_dataset
from model.data import demo
from model.data.annotations import DataError

TINY_DEMO_IMAGES = 240  # the demo set with $CVPR_TINY=1 (Part 1 Q9.3 trains on 0.5 % of it: one image)


def find_dataset(explicit: Path | None) -> Path | None:
    """The dataset root: --dataset, $CVPR_DATASET, the course cluster's folder, ./dataset; None when none of
    them exists."""
    if explicit is not None:
        if not is_dataset(explicit):
            raise DataError(f"--dataset {explicit}: no images/ and annotations/ folders there (check the path)")
        return Path(explicit)
    from_env = env.dataset()
    if from_env is not None:
        if not is_dataset(from_env):
            raise DataError(
                f"${env.DATASET}={from_env}: no images/ and annotations/ folders there (fix or unset the variable)"
            )
        return from_env
    return next((path for path in (config.COURSE_DATASET, config.LOCAL_DATASET) if is_dataset(path)), None)


def locate_dataset(
    explicit: Path | None,
    echo: Callable[[str], None],
    demo_root: Path = config.DEMO_DATASET,
    demo_images: int = config.DEMO_IMAGES,
) -> Path:
    """``find_dataset``'s, else the demo set in ``demo_root``, generated once (and said in one line)."""
    found = find_dataset(explicit)
    if found is not None:
        return found
    if env.tiny():  # the docs' commands at the smallest scale: a demo set of their own, small
        demo_root, demo_images = demo_root.with_name(f"{demo_root.name}-tiny"), TINY_DEMO_IMAGES
    if demo.ensure(demo_root, demo_images, config.DEMO_SEED):
        echo(
            f"No course dataset found (--dataset, ${env.DATASET}, {config.COURSE_DATASET}, ./{config.LOCAL_DATASET}): "
            f"generated the demo dataset in {demo_root}"
        )
    else:
        echo(f"No course dataset found: using the demo dataset in {demo_root}")
    return demo_root

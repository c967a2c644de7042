"""Show a model's predictions (box, label, confidence) on images, with the truth when it is known.

INPUT is any mix of CSV files in the course row format (split files, annotation files,
web_images/annotations.csv: true label and box known), image files, and folders (a dataset, a
folder laid out as images/<label>/ or <label>/ giving the true label, or plain images).
The work is model/prediction/command.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from model import config
from model.core.cli import FiniteFloat, checked, device_option, path_type, precision_option
from model.data.augment import AUGMENT_POLICIES
from model.prediction.settings import DEFAULT_GALLERY_MAX, DEFAULT_IOU_THRESHOLD, DEFAULT_SAVE_DIR, PredictSettings


@click.command(context_settings={"show_default": True, "max_content_width": 110})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--model",
    "checkpoint",
    type=path_type(),
    default=config.OUTPUT_DIR / config.BEST_CHECKPOINT,
    help="Checkpoint to run.",
)
@click.option(
    "--failures-only",
    is_flag=True,
    help="Only the failures: wrong label, or IoU below --iou-threshold when the true box is known.",
)
@click.option("--iou-threshold", type=FiniteFloat(0, 1), default=None, help=f"  [default: {DEFAULT_IOU_THRESHOLD}]")
@click.option(
    "--save",
    "save_dir",
    type=path_type(),
    default=None,
    help=f"Write the annotated images here instead of showing them  [default without a display: {DEFAULT_SAVE_DIR}]",
)
@click.option(
    "--gallery",
    type=path_type(),
    default=None,
    help="Also write a grid of the selected images to this .png or .jpg file (for the report).",
)
@click.option(
    "--gallery-max",
    type=click.IntRange(min=1, max=1000),
    default=None,
    help=f"Images in the gallery at most.  [default: {DEFAULT_GALLERY_MAX}]",
)
@click.option("--cam", is_flag=True, help="Overlay a Grad-CAM heat map of the predicted class.")
@click.option(
    "--delay",
    type=click.IntRange(min=0),
    default=None,
    help="On screen: milliseconds per image; 0 waits for a key (q or ESC quits).  [default: 0]",
)
@click.option(
    "--dataset",
    type=path_type(),
    default=None,
    help="Where the images of CSV rows are  [default: the CSV's own dataset, else the training one]",
)
@device_option()
@precision_option()
@click.option("--skip-bad-rows", is_flag=True, help="Skip bad CSV rows instead of stopping.")
@click.option(
    "--augment-preview",
    type=click.IntRange(min=1, max=64),
    default=None,
    metavar="N",
    help="Instead of predictions: each image as the network sees it, then N augmented versions with the box.",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENT_POLICIES),
    default=None,
    help="--augment-preview's policy  [default: the model's own, light if it trained without]",
)
@click.option(
    "--annotate",
    is_flag=True,
    help="Instead of predictions: draw the box of each internet image that has none (web_images/images), with "
    "the mouse, into web_images/annotations.csv (needs a display).",
)
def main(**values: Any) -> None:
    """Show predictions on INPUT... (CSV files, images, folders); any key: next image, q or ESC: quit.

    \b
    python predict.py output/test_data.csv
    python predict.py --model output/vgg/best.pth --failures-only output/vgg/test_data.csv
    python predict.py web_images/images --gallery doc/web_gallery.png --save output/web
    python predict.py --cam --failures-only output/test_data.csv
    python predict.py --augment-preview 8 --augment strong --save output/augmented output/test_data.csv
    python predict.py --annotate web_images/images
    """
    with checked():
        settings = PredictSettings(**values)
        from model.prediction.command import predict  # torch: only once the options are known

        predict(settings)


if __name__ == "__main__":
    main()

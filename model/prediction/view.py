"""Where predict.py's drawn images go: a window (any key: next image, q or ESC: quit), or files in --save's
folder, written aside and put in place together with the gallery when every image is drawn.

A window needs a display that can really be opened: DISPLAY set to a server that is gone, or an X11
forwarding that refuses, makes OpenCV's Qt abort the whole process. ``display_usable`` tries one in a
child process first, so predict.py falls back to saving with a one-line note instead.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import cv2
import numpy as np

from model.core import env
from model.core.errors import UserError
from model.core.owned import Staging
from model.data.images import decode_image
from model.prediction.inputs import Item
from model.reporting.visualize import encode_image

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or ESC
WINDOW_PROBE = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
PROBE_SECONDS = 20


def display_usable() -> tuple[bool, str]:
    """Whether a window can be opened here, and why not (a line for the user)."""
    if sys.platform in ("darwin", "win32"):
        return True, ""
    shown = env.display()
    if shown is None:
        return False, "no display (DISPLAY is not set)"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", WINDOW_PROBE], capture_output=True, timeout=PROBE_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return False, f"{shown} did not answer within {PROBE_SECONDS} s"
    if probe.returncode != 0:
        return False, f"{shown} cannot be opened (is its server running? ssh -X/-Y?)"
    return True, ""


def show_window(canvas: np.ndarray, delay: int) -> bool:
    """Show ``canvas`` until a key (or ``delay`` ms); whether the user asked to quit."""
    try:
        cv2.imshow("predict.py: any key next, q or ESC quits", canvas)
        key = cv2.waitKey(delay) & 0xFF
    except cv2.error as error:  # e.g. no GUI backend, or an X11 forwarding problem
        raise UserError(
            f"cannot open a window ({str(error).strip().splitlines()[-1]}); pass --save DIR to write the images instead"
        ) from None
    return key in QUIT_KEYS


@dataclass
class View:
    """Where the drawn images go: a window, or files in --save's folder (a staged change)."""

    saved: Staging | None
    delay: int
    gallery_max: int
    thumbnails: list[np.ndarray] = field(default_factory=list)
    unreadable: int = 0

    def read(self, item: Item) -> np.ndarray | None:
        rgb, problem = decode_image(item.path)
        if rgb is None:
            click.echo(f"warning: {problem}, skipped", err=True)
            self.unreadable += 1
            return None
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def put(self, canvas: np.ndarray, name: str, in_gallery: bool = True) -> bool:
        """Show or save ``canvas``; whether the user asked to quit."""
        if in_gallery and len(self.thumbnails) < self.gallery_max:
            self.thumbnails.append(canvas)
        if self.saved is not None:
            self.saved.write_bytes(name, encode_image(canvas, Path(name).suffix))
            return False
        try:
            return show_window(canvas, self.delay)
        except BaseException:
            cv2.destroyAllWindows()
            raise

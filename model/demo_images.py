"""One image of the demo dataset: an object drawn with OpenCV (a side-view airplane, a frontal face or a
motorcycle) at a random position, scale, tilt and colour, on a textured background cluttered with distractor
shapes (circles that look like wheels, ellipses that look like heads, bars and polygons). Its box is the tight
bound of the object's drawn pixels; its size varies like Caltech-101's (200-500 px, most about 300 px wide). Every
image depends only on (seed, label, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ("airplane", "face", "motorcycle")


# ----------------------------------------------------------------------------------------------
# Drawing: every primitive goes into the colour layer and the object mask (its alpha) alike
# ----------------------------------------------------------------------------------------------
@dataclass
class Painter:
    """Draws into ``layer`` (H, W, 4) uint8 the object's RGB colour, and its mask as alpha (255 where drawn); object
    coordinates (u right, v down, in units of the object's height) map to pixels by a shift, a scale, a tilt, a flip."""

    layer: np.ndarray
    cx: float
    cy: float
    scale: float  # pixels per unit
    angle: float  # radians
    flip: bool
    width_units: float

    def pixels(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        u, v = (p[:, 0] - self.width_units / 2) * (-1 if self.flip else 1), p[:, 1] - 0.5
        c, s = math.cos(self.angle), math.sin(self.angle)
        x, y = self.cx + self.scale * (c * u - s * v), self.cy + self.scale * (s * u + c * v)
        return np.round(np.stack([x, y], axis=1)).astype(np.int32)

    def polygon(self, points, colour) -> None:
        cv2.fillPoly(self.layer, [self.pixels(points)], (*colour, 255))

    def ellipse(self, cu, cv, au, av, colour) -> None:
        self.polygon(ellipse_points(cu, cv, au, av), colour)

    def line(self, points, colour, width_units: float) -> None:
        thickness = max(1, round(width_units * self.scale))
        cv2.polylines(self.layer, [self.pixels(points)], False, (*colour, 255), thickness, cv2.LINE_8)


def ellipse_points(cu: float, cv: float, au: float, av: float, start: float = 0, end: float = 360, n: int = 48):
    t = np.radians(np.linspace(start, end, n))
    return np.stack([cu + au * np.cos(t), cv + av * np.sin(t)], axis=1)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, ...]:
    return tuple(int(c) for c in rng.integers(low, high, 3))  # red, green, blue


def _shade(colour: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


SKIN_TONES = ((255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30))


def draw_airplane(p: Painter, rng: np.random.Generator, width_units: float) -> None:
    """Side view, nose to the right (before flipping): fuselage, fin, wing, engine, windows."""
    body, accent, L = _colour(rng, 60), _colour(rng), width_units
    half_h, cy = rng.uniform(0.09, 0.14), rng.uniform(0.55, 0.62)
    # fuselage: a long capsule with a rounder nose
    top = [(L * 0.06, cy - half_h * 0.8), (L * 0.88, cy - half_h)]
    nose = ellipse_points(L * 0.88, cy, L * 0.11, half_h, -90, 90, 16)
    bottom = [(L * 0.88, cy + half_h), (L * 0.1, cy + half_h * 0.9), (L * 0.02, cy - half_h * 0.4)]
    p.polygon(np.vstack([top, nose, bottom]), body)
    # tail fin and horizontal stabiliser
    fin_top = rng.uniform(0.0, 0.12)
    fin = [(L * 0.03, cy - half_h * 0.5), (L * 0.06, fin_top), (L * 0.14, fin_top), (L * 0.24, cy - half_h * 0.9)]
    p.polygon(fin, accent)
    stabiliser = [(L * 0.05, cy), (L * 0.2, cy), (L * 0.12, cy + half_h * 1.6), (L * 0.06, cy + half_h * 1.6)]
    p.polygon(stabiliser, _shade(body, 0.8))
    # swept wing below the fuselage, and an engine under it
    w0, wing_low, wing_top = rng.uniform(0.38, 0.5), min(1.0, cy + rng.uniform(0.25, 0.4)), cy + half_h * 0.3
    wing = [(L * w0, wing_top), (L * (w0 + 0.2), wing_top), (L * (w0 + 0.02), wing_low), (L * (w0 - 0.06), wing_low)]
    p.polygon(wing, _shade(body, 0.7))
    if rng.random() < 0.7:
        p.ellipse(L * (w0 + 0.08), cy + half_h * 1.7, L * 0.06, half_h * 0.55, _shade(accent, 0.6))
    # windows and cockpit
    window, r = _colour(rng, 150), half_h * 0.25
    for u in np.arange(L * 0.3, L * 0.82, r * 3.2):
        p.ellipse(u, cy - half_h * 0.25, r, r, window)
    p.ellipse(L * 0.92, cy - half_h * 0.45, L * 0.03, half_h * 0.3, window)


def draw_face(p: Painter, rng: np.random.Generator, width_units: float) -> None:
    """Frontal face: hair, head, ears, eyes, eyebrows, nose, mouth (object height 1)."""
    W = width_units
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] if rng.random() < 0.7 else _colour(rng, 80)
    skin = _shade(skin, rng.uniform(0.8, 1.1))
    hair, cx = _colour(rng, 0, 120) if rng.random() < 0.8 else _colour(rng), W / 2
    # hair cap behind the head, ears, head
    p.ellipse(cx, 0.4, W * 0.5, 0.4, hair)
    for side in (-1, 1):
        p.ellipse(cx + side * W * 0.44, 0.55, W * 0.07, 0.09, _shade(skin, 0.9))
    p.ellipse(cx, 0.56, W * 0.42, 0.43, skin)
    p.polygon(ellipse_points(cx, 0.3, W * 0.42, 0.2, 180, 360, 24), hair)  # fringe
    # eyes with pupils, eyebrows
    eye_y, iris = rng.uniform(0.47, 0.53), _colour(rng, 0, 160)
    for side in (-1, 1):
        ex = cx + side * W * rng.uniform(0.15, 0.19)
        p.ellipse(ex, eye_y, W * 0.08, 0.035, (245, 245, 245))
        p.ellipse(ex, eye_y, W * 0.035, 0.033, iris)
        p.line([(ex - W * 0.09, eye_y - 0.07), (ex + W * 0.09, eye_y - 0.08 + side * 0.005)], hair, 0.02)
    # nose and mouth
    p.line([(cx, eye_y + 0.05), (cx - W * 0.05, 0.68), (cx + W * 0.03, 0.69)], _shade(skin, 0.6), 0.015)
    lips = (int(rng.integers(120, 220)), int(rng.integers(30, 90)), int(rng.integers(40, 110)))
    lower_lip = ellipse_points(cx, 0.78, W * 0.14, 0.02 + rng.uniform(0.01, 0.05), 0, 180, 16)  # a smile
    p.polygon(np.vstack([lower_lip, ellipse_points(cx, 0.78, W * 0.14, 0.015, 180, 360, 16)]), lips)


def draw_motorcycle(p: Painter, rng: np.random.Generator, width_units: float) -> None:
    """Side view, front to the right (before flipping): two wheels, frame, tank, seat, bars."""
    L, body, tyre, metal = width_units, _colour(rng, 40), _colour(rng, 0, 60), _colour(rng, 140, 230)
    r = rng.uniform(0.27, 0.32)
    wy = 1.0 - r
    rear, front = (r, wy), (L - r, wy)
    for cu, cv in (rear, front):
        p.ellipse(cu, cv, r, r, tyre)
        cv2.fillPoly(p.layer, [p.pixels(ellipse_points(cu, cv, r * 0.72, r * 0.72))], (0, 0, 0, 0))  # a hole
        for angle in np.linspace(0, math.pi, 4, endpoint=False) + rng.uniform(0, 1):
            du, dv = r * 0.72 * math.cos(angle), r * 0.72 * math.sin(angle)
            p.line([(cu - du, cv - dv), (cu + du, cv + dv)], metal, 0.015)
        p.ellipse(cu, cv, r * 0.15, r * 0.15, metal)
    # frame: rear hub -> seat -> steering head -> front hub, and down tubes
    seat, head = (L * 0.38, 0.38), (L - r * 1.3, 0.2)
    p.line([rear, seat, head, front], body, 0.06)
    p.line([rear, (L * 0.5, wy - 0.05), head], body, 0.05)
    # engine block, tank, seat, handlebar, headlight, exhaust
    p.polygon([(L * 0.36, 0.52), (L * 0.6, 0.5), (L * 0.58, 0.8), (L * 0.4, 0.82)], metal)
    p.ellipse(L * 0.55, 0.36, L * 0.14, 0.09, body)
    p.polygon([(L * 0.22, 0.36), (L * 0.42, 0.33), (L * 0.42, 0.4), (L * 0.24, 0.42)], _colour(rng, 0, 70))
    bar_top = rng.uniform(0.0, 0.06)
    p.line([head, (head[0] - L * 0.04, bar_top), (head[0] - L * 0.12, bar_top + 0.02)], tyre, 0.03)
    p.ellipse(head[0] + L * 0.04, 0.28, L * 0.035, 0.05, (240, 240, int(rng.integers(150, 240))))
    p.line([(L * 0.45, 0.82), (L * 0.12, 0.72)], metal, 0.035)


DRAWERS = {"airplane": draw_airplane, "face": draw_face, "motorcycle": draw_motorcycle}
# object width / height (in units of its height), and the share of the image it spans
ASPECT = {"airplane": (2.2, 3.2), "face": (0.72, 0.85), "motorcycle": (1.4, 1.8)}


# ----------------------------------------------------------------------------------------------
# Background and clutter
# ----------------------------------------------------------------------------------------------
def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Gradient between two colours, low-frequency texture and fine noise: (H, W, 3) uint8."""
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    t = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
    ramp = a + (b - a) * t[:, None]
    image = np.broadcast_to(ramp[None] if len(t) == width else ramp[:, None], (height, width, 3)).copy()
    coarse = rng.normal(0, rng.uniform(10, 40), (rng.integers(3, 9), rng.integers(3, 9), 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, rng.uniform(2, 12), (height, width, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Distractor shapes: wheel-like circles, head-like ellipses, bars, polygons, lines."""
    h, w = image.shape[:2]
    for _ in range(count):
        colour, kind = _colour(rng), rng.integers(5)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.uniform(0.04, 0.25) * min(h, w)) + 2
        thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, 5))
        if kind == 0:
            cv2.circle(image, (x, y), size, colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            axes = (size, int(size * rng.uniform(0.4, 1.4)) + 1)
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, thickness, cv2.LINE_AA)
        elif kind == 2:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.2, 2))), colour, thickness)
        elif kind == 3:
            pts = (rng.normal(0, size, (int(rng.integers(3, 7)), 2)) + np.array([x, y])).astype(np.int32)
            cv2.fillPoly(image, [pts], colour, cv2.LINE_AA)
        else:
            x2, y2 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.line(image, (x, y), (x2, y2), colour, int(rng.integers(1, 6)), cv2.LINE_AA)


# ----------------------------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------------------------
@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 BGR, ready for cv2.imwrite
    mask: np.ndarray  # (H, W) uint8, 255 where the object was drawn
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels; x2, y2 exclusive (tight bound of mask)


def render(label: str, seed: int, index: int) -> Sample:
    """The image ``index`` of class ``label`` for ``seed``; depends on nothing else."""
    rng = np.random.default_rng([seed, CLASSES.index(label), index])
    width = int(np.clip(rng.normal(310, 70), 200, 500))  # like Caltech-101: 200-500 px, most about 300 px wide
    height = int(np.clip(width * rng.uniform(0.6, 1.0), 180, 500))  # whatever the class
    image = background(rng, height, width)
    clutter(rng, image, int(rng.integers(2, 9)))
    layer = draw_object(label, rng, height, width)
    mask = layer[..., 3].copy()
    image[mask > 0] = layer[..., :3][mask > 0]
    clutter(rng, image, int(rng.integers(0, 3)) if rng.random() < 0.3 else 0)  # a little occlusion
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    x, y, w, h = cv2.boundingRect(mask)  # the drawn pixels' tight bound
    return Sample(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, (x, y, x + w, y + h))


def draw_object(label: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The object alone, tilted, at a random place: (H, W, 4) uint8, its RGB colour and its mask as alpha."""
    aspect, angle = rng.uniform(*ASPECT[label]), math.radians(rng.uniform(-12, 12))
    # the object spans 50-90 % of the image along its limiting side (Caltech objects are large)
    span = rng.uniform(0.5, 0.9)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    diag_w, diag_h = aspect * cos + sin, aspect * sin + cos  # rotated extent, in units
    scale = span * min(width / diag_w, height / diag_h)
    half_w, half_h = scale * diag_w / 2, scale * diag_h / 2
    cx, cy = rng.uniform(half_w, width - half_w), rng.uniform(half_h, height - half_h)
    painter = Painter(np.zeros((height, width, 4), np.uint8), cx, cy, scale, angle, bool(rng.random() < 0.5), aspect)
    DRAWERS[label](painter, rng, aspect)
    return painter.layer


def render_in_box(label: str, box: tuple[float, float, float, float], seed: int, index: int) -> Sample:
    """An image of ``label`` whose object fills the given box (pixels, xyxy) exactly.

    The image is just large enough to hold the box plus a random margin, as when a dataset is
    rebuilt from annotation rows alone (the course's split files): an object drawn alone at a
    Caltech-like size is cut to its bound and stretched onto the box. A box of zero width or
    height gets no object.
    """
    rng = np.random.default_rng([seed, CLASSES.index(label), index, 1])
    x1, y1, x2, y2 = (round(v) for v in box)
    width, height = x2 + int(rng.integers(1, max(2, x2 // 5))), y2 + int(rng.integers(1, max(2, y2 // 5)))
    image = background(rng, height, width)
    clutter(rng, image, int(rng.integers(1, 5)))
    mask = np.zeros((height, width), np.uint8)
    if x2 > x1 and y2 > y1:
        layer = draw_object(label, rng, height=240, width=320)
        sx, sy, sw, sh = cv2.boundingRect(layer[..., 3])
        patch = cv2.resize(layer[sy : sy + sh, sx : sx + sw], (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        mask[y1:y2, x1:x2] = patch[..., 3]
        image[y1:y2, x1:x2][patch[..., 3] > 0] = patch[..., :3][patch[..., 3] > 0]
    return Sample(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, (x1, y1, x2, y2))

"""Classic OpenCV baselines for Part 4, scored with the same figures as the networks.

- ``hog_svm``: HOG features (cv2.HOGDescriptor on 64x64 grey images) classified by OpenCV's own SVM
  (cv2.ml, RBF kernel; C and gamma chosen by OpenCV's 3-fold grid search on the run's training
  split); the box is the bounding rectangle of the largest edge blob (Canny, dilation, contours).
- ``haar_face``: OpenCV's frontal-face Haar cascade (shipped with opencv-python 4.x): an image
  with a detection is called "face" and gets the largest detection as box; the others get the
  HOG+SVM label and the edge box, so the row covers all three classes. Its minNeighbors is the
  one that tells faces from the rest best (F1) on the training split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import cv2.data
import numpy as np
import torch

from model.annotations import Annotation, image_path
from model.engine import DetectionLoss
from model.errors import UserError
from model.images import pairwise_iou
from model.metrics import ImageResults

HOG_SIZE = 64
BOX_WORK_SIDE = 256  # edge boxes are computed on images scaled to this longer side
Box = tuple[float, float, float, float]  # xyxy in pixels


def _read(root: Path, row: Annotation) -> np.ndarray:
    image = cv2.imread(str(image_path(root, row)), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{image_path(root, row)}: unreadable image")
    return image


def hog_features(images: Sequence[np.ndarray]) -> np.ndarray:
    # window 64x64, blocks 16x16 with stride 8, cells 8x8, 9 orientations: 1,764 features
    size = (HOG_SIZE, HOG_SIZE)
    hog = cv2.HOGDescriptor(size, (16, 16), (8, 8), (8, 8), 9)
    grey = (cv2.cvtColor(cv2.resize(im, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY) for im in images)
    return np.stack([np.asarray(hog.compute(g)).ravel() for g in grey]).astype(np.float32)


# Validated grid for the RBF SVM: C, and gamma relative to 1 / (median squared distance between
# training HOG vectors), the scale at which the kernel neither saturates to 0 nor to 1. (A fixed
# gamma of 0.5 was about 20 times too large: every kernel value ~0, one class predicted.)
SVM_C = (1.0, 10.0, 100.0)
SVM_GAMMA_FACTORS = (0.5, 1.0, 2.0)
SVM_FOLDS = 3
HAAR_MIN_NEIGHBORS = (3, 5, 8, 12, 20)
HAAR_SELECTION_IMAGES = 300  # training images the Haar threshold is chosen on, at most


def _grid(values: Sequence[float]) -> cv2.ml.ParamGrid:
    """OpenCV's grid: min, min * step, ... below max; the values must be geometric."""
    step = values[1] / values[0]
    return cv2.ml.ParamGrid.create(values[0], values[-1] * (1 + (step - 1) / 2), step)


def train_svm(features: np.ndarray, labels: np.ndarray) -> cv2.ml.SVM:
    """RBF SVM whose C and gamma are chosen by OpenCV's k-fold grid search on the training split."""
    svm = cv2.ml.SVM.create()
    svm.setType(cv2.ml.SVM_C_SVC)
    svm.setKernel(cv2.ml.SVM_RBF)
    svm.setTermCriteria((cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 1000, 1e-6))
    x = features[:200]  # the median squared distance between training HOG vectors, on a sample
    scale = 1.0 / float(np.median(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)[np.triu_indices(len(x), 1)]))
    unused = cv2.ml.ParamGrid.create(0, 0, 0)  # a log step of 0 leaves p, nu, coef and degree out of the search
    folds = min(SVM_FOLDS, np.bincount(labels).min())
    grids = _grid(SVM_C), _grid([f * scale for f in SVM_GAMMA_FACTORS]), unused, unused, unused, unused
    svm.trainAuto(features, cv2.ml.ROW_SAMPLE, labels.astype(np.int32), folds, *grids, True)
    return svm


def choose_min_neighbors(neighbors: Sequence[list], is_face: np.ndarray) -> int:
    """The Haar cascade's minNeighbors that best tells faces from the rest (F1) on training images'
    detections."""

    def f1(threshold: int) -> float:
        found = np.array([any(n >= threshold for _, n in d) for d in neighbors])
        return 2 * float((found & is_face).sum()) / max(1.0, found.sum() + is_face.sum())

    return max(HAAR_MIN_NEIGHBORS, key=f1)  # the first of equals


def edge_box(image: np.ndarray) -> Box:
    """Bounding rectangle of the largest edge blob, in pixels of ``image``; the whole image if none."""
    height, width = image.shape[:2]
    scale = BOX_WORK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
    median = float(np.median(grey))
    blobs = cv2.dilate(cv2.Canny(grey, 0.66 * median, 1.33 * median), np.ones((5, 5), np.uint8), iterations=2)
    contours, _ = cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return (0.0, 0.0, float(width), float(height))
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return (x / scale, y / scale, (x + w) / scale, (y + h) / scale)


def haar_detections(image: np.ndarray, cascade: cv2.CascadeClassifier) -> list[tuple[Box, int]]:
    """Face detections as (xyxy pixels, number of neighbouring raw detections that support it).

    Asked with minNeighbors 1 once: a detection survives a higher minNeighbors k exactly when its
    support is at least k, so one pass serves every threshold.
    """
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    faces, support = cascade.detectMultiScale2(grey, scaleFactor=1.1, minNeighbors=1, minSize=(24, 24))
    return [((float(x), float(y), float(x + w), float(y + h)), int(n)) for (x, y, w, h), n in zip(faces, support)]


def largest_face(detections: list, min_neighbors: int) -> Box | None:
    """The largest detection supported by at least ``min_neighbors``, or None."""
    kept = [box for box, n in detections if n >= min_neighbors]
    return max(kept, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if kept else None


def load_cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise UserError(f"{path}: OpenCV's Haar cascade is missing (opencv-python 5 ships none: install "
                        "opencv-python<5)")  # fmt: skip
    return cascade


@dataclass
class Baseline:
    """One classic row of the comparison: its per-image results, its loss terms (the networks' loss) and
    the hyper-parameters chosen."""

    results: ImageResults
    losses: dict[str, float]  # loss, class_loss, box_loss: the run's DetectionLoss on the test split
    chosen: str


CALIBRATION_FOLDS = 3


def out_of_fold_labels(features: np.ndarray, labels: np.ndarray, svm: cv2.ml.SVM) -> np.ndarray:
    """Each training image's SVM label from an SVM (the chosen C and gamma) fitted without it."""
    predicted = np.empty(len(labels), dtype=int)
    folds = np.arange(len(labels)) % CALIBRATION_FOLDS
    for fold in range(CALIBRATION_FOLDS):
        held = folds == fold
        if not held.any() or len(np.unique(labels[~held])) < 2:
            predicted[held] = labels[held]
            continue
        model = cv2.ml.SVM.create()
        model.setType(cv2.ml.SVM_C_SVC)
        model.setKernel(cv2.ml.SVM_RBF)
        model.setC(svm.getC())
        model.setGamma(svm.getGamma())
        model.train(features[~held], cv2.ml.ROW_SAMPLE, labels[~held].astype(np.int32))
        predicted[held] = model.predict(features[held])[1].ravel().astype(int)
    return predicted


def calibration(predicted: np.ndarray, true: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) P(true label | predicted label), from held-out predictions on the training split (one more
    count in every cell, so that no probability is 0): a classic classifier's calibrated scores."""
    counts = np.ones((classes, classes))
    np.add.at(counts, (predicted, true), 1)
    return counts / counts.sum(axis=1, keepdims=True)


def run_baselines(root: Path, train_rows: Sequence[Annotation], test_rows: Sequence[Annotation], classes: Sequence[str],
                  loss_fn: DetectionLoss) -> dict[str, Baseline]:  # fmt: skip
    """Fit both baselines on ``train_rows`` (their hyper-parameters, and their calibration from held-out
    predictions), then score them on ``test_rows`` with the run's loss (``loss_fn``, the loss_for of its options)."""
    index = {c: i for i, c in enumerate(classes)}
    train_images = [_read(root, r) for r in train_rows]
    train_labels = np.array([index[r.label] for r in train_rows])
    train_features = hog_features(train_images)
    svm = train_svm(train_features, train_labels)
    cascade = load_cascade()
    face = index.get("face")
    chosen = train_images[:HAAR_SELECTION_IMAGES]
    detections = [haar_detections(im, cascade) for im in chosen]
    min_neighbors = choose_min_neighbors(detections, train_labels[: len(chosen)] == face)
    held_out = out_of_fold_labels(train_features, train_labels, svm)
    haar_held_out = _haar_labels([largest_face(d, min_neighbors) for d in detections], held_out[: len(chosen)], face)
    svm_calibration = calibration(held_out, train_labels, len(classes))
    haar_calibration = calibration(haar_held_out, train_labels[: len(chosen)], len(classes))
    test_images = [_read(root, r) for r in test_rows]
    svm_labels = svm.predict(hog_features(test_images))[1].ravel().astype(int)
    true_labels = np.array([index[r.label] for r in test_rows])
    true_boxes = np.array([r.box for r in test_rows], dtype=np.float64).reshape(-1, 4)
    sizes = np.array([(im.shape[1], im.shape[0]) for im in test_images]).reshape(-1, 2)
    scale = np.concatenate([sizes, sizes], axis=1).astype(np.float64)
    edge_boxes = np.array([edge_box(im) for im in test_images]).reshape(-1, 4)
    faces = [largest_face(haar_detections(im, cascade), min_neighbors) for im in test_images]
    haar_labels = _haar_labels(faces, svm_labels, face)
    haar_boxes = np.array([f if f is not None else e for f, e in zip(faces, edge_boxes)]).reshape(-1, 4)
    paths = [image_path(root, r) for r in test_rows]

    def unit(boxes: np.ndarray) -> torch.Tensor:  # pixels -> xyxy in [0, 1], as the networks' loss takes them
        return torch.as_tensor(np.clip(boxes / scale, 0, 1), dtype=torch.float32)

    def baseline(labels: np.ndarray, boxes: np.ndarray, table: np.ndarray, choice: str) -> Baseline:
        """Its figures, and the networks' DetectionLoss on its calibrated probabilities and its boxes."""
        probabilities = table[labels]  # (N, C): the calibrated scores of each image's predicted label
        iou = pairwise_iou(torch.as_tensor(boxes), torch.as_tensor(true_boxes)).numpy()
        confidence = probabilities[np.arange(len(labels)), labels]
        results = ImageResults(paths, list(classes), true_labels, labels, confidence, iou, true_boxes, boxes)
        logits = torch.as_tensor(np.log(probabilities), dtype=torch.float32)  # softmax(log p) = p
        losses = loss_fn(logits, unit(boxes), torch.as_tensor(true_labels, dtype=torch.int64), unit(true_boxes))
        return Baseline(results, dict(zip(("loss", "class_loss", "box_loss"), map(float, losses))), choice)

    svm_choice = f"C={svm.getC():g}, gamma={svm.getGamma():.3g}"
    haar_choice = _haar_note(classes, face, min_neighbors, svm_choice)
    return {
        "hog_svm": baseline(svm_labels, edge_boxes, svm_calibration, svm_choice),
        "haar_face": baseline(haar_labels, haar_boxes, haar_calibration, haar_choice),
    }


def _haar_note(classes: Sequence[str], face: int | None, min_neighbors: int, svm_choice: str) -> str:
    if face is None:
        return f"no class is called face, so the cascade decides nothing: its rows are hog_svm's ({svm_choice})"
    others = " and ".join(c for i, c in enumerate(classes) if i != face)
    return (f"the Haar cascade (minNeighbors={min_neighbors}) says {classes[face]} or not; the images it finds no face "
            f"in get hog_svm's label and box ({svm_choice}), so its {others} figures are mostly hog_svm's")  # fmt: skip


def _haar_labels(faces: Sequence[tuple | None], svm_labels: np.ndarray, face: int | None) -> np.ndarray:
    """face where the cascade found one, the SVM's label elsewhere."""
    return np.array([face if f is not None and face is not None else s for f, s in zip(faces, svm_labels)], dtype=int)

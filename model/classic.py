"""Classic OpenCV baselines for Part 4, scored with the same figures as the networks.

- ``hog_svm``: HOG features (cv2.HOGDescriptor on 64x64 grey images) classified by OpenCV's own SVM
  (cv2.ml, RBF kernel, trained on the run's training split); the box is the bounding rectangle of
  the largest edge blob (Canny, dilation, contours).
- ``haar_face``: OpenCV's frontal-face Haar cascade (shipped with opencv-python 4.x): an image
  with a detection is called "face" and gets the largest detection as box; the others get the
  HOG+SVM label and the edge box, so the row covers all three classes.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from model.boxes import pairwise_iou
from model.dataset import Annotation, image_path
from model.metrics import ImageResults

HOG_SIZE = 64
BOX_WORK_SIDE = 256  # edge boxes are computed on images scaled to this longer side


class ClassicError(RuntimeError):
    pass


def _hog() -> cv2.HOGDescriptor:
    # window 64x64, blocks 16x16 with stride 8, cells 8x8, 9 orientations: 1,764 features
    return cv2.HOGDescriptor((HOG_SIZE, HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)


def _read(root: Path, row: Annotation) -> np.ndarray:
    image = cv2.imread(str(image_path(root, row)), cv2.IMREAD_COLOR)
    if image is None:
        raise ClassicError(f"{image_path(root, row)}: unreadable image")
    return image


def hog_features(images: Sequence[np.ndarray]) -> np.ndarray:
    hog = _hog()
    grey = (cv2.cvtColor(cv2.resize(im, (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
            for im in images)
    return np.stack([hog.compute(g).ravel() for g in grey]).astype(np.float32)


def train_svm(features: np.ndarray, labels: np.ndarray) -> cv2.ml.SVM:
    svm = cv2.ml.SVM_create()
    svm.setType(cv2.ml.SVM_C_SVC)
    svm.setKernel(cv2.ml.SVM_RBF)
    svm.setC(10.0)
    svm.setGamma(0.5)
    svm.setTermCriteria((cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 1000, 1e-6))
    svm.train(features, cv2.ml.ROW_SAMPLE, labels.astype(np.int32))
    return svm


def edge_box(image: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding rectangle of the largest edge blob, in pixels of ``image``; the whole image if none."""
    height, width = image.shape[:2]
    scale = BOX_WORK_SIDE / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
    median = float(np.median(grey))
    edges = cv2.Canny(grey, 0.66 * median, 1.33 * median)
    blobs = cv2.dilate(edges, np.ones((5, 5), np.uint8), iterations=2)
    contours, _ = cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return (0.0, 0.0, float(width), float(height))
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return (x / scale, y / scale, (x + w) / scale, (y + h) / scale)


def haar_faces(image: np.ndarray, cascade: cv2.CascadeClassifier) -> tuple[float, float, float, float] | None:
    """The largest detected face, xyxy pixels, or None."""
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return (float(x), float(y), float(x + w), float(y + h))


def load_cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ClassicError(f"{path}: OpenCV's Haar cascade is missing (opencv-python 5 ships none: install opencv-python<5)")
    return cascade


def run_baselines(root: Path, train_rows: Sequence[Annotation], test_rows: Sequence[Annotation],
                  classes: Sequence[str]) -> dict[str, ImageResults]:
    """Train HOG+SVM on ``train_rows``, then score both baselines on ``test_rows``."""
    index = {c: i for i, c in enumerate(classes)}
    train_images = [_read(root, r) for r in train_rows]
    svm = train_svm(hog_features(train_images), np.array([index[r.label] for r in train_rows]))
    test_images = [_read(root, r) for r in test_rows]
    svm_labels = svm.predict(hog_features(test_images))[1].ravel().astype(int)
    cascade = load_cascade()
    true_labels = np.array([index[r.label] for r in test_rows])
    true_boxes = np.array([r.box for r in test_rows], dtype=np.float64)
    edge_boxes = np.array([edge_box(im) for im in test_images])
    faces = [haar_faces(im, cascade) for im in test_images]
    face = index.get("face")
    haar_labels = np.array([face if f is not None and face is not None else s for f, s in zip(faces, svm_labels)])
    haar_boxes = np.array([f if f is not None else e for f, e in zip(faces, edge_boxes)])
    paths = [image_path(root, r) for r in test_rows]
    ones = np.ones(len(test_rows))  # classic classifiers give no calibrated confidence

    def results(labels, boxes) -> ImageResults:
        iou = pairwise_iou(torch.as_tensor(boxes), torch.as_tensor(true_boxes)).numpy()
        return ImageResults(paths, list(classes), true_labels, labels, ones, iou, true_boxes, boxes)

    return {"hog_svm": results(svm_labels, edge_boxes), "haar_face": results(haar_labels, haar_boxes)}

"""Independent computations the scripts' figures are checked against: a run's predictions with OpenCV and torch
only (none of the toolkit's loaders), and the course template's printout."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import cv2
import numpy
import torch
from torchvision.ops import box_iou


def direct_predictions(run: Path, split_file: str, checkpoint_name: str = "best.pth"):
    """The rows of a split file through the run's model, one image at a time, with OpenCV and torch
    only (none of the toolkit's loaders): the reference the scripts' figures are checked against."""
    from model.network import build_model  # the network the checkpoint names, its weights loaded here

    checkpoint = torch.load(run / checkpoint_name, map_location="cpu", weights_only=True)
    classes, size, root = checkpoint["classes"], checkpoint["image_size"], Path(checkpoint["run"]["dataset"])
    model = build_model(checkpoint["model"]["name"], len(classes), load_weights=False, **checkpoint["model"]["options"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    mean = torch.tensor(checkpoint["normalization"]["mean"]).view(3, 1, 1)
    std = torch.tensor(checkpoint["normalization"]["std"]).view(3, 1, 1)
    rows = [line.split(",") for line in (run / split_file).read_text().splitlines()]
    out = []
    for filename, x1, y1, x2, y2, label in rows:
        bgr = cv2.imread(str(root / "images" / label / filename))
        assert bgr is not None, filename
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        x = (torch.from_numpy(small).permute(2, 0, 1).float() / 255 - mean) / std
        with torch.no_grad():
            logits, boxes = model(x[None])
        true_box = torch.tensor([float(x1), float(y1), float(x2), float(y2)], dtype=torch.float64)
        pred_box = boxes[0].double() * torch.tensor([w, h, w, h]) if boxes is not None else true_box * math.nan
        iou = box_iou(pred_box[None], true_box[None])[0, 0].item()
        corner = (pred_box - true_box).abs().mean().item()
        predicted = classes[int(logits.argmax())]
        out.append({"key": f"{label}/{filename}", "label": label, "predicted": predicted, "iou": iou, "corner": corner})
    return classes, out


def template_printout(sets: dict[str, list[tuple[str, str]]], labels: list[str]) -> str:
    """What the course template's eval.py prints once it has evaluated the sets, given each set's
    (true, predicted) label per image: the template's own print calls, as the course reference
    quotes them (labels as Python booleans, numpy's mean and sum)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns about the mean of an empty set, and prints nan
        for mode, pairs in sets.items():
            all_results = [true == predicted for true, predicted in pairs]
            print(f"\n*** {mode} set accuracy")
            print(f"\tMean accuracy for all labels: {numpy.mean(numpy.array(all_results))}")
            for label in labels:
                results = [true == predicted for true, predicted in pairs if true == label]
                print(f"\n\tMean accuracy for label {label}: {numpy.mean(numpy.array(results))}")
                print(f"\t\t {numpy.sum(results)} over {len(results)} samples")
    return out.getvalue()

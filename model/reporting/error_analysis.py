"""The error analysis of one model's test results (Part 3 Q8, Part 4): misclassifications by
(true -> predicted) with example files, box failures per label, the worst cases. Networks and classic
approaches alike."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from model.metrics import ImageResults
from model.reporting.tables import to_markdown


def error_analysis(
    name: str, r: ImageResults | None, iou_threshold: float = 0.5, examples: int = 3, worst: int = 5
) -> str:
    """Markdown: misclassifications by (true -> predicted) with example files, box failures per
    label, and the worst cases (wrong label first, then lowest IoU)."""
    lines = [f"## {name}", ""]
    if r is None:
        return "\n".join([*lines, "No per-image results.", ""])

    def name_of(i: int) -> str:
        return "/".join(Path(r.paths[i]).parts[-2:])

    pairs: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], list[str]] = {}
    for i in np.flatnonzero(r.predicted_labels != r.true_labels):
        pair = (r.classes[r.true_labels[i]], r.classes[r.predicted_labels[i]])
        pairs[pair] += 1
        samples.setdefault(pair, []).append(name_of(int(i)))
    confusions = pd.DataFrame(
        [
            {
                "true → predicted": f"{true} → {predicted}",
                "images": count,
                "examples": ", ".join(samples[(true, predicted)][:examples]),
            }
            for (true, predicted), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        or [{"true → predicted": "(none)", "images": 0, "examples": ""}]
    )
    lines.append(to_markdown(confusions))
    if r.iou is not None:
        per_label = pd.DataFrame(
            [
                {
                    "label": label,
                    "failures": int((r.iou[r.true_labels == i] < iou_threshold).sum()),
                    "of": int((r.true_labels == i).sum()),
                    "mean IoU": float(r.iou[r.true_labels == i].mean()) if (r.true_labels == i).any() else math.nan,
                }
                for i, label in enumerate(r.classes)
            ]
        )
        lines += ["", f"Box failures (IoU < {iou_threshold}) per label:", "", to_markdown(per_label)]
    failing = np.flatnonzero(r.failures(iou_threshold))
    if not len(failing):
        boxes = f" and a box of IoU >= {iou_threshold}" if r.iou is not None else ""
        return "\n".join([*lines, "", f"Worst cases: none; every test image has the right label{boxes}.", ""])
    wrong = r.predicted_labels[failing] != r.true_labels[failing]
    # wrong labels first (the most confident first), then right labels whose box is weakest (the lowest IoU first)
    key = np.where(wrong, -r.confidence[failing], r.iou[failing] if r.iou is not None else 0.0)
    order = failing[np.lexsort((key, ~wrong))]
    cases = pd.DataFrame(
        [
            {
                "image": name_of(i),
                "true": r.classes[r.true_labels[i]],
                "predicted": r.classes[r.predicted_labels[i]],
                "confidence": float(r.confidence[i]),
                **({} if r.iou is None else {"IoU": float(r.iou[i])}),  # no box head: no IoU column of dashes
            }
            for i in order[:worst]
        ]
    )
    if r.iou is None:
        lines += ["", f"Worst cases ({len(failing)} misclassified image(s), the most confident first):", ""]
    else:
        lines += ["", f"Worst cases ({len(failing)} failure(s): wrong label first, then IoU < {iou_threshold}):", ""]
    lines.append(to_markdown(cases, digits=3))
    return "\n".join([*lines, ""])

"""What goes beyond the practical's questions.

augment   box-aware augmentation on small training sets (optional)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from model.practical.context import Content, Context, overall
from model.practical.plan import Section
from model.practical.sections.common import builder, commands


@builder("augment")
def augment(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Each augmentation policy against none, at each share of the training split."""
    content = Content(commands=commands(ctx, runs))
    rows: list[dict[str, Any]] = [
        {
            "run": run,
            "train_fraction": ctx.options(run).train_fraction,
            "augment": ctx.options(run).augment,
            "test_accuracy": overall(ctx.figures(run)),
            "test_mean_iou": overall(ctx.figures(run), "mean_iou"),
        }
        for run in runs
    ]
    content.tables.append(("Augmentation policies on small training sets (one seed)", pd.DataFrame(rows)))
    for fraction in sorted({r["train_fraction"] for r in rows}):
        group = {r["augment"]: r for r in rows if r["train_fraction"] == fraction}
        for policy in ("light", "strong"):
            if "off" in group and policy in group:
                content.observations.append(
                    f"{fraction:.0%} of the training split: --augment {policy} changes the test accuracy by "
                    f"{group[policy]['test_accuracy'] - group['off']['test_accuracy']:+.3f} and the mean IoU by "
                    f"{group[policy]['test_mean_iou'] - group['off']['test_mean_iou']:+.3f}."
                )
    return content

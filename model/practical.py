"""The practical's report draft: one section per question of the plan, in the practical's order,
each with the commands that were run, its tables (Markdown, CSV, LaTeX) and figures, short factual
observations computed from the numbers, and a marked place for the student's own discussion.

Every number comes from the runs' own files: history.csv, and the eval_best.json / eval_last.json
that eval.py's code writes beside each checkpoint (re-evaluated only when a checkpoint is newer).
Rewriting the report keeps whatever was written between a section's discussion markers.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import config
from model.annotations import Problems, read_annotations, read_rows
from model.comparison import compare_runs
from model.evaluation import evaluate_checkpoint, write_evaluation
from model.files import write_text
from model.inference import Inference
from model.plan import Plan, PlannedRun, Section, Status
from model.plots import colours, integer_epochs, plt, save_figure
from model.report import TIMING_COLUMNS, ModelReport, error_analysis, read_history, write_figures
from model.tables import to_markdown, write_table
from model.visualize import draw_prediction, gallery, save_image

WEB_IMAGES = config.PROJECT_ROOT / "web_images"
DISCUSSION = "<!-- discussion {id} -->\n{text}\n<!-- end of discussion {id} -->"
DISCUSSION_PLACEHOLDER = "_Your discussion: what the figures show, why, and what you would try next._"
OVERFITTING = 1.05  # a final validation loss this many times its lowest, with a falling training loss, is overfitting
HIDDEN = ("device", "note", *TIMING_COLUMNS)  # measured anew each time, or not a result: not in the report


@dataclass
class Content:
    """What one section shows."""

    commands: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    observations: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # other paragraphs (error analyses, what is missing)


@dataclass
class Context:
    """What a section's builder reads: the plan, the runs' statuses and folders, where to write."""

    plan: Plan
    found: dict[str, Status]
    inference: Inference
    out: Path  # the report's folder of tables and figures
    dataset: Path | None
    echo: Callable[[str], None]
    evaluations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def folder(self, run: str) -> Path:
        return self.plan.folder(run)

    def ready(self, runs: Sequence[str]) -> list[str]:
        """The runs whose best.pth exists (finished, or at least one epoch done)."""
        return [r for r in runs if (self.folder(r) / config.BEST_CHECKPOINT).exists()]

    def history(self, run: str) -> list[dict[str, float]]:
        return read_history(self.folder(run) / config.HISTORY_FILE)

    def figures(self, run: str, which: str = "best", csv: Path | None = None) -> dict[str, Any]:
        """eval_<which>.json of the run (its splits), or of ``csv``'s rows; evaluated when missing or older
        than the checkpoint."""
        key = (run, which, str(csv))
        if key not in self.evaluations:
            checkpoint = self.folder(run) / f"{which}.pth"
            where = self.folder(run) if csv is None else self.folder(run) / f"eval_{csv.stem}"
            stored = where / f"eval_{which}.json"
            needed = {"test"} if csv is None else {csv.stem}
            if not _fresh(stored, (checkpoint, *([csv] if csv else [])), needed):
                self.echo(f"Evaluating {checkpoint}{f' on {csv}' if csv else ''}")
                splits = ("test",) if csv is None else ()  # the report reads training and validation from history
                evaluation = evaluate_checkpoint(
                    checkpoint, self.inference, Problems(skip=False), splits, (csv,) if csv else (), None
                )
                write_evaluation(evaluation, where)
            self.evaluations[key] = json.loads(stored.read_text())
        return self.evaluations[key]

    def options(self, run: str) -> PlannedRun:
        return self.plan.runs[run]


def _fresh(stored: Path, sources: tuple[Path, ...], sets: set[str]) -> bool:
    """An evaluation file newer than its checkpoint (and than the rows it scored) that holds every set
    wanted (eval.py --split test writes one with the test split alone)."""
    if not stored.exists() or any(stored.stat().st_mtime < source.stat().st_mtime for source in sources):
        return False
    return sets <= set(json.loads(stored.read_text()).get("sets", {}))


def command(ctx: Context, run: str) -> str:
    """The train.py command of a run, as the plan runs it (relative to the project's folder)."""
    return ctx.plan.shown(ctx.plan.runs[run], ctx.dataset, Status("missing"))


def _relative(argument: str) -> str:
    path = Path(argument)
    if path.is_absolute() and path.is_relative_to(config.PROJECT_ROOT):
        return str(path.relative_to(config.PROJECT_ROOT))
    return argument


def _shown(path: Path) -> str:
    return _relative(str(path))


def _at_epoch(history: list[dict[str, float]], epoch: int) -> dict[str, float]:
    return next((row for row in history if int(row["epoch"]) == epoch), {})


def _test(figures: dict[str, Any]) -> dict[str, Any]:
    return figures["sets"].get("test", {})


def _overall(figures: dict[str, Any], name: str = "accuracy") -> float:
    value = _test(figures).get("overall", {}).get(name)
    return math.nan if value is None else float(value)


def _test_scores(figures: dict[str, Any]) -> dict[str, float]:
    """The columns every table of runs ends with: the best model's test accuracy and mean IoU."""
    return {"test_accuracy": _overall(figures), "test_mean_iou": _overall(figures, "mean_iou")}


def _per_label(figures: dict[str, Any]) -> dict[str, float]:
    return {
        label: math.nan if f["accuracy"] is None else float(f["accuracy"])
        for label, f in _test(figures).get("per_label", {}).items()
    }


def _weakest(figures: dict[str, Any]) -> tuple[str, float] | None:
    scores = {label: value for label, value in _per_label(figures).items() if not math.isnan(value)}
    return min(scores.items(), key=lambda kv: (kv[1], kv[0])) if scores else None


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _training_images(ctx: Context, run: str) -> int:
    return len(read_rows(ctx.folder(run) / config.SPLIT_FILES["train"], Problems(skip=True)))


def _copy_figure(ctx: Context, source: Path, name: str) -> Path:
    target = ctx.out / name
    shutil.copyfile(source, target)
    return target


def _eval_commands(ctx: Context, runs: Sequence[str], which: Sequence[str] = ("best",)) -> list[str]:
    return [f"python eval.py {_shown(ctx.folder(run) / f'{w}.pth')}" for run in runs for w in which]


# ----------------------------------------------------------------------------------------------
# The section kinds
# ----------------------------------------------------------------------------------------------
def best_vs_last(ctx: Context, section: Section, runs: list[str], long: bool = False) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs, ("last", "best")))
    for run in runs:
        history = ctx.history(run)
        best_figures, last_figures = ctx.figures(run, "best"), ctx.figures(run, "last")
        best, last = int(best_figures["epoch"]), int(last_figures["epoch"])
        rows: list[dict[str, Any]] = []
        for name, figures, epoch in (("best", best_figures, best), ("last", last_figures, last)):
            at = _at_epoch(history, epoch)
            rows.append(
                {
                    "model": f"{name}.pth",
                    "epoch": epoch,
                    "train_accuracy": at.get("train_accuracy"),
                    "val_accuracy": at.get("val_accuracy"),
                    "val_loss": at.get("val_loss"),
                    "test_accuracy": _overall(figures),
                    **{f"test_{k}": v for k, v in _per_label(figures).items()},
                    **({"test_mean_iou": _overall(figures, "mean_iou")} if _boxes(figures) else {}),
                }
            )
        content.tables.append((f"{run}: the best and the last model", pd.DataFrame(rows)))
        plot = ctx.folder(run) / config.PLOT_FILE
        if plot.exists():
            content.figures.append(
                (f"{run}: loss and accuracy per epoch", _copy_figure(ctx, plot, f"{section.id}-{run}-curves.png"))
            )
        at_best = _at_epoch(history, best)
        gap = _overall(best_figures) - _overall(last_figures)
        content.observations += [
            f"{run}: the best model is epoch {best} of {last} (validation accuracy {_f(at_best.get('val_accuracy'))}, "
            f"validation loss {_f(at_best.get('val_loss'), 4)}); the last epoch's validation accuracy is "
            f"{_f(_at_epoch(history, last).get('val_accuracy'))}.",
            f"{run}: on the test split the best model scores {_f(_overall(best_figures))} and the last "
            f"{_f(_overall(last_figures))}"
            + (": the same." if gap == 0 else f": the best is {_f(abs(gap))} {'higher' if gap > 0 else 'lower'}."),
            f"{run}: at the best epoch, training accuracy {_f(at_best.get('train_accuracy'))} against validation "
            f"{_f(at_best.get('val_accuracy'))} (a gap of "
            f"{_f(at_best.get('train_accuracy', math.nan) - at_best.get('val_accuracy', math.nan))}).",
        ]
        weakest = _weakest(best_figures)
        if weakest:
            content.observations.append(
                f"{run}: the weakest label on the test split (best model) is {weakest[0]}, {_f(weakest[1])}."
            )
        if long and history:
            low = min(history, key=lambda r: r["val_loss"])
            end = history[-1]
            content.observations.append(
                f"{run}: the validation loss is lowest at epoch {int(low['epoch'])} ({_f(low['val_loss'], 4)}) and "
                f"ends at {_f(end['val_loss'], 4)}, while the training loss goes from {_f(low['train_loss'], 4)} to "
                f"{_f(end['train_loss'], 4)}: "
                + (
                    f"the validation loss ends {end['val_loss'] / low['val_loss'] - 1:.0%} above its lowest while the "
                    f"training loss kept falling, the mark of overfitting."
                    if end["val_loss"] > OVERFITTING * low["val_loss"] and end["train_loss"] < low["train_loss"]
                    else f"the validation loss ends within {OVERFITTING - 1:.0%} of its lowest: no clear overfitting."
                )
            )
    return content


def _boxes(figures: dict[str, Any]) -> bool:
    return "mean_iou" in _test(figures).get("overall", {})


def fractions(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, options = ctx.figures(run), ctx.options(run).options
        at = _at_epoch(ctx.history(run), int(figures["epoch"]))
        rows.append(
            {
                "run": run,
                "train_fraction": options.train_fraction,
                "training_images": _training_images(ctx, run),
                "best_epoch": int(figures["epoch"]),
                "val_accuracy": at.get("val_accuracy"),
                "test_accuracy": _overall(figures),
                **{f"test_{k}": v for k, v in _per_label(figures).items()},
            }
        )
    table = pd.DataFrame(rows)
    content.tables.append(("Test accuracy by the share of the training split kept", table))
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        content.observations.append(
            f"From {first['train_fraction']:.0%} ({first['training_images']} images) to {last['train_fraction']:.0%} "
            f"({last['training_images']} images) of the training split, the test accuracy goes from "
            f"{_f(first['test_accuracy'])} to {_f(last['test_accuracy'])}."
        )
    for row in rows:
        weakest = _weakest(ctx.figures(row["run"]))
        if weakest:
            content.observations.append(f"{row['run']}: weakest label {weakest[0]} ({_f(weakest[1])}).")
    return content


def ablation(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, options, history = ctx.figures(run), ctx.options(run).options, ctx.history(run)
        losses = np.array([r["val_loss"] for r in history])
        rows.append(
            {
                "run": run,
                "dropout": options.dropout,
                "batchnorm": options.batchnorm,
                "best_epoch": int(figures["epoch"]),
                "val_accuracy": _at_epoch(history, int(figures["epoch"])).get("val_accuracy"),
                "test_accuracy": _overall(figures),
                "val_loss_jumps": float(np.abs(np.diff(losses)).mean()) if len(losses) > 1 else math.nan,
            }
        )
    content.tables.append(
        (
            "The reference run and its variants (val_loss_jumps: mean change of the validation "
            "loss from one epoch to the next)",
            pd.DataFrame(rows),
        )
    )
    content.figures.append(("Validation loss and accuracy per epoch", _curves(ctx, section, runs)))
    steadiest = min(rows, key=lambda r: math.inf if math.isnan(r["val_loss_jumps"]) else r["val_loss_jumps"])
    roughest = max(rows, key=lambda r: -math.inf if math.isnan(r["val_loss_jumps"]) else r["val_loss_jumps"])
    content.observations.append(
        f"The validation loss moves least from epoch to epoch with {steadiest['run']} "
        f"({_f(steadiest['val_loss_jumps'], 4)}) and most with {roughest['run']} "
        f"({_f(roughest['val_loss_jumps'], 4)})."
    )
    for row in rows[1:]:
        diff = row["test_accuracy"] - rows[0]["test_accuracy"]
        content.observations.append(
            f"{row['run']}: test accuracy {_f(row['test_accuracy'])}, "
            f"{_f(abs(diff))} {'above' if diff >= 0 else 'below'} {rows[0]['run']}."
        )
    return content


def _curves(ctx: Context, section: Section, runs: list[str]) -> Path:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run, colour in zip(runs, colours(len(runs))):
        history = ctx.history(run)
        epochs = [r["epoch"] for r in history]
        axes[0].plot(epochs, [r["val_loss"] for r in history], color=colour, label=run)
        axes[1].plot(epochs, [r["val_accuracy"] for r in history], color=colour, label=run)
    for ax, name in zip(axes, ("validation loss", "validation accuracy")):
        ax.set(xlabel="epoch", ylabel=name, title=name.capitalize())
        integer_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.tight_layout()
    path = ctx.out / f"{section.id}-curves.png"
    save_figure(figure, path)
    return path


def comparison(ctx: Context, section: Section, runs: list[str], classic: bool = False) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    for run in runs:
        ctx.figures(run)  # eval_best.json beside each checkpoint, as eval.py writes it
    compared = compare_runs([ctx.folder(r) for r in runs], ctx.inference, Problems(skip=False), classic=classic)
    frame = compared.frame.drop(columns=[c for c in HIDDEN if c in compared.frame.columns])
    figures_dir = ctx.out / section.id
    figures_dir.mkdir(parents=True, exist_ok=True)
    if classic:
        keep = [
            "model",
            "network",
            "parameters",
            "test_accuracy",
            "test_mean_iou",
            "test_iou_at_0.5",
            *[c for c in frame.columns if c.startswith(("accuracy_", "iou_"))],
        ]
        content.tables.append(
            (
                "Networks and classic OpenCV approaches on the test split of "
                f"{runs[0]} (the classic ones fitted on its training split)",
                frame[keep],
            )
        )
        for report in compared.reports:
            if report.note:
                content.text.append(f"{report.name}: {report.note}.")
        networks = [r for r in compared.reports if r.history]
        classics = [r for r in compared.reports if not r.history]
        best_net = max(networks, key=lambda r: _overall_of(r)["accuracy"]) if networks else None
        best_classic = max(classics, key=lambda r: _overall_of(r)["accuracy"]) if classics else None
        if best_net and best_classic:
            content.observations.append(
                f"The best network ({best_net.name}, {_f(_overall_of(best_net)['accuracy'])}) against the best "
                f"classic approach ({best_classic.name}, {_f(_overall_of(best_classic)['accuracy'])}) in test "
                f"accuracy; mean IoU {_f(_overall_of(best_net).get('mean_iou', math.nan))} against "
                f"{_f(_overall_of(best_classic).get('mean_iou', math.nan))}."
            )
        return content
    content.tables.append(("The networks on their test split (train and validation figures at the best epoch)", frame))
    for path in write_figures(compared.reports, compared.classes, figures_dir):
        if path.name.startswith(("loss_curves", "per_label", "confusion")):
            content.figures.append((path.stem.replace("_", " ").capitalize(), path))
    reference = compared.reports[0]
    for report in compared.reports[1:]:
        mine, theirs = _seconds(report), _seconds(reference)
        if not (math.isnan(mine) or math.isnan(theirs)) and theirs > 0:
            content.observations.append(
                f"An epoch of {report.name} takes {mine:.1f} s, {mine / theirs:.1f} times "
                f"{reference.name}'s {theirs:.1f} s."
            )
    best = max(compared.reports, key=lambda r: _overall_of(r)["accuracy"])
    content.observations.append(f"The best test accuracy is {best.name}'s, {_f(_overall_of(best)['accuracy'])}.")
    if "mean_iou" in _overall_of(best):
        boxes = max(compared.reports, key=lambda r: _overall_of(r).get("mean_iou", -1))
        content.observations.append(
            f"The best boxes are {boxes.name}'s: mean IoU {_f(_overall_of(boxes)['mean_iou'])}."
        )
    for report in compared.reports:
        scores = {k: v["accuracy"] for k, v in (report.test or {}).get("per_label", {}).items() if v["images"]}
        if scores:
            label = min(scores, key=lambda k: (scores[k], k))
            content.observations.append(f"{report.name}: weakest label {label} ({_f(scores[label])}).")
    content.text.append(
        "**Error analysis** (test split):\n\n"
        + "\n".join(error_analysis(report).replace("## ", "#### ", 1) for report in compared.reports)
    )
    return content


def _overall_of(report: ModelReport) -> dict[str, Any]:
    return (report.test or {}).get("overall", {})


def _seconds(report: ModelReport) -> float:
    return float(np.mean([r["seconds"] for r in report.history])) if report.history else math.nan


def loss_weights(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, options = ctx.figures(run), ctx.options(run).options
        rows.append(
            {
                "run": run,
                "label_weight": options.label_weight,
                "box_weight": options.box_weight,
                "box_loss": options.box_loss,
                **_test_scores(figures),
                "test_iou_at_0.5": _overall(figures, "iou_at_threshold"),
            }
        )
    content.tables.append(("The weights of the class and box terms", pd.DataFrame(rows)))
    best = max(rows, key=lambda r: -1 if math.isnan(r["test_mean_iou"]) else r["test_mean_iou"])
    accurate = max(rows, key=lambda r: r["test_accuracy"])
    content.observations.append(
        f"The best boxes come with label weight {best['label_weight']:g} and box weight "
        f"{best['box_weight']:g} ({best['run']}): mean IoU {_f(best['test_mean_iou'])}, test "
        f"accuracy {_f(best['test_accuracy'])}."
    )
    content.observations.append(
        f"The best test accuracy comes with box weight {accurate['box_weight']:g} "
        f"({accurate['run']}: {_f(accurate['test_accuracy'])})."
    )
    return content


def frozen_vs_fine_tuned(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, options, history = ctx.figures(run), ctx.options(run).options, ctx.history(run)
        facts = json.loads((ctx.folder(run) / config.RUN_FILE).read_text())
        rows.append(
            {
                "run": run,
                "backbone": "frozen" if options.freeze else "fine-tuned",
                "pretrained": options.pretrained,
                "trainable_parameters": facts.get("trainable_parameters"),
                "seconds_per_epoch": float(np.mean([r["seconds"] for r in history])) if history else math.nan,
                **_test_scores(figures),
            }
        )
    content.tables.append(("A frozen and a fine-tuned ResNet-18 backbone", pd.DataFrame(rows)))
    if len(rows) == 2:
        frozen, tuned = sorted(rows, key=lambda r: r["backbone"] != "frozen")
        content.observations.append(
            f"Fine-tuning trains {tuned['trainable_parameters']:,} parameters instead of "
            f"{frozen['trainable_parameters']:,}; test accuracy {_f(tuned['test_accuracy'])} against "
            f"{_f(frozen['test_accuracy'])}, mean IoU {_f(tuned['test_mean_iou'])} against "
            f"{_f(frozen['test_mean_iou'])}."
        )
    return content


def internet(ctx: Context, section: Section, runs: list[str]) -> Content:
    csv = WEB_IMAGES / "annotations.csv"
    rows_there = read_rows(csv, Problems(skip=True)) if csv.exists() else []
    if not rows_there:
        return Content(
            commands=[
                f"python eval.py {_shown(ctx.folder(r) / 'best.pth')} --csv web_images/annotations.csv" for r in runs
            ],
            text=[
                "No internet images yet: put some in web_images/images/<label>/ with their boxes in "
                "web_images/annotations.csv (web_images/README.md says how), then run "
                "`python compare.py --practical` again: this section will score them."
            ],
        )
    content = Content(
        commands=[f"python eval.py {_shown(ctx.folder(r) / 'best.pth')} --csv {_shown(csv)}" for r in runs]
    )
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures = ctx.figures(run, "best", csv)["sets"][csv.stem]
        rows.append(
            {
                "run": run,
                "images": figures["overall"]["images"],
                "accuracy": figures["overall"]["accuracy"],
                "mean_iou": figures["overall"].get("mean_iou", math.nan),
                **{f"accuracy_{k}": v["accuracy"] for k, v in figures["per_label"].items()},
            }
        )
    content.tables.append(("Internet images (web_images/annotations.csv)", pd.DataFrame(rows)))
    first = ctx.folder(runs[0]) / f"eval_{csv.stem}" / "eval_best_images.csv"
    if first.exists():
        content.figures.append(
            (f"{runs[0]} on the internet images", _web_gallery(first, ctx.out / f"{section.id}-gallery.png"))
        )
    worst = min(rows, key=lambda r: r["accuracy"])
    content.observations.append(
        f"{worst['run']} gets {_f(worst['accuracy'])} of the {worst['images']} internet images "
        f"right; {max(rows, key=lambda r: r['accuracy'])['run']} the most."
    )
    return content


def _web_gallery(per_image_csv: Path, path: Path) -> Path:
    import cv2

    tiles = []
    for row in pd.read_csv(per_image_csv).to_dict("records")[:12]:
        image = cv2.imread(str(row["path"]))
        if image is None:
            continue
        predicted = (
            None if pd.isna(row["pred_x1"]) else tuple(float(row[f"pred_{c}"]) for c in ("x1", "y1", "x2", "y2"))
        )
        true = tuple(float(row[f"true_{c}"]) for c in ("x1", "y1", "x2", "y2"))
        tiles.append(
            draw_prediction(
                image,
                str(row["predicted_label"]),
                float(row["confidence"]),
                predicted,
                str(row["true_label"]),
                true,
                None if pd.isna(row["iou"]) else float(row["iou"]),
                bool(row["failure"]),
            )
        )
    if tiles:
        save_image(path, gallery(tiles))
    return path


def classic(ctx: Context, section: Section, runs: list[str]) -> Content:
    return comparison(ctx, section, runs, classic=True)


def augment(ctx: Context, section: Section, runs: list[str]) -> Content:
    content = Content(commands=[command(ctx, r) for r in runs] + _eval_commands(ctx, runs))
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, options = ctx.figures(run), ctx.options(run).options
        rows.append(
            {
                "run": run,
                "train_fraction": options.train_fraction,
                "augment": options.augment,
                **_test_scores(figures),
            }
        )
    content.tables.append(
        ("Augmentation policies on small training sets (one seed; the README's table has three)", pd.DataFrame(rows))
    )
    for fraction in sorted({r["train_fraction"] for r in rows}):
        group = {r["augment"]: r for r in rows if r["train_fraction"] == fraction}
        if "off" in group:
            for policy in ("light", "strong"):
                if policy in group:
                    diff = group[policy]["test_accuracy"] - group["off"]["test_accuracy"]
                    content.observations.append(
                        f"{fraction:.0%} of the training split: --augment {policy} changes the test accuracy by "
                        f"{diff:+.3f} and the mean IoU by "
                        f"{group[policy]['test_mean_iou'] - group['off']['test_mean_iou']:+.3f}."
                    )
    return content


BUILDERS: dict[str, Callable[[Context, Section, list[str]], Content]] = {
    "best-vs-last": best_vs_last,
    "long": lambda c, s, r: best_vs_last(c, s, r, long=True),
    "fractions": fractions,
    "ablation": ablation,
    "internet": internet,
    "comparison": comparison,
    "loss-weights": loss_weights,
    "frozen-vs-fine-tuned": frozen_vs_fine_tuned,
    "classic": classic,
    "augment": augment,
}


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------
def write_report(ctx: Context, report: Path, title: str) -> Path:
    """report.md (and its tables and figures in ``ctx.out``): every section of the plan, the student's
    discussions kept from the previous version."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    kept = previous_discussions(report)
    parts = [f"# {title}", "", intro(ctx), "", "Contents:", ""]
    parts += [f"- [{s.title}](#{_anchor(s.title)})" for s in ctx.plan.sections]
    for section in ctx.plan.sections:
        ctx.echo(f"Section {section.id}: {section.title}")
        parts += ["", f"## {section.title}", ""]
        ready = ctx.ready(section.runs)
        absent = [
            f"{r} ({ctx.found[r].describe(ctx.plan.runs[r].options.epochs)})" for r in section.runs if r not in ready
        ]
        if absent:
            parts += [f"Not trained yet: {', '.join(absent)}.", ""]
        partly = [
            f"{r} ({ctx.found[r].describe(ctx.plan.runs[r].options.epochs)})"
            for r in ready
            if ctx.found[r].state == "interrupted"
        ]
        if partly:
            parts += [f"Partly trained (its best model so far is reported): {', '.join(partly)}.", ""]
        if ready:
            content = BUILDERS[section.kind](ctx, section, ready)
            parts += render(ctx, section, content, report.parent)
        parts += ["", DISCUSSION.format(id=section.id, text=kept.pop(section.id, DISCUSSION_PLACEHOLDER))]
    kept = {key: text for key, text in kept.items() if text != DISCUSSION_PLACEHOLDER}
    if kept:  # sections no longer in the report: what was written there is kept, not lost
        parts += ["", "## Discussions of sections not in this report", ""]
        parts += [DISCUSSION.format(id=key, text=text) + "\n" for key, text in kept.items()]
    write_text(report, "\n".join(parts).rstrip() + "\n")
    return report


def intro(ctx: Context) -> str:
    rows = len(read_annotations(ctx.dataset, Problems(skip=True))) if ctx.dataset else 0
    where = f"the dataset in {_shown(ctx.dataset)} ({rows} images)" if ctx.dataset else "the course dataset"
    return (
        f"A draft, written by `python compare.py --practical{' --quick' if ctx.plan.quick else ''}` from the runs "
        f"in {_shown(ctx.plan.output_dir)}/ on {where}. Every number, table and figure below comes from those "
        f"runs' files (history.csv, and eval_best.json / eval_last.json as eval.py writes them); the commands "
        f"reproduce them. Running it again rewrites this file and keeps what you write between a section's "
        f"discussion markers. Tables are also in {_shown(ctx.out)}/ as CSV and LaTeX (\\usepackage{{booktabs}})."
    )


def render(ctx: Context, section: Section, content: Content, report_folder: Path) -> list[str]:
    parts = ["Commands:", "", "```bash", *content.commands, "```", ""]
    for number, (caption, full) in enumerate(content.tables, start=1):
        table = full.dropna(axis=1, how="all")  # e.g. the box columns of classification-only networks
        paths = write_table(table, ctx.out / f"{section.id}-table-{number}", caption)
        parts += [
            f"*{caption}* ([CSV]({_link(paths['csv'], report_folder)}), [LaTeX]({_link(paths['tex'], report_folder)}))",
            "",
            to_markdown(table, 3),
            "",
        ]
    for caption, path in content.figures:
        parts += [f"![{caption}]({_link(path, report_folder)})", ""]
    parts += content.text and [*content.text, ""]
    if content.observations:
        parts += ["Observations (computed from the numbers above):", ""]
        parts += [f"- {line}" for line in content.observations]
    return parts


def _link(path: Path, folder: Path) -> str:
    return Path(path).relative_to(folder).as_posix() if Path(path).is_relative_to(folder) else str(path)


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def previous_discussions(report: Path) -> dict[str, str]:
    """Section id -> what the student wrote between its discussion markers in the existing report."""
    if not report.exists():
        return {}
    pattern = re.compile(r"<!-- discussion (\S+) -->\n(.*?)\n<!-- end of discussion \1 -->", re.S)
    return {match[1]: match[2] for match in pattern.finditer(report.read_text())}

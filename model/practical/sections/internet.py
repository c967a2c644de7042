"""Internet images (Part 1 Q10, Part 2 Q4's second half, Part 3 Q9): every image of web_images/images/<label>/
through each run's best model, for its label and, where web_images/annotations.csv gives a box, its box.
"""

from __future__ import annotations

import functools
from typing import Any

from model.annotations import web_images
from model.practical.plan import Section, shown_path
from model.practical.report import Content, Context
from model.practical.sections.common import builder, frame, leaders, names, overall, per_label
from model.reporting import figures as drawn

DEFAULT_GALLERY_MAX = 24  # predict.py --gallery's default
NO_WEB_IMAGES = (
    "No internet images yet: put some in `web_images/images/<label>/` (one folder per true label: airplane, face, "
    "motorcycle) and run `python compare.py --practical` again: this section scores each image for its label, and "
    "for its box where web_images/annotations.csv gives one (`python predict.py --annotate web_images/images` draws "
    "them with the mouse)."
)


@builder("internet")
def internet(ctx: Context, section: Section, runs: list[str]) -> Content:
    """Every internet image through each run's best model, for its label and, where a box was drawn, its box."""
    found = web_images(ctx.web)
    content = Content(commands=[internet_command(ctx, section, r, len(found)) for r in runs])
    if not found:
        earlier = ctx.once("no-web-images")
        content.text.append(ctx.pointer(earlier, "No internet images yet") if earlier else NO_WEB_IMAGES)
        content.waiting = "internet"
        return content
    rows: list[dict[str, Any]] = []
    for run in runs:
        figures, results = ctx.internet(run)
        every = figures["overall"]
        rows.append(
            {"run": ctx.label(run), "images": every["images"], "right": every["correct"], "accuracy": overall(figures),
             "images_with_box": every.get("images_with_box"), "mean_iou": overall(figures, "mean_iou"),
             **{f"accuracy_{k}": v for k, v in per_label(figures).items()}}
        )  # fmt: skip
        order = list(range(len(results.paths)))  # every image, in predict.py's order: its gallery is this one
        caption = f"{ctx.label(run)} on every internet image, as its command draws them (red caption: a failure)"
        draw = functools.partial(drawn.gallery_jpg, results, order)
        inputs = (ctx.evaluation(run)["identity"], [str(p) for p in results.paths])
        ctx.figure(content, f"{section.id}-{run}-gallery.jpg", caption, draw, *inputs)
    caption = "Internet images (web_images/images/; boxes scored only where web_images/annotations.csv gives one)"
    content.tables.append((caption, frame(rows, ("images", "right", "images_with_box"))))
    content.observations.append(internet_observation(rows))
    return content


def internet_command(ctx: Context, section: Section, run: str, images: int) -> str:
    """predict.py on every internet image, writing the gallery the section shows (every image, in its order)."""
    web = ctx.plan.output_dir / "web" / section.id
    most = f" --gallery-max {images}" if images > DEFAULT_GALLERY_MAX else ""
    return (
        f"python predict.py --model {shown_path(ctx.run(run).checkpoint_path('best'))} --save {shown_path(web / run)} "
        f"--gallery {shown_path(web / f'{run}.jpg')}{most} {shown_path(ctx.web / 'images')}"
    )


def internet_observation(rows: list[dict[str, Any]]) -> str:
    """Who gets how many right, in words that fit the numbers (networks that tie named together)."""
    images, scores = rows[0]["images"], {r["run"]: int(r["right"]) for r in rows}
    if len(set(scores.values())) == 1:
        who = "The network gets" if len(rows) == 1 else f"All {len(rows)} networks get"
        return f"{who} {next(iter(scores.values()))} of the {images} internet images right."
    best, best_score = leaders(scores)
    worst, worst_score = leaders(scores, low=True)
    return (
        f"{names(best)} get{'s' if len(best) == 1 else ''} the most internet images right ({best_score:.0f} of "
        f"{images}{', a tie' if len(best) > 1 else ''}); {names(worst)} the fewest ({worst_score:.0f})."
    )

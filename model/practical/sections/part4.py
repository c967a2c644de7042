"""Part 4 of the practical: the classic OpenCV approaches beside the networks, on the same loss, and the reading
of TinaFace and YOLO.

    classic   the networks and the classic methods in one table, on the same test split and the same loss, and
              the classic methods' error analysis (the networks' is Part 3 Q8's)
    reading   no run: only the student's notes
"""

from __future__ import annotations

import math

from model.practical.plan import Section, shown_path
from model.practical.report import Content, Context
from model.practical.sections.common import builder, commands, leaders, names, num
from model.practical.sections.part2 import add_galleries, error_analysis_text, network_reports
from model.reporting.comparison import ModelReport, classic_reports, comparison_frame

READING = "No run answers this question: it asks you to read. Your notes go in the discussion below."
KEPT = ("model", "network", "parameters", "test_loss", "test_class_loss", "test_box_loss", "test_accuracy",
        "test_mean_iou", "test_iou_at_0.5")  # fmt: skip


@builder("classic")
def classic(ctx: Context, section: Section, runs: list[str]) -> Content:
    """The networks and the classic methods on the first run's test split, with the run's own loss."""
    folders = " ".join(shown_path(ctx.run(r).folder) for r in runs)
    content = Content(commands=[*commands(ctx, runs), f"python compare.py {folders} --classic"])
    networks = network_reports(ctx, runs)
    classics = classic_reports(ctx.run(runs[0]), ctx.workers, ctx.echo)
    reports = [*networks, *classics]
    classes = ctx.run(runs[0]).checkpoint("best", mmap=True).classes
    table = comparison_frame(reports, classes)
    keep = [*KEPT, *(c for c in table.columns if c.startswith(("accuracy_", "iou_")))]
    caption = f"Networks and classic OpenCV approaches on the test split of {runs[0]}, on the same loss (the run's "
    caption += "cross-entropy on the classic methods' calibrated scores, its box loss on their boxes)"
    content.tables.append((caption, table[[c for c in keep if c in table.columns]]))
    loss = "its class loss uses P(true label | its predicted label), from held-out predictions on that training split"
    content.text += [f"{report.name}: {report.note}; {loss}." for report in classics]
    add_galleries(ctx, section, content, classics)
    content.observations += classic_observations(networks, classics)
    shown = [earlier for r in networks if (earlier := ctx.once(f"error-analysis:{r.key}")) is not None]
    if len(shown) == len(networks):  # written already, in the comparison of these networks: not copied
        content.text.append(ctx.pointer(shown[0], "The networks' error analysis"))
        content.text.append(error_analysis_text(classics))
    else:
        content.text.append(error_analysis_text(reports))
    return content


def classic_observations(networks: list[ModelReport], classics: list[ModelReport]) -> list[str]:
    """The best network against the best classic approach, figure by figure, each with its winner."""
    lines = []
    for key, what in (("accuracy", "test accuracy"), ("mean_iou", "mean IoU")):  # higher is better for both
        net, a = leaders({r.name: r.test.get("overall", {}).get(key, math.nan) for r in networks})
        baseline, b = leaders({r.name: r.test.get("overall", {}).get(key, math.nan) for r in classics})
        if net and baseline:
            winner = "the network" if a > b else "the classic approach" if b > a else "neither"
            lines.append(
                f"Best {what}: network {names(net)} {num(a)} against classic {names(baseline)} {num(b)}; {winner} is "
                "ahead" + (f" by {num(abs(a - b))}." if a != b else ".")
            )
    lowest, value = leaders({r.name: r.test.get("loss", math.nan) for r in networks + classics}, low=True)
    if lowest:
        lines.append(f"The lowest loss (the run's own loss, for every row) is {lowest[0]}'s, {num(value)}.")
    return lines


@builder("reading", runs=False)
def reading(ctx: Context, section: Section, runs: list[str]) -> Content:
    """A question answered by reading: the section holds only the student's notes."""
    return Content(text=[READING], prompt="what you read, and what sets each approach apart")

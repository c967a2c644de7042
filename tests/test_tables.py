"""Tables written through pandas: the CSV keeps every value, Markdown and LaTeX show the formatted cells."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from model.files import Folder, is_temporary
from model.reporting.tables import format_cell, write_table

FRAME = pd.DataFrame(
    [
        {"model": "simple", "parameters": 61975, "test_accuracy": 0.9852941176470589, "corner_px": 25.54, "note": ""},
        {"model": "hog_svm", "parameters": None, "test_accuracy": 1.0, "corner_px": math.nan, "note": "C=10, x_y"},
    ]
).astype({"parameters": "Int64"})


@pytest.mark.parametrize(
    "value, text",
    [
        (math.nan, "-"),
        (None, "-"),
        (pd.NA, "-"),
        (61975, "61,975"),
        (0.98529, "0.9853"),
        (1.0, "1.0000"),
        (25.54, "25.5"),
        (12345.6, "12,346"),
        ("cpu", "cpu"),
        (True, "True"),
    ],
)
def test_one_rule_for_a_cell(value, text):
    assert format_cell(value) == text


def test_the_three_files_hold_the_same_table(tmp_path):
    with Folder(tmp_path, writer="compare.py", option="--out").staged() as change:
        paths = write_table(change, "comparison", FRAME, "Model comparison", "On the test split.")
    back = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    assert back["model"].tolist() == ["simple", "hog_svm"] and back["parameters"].isna().tolist() == [False, True]
    assert back["test_accuracy"].tolist() == FRAME["test_accuracy"].tolist()  # every digit kept
    markdown = paths["md"].read_text().splitlines()
    assert markdown[:3] == ["# Model comparison", "", "On the test split."]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown[4:]]
    assert rows[0] == ["model", "parameters", "test_accuracy", "corner_px", "note"]
    assert rows[2:] == [["simple", "61,975", "0.9853", "25.5", ""], ["hog_svm", "-", "1.0000", "-", "C=10, x_y"]]
    latex = paths["tex"].read_text()
    assert r"simple & 61,975 & 0.9853 & 25.5 &  \\" in latex and r"hog\_svm & - & 1.0000 & - & C=10, x\_y \\" in latex
    assert r"test\_accuracy" in latex and not [p for p in tmp_path.iterdir() if is_temporary(p)]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [".toolkit-files.json", "comparison.csv", "comparison.md", "comparison.tex"]


def test_a_failed_change_leaves_the_old_files_and_no_temporary(tmp_path):
    folder = Folder(tmp_path, writer="compare.py", option="--out")
    with folder.staged() as change:
        write_table(change, "comparison", FRAME, "Model comparison")
    before = (tmp_path / "comparison.csv").read_text()
    with pytest.raises(RuntimeError), folder.staged() as change:
        write_table(change, "comparison", FRAME.head(1), "Model comparison")
        raise RuntimeError("killed while writing")
    assert (tmp_path / "comparison.csv").read_text() == before
    assert not [p for p in tmp_path.iterdir() if is_temporary(p)]

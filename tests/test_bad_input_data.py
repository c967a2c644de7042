"""Bad input in the data, the numbers and the plan: every case ends in one line naming what is wrong.

The catalogue, its cases and their checks are in tests/bad_inputs.py (its docstring says what each case
must show); the cases are run in two files so that the test workers share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs import CASES, OUTCOMES, Case, run_case
from bad_inputs_more import MORE_CASES

# the catalogue's fixtures (its datasets and runs, built once per module and worker) are found by name
pytest_plugins = ("bad_inputs",)

KINDS = ("dataset", "number", "plan", "ignored")
ALL = [*CASES, *MORE_CASES]
CHOSEN = [case for case in ALL if case.kind in KINDS]


@pytest.mark.usefixtures("results_file")
@pytest.mark.parametrize("case", CHOSEN, ids=[case.id for case in CHOSEN])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest):
    run_case(case, tmp_path, request)


def test_catalogue_is_well_formed():
    """At least 180 cases, each complete; and the two test files together run every case."""
    ids = [case.id for case in ALL]
    assert len(ids) == len(set(ids)) and len(ids) >= 180
    for case in ALL:
        assert case.expect in ("error", "success", "interrupted"), case.id
        assert case.names or case.expect == "success", case.id
        assert case.today in OUTCOMES and case.right and case.kind, case.id
        assert (case.signal is None) == (case.when is None) and (case.signal is None) == (case.expect != "interrupted")
        train_args = case.command[0] == "train.py" and "--resume" not in case.command
        if train_args and case.kind != "signal":
            assert "--epochs" in case.command and "--image-size" in case.command, case.id
    kinds = {"dataset", "number", "plan", "ignored", "mistake", "write", "signal", "output"}
    assert {case.kind for case in ALL} == kinds

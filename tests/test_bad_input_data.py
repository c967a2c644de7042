"""Bad input in the data, the numbers and the plan: every case ends in one line naming what is wrong.

The catalogue, its cases (one row each) and their checks are in tests/catalogue.py; its cases are run in two
files so that the test workers share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import CASES, Case, expand, run_case

pytest_plugins = ("catalogue",)  # the catalogue's fixtures (its datasets and runs, made once per worker)
CHOSEN = [case for case in CASES if case.kind in ("dataset", "number", "plan", "ignored")]


@pytest.mark.parametrize("case", CHOSEN, ids=[case.id for case in CHOSEN])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest):
    run_case(case, tmp_path, request)


def test_catalogue_is_well_formed():
    """At least 180 cases, each complete; and the two test files together run every case."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 180
    for case in CASES:
        assert case.expect in ("error", "success", "interrupted"), case.id
        assert case.names or case.expect == "success", case.id
        assert (case.signal is None) == (case.when is None) == (case.expect != "interrupted"), case.id
        in_a_process = ("image-size-3000-out-of-memory", "mplbackend-that-does-not-exist")  # a process's own limits
        assert bool(case.process) == (case.signal is not None or case.id in in_a_process), case.id  # sent to it
        command = expand(case.command)
        if command.startswith("train.py") and "--resume" not in command and case.kind != "signal":
            assert "--epochs" in command and "--image-size" in command, case.id
    kinds = {"dataset", "number", "plan", "ignored", "mistake", "write", "signal", "output"}
    assert {case.kind for case in CASES} == kinds

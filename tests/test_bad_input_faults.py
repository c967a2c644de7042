"""Plausible mistakes, write failures and signals: every case ends in one line naming what is wrong, and nothing
already saved changes.

The catalogue, its cases and their checks are in tests/bad_inputs.py (its docstring says what each case
must show); the cases are run in two files so that the test workers share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs import CASES, Case, run_case
from bad_inputs_more import MORE_CASES

# the catalogue's fixtures (its datasets and runs, built once per module and worker) are found by name
pytest_plugins = ("bad_inputs",)

KINDS = ("mistake", "write", "signal", "output")
CHOSEN = [case for case in [*CASES, *MORE_CASES] if case.kind in KINDS]


@pytest.mark.usefixtures("results_file")
@pytest.mark.parametrize("case", CHOSEN, ids=[case.id for case in CHOSEN])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest):
    run_case(case, tmp_path, request)

"""Plausible mistakes, write failures and signals: every case ends in one line naming what is wrong, and nothing
already saved changes.

The catalogue, its cases and their checks are in tests/bad_inputs.py (its docstring says what each case
must show); the cases are run in two files so that the test workers share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs import (  # the module's fixtures are used by name by the cases
    CASES,
    Case,
    course_shaped,
    module_env,
    moved_run,
    results_file,
    run_case,
    tiny_demo,
    tiny_run,
    two_class_run,
)

KINDS = ("mistake", "write", "signal")
CHOSEN = [case for case in CASES if case.kind in KINDS]
__all__ = ["course_shaped", "module_env", "moved_run", "results_file", "tiny_demo", "tiny_run", "two_class_run"]


@pytest.mark.parametrize("case", CHOSEN, ids=[case.id for case in CHOSEN])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest):
    run_case(case, tmp_path, request)

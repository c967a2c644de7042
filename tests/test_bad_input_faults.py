"""Plausible mistakes, write failures and signals: every case ends in one line naming what is wrong, and nothing
already saved changes.

The catalogue, its cases (one row each) and their checks are in tests/catalogue.py; its cases are run in two
files so that the test workers share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import CASES, Case, run_case

pytest_plugins = ("catalogue",)  # the catalogue's fixtures (its datasets and runs, made once per worker)
CHOSEN = [case for case in CASES if case.kind in ("mistake", "write", "signal", "output")]


@pytest.mark.parametrize("case", CHOSEN, ids=[case.id for case in CHOSEN])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest):
    run_case(case, tmp_path, request)

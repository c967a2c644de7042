"""The guides are true: every shell command of doc/*.md runs, in order, at the smallest scale, in a copy of the
project after the README's first command (tests/test_docs.py's project and runner; a file of its own, so that the
README's commands and the guides' run on two workers at once)."""

from __future__ import annotations

import pytest
from test_docs import GUIDES, every_command, projects, run_documented  # noqa: F401  (projects: their fixture)


@pytest.mark.parametrize("document, number, command", every_command(GUIDES))
def test_every_command_of_the_guides_runs(projects, document, number, command):  # noqa: F811
    run_documented(projects, document, command)

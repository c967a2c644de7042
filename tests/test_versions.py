"""The README claims support for exactly the versions the tests run with: the pinned requirements."""

from __future__ import annotations

import os
import re
from importlib import metadata

import pytest

from conftest import ROOT


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            found[match[1]] = match[2]
    return found


@pytest.mark.skipif(
    bool(os.environ.get("CVPR_ANY_VERSIONS")),
    reason="CVPR_ANY_VERSIONS: a machine's own packages (the GPU check runs on what a GPU machine has)",
)
def test_the_installed_versions_are_the_pinned_ones():
    for name, version in {**pins(ROOT / "requirements.txt"), **pins(ROOT / "requirements-dev.txt")}.items():
        assert metadata.version(name) == version, name


def test_the_readme_claims_the_pinned_versions_and_no_other():
    paragraphs = (ROOT / "README.md").read_text().split("\n\n")
    claim = next(p for p in paragraphs if p.startswith("Tested with")).replace("\n", " ")
    claimed = dict(re.findall(r"\b([a-z][a-z0-9-]+) (\d+\.\d+(?:\.\d+)*)", claim))
    assert claimed == pins(ROOT / "requirements.txt")

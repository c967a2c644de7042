"""The shape doc/design.md promises: each question's code where its table says, no module importing a script or in
a circle, every environment variable read in one place, modules and functions short enough to read at once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import ROOT, run_main

SCRIPTS = ("train.py", "eval.py", "predict.py", "compare.py")
SOURCES = sorted([*(ROOT / s for s in SCRIPTS), *(ROOT / "model").rglob("*.py")])


def code_map() -> list[tuple[str, str, str]]:
    """doc/design.md's table "Where each question of the practical lives": (question, file, function)."""
    text = (ROOT / "doc" / "design.md").read_text(encoding="utf-8").split("## Where each question", 1)[1]
    rows = [line.split("|")[1:4] for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("| P")]
    return [(q.strip(), f.strip(), name.strip()) for q, f, name in rows]


def test_every_function_of_the_code_map_exists():
    assert len(code_map()) >= 20
    for question, file, name in code_map():
        tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert name in defined, f"{question}: {file} defines no {name}"


def imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (at its top or inside a function): model.x, train, eval..."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        found |= {n for n in names if n.split(".")[0] in ("model", "train", "eval", "predict", "compare")}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_a_script_or_in_a_circle():
    known = {module_name(p): p for p in SOURCES}
    graph = {name: {i for i in imports(path) if i in known and i != name} for name, path in known.items()}
    for name, targets in graph.items():
        if name.startswith("model"):
            assert not {t for t in targets if not t.startswith("model")}, f"{name} imports a script"
    for start in graph:  # a depth-first walk from each module: back to it is a circle
        stack, seen = list(graph[start]), set[str]()
        while stack:
            node = stack.pop()
            assert node != start, f"{start} imports itself through {sorted(seen)}"
            if node not in seen:
                seen.add(node)
                stack += [t for t in graph[node] if not (t.startswith(f"{start}.") or start.startswith(f"{t}."))]


def test_every_environment_variable_is_read_in_one_place():
    readers = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if p.name != "env.py" and re.search(r"os\.environ\.get|os\.getenv|environ\[", p.read_text(encoding="utf-8"))
    ]
    assert not readers, f"read $VARIABLES outside model/env.py: {readers}"


def test_modules_and_functions_are_short():
    """No module over 400 lines and no function over 60: each can be read at once (issue 33)."""
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 400, f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                assert length <= 60, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_each_example_on_its_own_line(script):
    done = run_main(script, "--help")
    examples = [line for line in done.stdout.splitlines() if line.strip().startswith(("python ", "srun "))]
    assert done.returncode == 0 and "\\b" not in done.stdout and len(examples) >= 3, done.stdout
    assert all(line.startswith("  python ") or line.startswith("  srun ") for line in examples)

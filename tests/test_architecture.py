"""The architecture as the folders show it: floors (doc/design.md's table), each importing only the floors below
it (never across in a circle, never upward), every import counted (those inside functions too); the command
lines derived from TrainOptions' own checks; every script's help readable."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from model.options import SPECS, TYPES, TrainOptions, flag

ROOT = Path(__file__).resolve().parent.parent


def floors() -> list[str]:
    """The units in the order doc/design.md's table of floors lists them (the ground first)."""
    text = (ROOT / "doc" / "design.md").read_text(encoding="utf-8").split("## The floors", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\| \d+ \| (\w+) \|", text, re.MULTILINE)]


# Each unit is a folder of model/ or one of its top-level modules; a unit imports only units before it.
FLOORS = floors()
SCRIPTS = ("train.py", "eval.py", "predict.py", "compare.py")


def unit_of(module: str) -> str | None:
    """The unit of a module of the toolkit (``model.core.files`` -> ``core``), None for any other module."""
    parts = module.split(".")
    if parts[0] != "model" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from model import config
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def package_files() -> list[Path]:
    return sorted((ROOT / "model").rglob("*.py"))


def test_every_unit_has_its_floor():
    units = {unit_of(module_name(p)) for p in package_files()} - {None}
    assert units == set(FLOORS), f"units without a floor: {units - set(FLOORS)}; floors without a unit: "


def test_no_unit_imports_one_above_it_or_in_a_circle():
    """An import of a unit on a higher floor (or of one on the same floor from another unit) is an arrow running
    back up; with one, two units could import each other in a circle."""
    upward = []
    for path in package_files():
        here = unit_of(module_name(path))
        if here is None:  # model/__init__.py: the package's face
            continue
        for imported in imports(path):
            there = unit_of(imported)
            if there is not None and there != here and FLOORS.index(there) > FLOORS.index(here):
                upward.append(f"{path.relative_to(ROOT)} ({here}) imports {imported} ({there})")
    assert not upward, "\n".join(sorted(upward))


def test_no_module_cycle_inside_a_unit():
    modules = {module_name(p): p for p in package_files()}
    graph = {
        name: {m for m in imports(path) if m in modules and m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(name) :], name]))
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_scripts_are_thin():
    """A script parses its arguments, then makes one call into model/: no logic of its own."""
    for script in SCRIPTS:
        tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert functions == ["main"], f"{script} defines {functions}"
        assert len((ROOT / script).read_text().splitlines()) < 150, script


def test_every_environment_variable_is_read_in_one_place():
    readers = []
    for path in [*package_files(), *(ROOT / s for s in SCRIPTS)]:
        text = path.read_text(encoding="utf-8")
        if path.name != "env.py" and re.search(r"os\.environ\.get|os\.getenv|environ\[", text):
            readers.append(str(path.relative_to(ROOT)))
    assert not readers, f"read $VARIABLES outside model/core/env.py: {readers}"


# ----------------------------------------------------------------------------------------------
# The command line, derived from TrainOptions' checks
# ----------------------------------------------------------------------------------------------
def train_command() -> click.Command:
    sys.path.insert(0, str(ROOT))
    import train

    return train.main


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.low is not None])
def test_every_range_is_train_options_own_and_shown(name):
    """train.py's option parses a plain number (click holds no range of its own) and its help shows the range
    TrainOptions enforces; a value just outside it is refused by TrainOptions, naming the option."""
    option = next(p for p in train_command().params if p.name == name)
    assert option.type in (click.INT, click.FLOAT), f"{flag(name)} has a click type of its own: {option.type}"
    spec = SPECS[name]
    assert f"range: {spec.interval()}" in (option.help or ""), option.help
    assert spec.high is not None
    outside = spec.high + (1 if TYPES[name] == "int" else 1.0)
    values: dict[str, Any] = {name: outside}
    with pytest.raises(Exception, match=re.escape(flag(name))):
        TrainOptions(**values)


def test_every_choice_is_train_options_own():
    for name, spec in SPECS.items():
        if spec.choices is not None:
            option = next(p for p in train_command().params if p.name == name)
            assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == spec.choices(), name


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_each_example_on_its_own_line_without_importing_torch(script):
    """--help answers without torch (a blink, not seconds): the benchmark times it; here, what it imports and
    what it prints. Each example of the docstring stands on a line of its own, as written."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({script!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("NO TORCH")
    assert "\\b" not in done.stdout
    source = ast.get_docstring(
        next(n for n in ast.parse((ROOT / script).read_text()).body if isinstance(n, ast.FunctionDef))
    )
    examples = [line.strip() for line in (source or "").splitlines() if line.strip().startswith(("python ", "srun "))]
    assert examples, f"{script}: no example in its help"
    printed = [line.strip() for line in done.stdout.splitlines()]
    for example in examples:
        assert example in printed, f"{script}: example not on a line of its own: {example}"

"""train.py's command line, derived from TrainOptions' specs (model/experiment/options.py), and the one way to
turn arguments into a TrainOptions (``options_from_args``), which the practical's plan uses for its runs' ``args``.

The command line only parses types (a number, a choice, a path) and shows each option's help and range as
its Spec says: every check is TrainOptions' own, so the two can never disagree. ``--config FILE`` fills the
defaults from a JSON file (a run's config.json), each value checked against the option's type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import click

from model.core.cli import path_type
from model.experiment.options import SPECS, TYPES, OptionError, TrainOptions, flag, without_inapplicable

DEFAULTS = TrainOptions()
NOT_OPTIONS = ("resume", "resume_if_started")  # train.py's own flags: what to do, not what the run is
F = TypeVar("F", bound=Callable[..., Any])
JSON_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def declaration(name: str) -> Callable[[Any], Any]:
    """The click option of the TrainOptions field ``name``: its flag, its type, its help from the Spec."""
    spec, kind, default = SPECS[name], TYPES[name], TrainOptions.__dataclass_fields__[name].default
    notes = [f"range: {spec.interval()}" if spec.interval() else "", spec.applies_to]
    text = spec.text + (f"  [{'; '.join(note for note in notes if note)}]" if any(notes) else "")
    shown: dict[str, Any] = {}
    if spec.shown_default is not None:
        text += f"  [default: {spec.shown_default}]"
        shown["show_default"] = False
    if kind == "bool" and spec.switch is None:
        return click.option(flag(name), is_flag=True, default=default, help=text)
    if kind == "bool":
        assert spec.switch is not None
        return click.option(spec.switch, default=default, help=text, **shown)
    if spec.choices is not None:
        kinds: Any = click.Choice(spec.choices())
    elif kind == "Path":
        kinds = path_type(spec.kind)
    else:
        kinds = {"int": click.INT, "float": click.FLOAT, "str": click.STRING}[kind]
    return click.option(flag(name), type=kinds, default=default, help=text, **shown)


def load_config_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """--config FILE: its values become the defaults; options given on the command line win."""
    if value is None:
        return None
    values = read_config_file(Path(value))
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta["config_file"] = value
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """The options of a JSON file (a run's config.json): known names, values of the option's type, no name
    twice; an entry that does not apply to its run but says only the default (as earlier versions wrote) is
    left out."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise click.BadParameter(f"{path}: {', '.join(twice)} given twice; keep one", param_hint="--config")
        return dict(pairs)

    try:
        values = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise click.BadParameter(f"{path}: not a readable JSON file ({error})", param_hint="--config") from None
    if not isinstance(values, dict):
        raise click.BadParameter(f"{path}: expected a JSON object of option names and values", param_hint="--config")
    for recorded in ("run", "resume"):  # run facts and the resume flag that earlier versions kept in it
        values.pop(recorded, None)
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise click.BadParameter(f"{path}: unknown option(s) {', '.join(unknown)}", param_hint="--config")
    for name, value in values.items():
        _check_json_type(path, name, value)
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    changed = {k for k, v in values.items() if v != defaults[k] and not (k in DERIVED and v == DERIVED[k])}
    return without_inapplicable(values, keep=frozenset(changed))


DERIVED = {name: getattr(DEFAULTS, name) for name in ("box_weight", "box_loss", "cut_val", "cut_test", "batchnorm")}


def _check_json_type(path: Path, name: str, value: Any) -> None:
    kind = TYPES[name]
    optional = TrainOptions.__dataclass_fields__[name].default is None
    if value is None and optional:
        return
    expected = JSON_TYPES.get(kind, (str,))
    fits = isinstance(value, expected) and not (kind != "bool" and isinstance(value, bool))
    if not fits:
        wanted = {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(kind, "a string")
        raise click.BadParameter(
            f"{path}: {name} is {json.dumps(value)}, expected {wanted}{' or null' if optional else ''}; fix the file",
            param_hint="--config",
        )


CONFIG_OPTION = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=load_config_file,
    is_eager=True,
    expose_value=False,
    help="JSON file of options (e.g. a run's config.json) to re-run.",
)


def train_options(f: F) -> F:
    """Every option of a run on the command ``f``: --config, then the TrainOptions fields in their order."""
    for name in reversed(SPECS):
        f = declaration(name)(f)
    return CONFIG_OPTION(f)


def given(ctx: click.Context) -> set[str]:
    """The options given on the command line (not defaults, not --config's values)."""
    return {name for name in ctx.params if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}


def assemble(ctx: click.Context, values: dict[str, Any], lenient: Iterable[str] = ()) -> TrainOptions:
    """The TrainOptions of ``values``; an option of ``lenient`` that does not apply to the run is left out
    (returned in ``ctx.meta["left_out"]``) instead of refused. A refused value that came from --config names
    the file."""
    chosen = {key: value for key, value in values.items() if key in SPECS}
    lenient = set(lenient)
    kept = without_inapplicable(chosen, keep=frozenset(set(chosen) - lenient))
    ctx.meta["left_out"] = sorted(k for k in chosen if k not in kept and chosen[k] is not None)
    try:
        return TrainOptions(**kept)
    except OptionError as error:
        config_file = ctx.meta.get("config_file")
        source = ctx.get_parameter_source(error.option) if error.option in ctx.params else None
        if config_file is not None and source is click.core.ParameterSource.DEFAULT_MAP:
            raise OptionError(f"--config {config_file}: {error} (its entry {error.option!r})", error.option) from None
        raise


@click.command("train.py", context_settings={"show_default": True, "max_content_width": 110})
@train_options
def _parser(**values: Any) -> None:
    """The options of a run (the plan's ``args``)."""


def options_from_args(args: Sequence[str], lenient: Iterable[str] = ()) -> tuple[TrainOptions, list[str]]:
    """The options ``python train.py ARGS`` would train with, and the options of ``lenient`` left out because
    they do not apply to the run; click's UsageError (or an OptionError) when it would refuse them."""
    with _parser.make_context("train.py", list(args)) as ctx:
        options = assemble(ctx, dict(ctx.params), lenient)
        return options, list(ctx.meta["left_out"])


def given_names(args: Sequence[str]) -> set[str]:
    """The options ``args`` give (``--no-box-head`` -> ``box_head``), parsed as train.py parses them."""
    with _parser.make_context("train.py", list(args)) as ctx:
        return given(ctx)


def describe_failure(error: Exception) -> str:
    """The one-line message of a refused argument list."""
    if isinstance(error, click.ClickException):
        return error.format_message()
    if isinstance(error, OptionError):
        return str(error)
    raise error


__all__ = [
    "DEFAULTS",
    "assemble",
    "describe_failure",
    "flag",
    "given",
    "given_names",
    "options_from_args",
    "train_options",
]

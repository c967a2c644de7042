"""Errors a user can fix, and their one-line form on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


class UserError(Exception):
    """Bad input or an unusable setting: the message is one line naming the file or option and the fix.

    Every module raises a subclass of it for what a user can fix; the scripts turn it into a one-line
    ``Error: ...`` and exit status 1 (``one_line_errors``). Anything else is a bug and keeps its traceback.
    """


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Inside a command: a UserError becomes click's one-line error (exit status 1)."""
    try:
        yield
    except UserError as error:
        raise click.ClickException(str(error)) from None

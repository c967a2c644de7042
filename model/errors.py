"""Errors a user can fix, and their one-line form on the command line.

Every module raises a ``UserError`` for what a user can fix (bad input, a missing file, a full disk, a folder held
by another process); ``one_line_errors``, around every command's work, turns it into one line ``Error: ...`` and
exit status 1. An OS error that names its file becomes one line too. Anything else is a bug of the toolkit: its
traceback, then a line that says so, exit status 70.
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click


class UserError(Exception):
    """Bad input or an unusable setting: the message is one line naming the file or option and the fix."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


OS_REASONS = {
    errno.ENOSPC: "no space left on the disk; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EROFS: "read-only file system; write elsewhere",
    errno.EACCES: "permission denied; check the folder's permissions or write elsewhere",
    errno.EPERM: "operation not permitted; check the folder's permissions or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is expected; check the path",
    errno.EISDIR: "is a folder, not a file; check the path",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
}


def describe_os_error(error: OSError) -> str:
    """``PATH: what went wrong`` for an OS error that names its file."""
    return f"{error.filename}: {OS_REASONS.get(error.errno or -1, error.strerror or first_line(error))}"


class Stopped(BaseException):
    """SIGTERM (scancel, a preemption), raised where the command is so that what it was writing is discarded on
    the way out, as Ctrl-C's KeyboardInterrupt is."""


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Around a command's work: a UserError (or an OS error naming its file) becomes click's one-line error (exit
    status 1); Ctrl-C or SIGTERM one line saying that nothing half-written is left (exit status 128 + the signal);
    any other exception is a bug (exit status 70)."""
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    except (KeyboardInterrupt, Stopped) as stop:
        name = "SIGINT" if isinstance(stop, KeyboardInterrupt) else str(stop)
        click.echo(f"Interrupted by {name}: what it was writing was not put in place; the files already there are as "
                   "they were", err=True)  # fmt: skip
        sys.exit(128 + signal.Signals[name].value)
    except UserError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        if error.filename is None:
            _bug()
        raise click.ClickException(describe_os_error(error)) from None
    except MemoryError:
        raise click.ClickException("out of memory: lower --batch-size or --image-size, or ask for more memory "
                                   "(srun --mem)") from None  # fmt: skip
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
        raise
    except Exception:
        _bug()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bug() -> None:
    traceback.print_exc()
    print("This looks like a bug of the toolkit: please report it with the traceback above.", file=sys.stderr)
    sys.exit(70)  # EX_SOFTWARE

"""A Python whose heavy libraries are already imported, for the tests' script runs.

Each test that runs a script starts a new process, and a new Python pays about 3 s to import torch,
torchvision and matplotlib before the script's first line (on 2 cores; most of the suite's time). Here one
server per test worker imports them once, then forks a process for each script run: a real, separate process,
with its own pid, exit status, signals, files, environment and working directory, running the script as
``python SCRIPT`` runs it (``__main__``, ``sys.argv``, ``sys.path[0]``), that only skips the imports. Its
``sys.executable`` starts the client, so that the Pythons a script starts (the plan's train.py runs) are warm too.

    python -I -S tests/warm_python.py train.py --epochs 2      # as `python train.py --epochs 2`

The command above is the client: it hands its stdin, stdout and stderr, arguments, folder and environment to
the server named by $CVPR_WARM_PYTHON, forwards the signals it gets to the script's process, and ends as that
process ends (its exit status, or the same signal). It starts the real interpreter instead (``exec``) where a
warm one would not behave the same: no server, Python options before the script, an environment that differs
from the server's in a variable that may be read at start-up (any but PER_RUN's), or inside a Slurm job (its
processes are Slurm's). The toolkit's own modules are never imported ahead: a script imports them from its own
folder (the docs test runs copies of the project). With $CVPR_FRESH_PYTHON=1 the tests start every script the
usual way.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import NoReturn

VARIABLE = "CVPR_WARM_PYTHON"  # the server's socket
FRESH = "CVPR_FRESH_PYTHON"
SUPPORTED = hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")  # Linux's: elsewhere every run starts fresh
PRELOAD = ("torch", "torchvision", "cv2", "numpy", "PIL.Image", "matplotlib.pyplot", "pandas", "rich.progress", "click")
# What a run may set otherwise than the server's environment: variables read only when used (the toolkit's,
# pytest's, the device's, torch's weights folder, the terminal, the display, the search path, the shell's). Any
# other change (a thread count, $CXX, $PYTHON*, what torch's compiler reads as it is imported) starts a fresh
# Python: it may be read at start.
PER_RUN: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "TORCH_HOME",
    "PATH",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "TERM",
    "COLUMNS",
)
PER_RUN += ("LINES", "NO_COLOR", "FORCE_COLOR", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "PYTHONUNBUFFERED")
PER_RUN += ("PS1", "VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")  # what `. .venv/bin/activate` sets: the shell's, not Python's
PER_RUN_PREFIXES = ("CVPR_", "PYTEST_")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!I")


def _read_at_start(environment: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environment.items() if not (k in PER_RUN or k.startswith(PER_RUN_PREFIXES))}


# ----------------------------------------------------------------------------------------------
# The client: `python -I -S tests/warm_python.py ARGS`
# ----------------------------------------------------------------------------------------------
def client(args: list[str]) -> None:
    served = len(args) > 0 and (args[0] in ("-m", "-c") or not args[0].startswith("-"))
    address = os.environ.get(VARIABLE)
    if not served or not address or os.environ.get(FRESH) == "1" or "SLURM_JOB_ID" in os.environ:
        _fresh(args)
    child: list[int] = []  # the script's pid, once the server has said it
    early: list[int] = []  # signals that came before: sent to it as soon as it is known
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _: _forward(child[0], s) if child else early.append(s))
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
        request = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(connection, [HEADER.pack(len(request))], [0, 1, 2])
        connection.sendall(request)
        reply = _lines(connection)
        first = next(reply)
    except (OSError, StopIteration):
        first = "fresh"
    if first == "fresh":  # no server, or one that saw what it cannot serve
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)
        for early_signal in early:
            os.kill(os.getpid(), early_signal)
        _fresh(args)
    child.append(int(first))
    for early_signal in early:
        _forward(child[0], early_signal)
    kind, number = next(reply, "signal 9").split()  # the server gone: as if killed
    if kind == "exit":
        os._exit(int(number))
    signal.signal(int(number), signal.SIG_DFL)
    os.kill(os.getpid(), int(number))
    os._exit(128 + int(number))


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended: its end is on its way
        os.kill(child, signum)


def _fresh(args: list[str]) -> NoReturn:
    os.execv(sys.executable, [sys.executable, *args])


def _lines(connection: socket.socket):
    buffered = b""
    while True:
        try:
            data = connection.recv(256)
        except InterruptedError:
            continue
        if not data:
            return
        buffered += data
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield line.decode()


# ----------------------------------------------------------------------------------------------
# The server: `python -u tests/warm_python.py --serve SOCKET EXECUTABLE` (started by tests/conftest.py; EXECUTABLE
# runs the client, and is the scripts' sys.executable)
# ----------------------------------------------------------------------------------------------
def serve(address: str, executable: str) -> dict | None:
    """Accept runs until told to stop; in each script's process, return its request (the caller runs it at the
    top level, so that an exception ends it as it ends a fresh Python)."""
    import importlib

    before = dict(os.environ)
    for name in PRELOAD:
        importlib.import_module(name)
    # what the imports set (torch's compile cache folder, OpenCV's library path): set in each run as they would be
    imported = {k: (before.get(k), v) for k, v in os.environ.items() if before.get(k) != v}
    baseline = _read_at_start(before)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the monitors reap themselves
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        request, fds = _receive(connection)
        if (start := _read_at_start(_before_imports(request["env"], imported))) != baseline:
            changed = sorted(k for k in start.keys() | baseline.keys() if start.get(k) != baseline.get(k))
            print(f"fresh: {' '.join(request['args'])[:80]}: {', '.join(changed)} changed", file=sys.stderr)
            connection.sendall(b"fresh\n")
            connection.close()
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:  # the monitor of this run
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # it waits for the script's process itself
            child = os.fork()
            if child == 0:
                connection.close()
                _adopt(request, fds, imported)
                sys.executable = executable  # the Pythons it starts in turn (the plan's train.py runs) are warm too
                return request
            for fd in fds:
                os.close(fd)
            _monitor(connection, child)
        connection.close()
        for fd in fds:
            os.close(fd)


def _before_imports(environment: dict[str, str], imported: dict[str, tuple[str | None, str]]) -> dict[str, str]:
    """The environment as it was before the imports set what they set (a run started by a warm run has it)."""
    environment = dict(environment)
    for name, (was, now) in imported.items():
        if environment.get(name) == now:
            if was is None:
                del environment[name]
            else:
                environment[name] = was
    return environment


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(connection, HEADER.size, 3)
    (length,) = HEADER.unpack(header)
    data = b""
    while len(data) < length:
        data += connection.recv(length - len(data))
    return json.loads(data), fds


def _monitor(connection: socket.socket, child: int) -> NoReturn:
    """Tell the client the script's pid, then how it ended; kill it if the client goes (killed, timed out)."""
    connection.sendall(f"{child}\n".encode())
    ended = os.pidfd_open(child)
    while True:
        ready, _, _ = select.select([ended, connection.fileno()], [], [])
        if connection.fileno() in ready and not connection.recv(1):
            os.kill(child, signal.SIGKILL)
        if ended in ready:
            break
    _, status = os.waitpid(child, 0)
    end = f"exit {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"signal {os.WTERMSIG(status)}"
    try:
        connection.sendall(f"{end}\n".encode())
    finally:
        os._exit(0)


def _adopt(request: dict, fds: list[int], imported: dict[str, tuple[str | None, str]]) -> None:
    """This process becomes the client's: its streams, folder, environment, fresh signal handlers and seeds."""
    import io
    import random

    import numpy

    for number, fd in enumerate(fds):
        os.dup2(fd, number)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for name, (was, now) in imported.items():
        if os.environ.get(name) == was:
            os.environ[name] = now
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = "utf-8"
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding,
        line_buffering=os.isatty(1),
        write_through=unbuffered,
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding, "backslashreplace", line_buffering=True
    )
    random.seed()
    numpy.random.seed()


def run_as_main(request: dict) -> None:
    """The script as `python ARGS` runs it: ``python SCRIPT``, ``python -m MODULE`` or ``python -c CODE``."""
    import runpy

    args = request["args"]
    if args[0] == "-c":
        sys.argv, sys.path[0] = ["-c", *args[2:]], ""
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    elif args[0] == "-m":
        sys.argv, sys.path[0] = [args[1], *args[2:]], os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv, sys.path[0] = list(args), os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


def end(request: dict) -> NoReturn:
    """Run the script and end as Python ends: the exit status of its SystemExit, an uncaught exception's traceback
    and status 1 (a KeyboardInterrupt out of a script or module: killed by SIGINT); its threads joined, its atexit
    functions run and its streams flushed, but not the interpreter's teardown (every object of the imported
    libraries freed: a second here, as the fork's pages are copied to be freed)."""
    import atexit
    import threading
    import traceback

    interrupted = False
    try:
        run_as_main(request)
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit.code)
    except BaseException as error:
        traceback.print_exception(error)
        status, interrupted = 1, isinstance(error, KeyboardInterrupt) and request["args"][0] != "-c"
    threading._shutdown()  # type: ignore[attr-defined]  # what Python's exit does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        request = serve(sys.argv[2], sys.argv[3])
        if request is not None:
            end(request)
    else:
        client(sys.argv[1:])

"""The warm Python the tests run the scripts with (tests/warm_python.py) behaves as a fresh one: the same
arguments, folder, search path, environment, streams, exit status, tracebacks and signals, checked against a fresh
interpreter running the same script; and the tests' runs are served by it (else the suite loses its speed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from warm_python import FRESH, SUPPORTED

from conftest import python, run_script

PROBE = """\
import json, os, sys
data = sys.stdin.read()
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(), "name": __name__,
                  "variable": os.environ.get("PROBE_VARIABLE"), "tty": sys.stdout.isatty(), "stdin": data}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PROBE_STATUS", "0")))
"""

pytestmark = pytest.mark.skipif(
    os.environ.get(FRESH) == "1" or not SUPPORTED, reason="no warm Python ($CVPR_FRESH_PYTHON=1, or not Linux)"
)


def both(args: list[str], cwd: Path, **extra: str) -> list[subprocess.CompletedProcess]:
    """``args`` run by a fresh Python and by the warm one, with the same input, folder and environment."""
    env = {**os.environ, **extra}
    return [
        subprocess.run(command, cwd=cwd, env=env, input="some input", capture_output=True, text=True, timeout=60)
        for command in ([sys.executable, *args], python(*args))
    ]


def test_the_tests_runs_are_served_warm():
    done = run_script("-c", "import sys; print('torch' in sys.modules, sys.executable)")
    served, executable = done.stdout.split()
    assert done.returncode == 0 and served == "True", "the scripts' runs start fresh Pythons: see the server's log"
    nested = subprocess.run([executable, "-c", "import sys; print('torch' in sys.modules)"], capture_output=True)
    assert nested.stdout.strip() == b"True"  # what a script starts with sys.executable is warm too


@pytest.mark.parametrize("how", ["script", "module", "code"])
def test_a_warm_run_sees_what_a_fresh_one_sees(tmp_path, how):
    (tmp_path / "probe.py").write_text(PROBE)
    args = {"script": ["probe.py", "a", "--b"], "module": ["-m", "probe", "a", "--b"], "code": ["-c", PROBE, "a"]}
    fresh, warm = both(args[how], tmp_path, PROBE_VARIABLE="x y", PROBE_STATUS="3")
    assert (
        (warm.returncode, warm.stdout, warm.stderr)
        == (fresh.returncode, fresh.stdout, fresh.stderr)
        == (
            3,
            fresh.stdout,
            "to stderr\n",
        )
    )
    assert json.loads(fresh.stdout)["stdin"] == "some input"


def test_an_uncaught_exception_and_a_message_exit_end_as_in_a_fresh_python(tmp_path):
    for code, status in (
        ("raise ValueError('no')", 1),
        ("raise SystemExit('bye')", 1),
        ("import sys; sys.exit(300)", 44),
    ):
        fresh, warm = both(["-c", code], tmp_path)
        assert warm.returncode == fresh.returncode == status, code
        assert warm.stderr.splitlines()[-1:] == fresh.stderr.splitlines()[-1:], code


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_client_reaches_the_script_and_ends_both_alike(tmp_path, signum):
    script = tmp_path / "sleeper.py"
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    ends = []
    for command in ([sys.executable, str(script)], python(str(script))):
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        began = time.monotonic()
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        assert time.monotonic() - began < 10  # the script itself got it
        ends.append((process.returncode, err.strip().splitlines()[-1:]))
    assert ends[0] == ends[1] and ends[0][0] == -signum

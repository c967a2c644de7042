"""The catalogue of bad inputs and faults (run by test_bad_input_data.py and test_bad_input_faults.py): what a
student meets on a shared cluster (full quotas, moved folders, half-copied datasets, typos, signals), each case
one row of CASES: its id, its kind, a setup that damages the case's copies of the shared data, its command line
(``{ds}``, ``{run}``, ``{case}``... are the case's folders) and the words its error line must name.

Every case checks the same four properties:

1. the exit status is non-zero (or, for a case ``accepted`` with a warning, 0 with a warning line naming the
   words; an error is then fine too);
2. stderr's last non-empty line starts with "Error: " and no Python traceback is printed anywhere;
3. that error line names the words (each a substring, one of a tuple of substrings, or a pattern);
4. every file present before the command (the case's dataset, runs and output folders, the shared data it reads)
   is byte-identical afterwards, a failed command leaves no new file or folder behind, and no hidden temporary
   file (``.*.tmp*``) is left anywhere under the case's folders or its cache folder.

Recovery cases (``expect="success"``: a second start after a kill) must exit 0 and leave no temporary file;
interrupted cases (``expect="interrupted"``: a real signal) must exit 128 + the signal with a line saying how to
go on, no traceback and no temporary file. Cases that mount a tmpfs (read-only folders as root, full disks) are
skipped when not root or when the mount is refused.

A command runs in the test's own process, through click's CliRunner: the script's own ``main`` on the same real
files, real OpenCV and real mounts, its exit status and its stdout and stderr as a process would give them (an
exception that escapes ``main`` is shown as its traceback). A case runs as a process of its own only where the
process is what it tests; its ``process`` says why.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from conftest import COURSE_SPLITS, ROOT, Done, default_signals, invoke

TRACEBACK = "Traceback (most recent call last)"
TEMPORARY = ".*.tmp*"  # what model.files.write_file, the cache and the demo generator name their temporaries
TINY = "--epochs 1 --image-size 64 --batch-size 8"  # every training of a case is tiny
CUTS = "--cut-val 0.6 --cut-test 0.7"  # the split of the tiny run (30 images: 18 / 3 / 9)
Need = str | tuple[str, ...] | re.Pattern  # a substring; one of several substrings; a pattern
CLASSES = re.compile(r"\bclass(es)?\b")  # the word, not a folder name such as fewer_classes
UNSET = ("CVPR_DATASET", "DISPLAY", "WAYLAND_DISPLAY")  # tests name their data; predict.py would open a window


# ----------------------------------------------------------------------------------------------
# Running a command: in the test's process, or as a process (with a signal)
# ----------------------------------------------------------------------------------------------
def process_environment(environ: dict[str, str | None]) -> dict[str, str]:
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **environ}
    return {k: v for k, v in merged.items() if v is not None}


def run_process(
    args: Sequence[str],
    environ: dict[str, str | None],
    cwd: Path = ROOT,
    signum: int | None = None,
    when: Callable[[list[str]], bool] | None = None,
    timeout: int = 900,
) -> Done:
    """``python ARGS`` as a process; with ``signum``, that signal sent once ``when(stdout lines so far)``."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=process_environment(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True),
        threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    sent = signum is None
    deadline = time.monotonic() + timeout
    while signum is not None and when is not None and process.poll() is None and time.monotonic() < deadline:
        if when(list(lines)):
            process.send_signal(signum)
            sent = True
            break
        time.sleep(0.02)
    try:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for reader in readers:
        reader.join(timeout=10)
    return Done(process.returncode, "".join(lines), "".join(errors), sent)


def after_line(prefix: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(line.startswith(prefix) for line in lines)


def once_exists(folder: Path, pattern: str) -> Callable[[list[str]], bool]:
    """True once a file matching ``pattern`` exists anywhere under ``folder`` (hidden ones included)."""
    return lambda _lines: folder.exists() and any(True for _ in folder.rglob(pattern))


# ----------------------------------------------------------------------------------------------
# Judging it
# ----------------------------------------------------------------------------------------------
def snapshot(roots: Sequence[Path]) -> dict[str, str]:
    """Every path under ``roots``, hidden ones included, with the sha256 of its bytes ("<dir>" for folders)."""
    seen: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                path = Path(dirpath, name)
                seen[str(path)] = "<link>" if path.is_symlink() else "<dir>"
            for name in filenames:
                path = Path(dirpath, name)
                if path.is_symlink():
                    seen[str(path)] = f"<link to {os.readlink(path)}>"
                else:
                    seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<special>"
    return seen


def temporaries(roots: Sequence[Path]) -> list[str]:
    return sorted(
        str(Path(dirpath, n))
        for root in roots
        for dirpath, dirnames, filenames in os.walk(root)
        for n in [*dirnames, *filenames]
        if fnmatch.fnmatch(n, TEMPORARY)
    )


def missing(line: str, needs: Sequence[Need]) -> list[str]:
    """The requirements of ``needs`` that ``line`` misses (empty: it names everything asked for)."""
    lacking = []
    for need in needs:
        if isinstance(need, re.Pattern):
            if not need.search(line):
                lacking.append(f"/{need.pattern}/")
        elif isinstance(need, tuple):
            if not any(n in line for n in need):
                lacking.append(" or ".join(repr(n) for n in need))
        elif need not in line:
            lacking.append(repr(need))
    return lacking


def judge(case: Case, done: Done, before: dict[str, str], after: dict[str, str], temps: list[str], env: Env):
    """The properties the case misses (number -> what went wrong), and the line that matters."""
    failed: dict[int, str] = {}
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = errors[-1] if errors else ""
    shown = last or (lines[-1] if lines else "")
    succeeded = done.returncode == 0
    if TRACEBACK in done.stdout or TRACEBACK in done.stderr:
        failed[2] = "a Python traceback was printed"
    if case.expect == "error":
        warning = None
        if succeeded and case.accepted:
            warning = next((x for x in lines if "warning" in x.lower() and not missing(x, case.names)), None)
        if succeeded and warning is None:
            unnamed = f" without a warning line naming {', '.join(missing('', case.names))}" if case.accepted else ""
            failed[1], failed[3] = f"exit status 0{unnamed}", "no error line"
        elif warning is not None:
            shown = warning
        else:
            if not last.startswith("Error: "):
                failed[2] = f"stderr's last line does not start with 'Error: ': {last[:200]!r}"
            lacking, bad = missing(last, case.names), [f for f in case.forbid if f in last]
            if lacking or bad:
                failed[3] = f"the error line does not name {', '.join(lacking)}" + (
                    f" (and talks about {', '.join(bad)})" if bad else ""
                )
    elif case.expect == "success":
        if not succeeded:
            failed[1] = f"exit status {done.returncode} where the command should succeed"
    else:
        assert case.signal is not None
        if done.returncode != 128 + case.signal:
            failed[1] = f"exit status {done.returncode}, not {128 + case.signal}"
        naming = next((line for line in lines if not missing(line, case.names)), None)
        if naming is None:
            failed[3] = f"no line names {', '.join(missing('', case.names))}"
        shown = naming or shown

    changed = [p for p, digest in before.items() if after.get(p) != digest]
    if succeeded:  # a command that did its work may remove files, and rewrite those of may_change
        rewritten = [env.format(pattern) for pattern in case.may_change]
        changed = [p for p in changed if p in after and not any(fnmatch.fnmatch(p, g) for g in rewritten)]
    new = [p for p in after if p not in before] if not succeeded or case.expect == "interrupted" else []
    allowed = [env.format(pattern) for pattern in case.allow_new]
    new = [p for p in new if not any(fnmatch.fnmatch(p, pattern) for pattern in allowed)]
    data = []
    if changed:
        data.append(f"changed or removed: {', '.join(env.short(p) for p in changed[:6])}")
    if new:
        data.append(f"left behind: {', '.join(env.short(p) for p in sorted(new)[:6])}")
    if temps:
        data.append(f"temporary files: {', '.join(env.short(p) for p in temps[:6])}")
    if data:
        failed[4] = "; ".join(data)
    return failed, shown


# ----------------------------------------------------------------------------------------------
# The case's folders
# ----------------------------------------------------------------------------------------------
class Env:
    """The folders of one case: ``case`` (its copies of the dataset and runs, its output folders: all
    snapshotted) and ``cache`` (its CVPR_CACHE_DIR, checked for temporaries). Copies of the shared
    dataset and runs are made on first use, through the ``{ds}``, ``{run}``... placeholders."""

    COPIES: ClassVar[dict[str, str]] = {"ds": "tiny_demo", "run": "tiny_run", "two_run": "two_class_run"}
    COPIES["moved_run"] = "moved_run"

    def __init__(self, tmp: Path, request: pytest.FixtureRequest):
        self.case, self.cache, self.request = tmp / "case", tmp / "cache", request
        self.case.mkdir()
        self.cache.mkdir()
        self.environ: dict[str, str | None] = {}
        self.mounts: list[Path] = []
        self.watched: list[Path] = [self.case]  # shared folders the case reads are checked too

    def shared(self, fixture: str) -> Path:
        path: Path = self.request.getfixturevalue(fixture)
        if path not in self.watched:
            self.watched.append(path)
        return path

    def copy(self, name: str) -> Path:
        target = self.case / name
        if not target.exists():
            shutil.copytree(self.shared(self.COPIES[name]), target)
            self.shared("tiny_demo")  # a run's images are the shared demo set's: watched
        return target

    def copied(self, name: str) -> str:
        return str(self.copy(name))

    @property
    def ds(self) -> Path:
        return self.copy("ds")

    @property
    def run(self) -> Path:
        return self.copy("run")

    def format(self, text: str) -> str:
        values: dict[str, Callable[[], str]] = {
            "case": lambda: str(self.case),
            "cache": lambda: str(self.cache),
            "root": lambda: str(ROOT),
            "splits": lambda: str(COURSE_SPLITS),
            "oom": lambda: OUT_OF_MEMORY,
            "course": lambda: str(self.shared("course_shaped")),
        }
        values.update({name: functools.partial(self.copied, name) for name in self.COPIES})
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)]() if m.group(1) in values else m.group(0), text)

    def short(self, path: str) -> str:
        return path.replace(str(self.case) + "/", "").replace(str(self.cache), "CACHE")

    def environment(self) -> dict[str, str | None]:
        """The variables set for the command (None: unset)."""
        return {**dict.fromkeys(UNSET), "CVPR_CACHE_DIR": str(self.cache), **self.environ}

    # mounts: read-only folders as root, full disks
    def mount(self, name: str, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a tmpfs (a read-only folder or a full disk)")
        path = self.case / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            path.rmdir()
            pytest.skip(f"mount -t tmpfs refused: {done.stderr.decode().strip()}")
        self.mounts.append(path)
        return path

    def readonly(self, name: str, fill: Callable[[Path], object]) -> Path:
        """A real read-only folder (root ignores chmod): a tmpfs, filled, remounted read-only."""
        path = self.mount(name, "8m")
        fill(path)
        done = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"mount -o remount,ro refused: {done.stderr.decode().strip()}")
        return path

    def small_disk(self, name: str, free: int, size: str = "2m") -> Path:
        """A 2 MB tmpfs holding a student's file that leaves about ``free`` bytes."""
        path = self.mount(name, size)
        room = shutil.disk_usage(path).free
        assert room > free, f"a {size} tmpfs has only {room} bytes free"
        (path / "filler.bin").write_bytes(b"\0" * (room - free))
        return path

    def unmount(self) -> None:
        for path in reversed(self.mounts):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ----------------------------------------------------------------------------------------------
# A case, and the test that runs it
# ----------------------------------------------------------------------------------------------
Setup = Callable[[Env], object]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    setup: Setup | None  # damages the case's copies, makes its files
    command: str  # python ARGS, as a shell would split them; {ds}, {run}, {case}... are the case's folders
    names: tuple[Need, ...]  # what the error line must name
    accepted: bool = False  # accepted with a warning: exit 0 and a warning line naming `names` (or an error)
    expect: str = "error"  # error | success (a recovery) | interrupted (a real signal)
    forbid: tuple[str, ...] = ()  # what the error line must not talk about
    allow_new: tuple[str, ...] = ()  # paths (globs, with placeholders) that may appear even though it failed
    may_change: tuple[str, ...] = ()  # paths (globs) a command that succeeds rewrites (a resumed run's files)
    signal: int | None = None  # expect="interrupted": the signal sent...
    when: Callable[[Env], Callable[[list[str]], bool]] | None = None  # ... once this is true
    cwd: str = ""  # the folder the command runs in (placeholders allowed); the project's folder when empty
    env: dict[str, str] = field(default_factory=dict)  # variables of the command (placeholders allowed)
    process: str = ""  # why the command runs as a process of its own (empty: in the test's process)


def case(id: str, kind: str, setup: Setup | None, command: str, *names: Need, **options: Any) -> Case:
    return Case(id, kind, setup, command, names, **options)


def run_case(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Build the case, run its command, and check the four properties (or the recovery's, the signal's)."""
    env = Env(tmp_path, request)
    try:
        env.environ.update({name: env.format(value) for name, value in case.env.items()})
        if case.setup is not None:
            case.setup(env)
        args = words(case.command, env)
        cwd = Path(env.format(case.cwd)) if case.cwd else ROOT
        before = snapshot(env.watched)
        if case.process:
            when = case.when(env) if case.when is not None else None
            done = run_process(args, env.environment(), cwd, case.signal, when)
            assert done.sent, f"the case could not be built: the signal found nothing to interrupt\n{done}"
        else:
            done = invoke(args, env.environment(), cwd)
        after = snapshot(env.watched)
        failed, shown = judge(case, done, before, after, temporaries([*env.watched, env.cache]), env)
    finally:
        env.unmount()
    problems = "\n".join(f"  property {n}: {why}" for n, why in sorted(failed.items()))
    assert not failed, (
        f"{case.id}:\n{problems}\n  command: python {shlex.join(args)}\n  exit status {done.returncode}\n"
        f"  line: {env.short(shown)[:300]!r}\n  stdout tail: {done.stdout[-800:]!r}\n"
        f"  stderr tail: {done.stderr[-1200:]!r}"
    )


# ----------------------------------------------------------------------------------------------
# Shared data: made once per test worker, in its process
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_environ(tmp_path_factory) -> dict[str, str | None]:
    return {**dict.fromkeys(UNSET), "CVPR_CACHE_DIR": str(tmp_path_factory.mktemp("bad-input-cache"))}


def made(args: list[str], environ: dict[str, str | None]) -> None:
    done = invoke(args, environ)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, shared_environ) -> Path:
    """30 demo images (12 airplane, 6 face, 12 motorcycle)."""
    root = tmp_path_factory.mktemp("bad-input-demo") / "demo"
    made(["-m", "model.demo", str(root), "--images", "30", "--seed", "1"], shared_environ)
    return root


def tiny_training(dataset: Path, out: Path, environ: dict[str, str | None]) -> Path:
    made(["train.py", "--dataset", str(dataset), "--output-dir", str(out), *f"{TINY} {CUTS}".split()], environ)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_demo, shared_environ) -> Path:
    """A Simple run of one epoch at 64 px on the tiny demo set: its folder."""
    return tiny_training(tiny_demo, tmp_path_factory.mktemp("bad-input-run") / "run", shared_environ)


@pytest.fixture(scope="session")
def two_class_run(tmp_path_factory, tiny_demo, shared_environ) -> Path:
    """The same, on a copy of the demo set without its motorcycles."""
    base = tmp_path_factory.mktemp("bad-input-two")
    shutil.copytree(tiny_demo, base / "two_classes")
    shutil.rmtree(base / "two_classes" / "images" / "motorcycle")
    (base / "two_classes" / "annotations" / "motorcycle.csv").unlink()
    return tiny_training(base / "two_classes", base / "run", shared_environ)


@pytest.fixture(scope="session")
def moved_run(tmp_path_factory, tiny_demo, shared_environ) -> Path:
    """A run whose dataset was moved away after training."""
    base = tmp_path_factory.mktemp("bad-input-moved")
    shutil.copytree(tiny_demo, base / "dataset")
    run = tiny_training(base / "dataset", base / "run", shared_environ)
    (base / "dataset").rename(base / "dataset-moved-elsewhere")
    return run


@pytest.fixture(scope="session")
def course_shaped(course_dataset) -> Path:
    """The course's 2,033 rows with drawn images (conftest's, made once a session): its decode lasts long enough
    to be interrupted."""
    return course_dataset


# ----------------------------------------------------------------------------------------------
# Setups
# ----------------------------------------------------------------------------------------------
def steps(*setups: Setup) -> Setup:
    return lambda env: [step(env) for step in setups]


def write(relative: str, content: bytes | str) -> Setup:
    """Write a file (``relative`` may use placeholders)."""

    def setup(env: Env) -> None:
        path = Path(env.format(relative))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def copy(source: str, target: str) -> Setup:
    """Copy a file or a folder (placeholders allowed; a target ending in / is the folder to copy into)."""

    def setup(env: Env) -> None:
        path, to = Path(env.format(source)), Path(env.format(target))
        to = to / path.name if target.endswith("/") else to
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, to) if path.is_dir() else shutil.copy(path, to)

    return setup


def remove(pattern: str) -> Setup:
    """Remove a file or folder, or those a * matches (placeholders allowed)."""

    def setup(env: Env) -> None:
        for path in map(Path, glob.glob(env.format(pattern))):
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    return setup


def folder(relative: str) -> Setup:
    return lambda env: Path(env.format(relative)).mkdir(parents=True, exist_ok=True)


def rewrite(label: str, edit: Callable[[list[str]], list[str]]) -> Setup:
    """Edit annotations/<label>.csv of the case's dataset line by line."""

    def setup(env: Env) -> None:
        path = env.ds / "annotations" / f"{label}.csv"
        path.write_text("\n".join(edit(path.read_text().splitlines())))

    return setup


def replace_line(label: str, number: int, text: str) -> Setup:
    return rewrite(label, lambda lines: [text if i == number else line for i, line in enumerate(lines, start=1)])


def append_line(label: str, text: str) -> Setup:
    return rewrite(label, lambda lines: [*lines, text])


def other_classes(name: str, drop: str | None = None, add: str | None = None) -> Setup:
    """A copy of the demo set with the class ``drop`` removed, or a class ``add`` (airplane's images, relabelled)."""

    def setup(env: Env) -> None:
        other = env.case / name
        shutil.copytree(env.shared("tiny_demo"), other)
        if drop:
            shutil.rmtree(other / "images" / drop)
            (other / "annotations" / f"{drop}.csv").unlink()
        if add:
            shutil.copytree(other / "images" / "airplane", other / "images" / add)
            rows = (other / "annotations" / "airplane.csv").read_text().splitlines()
            (other / "annotations" / f"{add}.csv").write_text("\n".join(r.rsplit(",", 1)[0] + f",{add}" for r in rows))

    return setup


def one_class_dataset(env: Env) -> None:
    """{case}/one_class: the demo set's faces only."""
    other = env.case / "one_class"
    shutil.copytree(env.shared("tiny_demo"), other)
    for label in ("airplane", "motorcycle"):
        shutil.rmtree(other / "images" / label)
        (other / "annotations" / f"{label}.csv").unlink()


def faces(target: str, count: int) -> Setup:
    """The first ``count`` face pictures of the demo set in the folder ``target``."""

    def setup(env: Env) -> None:
        to = Path(env.format(target))
        to.mkdir(parents=True, exist_ok=True)
        for image in sorted((env.shared("tiny_demo") / "images" / "face").glob("*.jpg"))[:count]:
            shutil.copy(image, to / image.name)

    return setup


# a folder of internet images as web_images/ is (images/<label>/ and annotations.csv), not named so
web_like = steps(
    faces("{case}/web/images/face", 3), write("{case}/web/annotations.csv", "image_0001.jpg,146,15,310,235,face\n")
)


def truncate(relative: str, fraction: float = 0.6) -> Setup:
    def setup(env: Env) -> None:
        path = Path(env.format(relative))
        data = path.read_bytes()
        path.write_bytes(data[: int(fraction * len(data))])

    return setup


def every_image_unreadable(env: Env) -> None:
    for image in (env.ds / "images").rglob("*.jpg"):
        image.write_text("not a picture: the copy was interrupted")


def half_copied(env: Env) -> None:
    for image in sorted((env.ds / "images" / "motorcycle").glob("*.jpg"))[6:]:
        image.unlink()


def edit_checkpoint(env: Env) -> None:
    data = torch.load(env.run / "best.pth", map_location="cpu", weights_only=True)
    assert data["model"]["name"] == "simple"
    data["model"]["name"] = "deeper"
    torch.save(data, env.run / "best.pth")


def run_on_a_copy(env: Env) -> None:
    """{case}/other: a tiny run of the same classes, trained on a copy of the dataset in another folder."""
    shutil.copytree(env.ds, env.case / "copy")
    tiny_training(env.case / "copy", env.case / "other", env.environment())


def planned_for_more(env: Env) -> None:
    """The run's last.pth as a run planned for 3 epochs leaves it after its first (stopped, not finished)."""
    data = torch.load(env.run / "last.pth", map_location="cpu", weights_only=True)
    data["options"]["epochs"] = 3
    torch.save(data, env.run / "last.pth")


def bare_state_dict(env: Env) -> None:
    data = torch.load(env.run / "best.pth", map_location="cpu", weights_only=True)
    torch.save(data["state_dict"], env.case / "weights_only.pth")


def predict_csv_missing_image(env: Env) -> None:
    rows = (env.run / "test_data.csv").read_text().splitlines()
    (env.case / "rows.csv").write_text("\n".join([*rows, "image_0099.jpg,10,10,50,50,face"]))


def edit_config_lr(env: Env) -> None:
    """A hand edit of the run's config.json (the learning rate), its checkpoints left as they are."""
    values = json.loads((env.run / "config.json").read_text())
    (env.run / "config.json").write_text(json.dumps({**values, "lr": 0.01}, indent=2) + "\n")


def users_prediction(env: Env) -> None:
    """The user's own picture in --save's folder, under the name predict.py gives the run's first test row."""
    filename, *_box, label = (env.run / "test_data.csv").read_text().splitlines()[0].split(",")
    (env.case / "pred").mkdir()
    (env.case / "pred" / f"0000_{label}_{Path(filename).stem}.jpg").write_bytes(b"my own annotated picture\n")


def users_run_folder(with_checkpoint: bool) -> Setup:
    """A folder out/mine/ the toolkit never wrote (no manifest), holding the user's files of run names."""
    files = {"config.json": '{"my": "notes on the settings I want to try"}\n'}
    files["history.csv"] = "epoch,what I saw\n1,the loss went down\n"
    if with_checkpoint:
        files["best.pth"] = "a classmate's model, sent by mail\n"
    return steps(*(write(f"{{case}}/out/mine/{name}", text) for name, text in files.items()))


def copied_splits(edit: Callable[[dict[str, list[str]]], object]) -> Setup:
    """{case}/my_splits: the run's three split files, edited (split name -> rows)."""
    files = {"train": "training_data.csv", "val": "val_data.csv", "test": "test_data.csv"}

    def setup(env: Env) -> None:
        rows = {split: (env.run / name).read_text().splitlines() for split, name in files.items()}
        edit(rows)
        (env.case / "my_splits").mkdir()
        for split, name in files.items():
            (env.case / "my_splits" / name).write_text("\n".join(rows[split]))

    return setup


def faces_only_in_test(rows: dict[str, list[str]]) -> None:
    faces = [r for r in rows["train"] if r.endswith(",face")]
    assert faces, "the tiny run's training split holds no face: the case cannot be built"
    rows["train"] = [r for r in rows["train"] if not r.endswith(",face")]
    rows["test"] += faces


def run_without_test_split(env: Env) -> None:
    """{case}/no_test: a run trained with --cut-test 1.0 (its test split is empty)."""
    args = ["train.py", "--dataset", str(env.shared("tiny_demo")), "--output-dir", str(env.case / "no_test")]
    done = invoke([*args, *TINY.split(), "--cut-val", "0.6", "--cut-test", "1.0"], env.environment())
    assert done.returncode == 0, f"could not train the run without a test split: {done.stderr[-800:]}"


def readonly(name: str, fill: Callable[[Env, Path], object] = lambda env, path: None) -> Setup:
    return lambda env: env.readonly(name, lambda path: fill(env, path))


def notes(_env: Env, path: Path) -> None:
    (path / "notes.md").write_text("my notes\n")


def run_inside(env: Env, path: Path) -> None:
    shutil.copytree(env.run, path / "locked_run")


def full_disk(name: str, free: int) -> Setup:
    return lambda env: env.small_disk(name, free=free)


def full_at_start(env: Env) -> None:
    # the epoch-0 last.pth (no optimizer moments yet) is about the size of best.pth: room for half of it
    env.small_disk("full_disk", free=(env.shared("tiny_run") / "best.pth").stat().st_size // 2)


def full_in_epoch(env: Env) -> None:
    # room for the start (split files, config.json, run.json, an epoch-0 last.pth about the size of best.pth),
    # not for epoch 1's best.pth
    env.small_disk("full_disk", free=(env.shared("tiny_run") / "best.pth").stat().st_size * 3 // 2 + 48 * 1024)


def full_at_the_manifest(env: Env) -> None:
    """A tmpfs with room for every file of an evaluation of the three splits, not for its manifest: the
    files' sizes are measured by one evaluation into a scratch folder first (outside the case's folders)."""
    scratch = Path(tempfile.mkdtemp(dir=env.cache.parent, prefix="measure-"))
    try:
        done = invoke(["eval.py", str(env.run / "best.pth"), "--out", str(scratch)], env.environment())
        assert done.returncode == 0, f"could not measure an evaluation: {done.stderr[-800:]}"
        block = os.sysconf("SC_PAGE_SIZE")
        needed = sum(math.ceil(p.stat().st_size / block) * block for p in scratch.iterdir() if p.name[0] != ".")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env.small_disk("full_out", free=needed + block // 2)


def no_x_server(env: Env) -> None:
    """DISPLAY=:99, or the next number whose X socket no server holds (Xvfb often takes :99)."""
    number = next(n for n in range(99, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    if Path(f"/tmp/.X{number}-lock").exists():
        pytest.skip(f"an X server may answer on :{number}")
    env.environ["DISPLAY"] = f":{number}"


def killed(command: str, when: Callable[[Env], Callable[[list[str]], bool]]) -> Setup:
    """A process of ``command`` killed (SIGKILL) once ``when``: what it leaves is the case's start."""

    def setup(env: Env) -> None:
        args = words(command, env)
        done = run_process(args, env.environment(), signum=signal.SIGKILL, when=when(env))
        assert done.sent and done.returncode == -signal.SIGKILL, f"could not kill {args[0]}: {done.stderr[-500:]}"

    return setup


# ---- the third round (issue 34): what a careless user still broke -------------------------------------------
def trained(name: str, dataset: str = "{ds}", extra: str = "") -> Setup:
    """{case}/NAME: a tiny run trained (in this process) on ``dataset``."""

    def setup(env: Env) -> None:
        args = words(f"train.py --dataset {dataset} --output-dir {{case}} --name {name} {{TINY}} {{CUTS}} {extra}", env)
        done = invoke(args, env.environment())
        assert done.returncode == 0, f"could not train {name}: {done.stderr[-800:]}"

    return setup


def other_pictures(name: str) -> Setup:
    """{case}/NAME: a demo set of the same file names and counts as the shared one, its pictures and boxes others."""
    return lambda env: __import__("model.demo").demo.generate(env.case / name, images=30, seed=2)


def edited_checkpoint(edit: Callable[[dict], object]) -> Setup:
    def setup(env: Env) -> None:
        data = torch.load(env.run / "best.pth", map_location="cpu", weights_only=True)
        edit(data)
        torch.save(data, env.run / "best.pth")

    return setup


def normalised_boxes(env: Env) -> None:
    """annotations/face.csv's boxes divided by their images' sizes (as YOLO writes them)."""
    import cv2

    path = env.ds / "annotations" / "face.csv"
    rows = []
    for line in path.read_text().splitlines():
        name, x1, y1, x2, y2, label = line.split(",")
        height, width = cv2.imread(str(env.ds / "images" / "face" / name)).shape[:2]  # type: ignore[union-attr]
        box = (float(x1) / width, float(y1) / height, float(x2) / width, float(y2) / height)
        rows.append(",".join([name, *(f"{v:.4f}" for v in box), label]))
    path.write_text("\n".join(rows))


def exif_turned(env: Env) -> None:
    """The first face stored 90 degrees turned, with the EXIF orientation (6) that shows it upright: its row's box
    fits the stored picture, not the upright one."""
    from PIL import Image

    path = env.ds / "images" / "face" / "image_0001.jpg"
    image = Image.open(path).transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    width, height = image.size
    rewrite(
        "face",
        lambda lines: [
            f"image_0001.jpg,1,1,{width - 2},{height - 2},face" if line.startswith("image_0001") else line
            for line in lines
        ],
    )(env)


def unicode_name(env: Env) -> None:
    """A picture named in decomposed Unicode (as macOS writes é), its row in the composed form."""
    import unicodedata

    folder = env.ds / "images" / "face"
    (folder / "image_0001.jpg").rename(folder / unicodedata.normalize("NFD", "café.jpg"))
    rewrite("face", lambda lines: [l.replace("image_0001.jpg", "café.jpg") for l in lines])(env)  # noqa: E741


def case_renamed(env: Env) -> None:
    (env.ds / "annotations" / "face.csv").rename(env.ds / "annotations" / "Face.csv")


def practical_trained(env: Env) -> None:
    """{case}/runs: the plan's tiny run trained, and its report written once, in this process."""
    args = words("{PRACTICAL} --dataset {ds} --out {case}/first", env)
    done = invoke(args, env.environment())
    assert done.returncode == 0, f"could not run the plan: {done.stderr[-800:]}"


def without_cuda(_env: Env) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --device cuda is what the plan should use")


def corrupt_middle(relative: str) -> Setup:
    """Bytes in the middle of a JPEG overwritten: whole in length, damaged inside (libjpeg decodes it with grey)."""

    def setup(env: Env) -> None:
        path = Path(env.format(relative))
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 40] = bytes([0xFF, 0x00] * 20)
        path.write_bytes(bytes(data))

    return setup


def train(extra: str = "", cuts: bool = True, out: str = "{case}/out") -> str:
    return f"train.py --dataset {{ds}} --output-dir {out} {{TINY}} {'{CUTS}' if cuts else ''} {extra}"


def plan(text: str) -> Setup:
    return write("{case}/plan.toml", text)


# A train.py under an address-space limit of 600 MB above what the interpreter holds once torch is imported:
# what a login node's `ulimit -v` or a small memory share does to --image-size 3000 (30 images: an 810 MB cache).
OUT_OF_MEMORY = (
    "import resource, runpy, sys\n"
    "import cv2, numpy, torch\n"
    "held = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmSize:')) * 1024\n"
    "resource.setrlimit(resource.RLIMIT_AS, (held + (600 << 20), resource.RLIM_INFINITY))\n"
    "sys.argv = ['train.py', *sys.argv[1:]]\n"
    "runpy.run_path('train.py', run_name='__main__')\n"
)
TINY_RUN = f"{TINY} {CUTS}"
RUN = f'[[run]]\nname = "tiny"\nargs = "{TINY_RUN}"\n\n'
SECTION = '[[section]]\nid = "Q3"\ntitle = "tiny"\nkind = "best-vs-last"\nruns = ["tiny"]\n'
PLAN = RUN + SECTION
ORPHAN = RUN.replace('"tiny"', '"orphan"')
MACROS = {  # {NAME} in a command line: words of their own (which may hold placeholders)
    "TINY": TINY,
    "CUTS": CUTS,
    "EVAL": "eval.py {run}/best.pth",
    "PREDICT": "predict.py --model {run}/best.pth",
    "TEST_ROWS": "{run}/test_data.csv",  # the tiny run's 9 test rows: predict.py's usual input
    "HUGE": "99999999999999999999999",  # an integer no C type holds
    "PRACTICAL": "compare.py --practical --plan {case}/plan.toml --output-dir {case}/runs",
    "DRY_RUN": "{PRACTICAL} --dry-run --dataset {ds}",
    "REPORT_ONLY": "{PRACTICAL} --report-only --dataset {ds}",
    "COURSE_ROWS": "--rows {splits}/training_data.csv --rows {splits}/val_data.csv --rows {splits}/test_data.csv",
    "COURSE_TRAIN": "train.py --dataset {course} --output-dir {case}/out {TINY} --workers 1",
}


def expand(command: str) -> str:
    while (expanded := re.sub(r"\{([A-Z_]+)\}", lambda m: MACROS[m.group(1)], command)) != command:
        command = expanded
    return command


def words(command: str, env: Env) -> list[str]:
    """The command line's words, macros expanded, placeholders filled."""
    return [env.format(word) for word in shlex.split(expand(command))]


SIGNAL = "a real signal, sent to a process of its own"  # why a case of kind signal runs as a process
DECODING = lambda env: once_exists(env.cache, ".*.tmp")  # noqa: E731
EPOCH_1 = lambda env: after_line("epoch   1/50")  # noqa: E731
INTERRUPTED = {"expect": "interrupted", "process": SIGNAL}
RESUMABLE = ("{case}/out", "{case}/out/*")  # what an interrupted training keeps to resume from

# ----------------------------------------------------------------------------------------------
# The cases: id, kind, setup, command line, the words its error line names; the options of Case
# ----------------------------------------------------------------------------------------------
WARN = {"accepted": True}
# fmt: off
CASES = [
    # ---- write failures: one line naming the read-only or full folder, before any work; nothing half-made
    case("train-output-dir-read-only", "write", readonly("locked_out", notes), train(out="{case}/locked_out"),
         "locked_out"),
    case("train-resume-in-read-only-run", "write", readonly("ro", run_inside),
         "train.py --resume {case}/ro/locked_run/last.pth --epochs 2", "locked_run"),
    case("eval-out-read-only", "write", readonly("locked_out", notes), "{EVAL} --split test --out {case}/locked_out",
         "locked_out"),
    case("eval-beside-checkpoint-read-only", "write", readonly("ro", run_inside),
         "eval.py {case}/ro/locked_run/best.pth --split test", "locked_run"),  # and suggests --out
    case("compare-out-read-only", "write", readonly("locked_out", notes), "compare.py {run} --out {case}/locked_out",
         "locked_out"),
    case("predict-save-read-only", "write", readonly("locked_save", notes),
         "{PREDICT} --save {case}/locked_save {TEST_ROWS}", "locked_save"),
    # the cache: a warning (decode in memory) or one line naming the folder
    case("cache-dir-is-a-file", "write", write("{case}/cache_file", "not a folder\n"), train(), "cache_file",
         env={"CVPR_CACHE_DIR": "{case}/cache_file"}, **WARN),
    case("cache-dir-read-only", "write", readonly("locked_cache"), train(), "locked_cache",
         env={"CVPR_CACHE_DIR": "{case}/locked_cache"}, **WARN),
    case("cache-disk-full", "write", full_disk("full_cache", 64 * 1024), train(), "full_cache",
         env={"CVPR_CACHE_DIR": "{case}/full_cache"}, **WARN),
    case("train-disk-full-at-start", "write", full_at_start, train(out="{case}/full_disk/run"), "full_disk"),
    case("train-disk-full-in-epoch-1", "write", full_in_epoch, train(out="{case}/full_disk/run"), "full_disk",
         allow_new=("{case}/full_disk/run", "{case}/full_disk/run/*")),  # the epoch-0 last.pth may stay
    case("eval-out-disk-full", "write", full_disk("full_out", 16 * 1024), "{EVAL} --split test --out {case}/full_out",
         "full_out"),
    case("compare-out-disk-full", "write", full_disk("full_out", 64 * 1024), "compare.py {run} --out {case}/full_out",
         "full_out"),
    case("predict-save-disk-full", "write", full_disk("full_out", 100 * 1024),
         "{PREDICT} --save {case}/full_out {TEST_ROWS}", "full_out"),
    # ---- plausible mistakes ------------------------------------------------------------------------
    case("resume-on-dataset-with-a-class-fewer", "mistake", other_classes("fewer_classes", drop="motorcycle"),
         "train.py --resume {run}/last.pth --dataset {case}/fewer_classes --epochs 2", ("--dataset", "fewer_classes"),
         CLASSES),
    case("resume-on-dataset-with-a-class-more", "mistake", other_classes("more_classes", add="bicycle"),
         "train.py --resume {run}/last.pth --dataset {case}/more_classes --epochs 2", ("--dataset", "more_classes"),
         CLASSES),
    case("resnet-weights-of-a-simple-run", "mistake", None, train("--model resnet --weights {run}/best.pth"),
         "--weights"),  # not ImageNet weights
    case("resnet-no-pretrained-with-weights", "mistake", None,
         train("--model resnet --no-pretrained --weights {run}/best.pth"), "--weights"),
    case("resnet-no-pretrained-frozen", "mistake", None, train("--model resnet --no-pretrained --freeze"), "--freeze",
         **WARN),  # a baseline some want
    case("eval-checkpoint-model-name-edited", "mistake", edit_checkpoint, "{EVAL} --split test", "best.pth"),
    case("eval-truncated-checkpoint", "mistake", truncate("{run}/best.pth", 0.5), "{EVAL} --split test", "best.pth"),
    case("eval-not-a-checkpoint", "mistake", None, "eval.py {run}/config.json --split test", "config.json"),
    case("eval-bare-state-dict", "mistake", bare_state_dict, "eval.py {case}/weights_only.pth --split test",
         "weights_only.pth"),
    case("predict-missing-model", "mistake", None,
         "predict.py --model {case}/no_such_model.pth --save {case}/pred {ds}/images/face", "no_such_model.pth"),
    # resume from last.pth
    case("resume-of-best-pth", "mistake", None, "train.py --resume {run}/best.pth --epochs 2", "best.pth"),
    case("resume-with-lr", "mistake", None, "train.py --resume {run}/last.pth --epochs 2 --lr 0.01", "--lr"),
    case("config-json-list", "mistake", write("{case}/list.json", "[0.001, 8]"), train("--config {case}/list.json"),
         "list.json"),
    case("config-invalid-json", "mistake", write("{case}/broken.json", '{"lr": 0.001,'),
         train("--config {case}/broken.json"), "broken.json"),
    case("config-unknown-key", "mistake", write("{case}/typo.json", '{"lrr": 0.001}'),
         train("--config {case}/typo.json"), "lrr"),
    case("config-wrong-type", "mistake", write("{case}/typed.json", '{"seed": "zero"}'),
         train("--config {case}/typed.json"), "seed"),
    case("splits-folder-missing-test-file", "mistake",
         steps(copy("{run}/training_data.csv", "{case}/my_splits/"), copy("{run}/val_data.csv", "{case}/my_splits/")),
         train("--splits {case}/my_splits", cuts=False), "test_data.csv"),
    # a folder name, not a path
    case("name-escaping-output-dir", "mistake", None, train("--name ../escaped"), "--name"),
    case("name-absolute-path", "mistake", None, train("--name {case}/elsewhere"), "--name"),
    case("output-dir-dataset-images", "mistake", None, train(out="{ds}/images"), "--output-dir", "ds/images"),
    case("output-dir-dataset-annotations", "mistake", None, train(out="{ds}/annotations"), "--output-dir",
         "ds/annotations"),
    case("output-dir-web-images-images", "mistake", copy(str(ROOT / "web_images"), "{case}/web_images"),
         train(out="{case}/web_images/images"), "--output-dir", "web_images/images"),
    case("output-dir-dataset-itself", "mistake", None, train(out="{ds}"), "--output-dir", "ds"),
    case("output-dir-is-a-file", "mistake", write("{case}/results.txt", "my results\n"),
         train(out="{case}/results.txt"), "results.txt"),
    case("cut-val-above-cut-test", "mistake", None, train("--cut-val 0.9 --cut-test 0.5", cuts=False), "--cut-val"),
    case("image-size-too-small-for-simple", "mistake", None, train("--image-size 40"), "--image-size"),
    case("pretrained-for-simple", "mistake", None, train("--pretrained"), "--pretrained"),  # resnet only
    case("eval-split-test-and-csv-named-test", "mistake", copy("{run}/val_data.csv", "{case}/test.csv"),
         "{EVAL} --split test --csv {case}/test.csv", "test.csv"),
    case("eval-two-csvs-of-one-name", "mistake",
         steps(copy("{run}/val_data.csv", "{case}/a/rows.csv"), copy("{run}/test_data.csv", "{case}/b/rows.csv")),
         "{EVAL} --csv {case}/a/rows.csv --csv {case}/b/rows.csv", "rows.csv"),
    case("eval-csv-of-unknown-label", "mistake", write("{case}/bikes.csv", "image_0001.jpg,10,10,50,50,bicycle"),
         "{EVAL} --csv {case}/bikes.csv --dataset {ds}", "bikes.csv"),
    case("eval-recorded-split-file-deleted", "mistake", remove("{run}/test_data.csv"), "{EVAL} --split test",
         "test_data.csv"),
    case("predict-empty-folder", "mistake", folder("{case}/empty_folder"),
         "{PREDICT} --save {case}/pred {case}/empty_folder", "empty_folder"),
    case("predict-csv-naming-a-missing-image", "mistake", predict_csv_missing_image,
         "{PREDICT} --save {case}/pred {case}/rows.csv", "image_0099.jpg", **WARN),  # skipped
    case("compare-run-without-best", "mistake", remove("{run}/best.pth"), "compare.py {run} --out {case}/report",
         "best.pth"),
    case("compare-runs-of-different-datasets", "mistake", run_on_a_copy, "compare.py {run} {case}/other --out "
         "{case}/report", "copy", "different pictures", **WARN),
    case("compare-a-partly-trained-run", "mistake", planned_for_more, "compare.py {run} --out {case}/report",
         "1 of 3 epochs", "unfinished", **WARN),
    case("compare-runs-of-different-classes", "mistake", None, "compare.py {run} {two_run} --out {case}/report",
         "two_run"),
    # ---- non-finite and out-of-range numbers ----------------------------------------------------------
    case("lr-nan", "number", None, train("--lr nan"), "--lr"),
    case("lr-inf", "number", None, train("--lr inf"), "--lr"),
    case("cut-val-nan", "number", None, train("--cut-val nan --cut-test 0.7", cuts=False), "--cut-val"),
    case("cut-test-nan", "number", None, train("--cut-val 0.6 --cut-test nan", cuts=False), "--cut-test"),
    case("dropout-nan", "number", None, train("--dropout nan"), "--dropout"),
    case("box-weight-negative", "number", None, train("--box-weight -1"), "--box-weight"),
    case("box-weight-inf", "number", None, train("--box-weight inf"), "--box-weight"),
    case("label-weight-nan", "number", None, train("--label-weight nan"), "--label-weight"),
    case("weight-decay-inf", "number", None, train("--weight-decay inf"), "--weight-decay"),
    case("train-fraction-nan", "number", None, train("--train-fraction nan"), "--train-fraction"),
    case("config-lr-nan", "number", write("{case}/nan.json", '{"lr": NaN}'), train("--config {case}/nan.json"),
         ("lr", "nan.json")),
    case("eval-iou-threshold-nan", "number", None, "{EVAL} --split test --iou-threshold nan", "--iou-threshold"),
    case("predict-iou-threshold-nan", "number", None, "{PREDICT} --iou-threshold nan --save {case}/pred {TEST_ROWS}",
         "--iou-threshold"),
    case("plan-args-unclosed-quote", "number", plan(RUN.replace(TINY_RUN, TINY_RUN + " --lr '0.001") + SECTION),
         "{DRY_RUN}", "plan.toml", "tiny"),
    case("plan-args-lr-nan", "number", plan(RUN.replace(TINY_RUN, TINY_RUN + " --lr nan") + SECTION), "{DRY_RUN}",
         "plan.toml", "--lr"),
    # nothing submitted
    case("slurm-resources-unclosed-quote", "number", plan(PLAN),
         "{PRACTICAL} --slurm --resources '--mem=\"12G' --dataset {ds} --out {case}/report", "--resources"),
    # ---- dataset faults: one line naming the file and line ---------------------------------------------
    case("row-with-5-fields", "dataset", replace_line("face", 3, "image_0003.jpg,133,6,240,face"), train(),
         "face.csv:3"),
    case("row-non-numeric-coordinate", "dataset", replace_line("face", 3, "image_0003.jpg,133,six,240,142,face"),
         train(), "face.csv:3"),
    case("row-nan-coordinates", "dataset", replace_line("face", 3, "image_0003.jpg,nan,nan,nan,nan,face"), train(),
         "face.csv:3"),
    case("row-inverted-box", "dataset", replace_line("face", 3, "image_0003.jpg,240,142,133,6,face"), train(),
         "face.csv:3"),
    case("row-box-far-outside-image", "dataset", replace_line("face", 3, "image_0003.jpg,133,6,5000,5000,face"),
         train(), "face.csv:3"),
    case("row-naming-a-missing-image", "dataset", append_line("face", "image_0099.jpg,10,10,50,50,face"), train(),
         "face.csv:7"),
    case("label-without-images-folder", "dataset",
         write("{ds}/annotations/bicycle.csv", "image_0001.jpg,10,10,50,50,bicycle"), train(), "bicycle.csv:1"),
    case("label-case-differs-from-folder", "dataset",
         rewrite("face", lambda lines: [x.replace(",face", ",Face") for x in lines]), train(), "face.csv:1"),
    case("duplicated-row", "dataset", rewrite("face", lambda lines: [*lines, lines[0]]), train(), "face.csv:7"),
    case("header-row", "dataset", rewrite("face", lambda lines: ["filename,startX,startY,endX,endY,label", *lines]),
         train(), "face.csv:1"),
    case("empty-annotations-folder", "dataset", remove("{ds}/annotations/*.csv"), train(), "annotations"),
    case("annotation-csv-binary-garbage", "dataset", write("{ds}/annotations/face.csv", bytes(range(256)) * 8), train(),
         "face.csv"),
    case("filename-dotdot-etc-passwd", "dataset", append_line("face", "../../etc/passwd,1,1,20,20,face"), train(),
         "face.csv:7"),
    case("filename-absolute-etc-passwd", "dataset", append_line("face", "/etc/passwd,1,1,20,20,face"), train(),
         "face.csv:7"),
    case("filename-sub-dir", "dataset", append_line("face", "sub/dir.jpg,1,1,20,20,face"), train(), "face.csv:7"),
    case("filename-into-another-class-folder", "dataset",
         append_line("face", "../airplane/image_0001.jpg,1,1,20,20,face"), train(), "face.csv:7"),
    case("image-that-is-text", "dataset", write("{ds}/images/face/image_0003.jpg", "<html>404 Not Found</html>\n"),
         train(), "image_0003.jpg"),
    case("image-zero-bytes", "dataset", write("{ds}/images/face/image_0003.jpg", b""), train(), "image_0003.jpg"),
    case("image-truncated-jpeg", "dataset", truncate("{ds}/images/face/image_0003.jpg"), train(), "image_0003.jpg",
         **WARN),
    case("annotation-file-empty-with-images", "dataset", write("{ds}/annotations/face.csv", b""), train(), "face.csv",
         **WARN),
    case("every-image-unreadable-skip-bad-rows", "dataset", every_image_unreadable, train("--skip-bad-rows"),
         re.compile(r"(?i)\bno\b.{0,40}\btrain(ing)?\b.{0,20}\b(image|row)s?\b|\btrain(ing)? (split|set) is empty"),
         forbid=("--lr",)),
    case("half-copied-images-folder", "dataset", half_copied, train(), "motorcycle.csv:"),  # the first missing image
    case("no-images-folder", "dataset", remove("{ds}/images"), train(), "images"),
    case("dataset-missing", "dataset", None,
         "train.py --dataset {case}/no_such_dataset --output-dir {case}/out {TINY} {CUTS}", "--dataset"),
    case("dataset-variable-missing-folder", "dataset", None, "train.py --output-dir {case}/out {TINY} {CUTS}",
         "CVPR_DATASET", env={"CVPR_DATASET": "{case}/moved_dataset"}),
    # no longer at PATH; pass --dataset
    case("eval-after-dataset-moved", "dataset", None, "eval.py {moved_run}/best.pth --split test", "--dataset"),
    case("predict-after-dataset-moved", "dataset", None,
         "predict.py --model {moved_run}/best.pth --save {case}/pred {moved_run}/test_data.csv", "--dataset"),
    case("compare-after-dataset-moved", "dataset", None, "compare.py {moved_run} --out {case}/report", "--dataset"),
    case("eval-dataset-missing", "dataset", None, "{EVAL} --split test --dataset {case}/no_such_dataset", "--dataset"),
    # ---- plan faults (compare.py --practical --plan FILE --dry-run) -------------------------------------
    case("plan-not-toml", "plan", plan("this is [not toml\n"), "{DRY_RUN}", "plan.toml"),
    case("plan-empty-file", "plan", plan(""), "{DRY_RUN}", "plan.toml"),
    case("plan-run-key-typo", "plan", plan(RUN.replace("args =", "argz =") + SECTION), "{DRY_RUN}", "argz", "args"),
    case("plan-section-key-typo", "plan", plan(PLAN.replace("runs =", "run =")), "{DRY_RUN}", "runs", "Q3"),
    case("plan-quick-key-typo", "plan", plan("[quick]\nimage_sise = 32\n\n" + PLAN), "{DRY_RUN} --quick", "image_sise"),
    case("plan-unknown-section-kind", "plan", plan(PLAN.replace('"best-vs-last"', '"best-vs-lastt"')), "{DRY_RUN}",
         "best-vs-lastt"),
    case("plan-section-names-missing-run", "plan", plan(PLAN.replace('runs = ["tiny"]', 'runs = ["tiny", "tinyy"]')),
         "{DRY_RUN}", "tinyy"),
    case("plan-duplicate-run-name", "plan", plan(RUN + RUN + SECTION), "{DRY_RUN}", "tiny"),
    case("plan-run-name-with-slash", "plan", plan(PLAN.replace('"tiny"', '"part1/tiny"')), "{DRY_RUN}", "part1/tiny"),
    case("plan-args-not-a-string", "plan", plan(RUN.replace(f'"{TINY_RUN}"', '["--epochs", "1"]') + SECTION),
         "{DRY_RUN}", "args"),
    case("plan-unknown-table", "plan", plan("[defaultz]\nargs = ''\n\n" + PLAN), "{DRY_RUN}", "defaultz"),
    case("plan-only-names-no-section", "plan", plan(PLAN), "{DRY_RUN} --only Q99", "Q99"),
    case("practical-device-cuda-without-a-gpu", "plan", steps(without_cuda, plan(PLAN)), "{PRACTICAL} --dataset {ds} "
         "--device cuda", "--device cuda"),  # refused before the first run, not at the report
    case("plan-file-missing", "plan", None, "{DRY_RUN}", "plan.toml"),
    # ---- interrupts and kills: real signals to real processes ---------------------------------------------
    case("restart-after-sigkill-in-decode", "signal", killed("{COURSE_TRAIN}", DECODING), "{COURSE_TRAIN}",
         expect="success"),  # removes the stale cache temporary (the killing is the setup's, the restart runs here)
    case("sigint-during-decode", "signal", None, "{COURSE_TRAIN}", "SIGINT", signal=signal.SIGINT, when=DECODING,
         **INTERRUPTED),  # nothing written
    case("sigterm-during-decode", "signal", folder("{case}/cache"), "{COURSE_TRAIN}",
         "Interrupted by SIGTERM while reading the dataset: nothing was written", signal=signal.SIGTERM,
         when=lambda env: once_exists(env.case / "cache", ".*.tmp"), env={"CVPR_CACHE_DIR": "{case}/cache"},
         **INTERRUPTED),  # preemption: no cache file either (the cache is in the case's folder)
    case("sigint-during-training", "signal", None, train("--epochs 50"), "--resume", signal=signal.SIGINT, when=EPOCH_1,
         allow_new=RESUMABLE, **INTERRUPTED),
    case("sigterm-during-training", "signal", None, train("--epochs 50"), "--resume", signal=signal.SIGTERM,
         when=EPOCH_1, allow_new=RESUMABLE, **INTERRUPTED),
    case("resume-after-sigkill-in-training", "signal", killed(train("--epochs 50"), EPOCH_1),
         "train.py --resume {case}/out/last.pth --epochs 2", expect="success", may_change=("{case}/out/*",)),
    case("sigint-during-demo-generation", "signal", None, "-m model.demo {case}/gen {COURSE_ROWS}",
         ("SIGINT", "nterrupted"), signal=signal.SIGINT, when=lambda env: once_exists(env.case, "*.jpg"),
         **INTERRUPTED),
    # the staging folder removed
    case("regenerate-after-sigkill-of-demo", "signal",
         killed("-m model.demo {case}/gen {COURSE_ROWS}", lambda env: once_exists(env.case, "*.jpg")),
         "-m model.demo {case}/gen --images 30 --seed 1", expect="success"),
    # ---- outputs aimed at a dataset, a folder of internet images, or a user's file: nothing written --------
    case("eval-out-dataset-annotations", "output", None, "{EVAL} --split test --dataset {ds} --out {ds}/annotations",
         "--out", "ds/annotations"),
    case("eval-out-dataset-class-images", "output", None, "{EVAL} --split test --out {ds}/images/face", "--out",
         "ds/images/face"),
    case("eval-out-dataset-root", "output", None, "{EVAL} --split test --out {ds}", "--out", "ds"),
    case("eval-out-web-images-folder", "output", web_like, "{EVAL} --split test --out {case}/web", "--out", "web"),
    case("eval-out-web-images-class-folder", "output", web_like, "{EVAL} --split test --out {case}/web/images/face",
         "--out", "web/images/face"),
    case("compare-out-dataset-annotations", "output", None, "compare.py {run} --out {ds}/annotations", "--out",
         "ds/annotations"),
    case("compare-out-dataset-class-images", "output", None, "compare.py {run} --out {ds}/images/face", "--out",
         "ds/images/face"),
    case("compare-out-web-images-folder", "output", web_like, "compare.py {run} --out {case}/web", "--out", "web"),
    case("predict-save-dataset-class-images", "output", None, "{PREDICT} --save {ds}/images/face {TEST_ROWS}", "--save",
         "ds/images/face"),
    case("predict-save-dataset-root", "output", None, "{PREDICT} --save {ds} {TEST_ROWS}", "--save", "ds"),
    case("predict-save-web-images-class-folder", "output", web_like,
         "{PREDICT} --save {case}/web/images/face {TEST_ROWS}", "--save", "web/images/face"),
    case("predict-gallery-dataset-class-images", "output", None,
         "{PREDICT} --save {case}/pred --gallery {ds}/images/face/g.png {TEST_ROWS}", "--gallery", "ds/images/face"),
    case("predict-gallery-web-images-folder", "output", web_like,
         "{PREDICT} --save {case}/pred --gallery {case}/web/images/face/g.png {TEST_ROWS}", "--gallery",
         "web/images/face"),
    case("predict-gallery-csv-in-annotations", "output", None,
         "{PREDICT} --save {case}/pred --gallery {ds}/annotations/gallery.csv {TEST_ROWS}", "--gallery"),
    case("practical-report-out-dataset-annotations", "output", plan(PLAN), "{REPORT_ONLY} --out {ds}/annotations",
         "--out", "ds/annotations"),
    case("practical-report-out-dataset-class-images", "output", plan(PLAN), "{REPORT_ONLY} --out {ds}/images/face",
         "--out", "ds/images/face"),
    case("practical-runs-dir-in-dataset", "output", plan(PLAN),
         "compare.py --practical --plan {case}/plan.toml --output-dir {ds}/images --dry-run --dataset {ds}",
         "--output-dir", "ds/images"),
    case("compare-train-output-dir-in-dataset", "output", None,
         "compare.py --train simple --epochs 1 --image-size 64 --output-dir {ds}/annotations --dataset {ds}"
         " --out {case}/report",
         "--output-dir"),
    case("train-overwrite-users-folder-without-manifest", "output", users_run_folder(with_checkpoint=True),
         train("--name mine --overwrite"), "best.pth"),
    case("train-replaces-users-config-json-without-manifest", "output", users_run_folder(with_checkpoint=False),
         train("--name mine"), ("config.json", "history.csv")),
    case("train-output-dir-empty-string", "output", write("{case}/project/README.md", "my project\n"),
         "{root}/train.py --dataset {ds} --output-dir '' {TINY} {CUTS}", "--output-dir", cwd="{case}/project"),
    case("train-name-is-a-users-file", "output", write("{case}/out/notes.txt", "my notes\n"), train("--name notes.txt"),
         "notes.txt"),
    case("eval-out-users-file-of-an-output-name", "output",
         write("{case}/ev/best.test.json", '{"my": "own results"}\n'), "{EVAL} --split test --out {case}/ev",
         "best.test.json"),
    case("eval-out-is-a-users-file", "output", write("{case}/results.txt", "my results\n"),
         "{EVAL} --split test --out {case}/results.txt", "results.txt"),
    case("compare-out-users-comparison-md", "output",
         write("{case}/report/comparison.md", "# my own comparison, typed by hand\n"),
         "compare.py {run} --out {case}/report", "comparison.md"),
    case("compare-out-users-figure", "output", write("{case}/report/loss_curves.png", b"\x89PNG my own plot"),
         "compare.py {run} --out {case}/report", "loss_curves.png"),
    case("predict-save-users-file-of-an-output-name", "output", users_prediction,
         "{PREDICT} --save {case}/pred {TEST_ROWS}", "0000_"),
    case("predict-gallery-users-file", "output", write("{case}/g.png", b"\x89PNG my own gallery"),
         "{PREDICT} --save {case}/pred --gallery {case}/g.png {TEST_ROWS}", "g.png"),
    case("practical-report-out-users-report-md", "output",
         steps(plan(PLAN), write("{case}/report/report.md", "# My report\n\nWritten by hand over two weeks.\n")),
         "{REPORT_ONLY} --out {case}/report", "report.md"),
    case("demo-generator-into-dataset-class-folder", "output", None,
         "-m model.demo {ds}/images/face --images 30 --seed 1", "ds/images/face"),
    # ---- numbers no C type holds, file names of the wrong kind, a display that is not there ---------------
    case("seed-huge", "number", None, train("--seed {HUGE}"), "--seed"),
    case("image-size-huge", "number", None, train("--image-size {HUGE}"), "--image-size"),
    # one batch of the 18 images
    case("batch-size-huge", "number", None, train("--batch-size {HUGE}"), "--batch-size", **WARN),
    case("workers-huge", "number", None, train("--workers {HUGE}"), "--workers", **WARN),
    case("eval-batch-size-huge", "number", None, "{EVAL} --split test --batch-size {HUGE} --out {case}/ev",
         "--batch-size", **WARN),
    case("predict-gallery-pth-extension", "mistake", None,
         "{PREDICT} --save {case}/pred --gallery {case}/out.pth {TEST_ROWS}", "--gallery"),
    # no screen: a warning naming the variable, the images saved to files (the display probe is a process of its own)
    case("predict-display-without-x-server", "mistake", steps(folder("{case}/work"), no_x_server),
         "{root}/predict.py --model {run}/best.pth {TEST_ROWS}", "DISPLAY", cwd="{case}/work", **WARN),
    case("predict-wayland-display-without-server", "mistake", folder("{case}/work"),
         "{root}/predict.py --model {run}/best.pth {TEST_ROWS}", "WAYLAND_DISPLAY", cwd="{case}/work",
         env={"WAYLAND_DISPLAY": "wayland-99"}, **WARN),
    # ---- half-written on failure: one line, before anything is saved ------------------------------------------
    case("predict-gallery-read-only-after-save", "write", readonly("locked"),
         "{PREDICT} --save {case}/pred --gallery {case}/locked/g.png {TEST_ROWS}", "locked"),
    case("predict-gallery-disk-full-after-save", "write", full_disk("full_out", 8 * 1024),
         "{PREDICT} --save {case}/pred --gallery {case}/full_out/g.png {TEST_ROWS}", "full_out"),
    case("predict-save-new-folder-disk-full", "write", full_disk("full_out", 16 * 1024),
         "{PREDICT} --save {case}/full_out/pred {TEST_ROWS}", "full_out"),
    case("eval-out-new-folder-disk-full", "write", full_disk("full_out", 48 * 1024), "{EVAL} --out {case}/full_out/ev",
         "full_out"),
    case("eval-out-disk-full-at-the-manifest", "write", full_at_the_manifest, "{EVAL} --out {case}/full_out",
         "full_out"),
    case("compare-out-new-folder-disk-full", "write", full_disk("full_out", 64 * 1024),
         "compare.py {run} --out {case}/full_out/report", "full_out"),
    case("practical-slurm-without-sbatch", "write", steps(plan(PLAN), folder("{case}/nobin")),
         "{PRACTICAL} --slurm --dataset {ds} --out {case}/report", "sbatch", env={"PATH": "{case}/nobin"}),
    # ---- ignored in silence: one line, or a warning naming what is ignored --------------------------------------
    case("no-box-head-with-box-loss-and-weight", "ignored", None, train("--no-box-head --box-loss giou --box-weight 5"),
         ("--box-loss", "--box-weight"), **WARN),
    case("predict-cam-with-augment-preview", "ignored", None,
         "{PREDICT} --cam --augment-preview 2 --save {case}/pred {TEST_ROWS}", "--cam"),
    case("predict-augment-without-preview", "ignored", None,
         "{PREDICT} --augment strong --save {case}/pred {TEST_ROWS}", "--augment", **WARN),
    case("predict-gallery-max-without-gallery", "ignored", None,
         "{PREDICT} --gallery-max 4 --save {case}/pred {TEST_ROWS}", "--gallery-max", **WARN),
    case("predict-delay-with-save", "ignored", None, "{PREDICT} --delay 500 --save {case}/pred {TEST_ROWS}", "--delay",
         **WARN),
    case("config-epochs-true", "ignored", write("{case}/epochs.json", '{"epochs": true}'),
         train("--config {case}/epochs.json"), "epochs.json"),
    case("config-seed-fraction", "ignored", write("{case}/seed.json", '{"seed": 2.5}'),
         train("--config {case}/seed.json"), "seed.json"),
    case("compare-same-run-twice", "ignored", None, "compare.py {run} {run} --out {case}/report",
         re.compile(r"case/run\b")),
    case("compare-run-and-its-checkpoint", "ignored", None, "compare.py {run} {run}/best.pth --out {case}/report",
         re.compile(r"case/run\b")),
    case("compare-epochs-without-train", "ignored", None, "compare.py {run} --epochs 5 --out {case}/report", "--epochs",
         **WARN),
    case("compare-output-dir-without-train", "ignored", None,
         "compare.py {run} --output-dir {case}/elsewhere --out {case}/report", "--output-dir", **WARN),
    case("practical-report-only-with-dry-run", "ignored", plan(PLAN), "{REPORT_ONLY} --dry-run --out {case}/report",
         ("--dry-run", "--report-only")),
    case("env-cvpr-deterministic-yes", "ignored", None, train(), "CVPR_DETERMINISTIC",
         env={"CVPR_DETERMINISTIC": "yes"}),
    case("env-cvpr-cpu-bf16-maybe", "ignored", None, train(), "CVPR_CPU_BF16", env={"CVPR_CPU_BF16": "maybe"}),
    case("env-cvpr-keep-memory-no", "ignored", None, train(), "CVPR_KEEP_MEMORY", env={"CVPR_KEEP_MEMORY": "no"}),
    case("env-slurm-cpus-per-task-eight", "ignored", None, train(), "SLURM_CPUS_PER_TASK",
         env={"SLURM_CPUS_PER_TASK": "eight"}),
    case("env-slurm-cpus-per-task-zero", "ignored", None, train(), "SLURM_CPUS_PER_TASK",
         env={"SLURM_CPUS_PER_TASK": "0"}),
    case("name-with-a-newline", "ignored", None, train('--name "part1\nlong"'), "--name"),
    case("resume-after-config-json-edit", "ignored", edit_config_lr, "train.py --resume {run}/last.pth --epochs 2",
         "config.json", may_change=("{run}/*",), **WARN),
    # ---- plans: wrong types and dropped entries -------------------------------------------------------------
    case("plan-run-optional-string", "plan", plan(RUN.replace("args =", 'optional = "yes"\nargs =') + SECTION),
         "{DRY_RUN}", "optional"),
    case("plan-section-optional-string-no", "plan", plan(PLAN + 'optional = "no"\n'), "{DRY_RUN}", "optional"),
    case("plan-section-runs-duplicated", "plan", plan(PLAN.replace('runs = ["tiny"]', 'runs = ["tiny", "tiny"]')),
         "{DRY_RUN}", "tiny", "Q3"),
    case("plan-section-runs-a-string", "plan",
         plan(RUN.replace('"tiny"', '"b"') + SECTION.replace('runs = ["tiny"]', 'runs = "bb"')), "{DRY_RUN}", "runs",
         "Q3"),
    case("plan-section-runs-a-number", "plan", plan(PLAN.replace('runs = ["tiny"]', "runs = 5")), "{DRY_RUN}", "runs",
         "Q3"),
    case("plan-section-kind-a-list", "plan", plan(PLAN.replace('kind = "best-vs-last"', 'kind = ["best-vs-last"]')),
         "{DRY_RUN}", "kind", "Q3"),
    case("plan-run-name-a-number", "plan", plan(RUN.replace('name = "tiny"', "name = 5") + SECTION), "{DRY_RUN}",
         "name"),
    case("plan-defaults-args-a-list", "plan", plan('[defaults]\nargs = ["--epochs", "1"]\n\n' + PLAN), "{DRY_RUN}",
         "[defaults]", "args"),
    case("plan-quick-epochs-a-string", "plan", plan('[quick]\nepochs = "two"\n\n' + PLAN), "{DRY_RUN} --quick",
         "epochs", "[quick]"),
    case("plan-quick-image-size-a-string", "plan", plan('[quick]\nimage_size = "small"\n\n' + PLAN),
         "{DRY_RUN} --quick", "image_size", "[quick]"),
    case("plan-quick-no-pretrained-a-string", "plan", plan('[quick]\nno_pretrained = "no"\n\n' + PLAN),
         "{DRY_RUN} --quick", "no_pretrained", "[quick]"),
    case("plan-only-empty", "plan", plan(PLAN), "{DRY_RUN} --only ''", "--only"),
    # never trained
    case("plan-run-in-no-section", "plan", plan(RUN + ORPHAN + SECTION), "{DRY_RUN}", "orphan", **WARN),
    case("plan-args-output-dir", "plan", plan(RUN.replace(TINY_RUN, TINY_RUN + " --output-dir mine") + SECTION),
         "{DRY_RUN}", "--output-dir", "tiny"),
    case("plan-args-name", "plan", plan(RUN.replace(TINY_RUN, TINY_RUN + " --name other") + SECTION), "{DRY_RUN}",
         "--name", "tiny"),
    # ---- data that passes but should not ---------------------------------------------------------------------
    case("annotation-file-deleted-with-images", "dataset", remove("{ds}/annotations/face.csv"), train(),
         ("face.csv", "images/face"), **WARN),
    case("coordinate-with-an-underscore", "dataset", replace_line("face", 3, "image_0003.jpg,133,6,2_40,142,face"),
         train(), "face.csv:3"),
    case("coordinate-in-fullwidth-digits", "dataset",
         replace_line("face", 3, "image_0003.jpg,133,6,\uff12\uff14\uff10,142,face"), train(), "face.csv:3"),
    case("class-missing-from-the-training-split", "dataset", copied_splits(faces_only_in_test),
         train("--splits {case}/my_splits", cuts=False), "face", "training_data.csv", **WARN),
    case("training-row-also-in-test-split", "dataset",
         copied_splits(lambda rows: rows["test"].append(rows["train"][0])),
         train("--splits {case}/my_splits", cuts=False), "test_data.csv"),
    case("one-class-dataset", "dataset", one_class_dataset,
         "train.py --dataset {case}/one_class --output-dir {case}/out {TINY} {CUTS}", "one_class", CLASSES),
    case("eval-empty-test-split", "dataset", write("{run}/test_data.csv", ""), "{EVAL} --split test --out {case}/ev",
         ("test_data.csv", "test split"), **WARN),
    case("eval-run-trained-without-test-split", "dataset", run_without_test_split,
         "eval.py {case}/no_test/best.pth --split test --out {case}/ev", ("test_data.csv", "test split"), **WARN),
    case("compare-run-without-test-split", "dataset", run_without_test_split,
         "compare.py {case}/no_test --out {case}/report", ("test_data.csv", "test split"), **WARN),
    # ---- vague messages --------------------------------------------------------------------------------------
    case("weights-a-text-file", "mistake", write("{case}/resnet18.pth", "404: Not Found\n"),
         train("--model resnet --weights {case}/resnet18.pth"), ("--weights", "resnet18.pth")),
    case("image-size-3000-out-of-memory", "mistake", None,
         "-c {oom} --dataset {ds} --output-dir {case}/out {TINY} {CUTS} --image-size 3000 --workers 1", "--image-size",
         process="setrlimit's address-space limit holds for the whole process (the test's own too)"),
    case("eval-split-given-twice", "mistake", None, "{EVAL} --split test --split test --out {case}/ev", "--split",
         forbid=("--csv",)),
    case("predict-annotate-folder-without-label-folders", "mistake", faces("{case}/pics", 2),
         "{PREDICT} --annotate {case}/pics", "<label>"),
    case("predict-annotate-images-without-label-folders", "mistake", faces("{case}/web/images", 2),
         "{PREDICT} --annotate {case}/web/images", "<label>"),
    # ---- the third round (issue 34) ------------------------------------------------------------------------
    case("config-of-an-overwritten-run-replaces-nothing", "mistake",
         steps(trained("keep"), trained("x", extra="--overwrite")),
         "train.py --config {case}/x/config.json --name keep --epochs 1 --image-size 64", "keep",
         "already holds a run"),
    case("cache-dir-inside-the-dataset", "write", None, train(), "CVPR_CACHE_DIR",
         env={"CVPR_CACHE_DIR": "{ds}/cache"}),
    case("eval-csv-of-a-run-on-other-pictures", "mistake", steps(other_pictures("other"), trained("b", "{case}/other")),
         "{EVAL} --csv {case}/b/test_data.csv --out {case}/eval", "other", **WARN),
    case("predict-csv-of-a-run-on-other-pictures", "mistake",
         steps(other_pictures("other"), trained("b", "{case}/other")),
         "{PREDICT} --save {case}/pred {case}/b/test_data.csv", "other", **WARN),
    case("resume-on-other-pictures", "mistake", other_pictures("other"),
         "train.py --resume {run}/last.pth --dataset {case}/other --epochs 2", "other", ("pictures", "boxes")),
    case("boxes-normalised-to-one", "dataset", normalised_boxes, train(), "face.csv", "[0, 1]"),
    case("save-into-the-input-folder", "output", faces("{case}/mine/face", 2),
         "{PREDICT} --save {case}/mine/drawn {case}/mine", "--save"),
    case("gpu-granted-but-not-usable", "mistake", None, train(), "CUDA_VISIBLE_DEVICES",
         env={"CUDA_VISIBLE_DEVICES": "0"}, **WARN),
    case("resnet-from-scratch-last-batch-of-one", "number", None,
         train("--model resnet --no-pretrained --image-size 32 --batch-size 17"), expect="success"),
    case("mplbackend-that-does-not-exist", "ignored", None, train(), "MPLBACKEND", env={"MPLBACKEND": "nonexistent"},
         process="MPLBACKEND is read when a process first imports matplotlib"),
    case("run-manifest-of-the-wrong-shape", "write", write("{run}/manifest.json", "[]"), "{EVAL} --split test",
         "manifest.json"),
    case("out-manifest-of-the-wrong-shape", "write", write("{case}/out/.toolkit-files.json", "[]"),
         "{EVAL} --split test --out {case}/out", ".toolkit-files.json"),
    case("checkpoint-image-size-a-string", "mistake", edited_checkpoint(lambda d: d.update(image_size="64")),
         "{EVAL} --split test", "best.pth"),
    case("checkpoint-normalisation-of-two", "mistake",
         edited_checkpoint(lambda d: d.update(normalization={"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]})),
         "{EVAL} --split test", "best.pth"),
    case("checkpoint-image-size-too-small", "mistake", edited_checkpoint(lambda d: d.update(image_size=8)),
         "{EVAL} --split test", "best.pth"),
    case("eval-a-run-folder", "mistake", None, "eval.py {run}", "best.pth"),
    case("box-of-an-exif-turned-image", "dataset", exif_turned, train(), "face.csv", "EXIF"),
    case("file-name-in-another-unicode-form", "dataset", unicode_name, train(), "café.jpg", ("NFD", "the row names")),
    case("annotation-file-named-in-another-case", "dataset", case_renamed, train(), expect="success"),
    case("config-lr-a-word", "ignored", write("{case}/lr.json", '{"lr": "fast"}'), train("--config {case}/lr.json"),
         "lr.json", "'lr'"),
    case("resume-with-fewer-epochs-than-done", "mistake", trained("two", extra="--epochs 2"),
         "train.py --resume {case}/two/last.pth --epochs 1", "--epochs 1", "2 epochs"),
    case("name-too-long", "number", None, train("--name " + "n" * 250), "--name"),
    case("sigterm-during-predict-save", "signal", None, "{PREDICT} --save {case}/pred {course}", "SIGTERM",
         signal=signal.SIGTERM, when=lambda env: once_exists(env.case / "pred", ".staging*"), **INTERRUPTED),
    case("sigterm-during-report-only", "signal", steps(plan(PLAN), practical_trained),
         "{REPORT_ONLY} --out {case}/report", "SIGTERM", signal=signal.SIGTERM,
         when=lambda env: once_exists(env.case / "report", ".staging*"), **INTERRUPTED),
    case("corrupt-jpeg-inside", "dataset", corrupt_middle("{ds}/images/face/image_0003.jpg"), train(),
         "image_0003.jpg", "Corrupt JPEG"),
]
# fmt: on

"""The catalogue of bad inputs and faults (run by test_bad_input_data.py and test_bad_input_faults.py): what
a student meets on a shared cluster (full quotas, moved folders,
half-copied datasets, typos, signals), each run as a real command through the scripts on real files.

Every case checks the same four properties:

1. the exit status is non-zero (or, for a case marked "accepted with a warning", 0 with a warning line
   naming the file; an error is then fine too);
2. stderr's last non-empty line starts with "Error: " and no Python traceback is printed anywhere;
3. that error line names the offending file or option (the case's ``names``);
4. every file present before the command (the case's dataset, run folders and output folders) is
   byte-identical afterwards, a failed command leaves no new file or folder behind, and no hidden
   temporary file (``.*.tmp*``) is left anywhere under the case's folders or its cache folder.

Recovery cases (``expect="success"``: a second start after a kill) must exit 0 and leave no temporary
file; interrupted cases (``expect="interrupted"``: a real signal) must exit 128 + the signal with a line
saying how to go on, no traceback and no temporary file. Cases that mount a tmpfs (read-only folders as
root, full disks) are skipped when not root or when the mount is refused.

``today`` records what the code gave when the catalogue was written (one-line, traceback, vague, silent,
data changed); the tests do not check it. With BAD_INPUT_RESULTS=FILE the outcome of every case run is
written to FILE as JSON (the README's counts come from it and from ``today``).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from conftest import default_signals
from conftest import python as python_command

ROOT = Path(__file__).resolve().parent.parent
COURSE_SPLITS = ROOT / "tests" / "data" / "course-splits"
TRACEBACK = "Traceback (most recent call last)"
TEMPORARY = ".*.tmp*"  # what model.core.files.atomic_path, the cache and the demo generator name their temporaries
TINY = ("--epochs", "1", "--image-size", "64", "--batch-size", "8")  # every training of a case is tiny
CUTS = ("--cut-val", "0.6", "--cut-test", "0.7")  # the split of the tiny run (30 images: 18 / 3 / 9)
OUTCOMES = ("one-line", "traceback", "vague", "silent", "data changed")

Need = str | tuple[str, ...] | re.Pattern  # a substring; one of several substrings; a pattern
CLASSES = re.compile(r"\bclass(es)?\b")  # the word, not a folder name such as fewer_classes


# ----------------------------------------------------------------------------------------------
# Running a command and judging it
# ----------------------------------------------------------------------------------------------
def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a script: no display (predict.py would open a window), no dataset variable."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("CVPR_DATASET", "DISPLAY", "WAYLAND_DISPLAY", "CVPR_CACHE_DIR")
    }
    environ.update(PYTHONUNBUFFERED="1", **(extra or {}))
    return environ


def python(
    args: Sequence[str], environ: dict[str, str], timeout: int = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    return subprocess.run(python_command(*args), cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


@dataclass
class Signalled:
    returncode: int
    stdout: str
    stderr: str
    sent: bool  # whether the trigger fired before the process ended


def run_and_signal(
    args: Sequence[str], environ: dict[str, str], signum: int, when: Callable[[list[str]], bool], timeout: int = 300
) -> Signalled:
    """Start ``python ARGS``, send it ``signum`` once ``when(stdout lines so far)`` is true, wait for it."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True),  # type: ignore[arg-type]
        threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True),  # type: ignore[arg-type]
    ]
    for reader in readers:
        reader.start()
    sent = False
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
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
    return Signalled(process.returncode, "".join(lines), "".join(errors), sent)


def after_line(prefix: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(line.startswith(prefix) for line in lines)


def once_exists(folder: Path, pattern: str) -> Callable[[list[str]], bool]:
    """True once a file matching ``pattern`` exists anywhere under ``folder`` (hidden ones included)."""
    return lambda _lines: folder.exists() and any(True for _ in folder.rglob(pattern))


def snapshot(roots: Sequence[Path]) -> dict[str, str]:
    """Every path under ``roots``, hidden ones included, with the sha256 of its bytes ("<dir>" for folders)."""
    seen: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            for name in dirnames:
                seen[str(here / name)] = "<link>" if (here / name).is_symlink() else "<dir>"
            for name in filenames:
                path = here / name
                if path.is_symlink():
                    seen[str(path)] = f"<link to {os.readlink(path)}>"
                elif path.is_file():
                    seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    seen[str(path)] = "<special>"
    return seen


def temporaries(roots: Sequence[Path]) -> list[str]:
    found = []
    for root in roots:
        if root.exists():
            for dirpath, dirnames, filenames in os.walk(root):
                found += [str(Path(dirpath) / n) for n in [*dirnames, *filenames] if fnmatch.fnmatch(n, TEMPORARY)]
    return sorted(found)


def satisfies(line: str, needs: Sequence[Need]) -> list[str]:
    """The requirements of ``needs`` that ``line`` misses (empty: it names everything asked for)."""
    missing = []
    for need in needs:
        if isinstance(need, re.Pattern):
            if not need.search(line):
                missing.append(f"/{need.pattern}/")
        elif isinstance(need, tuple):
            if not any(n in line for n in need):
                missing.append(" or ".join(repr(n) for n in need))
        elif need not in line:
            missing.append(repr(need))
    return missing


@dataclass
class Verdict:
    outcome: str  # one of OUTCOMES
    failed: dict[int, str]  # property number -> what went wrong
    line: str  # the line that matters: the error, the warning, or the last one printed

    def message(self, case: Case, args: Sequence[str], rc: int, out: str, err: str) -> str:
        shown = "\n".join(f"  property {n}: {why}" for n, why in sorted(self.failed.items()))
        return (
            f"{case.id} ({self.outcome}):\n{shown}\n  command: python {' '.join(args)}\n  exit status {rc}\n"
            f"  stdout tail: {out[-800:]!r}\n  stderr tail: {err[-1200:]!r}"
        )


def judge(
    case: Case, rc: int, out: str, err: str, before: dict[str, str], after: dict[str, str], temps: list[str], env: Env
) -> Verdict:
    failed: dict[int, str] = {}
    traceback = TRACEBACK in out or TRACEBACK in err
    err_lines = [line.strip() for line in err.splitlines() if line.strip()]
    all_lines = [line.strip() for line in (out + "\n" + err).splitlines() if line.strip()]
    last = err_lines[-1] if err_lines else ""
    shown = last or (all_lines[-1] if all_lines else "")
    succeeded = rc == 0

    if case.expect == "error":
        warning = None
        if succeeded and case.accepted:
            warning = next(
                (line for line in all_lines if "warning" in line.lower() and not satisfies(line, case.names)), None
            )
        if succeeded and warning is None:
            failed[1] = "exit status 0" + (
                f" without a warning line naming {', '.join(satisfies('', case.names))}" if case.accepted else ""
            )
            failed[3] = "no error line"
        if traceback:
            failed[2] = "a Python traceback was printed"
        if warning is not None:
            shown = warning
        elif not succeeded:
            shown = last
            if not last.startswith("Error: "):
                failed[2] = f"stderr's last line does not start with 'Error: ': {last[:200]!r}"
            missing = satisfies(last, case.names)
            bad = [f for f in case.forbid if f in last]
            if missing or bad:
                failed[3] = f"the error line does not name {', '.join(missing)}" + (
                    f" (and talks about {', '.join(bad)})" if bad else ""
                )
    elif case.expect == "success":
        if not succeeded:
            failed[1] = f"exit status {rc} where the command should succeed"
        if traceback:
            failed[2] = "a Python traceback was printed"
    elif case.expect == "interrupted":
        if succeeded:
            failed[1] = "exit status 0 after the signal"
        elif case.signal is not None and rc != 128 + case.signal:
            failed[1] = f"exit status {rc}, not {128 + case.signal}"
        if traceback:
            failed[2] = "a Python traceback was printed"
        naming = next((line for line in all_lines if not satisfies(line, case.names)), None)
        if naming is None:
            failed[3] = f"no line names {', '.join(satisfies('', case.names))}"
        else:
            shown = naming
    else:
        raise AssertionError(f"unknown expect {case.expect!r}")

    changed = [p for p, digest in before.items() if after.get(p) != digest]
    if succeeded:
        rewritten = [env.format(pattern) for pattern in case.may_change]
        changed = [p for p in changed if p in after and not any(fnmatch.fnmatch(p, g) for g in rewritten)]
    new = [p for p in after if p not in before]
    if succeeded and case.expect != "interrupted":
        new = []  # a command that did its work may add files
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

    if traceback:
        outcome = "traceback"
    elif 1 in failed and succeeded and case.expect == "error":
        outcome = "silent"
    elif 4 in failed:
        outcome = "data changed"
    elif failed:
        outcome = "vague"
    else:
        outcome = "one-line"
    return Verdict(outcome, failed, shown)


# ----------------------------------------------------------------------------------------------
# The case's folders
# ----------------------------------------------------------------------------------------------
class Env:
    """The folders of one case: ``case`` (its copies of the dataset and runs, its output folders: all
    snapshotted) and ``cache`` (its CVPR_CACHE_DIR, checked for temporaries). Copies of the shared
    dataset and runs are made on first use, through the ``{ds}``, ``{run}``... placeholders."""

    COPIES: ClassVar[dict[str, str]] = {
        "ds": "tiny_demo",
        "run": "tiny_run",
        "two_run": "two_class_run",
        "moved_run": "moved_run",
    }

    def __init__(self, tmp: Path, request: pytest.FixtureRequest):
        self.case, self.cache, self.request = tmp / "case", tmp / "cache", request
        self.case.mkdir()
        self.cache.mkdir()
        self.environ: dict[str, str] = {}
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
            if name != "ds":
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
            "course": lambda: str(self.shared("course_shaped")),
        }
        for name in self.COPIES:
            values[name] = functools.partial(self.copied, name)
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)]() if m.group(1) in values else m.group(0), text)

    def short(self, path: str) -> str:
        return path.replace(str(self.case) + "/", "").replace(str(self.cache), "CACHE")

    def environment(self) -> dict[str, str]:
        return project_env({"CVPR_CACHE_DIR": str(self.cache), **self.environ})

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

    def small_disk(self, name: str, free: int, size: str = "2m", fill: Callable[[Path], object] | None = None) -> Path:
        """A 2 MB tmpfs holding a student's file that leaves about ``free`` bytes."""
        path = self.mount(name, size)
        if fill is not None:
            fill(path)
        room = shutil.disk_usage(path).free
        assert room > free, f"a {size} tmpfs has only {room} bytes free"
        (path / "filler.bin").write_bytes(b"\0" * (room - free))
        return path

    def unmount(self) -> None:
        for path in reversed(self.mounts):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Env], object] | None  # damages the case's copies, makes its files
    command: tuple[str, ...]  # python ARGS; {ds}, {run}, {case}... are the case's folders
    names: tuple[Need, ...]  # what the error line must name (each: a substring, one of a tuple, a pattern)
    accepted: bool = False  # accepted with a warning: exit 0 and a warning line naming `names` (or an error)
    expect: str = "error"  # error | success (a recovery) | interrupted (a real signal)
    kind: str = ""
    today: str = ""  # the outcome on the code of the day the catalogue was written (not checked)
    right: str = ""  # the right behaviour, in one phrase
    forbid: tuple[str, ...] = ()  # what the error line must not talk about
    allow_new: tuple[str, ...] = ()  # paths (globs, with placeholders) that may appear even though it failed
    may_change: tuple[str, ...] = ()  # paths (globs) a command that succeeds rewrites (a resumed run's files)
    signal: int | None = None  # expect="interrupted": the signal sent
    when: Callable[[Env], Callable[[list[str]], bool]] | None = None  # ... once this is true
    timeout: int = 600
    cwd: str = ""  # the folder the command runs in (placeholders allowed); the project's folder when empty


def train(*extra: str, cuts: bool = True, out: str = "{case}/out") -> tuple[str, ...]:
    return ("train.py", "--dataset", "{ds}", "--output-dir", out, *TINY, *(CUTS if cuts else ()), *extra)


def rewrite(label: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Env], None]:
    """Edit annotations/<label>.csv of the case's dataset line by line."""

    def setup(env: Env) -> None:
        path = env.ds / "annotations" / f"{label}.csv"
        path.write_text("\n".join(edit(path.read_text().splitlines())))

    return setup


def replace_line(label: str, number: int, text: str) -> Callable[[Env], None]:
    return rewrite(label, lambda lines: [text if i == number else line for i, line in enumerate(lines, start=1)])


def append_line(label: str, text: str) -> Callable[[Env], None]:
    return rewrite(label, lambda lines: [*lines, text])


def write(relative: str, content: bytes | str | Callable[[Env], bytes]) -> Callable[[Env], None]:
    """Write a file under the case folder (``relative`` may use placeholders)."""

    def setup(env: Env) -> None:
        path = Path(env.format(relative))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content(env) if callable(content) else content
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def steps(*setups: Callable[[Env], None]) -> Callable[[Env], None]:
    def setup(env: Env) -> None:
        for step in setups:
            step(env)

    return setup


def remove(relative: str) -> Callable[[Env], None]:
    def setup(env: Env) -> None:
        path = Path(env.format(relative))
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return setup


def other_classes(env: Env, name: str, drop: str | None = None, add: str | None = None) -> None:
    """A copy of the demo set with the class ``drop`` removed, or a class ``add`` (airplane's images, relabelled)."""
    other = env.case / name
    shutil.copytree(env.shared("tiny_demo"), other)
    if drop:
        shutil.rmtree(other / "images" / drop)
        (other / "annotations" / f"{drop}.csv").unlink()
    if add:
        shutil.copytree(other / "images" / "airplane", other / "images" / add)
        rows = (other / "annotations" / "airplane.csv").read_text().splitlines()
        (other / "annotations" / f"{add}.csv").write_text("\n".join(r.rsplit(",", 1)[0] + f",{add}" for r in rows))


def no_annotation_files(env: Env) -> None:
    for path in (env.ds / "annotations").glob("*.csv"):
        path.unlink()


def first_jpeg(env: Env, label: str = "face", number: int = 3) -> Path:
    return env.ds / "images" / label / f"image_{number:04d}.jpg"


def truncate_jpeg(env: Env) -> None:
    path = first_jpeg(env)
    data = path.read_bytes()
    path.write_bytes(data[: int(0.6 * len(data))])


def every_image_unreadable(env: Env) -> None:
    for image in (env.ds / "images").rglob("*.jpg"):
        image.write_text("not a picture: the copy was interrupted")


def half_copied(env: Env) -> None:
    for image in sorted((env.ds / "images" / "motorcycle").glob("*.jpg"))[6:]:
        image.unlink()


def edit_checkpoint(env: Env) -> None:
    path = env.run / "best.pth"
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert data["model"]["name"] == "simple"
    data["model"]["name"] = "deeper"
    torch.save(data, path)


def truncate_checkpoint(env: Env) -> None:
    path = env.run / "best.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bare_state_dict(env: Env) -> None:
    data = torch.load(env.run / "best.pth", map_location="cpu", weights_only=True)
    torch.save(data["state_dict"], env.case / "weights_only.pth")


def splits_without_test(env: Env) -> None:
    folder = env.case / "my_splits"
    folder.mkdir()
    for name in ("training_data.csv", "val_data.csv"):
        shutil.copy(env.run / name, folder / name)


def web_images_copy(env: Env) -> None:
    shutil.copytree(ROOT / "web_images", env.case / "web_images")


def csv_named_test(env: Env) -> None:
    shutil.copy(env.run / "val_data.csv", env.case / "test.csv")


def two_csvs_same_name(env: Env) -> None:
    for folder, split in (("a", "val_data.csv"), ("b", "test_data.csv")):
        (env.case / folder).mkdir()
        shutil.copy(env.run / split, env.case / folder / "rows.csv")


def predict_csv_missing_image(env: Env) -> None:
    rows = (env.run / "test_data.csv").read_text().splitlines()
    (env.case / "rows.csv").write_text("\n".join([*rows, "image_0099.jpg,10,10,50,50,face"]))


def run_without_best(env: Env) -> None:
    (env.run / "best.pth").unlink()


def copy_run_into(folder: Path, env: Env) -> None:
    shutil.copytree(env.run, folder / "locked_run")


def readonly_run(env: Env) -> None:
    env.readonly("ro", lambda path: copy_run_into(path, env))


def readonly_folder(name: str) -> Callable[[Env], object]:
    return lambda env: env.readonly(name, lambda path: (path / "notes.md").write_text("my notes\n"))


def checkpoint_size(env: Env, name: str) -> int:
    return (env.shared("tiny_run") / name).stat().st_size


def disk_full_at_start(env: Env) -> None:
    # the epoch-0 last.pth (no optimizer moments yet) is about the size of best.pth: room for half of it
    env.small_disk("full_disk", free=checkpoint_size(env, "best.pth") // 2)


def disk_full_in_epoch(env: Env) -> None:
    # room for the start (split files, config.json, run.json, an epoch-0 last.pth about the size of best.pth),
    # not for epoch 1's best.pth
    free = checkpoint_size(env, "best.pth") * 3 // 2 + 48 * 1024
    env.small_disk("full_disk", free=free)


def full_out(free: int) -> Callable[[Env], object]:
    return lambda env: env.small_disk("full_out", free=free)


def full_cache(env: Env) -> None:
    env.small_disk("full_cache", free=64 * 1024)
    env.environ["CVPR_CACHE_DIR"] = str(env.case / "full_cache")


def readonly_cache(env: Env) -> None:
    env.readonly("locked_cache", lambda path: None)
    env.environ["CVPR_CACHE_DIR"] = str(env.case / "locked_cache")


def cache_is_a_file(env: Env) -> None:
    (env.case / "cache_file").write_text("not a folder\n")
    env.environ["CVPR_CACHE_DIR"] = str(env.case / "cache_file")


def missing_dataset_variable(env: Env) -> None:
    env.environ["CVPR_DATASET"] = str(env.case / "moved_dataset")


TINY_RUN = "--epochs 1 --image-size 64 --batch-size 8 --cut-val 0.6 --cut-test 0.7"
RUN = f'[[run]]\nname = "tiny"\nargs = "{TINY_RUN}"\n\n'
SECTION = '[[section]]\nid = "Q3"\ntitle = "tiny"\nkind = "best-vs-last"\nruns = ["tiny"]\n'
PLAN = RUN + SECTION


def plan(text: str) -> Callable[[Env], None]:
    return write("{case}/plan.toml", text)


PRACTICAL = ("compare.py", "--practical", "--plan", "{case}/plan.toml", "--output-dir", "{case}/runs")
DRY_RUN = (*PRACTICAL, "--dry-run", "--dataset", "{ds}")


def kill_decode(env: Env) -> None:
    """SIGKILL of train.py while it decodes the course-shaped set into a fresh cache: a stale temporary stays."""
    args = ["train.py", "--dataset", str(env.shared("course_shaped")), "--output-dir", str(env.case / "out")]
    killed = run_and_signal(
        [*args, *TINY, "--workers", "1"], env.environment(), signal.SIGKILL, once_exists(env.cache, ".*.tmp")
    )
    assert killed.sent and killed.returncode == -signal.SIGKILL, f"could not kill the decode: {killed.stderr[-500:]}"


def kill_training(env: Env) -> None:
    args = ["train.py", "--dataset", str(env.ds), "--output-dir", str(env.case / "out"), *TINY, *CUTS]
    killed = run_and_signal([*args, "--epochs", "50"], env.environment(), signal.SIGKILL, after_line("epoch   1/50"))
    assert killed.sent and killed.returncode == -signal.SIGKILL, f"could not kill the training: {killed.stderr[-500:]}"


def kill_demo(env: Env) -> None:
    rows = [a for name in ("training_data", "val_data", "test_data") for a in ("--rows", f"{COURSE_SPLITS}/{name}.csv")]
    killed = run_and_signal(
        ["-m", "model.data.demo", str(env.case / "gen"), *rows],
        env.environment(),
        signal.SIGKILL,
        once_exists(env.case, "*.jpg"),
    )
    assert killed.sent and killed.returncode == -signal.SIGKILL, f"could not kill the generator: {killed.stderr[-500:]}"


COURSE_ROWS = tuple(
    a for name in ("training_data", "val_data", "test_data") for a in ("--rows", f"{COURSE_SPLITS}/{name}.csv")
)
COURSE_TRAIN = ("train.py", "--dataset", "{course}", "--output-dir", "{case}/out", *TINY, "--workers", "1")


CASES = [
    # ---- write failures -------------------------------------------------------------------------
    Case(
        "train-output-dir-read-only",
        readonly_folder("locked_out"),
        train(out="{case}/locked_out"),
        ("locked_out",),
        today="traceback",
        kind="write",
        right="one line naming the read-only folder, before any decode",
    ),
    Case(
        "train-resume-in-read-only-run",
        readonly_run,
        ("train.py", "--resume", "{case}/ro/locked_run/last.pth", "--epochs", "2"),
        ("locked_run",),
        today="traceback",
        kind="write",
        right="one line naming the read-only run folder, before any epoch",
    ),
    Case(
        "eval-out-read-only",
        readonly_folder("locked_out"),
        ("eval.py", "{run}/best.pth", "--split", "test", "--out", "{case}/locked_out"),
        ("locked_out",),
        today="traceback",
        kind="write",
        right="one line naming the read-only --out folder",
    ),
    Case(
        "eval-beside-checkpoint-read-only",
        readonly_run,
        ("eval.py", "{case}/ro/locked_run/best.pth", "--split", "test"),
        ("locked_run",),
        today="traceback",
        kind="write",
        right="one line naming the read-only folder and suggesting --out",
    ),
    Case(
        "compare-out-read-only",
        readonly_folder("locked_out"),
        ("compare.py", "{run}", "--out", "{case}/locked_out"),
        ("locked_out",),
        today="traceback",
        kind="write",
        right="one line naming the read-only --out folder, before evaluating",
    ),
    Case(
        "predict-save-read-only",
        readonly_folder("locked_save"),
        ("predict.py", "--model", "{run}/best.pth", "--save", "{case}/locked_save", "{run}/test_data.csv"),
        ("locked_save",),
        today="traceback",
        kind="write",
        right="one line naming the read-only --save folder",
    ),
    Case(
        "cache-dir-is-a-file",
        cache_is_a_file,
        train(),
        ("cache_file",),
        accepted=True,
        today="traceback",
        kind="write",
        right="accepted with a warning naming CVPR_CACHE_DIR (decode in memory), or one line naming it",
    ),
    Case(
        "cache-dir-read-only",
        readonly_cache,
        train(),
        ("locked_cache",),
        accepted=True,
        today="traceback",
        kind="write",
        right="accepted with a warning naming the read-only cache folder, or one line naming it",
    ),
    Case(
        "cache-disk-full",
        full_cache,
        train(),
        ("full_cache",),
        accepted=True,
        today="data changed",
        kind="write",
        right="accepted with a warning naming the full cache folder, or one line naming it",
    ),
    Case(
        "train-disk-full-at-start",
        disk_full_at_start,
        train(out="{case}/full_disk/run"),
        ("full_disk",),
        today="traceback",
        kind="write",
        right="one line naming the full folder; no half-made run folder left",
    ),
    Case(
        "train-disk-full-in-epoch-1",
        disk_full_in_epoch,
        train(out="{case}/full_disk/run"),
        ("full_disk",),
        today="traceback",
        kind="write",
        allow_new=("{case}/full_disk/run", "{case}/full_disk/run/*"),  # the start's resumable files may stay
        right="one line naming the full folder; the epoch-0 last.pth kept, no temporary",
    ),
    Case(
        "eval-out-disk-full",
        full_out(16 * 1024),
        ("eval.py", "{run}/best.pth", "--split", "test", "--out", "{case}/full_out"),
        ("full_out",),
        today="traceback",
        kind="write",
        right="one line naming the full --out folder; no partial set of files",
    ),
    Case(
        "compare-out-disk-full",
        full_out(64 * 1024),
        ("compare.py", "{run}", "--out", "{case}/full_out"),
        ("full_out",),
        today="traceback",
        kind="write",
        right="one line naming the full --out folder; no partial report",
    ),
    Case(
        "predict-save-disk-full",
        full_out(100 * 1024),
        ("predict.py", "--model", "{run}/best.pth", "--save", "{case}/full_out", "{run}/test_data.csv"),
        ("full_out",),
        today="traceback",
        kind="write",
        right="one line naming the full --save folder",
    ),
    # ---- plausible mistakes -----------------------------------------------------------------------
    Case(
        "resume-on-dataset-with-a-class-fewer",
        lambda env: other_classes(env, "fewer_classes", drop="motorcycle"),
        ("train.py", "--resume", "{run}/last.pth", "--dataset", "{case}/fewer_classes", "--epochs", "2"),
        (("--dataset", "fewer_classes"), CLASSES),
        today="vague",
        kind="mistake",
        right="one line: the dataset's classes differ from the run's (name both)",
    ),
    Case(
        "resume-on-dataset-with-a-class-more",
        lambda env: other_classes(env, "more_classes", add="bicycle"),
        ("train.py", "--resume", "{run}/last.pth", "--dataset", "{case}/more_classes", "--epochs", "2"),
        (("--dataset", "more_classes"), CLASSES),
        today="traceback",
        kind="mistake",
        right="one line: the dataset's classes differ from the run's (name both)",
    ),
    Case(
        "resnet-weights-of-a-simple-run",
        None,
        train("--model", "resnet", "--weights", "{run}/best.pth"),
        ("--weights",),
        today="traceback",
        kind="mistake",
        right="one line: --weights is a toolkit checkpoint, not ResNet-18 ImageNet weights",
    ),
    Case(
        "resnet-no-pretrained-with-weights",
        None,
        train("--model", "resnet", "--no-pretrained", "--weights", "{run}/best.pth"),
        ("--weights",),
        today="silent",
        kind="mistake",
        right="one line: --weights does not go with --no-pretrained",
    ),
    Case(
        "resnet-no-pretrained-frozen",
        None,
        train("--model", "resnet", "--no-pretrained", "--freeze"),
        ("--freeze",),
        accepted=True,
        today="silent",
        kind="mistake",
        right="accepted with a warning: a frozen random backbone leaves only the heads to learn (a baseline some want)",
    ),
    Case(
        "eval-checkpoint-model-name-edited",
        edit_checkpoint,
        ("eval.py", "{run}/best.pth", "--split", "test"),
        ("best.pth",),
        today="traceback",
        kind="mistake",
        right="one line: the weights do not fit the network the checkpoint names",
    ),
    Case(
        "eval-truncated-checkpoint",
        truncate_checkpoint,
        ("eval.py", "{run}/best.pth", "--split", "test"),
        ("best.pth",),
        today="one-line",
        kind="mistake",
        right="one line: the checkpoint is damaged or incomplete",
    ),
    Case(
        "eval-not-a-checkpoint",
        None,
        ("eval.py", "{run}/config.json", "--split", "test"),
        ("config.json",),
        today="one-line",
        kind="mistake",
        right="one line: not a checkpoint",
    ),
    Case(
        "eval-bare-state-dict",
        bare_state_dict,
        ("eval.py", "{case}/weights_only.pth", "--split", "test"),
        ("weights_only.pth",),
        today="one-line",
        kind="mistake",
        right="one line: a bare state dict, not a toolkit checkpoint",
    ),
    Case(
        "predict-missing-model",
        None,
        ("predict.py", "--model", "{case}/no_such_model.pth", "--save", "{case}/pred", "{ds}/images/face"),
        ("no_such_model.pth",),
        today="one-line",
        kind="mistake",
        right="one line: no such checkpoint",
    ),
    Case(
        "resume-of-best-pth",
        None,
        ("train.py", "--resume", "{run}/best.pth", "--epochs", "2"),
        ("best.pth",),
        today="one-line",
        kind="mistake",
        right="one line: resume from last.pth",
    ),
    Case(
        "resume-with-lr",
        None,
        ("train.py", "--resume", "{run}/last.pth", "--epochs", "2", "--lr", "0.01"),
        ("--lr",),
        today="one-line",
        kind="mistake",
        right="one line: --lr cannot change on --resume",
    ),
    Case(
        "config-json-list",
        write("{case}/list.json", "[0.001, 8]"),
        train("--config", "{case}/list.json"),
        ("list.json",),
        today="one-line",
        kind="mistake",
        right="one line: --config needs a JSON object",
    ),
    Case(
        "config-invalid-json",
        write("{case}/broken.json", '{"lr": 0.001,'),
        train("--config", "{case}/broken.json"),
        ("broken.json",),
        today="one-line",
        kind="mistake",
        right="one line: not valid JSON",
    ),
    Case(
        "config-unknown-key",
        write("{case}/typo.json", '{"lrr": 0.001}'),
        train("--config", "{case}/typo.json"),
        ("lrr",),
        today="one-line",
        kind="mistake",
        right="one line naming the unknown key",
    ),
    Case(
        "config-wrong-type",
        write("{case}/typed.json", '{"seed": "zero"}'),  # an option the command line does not give
        train("--config", "{case}/typed.json"),
        ("seed",),
        today="one-line",
        kind="mistake",
        right="one line naming the option and the file",
    ),
    Case(
        "splits-folder-missing-test-file",
        splits_without_test,
        train("--splits", "{case}/my_splits", cuts=False),
        ("test_data.csv",),
        today="one-line",
        kind="mistake",
        right="one line naming the missing split file",
    ),
    Case(
        "name-escaping-output-dir",
        None,
        train("--name", "../escaped"),
        ("--name",),
        today="silent",
        kind="mistake",
        right="one line: --name is a folder name, not a path",
    ),
    Case(
        "name-absolute-path",
        None,
        train("--name", "{case}/elsewhere"),
        ("--name",),
        today="silent",
        kind="mistake",
        right="one line: --name is a folder name, not a path",
    ),
    Case(
        "output-dir-dataset-images",
        None,
        train(out="{ds}/images"),
        ("--output-dir", "ds/images"),
        today="silent",
        kind="mistake",
        right="one line: the folder is inside a dataset",
    ),
    Case(
        "output-dir-dataset-annotations",
        None,
        train(out="{ds}/annotations"),
        ("--output-dir", "ds/annotations"),
        today="silent",
        kind="mistake",
        right="one line: the folder is inside a dataset (split files would become annotation files)",
    ),
    Case(
        "output-dir-web-images-images",
        web_images_copy,
        train(out="{case}/web_images/images"),
        ("--output-dir", "web_images/images"),
        today="silent",
        kind="mistake",
        right="one line: the folder holds internet images",
    ),
    Case(
        "output-dir-dataset-itself",
        None,
        train(out="{ds}"),
        ("--output-dir", "ds"),
        today="one-line",
        kind="mistake",
        right="one line: the folder holds a dataset",
    ),
    Case(
        "output-dir-is-a-file",
        write("{case}/results.txt", "my results\n"),
        train(out="{case}/results.txt"),
        ("results.txt",),
        today="one-line",
        kind="mistake",
        right="one line: --output-dir is a file",
    ),
    Case(
        "cut-val-above-cut-test",
        None,
        train("--cut-val", "0.9", "--cut-test", "0.5", cuts=False),
        ("--cut-val",),
        today="one-line",
        kind="mistake",
        right="one line: --cut-val must be below --cut-test",
    ),
    Case(
        "image-size-too-small-for-simple",
        None,
        train("--image-size", "40"),
        ("--image-size",),
        today="one-line",
        kind="mistake",
        right="one line naming the smallest size",
    ),
    Case(
        "pretrained-for-simple",
        None,
        train("--pretrained"),
        ("--pretrained",),
        today="one-line",
        kind="mistake",
        right="one line: --pretrained applies to resnet only",
    ),
    Case(
        "eval-split-test-and-csv-named-test",
        csv_named_test,
        ("eval.py", "{run}/best.pth", "--split", "test", "--csv", "{case}/test.csv"),
        ("test.csv",),
        today="silent",
        kind="mistake",
        right="one line: two sets named test (or both evaluated under distinct names)",
    ),
    Case(
        "eval-two-csvs-of-one-name",
        two_csvs_same_name,
        ("eval.py", "{run}/best.pth", "--csv", "{case}/a/rows.csv", "--csv", "{case}/b/rows.csv"),
        ("rows.csv",),
        today="silent",
        kind="mistake",
        right="one line: two --csv files of the same name (or both evaluated under distinct names)",
    ),
    Case(
        "eval-csv-of-unknown-label",
        write("{case}/bikes.csv", "image_0001.jpg,10,10,50,50,bicycle"),
        ("eval.py", "{run}/best.pth", "--csv", "{case}/bikes.csv", "--dataset", "{ds}"),
        ("bikes.csv",),
        today="one-line",
        kind="mistake",
        right="one line naming the row and the unknown label",
    ),
    Case(
        "eval-recorded-split-file-deleted",
        remove("{run}/test_data.csv"),
        ("eval.py", "{run}/best.pth", "--split", "test"),
        ("test_data.csv",),
        today="one-line",
        kind="mistake",
        right="one line naming the missing split file",
    ),
    Case(
        "predict-empty-folder",
        lambda env: (env.case / "empty_folder").mkdir(),
        ("predict.py", "--model", "{run}/best.pth", "--save", "{case}/pred", "{case}/empty_folder"),
        ("empty_folder",),
        today="one-line",
        kind="mistake",
        right="one line: no image found in the folder",
    ),
    Case(
        "predict-csv-naming-a-missing-image",
        predict_csv_missing_image,
        ("predict.py", "--model", "{run}/best.pth", "--save", "{case}/pred", "{case}/rows.csv"),
        ("image_0099.jpg",),
        accepted=True,
        today="one-line",
        kind="mistake",
        right="accepted with a warning naming the missing image (it is skipped)",
    ),
    Case(
        "compare-run-without-best",
        run_without_best,
        ("compare.py", "{run}", "--out", "{case}/report"),
        ("best.pth",),
        today="one-line",
        kind="mistake",
        right="one line: the run folder has no best.pth",
    ),
    Case(
        "compare-runs-of-different-classes",
        None,
        ("compare.py", "{run}", "{two_run}", "--out", "{case}/report"),
        ("two_run",),
        today="one-line",
        kind="mistake",
        right="one line: the runs have different classes (name them)",
    ),
    # ---- non-finite and out-of-range numbers --------------------------------------------------------
    Case(
        "lr-nan",
        None,
        train("--lr", "nan"),
        ("--lr",),
        today="traceback",
        kind="number",
        right="one line: --lr must be finite",
    ),
    Case(
        "lr-inf",
        None,
        train("--lr", "inf"),
        ("--lr",),
        today="data changed",
        kind="number",
        right="one line: --lr must be finite",
    ),
    Case(
        "cut-val-nan",
        None,
        train("--cut-val", "nan", "--cut-test", "0.7", cuts=False),
        ("--cut-val",),
        today="traceback",
        kind="number",
        right="one line: --cut-val must be a number in (0, 1)",
    ),
    Case(
        "cut-test-nan",
        None,
        train("--cut-val", "0.6", "--cut-test", "nan", cuts=False),
        ("--cut-test",),
        today="traceback",
        kind="number",
        right="one line: --cut-test must be a number in (0, 1]",
    ),
    Case(
        "dropout-nan",
        None,
        train("--dropout", "nan"),
        ("--dropout",),
        today="traceback",
        kind="number",
        right="one line: --dropout must be in [0, 1)",
    ),
    Case(
        "box-weight-negative",
        None,
        train("--box-weight", "-1"),
        ("--box-weight",),
        today="one-line",
        kind="number",
        right="one line: --box-weight must be >= 0",
    ),
    Case(
        "box-weight-inf",
        None,
        train("--box-weight", "inf"),
        ("--box-weight",),
        today="data changed",
        kind="number",
        right="one line: --box-weight must be finite, before anything is written",
    ),
    Case(
        "label-weight-nan",
        None,
        train("--label-weight", "nan"),
        ("--label-weight",),
        today="data changed",
        kind="number",
        right="one line: --label-weight must be finite, before anything is written",
    ),
    Case(
        "weight-decay-inf",
        None,
        train("--weight-decay", "inf"),
        ("--weight-decay",),
        today="data changed",
        kind="number",
        right="one line: --weight-decay must be finite, before anything is written",
    ),
    Case(
        "train-fraction-nan",
        None,
        train("--train-fraction", "nan"),
        ("--train-fraction",),
        today="traceback",
        kind="number",
        right="one line: --train-fraction must be in (0, 1]",
    ),
    Case(
        "config-lr-nan",
        write("{case}/nan.json", '{"lr": NaN}'),
        train("--config", "{case}/nan.json"),
        (("lr", "nan.json"),),
        today="traceback",
        kind="number",
        right="one line: the config's lr must be finite",
    ),
    Case(
        "eval-iou-threshold-nan",
        None,
        ("eval.py", "{run}/best.pth", "--split", "test", "--iou-threshold", "nan"),
        ("--iou-threshold",),
        today="silent",
        kind="number",
        right="one line: --iou-threshold must be in [0, 1]",
    ),
    Case(
        "predict-iou-threshold-nan",
        None,
        (
            "predict.py",
            "--model",
            "{run}/best.pth",
            "--iou-threshold",
            "nan",
            "--save",
            "{case}/pred",
            "{run}/test_data.csv",
        ),
        ("--iou-threshold",),
        today="silent",
        kind="number",
        right="one line: --iou-threshold must be in [0, 1]",
    ),
    Case(
        "plan-args-unclosed-quote",
        plan(RUN.replace(TINY_RUN, TINY_RUN + " --lr '0.001") + SECTION),
        DRY_RUN,
        ("plan.toml", "tiny"),
        today="traceback",
        kind="number",
        right="one line naming the plan, the run and the unclosed quote",
    ),
    Case(
        "plan-args-lr-nan",
        plan(RUN.replace(TINY_RUN, TINY_RUN + " --lr nan") + SECTION),
        DRY_RUN,
        ("plan.toml", "--lr"),
        today="silent",
        kind="number",
        right="one line naming the plan, the run and --lr",
    ),
    Case(
        "slurm-resources-unclosed-quote",
        plan(PLAN),
        (*PRACTICAL, "--slurm", "--resources", '--mem="12G', "--dataset", "{ds}", "--out", "{case}/report"),
        ("--resources",),
        today="traceback",
        kind="number",
        right="one line naming --resources, before anything is written or submitted",
    ),
    # ---- dataset faults ------------------------------------------------------------------------------
    Case(
        "row-with-5-fields",
        replace_line("face", 3, "image_0003.jpg,133,6,240,face"),
        train(),
        ("face.csv:3",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:3",
    ),
    Case(
        "row-non-numeric-coordinate",
        replace_line("face", 3, "image_0003.jpg,133,six,240,142,face"),
        train(),
        ("face.csv:3",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:3",
    ),
    Case(
        "row-nan-coordinates",
        replace_line("face", 3, "image_0003.jpg,nan,nan,nan,nan,face"),
        train(),
        ("face.csv:3",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:3",
    ),
    Case(
        "row-inverted-box",
        replace_line("face", 3, "image_0003.jpg,240,142,133,6,face"),
        train(),
        ("face.csv:3",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:3",
    ),
    Case(
        "row-box-far-outside-image",
        replace_line("face", 3, "image_0003.jpg,133,6,5000,5000,face"),
        train(),
        ("face.csv:3",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:3",
    ),
    Case(
        "row-naming-a-missing-image",
        append_line("face", "image_0099.jpg,10,10,50,50,face"),
        train(),
        ("face.csv:7",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:7 and the missing image",
    ),
    Case(
        "label-without-images-folder",
        write("{ds}/annotations/bicycle.csv", "image_0001.jpg,10,10,50,50,bicycle"),
        train(),
        ("bicycle.csv:1",),
        today="one-line",
        kind="dataset",
        right="one line naming bicycle.csv:1 and the missing images/bicycle/",
    ),
    Case(
        "label-case-differs-from-folder",
        rewrite("face", lambda lines: [line.replace(",face", ",Face") for line in lines]),
        train(),
        ("face.csv:1",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:1 and the unknown label Face",
    ),
    Case(
        "duplicated-row",
        rewrite("face", lambda lines: [*lines, lines[0]]),
        train(),
        ("face.csv:7",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:7 and its first occurrence",
    ),
    Case(
        "header-row",
        rewrite("face", lambda lines: ["filename,startX,startY,endX,endY,label", *lines]),
        train(),
        ("face.csv:1",),
        today="one-line",
        kind="dataset",
        right="one line naming face.csv:1 (a header row)",
    ),
    Case(
        "empty-annotations-folder",
        no_annotation_files,
        train(),
        ("annotations",),
        today="one-line",
        kind="dataset",
        right="one line: no annotation file in annotations/",
    ),
    Case(
        "annotation-csv-binary-garbage",
        write("{ds}/annotations/face.csv", bytes(range(256)) * 8),
        train(),
        ("face.csv",),
        today="one-line",
        kind="dataset",
        right="one line: face.csv is not a text CSV file",
    ),
    Case(
        "filename-dotdot-etc-passwd",
        append_line("face", "../../etc/passwd,1,1,20,20,face"),
        train(),
        ("face.csv:7",),
        today="one-line",
        kind="dataset",
        right="one line: face.csv:7 names a path, not a file name",
    ),
    Case(
        "filename-absolute-etc-passwd",
        append_line("face", "/etc/passwd,1,1,20,20,face"),
        train(),
        ("face.csv:7",),
        today="one-line",
        kind="dataset",
        right="one line: face.csv:7 names a path, not a file name",
    ),
    Case(
        "filename-sub-dir",
        append_line("face", "sub/dir.jpg,1,1,20,20,face"),
        train(),
        ("face.csv:7",),
        today="one-line",
        kind="dataset",
        right="one line: face.csv:7 names a path, not a file name",
    ),
    Case(
        "filename-into-another-class-folder",
        append_line("face", "../airplane/image_0001.jpg,1,1,20,20,face"),
        train(),
        ("face.csv:7",),
        today="silent",
        kind="dataset",
        right="one line: face.csv:7 names a path (an airplane image trained as a face)",
    ),
    Case(
        "image-that-is-text",
        write("{ds}/images/face/image_0003.jpg", "<html>404 Not Found</html>\n"),
        train(),
        ("image_0003.jpg",),
        today="one-line",
        kind="dataset",
        right="one line naming the unreadable image and its row",
    ),
    Case(
        "image-zero-bytes",
        write("{ds}/images/face/image_0003.jpg", b""),
        train(),
        ("image_0003.jpg",),
        today="one-line",
        kind="dataset",
        right="one line naming the empty image and its row",
    ),
    Case(
        "image-truncated-jpeg",
        truncate_jpeg,
        train(),
        ("image_0003.jpg",),
        accepted=True,
        today="silent",
        kind="dataset",
        right="one line naming the truncated image (or accepted with a warning naming it)",
    ),
    Case(
        "annotation-file-empty-with-images",
        write("{ds}/annotations/face.csv", b""),
        train(),
        ("face.csv",),
        accepted=True,
        today="silent",
        kind="dataset",
        right="a warning (or an error) naming face.csv: images/face/ holds images but no row",
    ),
    Case(
        "every-image-unreadable-skip-bad-rows",
        every_image_unreadable,
        train("--skip-bad-rows"),
        (re.compile(r"(?i)\bno\b.{0,40}\btrain(ing)?\b.{0,20}\b(image|row)s?\b|\btrain(ing)? (split|set) is empty"),),
        forbid=("--lr",),
        today="data changed",
        kind="dataset",
        right="one line: no training image is left after skipping the bad rows",
    ),
    Case(
        "half-copied-images-folder",
        half_copied,
        train(),
        ("motorcycle.csv:",),
        today="one-line",
        kind="dataset",
        right="one line naming the first missing image (and how many are missing)",
    ),
    Case(
        "no-images-folder",
        remove("{ds}/images"),
        train(),
        ("images",),
        today="one-line",
        kind="dataset",
        right="one line: the dataset has no images/ folder",
    ),
    Case(
        "dataset-missing",
        None,
        ("train.py", "--dataset", "{case}/no_such_dataset", "--output-dir", "{case}/out", *TINY, *CUTS),
        ("--dataset",),
        today="one-line",
        kind="dataset",
        right="one line: no dataset there",
    ),
    Case(
        "dataset-variable-missing-folder",
        missing_dataset_variable,
        ("train.py", "--output-dir", "{case}/out", *TINY, *CUTS),
        ("CVPR_DATASET",),
        today="one-line",
        kind="dataset",
        right="one line naming $CVPR_DATASET",
    ),
    Case(
        "eval-after-dataset-moved",
        None,
        ("eval.py", "{moved_run}/best.pth", "--split", "test"),
        ("--dataset",),
        today="vague",
        kind="dataset",
        right="one line: the training dataset is no longer at PATH; pass --dataset",
    ),
    Case(
        "predict-after-dataset-moved",
        None,
        ("predict.py", "--model", "{moved_run}/best.pth", "--save", "{case}/pred", "{moved_run}/test_data.csv"),
        ("--dataset",),
        today="silent",
        kind="dataset",
        right="one line: the training dataset is no longer at PATH; pass --dataset",
    ),
    Case(
        "compare-after-dataset-moved",
        None,
        ("compare.py", "{moved_run}", "--out", "{case}/report"),
        ("--dataset",),
        today="vague",
        kind="dataset",
        right="one line: the training dataset is no longer at PATH; pass --dataset",
    ),
    Case(
        "eval-dataset-missing",
        None,
        ("eval.py", "{run}/best.pth", "--split", "test", "--dataset", "{case}/no_such_dataset"),
        ("--dataset",),
        today="one-line",
        kind="dataset",
        right="one line: no dataset there",
    ),
    # ---- plan faults (compare.py --practical --plan FILE --dry-run) ------------------------------------
    Case(
        "plan-not-toml",
        plan("this is [not toml\n"),
        DRY_RUN,
        ("plan.toml",),
        today="one-line",
        kind="plan",
        right="one line: not valid TOML, with the line",
    ),
    Case(
        "plan-empty-file",
        plan(""),
        DRY_RUN,
        ("plan.toml",),
        today="silent",
        kind="plan",
        right="one line: the plan has no run and no section",
    ),
    Case(
        "plan-run-key-typo",
        plan(RUN.replace("args =", "argz =") + SECTION),
        DRY_RUN,
        ("argz", "args"),
        today="silent",
        kind="plan",
        right="one line: unknown key argz in run tiny (did you mean args?)",
    ),
    Case(
        "plan-section-key-typo",
        plan(PLAN.replace("runs =", "run =")),
        DRY_RUN,
        ("runs", "Q3"),
        today="silent",
        kind="plan",
        right="one line: unknown key run in section Q3 (did you mean runs?)",
    ),
    Case(
        "plan-quick-key-typo",
        plan("[quick]\nimage_sise = 32\n\n" + PLAN),
        (*DRY_RUN, "--quick"),
        ("image_sise",),
        today="silent",
        kind="plan",
        right="one line: unknown key image_sise in [quick] (did you mean image_size?)",
    ),
    Case(
        "plan-unknown-section-kind",
        plan(PLAN.replace('"best-vs-last"', '"best-vs-lastt"')),
        DRY_RUN,
        ("best-vs-lastt",),
        today="one-line",
        kind="plan",
        right="one line naming the unknown kind and the valid ones",
    ),
    Case(
        "plan-section-names-missing-run",
        plan(PLAN.replace('runs = ["tiny"]', 'runs = ["tiny", "tinyy"]')),
        DRY_RUN,
        ("tinyy",),
        today="one-line",
        kind="plan",
        right="one line naming the section and the missing run",
    ),
    Case(
        "plan-duplicate-run-name",
        plan(RUN + RUN + SECTION),
        DRY_RUN,
        ("tiny",),
        today="one-line",
        kind="plan",
        right="one line naming the duplicated run",
    ),
    Case(
        "plan-run-name-with-slash",
        plan(PLAN.replace('"tiny"', '"part1/tiny"')),
        DRY_RUN,
        ("part1/tiny",),
        today="one-line",
        kind="plan",
        right="one line: a run name is a folder name",
    ),
    Case(
        "plan-args-not-a-string",
        plan(RUN.replace(f'"{TINY_RUN}"', '["--epochs", "1"]') + SECTION),
        DRY_RUN,
        ("args",),
        today="traceback",
        kind="plan",
        right="one line: args is a string of train.py options",
    ),
    Case(
        "plan-unknown-table",
        plan("[defaultz]\nargs = ''\n\n" + PLAN),
        DRY_RUN,
        ("defaultz",),
        today="one-line",
        kind="plan",
        right="one line naming the unknown table",
    ),
    Case(
        "plan-only-names-no-section",
        plan(PLAN),
        (*DRY_RUN, "--only", "Q99"),
        ("Q99",),
        today="one-line",
        kind="plan",
        right="one line naming --only's unknown section and the sections there are",
    ),
    Case(
        "plan-file-missing",
        None,
        DRY_RUN,
        ("plan.toml",),
        today="one-line",
        kind="plan",
        right="one line: no such plan file",
    ),
    # ---- interrupts and kills ------------------------------------------------------------------------
    Case(
        "restart-after-sigkill-in-decode",
        kill_decode,
        COURSE_TRAIN,
        (),
        expect="success",
        today="data changed",
        kind="signal",
        right="the second start succeeds and removes the killed run's stale cache temporary",
        timeout=900,
    ),
    Case(
        "sigint-during-decode",
        None,
        COURSE_TRAIN,
        ("SIGINT",),
        expect="interrupted",
        signal=signal.SIGINT,
        when=lambda env: once_exists(env.cache, ".*.tmp"),
        today="one-line",
        kind="signal",
        right="exit 130, one line saying nothing was written; no cache temporary, no run folder",
    ),
    Case(
        "sigint-during-training",
        None,
        train("--epochs", "50"),
        ("--resume",),
        expect="interrupted",
        signal=signal.SIGINT,
        when=lambda env: after_line("epoch   1/50"),
        allow_new=("{case}/out", "{case}/out/*"),
        today="one-line",
        kind="signal",
        right="exit 130, a line saying how to resume; no temporary in the run folder",
    ),
    Case(
        "sigterm-during-training",
        None,
        train("--epochs", "50"),
        ("--resume",),
        expect="interrupted",
        signal=signal.SIGTERM,
        when=lambda env: after_line("epoch   1/50"),
        allow_new=("{case}/out", "{case}/out/*"),
        today="one-line",
        kind="signal",
        right="exit 143, a line saying how to resume; no temporary in the run folder",
    ),
    Case(
        "resume-after-sigkill-in-training",
        kill_training,
        ("train.py", "--resume", "{case}/out/last.pth", "--epochs", "2"),
        (),
        expect="success",
        may_change=("{case}/out/*",),  # the resumed run's own files
        today="one-line",
        kind="signal",
        right="the resume succeeds and leaves no temporary in the run folder",
    ),
    Case(
        "sigint-during-demo-generation",
        None,
        ("-m", "model.data.demo", "{case}/gen", *COURSE_ROWS),
        (("SIGINT", "nterrupted"),),
        expect="interrupted",
        signal=signal.SIGINT,
        when=lambda env: once_exists(env.case, "*.jpg"),
        today="vague",
        kind="signal",
        right="exit 130, one line saying nothing was written; no staging folder left",
    ),
    Case(
        "regenerate-after-sigkill-of-demo",
        kill_demo,
        ("-m", "model.data.demo", "{case}/gen", "--images", "30", "--seed", "1"),
        (),
        expect="success",
        today="data changed",
        kind="signal",
        right="the second generation succeeds and removes the killed one's staging folder",
    ),
]


# ----------------------------------------------------------------------------------------------
# Shared data: made once for the module
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_env(tmp_path_factory) -> dict[str, str]:
    return project_env({"CVPR_CACHE_DIR": str(tmp_path_factory.mktemp("bad-input-cache"))})


def made(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, module_env) -> Path:
    """30 demo images (12 airplane, 6 face, 12 motorcycle)."""
    root = tmp_path_factory.mktemp("bad-input-demo") / "demo"
    made(python(["-m", "model.data.demo", str(root), "--images", "30", "--seed", "1"], module_env))
    return root


def tiny_training(dataset: Path, out: Path, environ: dict[str, str]) -> Path:
    made(python(["train.py", "--dataset", str(dataset), "--output-dir", str(out), *TINY, *CUTS], environ))
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_demo, module_env) -> Path:
    """A Simple run of one epoch at 64 px on the tiny demo set: its folder."""
    return tiny_training(tiny_demo, tmp_path_factory.mktemp("bad-input-run") / "run", module_env)


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory, tiny_demo, module_env) -> Path:
    """The same, on a copy of the demo set without its motorcycles."""
    base = tmp_path_factory.mktemp("bad-input-two")
    dataset = base / "two_classes"
    shutil.copytree(tiny_demo, dataset)
    shutil.rmtree(dataset / "images" / "motorcycle")
    (dataset / "annotations" / "motorcycle.csv").unlink()
    return tiny_training(dataset, base / "run", module_env)


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory, tiny_demo, module_env) -> Path:
    """A run whose dataset was moved away after training."""
    base = tmp_path_factory.mktemp("bad-input-moved")
    shutil.copytree(tiny_demo, base / "dataset")
    run = tiny_training(base / "dataset", base / "run", module_env)
    (base / "dataset").rename(base / "dataset-moved-elsewhere")
    return run


@pytest.fixture(scope="module")
def course_shaped(course_dataset) -> Path:
    """The course's 2,033 rows with drawn images (conftest's, made once a session): its decode lasts long enough
    to be interrupted."""
    return course_dataset


RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def results_file():
    yield
    target = os.environ.get("BAD_INPUT_RESULTS")
    if target and RESULTS:
        previous = json.loads(Path(target).read_text()) if Path(target).exists() else {}
        Path(target).write_text(json.dumps({**previous, **RESULTS}, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------


def shown_command(case: Case) -> str:
    text = " ".join(case.command)
    text = text.replace(" ".join(TINY), "TINY").replace(" ".join(CUTS), "CUTS")
    text = text.replace(" ".join(COURSE_ROWS), "--rows COURSE_SPLITS(x3)")
    for placeholder, shown in (("{ds}", "DS"), ("{run}", "RUN"), ("{two_run}", "RUN2"), ("{moved_run}", "MOVED_RUN")):
        text = text.replace(placeholder, shown)
    return text.replace("{course}", "COURSE").replace("{case}/", "")


def run_case(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Build the case, run its command, and check the four properties (or the recovery's, the signal's)."""
    env = Env(tmp_path, request)
    try:
        if case.setup is not None:
            case.setup(env)
        args = [env.format(a) for a in case.command]
        before = snapshot(env.watched)
        began = time.monotonic()
        if case.signal is None:
            cwd = Path(env.format(case.cwd)) if case.cwd else ROOT
            done = python(args, env.environment(), timeout=case.timeout, cwd=cwd)
            rc, out, err = done.returncode, done.stdout, done.stderr
        else:
            assert case.when is not None
            signalled = run_and_signal(args, env.environment(), case.signal, case.when(env), timeout=case.timeout)
            assert signalled.sent, f"the case could not be built: the signal found nothing to interrupt\n{signalled}"
            rc, out, err = signalled.returncode, signalled.stdout, signalled.stderr
        seconds = time.monotonic() - began
        after = snapshot(env.watched)
        verdict = judge(case, rc, out, err, before, after, temporaries([*env.watched, env.cache]), env)
    finally:
        env.unmount()
    RESULTS[case.id] = {
        "kind": case.kind,
        "command": shown_command(case),
        "accepted": case.accepted,
        "expect": case.expect,
        "outcome": verdict.outcome,
        "failed": {str(n): why for n, why in verdict.failed.items()},
        "line": env.short(verdict.line)[:300],
        "exit": rc,
        "right": case.right,
        "seconds": round(seconds, 1),
    }
    assert not verdict.failed, verdict.message(case, args, rc, out, err)

"""Profile a stress run with py-spy, and read back where its CPUs spent their samples.

``profile`` wraps ``py-spy record --subprocesses --idle`` around ``python -m stress run``:

* ``--subprocesses`` follows the forked CPU workers (py-spy polls for new children, so
  workers forked after the model is built are picked up);
* ``--idle`` keeps samples of processes the OS reports as sleeping.  A CPU waiting on a
  sleeping lock (the 3.0 era's mutex: a futex) is idle, and without ``--idle`` it would
  vanish from the profile; a spinning waiter shows up either way.

py-spy needs ptrace rights over the run.  Rather than guess from a failed recording (by
then py-spy's stderr has been interleaved with the run's own output, which goes straight
to the terminal so that progress and the live view keep working), ``check_attach`` first
has py-spy record a sleeping Python child and classifies what py-spy says.

py-spy does not pass on the exit status of the command it runs: ``profile`` returns
py-spy's, and a run's own failure shows in its report.  Validate the run's arguments
before profiling so that a typo is not reported as a successful profile.

Reading a profile: ``summarize_raw`` parses py-spy's raw (collapsed) output, one line per
distinct stack::

    process 41:"python -m stress run ...";process 48:"python -m stress run ...";<frames> COUNT

where each frame is ``function (file)`` (``function (file:line)`` with ``lineno``),
outermost first, and the function is the qualified name on Python 3.11+
(``CpuLocks.lock_contended``, ``SpinPrimitive.spin_lock_slowpath``).  It keeps the samples of CPU workers
(stacks through ``worker_main``) and attributes each one to the outermost kernel entry
point on its stack (``page_referenced_anon``, ``try_to_unmap``, ``do_swap_page``, ...) and
to what it was doing there: waiting for a lock (a waiting function of shared_model/locks.py
on the stack; the group is named by the lock wrapper that called into locks.py, e.g.
``Model.anon_vma_lock``) or running the innermost project function.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FORMATS = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}

# The lock module, and the names of its waiting functions: a sample with one of these (in
# that file) on its stack is a CPU waiting for a lock.  The current names (the contended
# path of CpuLocks.acquire, a primitive's wait) and kernel-like ones they may be given.
LOCKS_FILE = "shared_model/locks.py"
LOCK_WAIT_NAMES = ("lock_contended", "wait",
                   "lock_slowpath", "spin_lock_slowpath", "mutex_lock_slowpath")
# Frames of a CPU worker's stack (the parent's stacks never pass through it).
CPU_FRAME = "worker_main"
# Kernel entry points a sample is attributed to: the outermost of these on its stack.
ENTRY_FRAMES = (
    "page_referenced_anon", "page_referenced", "try_to_unmap", "do_swap_page",
    "do_wp_pages", "do_anonymous_pages", "dup_mmap", "exit_mmap",
    "anon_vma_prepare", "anon_vma_fork", "unlink_anon_vmas",
)
PROJECT_DIRS = ("shared_model/", "stress/")

_PERMISSION = re.compile(
    r"permission denied|operation not permitted|ptrace|EPERM|elevated permissions", re.IGNORECASE)
_PROCESS = re.compile(r'process \d+:"(?:[^"\\]|\\.)*"(?:;|$)')
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

PTRACE_HELP = ("py-spy cannot attach to the run (no ptrace permission): run as root, or "
               "`sysctl kernel.yama.ptrace_scope=0`, or in a container start it with "
               "`--cap-add SYS_PTRACE`")
INSTALL_HELP = "py-spy not found: `pip install py-spy` (rmap-stress installs it as a dependency)"


class ProfileError(Exception):
    """Profiling cannot start or failed; the message is one line saying what to do."""


# ---------------------------------------------------------------------------- recording


def find_pyspy() -> str:
    """The py-spy executable: next to this interpreter (an unactivated venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfileError(INSTALL_HELP)
    return found


def build_pyspy_command(run_argv: list[str], out: str, fmt: str, native: bool, rate: int,
                        pyspy: str = "py-spy", lineno: bool = False) -> list[str]:
    """``py-spy record`` around ``python -m stress run RUN_ARGV`` (the arguments after
    ``run``), writing ``fmt`` (flamegraph: SVG, speedscope: JSON, raw: collapsed stacks)
    to ``out`` at ``rate`` samples per second per process.

    Frames are functions, not lines (``--nolineno``) unless ``lineno``: with line numbers
    every call site of page_referenced_anon is a box of its own, and the flame graph no
    longer shows one page_referenced_anon with the lock wait as its widest child."""
    if fmt not in FORMATS:
        raise ProfileError(f"unknown profile format {fmt!r} (choose from {', '.join(FORMATS)})")
    if rate <= 0:
        raise ProfileError(f"sampling rate must be positive, not {rate}")
    cmd = [pyspy, "record", "--subprocesses", "--idle"]
    if native:
        cmd.append("--native")
    if not lineno:
        cmd.append("--nolineno")
    cmd += ["--rate", str(rate), "--format", fmt, "-o", out, "--",
            sys.executable, "-m", "stress", "run", *run_argv]
    return cmd


def explain_failure(stderr: str) -> str:
    """One line for what py-spy said when it could not attach."""
    if _PERMISSION.search(stderr) and "Failed to create process" not in stderr:
        return PTRACE_HELP
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # py-spy prints "Error: <what>" and then a Rust backtrace; the first line is the news.
    first = next((ln for ln in lines if ln.startswith("Error:")),
                 lines[0] if lines else "no message")
    return f"py-spy cannot attach to the run: {first}"


def check_attach(pyspy: str | None = None, timeout_s: float = 20.0) -> None:
    """Raise ProfileError unless py-spy can profile a Python child the way ``profile``
    will: ``py-spy record -- python -c 'sleep'``, py-spy's stderr classified by
    ``explain_failure``.

    py-spy spawns the target as ``profile`` does, because that is what ptrace allows
    under ``kernel.yama.ptrace_scope=1`` (a tracer may trace its own descendants): a
    ``py-spy dump --pid`` of a child of ours would be refused there although the real
    recording works."""
    exe = pyspy or find_pyspy()
    with tempfile.TemporaryDirectory(prefix="rmap-stress-profile-") as d:
        cmd = [exe, "record", "--idle", "--rate", "50", "--format", "raw",
               "-o", os.path.join(d, "probe.txt"),
               "--", sys.executable, "-c", "import time; time.sleep(0.2)"]
        try:
            r = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ProfileError(f"py-spy cannot attach to the run: a probe recording hung for "
                               f"{timeout_s:g} s") from None
        except OSError as e:
            raise ProfileError(f"{INSTALL_HELP} ({e.strerror})") from None
    if r.returncode:
        raise ProfileError(explain_failure(r.stderr or r.stdout))


def profile(run_argv: list[str], out: str, fmt: str = "flamegraph", native: bool = False,
            rate: int = 100, lineno: bool = False) -> int:
    """Record a profile of ``rmap-stress run RUN_ARGV`` into ``out``; returns py-spy's exit
    status (0: the profile was written).  The run's output goes to our stdout and stderr.

    Raises ProfileError (one line) when py-spy is missing, cannot attach, or wrote nothing."""
    exe = find_pyspy()
    cmd = build_pyspy_command(run_argv, out, fmt, native, rate, pyspy=exe, lineno=lineno)
    check_attach(exe)
    try:
        os.unlink(out)  # so that "wrote nothing" is visible below
    except FileNotFoundError:
        pass
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL) as p:
        try:
            rc = p.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached py-spy and the run too: py-spy stops sampling and still writes
            # the profile; let it finish rather than leave it half-written.
            p.wait()
            raise
    if rc or not os.path.exists(out):
        raise ProfileError(f"py-spy record failed (exit status {rc}); its message is above")
    return rc


# ---------------------------------------------------------------------------- reading


def _frame_name(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m.group("func"), m.group("file")) if m else (frame, "")


def _matches(func: str, name: str) -> bool:
    """``func`` (a qualified name, ``CpuLocks.lock_contended``) is ``name`` or ends in it
    (``lock_contended``)."""
    return func == name or func.endswith("." + name)


def read_raw(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[tuple[str, str]], int]]:
    """Stacks of a py-spy raw file: (process nesting depth, [(function, file)] outermost
    first, sample count)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            depth = 0
            while m := _PROCESS.match(stack):
                stack = stack[m.end():]
                depth += 1
            frames = [_frame_name(f) for f in stack.split(";")] if stack else []
            yield depth, frames, int(count)


def _in_locks(file: str) -> bool:
    return file == LOCKS_FILE or file.endswith("/" + LOCKS_FILE)


def classify(frames: list[tuple[str, str]]) -> tuple[str, str, bool]:
    """(entry point, what, lock wait?) for one CPU stack: the outermost ENTRY_FRAMES frame
    ("-" when none), and either the lock wrapper that is waiting (``Model.anon_vma_lock``:
    the caller of the first frame in locks.py) or the innermost project function
    (``page_check_address``)."""
    funcs = [f for f, _ in frames]
    entry = next((f for f in funcs if any(_matches(f, e) for e in ENTRY_FRAMES)), "-")
    if any(_in_locks(file) and f.rsplit(".", 1)[-1] in LOCK_WAIT_NAMES for f, file in frames):
        first = next(i for i, (_, file) in enumerate(frames) if _in_locks(file))
        return entry, funcs[first - 1] if first else funcs[first], True
    own = [f for f, file in frames if file.startswith(PROJECT_DIRS) or "/shared_model/" in file
           or "/stress/" in file]
    return entry, (own[-1] if own else funcs[-1] if funcs else "-"), False


def summarize_raw(path: str | os.PathLike[str], frames: Iterable[str] = ("page_referenced_anon",),
                  top: int = 10) -> dict[str, Any]:
    """Where the CPU workers' samples went, from a py-spy raw file.

    Shares are of the CPU samples (stacks through ``worker_main``; the parent mostly sleeps
    and is left out).  Returns::

        samples        every sample in the file
        cpu_samples    samples of CPU workers
        lock_wait      share of CPU samples waiting for a lock (any lock, any caller)
        lock_wait_in   {entry point: share of CPU samples waiting for a lock under it}
        contains       {name: share of CPU samples with a frame of that function name}
                       for each of ``frames`` (a name matches Class.name too)
        hottest        up to ``top`` {"entry", "what", "lock_wait", "share"}, largest first:
                       the CPU samples grouped by classify()
    """
    names = list(frames)
    total = cpu = wait = 0
    wait_in: collections.Counter[str] = collections.Counter()
    contains: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[tuple[str, str, bool]] = collections.Counter()
    for _, stack, n in read_raw(path):
        total += n
        funcs = [f for f, _ in stack]
        if not any(_matches(f, CPU_FRAME) for f in funcs):
            continue
        cpu += n
        for name in names:
            if any(_matches(f, name) for f in funcs):
                contains[name] += n
        key = classify(stack)
        groups[key] += n
        if key[2]:
            wait += n
            wait_in[key[0]] += n
    share = (lambda k: k / cpu) if cpu else (lambda k: 0.0)
    return {
        "samples": total,
        "cpu_samples": cpu,
        "lock_wait": share(wait),
        "lock_wait_in": {e: share(k) for e, k in wait_in.most_common()},
        "contains": {name: share(contains[name]) for name in names},
        "hottest": [{"entry": e, "what": w, "lock_wait": lw, "share": share(k)}
                    for (e, w, lw), k in groups.most_common(top)],
    }


def format_summary(s: dict[str, Any]) -> str:
    """A few lines for a terminal: the hottest places and the lock-wait share."""
    head = (f"{s['cpu_samples']} CPU samples of {s['samples']}; waiting for a lock: "
            f"{100 * s['lock_wait']:.0f}%")
    lines = [head]
    for h in s["hottest"]:
        what = f"{h['what']} (lock wait)" if h["lock_wait"] else h["what"]
        lines.append(f"  {100 * h['share']:5.1f}%  {h['entry']} > {what}")
    return "\n".join(lines)

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

The CPUs alone.  py-spy always records raw stacks into a temporary file; what the user gets
is made from it (``write_profile``): each stack belongs to the innermost process py-spy
names, and a process is a CPU when the run's results list its pid (``cpus[i].pid``; the
results go to a temporary ``--json`` unless the run writes its own) or py-spy saw its title
``rmap-stress cpuN`` (set by the worker; py-spy may attach before the title is set, hence
the pids).  Everything else (the parent's watch loop, the log receiver thread, the
resource tracker) is the harness: dropped, or with ``harness=True`` kept under one root
frame ``harness``.  The flamegraph (a static SVG drawn here, no JavaScript) has one tower
per CPU, ``rmap-stress cpuN``; the speedscope file has one profile per CPU; the raw file
keeps py-spy's line format with one process label per line, the CPU's.  ``per_cpu`` also
writes one file per CPU (``NAME-cpuN.EXT``).

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
import dataclasses
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..engine.results import ResultsError, load, write_output

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
_PROCESS = re.compile(r'process (?P<pid>\d+):"(?P<cmd>(?:[^"\\]|\\.)*)"(?:;|$)')
_CPU_TITLE = re.compile(r"^rmap-stress cpu(\d+)$")
HARNESS = "harness"
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


@dataclasses.dataclass
class ProfileResult:
    """What a recording produced: py-spy's exit status, sample counts, files written."""

    rc: int
    samples: int = 0  # every sample py-spy took
    cpu_samples: int = 0  # samples of CPU processes
    cpus: list[str] = dataclasses.field(default_factory=list)  # "cpu0", ... in the profile
    files: list[str] = dataclasses.field(default_factory=list)
    raw: str = ""  # the full raw recording (only while the temporary folder exists)

    def describe(self, harness: bool) -> str:
        other = self.samples - self.cpu_samples
        what = "kept under 'harness'" if harness else "dropped"
        share = 100 * self.cpu_samples / self.samples if self.samples else 0.0
        return (f"{self.cpu_samples} of {self.samples} samples ({share:.0f}%) are in the CPU processes "
                f"({', '.join(self.cpus) or 'none'}); {other} of the harness (parent, log thread, "
                f"resource tracker) {what}")


def profile(run_argv: list[str], out: str, fmt: str = "flamegraph", native: bool = False,
            rate: int = 100, lineno: bool = False, per_cpu: bool = False,
            harness: bool = False) -> int:
    """Record a profile of ``rmap-stress run RUN_ARGV`` into ``out``; returns py-spy's exit
    status (0: the profile was written).  See ``record``."""
    return record(run_argv, out, fmt, native, rate, lineno, per_cpu, harness).rc


def _has_json(run_argv: list[str]) -> str | None:
    """Where the run writes its results (--internal-json first, then --json), or None."""
    found: dict[str, str] = {}
    for i, arg in enumerate(run_argv):
        for opt in ("--internal-json", "--json"):
            if arg == opt and i + 1 < len(run_argv):
                found.setdefault(opt, run_argv[i + 1])
            elif arg.startswith(opt + "="):
                found.setdefault(opt, arg.split("=", 1)[1])
    return found.get("--internal-json") or found.get("--json")


def record(run_argv: list[str], out: str, fmt: str = "flamegraph", native: bool = False,
           rate: int = 100, lineno: bool = False, per_cpu: bool = False,
           harness: bool = False, summary: Any = None, stdout: Any = None) -> ProfileResult:
    """Record ``rmap-stress run RUN_ARGV`` under py-spy and write the CPUs' profile to
    ``out`` in ``fmt`` (and with ``per_cpu`` one file per CPU).  The run's output goes to
    our stdout (or ``stdout``) and stderr.  ``summary(raw_path)``, when given, is called with the full raw
    recording before the temporary folder goes.

    Raises ProfileError (one line) when py-spy is missing, cannot attach, or wrote nothing."""
    exe = find_pyspy()
    if fmt not in FORMATS:
        raise ProfileError(f"unknown profile format {fmt!r} (choose from {', '.join(FORMATS)})")
    check_attach(exe)
    with tempfile.TemporaryDirectory(prefix="rmap-stress-profile-") as d:
        raw = os.path.join(d, "raw.txt")
        results = _has_json(run_argv)
        argv = list(run_argv)
        if results is None or results == "-":
            # Written for cpu_pids and not reported: it goes with the temporary folder.
            results = os.path.join(d, "results.json")
            argv += ["--internal-json", results]
        cmd = build_pyspy_command(argv, raw, "raw", native, rate, pyspy=exe, lineno=lineno)
        chatter: list[str] = []
        with subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if stdout is None else stdout) as p:
            relay = None
            if stdout is None:
                relay = threading.Thread(target=relay_output, args=(p.stdout, chatter), daemon=True)
                relay.start()
            try:
                rc = p.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached py-spy and the run too: py-spy stops sampling and still
                # writes the profile; let it finish rather than leave it half-written.
                p.wait()
                raise
            finally:
                if relay is not None:
                    relay.join(10)
        if rc or not os.path.exists(raw):
            said = "; ".join(chatter[-2:]) or "no message"
            raise ProfileError(f"py-spy record failed (exit status {rc}): {said}")
        note = sample_errors_note(chatter)
        if note:
            print(f"rmap-stress: note: {note}", file=sys.stderr)
        res = write_profile(raw, out, fmt, cpu_pids(results), per_cpu=per_cpu, harness=harness)
        res.rc = rc
        if summary is not None:
            summary(raw)
    return res


PYSPY_LEDE = b"py-spy> "


def relay_output(pipe: Any, chatter: list[str]) -> None:
    """Copy the run's output (py-spy's stdout is the run's) to our standard output, line by
    line, keeping py-spy's own lines ("py-spy> Sampling process ...", "You can use the
    flamegraph.pl script ...", the blank lines after them) out of it, in ``chatter``."""
    from ..engine.results import _real_stdout

    out = _real_stdout()
    after_lede = False
    for line in iter(pipe.readline, b""):
        if line.startswith(PYSPY_LEDE):
            chatter.append(line[len(PYSPY_LEDE):].decode(errors="replace").strip())
            after_lede = True
            continue
        if after_lede and not line.strip():
            continue
        after_lede = False
        try:
            out.flush()
            out.buffer.write(line)
            out.buffer.flush()
        except (BrokenPipeError, ValueError):
            pass


def sample_errors_note(chatter: list[str]) -> str | None:
    """py-spy's "Errors: N" explained (samples it could not take), or None when there were none."""
    for line in chatter:
        m = re.search(r"Samples: (\d+) Errors: (\d+)", line)
        if m and int(m.group(2)):
            return (f"py-spy could not take {m.group(2)} of its {int(m.group(1)) + int(m.group(2))} "
                    f"samples (a process starting or exiting as it read its stack): the profile "
                    f"is made of the rest")
    return None


def cpu_pids(results_path: str) -> dict[int, int]:
    """{pid: cpu} from a run's results file; empty when there is none (a failed start)."""
    try:
        doc = load(results_path, ("run",))
        return {int(c["pid"]): int(c["cpu"]) for c in doc["cpus"] if c.get("pid")}
    except ResultsError:
        return {}


# ---------------------------------------------------------------------------- reading


def _frame_name(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m.group("func"), m.group("file")) if m else (frame, "")


def _matches(func: str, name: str) -> bool:
    """``func`` (a qualified name, ``CpuLocks.lock_contended``) is ``name`` or ends in it
    (``lock_contended``)."""
    return func == name or func.endswith("." + name)


def read_raw_processes(path: str | os.PathLike[str]
                       ) -> Iterator[tuple[list[tuple[int, str]], list[str], int]]:
    """Stacks of a py-spy raw file: ([(pid, command line)] of the process labels, outermost
    first; the frames as written, outermost first; sample count)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            procs = []
            while m := _PROCESS.match(stack):
                procs.append((int(m.group("pid")), m.group("cmd")))
                stack = stack[m.end():]
            yield procs, stack.split(";") if stack else [], int(count)


def read_raw(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[tuple[str, str]], int]]:
    """Stacks of a py-spy raw file: (process nesting depth, [(function, file)] outermost
    first, sample count)."""
    for procs, frames, n in read_raw_processes(path):
        yield len(procs), [_frame_name(f) for f in frames], n


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


# ---------------------------------------------------------------------------- the CPUs alone


def owner_of(procs: list[tuple[int, str]], pids: dict[int, int]) -> tuple[str, int | None]:
    """("cpuN", pid) for a stack of CPU process N, (HARNESS, pid or None) otherwise: the
    innermost process label decides, by the run's pid list or the title ``rmap-stress cpuN``."""
    if not procs:
        return HARNESS, None
    pid, cmd = procs[-1]
    if pid in pids:
        return f"cpu{pids[pid]}", pid
    m = _CPU_TITLE.match(cmd)
    return (f"cpu{m.group(1)}", pid) if m else (HARNESS, pid)


Stacks = dict[str, list[tuple[int | None, list[str], int]]]


def split_raw(path: str | os.PathLike[str], pids: dict[int, int]) -> tuple[Stacks, int]:
    """{owner: [(pid, frames, count)]} with owners "cpuN" (in CPU order) and HARNESS, and
    the total sample count.  A CPU's stacks start at ``worker_main``: the frames below it
    are the parent's, inherited through fork, and would put seventeen identical boxes
    under every CPU."""
    out: Stacks = {}
    total = 0
    for procs, frames, n in read_raw_processes(path):
        total += n
        owner, pid = owner_of(procs, pids)
        if owner != HARNESS:
            start = next((i for i, f in enumerate(frames) if _matches(_frame_name(f)[0], CPU_FRAME)), 0)
            frames = frames[start:]
        out.setdefault(owner, []).append((pid, frames, n))
    order = sorted((k for k in out if k != HARNESS), key=lambda k: int(k[3:]))
    return {k: out[k] for k in order + ([HARNESS] if HARNESS in out else [])}, total


def write_profile(raw: str | os.PathLike[str], out: str, fmt: str, pids: dict[int, int],
                  per_cpu: bool = False, harness: bool = False) -> ProfileResult:
    """The CPUs' profile from a full raw recording: ``out`` (and one file per CPU)."""
    stacks, total = split_raw(raw, pids)
    cpus = [k for k in stacks if k != HARNESS]
    keep = {k: v for k, v in stacks.items() if k != HARNESS or harness}
    res = ProfileResult(0, total, sum(n for k in cpus for _, _, n in stacks[k]), cpus)
    writers = {"flamegraph": write_flamegraph, "speedscope": write_speedscope, "raw": write_raw}
    writers[fmt](keep, out)
    res.files.append(out)
    if per_cpu:
        stem, ext = os.path.splitext(out)
        for k in cpus:
            path = f"{stem}-{k}{ext}"
            writers[fmt]({k: stacks[k]}, path)
            res.files.append(path)
    return res


def _label(owner: str) -> str:
    return f"rmap-stress {owner}" if owner != HARNESS else "harness (parent, log thread, resource tracker)"


def write_raw(stacks: Stacks, out: str) -> None:
    """py-spy's raw format, one process label per line: the CPU's (or the harness's)."""
    lines = [f'process {pid or 0}:"{_label(owner)}"' + "".join(";" + f for f in frames) + f" {n}\n"
             for owner, rows in stacks.items() for pid, frames, n in rows]
    write_output(out, lambda fh: fh.writelines(lines))


def write_speedscope(stacks: Stacks, out: str) -> None:
    """speedscope's file format: one sampled profile per CPU (and the harness if kept)."""
    index: dict[str, int] = {}
    frames_out: list[dict[str, str]] = []
    profiles = []
    for owner, rows in stacks.items():
        samples, weights = [], []
        for _, frames, n in rows:
            ids = []
            for f in frames:
                if f not in index:
                    index[f] = len(frames_out)
                    func, file = _frame_name(f)
                    frames_out.append({"name": func, "file": file} if file else {"name": func})
                ids.append(index[f])
            samples.append(ids)
            weights.append(n)
        profiles.append({"type": "sampled", "name": _label(owner), "unit": "none", "startValue": 0,
                         "endValue": sum(weights), "samples": samples, "weights": weights})
    doc = {"$schema": "https://www.speedscope.app/file-format-schema.json",
           "shared": {"frames": frames_out}, "profiles": profiles, "name": "rmap-stress CPUs",
           "activeProfileIndex": 0, "exporter": "rmap-stress"}
    write_output(out, lambda fh: json.dump(doc, fh))


@dataclasses.dataclass
class _Node:
    name: str
    count: int = 0
    children: dict[str, _Node] = dataclasses.field(default_factory=dict)


def flame_tree(stacks: Stacks) -> _Node:
    """The flame graph's tree: root "all" -> one node per CPU ("rmap-stress cpuN") ->
    frames, each counting the samples whose stack passes through it."""
    root = _Node("all")
    for owner, rows in stacks.items():
        for _, frames, n in rows:
            node = root
            node.count += n
            for name in [_label(owner), *frames]:
                node = node.children.setdefault(name, _Node(name))
                node.count += n
    return root


FLAME_WIDTH, FLAME_ROW, FLAME_FONT = 1200, 17, 11


def _color(name: str) -> str:
    """Lock waits red, the simulator's own frames orange, the rest yellow; the shade from a
    hash of the name, so a frame keeps its colour from one profile to the next."""
    func, file = _frame_name(name)
    h = int(hashlib.md5(func.encode()).hexdigest()[:4], 16) / 0xFFFF
    if _in_locks(file) and func.rsplit(".", 1)[-1] in LOCK_WAIT_NAMES:
        return f"rgb(220,{int(40 + 40 * h)},{int(30 + 30 * h)})"
    if file.startswith(PROJECT_DIRS) or "/shared_model/" in file or "/stress/" in file:
        return f"rgb(240,{int(130 + 60 * h)},40)"
    if not file:
        return "rgb(200,200,200)"
    return f"rgb(235,{int(190 + 50 * h)},70)"


def write_flamegraph(stacks: Stacks, out: str) -> None:
    """A static flame graph (SVG): root at the bottom, one tower per CPU above it, each box
    as wide as its share of the samples, with a tooltip naming the frame and its share."""
    root = flame_tree(stacks)
    total = max(root.count, 1)
    boxes: list[tuple[int, float, float, _Node]] = []  # depth, x, width, node

    def place(node: _Node, depth: int, x: float) -> int:
        width = node.count / total * FLAME_WIDTH
        if width < 0.3:
            return depth
        boxes.append((depth, x, width, node))
        deepest = depth
        for child in sorted(node.children.values(), key=lambda c: c.name):
            deepest = max(deepest, place(child, depth + 1, x))
            x += child.count / total * FLAME_WIDTH
        return deepest

    depth = place(root, 0, 10.0)
    height = (depth + 1) * FLAME_ROW + 50
    title = f"rmap-stress: the CPU processes, {root.count} samples"
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{FLAME_WIDTH + 20}" height="{height}" '
              f'font-family="Verdana, sans-serif" font-size="{FLAME_FONT}">'),
             '<rect width="100%" height="100%" fill="#f8f8f0"/>',
             (f'<text x="{(FLAME_WIDTH + 20) / 2}" y="20" text-anchor="middle" font-size="15">'
              f'{html.escape(title)}</text>')]
    for d, x, w, node in boxes:
        y = height - (d + 1) * FLAME_ROW - 5
        func = _frame_name(node.name)[0]
        tip = f"{node.name} ({node.count} samples, {100 * node.count / total:.2f}%)"
        fill = "rgb(160,190,230)" if d <= 1 else _color(node.name)
        parts.append(f'<g><title>{html.escape(tip)}</title><rect x="{x:.2f}" y="{y}" width="{w:.2f}" '
                     f'height="{FLAME_ROW - 1}" fill="{fill}" rx="2"/>')
        chars = int((w - 6) / (FLAME_FONT * 0.6))
        if chars >= 3:
            text = func if len(func) <= chars else func[: chars - 2] + ".."
            parts.append(f'<text x="{x + 3:.2f}" y="{y + FLAME_ROW - 5}">{html.escape(text)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    write_output(out, lambda fh: fh.write("\n".join(parts) + "\n"))

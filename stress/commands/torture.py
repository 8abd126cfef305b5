"""``rmap-stress torture``: random stress runs until a time budget is spent, each checked
for what a reliability engineer looks at, as the kernel's locktorture and rcutorture do.

Each run is a real ``rmap-stress run --quiet --json`` child process in a session of its own,
with a random configuration: era, scenario, lock primitive, CPU count (up to
MAX_OVERSUBSCRIPTION times this machine's cores), users, pages, COW fraction, run length,
injected allocation failures, lock-order checking.  While it runs, the torturer SIGSTOPs a
random CPU process for a random while and SIGCONTs it (a lock holder or waiter preempted
by the host), a few times per run.  Afterwards it checks:

* the exit status (0 expected: anything else is a failure; 2 means the configuration was
  refused, which is the torturer's own bug);
* the results: invariants clean, no failure (stall, dead CPU), no CPU aborted or killed
  inside an operation (the stop must reach a boundary), no wedged lock;
* leftovers: no process of the run's session alive, no segment of its pid in /dev/shm.

A failure is filed under a *kind*: the check that failed and its first message with the
numbers taken out ("anon_vma N: in use with an empty list ..."), so that 40 runs that
leaked an anon_vma make one line.  The summary gives, per kind, the count and the command
line of its first run (the SIGSTOPs it got are listed after it: they are not part of the
command), and closes with the runs, the configurations they covered and the slowest stop.

Why child processes and not ``runner.run`` in this process: the leftover check needs a
process that is gone, a failure must not take the torturer down, and each failure must be
reproducible by pasting one command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from shared_model.eras import ERAS
from shared_model.invariants import only_seed_bug
from shared_model.locks import LOCK_KINDS
from shared_model.segment import leftover_segments, segment_owner

from ..engine.config import SCENARIOS, ConfigError, RunConfig
from ..engine.results import write_json

MAX_OVERSUBSCRIPTION = 16  # CPUs per core, at most
# cve-2022-42703's use-after-free and shared-swapin's seed oops are their point in the
# eras before the fixes: their violations are expected, so they are not tortured here
# (``rmap-stress story`` and the tests check them).  The seed era itself is tortured with
# the other scenarios, its own oops allowed (Era.seed_placement).
TORTURE_SCENARIOS = tuple(s for s in SCENARIOS if s not in ("cve-2022-42703", "shared-swapin"))
LOCKS = (None, *LOCK_KINDS)  # None: the era's own primitive
RUN_TIMEOUT_S = 600.0  # one run that takes longer than this is a failure ("hung")
STARTUP_S = 8.0  # what a run costs besides its duration (import, build, start, check)
EVIDENCE_LINES = 64  # of a failed run's CPU states (or stderr) kept in the summary


def parse_duration(text: str) -> float:
    """"90", "90s", "10m", "1h" -> seconds; ValueError with the reason otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m:
        raise ConfigError(f"--duration {text!r}: give seconds, or a number with s, m or h (10m)")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise ConfigError(f"--duration {text!r} must be positive")
    return value


@dataclasses.dataclass
class Plan:
    """One run's configuration and the SIGSTOPs it gets: (seconds after start, CPU,
    seconds stopped)."""

    cfg: RunConfig
    stall_timeout: float
    sigstops: list[tuple[float, int, float]]

    def argv(self) -> list[str]:
        c = self.cfg
        args = ["run", "--quiet", "--era", c.era, "--scenario", c.scenario, "--users", str(c.users),
                "--pages", str(c.pages), "--cow", f"{c.cow:g}", "--cpus", str(c.cpus),
                "--duration", f"{c.duration:g}", "--seed", str(c.seed),
                "--stall-timeout", f"{self.stall_timeout:g}"]
        if c.lock:
            args += ["--lock", c.lock]
        if c.alloc_fail_p:
            args += ["--inject", f"alloc-fail={c.alloc_fail_p:g}"]
        if c.check_lock_order:
            args.append("--check-lock-order")
        if c.swap_device:
            args += ["--swap-device", c.swap_device]
        return args

    def command(self) -> str:
        line = "rmap-stress " + shlex.join(self.argv()[:1] + self.argv()[2:])  # without --quiet
        if self.sigstops:
            stops = ", ".join(f"cpu{c} at {t:.1f} s for {d:.2f} s" for t, c, d in self.sigstops)
            line += f"   # with SIGSTOP of {stops}"
        return line

    def key(self) -> tuple[str, str, str]:
        return (self.cfg.era, self.cfg.scenario, self.cfg.lock or "default")


def random_plan(rng: random.Random, cores: int, max_cpus: int, max_run_s: float) -> Plan:
    """A random configuration that RunConfig accepts."""
    while True:
        cpus = rng.choice([2, 3, 4, 8, 16, 32, 64, 128, 256])
        cpus = max(2, min(cpus, max_cpus, MAX_OVERSUBSCRIPTION * cores))
        scenario = rng.choice(TORTURE_SCENARIOS)
        users = rng.randint(2, 160)
        if scenario in ("fork-test", "exim", "forking-server"):
            users = max(users, cpus)
        cfg = RunConfig(
            era=rng.choice(list(ERAS)), scenario=scenario, users=users, pages=rng.randint(2, 40),
            cow=round(rng.random(), 2), cpus=cpus,
            duration=round(rng.uniform(0.5, max(0.6, max_run_s)), 1), lock=rng.choice(LOCKS),
            seed=rng.randint(0, 10_000),
            alloc_fail_p=round(rng.uniform(0.01, 0.2), 3) if rng.random() < 0.3 else 0.0,
            check_lock_order=rng.random() < 0.3,
            swap_device="off" if rng.random() < 0.7 else None)
        try:
            cfg.validate()
        except ConfigError:
            continue
        stops = []
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            # Anywhere in the run, the end included: a CPU preempted across the deadline.
            stops.append((round(rng.uniform(0.0, cfg.duration + 0.5), 2), rng.randrange(cpus),
                          round(rng.choice([0.05, 0.2, 0.5, 1.0, 1.5]), 2)))
        return Plan(cfg, stall_timeout=10.0, sigstops=sorted(stops))


@dataclasses.dataclass
class Outcome:
    """What one run came to: ``failures`` (kind, detail), empty when clean; ``evidence``,
    for a failed run, what it left to read: each CPU's state when it failed (the results'
    ``failed.cpu_states``), else the end of its stderr."""

    plan: Plan
    status: int
    stop_s: float | None
    wall_s: float
    failures: list[tuple[str, str]]
    evidence: list[str] = dataclasses.field(default_factory=list)


def kind_of(check: str, message: str) -> str:
    """A failure's kind: the check and its message with numbers replaced by N."""
    return f"{check}: {re.sub(r'[0-9]+', 'N', message)}"[:160]


def _cpu_processes(p: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(p.pid).children()
                if c.cmdline()[:1] and c.cmdline()[0].startswith("rmap-stress cpu")]
    except psutil.Error:
        return []


def _session(sid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return out


def run_one(plan: Plan, workdir: Path, cwd: Path) -> Outcome:
    """Run ``plan`` as a child CLI, deliver its SIGSTOPs, and check everything after.

    The child's stderr goes to a file, not a pipe: nothing reads a pipe while the
    SIGSTOPs are delivered, and a run that filled one would block in a write and look
    stalled."""
    out = workdir / "run.json"
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    failures: list[tuple[str, str]] = []
    stopped: list[psutil.Process] = []
    signals: list[str] = []
    with open(workdir / "run.stderr", "w+b") as err_f:
        p = subprocess.Popen([sys.executable, "-m", "stress", *plan.argv(), "--json", str(out)],
                             cwd=cwd, stdout=subprocess.DEVNULL, stderr=err_f, start_new_session=True)
        try:
            _deliver_sigstops(p, plan, t0, stopped, signals)
            p.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            failures.append(("hung", f"no exit within {RUN_TIMEOUT_S:.0f} s"))
        except BaseException:  # Ctrl-C or SIGTERM of the torturer: the run goes with it
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise
        finally:
            for target in stopped:
                _resume(target)
        err_f.seek(0)
        err = err_f.read().decode(errors="replace")
    wall = time.monotonic() - t0
    doc: dict[str, Any] | None = None
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError):
        pass
    failures += _judge(plan, p.returncode, doc, err)
    if _session(p.pid):
        failures.append(("leftover processes", f"{len(_session(p.pid))} alive after the run"))
    if any(segment_owner(n) == p.pid for n in leftover_segments()):
        failures.append(("leftover segment", "a /dev/shm segment of the run outlived it"))
    stop_s = doc.get("phases", {}).get("stop_s") if doc else None
    evidence: list[str] = []
    if failures:
        states = (doc.get("failed") or {}).get("cpu_states") if doc else None
        evidence = list(states or err.strip().splitlines()[-20:])[:EVIDENCE_LINES] + signals
    return Outcome(plan, p.returncode, stop_s, wall, failures, evidence)


def _deliver_sigstops(p: subprocess.Popen[bytes], plan: Plan, t0: float,
                      stopped: list[psutil.Process], signals: list[str]) -> None:
    """Each of the plan's SIGSTOPs at its time after the CPUs exist, SIGCONT after its
    length; ``stopped`` holds the one stopped now (the caller resumes it on any exit).
    ``signals`` gets one line per SIGSTOP: when it was sent and when its SIGCONT took
    effect, measured (a failed run's evidence: a late SIGCONT is the harness's doing)."""
    # The run's clock starts when its CPUs exist (after the build and compiled-code load).
    while p.poll() is None and len(_cpu_processes(p)) < plan.cfg.cpus:
        if time.monotonic() - t0 > RUN_TIMEOUT_S:
            break
        time.sleep(0.05)
    t_run = time.monotonic()
    cpus = _cpu_processes(p)
    by_cpu = {int(c.cmdline()[0].rsplit("cpu", 1)[1]): c for c in cpus if c.is_running()}
    for at, cpu, length in plan.sigstops:
        while p.poll() is None and time.monotonic() < t_run + at:
            time.sleep(0.01)
        target = by_cpu.get(cpu)
        if p.poll() is not None or target is None:
            continue
        try:
            target.send_signal(signal.SIGSTOP)
        except psutil.Error:
            continue
        sent = time.monotonic() - t_run
        stopped.append(target)
        time.sleep(length)
        resumed = _resume(target)
        stopped.remove(target)
        signals.append(f"torture: SIGSTOP of cpu{cpu} at {sent:.2f} s for {length:.2f} s: "
                       f"resumed at {time.monotonic() - t_run:.2f} s"
                       + ("" if resumed else " (still stopped: its process was gone or would not resume)"))


def _resume(target: psutil.Process) -> bool:
    """SIGCONT ``target`` and wait (up to a second, sending again) until the OS no longer
    has it stopped; False if it stayed stopped or is gone."""
    for _ in range(100):
        try:
            os.kill(target.pid, signal.SIGCONT)
            if target.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
                return True
        except (OSError, psutil.Error):
            return False
        time.sleep(0.01)
    return False


def _judge(plan: Plan, returncode: int | None, doc: dict[str, Any] | None,
           err: str) -> list[tuple[str, str]]:
    """What went wrong in one run, from its exit status, results document and stderr."""
    failures: list[tuple[str, str]] = []
    if "Traceback" in err:
        failures.append(("traceback", err.strip().splitlines()[-1]))
    if (doc is not None and returncode == 1 and not doc.get("failed")
            and ERAS[plan.cfg.era].seed_placement
            and only_seed_bug(doc.get("invariants", {}).get("messages", []))):
        doc["invariants"]["violations"] = 0  # the seed's oops: its era's point, not a failure
    elif returncode not in (0, None):
        why = doc["failed"]["reason"] if doc and doc.get("failed") else err.strip().splitlines()[-1:] or ["?"]
        failures.append((f"exit {returncode}", why if isinstance(why, str) else why[0]))
    if doc is not None:
        inv = doc.get("invariants", {})
        if inv.get("violations"):
            failures.append(("invariants", inv["messages"][0]))
        for a in doc.get("stop", {}).get("aborted", []):
            failures.append(("aborted inside an operation",
                             f"{'killed' if a['killed'] else 'aborted'} in {a['operation']}"))
        for name in doc.get("wedged_locks", []):
            failures.append(("wedged lock", name))
    elif returncode == 0:
        failures.append(("no results", "exit 0 without a results file"))
    return failures


def torture(budget_s: float, seed: int, max_cpus: int, max_run_s: float,
            say: Callable[[str], None], cwd: Path) -> dict[str, Any]:
    """Random runs until ``budget_s`` is spent (a run is started only if it should end
    within the budget); returns the summary document."""
    rng = random.Random(seed)
    cores = len(os.sched_getaffinity(0))
    outcomes: list[Outcome] = []
    t_end = time.monotonic() + budget_s
    with tempfile.TemporaryDirectory(prefix="rmap-torture-") as tmp:
        while True:
            left = t_end - time.monotonic()
            plan = random_plan(rng, cores, max_cpus, min(max_run_s, max(0.6, left - STARTUP_S)))
            if outcomes and left < plan.cfg.duration + STARTUP_S:
                break
            o = run_one(plan, Path(tmp), cwd)
            outcomes.append(o)
            state = "ok" if not o.failures else "FAIL " + "; ".join(f"{k}: {d}" for k, d in o.failures[:2])
            stop = "-" if o.stop_s is None else f"{o.stop_s:.1f} s"
            say(f"run {len(outcomes)}: {state}  (stop {stop}, {o.wall_s:.0f} s)  {plan.command()}")
    return summarize(outcomes, budget_s, seed)


def summarize(outcomes: list[Outcome], budget_s: float, seed: int) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        for check, detail in o.failures:
            k = kind_of(check, detail)
            entry = kinds.setdefault(k, {"kind": k, "runs": 0, "first": detail, "command": o.plan.command(),
                                         "evidence": o.evidence})
            entry["runs"] += 1
    stops = [(o.stop_s, o.plan.command()) for o in outcomes if o.stop_s is not None]
    slowest = max(stops, default=(None, None))
    return {
        "schema": "rmap-stress-torture/1",
        "seed": seed,
        "budget_s": budget_s,
        "runs": len(outcomes),
        "failed_runs": sum(1 for o in outcomes if o.failures),
        "sigstops": sum(len(o.plan.sigstops) for o in outcomes),
        "covered": {
            "eras": sorted({o.plan.cfg.era for o in outcomes}),
            "scenarios": sorted({o.plan.cfg.scenario for o in outcomes}),
            "locks": sorted({o.plan.cfg.lock or "default" for o in outcomes}),
            "cpus": sorted({o.plan.cfg.cpus for o in outcomes}),
            "configurations": len({o.plan.key() for o in outcomes}),
            "alloc_fail_runs": sum(1 for o in outcomes if o.plan.cfg.alloc_fail_p),
            "lock_order_runs": sum(1 for o in outcomes if o.plan.cfg.check_lock_order),
        },
        "slowest_stop": {"s": slowest[0], "command": slowest[1]},
        "failures": sorted(kinds.values(), key=lambda e: -e["runs"]),
    }


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """One line per failure kind with the command of its first run, then the closing note."""
    lines = [f"FAIL {e['runs']}x {e['kind']}\n     first: {e['command']}" for e in doc["failures"]]
    cov = doc["covered"]
    slow = doc["slowest_stop"]
    lines.append(
        f"torture: {doc['runs']} runs, {doc['failed_runs']} failed, {doc['sigstops']} SIGSTOPs; "
        f"{cov['configurations']} configurations (era x scenario x lock) over {len(cov['eras'])} eras, "
        f"scenarios {', '.join(cov['scenarios'])}, locks {', '.join(cov['locks'])}, "
        f"CPUs {', '.join(map(str, cov['cpus']))}; {cov['alloc_fail_runs']} with alloc-fail, "
        f"{cov['lock_order_runs']} with --check-lock-order; slowest stop "
        + ("-" if slow["s"] is None else f"{slow['s']:.1f} s ({slow['command']})"))
    return lines


def add_parser(sub: Any) -> None:
    """The ``torture`` subcommand's options."""
    t = sub.add_parser("torture", help="random runs (eras, scenarios, locks, oversubscription, "
                                       "SIGSTOPs, allocation failures) checked for invariants "
                                       "and leftovers, as locktorture",
                       description="Run random stress runs until --duration is spent, SIGSTOP and "
                                   "SIGCONT random CPUs meanwhile, and check every run's exit status, "
                                   "invariants, stop and leftovers.  Ends with one line per failure "
                                   "kind and the command that reproduces it; exit 1 on any failure.")
    t.add_argument("--duration", default="10m", metavar="D",
                   help="time budget: seconds, or with s, m or h (default 10m)")
    t.add_argument("--seed", type=int, default=None, metavar="S",
                   help="the random configurations' seed (default: from the clock, printed)")
    t.add_argument("--max-cpus", type=int, default=0, metavar="N",
                   help=f"at most N CPUs per run (default {MAX_OVERSUBSCRIPTION} x the cores)")
    t.add_argument("--max-run", type=float, default=3.0, metavar="SECONDS",
                   help="longest run duration (default 3)")
    t.add_argument("--json", metavar="FILE", help="write the summary document")


def cmd_torture(a: Any) -> int:
    budget = parse_duration(a.duration)
    if a.max_cpus < 0 or a.max_run <= 0:
        raise ConfigError("--max-cpus must be >= 0 and --max-run positive")
    seed = a.seed if a.seed is not None else int(time.time()) % 100_000
    cores = len(os.sched_getaffinity(0))
    max_cpus = a.max_cpus or MAX_OVERSUBSCRIPTION * cores
    print(f"rmap-stress torture: {budget:.0f} s, seed {seed}, up to {max_cpus} CPUs on {cores} cores",
          file=sys.stderr, flush=True)
    root = Path(__file__).resolve().parents[2]

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # ends the current run too (run_one), exit 130

    signal.signal(signal.SIGTERM, on_term)
    doc = torture(budget, seed, max_cpus, a.max_run, lambda line: print(line, file=sys.stderr, flush=True),
                  root)
    for line in summary_lines(doc):
        print(line)
    if a.json:
        write_json(a.json, doc)
        print(f"wrote {a.json}" if a.json != "-" else "wrote the document to standard output",
              file=sys.stderr)
    return 1 if doc["failures"] else 0

"""The parent of a stress run: build the model, start the CPUs, open the gate, watch,
stop, reap, account, check, clean up.

Cleanup is in ``finally`` whatever happens: raise stop, join each CPU with a timeout, kill
what remains, drop the views and unlink the segment.  A CPU that dies ends the run (see
RunFailed); the model is still checked, since a CPU killed mid-update leaves it
inconsistent and the report should say so.

Start-up has to scale to many more CPUs than the machine has (oversubscription is one of
the failure modes users come to show).  Each CPU blocks at the start gate in ``read`` on a
pipe, using no CPU while the parent forks the rest; the parent opens the gate by closing
the pipe's write end, which wakes every CPU at once.  Signals are blocked across each
``fork`` (a child must not run the parent's handler) and honoured between forks.

Signals (see _Signals): before the gate opens the first one ends the start-up at once
(there are no results to save); after it, the first one stops the run and the results so
far are collected and checked; a repeat of the same signal within a second is the same
signal (``timeout`` sends it to the process and again to its group); any other signal
after that aborts at once, still writing what can be gathered without the check.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing as mp
import os
import re
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np
import psutil

from shared_model.build import check_fits
from shared_model.invariants import check_model
from shared_model.layout import CPU_STATE, OWNER_WORD, lock_namer
from shared_model.model import Model
from shared_model.precompile import warm_up
from shared_model.segment import sweep_stale_segments
from shared_model.swapdev import swap_device_init, swap_device_stats

from . import metrics, ui
from .config import RunConfig
from .results import SCHEMA_RUN, machine_info
from .worker import model_op_name, worker_main
from .workloads import get_workload

log = logging.getLogger("rmap_stress")
JOIN_TIMEOUT_S = 5.0  # at most this for the CPUs to finish their operation and leave
ABORT_TIMEOUT_S = 30.0  # at most this for aborted CPUs to leave (while they do) before SIGKILL
STOP_GRACE_S = 1.0  # aborting (or a failure's stop): no CPU left for this long: SIGKILL
GATE_TIMEOUT_S = 30.0  # after the last fork, for every CPU to reach the gate
GATE_TIMEOUT_PER_CPU_S = 0.05  # plus this per CPU (their start-up shares the machine)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REPEAT_S = 1.0  # the same signal again within this is the same signal
STOPPING_MESSAGE = "stopping: checking the model, Ctrl-C again to quit"
PhaseCallback = Callable[[str, int, int], None]
"""``on_phase(phase, done, total)``: progress of the silent phases, for a terminal line.
Phases: "build" (done and total in thousandths), "start" (CPUs at the gate of all),
"stop" (CPUs at a boundary between operations, of all), "check" (0 of 1 when it begins,
1 of 1 when it ends)."""


class RunFailed(RuntimeError):
    """A CPU died, the run stalled, or it could not start; ``results`` holds what was
    gathered (marked ``failed``) when there is any."""

    def __init__(self, msg: str, results: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.results = results


class RunInterrupted(RuntimeError):
    """SIGINT, SIGTERM or SIGHUP: the CPUs were stopped and ``results`` (marked ``interrupted``) holds
    what was gathered, or is None when the signal came before the start gate opened
    (``phase`` says where); the exit status is 128 + signum."""

    def __init__(self, signum: int, results: dict[str, Any] | None, phase: str = "running") -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} while {phase}")
        self.signum = signum
        self.results = results
        self.phase = phase


class _Abort(BaseException):
    """Raised by the signal handler to end a phase at once (BaseException: no ``except
    Exception`` on the way may swallow it)."""


@dataclasses.dataclass
class Tick:
    """What the parent sees once per sampling interval (for progress and live views)."""

    elapsed: float
    duration: float
    cpu: np.ndarray  # copy of the per-CPU slots
    now_ns: int  # perf_counter_ns when the copy was taken (the workers' clock)
    owners: dict[int, int] = dataclasses.field(default_factory=dict)  # waited lock word -> owner tag
    lock_names: Callable[[int], str] | None = None  # lock word -> "anon_vma#3", "ptl(mm 5)", ...
    # waited lock word -> seconds it has read as wedged (lock_is_wedged) at every tick
    wedged: dict[int, float] = dataclasses.field(default_factory=dict)


class _WedgedWatch:
    """How long each waited lock has read as wedged (``locking.lock_is_wedged``: a ticket
    or MCS place, or the pending bit, that nobody will take) at every tick in a row.  A
    single reading proves nothing while CPUs run (a hand-off in flight reads the same for a
    moment); a CPU that died queued leaves it so for good, and the live view names such a
    lock once it has read so for ``live.WEDGED_SHOW_S``."""

    def __init__(self, wedged_among: Callable[[list[int]], set[int]]) -> None:
        self.wedged_among = wedged_among
        self.since: dict[int, float] = {}

    def __call__(self, now: float, waited: list[int]) -> dict[int, float]:
        now_wedged = self.wedged_among(waited)
        self.since = {w: self.since.get(w, now) for w in now_wedged}
        return {w: now - t for w, t in self.since.items()}


class _Signals:
    """SIGINT, SIGTERM and SIGHUP for the length of a run.  SIGHUP matters: a closed
    terminal or tmux session sends it to the whole group, so the parent must clean up.

    * Before the gate opens (``quick``), the first signal raises _Abort at once: nothing
      has been measured.  Across a fork (``defer``) it is only remembered, and the caller
      checks ``signum`` after the fork.
    * After, the first signal is remembered and acknowledged (STOPPING_MESSAGE); the run
      winds down, collects and checks the model.
    * The same signal again within REPEAT_S of the first is the same signal::

          timeout                      rmap-stress
          kill(child, SIGTERM)         first SIGTERM: stop, collect, check
          kill(group, SIGTERM)         a duplicate, 0.1 ms later: ignored

      Anything else (another signal, or the same one later) raises _Abort: the run ends
      at once, still cleaning up, with what can be gathered quickly.
    * ``status_signum`` decides the exit status: the first signal, or SIGTERM if one came
      at all (a supervisor's SIGTERM always gives 143).
    """

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.signum = 0
        self.status_signum = 0
        self.first_at = 0.0
        self.quick = True
        self.defer = False
        self.aborted = False
        self.saved: dict[int, Any] = {}
        self.abort: Callable[[], None] | None = None  # raises the stop word to "abort"
        self.say = say

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.signum:
            self.signum = self.status_signum = signum
            self.first_at = now
            if not self.quick and self.say:
                self.say(STOPPING_MESSAGE)
            elif self.quick and not self.defer:
                self._abort()
            return
        if signum == signal.SIGTERM:
            self.status_signum = signum
        if signum == self.signum and now - self.first_at < REPEAT_S:
            return
        if not self.defer:
            self._abort()

    def _abort(self) -> None:
        if self.aborted:  # already on the way out
            return
        self.aborted = True
        if self.abort:
            self.abort()  # lock waits give up: the reaping that follows is quick
        raise _Abort

    def ignore(self) -> None:
        """From here on (cleanup), further signals are ignored: the memory gets released."""
        for sig in self.saved:
            signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        # After a signal the process is on its way out: a late duplicate must not turn
        # the writing of the results into a KeyboardInterrupt.
        if self.signum:
            self.ignore()
            return
        for sig, h in self.saved.items():
            signal.signal(sig, h)


STATE_NAMES = {v: k for k, v in CPU_STATE.items()}


# What the OS says of a CPU process, where it explains a CPU that makes no progress (a
# running or sleeping process says nothing more).
OS_STATES = {psutil.STATUS_STOPPED: "stopped by a signal", psutil.STATUS_TRACING_STOP: "stopped by a tracer",
             psutil.STATUS_DISK_SLEEP: "in uninterruptible sleep", psutil.STATUS_ZOMBIE: "exited, not reaped",
             psutil.STATUS_DEAD: "dead"}


def _os_state(pid: int) -> str:
    """", stopped by a signal" and the like for a CPU process the OS holds off the CPU
    (someone SIGSTOPped it, a debugger holds it); empty for a running or sleeping one, or
    one that is gone."""
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return ""
    return f", {OS_STATES[status]}" if status in OS_STATES else ""


def cpu_states(m: Model, cpu: np.ndarray, now_ns: int) -> list[str]:
    """One line per CPU: what it is doing, what it waits for and holds, since when."""
    held: dict[int, list[str]] = {}
    for name, pid, c in m.held_locks():
        held.setdefault(c, []).append(name)
    lines = []
    for i, c in enumerate(cpu):
        state = STATE_NAMES.get(int(c["state"]), "?")
        since = (now_ns - int(c["state_since_ns"])) / 1e6 if c["state_since_ns"] else 0.0
        line = f"cpu{i} (pid {int(c['pid'])}{_os_state(int(c['pid']))}):"
        if c["wait_lock"] >= 0:  # "waiting for", not "wait waiting for"
            line += f" waiting for {m.describe_lock(int(c['wait_lock']))} for {since:.0f} ms"
        elif state in ("walk", "wait", "iowait"):
            line += f" {state} for {since:.0f} ms"
        else:
            line += f" {state}"
        if held.get(i):
            line += f", holding {', '.join(held[i])}"
        lines.append(line)
    return lines


def compile_once() -> None:
    """Compile (or load from cache) the model's compiled code before any CPU is forked, and
    say so on a cold start, which takes a while (see shared_model/precompile.py): "compiling
    k/N" as it goes (one line rewritten in place on a terminal, every tenth otherwise)."""
    cold: list[str] = []
    tty = sys.stderr.isatty()
    shown = [-1]
    t0 = time.monotonic()

    def note(msg: str) -> None:
        cold.append(msg)
        print(f"rmap-stress: {msg} ...", file=sys.stderr, flush=True)

    def progress(done: int, total: int) -> None:
        step = done * 10 // max(total, 1)
        if done == shown[0] or (not tty and step == shown[0] * 10 // max(total, 1)
                                and done != total):
            return
        shown[0] = done
        end = "" if tty and done < total else "\n"
        lead = "\r" if tty else ""
        print(f"{lead}rmap-stress: compiling {done}/{total} functions ... "
              f"{time.monotonic() - t0:.0f} s", end=end, file=sys.stderr,
              flush=True)

    took = warm_up(note, progress)
    if cold:
        print(f"rmap-stress: compiled in {took:.1f} s (cached for later runs)", file=sys.stderr, flush=True)


def run(cfg: RunConfig, on_tick: Callable[[Tick], None] | None = None,
        tick_s: float = 1.0, stall_timeout: float | None = None,
        on_phase: PhaseCallback | None = None) -> dict[str, Any]:
    """One stress run; returns the results document (schema rmap-stress/1).

    Raises RunFailed (a CPU died, or no CPU made progress for ``stall_timeout`` seconds)
    or RunInterrupted, each carrying the partial results (None if interrupted before the
    gate opened).  ``on_phase`` hears the progress of build, start-up and check.

    The phases: build the model and start the CPUs (``_start``), the measured window
    (``_measure``), the stop at operation boundaries and the model's check
    (``_stop_and_check``); a second signal quits at once (``_quit_now``); whatever
    happened, ``_Live.close`` leaves no process and no segment behind."""
    cfg = cfg.resolved()
    workload = get_workload(cfg.scenario)
    caps = workload.capacities(cfg)
    check_fits(caps)
    sweep_stale_segments()
    _raise_fd_limit(3 * cfg.cpus + 64)
    compile_once()
    machine = machine_info()
    t_build = time.perf_counter()
    with _Signals(say=ui.say_from_handler) as sigs:
        try:
            m = Model.create(caps, cfg.era, cfg.lock, entry_cost_ns=cfg.entry_cost_ns)
        except _Abort:
            raise RunInterrupted(sigs.status_signum, None, "building the model") from None
        live = _Live.open(cfg, m, sigs, machine)
        try:
            state = _start(live, workload, caps, t_build, on_phase)
            _measure(live, on_tick, tick_s, stall_timeout)
            results = _stop_and_check(live, workload, state, stall_timeout, on_phase)
        except _Abort:
            results = _quit_now(live)
        finally:
            live.close()
        return _outcome(results, live.sampler, live.build_s, live.phases, live.failure, live.report, sigs)


@dataclasses.dataclass
class _Live:
    """One run in progress: what ``run``'s phases hand on, and what its abort and its
    clean-up must see however far the run got."""

    cfg: RunConfig
    m: Model
    sigs: _Signals
    machine: dict[str, Any]
    gate_r: int
    gate_wfd: int  # -1 once the gate opened
    procs: list[mp.process.BaseProcess] = dataclasses.field(default_factory=list)
    phase: str = "building the model"
    build_s: float = 0.0
    elapsed: float = 0.0
    start_ns: int = 0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds starting, stopping, ...
    sampler: _Timeline | None = None
    nice: int | None = None  # the parent's own nice value, when it raised its priority
    window: tuple[np.ndarray, int, int] | None = None  # slots, now_ns, start_ns at the end
    window_lockstat: np.ndarray | None = None  # lockstat at the end
    failure: str | None = None
    report: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def open(cls, cfg: RunConfig, m: Model, sigs: _Signals, machine: dict[str, Any]) -> _Live:
        gate_r, gate_wfd = os.pipe()
        live = cls(cfg, m, sigs, machine, gate_r, gate_wfd)
        sigs.abort = live.abort
        return live

    @property
    def header_w(self) -> int:
        return self.m.seg.offsets["header"] // 8

    @property
    def gate_w(self) -> int:
        return self.header_w + 1

    @property
    def stop_w(self) -> int:
        return self.header_w + 2

    def cpu_arr(self) -> np.ndarray:
        """The CPUs' slots in the segment (a view: drop it before the model closes)."""
        return self.m.seg["cpu"][: self.cfg.cpus]

    def abort(self) -> None:
        self.m.locks.words[self.stop_w] = 2

    def close(self) -> None:
        """The clean-up, which must run to its end: restore the priority, send every CPU
        home, join them, unmap and unlink the segment."""
        self.sigs.ignore()
        self.sigs.abort = None
        if self.nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        words = self.m.locks.words
        words[self.stop_w] = max(int(words[self.stop_w]), 1)
        if self.gate_wfd >= 0:
            os.close(self.gate_wfd)  # wakes CPUs still at the gate; the stop word sends them home
        os.close(self.gate_r)
        _reap(self.procs, words, self.stop_w)
        del words
        self.m.close()
        self.m.seg.unlink()


def _start(live: _Live, workload: Any, caps: Any, t_build: float,
           on_phase: PhaseCallback | None) -> Any:
    """Build the scenario's model, fork the CPUs, and open the gate; the scenario's state."""
    cfg, m = live.cfg, live.m
    with _BuildProgress(m, caps, on_phase):
        state = workload.setup(m, cfg)
    swap_device_init(m, cfg.swap_latency_ms, cfg.swap_iops, cfg.swap_queue, cfg.swap_device == "disk")
    live.build_s = time.perf_counter() - t_build
    log.info("model built in %.2f s: %r", live.build_s, m)
    live.phase = "starting the CPUs"
    t_start = time.perf_counter()
    _start_cpus(live.procs, live.sigs, cfg, m.seg, state, (live.gate_r, live.gate_wfd),
                live.cpu_arr(), on_phase)
    live.nice = _parent_priority(cfg.cpus)
    m.locks.words[live.gate_w] = 1
    live.start_ns = time.perf_counter_ns()
    os.close(live.gate_wfd)  # EOF at every CPU's read: all go at once
    live.gate_wfd = -1
    live.sigs.quick = False
    live.phases["start_s"] = time.perf_counter() - t_start
    return state


def _measure(live: _Live, on_tick: Callable[[Tick], None] | None, tick_s: float,
             stall_timeout: float | None) -> None:
    """The measured window: watch the CPUs until the duration is over (or a failure, or a
    signal), then close the window: copies of the slots and lockstat at that instant."""
    cfg, m = live.cfg, live.m
    live.phase = "running"
    t0 = time.monotonic()
    live.sampler = _Timeline(live.procs, t0)
    cpu_arr = live.cpu_arr()
    names = lock_namer(m.seg.offsets, m.caps)
    live.failure = _watch(m, cfg, live.procs, cpu_arr, m.locks.words, names, live.sigs, live.sampler,
                          t0, on_tick, tick_s, stall_timeout)
    if live.failure:
        live.report = cpu_states(m, np.array(cpu_arr), time.perf_counter_ns())
    live.elapsed = time.monotonic() - t0
    # The window closes: the CPUs' slots now, before any is stopped or killed, so that
    # waits and walks still in progress count (metrics.window_end).
    live.window = (np.array(cpu_arr), time.perf_counter_ns(), live.start_ns)
    live.window_lockstat = np.array(m.seg["lockstat"][: cfg.cpus])
    # The last timeline interval, so a plot's timeline runs to the end.
    live.sampler.maybe_sample(time.monotonic(), cpu_arr, final=True)


def _stop_and_check(live: _Live, workload: Any, state: Any, stall_timeout: float | None,
                    on_phase: PhaseCallback | None) -> dict[str, Any]:
    """Every CPU to an operation boundary (``_reap``), then the model's check and the
    results document."""
    cfg, m = live.cfg, live.m
    live.phase = "stopping"
    t_stop = time.perf_counter()
    m.locks.words[live.stop_w] = 2 if live.failure else 1
    stop_stall = stall_timeout or STOP_STALL_S
    cpu_arr = live.cpu_arr()

    def states_now() -> list[str]:
        return cpu_states(m, np.array(cpu_arr), time.perf_counter_ns())

    stop = _reap(live.procs, m.locks.words, live.stop_w, cpu_arr, stop_stall, on_phase, states_now)
    live.phases["stop_s"] = time.perf_counter() - t_stop
    if stop.stalled and not live.failure:
        live.failure = (f"stalled while stopping: {len(stop.stalled)} of {cfg.cpus} CPUs made no "
                        f"progress for {stop_stall:g} s (--stall-timeout) and were aborted "
                        f"inside an operation")
        live.report = stop.stalled_states
    live.phase = "checking the model"
    if on_phase:
        on_phase("check", 0, 1)
    t_check = time.perf_counter()
    results = collect(m, cfg, live.machine, live.elapsed, live.build_s, window=live.window,
                      window_lockstat=live.window_lockstat)
    if hasattr(workload, "results"):  # a scenario's own section (shared-swapin: seed_bug)
        results.update(workload.results(m, state, results))
    live.phases["check_s"] = time.perf_counter() - t_check
    results["stop"] = stop_outcome(stop, np.array(cpu_arr), live.phases["stop_s"])
    explain_violations(results)
    if on_phase:
        on_phase("check", 1, 1)
    return results


def _quit_now(live: _Live) -> dict[str, Any]:
    """A second signal: quit at once, with what can be gathered without the model check
    (fast); RunInterrupted with nothing if the gate had not opened (nothing measured)."""
    live.sigs.ignore()
    if live.sampler is None:
        raise RunInterrupted(live.sigs.status_signum, None, live.phase) from None
    m, cpu_arr = live.m, live.cpu_arr()
    live.elapsed = live.elapsed or time.monotonic() - live.sampler.t0
    if live.window is None:
        live.window = (np.array(cpu_arr), time.perf_counter_ns(), live.start_ns)
    m.locks.words[live.stop_w] = 2
    stop = _reap(live.procs, m.locks.words, live.stop_w)
    results = collect(m, live.cfg, live.machine, live.elapsed, live.build_s, check=False,
                      window=live.window, window_lockstat=live.window_lockstat)
    results["stop"] = stop_outcome(stop, np.array(cpu_arr), None)
    results["aborted"] = f"a second signal while {live.phase}: the model was not checked"
    return results


def _outcome(results: dict[str, Any], sampler: _Timeline | None, build_s: float,
             phases: dict[str, float], failure: str | None, report: list[str],
             sigs: _Signals) -> dict[str, Any]:
    """The end of ``run``, the model closed: the timeline and the phases' times go into the
    results, which are returned, or raised with RunFailed (``failure``, the CPUs' states
    ``report``) or RunInterrupted (a signal came)."""
    if sampler is not None:
        results["timeline"] = sampler.samples
    results["phases"] = {"build_s": build_s, **phases}
    if failure:
        wedged = [f"wedged lock: {name} (a CPU died queued for it: unusable)"
                  for name in results.get("wedged_locks", [])]
        results["failed"] = {"reason": failure, "cpu_states": report,
                             "note": "the model may have been mid-update: see invariants"}
        raise RunFailed(failure + "\n" + "\n".join(report + wedged), results)
    if sigs.signum:
        results["interrupted"] = True
        raise RunInterrupted(sigs.status_signum, results)
    return results


def _watch(m: Model, cfg: RunConfig, procs: list[mp.process.BaseProcess], cpu_arr: np.ndarray,
           words: np.ndarray, names: Callable[[int], str], sigs: _Signals, sampler: _Timeline,
           t0: float, on_tick: Callable[[Tick], None] | None, tick_s: float,
           stall_timeout: float | None) -> str | None:
    """The run itself, from the gate's opening at ``t0``: until the duration is over or a
    signal came, watch the running CPUs, sample the timeline, and tell ``on_tick`` every
    ``tick_s``.  Returns the failure that ended it early (a CPU died, or none made progress
    for ``stall_timeout`` seconds), or None."""
    next_tick = t0 + tick_s
    progress, last_progress = -1, t0
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    watch = _WedgedWatch(m.wedged_among)
    while (now := time.monotonic()) < t0 + cfg.duration and not sigs.signum:
        i = _first_dead(procs, by_pid)
        if i is not None:
            code = procs[i].exitcode or 0
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            return f"cpu{i} (pid {procs[i].pid}) died ({how}) {now - t0:.1f} s into the run"
        beat = int(cpu_arr["heartbeat"].sum())
        if beat != progress:
            progress, last_progress = beat, now
        elif stall_timeout and now - last_progress > stall_timeout:
            return (f"stall: no CPU made progress for {now - last_progress:.1f} s "
                    f"(--stall-timeout {stall_timeout:g})")
        sampler.maybe_sample(now, cpu_arr)
        if on_tick and now >= next_tick:
            on_tick(_tick(now - t0, cfg.duration, cpu_arr, words, names, watch))
            next_tick += tick_s
        time.sleep(min(0.05, max(0.0, t0 + cfg.duration - now)))
    return None


def _start_cpus(procs: list[mp.process.BaseProcess], sigs: _Signals, cfg: RunConfig, seg: Any,
                state: Any, gate: tuple[int, int], cpu_arr: np.ndarray,
                on_phase: PhaseCallback | None) -> None:
    """Fork the CPUs and wait until every one is at the gate (its pid published).

    Signals are blocked across each fork, so a child never runs the parent's handler (it
    ignores them before unblocking); one that came during the fork is acted on after it."""
    ctx = mp.get_context("fork")
    gc.collect()
    gc.freeze()  # the parent's objects stay out of the children's GC: fewer copied pages
    try:
        for cpu in range(cfg.cpus):
            p = ctx.Process(target=worker_main, name=f"rmap-stress-cpu{cpu}",
                            args=(seg, cfg, state, cpu, os.getpid(), gate), daemon=True)
            old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
            sigs.defer = True
            try:
                p.start()
                procs.append(p)
            finally:
                sigs.defer = False
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
            if sigs.signum:
                sigs._abort()
            if on_phase and (cpu % 8 == 7 or cpu == cfg.cpus - 1):
                on_phase("start", int(np.count_nonzero(cpu_arr["pid"] > 0)), cfg.cpus)
    finally:
        gc.unfreeze()
    deadline = time.monotonic() + GATE_TIMEOUT_S + GATE_TIMEOUT_PER_CPU_S * cfg.cpus
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    while (ready := int(np.count_nonzero(cpu_arr["pid"] > 0))) < cfg.cpus:
        dead = _first_dead(procs, by_pid)
        if dead is not None or time.monotonic() > deadline:
            raise RunFailed(f"cpu{'?' if dead is None else dead} did not reach the start gate "
                            f"({ready} of {cfg.cpus} did)")
        if on_phase:
            on_phase("start", ready, cfg.cpus)
        time.sleep(0.02)
    if on_phase:
        on_phase("start", cfg.cpus, cfg.cpus)


PARENT_NICE = -10


def _parent_priority(cpus: int) -> int | None:
    """With more CPUs than the machine has, raise the parent's priority (after the forks:
    the CPUs keep the nice value it had), and return the old nice value to restore.

    The parent is the instrument: it samples, watches for dead CPUs and stalls, and stops
    the run.  At nice 0 among 1024 spinning CPUs on 2 cores it gets a 512th of a core, and
    every millisecond of its work took half a second; at nice -10 it gets about nine times
    as much.  Needs CAP_SYS_NICE (root); without it nothing changes."""
    if cpus <= len(os.sched_getaffinity(0)):
        return None
    old = os.getpriority(os.PRIO_PROCESS, 0)
    if old <= PARENT_NICE:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PARENT_NICE)
    except OSError:
        return None
    log.info("parent: nice %d -> %d for %d oversubscribed CPUs", old, PARENT_NICE, cpus)
    return old


def _raise_fd_limit(need: int) -> None:
    """Each CPU costs the parent a pipe end (multiprocessing's sentinel): make sure a
    thousand CPUs do not run out of file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):  # pragma: no cover - the fork will say what is wrong
            pass


class _BuildProgress:
    """While the parent builds the model, a thread reports how far it got, from the free
    stacks (records of mm and page in use of what the family will hold).  Reads only; the
    thread is joined before any fork, so no child inherits it."""

    def __init__(self, m: Model, caps: Any, on_phase: PhaseCallback | None) -> None:
        self.m, self.caps, self.on_phase = m, caps, on_phase
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def fraction(self) -> float:
        m, caps = self.m, self.caps
        mms = 1 - m.free_count("mm") / max(caps.capacity("mm"), 1)
        pages = 1 - m.free_count("page") / max(caps.capacity("page"), 1)
        return min(1.0, (mms + pages) / 2)

    def _loop(self) -> None:
        assert self.on_phase is not None
        while not self.done.wait(0.25):
            self.on_phase("build", int(1000 * self.fraction()), 1000)

    def __enter__(self) -> Self:
        if self.on_phase:
            self.on_phase("build", 0, 1000)
            self.thread = threading.Thread(target=self._loop, name="build-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
            if exc[0] is None and self.on_phase:
                self.on_phase("build", 1000, 1000)


def _first_dead(procs: list[mp.process.BaseProcess], by_pid: dict[int | None, int]) -> int | None:
    """The index of a CPU that has exited, or None.  One ``waitid(WNOWAIT)`` asks the
    kernel about all children at once without reaping: with 256 CPUs on 2 cores the parent
    gets a few ms of CPU a second, and 256 ``waitpid`` calls 20 times a second took it all."""
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        info = None
    if info is None:
        return None
    i = by_pid.get(info.si_pid)
    if i is not None:
        return i if procs[i].exitcode is not None else None
    # Some other child of this process (a caller's) exited: ask each CPU.
    return next((i for i, p in enumerate(procs) if p.exitcode is not None), None)


class _Timeline:
    """About once a second: each CPU's time shares over the last interval (from its own
    cumulative counters) and the OS's figures for its process (psutil: cumulative user and
    system seconds, context switches), so a collapse can be watched as it develops.

    The OS figures cost the parent two /proc reads per CPU; beyond OS_FIGURES_MAX_CPUS
    (oversubscribed runs, where the parent gets a few ms of CPU a second) they are left
    out of the timeline, and the end-of-run per-CPU figures still have them."""

    INTERVAL_S = 1.0
    OS_FIGURES_MAX_CPUS = 64

    def __init__(self, procs: list[mp.process.BaseProcess], t0: float) -> None:
        self.t0 = t0
        self.next = t0 + self.INTERVAL_S
        self.samples: list[dict[str, Any]] = []
        self.ps: list[psutil.Process | None] = []
        for p in (procs if len(procs) <= self.OS_FIGURES_MAX_CPUS else []):
            try:
                self.ps.append(psutil.Process(p.pid))
            except psutil.Error:
                self.ps.append(None)
        self.prev: dict[str, np.ndarray] | None = None
        self.prev_ns = time.perf_counter_ns()

    def maybe_sample(self, now: float, cpu_arr: np.ndarray, final: bool = False) -> None:
        """A sample once INTERVAL_S has passed; ``final``: the last, shorter interval too
        (at least a tenth of one), so the timeline covers the whole run."""
        if final:
            last = self.samples[-1]["t"] if self.samples else 0.0
            if now - self.t0 - last < 0.1 * self.INTERVAL_S:
                return
        elif now < self.next:
            return
        self.next += self.INTERVAL_S
        cpu = np.array(cpu_arr)
        now_ns = time.perf_counter_ns()
        span = max(now_ns - self.prev_ns, 1)
        totals = self._totals(cpu, now_ns)
        rows = []
        for i, c in enumerate(cpu):
            row: dict[str, Any] = {"cpu": i}
            for key, field in self.FIELDS:
                before = int(self.prev[field][i]) if self.prev is not None else 0
                row[key] = min(max((int(totals[field][i]) - before) / span, 0.0), 1.0)
            row.update(walks=int(c["walks"]), pages_scanned=int(c["pages_scanned"]), jobs=int(c["jobs"]))
            ps = self.ps[i] if i < len(self.ps) else None
            try:
                if ps is not None:
                    ct, cs = ps.cpu_times(), ps.num_ctx_switches()
                    row.update(utime=ct.user, stime=ct.system, voluntary_ctx=cs.voluntary,
                               involuntary_ctx=cs.involuntary)
            except psutil.Error:
                pass
            rows.append(row)
        self.samples.append({"t": round(now - self.t0, 3), "cpus": rows})
        self.prev, self.prev_ns = totals, now_ns

    FIELDS = (("walk", "t_walk_ns"), ("lock_wait", "t_wait_ns"), ("work", "t_work_ns"),
              ("iowait", "t_iowait_ns"))
    # A CPU publishes a wait, walk or iowait when it ends; the one under way counts from
    # its start (state_since_ns), so a wait that never ends (a deadlock, a stall) shows in
    # the timeline as it does in the end-of-run shares, not as 0%.
    IN_PROGRESS: ClassVar[dict[str, int]] = {"t_wait_ns": CPU_STATE["wait"], "t_walk_ns": CPU_STATE["walk"],
                                             "t_iowait_ns": CPU_STATE["iowait"]}

    def _totals(self, cpu: np.ndarray, now_ns: int) -> dict[str, np.ndarray]:
        """Each CPU's cumulative time per field, the interval under way included."""
        out = {}
        state = cpu["state"].astype(np.int64)
        running = np.maximum(now_ns - cpu["state_since_ns"].astype(np.int64), 0)
        for _, field in self.FIELDS:
            total = cpu[field].astype(np.int64)
            st = self.IN_PROGRESS.get(field)
            if st is not None:
                total = total + np.where((state == st) & (cpu["state_since_ns"] > 0), running, 0)
            out[field] = total
        return out


def _tick(elapsed: float, duration: float, cpu_arr: np.ndarray, words: np.ndarray,
          names: Callable[[int], str], watch: _WedgedWatch | None = None) -> Tick:
    """A copy of the per-CPU slots, and of the owner word of each lock a CPU waits on.

    Reads only, takes no lock: a slot or an owner may be a moment stale, and the live view
    reads them defensively.  ``now_ns`` is read after the copy, so no age is negative."""
    cpu = np.array(cpu_arr)
    now_ns = time.perf_counter_ns()
    waited = cpu["wait_lock"][(cpu["state"] == CPU_STATE["wait"]) & (cpu["wait_lock"] >= 0)]
    owners = {int(w): int(words[int(w) + OWNER_WORD]) for w in np.unique(waited)}
    wedged = watch(elapsed, list(owners)) if watch is not None else {}
    return Tick(elapsed, duration, cpu, now_ns, owners, names, wedged)


def _reap(procs: list[mp.process.BaseProcess], words: np.ndarray, stop_w: int,
          cpu_arr: np.ndarray | None = None, stall_s: float = 0.0,
          on_phase: PhaseCallback | None = None,
          states: Callable[[], list[str]] | None = None) -> _Stop:
    """Join every CPU, and say how the stop went.

    With ``cpu_arr`` (the end of a run, stop word 1): every CPU finishes the operation it
    is in and leaves at the next boundary between operations, however long that takes, as
    long as some CPU makes progress (_stop_at_boundaries); only when none has for
    ``stall_s`` does the stop escalate: lock waits are aborted (stop word 2), which leaves
    those operations half-done.  Without it (a failure, a second signal, the cleanup) the
    old rule: wait while CPUs keep leaving (up to JOIN_TIMEOUT_S), abort lock waits once
    none left for STOP_GRACE_S.  Either way, aborted CPUs get ABORT_TIMEOUT_S to leave,
    then what remains is SIGKILLed.  ``states`` gives cpu_states() lines, read for the
    stalled CPUs before their waits are aborted.

    Why not "no CPU left for a second": with 64 CPUs on 2 cores queued on one ticket lock,
    each hand-off waits for the next CPU in line to be scheduled, and a second often passes
    without any CPU reaching a boundary while every one of them is moving.  Aborting then
    broke the model in operations that would have finished."""
    stop = _Stop()
    if words[stop_w] < 2 and cpu_arr is not None:
        stop.stalled = _stop_at_boundaries(procs, cpu_arr, stall_s, on_phase)
        if stop.stalled and states is not None:
            stop.stalled_states = [line for i, line in enumerate(states()) if i in stop.stalled]
    elif words[stop_w] < 2:
        _join_while_leaving(procs, JOIN_TIMEOUT_S, STOP_GRACE_S)
    stop.aborted = [i for i, p in enumerate(procs) if p.exitcode is None]
    if stop.aborted:
        words[stop_w] = 2
        _join_while_leaving(procs, ABORT_TIMEOUT_S, STOP_GRACE_S)
    for i, p in enumerate(procs):
        if p.exitcode is None:
            stop.killed.append(i)
            p.kill()
    _join_all(procs, 5.0)
    return stop


@dataclasses.dataclass
class _Stop:
    """How the CPUs left: ``stalled``, those that made no progress for the stall timeout
    while the others reached a boundary (with ``stalled_states``, their cpu_states lines
    then); ``aborted``, those still in an operation when lock waits were aborted;
    ``killed``, those SIGKILLed after that."""

    stalled: list[int] = dataclasses.field(default_factory=list)
    stalled_states: list[str] = dataclasses.field(default_factory=list)
    aborted: list[int] = dataclasses.field(default_factory=list)
    killed: list[int] = dataclasses.field(default_factory=list)


# Per-CPU counters that move whenever a CPU gets anywhere: an operation done (heartbeat,
# and the counts of each kind), a contended lock acquired (t_wait_ns is added when the
# wait ends), a walk ended, a slice of an I/O sleep, the CPU left (done).
PROGRESS_FIELDS = ("heartbeat", "t_wait_ns", "t_walk_ns", "t_iowait_ns", "done", "walks",
                   "pages_scanned", "faults", "cows", "forks", "exits", "swapins")
STOP_STALL_S = 10.0  # the stop's stall timeout when the run has none (--stall-timeout 0)
STOP_NOTE_S = 5.0  # a log line this often while the stop takes long


def _progress(cpu_arr: np.ndarray) -> np.ndarray:
    """Per CPU, a number that grows whenever it makes progress (a sum of counters that
    only grow): a copy, read without a lock."""
    snap = np.array(cpu_arr)
    total = np.zeros(len(snap), dtype=np.int64)
    for f in PROGRESS_FIELDS:
        total += snap[f]
    return total


def _stop_at_boundaries(procs: list[mp.process.BaseProcess], cpu_arr: np.ndarray, stall_s: float,
                        on_phase: PhaseCallback | None) -> list[int]:
    """Wait until every CPU has left (each leaves at its next boundary between operations),
    for as long as some CPU makes progress; return the CPUs still there when none made any
    for ``stall_s`` (empty: all reached a boundary).  ``on_phase("stop", k, n)`` hears k of
    n CPUs at a boundary.

    Progress is global, not per CPU: in a ticket convoy on an oversubscribed machine one
    waiter may see no hand-off for seconds while the queue moves ahead of it."""
    n = len(procs)
    alive = {p.sentinel: i for i, p in enumerate(procs) if p.exitcode is None}
    poller = select.poll()
    for fd in alive:
        poller.register(fd, select.POLLIN)
    now = t0 = time.monotonic()
    last, last_change, next_note = _progress(cpu_arr), now, now + STOP_NOTE_S
    while alive:
        ready = poller.poll(50)
        now = time.monotonic()
        for fd, _ in ready:
            poller.unregister(fd)
            procs[alive.pop(fd)].join(0.1)
            last_change = now
        cur = _progress(cpu_arr)
        if (cur != last).any():
            last, last_change = cur, now
        elif now - last_change > stall_s:
            return sorted(alive.values())
        if on_phase:
            on_phase("stop", n - len(alive), n)
        if now >= next_note:
            log.info("stopping: %d/%d CPUs at a boundary after %.1f s", n - len(alive), n, now - t0)
            next_note += STOP_NOTE_S
    return []


def _join_while_leaving(procs: list[mp.process.BaseProcess], timeout: float, grace: float) -> None:
    """Wait until every CPU has exited, ``timeout`` has passed, or none exited for ``grace``.

    One ``poll`` on the CPUs' sentinels per step, and a ``join`` only for those that
    exited: asking each of 1024 CPUs in turn cost a starved parent seconds per round."""
    alive = {p.sentinel: p for p in procs if p.exitcode is None}
    poller = select.poll()
    for fd in alive:
        poller.register(fd, select.POLLIN)
    now = time.monotonic()
    deadline, last_exit = now + timeout, now
    while alive and now < deadline and now - last_exit < grace:
        ready = poller.poll(50)
        now = time.monotonic()
        for fd, _ in ready:
            poller.unregister(fd)
            alive.pop(fd).join(0.1)
            last_exit = now


def _join_all(procs: list[mp.process.BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        if p.exitcode is None:
            p.join(max(0.0, deadline - time.monotonic()))


def stop_outcome(stop: _Stop, cpu: np.ndarray, stop_s: float | None) -> dict[str, Any]:
    """The results' ``stop`` block: how long the stop took, how many CPUs reached a boundary
    between operations, and each CPU that did not: the operation its aborted lock wait was
    in (its slot's ``aborted_op``), or "killed" (SIGKILLed: unknown), with what it held
    when it stalled where that is known."""
    states = {int(line.split(" ", 1)[0][3:]): line for line in stop.stalled_states}
    left: list[dict[str, Any]] = []
    for i in sorted(set(stop.aborted) | set(stop.killed)):
        op = model_op_name(int(cpu[i]["aborted_op"]))
        entry: dict[str, Any] = {"cpu": i, "operation": op or ("unknown: killed" if i in stop.killed
                                                                 else "none: left between operations"),
                                 "killed": i in stop.killed, "stalled": i in stop.stalled}
        if i in states:
            entry["state"] = states[i]
        if op or i in stop.killed:
            left.append(entry)
    return {"s": stop_s, "cpus": len(cpu), "at_boundary": len(cpu) - len(left),
            "aborted": left}


def explain_violations(results: dict[str, Any]) -> None:
    """Say what the invariant violations are: the traces of operations the stop aborted
    (``explained_by``: "cpu3 in dup_mmap", ...), or, when no operation was left half-done,
    model corruption: a bug in the model or a lock, with the first example."""
    inv, aborted = results["invariants"], results.get("stop", {}).get("aborted", [])
    if not inv.get("violations"):
        return
    seed = results.get("seed_bug") or {}
    if aborted or seed.get("unreachable_mappings") or seed.get("pages_freed_anon_vma"):
        inv["explained_by"] = [f"cpu{a['cpu']} in {a['operation']}" for a in aborted]
        if seed.get("unreachable_mappings") or seed.get("pages_freed_anon_vma"):
            inv["explained_by"].append("the seed's swap-in placement (seed_bug)")
    else:
        inv["corruption"] = inv["messages"][0] if inv["messages"] else "?"


def collect(m: Model, cfg: RunConfig, machine: dict[str, Any], elapsed: float,
            build_s: float, check: bool = True,
            window: tuple[np.ndarray, int, int] | None = None,
            window_lockstat: np.ndarray | None = None) -> dict[str, Any]:
    """The results document, from copies of the per-CPU slots; runs check_model() unless
    ``check`` is off (quitting at once).  ``window``: the slots copied when the measured
    window closed, that instant and the gate's (perf_counter_ns); ``window_lockstat``:
    the lock statistics copied then.

    The measured window ends at the deadline; the stop that follows (every CPU finishing
    its operation, which can take minutes on an oversubscribed machine, see _reap) is not
    measured.  So every CPU's times are those of the window, with the wait or walk it was
    in then (``metrics.window_end``), and lockstat is the window's when given.  Counters
    (jobs, forks, ...) are the final ones: a CPU finishes at most the operation it was in."""
    n = cfg.cpus
    cpu = np.array(m.seg["cpu"][:n])
    in_progress: dict[str, Any] = {}
    if window is not None:
        names = lock_namer(m.seg.offsets, m.caps)
        every = np.ones(n, dtype=bool)
        at_end, in_progress = metrics.window_end(window[0][:n], window[1], window[2],
                                                 lambda w: re.split(r"[#(]", names(w))[0],
                                                 only=every)
        cpu = metrics.with_window_times(cpu, at_end, every)
    lockstat = np.array(m.seg["lockstat"][:n]) if window_lockstat is None else window_lockstat[:n]
    # The lock table is the window's; the operation counters are final (every CPU finished
    # the operation it was in).  Acquisitions per site over the whole run, drain included,
    # go beside them, so that lock traffic per operation can be checked exactly.
    final = metrics.lock_rows(np.array(m.seg["lockstat"][:n])) if window_lockstat is not None \
        else None
    walkhist = np.array(m.seg["walkhist"][:n])
    lockdep = np.array(m.seg["lockdep"][:n])
    violations = check_model(m) if check else []
    locks = metrics.lock_rows(lockstat)
    cpus = metrics.cpu_rows(cpu)
    walks = metrics.walk_stats(cpu, walkhist)
    return {
        "schema": SCHEMA_RUN,
        "config": cfg.record("run", refault_order=cfg.resolved_refault_order(),
                             # a scenario that builds its own COW (shared-swapin) records that
                             cow=getattr(get_workload(cfg.scenario), "COW", cfg.cow)),
        "machine": machine,
        "elapsed_s": elapsed,
        "build_s": build_s,
        "model": m.counts(),
        "walks": walks,
        "locks": locks,
        "cpus": cpus,
        "anon_vma_wait_share": metrics.class_wait_share(locks, cpu,
                                                        in_progress=in_progress.get("wait_ns_by_class")),
        "in_progress_at_end": in_progress,
        "acquisitions_whole_run": {r["class"]: {x["site"]: x["acquisitions"] for x in r["sites"]}
                                   for r in (final if final is not None else locks)},
        # Ticket and MCS locks a CPU died queued for (a SIGKILLed waiter's ticket is never
        # served): unusable by any later run of this model.  Read after every CPU left.
        "wedged_locks": m.wedged_locks(),
        "iowait_share": metrics.iowait_share(cpu),
        "swap_device": swap_device_stats(np.array(m.seg["swapdev"]), elapsed),
        "throughput": _throughput(cpu, elapsed),
        "invariants": {"checked": check, "violations": len(violations), "messages": violations},
        "lock_order": {"checked": cfg.check_lock_order,
                       "findings": metrics.lock_order_findings(lockdep) if cfg.check_lock_order else [],
                       "edges": metrics.lock_order_edges(lockdep) if cfg.check_lock_order else []},
    }


def _throughput(cpu: np.ndarray, elapsed: float) -> dict[str, Any]:
    """The run's counts of work done (summed over the CPUs) and their rates."""
    scanned = int(cpu["pages_scanned"].sum())
    jobs = int(cpu["jobs"].sum())
    return {
        "jobs_per_min": jobs / elapsed * 60 if elapsed else 0.0,
        "pages_scanned_per_s": scanned / elapsed if elapsed else 0.0,
        "jobs": jobs,
        "pages_scanned": scanned,
        "pages_unmapped": int(cpu["pages_unmapped"].sum()),
        "refaults": int(cpu["refaults"].sum()),
        "forks": int(cpu["forks"].sum()),
        "cows": int(cpu["cows"].sum()),
        "swapins": int(cpu["swapins"].sum()),
        "direct_reclaims": int(cpu["direct_reclaims"].sum()),
        "alloc_failures": int(cpu["alloc_failures"].sum()),
        "exits": int(cpu["exits"].sum()),
        "forks_per_s": int(cpu["forks"].sum()) / elapsed if elapsed else 0.0,
        "rmap_trylock_fail": int(cpu["rmap_trylock_fail"].sum()),
        "rmap_freed_anon_vma": int(cpu["rmap_freed_anon_vma"].sum()),
    }

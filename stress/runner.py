"""The parent of a stress run: build the model, start the CPUs, open the gate, watch,
stop, reap, account, check, clean up.

Cleanup is in ``finally`` whatever happens: raise stop, join each CPU with a timeout, kill
what remains, drop the views and unlink the segment.  A CPU that dies ends the run (see
RunFailed); the model is still checked, since a CPU killed mid-update leaves it
inconsistent and the report should say so.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from shared_model.build import check_fits
from shared_model.invariants import check_model
from shared_model.jit import warm_up
from shared_model.layout import CPU_STATE, OWNER_WORD, lock_namer
from shared_model.model import Model

from . import metrics
from .config import RunConfig
from .results import SCHEMA_RUN, machine_info
from .worker import worker_main
from .workloads import get_workload

log = logging.getLogger("rmap_stress")
JOIN_TIMEOUT_S = 5.0
GATE_TIMEOUT_S = 30.0


class RunFailed(RuntimeError):
    """A CPU died, the run stalled, or it could not start; ``results`` holds what was
    gathered (marked ``failed``) when there is any."""

    def __init__(self, msg: str, results: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.results = results


class RunInterrupted(RuntimeError):
    """SIGINT, SIGTERM or SIGHUP: the CPUs were stopped and ``results`` (marked ``interrupted``) holds
    what was gathered; the exit status is 128 + signum."""

    def __init__(self, signum: int, results: dict[str, Any]) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.results = results


@dataclasses.dataclass
class Tick:
    """What the parent sees once per sampling interval (for progress and live views)."""

    elapsed: float
    duration: float
    cpu: np.ndarray  # copy of the per-CPU slots
    now_ns: int  # perf_counter_ns when the copy was taken (the workers' clock)
    owners: dict[int, int] = dataclasses.field(default_factory=dict)  # waited lock word -> owner tag
    lock_names: Callable[[int], str] | None = None  # lock word -> "anon_vma#3", "ptl(mm 5)", ...


class _Signals:
    """First SIGINT/SIGTERM/SIGHUP: remember it, the run winds down and reports.  Second:
    raise KeyboardInterrupt at once (cleanup in ``finally`` still runs).  SIGHUP matters: a
    closed terminal or tmux session sends it to the whole group, resource tracker included,
    so the parent must clean up itself."""

    def __init__(self) -> None:
        self.signum = 0
        self.saved: dict[int, Any] = {}
        self.abort: Callable[[], None] | None = None  # raises the stop word to "abort"

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum:
            if self.abort:
                self.abort()  # lock waits give up: the reaping that follows is quick
            raise KeyboardInterrupt
        self.signum = signum

    def ignore(self) -> None:
        """From here on (cleanup), further signals are ignored: the segment gets unlinked."""
        for sig in self.saved:
            signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for sig, h in self.saved.items():
            signal.signal(sig, h)


STATE_NAMES = {v: k for k, v in CPU_STATE.items()}


def cpu_states(m: Model, cpu: np.ndarray, now_ns: int) -> list[str]:
    """One line per CPU: what it is doing, what it waits for and holds, since when."""
    held: dict[int, list[str]] = {}
    for name, pid, c in m.held_locks():
        held.setdefault(c, []).append(name)
    lines = []
    for i, c in enumerate(cpu):
        state = STATE_NAMES.get(int(c["state"]), "?")
        since = (now_ns - int(c["state_since_ns"])) / 1e6 if c["state_since_ns"] else 0.0
        line = f"cpu{i} (pid {int(c['pid'])}): {state}"
        if c["wait_lock"] >= 0:
            line += f" waiting for {m.describe_lock(int(c['wait_lock']))} for {since:.0f} ms"
        elif state in ("walk", "wait"):
            line += f" for {since:.0f} ms"
        if held.get(i):
            line += f", holding {', '.join(held[i])}"
        lines.append(line)
    return lines


def compile_once() -> None:
    """Compile (or load from cache) the model's compiled code before any CPU is forked, and
    say so on a cold start, which takes a while (see shared_model/jit.py)."""
    cold: list[str] = []

    def note(msg: str) -> None:
        cold.append(msg)
        print(f"rmap-stress: {msg} ...", file=sys.stderr, flush=True)

    took = warm_up(note)
    if cold:
        print(f"rmap-stress: compiled in {took:.1f} s (cached for later runs)", file=sys.stderr, flush=True)


def run(cfg: RunConfig, on_tick: Callable[[Tick], None] | None = None,
        tick_s: float = 1.0, stall_timeout: float | None = None) -> dict[str, Any]:
    """One stress run; returns the results document (schema rmap-stress/1).

    Raises RunFailed (a CPU died, or no CPU made progress for ``stall_timeout`` seconds)
    or RunInterrupted, each carrying the partial results."""
    cfg = cfg.resolved()
    workload = get_workload(cfg.scenario)
    caps = workload.capacities(cfg)
    check_fits(caps)
    compile_once()
    machine = machine_info()
    t_build = time.perf_counter()
    with _Signals() as sigs:
        m = Model.create(caps, cfg.era, cfg.lock, entry_cost_ns=cfg.entry_cost_ns)
        seg = m.seg
        procs: list[mp.process.BaseProcess] = []
        words = m.locks.words
        gate_w, stop_w = seg.offsets["header"] // 8 + 1, seg.offsets["header"] // 8 + 2

        def abort() -> None:
            words[stop_w] = 2

        sigs.abort = abort
        failure: str | None = None
        report: list[str] = []
        try:
            state = workload.setup(m, cfg)
            build_s = time.perf_counter() - t_build
            log.info("model built in %.2f s: %r", build_s, m)
            ctx = mp.get_context("fork")
            for cpu in range(cfg.cpus):
                p = ctx.Process(target=worker_main, name=f"rmap-stress-cpu{cpu}",
                                args=(seg, cfg, state, cpu, os.getpid()), daemon=True)
                p.start()
                procs.append(p)
            cpu_arr = seg["cpu"][: cfg.cpus]
            names = lock_namer(seg.offsets, caps)
            deadline = time.monotonic() + GATE_TIMEOUT_S
            while not np.all(cpu_arr["pid"] > 0):
                dead = [i for i, p in enumerate(procs) if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    raise RunFailed(f"cpu{dead[0] if dead else '?'} did not reach the start gate")
                if sigs.signum:
                    break
                time.sleep(0.005)
            words[gate_w] = 1
            t0 = time.monotonic()
            next_tick = t0 + tick_s
            sampler = _Timeline(procs, t0)
            progress, last_progress = -1, t0
            while (now := time.monotonic()) < t0 + cfg.duration and not sigs.signum:
                dead = [i for i, p in enumerate(procs) if p.exitcode is not None]
                if dead:
                    i = dead[0]
                    code = procs[i].exitcode or 0
                    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                    failure = f"cpu{i} (pid {procs[i].pid}) died ({how}) {now - t0:.1f} s into the run"
                    report = cpu_states(m, np.array(cpu_arr), time.perf_counter_ns())
                    break
                beat = int(cpu_arr["heartbeat"].sum())
                if beat != progress:
                    progress, last_progress = beat, now
                elif stall_timeout and now - last_progress > stall_timeout:
                    failure = (f"stall: no CPU made progress for {now - last_progress:.1f} s "
                               f"(--stall-timeout {stall_timeout:g})")
                    report = cpu_states(m, np.array(cpu_arr), time.perf_counter_ns())
                    break
                sampler.maybe_sample(now, cpu_arr)
                if on_tick and now >= next_tick:
                    on_tick(_tick(now - t0, cfg.duration, cpu_arr, words, names))
                    next_tick += tick_s
                time.sleep(min(0.05, max(0.0, t0 + cfg.duration - now)))
            elapsed = time.monotonic() - t0
            words[stop_w] = 2 if failure else 1
            _reap(procs, words, stop_w)
            del cpu_arr
            results = collect(m, cfg, machine, elapsed, build_s)
            results["timeline"] = sampler.samples
            if failure:
                results["failed"] = {"reason": failure, "cpu_states": report,
                                     "note": "the model may have been mid-update: see invariants"}
                raise RunFailed(failure + "\n" + "\n".join(report), results)
            if sigs.signum:
                results["interrupted"] = True
                raise RunInterrupted(sigs.signum, results)
            return results
        finally:
            if sys.exc_info()[0] is KeyboardInterrupt:
                sigs.ignore()
            sigs.abort = None
            words[stop_w] = max(int(words[stop_w]), 1)
            _reap(procs, words, stop_w)
            del words
            m.close()
            seg.unlink()


class _Timeline:
    """About once a second: each CPU's time shares over the last interval (from its own
    cumulative counters) and the OS's figures for its process (psutil: cumulative user and
    system seconds, context switches), so a collapse can be watched as it develops."""

    INTERVAL_S = 1.0

    def __init__(self, procs: list[mp.process.BaseProcess], t0: float) -> None:
        self.t0 = t0
        self.next = t0 + self.INTERVAL_S
        self.samples: list[dict[str, Any]] = []
        self.ps: list[psutil.Process | None] = []
        for p in procs:
            try:
                self.ps.append(psutil.Process(p.pid))
            except psutil.Error:
                self.ps.append(None)
        self.prev: np.ndarray | None = None
        self.prev_ns = time.perf_counter_ns()

    def maybe_sample(self, now: float, cpu_arr: np.ndarray) -> None:
        if now < self.next:
            return
        self.next += self.INTERVAL_S
        cpu = np.array(cpu_arr)
        now_ns = time.perf_counter_ns()
        span = max(now_ns - self.prev_ns, 1)
        rows = []
        for i, c in enumerate(cpu):
            row: dict[str, Any] = {"cpu": i}
            for key, field in (("walk", "t_walk_ns"), ("lock_wait", "t_wait_ns"), ("work", "t_work_ns")):
                before = int(self.prev[i][field]) if self.prev is not None else 0
                row[key] = min(max((int(c[field]) - before) / span, 0.0), 1.0)
            row.update(walks=int(c["walks"]), pages_scanned=int(c["pages_scanned"]), jobs=int(c["jobs"]))
            ps = self.ps[i]
            try:
                if ps is not None:
                    ct, cs = ps.cpu_times(), ps.num_ctx_switches()
                    row.update(utime=ct.user, stime=ct.system, voluntary_ctx=cs.voluntary,
                               involuntary_ctx=cs.involuntary)
            except psutil.Error:
                pass
            rows.append(row)
        self.samples.append({"t": round(now - self.t0, 3), "cpus": rows})
        self.prev, self.prev_ns = cpu, now_ns


def _tick(elapsed: float, duration: float, cpu_arr: np.ndarray, words: memoryview,
          names: Callable[[int], str]) -> Tick:
    """A copy of the per-CPU slots, and of the owner word of each lock a CPU waits on.

    Reads only, takes no lock: a slot or an owner may be a moment stale, and the live view
    reads them defensively.  ``now_ns`` is read after the copy, so no age is negative."""
    cpu = np.array(cpu_arr)
    now_ns = time.perf_counter_ns()
    waited = cpu["wait_lock"][(cpu["state"] == CPU_STATE["wait"]) & (cpu["wait_lock"] >= 0)]
    owners = {int(w): int(words[int(w) + OWNER_WORD]) for w in np.unique(waited)}
    return Tick(elapsed, duration, cpu, now_ns, owners, names)


def _reap(procs: list[mp.process.BaseProcess], words: memoryview, stop_w: int) -> None:
    """Join every CPU; after JOIN_TIMEOUT_S (at once when aborting), abort lock waits, then
    SIGKILL stragglers."""
    deadline = time.monotonic() + (0.5 if words[stop_w] >= 2 else JOIN_TIMEOUT_S)
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    if any(p.is_alive() for p in procs):
        words[stop_w] = 2
        for p in procs:
            p.join(0.5)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(1.0)


def collect(m: Model, cfg: RunConfig, machine: dict[str, Any], elapsed: float,
            build_s: float) -> dict[str, Any]:
    """The results document, from copies of the per-CPU slots; runs check_model()."""
    n = cfg.cpus
    cpu = np.array(m.seg["cpu"][:n])
    lockstat = np.array(m.seg["lockstat"][:n])
    walkhist = np.array(m.seg["walkhist"][:n])
    lockdep = np.array(m.seg["lockdep"][:n])
    violations = check_model(m)
    locks = metrics.lock_rows(lockstat)
    cpus = metrics.cpu_rows(cpu)
    walks = metrics.walk_stats(cpu, walkhist)
    scanned = int(cpu["pages_scanned"].sum())
    jobs = int(cpu["jobs"].sum())
    return {
        "schema": SCHEMA_RUN,
        "config": {
            "era": cfg.era, "scenario": cfg.scenario, "users": cfg.users, "pages": cfg.pages,
            "cow": cfg.cow, "cpus": cfg.cpus, "duration": cfg.duration, "lock": cfg.lock,
            "seed": cfg.seed, "entry_cost_ns": cfg.entry_cost_ns, "work_us": cfg.work_us,
            "ram_pages": cfg.ram_pages, "alloc_fail_p": cfg.alloc_fail_p,
            "check_lock_order": cfg.check_lock_order,
        },
        "machine": machine,
        "elapsed_s": elapsed,
        "build_s": build_s,
        "model": m.counts(),
        "walks": walks,
        "locks": locks,
        "cpus": cpus,
        "anon_vma_wait_share": metrics.class_wait_share(locks, cpu),
        "throughput": {
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
        },
        "invariants": {"checked": True, "violations": len(violations), "messages": violations},
        "lock_order": {"checked": cfg.check_lock_order,
                       "findings": metrics.lock_order_findings(lockdep) if cfg.check_lock_order else [],
                       "edges": metrics.lock_order_edges(lockdep) if cfg.check_lock_order else []},
    }

#!/usr/bin/env python3
"""What the model's steps cost, each printed beside its target.

    python scripts/bench_model.py            # everything, about 3 minutes on 2 cores
    python scripts/bench_model.py --quick    # smaller repetitions, shorter runs
    python scripts/bench_model.py --only locks,walk

Sections (``--only``):
  locks    uncontended acquire+release of each primitive from compiled code, lockstat
           on and off (targets: <= 30 ns instrumented; instrumented <= 1.5x uninstrumented)
  walk     a one-entry walk including the call from Python (<= 2 us); ns per visited entry
           of a 2.6.33 walk, PTE lock included, with the model inside the last-level cache
           and far outside it (<= 20 ns in cache)
  scan     ``scan`` wall time: 2.6.33 1000 x 1000 (<= 10 s), 2.6.34 100000 x 100 (<= 30 s)
  storm    reclaim-storm, 1000 users x 100 pages, 2 CPUs: 2.6.36 pages/s (>= 200,000; the
           released 2.6.34 is printed beside it without a target, see bench_storm); the
           2.6.36/2.6.33 ratio with --entry-cost-ns 0 (>= 10) and the default (>= 20);
           2.6.33's anon_vma wait share (>= 40%); lockstat's cost (within 10%)
  compile  cold compile into an empty cache (<= 15 s) and a cached start (<= 1 s)
Every ratio comes from runs made one after another in this one invocation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from shared_model.build import build_family, family_capacities
from shared_model.ctx import KIND0
from shared_model.ctx import TSC_MULT as G_TSC_MULT
from shared_model.locking.atomics import clock_ns, rdtsc
from shared_model.locking.cached_compile import cached_njit
from shared_model.locks import (
    CLASS,
    LOCK_KINDS,
    SITE,
    local_clock,
    lock_acquire_c,
    lock_kind,
    lock_release_c,
    lockstat_hold,
)
from shared_model.model import Model
from shared_model.precompile import warm_up
from shared_model.rmap import page_referenced

AV, PTL, SITE_PR = CLASS["anon_vma"], CLASS["ptl"], SITE["page_referenced"]
REPS = 40


def _close(m: Model) -> None:
    seg = m.seg
    m.close()
    seg.unlink()


def _line(what: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
    print(f"{what:<58} {value:>14}   {target}{verdict}", flush=True)


@cached_njit
def _lock_loop(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, n: int) -> int:
    t = 0
    for _ in range(n):
        t0 = lock_acquire_c(words, g, held, w, PTL, 0, 0)
        t += lock_release_c(words, g, held, w, PTL, 0, 0, t0)
    return t


@cached_njit
def _lock_parts_loop(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, n: int, part: int) -> int:
    """The uninstrumented pair (lockstat off in ``g``) plus one part of lockstat's cost:
    0 nothing, 1 two raw TSC reads, 2 two clock reads converted (local_clock), 3 both
    reads and lockstat's stores (lockstat_hold): the instrumented path built up piece by
    piece."""
    t = 0
    for _ in range(n):
        t0 = lock_acquire_c(words, g, held, w, PTL, 0, 0)
        if part == 1:
            c0 = rdtsc()
            c1 = rdtsc()
            t += c1 - c0
        elif part >= 2:
            c0 = local_clock(g)
            c1 = local_clock(g)
            if part == 3:
                lockstat_hold(words, g, PTL, 0, c1 - c0)
            t += c1 - c0
        t += lock_release_c(words, g, held, w, PTL, 0, 0, t0)
    return t


@cached_njit
def _clock_loop(g: np.ndarray, n: int, tsc: int) -> int:
    t = 0
    for _ in range(n):
        t += local_clock(g) if tsc else clock_ns()
    return t


def bench_clock(n: int) -> None:
    """What one lockstat timestamp costs: the TSC through the calibration, clock_gettime."""
    m = Model.create(family_capacities("2.6.34", 1, 1, 1.0, 1), "2.6.34")
    try:
        for tsc, what in ((1, "TSC (rdtsc, cyc2ns)"), (0, "clock_gettime(CLOCK_MONOTONIC)")):
            _clock_loop(m.g, 1000, tsc)
            best = float("inf")
            for _ in range(REPS):
                t = time.perf_counter_ns()
                _clock_loop(m.g, n // REPS, tsc)
                best = min(best, (time.perf_counter_ns() - t) / (n // REPS))
            _line(f"lockstat clock: one read, {what}", f"{best:.1f} ns")
        if not m.g[G_TSC_MULT]:
            print("  (no usable TSC here: lockstat reads clock_gettime)")
    finally:
        _close(m)


def bench_locks(n: int) -> None:
    """Each primitive's uncontended round trip, instrumented and not, and its floor: the
    uninstrumented pair plus the two raw TSC reads any lockstat-style hold time needs (the
    kernel's ``lock_acquire``/``lock_release`` stamps), which no instrumentation can go
    under on this machine."""
    m = Model.create(family_capacities("2.6.34", 1, 1, 1.0, 1), "2.6.34")
    try:
        # A ptl-class lock (the one a walk takes per entry): without lockstat it is not timed.
        w = m.ptl_word(0)
        for name in LOCK_KINDS:
            m.words[w : w + 8] = 0  # each primitive starts from a zeroed (unlocked) record
            m.g[KIND0 + PTL] = lock_kind(name)
            # The best of REPS short interleaved rounds of each: on a shared machine the minimum is
            # the cost itself, the rest is other processes' time.
            kinds = ("bare", "instrumented", "floor")
            per = dict.fromkeys(kinds, float("inf"))
            for _ in range(REPS):
                for what in kinds:
                    m.locks.instrument = what == "instrumented"
                    if what == "floor":
                        _lock_parts_loop(m.words, m.g, m.locks.held, w, 1000, 1)
                        t = time.perf_counter_ns()
                        _lock_parts_loop(m.words, m.g, m.locks.held, w, n // REPS, 1)
                    else:
                        _lock_loop(m.words, m.g, m.locks.held, w, 1000)
                        t = time.perf_counter_ns()
                        _lock_loop(m.words, m.g, m.locks.held, w, n // REPS)
                    per[what] = min(per[what], (time.perf_counter_ns() - t) / (n // REPS))
            floor = f" (floor {per['floor']:.1f})" if per["floor"] > 30 else ""
            _line(f"lock {name}: acquire+release, compiled, instrumented", f"{per['instrumented']:.1f} ns",
                  f"<= 30 ns{floor}", per["instrumented"] <= 30)
            _line(f"lock {name}: uninstrumented / ratio",
                  f"{per['bare']:.1f} ns {per['instrumented'] / per['bare']:.2f}x",
                  "<= 1.5x", per["instrumented"] / per["bare"] <= 1.5)
            _line(f"lock {name}: floor, uninstrumented + two raw TSC reads", f"{per['floor']:.1f} ns")
        m.locks.reset_stats()
    finally:
        _close(m)


def bench_lockstat_parts(n: int) -> None:
    """What lockstat adds to an uncontended ticket round trip, part by part (the best of
    interleaved rounds): the two timestamps (raw TSC reads, then their conversion to ns)
    and the statistics stores.  The kernel's lockstat reads sched_clock at the same two
    points, on top of lockdep's own bookkeeping (which lockstat requires)."""
    m = Model.create(family_capacities("2.6.34", 1, 1, 1.0, 1), "2.6.34")
    try:
        w = m.ptl_word(0)
        m.words[w : w + 8] = 0
        m.g[KIND0 + PTL] = lock_kind("ticket")
        m.locks.instrument = False
        best = [float("inf")] * 4
        for _ in range(REPS):
            for part in range(4):
                _lock_parts_loop(m.words, m.g, m.locks.held, w, 1000, part)
                t = time.perf_counter_ns()
                _lock_parts_loop(m.words, m.g, m.locks.held, w, n // REPS, part)
                best[part] = min(best[part], (time.perf_counter_ns() - t) / (n // REPS))
        what = ("lockstat parts (ticket): bare acquire+release", "  + two raw TSC reads (rdtsc)",
                "  + converting both to ns (cyc2ns)", "  + lockstat's stores (= instrumented)")
        for part in range(4):
            extra = "" if part == 0 else f" (+{best[part] - best[part - 1]:.1f})"
            _line(what[part], f"{best[part]:.1f} ns{extra}")
        m.locks.reset_stats()
    finally:
        _close(m)


def _walk_cost(users: int, reps: int, instrument: bool = True) -> tuple[float, float]:
    """(us per one-entry walk from Python, ns per visited entry) on a 2.6.33 family of
    ``users`` children that each COWed their one page; each the best of its repetitions
    (on a shared machine the minimum is the cost, the rest other processes' time)."""
    m = Model.create(family_capacities("2.6.33", users, 1, 1.0, 1), "2.6.33")
    try:
        build_family(m, users, 1, 1.0)
        m.locks.instrument = instrument
        pages = np.flatnonzero(m.page_mapping >= 0)
        last, first = int(pages[-1]), int(pages[0])  # last child's page: N+1 entries; parent's: 1
        page_referenced(m, last)
        short_ns = long_ns = float("inf")
        for _ in range(reps):
            t = time.perf_counter_ns()
            page_referenced(m, first)
            short_ns = min(short_ns, time.perf_counter_ns() - t)
        for _ in range(max(5, reps * 50 // users)):
            t = time.perf_counter_ns()
            _, v_long = page_referenced(m, last)
            long_ns = min(long_ns, time.perf_counter_ns() - t)
        return short_ns / 1e3, (long_ns - short_ns) / (v_long - 1)
    finally:
        _close(m)


def bench_walk(reps: int, big: int) -> None:
    short_us, per_in = _walk_cost(2000, reps)
    _line("walk: one entry, including the call from Python", f"{short_us:.2f} us", "<= 2 us", short_us <= 2)
    _line("walk: per visited entry, PTE lock included (2000, in cache)", f"{per_in:.1f} ns", "<= 20 ns",
          per_in <= 20)
    _, per_off = _walk_cost(2000, reps, instrument=False)
    _line("walk: per visited entry, the same without lockstat", f"{per_off:.1f} ns")
    _, per_out = _walk_cost(big, max(20, reps // 10))
    _line(f"walk: per visited entry ({big} entries, outside the LLC)", f"{per_out:.1f} ns")


def bench_scan() -> None:
    for era, users, pages, limit in (("2.6.33", 1000, 1000, 10), ("2.6.34", 100000, 100, 30)):
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "stress", "scan", "--era", era, "--users", str(users), "--pages",
               str(pages), "--cow", "1"]
        p = subprocess.run(cmd, check=False, capture_output=True, text=True)
        secs = time.perf_counter() - t
        avg = next((ln.split("average")[1].split()[0] for ln in p.stdout.splitlines()
                    if "average" in ln), "?")
        _line(f"scan {era} {users} x {pages} (average walk {avg})", f"{secs:.1f} s", f"<= {limit} s",
              p.returncode == 0 and secs <= limit)


def _storm(era: str, duration: float, *extra: str) -> dict:
    from stress.engine.results import load

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, "-m", "stress", "run", "--quiet", "--era", era, "--users", "1000",
                        "--pages", "100", "--cpus", "2", "--duration", str(duration), "--json", f.name,
                        *extra], check=True, capture_output=True)
        return load(f.name)


def _pps(r: dict) -> float:
    return float(r["throughput"]["pages_scanned_per_s"])


def _av_wait(r: dict) -> float:
    return float(r["anon_vma_wait_share"])


def bench_storm(duration: float) -> None:
    """The targets were set for 2.6.34 when the model kept a swapped-in page's
    anon_vma.  The released 2.6.34 puts every page it swaps back in on the oldest anon_vma
    of the chain (the family's root), so under reclaim-storm's refault churn its walks are
    O(N) again: the kernel wins, and its
    figures are printed without a target.  The seed's fix holds from 2.6.36 (288468c334e9),
    which carries the targets."""
    r = {}
    for cost in ("0", None):
        extra = ("--entry-cost-ns", cost) if cost else ()
        for era in ("2.6.33", "2.6.34", "2.6.36"):
            r[era, cost] = _storm(era, duration, *extra)
    old = r["2.6.33", None]
    for era in ("2.6.34", "2.6.36"):
        new = r[era, None]
        ratio0 = _pps(r[era, "0"]) / _pps(r["2.6.33", "0"])
        ratio = _pps(new) / _pps(old)
        walk = new["walks"]["avg_visited"]
        if era == "2.6.34":
            _line(f"reclaim-storm 2.6.34 pages scanned/s (released: avg walk {walk:.1f})",
                  f"{_pps(new):,.0f}",
                  "(no target)")
            _line("2.6.34 / 2.6.33 pages/s, --entry-cost-ns 0 / default", f"{ratio0:.1f}x / {ratio:.1f}x",
                  "(no target)")
            continue
        _line(f"reclaim-storm {era} pages scanned/s (default cost, avg walk {walk:.1f})", f"{_pps(new):,.0f}",
              ">= 200,000", _pps(new) >= 200_000)
        _line(f"{era} / 2.6.33 pages/s, --entry-cost-ns 0", f"{ratio0:.1f}x", ">= 10x", ratio0 >= 10)
        _line(f"{era} / 2.6.33 pages/s, default cost", f"{ratio:.1f}x", ">= 20x", ratio >= 20)
    _line("2.6.33 anon_vma lock wait share", f"{100 * _av_wait(old):.1f}%", ">= 40%", _av_wait(old) >= 0.4)
    # Interleaved pairs, the best of each: on a shared machine one pair alone moves by 20%.
    on, off = [_pps(r["2.6.36", None])], []
    for _ in range(3):
        off.append(_pps(_storm("2.6.36", duration, "--no-lockstat")))
        on.append(_pps(_storm("2.6.36", duration)))
    loss = 1 - max(on) / max(off)
    _line("lockstat's cost: 2.6.36 default vs --no-lockstat (best of 4 / 3)", f"{100 * loss:.1f}%",
          "within 10%", abs(loss) <= 0.10)


def bench_compile() -> None:
    """Cold compile into an empty cache, then a start from that cache, each in a fresh
    process; wall time and the CPU time of the process and its compile children (a shared
    machine stretches the wall time, not the CPU time)."""
    import resource

    code = ("import time; t=time.perf_counter(); "
            "from shared_model.precompile import warm_up; warm_up(); "
            "print(time.perf_counter()-t)")

    def child_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cpu0 = child_cpu()
        cold = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()[-1])
        cpu1 = child_cpu()
        warm = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()[-1])
        cpu2 = child_cpu()
    _line("compile, cold (empty cache)", f"{cold:.1f} s ({cpu1 - cpu0:.1f} s CPU)", "<= 15 s",
          cold <= 15)
    _line("cached start (warm_up with a full cache)", f"{warm:.2f} s ({cpu2 - cpu1:.1f} s CPU)",
          "<= 1 s", warm <= 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller repetitions and shorter runs")
    ap.add_argument("--only", default="locks,walk,scan,storm,compile", help="sections, comma separated")
    a = ap.parse_args()
    only = set(a.only.split(","))
    warm_up()
    if "locks" in only:
        bench_clock(200_000 if a.quick else 2_000_000)
        bench_locks(200_000 if a.quick else 2_000_000)
        bench_lockstat_parts(200_000 if a.quick else 2_000_000)
    if "walk" in only:
        bench_walk(2000 if a.quick else 20000, 50_000 if a.quick else 200_000)
    if "scan" in only:
        bench_scan()
    if "storm" in only:
        bench_storm(3.0 if a.quick else 5.0)
    if "compile" in only:
        bench_compile()


if __name__ == "__main__":
    main()

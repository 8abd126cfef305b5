#!/usr/bin/env python3
"""Benchmarks of the compiled lock primitives (shared_model/locking/).

Prints, for each primitive (rwsem: its write and read sides, FIFO policy):
  * ns per uncontended acquire+release from compiled code (a loop inside njit), the
    best of several repeats;
  * the same pair called from Python (two calls into compiled code);
  * two processes hammering one lock: ns per acquisition (each process's own elapsed
    time over the acquisitions of both) and whether the shared counter came out exact;
then the cache-line hand-off costs the many-core predictor needs:
  * handoff_ns: two processes on a ticket lock, which FIFO makes alternate whenever both
    run, so each acquisition that waited is one hand-off of the lock's line to the other
    core; printed with the share of acquisitions that waited (near 100% on an idle
    machine; far less when the two processes are seldom on CPUs at the same time);
  * line_ns: one cache line bounced between two processes (a turn word flipped back and
    forth), half a round trip;
and compile times: cold (an empty NUMBA_CACHE_DIR), warm (that cache again), with an
unwritable NUMBA_CACHE_DIR, and with the locator list overridden (both: compiled in memory
each run, see shared_model/locking/cached_compile.py).  Each in a fresh process.

Target: uncontended pair from compiled code <= 30 ns.  Timings on a shared,
loaded machine are noisy: the uncontended numbers are a best of repeats, the contended
ones a single run each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_model.locking import (
    KIND_NAMES,
    RWSEM,
    RWSEM_FIFO,
    TICKET,
    clock_ns,
    compile_locks,
    lock_acquire,
    lock_release,
)
from shared_model.locking.atomics import READ_ONCE, WRITE_ONCE, cpu_relax
from shared_model.locking.cached_compile import cached_njit
from shared_model.locking.locktorture import LockLab, torture_pair_ns

TARGET_PAIR_NS = 30.0
SIDES = [(name, kind, 0) for name, kind in KIND_NAMES.items()] + [("rwsem-read", RWSEM, 1)]

_COMPILE_PROBE = """
import json, time
t = time.perf_counter()
import shared_model.locking as locking
imported = time.perf_counter() - t
print(json.dumps({"import_s": imported, "compile_s": locking.compile_locks()}))
"""


def compile_times() -> dict[str, dict[str, float] | str]:
    """Import + compile_locks() in fresh processes under different cache settings."""
    out: dict[str, dict[str, float] | str] = {}
    # The package's own directory, whether installed or run from a checkout.
    root = Path(__file__).resolve().parent.parent
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as cache:
        runs = {
            "cold (empty cache)": {"NUMBA_CACHE_DIR": cache},
            "warm (cached)": {"NUMBA_CACHE_DIR": cache},
            "unwritable NUMBA_CACHE_DIR": {"NUMBA_CACHE_DIR": "/proc/no-such-dir"},
            "no writable cache at all": {
                "NUMBA_CACHE_DIR": "/proc/no-such-dir",
                "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",
            },
        }
        for label, env in runs.items():
            proc = subprocess.run(
                [sys.executable, "-c", _COMPILE_PROBE],
                env={**os.environ, "PYTHONPATH": path, **env},
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                out[label] = "FAILED: " + proc.stderr.strip().splitlines()[-1]
            else:
                out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def uncontended_compiled_ns(kind: int, shared: int, loops: int, repeats: int) -> float:
    words = np.zeros(64, dtype=np.int64)
    torture_pair_ns(words, 8, kind, RWSEM_FIFO, shared, 1, 32, 0, 1000)
    return min(
        torture_pair_ns(words, 8, kind, RWSEM_FIFO, shared, 1, 32, 0, loops) / loops
        for _ in range(repeats)
    )


def uncontended_python_ns(kind: int, shared: int, loops: int) -> float:
    words = np.zeros(64, dtype=np.int64)
    acquire, release = lock_acquire, lock_release
    t = time.perf_counter_ns()
    for _ in range(loops):
        acquire(words, 8, kind, RWSEM_FIFO, shared, 1, 32, 0)
        release(words, 8, kind, RWSEM_FIFO, shared, 32)
    return (time.perf_counter_ns() - t) / loops


@cached_njit
def _hammer_counting(
    words: np.ndarray, w: int, kind: int, owner_tag: int, node_w: int, stop_w: int,
    counter_w: int, loops: int,
) -> int:
    """torture_hammer's loop, counting the acquisitions that had to wait (hand-offs)."""
    handoffs = 0
    for _ in range(loops):
        status = lock_acquire(words, w, kind, RWSEM_FIFO, 0, owner_tag, node_w, stop_w)
        if status < 0:
            break
        handoffs += status != 0
        words[counter_w] = words[counter_w] + 1
        lock_release(words, w, kind, RWSEM_FIFO, 0, node_w)
    return handoffs


def contended(kind: int, loops: int) -> tuple[float, float, bool]:
    """Two processes, one lock (exclusive side): (ns per acquisition, share of the
    acquisitions that waited for the other process, counter exact)."""
    lab = LockLab()
    at, words = lab.at, lab.words
    gate = at.log
    _hammer_counting(np.zeros(at.size, dtype=np.int64), at.lock, kind, 1, at.node(0), at.stop,
                     at.counter, 1)

    def hammer(cpu: int) -> None:
        while words[gate] == 0:
            pass
        start = time.monotonic_ns()  # the clock clock_ns() reads in compiled code
        handoffs = _hammer_counting(words, at.lock, kind, lab.tag(cpu), at.node(cpu), at.stop,
                                    at.counter, loops)
        words[at.status + cpu] = time.monotonic_ns() - start
        words[at.status + 8 + cpu] = handoffs

    try:
        pids = [lab.spawn(hammer, cpu) for cpu in (0, 1)]
        words[gate] = 1
        codes = [lab.join(p) for p in pids]
        elapsed = max(words[at.status], words[at.status + 1])
        waited = (words[at.status + 8] + words[at.status + 9]) / (2 * loops)
        exact = codes == [0, 0] and words[at.counter] == 2 * loops
        return elapsed / (2 * loops), float(waited), bool(exact)
    finally:
        lab.close()


@cached_njit
def _ping_pong(words: np.ndarray, turn_w: int, me: int, rounds: int, deadline_ns: int) -> int:
    """Wait for my turn, pass it on, ``rounds`` times or until the deadline (a partner
    descheduled by a busy machine must not make this run for minutes).  Rounds done."""
    for done in range(rounds):
        while READ_ONCE(words, turn_w) != me:
            if clock_ns() > deadline_ns:
                return done
            cpu_relax()
        WRITE_ONCE(words, turn_w, 1 - me)
    return rounds


def line_transfer_ns(rounds: int) -> float:
    lab = LockLab()
    words, turn = lab.words, lab.at.counter
    _ping_pong(np.zeros(1, dtype=np.int64), 0, 0, 1, 0)  # compile before forking
    deadline = time.monotonic_ns() + 20 * 10**9

    def player() -> None:
        _ping_pong(words, turn, 1, rounds, deadline)

    try:
        pid = lab.spawn(player)
        start = time.monotonic_ns()
        done = _ping_pong(words, turn, 0, rounds, deadline)
        elapsed = time.monotonic_ns() - start
        lab.join(pid)
        return elapsed / (2 * max(done, 1))  # each round is two one-way transfers
    finally:
        lab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timings")
    args = parser.parse_args()
    scale = 10 if args.quick else 1

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(a shared machine: numbers are noisy)")
    print(f"compile_locks() in this process: {compile_locks():.2f} s")
    print()
    print(f"{'primitive':<12} {'compiled ns':>12} {'python ns':>10} {'2-proc ns/acq':>14} "
          f"{'waited':>7} {'exact':>6}   target compiled <= {TARGET_PAIR_NS:.0f} ns")
    results = {}
    for name, kind, shared in SIDES:
        pair = uncontended_compiled_ns(kind, shared, 2_000_000 // scale, 5)
        py = uncontended_python_ns(kind, shared, 100_000 // scale)
        if shared:
            cont, waited, exact = float("nan"), float("nan"), True
            cont_s, waited_s, exact_s = "-", "-", "-"
        else:
            cont, waited, exact = contended(kind, 1_000_000 // scale)
            cont_s, waited_s = f"{cont:.1f}", f"{100 * waited:.0f}%"
            exact_s = "yes" if exact else "NO"
        ok = "ok" if pair <= TARGET_PAIR_NS else "MISSED"
        print(f"{name:<12} {pair:>12.1f} {py:>10.0f} {cont_s:>14} {waited_s:>7} {exact_s:>6}   "
              f"{ok}")
        results[name] = {"compiled_ns": pair, "python_ns": py, "contended_ns": cont,
                         "exact": exact}
    print()
    handoff, waited, exact = contended(TICKET, 1_000_000 // scale)
    print(f"handoff_ns: {handoff:.1f}   (ticket lock, two processes; {100 * waited:.0f}% of "
          f"acquisitions were hand-offs; counter {'exact' if exact else 'NOT exact'})")
    if waited < 0.9:
        print("            the processes were seldom on CPUs at once (a busy machine): this is "
              "not a clean hand-off cost")
    print(f"line_ns:    {line_transfer_ns(200_000 // scale):.1f}   "
          "(one cache line bounced between two processes, one way; strict alternation, so "
          "on a busy machine it measures the scheduler)")
    if not args.no_compile:
        print()
        print("compile (fresh process each: import shared_model.locking + compile_locks()):")
        for label, t in compile_times().items():
            if isinstance(t, str):
                print(f"  {label:<28} {t}")
            else:
                print(f"  {label:<28} import {t['import_s']:.2f} s, compile {t['compile_s']:.2f} s")


if __name__ == "__main__":
    main()

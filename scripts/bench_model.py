#!/usr/bin/env python3
"""Microbenchmarks of the model itself (no contention): what one step costs.

Prints:
  * ns per VMA visited in a long walk (2.6.33 family list, no modelled entry cost);
  * ns per uncontended lock acquire+release: the bare glibc calls through ctypes, the
    CpuLocks wrapper with instrumentation off, and with lockstat on;
  * seconds and bytes to build a 1000-user x 1000-page and a 30000-user x 100-page model.
Targets (issue #2): <= 100 ns per VMA visited, instrumented lock <= 2x raw, 1000 x 1000
built in <= 5 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shared_model.build import build_family, family_capacities
from shared_model.locks import CLASS, SITE, CpuLocks, make_primitive
from shared_model.model import Model
from shared_model.rmap import page_referenced


def _close(m: Model) -> None:
    seg = m.seg
    m.close()
    seg.unlink()


def bench_walk(users: int, reps: int) -> tuple[float, float]:
    """(ns per visited entry, us per short walk) from long and short 2.6.33 walks."""
    m = Model.create(family_capacities("2.6.33", users, 1, 1.0, 1), "2.6.33")
    try:
        build_family(m, users, 1, 1.0)
        pages = np.flatnonzero(m.page_mapping >= 0)
        last, first = int(pages[-1]), int(pages[0])  # last child's page: N+1 entries; parent's: 1
        for p in (last, first):
            page_referenced(m, p)
        t = time.perf_counter_ns()
        for _ in range(reps):
            _, v_long = page_referenced(m, last)
        long_ns = (time.perf_counter_ns() - t) / reps
        t = time.perf_counter_ns()
        for _ in range(reps):
            page_referenced(m, first)
        short_ns = (time.perf_counter_ns() - t) / reps
        return (long_ns - short_ns) / (v_long - 1), short_ns / 1e3
    finally:
        _close(m)


def bench_locks(kind: str, n: int) -> tuple[float, float, float]:
    m = Model.create(family_capacities("2.6.34", 1, 1, 1.0, 1), "2.6.34", lock_kind=kind)
    try:
        prim = make_primitive(kind)
        w = m.anon_vma_lock_word(0)
        addr = m.seg.base + 8 * w
        trylock, unlock = prim.trylock, prim.unlock
        t = time.perf_counter_ns()
        for _ in range(n):
            trylock(addr)
            unlock(addr)
        bare = (time.perf_counter_ns() - t) / n
        cls, site = CLASS["anon_vma"], SITE["page_referenced"]
        results = []
        for instrument in (False, True):
            loc = CpuLocks(m.seg, m.cpu, {cls: prim}, instrument=instrument)
            acquire, release = loc.acquire, loc.release
            t = time.perf_counter_ns()
            for _ in range(n):
                release(w, cls, site, acquire(w, cls, site))
            results.append((time.perf_counter_ns() - t) / n)
            loc.words.release()
        return bare, results[0], results[1]
    finally:
        _close(m)


def bench_build(users: int, pages: int, era: str) -> tuple[float, int]:
    caps = family_capacities(era, users, pages, 1.0, 1)
    t = time.perf_counter()
    m = Model.create(caps, era)
    try:
        build_family(m, users, pages, 1.0)
        return time.perf_counter() - t, caps.nbytes()
    finally:
        _close(m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller repetitions")
    a = ap.parse_args()
    reps = 200 if a.quick else 2000
    per_entry, short_us = bench_walk(2000, reps)
    print(f"walk: {per_entry:6.1f} ns per VMA visited (2000-entry list)   target <= 100 ns")
    print(f"walk: {short_us:6.1f} us for a 1-entry walk (fixed cost: lock, gathers, PTE lock)")
    for kind in ("spin", "mutex"):
        bare, raw, inst = bench_locks(kind, reps * 50)
        print(f"lock {kind:5s}: bare glibc {bare:5.0f} ns   wrapper raw {raw:5.0f} ns   "
              f"instrumented {inst:5.0f} ns   instrumented/raw {inst / raw:4.2f}x   "
              f"instrumented/bare {inst / bare:4.2f}x   target <= 2x")
    for users, pages in ((1000, 1000), (30000, 100)):
        for era in ("2.6.33", "2.6.34"):
            secs, nbytes = bench_build(users, pages, era)
            print(f"build {users} users x {pages} pages ({era}): {secs:5.2f} s, "
                  f"{nbytes / 2**20:7.1f} MiB" + ("   target <= 5 s" if users == 1000 else ""))


if __name__ == "__main__":
    main()

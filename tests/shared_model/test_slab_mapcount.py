"""Per-CPU slab caches (slab.kmem_cache_alloc_c / kmem_cache_free_c) and page->_mapcount
as a real atomic (rmap.mapcount_add_c): the counts are exact, whichever CPU's cache holds a
free record, and concurrent atomic adds from two processes lose nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pytest
from _helpers.children import Spawn
from numba import njit

from shared_model import ctx as G
from shared_model.build import build_family
from shared_model.layout import (
    ALLOC_KINDS,
    PGTABLE_KINDS,
    SLAB_AC_AVAIL,
    SLAB_AC_LOCK,
    SLAB_AC_WORDS,
    SLAB_BATCH,
    SLAB_LIMIT,
)
from shared_model.model import Model, OutOfMemory
from shared_model.rmap import mapcount_add_c

MakeModel = Callable[..., Model]
K_PAGE = ALLOC_KINDS.index("page")


def cached(m: Model, cpu: int, kind: str = "page") -> int:
    return int(m.seg["slab_cpu"][cpu, ALLOC_KINDS.index(kind) * SLAB_AC_WORDS + SLAB_AC_AVAIL])


def top(m: Model, kind: str = "page") -> int:
    return int(m.header["top"][0][ALLOC_KINDS.index(kind)])


def assert_free_counts_exact(m: Model) -> None:
    """Every record is in use or free (global stack + caches), so free + in use = capacity."""
    for kind in ALLOC_KINDS:
        if kind in PGTABLE_KINDS:  # page-table blocks have no in_use: check_model's rule 13
            continue
        rec = getattr(m, kind)
        in_use = int(rec["in_use"].sum()) - (1 if kind == "vma" else 0)  # the sentinel VMA
        reserved = 1 if kind == "vma" else 0
        assert m.free_count(kind) + in_use + reserved == len(rec), kind


@pytest.mark.parametrize("era", ["2.6.33", "2.6.34"])
def test_allocation_goes_through_the_cpu_cache(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=3, pages=4, cow=0.5, cpus=2)
    build_family(m, 3, 4, 0.5)
    assert_free_counts_exact(m)
    m.flush_slab_caches()
    me, t0 = m.cpu, top(m)
    assert cached(m, me) == 0
    a = m.alloc("page", 1)  # refill: SLAB_BATCH from the global stack, one handed out
    assert (top(m), cached(m, me)) == (t0 - SLAB_BATCH, SLAB_BATCH - 1)
    b = m.alloc("page", 2)  # from the cache: no global change
    assert (top(m), cached(m, me)) == (t0 - SLAB_BATCH, SLAB_BATCH - 3)
    m.free("page", np.concatenate([a, b]))  # back onto the cache
    assert (top(m), cached(m, me)) == (t0 - SLAB_BATCH, SLAB_BATCH)
    bulk = m.alloc("page", SLAB_BATCH + 4)  # bulk: the cache's records, then the global's
    assert (top(m), cached(m, me)) == (t0 - SLAB_BATCH - 4, 0)
    assert len(set(bulk.tolist()) | set(a.tolist()) | set(b.tolist())) == SLAB_BATCH + 4
    singles = [m.alloc_one("page") for _ in range(SLAB_LIMIT)]
    t1 = t0 - SLAB_BATCH - 4 - SLAB_LIMIT  # two more refills of SLAB_BATCH
    assert (top(m), cached(m, me)) == (t1, 0)
    for p in singles:  # freed one by one: the cache fills up to SLAB_LIMIT
        m.free("page", p)
    assert (top(m), cached(m, me)) == (t1, SLAB_LIMIT)
    m.free("page", bulk[:1])  # full: its oldest SLAB_BATCH go back to the global stack first
    assert (top(m), cached(m, me)) == (t1 + SLAB_BATCH, SLAB_LIMIT - SLAB_BATCH + 1)
    m.free("page", bulk[1:])
    assert m.free_count("page") == len(m.page) - int(m.page["in_use"].sum())
    assert_free_counts_exact(m)


def test_records_cached_on_another_cpu_never_make_allocation_fail(make_model: MakeModel) -> None:
    """CPU 0 holds free pages in its cache while the global stack is empty: the builder's
    allocation drains CPU 0's cache instead of failing."""
    m = make_model("2.6.34", users=0, pages=1, cpus=2)
    other = Model(m.seg, m.era, 0)  # CPU 0's view of the same segment
    m.flush_slab_caches()
    free = m.free_count("page")
    everything = m.alloc("page", free)
    assert (top(m), m.free_count("page")) == (0, 0)
    with pytest.raises(OutOfMemory):
        m.alloc("page", 1)
    other.free("page", everything[:5])  # into CPU 0's cache
    assert (top(m), cached(m, 0), m.free_count("page")) == (0, 5, 5)
    got = m.alloc("page", 2)
    assert cached(m, 0) == 0 and m.free_count("page") == 3
    assert set(got.tolist()) <= set(everything[:5].tolist())
    m.free("page", np.concatenate([got, everything[5:]]))
    with pytest.raises(OutOfMemory):  # all free ones in caches, and still not enough
        m.alloc("page", free + 1)
    assert m.free_count("page") == free
    del other
    assert_free_counts_exact(m)


def _voluntary_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def test_drain_naps_on_a_held_cache_lock_while_the_run_stops(make_model: MakeModel,
                                                            spawn: Spawn) -> None:
    """A drain waits for another CPU's cache lock, whose holder may itself wait for the
    slab lock or be preempted: once the run is stopping it naps between tries, as the lock
    primitives' waiters do, instead of spinning the cores away from that holder; and it
    still drains the cache when the lock comes free."""
    m = make_model("3.8", users=0, pages=1, cpus=2)
    m.flush_slab_caches()
    everything = m.alloc("page", m.free_count("page"))
    m.free("page", everything[:5])  # into the builder's cache; the global stack is empty
    assert (top(m), cached(m, m.cpu)) == (0, 5)
    lock = m.seg["slab_cpu"][m.cpu:m.cpu + 1, K_PAGE * SLAB_AC_WORDS + SLAB_AC_LOCK]
    lock[0] = 1  # the builder holds its cache lock (as one waiting for the slab lock)
    m.header["stop"][0] = 1  # the run is draining

    def body(cm: Model, w: int, _r: int) -> None:
        os.write(w, b"r")
        cm.free("page", cm.alloc("page", 1))  # short: drains the builder's cache

    try:
        c = spawn(m, body)
        c.wait_ready()
        time.sleep(0.05)
        v0 = _voluntary_switches(c.pid)
        time.sleep(0.4)
        naps = _voluntary_switches(c.pid) - v0
    finally:
        lock[0] = 0
        m.header["stop"][0] = 0
    assert c.join() == 0
    assert (top(m), cached(m, m.cpu)) == (0, 0)
    assert cached(m, 0) == 5  # drained, refilled into CPU 0's cache, freed back there
    m.free("page", everything[5:])
    assert_free_counts_exact(m)
    assert naps >= 20, f"the drain slept {naps} times in 0.4 s on a held cache lock: it spins"


def test_dead_cpus_cache_still_counts_as_free(make_model: MakeModel) -> None:
    """A CPU killed with records in its cache: check_model (at teardown) and free_count
    count them as free."""
    m = make_model("2.6.34", users=2, pages=2, cpus=2)
    build_family(m, 2, 2, 0.0)
    before = m.free_count("page")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            cm = Model(m.seg, m.era, 0)
            cm.free("page", cm.alloc("page", 3))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert cached(m, 0) > 0
    assert m.free_count("page") == before
    assert_free_counts_exact(m)


@njit(cache=False)
def _add_loop(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
              n: int, dmap: int, dswap: int) -> int:
    last = 0
    for _ in range(n):
        last += mapcount_add_c(words, w32, g, held, page, dmap, dswap, 0)
    return last


def test_mapcount_is_one_atomic_word(make_model: MakeModel) -> None:
    """mapcount and the swap count change together by one atomic add; the add that takes
    both to zero reports the last reference, and counts the frame going."""
    m = make_model("2.6.34", users=0, pages=1)
    p = len(m.page) - 1  # a free page record: nothing maps it
    f = m.g[G.CPU_BASE]
    fin, fout = G.F_FRAMES_IN, G.F_FRAMES_OUT
    frames = (int(m.words[f + fin]), int(m.words[f + fout]))
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, 1, 0) == 0
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, -1, 1) == 0  # unmapped to swap
    assert (int(m.page_mapcount[p]), int(m.page_swapcount[p])) == (0, 1)
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, 1, -1) == 0  # swapped back in
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, 0, 1) == 0
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, -1, 0) == 0
    assert _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, 0, -1) == 1  # the last one
    assert (int(m.page_mapcount[p]), int(m.page_swapcount[p])) == (0, 0)
    assert (int(m.words[f + fin]) - frames[0], int(m.words[f + fout]) - frames[1]) == (2, 2)


def test_concurrent_mapcount_adds_lose_nothing(make_model: MakeModel) -> None:
    """Two processes add to the same page's counts at once: the sums are exact."""
    m = make_model("2.6.34", users=0, pages=1)
    p = len(m.page) - 1
    n = 200_000
    _add_loop(m.words, m.w32, m.g, m.locks.held, p, 1, 1, 1)  # compiled before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.read(r, 1)
            _add_loop(m.words, m.w32, m.g, m.locks.held, p, n, 1, 2)
        finally:
            os._exit(0)
    os.write(w, b"g")
    _add_loop(m.words, m.w32, m.g, m.locks.held, p, n, 1, 2)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    assert (int(m.page_mapcount[p]), int(m.page_swapcount[p])) == (2 * n + 1, 4 * n + 1)
    m.page_mapcount[p] = m.page_swapcount[p] = 0  # a free record again

"""The slab allocator: per-kind free stacks in the segment and each CPU's array_cache.


Allocation is slab-like: each record kind has a free stack in the segment guarded by that
kind's slab lock (a leaf in the lock order), and each CPU a small array cache of free
records of each kind in front of it (the kernel's per-CPU ``array_cache``: up to
SLAB_LIMIT, refilled and flushed SLAB_BATCH at a time under the slab lock), so that most
allocations and frees take no shared lock.  Records are type-stable, as with
SLAB_DESTROY_BY_RCU: a freed anon_vma's lock bytes stay a valid lock, so a walker that read
``page->mapping`` just before the anon_vma was freed can still take its lock and then see,
under it, that the page moved on (``page_lock_anon_vma``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray, types

from . import ctx as G
from .layout import (
    SLAB_AC_AVAIL,
    SLAB_AC_ENTRY,
    SLAB_AC_LOCK,
    SLAB_AC_WORDS,
    SLAB_BATCH,
    SLAB_CPU_WORDS,
    SLAB_LIMIT,
)
from .locking.atomics import READ_ONCE, c_entry_call, cmpxchg, cpu_relax, futex_wait, smp_store_release
from .locking.cached_compile import cached_cfunc, cached_njit
from .locking.common import DRAIN_NAP_NS, STOP_DRAIN
from .locks import (
    CLASS,
    SITE,
    abort_requested,
    lock_acquire_c,
    lock_release_c,
    no_abort_begin,
    no_abort_end,
)

SLAB = CLASS["slab"]
S_ALLOC, S_FREE = SITE["kmem_cache_alloc"], SITE["kmem_cache_free"]


@cached_njit(llvm_inline=True)
def _ac(g: np.ndarray, k: int) -> int:
    """int32 word of this CPU's array_cache of kind ``k`` (layout.SLAB_AC_*)."""
    return g[G.SLAB_CPU_W] + k * SLAB_AC_WORDS


@cached_njit(llvm_inline=True)
def ac_lock(words: np.ndarray, w32: np.ndarray, g: np.ndarray, ac: int) -> bool:
    """Take a CPU's cache lock (its own, uncontended but for a drain); False on abort.

    Its holder may be waiting for the slab lock (cache_alloc_locked, cache_flusharray),
    or be preempted there, so a drain can wait on it as long as on that lock.  Once the
    run is stopping (stop word 1 or more), the wait naps DRAIN_NAP_NS between tries, as
    the lock primitives' waits do (``locking.common.stop_requested``): pure spinners on
    an oversubscribed machine take the cores from the holder and the slab lock's queue
    they wait for."""
    while cmpxchg(w32, ac + SLAB_AC_LOCK, 0, 1) != 0:
        if abort_requested(words, g):
            return False
        stop_w = g[G.STOP_W]
        stop = READ_ONCE(words, stop_w)
        if stop >= STOP_DRAIN:
            futex_wait(words, stop_w, stop, DRAIN_NAP_NS)
        else:
            cpu_relax()
    return True


@cached_njit(llvm_inline=True)
def ac_unlock(w32: np.ndarray, ac: int) -> None:
    smp_store_release(w32, ac + SLAB_AC_LOCK, 0)


@cached_njit(llvm_inline=True)
def cache_flusharray(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                     ac: int, nr: int, site: int) -> int:
    """Move the ``nr`` oldest records of the cache at ``ac`` (whose lock the caller holds)
    to kind ``k``'s global free stack, under its slab lock (the kernel's
    cache_flusharray); OK or STOPPED."""
    w = g[G.SLAB_W0] + k * 8
    t = lock_acquire_c(words, g, held, w, SLAB, site, 0)
    if t < 0:
        return G.STOPPED
    tw = g[G.TOPS_W] + k
    top = words[tw]
    f0 = g[G.FREE0 + k]
    e0 = ac + SLAB_AC_ENTRY
    for i in range(nr):
        w32[f0 + top + i] = w32[e0 + i]
    words[tw] = top + nr
    lock_release_c(words, g, held, w, SLAB, site, 0, t)
    avail = w32[ac + SLAB_AC_AVAIL] - nr
    for i in range(avail):
        w32[e0 + i] = w32[e0 + nr + i]
    w32[ac + SLAB_AC_AVAIL] = avail
    return G.OK


@cached_njit
def drain_other_caches(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       k: int) -> int:
    """Kind ``k`` is short: give every other CPU's cached records of it back to the global
    stack (drain_all_pages' work).  Called with no cache lock held: it waits for each
    other cache's lock in turn (held only for a short compiled section by its CPU, or by
    another drainer), so a busy cache is drained too, and no lock-order cycle can form
    (cache locks are taken one at a time, each before the slab lock).  OK or STOPPED."""
    base = g[G.SLAB_CPU_W] - g[G.CPU] * SLAB_CPU_WORDS + k * SLAB_AC_WORDS
    for c in range(g[G.NCPUS]):
        if c == g[G.CPU]:
            continue
        ac = base + c * SLAB_CPU_WORDS
        if w32[ac + SLAB_AC_AVAIL] == 0:
            continue
        if not ac_lock(words, w32, g, ac):
            return G.STOPPED
        st = G.OK
        if w32[ac + SLAB_AC_AVAIL] > 0:
            st = cache_flusharray(words, w32, g, held, k, ac, w32[ac + SLAB_AC_AVAIL], S_ALLOC)
        ac_unlock(w32, ac)
        if st < 0:
            return st
    return G.OK


@cached_njit
def cache_alloc_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                       n: int, out: np.ndarray, ac: int) -> int:
    """kmem_cache_alloc_c's work with this CPU's cache lock held: OK, ENOMEM - k or
    STOPPED."""
    e0 = ac + SLAB_AC_ENTRY
    avail = w32[ac + SLAB_AC_AVAIL]
    if avail < n:
        w = g[G.SLAB_W0] + k * 8
        t = lock_acquire_c(words, g, held, w, SLAB, S_ALLOC, 0)
        if t < 0:
            return G.STOPPED
        tw = g[G.TOPS_W] + k
        top = words[tw]
        f0 = g[G.FREE0 + k]
        if n > SLAB_BATCH:  # bulk: the cache's records first, the rest from the global stack
            if avail + top < n:
                lock_release_c(words, g, held, w, SLAB, S_ALLOC, 0, t)
                return G.ENOMEM - k
            for i in range(avail):
                out[i] = w32[e0 + avail - 1 - i]
            rest = n - avail
            for i in range(rest):
                out[avail + i] = w32[f0 + top - 1 - i]
            words[tw] = top - rest
            lock_release_c(words, g, held, w, SLAB, S_ALLOC, 0, t)
            w32[ac + SLAB_AC_AVAIL] = 0
            return G.OK
        # cache_alloc_refill: the global stack's top SLAB_BATCH, its topmost the newest
        r = min(top, SLAB_BATCH)
        for i in range(r):
            w32[e0 + avail + i] = w32[f0 + top - r + i]
        words[tw] = top - r
        lock_release_c(words, g, held, w, SLAB, S_ALLOC, 0, t)
        avail += r
        w32[ac + SLAB_AC_AVAIL] = avail
        if avail < n:
            return G.ENOMEM - k
    for i in range(n):
        out[i] = w32[e0 + avail - 1 - i]
    w32[ac + SLAB_AC_AVAIL] = avail - n
    return G.OK


# Drain-and-retry rounds of an allocation that found its kind short (kmem_cache_alloc_c).
SLAB_DRAIN_TRIES = 32


@cached_njit
def kmem_cache_alloc_body(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                          n: int, out: np.ndarray) -> int:
    """Take ``n`` free records of kind ``k`` into ``out[:n]`` and mark them in use; OK,
    ENOMEM - k (nothing allocated; also an injected failure of an anon_vma or AVC
    allocation) or STOPPED.

    From this CPU's array_cache when it holds ``n``: no shared lock (its own cache lock
    is a line no other CPU touches but to drain it).  Else, under the kind's slab lock,
    refill it with SLAB_BATCH records from the global free stack (cache_alloc_refill),
    or for a bulk request (``n`` > SLAB_BATCH) take the cache's records and the rest
    straight from the global stack.  When even that is short, the other CPUs' caches are
    drained to the global stack and the allocation tried again, so a record cached on
    another CPU does not make an allocation fail."""
    if g[G.ALLOC_FAIL] and (k == G.K_ANON_VMA or k == G.K_AVC):
        x = np.uint64(g[G.RNG])  # xorshift64
        x ^= x << np.uint64(13)
        x ^= x >> np.uint64(7)
        x ^= x << np.uint64(17)
        g[G.RNG] = np.int64(x)
        if np.int64(x >> np.uint64(32)) < g[G.ALLOC_FAIL]:
            return G.ENOMEM - k
    ac = _ac(g, k)
    # A shortage drains the other CPUs' caches (with ours unlocked) and tries again, up to
    # SLAB_DRAIN_TRIES times: a CPU that refilled its cache from the drained records
    # meanwhile may win the race (and is drained in turn); a real shortage fails fast.
    for _attempt in range(SLAB_DRAIN_TRIES):
        if not ac_lock(words, w32, g, ac):
            return G.STOPPED
        st = cache_alloc_locked(words, w32, g, held, k, n, out, ac)
        ac_unlock(w32, ac)
        if st != G.ENOMEM - k:
            break
        st2 = drain_other_caches(words, w32, g, held, k)
        if st2 != G.OK:
            return st2
    if st != G.OK:
        return st
    r0, rw, iu = g[G.REC0 + k], g[G.REC_W + k], g[G.IN_USE + k]
    if iu >= 0:  # page-table blocks have no in_use field (ctx.make_geometry)
        for i in range(n):
            w32[r0 + out[i] * rw + iu] = 1
    return G.OK


@cached_njit
def kmem_cache_free_body(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                         ids: np.ndarray, n: int) -> int:
    """Give ``ids[:n]`` back: onto this CPU's array_cache, first flushing its SLAB_BATCH
    oldest records to the global stack under the slab lock when it is full
    (cache_flusharray); a bulk free (``n`` > SLAB_BATCH) goes straight to the global
    stack.  OK: a free cannot fail (kfree), so the run's abort cannot cut its waits short
    (a free given up would lose the records: out of use and on no free list)."""
    no_abort_begin(g)
    st = _kmem_cache_free_locked(words, w32, g, held, k, ids, n)
    no_abort_end(g)
    return st


@cached_njit(llvm_inline=True)
def _kmem_cache_free_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                            k: int, ids: np.ndarray, n: int) -> int:
    r0, rw, iu = g[G.REC0 + k], g[G.REC_W + k], g[G.IN_USE + k]
    if iu >= 0:
        for i in range(n):
            w32[r0 + ids[i] * rw + iu] = 0
    if n > SLAB_BATCH:
        w = g[G.SLAB_W0] + k * 8
        t = lock_acquire_c(words, g, held, w, SLAB, S_FREE, 0)
        if t < 0:
            return G.STOPPED
        tw = g[G.TOPS_W] + k
        top = words[tw]
        f0 = g[G.FREE0 + k]
        for i in range(n):
            w32[f0 + top + i] = ids[i]
        words[tw] = top + n
        lock_release_c(words, g, held, w, SLAB, S_FREE, 0, t)
        return G.OK
    ac = _ac(g, k)
    if not ac_lock(words, w32, g, ac):
        return G.STOPPED
    if (w32[ac + SLAB_AC_AVAIL] + n > SLAB_LIMIT
            and cache_flusharray(words, w32, g, held, k, ac, SLAB_BATCH, S_FREE) < 0):
        ac_unlock(w32, ac)
        return G.STOPPED
    avail = w32[ac + SLAB_AC_AVAIL]
    e0 = ac + SLAB_AC_ENTRY
    for i in range(n):
        w32[e0 + avail + i] = ids[i]
    w32[ac + SLAB_AC_AVAIL] = avail + n
    ac_unlock(w32, ac)
    return G.OK


# The slab behind C entry points, as the lock slow paths (shared_model/locks.py): every
# compiled caller (fork, faults, exit, mmap, the page tables) reaches it by name instead of
# linking its code, lock code included, into its own module for LLVM to optimise again.
_I64P, _I32P, _I64 = types.CPointer(types.int64), types.CPointer(types.int32), types.int64
_SLAB_SIG = _I64(_I64P, _I64, _I32P, _I64, _I64P, _I64, _I64P, _I64, _I64P, _I64, _I64, _I64)


@cached_cfunc("rmap_stress_kmem_cache_alloc", _SLAB_SIG)
def kmem_cache_alloc_cabi(wp: Any, wn: int, w32p: Any, w32n: int, gp: Any, gn: int, hp: Any, hn: int,
                          op: Any, on: int, k: int, n: int) -> int:
    """kmem_cache_alloc_body behind a C entry point."""
    return kmem_cache_alloc_body(carray(wp, wn), carray(w32p, w32n), carray(gp, gn), carray(hp, hn),
                                 k, n, carray(op, on))


@cached_cfunc("rmap_stress_kmem_cache_free", _SLAB_SIG)
def kmem_cache_free_cabi(wp: Any, wn: int, w32p: Any, w32n: int, gp: Any, gn: int, hp: Any, hn: int,
                         ip: Any, inn: int, k: int, n: int) -> int:
    """kmem_cache_free_body behind a C entry point."""
    return kmem_cache_free_body(carray(wp, wn), carray(w32p, w32n), carray(gp, gn), carray(hp, hn),
                                k, carray(ip, inn), n)


_call_kmem_cache_alloc = c_entry_call("rmap_stress_kmem_cache_alloc", 5, 2)
_call_kmem_cache_free = c_entry_call("rmap_stress_kmem_cache_free", 5, 2)


@cached_njit(llvm_inline=True, python=True)
def kmem_cache_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                       n: int, out: np.ndarray) -> int:
    """kmem_cache_alloc_body (which see), called by name."""
    return _call_kmem_cache_alloc(words, w32, g, held, out, k, n)


@cached_njit(llvm_inline=True, python=True)
def kmem_cache_free_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, k: int,
                      ids: np.ndarray, n: int) -> int:
    """kmem_cache_free_body (which see), called by name."""
    return _call_kmem_cache_free(words, w32, g, held, ids, k, n)


@cached_njit
def kmem_cache_alloc_one(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                         k: int, sc: np.ndarray) -> int:
    """One record of kind k: its index, or a negative status (see kmem_cache_alloc_c)."""
    st = kmem_cache_alloc_c(words, w32, g, held, k, 1, sc)
    return sc[0] if st == G.OK else st


@cached_njit
def kmem_cache_free_one(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                        k: int, idx: int, sc: np.ndarray) -> int:
    sc[0] = idx
    return kmem_cache_free_c(words, w32, g, held, k, sc, 1)

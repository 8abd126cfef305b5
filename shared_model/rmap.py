"""The reverse-map walk: page_referenced and try_to_unmap, and their _one callbacks.

``page_referenced_anon`` in the kernel: take the page's anon_vma lock
(``page_lock_anon_vma``), then for each entry of its list compute ``vma_address``; skip
entries whose range does not hold the page; otherwise ``page_check_address`` finds the
PTE and, if it is present, takes that page table's lock and only then compares the page;
on a match ``page_referenced_one`` test-and-clears its young bit.  The walk stops as soon
as ``mapcount`` mappings have been found.  ``try_to_unmap_anon`` is the same walk, turning
each PTE into a swap entry until none is left, or stopping at the first young one
(SWAP_FAIL).

Everything under the anon_vma lock runs compiled (numba), one entry at a time, as the
kernel's loop does: the list is followed chunk by chunk, each visited entry that holds the
address costs its PTE lock round trip when the PTE is present (a COWed sibling's PTE too:
the kernel compares only under the lock), so time under the lock grows with the walk as it
did in 2010.  The Python functions below are thin wrappers with the kernel's names, so a
py-spy profile reads like a kernel profile: an uncontended walk is one call into compiled
code; a contended anon_vma lock returns to Python, which waits in
``page_lock_anon_vma`` -> ``CpuLocks.lock_contended`` -> ``spin_lock_slowpath`` (its own
frames), then walks.

Modelled cost (``Model.entry_cost_ns``): an extra cost per visited entry, spent busy
while holding the lock, on top of what the compiled walk really costs on this machine
(the kernel's page-table walk touched cold lines on a 2010 NUMA machine; see the README's
"Modelled cost").  Zero (off) for ``scan`` and the model's own tests.

Locks: a walk takes the page's anon_vma lock (the era's: its own or its root's; the read
side of an rwsem), and inside it each present PTE's ptl; try_to_unmap_one changes the
page's mapcount with an atomic add inside the ptl.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import ctx as G
from .layout import CPU_STATE, PTE_PRESENT, PTE_SWAP, PTE_YOUNG
from .locking.atomics import atomic_fetch_add, clock_ns
from .locking.jit import cached_njit
from .locks import CLASS, SITE, Stopped, lock_acquire_c, lock_acquire_fast, lock_release_c
from .model import Model

WALK = CPU_STATE["walk"]
AV_LOCK, PTL = CLASS["anon_vma"], CLASS["ptl"]
S_PR, S_TTU = SITE["page_referenced"], SITE["try_to_unmap"]
S_PR_ONE, S_TTU_ONE, S_SWAPIN = SITE["page_referenced_one"], SITE["try_to_unmap_one"], SITE["do_swap_page"]
# A walk takes the read side of an rwsem anon_vma lock (3.8+); other primitives ignore it.
SHARED = 1

OP_REFERENCED, OP_UNMAP = 0, 1
# Status of a compiled walk.
WALK_DONE, WALK_NOT_MAPPED, WALK_CONTENDED, WALK_STOPPED = 0, 1, 2, -1


# ---------------------------------------------------------------------------- compiled


@njit(inline="always")
def anon_vma_lock_word_c(w32: np.ndarray, g: np.ndarray, av: int) -> int:
    """The lock word guarding av's list: its own, or its root's (eras.lock_root)."""
    if g[G.LOCK_ROOT]:
        av = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_ROOT]
    return g[G.AV_LOCK_W0] + av * g[G.AV_W64]


@njit(inline="always")
def mapcount_add_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   dmap: int, dswap: int, site: int) -> int:
    """page->_mapcount += dmap and the swap count += dswap: one atomic add on the 64-bit word
    they share (mapcount the low half; both stay >= 0, so no borrow crosses the halves), as
    the kernel's atomic_add_negative on an atomic_t.  Counts the frame coming or going.  1
    when both counts reached zero (the caller held the last reference and frees the page),
    else 0 (never -1: an atomic does not wait; ``held`` and ``site`` are the callers')."""
    delta = dmap + (dswap << 32)
    old = atomic_fetch_add(words, (g[G.PAGE0] + page * g[G.PAGE_W] + G.PAGE_MAPCOUNT) >> 1, delta)
    new = old + delta
    was, now = old & 0xFFFFFFFF, new & 0xFFFFFFFF
    cb = g[G.CPU_BASE]
    if was == 0 and now > 0:
        words[cb + G.F_FRAMES_IN] += 1
    elif now == 0 and was > 0:
        words[cb + G.F_FRAMES_OUT] += 1
    return 1 if new == 0 else 0


@cached_njit
def rmap_walk_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                     av: int, op: int, out: np.ndarray) -> tuple[int, int, int]:
    """The walk itself: (result, entries visited, status).  ``result`` is the number of
    young mappings found (and cleared) for OP_REFERENCED, or the number of PTE slots
    unmapped, stored in ``out[:result]``, for OP_UNMAP.  status is WALK_DONE or
    WALK_STOPPED (a nested wait was aborted).

    Expects held: av's lock.  Takes and releases each present PTE's ptl; try_to_unmap_one
    changes the page's mapcount (an atomic) inside it."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    need = w32[pb + G.PAGE_MAPCOUNT]
    index = w32[pb + G.PAGE_INDEX]
    ptrs = g[G.PTRS]
    vma0, vma_w, pte0 = g[G.VMA0], g[G.VMA_W], g[G.PTE0]
    chunk0, chunk_w = g[G.CHUNK0], g[G.CHUNK_W]
    mm0, mm_w32 = g[G.MM0], 2 * g[G.MM_W64]
    result = found = visited = 0
    c = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_HEAD]
    while c >= 0 and found < need:
        cb = chunk0 + c * chunk_w
        used = w32[cb + G.CHUNK_USED]
        for pos in range(used):
            vma = w32[cb + G.CHUNK_VMA + pos]
            if vma == 0:  # a tombstone (the sentinel VMA): not an entry
                continue
            visited += 1
            vb = vma0 + vma * vma_w
            start = w32[vb + G.VMA_START]
            addr = start + (index - w32[vb + G.VMA_PGOFF])  # vma_address
            if addr < start or addr >= w32[vb + G.VMA_END]:
                continue
            mm = w32[vb + G.VMA_MM]
            slot = mm * ptrs + addr
            pe = pte0 + 2 * slot
            if not w32[pe + 1] & PTE_PRESENT:  # page_check_address: pte_present, no lock
                continue
            # page_check_address: the PTE lock, then the compare under it.
            site = S_PR_ONE if op == OP_REFERENCED else S_TTU_ONE
            ptl = g[G.MM_PTL_W0] + mm * g[G.MM_W64]
            t = lock_acquire_c(words, g, held, ptl, PTL, site, 0)
            if t < 0:
                return result, visited, WALK_STOPPED
            fl = w32[pe + 1]
            swap_fail = False
            if w32[pe] == page and fl & PTE_PRESENT:
                found += 1
                if op == OP_REFERENCED:  # page_referenced_one
                    if fl & PTE_YOUNG:
                        w32[pe + 1] = fl & ~PTE_YOUNG
                        result += 1
                elif fl & PTE_YOUNG:  # try_to_unmap_one: referenced meanwhile
                    w32[pe + 1] = fl & ~PTE_YOUNG
                    swap_fail = True
                else:  # try_to_unmap_one: a swap entry in its place
                    w32[pe + 1] = PTE_SWAP
                    if mapcount_add_c(words, w32, g, held, page, -1, 1, site) < 0:
                        lock_release_c(words, g, held, ptl, PTL, site, 0, t)
                        return result, visited, WALK_STOPPED
                    w32[mm0 + mm * mm_w32 + G.MM_RSS] -= 1
                    out[result] = slot
                    result += 1
            lock_release_c(words, g, held, ptl, PTL, site, 0, t)
            if swap_fail or found >= need:  # SWAP_FAIL ends try_to_unmap_anon here
                return result, visited, WALK_DONE
        c = w32[cb + G.CHUNK_NEXT]
    return result, visited, WALK_DONE


@cached_njit
def page_check_address_cost(g: np.ndarray, visited: int) -> None:
    """The modelled extra cost per visited entry (Model.entry_cost_ns), spent busy."""
    ns = g[G.ENTRY_COST_NS] * visited
    if ns > 0:
        end = clock_ns() + ns
        while clock_ns() < end:
            pass


@cached_njit
def rmap_walk_anon_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                          page: int, op: int, out: np.ndarray, av: int, w: int,
                          t_acq: int) -> tuple[int, int, int]:
    """With av's lock word ``w`` just taken at ``t_acq``: recheck that the page still
    points at av and is mapped (the anon_vma may have been freed and reused while we
    waited: records are type-stable, as SLAB_DESTROY_BY_RCU's), walk, pay the modelled cost,
    release, and publish the walk in this CPU's slot.  (result, visited, status).

    Expects held: ``w``.  Releases it."""
    site = S_PR if op == OP_REFERENCED else S_TTU
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    if (w32[pb + G.PAGE_MAPPING] != av or w32[pb + G.PAGE_MAPCOUNT] <= 0
            or anon_vma_lock_word_c(w32, g, av) != w):
        lock_release_c(words, g, held, w, AV_LOCK, site, SHARED, t_acq)
        return 0, 0, WALK_NOT_MAPPED
    cb = g[G.CPU_BASE]
    prev_state = words[cb + G.F_STATE]
    words[cb + G.F_HOLD_LOCK] = w
    words[cb + G.F_STATE] = WALK
    words[cb + G.F_SINCE] = t_acq
    wait_before = words[cb + G.F_T_WAIT]
    result, visited, status = rmap_walk_locked(words, w32, g, held, page, av, op, out)
    if status == WALK_DONE:
        page_check_address_cost(g, visited)
    hold = lock_release_c(words, g, held, w, AV_LOCK, site, SHARED, t_acq)
    # _walk_end: counters, the walk-length histogram, time under the lock less nested waits.
    words[cb + G.F_STATE] = prev_state
    words[cb + G.F_HOLD_LOCK] = -1
    words[cb + G.F_WALKS] += 1
    words[cb + G.F_VISITED] += visited
    words[cb + G.F_MAX_VISITED] = max(words[cb + G.F_MAX_VISITED], visited)
    words[cb + G.F_T_WALK] += hold - (words[cb + G.F_T_WAIT] - wait_before)
    b = 0
    v = visited
    while v:
        v >>= 1
        b += 1
    words[g[G.WALKHIST_BASE] + b] += 1
    return result, visited, status


@cached_njit
def rmap_walk_anon(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   op: int, out: np.ndarray) -> tuple[int, int, int, int, int]:
    """page_lock_anon_vma's fast path and the whole walk: (result, visited, status, av, w).
    WALK_CONTENDED: the lock ``w`` of ``av`` is busy and nothing was done (the caller
    waits for it and calls ``rmap_walk_anon_locked``)."""
    site = S_PR if op == OP_REFERENCED else S_TTU
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    av = w32[pb + G.PAGE_MAPPING]
    if av < 0 or w32[pb + G.PAGE_MAPCOUNT] <= 0:
        return 0, 0, WALK_NOT_MAPPED, av, -1
    w = anon_vma_lock_word_c(w32, g, av)
    t = lock_acquire_fast(words, g, held, w, AV_LOCK, site, SHARED)
    if t < 0:
        return 0, 0, WALK_CONTENDED, av, w
    r, visited, st = rmap_walk_anon_locked(words, w32, g, held, page, op, out, av, w, t)
    return r, visited, st, av, w


@cached_njit
def do_swap_page_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   slots: np.ndarray, n: int) -> int:
    """Fault ``page`` back in at each swap PTE in ``slots[:n]``: present and young, mapcount
    up, swap count down (an atomic).  Takes each mm's ptl.  Returns the
    faults done, or -1 when aborted."""
    done = 0
    ptrs, pte0 = g[G.PTRS], g[G.PTE0]
    mm0, mm_w32 = g[G.MM0], 2 * g[G.MM_W64]
    cb = g[G.CPU_BASE]
    for i in range(n):
        slot = slots[i]
        mm = slot // ptrs
        ptl = g[G.MM_PTL_W0] + mm * g[G.MM_W64]
        t = lock_acquire_c(words, g, held, ptl, PTL, S_SWAPIN, 0)
        if t < 0:
            return -1
        pe = pte0 + 2 * slot
        if w32[pe] == page and w32[pe + 1] & PTE_SWAP:
            w32[pe + 1] = PTE_PRESENT | PTE_YOUNG
            if mapcount_add_c(words, w32, g, held, page, 1, -1, S_SWAPIN) < 0:
                lock_release_c(words, g, held, ptl, PTL, S_SWAPIN, 0, t)
                return -1
            w32[mm0 + mm * mm_w32 + G.MM_RSS] += 1
            done += 1
            words[cb + G.F_SWAPINS] += 1
        lock_release_c(words, g, held, ptl, PTL, S_SWAPIN, 0, t)
    return done


# Where a compiled shrink_page_list stopped.
SHRINK_DONE, SHRINK_STOP, SHRINK_WAIT_REFERENCED, SHRINK_WAIT_UNMAP, SHRINK_ABORTED = 0, 1, 2, 3, -1


@cached_njit
def shrink_page_list_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       lru: np.ndarray, hand: int, count: int, refault: int,
                       out: np.ndarray) -> tuple[int, int]:
    """shrink_page_list over ``count`` pages of ``lru`` from ``hand`` on (wrapping): for
    each, page_referenced; if no mapping was young, try_to_unmap, and with ``refault`` each
    owner faults it straight back in.  Returns (pages done, why it returned): SHRINK_DONE,
    SHRINK_STOP (the run is stopping: leave between two pages), SHRINK_WAIT_* (the rmap lock
    of the next page is contended: the caller waits for it in Python, where a profile sees
    the wait), SHRINK_ABORTED.  Counts pages_scanned, pages_unmapped, refaults, heartbeat."""
    cb = g[G.CPU_BASE]
    n = len(lru)
    for k in range(count):
        if words[g[G.STOP_W]]:
            return k, SHRINK_STOP
        page = lru[(hand + k) % n]
        r, _visited, st, _av, _w = rmap_walk_anon(words, w32, g, held, page, OP_REFERENCED, out)
        if st == WALK_CONTENDED:
            return k, SHRINK_WAIT_REFERENCED
        if st == WALK_STOPPED:
            return k, SHRINK_ABORTED
        if st == WALK_NOT_MAPPED:
            continue
        st = shrink_page_tail_c(words, w32, g, held, page, r, refault, out)
        if st == SHRINK_WAIT_UNMAP or st == SHRINK_ABORTED:
            return k, st
        words[cb + G.F_HEARTBEAT] += 1
    return count, SHRINK_DONE


@cached_njit
def shrink_page_tail_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                       referenced: int, refault: int, out: np.ndarray) -> int:
    """After page_referenced found ``referenced`` young mappings: count the scan, and unmap
    (and refault) a cold page.  SHRINK_DONE, SHRINK_WAIT_UNMAP (try_to_unmap's lock is
    contended: the page is counted as scanned, the caller goes on with try_to_unmap) or
    SHRINK_ABORTED."""
    cb = g[G.CPU_BASE]
    words[cb + G.F_SCANNED] += 1
    if referenced:
        return SHRINK_DONE
    nun, _, st, _av, _w = rmap_walk_anon(words, w32, g, held, page, OP_UNMAP, out)
    if st == WALK_CONTENDED:
        return SHRINK_WAIT_UNMAP
    if st == WALK_STOPPED:
        return SHRINK_ABORTED
    return unmapped_tail_c(words, w32, g, held, page, nun, refault, out)


@cached_njit
def unmapped_tail_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                    nun: int, refault: int, out: np.ndarray) -> int:
    cb = g[G.CPU_BASE]
    if nun:
        words[cb + G.F_UNMAPPED] += 1
        if refault:
            done = do_swap_page_c(words, w32, g, held, page, out, nun)
            if done < 0:
                return SHRINK_ABORTED
            words[cb + G.F_REFAULTS] += done
    return SHRINK_DONE


@cached_njit(nrt=True)
def walk_lengths(w32: np.ndarray, g: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """``scan``'s arithmetic: the entries page_referenced would visit for each page, counted
    in one process with no lock and no change (the same loop as ``rmap_walk_locked``)."""
    out = np.zeros(len(pages), dtype=np.int64)
    ptrs, vma0, vma_w, pte0 = g[G.PTRS], g[G.VMA0], g[G.VMA_W], g[G.PTE0]
    chunk0, chunk_w = g[G.CHUNK0], g[G.CHUNK_W]
    for i in range(len(pages)):
        page = pages[i]
        pb = g[G.PAGE0] + page * g[G.PAGE_W]
        av = w32[pb + G.PAGE_MAPPING]
        need = w32[pb + G.PAGE_MAPCOUNT]
        if av < 0 or need <= 0:
            continue
        index = w32[pb + G.PAGE_INDEX]
        found = visited = 0
        c = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_HEAD]
        while c >= 0 and found < need:
            cb = chunk0 + c * chunk_w
            for pos in range(w32[cb + G.CHUNK_USED]):
                vma = w32[cb + G.CHUNK_VMA + pos]
                if vma == 0:
                    continue
                visited += 1
                vb = vma0 + vma * vma_w
                start = w32[vb + G.VMA_START]
                addr = start + (index - w32[vb + G.VMA_PGOFF])
                if addr < start or addr >= w32[vb + G.VMA_END]:
                    continue
                pe = pte0 + 2 * (w32[vb + G.VMA_MM] * ptrs + addr)
                if w32[pe] == page and w32[pe + 1] & PTE_PRESENT:
                    found += 1
                    if found >= need:
                        break
            c = w32[cb + G.CHUNK_NEXT]
        out[i] = visited
    return out




# ---------------------------------------------------------------------------- wrappers


def page_lock_anon_vma(m: Model, w: int, site: int) -> int:
    """Wait for the anon_vma lock word ``w`` that the fast path found busy; returns the
    acquire time.  Raises Stopped when the run is aborted meanwhile."""
    return m.locks.lock_contended(w, AV_LOCK, site, SHARED)


def rmap_walk(m: Model, page: int, op: int) -> tuple[int, int]:
    """One walk from Python: the compiled fast path, or, when the anon_vma lock is busy,
    the wait in page_lock_anon_vma and then the walk.  (result, visited)."""
    r, visited, st, av, w = rmap_walk_anon(m.words, m.w32, m.g, m.locks.held, page, op, m.walk_out)
    if st == WALK_CONTENDED:
        t = page_lock_anon_vma(m, w, S_PR if op == OP_REFERENCED else S_TTU)
        r, visited, st = rmap_walk_anon_locked(m.words, m.w32, m.g, m.locks.held, page, op,
                                               m.walk_out, av, w, t)
    if st == WALK_STOPPED:
        raise Stopped()
    return r, visited


def page_referenced_anon(m: Model, page: int) -> tuple[int, int]:
    """Reclaim's question for one page: how many of its mappings were young (each cleared),
    and how many list entries the walk visited.  (0, 0) for a page that is not mapped.

    Takes the page's anon_vma lock (page_lock_anon_vma) for the whole walk, and each present
    PTE's ptl inside it; publishes the walk in this CPU's slot."""
    return rmap_walk(m, page, OP_REFERENCED)


page_referenced = page_referenced_anon  # anonymous pages are all the model has


def try_to_unmap(m: Model, page: int) -> tuple[list[int], int]:
    """Unmap every mapping of page, leaving swap entries behind; returns the PTE slots it
    unmapped (for the owners to fault back in) and the entries visited.  Stops at the first
    mapping found referenced (SWAP_FAIL), and then the walk's length is up to that entry.
    Takes the page's anon_vma lock for the walk."""
    n, visited = rmap_walk(m, page, OP_UNMAP)
    return m.walk_out[:n].tolist(), visited


def shrink_page_list(m: Model, lru: np.ndarray, hand: int, count: int, refault: bool) -> int:
    """shrink_page_list over ``count`` pages of ``lru`` from ``hand`` (wrapping); returns the
    pages done, fewer than ``count`` only when the run is stopping.  Runs compiled; a
    contended rmap lock comes back here to be waited for in page_lock_anon_vma, so that
    the wait is a frame of its own in a profile.  Raises Stopped when aborted."""
    done = 0
    held, out = m.locks.held, m.walk_out
    while done < count:
        k, why = shrink_page_list_c(m.words, m.w32, m.g, held, lru, hand + done, count - done,
                                    int(refault), out)
        done += k
        if why == SHRINK_DONE or why == SHRINK_STOP:
            return done
        if why == SHRINK_ABORTED:
            raise Stopped()
        page = int(lru[(hand + done) % len(lru)])
        visited = 0
        if why == SHRINK_WAIT_REFERENCED:
            referenced, visited = page_referenced_anon(m, page)
            if visited:
                why = shrink_page_tail_c(m.words, m.w32, m.g, held, page, referenced, int(refault), out)
                if why == SHRINK_ABORTED:
                    raise Stopped()
        if why == SHRINK_WAIT_UNMAP:
            nun = len(try_to_unmap(m, page))
            if unmapped_tail_c(m.words, m.w32, m.g, held, page, nun, int(refault), out) < 0:
                raise Stopped()
            visited = 1
        if visited:
            m.words[m.locks.f["heartbeat"]] += 1
        done += 1
    return done


def walk_lengths_of(m: Model, pages: np.ndarray) -> np.ndarray:
    """Entries page_referenced would visit for each of ``pages`` (no lock, no change)."""
    return walk_lengths(m.w32, m.g, np.asarray(pages, dtype=np.int64))

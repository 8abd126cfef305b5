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
kernel's loop does: the list is followed node by node (``list_for_each_entry``: each
``next`` is a load that depends on the one before, through the AVC and then its VMA in
2.6.34+, through the VMA in 2.6.33), each visited entry that holds the
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
from .interval_tree import anon_vma_interval_tree_iter_first, anon_vma_interval_tree_iter_next
from .layout import (
    CPU_STATE,
    PG_ANON_EXCLUSIVE,
    PG_LOCKED,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
)
from .locking.atomics import (
    READ_ONCE,
    atomic_fetch_add,
    atomic_fetch_and,
    atomic_fetch_or,
    clock_ns,
    cpu_relax,
    futex_wait,
)
from .locking.cached_compile import cached_njit
from .locks import (
    CLASS,
    SITE,
    Stopped,
    lock_acquire_c,
    lock_acquire_fast,
    lock_release_c,
    lock_request_cancel,
    lock_request_fast,
)
from .model import Model
from .pgtable import pte_lockptr_c, pte_maps_page, pte_offset_map_c, pte_page_bases_of
from .slab import kmem_cache_alloc_c, kmem_cache_free_c

WALK = CPU_STATE["walk"]
AV_LOCK, PTL = CLASS["anon_vma"], CLASS["ptl"]
S_PR, S_TTU = SITE["page_referenced"], SITE["try_to_unmap"]
S_PR_ONE, S_TTU_ONE, S_SWAPIN = SITE["page_referenced_one"], SITE["try_to_unmap_one"], SITE["do_swap_page"]
S_WP = SITE["do_wp_page"]
SWAP_LOCK, S_SWAP_DUP, S_SWAP_FREE = CLASS["swap_lock"], SITE["swap_duplicate"], SITE["swap_free"]
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
def anon_vma_freed_c(w32: np.ndarray, g: np.ndarray, av: int) -> bool:
    """av's record is free: a page whose ``mapping`` is av points at freed memory (the
    kernel would lock and walk whatever the slab put there; records here are type-stable,
    so the model can see it and refuse to follow it)."""
    return w32[g[G.AV0] + av * 2 * g[G.AV_W64] + g[G.IN_USE + G.K_ANON_VMA]] != 1


@njit(inline="always")
def page_set_anon_exclusive_c(w32: np.ndarray, g: np.ndarray, page: int, on: bool) -> int:
    """SetPageAnonExclusive / ClearPageAnonExclusive (an atomic on the flags word, which
    PG_locked shares); returns whether it was set before."""
    i = g[G.PAGE0] + page * g[G.PAGE_W] + G.PAGE_FLAGS
    if on:
        return atomic_fetch_or(w32, i, PG_ANON_EXCLUSIVE) & PG_ANON_EXCLUSIVE
    return atomic_fetch_and(w32, i, ~PG_ANON_EXCLUSIVE) & PG_ANON_EXCLUSIVE


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


# What one visited entry did to the walk (rmap_one_c).
ONE_MISS, ONE_FOUND, ONE_FOUND_END, ONE_STOPPED = 0, 1, 2, -1


@njit(inline="always")
def rmap_one_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
               vma: int, index: int, op: int, out: np.ndarray, result: int) -> tuple[int, int]:
    """One visited entry of a walk: ``vma_address``; ``page_check_address`` (pte_present
    without the lock, then the PTE lock and the compare under it); on a match
    ``page_referenced_one`` (test-and-clear young) or ``try_to_unmap_one`` (a young PTE is
    SWAP_FAIL; otherwise ``swap_duplicate`` under the global swap_lock and a swap entry in
    the PTE's place, the slot stored at ``out[result]``).  Returns (ONE_* code, result).

    Expects held: the rmap lock.  Takes and releases the PTE page's lock, the swap_lock
    inside it."""
    vb = g[G.VMA0] + vma * g[G.VMA_W]
    start = w32[vb + G.VMA_START]
    addr = start + (index - w32[vb + G.VMA_PGOFF])  # vma_address
    if addr < start or addr >= w32[vb + G.VMA_END]:
        return ONE_MISS, result
    mm = w32[vb + G.VMA_MM]
    # page_check_address: pgd -> pud -> pmd -> pte (a none level: not mapped here), then
    # pte_present without the lock, then the PTE page's lock and the compare under it.
    pe = pte_offset_map_c(w32, g, mm, addr)
    if pe < 0 or not w32[pe + 1] & PTE_PRESENT:
        return ONE_MISS, result
    site = S_PR_ONE if op == OP_REFERENCED else S_TTU_ONE
    ptl = pte_lockptr_c(g, pe)
    t = lock_acquire_c(words, g, held, ptl, PTL, site, 0)
    if t < 0:
        return ONE_STOPPED, result
    fl = w32[pe + 1]
    code = ONE_MISS
    if w32[pe] == page and fl & PTE_PRESENT:
        code = ONE_FOUND
        if op == OP_REFERENCED:  # page_referenced_one
            if fl & PTE_YOUNG:
                w32[pe + 1] = fl & ~PTE_YOUNG
                result += 1
        elif fl & PTE_YOUNG:  # try_to_unmap_one: referenced meanwhile: SWAP_FAIL
            w32[pe + 1] = fl & ~PTE_YOUNG
            code = ONE_FOUND_END
        else:  # try_to_unmap_one: a swap entry in its place
            # swap_duplicate: the swap map's count, under the global swap_lock.
            ts = lock_acquire_c(words, g, held, g[G.SWAP_LOCK_W], SWAP_LOCK, S_SWAP_DUP, 0)
            if ts < 0:
                lock_release_c(words, g, held, ptl, PTL, site, 0, t)
                return ONE_STOPPED, result
            lock_release_c(words, g, held, g[G.SWAP_LOCK_W], SWAP_LOCK, S_SWAP_DUP, 0, ts)
            # 5.19+: an exclusive page leaves an exclusive swap PTE (page_try_share_anon_rmap
            # clears the page's bit, pte_swp_mkexclusive keeps it in the PTE).
            was_excl = page_set_anon_exclusive_c(w32, g, page, False)
            w32[pe + 1] = PTE_SWAP | (PTE_SWP_EXCLUSIVE if was_excl else 0)
            if mapcount_add_c(words, w32, g, held, page, -1, 1, site) < 0:
                lock_release_c(words, g, held, ptl, PTL, site, 0, t)
                return ONE_STOPPED, result
            atomic_fetch_add(w32, g[G.MM0] + mm * 2 * g[G.MM_W64] + G.MM_RSS, -1)  # add_mm_counter
            out[result] = mm * g[G.PTRS] + addr  # the slot: the address a refault comes back to
            result += 1
    lock_release_c(words, g, held, ptl, PTL, site, 0, t)
    return code, result


@cached_njit
def rmap_walk_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                     av: int, op: int, out: np.ndarray) -> tuple[int, int, int]:
    """The walk itself, over av's list: (result, entries visited, status).  ``result`` is
    the number of young mappings found (and cleared) for OP_REFERENCED, or the number of
    PTE slots unmapped, stored in ``out[:result]``, for OP_UNMAP.  status is WALK_DONE or
    WALK_STOPPED (a nested wait was aborted).  The walk ends once ``mapcount`` mappings
    were found, or at try_to_unmap's SWAP_FAIL.

    Expects held: av's lock.  Each visited entry: rmap_one_c."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    need = w32[pb + G.PAGE_MAPCOUNT]
    index = w32[pb + G.PAGE_INDEX]
    result = found = visited = 0
    if need <= 0:
        return result, visited, WALK_DONE
    # The list's nodes: the AVCs' same_anon_vma (2.6.34+) or the VMAs' anon_vma_node.
    chain = g[G.CHAIN] != 0
    if chain:
        node0, node_w, next_f = g[G.AVC0], g[G.AVC_W], G.AVC_AV_NEXT
    else:
        node0, node_w, next_f = g[G.VMA0], g[G.VMA_W], G.VMA_AV_NEXT
    node = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_HEAD]
    while node >= 0:
        nb = node0 + node * node_w
        vma = w32[nb + G.AVC_VMA] if chain else node
        visited += 1
        code, result = rmap_one_c(words, w32, g, held, page, vma, index, op, out, result)
        if code == ONE_STOPPED:
            return result, visited, WALK_STOPPED
        if code != ONE_MISS:
            found += 1
            if code == ONE_FOUND_END or found >= need:
                return result, visited, WALK_DONE
        node = w32[nb + next_f]
    return result, visited, WALK_DONE


@cached_njit
def rmap_walk_tree_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                          page: int, av: int, op: int, out: np.ndarray) -> tuple[int, int, int]:
    """rmap_walk_locked of the eras with an interval tree (3.7+):
    ``anon_vma_interval_tree_foreach(avc, &anon_vma->rb_root, pgoff, pgoff)``, so every
    visited VMA holds the page's index.  Same results and status; ``visited`` counts the
    VMAs visited (tree nodes examined are counted by ``walk_lengths_tree``).

    Expects held: av's lock.  Each visited entry: rmap_one_c."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    need = w32[pb + G.PAGE_MAPCOUNT]
    index = w32[pb + G.PAGE_INDEX]
    avc0, avc_w = g[G.AVC0], g[G.AVC_W]
    result = found = visited = 0
    if need <= 0:
        return result, visited, WALK_DONE
    avc, _ = anon_vma_interval_tree_iter_first(w32, g, av, index)
    while avc >= 0:
        visited += 1
        code, result = rmap_one_c(words, w32, g, held, page, w32[avc0 + avc * avc_w + G.AVC_VMA], index,
                                  op, out, result)
        if code == ONE_STOPPED:
            return result, visited, WALK_STOPPED
        if code != ONE_MISS:
            found += 1
            if code == ONE_FOUND_END or found >= need:
                return result, visited, WALK_DONE
        avc, _ = anon_vma_interval_tree_iter_next(w32, g, avc, index)
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
    if g[G.TREE]:  # 3.7+: only the VMAs whose pgoff range holds the page
        result, visited, status = rmap_walk_tree_locked(words, w32, g, held, page, av, op, out)
    else:
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
    if av < 0 or w32[pb + G.PAGE_MAPCOUNT] <= 0 or anon_vma_freed_c(w32, g, av):
        if av >= 0 and w32[pb + G.PAGE_MAPCOUNT] > 0:  # the kernel's oops: counted, not followed
            words[g[G.CPU_BASE] + G.F_FREED_AV] += 1
        # A walk asked again (after returning to Python to wait) that no longer needs
        # the lock: give up the place its first request took.
        if g[G.REQ_PLACE] != 0:
            lock_request_cancel(words, g)
        return 0, 0, WALK_NOT_MAPPED, av, -1
    w = anon_vma_lock_word_c(w32, g, av)
    # The request point: a contended ticket lock's ticket is taken here, in compiled
    # code, and the wait in page_lock_anon_vma polls it; a reclaim walk that trylocks
    # (the era's rmap_trylock) takes no place.
    if g[G.RMAP_TRYLOCK]:
        t = lock_acquire_fast(words, g, held, w, AV_LOCK, site, SHARED)
    else:
        t = lock_request_fast(words, g, held, w, AV_LOCK, site, SHARED)
    if t < 0:
        return 0, 0, WALK_CONTENDED, av, w
    r, visited, st = rmap_walk_anon_locked(words, w32, g, held, page, op, out, av, w, t)
    return r, visited, st, av, w


# ---------------------------------------------------------------------------- the page lock


@njit(inline="always")
def trylock_page_c(w32: np.ndarray, g: np.ndarray, page: int) -> bool:
    """trylock_page: set PG_locked if it was clear (an atomic or on the page's flags)."""
    return not atomic_fetch_or(w32, g[G.PAGE0] + page * g[G.PAGE_W] + G.PAGE_FLAGS, PG_LOCKED) & PG_LOCKED


@cached_njit
def lock_page_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, page: int) -> int:
    """lock_page: wait for PG_locked (spinning a little, then sleeping on the word in short
    futex naps: unlock_page wakes nobody, as the kernel's wait_on_page_bit sleeps are woken
    by a hashed wait queue the model does not have).  0, or -1 when the run is aborted
    meanwhile (stop word 2)."""
    i = g[G.PAGE0] + page * g[G.PAGE_W] + G.PAGE_FLAGS
    spins = 0
    while atomic_fetch_or(w32, i, PG_LOCKED) & PG_LOCKED:
        if READ_ONCE(words, g[G.STOP_W]) >= 2:
            return -1
        spins += 1
        if spins < 64:
            cpu_relax()
        else:
            futex_wait(w32, i, READ_ONCE(w32, i), 50_000)
    return 0


@njit(inline="always")
def unlock_page_c(w32: np.ndarray, g: np.ndarray, page: int) -> None:
    atomic_fetch_and(w32, g[G.PAGE0] + page * g[G.PAGE_W] + G.PAGE_FLAGS, ~PG_LOCKED)


# ---------------------------------------------------------------------------- swap-in


@njit(inline="always")
def find_vma_c(w32: np.ndarray, g: np.ndarray, mm: int, vpn: int) -> int:
    """The VMA of mm holding vpn, or -1 (the mm's VMA list, as find_vma walks it)."""
    v = w32[g[G.MM0] + mm * 2 * g[G.MM_W64] + G.MM_VMA_HEAD]
    while v >= 0:
        vb = g[G.VMA0] + v * g[G.VMA_W]
        if w32[vb + G.VMA_START] <= vpn < w32[vb + G.VMA_END]:
            return v
        v = w32[vb + G.VMA_NEXT]
    return -1


@njit(inline="always")
def oldest_anon_vma_c(w32: np.ndarray, g: np.ndarray, vma: int) -> int:
    """2.6.34's ``list_entry(vma->anon_vma_chain.prev, ...)->anon_vma``: the last AVC of
    vma's same_vma list (newest first), the deepest ancestor."""
    vb = g[G.VMA0] + vma * g[G.VMA_W]
    av = w32[vb + G.VMA_ANON_VMA]
    a = w32[vb + G.VMA_AVC_HEAD]
    while a >= 0:
        ab = g[G.AVC0] + a * g[G.AVC_W]
        av = w32[ab + G.AVC_ANON_VMA]
        a = w32[ab + G.AVC_SAME_VMA_NEXT]
    return av


@njit(inline="always")
def page_add_anon_rmap_swapin_c(w32: np.ndarray, g: np.ndarray, page: int, vma: int, first: bool,
                                exclusive: bool) -> None:
    """do_swap_page's page_add_anon_rmap / do_page_add_anon_rmap: on the first mapping,
    ``__page_set_anon_rmap`` as the era does it (eras.Era.swapin).  A page whose mapping is
    -1 was dropped from the swap cache and has just been read fresh from swap (not
    PageAnon).  Expects held: the page lock."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    vb = g[G.VMA0] + vma * g[G.VMA_W]
    fresh = w32[pb + G.PAGE_MAPPING] < 0
    if not (first or fresh):
        return
    mode = g[G.SWAPIN]
    av = w32[vb + G.VMA_ANON_VMA]  # SWAPIN_KEEP: 2.6.33, and the seed (2.6.34-rc1 to -rc3)
    if mode == G.SWAPIN_OLDEST:  # 2.6.34: exclusive=0, the oldest of the chain, always
        av = oldest_anon_vma_c(w32, g, vma)
    elif mode == G.SWAPIN_ROOT or mode == G.SWAPIN_ANON_EXCLUSIVE:  # 2.6.36+: if (PageAnon(page)) return;
        if not fresh:
            return
        if not exclusive:
            av = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_ROOT]
    w32[pb + G.PAGE_MAPPING] = av  # page->index: linear_page_index gives back the same


@cached_njit
def do_swap_page_one_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                       slot: int, write: int, locked: int) -> int:
    """One fault on the swap PTE at ``slot`` that points at ``page``: lock_page, the ptl,
    recheck the PTE, place the page (page_add_anon_rmap, per era), PTE present and young
    (and writable when a write fault may reuse the page: reuse_swap_page, the faulting
    entry its only user), mapcount up, swap count down (swap_free).  1 done, 0 the PTE
    changed meanwhile, -1 aborted.

    ``slot`` is the faulting address (mm * ptrs_per_mm + vpn): the PTE is found through
    mm's tables (pte_offset_map_lock), and under its lock the walk is done again and must
    give the same PTE (pte_same): the faulting CPU is not the mm's owner here (reclaim
    refaults for the owners), and the mm may have exited, its tables freed and reused,
    meanwhile.  2: done, mapped read-only, and the write fault goes on to do_wp_page.

    Takes: the page lock (unless ``locked``: the caller holds it), then the PTE page's
    lock, the swap_lock (swap_free) inside it."""
    if not locked and lock_page_c(words, w32, g, page) < 0:
        return -1
    ptrs = g[G.PTRS]
    mm = slot // ptrs
    addr = slot - mm * ptrs
    pe = pte_offset_map_c(w32, g, mm, addr)
    if pe < 0:
        if not locked:
            unlock_page_c(w32, g, page)
        return 0
    ptl = pte_lockptr_c(g, pe)
    t = lock_acquire_c(words, g, held, ptl, PTL, S_SWAPIN, 0)
    if t < 0:
        if not locked:
            unlock_page_c(w32, g, page)
        return -1
    done = 0
    if (w32[pe] == page and w32[pe + 1] & PTE_SWAP
            and pte_offset_map_c(w32, g, mm, addr) == pe):
        pb = g[G.PAGE0] + page * g[G.PAGE_W]
        mapcount, swapcount = w32[pb + G.PAGE_MAPCOUNT], w32[pb + G.PAGE_SWAPCOUNT]
        # reuse_swap_page on a write fault: the faulting entry is the page's only user;
        # 5.19+ (anon_exclusive) also an exclusive swap PTE, on read faults too.
        exclusive = write != 0 and mapcount + swapcount == 1
        if g[G.SWAPIN] == G.SWAPIN_ANON_EXCLUSIVE and w32[pe + 1] & PTE_SWP_EXCLUSIVE:
            exclusive = True
        vma = find_vma_c(w32, g, mm, addr)
        page_add_anon_rmap_swapin_c(w32, g, page, vma, mapcount == 0, exclusive)
        if exclusive:
            page_set_anon_exclusive_c(w32, g, page, True)
        w32[pe + 1] = PTE_PRESENT | PTE_YOUNG | (PTE_WRITE if exclusive and write else 0)
        ok = mapcount_add_c(words, w32, g, held, page, 1, -1, S_SWAPIN) >= 0
        if ok:  # swap_free: the swap map's count, under the global swap_lock
            ts = lock_acquire_c(words, g, held, g[G.SWAP_LOCK_W], SWAP_LOCK, S_SWAP_FREE, 0)
            ok = ts >= 0
            if ok:
                lock_release_c(words, g, held, g[G.SWAP_LOCK_W], SWAP_LOCK, S_SWAP_FREE, 0, ts)
        if not ok:
            lock_release_c(words, g, held, ptl, PTL, S_SWAPIN, 0, t)
            if not locked:
                unlock_page_c(w32, g, page)
            return -1
        atomic_fetch_add(w32, g[G.MM0] + mm * 2 * g[G.MM_W64] + G.MM_RSS, 1)  # add_mm_counter
        words[g[G.CPU_BASE] + G.F_SWAPINS] += 1
        done = 2 if write and not exclusive else 1
    lock_release_c(words, g, held, ptl, PTL, S_SWAPIN, 0, t)
    if not locked:
        unlock_page_c(w32, g, page)
    return done


@cached_njit
def do_swap_page_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   slots: np.ndarray, n: int, write: int, locked: int) -> int:
    """Fault ``page`` back in at each swap PTE in ``slots[:n]``, in that order (see
    do_swap_page_one_c); a write fault that could not map the page exclusively goes on to
    do_wp_page (wp_page_copy_c), every era.  Returns the faults done, or -1 when aborted."""
    done = 0
    for i in range(n):
        d = do_swap_page_one_c(words, w32, g, held, page, slots[i], write, locked)
        if d < 0:
            return -1
        if d == 2 and wp_page_copy_c(words, w32, g, held, page, slots[i]) < 0:
            return -1
        done += 1 if d else 0
    return done


@cached_njit
def wp_page_copy_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   slot: int) -> int:
    """do_wp_page after a write fault's do_swap_page mapped ``page`` read-only at ``slot``
    (it was not the only user): reuse it if it has become ours alone meanwhile (as
    do_wp_pages_c: one atomic read of the counts word; page_move_anon_rmap, 2.6.34+),
    else wp_page_copy: a new page in ``vma->anon_vma``, allocated before the PTE lock is
    taken again, the PTE rechecked under it (pte_same), the old page's mapcount down.
    0 done (or the PTE changed meanwhile), -1 aborted, or an allocation failure status.

    Takes: the slab lock (allocation), then the PTE page's lock."""
    new = g[G.WP_SCRATCH : G.WP_SCRATCH + 1]
    st = kmem_cache_alloc_c(words, w32, g, held, G.K_PAGE, 1, new)
    if st < 0:
        return st
    ptrs = g[G.PTRS]
    mm = slot // ptrs
    addr = slot - mm * ptrs
    used = False
    dead = False
    pe = pte_offset_map_c(w32, g, mm, addr)
    if pe >= 0:
        ptl = pte_lockptr_c(g, pe)
        t = lock_acquire_c(words, g, held, ptl, PTL, S_WP, 0)
        if t < 0:
            return -1
        if w32[pe] == page and (w32[pe + 1] & (PTE_PRESENT | PTE_WRITE)) == PTE_PRESENT:
            pb = g[G.PAGE0] + page * g[G.PAGE_W]
            vma = find_vma_c(w32, g, mm, addr)
            vb = g[G.VMA0] + vma * g[G.VMA_W]
            av = w32[vb + G.VMA_ANON_VMA]
            if READ_ONCE(words, (pb + G.PAGE_MAPCOUNT) >> 1) == 1:  # reuse_swap_page
                w32[pe + 1] |= PTE_WRITE | PTE_YOUNG
                page_set_anon_exclusive_c(w32, g, page, True)
                if g[G.MOVE_ANON_RMAP]:
                    w32[pb + G.PAGE_MAPPING] = av
            else:
                p = new[0]
                nb = g[G.PAGE0] + p * g[G.PAGE_W]
                w32[nb + G.PAGE_MAPPING] = av
                w32[nb + G.PAGE_INDEX] = w32[vb + G.VMA_PGOFF] + (addr - w32[vb + G.VMA_START])
                w32[nb + G.PAGE_MAPCOUNT] = 1
                w32[nb + G.PAGE_SWAPCOUNT] = 0
                page_set_anon_exclusive_c(w32, g, p, True)
                words[g[G.CPU_BASE] + G.F_FRAMES_IN] += 1
                w32[pe] = p
                w32[pe + 1] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
                used = True
                dead = mapcount_add_c(words, w32, g, held, page, -1, 0, S_WP) == 1
        lock_release_c(words, g, held, ptl, PTL, S_WP, 0, t)
    if used and not dead:
        return 0
    if dead:  # cannot happen while swap PTEs still point at it, but free it if so
        new[0] = page
    nb = g[G.PAGE0] + new[0] * g[G.PAGE_W]
    w32[nb + G.PAGE_MAPPING] = -1
    w32[nb + G.PAGE_INDEX] = -1
    st = kmem_cache_free_c(words, w32, g, held, G.K_PAGE, new, 1)
    return min(0, st)


@njit(inline="always")
def delete_from_swap_cache_locked_c(w32: np.ndarray, g: np.ndarray, page: int) -> int:
    """Reclaim meets a page it unmapped earlier, written back and clean: __remove_mapping ->
    __delete_from_swap_cache, and the frame is freed (free_hot_cold_page clears an anon
    page's mapping).  What is left is a swap slot: the record stays (swap PTEs point at
    it) with mapping -1, and the next fault reads it fresh from swap.  1 if dropped.
    Expects held: the page lock."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    if (w32[pb + G.PAGE_MAPPING] >= 0 and w32[pb + G.PAGE_MAPCOUNT] == 0
            and w32[pb + G.PAGE_SWAPCOUNT] > 0):
        w32[pb + G.PAGE_MAPPING] = -1
        return 1
    return 0


@cached_njit
def delete_from_swap_cache_c(w32: np.ndarray, g: np.ndarray, page: int) -> int:
    """trylock_page, then delete_from_swap_cache_locked_c: 1 if dropped, 0 if not (busy,
    mapped again, or no longer in the swap cache)."""
    if not trylock_page_c(w32, g, page):
        return 0
    r = delete_from_swap_cache_locked_c(w32, g, page)
    unlock_page_c(w32, g, page)
    return r


@njit(inline="always")
def refault_order_c(g: np.ndarray, slots: np.ndarray) -> None:
    """Put the swap PTE slots a walk unmapped in the order their owners fault them back in
    (g[REFAULT_ORDER], ``--refault-order``): parent-first is mm order (slot = mm * ptrs +
    vpn; a fork family's parent is its lowest mm), child-first the reverse, random a
    shuffle drawn from this CPU's generator.  Order decides placement only where the first
    mapping decides it (the seed's, 2.6.34-rc1); the other eras must not depend on it."""
    n = len(slots)
    for a in range(1, n):  # insertion sort: the walk's order is nearly mm order
        x, b = slots[a], a - 1
        while b >= 0 and slots[b] > x:
            slots[b + 1] = slots[b]
            b -= 1
        slots[b + 1] = x
    order = g[G.REFAULT_ORDER]
    if order == G.REFAULT_CHILD_FIRST:
        for a in range(n // 2):
            slots[a], slots[n - 1 - a] = slots[n - 1 - a], slots[a]
    elif order == G.REFAULT_RANDOM:
        for a in range(n - 1, 0, -1):  # Fisher-Yates, xorshift64 as the slab's injector
            x = np.uint64(g[G.RNG])
            x ^= x << np.uint64(13)
            x ^= x >> np.uint64(7)
            x ^= x << np.uint64(17)
            g[G.RNG] = np.int64(x)
            j = np.int64(x >> np.uint64(33)) % (a + 1)
            slots[a], slots[j] = slots[j], slots[a]


# Refault modes of ``refault_pass_c`` (``scan --refault``).
REFAULT_CACHE, REFAULT_READ, REFAULT_WRITE = 0, 1, 2
REFAULT_MODES = {"cache": REFAULT_CACHE, "read": REFAULT_READ, "write": REFAULT_WRITE}


@cached_njit
def refault_pass_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                   pages: np.ndarray, mode: int, out: np.ndarray) -> tuple[int, int, int, int]:
    """``scan --refault``'s sweep: for each page, try_to_unmap (every PTE old, so it
    unmaps them all), then, unless ``mode`` is REFAULT_CACHE, drop it from the swap cache
    (written back, reclaimed: the next faults read it fresh); then each process that mapped
    it faults it back in, in the order of ``refault_order_c`` (read faults, or write faults
    for REFAULT_WRITE).
    Returns (pages unmapped, PTEs unmapped, pages dropped, faults), or a -1 first item when
    aborted or a walk found its lock busy (one process: it cannot)."""
    nun = npte = ndrop = nfault = 0
    write = 1 if mode == REFAULT_WRITE else 0
    for i in range(len(pages)):
        page = pages[i]
        r, _visited, st, _av, _w = rmap_walk_anon(words, w32, g, held, page, OP_UNMAP, out)
        if st == WALK_CONTENDED or st == WALK_STOPPED:
            lock_request_cancel(words, g)  # nobody will wait on the place it took
            return -1, npte, ndrop, nfault
        if st == WALK_NOT_MAPPED or r == 0:
            continue
        nun += 1
        npte += r
        slots = out[:r]
        refault_order_c(g, slots)
        if mode != REFAULT_CACHE and lock_page_c(words, w32, g, page) == 0:
            ndrop += delete_from_swap_cache_locked_c(w32, g, page)
            unlock_page_c(w32, g, page)
        d = do_swap_page_c(words, w32, g, held, page, slots, r, write, 0)
        if d < 0:
            return -1, npte, ndrop, nfault
        nfault += d
    return nun, npte, ndrop, nfault


# ---------------------------------------------------------------------------- vmscan
#
# Reclaim as mm/vmscan.c of 2.6.33-3.0 does it for anonymous pages, over one CPU's share of
# the LRU: ``lru`` holds the share's pages and ``active`` (process-local, one flag each)
# says which list each is on, active or inactive; a clock hand over the share stands for
# each list's tail.  A page comes back from swap to the inactive list (lru_cache_add_anon).
#
#   shrink_active_list    when the inactive list is low (inactive_anon_is_low: fewer
#                         inactive than active pages), takes pages off the active list's
#                         tail and walks each (page_referenced: walk 1), deactivating every
#                         anonymous page whether referenced or not.
#   shrink_page_list      for each inactive page: trylock_page (busy: skip it), then
#                         page_check_references (page_referenced: walk 2; referenced ->
#                         activate), else try_to_unmap (walk 3), under the page lock.  A page
#                         found unmapped from an earlier pass is dropped from the swap cache.

# Where a compiled shrink_page_list / shrink_active_list stopped.
SHRINK_DONE, SHRINK_STOP, SHRINK_WAIT_REFERENCED, SHRINK_WAIT_UNMAP, SHRINK_ABORTED = 0, 1, 2, 3, -1


@cached_njit
def shrink_page_list_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       lru: np.ndarray, active: np.ndarray, hand: int, count: int, refault: int,
                       out: np.ndarray) -> tuple[int, int]:
    """shrink_page_list over ``count`` positions of ``lru`` from ``hand`` on (wrapping),
    taking the inactive pages there (active ones belong to shrink_active_list): for each,
    trylock_page (busy: keep it, next), page_check_references (page_referenced; referenced:
    activate), else try_to_unmap, and with ``refault`` each owner faults it straight back
    in.  Returns (positions done, why it returned): SHRINK_DONE, SHRINK_STOP (the run is
    stopping: leave between two pages), SHRINK_WAIT_* (the rmap lock of the page at the
    next position is contended: the caller waits for it in Python, where a profile sees
    the wait, still holding that page's lock), SHRINK_ABORTED.  Counts pages_scanned,
    pages_unmapped, refaults, heartbeat.

    Takes: the page lock of each page (trylock), the rmap lock and PTE locks inside it."""
    cb = g[G.CPU_BASE]
    n = len(lru)
    for k in range(count):
        if words[g[G.STOP_W]]:
            return k, SHRINK_STOP
        idx = (hand + k) % n
        if active[idx]:
            continue
        page = lru[idx]
        if not trylock_page_c(w32, g, page):
            continue
        r, _visited, st, _av, _w = rmap_walk_anon(words, w32, g, held, page, OP_REFERENCED, out)
        if st == WALK_CONTENDED and g[G.RMAP_TRYLOCK]:
            # folio_referenced with rwc.try_lock (modern): the trylock failed (-1), and
            # folio_check_references keeps the page ("rmap lock contention: rotate",
            # FOLIOREF_KEEP: back on the inactive list); reclaim moves on.
            words[cb + G.F_TRYLOCK_FAIL] += 1
            words[cb + G.F_SCANNED] += 1
            unlock_page_c(w32, g, page)
            words[cb + G.F_HEARTBEAT] += 1
            continue
        if st == WALK_CONTENDED:
            return k, SHRINK_WAIT_REFERENCED
        if st == WALK_STOPPED:
            unlock_page_c(w32, g, page)
            return k, SHRINK_ABORTED
        if st == WALK_NOT_MAPPED:
            # Unmapped on an earlier pass and written back since: free its frame
            # (__remove_mapping), leaving the swap slot; its next fault reads it fresh.
            delete_from_swap_cache_locked_c(w32, g, page)
            unlock_page_c(w32, g, page)
            continue
        st = shrink_page_tail_c(words, w32, g, held, page, r, refault, out, active, idx)
        if st == SHRINK_WAIT_UNMAP:
            return k, st
        unlock_page_c(w32, g, page)
        if st == SHRINK_ABORTED:
            return k, st
        words[cb + G.F_HEARTBEAT] += 1
    return count, SHRINK_DONE


@cached_njit
def shrink_page_tail_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                       referenced: int, refault: int, out: np.ndarray, active: np.ndarray,
                       idx: int) -> int:
    """After page_check_references found ``referenced`` young mappings: count the scan;
    activate a referenced page (PAGEREF_ACTIVATE), unmap (and refault) a cold one.
    SHRINK_DONE, SHRINK_WAIT_UNMAP (try_to_unmap's lock is contended: the page is counted
    as scanned, the caller goes on with try_to_unmap) or SHRINK_ABORTED.
    Expects held: the page lock (the caller releases it)."""
    cb = g[G.CPU_BASE]
    words[cb + G.F_SCANNED] += 1
    if referenced:
        active[idx] = 1
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
    """After try_to_unmap took ``nun`` mappings: count it, and with ``refault`` fault the
    page straight back in from each (a swap-cache hit: the owners touch it again at once).
    Expects held: the page lock, which the faults run under (do_swap_page's lock_page: the
    owners wait for reclaim to let go of it; the caller releases it)."""
    cb = g[G.CPU_BASE]
    if nun:
        words[cb + G.F_UNMAPPED] += 1
        if refault:
            refault_order_c(g, out[:nun])
            done = do_swap_page_c(words, w32, g, held, page, out, nun, 0, 1)
            if done < 0:
                return SHRINK_ABORTED
            words[cb + G.F_REFAULTS] += done
    return SHRINK_DONE


@cached_njit
def shrink_active_list_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                         lru: np.ndarray, active: np.ndarray, hand: int, count: int,
                         out: np.ndarray) -> tuple[int, int]:
    """shrink_active_list over ``count`` positions of ``lru`` from ``hand``: each active
    page there is walked (page_referenced, clearing its young bits) and deactivated, as
    2.6.33-3.0 do for every anonymous page they take off the active list.  No page lock
    (page_referenced does not take it for an anonymous page).  (positions done, why):
    SHRINK_DONE, SHRINK_STOP, SHRINK_WAIT_REFERENCED (the rmap lock of the page at the next
    position is contended), SHRINK_ABORTED."""
    n = len(lru)
    cb = g[G.CPU_BASE]
    for k in range(count):
        if words[g[G.STOP_W]]:
            return k, SHRINK_STOP
        idx = (hand + k) % n
        if not active[idx]:
            continue
        _r, _visited, st, _av, _w = rmap_walk_anon(words, w32, g, held, lru[idx], OP_REFERENCED, out)
        if st == WALK_CONTENDED and g[G.RMAP_TRYLOCK]:
            # modern: folio_referenced's trylock failed (-1, "referenced"); an anonymous
            # page is deactivated all the same.
            words[cb + G.F_TRYLOCK_FAIL] += 1
        elif st == WALK_CONTENDED:
            return k, SHRINK_WAIT_REFERENCED
        if st == WALK_STOPPED:
            return k, SHRINK_ABORTED
        active[idx] = 0
        words[cb + G.F_DEACTIVATED] += 1
    return count, SHRINK_DONE


@cached_njit
def unlock_page_one(w32: np.ndarray, g: np.ndarray, page: int) -> None:
    """unlock_page, for the Python side of a contended reclaim step."""
    unlock_page_c(w32, g, page)


@njit(inline="always")
def _scan_page(w32: np.ndarray, g: np.ndarray, page: int) -> tuple[int, int, int]:
    """What scan's walks (``walk_lengths``, ``walk_lengths_tree``, ``mappings_found``) read
    of a page before walking: (anon_vma, mapcount, index).  anon_vma is -1 when there is
    nothing to walk (no ``page->mapping``, or no mapping left) and -2 when ``page->mapping``
    is a freed anon_vma, which a walk does not follow."""
    pb = g[G.PAGE0] + page * g[G.PAGE_W]
    av = w32[pb + G.PAGE_MAPPING]
    need = w32[pb + G.PAGE_MAPCOUNT]
    if av < 0 or need <= 0:
        return -1, need, 0
    if anon_vma_freed_c(w32, g, av):
        return -2, need, 0
    return av, need, w32[pb + G.PAGE_INDEX]


@njit(inline="always")
def _list_nodes(g: np.ndarray) -> tuple[bool, int, int, int]:
    """How an anon_vma's list is laid out: (chain, first record, record width, next field):
    AVCs in the chain eras, the VMAs themselves in 2.6.33."""
    if g[G.CHAIN] != 0:
        return True, g[G.AVC0], g[G.AVC_W], G.AVC_AV_NEXT
    return False, g[G.VMA0], g[G.VMA_W], G.VMA_AV_NEXT


@njit(inline="always")
def _maps_page_at(w32: np.ndarray, g: np.ndarray, bases: np.ndarray, per_mm: int, vma: int,
                  index: int, page: int) -> bool:
    """vma_address, then the PTE: vma covers ``index``'s address and its PTE there maps
    ``page``."""
    vb = g[G.VMA0] + vma * g[G.VMA_W]
    start = w32[vb + G.VMA_START]
    addr = start + (index - w32[vb + G.VMA_PGOFF])
    if addr < start or addr >= w32[vb + G.VMA_END]:
        return False
    return pte_maps_page(w32, bases, per_mm, w32[vb + G.VMA_MM], addr, page)


@cached_njit(nrt=True)
def walk_lengths(w32: np.ndarray, g: np.ndarray, pages: np.ndarray, bases: np.ndarray,
                 per_mm: int) -> np.ndarray:
    """``scan``'s arithmetic: the entries page_referenced would visit for each page, counted
    in one process with no lock and no change (the same loop as ``rmap_walk_locked``; a PTE
    found through ``bases``, pgtable.pte_page_bases, instead of the four levels)."""
    out = np.zeros(len(pages), dtype=np.int64)
    chain, node0, node_w, next_f = _list_nodes(g)
    for i in range(len(pages)):
        page = pages[i]
        av, need, index = _scan_page(w32, g, page)
        if av < 0:  # nothing to walk, or a freed anon_vma: not followed
            continue
        found = visited = 0
        node = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_HEAD]
        while node >= 0:
            nb = node0 + node * node_w
            vma = w32[nb + G.AVC_VMA] if chain else node
            node = w32[nb + next_f]
            visited += 1
            if _maps_page_at(w32, g, bases, per_mm, vma, index, page):
                found += 1
                if found >= need:
                    break
        out[i] = visited
    return out


@cached_njit(nrt=True)
def mappings_found(w32: np.ndarray, g: np.ndarray, pages: np.ndarray, bases: np.ndarray,
                   per_mm: int) -> np.ndarray:
    """For each page, how many of its present mappings a walk from ``page->mapping`` finds
    over the whole list (no early stop; the list holds every AVC in the tree eras too): its
    mapcount when the reverse map is whole, fewer when a mapping is unreachable (the seed's
    swap-in placement), -1 when ``page->mapping`` is a freed anon_vma (not followed).  One
    process, no lock, no change (``walk_lengths``' loop)."""
    out = np.zeros(len(pages), dtype=np.int64)
    chain, node0, node_w, next_f = _list_nodes(g)
    for i in range(len(pages)):
        page = pages[i]
        av, _need, index = _scan_page(w32, g, page)
        if av == -2:
            out[i] = -1
        if av < 0:
            continue
        found = 0
        node = w32[g[G.AV0] + av * 2 * g[G.AV_W64] + G.AV_HEAD]
        while node >= 0:
            nb = node0 + node * node_w
            vma = w32[nb + G.AVC_VMA] if chain else node
            node = w32[nb + next_f]
            if _maps_page_at(w32, g, bases, per_mm, vma, index, page):
                found += 1
        out[i] = found
    return out


def mappings_found_of(m: Model, pages: np.ndarray) -> np.ndarray:
    """mappings_found (which see) for ``pages`` of m."""
    return mappings_found(m.w32, m.g, np.asarray(pages, dtype=np.int64), *pte_page_bases_of(m))


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


class AnonLru:
    """One CPU's share of the anonymous LRU: its pages, which list each is on (1: active),
    and a clock hand per list.  Process-local: only this CPU reclaims these pages.  New
    pages start active (lru_cache_add_active_or_unevictable), as a fork family's are."""

    def __init__(self, pages: np.ndarray, active: bool = True) -> None:
        self.pages = np.ascontiguousarray(pages, dtype=np.int64)
        self.active = np.full(len(self.pages), int(active), dtype=np.int64)
        self.hand_inactive = 0
        self.hand_active = 0

    def __len__(self) -> int:
        return len(self.pages)

    def nr_active(self) -> int:
        return int(self.active.sum())

    def inactive_is_low(self) -> bool:
        """inactive_anon_is_low with inactive_ratio 1: fewer inactive than active pages."""
        return 2 * self.nr_active() > len(self.pages)


def shrink_page_list(m: Model, lru: np.ndarray | AnonLru, hand: int, count: int, refault: bool) -> int:
    """shrink_page_list over ``count`` positions of ``lru`` from ``hand`` (wrapping), the
    inactive pages there; returns the positions done, fewer than ``count`` only when the
    run is stopping.  A plain array of pages is taken as all inactive.  Runs compiled; a
    contended rmap lock comes back here to be waited for in page_lock_anon_vma, so that
    the wait is a frame of its own in a profile.  Raises Stopped when aborted."""
    if not isinstance(lru, AnonLru):
        lru = AnonLru(np.asarray(lru), active=False)
    pages, active = lru.pages, lru.active
    done = 0
    held, out = m.locks.held, m.walk_out
    while done < count:
        k, why = shrink_page_list_c(m.words, m.w32, m.g, held, pages, active, hand + done,
                                    count - done, int(refault), out)
        done += k
        if why == SHRINK_DONE or why == SHRINK_STOP:
            return done
        if why == SHRINK_ABORTED:
            raise Stopped()
        idx = (hand + done) % len(pages)
        page = int(pages[idx])
        visited = 0
        try:  # the page lock is ours: give it back whatever happens
            if why == SHRINK_WAIT_REFERENCED:
                referenced, visited = page_referenced_anon(m, page)
                if visited:
                    why = shrink_page_tail_c(m.words, m.w32, m.g, held, page, referenced, int(refault),
                                             out, active, idx)
                    if why == SHRINK_ABORTED:
                        raise Stopped()
            if why == SHRINK_WAIT_UNMAP:
                nun = len(try_to_unmap(m, page))
                if unmapped_tail_c(m.words, m.w32, m.g, held, page, nun, int(refault), out) < 0:
                    raise Stopped()
                visited = 1
        finally:
            unlock_page_one(m.w32, m.g, page)
        if visited:
            m.words[m.locks.f["heartbeat"]] += 1
        done += 1
    return done


def shrink_active_list(m: Model, lru: AnonLru, count: int) -> int:
    """shrink_active_list over ``count`` positions of the share from its active hand: walk
    and deactivate the active pages there; returns positions done (fewer only when the run
    is stopping).  Raises Stopped when aborted."""
    done = 0
    pages, active = lru.pages, lru.active
    n = len(pages)
    while done < count:
        k, why = shrink_active_list_c(m.words, m.w32, m.g, m.locks.held, pages, active,
                                      lru.hand_active + done, count - done, m.walk_out)
        done += k
        if why == SHRINK_DONE or why == SHRINK_STOP:
            break
        if why == SHRINK_ABORTED:
            raise Stopped()
        idx = (lru.hand_active + done) % n
        page_referenced_anon(m, int(pages[idx]))
        active[idx] = 0
        m.words[m.locks.f["pages_deactivated"]] += 1
        done += 1
    lru.hand_active = (lru.hand_active + done) % n
    return done


def shrink_lru(m: Model, lru: AnonLru, count: int, refault: bool) -> int:
    """One reclaim step over a CPU's share, as shrink_zone -> shrink_list does for anon:
    if the inactive list is low, shrink_active_list first (``count`` positions), then
    shrink_page_list over ``count`` positions of the inactive hand.  Returns the inactive
    positions done (fewer than ``count`` only when the run is stopping)."""
    if lru.inactive_is_low():
        shrink_active_list(m, lru, count)
    done = shrink_page_list(m, lru, lru.hand_inactive, count, refault)
    lru.hand_inactive = (lru.hand_inactive + done) % len(lru)
    return done


def delete_from_swap_cache(m: Model, page: int) -> bool:
    """Drop an unmapped, swapped page from the swap cache (its frame freed, its swap slot
    kept): the next fault reads it fresh from swap.  Takes the page lock with trylock, as
    reclaim does; False if it was busy or the page is mapped or already dropped."""
    return bool(delete_from_swap_cache_c(m.w32, m.g, page))


def swap_reads_needed(m: Model, pages: np.ndarray) -> int:
    """How many of ``pages`` a fault would have to read from the swap device: swapped
    (a swap PTE points at them) and no longer in the swap cache (mapping -1).  The hook
    for a swap device's queue: a swap-cache hit costs no IO."""
    p = np.asarray(pages, dtype=np.int64)
    return int(np.count_nonzero((m.page["in_use"][p] == 1) & (m.page_mapping[p] < 0)
                                & (m.page_swapcount[p] > 0)))


def refault_pass(m: Model, pages: np.ndarray, mode: str) -> dict[str, int]:
    """``scan --refault``'s sweep over ``pages`` (see refault_pass_c): try_to_unmap each,
    drop it from the swap cache unless ``mode`` is "cache", fault it back in from every
    mm that mapped it, in mm order ("read" or "write" faults; "cache": read faults on swap
    cache hits).  Every PTE must be old first, or try_to_unmap stops at a young one."""
    nun, npte, ndrop, nfault = refault_pass_c(m.words, m.w32, m.g, m.locks.held,
                                              np.asarray(pages, dtype=np.int64),
                                              REFAULT_MODES[mode], m.walk_out)
    if nun < 0:
        raise Stopped()
    return {"pages_unmapped": int(nun), "ptes_unmapped": int(npte), "swap_cache_dropped": int(ndrop),
            "faults": int(nfault)}


def walk_lengths_of(m: Model, pages: np.ndarray) -> np.ndarray:
    """Entries page_referenced would visit for each of ``pages`` (no lock, no change); in
    eras with an interval tree, the VMAs it visits (see walk_lengths_tree_of)."""
    if m.era.tree:
        return walk_lengths_tree_of(m, pages)[0]
    return walk_lengths(m.w32, m.g, np.asarray(pages, dtype=np.int64), *pte_page_bases_of(m))


@cached_njit(nrt=True)
def walk_lengths_tree(w32: np.ndarray, g: np.ndarray, pages: np.ndarray, bases: np.ndarray,
                      per_mm: int) -> tuple[np.ndarray, np.ndarray]:
    """``walk_lengths`` for the eras with an interval tree: for each page, the VMAs
    page_referenced would visit and the tree nodes it would examine (the loop of
    ``rmap_walk_tree_locked``, without locks or changes)."""
    visited_out = np.zeros(len(pages), dtype=np.int64)
    nodes_out = np.zeros(len(pages), dtype=np.int64)
    vma0, vma_w = g[G.VMA0], g[G.VMA_W]
    avc0, avc_w = g[G.AVC0], g[G.AVC_W]
    for i in range(len(pages)):
        page = pages[i]
        av, need, index = _scan_page(w32, g, page)
        if av < 0:  # nothing to walk, or a freed anon_vma: not followed
            continue
        found = visited = 0
        avc, nodes = anon_vma_interval_tree_iter_first(w32, g, av, index)
        while avc >= 0:
            visited += 1
            vb = vma0 + w32[avc0 + avc * avc_w + G.AVC_VMA] * vma_w
            addr = w32[vb + G.VMA_START] + (index - w32[vb + G.VMA_PGOFF])
            if pte_maps_page(w32, bases, per_mm, w32[vb + G.VMA_MM], addr, page):
                found += 1
                if found >= need:
                    break
            avc, e = anon_vma_interval_tree_iter_next(w32, g, avc, index)
            nodes += e
        visited_out[i] = visited
        nodes_out[i] = nodes
    return visited_out, nodes_out


def walk_lengths_tree_of(m: Model, pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(VMAs visited, tree nodes examined) by page_referenced for each of ``pages``, in an
    era with an interval tree (no lock, no change)."""
    return walk_lengths_tree(m.w32, m.g, np.asarray(pages, dtype=np.int64), *pte_page_bases_of(m))

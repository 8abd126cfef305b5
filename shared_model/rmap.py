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

# Lock ordering in the model (deeper indentation = taken inside), as mm/rmap.c's "Lock
# ordering in mm:" header, cut down to the locks the model has.  The kernel's lines for
# them, per era:
#
#   mm->mmap_sem                       (6.0: mm->mmap_lock)
#     page->flags PG_locked (lock_page)
#       anon_vma->lock                 (2.6.33-2.6.35: a spinlock, each anon_vma its own;
#                                       2.6.36: the root's; 3.0-3.7: anon_vma->mutex, the
#                                       root's; 3.8+: anon_vma->rwsem, the root's, which
#                                       the walks take for read)
#         mm->page_table_lock or pte_lock
#           swap_lock (in swap_duplicate, swap_info_get)
#
# The model's, by lockdep class (layout.LOCK_CLASSES: anon_vma, ptl, slab, swap_lock) and
# the call sites (layout.LOCK_SITES) that nest them (LOCK_ORDER_PATHS below, as data):
#
#   mm->mmap_sem            no lock: an mm is changed only by the CPU that runs it
#     page lock             PG_locked, no lockdep class: shrink_page_list's trylock_page,
#                           do_swap_page's lock_page (reclaim's refault runs under it)
#       anon_vma            the walks: page_referenced, try_to_unmap (reclaim's with a
#                           trylock in 6.0 and modern); the list changes: anon_vma_prepare,
#                           anon_vma_fork, anon_vma_clone, unlink_anon_vmas, vma_adjust
#         ptl               the split PTE lock: page_referenced_one, try_to_unmap_one
#           swap_lock       try_to_unmap_one's swap_duplicate
#         slab              3.0 on (lock_once): anon_vma_clone's GFP_NOWAIT AVC allocation
#                           and unlink_anon_vmas' frees, under the root lock
#       ptl                 do_swap_page (under the page lock)
#         swap_lock         do_swap_page's swap_free
#     ptl                   faults (do_wp_page too), exit's zap, mprotect's
#                           change_protection, fork's copy_page_range, which takes
#       ptl                 the parent's PTE lock inside the child's
#     ptl                   mm->page_table_lock (populating a pud/pmd/pte entry): nothing
#                           inside
#     slab                  a leaf everywhere else: records are allocated before a lock is
#                           taken and freed after it is let go

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import av_word, mm_word, page_word, vma_word
from .interval_tree import anon_vma_interval_tree_iter_first, anon_vma_interval_tree_iter_next
from .layout import (
    CPU_STATE,
    PG_ANON_EXCLUSIVE,
    PG_LOCKED,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_YOUNG,
)
from .lock_request import lock_request_cancel
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
    lock_request_fast,
)
from .model import Model
from .pgtable import pte_lockptr_c, pte_offset_map_c

# The model's lock-order tree above, as data: each path from the top of the tree to a leaf,
# as the lockdep classes on it (mmap_sem and the page lock have none).  A class may be taken
# while a class before it on a path is held (lockdep records an edge from each class held);
# any other edge a run records (--check-lock-order) is outside the tree.  The tree and this
# say the same thing: tests/stress/engine/test_lock_order.py reads both.
LOCK_ORDER_PATHS: tuple[tuple[str, ...], ...] = (
    ("anon_vma", "ptl", "swap_lock"),  # the walks; try_to_unmap_one's swap_duplicate
    ("anon_vma", "slab"),  # 3.0 on: anon_vma_clone's and unlink_anon_vmas' slab, under the root lock
    ("ptl", "swap_lock"),  # do_swap_page (under the page lock), its swap_free
    ("ptl", "ptl"),  # fork's copy_page_range: the parent's PTE lock inside the child's
    ("ptl",),  # mm->page_table_lock, faults, zap, change_protection
    ("slab",),  # a leaf everywhere else
)

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


@cached_njit(llvm_inline=True)
def anon_vma_lock_word_c(w32: np.ndarray, g: np.ndarray, av: int) -> int:
    """The lock word guarding av's list: its own, or its root's (eras.lock_root)."""
    if g[G.LOCK_ROOT]:
        av = w32[av_word(g, av, G.AV_ROOT)]
    return g[G.AV_LOCK_W0] + av * g[G.AV_W64]


@cached_njit(llvm_inline=True)
def anon_vma_freed_c(w32: np.ndarray, g: np.ndarray, av: int) -> bool:
    """av's record is free: a page whose ``mapping`` is av points at freed memory (the
    kernel would lock and walk whatever the slab put there; records here are type-stable,
    so the model can see it and refuse to follow it)."""
    return w32[av_word(g, av, g[G.IN_USE + G.K_ANON_VMA])] != 1


@cached_njit(llvm_inline=True)
def page_set_anon_exclusive_c(w32: np.ndarray, g: np.ndarray, page: int, on: bool) -> int:
    """SetPageAnonExclusive / ClearPageAnonExclusive (an atomic on the flags word, which
    PG_locked shares); returns whether it was set before."""
    i = page_word(g, page, G.PAGE_FLAGS)
    if on:
        return atomic_fetch_or(w32, i, PG_ANON_EXCLUSIVE) & PG_ANON_EXCLUSIVE
    return atomic_fetch_and(w32, i, ~PG_ANON_EXCLUSIVE) & PG_ANON_EXCLUSIVE


@cached_njit(llvm_inline=True)
def mapcount_add_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
                   dmap: int, dswap: int, site: int) -> int:
    """page->_mapcount += dmap and the swap count += dswap: one atomic add on the 64-bit word
    they share (mapcount the low half; both stay >= 0, so no borrow crosses the halves), as
    the kernel's atomic_add_negative on an atomic_t.  Counts the frame coming or going.  1
    when both counts reached zero (the caller held the last reference and frees the page),
    else 0 (never -1: an atomic does not wait; ``held`` and ``site`` are the callers')."""
    delta = dmap + (dswap << 32)
    old = atomic_fetch_add(words, page_word(g, page, G.PAGE_MAPCOUNT) >> 1, delta)
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


@cached_njit(llvm_inline=True)
def rmap_one_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, page: int,
               vma: int, index: int, op: int, out: np.ndarray, result: int) -> tuple[int, int]:
    """One visited entry of a walk: ``vma_address``; ``page_check_address`` (pte_present
    without the lock, then the PTE lock and the compare under it); on a match
    ``page_referenced_one`` (test-and-clear young) or ``try_to_unmap_one`` (a young PTE is
    SWAP_FAIL; otherwise ``swap_duplicate`` under the global swap_lock and a swap entry in
    the PTE's place, the slot stored at ``out[result]``).  Returns (ONE_* code, result).

    Expects held: the rmap lock.  Takes and releases the PTE page's lock, the swap_lock
    inside it."""
    vb = vma_word(g, vma, 0)
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
            atomic_fetch_add(w32, mm_word(g, mm, G.MM_RSS), -1)  # add_mm_counter
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
    pb = page_word(g, page, 0)
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
    node = w32[av_word(g, av, G.AV_HEAD)]
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
    pb = page_word(g, page, 0)
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
    pb = page_word(g, page, 0)
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
    pb = page_word(g, page, 0)
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


@cached_njit(llvm_inline=True)
def trylock_page_c(w32: np.ndarray, g: np.ndarray, page: int) -> bool:
    """trylock_page: set PG_locked if it was clear (an atomic or on the page's flags)."""
    return not atomic_fetch_or(w32, page_word(g, page, G.PAGE_FLAGS), PG_LOCKED) & PG_LOCKED


@cached_njit
def lock_page_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, page: int) -> int:
    """lock_page: wait for PG_locked (spinning a little, then sleeping on the word in short
    futex naps: unlock_page wakes nobody, as the kernel's wait_on_page_bit sleeps are woken
    by a hashed wait queue the model does not have).  0, or -1 when the run is aborted
    meanwhile (stop word 2)."""
    i = page_word(g, page, G.PAGE_FLAGS)
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


@cached_njit(llvm_inline=True)
def unlock_page_c(w32: np.ndarray, g: np.ndarray, page: int) -> None:
    atomic_fetch_and(w32, page_word(g, page, G.PAGE_FLAGS), ~PG_LOCKED)


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

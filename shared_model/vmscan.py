"""Reclaim (mm/vmscan.c) over one CPU's share of the anonymous LRU, and scan's counting walks.

``AnonLru``, ``shrink_active_list``, ``shrink_page_list`` and ``shrink_lru``: compiled, a
contended rmap lock coming back to Python to be waited for (see rmap.py).  The counting
walks (``walk_lengths``, ``walk_lengths_tree``, ``mappings_found``) are the reverse-map
walk's loop without locks or changes, for ``scan``'s arithmetic.
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import av_word, page_word, vma_word
from .interval_tree import anon_vma_interval_tree_iter_first, anon_vma_interval_tree_iter_next
from .locking.cached_compile import cached_njit
from .locks import (
    Stopped,
)
from .model import Model
from .pgtable import pte_maps_page, pte_page_bases_of
from .rmap import (
    OP_REFERENCED,
    OP_UNMAP,
    WALK_CONTENDED,
    WALK_NOT_MAPPED,
    WALK_STOPPED,
    anon_vma_freed_c,
    page_referenced_anon,
    rmap_walk_anon,
    try_to_unmap,
    trylock_page_c,
    unlock_page_c,
)
from .swap_state import delete_from_swap_cache_locked_c, do_swap_page_c, refault_order_c

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


# ---------------------------------------------------------------------------- scan's counting walks


@cached_njit(llvm_inline=True)
def _scan_page(w32: np.ndarray, g: np.ndarray, page: int) -> tuple[int, int, int]:
    """What scan's walks (``walk_lengths``, ``walk_lengths_tree``, ``mappings_found``) read
    of a page before walking: (anon_vma, mapcount, index).  anon_vma is -1 when there is
    nothing to walk (no ``page->mapping``, or no mapping left) and -2 when ``page->mapping``
    is a freed anon_vma, which a walk does not follow."""
    pb = page_word(g, page, 0)
    av = w32[pb + G.PAGE_MAPPING]
    need = w32[pb + G.PAGE_MAPCOUNT]
    if av < 0 or need <= 0:
        return -1, need, 0
    if anon_vma_freed_c(w32, g, av):
        return -2, need, 0
    return av, need, w32[pb + G.PAGE_INDEX]


@cached_njit(llvm_inline=True)
def _list_nodes(g: np.ndarray) -> tuple[bool, int, int, int]:
    """How an anon_vma's list is laid out: (chain, first record, record width, next field):
    AVCs in the chain eras, the VMAs themselves in 2.6.33."""
    if g[G.CHAIN] != 0:
        return True, g[G.AVC0], g[G.AVC_W], G.AVC_AV_NEXT
    return False, g[G.VMA0], g[G.VMA_W], G.VMA_AV_NEXT


@cached_njit(llvm_inline=True)
def _maps_page_at(w32: np.ndarray, g: np.ndarray, bases: np.ndarray, per_mm: int, vma: int,
                  index: int, page: int) -> bool:
    """vma_address, then the PTE: vma covers ``index``'s address and its PTE there maps
    ``page``."""
    vb = vma_word(g, vma, 0)
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
        node = w32[av_word(g, av, G.AV_HEAD)]
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
        node = w32[av_word(g, av, G.AV_HEAD)]
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

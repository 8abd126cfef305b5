"""The swap cache and swap-in: do_swap_page's placement of a page in the reverse map.

mm/swap_state.c's swap cache (``delete_from_swap_cache``: a page unmapped and written back
leaves the cache, keeping its swap slot), mm/memory.c's ``do_swap_page`` (a fault on a swap
PTE: lock_page, the PTE lock, ``page_add_anon_rmap`` as each era places the page) and the
``do_wp_page`` a write fault goes on to, and ``scan --refault``'s sweep, which unmaps pages
and faults them back in.

Locks: the page lock, then the PTE page's lock, the swap_lock (swap_free) inside it; the
slab lock before the PTE lock (wp_page_copy_c's allocation).
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import av_word, avc_word, mm_word, page_word, raise_status, vma_word
from .layout import (
    PTE_PRESENT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
)
from .lock_request import lock_request_cancel
from .locking.atomics import (
    READ_ONCE,
    atomic_fetch_add,
)
from .locking.cached_compile import cached_njit
from .locks import (
    CLASS,
    SITE,
    Stopped,
    lock_acquire_c,
    lock_release_c,
)
from .model import Model
from .pgtable import pte_lockptr_c, pte_offset_map_c
from .rmap import (
    OP_UNMAP,
    WALK_CONTENDED,
    WALK_NOT_MAPPED,
    WALK_STOPPED,
    lock_page_c,
    mapcount_add_c,
    page_set_anon_exclusive_c,
    rmap_walk_anon,
    trylock_page_c,
    unlock_page_c,
)
from .slab import kmem_cache_alloc_c, kmem_cache_free_c

PTL = CLASS["ptl"]
S_SWAPIN, S_WP = SITE["do_swap_page"], SITE["do_wp_page"]
SWAP_LOCK, S_SWAP_FREE = CLASS["swap_lock"], SITE["swap_free"]


# ---------------------------------------------------------------------------- swap-in


@cached_njit(llvm_inline=True)
def find_vma_c(w32: np.ndarray, g: np.ndarray, mm: int, vpn: int) -> int:
    """The VMA of mm holding vpn, or -1 (the mm's VMA list, as find_vma walks it)."""
    v = w32[mm_word(g, mm, G.MM_VMA_HEAD)]
    while v >= 0:
        vb = vma_word(g, v, 0)
        if w32[vb + G.VMA_START] <= vpn < w32[vb + G.VMA_END]:
            return v
        v = w32[vb + G.VMA_NEXT]
    return -1


@cached_njit(llvm_inline=True)
def oldest_anon_vma_c(w32: np.ndarray, g: np.ndarray, vma: int) -> int:
    """2.6.34's ``list_entry(vma->anon_vma_chain.prev, ...)->anon_vma``: the last AVC of
    vma's same_vma list (newest first), the deepest ancestor."""
    vb = vma_word(g, vma, 0)
    av = w32[vb + G.VMA_ANON_VMA]
    a = w32[vb + G.VMA_AVC_HEAD]
    while a >= 0:
        ab = avc_word(g, a, 0)
        av = w32[ab + G.AVC_ANON_VMA]
        a = w32[ab + G.AVC_SAME_VMA_NEXT]
    return av


@cached_njit(llvm_inline=True)
def page_add_anon_rmap_swapin_c(w32: np.ndarray, g: np.ndarray, page: int, vma: int, first: bool,
                                exclusive: bool) -> None:
    """do_swap_page's page_add_anon_rmap / do_page_add_anon_rmap: on the first mapping,
    ``__page_set_anon_rmap`` as the era does it (eras.Era.swapin).  A page whose mapping is
    -1 was dropped from the swap cache and has just been read fresh from swap (not
    PageAnon).  Expects held: the page lock."""
    pb = page_word(g, page, 0)
    vb = vma_word(g, vma, 0)
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
            av = w32[av_word(g, av, G.AV_ROOT)]
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
        pb = page_word(g, page, 0)
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
        atomic_fetch_add(w32, mm_word(g, mm, G.MM_RSS), 1)  # add_mm_counter
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
            pb = page_word(g, page, 0)
            vma = find_vma_c(w32, g, mm, addr)
            vb = vma_word(g, vma, 0)
            av = w32[vb + G.VMA_ANON_VMA]
            if READ_ONCE(words, (pb + G.PAGE_MAPCOUNT) >> 1) == 1:  # reuse_swap_page
                w32[pe + 1] |= PTE_WRITE | PTE_YOUNG
                page_set_anon_exclusive_c(w32, g, page, True)
                if g[G.MOVE_ANON_RMAP]:
                    w32[pb + G.PAGE_MAPPING] = av
            else:
                p = new[0]
                nb = page_word(g, p, 0)
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
    nb = page_word(g, new[0], 0)
    w32[nb + G.PAGE_MAPPING] = -1
    w32[nb + G.PAGE_INDEX] = -1
    st = kmem_cache_free_c(words, w32, g, held, G.K_PAGE, new, 1)
    return min(0, st)


@cached_njit(llvm_inline=True)
def delete_from_swap_cache_locked_c(w32: np.ndarray, g: np.ndarray, page: int) -> int:
    """Reclaim meets a page it unmapped earlier, written back and clean: __remove_mapping ->
    __delete_from_swap_cache, and the frame is freed (free_hot_cold_page clears an anon
    page's mapping).  What is left is a swap slot: the record stays (swap PTEs point at
    it) with mapping -1, and the next fault reads it fresh from swap.  1 if dropped.
    Expects held: the page lock."""
    pb = page_word(g, page, 0)
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


@cached_njit(llvm_inline=True)
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


def do_swap_page(m: Model, page: int, slots: np.ndarray | list[int], write: bool = False) -> int:
    """Fault ``page`` back in (from the swap cache, or read fresh from swap when reclaim
    dropped it from the cache) at each swap PTE in ``slots``, in that order (each stands
    for that mm's owner touching it again): PTE present and young, mapcount up, swap count
    down, and on the first mapping the page placed as the era's page_add_anon_rmap does
    (eras.Era.swapin).  ``write``: write faults, which map the page writable where the
    faulting entry is its only user (reuse_swap_page).  Takes the page lock, then each
    mm's ptl; the page's counts change by an atomic add (compiled: do_swap_page_c)."""
    slots = np.asarray(slots, dtype=np.int64)
    done = do_swap_page_c(m.words, m.w32, m.g, m.locks.held, page, slots, len(slots), int(write), 0)
    if done < 0:
        raise_status(done)
    return int(done)


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

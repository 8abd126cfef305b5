"""Page tables: each mm's pgd -> pud -> pmd -> pte, as x86-64's four levels.

Every level is a page-sized block of PTRS_PER_TABLE entries from its own pool in the
segment (allocatable kinds "pgd", "pud", "pmd", "pte": the slab allocator of model.py, its
free stacks and per-CPU caches).  An upper-level entry is the next level's block + 1, so 0
is pgd_none / pud_none / pmd_none; a PTE page holds PTRS_PER_TABLE PTEs (page, flags).
The pgd comes with the mm (mm_alloc: the kernel's mm_alloc_pgd); the lower levels are
allocated on the first fault below them (__pud_alloc, __pmd_alloc, __pte_alloc: the block
is allocated and cleared, __GFP_ZERO, outside any lock, then populated under the mm's
page_table_lock, or given back if someone populated the entry meanwhile), and all of them
are freed at exit (free_pgtables), after every VMA of the mm has left the reverse map.

Locks (split PTE locks, as every distro kernel: NR_CPUS >= SPLIT_PTLOCK_CPUS): each PTE
page has its own lock, in the segment's ``ptl[]`` (the kernel keeps it in the page-table
page's struct page); it guards that page's PTEs.  The mm's ``ptl`` record stays its
page_table_lock, which guards populating the upper levels.  Lookups take no lock: a walker
reaches an mm's tables only through a VMA on an anon_vma list, under that anon_vma's lock,
and exit frees the tables only after unlink_anon_vmas took every VMA off the lists.

    mm->pgd --> pgd[512] --> pud[512] --> pmd[512] --> pte[512] (page, flags)
                 (vpn >> 27)   (vpn >> 18)   (vpn >> 9)    (vpn & 511)
                                                  |
                                                  +--> ptl[pte page]  (split PTE lock)
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import mm_word
from .layout import PGDIR_SHIFT, PMD_SHIFT, PTE_PRESENT, PTRS_PER_TABLE, PUD_SHIFT
from .locking.atomics import READ_ONCE, smp_store_release
from .locking.cached_compile import cached_njit
from .locks import CLASS, lock_acquire_c, lock_release_c
from .model import Model, mm_vmas
from .slab import kmem_cache_alloc_one, kmem_cache_free_one

PTL = CLASS["ptl"]
IDX = PTRS_PER_TABLE - 1
PTE_WORDS = 2 * PTRS_PER_TABLE  # int32 words of one PTE page


@cached_njit(llvm_inline=True, python=True)
def pte_offset_map_c(w32: np.ndarray, g: np.ndarray, mm: int, addr: int) -> int:
    """The int32 word of mm's PTE for ``addr`` (its page; flags the next word), or -1 when
    a level on the way is none (not mapped): pgd_offset -> pud_offset -> pmd_offset ->
    pte_offset_map, each a dependent load.  No lock (see the module header).  An entry is
    read as the low half of its int64 (x86-64 is little-endian and a block index + 1 is
    below 2**31), so that every walker, ``scan``'s included, needs only ``w32``."""
    pgd = w32[mm_word(g, mm, G.MM_PGD)]
    if pgd < 0:
        return -1
    e = READ_ONCE(w32, 2 * (g[G.PGD0] + pgd * PTRS_PER_TABLE + ((addr >> PGDIR_SHIFT) & IDX)))
    if e == 0:
        return -1
    e = READ_ONCE(w32, 2 * (g[G.PUD0] + (e - 1) * PTRS_PER_TABLE + ((addr >> PUD_SHIFT) & IDX)))
    if e == 0:
        return -1
    e = READ_ONCE(w32, 2 * (g[G.PMD0] + (e - 1) * PTRS_PER_TABLE + ((addr >> PMD_SHIFT) & IDX)))
    if e == 0:
        return -1
    return g[G.PTE0] + 2 * ((e - 1) * PTRS_PER_TABLE + (addr & IDX))


@cached_njit(nrt=True)
def pte_page_bases(w32: np.ndarray, g: np.ndarray, nmm: int, per_mm: int) -> np.ndarray:
    """For ``scan``: the int32 word of PTE 0 of each mm's PTE pages, ``[mm * per_mm + p]``
    for addresses ``p << PMD_SHIFT`` on (-1: none), found through the four levels once per
    PTE page.  scan's counting loops then find a PTE with one load instead of four
    dependent ones: the levels cost time and change no count, and the issue lets scan skip
    them (the walks under a lock keep ``pte_offset_map_c``)."""
    out = np.full(nmm * per_mm, -1, dtype=np.int64)
    for mm in range(nmm):
        for p in range(per_mm):
            out[mm * per_mm + p] = pte_offset_map_c(w32, g, mm, p << PMD_SHIFT)
    return out


@cached_njit(llvm_inline=True)
def pte_maps_page(w32: np.ndarray, bases: np.ndarray, per_mm: int, mm: int, addr: int,
                  page: int) -> bool:
    """scan's page_check_address: mm's PTE at ``addr``, found through ``bases``
    (pte_page_bases), is present and maps ``page``.  Takes only hoisted values: no
    geometry-table reads per visited entry."""
    pe = bases[mm * per_mm + (addr >> PMD_SHIFT)]
    if pe < 0:
        return False
    pe += 2 * (addr & IDX)
    return w32[pe] == page and (w32[pe + 1] & PTE_PRESENT) != 0


def pte_page_bases_of(m: Model) -> tuple[np.ndarray, int]:
    """(pte_page_bases of every mm, PTE pages per mm)."""
    per_mm = m.caps.tables_per_mm("pte")
    return pte_page_bases(m.w32, m.g, m.caps.mms, per_mm), per_mm


@cached_njit(llvm_inline=True)
def pmd_addr_end(addr: int, end: int) -> int:
    """The end of the PTE page's range that ``addr`` lies in, or ``end`` if sooner: the
    kernel's pmd_addr_end, by which zap, change_protection and fork's copy go one PTE page
    (one PTE lock) at a time."""
    return min(end, (addr | IDX) + 1)


@cached_njit(llvm_inline=True, python=True)
def pte_lockptr_c(g: np.ndarray, pe: int) -> int:
    """The split lock of the PTE page holding the PTE at int32 word ``pe`` (pte_lockptr)."""
    return g[G.PTL_W0] + ((pe - g[G.PTE0]) // PTE_WORDS) * 8


@cached_njit(llvm_inline=True)
def pte_lock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, pe: int, site: int) -> int:
    """Take the PTE lock of ``pe``'s page: the acquire time, or -1 when aborted."""
    return lock_acquire_c(words, g, held, pte_lockptr_c(g, pe), PTL, site, 0)


@cached_njit(llvm_inline=True)
def pte_unlock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, pe: int, site: int, t: int) -> None:
    lock_release_c(words, g, held, pte_lockptr_c(g, pe), PTL, site, 0, t)


@cached_njit(llvm_inline=True)
def page_table_lock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, mm: int, site: int) -> int:
    """Take mm->page_table_lock (the mm record's ``ptl``)."""
    return lock_acquire_c(words, g, held, g[G.MM_PTL_W0] + mm * g[G.MM_W64], PTL, site, 0)


@cached_njit(llvm_inline=True)
def page_table_unlock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, mm: int, site: int,
                        t: int) -> None:
    lock_release_c(words, g, held, g[G.MM_PTL_W0] + mm * g[G.MM_W64], PTL, site, 0, t)


@cached_njit
def pgtable_block_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                          k: int, sc: np.ndarray) -> int:
    """A cleared block of page-table kind ``k`` (G.K_PGD .. G.K_PTE): its index or a
    negative status.  Upper levels are cleared to zero (none), a PTE page to pte_none
    (page -1, flags 0).  Takes the slab lock (when the CPU's cache is empty); uses sc[0]."""
    b = kmem_cache_alloc_one(words, w32, g, held, k, sc)
    if b < 0:
        return b
    if k == G.K_PTE:
        e = g[G.PTE0] + b * PTE_WORDS
        for i in range(PTRS_PER_TABLE):
            w32[e + 2 * i] = -1
            w32[e + 2 * i + 1] = 0
    else:
        base = g[G.PGD0] if k == G.K_PGD else (g[G.PUD0] if k == G.K_PUD else g[G.PMD0])
        e = base + b * PTRS_PER_TABLE
        for i in range(PTRS_PER_TABLE):
            words[e + i] = 0
    return b


@cached_njit(llvm_inline=True, python=True)
def _populate_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                mm: int, ew: int, k: int, site: int) -> int:
    """__pud_alloc / __pmd_alloc / __pte_alloc for the none entry at int64 word ``ew``: a
    cleared block, then under mm->page_table_lock populate the entry if it is still none
    (else give the block back).  OK or a negative status."""
    b = pgtable_block_alloc_c(words, w32, g, held, k, sc)
    if b < 0:
        return b
    t = page_table_lock_c(words, g, held, mm, site)
    if t < 0:  # aborted: the block goes back (a free, which the abort cannot cut short)
        kmem_cache_free_one(words, w32, g, held, k, b, sc)
        return G.STOPPED
    if words[ew] == 0:
        smp_store_release(words, ew, b + 1)  # a lock-free walker sees the block cleared
        b = -1
    page_table_unlock_c(words, g, held, mm, site, t)
    if b >= 0:
        return kmem_cache_free_one(words, w32, g, held, k, b, sc)
    return G.OK


@cached_njit
def pte_alloc_map_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                    sc: np.ndarray, mm: int, addr: int, site: int) -> int:
    """handle_mm_fault's pud_alloc, pmd_alloc, pte_alloc_map: the int32 word of mm's PTE for
    ``addr``, allocating the levels that are none (each under mm->page_table_lock, taken at
    ``site``); or a negative status (ENOMEM: the levels allocated so far stay, freed at
    exit).  Expects held: nothing of this mm (the caller is its owner).  Uses sc[0]."""
    pgd = w32[mm_word(g, mm, G.MM_PGD)]
    ew = g[G.PGD0] + pgd * PTRS_PER_TABLE + ((addr >> PGDIR_SHIFT) & IDX)
    if words[ew] == 0:
        st = _populate_c(words, w32, g, held, sc, mm, ew, G.K_PUD, site)
        if st < 0:
            return st
    ew = g[G.PUD0] + (words[ew] - 1) * PTRS_PER_TABLE + ((addr >> PUD_SHIFT) & IDX)
    if words[ew] == 0:
        st = _populate_c(words, w32, g, held, sc, mm, ew, G.K_PMD, site)
        if st < 0:
            return st
    ew = g[G.PMD0] + (words[ew] - 1) * PTRS_PER_TABLE + ((addr >> PMD_SHIFT) & IDX)
    if words[ew] == 0:
        st = _populate_c(words, w32, g, held, sc, mm, ew, G.K_PTE, site)
        if st < 0:
            return st
    return g[G.PTE0] + 2 * ((words[ew] - 1) * PTRS_PER_TABLE + (addr & IDX))


@cached_njit
def pgd_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                mm: int) -> int:
    """mm_alloc_pgd: a cleared pgd for the new mm ``mm``.  OK or a negative status."""
    b = pgtable_block_alloc_c(words, w32, g, held, G.K_PGD, sc)
    if b < 0:
        return b
    w32[mm_word(g, mm, G.MM_PGD)] = b
    return G.OK


@cached_njit
def free_pgtables_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                    mm: int) -> int:
    """free_pgtables at exit: give every PTE page, pmd, pud and the pgd of ``mm`` back to
    their pools.  Expects: no VMA of mm left in the reverse map (so no walker can reach the
    tables) and every PTE already zapped.  Takes the slab locks only.  OK or STOPPED."""
    mb = mm_word(g, mm, G.MM_PGD)
    pgd = w32[mb]
    if pgd < 0:
        return G.OK
    pgd_b = g[G.PGD0] + pgd * PTRS_PER_TABLE
    for i in range(PTRS_PER_TABLE):
        pud = words[pgd_b + i] - 1
        if pud < 0:
            continue
        pud_b = g[G.PUD0] + pud * PTRS_PER_TABLE
        for j in range(PTRS_PER_TABLE):
            pmd = words[pud_b + j] - 1
            if pmd < 0:
                continue
            pmd_b = g[G.PMD0] + pmd * PTRS_PER_TABLE
            for k in range(PTRS_PER_TABLE):
                pte = words[pmd_b + k] - 1
                if pte < 0:
                    continue
                words[pmd_b + k] = 0
                if kmem_cache_free_one(words, w32, g, held, G.K_PTE, pte, sc) < 0:
                    return G.STOPPED
            words[pud_b + j] = 0
            if kmem_cache_free_one(words, w32, g, held, G.K_PMD, pmd, sc) < 0:
                return G.STOPPED
        words[pgd_b + i] = 0
        if kmem_cache_free_one(words, w32, g, held, G.K_PUD, pud, sc) < 0:
            return G.STOPPED
    w32[mb] = -1
    return kmem_cache_free_one(words, w32, g, held, G.K_PGD, pgd, sc)


def free_pgd_range(m: Model, mm: int, start: int, end: int) -> int:
    """munmap's free_pgtables for [start, end) of ``mm``, whose VMA has just been unmapped
    (zapped, unlinked from the reverse map and off the mm's list): free each PTE page, pmd
    and pud whose whole range lies in no remaining VMA of the mm (the kernel's floor and
    ceiling), clearing the entry above it.  Walkers look up only addresses inside VMAs on
    anon_vma lists, so none can be reading a freed block; a refault's lookup rechecks under
    the PTE lock (do_swap_page_one_c).  Expects: the mm's owner, its PTEs in the range
    zapped.  Returns the blocks freed.  Python: it takes no model lock (only the slab's)."""
    vmas = [(int(m.vma["vm_start"][v]), int(m.vma["vm_end"][v])) for v in mm_vmas(m, mm)]

    def unused(lo: int, hi: int) -> bool:
        return not any(s < hi and lo < e for s, e in vmas)

    pgd = int(m.mm["pgd"][mm])
    freed = 0
    levels = ((m.pgd_table, PGDIR_SHIFT, "pud"), (m.pud_table, PUD_SHIFT, "pmd"),
              (m.pmd_table, PMD_SHIFT, "pte"))

    def free_below(level: int, block: int, base: int) -> None:
        nonlocal freed
        table, shift, kind = levels[level]
        span = 1 << shift
        first = max(start, base) >> shift & IDX
        last = (min(end, base + PTRS_PER_TABLE * span) - 1) >> shift & IDX
        for i in range(first, last + 1):
            e = int(table[block, i])
            if not e:
                continue
            lo = base + i * span
            child = levels[level + 1][0] if level + 1 < len(levels) else None
            if child is not None:
                free_below(level + 1, e - 1, lo)
            if unused(lo, lo + span) and (child is None or not child[e - 1].any()):
                table[block, i] = 0
                m.free(kind, e - 1)
                freed += 1

    if pgd >= 0 and start < end:
        free_below(0, pgd, 0)
    return freed

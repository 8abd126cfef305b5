"""Address spaces: mmap, faults (first touch, COW, swap-in), fork and exit.

Only the CPU that runs an mm changes that mm's VMAs and page tables (this stands for
mmap_sem held for write); other CPUs reach its PTEs only through an rmap walk, which takes
the PTE page's split lock before it changes one.  PTEs are found through the mm's
four-level tables (pgtable.py): a fault allocates the levels it lacks, exit frees them.
Every operation runs compiled (numba), a page at a time as the kernel's loops do, beside a
thin Python wrapper with the kernel's name; compiled code returns a status that the wrapper
turns into OutOfMemory or Stopped.
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .anon_vma_chain import (
    anon_vma_fork_c,
    anon_vma_link_c,
    anon_vma_prepare_c,
    unlink_anon_vmas,
    unlink_anon_vmas_c,
)
from .ctx import mm_word as _mm
from .ctx import page_word as _page
from .ctx import raise_status
from .ctx import vma_word as _vma
from .layout import (
    PTE_PRESENT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
    VM_READ,
    VM_WRITE,
)
from .locking.atomics import READ_ONCE, atomic_fetch_add
from .locking.cached_compile import cached_njit
from .locks import CLASS, SITE, lock_acquire_c, lock_release_c, no_abort_begin, no_abort_end
from .model import Model, mm_vmas
from .pgtable import (
    free_pgd_range,
    free_pgtables_c,
    pgd_alloc_c,
    pmd_addr_end,
    pte_alloc_map_c,
    pte_lock_c,
    pte_lockptr_c,
    pte_offset_map_c,
    pte_unlock_c,
)
from .rmap import mapcount_add_c, page_set_anon_exclusive_c
from .slab import kmem_cache_alloc_c, kmem_cache_alloc_one, kmem_cache_free_c, kmem_cache_free_one
from .swap_state import do_swap_page_c

PTL = CLASS["ptl"]
S_ANON, S_WP, S_DUP, S_EXIT = (SITE[s] for s in ("do_anonymous_page", "do_wp_page", "dup_mmap", "exit_mmap"))
OK, STOPPED = G.OK, G.STOPPED


@cached_njit(llvm_inline=True)
def add_mm_rss_c(w32: np.ndarray, g: np.ndarray, mm: int, n: int) -> None:
    """mm->rss += n, an atomic add (add_mm_counter): with split PTE locks two CPUs may
    change one mm's PTEs under different locks at once."""
    atomic_fetch_add(w32, _mm(g, mm, G.MM_RSS), n)


@cached_njit(llvm_inline=True)
def pte_relock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, lw: int, t: int, pe: int,
                 site: int) -> tuple[int, int]:
    """Walking PTEs in order: keep the PTE lock held (word ``lw``, taken at ``t``; -1 none)
    while ``pe`` is on the same PTE page, else release it and take ``pe``'s.  (lock word,
    acquire time); time -1 when aborted (nothing held then)."""
    w = pte_lockptr_c(g, pe)
    if w == lw:
        return lw, t
    if lw >= 0:
        lock_release_c(words, g, held, lw, PTL, site, 0, t)
    return w, lock_acquire_c(words, g, held, w, PTL, site, 0)


# ---------------------------------------------------------------------------- mm and VMAs


@cached_njit
def mm_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
               parent: int) -> int:
    """A new, empty mm_struct with an empty pgd (mm_alloc_pgd): its index or a negative
    status.  Takes the slab lock."""
    mm = kmem_cache_alloc_one(words, w32, g, held, G.K_MM, sc)
    if mm < 0:
        return mm
    w32[_mm(g, mm, G.MM_VMA_HEAD)] = -1
    w32[_mm(g, mm, G.MM_NR_VMAS)] = 0
    w32[_mm(g, mm, G.MM_RSS)] = 0
    w32[_mm(g, mm, G.MM_PARENT)] = parent
    w32[_mm(g, mm, G.MM_PGD)] = -1
    st = pgd_alloc_c(words, w32, g, held, sc, mm)
    if st < 0:
        kmem_cache_free_one(words, w32, g, held, G.K_MM, mm, sc)
        return st
    return mm


def mm_alloc(m: Model, parent: int = -1) -> int:
    """A new, empty mm_struct.  Takes the slab lock."""
    mm = mm_alloc_c(m.words, m.w32, m.g, m.locks.held, m.scratch, parent)
    if mm < 0:
        raise_status(mm)
    return int(mm)


def find_vma(m: Model, mm: int, vpn: int) -> int:
    for v in mm_vmas(m, mm):
        if m.vma["vm_start"][v] <= vpn < m.vma["vm_end"][v]:
            return v
    return -1


@cached_njit
def vma_insert_c(w32: np.ndarray, g: np.ndarray, mm: int, vma: int) -> None:
    """Append vma to mm's list (address order is the order of creation here)."""
    w32[_vma(g, vma, G.VMA_NEXT)] = -1
    v = w32[_mm(g, mm, G.MM_VMA_HEAD)]
    if v < 0:
        w32[_mm(g, mm, G.MM_VMA_HEAD)] = vma
    else:
        while w32[_vma(g, v, G.VMA_NEXT)] >= 0:
            v = w32[_vma(g, v, G.VMA_NEXT)]
        w32[_vma(g, v, G.VMA_NEXT)] = vma
    w32[_mm(g, mm, G.MM_NR_VMAS)] += 1


def do_mmap(m: Model, mm: int, start: int, npages: int) -> int:
    """A private anonymous mapping of ``npages`` pages at vpn ``start`` (vm_pgoff = start).

    No page is touched: the first fault in it runs anon_vma_prepare."""
    if start < 0 or npages <= 0 or start + npages > m.ptrs:
        raise ValueError(f"mapping [{start}, {start + npages}) outside the page table (0..{m.ptrs})")
    vma = m.alloc_one("vma")
    m.vma[vma] = (start, start + npages, start, mm, -1, -1, -1, -1, -1, 1, VM_READ | VM_WRITE)
    vma_insert_c(m.w32, m.g, mm, vma)
    return vma


def resident_pages(m: Model) -> int:
    """Pages holding a frame now, from every CPU's counters (no lock: a snapshot)."""
    cpu = m.seg["cpu"]
    return int(cpu["frames_in"].sum() - cpu["frames_out"].sum())


@cached_njit
def free_pages_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, pages: np.ndarray,
                 n: int) -> int:
    """Return unreferenced pages[:n] to the page slab.  Takes the slab lock."""
    if n == 0:
        return OK
    for i in range(n):
        w32[_page(g, pages[i], G.PAGE_MAPPING)] = -1
        w32[_page(g, pages[i], G.PAGE_INDEX)] = -1
    return kmem_cache_free_c(words, w32, g, held, G.K_PAGE, pages, n)


# ---------------------------------------------------------------------------- faults


@cached_njit
def do_anonymous_pages_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                         sc: np.ndarray, mm: int, vma: int, vpns: np.ndarray) -> int:
    """First touch (write) of pages of vma not yet mapped: a new page each, in
    ``vma->anon_vma`` (page_add_new_anon_rmap), PTE young and writable.  Returns pages
    mapped, or a negative status with the mm as it was (a new anon_vma and page-table levels
    may stay: the tables are the mm's, freed at exit).

    Takes: anon_vma_prepare's lock, mm->page_table_lock for each page-table level it
    allocates (pte_alloc_map_c), the slab lock, then each PTE page's lock in turn."""
    av = anon_vma_prepare_c(words, w32, g, held, sc, vma)
    if av < 0:
        return av
    nv = len(vpns)
    n = 0
    todo, addrs = sc[nv : 2 * nv], sc[2 * nv : 3 * nv]
    for i in range(nv):
        pe = pte_alloc_map_c(words, w32, g, held, sc, mm, vpns[i], S_ANON)
        if pe < 0:
            return pe
        if w32[pe] < 0:
            todo[n] = pe
            addrs[n] = vpns[i]
            n += 1
    if n == 0:
        return 0
    st = kmem_cache_alloc_c(words, w32, g, held, G.K_PAGE, n, sc)
    if st < 0:
        return st
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    start, pgoff = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_PGOFF)]
    for i in range(n):
        p = sc[i]
        w32[_page(g, p, G.PAGE_MAPPING)] = av
        w32[_page(g, p, G.PAGE_INDEX)] = pgoff + (addrs[i] - start)
        w32[_page(g, p, G.PAGE_MAPCOUNT)] = 1
        w32[_page(g, p, G.PAGE_SWAPCOUNT)] = 0
        page_set_anon_exclusive_c(w32, g, p, True)
    words[g[G.CPU_BASE] + G.F_FRAMES_IN] += n
    lw, t = -1, 0
    for i in range(n):
        e = todo[i]
        lw, t = pte_relock_c(words, g, held, lw, t, e, S_ANON)
        if t < 0:
            return do_anonymous_pages_unwind_c(words, w32, g, held, sc, mm, i, n)
        w32[e] = sc[i]
        w32[e + 1] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
    add_mm_rss_c(w32, g, mm, n)
    pte_unlock_c(words, g, held, todo[n - 1], S_ANON, t)
    return n


@cached_njit
def do_anonymous_pages_unwind_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                                sc: np.ndarray, mm: int, mapped: int, n: int) -> int:
    """do_anonymous_pages aborted at a PTE lock with ``mapped`` of its ``n`` new
    pages (sc[:n]) in place: those stay, counted in the mm's rss; the others, never
    mapped, go back to the slab with their counts cleared.  STOPPED (or the free's status).
    Expects nothing held; takes the slab lock (the free)."""
    add_mm_rss_c(w32, g, mm, mapped)
    for k in range(mapped, n):
        w32[_page(g, sc[k], G.PAGE_MAPCOUNT)] = 0
    words[g[G.CPU_BASE] + G.F_FRAMES_IN] -= n - mapped
    st = free_pages_c(words, w32, g, held, sc[mapped:n], n - mapped)
    return STOPPED if st == OK else st


def do_anonymous_pages(m: Model, mm: int, vma: int, vpns: np.ndarray) -> int:
    """First touch (write) of pages of vma not yet mapped (compiled: do_anonymous_pages_c).
    Raises OutOfMemory leaving the mm as it was."""
    n = do_anonymous_pages_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm, vma,
                             np.asarray(vpns, dtype=np.int64))
    if n < 0:
        raise_status(n)
    return int(n)


@cached_njit
def do_wp_pages_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                  mm: int, vma: int, vpns: np.ndarray) -> tuple[int, int, int]:
    """Write faults on present, write-protected pages of vma: copy-on-write into a new page
    in ``vma->anon_vma``, or reuse the page when this mm is its only user (and, 2.6.34+,
    move it to ``vma->anon_vma``: page_move_anon_rmap; a walk that read the old mapping
    sees the change when it rechecks under the lock).  Returns (copied, reused, status).

    New pages are allocated before the ptl is taken and the PTEs rechecked under it, as
    do_wp_page does; the reuse test is one atomic read of the old page's counts word under
    the PTE lock (mapcount and swap count change together, by one atomic add).  Takes
    each PTE page's lock in turn."""
    st = anon_vma_prepare_c(words, w32, g, held, sc, vma)
    if st < 0:
        return 0, 0, st
    nv = len(vpns)
    new, cand, dead, addrs = sc[:nv], sc[nv : 2 * nv], sc[2 * nv : 3 * nv], sc[3 * nv : 4 * nv]
    n = 0
    for i in range(nv):
        pe = pte_offset_map_c(w32, g, mm, vpns[i])
        if pe >= 0 and (w32[pe + 1] & (PTE_PRESENT | PTE_WRITE)) == PTE_PRESENT:
            cand[n] = pe
            addrs[n] = vpns[i]
            n += 1
    if n == 0:
        return 0, 0, OK
    st = kmem_cache_alloc_c(words, w32, g, held, G.K_PAGE, n, new)
    if st < 0:
        return 0, 0, st
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    start, pgoff = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_PGOFF)]
    cb = g[G.CPU_BASE]
    used = reused = ndead = 0
    lw, t = -1, 0
    for i in range(n):
        e = cand[i]
        lw, t = pte_relock_c(words, g, held, lw, t, e, S_WP)
        if t < 0:
            # Aborted: the copies made stay; the old pages they freed of their
            # last mapping and the new pages not used go back, as at the end.
            st = free_pages_c(words, w32, g, held, dead, ndead)
            if st == OK:
                st = free_pages_c(words, w32, g, held, new[used:], n - used)
            return used, reused, STOPPED if st == OK else st
        if (w32[e + 1] & (PTE_PRESENT | PTE_WRITE)) != PTE_PRESENT:
            continue
        old = w32[e]
        ob = _page(g, old, 0)
        # reuse_swap_page: mapcount 1 (this PTE) and no swap entry, one atomic read of the
        # counts word.  Stable under this PTE lock: no other PTE maps the page, and only
        # a holder of this lock could add one (fork's copy) or take this one
        # (try_to_unmap).
        if READ_ONCE(words, (ob + G.PAGE_MAPCOUNT) >> 1) == 1:
            w32[e + 1] |= PTE_WRITE | PTE_YOUNG
            page_set_anon_exclusive_c(w32, g, old, True)
            reused += 1
            if g[G.MOVE_ANON_RMAP]:  # page_move_anon_rmap (2.6.34+): only we map it
                w32[ob + G.PAGE_MAPPING] = av
        else:
            p = new[used]
            used += 1
            w32[_page(g, p, G.PAGE_MAPPING)] = av
            w32[_page(g, p, G.PAGE_INDEX)] = pgoff + (addrs[i] - start)
            w32[_page(g, p, G.PAGE_MAPCOUNT)] = 1
            w32[_page(g, p, G.PAGE_SWAPCOUNT)] = 0
            page_set_anon_exclusive_c(w32, g, p, True)
            words[cb + G.F_FRAMES_IN] += 1
            w32[e] = p
            w32[e + 1] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
            if mapcount_add_c(words, w32, g, held, old, -1, 0, S_WP):
                dead[ndead] = old
                ndead += 1
    pte_unlock_c(words, g, held, cand[n - 1], S_WP, t)
    st = free_pages_c(words, w32, g, held, dead, ndead)
    if st == OK:
        st = free_pages_c(words, w32, g, held, new[used:], n - used)
    return used, reused, st


def do_wp_pages(m: Model, mm: int, vma: int, vpns: np.ndarray) -> tuple[int, int]:
    """Write faults on present, write-protected pages of vma (compiled: do_wp_pages_c).
    Returns (copied, reused)."""
    copied, reused, st = do_wp_pages_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm, vma,
                                       np.asarray(vpns, dtype=np.int64))
    if st < 0:
        raise_status(st)
    return int(copied), int(reused)


@cached_njit
def touch_pages_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                  mm: int, vpns: np.ndarray) -> tuple[int, int, int]:
    """The owner of mm reads its pages at ``vpns``: a present PTE becomes young (the MMU's
    accessed bit, set here under the PTE lock so it cannot race a walker's
    test-and-clear), a swapped one faults back in (do_swap_page).  (touched, swapped in,
    status).  Takes each PTE page's lock in turn, then do_swap_page's locks."""
    ptrs = g[G.PTRS]
    nv = len(vpns)
    slots, pages = sc[:nv], sc[nv : 2 * nv]
    touched = ns = 0
    lw, t = -1, 0
    last = -1
    for i in range(nv):
        e = pte_offset_map_c(w32, g, mm, vpns[i])
        if e < 0:
            continue
        lw, t = pte_relock_c(words, g, held, lw, t, e, S_ANON)
        if t < 0:
            return 0, 0, STOPPED
        last = e
        slot = mm * ptrs + vpns[i]
        fl = w32[e + 1]
        if fl & PTE_PRESENT:
            w32[e + 1] = fl | PTE_YOUNG
            touched += 1
        elif fl & PTE_SWAP:
            slots[ns] = slot
            pages[ns] = w32[e]
            ns += 1
    if last >= 0:
        pte_unlock_c(words, g, held, last, S_ANON, t)
    done = 0
    for i in range(ns):
        d = do_swap_page_c(words, w32, g, held, pages[i], slots[i:], 1, 0, 0)
        if d < 0:
            return touched, done, STOPPED
        done += d
    return touched, done, OK


def touch_pages(m: Model, mm: int, vpns: np.ndarray) -> tuple[int, int]:
    """The owner of mm reads its pages at ``vpns`` (compiled: touch_pages_c).
    Returns (touched, swapped in)."""
    touched, done, st = touch_pages_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm,
                                      np.asarray(vpns, dtype=np.int64))
    if st < 0:
        raise_status(st)
    return int(touched), int(done)


# ---------------------------------------------------------------------------- fork and exit


@cached_njit
def copy_page_range_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                      sc: np.ndarray, child: int, parent: int, vma: int) -> int:
    """Copy the parent's PTEs of vma's range into the child's, write-protecting both (the
    child's copy is old, as copy_one_pte's pte_mkold makes it); every mapped page gains a
    mapping (swap entries a swap reference).  One PMD's worth (a PTE page) at a time, as
    copy_pte_range: a range whose source PTE page is none is skipped; else the child's
    levels are allocated (pte_alloc_map_c, mm->page_table_lock), then the child's PTE lock
    and the parent's inside it (dst then src, spin_lock_nested); page counts change by
    atomic adds.  Uses sc[0]."""
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    present = 0
    a = start
    while a < end:
        nxt = pmd_addr_end(a, end)
        es = pte_offset_map_c(w32, g, parent, a)
        if es < 0:  # pmd_none_or_clear_bad(src_pmd): nothing to copy
            a = nxt
            continue
        ed = pte_alloc_map_c(words, w32, g, held, sc, child, a, S_DUP)
        if ed < 0:  # the PTE pages copied so far stay, counted in the child's rss
            add_mm_rss_c(w32, g, child, present)
            return ed
        td = pte_lock_c(words, g, held, ed, S_DUP)
        if td < 0:
            add_mm_rss_c(w32, g, child, present)
            return STOPPED
        ts = pte_lock_c(words, g, held, es, S_DUP)
        if ts < 0:
            pte_unlock_c(words, g, held, ed, S_DUP, td)
            add_mm_rss_c(w32, g, child, present)
            return STOPPED
        for i in range(nxt - a):
            s_, d_ = es + 2 * i, ed + 2 * i
            fl = w32[s_ + 1]
            page = w32[s_]
            # Shared now: neither copy is exclusive (page_try_dup_anon_rmap; a swap PTE's
            # bit cleared in both, copy_nonpresent_pte, 5.19+).
            w32[s_ + 1] = fl & ~(PTE_WRITE | PTE_SWP_EXCLUSIVE)
            w32[d_] = page
            w32[d_ + 1] = fl & ~(PTE_WRITE | PTE_YOUNG | PTE_SWP_EXCLUSIVE)  # copy_one_pte: pte_mkold
            if fl & PTE_PRESENT:
                page_set_anon_exclusive_c(w32, g, page, False)
                present += 1
                mapcount_add_c(words, w32, g, held, page, 1, 0, S_DUP)
            elif fl & PTE_SWAP:
                mapcount_add_c(words, w32, g, held, page, 0, 1, S_DUP)
        pte_unlock_c(words, g, held, es, S_DUP, ts)
        pte_unlock_c(words, g, held, ed, S_DUP, td)
        a = nxt
    add_mm_rss_c(w32, g, child, present)
    return OK


@cached_njit
def dup_mmap_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
               parent: int) -> int:
    """fork: a child mm with a copy of each of the parent's VMAs, linked into the reverse
    map as the era does it (anon_vma_link or anon_vma_fork), and copied page tables.  The
    child, or a negative status; on ENOMEM the half-built child is torn down first."""
    child = mm_alloc_c(words, w32, g, held, sc, parent)
    if child < 0:
        return child
    pv = w32[_mm(g, parent, G.MM_VMA_HEAD)]
    while pv >= 0:
        cv = kmem_cache_alloc_one(words, w32, g, held, G.K_VMA, sc)
        if cv < 0:
            no_abort_begin(g)
            exit_mmap_c(words, w32, g, held, sc, child)
            no_abort_end(g)
            return cv
        for f in (G.VMA_START, G.VMA_END, G.VMA_PGOFF, G.VMA_FLAGS):
            w32[_vma(g, cv, f)] = w32[_vma(g, pv, f)]
        w32[_vma(g, cv, G.VMA_MM)] = child
        for f in (G.VMA_ANON_VMA, G.VMA_AVC_HEAD, G.VMA_NEXT, G.VMA_AV_PREV, G.VMA_AV_NEXT):
            w32[_vma(g, cv, f)] = -1
        vma_insert_c(w32, g, child, cv)
        if g[G.CHAIN]:
            st = anon_vma_fork_c(words, w32, g, held, sc, cv, pv)
        else:
            w32[_vma(g, cv, G.VMA_ANON_VMA)] = w32[_vma(g, pv, G.VMA_ANON_VMA)]
            st = anon_vma_link_c(words, w32, g, held, sc, cv)
            if st < 0:
                # Given up waiting for the lock, off the list: the child's VMA must not
                # name an anon_vma that cannot reach it.  It maps nothing yet
                # (copy_page_range comes after), so no anon_vma at all is consistent.
                w32[_vma(g, cv, G.VMA_ANON_VMA)] = -1
        if st == OK:
            st = copy_page_range_c(words, w32, g, held, sc, child, parent, cv)
        if st < 0:
            # The half-built child is torn down (dup_mmap's fail_nomem, then mmput), also
            # after an aborted wait: the teardown is an unwind, which the abort cannot cut
            # short.
            no_abort_begin(g)
            exit_mmap_c(words, w32, g, held, sc, child)
            no_abort_end(g)
            return st
        pv = w32[_vma(g, pv, G.VMA_NEXT)]
    return child


def dup_mmap(m: Model, parent: int) -> int:
    """fork (compiled: dup_mmap_c).  On OutOfMemory the half-built child is torn down and
    the error re-raised: the model stays consistent."""
    child = dup_mmap_c(m.words, m.w32, m.g, m.locks.held, m.scratch, parent)
    if child < 0:
        raise_status(child)
    return int(child)


@cached_njit
def zap_page_range_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                     mm: int, vma: int) -> int:
    """Clear vma's PTEs: each page loses this mapping and is freed if that was its last
    reference.  One PTE page at a time under its lock (zap_pte_range), none skipped; page
    counts change by atomic adds.  The tables stay (freed at exit: free_pgtables_c)."""
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    present = ndead = 0
    a = start
    while a < end:
        nxt = pmd_addr_end(a, end)
        e0 = pte_offset_map_c(w32, g, mm, a)
        if e0 < 0:
            a = nxt
            continue
        t = pte_lock_c(words, g, held, e0, S_EXIT)
        if t < 0:  # the PTE pages zapped so far stay zapped: rss and the freed pages follow
            add_mm_rss_c(w32, g, mm, -present)
            free_pages_c(words, w32, g, held, sc, ndead)
            return STOPPED
        for i in range(nxt - a):
            e = e0 + 2 * i
            fl, page = w32[e + 1], w32[e]
            dead = 0
            if fl & PTE_PRESENT:
                present += 1
                dead = mapcount_add_c(words, w32, g, held, page, -1, 0, S_EXIT)
            elif fl & PTE_SWAP:
                dead = mapcount_add_c(words, w32, g, held, page, 0, -1, S_EXIT)
            if dead:
                sc[ndead] = page
                ndead += 1
            w32[e] = -1
            w32[e + 1] = 0
        pte_unlock_c(words, g, held, e0, S_EXIT, t)
        a = nxt
    add_mm_rss_c(w32, g, mm, -present)
    return free_pages_c(words, w32, g, held, sc, ndead)


def zap_page_range(m: Model, mm: int, vma: int) -> None:
    """Clear vma's PTEs (compiled: zap_page_range_c)."""
    st = zap_page_range_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm, vma)
    if st < 0:
        raise_status(st)


@cached_njit
def exit_mmap_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                mm: int) -> int:
    """exit: zap every VMA's pages, unlink it from the reverse map (freeing anon_vmas that
    become unused), free the VMAs, then the page tables (free_pgtables: no walker can
    reach them once no VMA of the mm is on a list) and the mm."""
    v = w32[_mm(g, mm, G.MM_VMA_HEAD)]
    while v >= 0:
        nxt = w32[_vma(g, v, G.VMA_NEXT)]
        st = zap_page_range_c(words, w32, g, held, sc, mm, v)
        if st == OK:
            st = unlink_anon_vmas_c(words, w32, g, held, sc, v)
        if st == OK:
            st = kmem_cache_free_one(words, w32, g, held, G.K_VMA, v, sc)
        if st < 0:
            return st
        v = nxt
    w32[_mm(g, mm, G.MM_VMA_HEAD)] = -1
    w32[_mm(g, mm, G.MM_NR_VMAS)] = 0
    st = free_pgtables_c(words, w32, g, held, sc, mm)
    if st < 0:
        return st
    return kmem_cache_free_one(words, w32, g, held, G.K_MM, mm, sc)


def exit_mmap(m: Model, mm: int) -> None:
    """exit (compiled: exit_mmap_c)."""
    st = exit_mmap_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm)
    if st < 0:
        raise_status(st)


def do_munmap(m: Model, mm: int, vma: int) -> None:
    """Unmap a whole VMA of mm: zap its pages, unlink it from the reverse map (freeing
    anon_vmas that become unused), take it off the mm's list and free it, then the page
    tables no other VMA of mm lies under (free_pgd_range)."""
    zap_page_range(m, mm, vma)
    unlink_anon_vmas(m, vma)
    rec = m.vma
    prev, v = -1, int(m.mm["vma_head"][mm])
    while v >= 0 and v != vma:
        prev, v = v, int(rec["vm_next"][v])
    if v != vma:
        raise ValueError(f"vma {vma} is not on mm {mm}'s list")
    nxt = int(rec["vm_next"][vma])
    if prev < 0:
        m.mm["vma_head"][mm] = nxt
    else:
        rec["vm_next"][prev] = nxt
    m.mm["nr_vmas"][mm] -= 1
    rec["in_use"][vma] = 0
    start, end = int(rec["vm_start"][vma]), int(rec["vm_end"][vma])
    m.free("vma", vma)
    free_pgd_range(m, mm, start, end)

"""Address spaces: mmap, faults (first touch, COW, swap-in), fork and exit.

Only the CPU that runs an mm changes that mm's VMAs and page tables (this stands for
mmap_sem held for write); other CPUs reach its PTEs only through an rmap walk, which takes
the mm's ``ptl`` before it changes one.  Every operation runs compiled (numba), a page at a time as the
kernel's loops do, beside a thin Python wrapper with the kernel's name; compiled code
returns a status that the wrapper turns into OutOfMemory or Stopped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import ctx as G
from .anon_vma import (
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
from .layout import PTE_PRESENT, PTE_SWAP, PTE_WRITE, PTE_YOUNG, VM_READ, VM_WRITE
from .locking.atomics import READ_ONCE
from .locking.jit import cached_njit
from .locks import CLASS, SITE, lock_acquire_c, lock_release_c
from .model import (
    Model,
    kmem_cache_alloc_c,
    kmem_cache_alloc_one,
    kmem_cache_free_c,
    kmem_cache_free_one,
)
from .rmap import do_swap_page_c, mapcount_add_c

PTL = CLASS["ptl"]
S_ANON, S_WP, S_DUP, S_EXIT = (SITE[s] for s in ("do_anonymous_page", "do_wp_page", "dup_mmap", "exit_mmap"))
OK, STOPPED = G.OK, G.STOPPED


@njit(inline="always")
def _pte(g: np.ndarray, slot: int) -> int:
    """int32 word of the PTE at ``slot``: [page, flags]."""
    return g[G.PTE0] + 2 * slot


@njit(inline="always")
def lock_ptl_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, mm: int, site: int) -> int:
    return lock_acquire_c(words, g, held, g[G.MM_PTL_W0] + mm * g[G.MM_W64], PTL, site, 0)


@njit(inline="always")
def unlock_ptl_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, mm: int, site: int, t: int) -> None:
    lock_release_c(words, g, held, g[G.MM_PTL_W0] + mm * g[G.MM_W64], PTL, site, 0, t)


# ---------------------------------------------------------------------------- mm and VMAs


@cached_njit
def mm_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
               parent: int) -> int:
    """A new, empty mm_struct: its index or a negative status.  Takes the slab lock."""
    mm = kmem_cache_alloc_one(words, w32, g, held, G.K_MM, sc)
    if mm < 0:
        return mm
    w32[_mm(g, mm, G.MM_VMA_HEAD)] = -1
    w32[_mm(g, mm, G.MM_NR_VMAS)] = 0
    w32[_mm(g, mm, G.MM_RSS)] = 0
    w32[_mm(g, mm, G.MM_PARENT)] = parent
    ptrs = g[G.PTRS]
    for a in range(ptrs):
        e = _pte(g, mm * ptrs + a)
        w32[e] = -1
        w32[e + 1] = 0
    return mm


def mm_alloc(m: Model, parent: int = -1) -> int:
    """A new, empty mm_struct.  Takes the slab lock."""
    mm = mm_alloc_c(m.words, m.w32, m.g, m.locks.held, m.scratch, parent)
    if mm < 0:
        raise_status(mm)
    return int(mm)


def mm_vmas(m: Model, mm: int) -> list[int]:
    out = []
    v = int(m.mm["vma_head"][mm])
    nxt = m.vma["vm_next"]
    while v >= 0:
        out.append(v)
        v = int(nxt[v])
    return out


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
    mapped, or a negative status with the mm as it was (a new anon_vma may stay).

    Takes: anon_vma_prepare's lock, the slab lock, then the mm's ptl."""
    av = anon_vma_prepare_c(words, w32, g, held, sc, vma)
    if av < 0:
        return av
    ptrs = g[G.PTRS]
    n = 0
    todo = sc[len(vpns) :]
    for i in range(len(vpns)):
        slot = mm * ptrs + vpns[i]
        if w32[_pte(g, slot)] < 0:
            todo[n] = slot
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
        w32[_page(g, p, G.PAGE_INDEX)] = pgoff + (todo[i] - mm * ptrs - start)
        w32[_page(g, p, G.PAGE_MAPCOUNT)] = 1
        w32[_page(g, p, G.PAGE_SWAPCOUNT)] = 0
    words[g[G.CPU_BASE] + G.F_FRAMES_IN] += n
    t = lock_ptl_c(words, g, held, mm, S_ANON)
    if t < 0:
        return STOPPED
    for i in range(n):
        e = _pte(g, todo[i])
        w32[e] = sc[i]
        w32[e + 1] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
    w32[_mm(g, mm, G.MM_RSS)] += n
    unlock_ptl_c(words, g, held, mm, S_ANON, t)
    return n


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
    the ptl (mapcount and swap count change together, by one atomic add)."""
    st = anon_vma_prepare_c(words, w32, g, held, sc, vma)
    if st < 0:
        return 0, 0, st
    ptrs = g[G.PTRS]
    nv = len(vpns)
    new, cand, dead = sc[:nv], sc[nv : 2 * nv], sc[2 * nv : 3 * nv]
    n = 0
    for i in range(nv):
        slot = mm * ptrs + vpns[i]
        if (w32[_pte(g, slot) + 1] & (PTE_PRESENT | PTE_WRITE)) == PTE_PRESENT:
            cand[n] = slot
            n += 1
    if n == 0:
        return 0, 0, OK
    st = kmem_cache_alloc_c(words, w32, g, held, G.K_PAGE, n, new)
    if st < 0:
        return 0, 0, st
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    start, pgoff = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_PGOFF)]
    cb = g[G.CPU_BASE]
    t = lock_ptl_c(words, g, held, mm, S_WP)
    if t < 0:
        return 0, 0, STOPPED
    used = reused = ndead = 0
    for i in range(n):
        slot = cand[i]
        e = _pte(g, slot)
        if (w32[e + 1] & (PTE_PRESENT | PTE_WRITE)) != PTE_PRESENT:
            continue
        old = w32[e]
        ob = _page(g, old, 0)
        # reuse_swap_page: mapcount 1 (this PTE) and no swap entry, one atomic read of the
        # counts word.  Stable under this ptl: no other PTE maps the page, and only a
        # holder of this ptl could add one (fork's copy) or take this one (try_to_unmap).
        if READ_ONCE(words, (ob + G.PAGE_MAPCOUNT) >> 1) == 1:
            w32[e + 1] |= PTE_WRITE | PTE_YOUNG
            reused += 1
            if g[G.MOVE_ANON_RMAP]:  # page_move_anon_rmap (2.6.34+): only we map it
                w32[ob + G.PAGE_MAPPING] = av
        else:
            p = new[used]
            used += 1
            w32[_page(g, p, G.PAGE_MAPPING)] = av
            w32[_page(g, p, G.PAGE_INDEX)] = pgoff + (slot - mm * ptrs - start)
            w32[_page(g, p, G.PAGE_MAPCOUNT)] = 1
            w32[_page(g, p, G.PAGE_SWAPCOUNT)] = 0
            words[cb + G.F_FRAMES_IN] += 1
            w32[e] = p
            w32[e + 1] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
            if mapcount_add_c(words, w32, g, held, old, -1, 0, S_WP):
                dead[ndead] = old
                ndead += 1
    unlock_ptl_c(words, g, held, mm, S_WP, t)
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


def do_swap_page(m: Model, page: int, slots: np.ndarray | list[int], write: bool = False) -> int:
    """Fault ``page`` back in (from the swap cache, or read fresh from swap when reclaim
    dropped it from the cache) at each swap PTE in ``slots``, in that order (each stands
    for that mm's owner touching it again): PTE present and young, mapcount up, swap count
    down, and on the first mapping the page placed as the era's page_add_anon_rmap does
    (eras.Era.swapin).  ``write``: write faults, which map the page writable where the
    faulting entry is its only user (reuse_swap_page).  Takes the page lock, then each
    mm's ptl; the page's counts change by an atomic add (compiled: rmap.do_swap_page_c)."""
    slots = np.asarray(slots, dtype=np.int64)
    done = do_swap_page_c(m.words, m.w32, m.g, m.locks.held, page, slots, len(slots), int(write), 0)
    if done < 0:
        raise_status(done)
    return int(done)


@cached_njit
def touch_pages_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                  mm: int, vpns: np.ndarray) -> tuple[int, int, int]:
    """The owner of mm reads its pages at ``vpns``: a present PTE becomes young (the MMU's
    accessed bit, set here under the ptl so it cannot race a walker's test-and-clear), a
    swapped one faults back in (do_swap_page).  (touched, swapped in, status)."""
    ptrs = g[G.PTRS]
    nv = len(vpns)
    slots, pages = sc[:nv], sc[nv : 2 * nv]
    t = lock_ptl_c(words, g, held, mm, S_ANON)
    if t < 0:
        return 0, 0, STOPPED
    touched = ns = 0
    for i in range(nv):
        slot = mm * ptrs + vpns[i]
        e = _pte(g, slot)
        fl = w32[e + 1]
        if fl & PTE_PRESENT:
            w32[e + 1] = fl | PTE_YOUNG
            touched += 1
        elif fl & PTE_SWAP:
            slots[ns] = slot
            pages[ns] = w32[e]
            ns += 1
    unlock_ptl_c(words, g, held, mm, S_ANON, t)
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
                      child: int, parent: int, vma: int) -> int:
    """Copy the parent's PTEs of vma's range into the child's, write-protecting both (the
    child's copy is old, as copy_one_pte's pte_mkold makes it); every mapped page gains a
    mapping (swap entries a swap reference).  Takes the child's then the parent's ptl (dst
    then src, as the kernel nests them); page counts change by atomic adds."""
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    ptrs = g[G.PTRS]
    td = lock_ptl_c(words, g, held, child, S_DUP)
    if td < 0:
        return STOPPED
    ts = lock_ptl_c(words, g, held, parent, S_DUP)
    if ts < 0:
        return STOPPED
    present = 0
    for a in range(start, end):
        es, ed = _pte(g, parent * ptrs + a), _pte(g, child * ptrs + a)
        fl = w32[es + 1]
        page = w32[es]
        w32[es + 1] = fl & ~PTE_WRITE
        w32[ed] = page
        w32[ed + 1] = fl & ~(PTE_WRITE | PTE_YOUNG)  # copy_one_pte: pte_mkold for the child
        if fl & PTE_PRESENT:
            present += 1
            if mapcount_add_c(words, w32, g, held, page, 1, 0, S_DUP) < 0:
                return STOPPED
        elif fl & PTE_SWAP and mapcount_add_c(words, w32, g, held, page, 0, 1, S_DUP) < 0:
            return STOPPED
    w32[_mm(g, child, G.MM_RSS)] += present
    unlock_ptl_c(words, g, held, parent, S_DUP, ts)
    unlock_ptl_c(words, g, held, child, S_DUP, td)
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
            exit_mmap_c(words, w32, g, held, sc, child)
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
        if st == OK:
            st = copy_page_range_c(words, w32, g, held, child, parent, cv)
        if st < 0:
            if st != STOPPED:
                exit_mmap_c(words, w32, g, held, sc, child)
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
    reference.  Takes the mm's ptl; page counts change by atomic adds."""
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    ptrs = g[G.PTRS]
    t = lock_ptl_c(words, g, held, mm, S_EXIT)
    if t < 0:
        return STOPPED
    present = ndead = 0
    for a in range(start, end):
        e = _pte(g, mm * ptrs + a)
        fl, page = w32[e + 1], w32[e]
        dead = 0
        if fl & PTE_PRESENT:
            present += 1
            dead = mapcount_add_c(words, w32, g, held, page, -1, 0, S_EXIT)
        elif fl & PTE_SWAP:
            dead = mapcount_add_c(words, w32, g, held, page, 0, -1, S_EXIT)
        if dead < 0:
            return STOPPED
        if dead:
            sc[ndead] = page
            ndead += 1
        w32[e] = -1
        w32[e + 1] = 0
    w32[_mm(g, mm, G.MM_RSS)] -= present
    unlock_ptl_c(words, g, held, mm, S_EXIT, t)
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
    become unused), free the VMAs and the mm."""
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
    return kmem_cache_free_one(words, w32, g, held, G.K_MM, mm, sc)


def exit_mmap(m: Model, mm: int) -> None:
    """exit (compiled: exit_mmap_c)."""
    st = exit_mmap_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm)
    if st < 0:
        raise_status(st)


def do_munmap(m: Model, mm: int, vma: int) -> None:
    """Unmap a whole VMA of mm: zap its pages, unlink it from the reverse map (freeing
    anon_vmas that become unused), take it off the mm's list and free it."""
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
    m.free("vma", vma)

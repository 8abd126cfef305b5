"""Address spaces: mmap, faults (first touch, COW, swap-in), fork and exit.

Only the CPU that runs an mm changes that mm's VMAs and page tables (this stands for
mmap_sem held for write); other CPUs reach its PTEs only through an rmap walk, which takes
the mm's ``ptl`` before it changes one.  Page-table updates are vectorised over a range of
pages (a fault-around, or the whole of ``copy_page_range``), with the same semantics as
doing them one page at a time.
"""

from __future__ import annotations

import numpy as np

from .anon_vma import anon_vma_fork, anon_vma_link, anon_vma_prepare, unlink_anon_vmas
from .layout import MAPCOUNT_STRIPES, PTE_PRESENT, PTE_SWAP, PTE_WRITE, PTE_YOUNG
from .model import Model, OutOfMemory


def mm_alloc(m: Model, parent: int = -1) -> int:
    """A new, empty mm_struct.  Takes the slab lock."""
    mm = m.alloc_one("mm")
    rec = m.mm
    rec["vma_head"][mm] = -1
    rec["nr_vmas"][mm] = 0
    rec["rss"][mm] = 0
    rec["parent"][mm] = parent
    base = mm * m.ptrs
    m.pte_page[base : base + m.ptrs] = -1
    m.pte_flags[base : base + m.ptrs] = 0
    return mm


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


def _vma_insert(m: Model, mm: int, vma: int) -> None:
    """Append vma to mm's list (address order is the order of creation here)."""
    rec = m.vma
    rec["vm_next"][vma] = -1
    vmas = mm_vmas(m, mm)
    if vmas:
        rec["vm_next"][vmas[-1]] = vma
    else:
        m.mm["vma_head"][mm] = vma
    m.mm["nr_vmas"][mm] += 1


def do_mmap(m: Model, mm: int, start: int, npages: int) -> int:
    """A private anonymous mapping of ``npages`` pages at vpn ``start`` (vm_pgoff = start).

    No page is touched: the first fault in it runs anon_vma_prepare."""
    if start < 0 or npages <= 0 or start + npages > m.ptrs:
        raise ValueError(f"mapping [{start}, {start + npages}) outside the page table (0..{m.ptrs})")
    vma = m.alloc_one("vma")
    m.vma[vma] = (start, start + npages, start, mm, -1, -1, -1, -1, -1, 1)
    _vma_insert(m, mm, vma)
    return vma


def page_counts_add(m: Model, pages: np.ndarray, dmap: int, dswap: int, site: str) -> np.ndarray:
    """Add dmap to the mapcount and dswap to the swap count of each (distinct) page; returns
    the pages whose counts both reached zero (the caller frees them: it owned the last
    reference).  Takes and releases the pages' mapcount stripe locks (lock_stripes)."""
    toks = lock_stripes(m, pages, site)
    try:
        return page_counts_add_locked(m, pages, dmap, dswap)
    finally:
        unlock_stripes(m, toks)


def lock_stripes(m: Model, pages: np.ndarray, site: str) -> list[tuple[int, int, int]]:
    """Take the mapcount stripe locks (atomic_t) of ``pages``, all of them in ascending order,
    so that a batch is one locked section; none while the model is ``exclusive`` (being
    built by one process before any CPU starts)."""
    if m.exclusive or not len(pages):
        return []
    if len(pages) == 1:
        return [m.mapcount_lock(int(pages[0]), site)]
    return [m.mapcount_lock(s, site) for s in np.unique(pages % MAPCOUNT_STRIPES).tolist()]


def unlock_stripes(m: Model, toks: list[tuple[int, int, int]]) -> None:
    for tok in reversed(toks):
        m.mapcount_unlock(tok)


def page_counts_add_locked(m: Model, pages: np.ndarray, dmap: int, dswap: int) -> np.ndarray:
    """page_counts_add with the pages' stripes already held."""
    if dmap:
        was = m.page_mapcount[pages] > 0
        m.page_mapcount[pages] += dmap
        now = m.page_mapcount[pages] > 0
        _count_frames(m, int(np.count_nonzero(now & ~was)), int(np.count_nonzero(was & ~now)))
    if dswap:
        m.page_swapcount[pages] += dswap
    dead = (m.page_mapcount[pages] == 0) & (m.page_swapcount[pages] == 0)
    return pages[dead]


def _count_frames(m: Model, came: int, went: int) -> None:
    """A page is resident (holds a frame) while its mapcount is above zero; count the
    transitions in this CPU's slot so that resident pages = sum(in) - sum(out)."""
    words, f = m.locks.words, m.locks.f
    if came:
        words[f["frames_in"]] += came
    if went:
        words[f["frames_out"]] += went


def resident_pages(m: Model) -> int:
    """Pages holding a frame now, from every CPU's counters (no lock: a snapshot)."""
    cpu = m.seg["cpu"]
    return int(cpu["frames_in"].sum() - cpu["frames_out"].sum())


def free_pages(m: Model, pages: np.ndarray) -> None:
    """Return unreferenced pages to the page slab.  Takes the slab lock."""
    if len(pages):
        m.page_mapping[pages] = -1
        m.page_index[pages] = -1
        m.free("page", pages)


def do_anonymous_pages(m: Model, mm: int, vma: int, vpns: np.ndarray) -> int:
    """First touch (write) of pages of vma not yet mapped: a new page each, in
    ``vma->anon_vma`` (page_add_new_anon_rmap), PTE young and writable.  Returns pages mapped.

    Takes: anon_vma_prepare's lock, the slab lock, then the mm's ptl.  OutOfMemory leaves
    the mm as it was."""
    anon_vma_prepare(m, vma)
    vpns = np.asarray(vpns, dtype=np.int32)
    slots = mm * m.ptrs + vpns
    todo = slots[m.pte_page[slots] < 0]
    if not len(todo):
        return 0
    pages = m.alloc("page", len(todo))
    v = m.vma[vma]
    m.page_mapping[pages] = v["anon_vma"]
    m.page_index[pages] = v["vm_pgoff"] + (todo - mm * m.ptrs - v["vm_start"])
    m.page_mapcount[pages] = 1
    m.page_swapcount[pages] = 0
    _count_frames(m, len(pages), 0)
    tok = m.lock_ptl(mm, "do_anonymous_page")
    m.pte_page[todo] = pages
    m.pte_flags[todo] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
    m.mm["rss"][mm] += len(todo)
    m.unlock_ptl(tok)
    return len(todo)


def do_wp_pages(m: Model, mm: int, vma: int, vpns: np.ndarray) -> tuple[int, int]:
    """Write faults on present, write-protected pages of vma: copy-on-write into a new page
    in ``vma->anon_vma``, or reuse the page when this mm is its only user.  Returns
    (copied, reused).

    New pages are allocated before the ptl is taken and the PTEs rechecked under it, as
    do_wp_page does; takes mapcount stripe locks inside the ptl."""
    anon_vma_prepare(m, vma)
    vpns = np.asarray(vpns, dtype=np.int32)
    slots = mm * m.ptrs + vpns
    flags = m.pte_flags[slots]
    slots = slots[(flags & (PTE_PRESENT | PTE_WRITE)) == PTE_PRESENT]
    if not len(slots):
        return 0, 0
    new = m.alloc("page", len(slots))
    av = int(m.vma_anon_vma[vma])
    v = m.vma[vma]
    tok = m.lock_ptl(mm, "do_wp_page")
    flags = m.pte_flags[slots]
    ok = (flags & (PTE_PRESENT | PTE_WRITE)) == PTE_PRESENT
    slots = slots[ok]
    old = m.pte_page[slots]
    # The reuse test reads the counts: under their stripe locks, or a concurrent
    # try_to_unmap could be caught between its mapcount and swapcount updates.
    stripes = lock_stripes(m, old, "do_wp_page")
    try:
        reuse = (m.page_mapcount[old] == 1) & (m.page_swapcount[old] == 0)
        m.pte_flags[slots[reuse]] |= PTE_WRITE | PTE_YOUNG
        cslots, cold = slots[~reuse], old[~reuse]
        used, spare = new[: len(cslots)], new[len(cslots) :]
        m.page_mapping[used] = av
        m.page_index[used] = v["vm_pgoff"] + (cslots - mm * m.ptrs - v["vm_start"])
        m.page_mapcount[used] = 1
        m.page_swapcount[used] = 0
        _count_frames(m, len(used), 0)
        m.pte_page[cslots] = used
        m.pte_flags[cslots] = PTE_PRESENT | PTE_YOUNG | PTE_WRITE
        gone = page_counts_add_locked(m, cold, -1, 0) if len(cold) else cold
    finally:
        unlock_stripes(m, stripes)
    m.unlock_ptl(tok)
    free_pages(m, gone)
    free_pages(m, spare)
    return len(cslots), int(reuse.sum())


def do_swap_page(m: Model, page: int, slots: np.ndarray | list[int]) -> int:
    """Fault ``page`` back in from the swap cache at each swap PTE in ``slots`` (each stands
    for that mm's owner touching it again): PTE present and young, mapcount up, swap
    count down.  Takes each mm's ptl, and the page's mapcount stripe inside it."""
    done = 0
    one = np.array([page], dtype=np.int32)
    for slot in slots:
        slot = int(slot)
        tok = m.lock_ptl(slot // m.ptrs, "do_swap_page")
        if m.pte_page[slot] == page and m.pte_flags[slot] & PTE_SWAP:
            m.pte_flags[slot] = PTE_PRESENT | PTE_YOUNG
            page_counts_add(m, one, 1, -1, "do_swap_page")
            m.mm["rss"][slot // m.ptrs] += 1
            done += 1
            m.locks.words[m.locks.f["swapins"]] += 1
        m.unlock_ptl(tok)
    return done


def copy_page_range(m: Model, child: int, parent: int, vma: int) -> None:
    """Copy the parent's PTEs of vma's range into the child's, write-protecting both (the
    child's copy is old, as copy_one_pte's pte_mkold makes it);
    every mapped page gains a mapping (swap entries a swap reference).  Takes the child's
    then the parent's ptl (dst then src, as the kernel nests them)."""
    start, end = int(m.vma["vm_start"][vma]), int(m.vma["vm_end"][vma])
    src = slice(parent * m.ptrs + start, parent * m.ptrs + end)
    dst = slice(child * m.ptrs + start, child * m.ptrs + end)
    t_dst = m.lock_ptl(child, "dup_mmap")
    t_src = m.lock_ptl(parent, "dup_mmap")
    flags = m.pte_flags[src]
    present = (flags & PTE_PRESENT) != 0
    swap = (flags & PTE_SWAP) != 0
    m.pte_flags[src] = flags & ~PTE_WRITE
    m.pte_page[dst] = m.pte_page[src]
    m.pte_flags[dst] = flags & ~(PTE_WRITE | PTE_YOUNG)  # copy_one_pte: pte_mkold for the child
    pages = m.pte_page[src]
    if present.any():
        page_counts_add(m, pages[present], 1, 0, "dup_mmap")
    if swap.any():
        page_counts_add(m, pages[swap], 0, 1, "dup_mmap")
    m.mm["rss"][child] += int(present.sum())
    m.unlock_ptl(t_src)
    m.unlock_ptl(t_dst)


def dup_mmap(m: Model, parent: int) -> int:
    """fork: a child mm with a copy of each of the parent's VMAs, linked into the reverse
    map as the era does it (anon_vma_link or anon_vma_fork), and copied page tables.

    On OutOfMemory the half-built child is torn down with exit_mmap and the error re-raised:
    the model stays consistent."""
    child = mm_alloc(m, parent)
    try:
        for pv in mm_vmas(m, parent):
            cv = m.alloc_one("vma")
            p = m.vma[pv]
            m.vma[cv] = (p["vm_start"], p["vm_end"], p["vm_pgoff"], child, -1, -1, -1, -1, -1, 1)
            _vma_insert(m, child, cv)
            if m.era.chain:
                anon_vma_fork(m, cv, pv)
            else:
                m.vma_anon_vma[cv] = m.vma_anon_vma[pv]
                anon_vma_link(m, cv)
            copy_page_range(m, child, parent, cv)
    except OutOfMemory:
        exit_mmap(m, child)
        raise
    return child


def zap_page_range(m: Model, mm: int, vma: int) -> None:
    """Clear vma's PTEs: each page loses this mapping and is freed if that was its last
    reference.  Takes the mm's ptl, and mapcount stripes inside it."""
    start, end = int(m.vma["vm_start"][vma]), int(m.vma["vm_end"][vma])
    rng = slice(mm * m.ptrs + start, mm * m.ptrs + end)
    tok = m.lock_ptl(mm, "exit_mmap")
    flags = m.pte_flags[rng]
    pages = m.pte_page[rng]
    present = (flags & PTE_PRESENT) != 0
    swap = (flags & PTE_SWAP) != 0
    gone = []
    if present.any():
        gone.append(page_counts_add(m, pages[present], -1, 0, "exit_mmap"))
    if swap.any():
        gone.append(page_counts_add(m, pages[swap], 0, -1, "exit_mmap"))
    m.pte_page[rng] = -1
    m.pte_flags[rng] = 0
    m.mm["rss"][mm] -= int(present.sum())
    m.unlock_ptl(tok)
    for g in gone:
        free_pages(m, g)


def exit_mmap(m: Model, mm: int) -> None:
    """exit: zap every VMA's pages, unlink it from the reverse map (freeing anon_vmas that
    become unused), free the VMAs and the mm."""
    for v in mm_vmas(m, mm):
        zap_page_range(m, mm, v)
        unlink_anon_vmas(m, v)
        m.vma["in_use"][v] = 0
        m.free("vma", v)
    m.mm["vma_head"][mm] = -1
    m.mm["nr_vmas"][mm] = 0
    m.free("mm", mm)


def touch_pages(m: Model, mm: int, vpns: np.ndarray) -> tuple[int, int]:
    """The owner of mm reads its pages at ``vpns``: a present PTE becomes young (the MMU's
    accessed bit, set here under the ptl so it cannot race a walker's test-and-clear), a
    swapped one faults back in (do_swap_page).  Returns (touched, swapped in)."""
    slots = mm * m.ptrs + np.asarray(vpns, dtype=np.int64)
    tok = m.lock_ptl(mm, "do_anonymous_page")
    flags = m.pte_flags[slots]
    present = slots[(flags & PTE_PRESENT) != 0]
    m.pte_flags[present] |= PTE_YOUNG
    swapped = slots[(flags & PTE_SWAP) != 0]
    pages = m.pte_page[swapped]
    m.unlock_ptl(tok)
    done = 0
    for page, slot in zip(pages.tolist(), swapped.tolist()):
        done += do_swap_page(m, page, [slot])
    return len(present), done


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

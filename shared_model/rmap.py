"""The reverse-map walk: page_referenced and try_to_unmap, and their _one callbacks.

``page_referenced_anon`` in the kernel: take the page's anon_vma lock
(``page_lock_anon_vma``), then for each entry of its list compute ``vma_address``; skip
entries whose range does not hold the page; otherwise ``page_referenced_one`` walks that
mm's page table to the PTE under the PTE lock and test-and-clears its young bit.  The
walk stops as soon as ``mapcount`` mappings have been found.  ``try_to_unmap_anon`` is the
same walk, clearing each PTE (here: turning it into a swap entry) until none is left.

Vectorised, with the early stop kept exact:  the list is scanned in two batches, the
head chunk and then all the rest, each as numpy gathers (VMA records, then the PTE each
would hold).  Within a batch the hits are found with ``flatnonzero`` and ``visited`` is the
number of live entries up to and including the ``mapcount``-th hit (or all of them), which
is exactly what the kernel's one-at-a-time loop visits.  Only the hits pay a Python-level
step: their ``_one`` callback takes the PTE lock and confirms the lock-free pre-check.

Modelled cost (``Model.entry_cost_ns``): per visited entry the kernel pays a page-table
walk in another process's page tables (pgd -> pud -> pmd -> pte, cold cache lines) and a
PTE-lock round trip, which a vectorised gather does not.  When set, the walker busy-waits
that long per visited entry while holding the lock, so time under the lock scales with
walk length as it did in the kernel.  Zero (off) for ``scan`` and the model's own tests.
"""

from __future__ import annotations

import numpy as np

from .anon_vma import _chunk_ids
from .layout import CPU_STATE, PTE_PRESENT, PTE_SWAP, PTE_YOUNG
from .memory import page_counts_add
from .model import Model

WALK = CPU_STATE["walk"]


def page_lock_anon_vma(m: Model, page: int, site: str) -> tuple[int, tuple[int, int, int]] | None:
    """Lock the anon_vma of a mapped anonymous page; None when it is not mapped.

    Takes the lock guarding ``page->mapping`` (released by the caller with
    ``m.anon_vma_unlock``).  The anon_vma may be freed while we wait for its lock; its
    record is type-stable, so we recheck under the lock that the page still points there
    and is still mapped, as the kernel does with SLAB_DESTROY_BY_RCU."""
    av = int(m.page_mapping[page])
    if av < 0 or m.page_mapcount[page] <= 0:
        return None
    tok = m.anon_vma_lock(av, site)
    # In eras that lock the root, also recheck that av still has the root whose lock we
    # took: a freed and reused av may belong to another family by now.
    if m.page_mapping[page] != av or m.page_mapcount[page] <= 0 or tok[0] != m.anon_vma_lock_word(av):
        m.anon_vma_unlock(tok)
        return None
    return av, tok


Mark = tuple[int, np.ndarray, int]  # (entries visited before its batch, the batch, position)


def rmap_walk_locked(m: Model, av: int, page: int, index: int,
                     need: int) -> tuple[list[int], int, list[Mark]]:
    """PTE slots that (lock-free pre-check) map ``page``, up to ``need`` of them, in list
    order; the number of list entries visited to find them; and for each slot where it was
    found (``visited_upto`` turns that into a walk length, for a caller that stops early).
    Expects held: av's lock."""
    ids = _chunk_ids(m, av)
    found: list[int] = []
    marks: list[Mark] = []
    visited = 0
    chunk_vma = m.chunk_vma
    for batch in (ids[:1], ids[1:]):
        if not batch or need <= 0:
            break
        vmas = chunk_vma[batch].ravel()
        # One row gather per entry from a plain int32 view (vm_start, vm_end, vm_pgoff,
        # vm_mm come first): ``take`` on it is 20x faster than indexing the structured array.
        v = m.vma_words.take(vmas, axis=0)
        start = v[:, 0]
        addr = start + (index - v[:, 2])
        inside = (addr >= start) & (addr < v[:, 1])
        slots = np.where(inside, v[:, 3] * m.ptrs + addr, 0)
        p = m.pte_words.take(slots, axis=0)
        hits = np.flatnonzero(inside & (p[:, 0] == page) & ((p[:, 1] & PTE_PRESENT) != 0))[:need]
        found.extend(slots[hits].tolist())
        marks.extend((visited, vmas, int(h)) for h in hits)
        if len(hits) == need:
            return found, visited + int(np.count_nonzero(vmas[: int(hits[-1]) + 1])), marks
        visited += int(np.count_nonzero(vmas))
        need -= len(hits)
    return found, visited, marks


def visited_upto(mark: Mark) -> int:
    """Entries a walk visited up to and including the one at ``mark``."""
    before, vmas, pos = mark
    return before + int(np.count_nonzero(vmas[: pos + 1]))


def page_check_address(m: Model, visited: int) -> None:
    """The modelled cost of the kernel's per-entry page-table walk (see the module header):
    named after the function whose cost it stands for, so profiles read like the kernel's."""
    if m.entry_cost_ns and visited:
        clock = m.clock
        end = clock() + m.entry_cost_ns * visited
        while clock() < end:
            pass


def _walk_begin(m: Model, w: int) -> tuple[int, int]:
    loc = m.locks
    loc.words[loc.f["hold_lock"]] = w
    prev = loc.words[loc.f["state"]]
    loc.words[loc.f["state"]] = WALK
    loc.words[loc.f["state_since_ns"]] = m.clock()
    return prev, loc.wait_ns


def _walk_end(m: Model, prev_state: int, wait_before: int, hold: int, visited: int) -> None:
    """Publish the walk: counters, walk-length histogram, time under the lock (less any
    nested PTE-lock waits, which count as lock wait)."""
    loc = m.locks
    words, f = loc.words, loc.f
    words[f["state"]] = prev_state
    words[f["hold_lock"]] = -1
    words[f["walks"]] += 1
    words[f["visited"]] += visited
    words[f["max_visited"]] = max(words[f["max_visited"]], visited)
    words[f["t_walk_ns"]] += hold - (loc.wait_ns - wait_before)
    words[m.walkhist_word + visited.bit_length()] += 1


def page_referenced_one(m: Model, page: int, slot: int) -> int:
    """Test-and-clear the young bit of the PTE at ``slot`` if it maps page; 1 if it was
    young.  Takes and releases that mm's ptl (expects held: the anon_vma lock)."""
    tok = m.lock_ptl(slot // m.ptrs, "page_referenced_one")
    young = 0
    fl = int(m.pte_flags[slot])
    if m.pte_page[slot] == page and fl & PTE_PRESENT and fl & PTE_YOUNG:
        m.pte_flags[slot] = fl & ~PTE_YOUNG
        young = 1
    m.unlock_ptl(tok)
    return young


def page_referenced_anon(m: Model, page: int) -> tuple[int, int]:
    """Reclaim's question for one page: how many of its mappings were young (each cleared),
    and how many list entries the walk visited.  (0, 0) for a page that is not mapped.

    Takes the page's anon_vma lock (page_lock_anon_vma) for the whole walk, and each hit's
    ptl inside it; publishes the walk in this CPU's slot."""
    locked = page_lock_anon_vma(m, page, "page_referenced")
    if locked is None:
        return 0, 0
    av, tok = locked
    prev, wait_before = _walk_begin(m, tok[0])
    referenced = visited = 0
    try:
        slots, visited, _ = rmap_walk_locked(m, av, page, int(m.page_index[page]),
                                             int(m.page_mapcount[page]))
        for slot in slots:
            referenced += page_referenced_one(m, page, slot)
        page_check_address(m, visited)
    finally:  # an aborted nested PTE-lock wait (Stopped) must not leave the anon_vma locked
        hold = m.anon_vma_unlock(tok)
        _walk_end(m, prev, wait_before, hold, visited)
    return referenced, visited


page_referenced = page_referenced_anon  # anonymous pages are all the model has


def try_to_unmap_one(m: Model, page: int, slot: int) -> bool:
    """Replace the PTE at ``slot`` by a swap entry if it maps page and is not young; False
    (SWAP_FAIL) if it was referenced meanwhile (its young bit is cleared).  Takes that mm's
    ptl and, inside it, the page's mapcount stripe."""
    mm = slot // m.ptrs
    tok = m.lock_ptl(mm, "try_to_unmap_one")
    ok = True
    fl = int(m.pte_flags[slot])
    if m.pte_page[slot] == page and fl & PTE_PRESENT:
        if fl & PTE_YOUNG:
            m.pte_flags[slot] = fl & ~PTE_YOUNG
            ok = False
        else:
            m.pte_flags[slot] = PTE_SWAP
            page_counts_add(m, np.array([page], dtype=np.int32), -1, 1, "try_to_unmap_one")
            m.mm["rss"][mm] -= 1
    m.unlock_ptl(tok)
    return ok


def try_to_unmap(m: Model, page: int) -> tuple[list[int], int]:
    """Unmap every mapping of page, leaving swap entries behind; returns the PTE slots it
    unmapped (for the owners to fault back in) and the entries visited.  Stops at the first
    mapping found referenced (SWAP_FAIL), and then the walk's length is up to that entry.  Takes the page's anon_vma lock for the walk."""
    locked = page_lock_anon_vma(m, page, "try_to_unmap")
    if locked is None:
        return [], 0
    av, tok = locked
    prev, wait_before = _walk_begin(m, tok[0])
    unmapped: list[int] = []
    visited = 0
    try:
        slots, visited, marks = rmap_walk_locked(m, av, page, int(m.page_index[page]),
                                                 int(m.page_mapcount[page]))
        for i, slot in enumerate(slots):
            if not try_to_unmap_one(m, page, slot):
                visited = visited_upto(marks[i])  # SWAP_FAIL: try_to_unmap_anon breaks here
                break
            unmapped.append(slot)
        page_check_address(m, visited)
    finally:
        hold = m.anon_vma_unlock(tok)
        _walk_end(m, prev, wait_before, hold, visited)
    return unmapped, visited

"""mprotect-split: the irrelevant VMAs on every walk that the 3.7 interval tree removed.

A parent maps P pages and touches them all (one VMA, one anon_vma), then mprotects every
other range of P/K pages read-only: K pieces, each a VMA of its own that keeps the anon_vma
and links to it (anon_vma_clone), so that anon_vma's list holds K entries; then it forks
N children, each of whose K pieces links to it too: K * (N + 1) entries.  Before 3.7 a walk
for any page of the parent goes down that list until it has found the page's N + 1
mappings, past about K * N entries whose range does not hold the page; from 3.7 the
interval tree leads it to the N + 1 VMAs that do (O(log n + k) nodes examined).

Run by ``rmap-stress scan --scenario mprotect-split`` (one process, exact counts).
"""

from __future__ import annotations

import numpy as np

from shared_model.layout import VM_READ, Capacities
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, mm_alloc
from shared_model.mmap import do_mprotect
from shared_model.model import Model


def capacities(era: str, pieces: int, users: int, pages: int) -> Capacities:
    kids = users
    return Capacities(
        mms=kids + 2,
        vmas=pieces * (kids + 1) + 4,
        anon_vmas=pieces * kids + 4,
        avcs=pieces + 2 * pieces * kids + 8,
        pages=pages + 64,
        ptrs_per_mm=pages,
        cpus=1,
    )


def piece_bounds(pieces: int, pages: int) -> np.ndarray:
    """The K + 1 boundaries of K pieces of (nearly) equal size over [0, pages)."""
    return (np.arange(pieces + 1, dtype=np.int64) * pages) // pieces


def build(m: Model, pieces: int, users: int, pages: int) -> int:
    """Map, touch, split into ``pieces`` VMAs by mprotect (every other piece read-only),
    fork ``users`` children.  Returns the parent mm."""
    parent = mm_alloc(m)
    vma = do_mmap(m, parent, 0, pages)
    do_anonymous_pages(m, parent, vma, np.arange(pages, dtype=np.int64))
    b = piece_bounds(pieces, pages)
    for i in range(1, pieces, 2):
        do_mprotect(m, parent, int(b[i]), int(b[i + 1] - b[i]), VM_READ)
    assert int(m.mm["nr_vmas"][parent]) == pieces, "pieces merged or lost"
    for _ in range(users):
        dup_mmap(m, parent)
    return parent

"""cve-2022-42703: 3.19's degree reuse lets a merge leave a page its VMA cannot reach.

A deterministic sequence of fork, exit, mprotect, munmap and a protection change back
(worked out from the 3.19 and 6.0 sources: anon_vma_clone, anon_vma_fork,
unlink_anon_vmas, is_mergeable_anon_vma, vma_merge; see the reference, "6.0: the degree
ambiguity").  On 3.19 the anon_vma Y of an exited process is reused by both VMAs of a new
child Q ("degree 1 < 2" read as "one child, no VMA"); the two VMAs then look mergeable
(same anon_vma) though their chains differ, so a protection change and back merges them,
and unlink_anon_vmas of the absorbed one drops Q's only link to anon_vma P2, which holds a
page Q still maps.  When P exits, P2 is freed and Q's page->mapping dangles: the next rmap
walk of it follows freed memory.  check_model() reports it, and ``run`` exits 1.  On 6.0
num_active_vmas refuses the second reuse, the VMAs do not merge and the model checks
clean.

``setup`` runs the sequence in the builder before the CPUs start; the CPUs then run reclaim
over every page that is left, the walk of the dangling page included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.layout import VM_READ, VM_WRITE, Capacities
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_munmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    mm_alloc,
)
from shared_model.mmap import do_mprotect
from shared_model.model import Model
from shared_model.vmscan import shrink_page_list

from ..config import RunConfig
from .common import SWAP_CLUSTER_MAX

PAGES = 3  # the private anonymous mapping: pages 0, 1, 2 (the reference's pages 1-3)
RW = VM_READ | VM_WRITE


def capacities(cfg: RunConfig) -> Capacities:
    return Capacities(mms=10, vmas=24, anon_vmas=24, avcs=96, pages=32, ptrs_per_mm=PAGES,
                      cpus=cfg.cpus + 1)


def _vma_at(m: Model, mm: int, vpn: int) -> int:
    v = int(m.mm["vma_head"][mm])
    while v >= 0 and not (m.vma["vm_start"][v] <= vpn < m.vma["vm_end"][v]):
        v = int(m.vma["vm_next"][v])
    return v


def cve_sequence(m: Model) -> dict[str, Any]:
    """The sequence; returns the mms and the step log (anon_vma of each VMA after it)."""
    a = mm_alloc(m)
    va = do_mmap(m, a, 0, PAGES)
    do_anonymous_pages(m, a, va, np.arange(PAGES))  # 1. A writes all pages: root R
    b = dup_mmap(m, a)  # 2. A forks B: X
    c = dup_mmap(m, b)  # 3. B forks C: Y
    exit_mmap(m, b)  # 4. B exits
    do_mprotect(m, c, 2, 1, VM_READ)  # 5. C: pieces c1 [0, 2), c2 [2, 3), both Y
    o = dup_mmap(m, c)  # 6. C forks O: o1 reuses X; o2 gets N
    do_munmap(m, o, _vma_at(m, o, 2))  # 7. O unmaps page 2: N freed
    do_mprotect(m, o, 1, 1, VM_READ)  # 8. O: o1a [0, 1), o1b [1, 2)
    p = dup_mmap(m, o)  # 9. O forks P: p1, p2 get P1, P2
    do_mprotect(m, p, 1, 1, RW)  # 10. P makes page 1 writable and writes it: COW into P2
    do_wp_pages(m, p, _vma_at(m, p, 1), np.array([1]))
    exit_mmap(m, c)  # 11. C exits
    q = dup_mmap(m, p)  # 12. P forks Q: 3.19 reuses Y for q1 and for q2
    do_mprotect(m, q, 1, 1, VM_READ)  # 13. Q changes page 1's protection and back:
    do_mprotect(m, q, 1, 1, RW)  # on 3.19 vma_merge joins q1 and q2
    anon_vmas = {v: int(m.vma["anon_vma"][v]) for v in (_vma_at(m, q, 0), _vma_at(m, q, 1))}
    exit_mmap(m, p)  # 14. P exits: on 3.19 P2 is freed under Q's page
    return {"mms": {"A": a, "O": o, "Q": q}, "q_vmas": anon_vmas}


def setup(m: Model, cfg: RunConfig) -> np.ndarray:
    cve_sequence(m)
    return np.flatnonzero(m.page["in_use"] == 1).astype(np.int64)


def run_cpu(m: Model, cfg: RunConfig, lru: np.ndarray, cpu: int, stopping: Callable[[], bool]) -> None:
    """Reclaim over the pages left, round-robin: each walk of the dangling page locks and
    walks the freed anon_vma (type-stable records, so the model survives to report it)."""
    if not len(lru):
        return
    hand = 0
    while not stopping():
        hand = (hand + shrink_page_list(m, lru, hand, SWAP_CLUSTER_MAX, refault=True)) % len(lru)

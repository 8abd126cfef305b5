"""shared-swapin: the oops that made Linus change the seed's swap-in placement.

The seed as committed (5beb4930525, 2.6.34-rc1 to -rc3) set ``page->mapping =
vma->anon_vma`` on a page's first mapping, so the first process to fault a fully unmapped
page back in decides its anon_vma.  When that is a forked child, its anon_vma's list holds
only the child's VMA (and its descendants'): the parent's mapping is out of reach of every
rmap walk (``page_referenced`` finds 1 of 2, ``try_to_unmap`` leaves it mapped and
reclaim cannot free the page), and when the child exits its anon_vma is freed under the
parent's page: the next walk locks and walks freed memory.  That is the NULL-pointer oops
reported against 2.6.34-rc3 (Borislav Petkov; bugzilla 15680; LWN 383162, "The case of
the overly anonymous anon_vma"), fixed by ea90002b0fa7 (the oldest anon_vma: 2.6.34).

The sequence (``setup``, in the builder before the CPUs start):

1. A parent maps P pages, touches them, and forks N children that share them (no COW).
2. Reclaim unmaps every page (every PTE old: try_to_unmap takes all N + 1 mappings); the
   pages stay in the swap cache.
3. The owners read-fault each page back in, children first (``--refault-order``:
   child-first by default here).
4. Reclaim tries again: try_to_unmap on every page (all old), the owners fault back in
   whatever it unmapped.  Pages it left mapped are the ones it cannot free.
5. Every child exits.

The CPUs then run reclaim over every page (shrink_page_list, refaulting), which meets the
pages whose anon_vma was freed: each such walk is counted (``rmap_freed_anon_vma``) and not
followed.  What happened is reported under ``seed_bug`` (``seed_bug_counts``):

* ``unreachable_mappings``: after step 3, present mappings no walk from their page's
  anon_vma finds;
* ``pages_not_unmapped``: pages try_to_unmap left mapped in step 4 because of them;
* ``pages_freed_anon_vma``: after step 5, mapped pages whose ``page->mapping`` is a freed
  anon_vma (the oops), with the first one as an example (mm, page, anon_vma);
* ``walks_freed_anon_vma`` (``run``: every CPU's walks; ``scan``: one reclaim pass).

On 2.6.34-rc1 with child-first every count is non-zero and check_model reports the same
pages (rules 5 and 9): ``run`` exits 1.  On 2.6.33 (one anon_vma), 2.6.34 (the oldest),
2.6.36 and later (a swap-cache hit keeps its mapping) every count is zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.build import build_family, family_capacities
from shared_model.layout import PTE_PRESENT, PTE_YOUNG, Capacities
from shared_model.memory import exit_mmap
from shared_model.model import Model
from shared_model.rmap import try_to_unmap
from shared_model.swap_state import do_swap_page, refault_pass
from shared_model.vmscan import mappings_found_of, shrink_page_list

from ..config import RunConfig
from .common import SWAP_CLUSTER_MAX, set_refault_order

# The COW fraction the scenario builds with, whatever --cow says: the children share every
# page (the run's config reports this one).
COW = 0.0


def capacities(cfg: RunConfig) -> Capacities:
    return family_capacities(cfg.era, cfg.users, cfg.pages, COW, cfg.cpus)


def reach(m: Model) -> tuple[int, int, np.ndarray]:
    """(mappings no walk finds, pages with such a mapping, mapped pages whose anon_vma was
    freed) over every mapped page (rmap.mappings_found)."""
    pages = np.flatnonzero((m.page["in_use"] == 1) & (m.page_mapcount > 0) & (m.page_mapping >= 0))
    found = mappings_found_of(m, pages)
    live = found >= 0
    short = m.page_mapcount[pages][live].astype(np.int64) - found[live]
    return int(short.sum()), int(np.count_nonzero(short)), pages[~live]


def shared_swapin(m: Model, cfg: RunConfig) -> dict[str, Any]:
    """Steps 1-5 of the module header; returns the counts measured on the way."""
    set_refault_order(m, cfg)
    fam = build_family(m, cfg.users, cfg.pages, COW, cfg.seed)
    pages = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    m.pte_flags[:] &= ~PTE_YOUNG  # idle: try_to_unmap takes every mapping
    refault_pass(m, pages, "cache")  # 2.-3.: unmapped, faulted back in (read, swap-cache hits)
    unreachable, _pages_short, _ = reach(m)
    m.pte_flags[:] &= ~PTE_YOUNG
    stuck = 0
    for page in pages.tolist():  # 4. reclaim again
        slots, _ = try_to_unmap(m, page)
        if m.page_mapcount[page] > 0:
            stuck += 1
        if slots:
            do_swap_page(m, page, slots)
    for child in fam.children:  # 5.
        exit_mmap(m, child)
    _, _, dangling = reach(m)
    example: dict[str, int] = {}
    if len(dangling):
        page = int(dangling[0])
        grid_page, grid_flags = m.pte_values_grid()
        mm, vpn = (int(x) for x in np.argwhere((grid_page == page) & (grid_flags & PTE_PRESENT != 0))[0])
        example = {"mm": mm, "vpn": vpn, "page": page, "anon_vma": int(m.page_mapping[page])}
    return {
        "refault_order": cfg.resolved_refault_order(),
        "unreachable_mappings": unreachable,
        "pages_not_unmapped": stuck,
        "pages_freed_anon_vma": len(dangling),
        "example": example,
    }


def setup(m: Model, cfg: RunConfig) -> dict[str, Any]:
    counts = shared_swapin(m, cfg)
    lru = np.flatnonzero((m.page["in_use"] == 1) & (m.page_mapping >= 0)).astype(np.int64)
    return {"lru": lru, "seed_bug": counts}


def run_cpu(m: Model, cfg: RunConfig, state: dict[str, Any], cpu: int, stopping: Callable[[], bool]) -> None:
    """Reclaim over this CPU's share of the pages left, round-robin, refaulting what it
    unmaps: each walk of a page whose anon_vma was freed is counted and skipped."""
    set_refault_order(m, cfg)
    lru = state["lru"]
    mine = lru[cpu :: cfg.cpus] if len(lru) >= cfg.cpus else lru
    if not len(mine):
        return
    hand = 0
    while not stopping():
        hand = (hand + shrink_page_list(m, mine, hand, SWAP_CLUSTER_MAX, refault=True)) % len(mine)


def results(m: Model, state: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """The ``seed_bug`` section of a run's results: setup's counts, and the walks that met
    a freed anon_vma during the run."""
    walks = int(res["throughput"].get("rmap_freed_anon_vma", 0))
    return {"seed_bug": {**state["seed_bug"], "walks_freed_anon_vma": walks}}


def seed_bug_lines(sb: dict[str, Any]) -> list[str]:
    """What happened, in words (the run and scan reports)."""
    if not (sb["unreachable_mappings"] or sb["pages_not_unmapped"] or sb["pages_freed_anon_vma"]):
        return [(f"seed bug: none (refault order {sb['refault_order']}): every mapping reachable, "
                f"no page points at a freed anon_vma")]
    lines = [
        f"seed bug (the swap-in placement of 2.6.34-rc1, refault order {sb['refault_order']}):",
        (f"  {sb['unreachable_mappings']} mappings became unreachable: the page went to the anon_vma "
        f"of the first process to fault it back in, whose list lacks the others' VMAs"),
        (f"  {sb['pages_not_unmapped']} pages reclaim could not unmap because of it "
        f"(try_to_unmap left those mappings in place)"),
        (f"  {sb['pages_freed_anon_vma']} pages point at a freed anon_vma after the children "
        f"exited: the kernel's oops (2.6.34-rc3, LWN 383162); fixed by ea90002b0fa7 (2.6.34)"),
    ]
    ex = sb.get("example") or {}
    if ex:
        lines.append(f"  first: mm {ex['mm']} maps page {ex['page']} (vpn {ex['vpn']}), whose "
                     f"page->mapping is freed anon_vma {ex['anon_vma']}")
    if "walks_freed_anon_vma" in sb:
        lines.append(f"  {sb['walks_freed_anon_vma']} rmap walks met a freed anon_vma "
                     "(counted, not followed)")
    return lines

"""check_later_rules(): the consistency rules of the later eras and of the VMA operations.

check_model() (invariants.py, rules 1-8 and 13) calls it last, on the same quiescent model,
with the same ``bad`` that collects the violations.  Rules (numbered on from invariants.py's):

9. No page points at a freed anon_vma: a mapped page whose ``page->mapping`` is an
   anon_vma no longer in use is a use-after-free waiting for the next rmap walk (rule 5
   reports the same page as a mapping no walk finds: its VMA is not on the list).
10. VMAs: each has a non-empty range and protection bits only, and an mm's VMAs do not
    overlap.
11. Reuse counters (3.19: ``degree``; 6.0: ``num_active_vmas``, ``num_children``) equal
    what they count: the VMAs using the anon_vma as their ``->anon_vma``, its child
    anon_vmas whose tree is not empty, and a root's link to itself while its own is not.
12. Interval trees (3.7+): each anon_vma's tree is a red-black tree of exactly the AVCs on
    its list, ordered by start pgoff, with parent links and ``rb_subtree_last`` right.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .eras import REUSE_CODES, REUSE_DEGREE
from .interval_tree import TREE_ERRORS, TREE_OK, interval_trees_check_c
from .layout import PTE_PRESENT
from .model import Model

# At most this many examples of one rule's violation are reported (check_model's cap on
# the whole list too).
MAX_REPORTED = 50


def check_later_rules(m: Model, bad: Callable[[str], None]) -> None:
    """Rules 9-12 (see the module header), whole-array like the rest."""
    live_vma = np.flatnonzero(m.vma["in_use"] == 1)
    live_vma = live_vma[live_vma != 0]
    live_av = np.flatnonzero(m.anon_vma["in_use"] == 1)
    _check_no_freed_mapping(m, bad)
    _check_vma_ranges(m, live_vma, bad)
    _check_reuse_counters(m, live_vma, live_av, bad)
    _check_interval_trees(m, live_av, bad)


def _check_no_freed_mapping(m: Model, bad: Callable[[str], None]) -> None:
    """Rule 9, no page points at a freed anon_vma: a mapped page whose ``page->mapping`` is
    an anon_vma no longer in use is a use-after-free waiting for the next rmap walk (rule 5
    reports the same page as a mapping no walk finds: its VMA is not on the list)."""
    av, page = m.anon_vma, m.page
    mapping = page["mapping"]
    mapped = np.flatnonzero((page["in_use"] == 1) & (mapping >= 0))
    dangling = mapped[av["in_use"][mapping[mapped]] != 1]
    if len(dangling):
        p = int(dangling[0])
        a = int(mapping[p])
        where = _mapped_at(m, p)
        bad(f"{len(dangling)} pages whose page->mapping points at a freed anon_vma (use after free), "
            f"e.g. page {p} (index {int(page['index'][p])}{where}): page->mapping is anon_vma {a}, freed; "
            f"the next page_referenced or try_to_unmap of it locks anon_vma {a} and walks its freed list")


def _check_vma_ranges(m: Model, live_vma: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 10, VMAs: each has a non-empty range and protection bits only, and an mm's VMAs
    do not overlap."""
    vma = m.vma
    start, end = vma["vm_start"], vma["vm_end"]
    empty = live_vma[end[live_vma] <= start[live_vma]]
    for v in empty[:MAX_REPORTED].tolist():
        bad(f"vma {v}: empty or inverted range [{start[v]}, {end[v]})")
    flags = vma["vm_flags"][live_vma]
    for v in live_vma[(flags < 0) | (flags & ~0x7 != 0)][:MAX_REPORTED].tolist():
        bad(f"vma {v}: vm_flags {vma['vm_flags'][v]:#x} hold more than protection bits")
    order = live_vma[np.lexsort((start[live_vma], vma["vm_mm"][live_vma]))]
    same_mm = vma["vm_mm"][order[1:]] == vma["vm_mm"][order[:-1]]
    v, n = order[:-1][same_mm], order[1:][same_mm]
    for i in np.flatnonzero(start[n] < end[v])[:MAX_REPORTED].tolist():
        bad(f"vma {v[i]} [{start[v[i]]}, {end[v[i]]}) and vma {n[i]} [{start[n[i]]}, {end[n[i]]}) "
            f"of mm {vma['vm_mm'][v[i]]} overlap")


def _check_reuse_counters(m: Model, live_vma: np.ndarray, live_av: np.ndarray,
                          bad: Callable[[str], None]) -> None:
    """Rule 11, reuse counters (3.19: ``degree``; 6.0: ``num_active_vmas``,
    ``num_children``) equal what they count: the VMAs using the anon_vma as their
    ``->anon_vma``, its child anon_vmas whose tree is not empty, and a root's link to itself
    while its own is not."""
    av, vma = m.anon_vma, m.vma
    reuse = REUSE_CODES[m.era.reuse]
    if reuse and len(live_av):
        nav = len(av)
        users = np.bincount(vma["anon_vma"][live_vma][vma["anon_vma"][live_vma] >= 0], minlength=nav)
        parent = av["parent"].astype(np.int64)
        counted = np.where(parent < 0, np.arange(nav), parent)  # a root is its own parent
        nonempty = live_av[av["nr_members"][live_av] > 0]
        children = np.bincount(counted[nonempty], minlength=nav)
        checks: tuple[tuple[str, np.ndarray], ...]
        if reuse == REUSE_DEGREE:
            checks = (("degree", users + children),)
        else:
            checks = (("num_active_vmas", users), ("num_children", children))
        for name, want in checks:
            have = av[name][live_av]
            wrong = np.flatnonzero(have != want[live_av])
            if len(wrong):
                a = int(live_av[wrong[0]])
                bad(f"{len(wrong)} anon_vmas with a wrong {name}, e.g. anon_vma {a}: {have[wrong[0]]} "
                    f"recorded, {want[a]} counted")


def _check_interval_trees(m: Model, live_av: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 12, interval trees (3.7+): each anon_vma's tree is a red-black tree of exactly
    the AVCs on its list, ordered by start pgoff, with parent links and ``rb_subtree_last``
    right."""
    av = m.anon_vma
    if m.era.tree and len(live_av):
        verdict = np.zeros(len(live_av), np.int64)
        nodes = np.zeros(len(live_av), np.int64)
        limits = av["nr_members"][live_av].astype(np.int64)
        interval_trees_check_c(m.w32, m.g, live_av.astype(np.int64), limits, verdict, nodes)
        for i in np.flatnonzero(verdict != TREE_OK)[:MAX_REPORTED].tolist():
            bad(f"anon_vma {live_av[i]}'s interval tree: {TREE_ERRORS[int(verdict[i])]}")
        for i in np.flatnonzero((verdict == TREE_OK) & (nodes != limits))[:MAX_REPORTED].tolist():
            bad(f"anon_vma {live_av[i]}'s interval tree holds {nodes[i]} AVCs, its list {limits[i]}")


def _mapped_at(m: Model, page: int) -> str:
    """", mapped in vma V of mm M at page P" for the first PTE mapping ``page``."""
    grid = m.pte_grid()
    none = grid < 0
    grid[none] = 0
    mapped = ~none & (m.pte_page[grid] == page) & ((m.pte_flags[grid] & PTE_PRESENT) != 0)
    slots = np.flatnonzero(mapped)
    if not len(slots):
        return ""
    mm, vpn = divmod(int(slots[0]), m.ptrs)
    v = int(m.mm["vma_head"][mm])
    while v >= 0 and not (m.vma["vm_start"][v] <= vpn < m.vma["vm_end"][v]):
        v = int(m.vma["vm_next"][v])
    return f", mapped in vma {v} of mm {mm} at page {vpn}"

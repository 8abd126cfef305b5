"""Swap-in placement era by era, the swap cache dropping pages, page_move_anon_rmap, and
``scan --refault``'s arithmetic.

Every expected value is derived from the kernel's rules (shared/reference/kernel-rmap.md,
"Details that change walk lengths and lock traffic"), not read back from the code:

* 2.6.33: ``page_add_anon_rmap`` on the first mapping sets ``vma->anon_vma``: the family's
  one anon_vma, so nothing moves;
* 2.6.34-rc1 (the seed as committed): ``page->mapping = vma->anon_vma`` on the first
  mapping: a child's page goes to the child's own anon_vma, read or write, cached or not;
* 2.6.34: the first mapping after a swap-in calls ``__page_set_anon_rmap(exclusive=0)``:
  the page goes to the oldest anon_vma of the faulting VMA's chain (the family's root,
  av0), swap-cache hit or not, read or write;
* 2.6.36+: ``__page_set_anon_rmap`` returns at once for a page still ``PageAnon`` (a
  swap-cache hit keeps its mapping); a page read fresh from swap goes to
  ``vma->anon_vma->root``, or to ``vma->anon_vma`` when a write fault reuses it exclusively
  (``reuse_swap_page``: the faulting entry is its only user);
* 6.0 and modern (anon_exclusive): ``try_to_unmap_one`` leaves an exclusive swap PTE for
  a PageAnonExclusive page (a child's COWed page is one), and ``do_swap_page`` maps from it
  exclusively on read faults too: a fresh page goes to ``vma->anon_vma``; a swap-cache hit
  keeps its mapping, as in 2.6.36;
* ``page_move_anon_rmap`` (2.6.34+): ``do_wp_page`` reusing a page that only this process
  maps moves it to ``vma->anon_vma``.

Walk arithmetic, for N children that each COWed all P pages (list order: parent first,
then children in fork order): a page on av0 mapped only by child k is found at entry k+1,
a parent page at entry 1, so a pass with every page on av0 averages
(1 + sum_{k=1..N}(k+1)) / (N+1) = N/2 + 1; with every page on its writer's own anon_vma
each walk visits 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from shared_model.build import build_family, family_capacities
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import (
    PG_ANON_EXCLUSIVE,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_SWP_EXCLUSIVE,
    PTE_WRITE,
    PTE_YOUNG,
)
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap
from shared_model.swap_state import delete_from_swap_cache, do_swap_page, swap_reads_needed
from stress.commands.scan import scan
from stress.engine.config import RunConfig

MakeModel = Callable[..., Model]
ALL_ERAS = list(ERAS)

# (era, refault mode) -> does the second pass put children's pages back on av0?
ON_ROOT = {
    ("2.6.33", "write"): True, ("2.6.33", "read"): True, ("2.6.33", "cache"): True,
    ("2.6.34", "write"): True, ("2.6.34", "read"): True, ("2.6.34", "cache"): True,
    ("2.6.36", "write"): False, ("2.6.36", "read"): True, ("2.6.36", "cache"): False,
}
MODES = ("write", "read", "cache")
# The seed: the faulting VMA's own anon_vma, whatever the fault.
ON_ROOT |= {("2.6.34-rc1", mode): False for mode in MODES}
# 2.6.36 to 3.19 place a swapped-in page as 2.6.36 does (288468c334e9 stayed) ...
ON_ROOT |= {(era, mode): ON_ROOT["2.6.36", mode] for era in ERAS for mode in MODES
            if ERAS[era].swapin == "root"}
# ... and 6.0+ put an exclusive page read fresh from swap on vma->anon_vma, read faults too.
ON_ROOT |= {(era, mode): False for era in ERAS for mode in MODES if ERAS[era].swapin == "anon_exclusive"}
assert set(ON_ROOT) == {(era, mode) for era in ERAS for mode in MODES}


def swap_out(m: Model, page: int) -> list[int]:
    """Every mapping of ``page`` old, then try_to_unmap: the swap PTE slots."""
    m.pte_flags[:] &= ~PTE_YOUNG
    slots, _ = try_to_unmap(m, page)
    assert m.page_mapcount[page] == 0 and m.page_swapcount[page] == len(slots) > 0
    return slots


def family(make_model: MakeModel, era: str, n: int = 3, p: int = 2) -> tuple[Model, int, list[int], int]:
    """(model, parent, children, av0) of a family whose children COWed every page."""
    m = make_model(era, users=n, pages=p, cow=1.0)
    fam = build_family(m, n, p, 1.0)
    return m, fam.parent, fam.children, int(m.vma_anon_vma[int(m.mm["vma_head"][fam.parent])])


def own_av(m: Model, mm: int) -> int:
    return int(m.vma_anon_vma[int(m.mm["vma_head"][mm])])


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("mode", ["cache", "read", "write"])
def test_swapin_placement_of_a_childs_page(make_model: MakeModel, era: str, mode: str) -> None:
    m, _parent, kids, av0 = family(make_model, era)
    child = kids[1]
    page = m.pte_of(child, 0)[0]
    before = int(m.page_mapping[page])
    assert before == (av0 if not ERAS[era].chain else own_av(m, child))
    slots = swap_out(m, page)
    assert slots == [child * m.ptrs]
    if mode != "cache":
        assert swap_reads_needed(m, np.array([page])) == 0
        assert delete_from_swap_cache(m, page)
        assert m.page_mapping[page] == -1 and m.page_swapcount[page] == 1
        assert swap_reads_needed(m, np.array([page])) == 1
        assert check_model(m) == []  # a swap slot, not a leak
        assert not delete_from_swap_cache(m, page)  # already dropped
    assert do_swap_page(m, page, slots, write=mode == "write") == 1
    want = av0 if ON_ROOT[era, mode] else before
    assert m.page_mapping[page] == want
    # The write fault on the only user maps it writable (reuse_swap_page); a read does not.
    assert bool(m.pte_flags[m.pte_index(slots[0])] & PTE_WRITE) == (mode == "write")
    assert m.pte_flags[m.pte_index(slots[0])] & PTE_PRESENT
    # The walk for it now visits child 2's position on av0's list (entry 3), or 1.
    assert page_referenced(m, page) == (1, 3 if want == av0 and ERAS[era].chain or not ERAS[era].chain else 1)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_page_move_anon_rmap_on_reuse(make_model: MakeModel, era: str) -> None:
    """A child's page read back fresh (2.6.34: to av0; 2.6.36-3.19: a fresh read fault, to
    av0; the seed and 6.0+: to its own anon_vma) and then written: do_wp_page reuses it
    (mapcount 1, no swap entry) and 2.6.34+ moves it to the child's own anon_vma; 2.6.33
    has only av0."""
    m, _parent, kids, av0 = family(make_model, era)
    child = kids[2]
    page = m.pte_of(child, 1)[0]
    slots = swap_out(m, page)
    delete_from_swap_cache(m, page)
    do_swap_page(m, page, slots, write=False)
    assert m.page_mapping[page] == (av0 if ON_ROOT[era, "read"] else own_av(m, child))
    copied, reused = do_wp_pages(m, child, int(m.mm["vma_head"][child]), np.array([1]))
    assert (copied, reused) == (0, 1)
    assert m.page_mapping[page] == (own_av(m, child) if ERAS[era].move_anon_rmap else av0)
    assert page_referenced(m, page)[1] == (1 if ERAS[era].chain else 4)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_dropped_slot_is_freed_by_exit(make_model: MakeModel, era: str) -> None:
    m, _parent, kids, _ = family(make_model, era)
    page = m.pte_of(kids[0], 0)[0]
    swap_out(m, page)
    assert delete_from_swap_cache(m, page)
    pages_before = m.counts()["pages"]
    exit_mmap(m, kids[0])
    assert m.page["in_use"][page] == 0 and m.page_mapping[page] == -1
    assert m.counts()["pages"] == pages_before - 2  # the slot and the child's other page


@pytest.mark.parametrize("era", ALL_ERAS)
def test_reclaim_drops_an_unmapped_page_on_its_next_look(make_model: MakeModel, era: str) -> None:
    """shrink_page_list meeting a page it unmapped before frees its frame (the swap slot
    stays): the next fault is a fresh read."""
    from shared_model.vmscan import shrink_page_list

    m, _parent, kids, _ = family(make_model, era)
    page = m.pte_of(kids[0], 0)[0]
    m.pte_flags[:] &= ~PTE_YOUNG
    lru = np.array([page], dtype=np.int64)
    assert shrink_page_list(m, lru, 0, 1, refault=False) == 1
    assert m.page_mapcount[page] == 0 and m.page_mapping[page] >= 0  # unmapped, in the cache
    assert shrink_page_list(m, lru, 0, 1, refault=False) == 1
    assert m.page_mapping[page] == -1 and m.page_swapcount[page] == 1


# ----------------------------------------------------------------------------- scan --refault


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("mode", ["write", "read", "cache"])
@pytest.mark.parametrize("n,p", [(1, 1), (4, 2), (10, 3), (60, 2)])
def test_scan_refault_averages(era: str, mode: str, n: int, p: int) -> None:
    res = scan(RunConfig(era=era, users=n, pages=p, cow=1.0), refault=mode)
    on_av0 = n / 2 + 1
    first = on_av0 if not ERAS[era].chain else 1.0
    second = on_av0 if ON_ROOT[era, mode] else 1.0
    assert res["first_pass"]["count"] == res["walks"]["count"] == p * (n + 1)
    assert res["first_pass"]["avg_visited"] == pytest.approx(first)
    assert res["walks"]["avg_visited"] == pytest.approx(second)
    # Exact totals: P * (1 + sum_{k=1..N} (k+1)) on av0, P * (N+1) otherwise.
    total = p * (1 + n * (n + 1) // 2 + n) if ON_ROOT[era, mode] else p * (n + 1)
    assert res["walks"]["vmas_visited"] == total
    r = res["refault"]
    assert r["mode"] == mode and r["case"]
    assert r["pages_unmapped"] == r["ptes_unmapped"] == r["faults"] == p * (n + 1)
    assert r["swap_cache_dropped"] == (0 if mode == "cache" else p * (n + 1))
    assert res["config"]["refault"] == mode


def test_scan_without_refault_has_no_first_pass() -> None:
    res = scan(RunConfig(era="2.6.34", users=3, pages=2, cow=1.0))
    assert "first_pass" not in res and res["config"]["refault"] == ""


# ----------------------------------------------------------------------------- refault order


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("mode", ["write", "read", "cache"])
@pytest.mark.parametrize("order", ["parent-first", "child-first", "random"])
def test_scan_refault_order_of_cowed_pages_changes_nothing(era: str, mode: str, order: str) -> None:
    """Every page of a family whose children COWed everything has one owner: the order in
    which owners fault back in cannot move it, in any era."""
    n, p = 4, 2
    res = scan(RunConfig(era=era, users=n, pages=p, cow=1.0, refault_order=order), refault=mode)
    want = n / 2 + 1 if ON_ROOT[era, mode] else 1.0
    assert res["walks"]["avg_visited"] == pytest.approx(want)
    assert res["config"]["refault_order"] == order
    assert res["invariants"]["violations"] == 0 and "seed_bug" not in res


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("mode", ["write", "read", "cache"])
@pytest.mark.parametrize("order", ["parent-first", "child-first", "random"])
def test_scan_refault_order_of_shared_pages(era: str, mode: str, order: str) -> None:
    """Pages the children share without COW, refaulted in each order.  Only the seed as
    committed (2.6.34-rc1) depends on it: a read fault by a child first puts the page on the
    child's own anon_vma and the other N mappings of each page are lost (N x P, or a
    multiple of N for random); a write fault copies for every owner but the last (do_wp_page),
    which maps the original alone, so nothing is lost.  Every other era: nothing lost."""
    n, p = 4, 2
    res = scan(RunConfig(era=era, users=n, pages=p, cow=0.0, refault_order=order, seed=3), refault=mode)
    r = res["refault"]
    assert r["pages_unmapped"] == p and r["ptes_unmapped"] == r["faults"] == p * (n + 1)
    # write faults: every owner but the last gets a copy; read faults share the page
    assert res["model"]["pages"] == (p * (n + 1) if mode == "write" else p)
    lost = res.get("seed_bug", {}).get("unreachable_mappings", 0)
    if era == "2.6.34-rc1" and mode != "write" and order == "child-first":
        assert lost == n * p and res["seed_bug"]["pages_not_unmapped"] == p
        assert res["invariants"]["violations"] > 0
    elif era == "2.6.34-rc1" and mode != "write" and order == "random":
        assert lost % n == 0 and (res["invariants"]["violations"] > 0) == (lost > 0)
    else:
        assert lost == 0 and res["invariants"]["violations"] == 0


# ----------------------------------------------------------------------------- 6.0's exclusive swap PTE


@pytest.mark.parametrize("era", ALL_ERAS)
def test_swap_pte_remembers_an_exclusive_page(make_model: MakeModel, era: str) -> None:
    """try_to_unmap_one leaves an exclusive swap PTE for a PageAnonExclusive page (a child's
    COWed page), not for the parent's original, which fork shared (kept in every era; read
    only by 6.0+); a fork clears the bit in both copies (copy_nonpresent_pte)."""
    caps = family_capacities(era, 2, 1, 1.0, 1, spare_users=1)
    m = make_model(era, caps=dataclasses.replace(caps, avcs=caps.avcs + 4))
    fam = build_family(m, 2, 1, 1.0)
    parent, child = fam.parent, fam.children[0]
    cpage, ppage = m.pte_of(child, 0)[0], m.pte_of(parent, 0)[0]
    assert m.page["flags"][cpage] & PG_ANON_EXCLUSIVE and not m.page["flags"][ppage] & PG_ANON_EXCLUSIVE
    swap_out(m, cpage)
    swap_out(m, ppage)
    assert m.pte_of(child, 0)[1] == PTE_SWAP | PTE_SWP_EXCLUSIVE
    assert m.pte_of(parent, 0)[1] == PTE_SWAP
    assert not m.page["flags"][cpage] & PG_ANON_EXCLUSIVE  # page_try_share_anon_rmap
    grandchild = dup_mmap(m, child)
    assert m.pte_of(child, 0)[1] == m.pte_of(grandchild, 0)[1] == PTE_SWAP


@pytest.mark.parametrize("era", ALL_ERAS)
def test_write_swapin_of_a_shared_page_copies(make_model: MakeModel, era: str) -> None:
    """A write fault on a swapped page with other users maps it and goes on to do_wp_page,
    which copies it into ``vma->anon_vma``; the last owner is its only user and reuses it."""
    m2 = make_model(era, users=2, pages=1, cow=0.0)
    fam = build_family(m2, 2, 1, 0.0)
    owners = [fam.parent, *fam.children]
    page = m2.pte_of(fam.parent, 0)[0]
    slots = swap_out(m2, page)
    assert sorted(slots) == [mm * m2.ptrs for mm in owners]
    assert do_swap_page(m2, page, sorted(slots), write=True) == 3
    for mm in owners:
        got, flags = m2.pte_of(mm, 0)
        assert flags == PTE_PRESENT | PTE_YOUNG | PTE_WRITE
        assert (got == page) == (mm == owners[-1])  # copies for all but the last
        if got != page:
            assert m2.page_mapping[got] == own_av(m2, mm) and m2.page["flags"][got] & PG_ANON_EXCLUSIVE
    assert (m2.page_mapcount[page], m2.page_swapcount[page]) == (1, 0)
    assert m2.counts()["pages"] == 3
    # the original's placement: its last first mapping (the last owner, exclusive)
    last = owners[-1]
    want = {"keep": own_av(m2, last), "oldest": own_av(m2, fam.parent)}.get(ERAS[era].swapin,
                                                                             own_av(m2, fam.parent))
    if not ERAS[era].chain:
        want = own_av(m2, fam.parent)
    assert m2.page_mapping[page] == want
    assert page_referenced(m2, page)[0] == 1

"""The seed commit's arithmetic: how many list entries a reclaim walk visits, era by era.

Every expected number here is derived by hand from the kernel's semantics
(docs: shared/reference/kernel-rmap.md), never read back from the code under test:

* list insertion is at the tail (``list_add_tail``), so list order is fork order:
  the parent's VMA (or its AVC) first, then child 1, child 2, ... (1-based fork order);
* ``page_referenced_anon`` visits entries in list order and stops as soon as it has
  found ``page_mapcount`` mappings, so a walk visits up to and including the last mapper;
* 2.6.33: one anon_vma per family, every VMA on its list, every page (COWed or not) in it;
* 2.6.34+: the parent's anon_vma av0 lists [parent, child 1, ..., child N] (each child's
  ``anon_vma_clone`` AVC), and each child's own anon_vma lists just that child; a COWed
  page goes to the writer's own ``vma->anon_vma`` (the parent's own is av0).

Walk lengths are counted with ``entry_cost_ns=0``: they are counts, not times.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model.build import Family, build_family
from shared_model.eras import ERAS
from shared_model.layout import PTE_PRESENT, PTE_YOUNG
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap
from shared_model.model import Model
from shared_model.rmap import page_referenced

MakeModel = Callable[..., Model]
CHAIN_ERAS = [name for name, e in ERAS.items() if e.chain]
SIZES = [(1, 1), (2, 3), (3, 2), (5, 4), (10, 3), (60, 2)]  # (N users, P pages)


def scan(m: Model) -> dict[int, tuple[int, int]]:
    """page_referenced over every in-use page: page -> (referenced, visited)."""
    return {int(p): page_referenced(m, int(p)) for p in np.flatnonzero(m.page_mapping >= 0)}


def page_at(m: Model, mm: int, vpn: int) -> int:
    """The page the PTE at (mm, vpn) points at."""
    return m.pte_of(mm, vpn)[0]


def mm_pages(m: Model, mm: int, npages: int) -> list[int]:
    return [page_at(m, mm, v) for v in range(npages)]


def assert_walk_counters(m: Model, walks: int, visited: int) -> None:
    """The walks were published in this CPU's slot and its walk-length histogram."""
    cpu = m.seg["cpu"][m.cpu]
    assert cpu["walks"] == walks
    assert cpu["visited"] == visited
    assert m.seg["walkhist"][m.cpu].sum() == walks


# ----------------------------------------------------------------------------- cow = 1.0


@pytest.mark.parametrize("n,p", SIZES)
def test_2_6_33_full_cow_walks_the_family_list(make_model: MakeModel, n: int, p: int) -> None:
    m = make_model("2.6.33", users=n, pages=p, cow=1.0)
    fam = build_family(m, n, p, 1.0)
    res = scan(m)
    # Every child COWs every page (even the last one: the parent still maps the original,
    # so its mapcount is 2 when the last child writes): P originals + N*P copies.
    assert len(res) == p * (n + 1)
    # All pages are mapped once.  Parent's pages: the parent VMA is list entry 1.
    for page in mm_pages(m, fam.parent, p):
        assert res[page][1] == 1
    # Child i's copies: child i is list entry i + 1 (tail insertion in fork order).
    for i, child in enumerate(fam.children, start=1):
        for page in mm_pages(m, child, p):
            assert res[page][1] == i + 1
    total = p + p * sum(i + 1 for i in range(1, n + 1))
    assert total == p + p * (n * (n + 1) // 2 + n)
    assert sum(v for _, v in res.values()) == total
    # Average over all walks: (1 + sum_{i=1..N}(i+1)) / (N+1) = N/2 + 1 exactly.
    assert total / len(res) == pytest.approx(n / 2 + 1)
    assert_walk_counters(m, p * (n + 1), total)


@pytest.mark.parametrize("era", CHAIN_ERAS)
@pytest.mark.parametrize("n,p", SIZES)
def test_chain_eras_full_cow_every_walk_visits_one(
    make_model: MakeModel, era: str, n: int, p: int
) -> None:
    m = make_model(era, users=n, pages=p, cow=1.0)
    build_family(m, n, p, 1.0)
    res = scan(m)
    # Parent's pages: av0's list starts with the parent; children's copies: their own
    # anon_vma's list holds only them.  "From O(N) to 1" for a page mapped once.
    assert len(res) == p * (n + 1)
    assert {v for _, v in res.values()} == {1}
    assert_walk_counters(m, p * (n + 1), p * (n + 1))


# ----------------------------------------------------------------------------- cow = 0.0


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("n,p", SIZES)
def test_no_cow_every_walk_visits_the_whole_family(
    make_model: MakeModel, era: str, n: int, p: int
) -> None:
    m = make_model(era, users=n, pages=p, cow=0.0)
    build_family(m, n, p, 0.0)
    res = scan(m)
    # P shared pages, each mapped by all N+1 processes: the last mapper is the last entry
    # of the family list (2.6.33) or of av0's list (2.6.34+): N+1 visits.
    assert len(res) == p
    assert {v for _, v in res.values()} == {n + 1}
    assert {int(m.page_mapcount[pg]) for pg in res} == {n + 1}
    assert_walk_counters(m, p, p * (n + 1))


# ----------------------------------------------------------------------------- partial COW


def partial_cow(m: Model) -> tuple[Family, dict[str, int]]:
    """N=3, P=4, nobody COWs at build; then, in this order:
    child 3 writes vpn 0, child 1 writes vpn 1, the parent writes vpn 2; vpn 3 stays shared.
    Returns the family and the pages by name."""
    fam = build_family(m, 3, 4, 0.0)
    c1, _, c3 = fam.children
    pages = {f"orig{v}": page_at(m, fam.parent, v) for v in range(4)}
    assert do_wp_pages(m, c3, int(m.mm["vma_head"][c3]), np.array([0])) == (1, 0)
    assert do_wp_pages(m, c1, int(m.mm["vma_head"][c1]), np.array([1])) == (1, 0)
    assert do_wp_pages(m, fam.parent, fam.vma, np.array([2])) == (1, 0)
    pages["c3_copy0"] = page_at(m, c3, 0)
    pages["c1_copy1"] = page_at(m, c1, 1)
    pages["parent_copy2"] = page_at(m, fam.parent, 2)
    return fam, pages


# Mappers of each page, and its mapcount, by hand:
#   orig0: parent, c1, c2          (c3 copied)      mapcount 3
#   orig1: parent, c2, c3          (c1 copied)      mapcount 3
#   orig2: c1, c2, c3              (parent copied)  mapcount 3
#   orig3: parent, c1, c2, c3                       mapcount 4
#   each copy: its writer only                      mapcount 1
MAPCOUNT = {"orig0": 3, "orig1": 3, "orig2": 3, "orig3": 4,
            "c3_copy0": 1, "c1_copy1": 1, "parent_copy2": 1}

# 2.6.33: one list [parent, c1, c2, c3] (positions 1..4) for every page; the walk stops
# at the position of the page's last mapper in that order.
VISITS_2_6_33 = {"orig0": 3,  # last mapper c2, position 3
                 "orig1": 4,  # c3
                 "orig2": 4,  # c3
                 "orig3": 4,  # c3
                 "c3_copy0": 4,  # c3's copy is in the family anon_vma too: position 4
                 "c1_copy1": 2,  # c1: position 2
                 "parent_copy2": 1}  # parent: position 1

# 2.6.34+: originals live in av0 = [parent, c1, c2, c3], so they walk as above; a child's
# copy lives in its own anon_vma = [that child]: 1; the parent's copy lives in av0 (the
# parent's own anon_vma), whose first entry is the parent: 1.
VISITS_CHAIN = {"orig0": 3, "orig1": 4, "orig2": 4, "orig3": 4,
                "c3_copy0": 1, "c1_copy1": 1, "parent_copy2": 1}


@pytest.mark.parametrize("era", list(ERAS))
def test_partial_cow_stops_at_the_last_mapper(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=3, pages=4, cow=0.0)
    _, pages = partial_cow(m)
    want = VISITS_CHAIN if ERAS[era].chain else VISITS_2_6_33
    for name, page in pages.items():
        assert m.page_mapcount[page] == MAPCOUNT[name], name
    res = scan(m)
    assert set(res) == set(pages.values())  # 4 originals + 3 copies, nothing else
    for name, page in pages.items():
        assert res[page][1] == want[name], name


@pytest.mark.parametrize("era", list(ERAS))
def test_grandchild_joins_the_walk(make_model: MakeModel, era: str) -> None:
    """N=2, P=2, child 1 COWs both pages, then forks a grandchild g.

    2.6.33: g's VMA goes to the tail of the one family list [parent, c1, c2, g]: c1's
    copies are now mapped by c1 (position 2) and g (position 4): 4 visits.
    2.6.34+: c1's copies live in c1's own anon_vma, whose list is [c1, g] (g's clone AVC
    appended): 2 visits.  The originals (parent, c2) stop at c2, position 3, in both."""
    m = make_model(era, users=2, pages=2, cow=0.0, spare_users=2)
    fam = build_family(m, 2, 2, 0.0)
    c1, c2 = fam.children
    assert do_wp_pages(m, c1, int(m.mm["vma_head"][c1]), np.arange(2)) == (2, 0)
    g = dup_mmap(m, c1)
    copies = mm_pages(m, c1, 2)
    assert mm_pages(m, g, 2) == copies
    originals = mm_pages(m, fam.parent, 2)
    assert mm_pages(m, c2, 2) == originals
    copy_visits = 2 if ERAS[era].chain else 4
    for page in copies:
        assert m.page_mapcount[page] == 2
        assert page_referenced(m, page)[1] == copy_visits
    for page in originals:
        assert m.page_mapcount[page] == 2
        assert page_referenced(m, page)[1] == 3


# ----------------------------------------------------------------------------- referenced


def young_mappings(m: Model) -> dict[int, int]:
    """Per in-use page, the present PTEs with the young bit that map it, read off the page
    tables directly (not through the walk)."""
    grid = m.pte_grid()  # through the page tables: [mm, vpn] -> PTE, -1 none
    idx = grid[grid >= 0]
    flags = m.pte_flags[idx]
    young = idx[((flags & PTE_PRESENT) != 0) & ((flags & PTE_YOUNG) != 0)]
    counts = np.bincount(m.pte_page[young], minlength=len(m.page_mapping))
    return {int(p): int(counts[p]) for p in np.flatnonzero(m.page_mapping >= 0)}


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("cow", [0.0, 0.5, 1.0])
def test_referenced_counts_young_mappings_then_zero(
    make_model: MakeModel, era: str, cow: float
) -> None:
    """page_referenced test-and-clears every mapping's young bit: the first walk reports
    the young ones, a second (nothing touched in between) reports none and visits the same."""
    n, p = 4, 6
    m = make_model(era, users=n, pages=p, cow=cow)
    build_family(m, n, p, cow, seed=3)
    young = young_mappings(m)
    first = scan(m)
    assert {pg: r for pg, (r, _) in first.items()} == young
    assert not np.any(m.pte_flags & PTE_YOUNG)
    second = scan(m)
    assert {pg: r for pg, (r, _) in second.items()} == dict.fromkeys(young, 0)
    assert {pg: v for pg, (_, v) in second.items()} == {pg: v for pg, (_, v) in first.items()}


@pytest.mark.parametrize("era", list(ERAS))
def test_fresh_full_cow_family_is_all_referenced(make_model: MakeModel, era: str) -> None:
    """cow=1.0: every page is mapped once, by its first toucher or its COW writer, whose
    fault made the PTE young: referenced == mapcount == 1, then 0."""
    n, p = 4, 6
    m = make_model(era, users=n, pages=p, cow=1.0)
    build_family(m, n, p, 1.0)
    first = scan(m)
    assert {r for r, _ in first.values()} == {1}
    assert all(r == m.page_mapcount[pg] for pg, (r, _) in first.items())
    assert {r for r, _ in scan(m).values()} == {0}


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("cow", [0.0, 0.5])
def test_fork_leaves_the_childs_ptes_old(make_model: MakeModel, era: str, cow: float) -> None:
    """Kernel: fork's copy_one_pte write-protects the parent's PTE (keeping its young bit)
    and installs the child's as pte_mkold(pte).  So in a fresh family each page has exactly
    one young mapping: an original's is the parent's (young since its first touch), a
    copy's is its writer's (young since the COW fault).  First walk: referenced == 1."""
    n, p = 4, 6
    m = make_model(era, users=n, pages=p, cow=cow)
    build_family(m, n, p, cow, seed=3)
    first = scan(m)
    assert {r for r, _ in first.values()} == {1}


# ----------------------------------------------------------------------------- after exits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_2_6_33_exits_shorten_the_walk(make_model: MakeModel, seed: int) -> None:
    """N=130 children, all COW both pages, then a random two thirds exit.  The kernel's
    list_del removes an exiting VMA, so a survivor's copies are found at its place among the
    *survivors*: 1 (the parent) + the number of surviving children forked no later than it."""
    n, p = 130, 2
    m = make_model("2.6.33", users=n, pages=p, cow=1.0)
    fam = build_family(m, n, p, 1.0)
    rng = np.random.default_rng(seed)
    leaving = set(rng.choice(n, size=2 * n // 3, replace=False).tolist())
    if seed == 0:
        leaving |= set(range(56, 112)) - {57}  # a long run of neighbours as well
    for i in sorted(leaving):
        exit_mmap(m, fam.children[i])
    res = scan(m)
    position = 1
    for i, child in enumerate(fam.children):
        if i in leaving:
            continue
        position += 1
        for page in mm_pages(m, child, p):
            assert res[page] == (1, position), (i, page)
    for page in mm_pages(m, fam.parent, p):
        assert res[page] == (1, 1)
    survivors = n - len(leaving)
    assert len(res) == p * (survivors + 1)
    assert sum(v for _, v in res.values()) == p * (1 + sum(range(2, survivors + 2)))


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_chain_eras_exits_shorten_shared_page_walks(make_model: MakeModel, era: str) -> None:
    """No COW: the pages stay in av0, mapped by every live process.  After the parent and
    some children exit, a walk visits exactly the survivors (av0 outlives the parent: its
    list still holds the children's AVCs)."""
    n, p = 70, 3
    m = make_model(era, users=n, pages=p, cow=0.0)
    fam = build_family(m, n, p, 0.0)
    exit_mmap(m, fam.parent)
    for c in fam.children[::3]:
        exit_mmap(m, c)
    survivors = n - len(fam.children[::3])
    res = scan(m)
    assert len(res) == p
    assert {v for _, v in res.values()} == {survivors}

"""anon_vma / anon_vma_chain bookkeeping: what fork and exit create and free, era by era,
and that every failure path (injected or real ENOMEM) leaves the model as it was.

Expected counts are derived from the kernel's rules (shared/reference/kernel-rmap.md):
2.6.33 ``anon_vma_link`` puts a child VMA on the family's one anon_vma and allocates
nothing; 2.6.34 ``anon_vma_fork`` gives the child one AVC per anon_vma on the parent's
chain (``anon_vma_clone``) plus a new anon_vma and its AVC.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import pytest

from shared_model.anon_vma import anon_vma_members
from shared_model.build import build_family, family_capacities
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import ALLOC_KINDS, PTE_PRESENT, PTE_SWAP, PTE_YOUNG, Capacities
from shared_model.locking import OWNER, OWNER_PID_SHIFT, lock_release, lock_trylock
from shared_model.locks import Stopped, lock_kind
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, exit_mmap, mm_alloc
from shared_model.model import Model, OutOfMemory
from shared_model.rmap import page_referenced, try_to_unmap
from shared_model.swap_state import do_swap_page

MakeModel = Callable[..., Model]
ALL_ERAS = list(ERAS)
CHAIN_ERAS = [name for name, e in ERAS.items() if e.chain]
ZERO = {"mms": 0, "vmas": 0, "anon_vmas": 0, "avcs": 0, "pages": 0}


def family_counts(era: str, n: int, p: int, cow: float) -> dict[str, int]:
    """Live records after build_family, by hand: N+1 mms with one VMA each; 2.6.33: one
    anon_vma, no AVC; 2.6.34+: an anon_vma per process, the parent's AVC plus two per child
    (its clone on av0 and its own); P originals plus each child's round(cow*P) copies."""
    chain = ERAS[era].chain
    return {
        "mms": n + 1,
        "vmas": n + 1,
        "anon_vmas": n + 1 if chain else 1,
        "avcs": 2 * n + 1 if chain else 0,
        "pages": p + n * round(cow * p),
    }


def chain_of(m: Model, vma: int) -> list[int]:
    """anon_vmas on vma's same_vma list, in list order (newest first, as list_add)."""
    out = []
    x = int(m.vma["avc_head"][vma])
    while x >= 0:
        out.append(int(m.avc["anon_vma"][x]))
        x = int(m.avc["same_vma_next"][x])
    return out


def vma_of(m: Model, mm: int) -> int:
    return int(m.mm["vma_head"][mm])


def free_counts(m: Model) -> dict[str, int]:
    return {k: m.free_count(k) for k in ALLOC_KINDS}


def full_free_counts(caps: Capacities) -> dict[str, int]:
    """Every record free; VMA 0 is the reserved sentinel and never on its free stack."""
    return {k: caps.capacity(k) - (1 if k == "vma" else 0) for k in ALLOC_KINDS}


# ----------------------------------------------------------------------------- fork / exit


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("n,p,cow", [(1, 1, 1.0), (4, 5, 0.0), (6, 4, 0.5), (70, 2, 1.0)])
def test_counts_after_fork(make_model: MakeModel, era: str, n: int, p: int, cow: float) -> None:
    m = make_model(era, users=n, pages=p, cow=cow)
    build_family(m, n, p, cow)
    assert m.counts() == family_counts(era, n, p, cow)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_fork_links_child_into_the_reverse_map(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=3, pages=2, cow=0.0)
    fam = build_family(m, 3, 2, 0.0)
    pav = int(m.vma_anon_vma[fam.vma])
    kids = [vma_of(m, c) for c in fam.children]
    if not ERAS[era].chain:
        # anon_vma_link: the child VMA shares the parent's anon_vma, tail of its list.
        assert all(m.vma_anon_vma[v] == pav for v in kids)
        assert anon_vma_members(m, pav)[0].tolist() == [fam.vma, *kids]
        assert m.anon_vma["nr_members"][pav] == 4
        return
    # anon_vma_fork: [own, parent's] per child, newest first; av0 lists the parent's AVC
    # then each child's clone in fork order; each child's own anon_vma lists just it.
    assert chain_of(m, fam.vma) == [pav]
    assert anon_vma_members(m, pav)[0].tolist() == [fam.vma, *kids]
    for v in kids:
        own = int(m.vma_anon_vma[v])
        assert own not in (pav, -1)
        assert chain_of(m, v) == [own, pav]
        assert anon_vma_members(m, own)[0].tolist() == [v]
        assert m.anon_vma["parent"][own] == pav
        assert m.anon_vma["root"][own] == pav
    if ERAS[era].lock_root:
        # Each child's anon_vma holds a reference on the root (anon_vma->root); 3.0+ the
        # root one more, its own, while its list is not empty (Era.self_ref).
        assert m.anon_vma["refcount"][pav] == 3 + ERAS[era].self_ref


def list_links(m: Model, av: int) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(head, tail, [(entry, prev, next) in list order]) of av's list: the nodes embedded
    in the AVCs (2.6.34+) or the VMAs (2.6.33)."""
    vmas, avcs = anon_vma_members(m, av)
    rec, link = (m.avc, "same_anon_vma") if m.era.chain else (m.vma, "anon_vma_node")
    nodes = (avcs if m.era.chain else vmas).tolist()
    return (int(m.anon_vma["head"][av]), int(m.anon_vma["tail"][av]),
            [(x, int(rec[f"{link}_prev"][x]), int(rec[f"{link}_next"][x])) for x in nodes])


@pytest.mark.parametrize("era", ALL_ERAS)
def test_list_del_keeps_order_and_links(make_model: MakeModel, era: str) -> None:
    """The family list (parent, then children 0-4 in fork order) after exits at its tail,
    in its middle and of its head's neighbour: list_del links the neighbours to each other,
    the rest keep their order; head, tail and nr_members follow."""
    n = 5
    m = make_model(era, users=n, pages=2, cow=1.0)
    fam = build_family(m, n, 2, 1.0)
    av0 = int(m.vma_anon_vma[fam.vma])
    head, tail, links = list_links(m, av0)
    nodes = [x for x, _, _ in links]
    assert head == nodes[0] and tail == nodes[-1]
    assert links == [(x, p, q) for x, p, q in zip(nodes, [-1, *nodes[:-1]], [*nodes[1:], -1], strict=True)]
    for c in (4, 2, 0):  # children 4 (the tail), 2 (the middle), 0 (after the head)
        exit_mmap(m, fam.children[c])
    keep = [nodes[0], nodes[2], nodes[4]]  # the parent's entry, children 1 and 3
    head, tail, links = list_links(m, av0)
    assert (head, tail) == (keep[0], keep[-1])
    assert links == [(keep[0], -1, keep[1]), (keep[1], keep[0], keep[2]), (keep[2], keep[1], -1)]
    assert anon_vma_members(m, av0)[0].tolist() == [fam.vma, vma_of(m, fam.children[1]),
                                                    vma_of(m, fam.children[3])]
    assert m.anon_vma["nr_members"][av0] == 3


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_grandchild_chain_has_three_avcs(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=1, pages=2, cow=0.0, spare_users=4)
    fam = build_family(m, 1, 2, 0.0)
    child = fam.children[0]
    g = dup_mmap(m, child)
    gg = dup_mmap(m, g)
    av0 = int(m.vma_anon_vma[fam.vma])
    av1 = int(m.vma_anon_vma[vma_of(m, child)])
    av2 = int(m.vma_anon_vma[vma_of(m, g)])
    av3 = int(m.vma_anon_vma[vma_of(m, gg)])
    assert len({av0, av1, av2, av3}) == 4
    # One AVC per anon_vma of the parent's chain, plus the new one of its own.
    assert chain_of(m, vma_of(m, child)) == [av1, av0]
    assert chain_of(m, vma_of(m, g)) == [av2, av1, av0]
    assert chain_of(m, vma_of(m, gg)) == [av3, av2, av1, av0]
    assert m.counts()["avcs"] == 1 + 2 + 3 + 4
    assert m.counts()["anon_vmas"] == 4
    # av0 lists every generation (every process may map the parent's pages).
    assert m.anon_vma["nr_members"][[av0, av1, av2, av3]].tolist() == [4, 3, 2, 1]


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("cow", [0.0, 1.0])
def test_exit_of_all_children_frees_their_anon_vmas(
    make_model: MakeModel, era: str, cow: float
) -> None:
    n, p = 5, 3
    m = make_model(era, users=n, pages=p, cow=cow)
    fam = build_family(m, n, p, cow)
    for c in reversed(fam.children[::2]):  # not in fork order: 4, 2, 0, then the rest
        exit_mmap(m, c)
    for c in fam.children[1::2]:
        exit_mmap(m, c)
    # Only the parent is left: its VMA, its anon_vma (and, 2.6.34+, its one AVC), its pages.
    assert m.counts() == family_counts(era, 0, p, cow)
    av0 = int(m.vma_anon_vma[fam.vma])
    assert m.anon_vma["nr_members"][av0] == 1
    assert anon_vma_members(m, av0)[0].tolist() == [fam.vma]
    assert m.page_mapcount[m.ptes_of(fam.parent)[0][:p]].tolist() == [1] * p
    if ERAS[era].lock_root:
        assert m.anon_vma["refcount"][av0] == int(ERAS[era].self_ref)  # 3.0+: its own


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("parent_first", [False, True])
def test_exit_of_everything_empties_the_model(
    make_model: MakeModel, era: str, parent_first: bool
) -> None:
    n, p = 4, 3
    # A grandchild's chain is 3 AVCs long: capacity for two spare children covers it.
    m = make_model(era, users=n, pages=p, cow=0.5, spare_users=2)
    fam = build_family(m, n, p, 0.5)
    g = dup_mmap(m, fam.children[1])  # a grandchild too: three generations
    order = [fam.parent, *fam.children, g] if parent_first else [g, *fam.children, fam.parent]
    for mm in order:
        exit_mmap(m, mm)
    assert m.counts() == ZERO
    assert free_counts(m) == full_free_counts(m.caps)


# ----------------------------------------------------------------------------- swap round trip


@pytest.mark.parametrize("era", ALL_ERAS)
def test_try_to_unmap_then_do_swap_page_round_trip(make_model: MakeModel, era: str) -> None:
    n, p = 3, 2
    m = make_model(era, users=n, pages=p, cow=0.0)
    fam = build_family(m, n, p, 0.0)
    page = m.pte_of(fam.parent, 1)[0]
    slots = sorted(mm * m.ptrs + 1 for mm in [fam.parent, *fam.children])
    # The parent's mapping, first on the list, is young since its first touch: SWAP_FAIL,
    # nothing unmapped, and that young bit is cleared.
    assert try_to_unmap(m, page)[0] == []
    assert m.page_mapcount[page] == n + 1
    assert not m.pte_of(fam.parent, 1)[1] & PTE_YOUNG
    page_referenced(m, page)  # clears whatever young bits are left
    # Now none is young: every mapping becomes a swap entry.
    unmapped, visited = try_to_unmap(m, page)
    assert sorted(unmapped) == slots and visited == n + 1
    assert (m.page_mapcount[page], m.page_swapcount[page]) == (0, n + 1)
    assert all(m.pte_flags[m.pte_index(s)] == PTE_SWAP for s in slots)
    assert m.page_mapping[page] >= 0  # still in the swap cache
    assert page_referenced(m, page) == (0, 0)  # not mapped: no walk
    assert m.counts() == family_counts(era, n, p, 0.0)
    # Fault it back in everywhere.
    assert do_swap_page(m, page, unmapped) == n + 1
    assert (m.page_mapcount[page], m.page_swapcount[page]) == (n + 1, 0)
    assert all(m.pte_flags[m.pte_index(s)] & PTE_PRESENT for s in slots)
    assert page_referenced(m, page) == (n + 1, n + 1)
    assert m.mm["rss"][[fam.parent, *fam.children]].tolist() == [p] * (n + 1)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_swapped_page_survives_fork_and_is_freed_by_exit(make_model: MakeModel, era: str) -> None:
    n, p = 2, 2
    m = make_model(era, users=n, pages=p, cow=0.0, spare_users=2)
    fam = build_family(m, n, p, 0.0)
    page = m.pte_of(fam.parent, 0)[0]
    page_referenced(m, page)
    unmapped, _ = try_to_unmap(m, page)
    assert len(unmapped) == n + 1
    # fork copies the swap entry: one more swap reference, no mapping.
    g = dup_mmap(m, fam.children[0])
    assert (m.page_mapcount[page], m.page_swapcount[page]) == (0, n + 2)
    assert m.pte_of(g, 0)[1] == PTE_SWAP
    for mm in [g, *fam.children, fam.parent]:
        exit_mmap(m, mm)
    assert m.counts() == ZERO


# ----------------------------------------------------------------------------- ENOMEM


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_fork_aborted_in_anon_vma_clone_leaks_nothing(make_model: MakeModel, era: str) -> None:
    """The run is aborted (stop 2) while fork's anon_vma_clone waits for the family's
    lock: the AVCs it allocated and had not linked go back to the slab.  (The half-built
    child mm stays, consistent: an aborted run ends there.)"""
    m = make_model(era, users=1, pages=2, cow=0.0, spare_users=2)
    fam = build_family(m, 1, 2, 0.0)
    before, free_before = m.counts(), free_counts(m)
    kind = lock_kind(m.lock_kind)
    w = m.anon_vma_lock_word(int(m.vma_anon_vma[fam.vma]))  # the family's oldest anon_vma
    tag = os.getpid() * OWNER_PID_SHIFT + 1  # held by "someone" alive (a mutex looks)
    assert lock_trylock(m.words, w, kind, 0, 0, tag)
    m.words[w + OWNER] = tag
    m.header["stop"][0] = 2
    try:
        with pytest.raises(Stopped):
            dup_mmap(m, fam.children[0])
    finally:
        m.header["stop"][0] = 0
        lock_release(m.words, w, kind, 0, 0, m.seg.offsets["qnodes"] // 8)
    after, free_after = m.counts(), free_counts(m)
    assert (after["avcs"], after["anon_vmas"]) == (before["avcs"], before["anon_vmas"])
    assert (free_after["avc"], free_after["anon_vma"]) == (free_before["avc"], free_before["anon_vma"])
    assert check_model(m) == []


def injected_failure(m: Model) -> None:
    m.alloc_fail_p = 1.0  # every anon_vma / avc allocation fails


@pytest.mark.parametrize("era", ALL_ERAS)
def test_fork_with_failing_allocations(make_model: MakeModel, era: str) -> None:
    n, p = 3, 4
    m = make_model(era, users=n, pages=p, cow=0.5, spare_users=1)
    fam = build_family(m, n, p, 0.5)
    before, free_before = m.counts(), free_counts(m)
    injected_failure(m)
    if not ERAS[era].chain:
        # 2.6.33 fork allocates neither an anon_vma nor an AVC (anon_vma_link only adds
        # the child's VMA to the family list): it cannot fail this way.
        child = dup_mmap(m, fam.parent)
        assert m.counts() == {**before, "mms": n + 2, "vmas": n + 2}
        assert m.vma_anon_vma[vma_of(m, child)] == m.vma_anon_vma[fam.vma]
        return
    # 2.6.34: linking allocates, so fork can fail with ENOMEM; the half-built child is
    # torn down and nothing leaks.
    with pytest.raises(OutOfMemory):
        dup_mmap(m, fam.parent)
    assert m.counts() == before
    assert free_counts(m) == free_before
    # Forking a child (whose chain is longer) fails the same way.
    with pytest.raises(OutOfMemory):
        dup_mmap(m, fam.children[0])
    assert m.counts() == before
    assert free_counts(m) == free_before


@pytest.mark.parametrize("era", ALL_ERAS)
def test_first_fault_with_failing_allocation(make_model: MakeModel, era: str) -> None:
    """anon_vma_prepare allocates an anon_vma in every era: the first fault can fail."""
    m = make_model(era, users=0, pages=4)
    mm = mm_alloc(m)
    vma = do_mmap(m, mm, 0, 4)
    injected_failure(m)
    with pytest.raises(OutOfMemory):
        do_anonymous_pages(m, mm, vma, np.arange(4))
    assert m.counts() == {"mms": 1, "vmas": 1, "anon_vmas": 0, "avcs": 0, "pages": 0}
    assert m.vma_anon_vma[vma] == -1
    m.alloc_fail_p = 0.0
    assert do_anonymous_pages(m, mm, vma, np.arange(4)) == 4
    exit_mmap(m, mm)
    assert m.counts() == ZERO


def tight(era: str, n: int, **short: int) -> Capacities:
    """Capacities for a family of N children (P=2, no COW) with some kinds cut short."""
    return dataclasses.replace(family_capacities(era, n, 2, 0.0, 1, spare_users=1), **short)


# (name, eras, capacities cut, N users built first, who forks, the kind that runs out).
# Each makes the fork run out at a different step:
EXHAUST: list[tuple[str, list[str], dict[str, int], int, str, str]] = [
    # mm_alloc itself: nothing to undo.
    ("mm", ALL_ERAS, {"mms": 2}, 1, "parent", "mm"),
    # the child's VMA: the empty child mm is freed.
    ("vma", ALL_ERAS, {"vmas": 3}, 1, "parent", "vma"),
    # 2.6.34+: anon_vma_clone gets its one AVC (the last free one), then the child's own
    # AVC fails: the clone is unlinked from av0 and freed, the new anon_vma freed.
    ("avc-own", CHAIN_ERAS, {"avcs": 2}, 0, "parent", "avc"),
    # 2.6.34+: a child's chain is 2 long; with 1 AVC free, anon_vma_clone fails at once.
    ("avc-clone", CHAIN_ERAS, {"avcs": 4}, 1, "child", "avc"),
    # 2.6.34+: the clone is linked, then no anon_vma for the grandchild.
    ("anon_vma", CHAIN_ERAS, {"anon_vmas": 2}, 1, "child", "anon_vma"),
    # (No row for linking itself: the list nodes are embedded in the AVCs and VMAs, so
    # anon_vma_chain_link and 2.6.33's anon_vma_link allocate nothing and cannot fail.)
]


@pytest.mark.parametrize(
    "era,short,n,forker,kind",
    [
        pytest.param(era, short, n, forker, kind, id=f"{name}-{era}")
        for name, eras, short, n, forker, kind in EXHAUST
        for era in eras
    ],
)
def test_fork_out_of_records_unwinds(
    make_model: MakeModel, era: str, short: dict[str, int], n: int, forker: str, kind: str
) -> None:
    m = make_model(era, caps=tight(era, n, **short))
    fam = build_family(m, n, 2, 0.0)
    before, free_before = m.counts(), free_counts(m)
    assert before == family_counts(era, n, 2, 0.0)
    with pytest.raises(OutOfMemory) as err:
        dup_mmap(m, fam.parent if forker == "parent" else fam.children[-1])
    assert err.value.kind == kind
    assert m.counts() == before
    assert free_counts(m) == free_before
    # ... and the model still tears down cleanly.
    for mm in [*fam.children, fam.parent]:
        exit_mmap(m, mm)
    assert m.counts() == ZERO
    assert free_counts(m) == full_free_counts(m.caps)

"""check_model(): clean on every model the operations build, and each rule catches the
corruption it exists for.  Corrupting tests opt out of the teardown check (check=False)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model.anon_vma import (
    anon_vma_list_add_tail_locked,
    anon_vma_list_del_locked,
    anon_vma_members,
)
from shared_model.build import Family, build_family
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import ALLOC_KINDS, PTE_PRESENT, PTE_SWAP
from shared_model.memory import dup_mmap, exit_mmap
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap

MakeModel = Callable[..., Model]
ALL_ERAS = list(ERAS)
ROOT_ERAS = [name for name, e in ERAS.items() if e.lock_root]
N, P = 3, 4


def corrupt_family(make_model: MakeModel, era: str, cow: float = 0.5) -> tuple[Model, Family]:
    """A checked-clean family that the test is about to corrupt (no teardown check), with
    room for one more child so that every kind has free records."""
    m = make_model(era, users=N, pages=P, cow=cow, spare_users=1, check=False)
    fam = build_family(m, N, P, cow, seed=1)
    assert check_model(m) == []
    return m, fam


def assert_caught(m: Model, *needles: str) -> list[str]:
    found = check_model(m)
    assert found, "corruption not detected"
    for needle in needles:
        assert any(needle in msg for msg in found), (needle, found)
    return found


# ----------------------------------------------------------------------------- clean


@pytest.mark.parametrize("era", ALL_ERAS)
def test_fresh_empty_model_is_clean(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=2, pages=2)
    assert check_model(m) == []


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("cow", [0.0, 0.5, 1.0])
def test_fresh_family_is_clean(make_model: MakeModel, era: str, cow: float) -> None:
    m = make_model(era, users=5, pages=6, cow=cow)
    build_family(m, 5, 6, cow, seed=2)
    assert check_model(m) == []


@pytest.mark.parametrize("era", ALL_ERAS)
def test_clean_through_walks_unmaps_forks_and_exits(make_model: MakeModel, era: str) -> None:
    m = make_model(era, users=4, pages=5, cow=0.5, spare_users=3)
    fam = build_family(m, 4, 5, 0.5, seed=4)
    for p in np.flatnonzero(m.page_mapping >= 0):
        page_referenced(m, int(p))
    for p in np.flatnonzero(m.page_mapping >= 0)[::2]:
        try_to_unmap(m, int(p))
    assert check_model(m) == []
    g = dup_mmap(m, fam.children[0])  # forks swap entries too
    assert check_model(m) == []
    exit_mmap(m, fam.children[0])  # its anon_vma outlives it when the grandchild maps it
    assert check_model(m) == []
    exit_mmap(m, g)
    assert check_model(m) == []


# ----------------------------------------------------------------------------- corruption


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_mapcount_is_caught(make_model: MakeModel, era: str) -> None:
    m, _ = corrupt_family(make_model, era)
    page = int(np.flatnonzero(m.page_mapping >= 0)[0])
    m.page_mapcount[page] += 1
    assert_caught(m, "wrong mapcount", f"page {page}")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_swapcount_is_caught(make_model: MakeModel, era: str) -> None:
    m, _ = corrupt_family(make_model, era)
    page = int(np.flatnonzero(m.page_mapping >= 0)[0])
    m.page_swapcount[page] = 1
    assert_caught(m, "wrong swapcount")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_rss_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    m.mm["rss"][fam.children[1]] -= 1
    assert_caught(m, "wrong rss", f"mm {fam.children[1]}")


def unlist_behind_its_back(m: Model, av: int, vma: int) -> None:
    """list_del vma's entry (its AVC, or in 2.6.33 the VMA) from av's list, keeping the
    list's own links and count consistent but not the entry's claim on av, so only the
    rules about who should be on it can notice."""
    vmas, avcs = anon_vma_members(m, av)
    hit = np.flatnonzero(vmas == vma)
    assert len(hit), f"vma {vma} not on anon_vma {av}'s list"
    anon_vma_list_del_locked(m, av, int(avcs[hit[0]] if m.era.chain else vma))


@pytest.mark.parametrize("era", ALL_ERAS)
def test_pte_whose_vma_is_not_on_its_pages_list_is_caught(make_model: MakeModel, era: str) -> None:
    # No COW: every page is in the parent's anon_vma and mapped by every child.
    m, fam = corrupt_family(make_model, era, cow=0.0)
    av = int(m.vma_anon_vma[fam.vma])
    victim = int(m.mm["vma_head"][fam.children[1]])
    unlist_behind_its_back(m, av, victim)
    assert victim not in anon_vma_members(m, av)[0].tolist()
    found = assert_caught(m, "not found by an rmap walk", f"anon_vma {av} mapped in vma {victim}")
    # ... and the entry that claims the anon_vma is not on its list.
    assert any("is not on the list of its anon_vma" in msg for msg in found)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_nr_members_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av = int(m.vma_anon_vma[fam.vma])
    m.anon_vma["nr_members"][av] += 1
    assert_caught(m, f"anon_vma {av}: nr_members {N + 2} but {N + 1} on its list")


def list_links(m: Model) -> tuple[np.ndarray, np.ndarray]:
    """The prev and next links of the list nodes embedded in the entries (AVCs; VMAs in
    2.6.33), as writable views."""
    if m.era.chain:
        return m.avc["same_anon_vma_prev"], m.avc["same_anon_vma_next"]
    return m.vma["anon_vma_node_prev"], m.vma["anon_vma_node_next"]


def family_list(m: Model, fam: Family) -> tuple[int, list[int]]:
    """The parent's anon_vma (the family's, N + 1 entries long) and its entries in order."""
    av = int(m.vma_anon_vma[fam.vma])
    vmas, avcs = anon_vma_members(m, av)
    nodes = (avcs if m.era.chain else vmas).tolist()
    assert len(nodes) == N + 1
    return av, nodes


@pytest.mark.parametrize("era", ALL_ERAS)
def test_broken_prev_link_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av, nodes = family_list(m, fam)
    prv, _ = list_links(m)
    prv[nodes[2]] = nodes[0]  # skips its real predecessor
    assert_caught(m, f"anon_vma {av}: ", f" {nodes[2]} on its list is not properly linked")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_list_cycle_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av, nodes = family_list(m, fam)
    _, nxt = list_links(m)
    nxt[nodes[-1]] = nodes[1]  # the tail points back into the list
    assert_caught(m, f"anon_vma {av}: ", f" {nodes[1]} reached twice")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_list_tail_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av, nodes = family_list(m, fam)
    m.anon_vma["tail"][av] = nodes[-2]
    assert_caught(m, f"anon_vma {av}: tail {nodes[-2]} is not the last entry {nodes[-1]}")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_entry_claiming_another_anon_vma_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=1.0)
    av, nodes = family_list(m, fam)
    other = int(m.vma_anon_vma[int(m.mm["vma_head"][fam.children[0]])])
    if not m.era.chain:  # 2.6.33: one anon_vma per family; any other live one will do
        other = take_off_free_stack(m, "anon_vma")
    owner = m.avc["anon_vma"] if m.era.chain else m.vma["anon_vma"]
    owner[nodes[1]] = other
    assert_caught(m, f"anon_vma {av}: ", f" {nodes[1]} on its list is free or claims anon_vma {other}")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_freed_entry_on_a_list_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av, nodes = family_list(m, fam)
    (m.avc if m.era.chain else m.vma)["in_use"][nodes[1]] = 0
    assert_caught(m, f"anon_vma {av}: ", f" {nodes[1]} on its list is free")


def take_off_free_stack(m: Model, kind: str) -> int:
    """Pop a record off kind's free stack without marking it in use: leaked."""
    m.flush_slab_caches()
    tops = m.header["top"][0]
    k = ALLOC_KINDS.index(kind)
    tops[k] -= 1
    return int(m.seg[f"free_{kind}"][tops[k]])


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("kind", ALLOC_KINDS)
def test_record_neither_in_use_nor_free_is_caught(
    make_model: MakeModel, era: str, kind: str
) -> None:
    m, _ = corrupt_family(make_model, era)
    rec = take_off_free_stack(m, kind)
    assert_caught(m, f"{kind}: 1 records neither in use nor free (leaked), e.g. {rec}")


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("kind", ["mm", "page", "avc"])
def test_record_both_in_use_and_free_is_caught(make_model: MakeModel, era: str, kind: str) -> None:
    m, _ = corrupt_family(make_model, era)
    m.flush_slab_caches()
    tops = m.header["top"][0]
    rec = int(m.seg[f"free_{kind}"][tops[ALLOC_KINDS.index(kind)] - 1])
    getattr(m, kind)["in_use"][rec] = 1
    assert_caught(m, f"{kind}: 1 records both in use and free, e.g. {rec}")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_record_freed_twice_is_caught(make_model: MakeModel, era: str) -> None:
    m, _ = corrupt_family(make_model, era)
    m.flush_slab_caches()
    k = ALLOC_KINDS.index("page")  # pages are in use, so the stack has room for one more
    tops = m.header["top"][0]
    stack = m.seg["free_page"]
    stack[tops[k]] = stack[tops[k] - 1]  # push the top record again
    tops[k] += 1
    assert_caught(m, "page: a record is free twice")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_leaked_anon_vma_is_caught(make_model: MakeModel, era: str) -> None:
    """An anon_vma in use with an empty list and no references: nobody will free it."""
    m, _ = corrupt_family(make_model, era)
    av = take_off_free_stack(m, "anon_vma")
    m.anon_vma["in_use"][av] = 1
    m.anon_vma["root"][av] = av
    m.anon_vma["nr_members"][av] = 0
    m.anon_vma["refcount"][av] = 0
    m.anon_vma["head"][av] = m.anon_vma["tail"][av] = -1
    assert_caught(m, f"anon_vma {av}: in use with an empty list and no references (leaked)")


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("lock", ["anon_vma", "ptl", "slab"])
def test_held_lock_is_caught(make_model: MakeModel, era: str, lock: str) -> None:
    m, _ = corrupt_family(make_model, era)
    arr = {
        "anon_vma": m.anon_vma["lock"],
        "ptl": m.mm["ptl"],
        "slab": m.seg["slab"],
    }[lock]
    arr["owner"][1] = 12345 * 4096 + 1  # as if pid 12345, CPU 0 still held it
    assert_caught(m, f"1 {lock} locks still held, e.g. #1 by owner tag {12345 * 4096 + 1}")


@pytest.mark.parametrize("era", ROOT_ERAS)
def test_wrong_root_refcount_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    root = int(m.vma_anon_vma[fam.vma])
    want = N + ERAS[era].self_ref  # one per child anon_vma; 3.0+ one for its own list
    assert m.anon_vma["refcount"][root] == want
    m.anon_vma["refcount"][root] -= 1
    assert_caught(m, "wrong refcount", f"{root}: {want - 1} vs {want}")


@pytest.mark.parametrize("era", ROOT_ERAS)
def test_an_anon_vma_without_a_root_is_caught(make_model: MakeModel, era: str) -> None:
    """A torn root pointer is reported (it used to make the refcount rule raise)."""
    m, fam = corrupt_family(make_model, era)
    root = int(m.vma_anon_vma[fam.vma])
    child = next(a for a in np.flatnonzero(m.anon_vma["in_use"] == 1).tolist() if a != root)
    m.anon_vma["root"][child] = -1
    assert_caught(m, "1 anon_vmas with no root", f"e.g. {child}: root -1")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_pte_of_a_freed_page_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=0.0)
    slot = m.pte_index(fam.parent * m.ptrs)
    page = int(m.pte_page[slot])
    m.page_mapping[page] = -1  # freed under a live mapping
    m.page["in_use"][page] = 0
    assert_caught(m, "free pages still mapped")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_half_freed_page_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=0.0)
    page = m.pte_of(fam.parent, 0)[0]
    m.page_mapping[page] = -1  # mapping cleared, record still in use
    assert_caught(m, "in_use and mapping disagree")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_page_allocated_and_never_used_is_caught(make_model: MakeModel, era: str) -> None:
    m, _fam = corrupt_family(make_model, era, cow=0.0)
    m.alloc("page", 1)  # e.g. a CPU stopped between allocating a COW page and using it
    assert_caught(m, "in_use and mapping disagree")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_torn_pte_is_reported_not_crashed_on(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=0.0)
    m.pte_page[m.pte_index(fam.parent * m.ptrs)] = -1  # page cleared, flags not yet: a CPU killed mid-zap
    assert_caught(m, "marked present or swapped with no page")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_duplicate_list_entry_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=1.0)
    child = fam.children[0]
    v = int(m.mm["vma_head"][child])
    av = int(m.vma_anon_vma[v])
    if m.era.chain:
        # A second AVC for the same (vma, anon_vma) pair on the list: no AVC is there
        # twice, but the VMA is.
        x = m.alloc("avc", 1)[0]
        m.avc["vma"][x], m.avc["anon_vma"][x] = v, av
        anon_vma_list_add_tail_locked(m, av, v, x)
        assert_caught(m, f"anon_vma {av}: vma {v} is on its list twice")
    else:
        # 2.6.33: the node is the VMA itself, so it can be on a list only once: make it
        # the one entry of a second anon_vma's list as well.  That list's walk finds it
        # reached twice, or (walked first) claiming the other anon_vma.
        other = take_off_free_stack(m, "anon_vma")
        a = m.anon_vma
        a["in_use"][other], a["root"][other], a["refcount"][other] = 1, other, 0
        a["head"][other] = a["tail"][other] = v
        a["nr_members"][other] = 1
        assert_caught(m, f"anon_vma {other}: vma {v} ")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_pte_outside_every_vma_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era, cow=0.0)
    vma = fam.vma
    m.vma["vm_end"][vma] -= 1  # shrink the VMA under its last PTE
    assert_caught(m, "PTEs outside every VMA")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_page_index_that_does_not_give_back_its_address_is_caught(
    make_model: MakeModel, era: str
) -> None:
    m, fam = corrupt_family(make_model, era, cow=0.0)
    page = m.pte_of(fam.parent, 0)[0]
    m.page_index[page] += 1
    assert_caught(m, "whose index does not give back their address")


def test_swap_and_present_flags_are_counted_separately(make_model: MakeModel) -> None:
    """A present PTE turned into a swap entry behind the counts' back shows on both."""
    m, fam = corrupt_family(make_model, "2.6.34", cow=0.0)
    slot = m.pte_index(fam.children[0] * m.ptrs)
    assert m.pte_flags[slot] & PTE_PRESENT
    m.pte_flags[slot] = PTE_SWAP
    assert_caught(m, "wrong mapcount", "wrong swapcount", "wrong rss")

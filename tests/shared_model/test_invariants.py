"""check_model(): clean on every model the operations build, and each rule catches the
corruption it exists for.  Corrupting tests opt out of the teardown check (check=False)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model.anon_vma import anon_vma_members
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
    """Tombstone vma's entry on av's list, keeping the list's own counts consistent, so
    only the rules about who should be on it can notice."""
    ch = m.chunk
    for c in np.flatnonzero((ch["in_use"] == 1) & (ch["anon_vma"] == av)).tolist():
        for pos in np.flatnonzero(ch["vma"][c] == vma).tolist():
            ch["vma"][c, pos] = 0
            ch["avc"][c, pos] = -1
            ch["live"][c] -= 1
            m.anon_vma["nr_members"][av] -= 1
            return
    raise AssertionError(f"vma {vma} not on anon_vma {av}'s list")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_pte_whose_vma_is_not_on_its_pages_list_is_caught(make_model: MakeModel, era: str) -> None:
    # No COW: every page is in the parent's anon_vma and mapped by every child.
    m, fam = corrupt_family(make_model, era, cow=0.0)
    av = int(m.vma_anon_vma[fam.vma])
    victim = int(m.mm["vma_head"][fam.children[1]])
    unlist_behind_its_back(m, av, victim)
    assert victim not in anon_vma_members(m, av)[0].tolist()
    found = assert_caught(m, "not found by an rmap walk", f"anon_vma {av} mapped in vma {victim}")
    # ... and the record that says where the entry was no longer matches the list.
    assert any("recorded slot" in msg for msg in found)


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_nr_members_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av = int(m.vma_anon_vma[fam.vma])
    m.anon_vma["nr_members"][av] += 1
    assert_caught(m, f"anon_vma {av}: nr_members {N + 2} but {N + 1} on its list")


@pytest.mark.parametrize("era", ALL_ERAS)
def test_wrong_chunk_live_count_is_caught(make_model: MakeModel, era: str) -> None:
    m, fam = corrupt_family(make_model, era)
    av = int(m.vma_anon_vma[fam.vma])
    m.chunk["live"][int(m.anon_vma["head"][av])] += 1
    assert_caught(m, "live count")


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
@pytest.mark.parametrize("kind", ["mm", "page", "chunk"])
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
    assert m.anon_vma["refcount"][root] == N  # one per child anon_vma
    m.anon_vma["refcount"][root] -= 1
    assert_caught(m, "wrong refcount", f"{root}: {N - 1} vs {N}")


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
    from shared_model.anon_vma import anon_vma_list_add_tail_locked

    m, fam = corrupt_family(make_model, era, cow=1.0)
    child = fam.children[0]
    v = int(m.mm["vma_head"][child])
    av = int(m.vma_anon_vma[v])
    saved = (int(m.vma["list_chunk"][v]), int(m.vma["list_pos"][v]))
    if m.era.chain:
        x = int(m.vma["avc_head"][v])
        saved = (int(m.avc["list_chunk"][x]), int(m.avc["list_pos"][x]))
        anon_vma_list_add_tail_locked(m, av, v, x)  # a stale second slot for the same AVC
        m.avc["list_chunk"][x], m.avc["list_pos"][x] = saved
    else:
        anon_vma_list_add_tail_locked(m, av, v, -1)
        m.vma["list_chunk"][v], m.vma["list_pos"][v] = saved
    assert_caught(m, "twice")


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

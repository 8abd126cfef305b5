"""Page tables as the kernel's: pgd -> pud -> pmd -> pte blocks from pools in the segment,
allocated by the first fault below them, copied by fork one PMD's worth at a time under the
destination's and the source's PTE locks, freed at exit; one split lock per PTE page.

Counts are exact: a level's first fault allocates it once (its free count drops by one and
mm->page_table_lock is taken once to populate its entry), and lockstat counts every PTE
lock round trip."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.build import build_family
from shared_model.invariants import check_model
from shared_model.layout import (
    ALLOC_KINDS,
    LS_ACQ,
    PGTABLE_KINDS,
    PMD_SHIFT,
    PTE_PRESENT,
    PTE_SWAP,
    PTE_WRITE,
    PTE_YOUNG,
    PTRS_PER_TABLE,
    PUD_SHIFT,
    VM_READ,
    Capacities,
)
from shared_model.locks import CLASS, SITE
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, exit_mmap, mm_alloc
from shared_model.model import Model
from shared_model.pgtable import pte_page_bases_of
from shared_model.rmap import page_referenced, try_to_unmap
from shared_model.swap_state import do_swap_page

MakeModel = Callable[..., Model]
ERAS = ["2.6.33", "2.6.34", "3.0"]
P = PTRS_PER_TABLE



def _taken(m: Model, start: dict[str, int]) -> dict[str, int]:
    """Page-table blocks of each kind taken from the free lists since ``start``."""
    return {k: start[k] - free_counts(m)[k] for k in PGTABLE_KINDS}

def acquisitions(m: Model, site: str) -> int:
    return int(m.seg["lockstat"][m.cpu, CLASS["ptl"], SITE[site], LS_ACQ])


def free_counts(m: Model) -> dict[str, int]:
    return {k: m.free_count(k) for k in PGTABLE_KINDS}


def pte_page_of(m: Model, mm: int, vpn: int) -> int:
    i = m.pte_index(mm * m.ptrs + vpn)
    assert i >= 0, (mm, vpn)
    return i // P


def small_caps(mms: int, ptrs: int, pages: int) -> Capacities:
    return Capacities(mms=mms, vmas=mms + 2, anon_vmas=2 * mms + 2, avcs=4 * mms + 4,
                      pages=pages, ptrs_per_mm=ptrs, cpus=1)


def test_pools_sized_from_mms_and_ptrs() -> None:
    caps = small_caps(10, 3 * P + 1, 8)
    assert (caps.pgds, caps.puds, caps.pmds, caps.ptes) == (10, 10, 10, 40)
    big = small_caps(3, (1 << PUD_SHIFT) + 1, 8)  # two pmds' worth of addresses
    assert (big.pgds, big.puds, big.pmds) == (3, 3, 6)
    assert big.capacity("pte") == big.ptes == 3 * ((1 << PUD_SHIFT) // P + 1)


@pytest.mark.parametrize("era", ERAS)
def test_first_fault_allocates_each_level_once(make_model: MakeModel, era: str) -> None:
    far = 1 << PUD_SHIFT  # the first address of the second pmd
    m = make_model(era, caps=small_caps(2, far + P, 16))
    start = free_counts(m)
    mm = mm_alloc(m)  # mm_alloc_pgd: the pgd only
    assert free_counts(m) == {**start, "pgd": start["pgd"] - 1}
    assert m.pte_index(mm * m.ptrs) == -1  # pgd_none: nothing below it
    v = do_mmap(m, mm, 0, far + P)
    base = acquisitions(m, "do_anonymous_page")

    def fault(vpn: int) -> tuple[dict[str, int], int]:
        nonlocal base
        before = free_counts(m)
        assert do_anonymous_pages(m, mm, v, np.array([vpn])) == 1
        after = free_counts(m)
        taken = acquisitions(m, "do_anonymous_page") - base
        base += taken
        return {k: before[k] - after[k] for k in PGTABLE_KINDS}, taken

    # pud, pmd, pte page: each allocated once, each populated under mm->page_table_lock,
    # then the PTE page's lock for the PTE itself.
    assert fault(0) == ({"pgd": 0, "pud": 1, "pmd": 1, "pte": 1}, 4)
    assert fault(1) == ({"pgd": 0, "pud": 0, "pmd": 0, "pte": 0}, 1)  # same PTE page
    assert fault(P) == ({"pgd": 0, "pud": 0, "pmd": 0, "pte": 1}, 2)  # next PTE page
    assert fault(far) == ({"pgd": 0, "pud": 0, "pmd": 1, "pte": 1}, 3)  # next pmd
    assert fault(far + 1) == ({"pgd": 0, "pud": 0, "pmd": 0, "pte": 0}, 1)
    for vpn in (0, 1, P, far, far + 1):
        page, flags = m.pte_of(mm, vpn)
        assert page >= 0 and flags == PTE_PRESENT | PTE_YOUNG | PTE_WRITE
    assert m.pte_of(mm, 2) == (-1, 0)  # pte_none in an allocated PTE page
    assert m.pte_index(mm * m.ptrs + 2 * P) == -1  # its pmd entry is none
    assert int(m.mm["rss"][mm]) == 5
    assert check_model(m) == []
    exit_mmap(m, mm)
    assert free_counts(m) == start
    assert check_model(m) == []


@pytest.mark.parametrize("era", ERAS)
def test_pte_locks_are_distinct_records(make_model: MakeModel, era: str) -> None:
    pages = 2 * P
    m = make_model(era, users=1, pages=pages, cow=0.0)
    fam = build_family(m, 1, pages, 0.0)
    child = fam.children[0]
    locks = {
        "parent, page 0": m.pte_lock_word(fam.parent * m.ptrs),
        "parent, page 1": m.pte_lock_word(fam.parent * m.ptrs + P),
        "child, page 0": m.pte_lock_word(child * m.ptrs),
        "child, page 1": m.pte_lock_word(child * m.ptrs + P),
    }
    assert len(set(locks.values())) == 4, locks
    assert not set(locks.values()) & {m.ptl_word(fam.parent), m.ptl_word(child)}
    # The same PTE page, the same lock: every PTE of a PTE page shares it.
    assert m.pte_lock_word(fam.parent * m.ptrs + P - 1) == locks["parent, page 0"]
    for w in locks.values():
        assert m.describe_lock(w).startswith("ptl(pte page ")
    assert m.describe_lock(m.ptl_word(child)) == f"ptl(mm {child})"
    # Four PTE pages in all, each its own block.
    pte_pages = {pte_page_of(m, mm, vpn) for mm in (fam.parent, child) for vpn in (0, P)}
    assert len(pte_pages) == 4


@pytest.mark.parametrize("era", ERAS)
def test_walk_takes_one_pte_lock_per_present_pte(make_model: MakeModel, era: str) -> None:
    """page_referenced: one PTE lock round trip per present PTE visited (here the parent's,
    young, and the child's, old since the fork copied it)."""
    m = make_model(era, users=1, pages=4, cow=0.0)
    fam = build_family(m, 1, 4, 0.0)
    page = m.pte_of(fam.parent, 3)[0]
    held = m.seg["ptl"]["owner"]
    assert not held.any()
    before = acquisitions(m, "page_referenced_one")
    assert page_referenced(m, page) == (1, 2)
    assert acquisitions(m, "page_referenced_one") - before == 2


@pytest.mark.parametrize("era", ERAS)
def test_fork_copies_one_pmd_worth_at_a_time_under_both_pte_locks(make_model: MakeModel, era: str) -> None:
    """Three PTE pages' worth mapped, the middle one never touched: the fork copies two PTE
    pages, each under the child's then the parent's PTE lock (4 round trips), and
    allocates the child's pud, pmd and two PTE pages, each populated under the child's
    page_table_lock (4 more); the untouched range gets no PTE page in the child."""
    m = make_model(era, caps=small_caps(3, 3 * P, 64))
    parent = mm_alloc(m)
    v = do_mmap(m, parent, 0, 3 * P)
    touched = np.r_[np.arange(0, 10), np.arange(2 * P, 2 * P + 10)]
    do_anonymous_pages(m, parent, v, touched)
    start = free_counts(m)
    before = acquisitions(m, "dup_mmap")
    child = dup_mmap(m, parent)
    assert acquisitions(m, "dup_mmap") - before == 2 * 2 + 4
    assert _taken(m, start) == {"pgd": 1, "pud": 1, "pmd": 1, "pte": 2}
    assert m.pte_index(child * m.ptrs + P) == -1  # nothing to copy there
    for vpn in touched.tolist():
        pp, pf = m.pte_of(parent, vpn)
        cp, cf = m.pte_of(child, vpn)
        assert cp == pp and cf == PTE_PRESENT and pf == PTE_PRESENT | PTE_YOUNG  # both write-protected
        assert pte_page_of(m, child, vpn) != pte_page_of(m, parent, vpn)
    assert int(m.mm["rss"][child]) == len(touched)
    assert check_model(m) == []
    exit_mmap(m, child)
    assert free_counts(m) == start
    exit_mmap(m, parent)


@pytest.mark.parametrize("era", ERAS)
def test_scan_finds_every_pte_as_the_walk_does(make_model: MakeModel, era: str) -> None:
    """scan's one-load PTE lookup (pte_page_bases) agrees with the four levels
    (pte_offset_map) at every address of every mm, the never-touched middle PTE page
    (none) and an exited mm (no pgd) included."""
    m = make_model(era, caps=small_caps(3, 3 * P, 64))
    parent = mm_alloc(m)
    v = do_mmap(m, parent, 0, 3 * P)
    do_anonymous_pages(m, parent, v, np.r_[np.arange(0, 10), np.arange(2 * P, 2 * P + 10)])
    child = dup_mmap(m, parent)
    gone = dup_mmap(m, child)
    exit_mmap(m, gone)
    bases, per_mm = pte_page_bases_of(m)
    assert per_mm == 3
    pte0 = int(m.g[G.PTE0])
    for mm in range(m.caps.mms):
        for vpn in range(m.ptrs):
            b = int(bases[mm * per_mm + (vpn >> PMD_SHIFT)])
            found = -1 if b < 0 else (b + 2 * (vpn & (P - 1)) - pte0) // 2
            assert found == m.pte_index(mm * m.ptrs + vpn), (mm, vpn)
    assert int(bases[gone * per_mm]) == -1 and int(bases[parent * per_mm + 1]) == -1
    assert check_model(m) == []


@pytest.mark.parametrize("era", ERAS)
def test_exit_frees_every_block(make_model: MakeModel, era: str) -> None:
    n, pages = 5, P + 7
    m = make_model(era, users=n, pages=pages, cow=0.5)
    start = free_counts(m)
    assert start == {k: m.caps.capacity(k) for k in PGTABLE_KINDS}
    fam = build_family(m, n, pages, 0.5, seed=2)
    used = {k: start[k] - v for k, v in free_counts(m).items()}
    assert used == {"pgd": n + 1, "pud": n + 1, "pmd": n + 1, "pte": 2 * (n + 1)}
    for mm in [*fam.children, fam.parent]:
        exit_mmap(m, mm)
        assert int(m.mm["pgd"][mm]) == -1
    assert free_counts(m) == start
    assert m.counts()["pages"] == 0


@pytest.mark.parametrize("era", ERAS)
def test_swap_in_at_an_exited_mms_address_finds_no_pte(make_model: MakeModel, era: str) -> None:
    """A refault for an mm that exited after try_to_unmap: its tables are gone, the
    address has no PTE (pte_offset_map: pgd none), nothing is faulted in."""
    m = make_model(era, users=2, pages=3, cow=0.0)
    fam = build_family(m, 2, 3, 0.0)
    page = m.pte_of(fam.parent, 1)[0]
    m.pte_flags[:] &= ~PTE_YOUNG
    slots, _ = try_to_unmap(m, page)
    gone = fam.children[0]
    assert gone * m.ptrs + 1 in slots
    assert m.pte_of(gone, 1) == (page, PTE_SWAP)
    exit_mmap(m, gone)
    assert do_swap_page(m, page, [gone * m.ptrs + 1]) == 0
    rest = [s for s in slots if s // m.ptrs != gone]
    assert do_swap_page(m, page, rest) == len(rest)
    assert int(m.page_mapcount[page]) == len(rest) and int(m.page_swapcount[page]) == 0


def test_a_pte_page_in_two_tables_is_caught(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=1, pages=4, cow=1.0, check=False)
    fam = build_family(m, 1, 4, 1.0)
    child = fam.children[0]
    # The child's pmd entry pointed at the parent's PTE page: its own PTE page leaks.
    pmd_of = {}
    for mm in (fam.parent, child):
        pud = int(m.pgd_table[int(m.mm["pgd"][mm]), 0]) - 1
        pmd_of[mm] = int(m.pud_table[pud, 0]) - 1
    own = int(m.pmd_table[pmd_of[child], 0]) - 1
    m.pmd_table[pmd_of[child], 0] = m.pmd_table[pmd_of[fam.parent], 0]
    found = check_model(m)
    assert any("pte: 1 blocks reached from two page-table entries" in f for f in found), found
    assert any(f"pte: 1 records neither in use nor free (leaked), e.g. {own}" in f for f in found), found


def test_a_freed_block_in_a_live_table_is_caught(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=1, pages=4, cow=0.0, check=False)
    fam = build_family(m, 1, 4, 0.0)
    pte_page = pte_page_of(m, fam.children[0], 0)
    m.flush_slab_caches()
    tops = m.header["top"][0]
    kk = ALLOC_KINDS.index("pte")
    m.seg["free_pte"][tops[kk]] = pte_page
    tops[kk] += 1
    found = check_model(m)
    want = f"pte: 1 blocks in a live mm's page table but free, e.g. {pte_page}"
    assert any(want in f for f in found), found


@pytest.mark.parametrize("era", ERAS)
def test_batched_faults_take_each_pte_page_lock_once(make_model: MakeModel, era: str) -> None:
    """A batch of PTEs in two PTE pages (COW, the owner's touch, mprotect's
    change_protection, exit's zap) takes each PTE page's lock once, in address order."""
    from shared_model.memory import do_wp_pages, touch_pages
    from shared_model.mmap import do_mprotect

    pages = P + 4
    m = make_model(era, users=1, pages=pages, cow=0.0)
    fam = build_family(m, 1, pages, 0.0)
    child = fam.children[0]
    cv = int(m.mm["vma_head"][child])
    vpns = np.array([0, 1, P, P + 1])

    def taken(site: str, op: Callable[[], object]) -> int:
        before = acquisitions(m, site)
        op()
        return acquisitions(m, site) - before

    assert taken("do_wp_page", lambda: do_wp_pages(m, child, cv, vpns)) == 2
    assert [m.pte_of(child, int(v))[1] for v in vpns] == [PTE_PRESENT | PTE_YOUNG | PTE_WRITE] * 4
    assert taken("do_anonymous_page", lambda: touch_pages(m, child, vpns)) == 2
    assert taken("vma_adjust", lambda: do_mprotect(m, fam.parent, 0, pages, VM_READ)) == 2
    assert all(not m.pte_of(fam.parent, v)[1] & PTE_WRITE for v in range(pages))
    assert taken("exit_mmap", lambda: exit_mmap(m, child)) == 2


@pytest.mark.parametrize("era", ERAS)
def test_munmap_frees_the_tables_no_other_vma_lies_under(make_model: MakeModel, era: str) -> None:
    """Three VMAs: [0, 10) and [10, 20) share PTE page 0, [2P, 2P + 10) has PTE page 2 to
    itself.  Unmapping the third frees its PTE page; unmapping the first keeps PTE page 0
    (the second lies under it); unmapping the second then frees it, and the pmd and pud
    above, which no VMA lies under any more.  The pgd stays until exit."""
    from shared_model.memory import do_munmap

    m = make_model(era, caps=small_caps(2, 3 * P, 64))
    mm = mm_alloc(m)
    start = free_counts(m)
    vs = [do_mmap(m, mm, s, 10) for s in (0, 10, 2 * P)]
    for v, s in zip(vs, (0, 10, 2 * P), strict=True):
        do_anonymous_pages(m, mm, v, np.arange(s, s + 10))
    assert _taken(m, start) == {"pgd": 0, "pud": 1, "pmd": 1, "pte": 2}
    do_munmap(m, mm, vs[2])
    assert _taken(m, start) == {"pgd": 0, "pud": 1, "pmd": 1, "pte": 1}
    assert m.pte_index(mm * m.ptrs + 2 * P) == -1
    do_munmap(m, mm, vs[0])
    assert _taken(m, start) == {"pgd": 0, "pud": 1, "pmd": 1, "pte": 1}
    assert m.pte_of(mm, 10)[1] & PTE_PRESENT and m.pte_of(mm, 0) == (-1, 0)
    assert check_model(m) == []
    do_munmap(m, mm, vs[1])
    assert free_counts(m) == start
    assert int(m.mm["rss"][mm]) == 0
    assert check_model(m) == []
    exit_mmap(m, mm)

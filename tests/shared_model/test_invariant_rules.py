"""check_model's rules 9-13, one corruption at a time: each rule stays quiet on the sound
model, reports its own corruption (by the sentence that names it), and is quiet again once
the corruption is undone.  The corruptions are written into the segment directly, as a
bug in the code under test would leave them.

9  a mapped page whose page->mapping is a freed anon_vma (use after free);
10 a VMA with an empty range, with more than protection bits, two VMAs overlapping;
11 3.19's degree, 6.0's num_children and num_active_vmas off by one;
12 an interval tree with a wrong rb_subtree_last, with a black height off, with a node
   missing (the tree holds fewer AVCs than the list);
13 a live mm without a pgd, a page-table block reached from two entries, a block
   neither in a table nor free (leaked)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from shared_model.build import build_family
from shared_model.interval_tree import BLACK, RED, avc_last_pgoff
from shared_model.invariants import check_model
from shared_model.layout import PTRS_PER_TABLE, Capacities
from shared_model.memory import do_anonymous_pages, do_mmap, mm_alloc
from shared_model.model import Model

MakeModel = Callable[..., Model]
P = PTRS_PER_TABLE


@contextmanager
def corrupted(field: np.ndarray, i: int, value: int) -> Iterator[None]:
    was = field[i].copy()
    field[i] = value
    try:
        yield
    finally:
        field[i] = was


def fires(m: Model, needle: str) -> list[str]:
    found = check_model(m)
    assert any(needle in f for f in found), (needle, found)
    return found


def quiet(m: Model) -> None:
    assert check_model(m) == []


def family(make_model: MakeModel, era: str, users: int = 3) -> Model:
    m = make_model(era, users=users, pages=4, cow=0.5)
    build_family(m, users, 4, 0.5)
    quiet(m)
    return m


# ---------------------------------------------------------------------------- 9


@pytest.mark.parametrize("era", ["2.6.34", "3.7", "6.0"])
def test_rule_9_page_mapping_at_a_freed_anon_vma(make_model: MakeModel, era: str) -> None:
    m = family(make_model, era)
    page = int(np.flatnonzero((m.page["in_use"] == 1) & (m.page["mapping"] >= 0))[0])
    freed = int(np.flatnonzero(m.anon_vma["in_use"] != 1)[0])
    with corrupted(m.page["mapping"], page, freed):
        found = fires(m, "points at a freed anon_vma (use after free)")
        assert any(f"page->mapping is anon_vma {freed}, freed" in f for f in found), found
    quiet(m)


# ---------------------------------------------------------------------------- 10


def _two_vmas(make_model: MakeModel, era: str) -> tuple[Model, int, int]:
    m = make_model(era, caps=Capacities(mms=2, vmas=8, anon_vmas=8, avcs=16, pages=16,
                                        ptrs_per_mm=16, cpus=1))
    mm = mm_alloc(m)
    a = do_mmap(m, mm, 0, 4)
    b = do_mmap(m, mm, 8, 4)
    do_anonymous_pages(m, mm, a, np.arange(2))
    quiet(m)
    return m, a, b


@pytest.mark.parametrize("era", ["2.6.33", "3.7"])
def test_rule_10_vma_range_flags_and_overlap(make_model: MakeModel, era: str) -> None:
    m, a, b = _two_vmas(make_model, era)
    vma = m.vma
    with corrupted(vma["vm_end"], b, int(vma["vm_start"][b])):
        fires(m, f"vma {b}: empty or inverted range [8, 8)")
    quiet(m)
    with corrupted(vma["vm_flags"], b, int(vma["vm_flags"][b]) | 0x8):
        fires(m, f"vma {b}: vm_flags")
        fires(m, "hold more than protection bits")
    quiet(m)
    with corrupted(vma["vm_end"], a, 10):
        fires(m, f"vma {a} [0, 10) and vma {b} [8, 12) of mm")
    quiet(m)


# ---------------------------------------------------------------------------- 11


@pytest.mark.parametrize("era,field", [("3.19", "degree"), ("6.0", "num_children"),
                                       ("6.0", "num_active_vmas")])
def test_rule_11_reuse_counters(make_model: MakeModel, era: str, field: str) -> None:
    m = family(make_model, era)
    av = int(np.flatnonzero(m.anon_vma["in_use"] == 1)[0])
    have = int(m.anon_vma[field][av])
    for wrong in (have + 1, have - 1):
        with corrupted(m.anon_vma[field], av, wrong):
            fires(m, f"anon_vmas with a wrong {field}, e.g. anon_vma {av}: {wrong} recorded, "
                     f"{have} counted")
    quiet(m)


# ---------------------------------------------------------------------------- 12


def _root_of_biggest_tree(m: Model) -> tuple[int, int]:
    av = int(np.argmax(m.anon_vma["nr_members"]))
    return av, int(m.anon_vma["rb_root"][av])


@pytest.mark.parametrize("era", ["3.7", "6.0"])
def test_rule_12_interval_tree(make_model: MakeModel, era: str) -> None:
    m = family(make_model, era, users=7)
    av, root = _root_of_biggest_tree(m)
    avc = m.avc
    with corrupted(avc["rb_subtree_last"], root, int(avc["rb_subtree_last"][root]) + 5):
        fires(m, f"anon_vma {av}'s interval tree: a node's rb_subtree_last is not the largest")
    quiet(m)
    # A red node made black: the paths through it hold one black node more (no other rule).
    reds = [x for x in np.flatnonzero(avc["anon_vma"] == av).tolist()
            if avc["in_use"][x] == 1 and avc["rb_color"][x] == RED]
    assert reds, "a tree of 8 nodes has a red node"
    with corrupted(avc["rb_color"], reds[0], BLACK):
        found = fires(m, f"anon_vma {av}'s interval tree: paths with different numbers of black nodes")
        assert len(found) == 1, found
    quiet(m)
    # A red leaf cut out of the tree (its parent's link cleared, rb_subtree_last redone up
    # to the root): still a red-black tree, but of one AVC fewer than the list holds.
    leaf = next(x for x in reds if avc["rb_left"][x] < 0 and avc["rb_right"][x] < 0)
    saved = {f: avc[f].copy() for f in ("rb_left", "rb_right", "rb_subtree_last")}
    try:
        up = int(avc["rb_parent"][leaf])
        side = "rb_left" if avc["rb_left"][up] == leaf else "rb_right"
        avc[side][up] = -1
        while up >= 0:
            kids = [int(avc[c][up]) for c in ("rb_left", "rb_right") if avc[c][up] >= 0]
            own = int(avc_last_pgoff(m.w32, m.g, up))
            avc["rb_subtree_last"][up] = max([own] + [int(avc["rb_subtree_last"][k]) for k in kids])
            up = int(avc["rb_parent"][up])
        n = int(m.anon_vma["nr_members"][av])
        found = fires(m, f"anon_vma {av}'s interval tree holds {n - 1} AVCs, its list {n}")
        assert len(found) == 1, found
    finally:
        for f, a in saved.items():
            avc[f][:] = a
    quiet(m)


def test_rule_12_is_not_applied_before_the_tree(make_model: MakeModel) -> None:
    """3.0 has no interval tree: its (unused) rb fields are not checked."""
    m = family(make_model, "3.0", users=3)
    av = int(np.argmax(m.anon_vma["nr_members"]))
    with corrupted(m.anon_vma["rb_root"], av, 0):
        quiet(m)


# ---------------------------------------------------------------------------- 13


@pytest.mark.parametrize("era", ["2.6.33", "3.7"])
def test_rule_13_page_tables(make_model: MakeModel, era: str) -> None:
    m = make_model(era, caps=Capacities(mms=3, vmas=8, anon_vmas=8, avcs=16, pages=32,
                                        ptrs_per_mm=2 * P, cpus=1))
    a, b = mm_alloc(m), mm_alloc(m)
    for mm in (a, b):
        do_anonymous_pages(m, mm, do_mmap(m, mm, 0, 2), np.arange(2))
    quiet(m)
    with corrupted(m.mm["pgd"], b, -1):
        fires(m, f"1 live mms without a pgd, e.g. mm {b}")
    # b's pgd entry made to point at a's pud block: one block, two entries; b's own leaked.
    pgd_a, pgd_b = int(m.mm["pgd"][a]), int(m.mm["pgd"][b])
    row_b = m.pgd_table[pgd_b]
    with corrupted(row_b, 0, int(m.pgd_table[pgd_a, 0])):
        found = fires(m, "pud: 1 blocks reached from two page-table entries")
        assert any("pud: 1 records neither in use nor free (leaked)" in f for f in found), found
    quiet(m)
    # A pmd block taken off the free pool and put in no table: leaked.
    before = m.free_count("pmd")
    taken = m.alloc("pmd", 1)
    assert m.free_count("pmd") == before - 1
    fires(m, f"pmd: 1 records neither in use nor free (leaked), e.g. {int(taken[0])}")
    m.free("pmd", taken)
    quiet(m)

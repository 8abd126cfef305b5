"""The structural eras (3.7 interval tree, 3.19 degree reuse, 6.0 num_children /
num_active_vmas) and the VMA operations (split, merge, mprotect) they need.

Expected counts are derived from the kernel's rules (kernel-rmap.md; mm/rmap.c and
mm/mmap.c of 3.19 and 6.0), never read off a run:

* fork-chain: without reuse every generation adds an anon_vma level that the surviving
  VMA links to, so after g generations g + 1 anon_vmas and g + 1 AVCs; with reuse (both
  3.19 and 6.0) generation 1 has R and X, generation 2 adds Y, and from generation 3 on
  the fork reuses X or Y alternately: 3 and 3.
* mprotect-split with one page per piece: splitting piece i (odd) out of the VMA appends
  the piece below it and then the rest above it to the anon_vma's list, so the parent's
  pieces sit on the list in the order 1, 0, 3, 2, ...; each child's K pieces follow in
  address order.  A list walk for the page of piece j finds the parent's mapping first
  and child N's last, at entry N*K + j + 1; a tree walk visits exactly the N + 1 VMAs that
  hold the page.
* cve-2022-42703: the reference's sequence; 3.19 merges Q's two VMAs and frees P2 under
  Q's page, 6.0 refuses the second reuse and stays clean.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import VM_READ, VM_WRITE, Capacities
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    mm_alloc,
    mm_vmas,
)
from shared_model.mmap import do_mprotect, split_vma
from shared_model.model import Model, OutOfMemory
from shared_model.rmap import page_referenced
from shared_model.vmscan import walk_lengths_of, walk_lengths_tree_of
from stress.engine.config import RunConfig
from stress.engine.workloads import cve_2022_42703, fork_chain, mprotect_split

MakeModel = Callable[..., Model]
RW = VM_READ | VM_WRITE
CHAIN_ERAS = [n for n, e in ERAS.items() if e.chain]
REUSE_ERAS = [n for n, e in ERAS.items() if e.reuse != "none"]
TREE_ERAS = [n for n, e in ERAS.items() if e.tree]
SMALL = Capacities(mms=6, vmas=64, anon_vmas=64, avcs=256, pages=96, ptrs_per_mm=16, cpus=1)


def test_the_later_eras() -> None:
    got = {n: (e.chain, e.lock_root, e.lock, e.tree, e.reuse) for n, e in ERAS.items()
           if n in ("3.7", "3.19", "6.0")}
    assert got == {"3.7": (True, True, "mutex", True, "none"),
                   "3.19": (True, True, "rwsem", True, "degree"),
                   "6.0": (True, True, "rwsem", True, "active")}
    assert not any(ERAS[n].tree or ERAS[n].reuse != "none" for n in ("2.6.33", "2.6.34", "2.6.36", "3.0"))


# ---------------------------------------------------------------------------- fork-chain


def run_chain(era: str, generations: int, pages: int = 4) -> dict:
    m = Model.create(fork_chain.capacities(era, generations, pages), era, entry_cost_ns=0)
    try:
        out = fork_chain.fork_chain(m, generations, pages)
        assert check_model(m) == []
        out["final"] = m.counts()
    finally:
        m.close()
        m.seg.unlink()
    return out


@pytest.mark.parametrize("era", ["2.6.34", "2.6.36", "3.0", "3.7"])
def test_fork_chain_grows_a_level_per_generation_without_reuse(era: str) -> None:
    s = run_chain(era, 70)["series"]
    assert s["anon_vmas"] == list(range(2, 72))
    assert s["avcs"] == list(range(2, 72))
    assert s["vmas"] == [1] * 70


@pytest.mark.parametrize("era", REUSE_ERAS)
def test_fork_chain_stays_three_levels_with_reuse(era: str) -> None:
    out = run_chain(era, 70)
    s = out["series"]
    assert s["anon_vmas"] == [2] + [3] * 69
    assert s["avcs"] == [2] + [3] * 69
    assert out["final"] == {"mms": 1, "vmas": 1, "anon_vmas": 3, "avcs": 3, "pages": 4}


def test_fork_chain_stops_before_the_segment_fills(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEGMENT_LEVELS 20: 24 anon_vmas, 56 AVCs.  Before the fork of generation g, g + 1
    anon_vmas and AVCs are live; the fork needs an anon_vma (g + 1 <= 23) and g + 3 AVCs
    (56 - g - 1 >= g + 3): the anon_vma runs out first, at g = 23."""
    monkeypatch.setattr(fork_chain, "SEGMENT_LEVELS", 20)
    out = run_chain("2.6.34", 100)
    assert out["stopped"]["generation"] == 23
    assert len(out["series"]["anon_vmas"]) == 23
    assert "about to fill" in out["stopped"]["reason"]


# ---------------------------------------------------------------------------- split and merge


def one_vma(make_model: MakeModel, era: str, pages: int = 10) -> tuple[Model, int, int]:
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, pages)
    do_anonymous_pages(m, mm, v, np.arange(pages))
    return m, mm, v


def ranges(m: Model, mm: int) -> list[tuple[int, int, int]]:
    """mm's VMAs by address: (start, end, vm_flags)."""
    return sorted((int(m.vma["vm_start"][v]), int(m.vma["vm_end"][v]), int(m.vma["vm_flags"][v]))
                  for v in mm_vmas(m, mm))


@pytest.mark.parametrize("era", list(ERAS))
def test_mprotect_splits_and_merges_back(make_model: MakeModel, era: str) -> None:
    """mprotect of the middle: three VMAs on one anon_vma, each on its list (chain eras:
    one AVC each); back: vma_merge case 6, prev absorbs the range and next."""
    m, mm, _ = one_vma(make_model, era)
    do_mprotect(m, mm, 3, 4, VM_READ)
    assert ranges(m, mm) == [(0, 3, RW), (3, 7, VM_READ), (7, 10, RW)]
    c = m.counts()
    assert (c["vmas"], c["anon_vmas"], c["avcs"]) == (3, 1, 3 if ERAS[era].chain else 0)
    assert check_model(m) == []
    do_mprotect(m, mm, 3, 4, RW)
    assert ranges(m, mm) == [(0, 10, RW)]
    c = m.counts()
    assert (c["vmas"], c["anon_vmas"], c["avcs"]) == (1, 1, 1 if ERAS[era].chain else 0)
    for p in np.flatnonzero(m.page_mapping >= 0).tolist():
        assert page_referenced(m, p)[1] == 1


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_vma_merge_shifts_a_boundary(make_model: MakeModel, era: str) -> None:
    """[0,5) RO [5,10) RW: mprotect [5,7) RO is case 5 (prev grows, next's start and pgoff
    move up); then [3,5) RW is case 4 (prev shrinks, next grows down)."""
    m, mm, _ = one_vma(make_model, era)
    do_mprotect(m, mm, 0, 5, VM_READ)
    do_mprotect(m, mm, 5, 2, VM_READ)
    assert ranges(m, mm) == [(0, 7, VM_READ), (7, 10, RW)]
    assert sorted(int(m.vma["vm_pgoff"][v]) for v in mm_vmas(m, mm)) == [0, 7]
    assert check_model(m) == []
    do_mprotect(m, mm, 5, 2, RW)
    assert ranges(m, mm) == [(0, 5, VM_READ), (5, 10, RW)]
    assert check_model(m) == []


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_a_failed_split_changes_nothing(make_model: MakeModel, era: str) -> None:
    """anon_vma_clone of the new piece cannot get its AVC: __split_vma frees the piece and
    returns -ENOMEM; mprotect leaves the VMA as it was."""
    m, mm, _ = one_vma(make_model, era)
    child = dup_mmap(m, mm)
    before = m.counts()
    m.alloc_fail_p = 1.0
    cv = mm_vmas(m, child)[0]
    with pytest.raises(OutOfMemory):
        split_vma(m, cv, 4, new_below=True)
    with pytest.raises(OutOfMemory):
        do_mprotect(m, child, 2, 2, VM_READ)
    m.alloc_fail_p = 0.0
    assert m.counts() == before
    assert ranges(m, child) == [(0, 10, RW)]
    assert check_model(m) == []


def untouched_beside_read_only(make_model: MakeModel, era: str) -> tuple[Model, int, int]:
    """(model, mm, a): VMA a = [0,5) never touched (no anon_vma) beside [5,10) read-only
    with its five pages faulted in."""
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    a = do_mmap(m, mm, 0, 5)
    b = do_mmap(m, mm, 5, 5)
    do_anonymous_pages(m, mm, b, np.arange(5, 10))
    do_mprotect(m, mm, 5, 5, VM_READ)
    return m, mm, a


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_a_failed_import_changes_nothing(make_model: MakeModel, era: str) -> None:
    """[0,5) never touched (no anon_vma) beside [5,10) RO with pages: mprotect [5,10) RW
    merges them (is_mergeable_anon_vma: one side has none), and the VMA that imports the
    pages must first clone the other's chain; with that allocation failing vma_adjust
    changes nothing; without, one VMA on one anon_vma."""
    m, mm, a = untouched_beside_read_only(make_model, era)
    before = m.counts()
    m.alloc_fail_p = 1.0
    with pytest.raises(OutOfMemory):
        do_mprotect(m, mm, 5, 5, RW)
    m.alloc_fail_p = 0.0
    assert m.counts() == before and check_model(m) == []
    do_mprotect(m, mm, 5, 5, RW)
    assert mm_vmas(m, mm) == [a] and ranges(m, mm) == [(0, 10, RW)]
    c = m.counts()
    assert (c["vmas"], c["anon_vmas"], c["avcs"]) == (1, 1, 1)


@pytest.mark.parametrize("era", list(ERAS))
def test_an_importing_vma_joins_the_list(make_model: MakeModel, era: str) -> None:
    """[0,5) never touched beside [5,10) RO with pages: mprotect [5,10) RW merges them and
    the VMA that imports the pages takes the other's anon_vma.  2.6.33's vma_adjust puts
    it on that anon_vma's list (``__anon_vma_link(importer)``); later eras clone the chain.
    Either way every page's walk finds its one mapping."""
    m, mm, a = untouched_beside_read_only(make_model, era)
    do_mprotect(m, mm, 5, 5, RW)
    assert mm_vmas(m, mm) == [a] and ranges(m, mm) == [(0, 10, RW)]
    assert check_model(m) == []
    pages = np.flatnonzero(m.page_mapping >= 0).tolist()
    assert len(pages) == 5
    for p in pages:
        assert page_referenced(m, p)[1] == 1


@pytest.mark.parametrize("era", CHAIN_ERAS)
def test_a_new_neighbour_shares_the_anon_vma(make_model: MakeModel, era: str) -> None:
    """find_mergeable_anon_vma: a VMA that faults next to a compatible one with a single
    AVC takes its anon_vma (one anon_vma, two AVCs), and then they can merge."""
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    a = do_mmap(m, mm, 0, 4)
    do_anonymous_pages(m, mm, a, np.arange(4))
    b = do_mmap(m, mm, 4, 4)
    do_anonymous_pages(m, mm, b, np.arange(4, 8))
    assert m.vma["anon_vma"][a] == m.vma["anon_vma"][b]
    c = m.counts()
    assert (c["anon_vmas"], c["avcs"]) == (1, 2)
    assert check_model(m) == []


# ---------------------------------------------------------------------------- mprotect-split


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("pieces,users", [(8, 0), (8, 1), (9, 2), (40, 3)])
def test_mprotect_split_walks(era: str, pieces: int, users: int) -> None:
    caps = mprotect_split.capacities(era, pieces, users, pieces)
    m = Model.create(caps, era, entry_cost_ns=0)
    try:
        mprotect_split.build(m, pieces, users, pieces)
        pages = np.flatnonzero(m.page_mapping >= 0)
        index = m.page["index"][pages].astype(np.int64)
        chain = ERAS[era].chain
        assert m.counts() == {"mms": users + 1, "vmas": pieces * (users + 1),
                              "anon_vmas": 1 + pieces * users if chain else 1,
                              "avcs": pieces + 2 * pieces * users if chain else 0, "pages": pieces}
        visited = walk_lengths_of(m, pages)
        if ERAS[era].tree:
            assert (visited == users + 1).all()
            v2, nodes = walk_lengths_tree_of(m, pages)
            n = pieces * (users + 1)
            height = 2 * math.log2(n + 1)
            assert (v2 == visited).all() and (nodes >= users + 1).all()
            assert (nodes <= (users + 2) * 2 * height + 2).all()
        elif users:
            assert (visited == users * pieces + index + 1).all()
        else:  # list order 1, 0, 3, 2, ...; with K odd the last piece comes last
            last_odd = (index == pieces - 1) & (pieces % 2 == 1)
            assert (visited == np.where(last_odd, pieces, (index ^ 1) + 1)).all()
        assert check_model(m) == []
    finally:
        m.close()
        m.seg.unlink()


# ---------------------------------------------------------------------------- cve-2022-42703


def cve_model(era: str) -> tuple[Model, dict]:
    m = Model.create(cve_2022_42703.capacities(RunConfig(era=era, cpus=1)), era, entry_cost_ns=0)
    return m, cve_2022_42703.cve_sequence(m)


def test_cve_2022_42703_on_3_19_leaves_a_dangling_mapping() -> None:
    m, r = cve_model("3.19")
    try:
        assert len(r["q_vmas"]) == 1  # q1 absorbed q2: one VMA over pages 0 and 1
        out = check_model(m)
        assert len(out) == 2
        assert "not found by an rmap walk" in out[0]
        assert "points at a freed anon_vma (use after free)" in out[1]
        assert "walks its freed list" in out[1]
        dangling = [p for p in np.flatnonzero(m.page["in_use"] == 1).tolist()
                    if m.anon_vma["in_use"][m.page_mapping[p]] != 1]
        assert len(dangling) == 1 and m.page_index[dangling[0]] == 1
    finally:
        m.close()
        m.seg.unlink()


@pytest.mark.parametrize("era", ["6.0", "3.7", "2.6.36", "2.6.34", "2.6.33"])
def test_cve_2022_42703_sequence_is_clean_elsewhere(era: str) -> None:
    m, r = cve_model(era)
    try:
        if ERAS[era].chain:  # q1 and q2 have different anon_vmas: no merge
            assert len(r["q_vmas"]) == 2 and len(set(r["q_vmas"].values())) == 2
        assert check_model(m) == []
    finally:
        m.close()
        m.seg.unlink()


@pytest.mark.parametrize("era,status", [("3.19", 1), ("6.0", 0)])
def test_cve_2022_42703_run(era: str, status: int) -> None:
    p = subprocess.run([sys.executable, "-m", "stress", "run", "--era", era, "--scenario", "cve-2022-42703",
                        "--cpus", "1", "--duration", "0.3", "--quiet"], capture_output=True, text=True,
                       timeout=600, check=False)
    assert p.returncode == status, p.stderr
    if status:
        assert "VIOLATIONS" in p.stdout and "freed anon_vma" in p.stdout
    else:
        assert "invariants: ok" in p.stdout
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------------- interval tree


@pytest.mark.parametrize("era,after_split", [("3.7", 2), ("3.0", 3)])
def test_tree_order_of_equal_starts(make_model: MakeModel, era: str, after_split: int) -> None:
    """The parent's VMA [0, 4) and its child's have the same start: the tree orders them by
    insertion, the parent's first.  The child COWs page 0, so the parent's page 0 (in R,
    mapped once) is found at the first entry.  The parent then mprotects [2, 4):
    split_vma(new_below) gives the new piece [0, 2), cloned onto R after the child's AVC,
    and the old VMA keeps [2, 4).  A tree walk for page 0 sees the child's [0, 4) (the
    range holds it, the PTE maps the child's copy) and then the new piece: 2 entries; a
    list walk passes the old VMA (now [2, 4)) and the child's before the new piece: 3."""
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 4)
    do_anonymous_pages(m, mm, v, np.arange(4))
    child = dup_mmap(m, mm)
    do_wp_pages(m, child, mm_vmas(m, child)[0], np.array([0]))
    page = m.pte_of(mm, 0)[0]
    assert walk_lengths_of(m, np.array([page]))[0] == 1
    do_mprotect(m, mm, 2, 2, VM_READ)
    assert walk_lengths_of(m, np.array([page]))[0] == after_split
    assert page_referenced(m, page)[1] == after_split


def test_tree_survives_many_erases(make_model: MakeModel) -> None:
    """16 pieces forked into 6 children (112 nodes in the root's tree), the children exiting
    in a shuffled order: after each exit check_model validates every tree (red-black, order,
    rb_subtree_last, exactly the list's AVCs) and each walk still finds every mapping."""
    era = "3.7"
    m = make_model(era, caps=mprotect_split.capacities(era, 16, 6, 32))
    parent = mprotect_split.build(m, 16, 6, 32)
    kids = [int(x) for x in np.flatnonzero(m.mm["in_use"] == 1) if x != parent]
    for k in np.random.default_rng(1).permutation(kids).tolist():
        exit_mmap(m, k)
        assert check_model(m) == []
        pages = np.flatnonzero(m.page_mapping >= 0)
        assert (walk_lengths_of(m, pages) == m.page_mapcount[pages]).all()

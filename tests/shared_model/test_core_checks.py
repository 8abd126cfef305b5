"""Checks of the compiled core that a broken rule cannot pass: each test names the kernel
rule it holds the model to, and derives what it expects from that rule, not from the code.

* pgtable.py: ``pte_lockptr`` gives each PTE page its own split lock (compiled lookup and
  the model's record agree); ``__pte_alloc`` & co. give their block back when another CPU
  populated the entry first (the recheck under mm->page_table_lock).
* interval_tree.py: the checker finds a tree whose paths hold different numbers of black
  nodes (one colour flipped), as well as a red root and a red node with a red child.
* mmap.py: ``is_mergeable_anon_vma`` trusts "no anon_vma" only for a VMA with a single
  AVC (mm/mmap.c, "list_is_singular(&vma->anon_vma_chain)"): a child's VMA, whose chain
  has two AVCs, takes in no neighbour that has no anon_vma; the parent's does.
* swap_state.py: 2.6.34's swap-in puts the page on the oldest anon_vma of the faulting VMA's
  chain (``list_entry(vma->anon_vma_chain.prev)``); 2.6.34 has no ``anon_vma->root``
  (5c341ee1dfc8 added it in 2.6.35), so the field, which the model keeps for the later
  eras, must not decide it.
* swapdev.py: ``SwapIO.wait`` sleeps until the writer has its request slots when that is
  later than the reads' completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.build import build_family
from shared_model.interval_tree import (
    BLACK,
    RED,
    TREE_BLACK_HEIGHT,
    TREE_OK,
    TREE_RED_RED,
    TREE_RED_ROOT,
    interval_tree_check_c,
)
from shared_model.invariants import check_model
from shared_model.layout import (
    PGDIR_SHIFT,
    PTE_YOUNG,
    PTRS_PER_TABLE,
    VM_READ,
    VM_WRITE,
    Capacities,
)
from shared_model.locks import SITE
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, mm_alloc, mm_vmas
from shared_model.mmap import (
    VM_PROT_MASK,
    _is_mergeable_anon_vma,
    can_vma_merge_after,
    can_vma_merge_before,
    do_mprotect,
    vma_merge,
)
from shared_model.model import Model
from shared_model.pgtable import _populate_c, pte_lockptr_c, pte_offset_map_c
from shared_model.rmap import try_to_unmap
from shared_model.swap_state import do_swap_page
from shared_model.swapdev import SwapIO, swap_device_init

MakeModel = Callable[..., Model]
P = PTRS_PER_TABLE
SMALL = Capacities(mms=6, vmas=64, anon_vmas=64, avcs=256, pages=96, ptrs_per_mm=3 * P, cpus=1)


# ---------------------------------------------------------------------------- pgtable.py


@pytest.mark.parametrize("era", ["2.6.33", "3.7"])
def test_each_pte_page_has_its_own_split_lock(make_model: MakeModel, era: str) -> None:
    """Three PTE pages of one mm, then one of a child: the compiled pte_lockptr of a PTE in
    each is that page's ptl record, four distinct locks, shared by all PTEs of a page.  The
    mm's own three are checked before the fork: fork's copy holds the child's and the
    parent's PTE locks at once, which one shared lock would turn into a self-deadlock."""
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 3 * P)
    do_anonymous_pages(m, mm, v, np.array([0, P - 1, P, 2 * P + 5]))

    def lock_of(owner: int, vpn: int) -> int:
        pe = pte_offset_map_c(m.w32, m.g, owner, vpn)
        assert pe >= 0
        lock = pte_lockptr_c(m.g, pe)
        page = (pe - int(m.g[G.PTE0])) // 2 // P  # the PTE page holding it (int32 pairs)
        assert lock == m.pte_page_lock_word(page) == m.pte_lock_word(owner * m.ptrs + vpn)
        return int(lock)

    locks = [lock_of(mm, vpn) for vpn in (0, P, 2 * P + 5)]
    assert len(set(locks)) == 3, locks
    assert lock_of(mm, P - 1) == locks[0]
    child = dup_mmap(m, mm)
    locks.append(lock_of(child, 0))
    assert len(set(locks)) == 4, locks
    assert not set(locks) & {m.ptl_word(mm), m.ptl_word(child)}


@pytest.mark.parametrize("era", ["2.6.34", "3.7"])
def test_populate_gives_its_block_back_when_the_entry_was_populated_first(
        make_model: MakeModel, era: str) -> None:
    """__pud_alloc for a pgd entry another CPU populated meanwhile: a block is taken from
    the pool, the entry is found populated under mm->page_table_lock, and the block goes
    back (no leak: the pud pool's free count is where it was, the entry unchanged)."""
    m = make_model(era, caps=SMALL)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, P)
    do_anonymous_pages(m, mm, v, np.array([0]))
    pgd = int(m.mm["pgd"][mm])
    ew = int(m.g[G.PGD0]) + pgd * P + ((0 >> PGDIR_SHIFT) & (P - 1))
    entry = int(m.words[ew])
    assert entry != 0  # the fault populated it
    free = {k: m.free_count(k) for k in ("pud", "pmd", "pte")}
    st = _populate_c(m.words, m.w32, m.g, m.locks.held, m.scratch, mm, ew, G.K_PUD,
                     SITE["do_anonymous_page"])
    assert st == G.OK
    assert int(m.words[ew]) == entry
    assert {k: m.free_count(k) for k in ("pud", "pmd", "pte")} == free
    assert check_model(m) == []


# ---------------------------------------------------------------------------- interval_tree.py


def _tree_nodes(m: Model, av: int) -> list[int]:
    out, stack = [], [int(m.anon_vma["rb_root"][av])]
    while stack:
        x = stack.pop()
        if x >= 0:
            out.append(x)
            stack += [int(m.avc["rb_left"][x]), int(m.avc["rb_right"][x])]
    return out


def _verdict(m: Model, av: int) -> int:
    return int(interval_tree_check_c(m.w32, m.g, av, int(m.anon_vma["nr_members"][av]))[0])


def test_tree_checker_finds_each_colour_fault(make_model: MakeModel) -> None:
    """The root anon_vma's tree of a 3.7 family (parent and 15 children: 16 nodes).  Each
    colour flip of one node breaks a red-black rule; which one is derived from the tree
    itself: the root made red, a red root; a black node made red next to a red one, a red
    node with a red child (its black height is off too: the walk reports whichever it
    meets first); any other flip (a black node made red with no red neighbour, a red one
    made black) leaves one black node fewer or more on the paths through it than on the
    others: the black height, and nothing else."""
    m = make_model("3.7", users=15, pages=2, cow=0.0)
    build_family(m, 15, 2, 0.0)
    av = int(np.argmax(m.anon_vma["nr_members"]))
    nodes = _tree_nodes(m, av)
    assert len(nodes) == 16 and _verdict(m, av) == TREE_OK
    color, parent = m.avc["rb_color"], m.avc["rb_parent"]
    seen = set()
    for x in nodes:
        was = int(color[x])
        color[x] = RED if was == BLACK else BLACK
        try:
            kids = [int(m.avc["rb_left"][x]), int(m.avc["rb_right"][x])]
            near = [int(parent[x])] + kids
            red_near = any(n >= 0 and color[n] == RED for n in near)
            if parent[x] < 0:
                want = {TREE_RED_ROOT}
            elif was == BLACK and red_near:  # both broken: the walk reports the first it meets
                want = {TREE_RED_RED, TREE_BLACK_HEIGHT}
            else:
                want = {TREE_BLACK_HEIGHT}
            got = _verdict(m, av)
            assert got in want, (x, was, got, want)
            seen.add(got)
        finally:
            color[x] = was
    assert TREE_BLACK_HEIGHT in seen and TREE_RED_ROOT in seen
    assert _verdict(m, av) == TREE_OK
    # A red node with a red child and nothing else wrong: a black node with two red
    # children under a red parent recoloured (it red, they black) keeps every path's
    # black count, and only the red-red rule is broken.
    left, right = m.avc["rb_left"], m.avc["rb_right"]
    fours = [x for x in nodes if color[x] == BLACK and parent[x] >= 0 and color[parent[x]] == RED
             and left[x] >= 0 and right[x] >= 0 and color[left[x]] == RED and color[right[x]] == RED]
    assert fours, "the 16-node tree has such a node"
    x = fours[0]
    kids = (int(left[x]), int(right[x]))
    color[x], color[kids[0]], color[kids[1]] = RED, BLACK, BLACK
    try:
        assert _verdict(m, av) == TREE_RED_RED
    finally:
        color[x], color[kids[0]], color[kids[1]] = BLACK, RED, RED
    assert _verdict(m, av) == TREE_OK


# ---------------------------------------------------------------------------- mmap.py


def _adjacent_unfaulted_then_mprotect_back(m: Model, mm: int) -> int:
    """[4, 8) mapped beside mm's [0, 4) (never touched: no anon_vma), made read-only, then
    read-write again: vma_merge may join it to [0, 4).  The number of VMAs then."""
    do_mmap(m, mm, 4, 4)
    do_mprotect(m, mm, 4, 4, VM_READ)
    do_mprotect(m, mm, 4, 4, VM_READ | VM_WRITE)
    return len(mm_vmas(m, mm))


@pytest.mark.parametrize("era", ["3.0", "3.7", "6.0"])
def test_a_vma_with_two_avcs_does_not_take_in_a_neighbour_without_anon_vma(
        make_model: MakeModel, era: str) -> None:
    m = make_model(era, caps=SMALL)
    parent = mm_alloc(m)
    v = do_mmap(m, parent, 0, 4)
    do_anonymous_pages(m, parent, v, np.arange(4))
    child = dup_mmap(m, parent)
    (cv,) = mm_vmas(m, child)
    chain = 0
    a = int(m.vma["avc_head"][cv])
    while a >= 0:
        chain += 1
        a = int(m.avc["same_vma_next"][a])
    assert chain == 2  # its own anon_vma and the parent's
    cav = int(m.vma["anon_vma"][cv])
    assert not _is_mergeable_anon_vma(m, -1, cav, cv)
    assert not _is_mergeable_anon_vma(m, cav, -1, cv)
    assert _is_mergeable_anon_vma(m, cav, cav, cv)  # the same anon_vma: always
    (pv,) = mm_vmas(m, parent)
    assert _is_mergeable_anon_vma(m, -1, int(m.vma["anon_vma"][pv]), pv)  # single AVC
    assert _adjacent_unfaulted_then_mprotect_back(m, child) == 2
    assert _adjacent_unfaulted_then_mprotect_back(m, parent) == 1
    assert check_model(m) == []


def test_vma_merge_needs_the_range_to_continue_the_neighbours_pgoff(make_model: MakeModel) -> None:
    """mm/mmap.c's can_vma_merge_after / can_vma_merge_before: a range joins prev only
    when ``prev->vm_pgoff + vma_pages(prev) == pgoff``, and next only when ``next->vm_pgoff
    == pgoff + pglen``.  Every anonymous VMA here has vm_pgoff == vm_start, so mprotect's
    merges always pass this test; asked directly with a pgoff that does not continue the
    neighbour, both refuse, and vma_merge leaves the VMAs as they were."""
    m = make_model("3.0", caps=SMALL)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 4)
    flags, av = int(m.vma["vm_flags"][v]) & VM_PROT_MASK, int(m.vma["anon_vma"][v])
    assert can_vma_merge_after(m, v, flags, av, 4)
    assert [can_vma_merge_after(m, v, flags, av, pg) for pg in (3, 5, 40)] == [False] * 3
    assert can_vma_merge_before(m, v, flags, av, 0)
    assert [can_vma_merge_before(m, v, flags, av, pg) for pg in (1, 4)] == [False] * 2
    assert vma_merge(m, mm, v, 4, 8, flags, av, 9) == -1  # adjacent to v, pgoff 9 not 4
    assert (int(m.vma["vm_start"][v]), int(m.vma["vm_end"][v]), int(m.vma["vm_pgoff"][v])) == (0, 4, 0)
    assert vma_merge(m, mm, v, 4, 8, flags, av, 4) == v  # the contiguous one joins
    assert (int(m.vma["vm_start"][v]), int(m.vma["vm_end"][v])) == (0, 8)
    assert check_model(m) == []


# ---------------------------------------------------------------------------- swap_state.py


def test_2634_swapin_takes_the_oldest_avc_of_the_chain_not_a_root_field(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=3, pages=2, cow=1.0)
    fam = build_family(m, 3, 2, 1.0)
    av0 = int(m.vma["anon_vma"][int(m.mm["vma_head"][fam.parent])])
    child = fam.children[1]
    cv = int(m.mm["vma_head"][child])
    own = int(m.vma["anon_vma"][cv])
    page = m.pte_of(child, 0)[0]
    assert int(m.page_mapping[page]) == own
    m.pte_flags[:] &= ~PTE_YOUNG
    slots, _ = try_to_unmap(m, page)
    root = m.anon_vma["root"]
    saved = root.copy()
    root[own] = own  # a field 2.6.34 does not have: scribbled, it must not matter
    try:
        assert do_swap_page(m, page, slots) == 1
    finally:
        root[:] = saved
    assert int(m.page_mapping[page]) == av0


# ---------------------------------------------------------------------------- swapdev.py


def test_swapio_wait_sleeps_until_the_writer_has_its_slots(make_model: MakeModel) -> None:
    """Ten pages written and none read, on a device with 4 request slots and 2 ms per
    request: the tenth request has nine ahead, so the writer may go on only when six have
    completed: last completion - latency - 3 service slots.  wait() sleeps (in iowait)
    until then, however long the (absent) reads take."""
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, 0.5, 500.0, 4, True)  # 0.5 ms latency, 2 ms per request
    f = m.locks.f
    d = m.seg["swapdev"][0]
    io = SwapIO(m)
    m.words[f["frames_out"]] += 10
    slept_before = int(m.words[f["t_iowait_ns"]])
    try:
        io.wait(lambda: False)
        woke = time.perf_counter_ns()
    finally:
        m.words[f["frames_out"]] -= 10
    lat, svc = int(d["latency_ns"]), int(d["service_ns"])
    slot = int(d["last_completion_ns"]) - lat - 3 * svc
    assert (int(d["writes"]), int(d["reads"])) == (10, 0)
    assert woke >= slot
    assert int(m.words[f["t_iowait_ns"]]) - slept_before > 0


def test_swapio_wait_sleeps_until_the_reads_are_in(make_model: MakeModel) -> None:
    """Three pages read and none written: wait() sleeps until the last read completes
    (latency + 2 service slots after submission), the writer having nothing to wait for."""
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, 1.0, 500.0, 128, True)  # 1 ms latency, 2 ms per request
    f = m.locks.f
    d = m.seg["swapdev"][0]
    io = SwapIO(m)
    m.words[f["frames_in"]] += 3
    try:
        io.wait(lambda: False)
        woke = time.perf_counter_ns()
    finally:
        m.words[f["frames_in"]] -= 3
    assert (int(d["writes"]), int(d["reads"])) == (0, 3)
    assert woke >= int(d["last_completion_ns"])

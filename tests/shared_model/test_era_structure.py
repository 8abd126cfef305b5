"""Issue 19, item 6: per-era structure as each era's source, counted from lockstat on one
CPU, scripted (no other process, so ``anon_vma_free``'s relock never sees the lock held).

* ``vma_adjust`` (mm/mmap.c): 2.6.33 and 2.6.36 .. 3.0-rc1 lock ``vma->anon_vma`` only if
  ``insert || importer || start != vma->vm_start``; 3.0.1 only if ``importer || start !=
  vma->vm_start``; 2.6.34-rc1 and 2.6.34 never; 3.7+ always (Era.adjust_lock).
* ``is_mergeable_anon_vma``: ``!a1 || !a2 || a1 == a2`` before 3.0; from 3.0 a side without
  an anon_vma merges only with a VMA whose chain is singular (Era.merge_singular).
* ``anon_vma_clone`` from 3.0 (dd34739c03f2, Era.clone_nowait): each AVC after the first is
  allocated inside the root lock; a failed GFP_NOWAIT allocation drops the lock, allocates
  outside it and takes the lock again: one more acquisition at anon_vma_fork.
* The anon_vma class's acquisitions per fork and per exit, every site, derived from the
  era's flags (lock_once, clone_nowait, self_ref, anon_vma_free_relock) for 3.0, 3.8 and
  6.0; 2.6.36's last root reference dropped under the root lock.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.eras import ERAS
from shared_model.layout import LS_ACQ, VM_READ, VM_WRITE, Capacities
from shared_model.locks import CLASS, SITE
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, exit_mmap, mm_alloc, mm_vmas
from shared_model.mmap import do_mprotect, split_vma, vma_adjust
from shared_model.model import Model

MakeModel = Callable[..., Model]
RW = VM_READ | VM_WRITE
CAPS = Capacities(mms=8, vmas=16, anon_vmas=16, avcs=48, pages=32, ptrs_per_mm=16, cpus=1)
CHAIN_ERAS = [n for n, e in ERAS.items() if e.chain]


def av_sites(m: Model) -> dict[str, int]:
    """The anon_vma class's acquisitions on this CPU, per lockstat site (non-zero only)."""
    row = m.seg["lockstat"][m.cpu, CLASS["anon_vma"], :, LS_ACQ]
    return {s: int(row[i]) for s, i in SITE.items() if row[i]}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {s: n - before.get(s, 0) for s, n in after.items() if n != before.get(s, 0)}


# ---------------------------------------------------------------------------- vma_adjust


@pytest.mark.parametrize("era", list(ERAS))
def test_vma_adjust_locks_as_the_era(make_model: MakeModel, era: str) -> None:
    """A VMA [0,8) with pages 0-6: shrinking its end takes the anon_vma lock only in 3.7+; a split
    whose piece goes above (start kept, an insert) also in the "insert" eras; a split whose
    piece goes below (start moves) in every era but 2.6.34's."""
    mode = ERAS[era].adjust_lock
    m = make_model(era, caps=CAPS)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 8)
    do_anonymous_pages(m, mm, v, np.arange(7))  # page 7 untouched: the shrink unmaps nothing

    def adjust_locks(op: Callable[[], object]) -> int:
        before = av_sites(m).get("vma_adjust", 0)
        op()
        return av_sites(m).get("vma_adjust", 0) - before

    assert adjust_locks(lambda: vma_adjust(m, v, 0, 7, 0)) == int(mode == "always")
    assert adjust_locks(lambda: split_vma(m, v, 5, new_below=False)) == int(mode in ("always", "insert"))
    assert adjust_locks(lambda: split_vma(m, v, 2, new_below=True)) == int(mode != "none")
    assert [(int(m.vma["vm_start"][x]), int(m.vma["vm_end"][x])) for x in mm_vmas(m, mm)] \
        == [(0, 2), (2, 5), (5, 7)]


def test_adjust_lock_per_era_table() -> None:
    assert {n: e.adjust_lock for n, e in ERAS.items()} == {
        "2.6.33": "insert", "2.6.34-rc1": "none", "2.6.34": "none", "2.6.36": "insert",
        "3.0-rc1": "insert", "3.0": "importer", "3.7": "always", "3.8": "always", "3.9": "always",
        "3.19": "always", "6.0": "always", "modern": "always"}
    assert [n for n, e in ERAS.items() if e.merge_singular] == \
        ["3.0-rc1", "3.0", "3.7", "3.8", "3.9", "3.19", "6.0", "modern"]
    assert [n for n, e in ERAS.items() if e.clone_nowait] == \
        ["3.0", "3.7", "3.8", "3.9", "3.19", "6.0", "modern"]


# ---------------------------------------------------------------------------- is_mergeable_anon_vma


@pytest.mark.parametrize("era", list(ERAS))
def test_a_cloned_vma_merges_with_an_untouched_neighbour_only_before_3_0(make_model: MakeModel,
                                                                          era: str) -> None:
    """A child's touched VMA [0,5) (chain of 2 AVCs in the chain eras) beside a fresh [5,10)
    without an anon_vma: mprotect [5,10) RO then RW again asks vma_merge whether the fresh
    range may join [0,5).  Before 3.0 it may (plain ``!a1 || !a2``); from 3.0 the chain is
    not singular, so the two stay apart."""
    m = make_model(era, caps=CAPS)
    parent = mm_alloc(m)
    v = do_mmap(m, parent, 0, 5)
    do_anonymous_pages(m, parent, v, np.arange(5))
    child = dup_mmap(m, parent)
    do_mmap(m, child, 5, 5)
    do_mprotect(m, child, 5, 5, VM_READ)
    do_mprotect(m, child, 5, 5, RW)
    ranges = [(int(m.vma["vm_start"][x]), int(m.vma["vm_end"][x])) for x in mm_vmas(m, child)]
    apart = ERAS[era].merge_singular and ERAS[era].chain
    assert ranges == ([(0, 5), (5, 10)] if apart else [(0, 10)])


# ---------------------------------------------------------------------------- anon_vma_clone


def _xorshift(x: int) -> int:
    m64 = (1 << 64) - 1
    x ^= (x << 13) & m64
    x ^= x >> 7
    x ^= (x << 17) & m64
    return x


def _seed_for(pattern: list[bool], threshold: int) -> int:
    """An RNG state whose next draws fail (True) or pass as ``pattern`` says under
    kmem_cache_alloc_c's injected failure (``x >> 32 < threshold``, x an unsigned 64-bit
    xorshift state)."""
    for s in range(1, 1 << 20):
        x, ok = (s * 0x9E3779B97F4A7C15) & ((1 << 64) - 1), True
        seed = x
        for fail in pattern:
            x = _xorshift(x)
            if ((x >> 32) < threshold) != fail:
                ok = False
                break
        if ok:
            return seed - (1 << 64) if seed >= 1 << 63 else seed  # the table is int64
    raise AssertionError("no seed")


@pytest.mark.parametrize("era", [n for n, e in ERAS.items() if e.clone_nowait])
def test_clone_falls_back_outside_the_lock(make_model: MakeModel, era: str) -> None:
    """A grandchild's fork clones a chain of 2 anon_vmas: the first AVC is allocated before
    any lock, the second inside the root lock; that GFP_NOWAIT allocation fails (an injected
    failure, seeded), the lock is dropped, the AVC allocated outside and the lock taken
    again: anon_vma_fork counts 3 acquisitions instead of 2, and the fork succeeds."""
    m = make_model(era, caps=CAPS)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 1)
    do_anonymous_pages(m, mm, v, np.array([0]))
    child = dup_mmap(m, mm)
    before = av_sites(m)
    m.alloc_fail_p = 0.5
    # Draws: AVC 1 passes, AVC 2 (under the lock) fails, its retry passes; then the
    # child's own anon_vma and AVC pass.
    m.g[G.RNG] = _seed_for([False, True, False, False, False], int(m.g[G.ALLOC_FAIL]))
    grandchild = dup_mmap(m, child)
    m.alloc_fail_p = 0.0
    assert delta(av_sites(m), before) == {"anon_vma_fork": 3}
    assert len(mm_vmas(m, grandchild)) == 1
    for x in (grandchild, child, mm):
        exit_mmap(m, x)
    assert m.counts()["avcs"] == 0


# ---------------------------------------------------------------------------- fork and exit


def _fork_chain_then_exits(make_model: MakeModel, era: str) -> list[tuple[dict[str, int], dict[str, int]]]:
    """A chain of 4 forks of a one-page VMA, each from the youngest, then exits youngest
    first: [(kind, anon_vma acquisitions per site)] for each fork and each exit."""
    m = make_model(era, caps=CAPS)
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 1)
    do_anonymous_pages(m, mm, v, np.array([0]))
    mms = [mm]
    out = []
    for _ in range(4):
        before = av_sites(m)
        mms.append(dup_mmap(m, mms[-1]))
        out.append(({"fork": len(mms) - 1}, delta(av_sites(m), before)))
    while mms:
        before = av_sites(m)
        exit_mmap(m, mms.pop())
        out.append(({"exit": len(mms)}, delta(av_sites(m), before)))
    c = m.counts()
    assert (c["anon_vmas"], c["avcs"]) == (0, 0)
    return out


def kernel_traffic(era: str) -> list[tuple[dict[str, int], dict[str, int]]]:
    """The kernel's anon_vma acquisitions for _fork_chain_then_exits, from the era's flags
    (linux-3.0.1 / 3.9.6 / 6.0.1 mm/rmap.c):

    * fork (``anon_vma_fork``): the clone's pass takes the root once (lock_once; with
      clone_nowait and no failed allocation nothing more), the child's own AVC once: 2;
    * exit (``unlink_anon_vmas``): one pass (lock_once): 1.  ``put_anon_vma`` is an atomic
      without a lock (self_ref: ``anon_vma_alloc`` sets refcount 1, the anon_vma's own
      reference, put when its list empties; a child's last put also puts the root's);
      ``anon_vma_free``'s relock (anon_vma_free_relock) only when another task holds the
      root lock: 0 here, one CPU.
    """
    e = ERAS[era]
    assert e.lock_once and e.lock_root and e.clone_nowait and e.self_ref and e.anon_vma_free_relock
    forks = [({"fork": k}, {"anon_vma_fork": 2}) for k in range(1, 5)]
    exits = [({"exit": k}, {"unlink_anon_vmas": 1}) for k in range(4, -1, -1)]
    return forks + exits


@pytest.mark.parametrize("era", ["3.0", "3.8", "6.0"])
def test_anon_vma_lock_traffic_equals_the_kernels(make_model: MakeModel, era: str) -> None:
    """Every fork and every exit takes the anon_vma class as the kernel does, at every
    site: the first child's exit, whose anon_vma's reference on the root is the last
    child's, takes no lock for it (the root still holds its own reference)."""
    assert _fork_chain_then_exits(make_model, era) == kernel_traffic(era)


@pytest.mark.parametrize("era", ["2.6.36"])
def test_2_6_36_drops_the_last_root_reference_under_the_lock(make_model: MakeModel, era: str) -> None:
    """2.6.36's ``drop_anon_vma``: ``atomic_dec_and_lock`` on the root's refcount, which
    counts only the child anon_vmas: the exit that drops the last takes the root lock once
    more (linux-2.6.36 mm/rmap.c); each exit otherwise takes it once per AVC."""
    assert not ERAS[era].self_ref and ERAS[era].lock_root and not ERAS[era].lock_once
    got = _fork_chain_then_exits(make_model, era)
    exits = {k["exit"]: d for k, d in got if "exit" in k}
    # Process k (k >= 1) has k + 1 AVCs; process 0 has 1.
    assert exits == {4: {"unlink_anon_vmas": 5}, 3: {"unlink_anon_vmas": 4},
                     2: {"unlink_anon_vmas": 3}, 1: {"unlink_anon_vmas": 2 + 1},
                     0: {"unlink_anon_vmas": 1}}


def test_self_ref_eras() -> None:
    """The anon_vma's own reference (01d8b20dec5f) from 3.0-rc1: every sleeping-lock era."""
    assert [n for n, e in ERAS.items() if e.self_ref] == \
        ["3.0-rc1", "3.0", "3.7", "3.8", "3.9", "3.19", "6.0", "modern"]

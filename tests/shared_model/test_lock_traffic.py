"""Lock traffic as the released kernels had it, counted from lockstat.

* ``page_check_address`` takes the PTE lock for every visited entry whose range holds the
  address and whose PTE there is present, and compares the page only under it: a walk's
  PTE-lock acquisitions equal the entries it visited with a present PTE (a COWed sibling's
  present PTE costs one too; a swap entry costs none).
* 3.0 as released takes the root lock once around each ``anon_vma_clone`` and each
  ``unlink_anon_vmas`` pass (``lock_anon_vma_root``); 2.6.36 and 3.0-rc1 once per AVC.
  ``get_anon_vma``/``put_anon_vma`` are atomics: a reference that is not the last takes no
  lock.

A fork of a VMA whose chain holds L anon_vmas therefore takes the anon_vma lock at
``anon_vma_fork`` L + 1 times per AVC (the clone's L, then the child's own AVC) in 2.6.36
and 3.0-rc1, and 2 times in 3.0 (the clone pass, then the own AVC); an exit of a VMA with
L AVCs takes it at ``unlink_anon_vmas`` L times, or once in 3.0 (while no root reference
dropped is the last).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model.anon_vma import anon_vma_members
from shared_model.build import build_family
from shared_model.eras import ERAS
from shared_model.layout import LS_ACQ, PTE_PRESENT, PTE_YOUNG, Capacities
from shared_model.locks import CLASS, SITE
from shared_model.memory import do_anonymous_pages, do_mmap, dup_mmap, exit_mmap, mm_alloc
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap

MakeModel = Callable[..., Model]
ROOT_ERAS = [n for n, e in ERAS.items() if e.lock_root]


def acquisitions(m: Model, cls: str, site: str) -> int:
    return int(m.seg["lockstat"][m.cpu, CLASS[cls], SITE[site], LS_ACQ])


def present_on_walk(m: Model, page: int, visited: int) -> int:
    """Entries among the first ``visited`` of page's list whose PTE at the page's address
    is present (whatever page it maps): computed from the records, not from the walk."""
    av = int(m.page_mapping[page])
    index = int(m.page_index[page])
    n = 0
    for v in anon_vma_members(m, av)[0][:visited].tolist():
        start, pgoff = int(m.vma["vm_start"][v]), int(m.vma["vm_pgoff"][v])
        addr = start + index - pgoff
        if start <= addr < int(m.vma["vm_end"][v]):
            n += bool(m.pte_of(int(m.vma["vm_mm"][v]), addr)[1] & PTE_PRESENT)
    return n


@pytest.mark.parametrize("era", list(ERAS))
def test_pte_lock_per_visited_present_entry(make_model: MakeModel, era: str) -> None:
    n, p = 5, 2
    m = make_model(era, users=n, pages=p, cow=1.0)
    fam = build_family(m, n, p, 1.0)
    kid = fam.children[3]  # child 4: entry 5 of the family list (2.6.33)
    page = m.pte_of(kid, 0)[0]
    before = acquisitions(m, "ptl", "page_referenced_one")
    _, visited = page_referenced(m, page)
    taken = acquisitions(m, "ptl", "page_referenced_one") - before
    # 2.6.33: parent, children 1-3 and child 4 all have a present PTE at vpn 0 (their own
    # copies): 5 entries, 5 PTE locks.  2.6.34+: child 4's own list, 1 and 1.
    assert visited == (5 if not ERAS[era].chain else 1)
    assert taken == visited == present_on_walk(m, page, visited)
    # Child 2's copy at vpn 0 swapped out: its entry is still visited, but its PTE is a
    # swap entry, so no PTE lock for it.
    m.pte_flags[:] &= ~PTE_YOUNG
    assert len(try_to_unmap(m, m.pte_of(fam.children[1], 0)[0])[0]) == 1
    before = acquisitions(m, "ptl", "page_referenced_one")
    _, visited = page_referenced(m, page)
    taken = acquisitions(m, "ptl", "page_referenced_one") - before
    assert taken == present_on_walk(m, page, visited) == (4 if not ERAS[era].chain else 1)


@pytest.mark.parametrize("era", list(ERAS))
def test_pte_lock_per_entry_of_a_shared_page(make_model: MakeModel, era: str) -> None:
    """A page nobody COWed (cow 0): every entry maps it, N+1 entries and N+1 PTE locks;
    try_to_unmap the same (one PTE lock each, inside the walk)."""
    n, p = 4, 1
    m = make_model(era, users=n, pages=p, cow=0.0)
    fam = build_family(m, n, p, 0.0)
    page = m.pte_of(fam.parent, 0)[0]
    m.pte_flags[:] &= ~PTE_YOUNG
    before = acquisitions(m, "ptl", "page_referenced_one")
    assert page_referenced(m, page) == (0, n + 1)
    assert acquisitions(m, "ptl", "page_referenced_one") - before == n + 1
    before = acquisitions(m, "ptl", "try_to_unmap_one")
    slots, visited = try_to_unmap(m, page)
    assert len(slots) == visited == n + 1
    assert acquisitions(m, "ptl", "try_to_unmap_one") - before == n + 1


CAPS = Capacities(mms=8, vmas=10, anon_vmas=16, avcs=32, pages=32, ptrs_per_mm=2, cpus=1)


@pytest.mark.parametrize("era", ROOT_ERAS)
def test_root_lock_once_per_clone_and_unlink_pass(make_model: MakeModel, era: str) -> None:
    m = make_model(era, caps=CAPS)
    once = ERAS[era].lock_once
    mm = mm_alloc(m)
    v = do_mmap(m, mm, 0, 1)
    do_anonymous_pages(m, mm, v, np.array([0]))
    mms = [mm]
    for k in range(1, 5):  # generation k clones a chain of k anon_vmas
        before = acquisitions(m, "anon_vma", "anon_vma_fork")
        mms.append(dup_mmap(m, mms[-1]))
        taken = acquisitions(m, "anon_vma", "anon_vma_fork") - before
        assert taken == (2 if once else k + 1), (k, taken)
    # Exit of the youngest (5 AVCs; its own anon_vma's reference on the root is not the
    # last): once per pass in 3.0, once per AVC before.
    before = acquisitions(m, "anon_vma", "unlink_anon_vmas")
    exit_mmap(m, mms.pop())
    assert acquisitions(m, "anon_vma", "unlink_anon_vmas") - before == (1 if once else 5)
    # Refcounts are atomics: the root counts the other anon_vmas of its family (3.0+: and
    # itself, its list not empty), and dropping one that is not the last took no extra
    # lock (counted above).
    root = int(m.vma_anon_vma[int(m.mm["vma_head"][mms[0]])])
    assert m.anon_vma["refcount"][root] == 3 + ERAS[era].self_ref
    # Everyone else exits, oldest first: the root outlives its list until the last child
    # anon_vma lets go of it, and is freed exactly once (check_model at teardown).
    for x in mms:
        exit_mmap(m, x)
    assert m.counts()["anon_vmas"] == 0


@pytest.mark.parametrize("era", list(ERAS))
def test_anon_vma_free_takes_the_root_lock_only_when_it_sees_it_held(make_model: MakeModel, era: str) -> None:
    """3.0+ ``anon_vma_free``: ``if (mutex_is_locked(&anon_vma->root->mutex))`` (3.8+:
    ``rwsem_is_locked``) take and drop the lock before the free: one more write acquisition
    per freed anon_vma, but only while another task holds the lock (here a forked process
    holds it for 0.3 s); never in the spinlock eras, never when the lock is free."""
    import os
    import time

    from shared_model import ctx as G
    from shared_model.anon_vma import anon_vma_alloc, anon_vma_free
    from shared_model.locking.lock import lock_state

    m = make_model(era, users=1, pages=1, cow=0.0, cpus=2)
    kind = int(m.g[G.KIND0 + CLASS["anon_vma"]])
    quiet = anon_vma_alloc(m)
    anon_vma_free(m, quiet)  # nobody holds its lock: no acquisition
    assert acquisitions(m, "anon_vma", "anon_vma_free") == 0
    av = anon_vma_alloc(m)
    w = m.anon_vma_lock_word(av)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the holder
        code = 1
        try:
            h = Model(m.seg, m.era, 1, lock_kind=m.lock_kind)
            t = h.locks.acquire(w, CLASS["anon_vma"], SITE["unlink_anon_vmas"], 0)
            time.sleep(0.3)
            h.locks.release(w, CLASS["anon_vma"], SITE["unlink_anon_vmas"], t, 0)
            code = 0
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 30
        while not lock_state(m.words, w, kind)[0]:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.001)
        anon_vma_free(m, av)
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert acquisitions(m, "anon_vma", "anon_vma_free") == int(ERAS[era].anon_vma_free_relock)
    assert ERAS[era].anon_vma_free_relock == (ERAS[era].lock in ("mutex", "rwsem"))
    assert m.anon_vma["in_use"][av] == 0

"""Aborted lock waits leave a consistent model.

A run that must end before its CPUs reach a boundary (a stall, a second Ctrl-C) raises the
stop word to "abort", and every lock wait gives up with Stopped in the middle of its
operation.  Each test here injects that abort at one lock wait: the lock is held by
"someone" alive (this process's owner tag, so a mutex or rwsem looks at a live owner), the
stop word is at 2, and the operation runs until it must wait for that lock.  Afterwards
``check_model`` must be clean (the ``make_model`` fixture runs it at teardown).

Which lock waits are covered, per era: fork (dup_mmap) at the family's anon_vma lock and
at the parent's PTE lock; exit (exit_mmap) at the anon_vma lock and the PTE lock; a fault
(do_anonymous_pages), a COW (do_wp_pages), a swap-in (touch_pages) and mprotect at the
PTE lock.

Every other lock wait is reached by injection (``g[ABORT_NTH]``, as the kernel's
fail_nth): each operation is run once per acquisition k it makes, with the k-th and every
later acquisition giving up as an aborted wait does.  That covers the slab lock,
mm->page_table_lock, the swap_lock, the root lock inside anon_vma_fork and anon_vma_clone
(3.0's clone_nowait retry after an allocation failure inside it included), and 3.0's second
unlink pass, and it aborts the unwinds' own acquisitions too: those must outlast the abort
(``locks.no_abort_begin``).  One test does the same with a real abort (stop word 2) and a
real holder, another process, that keeps the lock an unwind needs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.build import MAP_START, Family, build_family, family_capacities
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import PTE_YOUNG, VM_READ, VM_WRITE, Capacities
from shared_model.locking import OWNER, OWNER_PID_SHIFT, lock_release, lock_trylock
from shared_model.locks import CLASS, SITE, Stopped
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_munmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    touch_pages,
)
from shared_model.mmap import do_mprotect
from shared_model.model import Model, OutOfMemory
from shared_model.rmap import try_to_unmap

ALL_ERAS = list(ERAS)
# The sweeps below inject the abort before the lock primitive is reached, so eras that
# differ only in their primitives (3.7/3.8/3.9, 6.0/modern) take the same paths: one each.
_PRIMITIVES = {"name", "lock", "spin", "rwsem_policy", "fixed", "commit", "summary"}


def _by_structure(eras: list[str]) -> list[str]:
    seen, out = set(), []
    for e in eras:
        key = tuple((f.name, getattr(ERAS[e], f.name)) for f in dataclasses.fields(ERAS[e])
                    if f.name not in _PRIMITIVES)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


SWEEP_ERAS = _by_structure(ALL_ERAS)
USERS, PAGES = 2, 4


@contextmanager
def aborted_at(m: Model, w: int, cls: str = "anon_vma") -> Iterator[None]:
    """Lock word ``w`` (of lock class ``cls``) held by someone alive and the run aborting,
    for the block."""
    kind = int(m.g[G.KIND0 + CLASS[cls]])
    tag = os.getpid() * OWNER_PID_SHIFT + 1
    assert lock_trylock(m.words, w, kind, 0, 0, tag)
    m.words[w + OWNER] = tag
    m.header["stop"][0] = 2
    try:
        yield
    finally:
        m.header["stop"][0] = 0
        lock_release(m.words, w, kind, 0, 0, m.seg.offsets["qnodes"] // 8)


def _ptl(m: Model, mm: int) -> int:
    return m.pte_lock_word(mm * m.ptrs + MAP_START)


def _caps(era: str, room: int) -> Capacities:
    """The family's records, page tables for ``room`` pages more per mm and, with room,
    records for a few more VMAs and their chains (splits, a second mapping)."""
    caps = family_capacities(era, USERS, PAGES + room, 0.5, 1, 2)
    if room:
        caps = dataclasses.replace(caps, vmas=caps.vmas + 6, avcs=caps.avcs + 12,
                                   anon_vmas=caps.anon_vmas + 4)
    return caps


def _family(make_model: Callable[..., Model], era: str, room: int = 0) -> tuple[Model, Family]:
    m = make_model(era, caps=_caps(era, room))
    return m, build_family(m, USERS, PAGES, 0.5)


def _expect_abort(op: Callable[[], object]) -> None:
    with pytest.raises(Stopped):
        op()


@pytest.mark.parametrize("era", ALL_ERAS)
def test_fork_aborted_at_the_anon_vma_lock(make_model: Callable[..., Model], era: str) -> None:
    """2.6.33: anon_vma_link gave up before the child's VMA was on the family list; it must
    not name the family's anon_vma (it did: "vma 4 is not on the list of its anon_vma 0")."""
    m, fam = _family(make_model, era)
    with aborted_at(m, m.anon_vma_lock_word(int(m.vma_anon_vma[fam.vma]))):
        _expect_abort(lambda: dup_mmap(m, fam.children[0]))
    assert check_model(m) == []


@pytest.mark.parametrize("era", ALL_ERAS)
def test_exit_aborted_at_the_anon_vma_lock(make_model: Callable[..., Model], era: str) -> None:
    """2.6.34: unlink_anon_vmas freed the VMA's own AVC, then gave up at the next lock: the
    VMA still named that anon_vma ("vma 2: its anon_vma 1 is not on its own chain")."""
    m, fam = _family(make_model, era)
    with aborted_at(m, m.anon_vma_lock_word(int(m.vma_anon_vma[fam.vma]))):
        _expect_abort(lambda: exit_mmap(m, fam.children[0]))
    assert check_model(m) == []


@pytest.mark.parametrize("era", ALL_ERAS)
@pytest.mark.parametrize("op", ["fork", "exit", "fault", "cow", "swapin", "mprotect"])
def test_aborted_at_the_pte_lock(make_model: Callable[..., Model], era: str, op: str) -> None:
    m, fam = _family(make_model, era, room=2 if op == "fault" else 0)
    u = fam.children[0]
    vma = int(m.mm["vma_head"][u])
    vpns = np.arange(MAP_START, MAP_START + PAGES)
    if op == "fault":  # a fresh mapping beside the family's, in the same PTE page
        vma = do_mmap(m, u, MAP_START + PAGES, 2)
        vpns = np.arange(MAP_START + PAGES, MAP_START + PAGES + 2)
    if op == "swapin":  # the child's pages swapped out first
        for p in np.unique(m.pte_page[[m.pte_index(u * m.ptrs + int(v)) for v in vpns]]):
            try_to_unmap(m, int(p))
    ops: dict[str, Callable[[], object]] = {
        "fork": lambda: dup_mmap(m, u),
        "exit": lambda: exit_mmap(m, u),
        "fault": lambda: do_anonymous_pages(m, u, vma, vpns),
        "cow": lambda: do_wp_pages(m, u, vma, vpns),
        "swapin": lambda: touch_pages(m, u, vpns),
        "mprotect": lambda: do_mprotect(m, u, MAP_START, 1, VM_READ),
    }
    with aborted_at(m, _ptl(m, u), "ptl"):
        try:
            ops[op]()
        except Stopped:
            pass
    assert check_model(m) == []


# ---------------------------------------------------------------- every acquisition, injected

WIDE = 510  # a second mapping of the child's, across a PTE page's end (512 PTEs a page)
SWEEP_OPS = ("fault", "cow", "swapin", "mprotect", "merge", "munmap", "unmap", "fork-wide",
             "exit-wide", "exit-last")


def _prepared(m: Model, fam: Family, op: str) -> Callable[[], object]:
    """Set the family up for ``op`` (nothing injected yet) and return the operation."""
    u = fam.children[0]
    vma = int(m.mm["vma_head"][u])
    vpns = np.arange(MAP_START, MAP_START + PAGES)
    if op.endswith("-wide"):
        wide = do_mmap(m, u, WIDE, 4)
        do_anonymous_pages(m, u, wide, np.arange(WIDE, WIDE + 4))
    if op == "swapin":
        for p in np.unique(m.pte_page[[m.pte_index(u * m.ptrs + int(v)) for v in vpns]]):
            try_to_unmap(m, int(p))
    if op == "merge":  # split first; the operation makes it one VMA again (vma_adjust)
        do_mprotect(m, u, MAP_START + 1, 1, VM_READ)
    if op == "exit-last":  # the other children gone: u's anon_vma holds the root's last
        for other in fam.children[1:]:  # reference, dropped under the root's lock (3.0+)
            exit_mmap(m, other)
    if op == "unmap":  # the page most mapped, old everywhere: reclaim swaps it out
        m.pte_flags[:] &= ~PTE_YOUNG
        mapcount = m.seg["page"]["mapcount"]
        shared = int(np.argmax(np.where(m.seg["page"]["in_use"] == 1, mapcount, -1)))
    # Every CPU's slab cache emptied: the allocations refill theirs under the slab lock.
    m.flush_slab_caches()
    fresh = np.arange(WIDE, WIDE + 4)
    ops: dict[str, Callable[[], object]] = {
        "fork": lambda: dup_mmap(m, u),
        "fault": lambda: do_anonymous_pages(m, u, do_mmap(m, u, WIDE, 4), fresh),
        "cow": lambda: do_wp_pages(m, u, vma, vpns),
        "swapin": lambda: touch_pages(m, u, vpns),
        "mprotect": lambda: do_mprotect(m, u, MAP_START + 1, 1, VM_READ),
        "merge": lambda: do_mprotect(m, u, MAP_START + 1, 1, VM_READ | VM_WRITE),
        "munmap": lambda: do_munmap(m, u, vma),
        "unmap": lambda: try_to_unmap(m, shared),
        "fork-wide": lambda: dup_mmap(m, u),
        "exit-wide": lambda: exit_mmap(m, u),
        "exit-last": lambda: exit_mmap(m, u),
    }
    return ops[op]


def _own_model(era: str, room: int) -> Model:
    """A model for one run of a sweep, not the fixture's: the sweep checks and closes each
    itself (hundreds per era; the fixture would keep them all and check each again)."""
    return Model.create(_caps(era, room), era, entry_cost_ns=0)


def _sweep(era: str, op: str, setup: Callable[[Model], None] = lambda m: None,
           room: int = 0, limit: int = 400) -> tuple[int, list[str]]:
    """Run ``op`` on a fresh family once per acquisition k it makes, aborting the k-th and
    every later one; (acquisitions, what check_model found after each abort)."""
    found = []
    for k in range(1, limit):
        m = _own_model(era, room)
        try:
            run = _prepared(m, build_family(m, USERS, PAGES, 0.5), op)
            setup(m)
            m.g[G.ABORT_NTH] = k
            try:
                run()
            except (Stopped, OutOfMemory):  # an injected allocation failure meanwhile
                pass
            fired = m.g[G.ABORT_NTH] == 1
            m.g[G.ABORT_NTH] = 0
            assert m.g[G.NO_ABORT] == 0, f"{op} at acquisition {k}: a no-abort section not ended"
            v = check_model(m)
        finally:
            seg = m.seg
            m.close()
            seg.unlink()
        if v:
            found.append(f"{op} aborted at acquisition {k}: {v[:3]}")
        if not fired:
            return k - 1, found
    raise AssertionError(f"{op} made {limit} acquisitions or more")


@pytest.mark.parametrize("era", SWEEP_ERAS)
def test_every_lock_wait_aborted(era: str) -> None:
    """Each operation aborted at every acquisition it makes in turn: the model is clean
    after each (whatever the abort cut short was put back or finished) and no lock is
    held.  The operations: a fault, a COW, a swap-in, mprotect (two splits), a merge back
    (vma_adjust removing a VMA), munmap, reclaim's unmap of a shared page (the PTE locks,
    the swap_lock), fork and exit of an mm whose second mapping spans two PTE pages, and
    the exit of the family's last child (3.0+: the second unlink pass drops the root's
    last reference under its lock); the slab caches are emptied first, so that
    allocations take the slab lock.  (A plain fork or exit is the first half of the wide
    ones, a split_vma part of mprotect.)"""
    found, made = [], {}
    for op in SWEEP_OPS:
        made[op], f = _sweep(era, op, room=WIDE)
        found += f
    assert found == []
    assert all(n >= 1 for n in made.values()), made  # each op had waits to abort


@pytest.mark.parametrize("era", [e for e in SWEEP_ERAS if ERAS[e].clone_nowait])
def test_clone_nowait_retry_aborted(era: str) -> None:
    """3.0+ anon_vma_clone allocates each AVC after the first inside the root lock; a failed
    allocation there drops the lock, allocates again outside it, and takes the lock again.
    A fork whose second AVC fails once (the injected allocation failure, its random
    draws fixed by the seed), aborted at each acquisition in turn: the model is clean, and
    the fork without an abort took the root lock once more (the retry)."""
    def seeded(m: Model) -> None:
        m.g[G.ALLOC_FAIL] = 1 << 31  # each anon_vma/AVC allocation fails with p = 1/2
        m.g[G.RNG] = _NOWAIT_SEED
    _, found = _sweep(era, "fork", seeded)
    assert found == []
    # Without an abort: the retry's extra acquisition of the root lock at anon_vma_fork.
    m = _own_model(era, 0)
    try:
        f = build_family(m, USERS, PAGES, 0.5)
        seeded(m)
        m.locks.instrument = True
        acq = m.seg["lockstat"][int(m.g[G.CPU]), CLASS["anon_vma"], SITE["anon_vma_fork"]]
        a0 = int(acq[0])
        dup_mmap(m, f.children[0])
        assert int(acq[0]) - a0 == 3, "the clone's (twice: the retry) and anon_vma_fork's own"
        assert check_model(m) == []
    finally:
        seg = m.seg
        m.close()
        seg.unlink()


def _draws_nowait(seed: int) -> bool:
    """The xorshift64 draws of kmem_cache_alloc_body with p = 1/2 (a draw fails below
    2**31 in its top 32 bits) for a 3.0 fork of a child (chain of 2): the first AVC
    allocated, the second failing inside the root lock, its retry, the anon_vma and its
    AVC all allocated."""
    x, mask = seed % (1 << 64), (1 << 64) - 1
    for fail in (False, True, False, False, False):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        if ((x >> 32) < (1 << 31)) != fail:
            return False
    return True


_NOWAIT_SEED = next(s for s in (i * 0x9E3779B97F4A7C15 % (1 << 63) for i in range(1, 1 << 12))
                    if _draws_nowait(s))


# ---------------------------------------------------------------- a real abort during an unwind


def _in_use(m: Model) -> dict[str, int]:
    return {k: int((m.seg[k]["in_use"] == 1).sum()) for k in ("mm", "vma", "anon_vma", "avc")}


def test_an_unwind_outlasts_a_real_abort(make_model: Callable[..., Model]) -> None:
    """A real abort (stop word 2) that comes while an unwind needs a lock held by another
    process.  2.6.34 fork of a child (chain: the root's anon_vma R, then the child's own
    A): the clone links to R under R's lock, then waits for A, which the other process
    holds.  That process, seeing the wait, takes R, raises the stop word to 2, and keeps
    both for 0.3 s.  The wait for A gives up; the fork's unwind must take R to unlink what
    the clone linked, and the half-built child is torn down: the unwind waits out the
    abort (0.3 s) instead of giving up, and the model is as before the fork."""
    era = next(e for e in ALL_ERAS if ERAS[e].chain and not ERAS[e].lock_root)
    m, fam = _family(make_model, era)
    u = fam.children[0]
    a_av = int(m.vma_anon_vma[int(m.mm["vma_head"][u])])
    root_w, a_w = m.anon_vma_lock_word(int(m.vma_anon_vma[fam.vma])), m.anon_vma_lock_word(a_av)
    assert root_w != a_w
    kind = int(m.g[G.KIND0 + CLASS["anon_vma"]])
    qnodes = m.seg.offsets["qnodes"] // 8
    wait_w = int(m.g[G.CPU_BASE]) + G.F_WAIT_LOCK
    before = _in_use(m)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the other process
        code = 1
        try:
            tag = os.getpid() * OWNER_PID_SHIFT + 1
            assert lock_trylock(m.words, a_w, kind, 0, 0, tag)
            m.words[a_w + OWNER] = tag
            os.write(w, b"A")
            deadline = time.monotonic() + 120
            while m.words[wait_w] != a_w:  # the fork, R taken and released, waits for A
                assert time.monotonic() < deadline
                time.sleep(0.001)
            while not lock_trylock(m.words, root_w, kind, 0, 0, tag):
                assert time.monotonic() < deadline
            m.words[root_w + OWNER] = tag
            m.header["stop"][0] = 2
            time.sleep(0.3)
            lock_release(m.words, root_w, kind, 0, 0, qnodes)
            lock_release(m.words, a_w, kind, 0, 0, qnodes)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b"A"
        t0 = time.monotonic()
        _expect_abort(lambda: dup_mmap(m, u))
        took = time.monotonic() - t0
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(r)
        m.header["stop"][0] = 0
    assert os.waitstatus_to_exitcode(status) == 0
    assert took > 0.28, f"the unwind gave up after {took:.2f} s"
    assert _in_use(m) == before
    assert check_model(m) == []

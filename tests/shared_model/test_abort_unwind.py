"""Aborted lock waits leave a consistent model (issue 18 item 2).

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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.build import MAP_START, Family, build_family
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import VM_READ
from shared_model.locking import OWNER, OWNER_PID_SHIFT, lock_release, lock_trylock
from shared_model.locks import CLASS, Stopped
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    touch_pages,
)
from shared_model.mmap import do_mprotect
from shared_model.model import Model
from shared_model.rmap import try_to_unmap

ALL_ERAS = list(ERAS)
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


def _family(make_model: Callable[..., Model], era: str, room: int = 0) -> tuple[Model, Family]:
    """The family, in a model with page tables for ``room`` pages more per mm."""
    m = make_model(era, users=USERS, pages=PAGES + room, cow=0.5, spare_users=2)
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

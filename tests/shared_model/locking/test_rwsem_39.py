"""rwsem writer lock-stealing as 3.9 committed it (ce6711f3d196, ``try_get_writer_sem`` in
lib/rwsem.c of 3.9.6), against 3.10+'s stealing: a running writer steals only after it
queued, and only when the first waiter is a writer; it never steals past a reader at the
head.  Across real processes; interleavings are scripted (a frozen waiter, the wait_lock
held by the test at the point a release has cleared its hold but not yet granted)."""

from __future__ import annotations

import os
import signal

import pytest
from _helpers.rwsem_lab import PARENT, READ, WRITE, logged, queue, waiter

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    RWSEM,
    RWSEM_FIFO,
    RWSEM_STEAL,
    RWSEM_STEAL_39,
    lock_acquire,
    lock_release,
    lock_state,
)
from shared_model.locking.atomics import atomic_fetch_add
from shared_model.locking.cached_compile import cached_njit
from shared_model.locking.common import OWNER
from shared_model.locking.locktorture import LockLab
from shared_model.locking.rwsem import down_write_trylock
from shared_model.locking.rwsem_queue import WRITER, _wait_lock, _wait_unlock, rwsem_wake_locked


def hold_write(lab: LockLab, policy: int) -> None:
    at = lab.at
    assert lock_acquire(lab.words, at.lock, RWSEM, policy, WRITE, lab.tag(PARENT),
                        at.node(PARENT), at.stop) == LOCK_FAST


@cached_njit(cache=False)
def _release_half_way(words, w: int) -> None:  # type: ignore[no-untyped-def]
    """up_write up to the grant: wait_lock taken, the owner and WRITER cleared; the
    caller finishes with ``_grant_and_unlock``."""
    _wait_lock(words, w)
    words[w + OWNER] = 0
    atomic_fetch_add(words, w, -WRITER)


@cached_njit(cache=False)
def _grant_and_unlock(words, w: int, policy: int) -> None:  # type: ignore[no-untyped-def]
    rwsem_wake_locked(words, w, policy)
    _wait_unlock(words, w)


def test_39_steals_behind_a_writer_at_the_head(lab: LockLab) -> None:
    """W1 (frozen) heads the queue, R2 behind it; the parent's release only wakes W1.  A
    running writer W3 cannot take the lock in the fast path (waiters: count != 0); it
    queues behind R2, finds the first waiter a writer and nothing active, and steals:
    done while W1 is still frozen.  Then W1, then R2."""
    at, policy = lab.at, RWSEM_STEAL_39
    hold_write(lab, policy)
    w1, r2 = queue(lab, policy, [(WRITE, 1), (READ, 2)])
    os.kill(w1, signal.SIGSTOP)
    try:
        lock_release(lab.words, at.lock, RWSEM, policy, WRITE, at.node(PARENT))
        assert lock_state(lab.words, at.lock, RWSEM) == (False, 2)  # woken, not granted
        assert not down_write_trylock(lab.words, at.lock, policy)
        w3 = lab.spawn(waiter, lab, policy, WRITE, 3)
        assert lab.join(w3) == 0
        assert lab.words[at.status + 3] == LOCK_CONTENDED  # it queued, then stole
        assert logged(lab) == [3]
    finally:
        os.kill(w1, signal.SIGCONT)
    assert [lab.join(w1), lab.join(r2)] == [0, 0]
    assert logged(lab) == [3, 1, 2]
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert lab.words[at.lock] == 0


@pytest.mark.parametrize("policy,steals", [(RWSEM_STEAL_39, False), (RWSEM_STEAL, True),
                                           (RWSEM_FIFO, False)], ids=["3.9", "3.10+", "3.8"])
def test_no_steal_past_a_reader_at_the_head(lab: LockLab, policy: int, steals: bool) -> None:
    """R1 heads the queue, W2 behind it; the parent's release is stopped half-way (hold
    cleared, wait_lock held, R1 not yet granted).  3.9: a running writer's fast path fails
    there (count != 0) and its slow path waits for wait_lock, then queues: R1 is served
    first.  3.10+'s fast path takes the free lock past R1."""
    at = lab.at
    hold_write(lab, policy)
    r1, w2 = queue(lab, policy, [(READ, 1), (WRITE, 2)])
    _release_half_way(lab.words, at.lock)
    assert down_write_trylock(lab.words, at.lock, policy) == steals
    if steals:  # hand it back, as if that writer had been quick (the sleepers are asleep)
        lab.words[at.lock] -= WRITER
    w3 = lab.spawn(waiter, lab, policy, WRITE, 3)  # 3.9: spins on wait_lock, then queues
    _grant_and_unlock(lab.words, at.lock, policy)
    assert [lab.join(p) for p in (r1, w2, w3)] == [0, 0, 0]
    order = logged(lab)
    assert sorted(order) == [1, 2, 3]
    if not steals:
        assert order[0] == 1
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert lab.words[at.lock] == 0

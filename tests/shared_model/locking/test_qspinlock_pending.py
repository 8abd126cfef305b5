"""qspinlock as 6.0's ``queued_spin_lock_slowpath``: the second contender pends on the
lock word with no MCS node, only the third and later queue; the hand-over from pending
to locked keeps arrival order; unlock is a byte store.  Across real processes; arrival
order is made through the lock's own state, never through sleeps."""

from __future__ import annotations

from functools import partial

import numpy as np

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    QSPINLOCK,
    lock_acquire,
    lock_is_wedged,
    lock_release,
    lock_state,
)
from shared_model.locking.atomics import (
    WRITE_ONCE_u8_1,
    WRITE_ONCE_u16,
    atomic_xchg_hi32,
    smp_store_release_u8,
)
from shared_model.locking.cached_compile import cached_njit
from shared_model.locking.common import NODE_MCS_QUEUED
from shared_model.locking.locktorture import LockLab, torture_hammer
from shared_model.locking.qspinlock import LOCKED_VAL, PENDING_VAL, TAIL_SHIFT

PARENT_CPU = 15
LOOPS = 20_000


def waiter(lab: LockLab, cpu: int, stop_w: int) -> None:
    at, words = lab.at, lab.words
    status = lock_acquire(words, at.lock, QSPINLOCK, 0, 0, lab.tag(cpu), at.node(cpu), stop_w)
    if status != LOCK_STOPPED:
        words[at.log + words[at.log_len]] = cpu
        words[at.log_len] += 1
        lock_release(words, at.lock, QSPINLOCK, 0, 0, at.node(cpu))
    words[at.status + cpu] = status


def waiting(lab: LockLab, n: int) -> bool:
    return lock_state(lab.words, lab.at.lock, QSPINLOCK)[1] == n


def queueings(lab: LockLab, cpu: int) -> int:
    return int(lab.words[lab.at.node(cpu) + NODE_MCS_QUEUED])


def hold(lab: LockLab) -> None:
    at = lab.at
    assert lock_acquire(lab.words, at.lock, QSPINLOCK, 0, 0, lab.tag(PARENT_CPU),
                        at.node(PARENT_CPU), at.stop) == LOCK_FAST


def test_second_contender_pends_without_a_node_third_queues(lab: LockLab) -> None:
    at = lab.at
    hold(lab)
    assert lab.words[at.lock] == LOCKED_VAL
    first = lab.spawn(waiter, lab, 0, at.stop)
    lab.wait_until(partial(waiting, lab, 1), "CPU 0 to pend")
    assert lab.words[at.lock] == LOCKED_VAL | PENDING_VAL  # pending, no tail
    assert queueings(lab, 0) == 0
    second = lab.spawn(waiter, lab, 1, at.stop)
    lab.wait_until(partial(waiting, lab, 2), "CPU 1 to queue")
    val = int(lab.words[at.lock])
    assert val & 0xFFFF == LOCKED_VAL | PENDING_VAL
    assert val >> TAIL_SHIFT == at.node(1) + 1  # CPU 1's first node is the tail
    assert queueings(lab, 1) == 1

    lock_release(lab.words, at.lock, QSPINLOCK, 0, 0, at.node(PARENT_CPU))
    assert [lab.join(first), lab.join(second)] == [0, 0]
    assert list(lab.words[at.log : at.log + 2]) == [0, 1]  # pending first, then the head
    assert [lab.words[at.status + c] for c in (0, 1)] == [LOCK_CONTENDED] * 2
    assert (queueings(lab, 0), queueings(lab, 1)) == (0, 1)
    assert lab.words[at.lock] == 0
    assert lock_state(lab.words, at.lock, QSPINLOCK) == (False, 0)


def test_two_cpus_never_queue(lab: LockLab) -> None:
    at = lab.at

    def hammer(cpu: int) -> None:
        lab.words[at.status + cpu] = torture_hammer(
            lab.words, at.lock, QSPINLOCK, 0, 0, lab.tag(cpu), at.node(cpu), at.stop,
            at.counter, LOOPS)

    pids = [lab.spawn(hammer, cpu) for cpu in (0, 1)]
    assert [lab.join(p) for p in pids] == [0, 0]
    assert lab.words[at.counter] == 2 * LOOPS
    assert (queueings(lab, 0), queueings(lab, 1)) == (0, 0)
    assert lab.words[at.lock] == 0


def test_a_stopped_pending_waiter_clears_its_bit_and_the_head_goes_on(lab: LockLab) -> None:
    at = lab.at
    hold(lab)
    pending = lab.spawn(waiter, lab, 0, at.own_stop(0))
    lab.wait_until(partial(waiting, lab, 1), "CPU 0 to pend")
    head = lab.spawn(waiter, lab, 1, at.stop)
    lab.wait_until(partial(waiting, lab, 2), "CPU 1 to queue")
    lab.words[at.own_stop(0)] = 2
    assert lab.join(pending) == 0
    assert lab.words[at.status] == LOCK_STOPPED
    assert lab.words[at.lock] & 0xFFFF == LOCKED_VAL  # pending cleared, still held
    lock_release(lab.words, at.lock, QSPINLOCK, 0, 0, at.node(PARENT_CPU))
    assert lab.join(head) == 0
    assert list(lab.words[at.log : at.log + lab.words[at.log_len]]) == [1]
    assert not lock_is_wedged(lab.words, at.lock, QSPINLOCK)


def test_a_pending_waiter_killed_wedges_the_lock_recognisably(lab: LockLab) -> None:
    at = lab.at
    hold(lab)
    pid = lab.spawn(waiter, lab, 0, at.stop)
    lab.wait_until(partial(waiting, lab, 1), "CPU 0 to pend")
    lab.kill(pid)
    lock_release(lab.words, at.lock, QSPINLOCK, 0, 0, at.node(PARENT_CPU))
    assert lock_is_wedged(lab.words, at.lock, QSPINLOCK)
    lab.words[at.stop] = 2
    assert lock_acquire(lab.words, at.lock, QSPINLOCK, 0, 0, lab.tag(1), at.node(1), at.stop) \
        == LOCK_STOPPED


@cached_njit(cache=False)
def _parts(words: np.ndarray) -> int:
    smp_store_release_u8(words, 0, 0)
    WRITE_ONCE_u8_1(words, 1, 0)
    WRITE_ONCE_u16(words, 2, 1)
    return atomic_xchg_hi32(words, 3, 7)


def test_byte_and_half_stores_touch_only_their_part() -> None:
    ones = np.int64(-1)
    words = np.full(4, ones, dtype=np.int64)
    assert _parts(words) == 0xFFFFFFFF
    assert words[0] == -1 & ~0xFF
    assert words[1] == -1 & ~0xFF00
    assert words[2] == (-1 & ~0xFFFF) | 1
    assert words[3] == (7 << 32) | 0xFFFFFFFF

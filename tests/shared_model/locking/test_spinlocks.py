"""The spinlocks (tas, ticket, qspinlock) across real processes: mutual exclusion, the
stop word aborting every waiter with the lock left usable, a dead holder named by the
owner word, and the FIFO ones serving waiters in arrival order even when a waiter in the
queue gives up.

Arrival order is made, not hoped for: the parent holds the lock and forks the next waiter
only once the lock's own state shows the previous one queued."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    QSPINLOCK,
    TAS,
    TICKET,
    lock_acquire,
    lock_is_wedged,
    lock_owner,
    lock_release,
    lock_state,
    lock_trylock,
)
from shared_model.locking.common import NODE_WORDS
from shared_model.locking.locktorture import LockLab, torture_hammer
from shared_model.locking.qspinlock import ABANDONED, HEAD, SKIPPED, WAITING

SPINLOCKS = [TAS, TICKET, QSPINLOCK]
FIFO_SPINLOCKS = [TICKET, QSPINLOCK]
NAMES = {TAS: "tas", TICKET: "ticket", QSPINLOCK: "qspinlock"}
LOOPS = 20_000
ARRIVED = 99  # a child's status while it is (about to be) waiting
PARENT_CPU = 15


def hold(lab: LockLab, kind: int) -> None:
    at = lab.at
    assert lock_acquire(
        lab.words, at.lock, kind, 0, 0, lab.tag(PARENT_CPU), at.node(PARENT_CPU), at.stop
    ) == LOCK_FAST


def release(lab: LockLab, kind: int, cpu: int = PARENT_CPU) -> None:
    lock_release(lab.words, lab.at.lock, kind, 0, 0, lab.at.node(cpu))


def waiter(lab: LockLab, kind: int, cpu: int, stop_w: int) -> None:
    """Take the lock as ``cpu``; log the acquisition order; status = what acquire said."""
    at, words = lab.at, lab.words
    words[at.status + cpu] = ARRIVED
    status = lock_acquire(words, at.lock, kind, 0, 0, lab.tag(cpu), at.node(cpu), stop_w)
    if status != LOCK_STOPPED:
        words[at.log + words[at.log_len]] = cpu
        words[at.log_len] += 1
        lock_release(words, at.lock, kind, 0, 0, at.node(cpu))
    words[at.status + cpu] = status


def arrived(lab: LockLab, cpu: int) -> bool:
    return bool(lab.words[lab.at.status + cpu] == ARRIVED)


def queued(lab: LockLab, kind: int, n: int) -> bool:
    return lock_state(lab.words, lab.at.lock, kind)[1] == n


def queue_waiters(lab: LockLab, kind: int, cpus: list[int], stop_of: dict[int, int]) -> list[int]:
    """Fork a waiter per cpu, each only once the previous one shows in the lock's state."""
    pids = []
    for n, cpu in enumerate(cpus, start=1):
        pids.append(lab.spawn(waiter, lab, kind, cpu, stop_of.get(cpu, lab.at.stop)))
        if kind == TAS:  # spinners leave no trace in a tas lock: wait for the arrival
            lab.wait_until(partial(arrived, lab, cpu), "arrival")
        else:
            lab.wait_until(partial(queued, lab, kind, n), f"{n} waiters queued")
    return pids


@pytest.mark.parametrize("kind", SPINLOCKS, ids=NAMES.get)
def test_mutual_exclusion_across_processes(lab: LockLab, kind: int) -> None:
    at = lab.at

    def hammer(cpu: int) -> None:
        lab.words[at.status + cpu] = torture_hammer(
            lab.words, at.lock, kind, 0, 0, lab.tag(cpu), at.node(cpu), at.stop, at.counter,
            LOOPS,
        )

    pids = [lab.spawn(hammer, cpu) for cpu in (0, 1)]
    assert [lab.join(p) for p in pids] == [0, 0]
    assert list(lab.words[at.status : at.status + 2]) == [LOOPS, LOOPS]
    assert lab.words[at.counter] == 2 * LOOPS
    assert lock_state(lab.words, at.lock, kind) == (False, 0)
    assert lock_owner(lab.words, at.lock) == 0


@pytest.mark.parametrize("kind", SPINLOCKS, ids=NAMES.get)
def test_stop_aborts_every_waiter_and_the_lock_stays_usable(lab: LockLab, kind: int) -> None:
    at = lab.at
    hold(lab, kind)
    pids = queue_waiters(lab, kind, [0, 1, 2], {})
    lab.words[at.stop] = 2
    assert [lab.join(p) for p in pids] == [0, 0, 0]
    assert list(lab.words[at.status : at.status + 3]) == [LOCK_STOPPED] * 3
    assert lab.words[at.log_len] == 0
    assert lock_owner(lab.words, at.lock) == lab.tag(PARENT_CPU)  # still held by its holder

    lab.words[at.stop] = 0
    release(lab, kind)
    assert lock_state(lab.words, at.lock, kind) == (False, 0)
    hold(lab, kind)
    assert not lock_trylock(lab.words, at.lock, kind, 0, 0, lab.tag(0))
    release(lab, kind)
    assert lock_trylock(lab.words, at.lock, kind, 0, 0, lab.tag(0))
    release(lab, kind, 0)


@pytest.mark.parametrize("kind", SPINLOCKS, ids=NAMES.get)
def test_dead_holder_is_named_by_the_owner_word(lab: LockLab, kind: int) -> None:
    at = lab.at

    def holder() -> None:
        assert lock_acquire(lab.words, at.lock, kind, 0, 0, lab.tag(5), at.node(5), at.stop) \
            == LOCK_FAST
        lab.words[at.status] = 1
        time.sleep(60)

    pid = lab.spawn(holder)
    lab.wait_until(lambda: lab.words[at.status] == 1, "the holder to hold")
    lab.kill(pid)
    assert lock_owner(lab.words, at.lock) == lab.tag(5, pid)
    assert lock_state(lab.words, at.lock, kind)[0]
    lab.words[at.stop] = 2  # a spinlock has no robust hand-off: its waiters give up
    assert lock_acquire(lab.words, at.lock, kind, 0, 0, lab.tag(0), at.node(0), at.stop) \
        == LOCK_STOPPED


@pytest.mark.parametrize("kind", FIFO_SPINLOCKS, ids=NAMES.get)
def test_waiters_are_served_in_arrival_order(lab: LockLab, kind: int) -> None:
    at = lab.at
    hold(lab, kind)
    cpus = [3, 0, 2, 1]
    pids = queue_waiters(lab, kind, cpus, {})
    release(lab, kind)
    assert [lab.join(p) for p in pids] == [0] * 4
    assert list(lab.words[at.log : at.log + lab.words[at.log_len]]) == cpus
    assert [lab.words[at.status + c] for c in cpus] == [LOCK_CONTENDED] * 4
    assert lock_state(lab.words, at.lock, kind) == (False, 0)


@pytest.mark.parametrize("gives_up", [0, 1, 2], ids=["first", "middle", "last"])
@pytest.mark.parametrize("kind", FIFO_SPINLOCKS, ids=NAMES.get)
def test_a_waiter_that_gives_up_is_skipped(lab: LockLab, kind: int, gives_up: int) -> None:
    """One queued waiter is stopped (its own stop word); the hand-off passes over its
    ticket or node and the others are still served, in order."""
    at = lab.at
    hold(lab, kind)
    cpus = [0, 1, 2]
    pids = queue_waiters(lab, kind, cpus, {c: at.own_stop(c) for c in cpus})
    quitter = cpus[gives_up]
    lab.words[at.own_stop(quitter)] = 2
    assert lab.join(pids[gives_up]) == 0
    assert lab.words[at.status + quitter] == LOCK_STOPPED
    release(lab, kind)
    assert [lab.join(p) for p in pids if p != pids[gives_up]] == [0] * 2
    assert list(lab.words[at.log : at.log + lab.words[at.log_len]]) == [
        c for c in cpus if c != quitter
    ]
    assert lock_state(lab.words, at.lock, kind) == (False, 0)
    hold(lab, kind)  # and it is still a working lock
    release(lab, kind)


@pytest.mark.parametrize("kind", FIFO_SPINLOCKS, ids=NAMES.get)
def test_a_waiter_killed_in_the_queue_wedges_the_lock_recognisably(
    lab: LockLab, kind: int
) -> None:
    """A FIFO lock cannot pass over a waiter that died queued (only one that gave up):
    the lock is left unusable, and ``lock_is_wedged`` says so for the report."""
    at = lab.at
    hold(lab, kind)
    (pid,) = queue_waiters(lab, kind, [0], {})
    lab.kill(pid)
    release(lab, kind)
    assert lock_is_wedged(lab.words, at.lock, kind)
    lab.words[at.stop] = 2
    assert lock_acquire(lab.words, at.lock, kind, 0, 0, lab.tag(1), at.node(1), at.stop) \
        == LOCK_STOPPED


@pytest.mark.parametrize("kind", SPINLOCKS, ids=NAMES.get)
def test_a_lock_left_by_stopped_waiters_is_not_wedged(lab: LockLab, kind: int) -> None:
    at = lab.at
    hold(lab, kind)
    pids = queue_waiters(lab, kind, [0, 1], {})
    lab.words[at.stop] = 2
    assert [lab.join(p) for p in pids] == [0, 0]
    release(lab, kind)
    assert not lock_is_wedged(lab.words, at.lock, kind)


def test_qspinlock_node_abandoned_in_a_queue_is_not_reused_until_skipped(lab: LockLab) -> None:
    """CPU 0 gives up behind CPU 2 in lock A's queue (CPU 1 holds A's pending bit, CPU 2
    its first node): CPU 0's node stays linked there until A's head passes over it.
    Meanwhile CPU 0 queues for lock B (CPU 3 already holds B's pending bit, so CPU 0 needs
    a node, not the pending bit): on its next node, leaving the abandoned one alone (reused
    at once, it would read WAITING and A's head would hand it the head of A's queue).  The
    abandoned node is marked SKIPPED once A moves on."""
    at = lab.at
    words = lab.words
    node0 = at.node(0)
    b_status = 8  # + cpu: what each CPU's acquire of B returned

    def seen() -> str:
        return (f"CPU 0's nodes {[int(words[node0 + i * NODE_WORDS]) for i in range(3)]}, "
                f"A {lock_state(words, at.lock, QSPINLOCK)}, B {lock_state(words, at.lock2, QSPINLOCK)}, "
                f"statuses A {int(words[at.status])} "
                f"B {[int(words[at.status + b_status + c]) for c in (0, 3)]}")

    def take_b(cpu: int, node: int) -> None:
        words[at.status + b_status + cpu] = lock_acquire(words, at.lock2, QSPINLOCK, 0, 0, lab.tag(cpu),
                                                         node, at.stop)
        lock_release(words, at.lock2, QSPINLOCK, 0, 0, node)

    def cpu0() -> None:
        words[at.status] = lock_acquire(words, at.lock, QSPINLOCK, 0, 0, lab.tag(0), node0, at.own_stop(0))
        take_b(0, node0)

    hold(lab, QSPINLOCK)
    assert lock_acquire(words, at.lock2, QSPINLOCK, 0, 0, lab.tag(PARENT_CPU),
                        at.node(PARENT_CPU), at.stop) == LOCK_FAST
    pends_on_b = lab.spawn(take_b, 3, at.node(3))
    lab.wait_until(lambda: lock_state(words, at.lock2, QSPINLOCK)[1] == 1, "CPU 3 pending on B", seen)
    pending, head = queue_waiters(lab, QSPINLOCK, [1, 2], {})
    words[at.status] = ARRIVED
    pid = lab.spawn(cpu0)
    lab.wait_until(lambda: lock_state(words, at.lock, QSPINLOCK)[1] == 3, "3 waiters on A", seen)
    words[at.own_stop(0)] = 2
    lab.wait_until(lambda: words[at.status] == LOCK_STOPPED, "CPU 0 to give up on A", seen)
    assert words[node0] == ABANDONED, seen()
    lab.wait_until(lambda: lock_state(words, at.lock2, QSPINLOCK)[1] == 2, "CPU 0 queued on B", seen)
    assert words[node0] == ABANDONED, f"CPU 0 reused the node still linked in A's queue: {seen()}"
    assert words[node0 + NODE_WORDS] in (WAITING, HEAD), seen()  # CPU 0 waits on B on its next node
    lock_release(words, at.lock2, QSPINLOCK, 0, 0, at.node(PARENT_CPU))
    assert [lab.join(pends_on_b, seen), lab.join(pid, seen)] == [0, 0]
    assert [words[at.status + b_status + c] for c in (3, 0)] == [LOCK_CONTENDED] * 2, seen()
    assert words[node0] == ABANDONED, seen()  # A has not moved yet
    release(lab, QSPINLOCK)
    assert [lab.join(pending, seen), lab.join(head, seen)] == [0, 0]
    assert words[node0] == SKIPPED, seen()
    assert words[node0 + NODE_WORDS] != ABANDONED, seen()
    assert lock_state(words, at.lock, QSPINLOCK) == (False, 0), seen()
    assert lock_state(words, at.lock2, QSPINLOCK) == (False, 0), seen()


def test_ticket_skips_a_run_of_abandoned_tickets_across_the_map_wrap() -> None:
    """200 tickets given up behind a holder (their bits cross word and map boundaries:
    63/64, 255/256): one release serves past all of them."""
    words = np.zeros(64, dtype=np.int64)
    lock, stop = 8, 0
    words[lock] = words[lock + 1] = 200  # tickets 0..199 were served long ago
    assert lock_acquire(words, lock, TICKET, 0, 0, 1, 32, stop) == LOCK_FAST
    words[stop] = 2
    for _ in range(200):
        assert lock_acquire(words, lock, TICKET, 0, 0, 2, 32, stop) == LOCK_STOPPED
    assert lock_state(words, lock, TICKET) == (True, 200)
    words[stop] = 0
    lock_release(words, lock, TICKET, 0, 0, 32)
    assert words[lock] == words[lock + 1] == 401
    assert not words[lock + 2 : lock + 6].any()  # every abandoned bit was claimed
    assert lock_trylock(words, lock, TICKET, 0, 0, 1)

"""The rwsem of 3.19 (optimistic spinning on a running owner, ``rwsem-xadd.c``) and of 6.0
(the hand-off bit, ``kernel/locking/rwsem.c``) across real processes, with scripted
interleavings: a frozen waiter (SIGSTOP), the owner's published run state, and the
lock's own words.  The one clock read in a test only decides whether a spinner's time
slice could have run out (which would let it queue)."""

from __future__ import annotations

import os
import signal
import time
from functools import partial

from _helpers.rwsem_lab import PARENT, READ, WRITE, log, logged, queued, release, take, waiter

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    RWSEM,
    RWSEM_HANDOFF,
    RWSEM_SPIN,
    lock_is_wedged,
    lock_state,
)
from shared_model.locking.common import (
    NODE_RUN_STATE,
    RUN_RUNNING,
    RUN_SLEEPING,
    SPIN_SLICE_NS,
    STOP_ABORT,
)
from shared_model.locking.locktorture import LockLab
from shared_model.locking.rwsem import _NOT_TAKEN as NOT_TAKEN
from shared_model.locking.rwsem import (
    RWSEM_WAIT_TIMEOUT_NS,
    down_write_trylock,
    rwsem_handoff_spin,
    rwsem_optimistic_spin,
    rwsem_read_steal,
    rwsem_rspin_threshold_ns,
)
from shared_model.locking.rwsem_queue import (
    HANDOFF,
    NONSPINNABLE,
    OWNER_FLAGS,
    SINCE,
    TAG,
    WAITING,
    WRITER,
)


def test_319_writer_spins_on_a_running_owner_and_takes_it_unqueued(lab: LockLab) -> None:
    at, policy = lab.at, RWSEM_SPIN
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    t_spawn = time.monotonic_ns()
    pid = lab.spawn(waiter, lab, policy, WRITE, 1)
    time.sleep(0.001)  # the owner (this CPU, publishing RUNNING) holds on
    t_release = time.monotonic_ns()
    release(lab, policy, WRITE, PARENT)
    assert lab.join(pid) == 0
    assert lab.words[at.status + 1] in (LOCK_FAST, LOCK_CONTENDED)
    ever_queued = lab.words[at.node(1) + SINCE] != 0  # written only when it queues
    assert not ever_queued or t_release - t_spawn > SPIN_SLICE_NS
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


def test_319_writer_queues_when_the_owner_sleeps(lab: LockLab) -> None:
    at, policy = lab.at, RWSEM_SPIN
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    lab.words[at.node(PARENT) + NODE_RUN_STATE] = RUN_SLEEPING
    pid = lab.spawn(waiter, lab, policy, WRITE, 1)
    lab.wait_until(partial(queued, lab, 1), "the writer to queue")
    lab.words[at.node(PARENT) + NODE_RUN_STATE] = RUN_RUNNING
    release(lab, policy, WRITE, PARENT)
    assert lab.join(pid) == 0
    assert lab.words[at.status + 1] == LOCK_CONTENDED
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


def test_60_stealing_stops_once_the_hand_off_bit_is_set(lab: LockLab) -> None:
    """W1 heads the queue and is frozen; the parent's release only wakes it and the
    parent steals the lock back unqueued.  W1, thawed after more than RWSEM_WAIT_TIMEOUT
    in the queue, finds it stolen and sets HANDOFF.  At the parent's next release nobody
    steals any more: not the fast path, not a spinning writer (the parent queues), not a
    reader; W1 gets it (frozen again across the release, so the look is exact)."""
    at, policy, words = lab.at, RWSEM_HANDOFF, lab.words
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    (w1,) = [lab.spawn(waiter, lab, policy, WRITE, 1)]
    lab.wait_until(partial(queued, lab, 1), "W1 to queue")
    os.kill(w1, signal.SIGSTOP)
    try:
        time.sleep(2 * RWSEM_WAIT_TIMEOUT_NS / 1e9)  # W1 waits past the timeout
        release(lab, policy, WRITE, PARENT)
        assert lock_state(words, at.lock, RWSEM) == (False, 1)  # woken, not granted
        assert not words[at.lock] & HANDOFF
        assert take(lab, policy, WRITE, PARENT) == LOCK_CONTENDED  # stolen unqueued
        log(lab, PARENT)
    finally:
        os.kill(w1, signal.SIGCONT)
    lab.wait_until(lambda: bool(words[at.lock] & HANDOFF), "W1 to set the hand-off bit")
    # W1 asleep again (its run state says so once it is past wait_lock): freeze it again.
    lab.wait_until(lambda: words[at.node(1) + NODE_RUN_STATE] == RUN_SLEEPING, "W1 to sleep")
    os.kill(w1, signal.SIGSTOP)
    try:
        release(lab, policy, WRITE, PARENT)
        assert words[at.lock] == WAITING | HANDOFF  # free, one waiter, reserved for it
        assert not down_write_trylock(words, at.lock, policy)
        assert rwsem_optimistic_spin(words, at.lock, policy, lab.tag(PARENT), at.node(PARENT),
                                     at.stop) == NOT_TAKEN  # a writer would queue
        assert not rwsem_read_steal(words, at.lock, policy)  # a reader would queue
    finally:
        os.kill(w1, signal.SIGCONT)
    assert lab.join(w1) == 0
    assert lab.words[at.status + 1] == LOCK_CONTENDED
    assert logged(lab) == [PARENT, 1]
    assert words[at.lock] == 0  # HANDOFF cleared by W1 taking it, WAITING by the empty queue
    assert lock_state(words, at.lock, RWSEM) == (False, 0)


def test_60_a_writer_killed_in_the_queue_is_named_wedged(lab: LockLab) -> None:
    """A writer that dies asleep in the queue keeps its node there: every release wakes a
    process that is gone (and with its hand-off bit set nobody else may take the lock), so
    ``lock_is_wedged`` names it for the report.  (Read once no live CPU waits: a live
    sleeper's node reads the same; the stop test in test_rwsem shows aborts empty it.)"""
    at, policy, words = lab.at, RWSEM_HANDOFF, lab.words
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    lab.words[at.node(PARENT) + NODE_RUN_STATE] = RUN_SLEEPING  # so that W1 queues
    (w1,) = [lab.spawn(waiter, lab, policy, WRITE, 1)]
    lab.wait_until(partial(queued, lab, 1), "W1 to queue")
    lab.kill(w1)
    lab.words[at.node(PARENT) + NODE_RUN_STATE] = RUN_RUNNING
    release(lab, policy, WRITE, PARENT)
    assert lock_is_wedged(words, at.lock, RWSEM)


def _spin_as(lab: LockLab, policy: int, cpu: int) -> int:
    at = lab.at
    return rwsem_optimistic_spin(lab.words, at.lock, policy, lab.tag(cpu), at.node(cpu), at.stop)


def test_60_reader_spin_threshold_is_the_kernels() -> None:
    """``rwsem_rspin_threshold``: (20 + readers) * NSEC_PER_USEC / 2, readers capped at 30."""
    assert [rwsem_rspin_threshold_ns(r) for r in (1, 2, 30, 31, 1000)] == \
        [10_500, 11_000, 25_000, 25_000, 25_000]


def test_60_a_writer_spinning_on_readers_gives_up_and_sets_nonspinnable(lab: LockLab) -> None:
    """A reader holds; a 6.0 writer spins on it for the reader threshold (10.5 us for one
    reader), then sets NONSPINNABLE and would queue.  While it is set a writer does not
    spin at all: with the run's stop word raised a spinner would return LOCK_STOPPED from
    its loop, this one returns at once without looking.  Readers leaving with nobody
    queued keep it (as the kernel's ``__up_read``); a writer's take clears it."""
    at, policy, words = lab.at, RWSEM_HANDOFF, lab.words
    assert take(lab, policy, READ, PARENT) == LOCK_FAST
    t0 = time.monotonic_ns()
    assert _spin_as(lab, policy, 1) == NOT_TAKEN
    assert time.monotonic_ns() - t0 >= rwsem_rspin_threshold_ns(1)
    assert words[at.lock + OWNER_FLAGS] == NONSPINNABLE
    words[at.stop] = STOP_ABORT
    assert _spin_as(lab, policy, 1) == NOT_TAKEN  # not LOCK_STOPPED: it never spun
    assert words[at.lock + OWNER_FLAGS] == NONSPINNABLE
    words[at.stop] = 0
    release(lab, policy, READ, PARENT)
    assert words[at.lock + OWNER_FLAGS] == NONSPINNABLE  # nobody waited: kept
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    assert words[at.lock + OWNER_FLAGS] == 0  # rwsem_set_owner overwrote it
    release(lab, policy, WRITE, PARENT)
    assert lock_state(words, at.lock, RWSEM) == (False, 0)


def test_60_a_writer_spins_on_a_free_or_writer_owned_lock_whatever_the_readers_did(
        lab: LockLab) -> None:
    """The reader threshold is only for readers: with the stop word raised, a spinner on
    a lock held by a running writer returns LOCK_STOPPED from its loop (it spun), and the
    flag stays clear; 3.19, which never spins on readers, is unchanged."""
    at, words = lab.at, lab.words
    assert take(lab, RWSEM_HANDOFF, WRITE, PARENT) == LOCK_FAST
    words[at.stop] = STOP_ABORT
    assert _spin_as(lab, RWSEM_HANDOFF, 1) == LOCK_STOPPED
    assert words[at.lock + OWNER_FLAGS] == 0
    words[at.stop] = 0
    release(lab, RWSEM_HANDOFF, WRITE, PARENT)
    assert take(lab, RWSEM_SPIN, READ, PARENT) == LOCK_FAST
    assert _spin_as(lab, RWSEM_SPIN, 1) == NOT_TAKEN  # 3.19: no spinning on readers
    assert words[at.lock + OWNER_FLAGS] == 0
    release(lab, RWSEM_SPIN, READ, PARENT)


def test_60_the_last_reader_out_clears_nonspinnable_for_a_queued_writer(lab: LockLab) -> None:
    """With NONSPINNABLE set a writer queues at once (no spin); the last reader's release
    finds it queued, clears the flag (``__up_read``: ``clear_nonspinnable``, then
    ``rwsem_wake``) and wakes it (frozen across the release, so the flag is read before
    the writer's own take could clear it); it takes the lock."""
    at, policy, words = lab.at, RWSEM_HANDOFF, lab.words
    assert take(lab, policy, READ, PARENT) == LOCK_FAST
    assert _spin_as(lab, policy, 2) == NOT_TAKEN
    assert words[at.lock + OWNER_FLAGS] == NONSPINNABLE
    pid = lab.spawn(waiter, lab, policy, WRITE, 1)
    lab.wait_until(partial(queued, lab, 1), "the writer to queue")
    lab.wait_until(lambda: words[at.node(1) + NODE_RUN_STATE] == RUN_SLEEPING, "it to sleep")
    os.kill(pid, signal.SIGSTOP)
    try:
        assert words[at.lock + OWNER_FLAGS] == NONSPINNABLE
        release(lab, policy, READ, PARENT)
        assert words[at.lock + OWNER_FLAGS] == 0
        assert lock_state(words, at.lock, RWSEM) == (False, 1)  # woken, not granted
    finally:
        os.kill(pid, signal.SIGCONT)
    assert lab.join(pid) == 0
    assert lab.words[at.status + 1] == LOCK_CONTENDED
    assert words[at.lock + OWNER_FLAGS] == 0
    assert lock_state(words, at.lock, RWSEM) == (False, 0)


def _handoff_spin_as(lab: LockLab, cpu: int) -> bool:
    """``rwsem_handoff_spin`` as CPU ``cpu``'s first-level node, a writer."""
    at = lab.at
    lab.words[at.node(cpu) + TAG] = lab.tag(cpu)
    return rwsem_handoff_spin(lab.words, at.lock, at.node(cpu), at.node(cpu), at.stop)


def test_60_the_hand_off_waiter_tries_again_at_once_when_no_writer_or_reader_holds(
        lab: LockLab) -> None:
    """``rwsem_spin_on_owner`` after a failed take with the hand-off bit set: no owner and
    no readers is OWNER_NULL (try again without sleeping); readers are OWNER_READER (sleep)."""
    at, words = lab.at, lab.words
    words[at.lock] = WAITING | HANDOFF
    assert _handoff_spin_as(lab, 1)
    words[at.lock] = WAITING | HANDOFF | 2  # two readers
    assert not _handoff_spin_as(lab, 1)


def _lets_go_after(lab: LockLab, go: int, delay_ns: int) -> None:
    """A child: once ``go`` reads 1, wait ``delay_ns`` (spinning), then let the lock go as
    a releasing writer does: owner word cleared, WRITER out of count."""
    words, at = lab.words, lab.at
    while words[go] != 1:
        pass
    end = time.monotonic_ns() + delay_ns
    while time.monotonic_ns() < end:
        pass
    words[at.lock + 7] = 0
    words[at.lock] = WAITING | HANDOFF


def test_60_the_hand_off_waiter_spins_while_the_writer_owner_runs(lab: LockLab) -> None:
    """With a writer owner whose CPU runs, it spins, and tries again (True) the moment
    the writer lets go, here 0.2 ms later from another process; an owner whose CPU
    sleeps sends it to sleep (False) at once, before the same release.  (Each tried up to
    three times: the verdicts need the other process to run within the spinner's 4 ms
    slice, or the spinner to run within 0.2 ms, which a loaded machine may deny once.)"""
    at, words = lab.at, lab.words
    go = at.counter

    def attempt(run_state: int) -> bool:
        words[at.lock] = WAITING | HANDOFF | WRITER
        words[at.lock + 7] = lab.tag(PARENT)
        words[at.node(PARENT) + NODE_RUN_STATE] = run_state
        words[go] = 0
        pid = lab.spawn(_lets_go_after, lab, go, 200_000)
        words[go] = 1
        got = _handoff_spin_as(lab, 1)
        assert lab.join(pid) == 0
        return got

    assert any(attempt(RUN_RUNNING) for _ in range(3))
    assert not all(attempt(RUN_SLEEPING) for _ in range(3))
    words[at.node(PARENT) + NODE_RUN_STATE] = RUN_RUNNING
    words[at.lock] = 0

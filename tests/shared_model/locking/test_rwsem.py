"""The rwsem across real processes: readers overlap, writers exclude (from each other
and from readers), every sleeper aborts on stop, a dead writer is found, and the two
hand-off policies differ exactly where 3.8 and 3.9 did.

The policy test makes the hand-off deterministic by freezing the queued writer
(SIGSTOP) across the release: FIFO has already granted it the lock, so the releasing
writer cannot take it back; STEAL has only woken it, so the running writer takes it
first."""

from __future__ import annotations

import os
import signal
import time

import pytest
from _helpers.rwsem_lab import (
    PARENT,
    POLICIES,
    POLICY_IDS,
    READ,
    WRITE,
    log,
    logged,
    queue,
    release,
    take,
)

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    RWSEM,
    RWSEM_FIFO,
    RWSEM_HANDOFF,
    RWSEM_STEAL_39,
    lock_owner,
    lock_state,
    lock_trylock,
)
from shared_model.locking.locktorture import LockLab, torture_hammer, torture_reader
from shared_model.locking.rwsem_queue import rwsem_readers

LOOPS = 10_000









@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_writers_exclude_writers_and_readers(lab: LockLab, policy: int) -> None:
    at = lab.at

    def writer(cpu: int) -> None:
        lab.words[at.status + cpu] = torture_hammer(
            lab.words, at.lock, RWSEM, policy, WRITE, lab.tag(cpu), at.node(cpu), at.stop,
            at.counter, LOOPS,
        )

    def reader(cpu: int) -> None:
        lab.words[at.status + cpu] = torture_reader(
            lab.words, at.lock, policy, at.node(cpu), at.stop, at.counter, LOOPS // 4, 50
        )

    pids = [lab.spawn(writer, 0), lab.spawn(writer, 1), lab.spawn(reader, 2)]
    assert [lab.join(p) for p in pids] == [0, 0, 0]
    assert list(lab.words[at.status : at.status + 3]) == [LOOPS, LOOPS, 0]
    assert lab.words[at.counter] == 2 * LOOPS
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_readers_overlap_and_a_writer_waits_for_all_of_them(lab: LockLab, policy: int) -> None:
    at = lab.at
    assert take(lab, policy, READ, PARENT) == LOCK_FAST

    def second_reader() -> None:
        lab.words[at.status] = take(lab, policy, READ, 0)  # while the parent holds it
        lab.words[at.status + 2] = 1  # holding
        lab.wait_until(lambda: lab.words[at.status + 1] == 1, "the parent to look")
        release(lab, policy, READ, 0)

    pid = lab.spawn(second_reader)
    lab.wait_until(lambda: lab.words[at.status + 2] == 1, "the second reader to hold")
    assert rwsem_readers(lab.words, at.lock) == 2  # two processes hold it at once
    assert lab.words[at.status] == LOCK_FAST
    assert lock_owner(lab.words, at.lock) == 0  # readers are anonymous
    assert not lock_trylock(lab.words, at.lock, RWSEM, policy, WRITE, lab.tag(PARENT))

    (w1,) = queue(lab, policy, [(WRITE, 1)])
    lab.words[at.status + 1] = 1  # let the second reader go
    assert lab.join(pid) == 0
    assert lock_state(lab.words, at.lock, RWSEM) == (True, 1)  # the parent still reads
    release(lab, policy, READ, PARENT)
    assert lab.join(w1) == 0
    assert lab.words[at.status + 1] == LOCK_CONTENDED
    assert logged(lab) == [1]
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_a_reader_does_not_pass_a_queued_writer(lab: LockLab, policy: int) -> None:
    """Reader holds, writer W1 sleeps, reader R2 arrives: R2 queues behind W1 (it does not
    join the reader holding it), in both policies, and is served after W1."""
    at = lab.at
    assert take(lab, policy, READ, PARENT) == LOCK_FAST
    pids = queue(lab, policy, [(WRITE, 1), (READ, 2)])
    assert rwsem_readers(lab.words, at.lock) == 1
    release(lab, policy, READ, PARENT)
    assert [lab.join(p) for p in pids] == [0, 0]
    assert logged(lab) == [1, 2]
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_hand_off_fifo_grants_the_queue_head_steal_lets_the_running_writer_in(
    lab: LockLab, policy: int
) -> None:
    """The parent holds for writing, W1 sleeps in the queue and is frozen; the parent
    releases and at once wants the lock again."""
    at = lab.at
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    (w1,) = queue(lab, policy, [(WRITE, 1)])
    os.kill(w1, signal.SIGSTOP)
    try:
        release(lab, policy, WRITE, PARENT)
        stole = lock_trylock(lab.words, at.lock, RWSEM, policy, WRITE, lab.tag(PARENT))
        if policy in (RWSEM_STEAL_39, RWSEM_HANDOFF):
            # Woken, not granted; the fast path needs a count of 0, so the parent steals in
            # its slow path: 3.9 queued behind W1 (the first waiter is a writer, nothing
            # active), 6.0 unqueued while spinning (no hand-off bit set yet).
            assert not stole
            assert lock_state(lab.words, at.lock, RWSEM) == (False, 1)
            assert take(lab, policy, WRITE, PARENT) == LOCK_CONTENDED
            stole = True
        if stole:
            log(lab, PARENT)
            release(lab, policy, WRITE, PARENT)
        else:  # granted to the frozen W1 already: it holds the lock without having run
            assert lock_state(lab.words, at.lock, RWSEM) == (True, 0)
    finally:
        os.kill(w1, signal.SIGCONT)
    if not stole:
        assert take(lab, policy, WRITE, PARENT) in (LOCK_FAST, LOCK_CONTENDED)
        log(lab, PARENT)
        release(lab, policy, WRITE, PARENT)
    assert lab.join(w1) == 0
    expected = [1, PARENT] if policy == RWSEM_FIFO else [PARENT, 1]
    assert logged(lab) == expected
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_stop_aborts_every_sleeper_and_the_rwsem_stays_usable(lab: LockLab, policy: int) -> None:
    at = lab.at
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    pids = queue(lab, policy, [(READ, 0), (WRITE, 1), (READ, 2)])
    lab.words[at.stop] = 2
    assert [lab.join(p) for p in pids] == [0, 0, 0]
    assert list(lab.words[at.status : at.status + 3]) == [LOCK_STOPPED] * 3
    assert lock_state(lab.words, at.lock, RWSEM) == (True, 0)
    assert lock_owner(lab.words, at.lock) == lab.tag(PARENT)

    lab.words[at.stop] = 0
    release(lab, policy, WRITE, PARENT)
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert lab.words[at.lock] == 0  # no holder, no WAITING bit left behind
    assert take(lab, policy, READ, 3) == LOCK_FAST
    assert take(lab, policy, READ, 4) == LOCK_FAST
    release(lab, policy, READ, 3)
    release(lab, policy, READ, 4)
    assert take(lab, policy, WRITE, 3) == LOCK_FAST
    release(lab, policy, WRITE, 3)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_a_dead_writer_is_found_and_the_next_holder_told(lab: LockLab, policy: int) -> None:
    at = lab.at

    def holder() -> None:
        assert take(lab, policy, WRITE, 5) == LOCK_FAST
        lab.words[at.status + 5] = 1
        time.sleep(60)

    dead = lab.spawn(holder)
    lab.wait_until(lambda: lab.words[at.status + 5] == 1, "the writer to hold")
    pids = queue(lab, policy, [(WRITE, 0), (READ, 1)])
    assert lock_owner(lab.words, at.lock) == lab.tag(5, dead)
    lab.kill(dead)  # SIGKILL and reap
    assert [lab.join(p) for p in pids] == [0, 0]
    assert list(lab.words[at.status : at.status + 2]) == [LOCK_OWNER_DIED, LOCK_CONTENDED]
    assert logged(lab) == [0, 1]
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert lock_owner(lab.words, at.lock) == 0

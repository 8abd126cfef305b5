"""Who gets a contended lock, in what order and how many at once, asserted within a
bounded wait: a broken hand-off fails here with what the waiters were seen doing, never
by hanging until an outer timeout.

* ticket: four waiters are served exactly in arrival order;
* qspinlock: with five waiters queued (so at least three sit behind the MCS queue's head
  however the first contender waits), one or two that gave up behind the head are
  skipped, their nodes marked SKIPPED, and the others served in order;
* mutex: a release with sleepers bumps the wake sequence (the wake-up is not lost), and
  every sleeper gets the mutex, once;
* rwsem (3.8's FIFO policy): a run of three queued readers is granted together (all three
  hold at once) before the writer queued behind them.

Arrival order is made, not hoped for: the parent holds the lock and forks the next waiter
only once the lock's own state shows the previous one queued.  Every wait is bounded by
BOUND_S; a child that would wait forever is killed by the lab's teardown."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    MUTEX,
    QSPINLOCK,
    RWSEM,
    RWSEM_FIFO,
    TICKET,
    lock_acquire,
    lock_release,
    lock_state,
)
from shared_model.locking.locktorture import LabDeadline, LockLab
from shared_model.locking.mutex import SLEEPERS, SPINNERS, WAKE_SEQ
from shared_model.locking.qspinlock import SKIPPED
from shared_model.locking.rwsem_queue import rwsem_readers

BOUND_S = 10.0  # generous on a shared 2-core machine: a working hand-off takes milliseconds
PARENT_CPU = 15
ARRIVED = 99
READ, WRITE = 1, 0
# LabLayout's status area has 32 words: per-CPU results at +cpu, extra slots from +16.
SEEN = 16  # + cpu: what a waiter saw while holding
FLAG = 24  # + cpu: a reader holds (1), has looked and lets go (2)


@pytest.fixture
def bounded(lab: LockLab) -> LockLab:
    lab.DEADLINE_S = BOUND_S  # type: ignore[misc]  # every wait_until/join of this test
    return lab


def acquire(lab: LockLab, kind: int, cpu: int, stop_w: int, policy: int = 0, shared: int = 0) -> int:
    at = lab.at
    return lock_acquire(lab.words, at.lock, kind, policy, shared, lab.tag(cpu), at.node(cpu), stop_w)


def release(lab: LockLab, kind: int, cpu: int, policy: int = 0, shared: int = 0) -> None:
    lock_release(lab.words, lab.at.lock, kind, policy, shared, lab.at.node(cpu))


def logged(lab: LockLab) -> list[int]:
    at = lab.at
    return [int(x) for x in lab.words[at.log : at.log + lab.words[at.log_len]]]


def statuses(lab: LockLab, cpus: list[int]) -> list[int]:
    return [int(lab.words[lab.at.status + c]) for c in cpus]


def waiter(lab: LockLab, kind: int, cpu: int, stop_w: int) -> None:
    """Take the lock as ``cpu``; append cpu to the log under it; status = acquire's."""
    at, words = lab.at, lab.words
    words[at.status + cpu] = ARRIVED
    status = acquire(lab, kind, cpu, stop_w)
    if status != LOCK_STOPPED:
        words[at.log + words[at.log_len]] = cpu
        words[at.log_len] += 1
        release(lab, kind, cpu)
    words[at.status + cpu] = status


def join_all(lab: LockLab, pids: list[int], seen: Callable[[], str]) -> list[int]:
    """Every child's exit code, or a failure (LabDeadline) saying what was seen when the
    bound ran out (a lost hand-off?)."""
    return [lab.join(p, seen) for p in pids]


def wait_for(lab: LockLab, cond: Callable[[], bool], what: str, seen: Callable[[], str]) -> None:
    lab.wait_until(cond, what, seen)


def queue(lab: LockLab, kind: int, cpus: list[int], stop_of: dict[int, int],
          seen: Callable[[], str]) -> list[int]:
    """Fork a waiter per cpu, each once the lock shows the previous one waiting."""
    pids = []
    for n, cpu in enumerate(cpus, start=1):
        pids.append(lab.spawn(waiter, lab, kind, cpu, stop_of.get(cpu, lab.at.stop)))
        wait_for(lab, lambda n=n: lock_state(lab.words, lab.at.lock, kind)[1] == n,
                 f"{n} waiters queued", seen)
    return pids


def test_ticket_serves_four_waiters_in_arrival_order(bounded: LockLab) -> None:
    lab, at = bounded, bounded.at
    cpus = [2, 0, 3, 1]

    def seen() -> str:
        return (f"log {logged(lab)}, statuses {statuses(lab, cpus)}, "
                f"next {lab.words[at.lock]}, serving {lab.words[at.lock + 1]}")

    assert acquire(lab, TICKET, PARENT_CPU, at.stop) == LOCK_FAST
    pids = queue(lab, TICKET, cpus, {}, seen)
    assert lock_state(lab.words, at.lock, TICKET) == (True, 4)
    assert lab.words[at.log_len] == 0, seen()  # nobody got in past the holder
    release(lab, TICKET, PARENT_CPU)
    assert join_all(lab, pids, seen) == [0] * 4
    assert logged(lab) == cpus, seen()
    assert statuses(lab, cpus) == [LOCK_CONTENDED] * 4, seen()
    assert lock_state(lab.words, at.lock, TICKET) == (False, 0)
    # Five tickets handed out (the holder's and four), five served.
    assert (lab.words[at.lock], lab.words[at.lock + 1]) == (5, 5), seen()


@pytest.mark.parametrize("quitters", [[2], [2, 3]], ids=["one", "two-in-a-row"])
def test_qspinlock_skips_abandoned_nodes_in_the_queue(bounded: LockLab, quitters: list[int]) -> None:
    """Five waiters behind the holder; those in ``quitters`` give up while queued.  They
    are never the first two: the first may wait on a pending bit without a node (the
    kernel's qspinlock), and then the second is the MCS queue's head, which passes the
    head on when it stops instead of abandoning its node.  The release serves the others
    in order, and the head that passed over an abandoned node marked it SKIPPED."""
    lab, at = bounded, bounded.at
    cpus = [0, 1, 2, 3, 4]

    def seen() -> str:
        nodes = [int(lab.words[at.node(c)]) for c in cpus]
        return (f"log {logged(lab)}, statuses {statuses(lab, cpus)}, node states {nodes}, "
                f"lock state {lock_state(lab.words, at.lock, QSPINLOCK)}")

    assert acquire(lab, QSPINLOCK, PARENT_CPU, at.stop) == LOCK_FAST
    pids = queue(lab, QSPINLOCK, cpus, {c: at.own_stop(c) for c in cpus}, seen)
    for q in quitters:
        lab.words[at.own_stop(q)] = 2
        assert join_all(lab, [pids[q]], seen) == [0]
        assert lab.words[at.status + q] == LOCK_STOPPED, seen()
    assert lock_state(lab.words, at.lock, QSPINLOCK) == (True, 5 - len(quitters)), seen()
    assert lab.words[at.log_len] == 0, seen()
    release(lab, QSPINLOCK, PARENT_CPU)
    served = [c for c in cpus if c not in quitters]
    assert join_all(lab, [pids[c] for c in served], seen) == [0] * len(served)
    assert logged(lab) == served, seen()
    assert statuses(lab, served) == [LOCK_CONTENDED] * len(served), seen()
    assert [int(lab.words[at.node(q)]) for q in quitters] == [SKIPPED] * len(quitters), seen()
    assert lock_state(lab.words, at.lock, QSPINLOCK) == (False, 0)
    assert lab.words[at.lock] == 0, seen()  # no tail left behind: a working lock
    assert acquire(lab, QSPINLOCK, PARENT_CPU, at.stop) == LOCK_FAST
    release(lab, QSPINLOCK, PARENT_CPU)


def _asleep(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "futex" in f.read()
    except FileNotFoundError:
        return False


def test_mutex_release_wakes_a_sleeper_and_every_sleeper_gets_it(bounded: LockLab) -> None:
    """Three waiters asleep on the futex behind the parent.  The parent's release saw
    sleepers, so it bumped the wake sequence before returning (a release that does not
    is a lost wake-up: the sleepers would only find the mutex free at their next timed
    look); then all three take the mutex, each once, and nobody is left counted."""
    lab, at = bounded, bounded.at
    cpus = [0, 1, 2]
    w = at.lock

    def seen() -> str:
        return (f"log {logged(lab)}, statuses {statuses(lab, cpus)}, wake seq "
                f"{lab.words[w + WAKE_SEQ]}, sleepers {lab.words[w + SLEEPERS]}, spinners "
                f"{lab.words[w + SPINNERS]}")

    assert acquire(lab, MUTEX, PARENT_CPU, at.stop) == LOCK_FAST
    pids = queue(lab, MUTEX, cpus, {}, seen)
    wait_for(lab, lambda: all(_asleep(p) for p in pids) and lab.words[w + SLEEPERS] == 3,
             "all three asleep", seen)
    seq = int(lab.words[w + WAKE_SEQ])
    release(lab, MUTEX, PARENT_CPU)
    # > not ==: the woken sleeper may already have taken, released and woken the next.
    assert lab.words[w + WAKE_SEQ] > seq, f"the release woke nobody: {seen()}"
    assert join_all(lab, pids, seen) == [0, 0, 0]
    assert sorted(logged(lab)) == cpus, seen()
    assert statuses(lab, cpus) == [LOCK_CONTENDED] * 3, seen()
    assert (lab.words[w + SLEEPERS], lab.words[w + SPINNERS]) == (0, 0), seen()
    assert lock_state(lab.words, w, MUTEX) == (False, 0)


def test_mutex_release_without_sleepers_wakes_nobody(bounded: LockLab) -> None:
    lab, at = bounded, bounded.at
    w = at.lock
    assert acquire(lab, MUTEX, PARENT_CPU, at.stop) == LOCK_FAST
    release(lab, MUTEX, PARENT_CPU)
    assert lab.words[w + WAKE_SEQ] == 0
    assert lock_state(lab.words, w, MUTEX) == (False, 0)


def _wait_all(lab: LockLab, readers: int, level: int) -> None:
    """Bounded: until every reader's FLAG has reached ``level``."""
    words, flag = lab.words, lab.at.status + FLAG
    end = time.monotonic() + BOUND_S / 3
    while sum(words[flag + c] >= level for c in range(readers)) < readers:
        if time.monotonic() > end:
            return
        time.sleep(0.0002)


def rwsem_reader(lab: LockLab, cpu: int, readers: int) -> None:
    """Take the read side (FIFO); once all ``readers`` hold (bounded wait), SEEN records
    how many readers hold the rwsem; nobody lets go before every reader has looked."""
    at, words = lab.at, lab.words
    words[at.status + cpu] = ARRIVED
    status = acquire(lab, RWSEM, cpu, at.stop, RWSEM_FIFO, READ)
    words[at.status + FLAG + cpu] = 1
    _wait_all(lab, readers, 1)
    words[at.status + SEEN + cpu] = rwsem_readers(words, at.lock)
    words[at.status + FLAG + cpu] = 2  # looked; about to let go
    _wait_all(lab, readers, 2)
    release(lab, RWSEM, cpu, RWSEM_FIFO, READ)
    words[at.status + cpu] = status


def rwsem_writer(lab: LockLab, cpu: int, readers: int) -> None:
    """Take the write side (FIFO); SEEN records how many readers had let go by then."""
    at, words = lab.at, lab.words
    words[at.status + cpu] = ARRIVED
    status = acquire(lab, RWSEM, cpu, at.stop, RWSEM_FIFO, WRITE)
    words[at.status + SEEN + cpu] = sum(words[at.status + FLAG + c] == 2 for c in range(readers))
    release(lab, RWSEM, cpu, RWSEM_FIFO, WRITE)
    words[at.status + cpu] = status


def test_rwsem_fifo_grants_a_run_of_queued_readers_together(bounded: LockLab) -> None:
    """3.8's FIFO hand-off: the writer's release grants the whole run of readers at the
    front of the queue at once (rwsem_wake_locked), not one reader per release; the
    writer queued behind them gets the rwsem only once all three have let go."""
    lab, at = bounded, bounded.at
    readers, writer = [0, 1, 2], 3

    def seen() -> str:
        return (f"statuses {statuses(lab, readers + [writer])}, readers holding at once "
                f"{[int(lab.words[at.status + SEEN + c]) for c in readers]}, writer saw "
                f"{int(lab.words[at.status + SEEN + writer])} released, state "
                f"{lock_state(lab.words, at.lock, RWSEM)}")

    assert acquire(lab, RWSEM, PARENT_CPU, at.stop, RWSEM_FIFO, WRITE) == LOCK_FAST
    pids = []
    for n, cpu in enumerate(readers + [writer], start=1):
        fn = rwsem_writer if cpu == writer else rwsem_reader
        pids.append(lab.spawn(fn, lab, cpu, len(readers)))
        wait_for(lab, lambda n=n: lock_state(lab.words, at.lock, RWSEM)[1] == n,
                 f"{n} waiters queued", seen)
    release(lab, RWSEM, PARENT_CPU, RWSEM_FIFO, WRITE)
    assert join_all(lab, pids, seen) == [0] * 4
    assert statuses(lab, readers + [writer]) == [LOCK_CONTENDED] * 4, seen()
    assert [lab.words[at.status + SEEN + c] for c in readers] == [3, 3, 3], seen()
    assert lab.words[at.status + SEEN + writer] == 3, seen()
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert rwsem_readers(lab.words, at.lock) == 0


def test_a_lab_wait_that_runs_out_fails_saying_what_it_waited_for_and_saw(lab: LockLab) -> None:
    """Every LockLab wait is an assertion with a message: what was awaited, the caller's
    view, the lock record, the log and each child's state (a sleeping child shows S)."""
    lab.DEADLINE_S = 0.3  # type: ignore[misc]
    at = lab.at
    assert acquire(lab, TICKET, PARENT_CPU, at.stop) == LOCK_FAST
    pid = lab.spawn(time.sleep, 60)
    with pytest.raises(LabDeadline) as e:
        lab.join(pid, lambda: "the test's own view")
    text = str(e.value)
    assert isinstance(e.value, AssertionError)
    assert f"for child {pid} (sleep) to exit, in vain; the test saw the test's own view" in text, text
    assert "lock=[1, 0, " in text and "log=[]" in text, text  # the ticket lock: next 1, serving 0
    assert f"sleep[{pid}]: S" in text, text
    with pytest.raises(LabDeadline, match=r"for 4 waiters queued, in vain; the lab held lock="):
        lab.wait_until(lambda: False, "4 waiters queued")
    release(lab, TICKET, PARENT_CPU)


def test_the_lab_watchdog_stops_a_stuck_acquire_in_the_test_process() -> None:
    """A lock taken in the test process spins in compiled code that no signal interrupts:
    the lab's watchdog sets the stop words, the acquire returns LOCK_STOPPED, and close()
    fails saying what the lab held (the lock still taken: nobody ever released it)."""
    lab = LockLab(watchdog_s=0.5)
    try:
        at = lab.at
        assert acquire(lab, TICKET, 0, at.stop) == LOCK_FAST  # "CPU 0" takes it and never lets go
        t0 = time.monotonic()
        assert acquire(lab, TICKET, PARENT_CPU, at.stop) == LOCK_STOPPED
        assert time.monotonic() - t0 < BOUND_S
    finally:
        with pytest.raises(LabDeadline, match=r"still running after 0.5 s .* the lab held lock=\[2, 0, "):
            lab.close()

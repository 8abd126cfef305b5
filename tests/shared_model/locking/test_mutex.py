"""The futex mutex across real processes: mutual exclusion, stop aborting spinners and
sleepers, and a holder that dies found by its waiters (exactly one takes it over and is
told LOCK_OWNER_DIED)."""

from __future__ import annotations

import time

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    MUTEX,
    lock_acquire,
    lock_owner,
    lock_release,
    lock_state,
    lock_trylock,
)
from shared_model.locking.common import owner_cpu, owner_pid
from shared_model.locking.locktorture import LockLab, torture_hammer
from shared_model.locks import owner_tag

LOOPS = 20_000
PARENT_CPU = 15


def take(lab: LockLab, cpu: int) -> int:
    at = lab.at
    return lock_acquire(lab.words, at.lock, MUTEX, 0, 0, lab.tag(cpu), at.node(cpu), at.stop)


def release(lab: LockLab, cpu: int) -> None:
    lock_release(lab.words, lab.at.lock, MUTEX, 0, 0, lab.at.node(cpu))


def waiter(lab: LockLab, cpu: int) -> None:
    """Take the mutex; log the order; status = what acquire said."""
    at, words = lab.at, lab.words
    status = take(lab, cpu)
    if status != LOCK_STOPPED:
        words[at.log + words[at.log_len]] = cpu
        words[at.log_len] += 1
        release(lab, cpu)
    words[at.status + cpu] = status


def test_mutual_exclusion_across_processes(lab: LockLab) -> None:
    at = lab.at

    def hammer(cpu: int) -> None:
        lab.words[at.status + cpu] = torture_hammer(
            lab.words, at.lock, MUTEX, 0, 0, lab.tag(cpu), at.node(cpu), at.stop, at.counter,
            LOOPS,
        )

    pids = [lab.spawn(hammer, cpu) for cpu in (0, 1, 2)]
    assert [lab.join(p) for p in pids] == [0, 0, 0]
    assert list(lab.words[at.status : at.status + 3]) == [LOOPS] * 3
    assert lab.words[at.counter] == 3 * LOOPS
    assert lock_state(lab.words, at.lock, MUTEX) == (False, 0)


def test_stop_aborts_every_waiter_and_the_mutex_stays_usable(lab: LockLab) -> None:
    at = lab.at
    assert take(lab, PARENT_CPU) == LOCK_FAST
    assert lock_owner(lab.words, at.lock) == lab.tag(PARENT_CPU)
    pids = [lab.spawn(waiter, lab, cpu) for cpu in (0, 1, 2)]
    lab.wait_until(lambda: lock_state(lab.words, at.lock, MUTEX) == (True, 3), "3 waiters")
    lab.words[at.stop] = 2
    assert [lab.join(p) for p in pids] == [0, 0, 0]
    assert list(lab.words[at.status : at.status + 3]) == [LOCK_STOPPED] * 3
    assert lock_state(lab.words, at.lock, MUTEX) == (True, 0)

    lab.words[at.stop] = 0
    release(lab, PARENT_CPU)
    assert lock_state(lab.words, at.lock, MUTEX) == (False, 0)
    assert lock_trylock(lab.words, at.lock, MUTEX, 0, 0, lab.tag(4))
    assert not lock_trylock(lab.words, at.lock, MUTEX, 0, 0, lab.tag(5))
    release(lab, 4)


def test_waiters_sleep_and_are_woken_by_the_release(lab: LockLab) -> None:
    """Two waiters queue behind the parent (long enough to have gone to sleep: the kernel
    shows them in futex_wait); both get the mutex once it is released."""
    at = lab.at
    assert take(lab, PARENT_CPU) == LOCK_FAST
    pids = [lab.spawn(waiter, lab, cpu) for cpu in (0, 1)]

    def asleep(pid: int) -> bool:
        with open(f"/proc/{pid}/wchan") as f:
            return "futex" in f.read()

    lab.wait_until(lambda: all(asleep(p) for p in pids), "both waiters asleep")
    release(lab, PARENT_CPU)
    assert [lab.join(p) for p in pids] == [0, 0]
    assert list(lab.words[at.status : at.status + 2]) == [LOCK_CONTENDED] * 2
    assert sorted(lab.words[at.log : at.log + 2]) == [0, 1]


def test_a_dead_holder_is_taken_over_by_exactly_one_waiter(lab: LockLab) -> None:
    at = lab.at

    def holder() -> None:
        assert take(lab, 5) == LOCK_FAST
        lab.words[at.status + 5] = 1
        time.sleep(60)

    dead = lab.spawn(holder)
    lab.wait_until(lambda: lab.words[at.status + 5] == 1, "the holder to hold")
    pids = [lab.spawn(waiter, lab, cpu) for cpu in (0, 1)]
    lab.wait_until(lambda: lock_state(lab.words, at.lock, MUTEX)[1] == 2, "2 waiters")
    assert lock_owner(lab.words, at.lock) == lab.tag(5, dead)
    lab.kill(dead)  # SIGKILL and reap: its pid is gone
    assert [lab.join(p) for p in pids] == [0, 0]
    statuses = sorted(lab.words[at.status : at.status + 2])
    assert statuses == [LOCK_CONTENDED, LOCK_OWNER_DIED]
    assert lock_state(lab.words, at.lock, MUTEX) == (False, 0)
    assert lock_owner(lab.words, at.lock) == 0


def test_owner_tag_decodes_as_it_was_made() -> None:
    """owner_pid and owner_cpu give back the pid and CPU that owner_tag put in, the
    builder's cpu -1 too (its tag's low part is 0: the pid is the high part, not one less),
    and no owner for 0.  The mutex's and rwsem's dead-owner checks read the pid this way."""
    for pid in (1, 4242, 4194303):
        for cpu in (-1, 0, 1, 63, 4094):
            tag = owner_tag(pid, cpu)
            assert (int(owner_pid(tag)), owner_cpu(tag)) == (pid, cpu), (pid, cpu)
    assert (int(owner_pid(0)), owner_cpu(0)) == (0, -1)

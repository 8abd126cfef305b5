"""3.0's mutex spinning (``mutex_spin_on_owner``) on the owner's published run state,
across real processes: a spinner keeps spinning, with no 50 us cap, while the owner's CPU
says it runs, and goes to sleep as soon as it says it sleeps.  Arrival is made through the
mutex's own counters (spinners, sleepers), never through sleeps; the one clock read
decides only whether the spinner's time slice (SPIN_SLICE_NS, need_resched) could have
run out, which would allow it to sleep."""

from __future__ import annotations

import time

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    MUTEX,
    lock_acquire,
    lock_is_wedged,
    lock_release,
)
from shared_model.locking.common import (
    NODE_RUN_STATE,
    RUN_RUNNING,
    RUN_SLEEPING,
    SPIN_SLICE_NS,
    owner_run_word,
)
from shared_model.locking.locktorture import LabLayout, LockLab
from shared_model.locking.mutex import SLEEPERS, SPINNERS, WAKE_SEQ

PARENT = 15
CHILD = 0


def spinner(lab: LockLab) -> None:
    at = lab.at
    status = lock_acquire(lab.words, at.lock, MUTEX, 0, 0, lab.tag(CHILD), at.node(CHILD),
                          at.stop)
    lab.words[at.status] = status
    lock_release(lab.words, at.lock, MUTEX, 0, 0, at.node(CHILD))


def hold(lab: LockLab) -> None:
    at = lab.at
    assert lock_acquire(lab.words, at.lock, MUTEX, 0, 0, lab.tag(PARENT), at.node(PARENT),
                        at.stop) == LOCK_FAST


def test_owner_run_word_is_the_owners_node_block() -> None:
    at = LabLayout()
    assert owner_run_word(at.node(3), 7 * 4096 + 3 + 1, 7 * 4096 + 15 + 1) == \
        at.node(15) + NODE_RUN_STATE
    assert owner_run_word(at.node(0), 5 * 4096 + 0 + 1, 9 * 4096) == \
        at.node(0) - (at.node(1) - at.node(0)) + NODE_RUN_STATE  # the builder: cpu -1


def test_a_spinner_keeps_spinning_past_50us_while_the_owner_runs(lab: LockLab) -> None:
    at, words = lab.at, lab.words
    hold(lab)
    t_spawn = time.monotonic_ns()
    pid = lab.spawn(spinner, lab)
    lab.wait_until(lambda: words[at.lock + SPINNERS] == 1, "the child to spin")
    time.sleep(0.001)  # 20 times the old 50 us cap
    t_release = time.monotonic_ns()
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT))
    assert lab.join(pid) == 0
    assert words[at.status] == LOCK_CONTENDED
    slept = words[at.lock + WAKE_SEQ] != 0  # the release found a sleeper to wake
    # It may have slept only if its time slice (need_resched) could have run out.
    assert not slept or t_release - t_spawn > SPIN_SLICE_NS
    assert words[at.lock + SPINNERS] == words[at.lock + SLEEPERS] == 0


def test_a_spinner_sleeps_when_the_owner_sleeps(lab: LockLab) -> None:
    at, words = lab.at, lab.words
    hold(lab)
    pid = lab.spawn(spinner, lab)
    lab.wait_until(lambda: words[at.lock + SPINNERS] == 1, "the child to spin")
    words[at.node(PARENT) + NODE_RUN_STATE] = RUN_SLEEPING  # the owner went to sleep
    lab.wait_until(lambda: words[at.lock + SLEEPERS] == 1, "the spinner to sleep")
    assert words[at.lock + SPINNERS] == 0
    words[at.node(PARENT) + NODE_RUN_STATE] = RUN_RUNNING
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT))
    assert lab.join(pid) == 0
    assert words[at.status] == LOCK_CONTENDED
    assert words[at.lock + WAKE_SEQ] == 1  # woken by the release
    assert words[at.lock + SLEEPERS] == 0


def test_a_spinner_follows_a_new_running_owner(lab: LockLab) -> None:
    """The owner changes (the parent hands the mutex to another of its CPUs, both
    running): the spinner spins on the new owner instead of sleeping."""
    at, words = lab.at, lab.words
    hold(lab)
    pid = lab.spawn(spinner, lab)
    lab.wait_until(lambda: words[at.lock + SPINNERS] == 1, "the child to spin")
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT))
    # Racing the spinner for it: whoever wins, nobody sleeps while both run.
    mine = lock_acquire(words, at.lock, MUTEX, 0, 0, lab.tag(PARENT - 1), at.node(PARENT - 1),
                        at.stop)
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT - 1))
    assert lab.join(pid) == 0
    assert mine in (LOCK_FAST, 1)
    assert words[at.status] == LOCK_CONTENDED
    assert words[at.lock + SLEEPERS] == 0


def test_a_spinner_killed_while_spinning_wedges_nothing(lab: LockLab) -> None:
    """A spinner holds no place: killed mid-spin, the mutex is released and taken as ever
    (its spinner count stays, a statistic only)."""
    at, words = lab.at, lab.words
    hold(lab)
    pid = lab.spawn(spinner, lab)
    lab.wait_until(lambda: words[at.lock + SPINNERS] == 1, "the child to spin")
    lab.kill(pid)
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT))
    assert not lock_is_wedged(words, at.lock, MUTEX)
    hold(lab)
    lock_release(words, at.lock, MUTEX, 0, 0, at.node(PARENT))

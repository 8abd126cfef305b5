"""The atomics, each across real processes sharing one mapping: adds are not lost, exactly
one cmpxchg wins, a release store publishes what was written before it, a futex sleeper
in one process is woken by another, and the C calls (clock, kill) behave."""

from __future__ import annotations

import os
import time

import numpy as np

from shared_model.locking.atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_add,
    atomic_fetch_and,
    atomic_fetch_or,
    atomic_xchg,
    clock_ns,
    cmpxchg,
    cpu_relax,
    futex_wait,
    futex_wake,
    pid_alive,
    smp_load_acquire,
    smp_store_release,
)
from shared_model.locking.cached_compile import cached_njit
from shared_model.locking.locktorture import LockLab

CHILDREN = 2
ADDS = 200_000


@cached_njit(cache=False)
def add_many(words: np.ndarray, i: int, n: int) -> None:
    for _ in range(n):
        atomic_fetch_add(words, i, 1)


@cached_njit(cache=False)
def race_cmpxchg(words: np.ndarray, gate: int, i: int, me: int) -> int:
    while READ_ONCE(words, gate) == 0:
        cpu_relax()
    return cmpxchg(words, i, 0, me)


SPIN_BUDGET = 1 << 30  # pauses before a spin gives up: a hang becomes a failure


@cached_njit(cache=False)
def publish(words: np.ndarray, data: int, flag: int, n: int) -> None:
    for k in range(1, n + 1):
        words[data] = k  # plain store, ordered before the release below
        smp_store_release(words, flag, k)
        spins = 0
        while READ_ONCE(words, flag) != 0 and spins < SPIN_BUDGET:  # the reader acknowledges
            cpu_relax()
            spins += 1


@cached_njit(cache=False)
def consume(words: np.ndarray, data: int, flag: int, n: int) -> int:
    """How many of ``n`` published values were seen stale after their flag (-1: gave up)."""
    bad = 0
    for k in range(1, n + 1):
        spins = 0
        while smp_load_acquire(words, flag) != k:
            cpu_relax()
            spins += 1
            if spins > SPIN_BUDGET:
                return -1
        if words[data] != k:
            bad += 1
        WRITE_ONCE(words, flag, 0)
    return bad


@cached_njit(cache=False)
def sleep_until_set(words: np.ndarray, i: int) -> int:
    sleeps = 0
    while READ_ONCE(words, i) == 0:
        futex_wait(words, i, 0, 30_000_000_000)
        sleeps += 1
    return sleeps


@cached_njit(cache=False)
def wake(words: np.ndarray, i: int) -> int:
    WRITE_ONCE(words, i, 1)
    return futex_wake(words, i, 1)


@cached_njit(cache=False)
def rmw_ops(words: np.ndarray, i: int) -> tuple[int, int, int, int]:
    a = atomic_xchg(words, i, 0b1100)
    b = atomic_fetch_or(words, i, 0b0011)
    c = atomic_fetch_and(words, i, 0b0110)
    return a, b, c, READ_ONCE(words, i)


@cached_njit(cache=False)
def now() -> int:
    return clock_ns()


@cached_njit(cache=False)
def alive(pid: int) -> bool:
    return pid_alive(pid)


def test_fetch_add_loses_nothing_across_processes(lab: LockLab) -> None:
    pids = [lab.spawn(add_many, lab.words, lab.at.counter, ADDS) for _ in range(CHILDREN)]
    add_many(lab.words, lab.at.counter, ADDS)
    assert [lab.join(p) for p in pids] == [0] * CHILDREN
    assert lab.words[lab.at.counter] == (CHILDREN + 1) * ADDS


def test_exactly_one_cmpxchg_wins(lab: LockLab) -> None:
    def contender(me: int) -> None:
        found = race_cmpxchg(lab.words, lab.at.stop, lab.at.counter, me)
        lab.words[lab.at.status + me] = 1 if found == 0 else 2

    pids = [lab.spawn(contender, me) for me in range(1, 5)]
    lab.words[lab.at.stop] = 1  # open the gate
    assert [lab.join(p) for p in pids] == [0] * 4
    results = list(lab.words[lab.at.status + 1 : lab.at.status + 5])
    assert sorted(results) == [1, 2, 2, 2]
    assert lab.words[lab.at.counter] == 1 + results.index(1)


def test_release_store_publishes_earlier_stores(lab: LockLab) -> None:
    data, flag = lab.at.counter, lab.at.log
    pid = lab.spawn(publish, lab.words, data, flag, 5_000)
    assert consume(lab.words, data, flag, 5_000) == 0
    assert lab.join(pid) == 0


def test_rmw_returns_old_values() -> None:
    w = np.zeros(2, dtype=np.int64)
    w[1] = 5
    assert rmw_ops(w, 1) == (5, 0b1100, 0b1111, 0b0110)
    w32 = np.zeros(4, dtype=np.int32)
    assert add_many(w32, 3, 7) is None and w32[3] == 7


def test_futex_wakes_a_sleeper_in_another_process(lab: LockLab) -> None:
    """The child sleeps (30 s timeout) until the word is set; the parent wakes it once the
    kernel shows it asleep in the futex: exactly one sleeper woken proves the wait is keyed
    on the shared page (a FUTEX_PRIVATE wait in another process would not be found)."""
    word = lab.at.counter

    def sleeper() -> None:
        lab.words[lab.at.status] = sleep_until_set(lab.words, word)

    pid = lab.spawn(sleeper)

    def asleep_in_futex() -> bool:
        with open(f"/proc/{pid}/wchan") as f:
            return "futex" in f.read()

    lab.wait_until(asleep_in_futex, "the child to sleep in futex_wait")
    assert wake(lab.words, word) == 1
    assert lab.join(pid) == 0
    assert lab.words[lab.at.status] == 1


def test_futex_wait_returns_at_once_when_the_word_differs(lab: LockLab) -> None:
    lab.words[lab.at.counter] = 7
    assert sleep_until_set(lab.words, lab.at.counter) == 0


def test_clock_ns_is_the_monotonic_clock() -> None:
    before = time.monotonic_ns()
    compiled = now()
    after = time.monotonic_ns()
    assert before <= compiled <= after


def test_pid_alive(lab: LockLab) -> None:
    assert alive(os.getpid())
    pid = lab.spawn(time.sleep, 60)
    assert alive(pid)
    lab.kill(pid)  # killed and reaped: the pid is gone
    assert not alive(pid)

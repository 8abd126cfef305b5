"""Sleeping mutex on a futex, with the kernel's adaptive spinning (2.6.30 on), robust.

Record (int64 words)::

    w+0  spinners   CPUs spinning for it now (statistics for lock_state)
    w+1  wake seq   the futex word: bumped by every wake-up, slept on by the sleepers
    w+2  sleepers   CPUs in the sleeping loop (announced before their last look)
    w+7  owner      THE LOCK WORD: 0 free, else the holder's owner tag (as the kernel's
                    mutex->owner); taken by cmpxchg(0 -> tag), freed by xchg(0)

Taking the owner word itself (not a flag then the tag) means a holder is never anonymous,
so a holder that dies is always found: a sleeper that sees the same owner twice checks
its pid (``pid_alive``) and, if it is gone, swaps the dead tag for its own and reports
LOCK_OWNER_DIED.  (A killed process stays "alive" until its parent reaps it.)

Acquire: fast path ``cmpxchg(owner, 0, tag)``.  Then spin as 3.0's ``__mutex_lock_common``
(``mutex_spin_on_owner``): while the lock is held by the same owner and that owner's CPU
publishes RUNNING (``common.owner_run_word``: the kernel's ``owner->on_cpu``), spin, for
as long as that lasts (no fixed cap); when the owner changes, spin on the new one; take the lock the moment it
reads free.  Stop spinning and sleep when the owner sleeps (futex, iowait, parked) or
this spinner's time slice is used up (``need_resched()``: SPIN_SLICE_NS).  Then sleep::

    sleeper                                   releaser
    sleepers += 1            (full barrier)
    seq = wake_seq
    cmpxchg(owner, 0, tag)   fails           xchg(owner, 0)          (full barrier)
    futex_wait(wake_seq, seq)                 sleepers > 0 ?  -> wake_seq += 1, futex_wake 1

A sleeper publishes RUN_SLEEPING in its own node block while it is in futex_wait, so a
spinner on a lock this CPU holds stops spinning.
Either the releaser sees the sleeper counted (and bumps the sequence, so the sleeper's
futex_wait returns at once even if it has not gone to sleep yet), or the sleeper's
cmpxchg comes after the release and takes the lock.  Hand-off is not FIFO: a woken
sleeper races with spinners and new arrivals, as the kernel's mutex.

Abort (stop): spinners and sleepers own nothing; they leave (a sleeper uncounts itself).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_add,
    atomic_xchg,
    clock_ns,
    cmpxchg,
    cpu_relax,
    futex_wait,
    futex_wake,
    pid_alive,
)
from .cached_compile import cached_njit
from .common import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    NODE_RUN_STATE,
    OWNER,
    RUN_RUNNING,
    RUN_SLEEPING,
    SPIN_SLICE_NS,
    WAIT_SLICE_NS,
    owner_pid,
    owner_run_word,
    stop_requested,
)

SPINNERS = 0
WAKE_SEQ = 1
SLEEPERS = 2
_NOT_TAKEN = -2


@cached_njit
def mutex_lock(words: np.ndarray, w: int, owner_tag: int, node_w: int, stop_w: int) -> int:
    """Take the mutex at record ``w`` as ``owner_tag``: spin while its owner runs, then
    sleep.  ``node_w``: the caller's node block (its run state, the owner's found from it)."""
    if cmpxchg(words, w + OWNER, 0, owner_tag) == 0:
        return LOCK_FAST
    return mutex_lock_slowpath(words, w, owner_tag, node_w, stop_w)


@cached_njit(llvm_inline=True)
def mutex_trylock(words: np.ndarray, w: int, owner_tag: int) -> bool:
    """Take the mutex if it is free; never waits."""
    return cmpxchg(words, w + OWNER, 0, owner_tag) == 0


@cached_njit(llvm_inline=True)
def mutex_unlock(words: np.ndarray, w: int) -> None:
    """Release the mutex the caller holds; wake one sleeper if any."""
    atomic_xchg(words, w + OWNER, 0)  # a full barrier before reading the sleepers
    if READ_ONCE(words, w + SLEEPERS) > 0:
        atomic_fetch_add(words, w + WAKE_SEQ, 1)
        futex_wake(words, w + WAKE_SEQ, 1)


@cached_njit
def mutex_lock_slowpath(words: np.ndarray, w: int, owner_tag: int, node_w: int,
                        stop_w: int) -> int:
    status = mutex_optimistic_spin(words, w, owner_tag, node_w, stop_w)
    if status != _NOT_TAKEN:
        return status
    return mutex_sleep(words, w, owner_tag, node_w, stop_w)


@cached_njit
def mutex_optimistic_spin(words: np.ndarray, w: int, owner_tag: int, node_w: int,
                          stop_w: int) -> int:
    """3.0's spin loop: spin while the owner runs (``mutex_spin_on_owner``), taking the
    mutex the moment it is free; LOCK_CONTENDED if taken, LOCK_STOPPED, or _NOT_TAKEN (go
    to sleep: the owner sleeps, or this spinner's slice is used up)."""
    atomic_fetch_add(words, w + SPINNERS, 1)
    start = clock_ns()
    spins = 0
    status = _NOT_TAKEN
    while True:
        owner = READ_ONCE(words, w + OWNER)
        if owner == 0:
            if cmpxchg(words, w + OWNER, 0, owner_tag) == 0:
                status = LOCK_CONTENDED
                break
        elif READ_ONCE(words, owner_run_word(node_w, owner_tag, owner)) != RUN_RUNNING:
            break  # mutex_spin_on_owner: the owner is not on a CPU
        if stop_requested(words, stop_w):
            status = LOCK_STOPPED
            break
        spins += 1
        if spins % 64 == 0 and clock_ns() - start > SPIN_SLICE_NS:
            break  # need_resched()
        cpu_relax()
    atomic_fetch_add(words, w + SPINNERS, -1)
    return status


@cached_njit
def mutex_sleep(words: np.ndarray, w: int, owner_tag: int, node_w: int, stop_w: int) -> int:
    """Sleep on the wake sequence until the mutex is taken, its owner found dead, or the
    run stops; wakes every WAIT_SLICE_NS to look.  This CPU reads RUN_SLEEPING meanwhile."""
    atomic_fetch_add(words, w + SLEEPERS, 1)
    last_owner = 0
    while True:
        seq = READ_ONCE(words, w + WAKE_SEQ)
        owner = cmpxchg(words, w + OWNER, 0, owner_tag)
        if owner == 0:
            status = LOCK_CONTENDED
            break
        if stop_requested(words, stop_w):
            status = LOCK_STOPPED
            break
        # The same owner a whole slice later: is it still alive?
        if owner == last_owner and not pid_alive(owner_pid(owner)):
            if cmpxchg(words, w + OWNER, owner, owner_tag) == owner:
                status = LOCK_OWNER_DIED
                break
            continue
        last_owner = owner
        run = words[node_w + NODE_RUN_STATE]
        WRITE_ONCE(words, node_w + NODE_RUN_STATE, RUN_SLEEPING)
        futex_wait(words, w + WAKE_SEQ, seq, WAIT_SLICE_NS)
        WRITE_ONCE(words, node_w + NODE_RUN_STATE, run)
    atomic_fetch_add(words, w + SLEEPERS, -1)
    return status


@cached_njit
def mutex_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    """(locked, waiters spinning or sleeping)."""
    waiters = READ_ONCE(words, w + SPINNERS) + READ_ONCE(words, w + SLEEPERS)
    return READ_ONCE(words, w + OWNER) != 0, waiters

"""Compiled dispatch: one entry point per operation for every kind of lock.

The callers (the compiled walk, faults, fork and exit) hold a record index and the era's
lock kind; these functions pick the primitive and keep the owner word, so a primitive's
file holds only its algorithm.  All take the segment as one int64 array ``words``:

* ``w``          the lock record's first word (8 words: see each primitive's header)
* ``kind``       TAS, TICKET, QSPINLOCK, MUTEX or RWSEM
* ``policy``     RWSEM_FIFO or RWSEM_STEAL (rwsem only)
* ``shared``     1: the read side (rwsem only; every other kind is exclusive)
* ``owner_tag``  pid * 4096 + cpu + 1 of the caller, written to word w+7 by an exclusive
                 holder right after it acquires, cleared before it releases
* ``node_w``     first word of the caller's per-CPU node block (NODE_BLOCK_WORDS words):
                 qspinlock queues on it, rwsem sleeps on it
* ``stop_w``     the run's stop word: ``>= 2`` makes every wait return LOCK_STOPPED

Compiled code raises nothing: acquire returns LOCK_FAST, LOCK_CONTENDED, LOCK_OWNER_DIED
or LOCK_STOPPED, and the Python caller turns LOCK_STOPPED into ``Stopped``.
"""

from __future__ import annotations

import time

import numpy as np

from .atomics import WRITE_ONCE
from .cached_compile import cached_njit
from .common import (
    LOCK_STOPPED,
    MUTEX,
    NODE_BLOCK_WORDS,
    OWNER,
    QSPINLOCK,
    RECORD_WORDS,
    RWSEM,
    TAS,
    TICKET,
)
from .mutex import mutex_lock, mutex_state, mutex_trylock, mutex_unlock
from .qspinlock import (
    queued_spin_is_wedged,
    queued_spin_lock,
    queued_spin_state,
    queued_spin_trylock,
    queued_spin_unlock,
)
from .rwsem import down_read, down_read_trylock, down_write, down_write_trylock
from .rwsem_queue import rwsem_is_wedged, rwsem_state, up_read, up_write
from .tas import tas_lock, tas_state, tas_trylock, tas_unlock
from .ticket import (
    ticket_is_wedged,
    ticket_lock,
    ticket_state,
    ticket_trylock,
    ticket_unlock,
)


@cached_njit(llvm_inline=True)
def _exclusive(kind: int, shared: int) -> bool:
    return not (kind == RWSEM and shared)


@cached_njit
def lock_acquire(
    words: np.ndarray,
    w: int,
    kind: int,
    policy: int,
    shared: int,
    owner_tag: int,
    node_w: int,
    stop_w: int,
) -> int:
    """Take the lock at record ``w`` (waiting as its kind waits, bounded by the stop word);
    an exclusive holder then writes its tag into the owner word.  Returns a LOCK_* status;
    on LOCK_STOPPED nothing is held."""
    if kind == TICKET:
        status = ticket_lock(words, w, stop_w)
    elif kind == QSPINLOCK:
        status = queued_spin_lock(words, w, node_w, stop_w)
    elif kind == TAS:
        status = tas_lock(words, w, stop_w)
    elif kind == MUTEX:
        # The mutex's lock word *is* the owner word: it is taken by swapping 0 -> owner_tag,
        # so no instant exists where it is held by nobody known (robust).
        return mutex_lock(words, w, owner_tag, node_w, stop_w)
    elif shared:
        return down_read(words, w, policy, node_w, stop_w)
    else:
        status = down_write(words, w, policy, owner_tag, node_w, stop_w)
    if status != LOCK_STOPPED:
        WRITE_ONCE(words, w + OWNER, owner_tag)
    return status


@cached_njit(llvm_inline=True, python=True)
def lock_trylock(
    words: np.ndarray, w: int, kind: int, policy: int, shared: int, owner_tag: int
) -> bool:
    """Take the lock at record ``w`` if that needs no waiting; True if taken."""
    if kind == TICKET:
        taken = ticket_trylock(words, w)
    elif kind == QSPINLOCK:
        taken = queued_spin_trylock(words, w)
    elif kind == TAS:
        taken = tas_trylock(words, w)
    elif kind == MUTEX:
        return mutex_trylock(words, w, owner_tag)
    elif shared:
        return down_read_trylock(words, w, policy)
    else:
        taken = down_write_trylock(words, w, policy)
    if taken:
        WRITE_ONCE(words, w + OWNER, owner_tag)
    return taken


@cached_njit(llvm_inline=True, python=True)
def lock_release(
    words: np.ndarray, w: int, kind: int, policy: int, shared: int, node_w: int
) -> None:
    """Release the lock at record ``w``, which the caller holds (in mode ``shared``); the
    owner word is cleared first."""
    if kind == MUTEX:
        mutex_unlock(words, w)
        return
    if _exclusive(kind, shared):
        WRITE_ONCE(words, w + OWNER, 0)
    if kind == TICKET:
        ticket_unlock(words, w)
    elif kind == QSPINLOCK:
        queued_spin_unlock(words, w)
    elif kind == TAS:
        tas_unlock(words, w)
    elif shared:
        up_read(words, w, policy)
    else:
        up_write(words, w, policy)


@cached_njit
def lock_state_compiled(words: np.ndarray, w: int, kind: int) -> tuple[bool, int]:
    """(locked, waiters) of the lock at record ``w``, read without taking anything."""
    if kind == TICKET:
        return ticket_state(words, w)
    if kind == QSPINLOCK:
        return queued_spin_state(words, w)
    if kind == TAS:
        return tas_state(words, w)
    if kind == MUTEX:
        return mutex_state(words, w)
    return rwsem_state(words, w)


@cached_njit
def lock_is_wedged(words: np.ndarray, w: int, kind: int) -> bool:
    """The lock can never be taken again because a CPU died queued for it (ticket,
    qspinlock: also holding the pending bit; rwsem: asleep in its queue).  Meaningful only
    once every live CPU has stopped waiting (after a stop): the report then names the lock
    left unusable.  A dead *holder* is the owner word's
    business, not this."""
    if kind == TICKET:
        return ticket_is_wedged(words, w)
    if kind == QSPINLOCK:
        return queued_spin_is_wedged(words, w)
    if kind == RWSEM:
        return rwsem_is_wedged(words, w)
    return False


@cached_njit
def wedged_in(words: np.ndarray, w0: int, stride: int, count: int, kind: int,
              out: np.ndarray) -> int:
    """``lock_is_wedged`` over ``count`` locks of one kind, at words ``w0 + i * stride``:
    the indices of the wedged ones into ``out``, how many (at most ``len(out)``)."""
    n = 0
    if kind != TICKET and kind != QSPINLOCK and kind != RWSEM:
        return 0
    for i in range(count):
        if lock_is_wedged(words, w0 + i * stride, kind) and n < len(out):
            out[n] = i
            n += 1
    return n


def lock_state(words: np.ndarray, w: int, kind: int) -> tuple[bool, int]:
    """(locked, waiters) for the live view: "locked by cpu 3, 7 waiters" (the holder is
    ``owner_cpu(words[w + 7])``; an rwsem held only by readers has no owner)."""
    locked, waiters = lock_state_compiled(words, w, kind)
    return bool(locked), int(waiters)


def lock_owner(words: np.ndarray, w: int) -> int:
    """The owner tag in the record's owner word (0: none, or only readers)."""
    return int(words[w + OWNER])


def compile_locks() -> float:
    """Compile (or load from the on-disk cache) every entry point above for the argument
    types callers use (an int64 array, Python ints), in this process; seconds taken.
    Call it in the parent before forking the CPUs: children then run this code without
    compiling.  Arguments of other types (np.int32 indices, a bool ``shared``) would make
    numba compile another version, in each child."""
    start = time.perf_counter()
    for kind in (TAS, TICKET, QSPINLOCK, MUTEX, RWSEM):
        for shared in (0, 1):
            words = np.zeros(RECORD_WORDS + NODE_BLOCK_WORDS + 1, dtype=np.int64)
            node_w, stop_w = RECORD_WORDS, RECORD_WORDS + NODE_BLOCK_WORDS
            lock_acquire(words, 0, kind, 0, shared, 1, node_w, stop_w)
            lock_state(words, 0, kind)
            lock_is_wedged(words, 0, kind)
            lock_release(words, 0, kind, 0, shared, node_w)
            if lock_trylock(words, 0, kind, 0, shared, 1):
                lock_release(words, 0, kind, 0, shared, node_w)
    return time.perf_counter() - start

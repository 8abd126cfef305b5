"""test-and-test-and-set spinlock: unfair, kept for comparison (glibc's pthread_spinlock).

Record (int64 words)::

    w+0  locked     0 free, 1 held         <- every waiter reads it, the holder writes it
    w+7  owner      tag of the holder

Hand-off: none.  The holder stores 0 and every spinner, reading its cached copy of the
line, races to swap 0 -> 1; whoever's cmpxchg reaches the line first wins, whatever the
order they came in::

    holder:  store-release locked = 0
    CPU 1:   load 0 -> cmpxchg(0, 1) ok   (won)
    CPU 2:   load 0 -> cmpxchg(0, 1) fails -> back to reading

Abort: a spinner owns nothing while it spins, so a stopped waiter just walks away.
"""

from __future__ import annotations

import numpy as np

from .atomics import READ_ONCE, cmpxchg, cpu_relax, smp_store_release
from .cached_compile import cached_njit
from .common import LOCK_CONTENDED, LOCK_FAST, LOCK_STOPPED, stop_requested

LOCKED = 0


@cached_njit
def tas_lock(words: np.ndarray, w: int, stop_w: int) -> int:
    """Take the lock at record ``w``; spin (bounded by the stop word) if it is held."""
    if cmpxchg(words, w + LOCKED, 0, 1) == 0:
        return LOCK_FAST
    return tas_lock_slowpath(words, w, stop_w)


@cached_njit
def tas_lock_slowpath(words: np.ndarray, w: int, stop_w: int) -> int:
    """Spin reading (not writing) the lock word until it reads free, then try to swap."""
    while True:
        while READ_ONCE(words, w + LOCKED) != 0:
            if stop_requested(words, stop_w):
                return LOCK_STOPPED
            cpu_relax()
        if cmpxchg(words, w + LOCKED, 0, 1) == 0:
            return LOCK_CONTENDED


@cached_njit(llvm_inline=True)
def tas_trylock(words: np.ndarray, w: int) -> bool:
    """Take the lock if it is free; never waits."""
    return READ_ONCE(words, w + LOCKED) == 0 and cmpxchg(words, w + LOCKED, 0, 1) == 0


@cached_njit(llvm_inline=True)
def tas_unlock(words: np.ndarray, w: int) -> None:
    """Release the lock the caller holds."""
    smp_store_release(words, w + LOCKED, 0)


@cached_njit
def tas_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    """(locked, waiters): spinners leave no trace, so waiters is always 0."""
    return READ_ONCE(words, w + LOCKED) != 0, 0

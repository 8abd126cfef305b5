"""The spinning and sleeping kinds behind one pair of calls, as kernel/locking/spinlock.c's
``_raw_spin_trylock`` and ``_raw_spin_unlock`` sit above each arch's primitive:
``spin_trylock`` and ``spin_release`` take the lock record's kind (``shared_model.locking``)
and run that primitive's fast path.

The spinning kinds' few instructions (ticket, tas, qspinlock) are inlined into every
caller; a mutex's or an rwsem's fast path is a call through a C entry point
(``lock_trylock_sleeping``, ``lock_release_sleeping``), so that the inlined copy stays
small.  An exclusive holder writes its owner tag after it takes the lock and clears it
before it lets go.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray

from .locking import QSPINLOCK, TAS, TICKET, lock_release, lock_trylock
from .locking.atomics import WRITE_ONCE, c_entry_call
from .locking.cached_compile import I64, I64P, cached_cfunc, cached_njit
from .locking.common import OWNER
from .locking.qspinlock import queued_spin_trylock, queued_spin_unlock
from .locking.tas import tas_trylock, tas_unlock
from .locking.ticket import ticket_trylock, ticket_unlock


@cached_cfunc("rmap_stress_lock_trylock_sleeping", I64(I64P, I64, I64, I64, I64, I64, I64))
def lock_trylock_sleeping_cabi(wp: Any, wn: int, w: int, kind: int, policy: int, shared: int,
                               owner_tag: int) -> int:
    """lock_trylock of the sleeping kinds (mutex, rwsem), behind a C entry point: see
    spin_trylock and lock_acquire_slowpath_cabi."""
    return int(lock_trylock(carray(wp, wn), w, kind, policy, shared, owner_tag))


@cached_cfunc("rmap_stress_lock_release_sleeping", I64(I64P, I64, I64, I64, I64, I64, I64))
def lock_release_sleeping_cabi(wp: Any, wn: int, w: int, kind: int, policy: int, shared: int,
                               node_w: int) -> int:
    """lock_release of the sleeping kinds (mutex, rwsem), behind a C entry point."""
    lock_release(carray(wp, wn), w, kind, policy, shared, node_w)
    return 0


lock_trylock_sleeping = c_entry_call("rmap_stress_lock_trylock_sleeping", 1, 5)
lock_release_sleeping = c_entry_call("rmap_stress_lock_release_sleeping", 1, 5)


@cached_njit(llvm_inline=True)
def spin_trylock(words: np.ndarray, w: int, kind: int, policy: int, shared: int, owner_tag: int) -> bool:
    """``lock_trylock`` with the spinning kinds' few instructions here, to be inlined
    into every caller, and the sleeping kinds' (a mutex's or rwsem's, whose fast paths
    are longer and whose callers pay a sleep when contended anyway) behind a call: the
    inlined copy stays small, which is what LLVM's time grows with."""
    if kind == TICKET:
        taken = ticket_trylock(words, w)
    elif kind == TAS:
        taken = tas_trylock(words, w)
    elif kind == QSPINLOCK:
        taken = queued_spin_trylock(words, w)
    else:
        return lock_trylock_sleeping(words, w, kind, policy, shared, owner_tag) != 0
    if taken:
        WRITE_ONCE(words, w + OWNER, owner_tag)
    return taken


@cached_njit(llvm_inline=True)
def spin_release(words: np.ndarray, w: int, kind: int, policy: int, shared: int, node_w: int) -> None:
    """``lock_release``, split as ``spin_trylock``."""
    if kind == TICKET:
        WRITE_ONCE(words, w + OWNER, 0)
        ticket_unlock(words, w)
    elif kind == TAS:
        WRITE_ONCE(words, w + OWNER, 0)
        tas_unlock(words, w)
    elif kind == QSPINLOCK:
        WRITE_ONCE(words, w + OWNER, 0)
        queued_spin_unlock(words, w)
    else:
        lock_release_sleeping(words, w, kind, policy, shared, node_w)

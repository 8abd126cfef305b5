"""The request point: a contended lock request takes its place in the lock's order in
compiled code, before it returns, and keeps it in the CPU's geometry table
(``g[REQ_PLACE]``, ``g[REQ_W]``, ``g[REQ_KIND]``) for the wait to poll, wherever that wait
happens (a compiled caller at once, a walk after returning to Python).

The place is what the kernel's primitive takes before it spins or sleeps: a ticket lock's
ticket (2.6.3x's ``__ticket_spin_lock``: ``ticket_request``), a qspinlock's pending bit or
MCS node (6.0's ``queued_spin_lock_slowpath``) and an rwsem's wait-list node
(``lock_request_place``).  A mutex and a tas lock take none.  ``spin_request`` is
shared_model/spinlock.py's ``spin_trylock`` with the request point added;
shared_model/locks.py's ``lock_request_fast`` calls it, and ``lock_acquire_slowpath`` polls
the place it took.  A place nobody will wait on is given up (``lock_request_cancel``):
the hand-off skips it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray

from . import ctx as G
from .locking import QSPINLOCK, RWSEM, TICKET
from .locking.atomics import WRITE_ONCE, atomic_fetch_add, c_entry_call, cmpxchg, smp_load_acquire
from .locking.cached_compile import I64, I64P, cached_cfunc, cached_njit
from .locking.common import OWNER
from .locking.qspinlock import LOCKED_VAL as QSPIN_LOCKED
from .locking.qspinlock import queued_spin_abandon, queued_spin_request, queued_spin_trylock
from .locking.rwsem import rwsem_request
from .locking.rwsem_queue import rwsem_abandon
from .locking.ticket import NEXT as TICKET_NEXT
from .locking.ticket import SERVING as TICKET_SERVING
from .locking.ticket import ticket_abandon
from .spinlock import lock_trylock_sleeping, spin_trylock


@cached_njit(inline=True)
def ticket_request(words: np.ndarray, g: np.ndarray, w: int) -> bool:
    """The ticket spinlock's request point, as 2.6.3x's ``__ticket_spin_lock``
    (arch/x86/include/asm/spinlock.h of 2.6.36, NR_CPUS < 256: ``LOCK xaddw`` takes the
    ticket, then ``cmpb`` against the owner byte, reloaded after each ``rep; nop``): take
    a ticket (one ``xadd`` on ``next``) and compare it with the one served: True when it is
    served at once.  Otherwise the ticket is this CPU's place in the queue from now on: it
    is kept in ``g[REQ_PLACE]`` (ticket + 1; the lock word in ``g[REQ_W]``) for the slow
    path to poll, wherever the caller waits (a compiled caller at once, a walk after
    returning to Python).  A CPU that asks again for the lock it already holds a ticket
    for (a walk that returned to Python and walks again) polls that ticket instead of
    taking another; a ticket held for another lock is given up first (abandoned: the
    hand-off skips it)."""
    place = g[G.REQ_PLACE]
    if place != 0 and g[G.REQ_W] == w:
        ticket = place - 1
    else:
        if place != 0:  # a place held for another lock: given up
            call_lock_request_cancel(words, g)
            place = 0
        ticket = atomic_fetch_add(words, w + TICKET_NEXT, 1)
    if smp_load_acquire(words, w + TICKET_SERVING) == ticket:
        if place != 0:
            g[G.REQ_PLACE] = 0
        return True
    g[G.REQ_PLACE] = ticket + 1
    g[G.REQ_W] = w
    g[G.REQ_KIND] = TICKET
    return False


@cached_njit
def lock_request_abandon(words: np.ndarray, g: np.ndarray) -> None:
    """Give up the place a contended request took and nobody will wait on, as a stopped
    waiter gives up its own: a ticket is abandoned (the hand-off skips it), a qspinlock's
    pending bit cleared or its MCS node abandoned (the head skips it), an rwsem's node
    taken out of the wait list (or the lock given back if it was granted meanwhile)."""
    place = g[G.REQ_PLACE]
    if place == 0:
        return
    g[G.REQ_PLACE] = 0
    kind = g[G.REQ_KIND]
    if kind == TICKET:
        ticket_abandon(words, g[G.REQ_W], place - 1)
    elif kind == QSPINLOCK:
        queued_spin_abandon(words, g[G.REQ_W], g[G.NODE_W], place)
    elif kind == RWSEM:
        rwsem_abandon(words, g[G.REQ_W], g[G.RWSEM_POLICY], g[G.NODE_W], place)


@cached_cfunc("rmap_stress_lock_request_cancel", I64(I64P, I64, I64P, I64))
def lock_request_cancel_cabi(wp: Any, wn: int, gp: Any, gn: int) -> int:
    """lock_request_abandon behind a C entry point (see lock_acquire_slowpath_cabi)."""
    lock_request_abandon(carray(wp, wn), carray(gp, gn))
    return 0


call_lock_request_cancel = c_entry_call("rmap_stress_lock_request_cancel", 2, 0)


@cached_njit
def lock_request_cancel(words: np.ndarray, g: np.ndarray) -> None:
    """Give up the place a contended request took and nobody will wait on (a caller that
    cannot wait): ``lock_request_abandon``, through its C entry point."""
    if g[G.REQ_PLACE] != 0:
        call_lock_request_cancel(words, g)


@cached_njit
def lock_request_place(words: np.ndarray, g: np.ndarray, w: int, kind: int, policy: int,
                       shared: int, owner_tag: int) -> bool:
    """The request point of a qspinlock or an rwsem, taken in compiled code before the
    request returns: True if the lock was taken (an exclusive holder's tag is then in the
    owner word); else this CPU's place is in ``g[REQ_PLACE]`` for the wait to poll:

    * qspinlock (6.0 ``queued_spin_lock_slowpath``): the pending bit, or an MCS node linked
      in after ``xchg_tail`` (``queued_spin_request``);
    * rwsem: a node at the tail of the wait list (``rwsem_request``); a writer of 3.19 and
      6.0 takes none, since its kernel spins on the owner before it queues.

    A CPU that asks again for the lock it already holds a place for polls that place (the
    wait does); a place held for another lock is given up first."""
    place = g[G.REQ_PLACE]
    if place != 0:
        if g[G.REQ_W] == w and g[G.REQ_KIND] == kind:
            return False
        lock_request_abandon(words, g)
    if kind == QSPINLOCK:
        if cmpxchg(words, w, 0, QSPIN_LOCKED) == 0:  # queued_spin_lock's fast path
            place = 0
        else:
            place = queued_spin_request(words, w, g[G.NODE_W])
    else:
        place = rwsem_request(words, w, policy, shared, owner_tag, g[G.NODE_W])
    if place == 0:
        if not (kind == RWSEM and shared):
            WRITE_ONCE(words, w + OWNER, owner_tag)
        return True
    if place > 0:
        g[G.REQ_PLACE] = place
        g[G.REQ_W] = w
        g[G.REQ_KIND] = kind
    return False


@cached_cfunc("rmap_stress_lock_request_place",
              I64(I64P, I64, I64P, I64, I64, I64, I64, I64, I64))
def lock_request_place_cabi(wp: Any, wn: int, gp: Any, gn: int, w: int, kind: int, policy: int,
                            shared: int, owner_tag: int) -> int:
    """lock_request_place behind a C entry point: the contended request is a call, so the
    inlined fast path stays small."""
    return int(lock_request_place(carray(wp, wn), carray(gp, gn), w, kind, policy, shared,
                                  owner_tag))


call_lock_request_place = c_entry_call("rmap_stress_lock_request_place", 2, 5)


@cached_njit(inline=True)
def spin_request(words: np.ndarray, g: np.ndarray, w: int, kind: int, policy: int, shared: int,
                 owner_tag: int) -> bool:
    """``spin_trylock``, except that a contended request keeps the place it took (the
    request point): a ticket lock's ticket (``ticket_request``, inline), a qspinlock's
    pending bit or MCS node and an rwsem's wait-list node (``lock_request_place``, a
    call).  A mutex and a tas lock take no place: 3.0's ``mutex_lock`` fast path is one
    ``decl`` (``__mutex_fastpath_lock``), and its slow path spins on the owner before it
    joins the wait list (``__mutex_lock_common``), which the wait does."""
    if kind == TICKET:
        taken = ticket_request(words, g, w)
    elif kind == QSPINLOCK:
        if g[G.REQ_PLACE] == 0 and queued_spin_trylock(words, w):
            taken = True
        else:
            return call_lock_request_place(words, g, w, kind, policy, shared, owner_tag) != 0
    elif kind == RWSEM:
        # The uncontended take stays the one call it was (lock_trylock_sleeping); only a
        # contended request makes the second, which queues.
        if g[G.REQ_PLACE] == 0 and lock_trylock_sleeping(words, w, kind, policy, shared,
                                                         owner_tag) != 0:
            return True
        return call_lock_request_place(words, g, w, kind, policy, shared, owner_tag) != 0
    else:
        return spin_trylock(words, w, kind, policy, shared, owner_tag)
    if taken:
        WRITE_ONCE(words, w + OWNER, owner_tag)
    return taken

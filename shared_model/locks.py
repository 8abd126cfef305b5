"""Real process-shared locks that live inside the shared segment, and their lockstat.

Lock ordering: the tree at the top of shared_model/rmap.py (mm/rmap.c's header, for the
locks the model has, per era).

The primitives are the kernel's own algorithms on real atomics, compiled with numba
(``shared_model/locking/``: ``ticket``, ``qspinlock``, ``tas``, ``mutex``, ``rwsem``).  The
anon_vma lock takes the era's primitive (or ``--lock``); the ptl and slab locks are
spinlocks of the era's spinning kind (ticket on the x86 of 2010).  page->_mapcount is no
lock: an atomic add on the page record (``rmap.mapcount_add_c``), as the kernel's atomic_t.

Every lock record is 64 bytes: the primitive's words, then ``owner`` (pid * 4096 + cpu + 1,
written by the holder after it acquires and cleared before it releases).

Instrumentation, recorded by compiled code in the acquiring CPU's own lockstat slot, for
its (class, call site): acquisitions, contentions (the first trylock failed), MCS
queueings (contentions that took a qspinlock node: the pending waiter takes none), wait (request
to acquire) and hold (acquire to release) min/max/total, and a histogram of each.  The
uncontended path costs two clock reads (one at acquire, one at release, as the kernel's
holdtime stamp; the TSC through ``locking.clock``, ~9 ns each, where clock_gettime costs
~21) and five stores after the release; waits are recorded only on the contended path.
Without lockstat (``--no-lockstat``) only the anon_vma lock is timed (the walk's share).

Python sees two calls per acquisition at most: ``lock_acquire_fast`` (a trylock) and, only
when that failed, the kind's ``*_slowpath`` wrapper, so that a py-spy profile shows lock
wait as its own frame (``CpuLocks.lock_contended`` -> ``spin_lock_slowpath``) under the
kernel function that asked for the lock.  Code that is itself compiled (the rmap walk)
calls the compiled halves directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import carray, njit, types

from . import ctx as G
from .ctx import Stopped, segment_words
from .layout import (
    CPU_FIELDS,
    CPU_STATE,
    LOCK_CLASSES,
    LOCK_SITES,
    LOCKDEP_CLASSES,
    LS_CONT,
    LS_FIELDS,
    LS_HOLD_HIST,
    LS_HOLD_MAX,
    LS_HOLD_MIN,
    LS_HOLD_TOTAL,
    LS_QUEUED,
    LS_WAIT_HIST,
    LS_WAIT_MAX,
    LS_WAIT_MIN,
    LS_WAIT_TOTAL,
    OWNER_WORD,
)
from .locking import (
    KIND_NAMES,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    MUTEX,
    QSPINLOCK,
    RWSEM,
    RWSEM_FIFO,
    TAS,
    TICKET,
    lock_acquire,
    lock_release,
    lock_trylock,
)
from .locking.atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_add,
    bit_length,
    c_entry_call,
    cmpxchg,
    futex_wait,
    smp_load_acquire,
)
from .locking.cached_compile import cached_cfunc, cached_njit
from .locking.clock import sched_clock
from .locking.common import DRAIN_NAP_NS, NODE_MCS_QUEUED, OWNER, STOP_ABORT
from .locking.qspinlock import LOCKED_VAL as QSPIN_LOCKED
from .locking.qspinlock import (
    PLACE_NODE_SHIFT,
    queued_spin_abandon,
    queued_spin_request,
    queued_spin_trylock,
    queued_spin_unlock,
    queued_spin_wait,
)
from .locking.rwsem import rwsem_abandon, rwsem_request, rwsem_wait_queued
from .locking.tas import tas_trylock, tas_unlock
from .locking.ticket import NEXT as TICKET_NEXT
from .locking.ticket import SERVING as TICKET_SERVING
from .locking.ticket import (
    ticket_abandon,
    ticket_lock_slowpath,
    ticket_trylock,
    ticket_unlock,
)
from .segment import Segment

# Primitive names a user can ask for (``--lock``); "spin" is kept as the old name of the
# era's spinlock.
LOCK_KINDS = tuple(KIND_NAMES)
LOCK_ALIASES = {"spin": "ticket"}
CLASS = {name: i for i, name in enumerate(LOCK_CLASSES)}
SITE = {name: i for i, name in enumerate(LOCK_SITES)}
I64_MAX = np.iinfo(np.int64).max
_NSITES = len(LOCK_SITES)
_NCLS = len(LOCK_CLASSES)
WAIT = CPU_STATE["wait"]
AV_CLASS = CLASS["anon_vma"]
QSPIN_FIRST_NODE_PLACE = 1 << PLACE_NODE_SHIFT  # a qspinlock place this or above: an MCS node


def lock_kind(name: str) -> int:
    """The ``shared_model.locking`` kind of a primitive name (``ValueError`` if unknown)."""
    name = LOCK_ALIASES.get(name, name)
    try:
        return KIND_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown lock kind {name!r} (choose from {', '.join(LOCK_KINDS)})") from None


# ---------------------------------------------------------------------------- compiled


@njit(inline="always")
def hist_bucket_c(v: int) -> int:
    """layout.hist_bucket, compiled (bit_length is one lzcnt)."""
    if v < 8:
        return max(0, v)
    bl = bit_length(v)
    return (bl << 2) | ((v >> (bl - 3)) & 3)


@njit(inline="always")
def local_clock(g: np.ndarray) -> int:
    """The lockstat clock (ns, CLOCK_MONOTONIC's scale): the TSC through the segment's
    calibration, or clock_gettime without a usable TSC (shared_model.locking.clock)."""
    return sched_clock(g[G.TSC_MULT], g[G.TSC_SHIFT], g[G.TSC_CYC0], g[G.TSC_NS0])


@cached_njit
def note_order(words: np.ndarray, g: np.ndarray, held: np.ndarray, cls: int, site: int) -> None:
    """lockdep: before taking class ``cls`` at ``site``, an edge from every class this CPU
    holds (recorded on the attempt, so a deadlock that never completes is still seen)."""
    base = g[G.LOCKDEP_BASE]
    for i in range(held[0]):
        hcls, hsite = held[1 + 2 * i], held[2 + 2 * i]
        e = base + (hcls * LOCKDEP_CLASSES + cls) * 2
        words[e] += 1
        if words[e + 1] == 0:
            words[e + 1] = hsite * 64 + site + 1


@cached_njit
def held_push(held: np.ndarray, cls: int, site: int) -> None:
    """lockdep's held stack: this CPU holds (or waits for) class ``cls`` taken at ``site``."""
    n = held[0]
    if 2 + 2 * n < len(held):
        held[1 + 2 * n] = cls
        held[2 + 2 * n] = site
        held[0] = n + 1


@cached_njit
def note_release(held: np.ndarray, cls: int) -> None:
    for i in range(held[0] - 1, -1, -1):
        if held[1 + 2 * i] == cls:
            for j in range(i, held[0] - 1):
                held[1 + 2 * j] = held[3 + 2 * j]
                held[2 + 2 * j] = held[4 + 2 * j]
            held[0] -= 1
            return


_I64P = types.CPointer(types.int64)
_I64 = types.int64


@cached_cfunc("rmap_stress_note_order", _I64(_I64P, _I64, _I64P, _I64, _I64P, _I64, _I64, _I64))
def note_order_cabi(wp: Any, wn: int, gp: Any, gn: int, hp: Any, hn: int, cls: int, site: int) -> int:
    """note_order (lockdep, --check-lock-order only) behind a C entry point."""
    note_order(carray(wp, wn), carray(gp, gn), carray(hp, hn), cls, site)
    return 0


@cached_cfunc("rmap_stress_note_release", _I64(_I64P, _I64, _I64))
def note_release_cabi(hp: Any, hn: int, cls: int) -> int:
    """note_release (lockdep) behind a C entry point."""
    note_release(carray(hp, hn), cls)
    return 0


call_note_order = c_entry_call("rmap_stress_note_order", 3, 2)
call_note_release = c_entry_call("rmap_stress_note_release", 1, 1)


@cached_cfunc("rmap_stress_lock_trylock_sleeping", _I64(_I64P, _I64, _I64, _I64, _I64, _I64, _I64))
def lock_trylock_sleeping_cabi(wp: Any, wn: int, w: int, kind: int, policy: int, shared: int,
                               owner_tag: int) -> int:
    """lock_trylock of the sleeping kinds (mutex, rwsem), behind a C entry point: see
    spin_trylock and lock_acquire_slowpath_cabi."""
    return int(lock_trylock(carray(wp, wn), w, kind, policy, shared, owner_tag))


@cached_cfunc("rmap_stress_lock_release_sleeping", _I64(_I64P, _I64, _I64, _I64, _I64, _I64, _I64))
def lock_release_sleeping_cabi(wp: Any, wn: int, w: int, kind: int, policy: int, shared: int,
                               node_w: int) -> int:
    """lock_release of the sleeping kinds (mutex, rwsem), behind a C entry point."""
    lock_release(carray(wp, wn), w, kind, policy, shared, node_w)
    return 0


lock_trylock_sleeping = c_entry_call("rmap_stress_lock_trylock_sleeping", 1, 5)
lock_release_sleeping = c_entry_call("rmap_stress_lock_release_sleeping", 1, 5)


@cached_njit(inline=True)
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


@cached_njit(inline=True)
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


@cached_cfunc("rmap_stress_lock_request_cancel", _I64(_I64P, _I64, _I64P, _I64))
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
              _I64(_I64P, _I64, _I64P, _I64, _I64, _I64, _I64, _I64, _I64))
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


@cached_njit(inline=True)
def _acquire_fast(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                  site: int, shared: int, request: bool) -> int:
    if g[G.ORDER_CHECK]:
        call_note_order(words, g, held, cls, site)
    if request:
        taken = spin_request(words, g, w, g[G.KIND0 + cls], g[G.RWSEM_POLICY], shared, g[G.OWNER_TAG])
    else:
        taken = spin_trylock(words, w, g[G.KIND0 + cls], g[G.RWSEM_POLICY], shared, g[G.OWNER_TAG])
    if not taken:
        return -1
    if g[G.ORDER_CHECK]:
        held_push(held, cls, site)
    if g[G.INSTRUMENT] or cls == AV_CLASS:
        return local_clock(g)
    return 0


@cached_njit(inline=True)
def lock_acquire_fast(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                      site: int, shared: int) -> int:
    """Try lock word ``w`` once; the acquire time (ns) on success, -1 when it is contended
    (nothing is then held or queued: a trylock).

    One clock read, after the lock is taken (the kernel's holdtime_stamp), and only when
    something will use it: lockstat, or the anon_vma lock's hold (the walk's time share);
    an untimed acquisition returns 0.  lockdep's bookkeeping only with --check-lock-order."""
    return _acquire_fast(words, g, held, w, cls, site, shared, False)


@cached_njit(inline=True)
def lock_request_fast(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                      site: int, shared: int) -> int:
    """The request: ``lock_acquire_fast``, except that a contended lock has taken its
    place in the lock's order when this returns -1 (``spin_request``: a ticket, a
    qspinlock's pending bit or MCS node, an rwsem's wait-list node), so the caller must
    then wait (``lock_acquire_slowpath``, which polls that place) or give the place up
    (``lock_request_cancel``)."""
    return _acquire_fast(words, g, held, w, cls, site, shared, True)


@cached_njit
def lockstat_clock(g: np.ndarray) -> int:
    """local_clock for the Python side (the time a contended request starts)."""
    return local_clock(g)


@cached_njit
def lock_acquire_slowpath(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                          site: int, shared: int, t0: int) -> int:
    """Wait for lock word ``w``, publishing "waiting for w" in this CPU's slot meanwhile;
    returns the acquire time, or -1 when the run was aborted (stop = 2) during the wait.
    Records the wait in lockstat."""
    if g[G.ORDER_CHECK]:  # held while it waits, as lockdep counts a lock being acquired
        held_push(held, cls, site)
    cb = g[G.CPU_BASE]
    prev_state, prev_since = words[cb + G.F_STATE], words[cb + G.F_SINCE]
    words[cb + G.F_WAIT_LOCK] = w
    words[cb + G.F_SINCE] = t0
    words[cb + G.F_STATE] = WAIT
    queueings = words[g[G.NODE_W] + NODE_MCS_QUEUED]
    kind = g[G.KIND0 + cls]
    place = g[G.REQ_PLACE]
    if place != 0 and g[G.REQ_KIND] == kind and g[G.REQ_W] == w:
        # The request already took its place (lock_request_fast): poll that one.
        g[G.REQ_PLACE] = 0
        if kind == TICKET:
            st = ticket_lock_slowpath(words, w, place - 1, g[G.STOP_W])
        elif kind == QSPINLOCK:
            if place >= QSPIN_FIRST_NODE_PLACE:
                queueings -= 1  # the request queued the node: this wait's queueing
            st = queued_spin_wait(words, w, g[G.NODE_W], place, g[G.STOP_W])
        else:
            st = rwsem_wait_queued(words, w, g[G.RWSEM_POLICY], g[G.NODE_W], place, g[G.STOP_W])
        if st != LOCK_STOPPED and not (kind == RWSEM and shared):
            WRITE_ONCE(words, w + OWNER, g[G.OWNER_TAG])
    else:
        if place != 0:  # a place for another lock that nobody will wait on: give it up
            lock_request_abandon(words, g)
        st = lock_acquire(words, w, kind, g[G.RWSEM_POLICY], shared, g[G.OWNER_TAG],
                          g[G.NODE_W], g[G.STOP_W])
    words[cb + G.F_STATE] = prev_state
    words[cb + G.F_SINCE] = prev_since
    words[cb + G.F_WAIT_LOCK] = -1
    t1 = local_clock(g)
    wait = t1 - t0
    words[cb + G.F_T_WAIT] += wait
    if g[G.INSTRUMENT]:
        # A wait cut short by the stop was still a wait: it counts as a contention of its
        # class (a ticket convoy under oversubscription is mostly waits that never finish,
        # and the class's wait share would otherwise miss them); it acquired nothing.
        b = g[G.LS_BASE] + (cls * _NSITES + site) * LS_FIELDS
        words[b + LS_CONT] += 1
        words[b + LS_QUEUED] += words[g[G.NODE_W] + NODE_MCS_QUEUED] - queueings
        words[b + LS_WAIT_TOTAL] += wait
        words[b + LS_WAIT_MAX] = max(words[b + LS_WAIT_MAX], wait)
        words[b + LS_WAIT_MIN] = min(words[b + LS_WAIT_MIN], wait)
        words[b + LS_WAIT_HIST + hist_bucket_c(wait)] += 1
    if st == LOCK_STOPPED:
        if g[G.ORDER_CHECK]:
            note_release(held, cls)
        return -1
    if st == LOCK_OWNER_DIED:
        words[cb + G.F_OWNER_DIED] += 1
    return t1


@cached_cfunc("rmap_stress_lock_acquire_slowpath",
              types.int64(_I64P, types.int64, _I64P, types.int64, _I64P, types.int64,
                          types.int64, types.int64, types.int64, types.int64, types.int64))
def lock_acquire_slowpath_cabi(wp: Any, wn: int, gp: Any, gn: int, hp: Any, hn: int, w: int,
                               cls: int, site: int, shared: int, t0: int) -> int:
    """lock_acquire_slowpath behind a C entry point: compiled callers reach the wait by
    name (``call_lock_acquire_slowpath``) instead of linking its code (every primitive's
    wait) into each of them, where LLVM optimised and emitted it again ~40 times."""
    return lock_acquire_slowpath(carray(wp, wn), carray(gp, gn), carray(hp, hn), w, cls, site,
                                 shared, t0)


call_lock_acquire_slowpath = c_entry_call("rmap_stress_lock_acquire_slowpath", 3, 5)


@cached_njit(llvm_inline=True)
def lock_acquire_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                   site: int, shared: int) -> int:
    """Both halves, for compiled callers: the acquire time, or -1 when aborted.

    Compiled once and pasted by LLVM into each compiled caller (``llvm_inline``): an
    uncontended acquisition makes no call (a call passes each of the three arrays as
    seven words: 17.4 ns for the ticket pair, 6.8 ns inlined); the wait is a call.

    Inside a ``no_abort_begin`` section the run's abort does not end the wait (never -1).
    ``g[ABORT_NTH]`` (tests only, as the kernel's fail_nth): from the n-th acquisition on,
    each gives up as an aborted wait does, with nothing taken."""
    n = g[G.ABORT_NTH]
    if n != 0 and g[G.NO_ABORT] == 0:
        if n == 1:
            return -1
        g[G.ABORT_NTH] = n - 1
    t = _lock_acquire(words, g, held, w, cls, site, shared)
    if t < 0 and g[G.NO_ABORT] != 0:
        t = lock_acquire_no_abort_c(words, g, held, w, cls, site, shared)
    return t


@njit(inline="always")
def no_abort_begin(g: np.ndarray) -> None:
    """Start a section the run's abort may not cut short: an error path putting the model
    back (an aborted wait or a failed allocation earlier in the operation), a free (a
    kfree cannot fail), or the rest of an operation past its point of no return.  Its
    lock waits outlast the abort (``lock_acquire_no_abort_c``).  Sections nest."""
    g[G.NO_ABORT] += 1


@njit(inline="always")
def no_abort_end(g: np.ndarray) -> None:
    g[G.NO_ABORT] -= 1


@njit(inline="always")
def abort_requested(words: np.ndarray, g: np.ndarray) -> bool:
    """The run is aborting and this CPU is not in a ``no_abort_begin`` section: a wait
    outside the lock primitives (a CPU cache lock, PG_locked) gives up."""
    return READ_ONCE(words, g[G.STOP_W]) >= STOP_ABORT and g[G.NO_ABORT] == 0


@njit(inline="always")
def _lock_acquire(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                  site: int, shared: int) -> int:
    t = lock_request_fast(words, g, held, w, cls, site, shared)
    if t >= 0:
        return t
    return call_lock_acquire_slowpath(words, g, held, w, cls, site, shared, local_clock(g))


@cached_njit
def lock_acquire_no_abort_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                            site: int, shared: int) -> int:
    """A wait the run's abort cut short inside a ``no_abort_begin`` section: the acquire
    time, never -1.

    The abort makes every wait give up; a CPU already unwinding must finish instead, or
    what it left half-done stays in the model.  So the wait is tried again, after a nap
    (DRAIN_NAP_NS, a futex wait on the stop word that nobody wakes), until the lock is
    taken: its holder is finishing or unwinding too (these sections take their locks in
    the order the operations do), and a holder that never comes back is a stall, which
    the run reports and ends by killing the CPUs."""
    while True:
        t = _lock_acquire(words, g, held, w, cls, site, shared)
        if t >= 0:
            return t
        stop_w = g[G.STOP_W]
        futex_wait(words, stop_w, READ_ONCE(words, stop_w), DRAIN_NAP_NS)


@njit(inline="always")
def lockstat_hold(words: np.ndarray, g: np.ndarray, cls: int, site: int, hold: int) -> None:
    """lock_release's lockstat: one acquisition held ``hold`` ns, into this CPU's slot."""
    b = g[G.LS_BASE] + (cls * _NSITES + site) * LS_FIELDS
    words[b] += 1  # LS_ACQ
    words[b + LS_HOLD_TOTAL] += hold
    words[b + LS_HOLD_MAX] = max(words[b + LS_HOLD_MAX], hold)
    words[b + LS_HOLD_MIN] = min(words[b + LS_HOLD_MIN], hold)
    words[b + LS_HOLD_HIST + hist_bucket_c(hold)] += 1


@cached_njit(llvm_inline=True)
def lock_release_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                   site: int, shared: int, t_acq: int) -> int:
    """Release lock word ``w`` taken at ``t_acq``; returns the hold time (ns; 0 when the
    acquisition was not timed).  One clock read, before the release; lockstat's stores
    after it, outside the critical section.  Inlined into compiled callers (LLVM), as
    lock_acquire_c."""
    if g[G.ORDER_CHECK]:
        call_note_release(held, cls)
    instrument = g[G.INSTRUMENT]
    hold = 0
    if instrument or cls == AV_CLASS:
        hold = local_clock(g) - t_acq
    spin_release(words, w, g[G.KIND0 + cls], g[G.RWSEM_POLICY], shared, g[G.NODE_W])
    if instrument:
        lockstat_hold(words, g, cls, site, hold)
    return hold


# ---------------------------------------------------------------------------- Python side


class CpuLocks:
    """One CPU's view of the locks: acquire/release with lockstat recording.

    Usage is always paired: ``t = acquire(w, cls, site)`` ... ``release(w, cls, site, t)``
    where ``w`` is the lock's word index in the segment.  ``g`` is this CPU's geometry
    table (``shared_model.ctx``), shared with the compiled code that takes locks itself.
    """

    def __init__(self, seg: Segment, cpu: int, g: np.ndarray) -> None:
        self.seg = seg
        self.cpu = cpu
        self.g = g
        self.words, self.w32 = segment_words(seg)
        self.owner_tag = int(g[G.OWNER_TAG])
        self.cpu_base = int(g[G.CPU_BASE])
        self.f = {name: self.cpu_base + i for i, name in enumerate(CPU_FIELDS)}
        self.stop_word = int(g[G.STOP_W])
        self.ls_base = int(g[G.LS_BASE])
        # lockdep's held stack: [count, (class, site) ...], process-local.
        self.held = np.zeros(1 + 2 * 16, dtype=np.int64)
        self._slowpaths = {cls: self._slowpath_for(int(g[G.KIND0 + cls])) for cls in range(_NCLS)}

    def _slowpath_for(self, kind: int) -> Callable[[int, int, int, int, int], int]:
        if kind == MUTEX:
            return self.mutex_lock_slowpath
        if kind == RWSEM:
            return self.rwsem_down_slowpath
        return self.spin_lock_slowpath

    # The knobs the Python side may flip between operations.
    @property
    def instrument(self) -> bool:
        return bool(self.g[G.INSTRUMENT])

    @instrument.setter
    def instrument(self, on: bool) -> None:
        self.g[G.INSTRUMENT] = int(on)

    @property
    def order_check(self) -> bool:
        return bool(self.g[G.ORDER_CHECK])

    @order_check.setter
    def order_check(self, on: bool) -> None:
        self.g[G.ORDER_CHECK] = int(on)

    @property
    def wait_ns(self) -> int:
        """This CPU's total lock wait so far (ns)."""
        return int(self.words[self.f["t_wait_ns"]])

    def stopping(self) -> bool:
        """The run is being aborted (stop >= 2): waiters give up with Stopped.  A plain stop
        (1) lets every CPU finish its current operation, so waits go on."""
        return bool(self.words[self.stop_word] >= 2)

    def reset_stats(self) -> None:
        """Zero this CPU's lockstat (min fields start at +inf)."""
        reset_lockstat(self.seg, self.cpu)

    def acquire(self, w: int, cls: int, site: int, shared: int = 0) -> int:
        """Take lock word ``w``; returns the acquire time (ns) to hand to ``release``."""
        t = lock_request_fast(self.words, self.g, self.held, w, cls, site, shared)
        if t < 0:
            t = self.lock_contended(w, cls, site, shared)
        return t

    def lock_contended(self, w: int, cls: int, site: int, shared: int = 0) -> int:
        """The contended path: the primitive's slow path (its own frame in a profile)."""
        # The request's time on the clock the slow path will stop on (lockstat's): a wait
        # is the difference of two readings of one clock, never of two calibrated ones.
        t = self._slowpaths[cls](w, cls, site, shared, lockstat_clock(self.g))
        if t < 0:
            raise Stopped()
        return t

    # One wrapper per kind of wait, named as the kernel's, so that a profile says which.
    def spin_lock_slowpath(self, w: int, cls: int, site: int, shared: int, t0: int) -> int:
        return lock_acquire_slowpath(self.words, self.g, self.held, w, cls, site, shared, t0)

    def mutex_lock_slowpath(self, w: int, cls: int, site: int, shared: int, t0: int) -> int:
        return lock_acquire_slowpath(self.words, self.g, self.held, w, cls, site, shared, t0)

    def rwsem_down_slowpath(self, w: int, cls: int, site: int, shared: int, t0: int) -> int:
        return lock_acquire_slowpath(self.words, self.g, self.held, w, cls, site, shared, t0)

    def release(self, w: int, cls: int, site: int, t_acq: int, shared: int = 0) -> int:
        """Release lock word ``w`` taken at ``t_acq``; returns the hold time (ns)."""
        return lock_release_c(self.words, self.g, self.held, w, cls, site, shared, t_acq)

    def owner(self, w: int) -> int:
        return int(self.words[w + OWNER_WORD])


def reset_lockstat(seg: Segment, cpu: int) -> None:
    """Zero CPU ``cpu``'s lockstat (min fields start at +inf)."""
    ls = seg["lockstat"][cpu]
    ls[...] = 0
    ls[..., LS_WAIT_MIN] = I64_MAX
    ls[..., LS_HOLD_MIN] = I64_MAX


def owner_tag(pid: int, cpu: int) -> int:
    return pid * 4096 + cpu + 1


def default_owner_tag(cpu: int) -> int:
    return owner_tag(os.getpid(), cpu)


__all__ = ["CLASS", "LOCK_KINDS", "RWSEM_FIFO", "SITE", "CpuLocks", "Stopped", "lock_kind"]

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

Here: the acquire and release paths (fast path, ``*_slowpath``, the abort sections),
lockstat, and ``CpuLocks``.  Beside it, as kernel/locking/ splits them: lockdep's held
stack and edges (shared_model/lockdep.py, lockdep.c), the per-kind trylock and release
(shared_model/spinlock.py, spinlock.c), and the request point, the place a contended
request takes before it waits (shared_model/lock_request.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import carray, types

from . import ctx as G
from .ctx import Stopped, segment_words
from .layout import (
    CPU_FIELDS,
    CPU_STATE,
    LOCK_CLASSES,
    LOCK_SITES,
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
from .lock_request import lock_request_abandon, spin_request
from .lockdep import call_note_order, call_note_release, held_push, note_release
from .locking import (
    KIND_NAMES,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    MUTEX,
    QSPINLOCK,
    RWSEM,
    RWSEM_FIFO,
    TICKET,
    lock_acquire,
)
from .locking.atomics import READ_ONCE, WRITE_ONCE, bit_length, c_entry_call, futex_wait
from .locking.cached_compile import I64P, cached_cfunc, cached_njit
from .locking.clock import sched_clock
from .locking.common import DRAIN_NAP_NS, NODE_MCS_QUEUED, OWNER, STOP_ABORT
from .locking.qspinlock import PLACE_NODE_SHIFT, queued_spin_wait
from .locking.rwsem import rwsem_wait_queued
from .locking.ticket import ticket_lock_slowpath
from .segment import Segment
from .spinlock import spin_release, spin_trylock

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


@cached_njit(llvm_inline=True)
def hist_bucket_c(v: int) -> int:
    """layout.hist_bucket, compiled (bit_length is one lzcnt)."""
    if v < 8:
        return max(0, v)
    bl = bit_length(v)
    return (bl << 2) | ((v >> (bl - 3)) & 3)


@cached_njit(llvm_inline=True)
def local_clock(g: np.ndarray) -> int:
    """The lockstat clock (ns, CLOCK_MONOTONIC's scale): the TSC through the segment's
    calibration, or clock_gettime without a usable TSC (shared_model.locking.clock)."""
    return sched_clock(g[G.TSC_MULT], g[G.TSC_SHIFT], g[G.TSC_CYC0], g[G.TSC_NS0])


@cached_njit(llvm_inline=True)
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


@cached_njit(llvm_inline=True, python=True)
def lock_acquire_fast(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, cls: int,
                      site: int, shared: int) -> int:
    """Try lock word ``w`` once; the acquire time (ns) on success, -1 when it is contended
    (nothing is then held or queued: a trylock).

    One clock read, after the lock is taken (the kernel's holdtime_stamp), and only when
    something will use it: lockstat, or the anon_vma lock's hold (the walk's time share);
    an untimed acquisition returns 0.  lockdep's bookkeeping only with --check-lock-order."""
    return _acquire_fast(words, g, held, w, cls, site, shared, False)


@cached_njit(llvm_inline=True, python=True)
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
              types.int64(I64P, types.int64, I64P, types.int64, I64P, types.int64,
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


@cached_njit(llvm_inline=True)
def no_abort_begin(g: np.ndarray) -> None:
    """Start a section the run's abort may not cut short: an error path putting the model
    back (an aborted wait or a failed allocation earlier in the operation), a free (a
    kfree cannot fail), or the rest of an operation past its point of no return.  Its
    lock waits outlast the abort (``lock_acquire_no_abort_c``).  Sections nest."""
    g[G.NO_ABORT] += 1


@cached_njit(llvm_inline=True)
def no_abort_end(g: np.ndarray) -> None:
    g[G.NO_ABORT] -= 1


@cached_njit(llvm_inline=True)
def abort_requested(words: np.ndarray, g: np.ndarray) -> bool:
    """The run is aborting and this CPU is not in a ``no_abort_begin`` section: a wait
    outside the lock primitives (a CPU cache lock, PG_locked) gives up."""
    return READ_ONCE(words, g[G.STOP_W]) >= STOP_ABORT and g[G.NO_ABORT] == 0


@cached_njit(llvm_inline=True)
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


@cached_njit(llvm_inline=True)
def lockstat_hold(words: np.ndarray, g: np.ndarray, cls: int, site: int, hold: int) -> None:
    """lock_release's lockstat: one acquisition held ``hold`` ns, into this CPU's slot."""
    b = g[G.LS_BASE] + (cls * _NSITES + site) * LS_FIELDS
    words[b] += 1  # LS_ACQ
    words[b + LS_HOLD_TOTAL] += hold
    words[b + LS_HOLD_MAX] = max(words[b + LS_HOLD_MAX], hold)
    words[b + LS_HOLD_MIN] = min(words[b + LS_HOLD_MIN], hold)
    words[b + LS_HOLD_HIST + hist_bucket_c(hold)] += 1


@cached_njit(llvm_inline=True, python=True)
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

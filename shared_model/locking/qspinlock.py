"""MCS-queued spinlock (x86 4.2 on), simplified: the kernel's qspinlock without the
pending bit.  Each waiter spins on its own per-CPU node, so a hand-off touches one
waiter's line instead of every waiter's.

Lock word (int64 at ``w+0``)::

    63                         8 7        0
    +---------------------------+----------+
    |  tail: node word + 1      |  locked  |      0: free, nobody queued
    +---------------------------+----------+
    w+1  queued     waiters in the queue (statistics for lock_state only)
    w+7  owner tag  of the holder

Per-CPU node (8 words; 4 per CPU, one per nesting level; the nesting count is the
block's word 7)::

    +0 state  WAITING 0 -> HEAD 1 (the MCS lock is passed to it), or ABANDONED 2 (stop)
              -> SKIPPED 3 (whoever passed over it is done with it: reusable)
    +1 next   successor node word + 1 (0: none yet)

Acquire: fast path ``cmpxchg(word, 0, locked)``.  Otherwise queue: swap our node into the
tail, link it from the old tail's ``next`` and spin on our own ``state`` until the node
ahead passes us the head; the head spins on the locked byte, sets it, and passes the head
on (or clears the tail if nobody is behind)::

    word:  tail=C | locked=1
    holder (no node)        A (head)              B                 C
    unlock: locked = 0 -->  sees locked 0,        spins on B.state  spins on C.state
                            sets locked,
                            B.state = HEAD -----> head now: spins on the locked byte

Release is one atomic decrement of the locked byte: the holder no longer has a node.

Abort (stop): a waiter behind the head cannot unlink itself (its predecessor may be about
to write its ``next``), so it marks its node ABANDONED with ``cmpxchg(state, WAITING,
ABANDONED)`` and leaves.  The head that would pass to it finds ``cmpxchg(state, WAITING,
HEAD)`` failing, takes over its duty (waits for its ``next`` or clears the tail) and
marks it SKIPPED; until then the abandoning CPU queues on its next nesting level's node.  A head
that is stopped passes the head on without taking the lock.  Exactly one of the two
cmpxchgs on ``state`` wins, so every node is either served or skipped: no waiter is
wedged.  A CPU killed while queued is not skipped: the queue behind it is then wedged
(see ``queued_spin_is_wedged``).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_add,
    cmpxchg,
    cpu_relax,
    smp_load_acquire,
    smp_store_release,
)
from .cached_compile import cached_njit
from .common import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    NODE_NESTING,
    NODE_WORDS,
    NODES_PER_CPU,
    stop_requested,
)

LOCKED_MASK = 0xFF
TAIL_SHIFT = 8
QUEUED = 1  # w+1

# node words
STATE = 0
NEXT = 1
# node states
WAITING = 0
HEAD = 1
ABANDONED = 2
SKIPPED = 3


@cached_njit
def queued_spin_lock(words: np.ndarray, w: int, node_w: int, stop_w: int) -> int:
    """Take the lock at record ``w``, queueing on this CPU's node block ``node_w``."""
    if cmpxchg(words, w, 0, 1) == 0:
        return LOCK_FAST
    return queued_spin_lock_slowpath(words, w, node_w, stop_w)


@cached_njit(inline=True)
def queued_spin_trylock(words: np.ndarray, w: int) -> bool:
    """Take the lock if it is free and nobody queues for it; never waits."""
    return READ_ONCE(words, w) == 0 and cmpxchg(words, w, 0, 1) == 0


@cached_njit(inline=True)
def queued_spin_unlock(words: np.ndarray, w: int) -> None:
    """Release the lock the caller holds: clear the locked byte for the queue's head."""
    atomic_fetch_add(words, w, -1)


@cached_njit
def queued_spin_lock_slowpath(words: np.ndarray, w: int, node_w: int, stop_w: int) -> int:
    """Queue on this CPU's next free node and wait for the head, then for the lock."""
    nesting = words[node_w + NODE_NESTING]
    # The next free node; one this CPU abandoned may still sit in some queue until the
    # head there skips it, so it is passed over too.
    idx = nesting
    while idx < NODES_PER_CPU and READ_ONCE(words, node_w + idx * NODE_WORDS + STATE) \
            == ABANDONED:
        idx += 1
    if idx >= NODES_PER_CPU:  # the kernel's answer to a fifth nesting level: spin on trylock
        while not queued_spin_trylock(words, w):
            if stop_requested(words, stop_w):
                return LOCK_STOPPED
            cpu_relax()
        return LOCK_CONTENDED
    words[node_w + NODE_NESTING] = idx + 1
    status = _queue_and_wait(words, w, node_w + idx * NODE_WORDS, stop_w)
    words[node_w + NODE_NESTING] = nesting
    return status


@cached_njit
def _queue_and_wait(words: np.ndarray, w: int, node: int, stop_w: int) -> int:
    WRITE_ONCE(words, node + STATE, WAITING)
    WRITE_ONCE(words, node + NEXT, 0)
    if queued_spin_trylock(words, w):
        return LOCK_CONTENDED
    atomic_fetch_add(words, w + QUEUED, 1)

    # xchg_tail: our node becomes the tail, the locked byte is kept.
    me = node + 1
    old = READ_ONCE(words, w)
    while True:
        found = cmpxchg(words, w, old, (old & LOCKED_MASK) | (me << TAIL_SHIFT))
        if found == old:
            break
        old = found
    prev = old >> TAIL_SHIFT
    if prev != 0:
        WRITE_ONCE(words, prev - 1 + NEXT, me)  # publish ourselves to the node ahead
        while smp_load_acquire(words, node + STATE) != HEAD:
            if stop_requested(words, stop_w):
                if cmpxchg(words, node + STATE, WAITING, ABANDONED) == WAITING:
                    atomic_fetch_add(words, w + QUEUED, -1)
                    return LOCK_STOPPED
                break  # the head was passed to us just now: leave as the head
            cpu_relax()

    # The head: wait for the holder to clear the locked byte.
    while True:
        val = smp_load_acquire(words, w)
        if val & LOCKED_MASK == 0:
            if val >> TAIL_SHIFT == me:  # nobody behind: take the lock and clear the tail
                if cmpxchg(words, w, val, 1) == val:
                    atomic_fetch_add(words, w + QUEUED, -1)
                    return LOCK_CONTENDED
                continue
            # Somebody is behind, so the fast path cannot take the byte: set it plainly.
            atomic_fetch_add(words, w, 1)
            atomic_fetch_add(words, w + QUEUED, -1)
            mcs_pass_head(words, w, node)
            return LOCK_CONTENDED
        if stop_requested(words, stop_w):
            atomic_fetch_add(words, w + QUEUED, -1)
            mcs_pass_head(words, w, node)
            return LOCK_STOPPED
        cpu_relax()


@cached_njit
def mcs_pass_head(words: np.ndarray, w: int, node: int) -> None:
    """The head ``node`` leaves the queue: pass the head to the first successor that has
    not abandoned, skipping (and marking SKIPPED) those that have; clear the tail when
    none is left.  The locked byte is left as it is."""
    cur = node
    while True:
        nxt = READ_ONCE(words, cur + NEXT)
        if nxt == 0:
            val = READ_ONCE(words, w)
            last = val >> TAIL_SHIFT == cur + 1
            if last and cmpxchg(words, w, val, val & LOCKED_MASK) == val:
                if cur != node:
                    smp_store_release(words, cur + STATE, SKIPPED)
                return
            cpu_relax()  # a successor swapped the tail and is about to link itself
            continue
        if cur != node:
            smp_store_release(words, cur + STATE, SKIPPED)
        succ = nxt - 1
        if cmpxchg(words, succ + STATE, WAITING, HEAD) == WAITING:
            return
        cur = succ  # it abandoned: carry its duty on


@cached_njit
def queued_spin_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    """(locked, waiters queued)."""
    return READ_ONCE(words, w) & LOCKED_MASK != 0, READ_ONCE(words, w + QUEUED)


@cached_njit
def queued_spin_is_wedged(words: np.ndarray, w: int) -> bool:
    """A node is still queued: read once every live CPU has stopped waiting, that is the
    node of a CPU that died in the queue (a dead head, or one the head passed to)."""
    return READ_ONCE(words, w) >> TAIL_SHIFT != 0

"""Queued spinlock, 6.0's ``kernel/locking/qspinlock.c`` (x86 from 4.2): the pending
bit for the second contender, a per-CPU MCS node for the third and later.  Each queued
waiter spins on its own node, so a hand-off touches one waiter's line instead of every
waiter's.

Lock word (int64 at ``w+0``; ``_Q_PENDING_BITS == 8``, as x86 with NR_CPUS < 16K)::

    63               32 31       16 15        8 7         0
    +-------------------+-----------+----------+-----------+
    | tail: node word+1 |  (unused) |  pending |  locked   |      0: free, nobody waiting
    +-------------------+-----------+----------+-----------+
    w+1  queued     waiters holding an MCS node (statistics for lock_state only)
    w+7  owner tag  of the holder

Per-CPU node (8 words; 4 per CPU, one per nesting level; the nesting count is the
block's word 7, the count of this CPU's MCS queueings its word 6: lockstat's)::

    +0 state  WAITING 0 -> HEAD 1 (the MCS lock is passed to it), or ABANDONED 2 (stop)
              -> SKIPPED 3 (whoever passed over it is done with it: reusable)
    +1 next   successor node word + 1 (0: none yet)

Acquire, as ``queued_spin_lock_slowpath`` (6.0)::

    fast path     cmpxchg(val, 0, LOCKED)                      uncontended: locked = 1
    pending       val == PENDING: wait up to _Q_PENDING_LOOPS for the pending->locked
                  hand-over to finish; then, if nobody pends or queues, fetch_or(PENDING)
                  and spin on the locked byte, no node:            0,1,0 -> 0,1,1
                  owner's unlock: locked = 0                       0,1,0
                  clear_pending_set_locked (one 16-bit store)      0,0,1
    queue         third and later: xchg_tail (a 32-bit xchg on the upper half) puts this
                  CPU's node last, links it from the old tail's ``next``, spins on its
                  own ``state`` until the node ahead passes it the head; the head spins
                  until locked and pending are both 0, then takes the byte:
                  tail == me ? cmpxchg(val, LOCKED) (clears the tail) : set_locked
                  (a byte store), and passes the head on.

The slow path is split where the kernel fixes a CPU's place in the lock's order: the
request (``queued_spin_request``: the pending bit, or the node linked in after
``xchg_tail``), taken in compiled code before the request returns, and the wait on that
place (``queued_spin_wait``); a place nobody will wait on is given up
(``queued_spin_abandon``) as a stopped waiter gives up its own.

So with two CPUs nobody ever queues: the second is the pending one.  Release is
``smp_store_release(&lock->locked, 0)``: one byte store (x86 ``movb``), no atomic.

Abort (stop; the kernel has none): the pending waiter clears the pending byte and leaves
(an MCS head waiting for locked|pending to clear just goes on).  A waiter behind the head
cannot unlink itself (its predecessor may be about to write its ``next``), so it marks
its node ABANDONED with ``cmpxchg(state, WAITING, ABANDONED)`` and leaves.  The head that
would pass to it finds ``cmpxchg(state, WAITING, HEAD)`` failing, takes over its duty
(waits for its ``next`` or clears the tail) and marks it SKIPPED; until then the
abandoning CPU queues on its next nesting level's node.  A head that is stopped passes
the head on without taking the lock.  Exactly one of the two cmpxchgs on ``state`` wins,
so every node is either served or skipped: no waiter is wedged.  A CPU killed while it
holds the pending bit or a queued node is not skipped: the lock is then wedged (see
``queued_spin_is_wedged``).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    WRITE_ONCE,
    WRITE_ONCE_u8,
    WRITE_ONCE_u8_1,
    WRITE_ONCE_u16,
    atomic_fetch_add,
    atomic_fetch_or,
    atomic_xchg_hi32,
    cmpxchg,
    cpu_relax,
    smp_load_acquire,
    smp_store_release,
    smp_store_release_u8,
)
from .cached_compile import cached_njit
from .common import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_STOPPED,
    NODE_MCS_QUEUED,
    NODE_NESTING,
    NODE_WORDS,
    NODES_PER_CPU,
    stop_requested,
)

LOCKED_VAL = 1
LOCKED_MASK = 0xFF
PENDING_VAL = 1 << 8
PENDING_MASK = 0xFF << 8
LOCKED_PENDING_MASK = LOCKED_MASK | PENDING_MASK
TAIL_SHIFT = 32
PENDING_LOOPS = 1 << 9  # _Q_PENDING_LOOPS, arch/x86/include/asm/qspinlock.h
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
    """Take the lock at record ``w``; the second contender pends, later ones queue on
    this CPU's node block ``node_w``."""
    if cmpxchg(words, w, 0, LOCKED_VAL) == 0:
        return LOCK_FAST
    return queued_spin_lock_slowpath(words, w, node_w, stop_w)


@cached_njit(llvm_inline=True)
def queued_spin_trylock(words: np.ndarray, w: int) -> bool:
    """Take the lock if it is free and nobody pends or queues for it; never waits."""
    return READ_ONCE(words, w) == 0 and cmpxchg(words, w, 0, LOCKED_VAL) == 0


@cached_njit(llvm_inline=True)
def queued_spin_unlock(words: np.ndarray, w: int) -> None:
    """Release the lock the caller holds: ``smp_store_release(&lock->locked, 0)``, a
    plain byte store; the pending waiter or the queue's head sees the byte clear."""
    smp_store_release_u8(words, w, 0)


# The request's place (``queued_spin_request``'s answer; 0: the lock was taken).
PLACE_NONE = -1  # no place taken (out of nodes): the slow path spins on the trylock
PLACE_PENDING = 1  # this CPU holds the pending bit
# A queued node: ``(node + 1) << 3 | nesting``, the node's word and the nesting count to
# restore when the wait is over (``place_node``, ``place_nesting``).
PLACE_NODE_SHIFT = 3


@cached_njit(llvm_inline=True)
def place_node(place: int) -> int:
    return (place >> PLACE_NODE_SHIFT) - 1


@cached_njit(llvm_inline=True)
def place_nesting(place: int) -> int:
    return place & ((1 << PLACE_NODE_SHIFT) - 1)


@cached_njit
def queued_spin_lock_slowpath(words: np.ndarray, w: int, node_w: int, stop_w: int) -> int:
    """The lock was not free: pend for it (no node) when nobody else pends or queues,
    else queue on this CPU's next free node and wait for the head, then for the lock.
    The request (``queued_spin_request``), then the wait on the place it took
    (``queued_spin_wait``)."""
    place = queued_spin_request(words, w, node_w)
    if place == 0:
        return LOCK_CONTENDED
    return queued_spin_wait(words, w, node_w, place, stop_w)


@cached_njit
def queued_spin_request(words: np.ndarray, w: int, node_w: int) -> int:
    """The first half of 6.0's ``queued_spin_lock_slowpath``, up to the point where this
    CPU's place in the lock's order is fixed: the pending bit
    (``queued_fetch_set_pending_acquire``) or the MCS tail (``xchg_tail``, then
    ``WRITE_ONCE(prev->next, node)``).  Returns 0 if the lock was taken on the way, else
    the place (PLACE_PENDING, a node's place, or PLACE_NONE) for ``queued_spin_wait``."""
    val = READ_ONCE(words, w)
    # A pending->locked hand-over in progress: wait a little for it to complete.
    if val == PENDING_VAL:
        cnt = PENDING_LOOPS
        while val == PENDING_VAL and cnt > 0:
            cpu_relax()
            val = READ_ONCE(words, w)
            cnt -= 1
    if val & ~LOCKED_MASK == 0:
        val = atomic_fetch_or(words, w, PENDING_VAL)  # queued_fetch_set_pending_acquire
        if val & ~LOCKED_MASK == 0:
            if val & LOCKED_MASK == 0:  # freed meanwhile: clear_pending_set_locked now
                WRITE_ONCE_u16(words, w, LOCKED_VAL)
                return 0
            return PLACE_PENDING
        # Somebody pended or queued meanwhile: undo our pending bit if we set it, queue.
        if val & PENDING_MASK == 0:
            WRITE_ONCE_u8_1(words, w, 0)  # clear_pending
    return _queue_request(words, w, node_w)


@cached_njit
def queued_spin_wait(words: np.ndarray, w: int, node_w: int, place: int, stop_w: int) -> int:
    """The second half: wait on the place ``queued_spin_request`` took (LOCK_CONTENDED when
    the lock is taken, LOCK_STOPPED when the run stopped: the place is then given up)."""
    if place == PLACE_PENDING:
        return _pending_wait(words, w, smp_load_acquire(words, w), stop_w)
    if place == PLACE_NONE:  # the kernel's answer to a fifth nesting level: spin on trylock
        while not queued_spin_trylock(words, w):
            if stop_requested(words, stop_w):
                return LOCK_STOPPED
            cpu_relax()
        return LOCK_CONTENDED
    status = _mcs_wait(words, w, place_node(place), stop_w)
    words[node_w + NODE_NESTING] = place_nesting(place)
    return status


@cached_njit
def queued_spin_abandon(words: np.ndarray, w: int, node_w: int, place: int) -> None:
    """Give up a place nobody will wait on, as a stopped waiter gives up its own: the
    pending bit is cleared; a queued node is marked ABANDONED (the head skips it), or,
    if it is the head already, passes the head on."""
    if place == PLACE_PENDING:
        WRITE_ONCE_u8_1(words, w, 0)  # clear_pending
        return
    if place == PLACE_NONE:
        return
    node = place_node(place)
    if cmpxchg(words, node + STATE, WAITING, ABANDONED) == WAITING:
        atomic_fetch_add(words, w + QUEUED, -1)
    else:
        atomic_fetch_add(words, w + QUEUED, -1)
        mcs_pass_head(words, w, node)
    words[node_w + NODE_NESTING] = place_nesting(place)


@cached_njit
def _pending_wait(words: np.ndarray, w: int, val: int, stop_w: int) -> int:
    """This CPU owns the pending bit: spin on the locked byte, then take it from pending
    in one store.  No node, nothing queued behind it can pass (the head waits for locked
    and pending both clear; newcomers see pending set and queue)."""
    while val & LOCKED_MASK != 0:
        if stop_requested(words, stop_w):
            WRITE_ONCE_u8_1(words, w, 0)  # clear_pending: the head goes on when locked clears
            return LOCK_STOPPED
        cpu_relax()
        val = smp_load_acquire(words, w)
    WRITE_ONCE_u16(words, w, LOCKED_VAL)  # clear_pending_set_locked
    return LOCK_CONTENDED


@cached_njit
def _queue_request(words: np.ndarray, w: int, node_w: int) -> int:
    """Queue on this CPU's next free node (``qnodes[idx]``): 0 if the trylock before the
    queueing took the lock, else the place."""
    nesting = words[node_w + NODE_NESTING]
    # The next free node; one this CPU abandoned may still sit in some queue until the
    # head there skips it, so it is passed over too.
    idx = nesting
    while idx < NODES_PER_CPU and READ_ONCE(words, node_w + idx * NODE_WORDS + STATE) \
            == ABANDONED:
        idx += 1
    if idx >= NODES_PER_CPU:
        return PLACE_NONE
    node = node_w + idx * NODE_WORDS
    WRITE_ONCE(words, node + STATE, WAITING)
    WRITE_ONCE(words, node + NEXT, 0)
    if queued_spin_trylock(words, w):
        return 0
    words[node_w + NODE_NESTING] = idx + 1
    atomic_fetch_add(words, w + QUEUED, 1)
    words[node_w + NODE_MCS_QUEUED] += 1  # this CPU's own word: lockstat's queueings

    # xchg_tail: our node becomes the tail, locked and pending are kept.
    me = node + 1
    prev = atomic_xchg_hi32(words, w, me)
    if prev != 0:
        WRITE_ONCE(words, prev - 1 + NEXT, me)  # publish ourselves to the node ahead
    else:
        WRITE_ONCE(words, node + STATE, HEAD)  # nobody ahead: the head at once
    return (me << PLACE_NODE_SHIFT) | nesting


@cached_njit
def _mcs_wait(words: np.ndarray, w: int, node: int, stop_w: int) -> int:
    """Wait, queued at ``node``, for the head (``arch_mcs_spin_lock_contended``), then as
    the head for the holder and the pending waiter to be gone, and take the lock."""
    me = node + 1
    while smp_load_acquire(words, node + STATE) != HEAD:
        if stop_requested(words, stop_w):
            if cmpxchg(words, node + STATE, WAITING, ABANDONED) == WAITING:
                atomic_fetch_add(words, w + QUEUED, -1)
                return LOCK_STOPPED
            break  # the head was passed to us just now: leave as the head
        cpu_relax()

    # The head: wait for the holder and the pending waiter to be gone.
    while True:
        val = smp_load_acquire(words, w)
        if val & LOCKED_PENDING_MASK == 0:
            if val >> TAIL_SHIFT == me:  # nobody behind: take the lock and clear the tail
                if cmpxchg(words, w, val, LOCKED_VAL) == val:
                    atomic_fetch_add(words, w + QUEUED, -1)
                    return LOCK_CONTENDED
                continue
            # Somebody is behind, so neither the fast path nor a pender can take the
            # byte (both need the tail clear): set_locked, a plain byte store.
            WRITE_ONCE_u8(words, w, LOCKED_VAL)
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
    none is left.  The locked and pending bytes are left as they are."""
    cur = node
    while True:
        nxt = READ_ONCE(words, cur + NEXT)
        if nxt == 0:
            val = READ_ONCE(words, w)
            last = val >> TAIL_SHIFT == cur + 1
            if last and cmpxchg(words, w, val, val & LOCKED_PENDING_MASK) == val:
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
    """(locked, waiters: the pending one and those queued)."""
    val = READ_ONCE(words, w)
    pending = 1 if val & PENDING_MASK != 0 else 0
    return val & LOCKED_MASK != 0, READ_ONCE(words, w + QUEUED) + pending


@cached_njit
def queued_spin_is_wedged(words: np.ndarray, w: int) -> bool:
    """A node is still queued or the pending bit set: read once every live CPU has stopped
    waiting, that is a CPU that died waiting (pending, the head, or one passed the head)."""
    return READ_ONCE(words, w) & ~LOCKED_MASK != 0

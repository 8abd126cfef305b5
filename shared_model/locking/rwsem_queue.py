"""The rwsem's wait queue: the record, wait_lock, the FIFO wait list of per-CPU nodes, the
grant that hands the lock to the list's head, the release, and leaving the list.
``rwsem.py`` takes the lock (the fast paths, the steal policies, a writer's optimistic
spinning, 6.0's hand-off bit) and sleeps on the node this module queues.

Kernel: ``lib/rwsem.c`` of 3.8 and 3.9, ``kernel/locking/rwsem-xadd.c`` of 3.19,
``kernel/locking/rwsem.c`` of 6.0: the grant ``__rwsem_do_wake`` (6.0:
``rwsem_mark_wake``) as ``rwsem_wake_locked``; the releases ``__up_read`` /
``__up_write``, whose slow half is ``rwsem_wake``, as ``up_read`` / ``up_write``; the
``list_add_tail`` of ``rwsem_down_failed_common`` (6.0: ``rwsem_add_waiter``) as
``rwsem_queue``.

Record (int64 words)::

    w+0  count      readers holding (bits 0-31) | WRITER (bit 32) | WAITING (bit 33)
                    | HANDOFF (bit 34: 6.0's RWSEM_FLAG_HANDOFF)
    w+1  wait_lock  a tas spinlock guarding the list and every grant (short sections)
    w+2  head       first waiter's node word + 1 (0: empty)     W: wait_lock
    w+3  tail       last waiter's node word + 1                 W: wait_lock
    w+4  waiters    nodes in the list (for lock_state)          W: wait_lock
    w+5  died       a dead writer's hold was broken: the next acquirer is told
    w+6  flags      6.0's RWSEM_NONSPINNABLE (a bit of the kernel's owner word): a writer's
                    spin on a reader-owned lock timed out, and no writer spins until a
                    writer takes the lock or the last reader leaves with waiters queued
    w+7  owner      tag of the writer holding it (readers do not write it)

Waiter node (the caller's per-CPU node block, at its nesting level)::

    +0 state  the futex word: WAITING 0 -> GRANTED 1 (it holds the lock now), or
              WOKEN 2 (the steal policies: a writer at the head, told to try for itself)
    +1 next   next waiter's node word + 1                       W: wait_lock
    +2 type   READER 0 / WRITER 1
    +3 since  when it queued (clock_ns; 6.0's hand-off timeout)
    +4 tag    a writer's owner tag: a FIFO grant writes it into the owner word, so a
              writer granted the lock is never anonymous (one that died is found)

Hand-off, FIFO (3.8)::

    count: R=1  list: W1 -> R2        R1 releases: R=0, under wait_lock grant W1:
                                      count = WRITER, W1.state = GRANTED, futex_wake
    a writer W3 arriving now finds WAITING set and queues behind R2

A holder whose release finds WAITING takes wait_lock and runs ``rwsem_wake_locked``.  A
newcomer enqueues under wait_lock, sets WAITING, and runs ``rwsem_wake_locked`` itself, so
a release that came just before WAITING was set cannot leave it asleep on a free lock.

Abort (stop): a sleeper takes wait_lock and unlinks its node (then wakes whoever that
lets in); if it had been granted the lock in the meantime, it releases it instead.  A
writer that dies holding is found by its sleepers (the owner word's pid, ``pid_alive``):
its hold is broken under wait_lock and the next acquirer gets LOCK_OWNER_DIED.  A reader
that dies holding is not detected (readers are anonymous, as in the kernel).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_add,
    atomic_fetch_and,
    atomic_fetch_or,
    clock_ns,
    cmpxchg,
    cpu_relax,
    futex_wake,
    smp_store_release,
)
from .cached_compile import cached_njit
from .common import (
    LOCK_STOPPED,
    NODE_NESTING,
    NODE_WORDS,
    NODES_PER_CPU,
    OWNER,
    RWSEM_FIFO,
    RWSEM_HANDOFF,
)

# record words
COUNT = 0
WAIT_LOCK = 1
HEAD = 2
TAIL = 3
WAITERS = 4
DIED = 5
OWNER_FLAGS = 6
# owner flags
NONSPINNABLE = 1
# count bits
READERS_MASK = 0xFFFFFFFF
WRITER = 1 << 32
WAITING = 1 << 33
HANDOFF = 1 << 34
HOLDERS = READERS_MASK | WRITER
# node words and values
STATE = 0
NEXT = 1
TYPE = 2
SINCE = 3
TAG = 4  # a writer's owner tag (word 4 is free in every node, the block's words 5-7 too)
WAITING_STATE = 0
GRANTED = 1
WOKEN = 2
READER = 0
WRITER_TYPE = 1


# -- release (rwsem_wake) -----------------------------------------------------------------

@cached_njit(llvm_inline=True)
def clear_nonspinnable(words: np.ndarray, w: int) -> None:
    """6.0: writers may spin again (``clear_nonspinnable``, or a writer's
    ``rwsem_set_owner`` overwriting the owner word and its flags)."""
    if READ_ONCE(words, w + OWNER_FLAGS) != 0:
        WRITE_ONCE(words, w + OWNER_FLAGS, 0)


@cached_njit(llvm_inline=True)
def up_read(words: np.ndarray, w: int, policy: int) -> None:
    """Release a read hold; the last reader out hands the lock to the queue (6.0's
    ``__up_read``: and clears NONSPINNABLE first)."""
    c = atomic_fetch_add(words, w + COUNT, -1) - 1
    if c & HOLDERS == 0 and c & WAITING:
        if policy == RWSEM_HANDOFF:
            clear_nonspinnable(words, w)
        _wait_lock(words, w)
        rwsem_wake_locked(words, w, policy)
        _wait_unlock(words, w)


@cached_njit(llvm_inline=True)
def up_write(words: np.ndarray, w: int, policy: int) -> None:
    """Release the write hold (the caller cleared the owner word); hand the lock to the
    queue if anybody waits."""
    if cmpxchg(words, w + COUNT, WRITER, 0) == WRITER:
        return
    _wait_lock(words, w)
    atomic_fetch_add(words, w + COUNT, -WRITER)
    rwsem_wake_locked(words, w, policy)
    _wait_unlock(words, w)


# -- wait_lock ----------------------------------------------------------------------------

@cached_njit
def _wait_lock(words: np.ndarray, w: int) -> None:
    """Take wait_lock.  Its sections are a few dozen instructions and never sleep."""
    while cmpxchg(words, w + WAIT_LOCK, 0, 1) != 0:
        while READ_ONCE(words, w + WAIT_LOCK) != 0:
            cpu_relax()


@cached_njit
def _wait_unlock(words: np.ndarray, w: int) -> None:
    smp_store_release(words, w + WAIT_LOCK, 0)


# -- the wait list (all under wait_lock) ----------------------------------------------------

@cached_njit
def _list_append(words: np.ndarray, w: int, node: int) -> None:
    tail = READ_ONCE(words, w + TAIL)
    if tail == 0:
        WRITE_ONCE(words, w + HEAD, node + 1)
    else:
        WRITE_ONCE(words, tail - 1 + NEXT, node + 1)
    WRITE_ONCE(words, w + TAIL, node + 1)
    WRITE_ONCE(words, w + WAITERS, READ_ONCE(words, w + WAITERS) + 1)
    atomic_fetch_or(words, w + COUNT, WAITING)


@cached_njit
def _list_remove(words: np.ndarray, w: int, node: int) -> None:
    """Unlink ``node`` (found by walking from the head); clear WAITING if none is left."""
    prev = 0
    cur = READ_ONCE(words, w + HEAD)
    while cur != 0 and cur != node + 1:
        prev = cur
        cur = READ_ONCE(words, cur - 1 + NEXT)
    if cur == 0:
        return
    nxt = READ_ONCE(words, node + NEXT)
    if prev == 0:
        WRITE_ONCE(words, w + HEAD, nxt)
    else:
        WRITE_ONCE(words, prev - 1 + NEXT, nxt)
    if READ_ONCE(words, w + TAIL) == node + 1:
        WRITE_ONCE(words, w + TAIL, prev)
    WRITE_ONCE(words, w + WAITERS, READ_ONCE(words, w + WAITERS) - 1)
    if nxt == 0 and prev == 0:
        atomic_fetch_and(words, w + COUNT, ~(WAITING | HANDOFF))


@cached_njit
def _grant(words: np.ndarray, w: int, node: int) -> None:
    """Dequeue the head ``node``, whose hold the caller has added to count, and wake it.
    ``next`` is read before GRANTED is published: from then on the node is its owner's."""
    _list_remove(words, w, node)
    smp_store_release(words, node + STATE, GRANTED)
    futex_wake(words, node + STATE, 1)


@cached_njit
def rwsem_wake_locked(words: np.ndarray, w: int, policy: int) -> None:
    """Hand the rwsem to the head of the queue if it can have it now (wait_lock held).

    FIFO grants: the head writer gets WRITER added to count and is woken holding it; the
    run of readers at the front gets one read hold each.  The steal policies wake a head
    writer without granting (it competes for the lock when it runs); readers are granted."""
    head = READ_ONCE(words, w + HEAD)
    if head == 0:
        return
    node = head - 1
    if READ_ONCE(words, node + TYPE) == WRITER_TYPE:
        if READ_ONCE(words, w + COUNT) & HOLDERS != 0:
            return  # still held: that holder's release comes back here
        if policy != RWSEM_FIFO:
            if cmpxchg(words, node + STATE, WAITING_STATE, WOKEN) == WAITING_STATE:
                futex_wake(words, node + STATE, 1)
            return
        c = READ_ONCE(words, w + COUNT)
        while c & HOLDERS == 0:  # readers may still be leaving (fetch_add, no wait_lock)
            found = cmpxchg(words, w + COUNT, c, c | WRITER)
            if found == c:
                # The holder is named at once: a grantee that died before it ran is then
                # a dead owner, whom the sleepers find and break (rwsem_break_dead_writer).
                WRITE_ONCE(words, w + OWNER, READ_ONCE(words, node + TAG))
                _grant(words, w, node)
                return
            c = found
        return
    # Readers at the front: one hold each, up to the first writer.
    n = 0
    cur = head
    while cur != 0 and READ_ONCE(words, cur - 1 + TYPE) == READER:
        n += 1
        cur = READ_ONCE(words, cur - 1 + NEXT)
    c = READ_ONCE(words, w + COUNT)
    while True:
        if c & WRITER:
            return  # a writer holds (or stole) it: its release comes back here
        found = cmpxchg(words, w + COUNT, c, c + n)
        if found == c:
            break
        c = found
    for _ in range(n):
        _grant(words, w, READ_ONCE(words, w + HEAD) - 1)


# -- queueing and leaving the queue -------------------------------------------------------

PLACE_NONE = -1  # rwsem_request / rwsem_queue: no place taken (the slow path does it all)


@cached_njit
def rwsem_queue(words: np.ndarray, w: int, policy: int, kind: int, owner_tag: int,
                node_w: int) -> int:
    """Put this CPU's next node at the tail of the wait list (under wait_lock, then
    ``rwsem_wake_locked``, which may grant it at once); its place (node word + 1), or
    PLACE_NONE when this CPU has no free node.  A writer's node carries its owner tag,
    which a grant writes into the owner word."""
    idx = words[node_w + NODE_NESTING]
    if idx >= NODES_PER_CPU:
        return PLACE_NONE
    node = node_w + idx * NODE_WORDS
    words[node_w + NODE_NESTING] = idx + 1
    WRITE_ONCE(words, node + STATE, WAITING_STATE)
    WRITE_ONCE(words, node + NEXT, 0)
    WRITE_ONCE(words, node + TYPE, kind)
    WRITE_ONCE(words, node + SINCE, clock_ns())
    WRITE_ONCE(words, node + TAG, owner_tag)
    _wait_lock(words, w)
    _list_append(words, w, node)
    rwsem_wake_locked(words, w, policy)
    _wait_unlock(words, w)
    return node + 1


@cached_njit
def rwsem_abandon(words: np.ndarray, w: int, policy: int, node_w: int, place: int) -> None:
    """Give up a place nobody will wait on, as a stopped sleeper does (``_abort_wait``:
    out of the list, or the lock given back if it was granted meanwhile)."""
    if place == PLACE_NONE:
        return
    node = place - 1
    _abort_wait(words, w, policy, READ_ONCE(words, node + TYPE), node)
    words[node_w + NODE_NESTING] = (node - node_w) // NODE_WORDS


@cached_njit
def _abort_wait(words: np.ndarray, w: int, policy: int, kind: int, node: int) -> int:
    """Stop: leave the queue (letting in whoever that unblocks), or give back a lock that
    was granted meanwhile."""
    _wait_lock(words, w)
    if READ_ONCE(words, node + STATE) == GRANTED:
        _wait_unlock(words, w)
        if kind == WRITER_TYPE:
            WRITE_ONCE(words, w + OWNER, 0)  # the grant named it the owner
            up_write(words, w, policy)
        else:
            up_read(words, w, policy)
        return LOCK_STOPPED
    if READ_ONCE(words, w + HEAD) == node + 1:  # the first waiter's hand-off goes with it
        atomic_fetch_and(words, w + COUNT, ~HANDOFF)
    _list_remove(words, w, node)
    rwsem_wake_locked(words, w, policy)
    _wait_unlock(words, w)
    return LOCK_STOPPED


@cached_njit
def rwsem_break_dead_writer(words: np.ndarray, w: int, policy: int, dead_tag: int) -> None:
    """The writer ``dead_tag`` died holding the rwsem: drop its hold, flag it for the next
    acquirer (LOCK_OWNER_DIED) and hand the lock to the queue.  Under wait_lock, so only
    one sleeper does it, and only if that writer still holds it."""
    _wait_lock(words, w)
    if READ_ONCE(words, w + OWNER) == dead_tag and READ_ONCE(words, w + COUNT) & WRITER:
        WRITE_ONCE(words, w + OWNER, 0)
        WRITE_ONCE(words, w + DIED, 1)
        atomic_fetch_add(words, w + COUNT, -WRITER)
        rwsem_wake_locked(words, w, policy)
    _wait_unlock(words, w)


@cached_njit
def rwsem_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    """(held by a writer or any reader, waiters queued)."""
    return READ_ONCE(words, w + COUNT) & HOLDERS != 0, READ_ONCE(words, w + WAITERS)


@cached_njit
def rwsem_is_wedged(words: np.ndarray, w: int) -> bool:
    """A node is still queued: read once every live CPU has stopped waiting (each takes its
    node out as it aborts), that is the node of a CPU that died asleep in the queue; a
    release would grant (FIFO) or wake it (the others) with nobody to run, and with
    6.0's HANDOFF bit set nobody may steal past it."""
    return READ_ONCE(words, w + WAITERS) != 0


@cached_njit
def rwsem_readers(words: np.ndarray, w: int) -> int:
    """Readers holding the rwsem now."""
    return READ_ONCE(words, w + COUNT) & READERS_MASK

"""What every primitive shares: the kinds, the status codes, the record and node layouts'
common words, and the stop check.

A lock record is 64 bytes, 8 int64 words of the segment viewed as one int64 array
``words``; ``w`` is its first word.  Words ``w+0 .. w+6`` are the primitive's (each file
draws its own); word ``w+7`` is the owner word, ``pid * 4096 + cpu + 1`` of the exclusive
holder (0: none), written right after acquiring and cleared before releasing.  A record of
zeros is an unlocked lock of every kind, so a zero-filled segment needs no initialisation.
"""

from __future__ import annotations

import numpy as np

from .atomics import READ_ONCE
from .cached_compile import cached_njit

# Lock kinds (``lock_acquire``'s ``kind``).
TAS = 0
TICKET = 1
QSPINLOCK = 2
MUTEX = 3
RWSEM = 4
KIND_NAMES = {"tas": TAS, "ticket": TICKET, "qspinlock": QSPINLOCK, "mutex": MUTEX, "rwsem": RWSEM}

# rwsem hand-off policies (``lock_acquire``'s ``policy``; other kinds ignore it).
RWSEM_FIFO = 0  # 3.8 as merged: a releasing holder grants the lock to the queue head
RWSEM_STEAL = 1  # writer lock-stealing (3.9): a running writer may take a free rwsem first

# What ``lock_acquire`` returns.
LOCK_FAST = 0  # acquired without waiting
LOCK_CONTENDED = 1  # acquired after waiting
LOCK_OWNER_DIED = 2  # acquired; the previous exclusive owner died holding it
LOCK_STOPPED = -1  # not acquired: the run's stop word reached 2 while waiting

RECORD_WORDS = 8
OWNER = 7  # the owner word's offset in the record
OWNER_PID_SHIFT = 4096  # owner_tag = pid * 4096 + cpu + 1

# Per-CPU MCS nodes: 4 nodes of 8 words each, one per nesting level as the kernel's 4
# per-CPU qnodes (task, softirq, hardirq, nmi); the nesting count lives in the first
# node's last word.
NODES_PER_CPU = 4
NODE_WORDS = 8
NODE_BLOCK_WORDS = NODES_PER_CPU * NODE_WORDS
NODE_NESTING = 7  # offset in the block of the per-CPU nesting count

STOP_ABORT = 2  # words[stop_w] >= this: every wait gives up

# A sleeping waiter wakes at least this often to look at the stop word (and, for the
# robust kinds, whether the owner is still alive): the abort comes within ~20 ms.
WAIT_SLICE_NS = 20_000_000


@cached_njit
def stop_requested(words: np.ndarray, stop_w: int) -> bool:
    """The run is aborting: every wait gives up and returns LOCK_STOPPED."""
    return READ_ONCE(words, stop_w) >= STOP_ABORT


@cached_njit
def owner_pid(tag: int) -> int:
    """The pid in an owner tag (0 for no owner)."""
    return (tag - 1) // OWNER_PID_SHIFT if tag > 0 else 0


def owner_cpu(tag: int) -> int:
    """The CPU in an owner tag (-1 for no owner)."""
    return (tag - 1) % OWNER_PID_SHIFT if tag > 0 else -1

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

from .atomics import READ_ONCE, futex_wait
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
RWSEM_STEAL = 1  # writer lock-stealing (3.10-3.15): a running writer takes a free rwsem first
RWSEM_STEAL_39 = 2  # 3.9 as committed (ce6711f3d196): steal only behind a writer at the head
RWSEM_SPIN = 3  # 3.16-3.19: STEAL, and a writer spins on a running owner before it queues
RWSEM_HANDOFF = 4  # 6.0: writers spin, readers steal, the first waiter's hand-off bit

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
# node's last word, the count of MCS queueings (lockstat's) in the word before it.
NODES_PER_CPU = 4
NODE_WORDS = 8
NODE_BLOCK_WORDS = NODES_PER_CPU * NODE_WORDS
NODE_NESTING = 7  # offset in the block of the per-CPU nesting count
NODE_MCS_QUEUED = 6  # offset in the block of this CPU's count of MCS queueings (qspinlock)
NODE_RUN_STATE = 5  # offset in the block of this CPU's run state (below)

# "Is the owner running?" (the kernel's ``owner->on_cpu``): each CPU publishes in its own
# node block whether it runs or sleeps, so that a spinner can look at the owner it spins
# on.  A zero-filled block reads RUNNING.  Written only by the CPU itself.
RUN_RUNNING = 0
RUN_SLEEPING = 1  # asleep on a futex in a lock's slow path
RUN_IOWAIT = 2  # asleep waiting for the swap device
RUN_PARKED = 3  # not running the workload (before the start gate, after its end)
RUN_STATES = ("running", "sleeping", "iowait", "parked")

# A spinner's time slice: spinning on a running owner ends when ``need_resched()`` would
# be set.  The kernel sets it when another task is waiting for this CPU, at the latest by
# the scheduler tick; a CPU worker is the only task of its CPU, so here it is one tick
# (HZ=250) of spinning: a bound, not a measured scheduler event.
SPIN_SLICE_NS = 4_000_000

STOP_ABORT = 2  # words[stop_w] >= this: every wait gives up

# A sleeping waiter wakes at least this often to look at the stop word (and, for the
# robust kinds, whether the owner is still alive): the abort comes within ~20 ms.
WAIT_SLICE_NS = 20_000_000


STOP_DRAIN = 1  # words[stop_w] == this: the run is over, every CPU finishes its operation
# While the run drains, a waiter naps this long between looks at its lock instead of
# spinning.  On an oversubscribed machine the spinners take the cores from the
# CPUs the queue waits for: 256 ticket waiters on 2 cores needed minutes to hand one lock
# round, since each hand-off waits for the next in line to be scheduled among them.  The
# drain is not measured (the window closed at the deadline), so the nap distorts nothing.
DRAIN_NAP_NS = 2_000_000


@cached_njit
def stop_requested(words: np.ndarray, stop_w: int) -> bool:
    """The run is aborting: every wait gives up and returns LOCK_STOPPED.  While it drains
    (stop word 1), the waiter sleeps DRAIN_NAP_NS first (a futex wait on the stop word
    that nobody wakes: a timed sleep with no new call into the C library)."""
    stop = READ_ONCE(words, stop_w)
    if stop == STOP_DRAIN:
        futex_wait(words, stop_w, stop, DRAIN_NAP_NS)
    return stop >= STOP_ABORT


@cached_njit(llvm_inline=True, python=True)
def owner_run_word(node_w: int, my_tag: int, owner: int) -> int:
    """The run-state word of the CPU in owner tag ``owner``, found from the caller's own
    node block ``node_w`` and tag: every CPU's block is NODE_BLOCK_WORDS after the one
    before (the builder, cpu -1, has the block before CPU 0's)."""
    return node_w + (_tag_cpu(owner) - _tag_cpu(my_tag)) * NODE_BLOCK_WORDS + NODE_RUN_STATE


@cached_njit(llvm_inline=True, python=True)
def _tag_cpu(tag: int) -> int:
    return tag % OWNER_PID_SHIFT - 1  # the tag's low part is cpu + 1 (the builder: cpu -1)


# The owner tag's one decoder: pid * OWNER_PID_SHIFT + cpu + 1, the builder's cpu -1 (its
# low part 0), so the pid is the tag's high part and the CPU its low part less one.
@cached_njit
def owner_pid(tag: int) -> int:
    """The pid in an owner tag (0 for no owner)."""
    return tag // OWNER_PID_SHIFT if tag > 0 else 0


def owner_cpu(tag: int) -> int:
    """The CPU in an owner tag (-1 for no owner, and for the builder's)."""
    return int(_tag_cpu(tag)) if tag > 0 else -1

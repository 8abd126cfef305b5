"""Reader/writer semaphore: readers share, a writer excludes, waiters sleep on a futex in
a FIFO wait list.  This module takes the lock: the fast paths, the slow path's wait, the
steals, a writer's optimistic spinning and 6.0's hand-off bit; the record, the wait list,
its grant, the release and the abort are ``rwsem_queue.py``'s.

Kernel: the x86 fast paths ``__down_read`` / ``__down_write``; 3.9's ``lib/rwsem.c``
(``try_get_writer_sem``); ``kernel/locking/rwsem-xadd.c`` of 3.19
(``rwsem_optimistic_spin``, ``rwsem_try_write_lock_unqueued``); ``kernel/locking/rwsem.c``
of 6.0 (``rwsem_try_write_lock`` and the HANDOFF bit, the reader optimistic lock stealing
of ``rwsem_down_read_slowpath``).  Three hand-off policies (``policy``), the 3.8 - 3.10
story of the anon_vma rwsem, and two later ones:

* RWSEM_FIFO, 3.8 as merged (5a505085f043, 4fc3f1d66b1e): once anybody waits, every
  newcomer queues, and a releasing holder *grants* the lock to the queue head (a writer,
  or the run of readers at the front) before waking it: nobody can come in between.
* RWSEM_STEAL_39, 3.9 as committed (ce6711f3d196, Alex Shi's writer lock-stealing in
  ``lib/rwsem.c`` of 3.9.6): the x86 ``__down_write`` fast path still succeeds only when
  the whole count is 0, so with sleepers queued a writer enqueues at the tail; then, in
  its wait loop (once on arrival, again each time it is woken), under wait_lock,
  ``try_get_writer_sem`` takes the lock only when the **first waiter is a writer** and
  nothing is active, and unlinks itself wherever it stood.  A release only *wakes* a
  writer at the head; readers at the head are granted, so nobody steals past them.
* RWSEM_STEAL, writer lock-stealing in the fast path: a running writer takes a free
  rwsem whatever waits, past queued readers too; a release only wakes a writer at the
  head, which then tries for the lock itself and sleeps again if it was stolen.  Readers
  at the head are still granted (unless a writer holds).  No era uses it: 3.10-3.15's
  ``rwsem_down_write_failed`` (read in 3.15's ``kernel/locking/rwsem-xadd.c``) queues the
  writer first, then steals when nothing is active whoever heads the queue, which with
  writers only (fork-test) is 3.9's rule (docs/locks.md, "No separate era").
* RWSEM_SPIN, 3.16-3.19 (``kernel/locking/rwsem-xadd.c`` of 3.19.8,
  ``RWSEM_SPIN_ON_OWNER`` default y): as STEAL, and a writer whose fast path failed first
  spins (``rwsem_optimistic_spin``) if the owner word names a writer whose CPU runs
  (``rwsem_can_spin_on_owner``): while that owner runs, or while there is no owner
  (readers) until its slice ends, taking the lock unqueued the moment nothing is active
  (``rwsem_try_write_lock_unqueued``).  The osq (one spinner at a time) is not modelled.
* RWSEM_HANDOFF, 6.0 (``kernel/locking/rwsem.c`` of 6.0.1): the writer fast path needs
  the whole count 0; writers spin as SPIN (also with no owner) and steal unqueued unless
  the HANDOFF bit is set; a reader whose fast path failed steals a lock that no writer
  holds and no hand-off reserves, if no other reader holds it (reader optimistic lock
  stealing); the first waiter, a writer woken and robbed after it waited
  RWSEM_WAIT_TIMEOUT (1 jiffy, 4 ms at HZ=250), sets HANDOFF: from then on nobody
  steals and the lock goes to it.  A writer spinning on a reader-owned lock gives up after
  ``rwsem_rspin_threshold`` ((20 + readers) / 2 us, readers capped at 30) and sets
  RWSEM_NONSPINNABLE: no writer spins until a writer takes the lock or the last reader
  leaves with waiters queued (``rwsem_optimistic_spin``, ``rwsem_set_nonspinnable``,
  ``clear_nonspinnable``).  The first waiter, once it has set HANDOFF and still failed,
  spins on a running writer owner before it sleeps and tries again the moment that
  writer lets go (``rwsem_handoff_spin``).  Not modelled: the osq (one spinner at a
  time).

Hand-off, STEAL (3.9)::

    count: W=1  list: W1              W0 releases: W1.state = WOKEN, futex_wake
    running W3: count has no holder -> cmpxchg(count, c, c | WRITER): W3 holds first
    W1 wakes: cannot take it, back to WAITING; W3's release wakes it again

Hand-off, STEAL_39 (3.9)::

    count: W=1  list: W1 -> R2        W0 releases: W1.state = WOKEN, futex_wake
    running W3: count != 0 -> queues:  list: W1 -> R2 -> W3; the first waiter W1 is a
                writer, nothing active -> W3 takes WRITER and unlinks itself
    list: R1 -> W2, nothing active    (a release granting R1, seen half-way) a running
                                      writer queues behind W2 and sleeps: no steal

The request point (``rwsem_request``, called from compiled code before the request
returns): the fast path, then the node's place at the tail of the wait list
(``rwsem_queue``), where the kernel's slow path puts it before any sleep; the wait
(``rwsem_wait_queued``) polls it, and a place nobody will wait on is given up
(``rwsem_abandon``, as a stopped sleeper's).  A writer whose kernel spins before it
queues (3.19, 6.0) takes no place: its wait is the whole slow path.

Fast paths: a writer ``cmpxchg(count, 0, WRITER)`` (STEAL: any count without holders);
a reader adds 1 while neither WRITER nor WAITING is set.  Failing, the slow path queues a
node (``rwsem_queue``) and sleeps on it here (``rwsem_wait_queued``).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    WRITE_ONCE,
    atomic_fetch_or,
    atomic_xchg,
    clock_ns,
    cmpxchg,
    cpu_relax,
    futex_wait,
    pid_alive,
    smp_load_acquire,
)
from .cached_compile import cached_njit
from .common import (
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    NODE_NESTING,
    NODE_RUN_STATE,
    NODE_WORDS,
    OWNER,
    RUN_RUNNING,
    RUN_SLEEPING,
    RWSEM_HANDOFF,
    RWSEM_SPIN,
    RWSEM_STEAL,
    RWSEM_STEAL_39,
    SPIN_SLICE_NS,
    WAIT_SLICE_NS,
    owner_pid,
    owner_run_word,
    stop_requested,
)
from .rwsem_queue import (
    COUNT,
    DIED,
    GRANTED,
    HANDOFF,
    HEAD,
    HOLDERS,
    NONSPINNABLE,
    OWNER_FLAGS,
    PLACE_NONE,
    READER,
    READERS_MASK,
    SINCE,
    STATE,
    TAG,
    TYPE,
    WAITING,
    WAITING_STATE,
    WOKEN,
    WRITER,
    WRITER_TYPE,
    _abort_wait,
    _list_remove,
    _wait_lock,
    _wait_unlock,
    clear_nonspinnable,
    rwsem_break_dead_writer,
    rwsem_queue,
    rwsem_wake_locked,
)

RWSEM_WAIT_TIMEOUT_NS = 4_000_000  # DIV_ROUND_UP(HZ, 250) jiffies: 4 ms at HZ=250
RSPIN_MAX_READERS = 30  # rwsem_rspin_threshold: (20 + readers) * NSEC_PER_USEC / 2, capped


# -- fast paths ---------------------------------------------------------------------------

@cached_njit(llvm_inline=True)
def down_read_trylock(words: np.ndarray, w: int, policy: int) -> bool:
    """Take the read side if no writer holds it and nobody waits; never waits."""
    c = READ_ONCE(words, w + COUNT)
    while c & (WRITER | WAITING) == 0:
        found = cmpxchg(words, w + COUNT, c, c + 1)
        if found == c:
            return True
        c = found
    return False


@cached_njit(llvm_inline=True, python=True)
def down_write_trylock(words: np.ndarray, w: int, policy: int) -> bool:
    """Take the write side if nobody holds it (FIFO: and nobody waits); never waits."""
    if policy != RWSEM_STEAL and policy != RWSEM_SPIN:
        if cmpxchg(words, w + COUNT, 0, WRITER) != 0:  # FIFO, 3.9, 6.0: a count of 0
            return False
        if policy == RWSEM_HANDOFF:
            clear_nonspinnable(words, w)
        return True
    c = READ_ONCE(words, w + COUNT)
    while c & HOLDERS == 0:  # lock-stealing: sleeping waiters do not stop a running writer
        found = cmpxchg(words, w + COUNT, c, c | WRITER)
        if found == c:
            return True
        c = found
    return False


@cached_njit
def down_read(words: np.ndarray, w: int, policy: int, node_w: int, stop_w: int) -> int:
    """Take the read side of the rwsem at record ``w``; sleep in the queue if a writer
    holds it or anybody waits."""
    if down_read_trylock(words, w, policy):
        return LOCK_FAST
    if policy == RWSEM_HANDOFF and rwsem_read_steal(words, w, policy):
        return LOCK_CONTENDED
    return rwsem_down_slowpath(words, w, policy, READER, 0, node_w, stop_w)


@cached_njit
def down_write(
    words: np.ndarray, w: int, policy: int, owner_tag: int, node_w: int, stop_w: int
) -> int:
    """Take the write side of the rwsem at record ``w``; sleep in the queue while it is
    held (FIFO: or anybody waits).  The caller then writes the owner word."""
    if down_write_trylock(words, w, policy):
        return LOCK_FAST
    if policy == RWSEM_SPIN or policy == RWSEM_HANDOFF:
        status = rwsem_optimistic_spin(words, w, policy, owner_tag, node_w, stop_w)
        if status != _NOT_TAKEN:
            return status
    return rwsem_down_slowpath(words, w, policy, WRITER_TYPE, owner_tag, node_w, stop_w)


_NOT_TAKEN = -2


@cached_njit
def rwsem_optimistic_spin(words: np.ndarray, w: int, policy: int, owner_tag: int, node_w: int,
                          stop_w: int) -> int:
    """3.19 / 6.0: spin instead of queueing while spinning can pay: LOCK_CONTENDED when
    taken unqueued, LOCK_STOPPED, or _NOT_TAKEN (queue).  Spin while the owner word names a
    writer whose CPU runs, or names nobody (readers hold, or a writer between taking the
    count and writing its tag) until this spinner's slice ends (``need_resched``); 3.19
    starts only on a running writer owner (``rwsem_can_spin_on_owner``).  6.0 spins on a
    reader-owned lock for ``rwsem_rspin_threshold`` at most, counted from when the readers'
    phase began, then sets NONSPINNABLE, and does not spin at all while it is set."""
    owner = READ_ONCE(words, w + OWNER)
    if owner != 0 and READ_ONCE(words, owner_run_word(node_w, owner_tag, owner)) != RUN_RUNNING:
        return _NOT_TAKEN
    if owner == 0 and policy == RWSEM_SPIN:
        return _NOT_TAKEN
    if policy == RWSEM_HANDOFF and READ_ONCE(words, w + OWNER_FLAGS) & NONSPINNABLE:
        return _NOT_TAKEN
    busy = HOLDERS | HANDOFF if policy == RWSEM_HANDOFF else HOLDERS
    start = clock_ns()
    spins = 0
    rspin_until = 0  # 6.0: the end of the spin on this phase of readers (0: not in one)
    while True:
        c = READ_ONCE(words, w + COUNT)
        if c & busy == 0 and cmpxchg(words, w + COUNT, c, c | WRITER) == c:
            if policy == RWSEM_HANDOFF:
                clear_nonspinnable(words, w)
            return LOCK_CONTENDED  # rwsem_try_write_lock_unqueued
        if c & HANDOFF:
            return _NOT_TAKEN  # reserved for the first waiter
        owner = READ_ONCE(words, w + OWNER)
        if owner != 0 and READ_ONCE(words, owner_run_word(node_w, owner_tag, owner)) \
                != RUN_RUNNING:
            return _NOT_TAKEN  # rwsem_spin_on_owner: the owner went to sleep
        if stop_requested(words, stop_w):
            return LOCK_STOPPED
        spins += 1
        if policy == RWSEM_HANDOFF:
            rspin_until = _reader_spin(words, w, c, owner, spins, rspin_until)
            if rspin_until < 0:
                return _NOT_TAKEN
        if spins % 64 == 0 and clock_ns() - start > SPIN_SLICE_NS:
            return _NOT_TAKEN  # need_resched()
        cpu_relax()


@cached_njit(llvm_inline=True)
def _reader_spin(words: np.ndarray, w: int, c: int, owner: int, spins: int,
                 rspin_until: int) -> int:
    """6.0's time limit on spinning over readers (``rwsem_optimistic_spin``'s
    OWNER_READER case), for count ``c`` and owner word ``owner`` just read: the end of this
    phase of readers' spin (0 when readers do not own the lock), or -1 to stop spinning
    (NONSPINNABLE found as the phase began, or set now that its time ran out; the clock is
    read every 16th spin, as the kernel's)."""
    if owner != 0 or c & WRITER or c & READERS_MASK == 0:
        return 0
    if rspin_until == 0:
        if READ_ONCE(words, w + OWNER_FLAGS) & NONSPINNABLE:
            return -1
        return clock_ns() + rwsem_rspin_threshold_ns(c & READERS_MASK)
    if spins % 16 == 0 and clock_ns() > rspin_until:
        rwsem_set_nonspinnable(words, w)
        return -1
    return rspin_until


@cached_njit(llvm_inline=True, python=True)
def rwsem_rspin_threshold_ns(readers: int) -> int:
    """6.0's ``rwsem_rspin_threshold``: how long a writer spins on ``readers`` readers,
    (20 + readers) / 2 us, readers capped at 30 (10 to 25 us)."""
    return (20 + min(readers, RSPIN_MAX_READERS)) * 500


@cached_njit
def rwsem_set_nonspinnable(words: np.ndarray, w: int) -> None:
    """6.0's ``rwsem_set_nonspinnable``: set NONSPINNABLE if readers still own the lock.
    The kernel's flag is a bit of the owner word, which a writer's take overwrites; here
    it is a word of its own, so a writer that took the lock between the look and the
    store would leave it set: the look is made again after the store, and a writer found
    then clears it (its own clear may have come first)."""
    c = READ_ONCE(words, w + COUNT)
    if c & WRITER or c & READERS_MASK == 0:
        return
    atomic_fetch_or(words, w + OWNER_FLAGS, NONSPINNABLE)
    if READ_ONCE(words, w + COUNT) & WRITER:
        clear_nonspinnable(words, w)


@cached_njit
def rwsem_read_steal(words: np.ndarray, w: int, policy: int) -> bool:
    """6.0's reader optimistic lock stealing (``rwsem_down_read_slowpath``): take the read
    side though others wait, when no writer holds it, no hand-off reserves it and no other
    reader holds it; then let the readers at the head of the queue in too."""
    c = READ_ONCE(words, w + COUNT)
    while c & (WRITER | HANDOFF | READERS_MASK) == 0:
        found = cmpxchg(words, w + COUNT, c, c + 1)
        if found == c:
            if c & WAITING:
                _wait_lock(words, w)
                rwsem_wake_locked(words, w, policy)  # RWSEM_WAKE_READ_OWNED
                _wait_unlock(words, w)
            return True
        c = found
    return False



# -- the slow path ------------------------------------------------------------------------

@cached_njit
def rwsem_down_slowpath(
    words: np.ndarray, w: int, policy: int, kind: int, owner_tag: int, node_w: int, stop_w: int
) -> int:
    """Queue this CPU's node, let ``rwsem_wake_locked`` grant it if it can, then sleep on
    the node's state until granted (or, STEAL, woken to try), the holder found dead, or
    the run stopped: the queueing (``rwsem_queue``), then the wait (``rwsem_wait_queued``)."""
    place = rwsem_queue(words, w, policy, kind, owner_tag, node_w)
    if place == PLACE_NONE:  # out of nodes: poll the trylock (never in this model)
        while not (down_write_trylock(words, w, policy) if kind == WRITER_TYPE
                   else down_read_trylock(words, w, policy)):
            if stop_requested(words, stop_w):
                return LOCK_STOPPED
            cpu_relax()
        return LOCK_CONTENDED
    return rwsem_wait_queued(words, w, policy, node_w, place, stop_w)




@cached_njit
def rwsem_request(words: np.ndarray, w: int, policy: int, shared: int, owner_tag: int,
                  node_w: int) -> int:
    """The request point, up to the place in the wait list (``list_add_tail`` in
    ``rwsem_down_failed_common`` of 3.8/3.9, ``rwsem_down_read_failed`` and
    ``rwsem_down_write_failed`` of 3.19, ``rwsem_add_waiter`` in 6.0's slow paths): 0 if
    the lock was taken, else the node's place (``rwsem_wait_queued`` polls it), or
    PLACE_NONE where the kernel's slow path spins before it queues (a writer of 3.19 and
    6.0: ``rwsem_optimistic_spin``), so the request takes no place and the whole slow
    path follows in the wait."""
    if shared:
        if down_read_trylock(words, w, policy):
            return 0
        if policy == RWSEM_HANDOFF and rwsem_read_steal(words, w, policy):
            return 0
        return rwsem_queue(words, w, policy, READER, 0, node_w)
    if down_write_trylock(words, w, policy):
        return 0
    if policy == RWSEM_SPIN or policy == RWSEM_HANDOFF:
        return PLACE_NONE
    return rwsem_queue(words, w, policy, WRITER_TYPE, owner_tag, node_w)



@cached_njit
def rwsem_wait_queued(words: np.ndarray, w: int, policy: int, node_w: int, place: int,
                      stop_w: int) -> int:
    """Sleep on the node ``rwsem_queue`` placed until it holds the lock (or the run
    stopped: the place is then given up); its nesting level is free again after."""
    node = place - 1
    status = _sleep_queued(words, w, policy, READ_ONCE(words, node + TYPE), node_w, node,
                           stop_w)
    words[node_w + NODE_NESTING] = (node - node_w) // NODE_WORDS
    if status == LOCK_CONTENDED and atomic_xchg(words, w + DIED, 0) != 0:
        status = LOCK_OWNER_DIED
    return status




@cached_njit
def _sleep_queued(
    words: np.ndarray, w: int, policy: int, kind: int, node_w: int, node: int, stop_w: int
) -> int:
    # 3.9: the wait loop's first pass, before any sleep: steal behind a writer at the head.
    if policy == RWSEM_STEAL_39 and kind == WRITER_TYPE and try_get_writer_sem(words, w, node):
        return LOCK_CONTENDED
    last_owner = 0
    again = False  # 6.0: try again without sleeping (the hand-off spin saw the owner go)
    while True:
        state = smp_load_acquire(words, node + STATE)
        if state == GRANTED:
            return LOCK_CONTENDED
        handoff_set = False
        if state == WOKEN or again:
            again = False
            if policy == RWSEM_STEAL_39:
                if try_get_writer_sem(words, w, node):
                    return LOCK_CONTENDED
            elif policy == RWSEM_HANDOFF:
                if rwsem_try_write_lock(words, w, node):
                    return LOCK_CONTENDED
                handoff_set = READ_ONCE(words, w + HEAD) == node + 1 and \
                    READ_ONCE(words, w + COUNT) & HANDOFF != 0
            elif _try_write_lock_woken(words, w, node):
                return LOCK_CONTENDED
        if stop_requested(words, stop_w):
            return _abort_wait(words, w, policy, kind, node)
        owner = READ_ONCE(words, w + OWNER)
        if owner != 0 and owner == last_owner and not pid_alive(owner_pid(owner)):
            rwsem_break_dead_writer(words, w, policy, owner)
            continue
        last_owner = owner
        if handoff_set and rwsem_handoff_spin(words, w, node_w, node, stop_w):
            again = True
            continue
        run = words[node_w + NODE_RUN_STATE]  # asleep: a spinner on a lock we hold stops
        WRITE_ONCE(words, node_w + NODE_RUN_STATE, RUN_SLEEPING)
        futex_wait(words, node + STATE, WAITING_STATE, WAIT_SLICE_NS)
        WRITE_ONCE(words, node_w + NODE_RUN_STATE, run)


@cached_njit
def rwsem_handoff_spin(words: np.ndarray, w: int, node_w: int, node: int, stop_w: int) -> bool:
    """6.0's first waiter that set the hand-off bit and still failed to take the lock
    (``rwsem_down_write_slowpath``: ``rwsem_spin_on_owner`` before it sleeps): spin while
    the owner word names the same writer and that writer's CPU runs.  True (OWNER_NULL:
    try again without sleeping) when no writer and no reader is named, at once or once
    the writer lets go; False to sleep: readers own it, the owner went to sleep or a new
    writer owns it (the hand-off bit keeps stealers out, so that is rare), this spinner's
    slice ran out (``need_resched``), or the run stops."""
    owner = READ_ONCE(words, w + OWNER)
    if owner == 0:
        return READ_ONCE(words, w + COUNT) & READERS_MASK == 0
    my_tag = READ_ONCE(words, node + TAG)
    start = clock_ns()
    spins = 0
    while True:
        now_owner = READ_ONCE(words, w + OWNER)
        if now_owner != owner:
            return now_owner == 0 and READ_ONCE(words, w + COUNT) & READERS_MASK == 0
        if READ_ONCE(words, owner_run_word(node_w, my_tag, owner)) != RUN_RUNNING:
            return False
        if stop_requested(words, stop_w):
            return False
        spins += 1
        if spins % 64 == 0 and clock_ns() - start > SPIN_SLICE_NS:
            return False
        cpu_relax()


@cached_njit
def _try_write_lock_woken(words: np.ndarray, w: int, node: int) -> bool:
    """STEAL: a writer woken at the head tries for the lock; if a running writer stole it,
    back to WAITING (the thief's release wakes it again)."""
    _wait_lock(words, w)
    c = READ_ONCE(words, w + COUNT)
    while c & HOLDERS == 0:
        found = cmpxchg(words, w + COUNT, c, c | WRITER)
        if found == c:
            _list_remove(words, w, node)
            _wait_unlock(words, w)
            return True
        c = found
    WRITE_ONCE(words, node + STATE, WAITING_STATE)
    _wait_unlock(words, w)
    return False


@cached_njit
def try_get_writer_sem(words: np.ndarray, w: int, node: int) -> bool:
    """3.9's ``try_get_writer_sem`` (takes and drops wait_lock): a queued writer takes the
    rwsem only when the **first waiter is a writer** (itself or another) and nothing is
    active, and leaves the queue from wherever it stands.  A woken writer that fails goes
    back to WAITING (the holder's release wakes the head again)."""
    _wait_lock(words, w)
    head = READ_ONCE(words, w + HEAD)
    if head != 0 and READ_ONCE(words, head - 1 + TYPE) == WRITER_TYPE:
        c = READ_ONCE(words, w + COUNT)
        while c & HOLDERS == 0:
            found = cmpxchg(words, w + COUNT, c, c | WRITER)
            if found == c:
                _list_remove(words, w, node)
                _wait_unlock(words, w)
                return True
            c = found
    if READ_ONCE(words, node + STATE) == WOKEN:
        WRITE_ONCE(words, node + STATE, WAITING_STATE)
    _wait_unlock(words, w)
    return False


@cached_njit
def rwsem_try_write_lock(words: np.ndarray, w: int, node: int) -> bool:
    """6.0's ``rwsem_try_write_lock`` for the woken head writer (takes and drops
    wait_lock): take the lock if nothing holds it (clearing HANDOFF); if it is held (it
    was stolen) and this waiter has waited RWSEM_WAIT_TIMEOUT, set HANDOFF: no more
    stealing, the next release leaves it to this waiter.  Failing, back to WAITING."""
    _wait_lock(words, w)
    first = READ_ONCE(words, w + HEAD) == node + 1
    c = READ_ONCE(words, w + COUNT)
    while True:
        if c & HOLDERS == 0:
            if c & HANDOFF and not first:
                break
            found = cmpxchg(words, w + COUNT, c, (c | WRITER) & ~HANDOFF)
            if found == c:
                clear_nonspinnable(words, w)
                _list_remove(words, w, node)
                _wait_unlock(words, w)
                return True
            c = found
            continue
        if c & HANDOFF or not first or clock_ns() - READ_ONCE(words, node + SINCE) \
                <= RWSEM_WAIT_TIMEOUT_NS:
            break
        found = cmpxchg(words, w + COUNT, c, c | HANDOFF)
        if found == c:
            break
        c = found
    WRITE_ONCE(words, node + STATE, WAITING_STATE)
    _wait_unlock(words, w)
    return False

"""x86 ticket spinlock (2.6.25 - 4.1): FIFO, ``pause`` in the spin.

Record (int64 words, one cache line as x86's single head/tail word)::

    w+0  next       the next ticket to hand out        <- atomic_fetch_add by each arrival
    w+1  owner      the ticket now being served        <- written by the holder, read by all
    w+2  abandoned  \\
    w+3  abandoned   |  256-bit map, bit (t mod 256): ticket t was given up (stop)
    w+4  abandoned   |  and is to be skipped when owner reaches it
    w+5  abandoned  /
    w+7  owner tag  of the holder

Hand-off (every waiter reads the same line, so each release costs a transfer to all)::

    next:  5          owner: 2 -> 3
    CPU A: ticket 2   holds; unlock: owner = 3
    CPU B: ticket 3   spins until owner == 3   <- served next, in arrival order
    CPU C: ticket 4   spins until owner == 4

Abort: a waiter cannot give its ticket back (the tickets after it are already out), so a
stopped waiter marks its ticket abandoned and leaves; whoever makes ``owner`` equal an
abandoned ticket (the releaser, the aborter itself when it finds it was already served,
or a waiter behind it that sees it served while spinning) claims the skip by clearing the
bit and advances ``owner`` past it, so no waiter behind it is wedged::

    aborter (ticket t)               releaser                    waiter (ticket > t)
    fetch_or(abandoned, bit t)       store owner = t (plain)     sees owner == t
    owner == t ?  -> claim, skip     bit t set ?  -> claim, skip  bit t set ? -> claim, skip

Clearing the bit (``fetch_and``) decides which one skips.  The releaser's store is plain,
as the kernel's ``incb``, so it and the aborter may both miss the other (see
``ticket_unlock``); the next ticket's taker then skips it.  The map holds 256 tickets: at
most 256 tickets may be out at once (one per CPU waiting; CPUs are far fewer).  A CPU killed
while it waits leaves its ticket unserved: the lock is then wedged, as a kernel with a CPU
dead inside spin_lock would be (``ticket_is_wedged``).
"""

from __future__ import annotations

import numpy as np

from .atomics import (
    READ_ONCE,
    atomic_fetch_add,
    atomic_fetch_and,
    atomic_fetch_or,
    cmpxchg,
    cpu_relax,
    smp_load_acquire,
    smp_store_release,
)
from .cached_compile import cached_njit
from .common import LOCK_CONTENDED, LOCK_FAST, LOCK_STOPPED, OWNER, stop_requested

NEXT = 0
SERVING = 1  # the kernel's "owner" half of the ticket word (the owner *tag* is word 7)
ABANDONED = 2
ABANDONED_TICKETS = 256


@cached_njit
def ticket_lock(words: np.ndarray, w: int, stop_w: int) -> int:
    """Take a ticket and wait (spinning, bounded by the stop word) until it is served."""
    ticket = atomic_fetch_add(words, w + NEXT, 1)
    if smp_load_acquire(words, w + SERVING) == ticket:
        return LOCK_FAST
    return ticket_lock_slowpath(words, w, ticket, stop_w)


@cached_njit
def ticket_lock_slowpath(words: np.ndarray, w: int, ticket: int, stop_w: int) -> int:
    """Spin until ``ticket`` is served; on stop, abandon it so the hand-off skips it.
    While spinning, a ticket being served that was given up is skipped here too (the
    uncontended unlock does not look: see ``ticket_unlock``)."""
    while True:
        serving = smp_load_acquire(words, w + SERVING)
        if serving == ticket:
            return LOCK_CONTENDED
        ticket_skip_abandoned(words, w, serving)
        if stop_requested(words, stop_w):
            ticket_abandon(words, w, ticket)
            return LOCK_STOPPED
        cpu_relax()


@cached_njit(llvm_inline=True)
def ticket_trylock(words: np.ndarray, w: int) -> bool:
    """Take the lock if nobody holds or waits for it; never waits."""
    serving = READ_ONCE(words, w + SERVING)
    if READ_ONCE(words, w + NEXT) != serving:
        return False
    return cmpxchg(words, w + NEXT, serving, serving + 1) == serving


@cached_njit(llvm_inline=True)
def ticket_unlock(words: np.ndarray, w: int) -> None:
    """Release the lock the caller holds: serve the next ticket, as 2.6.3x's
    ``__ticket_spin_unlock`` (``UNLOCK_LOCK_PREFIX incb``: no LOCK prefix on x86, a
    plain increment of the byte only the holder writes), here a release store of
    ``owner + 1``.  Then one load: if that ticket was given up (stop), claim the skip.

    The load may pass the store (x86 orders a store after a later load), so a ticket
    given up at that moment can be missed by both sides::

        releaser                          aborter (ticket t = owner + 1)
        store owner = t   (buffered)      fetch_or(abandoned, bit t)
        load bit t: clear                 load owner: still t - 1 -> leaves

    Then ticket t is served with nobody to take it; whoever takes a ticket next (or
    already spins behind t) skips it while it spins (``ticket_lock_slowpath``), so
    nobody waits behind it for good; only a trylock fails until then."""
    serving = READ_ONCE(words, w + SERVING) + 1
    smp_store_release(words, w + SERVING, serving)
    word, mask = _abandoned_bit(w, serving)
    if READ_ONCE(words, word) & mask != 0:
        ticket_skip_abandoned(words, w, serving)


@cached_njit(llvm_inline=True)
def _abandoned_bit(w: int, ticket: int) -> tuple[int, int]:
    bit = ticket % ABANDONED_TICKETS
    return w + ABANDONED + bit // 64, 1 << (bit % 64)


@cached_njit
def ticket_skip_abandoned(words: np.ndarray, w: int, serving: int) -> None:
    """``owner`` was just seen at ``serving``: while that ticket is abandoned, claim the
    skip (clear its bit; only one CPU sees it set) and serve the next."""
    while True:
        word, mask = _abandoned_bit(w, serving)
        if READ_ONCE(words, word) & mask == 0:
            return
        if atomic_fetch_and(words, word, ~mask) & mask == 0:
            return  # the other side claimed this skip
        serving = atomic_fetch_add(words, w + SERVING, 1) + 1


@cached_njit
def ticket_abandon(words: np.ndarray, w: int, ticket: int) -> None:
    """Give up ``ticket`` (stop): mark it, and skip it now if it is already being served."""
    word, mask = _abandoned_bit(w, ticket)
    atomic_fetch_or(words, word, mask)
    ticket_skip_abandoned(words, w, READ_ONCE(words, w + SERVING))


@cached_njit
def ticket_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    """(locked, waiters): tickets out beyond the one served (abandoned ones included)."""
    serving = READ_ONCE(words, w + SERVING)
    out = READ_ONCE(words, w + NEXT) - serving
    return out > 0, max(out - 1, 0)


@cached_njit
def ticket_is_wedged(words: np.ndarray, w: int) -> bool:
    """A ticket is being served that nobody took: read once every live CPU has stopped
    waiting, that is the ticket of a CPU that died in the queue."""
    serving = READ_ONCE(words, w + SERVING)
    if READ_ONCE(words, w + NEXT) == serving or READ_ONCE(words, w + OWNER) != 0:
        return False
    word, mask = _abandoned_bit(w, serving)
    return READ_ONCE(words, word) & mask == 0  # a given-up ticket: the next arrival skips it

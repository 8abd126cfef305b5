"""The kernel's lock algorithms, compiled (numba), on real atomics in the shared segment.

One small file per primitive, as the kernel's ``kernel/locking/``; the atomics in one::

    atomics.py     the only module that emits LLVM: atomic_fetch_add, cmpxchg, ...,
                   futex_wait/futex_wake, clock_ns, rdtsc, pid_alive
    clock.py       the lockstat clock: the TSC through a cyc2ns calibration kept in the
                   segment header (sched_clock), clock_gettime without a usable TSC
    common.py      kinds, statuses, the record's owner word, the stop check
    tas.py         test-and-test-and-set (unfair; glibc's spinlock)
    ticket.py      x86 ticket spinlock (FIFO), 2.6.25 - 4.1
    qspinlock.py   MCS-queued spinlock, 4.2 on
    mutex.py       futex sleeping lock with adaptive spinning, robust
    rwsem_queue.py the rwsem's record, wait list, grant (__rwsem_do_wake), release, abort
    rwsem.py       reader/writer semaphore: fast paths, the wait, 3.9's stealing, 3.19's
                   optimistic spinning, 6.0's hand-off bit
    lock.py        lock_acquire / lock_trylock / lock_release: compiled dispatch by kind
    cached_compile.py  cached_njit / cached_cfunc: numba's cache keyed on the model's
                   sources (not the install path), no NRT, LLVM alwaysinline on request
    numba_hooks.py every numba-internal hook, with what it relies on and its test
    locktorture.py compiled torture loops and LockLab (a shared mapping + forked children)

Importing this package imports numba (about half a second) and registers the C symbols
the compiled code calls; do it before forking, and call each compiled entry point once
in the parent, so that children run the parent's machine code without compiling.
"""

from .atomics import clock_ns, pid_alive
from .common import (
    KIND_NAMES,
    LOCK_CONTENDED,
    LOCK_FAST,
    LOCK_OWNER_DIED,
    LOCK_STOPPED,
    MUTEX,
    NODE_BLOCK_WORDS,
    OWNER,
    OWNER_PID_SHIFT,
    QSPINLOCK,
    RECORD_WORDS,
    RWSEM,
    RWSEM_FIFO,
    RWSEM_HANDOFF,
    RWSEM_SPIN,
    RWSEM_STEAL,
    RWSEM_STEAL_39,
    STOP_ABORT,
    TAS,
    TICKET,
    owner_cpu,
)
from .lock import (
    compile_locks,
    lock_acquire,
    lock_is_wedged,
    lock_owner,
    lock_release,
    lock_state,
    lock_trylock,
)

__all__ = [
    "KIND_NAMES",
    "LOCK_CONTENDED",
    "LOCK_FAST",
    "LOCK_OWNER_DIED",
    "LOCK_STOPPED",
    "MUTEX",
    "NODE_BLOCK_WORDS",
    "OWNER",
    "OWNER_PID_SHIFT",
    "QSPINLOCK",
    "RECORD_WORDS",
    "RWSEM",
    "RWSEM_FIFO",
    "RWSEM_HANDOFF",
    "RWSEM_SPIN",
    "RWSEM_STEAL",
    "RWSEM_STEAL_39",
    "STOP_ABORT",
    "TAS",
    "TICKET",
    "clock_ns",
    "compile_locks",
    "lock_acquire",
    "lock_is_wedged",
    "lock_owner",
    "lock_release",
    "lock_state",
    "lock_trylock",
    "owner_cpu",
    "pid_alive",
]

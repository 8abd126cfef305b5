"""Real process-shared locks that live inside the shared segment, and their lockstat.

Lock ordering (deeper indentation = taken inside), as in mm/rmap.c::

    mm->mmap_sem                 (modelled by ownership: only the CPU running an mm changes it)
      anon_vma->lock             (the page's own anon_vma, or its root's: eras.py decides)
        mm->page_table_lock      (``ptl``: page_referenced_one, try_to_unmap_one, faults)
        mapcount stripe lock     (leaf: stands for atomic_t on page->_mapcount)
      slab lock                  (leaf: allocation and freeing of records)

Primitives are glibc's, called through ctypes on addresses inside the segment:

* ``spin``: ``pthread_spinlock_t`` (PTHREAD_PROCESS_SHARED).  The waiter busy-polls
  ``pthread_spin_trylock`` from Python, so it burns its CPU exactly as a kernel spinner
  does and can still notice the run's stop flag.  glibc's spinlock is test-and-set, not
  the FIFO ticket lock of 2010's x86: hand-off is unfair, which only makes the pileup
  worse for whoever is unlucky.
* ``mutex``: a robust, process-shared ``pthread_mutex_t``: a futex, the waiter sleeps.
  Robust means the next acquirer of a mutex whose owner died is told so (EOWNERDEAD).

Every lock record is 64 bytes: the primitive's bytes, then ``owner`` (pid * 4096 + cpu + 1,
written by the holder after it acquires and cleared before it releases).

Instrumentation: every acquisition records, in the acquiring CPU's own lockstat slot and
for its (class, call site): acquisitions, contentions (the first trylock failed), wait
(request to acquire) and hold (acquire to release) min/max/total, and a histogram of each.
The uncontended path costs two clock reads and a handful of stores; waits are recorded
only on the contended path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from typing import Protocol

import numpy as np

from .layout import (
    CPU_DTYPE,
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
    LS_WAIT_HIST,
    LS_WAIT_MAX,
    LS_WAIT_MIN,
    LS_WAIT_TOTAL,
    hist_bucket,
)
from .segment import Segment

LOCK_KINDS = ("spin", "mutex")
CLASS = {name: i for i, name in enumerate(LOCK_CLASSES)}
SITE = {name: i for i, name in enumerate(LOCK_SITES)}
I64_MAX = np.iinfo(np.int64).max
_NSITES = len(LOCK_SITES)

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """glibc, with the prototypes we call declared (an undeclared pointer argument would be
    truncated to a C int)."""
    global _libc
    if _libc is None:
        c = ctypes.CDLL(None, use_errno=True)
        vp, i = ctypes.c_void_p, ctypes.c_int
        for name, args in {
            "pthread_spin_init": [vp, i],
            "pthread_spin_trylock": [vp],
            "pthread_spin_unlock": [vp],
            "pthread_mutexattr_init": [vp],
            "pthread_mutexattr_destroy": [vp],
            "pthread_mutexattr_setpshared": [vp, i],
            "pthread_mutexattr_setrobust": [vp, i],
            "pthread_mutex_init": [vp, vp],
            "pthread_mutex_trylock": [vp],
            "pthread_mutex_unlock": [vp],
            "pthread_mutex_timedlock": [vp, vp],
            "pthread_mutex_consistent": [vp],
        }.items():
            fn = getattr(c, name)
            fn.argtypes = args
            fn.restype = i
        _libc = c
    return _libc


class Stopped(Exception):
    """The run's stop flag was raised while this CPU was waiting for a lock."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Primitive(Protocol):
    name: str

    def init_template(self) -> bytes: ...
    def trylock(self, addr: int) -> int: ...
    def unlock(self, addr: int) -> int: ...
    def wait(self, addr: int, stop: StopCheck) -> int: ...


class StopCheck(Protocol):
    def __call__(self) -> bool: ...


class SpinPrimitive:
    """pthread_spinlock_t, process-shared.  Waiting = polling trylock (busy)."""

    name = "spin"

    def __init__(self) -> None:
        c = libc()
        self.trylock = c.pthread_spin_trylock
        self.unlock = c.pthread_spin_unlock
        self._init = c.pthread_spin_init

    def init_template(self) -> bytes:
        buf = ctypes.create_string_buffer(64)
        rc = self._init(buf, 1)  # PTHREAD_PROCESS_SHARED
        if rc:
            raise OSError(rc, "pthread_spin_init failed")
        return buf.raw

    def spin_lock_slowpath(self, addr: int, stop: StopCheck) -> int:
        """Spin until acquired; returns 0 (a spinlock cannot know its owner died).  Named as
        the kernel's slow path so that a profile reads like a kernel profile."""
        trylock = self.trylock
        spins = 0
        while trylock(addr):
            spins += 1
            if not spins & 1023 and stop():
                raise Stopped()
        return 0

    wait = spin_lock_slowpath


class MutexPrimitive:
    """Robust process-shared pthread_mutex_t.  Waiting = sleeping on the futex."""

    name = "mutex"

    def __init__(self) -> None:
        c = libc()
        self.trylock = c.pthread_mutex_trylock
        self.unlock = c.pthread_mutex_unlock
        self._timedlock = c.pthread_mutex_timedlock
        self._consistent = c.pthread_mutex_consistent
        self._c = c

    def init_template(self) -> bytes:
        c = self._c
        attr = ctypes.create_string_buffer(64)
        buf = ctypes.create_string_buffer(64)
        for rc in (
            c.pthread_mutexattr_init(attr),
            c.pthread_mutexattr_setpshared(attr, 1),  # PTHREAD_PROCESS_SHARED
            c.pthread_mutexattr_setrobust(attr, 1),  # PTHREAD_MUTEX_ROBUST
            c.pthread_mutex_init(buf, attr),
        ):
            if rc:
                raise OSError(rc, "pthread mutex init failed")
        c.pthread_mutexattr_destroy(attr)
        return buf.raw

    def mutex_lock_slowpath(self, addr: int, stop: StopCheck) -> int:
        """Sleep on the mutex in 50 ms slices, checking the stop flag between slices.

        Returns EOWNERDEAD when the previous owner died holding it (made consistent)."""
        ts = _Timespec()
        while True:
            now = time.clock_gettime_ns(time.CLOCK_REALTIME) + 50_000_000
            ts.tv_sec, ts.tv_nsec = divmod(now, 1_000_000_000)
            rc = self._timedlock(addr, ctypes.addressof(ts))
            if rc == 0:
                return 0
            if rc == errno.EOWNERDEAD:
                self._consistent(addr)
                return rc
            if rc != errno.ETIMEDOUT:
                raise OSError(rc, os.strerror(rc))
            if stop():
                raise Stopped()

    wait = mutex_lock_slowpath

    def make_consistent(self, addr: int) -> None:
        self._consistent(addr)


def make_primitive(kind: str) -> Primitive:
    if kind == "spin":
        return SpinPrimitive()
    if kind == "mutex":
        return MutexPrimitive()
    raise ValueError(f"unknown lock kind {kind!r} (choose from {', '.join(LOCK_KINDS)})")


def init_locks(seg: Segment, array: str, field: str | None, prim: Primitive) -> None:
    """Initialise every lock in ``array[...][field]`` (or the array itself, when field is
    None) with ``prim``: unlocked, no owner.

    An unlocked process-shared glibc lock holds no pointers, so one initialised template
    is copied into every record, as a static initializer would be."""
    template = np.frombuffer(prim.init_template()[:56], dtype="V56")[0]
    locks = seg[array] if field is None else seg[array][field]
    locks["raw"] = template
    locks["owner"] = 0


class CpuLocks:
    """One CPU's view of the locks: acquire/release with lockstat recording.

    Usage is always paired: ``t = acquire(w, cls, site)`` ... ``release(w, cls, site, t)``
    where ``w`` is the lock's word index in the segment (``lock_word``).
    """

    def __init__(
        self,
        seg: Segment,
        cpu: int,
        prims: dict[int, Primitive],
        instrument: bool = True,
    ) -> None:
        self.seg = seg
        self.cpu = cpu
        self.prims = prims  # lock class -> primitive
        self.instrument = instrument
        self.base = seg.base
        self.words = seg.shm.buf.cast("q")
        self.owner_tag = os.getpid() * 4096 + cpu + 1
        off = seg.offsets["lockstat"] // 8 + cpu * len(LOCK_CLASSES) * len(LOCK_SITES) * LS_FIELDS
        self.ls_base = off
        self.cpu_base = (seg.offsets["cpu"] + cpu * CPU_DTYPE.itemsize) // 8
        self.f = {name: self.cpu_base + i for i, name in enumerate(CPU_FIELDS)}
        self.stop_word = seg.offsets["header"] // 8 + 2
        self.wait_ns = 0  # this CPU's total lock wait, for nested accounting
        self._trylocks = {c: p.trylock for c, p in prims.items()}
        self._unlocks = {c: p.unlock for c, p in prims.items()}
        self.clock = time.perf_counter_ns
        # lockdep-like order checking (off unless asked for): the classes this CPU holds,
        # and its edge table [held class][taken class] -> (times, first call sites + 1).
        self.order_check = False
        self.held: list[tuple[int, int]] = []
        ncls = len(LOCK_CLASSES)
        self.ld_base = seg.offsets["lockdep"] // 8 + cpu * ncls * ncls * 2

    def stopping(self) -> bool:
        """The run is being aborted (stop >= 2): waiters give up with Stopped.  A plain stop
        (1) lets every CPU finish its current operation, so waits go on."""
        return self.words[self.stop_word] >= 2

    def reset_stats(self) -> None:
        """Zero this CPU's lockstat (min fields start at +inf)."""
        n = len(LOCK_CLASSES) * len(LOCK_SITES) * LS_FIELDS
        view = np.frombuffer(self.seg.shm.buf, dtype=np.int64, count=n, offset=self.ls_base * 8)
        v = view.reshape(-1, LS_FIELDS)
        v[:] = 0
        v[:, LS_WAIT_MIN] = I64_MAX
        v[:, LS_HOLD_MIN] = I64_MAX
        del view, v

    def acquire(self, w: int, cls: int, site: int) -> int:
        """Take lock word ``w``; returns the acquire time (ns) to hand to ``release``."""
        if self.order_check:
            self.note_order(cls, site)
        t0 = self.clock()
        rc = self._trylocks[cls](self.base + 8 * w)
        if rc:
            t0 = self.lock_contended(w, self.base + 8 * w, cls, site, t0, rc)
        self.words[w + 7] = self.owner_tag
        return t0

    def note_order(self, cls: int, site: int) -> None:
        """Record, before trying to take a lock of class ``cls`` at ``site``, an edge from
        every class this CPU holds (as lockdep does on acquire, so a deadlock that never
        completes the acquisition is still recorded)."""
        words, n = self.words, len(LOCK_CLASSES)
        for hcls, hsite in self.held:
            e = self.ld_base + (hcls * n + cls) * 2
            words[e] += 1
            if not words[e + 1]:
                words[e + 1] = hsite * 64 + site + 1
        self.held.append((cls, site))

    def lock_contended(self, w: int, addr: int, cls: int, site: int, t0: int, rc: int) -> int:
        words, f = self.words, self.f
        if rc == errno.EOWNERDEAD:
            # A robust mutex whose owner died: trylock acquired it; make it usable again.
            self.prims[cls].make_consistent(addr)
            words[f["owner_died"]] += 1
            return t0
        prev_state, prev_since = words[f["state"]], words[f["state_since_ns"]]
        words[f["wait_lock"]] = w
        words[f["state_since_ns"]] = t0
        words[f["state"]] = CPU_STATE["wait"]
        try:
            rc = self.prims[cls].wait(addr, self.stopping)
        finally:
            words[f["state"]] = prev_state
            words[f["state_since_ns"]] = prev_since
            words[f["wait_lock"]] = -1
        t1 = self.clock()
        if rc:
            words[f["owner_died"]] += 1
        wait = t1 - t0
        self.wait_ns += wait
        words[f["t_wait_ns"]] += wait
        if self.instrument:
            b = self.ls_base + (cls * _NSITES + site) * LS_FIELDS
            words[b + LS_CONT] += 1
            words[b + LS_WAIT_TOTAL] += wait
            words[b + LS_WAIT_MAX] = max(words[b + LS_WAIT_MAX], wait)
            words[b + LS_WAIT_MIN] = min(words[b + LS_WAIT_MIN], wait)
            words[b + LS_WAIT_HIST + hist_bucket(wait)] += 1
        return t1

    def release(self, w: int, cls: int, site: int, t_acq: int) -> int:
        """Release lock word ``w`` taken at ``t_acq``; returns the hold time (ns)."""
        hold = self.clock() - t_acq
        words = self.words
        if self.order_check:
            for i in range(len(self.held) - 1, -1, -1):
                if self.held[i][0] == cls:
                    del self.held[i]
                    break
        words[w + 7] = 0
        self._unlocks[cls](self.base + 8 * w)
        if self.instrument:
            b = self.ls_base + (cls * _NSITES + site) * LS_FIELDS
            words[b] += 1  # LS_ACQ
            words[b + LS_HOLD_TOTAL] += hold
            words[b + LS_HOLD_MAX] = max(words[b + LS_HOLD_MAX], hold)
            words[b + LS_HOLD_MIN] = min(words[b + LS_HOLD_MIN], hold)
            bl = hold.bit_length()  # hist_bucket(hold), inlined: this is the hot path
            words[b + LS_HOLD_HIST + ((bl << 2) | ((hold >> (bl - 3)) & 3) if bl > 3 else hold)] += 1
        return hold


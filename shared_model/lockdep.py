"""lockdep, as kernel/locking/lockdep.c keeps it for the model's few lock classes: the
order in which each CPU takes lock classes (``--check-lock-order`` only).

Two pieces of state:

* the held stack, process-local (``CpuLocks.held``): ``[n, (class, site) * n]``, the
  classes this CPU holds or waits for, innermost last;
* the edge table, this CPU's slot of the segment's ``lockdep`` array (``g[LOCKDEP_BASE]``),
  ``[held class, taken class, 2]`` words: how many times ``taken`` was asked for while
  ``held`` was held, and the first pair of call sites (held site * 64 + taken site + 1).

An edge is recorded on the attempt, before the lock is taken, so a deadlock that never
completes is still seen; the run's report reads the tables (``stress.engine.metrics``'s
``lock_order_findings`` and ``lock_order_edges``), and the allowed order is the tree at the
top of shared_model/rmap.py (``LOCK_ORDER_PATHS``).  The fast paths that are inlined into
each compiled caller (shared_model/locks.py: ``lock_request_fast``, ``lock_release_c``)
reach ``note_order`` and ``note_release`` through their C entry points, so that they carry
a call, not lockdep's loops (``held_push``, and the slow path's calls, are direct).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray

from . import ctx as G
from .layout import LOCKDEP_CLASSES
from .locking.atomics import c_entry_call
from .locking.cached_compile import I64, I64P, cached_cfunc, cached_njit


@cached_njit
def note_order(words: np.ndarray, g: np.ndarray, held: np.ndarray, cls: int, site: int) -> None:
    """lockdep: before taking class ``cls`` at ``site``, an edge from every class this CPU
    holds (recorded on the attempt, so a deadlock that never completes is still seen)."""
    base = g[G.LOCKDEP_BASE]
    for i in range(held[0]):
        hcls, hsite = held[1 + 2 * i], held[2 + 2 * i]
        e = base + (hcls * LOCKDEP_CLASSES + cls) * 2
        words[e] += 1
        if words[e + 1] == 0:
            words[e + 1] = hsite * 64 + site + 1


@cached_njit(llvm_inline=True)
def held_push(held: np.ndarray, cls: int, site: int) -> None:
    """lockdep's held stack: this CPU holds (or waits for) class ``cls`` taken at ``site``."""
    n = held[0]
    if 2 + 2 * n < len(held):
        held[1 + 2 * n] = cls
        held[2 + 2 * n] = site
        held[0] = n + 1


@cached_njit
def note_release(held: np.ndarray, cls: int) -> None:
    for i in range(held[0] - 1, -1, -1):
        if held[1 + 2 * i] == cls:
            for j in range(i, held[0] - 1):
                held[1 + 2 * j] = held[3 + 2 * j]
                held[2 + 2 * j] = held[4 + 2 * j]
            held[0] -= 1
            return



@cached_cfunc("rmap_stress_note_order", I64(I64P, I64, I64P, I64, I64P, I64, I64, I64))
def note_order_cabi(wp: Any, wn: int, gp: Any, gn: int, hp: Any, hn: int, cls: int, site: int) -> int:
    """note_order (lockdep, --check-lock-order only) behind a C entry point."""
    note_order(carray(wp, wn), carray(gp, gn), carray(hp, hn), cls, site)
    return 0


@cached_cfunc("rmap_stress_note_release", I64(I64P, I64, I64))
def note_release_cabi(hp: Any, hn: int, cls: int) -> int:
    """note_release (lockdep) behind a C entry point."""
    note_release(carray(hp, hn), cls)
    return 0


call_note_order = c_entry_call("rmap_stress_note_order", 3, 2)
call_note_release = c_entry_call("rmap_stress_note_release", 1, 1)

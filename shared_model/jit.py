"""Compile once: every compiled function of the model, compiled (or loaded from numba's
on-disk cache) in the parent before it forks its CPUs.

numba compiles a function on its first call.  A CPU that did so after the start gate would
spend its first seconds in LLVM, and N CPUs would compile N times; compiled code loaded
in the parent is inherited by every forked child instead.  ``warm_up`` runs each compiled
path once on a tiny throwaway model (so the argument types are exactly those of a real
run), and reports whether that was a cold compile: the first run after an install takes
some seconds, later runs load the cache (``__pycache__`` beside the sources, or numba's
per-user cache directory when that is not writable; with neither, numba compiles in
memory and the run still works, only slower to start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

_warm = False


def cache_is_cold() -> bool:
    """True when the walk's compiled code is not in numba's cache yet (a first run)."""
    from numba.core.caching import FunctionCache

    from .rmap import rmap_walk_anon

    try:
        cache = FunctionCache(rmap_walk_anon.py_func)
        index = cache._cache_path
        return not any(n.startswith("rmap.rmap_walk_anon") and n.endswith(".nbi")
                       for n in os.listdir(index))
    except (OSError, RuntimeError, AttributeError):
        return True


def warm_up(note: Callable[[str], None] | None = None) -> float:
    """Compile (or load) every compiled path of the model; returns the seconds it took.
    ``note`` is told "compiling (first run only)" before a cold compile.  Runs once per
    process; creates and removes one small segment."""
    global _warm
    if _warm:
        return 0.0
    from .build import build_family, family_capacities
    from .invariants import check_model
    from .locking import compile_locks
    from .memory import do_wp_pages, dup_mmap, exit_mmap, touch_pages
    from .model import Model
    from .rmap import (
        AnonLru,
        page_referenced,
        shrink_lru,
        shrink_page_list,
        try_to_unmap,
        walk_lengths_of,
    )
    from .swapdev import swap_device_warm_up

    if note is not None and cache_is_cold():
        note("compiling (first run only)")
    t0 = time.perf_counter()
    compile_locks()
    m = Model.create(family_capacities("2.6.34", 2, 2, 1.0, 1, spare_users=4), "2.6.34")
    try:
        fam = build_family(m, 2, 2, 1.0, 0)
        pages = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
        walk_lengths_of(m, pages)
        page_referenced(m, int(pages[0]))
        try_to_unmap(m, int(pages[0]))
        shrink_page_list(m, pages, 0, len(pages), refault=True)
        shrink_lru(m, AnonLru(pages), len(pages), refault=True)
        u = fam.children[0]
        touch_pages(m, u, np.arange(2))
        child = dup_mmap(m, u)
        do_wp_pages(m, child, int(m.mm["vma_head"][child]), np.arange(1))
        exit_mmap(m, child)
        swap_device_warm_up(m)
        m.free("page", m.alloc("page", 1))  # the Python side of the per-CPU slab caches
        m.wedged_locks()  # the parent's end-of-run look for wedged ticket/MCS locks
        violations = check_model(m)
        assert not violations, violations
    finally:
        seg = m.seg
        m.close()
        seg.unlink()
    _warm = True
    return time.perf_counter() - t0

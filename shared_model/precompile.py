"""Compile once: every compiled function of the model, compiled (or loaded from numba's
on-disk cache) in the parent before it forks its CPUs.

numba compiles a function on its first call.  A CPU that did so after the start gate would
spend its first seconds in LLVM, and N CPUs would compile N times; compiled code loaded
in the parent is inherited by every forked child instead.  ``warm_up`` runs each compiled
path once on a tiny throwaway model (so the argument types are exactly those of a real
run), and reports whether that was a cold compile: the first run after an install takes
some seconds, later runs load the cache (``~/.cache/rmap-stress/<hash of the sources>/``,
or under ``$NUMBA_CACHE_DIR``: see locking/cached_compile.py; when that is not writable,
numba compiles in memory and the run still works, only slower to start).

What it compiles is every compiled function of the model, found by importing its modules
(``model_dispatchers``), for the types its annotations declare: each one the cache has no
entry for yet (``uncached``), so that after the first run no command or test compiles
anything, and a new compiled function is covered without a list to keep.

A cold compile is shared out among forked children (``compile_in_children``), one per
CPU this process may run on (at most MAX_COMPILE_JOBS; ``RMAP_STRESS_COMPILE_JOBS=N``
sets it, 1 compiles serially): the parent compiles the functions everything else calls
(the lock primitives, the slab) first, so that the children inherit them, then each child
compiles every n-th remaining compiled function of the model, for the argument types its
annotations declare (``locking.cached_compile.declared_signature``), into numba's disk cache, and
exits; the parent's warm-up then loads them.  Only when the cache is writable (otherwise
the children's work would be lost); a child that fails, is killed or outlives
CHILD_TIMEOUT_S fails nothing: whatever it did not save, the parent compiles itself.
Measured on the 2-core machine, 7 December 2026: 32.6 s cold with 2 children (51.4 s of
CPU) with no other load; shared with another user's jobs (load average 2-3), 47-53 s with
2 children (54 s of CPU) and 45 s serial (45 s of CPU).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np

_warm = False
BASE_MODULES = ("shared_model.locking.common", "shared_model.locking.clock",
                "shared_model.locking.tas", "shared_model.locking.ticket",
                "shared_model.locking.qspinlock", "shared_model.locking.mutex",
                "shared_model.locking.rwsem_queue", "shared_model.locking.rwsem",
                "shared_model.locking.lock", "shared_model.locks",
                "shared_model.slab")
MAX_COMPILE_JOBS = 4  # each child holds numba and LLVM (~300 MB); more share less work each
CHILD_TIMEOUT_S = 600.0  # a compile child still running then is killed (the parent compiles)


def cache_is_cold() -> bool:
    """True when the walk's compiled code is not in the cache yet (a first run)."""
    from .locking.numba_hooks import has_cached_index
    from .rmap import rmap_walk_anon

    return not has_cached_index(rmap_walk_anon)


def warm_up(note: Callable[[str], None] | None = None,
            progress: Callable[[int, int], None] | None = None) -> float:
    """Compile (or load) every compiled path of the model; returns the seconds it took.
    ``note`` is told "compiling (first run only)" before a cold compile, and ``progress``
    hears (functions compiled, functions to compile) during it, about twice a second.
    Runs once per process; creates and removes one small segment."""
    global _warm
    if _warm:
        return 0.0
    from .build import build_family, family_capacities
    from .invariants import check_model
    from .locking import compile_locks
    from .locks import CLASS
    from .memory import do_wp_pages, dup_mmap, exit_mmap, touch_pages
    from .model import Model
    from .rmap import page_referenced, try_to_unmap
    from .swapdev import swap_device_warm_up
    from .vmscan import AnonLru, shrink_lru, shrink_page_list, walk_lengths_of

    t0 = time.perf_counter()
    dispatchers = model_dispatchers()
    missing = uncached(dispatchers)
    cold = bool(missing) or cache_is_cold()
    if note is not None and cold:
        note("compiling (first run only)")
    if missing:
        compile_in_children(missing, progress=progress)
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
        w = m.ptl_word(0)  # the Python side of a lock: CpuLocks.acquire's fast path
        m.locks.release(w, CLASS["ptl"], 0, m.locks.acquire(w, CLASS["ptl"], 0))
        m.wedged_locks()  # the parent's end-of-run look for wedged ticket/MCS locks
        violations = check_model(m)
        assert not violations, violations
        # Whatever no child compiled (one job, a failed child) and the paths above did not
        # call: every compiled function of the model is in the cache after a first run, so
        # that no later command or test compiles anything.
        _compile_share(uncached(missing), 0, 1)
        if progress is not None and cold:
            total = len(missing) or len(_to_compile(dispatchers))
            progress(total, total)
    finally:
        seg = m.seg
        m.close()
        seg.unlink()
    _warm = True
    return time.perf_counter() - t0


def compile_jobs() -> int:
    """Children for a cold compile: the CPUs this process may run on, at most
    MAX_COMPILE_JOBS, or ``RMAP_STRESS_COMPILE_JOBS`` (1: serial, no child)."""
    env = os.environ.get("RMAP_STRESS_COMPILE_JOBS", "")
    if env.isdigit():
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_COMPILE_JOBS))


def model_dispatchers() -> list[Any]:
    """Every compiled function of the model (all of shared_model imported, the lock
    torture loops included), callees first: what ``warm_up`` puts in the cache, derived
    from the modules, so that a new compiled function is covered without a list to keep."""
    import importlib
    import pkgutil

    import shared_model

    from .locking.cached_compile import REGISTRY

    for mod in pkgutil.walk_packages(shared_model.__path__, "shared_model."):
        importlib.import_module(mod.name)
    return [d for d in REGISTRY if d.py_func.__module__.startswith("shared_model.")]


def uncached(dispatchers: list[Any]) -> list[Any]:
    """The functions of ``dispatchers`` compiled on their own (``_to_compile``) that have a
    declared signature and no entry in the on-disk cache yet; none when there is no
    writable cache (a compile would then be lost at exit: each is compiled when first
    called instead)."""
    from .locking.cached_compile import declared_signature
    from .locking.numba_hooks import cache_usable, has_cached_index

    if not cache_usable():
        return []
    return [d for d in _to_compile(dispatchers)
            if getattr(d.stats, "cache_path", None) and not has_cached_index(d)
            and declared_signature(d) is not None]


def cache_writable(dispatchers: list[Any]) -> bool:
    """Every function has an on-disk cache: the source-keyed cache is usable and numba
    made one for each (``stats.cache_path`` is None for a function compiled in memory)."""
    from .locking.numba_hooks import cache_usable

    return cache_usable() and all(getattr(d.stats, "cache_path", None) for d in dispatchers)


def _to_compile(dispatchers: list[Any]) -> list[Any]:
    """The functions compiled ahead, each on its own: all of them, the helpers LLVM pastes
    into their compiled callers (``llvm_inline=True``) included: a caller links the
    helper's compiled code, and Python code calls some of them directly (the CPU's lock
    fast path, tests of a lock's trylock)."""
    return list(dispatchers)


def _count_compiled(total: int, before: int = 0) -> int:
    """Functions of the model put in the cache since it held ``before``, at most
    ``total``."""
    from .locking.numba_hooks import count_cached_indexes, model_cache_dir

    return max(0, min(total, count_cached_indexes(model_cache_dir()) - before))


def _compile_share(dispatchers: list[Any], job: int, jobs: int) -> None:
    """A child's share: every ``jobs``-th function from ``job``, each for its declared
    types."""
    from .locking.cached_compile import declared_signature

    for d in dispatchers[job::jobs]:
        sig = declared_signature(d)
        if sig is not None and sig not in d.overloads:
            d.compile(sig)


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the kernel SIGKILLs this compile child when the parent dies (a
    ``kill -9`` of the run during a cold start leaves no compiler running), and the ppid
    check closes the window where the parent died before the prctl."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def compile_in_children(dispatchers: list[Any], jobs: int | None = None,
                        share: Callable[[list[Any], int, int], None] | None = None,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Compile ``dispatchers`` into the disk cache in ``jobs`` forked children, each its
    share (``share``, for tests; ``_compile_share``), and wait for them.  Returns how many
    children exited cleanly; 0 without forking when one job would do or the cache is not
    writable.  Nothing here fails the caller: what a failed child left out, the caller
    compiles when it next calls it."""
    jobs = compile_jobs() if jobs is None else jobs
    if jobs < 2 or not dispatchers or not cache_writable(dispatchers):
        return 0
    total = len(_to_compile(dispatchers))
    before = _count_compiled(1 << 30)  # what is cached already (the C entry points, ...)
    if progress is not None:
        progress(0, total)
    share = share or _compile_share
    # The functions every other one calls (the locks, the slab), compiled here first: the
    # children inherit them in memory instead of each compiling its own copy.
    base = [d for d in dispatchers if d.py_func.__module__ in BASE_MODULES]
    try:
        _compile_share(base, 0, 1)
    except Exception:  # noqa: BLE001 - compiled again, or reported, where it is first called
        return 0
    dispatchers = [d for d in dispatchers if d.py_func.__module__ not in BASE_MODULES]
    pids = []
    parent = os.getpid()
    for job in range(jobs):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:  # the child: compile, save, and leave without running any cleanup
            code = 1
            try:
                _die_with_parent(parent)
                import warnings

                warnings.simplefilter("ignore")
                share(dispatchers, job, jobs)
                code = 0
            except BaseException:  # noqa: BLE001 - the parent compiles what is missing
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    ok = 0
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    told = time.monotonic()
    try:
        while pids and time.monotonic() < deadline:
            if progress is not None and time.monotonic() - told >= 0.5:
                told = time.monotonic()
                progress(_count_compiled(total, before), total)
            try:
                pid, status = os.waitpid(pids[0], os.WNOHANG)
            except ChildProcessError:
                pids.pop(0)
                continue
            if pid == 0:
                time.sleep(0.05)
                continue
            pids.pop(0)
            ok += int(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    finally:
        for pid in pids:  # past the deadline, or a signal in the parent: leave no child
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return ok

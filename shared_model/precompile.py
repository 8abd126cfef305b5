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
sets it, 1 compiles serially), as ``make -j`` builds: the parent hands each idle child one
function (or C entry point) whose callees are done, the one most others wait on first
(``_Schedule``, with the callees read from each function's code), and the child compiles
it for the argument types its annotations declare
(``locking.cached_compile.declared_signature``) into numba's disk cache.  A compiled
function calls the model's other functions by name (locking/numba_hooks.py,
``install_calls_by_name``), so a child loads a callee another child compiled from the
cache instead of compiling it again.  The parent's warm-up then loads everything.  Only
when the cache is writable (otherwise the children's work would be lost); a child that
fails, is killed or outlives CHILD_TIMEOUT_S fails nothing: whatever it did not save, the
parent compiles itself.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import select
import signal
import time
from collections.abc import Callable
from types import CodeType, ModuleType
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
    from .locking.cached_compile import c_entries
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
    entries = c_entries()
    if missing:  # the C entry points too: loaded from the cache when they are there
        compile_in_children(entries + missing, progress=progress)
    for entry in entries:
        entry.cfunc  # noqa: B018 - loads (or compiles) it
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
        for d in uncached(missing):
            _compile_item(d, 0)
        if progress is not None and cold:
            total = len(entries) + (len(missing) or len(_to_compile(dispatchers)))
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


def cache_writable(items: list[Any]) -> bool:
    """Every function has an on-disk cache: the source-keyed cache is usable and numba
    made one for each (``stats.cache_path`` is None for a function compiled in memory;
    a C entry point has no dispatcher until compiled, and uses the same cache)."""
    from .locking.cached_compile import CEntry
    from .locking.numba_hooks import cache_usable

    return cache_usable() and all(getattr(d.stats, "cache_path", None) for d in items
                                  if not isinstance(d, CEntry))


def _to_compile(dispatchers: list[Any]) -> list[Any]:
    """The functions compiled ahead, each on its own: all of them, the helpers LLVM pastes
    into their compiled callers (``llvm_inline=True``) included: a caller links the
    helper's compiled code, and Python code calls some of them directly (the CPU's lock
    fast path, tests of a lock's trylock)."""
    return list(dispatchers)


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the kernel SIGKILLs this compile child when the parent dies (a
    ``kill -9`` of the run during a cold start leaves no compiler running), and the ppid
    check closes the window where the parent died before the prctl."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _callees(items: list[Any]) -> list[set[int]]:
    """For each item, the indices of the items its source names (its module's globals, and
    attributes of the modules it imports, in its code and nested code): the functions
    and C entry points it calls, which must be compiled before it.  Read from
    the code, not by compiling it: a missed callee is compiled twice at worst."""
    index = {id(item): i for i, item in enumerate(items)}
    for i, item in enumerate(items):
        symbol = getattr(item, "symbol", None)
        if symbol is not None:
            index[symbol] = i  # a C entry point, as its c_entry_call names it
    out: list[set[int]] = []
    for item in items:
        fn = item.py_func
        names: set[str] = set()
        codes = [fn.__code__]
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(c for c in code.co_consts if isinstance(c, CodeType))
        found: set[int] = set()
        for name in names:
            obj = fn.__globals__.get(name)
            targets = [obj]
            if isinstance(obj, ModuleType):
                targets = [getattr(obj, n, None) for n in names]
            for t in targets:
                key = getattr(t, "c_entry_symbol", None) or id(t)
                if key in index:
                    found.add(index[key])
        found.discard(len(out))
        out.append(found)
    return out


def _compile_item(item: Any, job: int) -> None:
    """Compile (or load) one item for a compile child: a C entry point, or a function for
    its declared types."""
    from .locking.cached_compile import CEntry, compile_declared

    if isinstance(item, CEntry):
        item.cfunc  # noqa: B018 - compiles it
    else:
        compile_declared(item)


def _child_loop(items: list[Any], job: int, tasks: int, results: int,
                compile_item: Callable[[Any, int], None]) -> None:
    """A compile child: compile each item index read from ``tasks`` (one per line) and
    report it done on ``results`` ("job index"), until ``tasks`` ends."""
    buf = b""
    while True:
        chunk = os.read(tasks, 4096)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            i = int(line)
            compile_item(items[i], job)
            os.write(results, f"{job} {i}\n".encode())


class _Schedule:
    """Which items are ready: those whose callees (``_callees``) are all done, the one
    with most items waiting on it behind it first."""

    def __init__(self, items: list[Any]) -> None:
        self.callees = _callees(items)
        self.callers: list[list[int]] = [[] for _ in items]
        for i, cs in enumerate(self.callees):
            for c in cs:
                self.callers[c].append(i)
        self.waiting = [len(cs) for cs in self.callees]
        self.weight = [len(self._behind(i)) for i in range(len(items))]
        self.ready = [(-self.weight[i], i) for i in range(len(items)) if self.waiting[i] == 0]
        heapq.heapify(self.ready)
        self.left = set(range(len(items)))

    def _behind(self, i: int) -> set[int]:
        seen: set[int] = set()
        todo = [i]
        while todo:
            for c in self.callers[todo.pop()]:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen

    def next(self, in_flight: int) -> int | None:
        """The next item to compile, or None.  When nothing is ready or under way yet items
        are left (the callees read from the code made a circle), the heaviest of them."""
        if not self.ready and in_flight == 0 and self.left:
            i = max(self.left, key=lambda j: self.weight[j])
            self.waiting[i] = 0
            return self._take(i)
        if not self.ready:
            return None
        return self._take(heapq.heappop(self.ready)[1])

    def _take(self, i: int) -> int:
        self.left.discard(i)
        return i

    def done(self, i: int) -> None:
        for c in self.callers[i]:
            self.waiting[c] -= 1
            if self.waiting[c] == 0 and c in self.left:
                heapq.heappush(self.ready, (-self.weight[c], c))


class _Children:
    """The compile children and the parent's end of their pipes: each child reads item
    indices from its own pipe and reports "job index" on the shared results pipe."""

    def __init__(self, items: list[Any], jobs: int, compile_item: Callable[[Any, int], None]) -> None:
        self.results, results_w = os.pipe()
        self.kids: list[list[int]] = []  # [pid (-1 once reaped), task fd (-1 closed), item or -1]
        self.clean = 0
        self._buf = b""
        parent = os.getpid()
        for job in range(jobs):
            task_r, task_w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(task_r)
                os.close(task_w)
                break
            if pid == 0:  # the child: compile, save, and leave without running any cleanup
                code = 1
                try:
                    _die_with_parent(parent)
                    for fd in [self.results, task_w] + [k[1] for k in self.kids]:
                        os.close(fd)
                    import warnings

                    warnings.simplefilter("ignore")
                    _child_loop(items, job, task_r, results_w, compile_item)
                    code = 0
                except BaseException:  # noqa: BLE001 - the parent compiles what is missing
                    code = 1
                finally:
                    os._exit(code)
            os.close(task_r)
            self.kids.append([pid, task_w, -1])
        os.close(results_w)

    def in_flight(self) -> int:
        return sum(k[2] >= 0 for k in self.kids)

    def hand_out(self, schedule: _Schedule) -> None:
        """Give each idle child the next ready item."""
        for kid in self.kids:
            if kid[2] == -1 and kid[1] >= 0:
                i = schedule.next(self.in_flight())
                if i is None:
                    return
                kid[2] = i
                try:
                    os.write(kid[1], f"{i}\n".encode())
                except BrokenPipeError:  # the child is gone: ``collect`` finds it
                    pass

    def collect(self, schedule: _Schedule, timeout: float) -> int:
        """Items finished within ``timeout`` seconds (a dead child's counts: whatever it
        did not save, the caller compiles); returns how many."""
        n = 0
        if select.select([self.results], [], [], timeout)[0]:
            self._buf += os.read(self.results, 65536)
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                job, i = map(int, line.split())
                self.kids[job][2] = -1
                schedule.done(i)
                n += 1
        for kid in self.kids:
            if kid[2] >= 0 and self._reap(kid, os.WNOHANG):
                schedule.done(kid[2])
                kid[2] = -1
                n += 1
        return n

    def _reap(self, kid: list[int], flags: int) -> bool:
        """Reap the child if it has exited; True if it has (or was before)."""
        if kid[0] < 0:
            return True
        pid, status = os.waitpid(kid[0], flags)
        if pid == 0:
            return False
        self.clean += int(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        kid[0] = -1
        if kid[1] >= 0:
            os.close(kid[1])
            kid[1] = -1
        return True

    def finish(self, deadline: float) -> None:
        """End each child's work (its pipe closes, its loop ends), wait for them until
        ``deadline``, then kill any still there; returns with no child left."""
        for kid in self.kids:
            if kid[1] >= 0:
                os.close(kid[1])
                kid[1] = -1
        while time.monotonic() < deadline and not all(self._reap(k, os.WNOHANG) for k in self.kids):
            time.sleep(0.02)
        self.kill()

    def kill(self) -> None:
        for kid in self.kids:
            if kid[0] >= 0:
                with contextlib.suppress(OSError):
                    os.kill(kid[0], signal.SIGKILL)
                self._reap(kid, 0)
            if kid[1] >= 0:
                os.close(kid[1])
                kid[1] = -1
        if self.results >= 0:
            os.close(self.results)
            self.results = -1


def compile_in_children(items: list[Any], jobs: int | None = None,
                        compile_item: Callable[[Any, int], None] | None = None,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Compile ``items`` (functions and C entry points) into the disk cache in ``jobs``
    forked children and wait for them.  The parent hands out one item at a time, callees
    before their callers (``_Schedule``), so that a child compiling a function loads what
    it calls from the cache instead of compiling it again; ``compile_item`` (for tests)
    compiles one.  Returns how many children exited cleanly; 0 without forking when one
    job would do or the cache is not writable.  Nothing here fails the caller: what a
    failed child left out, the caller compiles when it next calls it."""
    jobs = compile_jobs() if jobs is None else jobs
    if jobs < 2 or not items or not cache_writable(items):
        return 0
    schedule = _Schedule(items)
    total, done = len(items), 0
    if progress is not None:
        progress(0, total)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    told = time.monotonic()
    children = _Children(items, jobs, compile_item or _compile_item)
    try:
        while time.monotonic() < deadline:
            children.hand_out(schedule)
            if children.in_flight() == 0:
                break  # nothing under way and nothing ready: all done
            done += children.collect(schedule, 0.2)
            if progress is not None and time.monotonic() - told >= 0.5:
                told = time.monotonic()
                progress(min(done, total), total)
        children.finish(deadline)
    finally:  # past the deadline, or a signal in the parent: leave no child
        children.kill()
    return children.clean

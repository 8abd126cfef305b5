"""One compile per machine: ``warm_up`` puts every compiled function of the model in the
on-disk cache, so that no command or test run after the first compiles anything.

The cache folder is counted, not numba's state in this process: a command's CPUs are
forked children, and whatever one of them compiles shows only as a new cache file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from shared_model.locking.cached_compile import INLINED, REGISTRY, declared_signature
from shared_model.precompile import model_dispatchers

ROOT = Path(__file__).resolve().parents[2]


def _cache_files(root: Path) -> set[str]:
    """numba's index and data files under ``root``, relative to it."""
    return {str(Path(d, n).relative_to(root)) for d, _s, names in os.walk(root) for n in names
            if n.endswith((".nbi", ".nbc"))}


def test_every_compiled_function_of_the_model_is_warmed() -> None:
    """The warm-up list is every compiled function of shared_model, found by importing its
    modules (a new one is covered without editing a list), and each one compiled on its own
    has a declared signature (otherwise the warm-up could not compile it ahead), those
    LLVM pastes into their callers included (Python calls some of them directly)."""
    warmed = set(model_dispatchers())
    model = {d for d in REGISTRY if d.py_func.__module__.startswith("shared_model.")}
    assert model and warmed == model
    assert INLINED & model
    no_sig = sorted(d.py_func.__qualname__ for d in model if declared_signature(d) is None)
    assert no_sig == []


_COMMANDS = textwrap.dedent('''
    import os, sys
    import numpy as np
    from stress.cli import main
    from shared_model.locking.locktorture import LockLab, torture_hammer, torture_pair_ns, torture_reader
    from shared_model.locking.common import RWSEM, TICKET

    def rmap(*args):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
        assert code in (0, None), (args, code)

    rmap("run", "--era", "2.6.33", "--scenario", "fork-test", "--users", "4", "--pages", "4",
         "--cpus", "2", "--duration", "0.5", "--quiet")
    rmap("run", "--era", "3.0", "--scenario", "reclaim-storm", "--users", "4", "--pages", "4",
         "--cpus", "2", "--duration", "0.5", "--quiet")
    rmap("scan", "--era", "2.6.34", "--users", "6", "--pages", "3", "--refault")
    rmap("scan", "--era", "2.6.36", "--scenario", "mprotect-split", "--pieces", "3", "--users", "3")
    rmap("scan", "--era", "3.0", "--scenario", "shared-swapin", "--users", "3", "--pages", "2")
    # Inlined helpers that Python code calls directly too.
    from shared_model.build import family_capacities
    from shared_model.locking.common import owner_run_word
    from shared_model.locking.rwsem import down_write_trylock
    from shared_model.locks import CLASS, lock_acquire_fast
    from shared_model.model import Model

    m = Model.create(family_capacities("2.6.34", 1, 1, 1.0, 1), "2.6.34")
    try:
        w = m.ptl_word(0)
        t = lock_acquire_fast(m.words, m.g, m.locks.held, w, CLASS["ptl"], 0, 0)
        assert t >= 0
        m.locks.release(w, CLASS["ptl"], 0, t)
    finally:
        seg = m.seg
        m.close()
        seg.unlink()
    owner_run_word(64, 1, 2)
    lab = LockLab()
    try:
        down_write_trylock(lab.words, lab.at.lock2, 0)
        lay = lab.at
        words = lab.words
        torture_hammer(words, lay.lock, TICKET, 0, 0, lab.tag(0), lay.node(0), lay.stop,
                       lay.counter, 10)
        torture_pair_ns(words, lay.lock, TICKET, 0, 0, lab.tag(0), lay.node(0), lay.stop, 10)
        torture_reader(words, lay.lock, 0, lay.node(0), lay.stop, lay.counter, 10, 2)
    finally:
        lab.close()
''')


def test_commands_after_the_warm_up_compile_nothing() -> None:
    """In this machine's cache (where the demo or any earlier run put the model): the
    warm-up, then small runs, scans of each scenario and the lock torture loops; the
    commands add no file to the cache (each would be a function compiled after the first
    run's compile).  On a cold cache the warm-up is the one compile the suite pays anyway;
    an empty cache of its own would cost a second."""
    from shared_model.locking.numba_hooks import cache_root

    root = cache_root()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    warm = subprocess.run([sys.executable, "-c", "from shared_model.precompile import warm_up; warm_up()"],
                          check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert warm.returncode == 0, warm.stderr
    before = _cache_files(root)
    assert len(before) > 100
    cmds = subprocess.run([sys.executable, "-c", _COMMANDS], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert cmds.returncode == 0, cmds.stderr[-3000:]
    assert sorted(_cache_files(root) - before) == []


def test_the_tests_own_kernels_compile_in_memory() -> None:
    """A kernel a test file compiles for itself (``@cached_njit`` in tests/) is declared
    ``cache=False``: cached, it would add files to the machine's cache whenever the suite
    runs after ``rmap-stress demo`` (25 of them before), and it is not the model's code."""
    import ast

    cached = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                call = dec if isinstance(dec, ast.Call) else None
                name = call.func if call else dec
                if not (isinstance(name, ast.Name) and name.id == "cached_njit"):
                    continue
                in_memory = call is not None and any(
                    k.arg == "cache" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in call.keywords)
                if not in_memory:
                    cached.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert cached == []


def test_a_kernel_declared_in_memory_is_not_the_models() -> None:
    """``cached_njit(cache=False)`` compiles without the cache and stays out of the
    warm-up's registry."""
    from numba.core.caching import NullCache

    from shared_model.locking.cached_compile import cached_njit

    before = len(REGISTRY)

    @cached_njit(cache=False)
    def plus_one(x: int) -> int:
        return x + 1

    assert plus_one(41) == 42
    assert isinstance(plus_one._cache, NullCache)
    assert len(REGISTRY) == before


def test_a_cold_compile_does_callees_first() -> None:
    """The cold compile's schedule reads each function's callees from its code: functions
    by the names its module gives them (mmap.py's ``_vma`` is ctx.vma_word), and C entry
    points through their ``c_entry_call``; a function is handed out only once its callees
    are done, the one most others wait on first."""
    from shared_model import ctx
    from shared_model.locking.cached_compile import c_entries
    from shared_model.locks import _lock_acquire, lock_acquire_c
    from shared_model.memory import dup_mmap_c
    from shared_model.mmap import vma_adjust_c
    from shared_model.precompile import _callees, _Schedule

    slowpath = next(e for e in c_entries() if e.symbol == "rmap_stress_lock_acquire_slowpath")
    items = [lock_acquire_c, _lock_acquire, slowpath, ctx.vma_word, vma_adjust_c, dup_mmap_c]
    callees = _callees(items)
    assert callees[0] == {1}  # lock_acquire_c -> _lock_acquire
    assert 2 in callees[1]  # _lock_acquire -> the slow path, a C entry point
    assert 3 in callees[4]  # vma_adjust_c -> _vma, that is ctx.vma_word
    assert all(i not in c for i, c in enumerate(callees))  # nobody waits on itself

    schedule = _Schedule(items)
    order, in_flight = [], 0
    while (i := schedule.next(in_flight)) is not None:
        order.append(i)
        schedule.done(i)
    assert sorted(order) == list(range(len(items)))
    for i, cs in enumerate(callees):
        assert all(order.index(c) < order.index(i) for c in cs), (i, cs, order)
    assert order[0] == 2  # the slow path: every lock caller waits on it


def test_a_schedule_with_a_circle_still_ends() -> None:
    """Two functions naming each other (a circle the code's names can make): one is handed
    out once nothing else is ready or under way, then the other."""
    from types import SimpleNamespace

    from shared_model.precompile import _Schedule

    names: dict[str, object] = {}
    a = SimpleNamespace(py_func=eval("lambda: b", names))  # code naming b
    b = SimpleNamespace(py_func=eval("lambda: a", names))
    names.update(a=a, b=b)
    schedule = _Schedule([a, b])
    assert schedule.callees == [{1}, {0}]
    assert schedule.next(1) is None  # one under way: wait for it
    first = schedule.next(0)
    assert first in (0, 1)
    schedule.done(first)
    assert schedule.next(0) == 1 - first
    assert schedule.next(0) is None

"""Compile once: entry points compiled in the parent (``compile_locks``) run in forked
children without compiling again, when called with the types the contract names (the
segment's int64 array, Python ints).  The compile-time figures themselves (cold, warm,
unwritable cache) are printed by scripts/bench_locks.py."""

from __future__ import annotations

from shared_model.locking import (
    KIND_NAMES,
    compile_locks,
    lock_acquire,
    lock_is_wedged,
    lock_release,
    lock_trylock,
)
from shared_model.locking.lock import lock_state_compiled
from shared_model.locking.locktorture import LockLab

ENTRY_POINTS = (lock_acquire, lock_release, lock_trylock, lock_state_compiled, lock_is_wedged)


def compiled_versions() -> list[int]:
    """Versions each entry point holds (a compiled caller passing literal constants adds
    a specialisation of its own: only a change in a child matters)."""
    return [len(f.overloads) for f in ENTRY_POINTS]


def test_forked_children_do_not_compile(lab: LockLab) -> None:
    compile_locks()
    before = compiled_versions()

    def child() -> None:
        at, words = lab.at, lab.words
        for kind in KIND_NAMES.values():
            for shared in (0, 1):
                words[at.lock : at.lock + 8] = 0
                lock_acquire(words, at.lock, kind, 0, shared, lab.tag(0), at.node(0), at.stop)
                lock_state_compiled(words, at.lock, kind)
                lock_is_wedged(words, at.lock, kind)
                lock_release(words, at.lock, kind, 0, shared, at.node(0))
                if lock_trylock(words, at.lock, kind, 0, shared, lab.tag(0)):
                    lock_release(words, at.lock, kind, 0, shared, at.node(0))
        words[at.status] = 1 if compiled_versions() == before else 2

    assert lab.join(lab.spawn(child)) == 0
    assert lab.words[lab.at.status] == 1


# ------------------------------------------------------------- the cold compile's helpers

_MODULE = '''
import numpy as np
from shared_model.locking.cached_compile import cached_njit
from shared_model.locks import lock_acquire_c, lock_release_c


@cached_njit
def triple(a: np.ndarray, n: int) -> int:
    t = 0
    for i in range(n):
        a[i] = 3 * i
        t += a[i]
    return t


@cached_njit
def pairs(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, n: int) -> int:
    t = 0
    for _ in range(n):
        t0 = lock_acquire_c(words, g, held, w, 1, 0, 0)
        t += lock_release_c(words, g, held, w, 1, 0, 0, t0)
    return t
'''


def _fresh_module(tmp_path, monkeypatch, name: str):  # type: ignore[no-untyped-def]
    """A module of cached functions never compiled before (its cache: an empty folder)."""
    import importlib

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / f"{name}.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def _loaded_from_cache(d) -> bool:  # type: ignore[no-untyped-def]
    return sum(d.stats.cache_hits.values()) > 0 and sum(d.stats.cache_misses.values()) == 0


def test_children_compile_into_the_cache_and_the_parent_loads(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from shared_model.precompile import compile_in_children

    mod = _fresh_module(tmp_path, monkeypatch, "cold_ok")
    assert compile_in_children([mod.triple], jobs=2) == 2
    a = np.zeros(10, dtype=np.int64)
    assert mod.triple(a, 10) == 3 * 45
    assert _loaded_from_cache(mod.triple)


def test_a_failed_child_fails_nothing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Child 0 dies on the first function it is given: the parent compiles that one itself."""
    import numpy as np

    from shared_model.precompile import _compile_item, compile_in_children

    mod = _fresh_module(tmp_path, monkeypatch, "cold_fail")

    def compile_item(item, job):  # type: ignore[no-untyped-def]
        if job == 0:
            raise RuntimeError("a child that fails")
        _compile_item(item, job)

    assert compile_in_children([mod.triple], jobs=2, compile_item=compile_item) == 1
    a = np.zeros(5, dtype=np.int64)
    assert mod.triple(a, 5) == 30
    assert list(a) == [0, 3, 6, 9, 12]
    assert sum(mod.triple.stats.cache_misses.values()) == 1  # compiled here, after the failure


def test_no_writable_cache_no_children() -> None:
    """A function numba could not cache (no locator): nothing is forked, the caller
    compiles in memory as before."""
    from numba import njit

    from shared_model.precompile import compile_in_children

    @njit
    def f(x: int) -> int:
        return x + 1

    assert compile_in_children([f], jobs=2) == 0
    assert f(1) == 2


def test_the_lock_pair_is_inlined_by_llvm(tmp_path, monkeypatch, make_model) -> None:  # type: ignore[no-untyped-def]
    """lock_acquire_c / lock_release_c are marked alwaysinline: a compiled caller has no
    call to either left, and the pair still works (the counts lockstat records)."""
    from shared_model.locks import CLASS, lock_acquire_c, lock_release_c

    mod = _fresh_module(tmp_path, monkeypatch, "inlined")
    m = make_model("2.6.34")
    w = m.ptl_word(0)
    m.locks.instrument = True
    m.locks.reset_stats()
    mod.pairs(m.words, m.g, m.locks.held, w, 100)
    ir = next(iter(mod.pairs.inspect_llvm().values()))
    for d in (lock_acquire_c, lock_release_c):
        name = next(iter(d.overloads.values())).fndesc.mangled_name
        assert not [ln for ln in ir.splitlines() if "call" in ln and name in ln]
    assert m.seg["lockstat"][m.locks.cpu][CLASS["ptl"], 0, 0] == 100  # LS_ACQ of site 0
    assert m.words[w + 7] == 0  # the owner word cleared by the last release

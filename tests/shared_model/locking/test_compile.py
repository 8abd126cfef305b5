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
from shared_model.locking.jit import SOURCE_TREE_STAMP
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


def test_the_cache_is_keyed_on_every_model_source() -> None:
    """numba alone stamps a cached function with its own file's hash, so an edit to a
    primitive would leave a stale copy inlined in the cached dispatch."""
    stamp = lock_acquire._cache._cache_file._source_stamp
    assert stamp[1] == SOURCE_TREE_STAMP

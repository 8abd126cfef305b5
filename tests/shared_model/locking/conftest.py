"""Fixtures for the lock primitives' tests: a ``LockLab`` (a shared mapping, forked
children, reaped at teardown), with every compiled entry point loaded once in the test
process first, so that forked children run it without compiling."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shared_model.locking import lock_acquire, lock_release, lock_state, lock_trylock
from shared_model.locking.locktorture import LabLayout, LockLab, torture_hammer


@pytest.fixture(scope="session", autouse=True)
def compiled() -> None:
    at = LabLayout()
    for kind in range(5):
        for shared in (0, 1):
            w = np.zeros(at.size, dtype=np.int64)  # a fresh, unlocked record per kind
            lock_acquire(w, at.lock, kind, 0, shared, 1, at.node(0), at.stop)
            lock_state(w, at.lock, kind)
            lock_release(w, at.lock, kind, 0, shared, at.node(0))
            if lock_trylock(w, at.lock, kind, 0, shared, 1):
                lock_release(w, at.lock, kind, 0, shared, at.node(0))
    w = np.zeros(at.size, dtype=np.int64)
    torture_hammer(w, at.lock, 0, 0, 0, 1, at.node(0), at.stop, at.counter, 1)


@pytest.fixture
def lab() -> Iterator[LockLab]:
    lab = LockLab()
    try:
        yield lab
    finally:
        lab.close()

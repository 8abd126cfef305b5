"""Fixtures for the lock primitives' tests: a ``LockLab`` (a shared mapping, forked
children, reaped at teardown), with every compiled entry point loaded once in the test
process first, so that forked children run it without compiling."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shared_model.locking import compile_locks
from shared_model.locking.locktorture import LabLayout, LockLab, torture_hammer, torture_reader


@pytest.fixture(scope="session", autouse=True)
def compiled() -> None:
    compile_locks()
    at = LabLayout()
    w = np.zeros(at.size, dtype=np.int64)
    torture_hammer(w, at.lock, 0, 0, 0, 1, at.node(0), at.stop, at.counter, 1)
    torture_reader(w, at.lock, 0, at.node(0), at.stop, at.counter, 1, 1)


WATCHDOG_S = 90.0  # a lock test takes well under a second; a busy 2-core machine, seconds


@pytest.fixture
def lab() -> Iterator[LockLab]:
    """A lab whose waits are bounded and whose watchdog stops a stuck acquire in this
    process (the test then fails with what the lab held instead of hanging)."""
    lab = LockLab(watchdog_s=WATCHDOG_S)
    try:
        yield lab
    finally:
        lab.close()

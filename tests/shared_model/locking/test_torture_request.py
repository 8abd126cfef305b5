"""locktorture through the request point (``locktorture.torture_request``): every
primitive and rwsem policy taken as the model takes it, the place in the lock's order
taken by the request, then waited on or given up, with holds long enough for each era's
rule to act.  Real processes on one shared mapping; the parent holds the lock until every
child has made its first request, so each first request is contended and takes its
kernel's place (or, for a mutex and a spinning rwsem writer, none) deterministically.

Each run asserts what must hold whatever the interleaving: no increment lost, no reader
torn, the lock free and not wedged at the end, and the places each primitive takes.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers.rwsem_lab import POLICIES, POLICY_IDS

from shared_model.locking import compile_locks
from shared_model.locking.common import (
    MUTEX,
    QSPINLOCK,
    RWSEM,
    RWSEM_FIFO,
    RWSEM_HANDOFF,
    RWSEM_SPIN,
    TICKET,
)
from shared_model.locking.lock import lock_acquire, lock_is_wedged, lock_release, lock_state
from shared_model.locking.locktorture import (
    ST_FAST,
    ST_GIVEN_UP,
    ST_NO_PLACE,
    ST_NODE,
    ST_PENDING,
    ST_TORN,
    ST_WORDS,
    LabLayout,
    LockLab,
    torture_request,
)

PARENT = 15  # the parent's node block and tag (children are CPUs 0..)
LOOPS = 300
HOLD_NS = 20_000


@pytest.fixture(scope="module", autouse=True)
def compiled_request() -> None:
    """Compile torture_request here once, so forked children run it without compiling."""
    compile_locks()
    at = LabLayout()
    for kind, shared in ((TICKET, 0), (RWSEM, 1)):
        w = np.zeros(at.size, dtype=np.int64)
        torture_request(w, at.lock, kind, RWSEM_FIFO, shared, 1, at.node(0), at.stop,
                        at.counter, 1, 0, 0, at.ready, at.stat(0))


def _child(lab: LockLab, cpu: int, kind: int, policy: int, shared: int) -> None:
    at = lab.at
    lab.words[at.status + cpu] = torture_request(
        lab.words, at.lock, kind, policy, shared, lab.tag(cpu), at.node(cpu), at.stop,
        at.counter, LOOPS, HOLD_NS, 5, at.ready, at.stat(cpu))


def _run(lab: LockLab, kind: int, policy: int, roles: list[int]) -> np.ndarray:
    """Children ``roles`` (1: a reader, rwsem only), the parent holding the lock until all
    of them have asked for it; their statistics, one row per child."""
    at = lab.at
    assert lock_acquire(lab.words, at.lock, kind, policy, 0, lab.tag(PARENT), at.node(PARENT),
                        at.stop) >= 0
    pids = [lab.spawn(_child, lab, cpu, kind, policy, shared) for cpu, shared in enumerate(roles)]
    lab.wait_until(lambda: lab.words[at.ready] == len(roles), "every child's first request")
    lock_release(lab.words, at.lock, kind, policy, 0, at.node(PARENT))
    assert [lab.join(pid) for pid in pids] == [0] * len(roles)
    assert list(lab.words[at.status:at.status + len(roles)]) == [LOOPS] * len(roles)
    writers = roles.count(0)
    assert lab.words[at.counter] == writers * LOOPS  # no increment lost
    assert lock_state(lab.words, at.lock, kind) == (False, 0)
    assert not lock_is_wedged(lab.words, at.lock, kind)
    stats = np.array([lab.words[at.stat(c):at.stat(c) + ST_WORDS] for c in range(len(roles))])
    assert stats[:, ST_TORN].sum() == 0
    return stats


def test_ticket_every_contended_request_takes_a_ticket(lab: LockLab) -> None:
    stats = _run(lab, TICKET, 0, [0, 0])
    assert stats[:, ST_NODE].min() >= 1 and stats[:, ST_GIVEN_UP].min() >= 1
    assert stats[:, ST_PENDING].sum() == stats[:, ST_NO_PLACE].sum() == 0


def test_qspinlock_two_cpus_pend_and_never_queue(lab: LockLab) -> None:
    """One child against the parent: its first request takes the pending bit, and no
    request of the run takes an MCS node (two CPUs never queue)."""
    stats = _run(lab, QSPINLOCK, 0, [0])
    assert stats[0, ST_PENDING] >= 1 and stats[0, ST_GIVEN_UP] >= 1
    assert stats[0, ST_NODE] == 0


def test_qspinlock_third_contender_queues(lab: LockLab) -> None:
    """Two children against the parent: the first requests pend, the other queues on an
    MCS node; given-up pending bits and nodes leave the lock usable."""
    stats = _run(lab, QSPINLOCK, 0, [0, 0])
    assert stats[:, ST_PENDING].sum() >= 1 and stats[:, ST_NODE].sum() >= 1
    assert stats[:, ST_GIVEN_UP].min() >= 1


def test_mutex_requests_take_no_place(lab: LockLab) -> None:
    stats = _run(lab, MUTEX, 0, [0, 0])
    assert stats[:, ST_NO_PLACE].min() >= 1
    assert stats[:, ST_NODE].sum() == stats[:, ST_PENDING].sum() == stats[:, ST_GIVEN_UP].sum() == 0


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_rwsem_writers_and_readers(lab: LockLab, policy: int) -> None:
    """Two writers and a reader per policy.  The reader's first request queues a node
    (no era spins a reader); a writer's does too, except where its kernel spins on the
    owner before queueing (3.19, 6.0): then it takes no place."""
    stats = _run(lab, RWSEM, policy, [0, 0, 1])
    assert stats[2, ST_NODE] >= 1 and stats[2, ST_GIVEN_UP] >= 1
    if policy in (RWSEM_SPIN, RWSEM_HANDOFF):
        assert stats[:2, ST_NO_PLACE].min() >= 1
    else:
        assert stats[:2, ST_NODE].min() >= 1 and stats[:2, ST_GIVEN_UP].min() >= 1
        assert stats[:2, ST_NO_PLACE].sum() == 0
    assert stats[:, ST_FAST].sum() + stats[:, ST_NODE].sum() + stats[:, ST_NO_PLACE].sum() \
        + stats[:, ST_PENDING].sum() - stats[:, ST_GIVEN_UP].sum() == 3 * LOOPS

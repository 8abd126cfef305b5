"""The rwsem while the run drains (stop word 1): sleepers nap DRAIN_NAP_NS on the stop
word between looks at their node instead of waiting on it, and the lock must still reach
every one of them.  The queue head is frozen (SIGSTOP) across the release, as the
torturer freezes a CPU across the end of a run: FIFO (3.8) grants it the lock and names
it in the owner word while it cannot run, everyone behind it waits, and once it runs
again the queue drains in order.  The other policies only wake a writer at the head;
there every waiter must still be served, in some order."""

from __future__ import annotations

import os
import signal
import time

import pytest
from _helpers.rwsem_lab import PARENT, POLICIES, POLICY_IDS, READ, WRITE, logged, queue, release, take

from shared_model.locking import (
    LOCK_CONTENDED,
    LOCK_FAST,
    RWSEM,
    RWSEM_FIFO,
    lock_owner,
    lock_state,
)
from shared_model.locking.common import DRAIN_NAP_NS, STOP_DRAIN
from shared_model.locking.lock import lock_is_wedged
from shared_model.locking.locktorture import LockLab

WAITERS = [(WRITE, 1), (READ, 2), (WRITE, 3), (READ, 4)]


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS.get)
def test_drain_a_frozen_queue_head_then_every_sleeper_is_served(lab: LockLab,
                                                                 policy: int) -> None:
    at = lab.at
    assert take(lab, policy, WRITE, PARENT) == LOCK_FAST
    pids = queue(lab, policy, WAITERS)
    lab.words[at.stop] = STOP_DRAIN
    os.kill(pids[0], signal.SIGSTOP)
    try:
        release(lab, policy, WRITE, PARENT)
        # Several naps of every sleeper behind the frozen head.
        time.sleep(20 * DRAIN_NAP_NS / 1e9)
        if policy == RWSEM_FIFO:
            # Granted to the frozen writer, which is named the owner without having run;
            # nobody got past it.
            assert lock_state(lab.words, at.lock, RWSEM) == (True, len(WAITERS) - 1)
            assert lock_owner(lab.words, at.lock) == lab.tag(1, pids[0])
            assert logged(lab) == []
    finally:
        os.kill(pids[0], signal.SIGCONT)
    assert [lab.join(p) for p in pids] == [0] * len(WAITERS)
    statuses = [int(s) for s in lab.words[at.status + 1:at.status + 1 + len(WAITERS)]]
    assert statuses == [LOCK_CONTENDED] * len(WAITERS)  # none gave up: a drain is no abort
    cpus = [cpu for _, cpu in WAITERS]
    if policy == RWSEM_FIFO:
        assert logged(lab) == cpus
    else:
        assert sorted(logged(lab)) == cpus
    assert lock_state(lab.words, at.lock, RWSEM) == (False, 0)
    assert lab.words[at.lock] == 0  # no holder, no WAITING bit left behind
    assert lock_owner(lab.words, at.lock) == 0
    assert not lock_is_wedged(lab.words, at.lock, RWSEM)

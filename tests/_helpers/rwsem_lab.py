"""The rwsem tests' common moves on a ``LockLab``: take and release as a CPU, log the order
of holders, a waiter child, and queueing waiters one at a time (each forked only once the
previous one shows in the lock's queue, so arrival order is made, not hoped for)."""

from __future__ import annotations

from functools import partial

from shared_model.locking import (
    LOCK_STOPPED,
    RWSEM,
    RWSEM_FIFO,
    RWSEM_HANDOFF,
    RWSEM_SPIN,
    RWSEM_STEAL,
    RWSEM_STEAL_39,
    lock_acquire,
    lock_release,
    lock_state,
)
from shared_model.locking.common import NODE_RUN_STATE, RUN_SLEEPING
from shared_model.locking.locktorture import LockLab

# Every rwsem policy, and the name each test id gives it.
POLICIES = [RWSEM_FIFO, RWSEM_STEAL_39, RWSEM_STEAL, RWSEM_SPIN, RWSEM_HANDOFF]
POLICY_IDS = {RWSEM_FIFO: "fifo", RWSEM_STEAL_39: "steal-3.9", RWSEM_STEAL: "steal",
              RWSEM_SPIN: "spin-3.19", RWSEM_HANDOFF: "handoff-6.0"}

PARENT = 15  # the test process's CPU
READ, WRITE = 1, 0  # ``shared``


def take(lab: LockLab, policy: int, shared: int, cpu: int) -> int:
    at = lab.at
    return lock_acquire(lab.words, at.lock, RWSEM, policy, shared, lab.tag(cpu), at.node(cpu),
                        at.stop)


def release(lab: LockLab, policy: int, shared: int, cpu: int) -> None:
    lock_release(lab.words, lab.at.lock, RWSEM, policy, shared, lab.at.node(cpu))


def log(lab: LockLab, cpu: int) -> None:
    at, words = lab.at, lab.words
    words[at.log + words[at.log_len]] = cpu
    words[at.log_len] += 1


def logged(lab: LockLab) -> list[int]:
    return [int(x) for x in lab.words[lab.at.log : lab.at.log + lab.words[lab.at.log_len]]]


def waiter(lab: LockLab, policy: int, shared: int, cpu: int) -> None:
    """Take the rwsem; log the order under it; status = what acquire said."""
    status = take(lab, policy, shared, cpu)
    if status != LOCK_STOPPED:
        log(lab, cpu)
        release(lab, policy, shared, cpu)
    lab.words[lab.at.status + cpu] = status


def queued(lab: LockLab, n: int, cpu: int = 1) -> bool:
    """``n`` waiters queued, and ``cpu``, the last, asleep: past every section under
    wait_lock (a waiter is counted while it still holds wait_lock, and 3.9's first steal
    attempt takes it again), so that it may be stopped without stopping the lock."""
    return lock_state(lab.words, lab.at.lock, RWSEM)[1] == n \
        and lab.words[lab.at.node(cpu) + NODE_RUN_STATE] == RUN_SLEEPING


def queue(lab: LockLab, policy: int, waiters: list[tuple[int, int]]) -> list[int]:
    """Fork (shared, cpu) waiters one at a time, each once the previous one is queued."""
    pids = []
    for n, (shared, cpu) in enumerate(waiters, start=1):
        pids.append(lab.spawn(waiter, lab, policy, shared, cpu))
        lab.wait_until(partial(queued, lab, n, cpu), f"{n} waiters queued",
                       lambda: f"lock_state={lock_state(lab.words, lab.at.lock, RWSEM)}")
    return pids

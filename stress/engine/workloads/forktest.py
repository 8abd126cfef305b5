"""fork-test: AIM7's fork_test, the benchmark that 3.8's anon_vma rwsem cost 50%.

The family (a parent with P pages and N users, each a child of the parent with its COWed
copy) is built once; every user's anon_vmas hang off the family's root, so every fork and
exit below takes the same root lock.  Each CPU runs its own users (user u on CPU u mod W:
one CPU per mm stands for mmap_sem), round-robin, as fast as it can:

1. fork a child of the user (dup_mmap -> anon_vma_fork: anon_vma_clone links one AVC per
   anon_vma of the user's chain, then the child's own anon_vma; each link takes the root
   lock for *writing*, lockstat site ``anon_vma_fork``);
2. the child exits at once (exit_mmap -> unlink_anon_vmas: the root lock for writing again,
   site ``unlink_anon_vmas``), as fork_test's ``exit(0)``.

That is all AIM7's fork_test does: in reaim (osdl-aim-7 ``src/creat_clo.c``,
``fork_test``, registered with the argument "100"), each user loops n times over
``fork()``; the child calls ``exit(0)`` at once and the parent ``wait()``s for it before
the next fork.  So by default nothing else takes the root lock and every waiter is a
writer.  With ``--reclaim``, reclaim runs beside the forks on this
CPU: after every fork it scans ``common.RECLAIM_PAGES`` pages of its share of the family's LRU
(shrink_page_list: page_referenced takes the root lock for *reading*; a cold page is
unmapped and its users fault it straight back in): readers that queue among the writers.

Forks per second is the throughput (``throughput.forks_per_s``).  With the rwsem of 3.8
(strict FIFO: a release grants the lock to the sleeping head of the queue, and the
releaser, wanting it back a moment later, has to queue and sleep behind it) each hand-off
between two forking CPUs costs a wake-up; with writer lock-stealing (3.9) the running
writer takes the free lock again and the sleeper is only woken.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared_model.build import Family
from shared_model.layout import Capacities
from shared_model.memory import dup_mmap, exit_mmap
from shared_model.model import Model, OutOfMemory

from ..config import RunConfig
from .common import CpuShare, fork_family_capacities, idle_family


def capacities(cfg: RunConfig) -> Capacities:
    return fork_family_capacities(cfg, live_per_cpu=1)


def setup(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    return idle_family(m, cfg)


def run_cpu(m: Model, cfg: RunConfig, state: tuple[Family, np.ndarray], cpu: int,
            stopping: Callable[[], bool]) -> None:
    fam, lru = state
    words, f = m.locks.words, m.locks.f
    share = CpuShare(m, cfg, fam, lru, cpu)
    while not stopping():
        u = share.next_user()
        try:
            child = dup_mmap(m, u)
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
            continue
        words[f["forks"]] += 1
        exit_mmap(m, child)
        words[f["exits"]] += 1
        words[f["jobs"]] += 1
        words[f["heartbeat"]] += 1
        if cfg.reclaim:
            share.reclaim()

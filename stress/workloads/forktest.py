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

That is all AIM7's fork_test does (fork, the child exits, the parent waits; not checked
against reaim's source: none was found), so by default nothing else takes the root lock
and every waiter is a writer.  With ``--reclaim``, reclaim runs beside the forks on this
CPU: after every fork it scans ``RECLAIM_PAGES`` pages of its share of the family's LRU
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

from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import PTE_YOUNG, Capacities
from shared_model.memory import dup_mmap, exit_mmap
from shared_model.model import Model, OutOfMemory
from shared_model.rmap import shrink_page_list

from ..config import RunConfig

# Pages of the LRU a CPU reclaims after each fork (reclaim running beside the forks).
RECLAIM_PAGES = 2


def capacities(cfg: RunConfig, live_per_cpu: int = 1) -> Capacities:
    """The family, plus ``live_per_cpu`` transient children per CPU alive at once (twice
    that, for slack), each able to COW all its pages."""
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus,
                             spare_users=2 * live_per_cpu * cfg.cpus)


def setup(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    """Build the family and let it go idle (young bits clear); the LRU is every page of the
    family in an order shuffled by the seed."""
    fam = build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
    m.pte_flags[:] &= ~PTE_YOUNG
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    np.random.default_rng(cfg.seed).shuffle(lru)
    return fam, lru


class CpuShare:
    """What one CPU runs on: its users, round-robin, and its share of the LRU (a clock hand)."""

    def __init__(self, m: Model, cfg: RunConfig, fam: Family, lru: np.ndarray, cpu: int) -> None:
        self.m = m
        self.users = fam.children[cpu :: cfg.cpus] or fam.children
        self.lru = np.ascontiguousarray(lru[cpu :: cfg.cpus] if len(lru) >= cfg.cpus else lru)
        self.i = 0
        self.hand = 0

    def next_user(self) -> int:
        u = self.users[self.i]
        self.i = (self.i + 1) % len(self.users)
        return u

    def reclaim(self, pages: int = RECLAIM_PAGES) -> None:
        if len(self.lru):
            done = shrink_page_list(self.m, self.lru, self.hand, pages, refault=True)
            self.hand = (self.hand + done) % len(self.lru)


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

"""exim: MOSBENCH's mail server, the benchmark that 3.0's anon_vma mutex cost 52% at 40 cores.

exim forks a process per incoming connection, and that process forks again to deliver
the message; both are short-lived.  The family (a parent with P pages and N users, the
users standing for per-CPU exim daemons, each a child of the parent with its COWed copy)
is built once; all anon_vmas hang off the family's root, so every fork and exit takes
the same root lock.  Each CPU runs its own daemons (user u on CPU u mod W), round-robin;
per message:

1. the daemon forks the connection process (dup_mmap -> anon_vma_fork -> anon_vma_clone:
   one AVC per anon_vma of the daemon's chain, each linked under the root lock, lockstat
   site ``anon_vma_fork``), which writes ``TOUCH_PAGES`` of its pages (COW faults: new pages
   in its own anon_vma);
2. the connection process forks the delivery process (a chain one longer), which writes
   ``TOUCH_PAGES`` pages too;
3. both exit (exit_mmap -> unlink_anon_vmas: the root lock per AVC, site
   ``unlink_anon_vmas``);
4. reclaim runs meanwhile: this CPU scans a few pages of its share of the family's LRU
   (page_referenced under the root lock; cold pages unmapped and faulted straight back).

Messages per second is the throughput (``throughput.jobs``, ``jobs_per_min`` / 60).  The
kernel's exim regression: lock acquisition time 3.25% -> 18.6% of CPU, 39% of it in
anon_vma_clone and 37.6% in unlink_anon_vmas; the eras that lock the root once per AVC
(2.6.36's spinlock, 3.0-rc1's mutex) against once per clone/unlink pass (3.0).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared_model.build import Family
from shared_model.layout import Capacities
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap
from shared_model.model import Model, OutOfMemory

from ..config import RunConfig
from .common import CpuShare, fork_family_capacities, idle_family

# Pages the connection and the delivery process each write.
TOUCH_PAGES = 4


def capacities(cfg: RunConfig) -> Capacities:
    return fork_family_capacities(cfg, live_per_cpu=2)


def setup(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    return idle_family(m, cfg)


def _fork_and_write(m: Model, parent: int, vpns: np.ndarray) -> int:
    """fork ``parent``; the child writes ``vpns`` (COW).  The child, with its write done."""
    child = dup_mmap(m, parent)
    words, f = m.locks.words, m.locks.f
    words[f["forks"]] += 1
    try:
        copied, _ = do_wp_pages(m, child, int(m.mm["vma_head"][child]), vpns)
    except OutOfMemory:
        exit_mmap(m, child)
        words[f["exits"]] += 1
        raise
    words[f["cows"]] += copied
    return child


def run_cpu(m: Model, cfg: RunConfig, state: tuple[Family, np.ndarray], cpu: int,
            stopping: Callable[[], bool]) -> None:
    fam, lru = state
    words, f = m.locks.words, m.locks.f
    share = CpuShare(m, cfg, fam, lru, cpu)
    rng = np.random.default_rng([cfg.seed, cpu])
    touch = min(TOUCH_PAGES, cfg.pages)
    while not stopping():
        daemon = share.next_user()
        try:
            conn = _fork_and_write(m, daemon, np.sort(rng.choice(cfg.pages, touch, replace=False)))
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
            continue
        try:
            deliver = _fork_and_write(m, conn, np.sort(rng.choice(cfg.pages, touch, replace=False)))
            exit_mmap(m, deliver)
            words[f["exits"]] += 1
            words[f["jobs"]] += 1
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
        finally:
            exit_mmap(m, conn)
            words[f["exits"]] += 1
        words[f["heartbeat"]] += 1
        share.reclaim()

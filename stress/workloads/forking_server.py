"""forking-server: AIM7-like users running jobs against a fork family, under memory pressure.

The family (a parent with P pages and N children, the users, each with its COWed copy) is
built once.  Each CPU runs the jobs of its own users (user u runs on CPU u mod W, so one
CPU owns each mm, which stands for its mmap_sem), round-robin.  A job of user u:

1. touches a fraction F of u's pages: present ones get their young bit, swapped-out ones
   fault back in (do_swap_page), which needs a free frame;
2. forks a child (dup_mmap: anon_vma_link or anon_vma_fork), which writes a quarter of
   those pages (COW faults: new frames) and exits (exit_mmap, unlink_anon_vmas);
3. does ``work_us`` of user work.

Memory is a fixed number of frames (``ram_pages``).  Before taking frames, a CPU below the
low watermark does direct reclaim over its share of the family's LRU: page_referenced, and
try_to_unmap for cold pages, whose frames then come free (the page waits in swap until its
user touches it again).  More users means more pages competing for the same frames, more
reclaim per job, and in 2.6.33 every one of those walks is O(users) under one lock.
Jobs per minute is the throughput, as AIM7 reports it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import Capacities
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap, touch_pages
from shared_model.model import Model, OutOfMemory

from ..config import RunConfig
from .common import DirectReclaim


def capacities(cfg: RunConfig) -> Capacities:
    # At most one job child per CPU alive at once; twice that leaves slack.
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus, spare_users=2 * cfg.cpus)


def default_ram_pages(users: int, pages: int, cow: float) -> int:
    """Frames when --ram-pages is not given: three quarters of what the family holds after
    it is built, so a run starts under pressure."""
    return max(64, int(0.75 * (pages + users * round(cow * pages))))


def setup(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    fam = build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    np.random.default_rng(cfg.seed).shuffle(lru)
    return fam, lru


def run_cpu(m: Model, cfg: RunConfig, state: tuple[Family, np.ndarray], cpu: int,
            stopping: Callable[[], bool]) -> None:
    fam, lru = state
    words, f = m.locks.words, m.locks.f
    rng = np.random.default_rng([cfg.seed, cpu])
    users = fam.children[cpu :: cfg.cpus] or fam.children
    share = lru[cpu :: cfg.cpus] if len(lru) >= cfg.cpus else lru
    ram = cfg.ram_pages or default_ram_pages(cfg.users, cfg.pages, cfg.cow)
    reclaim = DirectReclaim(m, share, ram)
    touch = max(1, round(cfg.cow * cfg.pages))
    writes = max(1, touch // 4)
    work_ns = cfg.work_us * 1000
    clock = m.clock
    i = 0
    while not stopping():
        u = users[i]
        i = (i + 1) % len(users)
        vpns = np.sort(rng.choice(cfg.pages, touch, replace=False))
        reclaim.ensure(touch)
        touch_pages(m, u, vpns)
        reclaim.ensure(writes)
        try:
            child = dup_mmap(m, u)
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
            continue
        words[f["forks"]] += 1
        try:
            copied, _ = do_wp_pages(m, child, int(m.mm["vma_head"][child]), vpns[:writes])
            words[f["cows"]] += copied
            t0 = clock()
            end = t0 + work_ns
            while clock() < end:
                pass
            words[f["t_work_ns"]] += clock() - t0
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
        finally:
            exit_mmap(m, child)
        words[f["exits"]] += 1
        words[f["jobs"]] += 1
        words[f["heartbeat"]] += 1

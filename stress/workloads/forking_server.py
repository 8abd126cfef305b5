"""forking-server: AIM7-like jobs against a big fork family while reclaim runs.

The family (parent + N children, as in reclaim-storm) is the server's long-lived state.
Each CPU runs jobs: fork a child of the family's parent (dup_mmap), write a fraction F of
its pages (COW faults), do ``work_us`` of user work, exit (exit_mmap); after each job it
does direct reclaim of ``reclaim_batch`` pages picked at random, as a CPU that allocates
under memory pressure does.  Jobs per minute is the throughput, as AIM7 reports it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import Capacities
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap
from shared_model.model import Model, OutOfMemory

from ..config import RunConfig
from .common import shrink_page


def capacities(cfg: RunConfig) -> Capacities:
    # At most one job child per CPU alive at once; twice that leaves slack for frees that
    # other CPUs have not returned yet.
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus, spare_users=2 * cfg.cpus)


def setup(m: Model, cfg: RunConfig) -> Family:
    return build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)


def run_cpu(m: Model, cfg: RunConfig, fam: Family, cpu: int, stopping: Callable[[], bool]) -> None:
    words, f = m.locks.words, m.locks.f
    rng = np.random.default_rng([cfg.seed, cpu])
    ncow = round(cfg.cow * cfg.pages)
    npages = len(m.page)
    work_ns = cfg.work_us * 1000
    clock = m.clock
    while not stopping():
        try:
            child = dup_mmap(m, fam.parent)
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
            continue
        words[f["forks"]] += 1
        try:
            if ncow:
                vpns = np.sort(rng.choice(cfg.pages, ncow, replace=False))
                copied, _ = do_wp_pages(m, child, int(m.mm["vma_head"][child]), vpns)
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
        for page in rng.integers(0, npages, cfg.reclaim_batch).tolist():
            shrink_page(m, page)
        words[f["heartbeat"]] += 1

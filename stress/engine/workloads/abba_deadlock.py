"""abba-deadlock (test-only): CPU 0 takes anon_vma A then B, CPU 1 takes B then A.

Exists to prove the stall watchdog: once both hold their first lock, neither can make
progress, no heartbeat moves, and the parent must detect it within --stall-timeout and
report both CPUs' states.  Needs at least 2 users (so two anon_vmas exist: era 2.6.34+) and
2 CPUs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import Capacities
from shared_model.model import Model

from ..config import RunConfig


def capacities(cfg: RunConfig) -> Capacities:
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus)


def setup(m: Model, cfg: RunConfig) -> tuple[int, int]:
    fam: Family = build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
    a = int(m.vma_anon_vma[int(m.mm["vma_head"][fam.children[0]])])
    b = int(m.vma_anon_vma[int(m.mm["vma_head"][fam.children[1]])])
    return a, b


def run_cpu(m: Model, cfg: RunConfig, pair: tuple[int, int], cpu: int, stopping: Callable[[], bool]) -> None:
    if cpu > 1:
        while not stopping():
            m.locks.words[m.locks.f["heartbeat"]] += 1
            time.sleep(0.01)
        return
    first, second = pair if cpu == 0 else pair[::-1]
    words, f = m.locks.words, m.locks.f
    while not stopping():
        t1 = m.anon_vma_lock(first, "anon_vma_fork")
        time.sleep(0.05)  # let the other CPU take its first lock: the classic ABBA window
        t2 = m.anon_vma_lock(second, "anon_vma_fork")
        m.anon_vma_unlock(t2)
        m.anon_vma_unlock(t1)
        words[f["heartbeat"]] += 1

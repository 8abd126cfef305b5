"""What the scenarios share: reclaim of one page, direct reclaim, the owner's refault, and
fork-test's and exim's idle family with each CPU's share of it."""

from __future__ import annotations

import numpy as np

from shared_model import ctx as G
from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import PTE_YOUNG, Capacities
from shared_model.memory import resident_pages
from shared_model.model import Model
from shared_model.vmscan import AnonLru, shrink_lru, shrink_page_list

from ..config import RunConfig

# Pages shrink_page_list takes at a time, as the kernel's isolation batches.
SWAP_CLUSTER_MAX = 32
# Pages direct reclaim scans per attempt before giving up (4 x SWAP_CLUSTER_MAX).
DIRECT_RECLAIM_SCAN = 4 * SWAP_CLUSTER_MAX


def set_refault_order(m: Model, cfg: RunConfig) -> None:
    """This process's refault order (g[REFAULT_ORDER], rmap.refault_order_c) from
    ``--refault-order`` or the scenario's default."""
    m.g[G.REFAULT_ORDER] = G.REFAULT_ORDER_CODE[cfg.resolved_refault_order()]


def shrink_page(m: Model, page: int, refault: bool) -> None:
    """shrink_page_list for one anonymous page: page_referenced; if no mapping was young,
    try_to_unmap (its PTEs become swap entries and, once none maps it, its frame is free).
    With ``refault`` each owner faults it straight back in (do_swap_page, young again), the
    reclaim-storm steady state.  Counts in this CPU's slot: pages_scanned, pages_unmapped,
    refaults, heartbeat."""
    shrink_page_list(m, np.array([page], dtype=np.int64), 0, 1, refault)


class DirectReclaim:
    """A CPU's direct reclaim over its share of the LRU (active and inactive anon lists,
    shared_model.vmscan.AnonLru): when free frames fall below the low watermark, reclaim
    (shrink_active_list when the inactive list is low, then shrink_page_list) until the
    high watermark is met or DIRECT_RECLAIM_SCAN positions have been looked at.  A page
    it unmapped is dropped from the swap cache when reclaim comes round to it again, so
    its owner's next touch reads it fresh from swap."""

    def __init__(self, m: Model, lru: np.ndarray, ram_pages: int) -> None:
        self.m = m
        self.lru = AnonLru(np.asarray(lru, dtype=np.int64))
        self.ram = ram_pages
        self.low = max(8, ram_pages // 100)
        self.high = 2 * self.low

    def free_frames(self) -> int:
        return self.ram - resident_pages(self.m)

    def ensure(self, need: int) -> None:
        """Before allocating ``need`` frames: reclaim if that would cross the low watermark."""
        if not len(self.lru) or self.free_frames() - need >= self.low:
            return
        m = self.m
        words = m.locks.words
        words[m.locks.f["direct_reclaims"]] += 1
        for _ in range(DIRECT_RECLAIM_SCAN // SWAP_CLUSTER_MAX):
            # shrink_page_list leaves early when the run is ending (between two pages).
            done = shrink_lru(m, self.lru, SWAP_CLUSTER_MAX, refault=False)
            if done < SWAP_CLUSTER_MAX or self.free_frames() - need >= self.high:
                return


# Pages of the LRU a CPU reclaims after each fork (reclaim running beside the forks).
RECLAIM_PAGES = 2


def fork_family_capacities(cfg: RunConfig, live_per_cpu: int) -> Capacities:
    """fork-test and exim: the family, plus ``live_per_cpu`` transient children per CPU
    alive at once (twice that, for slack), each able to COW all its pages."""
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus,
                             spare_users=2 * live_per_cpu * cfg.cpus)


def idle_family(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    """fork-test and exim: build the family and let it go idle (young bits clear); the LRU
    is every page of the family in an order shuffled by the seed."""
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

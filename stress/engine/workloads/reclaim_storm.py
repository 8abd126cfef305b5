"""reclaim-storm: the seed's picture.

A fork family (a parent with P pages and N children that each COW a fraction F of them) is
built once; then every CPU runs reclaim over its share of the family's pages as
mm/vmscan.c does (``shrink_lru``: shrink_active_list when the inactive list is low, then
shrink_page_list, 32 positions at a time), and each unmapped page's owners fault it
straight back in (a swap-cache hit: 2.6.34 moves it to the family's root anon_vma on that
first mapping, 2.6.36+ keep it where it was).  In 2.6.33 every page of the family points at
the family's one anon_vma, so every CPU's every walk takes the same lock and scans about N/2
entries; in 2.6.34 a COWed page lives in its child's own anon_vma and the walk takes that lock
and visits one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared_model.build import build_family, family_capacities
from shared_model.layout import PTE_YOUNG, Capacities
from shared_model.model import Model
from shared_model.swapdev import SwapIO
from shared_model.vmscan import AnonLru, shrink_lru

from ..config import RunConfig
from .common import SWAP_CLUSTER_MAX, set_refault_order


def capacities(cfg: RunConfig) -> Capacities:
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus)


def setup(m: Model, cfg: RunConfig) -> np.ndarray:
    """Build the family and let it go idle (every young bit clear: the first scan of a page
    finds it cold).  The LRU is every page of the family in an order shuffled by the seed,
    so that any stretch of a run samples the whole family, as a long-running LRU does."""
    build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
    m.pte_flags[:] &= ~PTE_YOUNG
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    np.random.default_rng(cfg.seed).shuffle(lru)
    return lru


def run_cpu(m: Model, cfg: RunConfig, lru: np.ndarray, cpu: int, stopping: Callable[[], bool]) -> None:
    set_refault_order(m, cfg)
    mine = AnonLru(lru[cpu :: cfg.cpus] if len(lru) >= cfg.cpus else lru)
    io = SwapIO(m)  # pageouts and refault reads through the swap device
    while not stopping():
        shrink_lru(m, mine, SWAP_CLUSTER_MAX, refault=True)
        io.wait(stopping)  # submit them; with --swap-device disk sleep in iowait for the reads
        io.mark()

"""What the scenarios share: reclaim of one page, direct reclaim, the owner's refault."""

from __future__ import annotations

from shared_model.memory import do_swap_page, resident_pages
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap

# Pages direct reclaim scans per attempt before giving up (4 x SWAP_CLUSTER_MAX).
DIRECT_RECLAIM_SCAN = 128


def shrink_page(m: Model, page: int, refault: bool) -> int:
    """shrink_page_list for one anonymous page: page_referenced; if no mapping was young,
    try_to_unmap (its PTEs become swap entries and, once none maps it, its frame is free).
    With ``refault`` each owner faults it straight back in (do_swap_page, young again), the
    reclaim-storm steady state.  Returns 1 if the page was unmapped, 0 if not, -1 if it
    was not mapped at all.  Counts in this CPU's slot: pages_scanned, pages_unmapped,
    refaults."""
    words, f = m.locks.words, m.locks.f
    referenced, visited = page_referenced(m, page)
    if not visited:
        return -1
    words[f["pages_scanned"]] += 1
    unmapped_any = 0
    if not referenced:
        unmapped, _ = try_to_unmap(m, page)
        if unmapped:
            unmapped_any = 1
            words[f["pages_unmapped"]] += 1
            if refault:
                words[f["refaults"]] += do_swap_page(m, page, unmapped)
    words[f["heartbeat"]] += 1
    return unmapped_any


class DirectReclaim:
    """A CPU's direct reclaim over its share of the LRU (a clock hand over ``lru``): when free
    frames fall below the low watermark, scan until the high watermark is met or
    DIRECT_RECLAIM_SCAN pages have been looked at."""

    def __init__(self, m: Model, lru: list[int], ram_pages: int) -> None:
        self.m = m
        self.lru = lru
        self.hand = 0
        self.ram = ram_pages
        self.low = max(8, ram_pages // 100)
        self.high = 2 * self.low

    def free_frames(self) -> int:
        return self.ram - resident_pages(self.m)

    def ensure(self, need: int) -> None:
        """Before allocating ``need`` frames: reclaim if that would cross the low watermark."""
        if not self.lru or self.free_frames() - need >= self.low:
            return
        m = self.m
        words = m.locks.words
        words[m.locks.f["direct_reclaims"]] += 1
        lru, n = self.lru, len(self.lru)
        for _ in range(DIRECT_RECLAIM_SCAN):
            if words[m.locks.stop_word]:  # the run is ending: leave between two pages
                return
            shrink_page(m, lru[self.hand], refault=False)
            self.hand = (self.hand + 1) % n
            if self.free_frames() - need >= self.high:
                return

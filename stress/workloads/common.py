"""What the scenarios share: reclaim of one page, and the owner's fault that follows it."""

from __future__ import annotations

from shared_model.memory import do_swap_page
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap


def shrink_page(m: Model, page: int) -> bool:
    """shrink_page_list for one anonymous page: page_referenced; if no mapping was young,
    try_to_unmap (PTEs become swap entries), after which each owner faults it back in
    (do_swap_page, young again).  Returns False for a page that was not mapped.
    Counts in this CPU's slot: pages_scanned, pages_unmapped, refaults."""
    words, f = m.locks.words, m.locks.f
    referenced, visited = page_referenced(m, page)
    if not visited:
        return False
    words[f["pages_scanned"]] += 1
    if not referenced:
        unmapped, _ = try_to_unmap(m, page)
        if unmapped:
            words[f["pages_unmapped"]] += 1
            words[f["refaults"]] += do_swap_page(m, page, unmapped)
    words[f["heartbeat"]] += 1
    return True

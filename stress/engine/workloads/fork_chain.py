"""fork-chain: the endless growth of the anon_vma hierarchy that 3.19 fixed (7a3ef208e662).

A process faults its pages, forks, and exits; its child writes the pages (they are its
own now: do_wp_page reuses them), forks and exits; and so on for G generations, one
private anonymous VMA throughout.  Before 3.19 every fork adds an anon_vma level and links
the child's VMA to every level before it, because pages may still live in any of them:
live anon_vmas and AVCs grow by one a generation for a fixed number of VMAs, and each
fork's anon_vma_clone takes one AVC per level, so fork time grows with the generation.
From 3.19 anon_vma_clone reuses a level nobody uses as its own (degree < 2; 6.0:
num_active_vmas == 0 and num_children < 2) and the hierarchy stays a few levels deep.

Run by ``rmap-stress scan --scenario fork-chain`` in one process (exact counts; the fork
and walk times are wall-clock, for the trend).  The segment holds at most
SEGMENT_LEVELS anon_vmas: an era without reuse stops, with one line, at the generation
whose fork would no longer fit, instead of failing inside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.eras import get_era
from shared_model.layout import Capacities
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    mm_alloc,
)
from shared_model.model import Model
from shared_model.rmap import page_referenced

# anon_vma records the segment holds: the levels an era without reuse reaches before the
# run stops (about 10 s of forking on one core there).
SEGMENT_LEVELS = 10_000


def capacities(era: str, generations: int, pages: int) -> Capacities:
    """Records for ``generations`` forks of one VMA of ``pages`` pages (two mms at a time)."""
    levels = min(generations, SEGMENT_LEVELS) + 4 if get_era(era).chain else 4
    # Each anon_vma's list runs through nodes embedded in its AVCs: linking needs no record
    # beyond the AVC.
    return Capacities(mms=4, vmas=6, anon_vmas=levels, avcs=2 * levels + 8,
                      pages=pages + 64, ptrs_per_mm=pages, cpus=1)


class SegmentFull(Exception):
    """The next fork would not fit in the segment (one line for the user)."""


def fork_chain(m: Model, generations: int, pages: int,
               on_generation: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the chain on ``m``; returns the per-generation series and, when the segment was
    about to fill, ``stopped`` (the generation that did not run and why)."""
    vpns = np.arange(pages, dtype=np.int64)
    mm = mm_alloc(m)
    vma = do_mmap(m, mm, 0, pages)
    do_anonymous_pages(m, mm, vma, vpns)
    series: dict[str, list[int]] = {k: [] for k in ("anon_vmas", "avcs", "vmas", "fork_ns", "walk_ns",
                                                    "walk_visited")}
    stopped = None
    clock = time.perf_counter_ns
    for gen in range(generations):
        counts = m.counts()
        need_avcs = counts["avcs"] + 2  # one per level of the chain, one for a new level
        if m.free_count("anon_vma") < 1 or m.free_count("avc") < need_avcs:
            stopped = {
                "generation": gen,
                "reason": (f"the segment is about to fill: generation {gen}'s fork needs {need_avcs} "
                           f"anon_vma_chains and an anon_vma, {m.free_count('avc')} and "
                           f"{m.free_count('anon_vma')} are left ({counts['anon_vmas']} anon_vmas live "
                           f"for {counts['vmas']} VMA)"),
            }
            break
        t0 = clock()
        child = dup_mmap(m, mm)
        t_fork = clock() - t0
        exit_mmap(m, mm)
        mm = child
        vma = int(m.mm["vma_head"][mm])
        do_wp_pages(m, mm, vma, vpns)  # the child's pages are its own now: reused in place
        live = np.flatnonzero(m.page_mapping >= 0)
        visited = 0
        t0 = clock()
        for p in live.tolist():
            visited += page_referenced(m, p)[1]
        t_walk = clock() - t0
        counts = m.counts()
        for k in ("anon_vmas", "avcs", "vmas"):
            series[k].append(counts[k])
        series["fork_ns"].append(t_fork)
        series["walk_ns"].append(t_walk)
        series["walk_visited"].append(visited)
        if on_generation:
            on_generation(gen + 1)
    return {"series": series, "stopped": stopped, "final_mm": mm}

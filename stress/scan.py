"""``scan``: the seed's arithmetic, exactly.  One process, no timing.

Build the forking-server model, and count, for every anonymous page, the list entries its
``page_referenced`` walk visits (the walk's own loop, compiled, without its locks: they
cost time and change no count).  With 1000 children that each COW all 1000 of
their pages, 2.6.33 visits about N/2 entries per walk and 2.6.34 one or two.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.build import build_family, check_fits, family_capacities
from shared_model.invariants import check_model
from shared_model.model import Model
from shared_model.rmap import walk_lengths_of

from .config import RunConfig
from .results import SCHEMA_SCAN


def scan(cfg: RunConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """``progress(phase, done, total)`` hears "build" (thousandths), "walk" (walks done of
    all, every 1000 walks) and "check" (0 of 1, then 1 of 1)."""
    from .runner import _BuildProgress

    cfg.validate()
    caps = family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cpus=0)
    check_fits(caps)
    m = Model.create(caps, cfg.era, cfg.lock, entry_cost_ns=0)
    try:
        with _BuildProgress(m, caps, progress):
            build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
        pages = np.flatnonzero(m.page_mapping >= 0)
        visited = walk_lengths_of(m, pages)  # compiled: seconds even at 10M pages
        if progress:
            progress("walk", len(pages), len(pages))
            progress("check", 0, 1)
        violations = check_model(m)
        if progress:
            progress("check", 1, 1)
        if violations:
            raise AssertionError(f"model inconsistent after scan: {violations[0]}")
        counts = m.counts()
    finally:
        seg = m.seg
        m.close()
        seg.unlink()
    hist = np.bincount(visited)
    return {
        "schema": SCHEMA_SCAN,
        "config": {"era": cfg.era, "users": cfg.users, "pages": cfg.pages, "cow": cfg.cow,
                   "seed": cfg.seed, "lock": cfg.lock or ""},
        "model": counts,
        "walks": {
            "count": len(visited),
            "vmas_visited": int(visited.sum()),
            "avg_visited": float(visited.mean()) if len(visited) else 0.0,
            "max_visited": int(visited.max(initial=0)),
            "histogram": {str(n): int(hist[n]) for n in np.flatnonzero(hist)},
        },
    }


def scan_report(res: dict[str, Any]) -> str:
    c, w, mo = res["config"], res["walks"], res["model"]
    lines = [
        f"era {c['era']}  users {c['users']}  pages {c['pages']}  cow {c['cow']}",
        (f"model: {mo['mms']} mms, {mo['vmas']} vmas, {mo['anon_vmas']} anon_vmas, {mo['avcs']} avcs, "
         f"{mo['pages']} pages"),
        (f"walks: {w['count']}  VMAs visited: {w['vmas_visited']}  average {w['avg_visited']:.2f}  "
         f"max {w['max_visited']}"),
        "walk length histogram (length: walks):",
    ]
    hist = {int(k): v for k, v in w["histogram"].items()}
    if len(hist) <= 12:
        lines += [f"  {k:>7}: {v}" for k, v in sorted(hist.items())]
    else:
        edges = [0, 1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, 2049, 4097, 1 << 62]
        for lo, hi in itertools.pairwise(edges):
            n = sum(v for k, v in hist.items() if lo <= k < hi)
            if n:
                label = f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}" if hi < 1 << 61 else f"{lo}+"
                lines.append(f"  {label:>9}: {n}")
    return "\n".join(lines)

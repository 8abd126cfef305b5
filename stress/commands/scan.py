"""``scan``: the seed's arithmetic, exactly.  One process, no timing.

Build the forking-server model, and count, for every anonymous page, the list entries its
``page_referenced`` walk visits (the walk's own loop, compiled, without its locks: they
cost time and change no count).  With 1000 children that each COW all 1000 of
their pages, 2.6.33 visits about N/2 entries per walk and 2.6.34 one or two.

``--refault MODE``: after that first pass every page is unmapped by ``try_to_unmap`` and
faulted back in by each process that mapped it, in ``--refault-order`` (parent-first: mm
order, the order a sweep of the family's processes touching their memory again gives;
child-first; random), and the pass runs again: ``walks`` is that second pass,
``first_pass`` the first.  Placement depends on the order only in the seed as committed
(2.6.34-rc1), where the first process to fault a shared page back in decides its
anon_vma: a child first makes the other mappings unreachable (reported as ``seed_bug``,
exit 1; see stress/engine/workloads/shared_swapin.py).  Modes:

* ``write`` (the default): the pages were written back and dropped from the swap cache
  (reclaim under pressure frees a clean, unmapped swap-cache page on its next look), so
  every fault reads the page fresh from swap (not PageAnon), and each owner writes it (a
  forking server's children write their own data): where the faulting entry is the page's
  only user the fault reuses it exclusively, else do_wp_page copies it (a page shared
  without COW: every owner but the last gets its own copy).  2.6.34 puts every page on the oldest
  anon_vma (about N/2 per walk again), 2.6.36+ on ``vma->anon_vma`` (1.0 stays 1.0).
* ``read``: dropped, read faults: 2.6.36+ too puts every fresh page on the root.
* ``cache``: swap-cache hits (no writeback finished yet), read faults: 2.6.34 moves each
  page to the oldest anon_vma on its first mapping, 2.6.36+ keeps its mapping.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.build import build_family, check_fits, family_capacities
from shared_model.invariants import check_model
from shared_model.layout import PTE_YOUNG
from shared_model.model import Model
from shared_model.swap_state import refault_pass
from shared_model.vmscan import walk_lengths_of

from ..engine.config import SCAN_SCENARIOS, RunConfig
from ..engine.results import SCHEMA_SCAN
from ..engine.workloads.common import set_refault_order
from ..engine.workloads.shared_swapin import reach

REFAULT_CASES = {
    "write": "swap cache dropped after writeback: fresh reads from swap, write faults "
             "(exclusive reuse where the faulting process is the page's only user)",
    "read": "swap cache dropped after writeback: fresh reads from swap, read faults",
    "cache": "swap-cache hits (pages still PageAnon), read faults",
}


def scan(cfg: RunConfig, progress: Callable[[str, int, int], None] | None = None,
         refault: str | None = None) -> dict[str, Any]:
    """``progress(phase, done, total)`` hears "build" (thousandths), "walk" (walks done of
    all, every 1000 walks) and "check" (0 of 1, then 1 of 1).  ``refault``: None, or a
    mode of REFAULT_CASES (see the module header)."""
    if refault is not None and refault not in REFAULT_CASES:
        raise ValueError(f"unknown refault mode {refault!r} (choose from {', '.join(REFAULT_CASES)})")
    from ..engine.runner import _BuildProgress

    cfg.validate()
    caps = family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cpus=0)
    if refault == "write":  # do_wp_page's copies of the pages no child COWed
        uncowed = cfg.pages - round(cfg.cow * cfg.pages)
        caps = dataclasses.replace(caps, pages=caps.pages + cfg.users * uncowed)
    check_fits(caps)
    with Model.private(caps, cfg.era, cfg.lock) as m:
        set_refault_order(m, cfg)
        with _BuildProgress(m, caps, progress):
            build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
        pages = np.flatnonzero(m.page_mapping >= 0)
        visited = walk_lengths_of(m, pages)  # compiled: seconds even at 10M pages
        first = visited
        swept: dict[str, int] = {}
        if refault is not None:
            m.pte_flags[:] &= ~PTE_YOUNG  # idle: try_to_unmap takes every mapping
            swept = refault_pass(m, pages, refault)
            visited = walk_lengths_of(m, pages)
        if progress:
            progress("walk", len(pages), len(pages))
            progress("check", 0, 1)
        violations = check_model(m)
        if progress:
            progress("check", 1, 1)
        unreachable, short, _ = reach(m)
        if violations and not unreachable:  # the seed's own bug is reported, not raised
            raise AssertionError(f"model inconsistent after scan: {violations[0]}")
        counts = m.counts()
    res: dict[str, Any] = {
        "schema": SCHEMA_SCAN,
        "config": {"era": cfg.era, "users": cfg.users, "pages": cfg.pages, "cow": cfg.cow,
                   "seed": cfg.seed, "lock": cfg.lock or "", "refault": refault or "",
                   "refault_order": cfg.resolved_refault_order() if refault else ""},
        "model": counts,
        "walks": _walk_stats(visited),
        "invariants": {"violations": len(violations), "messages": violations},
    }
    if unreachable:
        res["seed_bug"] = {"refault_order": cfg.resolved_refault_order(), "unreachable_mappings": unreachable,
                           "pages_not_unmapped": short, "pages_freed_anon_vma": 0, "example": {}}
    if refault is not None:
        res["first_pass"] = _walk_stats(first)
        res["refault"] = {"mode": refault, "case": REFAULT_CASES[refault], **swept}
    return res


def _walk_stats(visited: np.ndarray) -> dict[str, Any]:
    hist = np.bincount(visited)
    return {
        "count": len(visited),
        "vmas_visited": int(visited.sum()),
        "avg_visited": float(visited.mean()) if len(visited) else 0.0,
        "max_visited": int(visited.max(initial=0)),
        "histogram": {str(n): int(hist[n]) for n in np.flatnonzero(hist)},
    }


def scan_report(res: dict[str, Any]) -> str:
    c, w, mo = res["config"], res["walks"], res["model"]
    lines = [
        f"era {c['era']}  users {c['users']}  pages {c['pages']}  cow {c['cow']}",
        (f"model: {mo['mms']} mms, {mo['vmas']} vmas, {mo['anon_vmas']} anon_vmas, {mo['avcs']} avcs, "
         f"{mo['pages']} pages"),
    ]
    if "refault" in res:
        r, f = res["refault"], res["first_pass"]
        lines += [
            (f"first pass: walks: {f['count']}  VMAs visited: {f['vmas_visited']}  average "
             f"{f['avg_visited']:.2f}  max {f['max_visited']}"),
            (f"refault ({r['mode']}: {r['case']}): {r['pages_unmapped']} pages unmapped "
             f"({r['ptes_unmapped']} PTEs), {r['swap_cache_dropped']} dropped from the swap cache, "
             f"{r['faults']} faults"),
            "second pass:",
        ]
    lines += [
        (f"walks: {w['count']}  VMAs visited: {w['vmas_visited']}  average {w['avg_visited']:.2f}  "
         f"max {w['max_visited']}"),
        "walk length histogram (length: walks):",
    ]
    if "seed_bug" in res:
        sb = res["seed_bug"]
        lines[2:2] = [(f"seed bug (2.6.34-rc1's swap-in placement, refault order {sb['refault_order']}): "
                      f"{sb['unreachable_mappings']} mappings unreachable by any rmap walk, on "
                      f"{sb['pages_not_unmapped']} pages that reclaim cannot unmap (see scan --scenario "
                      f"shared-swapin)")]
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


# ---------------------------------------------------------------------------- --scenario
#
# ``scan --scenario S``: the structural scenarios of the later eras, one process, exact
# counts (stress/engine/workloads/fork_chain.py, mprotect_split.py).  ``scan`` without
# ``--scenario`` is the fork family above.

class ScanStopped(Exception):
    """A scan scenario stopped early (the segment about to fill); carries its results."""

    def __init__(self, msg: str, results: dict[str, Any]) -> None:
        super().__init__(msg)
        self.results = results


def scan_scenario(cfg: RunConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Dispatch ``scan --scenario``.  Raises ScanStopped (with the results so far) when a
    fork-chain run stopped before the segment filled."""
    cfg.validate()
    if cfg.scenario == "fork-chain":
        return _scan_fork_chain(cfg, progress)
    if cfg.scenario == "mprotect-split":
        return _scan_mprotect_split(cfg, progress)
    if cfg.scenario == "shared-swapin":
        return _scan_shared_swapin(cfg)
    raise ValueError(f"not a scan scenario: {cfg.scenario} (choose from {', '.join(SCAN_SCENARIOS)})")


def _scan_fork_chain(cfg: RunConfig, progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    from ..engine.workloads import fork_chain

    # A few generations first, thrown away, so that no fork of the measured run pays for
    # loading compiled code.
    with Model.private(fork_chain.capacities(cfg.era, 3, 1), cfg.era, cfg.lock) as warm:
        fork_chain.fork_chain(warm, 3, 1)
    caps = fork_chain.capacities(cfg.era, cfg.generations, cfg.pages)
    check_fits(caps)
    with Model.private(caps, cfg.era, cfg.lock) as m:
        def tick(gen: int) -> None:
            if progress and (gen % 50 == 0 or gen == cfg.generations):
                progress("generation", gen, cfg.generations)

        out = fork_chain.fork_chain(m, cfg.generations, cfg.pages, tick)
        violations = check_model(m)
        if violations:
            raise AssertionError(f"model inconsistent after fork-chain: {violations[0]}")
        counts = m.counts()
    s = out["series"]
    n = len(s["fork_ns"])
    tenth = max(1, n // 10)
    res = {
        "schema": SCHEMA_SCAN,
        "config": {"era": cfg.era, "scenario": "fork-chain", "generations": cfg.generations,
                   "pages": cfg.pages, "lock": cfg.lock or ""},
        "model": counts,
        "generations": {"count": n, **s},
        "summary": {
            "anon_vmas_per_vma": counts["anon_vmas"] / max(1, counts["vmas"]),
            "max_anon_vmas": max(s["anon_vmas"], default=0),
            "fork_ns_first_tenth": float(np.mean(s["fork_ns"][:tenth])) if n else 0.0,
            "fork_ns_last_tenth": float(np.mean(s["fork_ns"][-tenth:])) if n else 0.0,
            "walk_ns_first_tenth": float(np.mean(s["walk_ns"][:tenth])) if n else 0.0,
            "walk_ns_last_tenth": float(np.mean(s["walk_ns"][-tenth:])) if n else 0.0,
        },
        "stopped": out["stopped"],
    }
    if out["stopped"]:
        raise ScanStopped(f"fork-chain stopped before generation {out['stopped']['generation']}: "
                          f"{out['stopped']['reason']}; era {cfg.era} keeps every anon_vma level "
                          f"(reuse came in 3.19)", res)
    return res


def _scan_shared_swapin(cfg: RunConfig) -> dict[str, Any]:
    """The seed's oops, exactly (stress/engine/workloads/shared_swapin.py): the sequence, then one
    reclaim pass (page_referenced on every page left), which counts the walks that meet a
    freed anon_vma instead of following them."""
    from shared_model.rmap import page_referenced

    from ..engine.workloads import shared_swapin

    caps = family_capacities(cfg.era, cfg.users, cfg.pages, 0.0, cpus=0)
    check_fits(caps)
    with Model.private(caps, cfg.era, cfg.lock) as m:
        counts = shared_swapin.shared_swapin(m, cfg)
        cpu = m.seg["cpu"]
        before = int(cpu["rmap_freed_anon_vma"].sum())
        for page in np.flatnonzero((m.page["in_use"] == 1) & (m.page_mapping >= 0)).tolist():
            page_referenced(m, page)
        counts["walks_freed_anon_vma"] = int(cpu["rmap_freed_anon_vma"].sum()) - before
        violations = check_model(m)
        model = m.counts()
    return {
        "schema": SCHEMA_SCAN,
        "config": {"era": cfg.era, "scenario": "shared-swapin", "users": cfg.users, "pages": cfg.pages,
                   "refault_order": cfg.resolved_refault_order(), "lock": cfg.lock or ""},
        "model": model,
        "seed_bug": counts,
        "invariants": {"violations": len(violations), "messages": violations},
    }


def _scan_mprotect_split(cfg: RunConfig, progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    from shared_model.vmscan import walk_lengths_tree_of

    from ..engine.workloads import mprotect_split

    caps = mprotect_split.capacities(cfg.era, cfg.pieces, cfg.users, cfg.pages)
    check_fits(caps)
    with Model.private(caps, cfg.era, cfg.lock) as m:
        mprotect_split.build(m, cfg.pieces, cfg.users, cfg.pages)
        pages = np.flatnonzero(m.page_mapping >= 0)
        if m.era.tree:
            visited, nodes = walk_lengths_tree_of(m, pages)
        else:
            visited = walk_lengths_of(m, pages)
            nodes = visited
        violations = check_model(m)
        if violations:
            raise AssertionError(f"model inconsistent after mprotect-split: {violations[0]}")
        counts = m.counts()
    hist = np.bincount(visited)
    return {
        "schema": SCHEMA_SCAN,
        "config": {"era": cfg.era, "scenario": "mprotect-split", "pieces": cfg.pieces, "users": cfg.users,
                   "pages": cfg.pages, "lock": cfg.lock or ""},
        "model": counts,
        "walks": {
            "count": len(visited),
            "vmas_visited": int(visited.sum()),
            "avg_visited": float(visited.mean()) if len(visited) else 0.0,
            "max_visited": int(visited.max(initial=0)),
            "histogram": {str(n): int(hist[n]) for n in np.flatnonzero(hist)},
            # the list eras examine exactly the entries they visit
            "nodes_examined": int(nodes.sum()),
            "avg_nodes_examined": float(nodes.mean()) if len(nodes) else 0.0,
            "max_nodes_examined": int(nodes.max(initial=0)),
        },
    }


def scan_scenario_report(res: dict[str, Any]) -> str:
    c, mo = res["config"], res["model"]
    model = (f"model at the end: {mo['mms']} mms, {mo['vmas']} vmas, {mo['anon_vmas']} anon_vmas, "
             f"{mo['avcs']} avcs")
    if c["scenario"] == "shared-swapin":
        from ..engine.workloads.shared_swapin import seed_bug_lines

        inv = res["invariants"]
        return "\n".join([f"era {c['era']}  shared-swapin  users {c['users']}  pages {c['pages']}", model,
                          *seed_bug_lines(res["seed_bug"]),
                          "invariants: " + ("ok" if not inv["violations"] else
                                            f"{inv['violations']} violations (the seed bug above): "
                                            + inv["messages"][0])])
    if c["scenario"] == "fork-chain":
        s, sm = res["generations"], res["summary"]
        lines = [(f"era {c['era']}  fork-chain  generations {s['count']} of {c['generations']}  "
                  f"pages {c['pages']}"),
                 model,
                 (f"anon_vmas per VMA at the end: {sm['anon_vmas_per_vma']:.1f} (most at any generation: "
                 f"{sm['max_anon_vmas']})"),
                 (f"fork: {sm['fork_ns_first_tenth'] / 1e3:.1f} us in the first tenth of the generations, "
                 f"{sm['fork_ns_last_tenth'] / 1e3:.1f} us in the last"),
                 (f"walks of all pages: {sm['walk_ns_first_tenth'] / 1e3:.1f} us first tenth, "
                 f"{sm['walk_ns_last_tenth'] / 1e3:.1f} us last")]
        return "\n".join(lines)
    w = res["walks"]
    return "\n".join([
        f"era {c['era']}  mprotect-split  pieces {c['pieces']}  users {c['users']}  pages {c['pages']}",
        model,
        (f"walks: {w['count']}  VMAs visited: {w['vmas_visited']}  average {w['avg_visited']:.2f}  "
         f"max {w['max_visited']}"),
        (f"entries examined (list entries or tree nodes): average {w['avg_nodes_examined']:.2f}  "
         f"max {w['max_nodes_examined']}"),
    ])

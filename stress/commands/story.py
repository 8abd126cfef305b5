"""The anon_vma story, era by era: the ``eras`` table and the ``story`` command.

``story`` runs, briefly, each chapter's motivating scenario on the era that changed things
and the eras beside it, and prints one line per chapter with its measured headline.  A
chapter is one row of ``CHAPTERS``: (title, scenario, eras, run parameters, headline).
A chapter whose scenario or any of whose eras is not registered is skipped (with a note),
so chapters for scenarios that land later are added by one line each.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from shared_model.eras import ERAS, Era

from ..analysis.report import ratio_text
from ..engine.config import SCAN_SCENARIOS, SCENARIOS, RunConfig, online_cpus
from ..engine.results import SCHEMA_STORY

# ---------------------------------------------------------------------------- eras table

ERA_COLUMNS = ("era", "linking", "walk", "lock", "primitive", "swapin", "fixed", "commit")
# Where a page swapped back in goes on its first mapping (eras.Era.swapin), in words.
SWAPIN_WORDS = {"oldest": "oldest anon_vma", "root": "root's; own if a write reuses it",
                "anon_exclusive": "root's; own if exclusive"}


def era_row(e: Era) -> dict[str, str]:
    """One era as the ``eras`` table shows it (also its JSON form)."""
    walk = "interval tree" if getattr(e, "tree", False) else "list"
    if e.rmap_trylock:
        walk += ", reclaim trylocks"
    primitive = e.lock
    if e.lock == "rwsem":
        primitive += {"fifo": " (FIFO hand-off)",
                      "steal-behind-writer": " (writer lock-stealing behind a writer)",
                      "spin-on-owner": " (writer lock-stealing, spinning on the owner)",
                      "handoff": " (optimistic spinning, hand-off bit)"}.get(
            e.rwsem_policy, " (writer lock-stealing)")
    return {
        "era": e.name,
        "linking": "anon_vma_chain" if e.chain else "VMAs on the anon_vma's list",
        "walk": walk,
        "lock": "root anon_vma's" if e.lock_root else "page's anon_vma's",
        "primitive": primitive,
        "swapin": SWAPIN_WORDS.get(e.swapin, "faulting VMA's own" if e.chain else "the family's"),
        "fixed": e.fixed,
        "commit": e.commit,
    }


def eras_table(eras: list[Era] | None = None) -> str:
    rows = [era_row(e) for e in (eras if eras is not None else ERAS.values())]
    heads = {"era": "era", "linking": "linking", "walk": "walk", "lock": "lock",
             "primitive": "primitive", "swapin": "swap-in to", "fixed": "what it fixed", "commit": "commit"}
    widths = {k: max(len(heads[k]), *(len(r[k]) for r in rows)) for k in ERA_COLUMNS}
    line = "  ".join(f"{heads[k]:<{widths[k]}}" for k in ERA_COLUMNS).rstrip()
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(f"{r[k]:<{widths[k]}}" for k in ERA_COLUMNS).rstrip())
    return "\n".join(out)


# ---------------------------------------------------------------------------- headlines

Results = dict[str, dict[str, Any]]  # era -> run results document


def _site_waits(res: dict[str, Any], cls: str = "anon_vma") -> dict[str, int]:
    for r in res["locks"]:
        if r["class"] == cls:
            return {s["site"]: s["wait_total_ns"] for s in r["sites"] if s["contentions"]}
    return {}


def messages_per_s(res: dict[str, Any]) -> float:
    return res["throughput"]["jobs"] / res["elapsed_s"] if res["elapsed_s"] else 0.0


def seed_headline(rs: Results) -> str:
    """The first era against each later one: 2.6.33's pileup, the seed as committed
    (2.6.34-rc1: the commit's "O(N) to 2" and 3.06x were measured on it), the released
    2.6.34 (whose swap-in puts refaulted pages back on the root: the price of the oops fix),
    2.6.36 where the fix holds."""
    (e0, a), *rest = rs.items()
    wa, pa = a["walks"]["avg_visited"], a["throughput"]["pages_scanned_per_s"]
    parts = [(f"{e0} walks {wa:.0f} entries, {pa:.0f} pages scanned/s, anon_vma lock wait "
              f"{100 * a['anon_vma_wait_share']:.0f}%")]
    for era, b in rest:
        wb, pb = b["walks"]["avg_visited"], b["throughput"]["pages_scanned_per_s"]
        parts.append(f"{era} {wb:.1f} entries, {pb:.0f}/s ({ratio_text(pa, pb)}), wait "
                     f"{100 * b['anon_vma_wait_share']:.0f}%")
    return "; ".join(parts)


def exim_headline(rs: Results) -> str:
    base = messages_per_s(next(iter(rs.values())))
    parts: list[str] = []
    for era, r in rs.items():
        mps = messages_per_s(r)
        waits = _site_waits(r)
        tot = sum(waits.values()) or 1
        sites = ", ".join(f"{s} {100 * waits.get(s, 0) / tot:.0f}%"
                          for s in ("anon_vma_fork", "unlink_anon_vmas"))
        change = "" if not parts else f" ({100 * (mps / base - 1):+.0f}%)" if base else ""
        parts.append(f"{era} {mps:.0f} msg/s{change}, lock wait {100 * r['anon_vma_wait_share']:.0f}% "
                     f"[{sites}]")
    return "; ".join(parts) + "  (kernel, 40 cores: -52%)"


def forks_headline(rs: Results) -> str:
    parts: list[str] = []
    prev = None
    for era, r in rs.items():
        fps = r["throughput"]["forks_per_s"]
        parts.append(f"{era} {fps:.0f} forks/s" + (f" ({ratio_text(prev, fps)})" if prev else ""))
        prev = fps
    return ", ".join(parts) + "  (kernel: 3.8 -50%, recovered by stealing)"


def trylock_headline(rs: Results) -> str:
    parts: list[str] = []
    for era, r in rs.items():
        t = r["throughput"]
        reclaim_wait = sum(w for s, w in _site_waits(r).items() if s in ("page_referenced", "try_to_unmap"))
        parts.append(f"{era} {t['pages_scanned_per_s']:.0f} pages scanned/s, reclaim waited "
                     f"{reclaim_wait / 1e6:.0f} ms, {t.get('rmap_trylock_fail', 0)} pages skipped contended")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- chapters


def split_headline(rs: Results) -> str:
    parts = [f"{era} visits {r['walks']['avg_visited']:.1f} VMAs per walk "
             f"({r['walks']['avg_nodes_examined']:.1f} entries examined)" for era, r in rs.items()]
    return ", ".join(parts) + "  (exact)"


def chain_headline(rs: Results) -> str:
    parts = []
    for era, r in rs.items():
        sm = r["summary"]
        parts.append(f"{era} {r['model']['anon_vmas']} anon_vmas after {r['generations']['count']} "
                     f"generations, fork {sm['fork_ns_first_tenth'] / 1e3:.0f} -> "
                     f"{sm['fork_ns_last_tenth'] / 1e3:.0f} us")
    return "; ".join(parts)


def oops_headline(rs: Results) -> str:
    """The seed's oops (shared-swapin): what its placement lost, and the fix."""
    parts = []
    for era, r in rs.items():
        sb = r["seed_bug"]
        if sb["pages_freed_anon_vma"] or sb["unreachable_mappings"]:
            parts.append(f"{era}: {sb['unreachable_mappings']} mappings unreachable, "
                         f"{sb['pages_not_unmapped']} pages reclaim cannot unmap, "
                         f"{sb['pages_freed_anon_vma']} pages on a freed anon_vma (the oops)")
        else:
            parts.append(f"{era}: none")
    return "; ".join(parts) + "  (exact)"


def cve_headline(rs: Results) -> str:
    parts = []
    for era, r in rs.items():
        inv = r["invariants"]
        if inv["violations"]:
            uaf = [v for v in inv.get("messages", []) if "freed anon_vma" in v]
            parts.append(f"{era}: {inv['violations']} violations"
                         + (" (page->mapping points at a freed anon_vma)" if uaf else ""))
        else:
            parts.append(f"{era}: invariants ok")
    return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class Chapter:
    title: str
    scenario: str
    eras: tuple[str, ...]
    params: dict[str, Any]
    headline: Callable[[Results], str]
    # "run": a stress run per era; "scan": ``scan --scenario`` (exact counts, one process).
    kind: str = "run"
    # Eras whose invariant violations are the chapter's point (the CVE before its fix).
    expect_violations: tuple[str, ...] = ()


# One line per chapter.  Chapters whose scenario or eras are not registered are skipped.
CHAPTERS: list[Chapter] = [
    Chapter("2.6.34-rc1 anon_vma_chain (the seed): reclaim storm", "reclaim-storm",
            ("2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36"), {"users": 300, "pages": 50}, seed_headline),
    Chapter("2.6.34 oldest anon_vma: the seed's oops", "shared-swapin", ("2.6.34-rc1", "2.6.34"),
            {"users": 100, "pages": 20}, oops_headline, kind="scan", expect_violations=("2.6.34-rc1",)),
    Chapter("3.0 mutex: exim", "exim", ("2.6.36", "3.0-rc1", "3.0"),
            {"users": 8, "pages": 32}, exim_headline),
    Chapter("3.8 rwsem, 3.9 lock-stealing: AIM7 fork_test", "fork-test", ("3.0", "3.8", "3.9"),
            {"users": 8, "pages": 32}, forks_headline),
    Chapter("modern: reclaim trylocks the rmap lock", "fork-test", ("3.9", "modern"),
            {"users": 8, "pages": 32}, trylock_headline),
    Chapter("3.7 interval tree: mprotect-split", "mprotect-split", ("3.0", "3.7"),
            {"pieces": 1000, "users": 1, "pages": 1000}, split_headline, kind="scan"),
    Chapter("3.19 degree reuse: fork-chain", "fork-chain", ("3.9", "3.19"),
            {"generations": 500, "pages": 16}, chain_headline, kind="scan"),
    Chapter("6.0 num_children: CVE-2022-42703", "cve-2022-42703", ("3.19", "6.0"),
            {}, cve_headline, expect_violations=("3.19",)),
]


def runnable(ch: Chapter) -> tuple[tuple[str, ...], str | None]:
    """The chapter's registered eras, and why it is skipped (None: it runs).  Eras not
    registered are dropped; fewer than two left, or no such scenario, skips it."""
    if ch.scenario not in (SCAN_SCENARIOS if ch.kind == "scan" else SCENARIOS):
        return (), f"scenario {ch.scenario} not registered"
    eras = tuple(e for e in ch.eras if e in ERAS)
    if len(eras) < 2:
        return eras, f"eras {', '.join(e for e in ch.eras if e not in ERAS)} not registered"
    return eras, None


def story(duration: float, cpus: int, run: Callable[[RunConfig], dict[str, Any]],
          say: Callable[[str], None], chapters: list[Chapter] | None = None,
          scan: Callable[[RunConfig], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run every chapter; ``say`` gets one line per chapter as it completes; ``scan`` runs
    the "scan" chapters (``scan --scenario``; without it they are skipped).  Returns
    {"chapters": [{title, scenario, eras, headline, results: {era: results},
    unexpected_violations} or {title, skipped}], "elapsed_s"}; a signal ends it early with
    "interrupted" (the signal's name) set, the chapter under way holding the runs it
    completed (the one a signal cut short: its partial results) and "interrupted": true."""
    from ..engine.runner import RunInterrupted
    from ..engine.stopping import Stopped, signal_name, stop_on_signals

    t0 = time.monotonic()
    out: list[dict[str, Any]] = []
    stop: dict[str, str] = {}
    try:
        with stop_on_signals():
            for ch in chapters if chapters is not None else CHAPTERS:
                _chapter(ch, duration, cpus, run, say, scan, out, stop)
                if stop:
                    break
    except Stopped as e:  # between runs: the chapter under way keeps the runs it completed
        stop["interrupted"] = signal_name(e.signum)
    except RunInterrupted as e:  # raised by a ``run`` that does not keep partial results
        stop["interrupted"] = signal_name(e.signum)
    return {"schema": SCHEMA_STORY, "chapters": out, "elapsed_s": time.monotonic() - t0, **stop}


def _chapter(ch: Chapter, duration: float, cpus: int, run: Callable[[RunConfig], dict[str, Any]],
             say: Callable[[str], None], scan: Callable[[RunConfig], dict[str, Any]] | None,
             out: list[dict[str, Any]], stop: dict[str, str]) -> None:
    """One chapter, appended to ``out`` as soon as it has begun, so that a signal leaves
    the runs it completed in the document (``interrupted`` set, no headline)."""
    from ..engine.runner import RunInterrupted
    from ..engine.stopping import signal_name

    eras, why = runnable(ch)
    if not why and ch.kind == "scan" and scan is None:
        why = "no scan runner given"
    if why:
        out.append({"title": ch.title, "scenario": ch.scenario, "skipped": why})
        say(f"{ch.title}: skipped ({why})")
        return
    rs: Results = {}
    entry: dict[str, Any] = {"title": ch.title, "scenario": ch.scenario, "eras": list(eras),
                             "results": rs, "interrupted": True}
    out.append(entry)
    params = dict(ch.params)
    if ch.kind == "run" and "users" in params:  # at least one user per CPU (fork-test, exim)
        params["users"] = max(params["users"], cpus or online_cpus())
    for era in eras:
        if ch.kind == "scan":
            cfg = RunConfig(era=era, scenario=ch.scenario, **params)
            cfg.validate()
            rs[era] = scan(cfg)  # type: ignore[misc]
        else:
            cfg = RunConfig(era=era, scenario=ch.scenario, cpus=cpus, duration=duration, **params)
            cfg.validate()
            try:
                rs[era] = run(cfg)
            except RunInterrupted as e:
                stop["interrupted"] = signal_name(e.signum)
                if e.results is not None:
                    rs[era] = e.results
                say(f"{ch.title}: interrupted ({len(rs)} of {len(eras)} runs, the last cut short)")
                return
    del entry["interrupted"]
    line = ch.headline(rs)
    bad = sum(r["invariants"]["violations"] for era, r in rs.items()
              if "invariants" in r and era not in ch.expect_violations)
    if bad:
        line += f"  [{bad} INVARIANT VIOLATIONS]"
    say(f"{ch.title}: {line}")
    entry.update({"headline": line, "unexpected_violations": bad})

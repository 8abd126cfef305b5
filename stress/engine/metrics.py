"""Pure statistics over recorded counters and histograms (copies, never the live segment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shared_model.layout import (
    CPU_STATE,
    HIST_BUCKETS,
    LOCK_CLASSES,
    LOCK_SITES,
    LS_CONT,
    LS_HOLD_HIST,
    LS_HOLD_MAX,
    LS_HOLD_MIN,
    LS_HOLD_TOTAL,
    LS_QUEUED,
    LS_WAIT_HIST,
    LS_WAIT_MAX,
    LS_WAIT_MIN,
    LS_WAIT_TOTAL,
    hist_bucket_bounds,
)

I64_MAX = np.iinfo(np.int64).max
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def hist_percentile(hist: np.ndarray, q: float, lo: int, hi: int) -> int:
    """The q-quantile of a bucketed histogram: the middle of the bucket it falls in, clipped
    to the exact [min, max] (so it is exact where a bucket holds one value, within 25%
    elsewhere)."""
    total = int(hist.sum())
    if not total:
        return 0
    b = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    blo, bhi = hist_bucket_bounds(b)
    return int(min(max((blo + bhi - 1) // 2, lo), hi))


def _time_stats(total: int, count: int, mn: int, mx: int, hist: np.ndarray) -> dict[str, int]:
    mn = 0 if mn == I64_MAX or not count else int(mn)
    out = {"min": mn, "max": int(mx), "total": int(total), "avg": int(total // count) if count else 0}
    for name, q in PERCENTILES:
        out[name] = hist_percentile(hist, q, mn, int(mx))
    return out


def lock_rows(lockstat: np.ndarray) -> list[dict]:
    """lockstat rows, one per lock class with any acquisition, sorted by total wait.

    ``lockstat`` is [cpu, class, site, field]; each row has acquisitions, contentions,
    mcs_queued (contentions that queued on a qspinlock MCS node), wait_ns and hold_ns
    (min/max/total/avg/p50/p90/p99/p999) and its call sites."""
    rows: list[dict[str, Any]] = []
    for ci, cls in enumerate(LOCK_CLASSES):
        per_site = lockstat[:, ci]  # [cpu, site, field]
        acq = int(per_site[:, :, 0].sum())
        if not acq:
            continue
        cont = int(per_site[:, :, LS_CONT].sum())
        queued = int(per_site[:, :, LS_QUEUED].sum())
        wait_hist = per_site[:, :, LS_WAIT_HIST : LS_WAIT_HIST + HIST_BUCKETS].sum(axis=(0, 1))
        hold_hist = per_site[:, :, LS_HOLD_HIST : LS_HOLD_HIST + HIST_BUCKETS].sum(axis=(0, 1))
        sites: list[dict[str, Any]] = []
        for si, site in enumerate(LOCK_SITES):
            s = per_site[:, si]
            s_acq = int(s[:, 0].sum())
            if not s_acq:
                continue
            sites.append({
                "site": site,
                "acquisitions": s_acq,
                "contentions": int(s[:, LS_CONT].sum()),
                "wait_total_ns": int(s[:, LS_WAIT_TOTAL].sum()),
                "hold_total_ns": int(s[:, LS_HOLD_TOTAL].sum()),
            })
        sites.sort(key=lambda r: (-r["wait_total_ns"], -r["acquisitions"]))
        rows.append({
            "class": cls,
            "acquisitions": acq,
            "contentions": cont,
            "mcs_queued": queued,
            "wait_ns": _time_stats(int(per_site[:, :, LS_WAIT_TOTAL].sum()), cont,
                                   int(per_site[:, :, LS_WAIT_MIN].min()),
                                   int(per_site[:, :, LS_WAIT_MAX].max()), wait_hist),
            "hold_ns": _time_stats(int(per_site[:, :, LS_HOLD_TOTAL].sum()), acq,
                                   int(per_site[:, :, LS_HOLD_MIN].min()),
                                   int(per_site[:, :, LS_HOLD_MAX].max()), hold_hist),
            "wait_hist": _trim(wait_hist),
            "sites": sites,
        })
    rows.sort(key=lambda r: (-r["wait_ns"]["total"], -r["acquisitions"]))
    return rows


def _trim(hist: np.ndarray) -> dict[str, int]:
    """Non-empty histogram buckets as {lower bound in ns: count}, for results files."""
    return {str(hist_bucket_bounds(int(b))[0]): int(hist[b]) for b in np.flatnonzero(hist)}


def cpu_rows(cpu: np.ndarray) -> list[dict]:
    """Per-CPU time shares (work, walk, lock_wait, iowait, other; summing to 1) and OS
    figures.  iowait is time asleep with every job of the CPU waiting for the swap device
    (top's ``wa``: idle with IO outstanding)."""
    rows = []
    for i, c in enumerate(cpu):
        total = max(int(c["t_total_ns"]), 1)
        work = min(int(c["t_work_ns"]) / total, 1.0)
        walk = min(int(c["t_walk_ns"]) / total, 1.0 - work)
        wait = min(int(c["t_wait_ns"]) / total, 1.0 - work - walk)
        iowait = min(int(c["t_iowait_ns"]) / total, 1.0 - work - walk - wait)
        rows.append({
            "cpu": i,
            "pid": int(c["pid"]),
            "time_ns": int(c["t_total_ns"]),  # the CPU's run time: what the shares are of
            "share": {"work": work, "walk": walk, "lock_wait": wait, "iowait": iowait,
                      "other": max(0.0, 1.0 - work - walk - wait - iowait)},
            "os": {"utime": int(c["utime_us"]) / 1e6, "stime": int(c["stime_us"]) / 1e6,
                   "voluntary_ctx": int(c["vctx"]), "involuntary_ctx": int(c["ivctx"])},
            "walks": int(c["walks"]),
            "pages_scanned": int(c["pages_scanned"]),
            "jobs": int(c["jobs"]),
            "swap_reads": int(c["swap_reads"]),
            "swap_writes": int(c["swap_writes"]),
        })
    return rows


def iowait_share(cpu: np.ndarray) -> float:
    """Share of all CPUs' run time spent idle in iowait (every job waiting for the swap
    device), as top's ``wa`` over the whole machine."""
    total = int(cpu["t_total_ns"].sum())
    return int(cpu["t_iowait_ns"].sum()) / total if total else 0.0


def walk_stats(cpu: np.ndarray, walkhist: np.ndarray) -> dict:
    walks = int(cpu["walks"].sum())
    visited = int(cpu["visited"].sum())
    hist = walkhist.sum(axis=0)
    return {
        "count": walks,
        "vmas_visited": visited,
        "avg_visited": visited / walks if walks else 0.0,
        "max_visited": int(cpu["max_visited"].max(initial=0)),
        # bucket b holds walks of length in [2**(b-1), 2**b): 0, 1, 2-3, 4-7, ...
        "log2_histogram": {str(0 if b == 0 else 1 << (b - 1)): int(hist[b]) for b in np.flatnonzero(hist)},
    }


def class_wait_share(locks: list[dict], cpu: np.ndarray, cls: str = "anon_vma",
                     in_progress: dict[str, int] | None = None) -> float:
    """Share of all CPUs' run time spent waiting on lock class ``cls``: lockstat's finished
    waits, plus the waits still in progress when the window closed (``in_progress``, ns
    by class, from ``window_end``)."""
    total = int(cpu["t_total_ns"].sum())
    wait = sum(r["wait_ns"]["total"] for r in locks if r["class"] == cls)
    wait += (in_progress or {}).get(cls, 0)
    return wait / total if total else 0.0


TIME_FIELDS = ("t_work_ns", "t_walk_ns", "t_wait_ns", "t_iowait_ns", "t_total_ns")


def window_end(cpu: np.ndarray, now_ns: int, start_ns: int, lock_class: Callable[[int], str],
               only: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The CPUs' times as of the end of the measured window, from a copy ``cpu`` of their
    slots taken at ``now_ns`` (CLOCK_MONOTONIC, the clock of ``state_since_ns``); the gate
    opened at ``start_ns``.

    A CPU publishes a wait, a walk or an iowait sleep in its times only when it ends.  One still waiting
    when the window closes (a ticket convoy of 256 CPUs on 2 cores: nearly all of them)
    may be aborted or SIGKILLed before it ends, and its wait would be lost; so the wait
    (or walk, or iowait) in progress, from ``state_since_ns`` to ``now_ns``, is added here,
    and a CPU still running has run ``now_ns - start_ns``.  Returns the adjusted copy and a
    summary (CPUs waiting, walking and in iowait, in-progress wait ns by lock class, named by
    ``lock_class(wait_lock word)``).  ``only``: a mask of the CPUs to account (the
    others are left as they are)."""
    out = cpu.copy()
    live = out["done"] == 0
    if only is not None:
        live &= only
    out["t_total_ns"][live] = max(now_ns - start_ns, 0)
    since = out["state_since_ns"]
    open_ = live & (since > 0) & (since <= now_ns)
    by_class: dict[str, int] = {}
    summary: dict[str, Any] = {}
    for state, field, key in ((CPU_STATE["wait"], "t_wait_ns", "waiting"),
                              (CPU_STATE["walk"], "t_walk_ns", "walking"),
                              (CPU_STATE["iowait"], "t_iowait_ns", "in_iowait")):
        sel = np.flatnonzero(open_ & (out["state"] == state))
        span = now_ns - since[sel]
        out[field][sel] += span
        summary[f"cpus_{key}"] = len(sel)
        summary[f"{key}_ns"] = int(span.sum())
        if key == "waiting":
            for i, ns in zip(sel.tolist(), span.tolist(), strict=True):
                w = int(out["wait_lock"][i])
                cls = lock_class(w) if w >= 0 else "?"
                by_class[cls] = by_class.get(cls, 0) + int(ns)
    summary["wait_ns_by_class"] = by_class
    return out, summary


def with_window_times(final: np.ndarray, window: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The final slots, with the window's times (iowait included) for the CPUs in mask ``which``."""
    out = final.copy()
    for f in TIME_FIELDS:
        out[f][which] = window[f][which]
    return out


# Classes whose same-class nesting is annotated, as the kernel does with spin_lock_nested:
# copy_page_range takes the child's then the parent's ptl.
NESTED_OK = {"ptl"}


def lock_order_findings(lockdep: np.ndarray) -> list[str]:
    """lockdep-like verdicts from the per-CPU edge tables [cpu, held, taken, (n, sites)]:
    an inversion (A taken under B somewhere, B under A elsewhere) with both call sites, or
    a lock taken while holding one of its own class (possible recursive locking)."""
    n = len(LOCK_CLASSES)
    seen = lockdep[:, :, :, 0].sum(axis=0)

    def where(a: int, b: int) -> str:
        for cpu in range(lockdep.shape[0]):
            code = int(lockdep[cpu, a, b, 1])
            if code:
                hs, ts = divmod(code - 1, 64)
                return f"{LOCK_SITES[hs]} -> {LOCK_SITES[ts]} on cpu{cpu}"
        return "?"

    out = []
    for a in range(n):
        for b in range(n):
            if not seen[a, b]:
                continue
            if a == b and LOCK_CLASSES[a] not in NESTED_OK:
                out.append(f"possible recursive locking: {LOCK_CLASSES[a]} taken while holding "
                           f"{LOCK_CLASSES[a]} ({where(a, a)}, {int(seen[a, a])} times)")
            elif a < b and seen[b, a]:
                out.append(f"lock inversion: {LOCK_CLASSES[b]} under {LOCK_CLASSES[a]} "
                           f"({where(a, b)}) and {LOCK_CLASSES[a]} under {LOCK_CLASSES[b]} ({where(b, a)})")
    return out


def lock_order_edges(lockdep: np.ndarray) -> list[dict[str, Any]]:
    """Every observed (held -> taken) class pair with its count and first call sites."""
    seen = lockdep[:, :, :, 0].sum(axis=0)
    edges = []
    for a, b in zip(*np.nonzero(seen)):
        code = next((int(c) for c in lockdep[:, a, b, 1] if c), 0)
        hs, ts = divmod(code - 1, 64) if code else (0, 0)
        edges.append({"held": LOCK_CLASSES[a], "taken": LOCK_CLASSES[b], "times": int(seen[a, b]),
                      "sites": [LOCK_SITES[hs], LOCK_SITES[ts]]})
    return edges

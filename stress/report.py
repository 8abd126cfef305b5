"""Human-readable tables, from results documents only (so any saved run can be shown again)."""

from __future__ import annotations

from typing import Any

from shared_model.eras import ERAS


def fmt_ns(ns: float) -> str:
    """A duration with its unit, scaled as perf does (ns, us, ms, s)."""
    ns = float(ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def lockstat_table(res: dict[str, Any], top_sites: int = 4) -> str:
    """lockstat's columns (times with units), one row per lock class, sorted by total wait,
    each followed by its top contention points (call sites that waited)."""
    head = (f"{'class':<10} {'contentions':>11} {'wait-min':>10} {'wait-max':>10} {'wait-total':>11} "
            f"{'wait-avg':>10} {'wait-p99':>10} {'acquisitions':>12} {'hold-max':>10} {'hold-total':>11} "
            f"{'hold-avg':>10}")
    lines = [head, "-" * len(head)]
    for r in res["locks"]:
        w, h = r["wait_ns"], r["hold_ns"]
        lines.append(
            f"{r['class']:<10} {r['contentions']:>11} {fmt_ns(w['min']):>10} {fmt_ns(w['max']):>10} "
            f"{fmt_ns(w['total']):>11} {fmt_ns(w['avg']):>10} {fmt_ns(w['p99']):>10} "
            f"{r['acquisitions']:>12} {fmt_ns(h['max']):>10} {fmt_ns(h['total']):>11} {fmt_ns(h['avg']):>10}")
        for s in [s for s in r["sites"] if s["contentions"]][:top_sites]:
            lines.append(f"{'':<10} {s['contentions']:>11} {s['site']}  (waited {fmt_ns(s['wait_total_ns'])})")
    return "\n".join(lines)


def cpu_table(res: dict[str, Any]) -> str:
    head = (f"{'cpu':>4} {'work':>6} {'walk':>6} {'wait':>6} {'iowait':>6} {'other':>6} {'walks':>8} "
            f"{'utime':>7} {'stime':>7} {'vctx':>7} {'ivctx':>7}")
    lines = [head]
    for c in res["cpus"]:
        s, o = c["share"], c["os"]
        lines.append(f"{c['cpu']:>4} {pct(s['work'])} {pct(s['walk'])} {pct(s['lock_wait'])} "
                     f"{pct(s.get('iowait', 0.0))} "
                     f"{pct(s['other'])} {c['walks']:>8} {o['utime']:>6.2f}s {o['stime']:>6.2f}s "
                     f"{o['voluntary_ctx']:>7} {o['involuntary_ctx']:>7}")
    return "\n".join(lines)


def mean_shares(res: dict[str, Any]) -> dict[str, float]:
    cpus = res["cpus"]
    keys = ("work", "walk", "lock_wait", "iowait", "other")
    return {k: sum(c["share"].get(k, 0.0) for c in cpus) / len(cpus) if cpus else 0.0 for k in keys}


def swap_device_line(res: dict[str, Any]) -> str | None:
    """One line on the swap device, or None for a document from before it existed."""
    d = res.get("swap_device")
    if not d:
        return None
    if not d["enabled"]:
        return (f"swap device: off (infinitely fast): {d['reads']} reads, {d['writes']} writes "
                f"completed at once")
    return (f"swap device: {d['latency_ms']:g} ms, {d['iops']:.0f} IOPS: {d['reads']} reads, "
            f"{d['writes']} writes ({d['requests_per_s']:.0f} submitted/s, {pct(d['utilisation']).strip()} busy), "
            f"avg wait {d['avg_wait_ms']:.1f} ms, queue up to {d['max_depth']}, "
            f"{d['throttled']} writers throttled")


def run_summary(res: dict[str, Any]) -> str:
    c, w, t = res["config"], res["walks"], res["throughput"]
    sh = mean_shares(res)
    inv = res["invariants"]
    lines = [
        (f"era {c['era']}  scenario {c['scenario']}  users {c['users']}  pages {c['pages']}  "
         f"cow {c['cow']}  cpus {c['cpus']}  lock {c['lock']}  {res['elapsed_s']:.1f} s"),
        (f"model: {res['model']['mms']} mms, {res['model']['vmas']} vmas, {res['model']['anon_vmas']} "
         f"anon_vmas, {res['model']['avcs']} avcs, {res['model']['pages']} pages"),
        f"walks: {w['count']}  avg visited {w['avg_visited']:.1f}  max {w['max_visited']}",
        f"throughput: {t['pages_scanned_per_s']:.0f} pages scanned/s  {t['jobs_per_min']:.0f} jobs/min",
        (f"cpu time: work {pct(sh['work'])}  walk {pct(sh['walk'])}  lock wait {pct(sh['lock_wait'])}  "
         f"iowait {pct(sh['iowait'])}  "
         f"other {pct(sh['other'])}  (anon_vma lock wait {pct(res['anon_vma_wait_share'])})"),
        "invariants: " + ("not checked (quit at once)" if inv.get("checked") is False
                          else "ok" if inv["violations"] == 0 else f"{inv['violations']} VIOLATIONS"),
    ]
    if "seed_bug" in res:  # shared-swapin: what the seed's placement did, in words
        from .workloads.shared_swapin import seed_bug_lines

        lines += seed_bug_lines(res["seed_bug"])
        if inv["violations"]:
            lines.append("  (the invariant violations are this bug: rules 5 and 9, not a model fault)")
    if c["scenario"] in ("fork-test", "exim"):
        lines.insert(4, f"forks: {t.get('forks', 0)}  exits: {t.get('exits', 0)}  "
                        f"{t.get('forks_per_s', 0.0):.0f} forks/s"
                        + (f"  {t['jobs'] / res['elapsed_s']:.0f} messages/s"
                           if c["scenario"] == "exim" and res["elapsed_s"] else ""))
    era = ERAS.get(c["era"])
    if t.get("rmap_trylock_fail") or (era is not None and era.rmap_trylock and t.get("pages_scanned")):
        lines.insert(4, f"rmap trylock: {t.get('rmap_trylock_fail', 0)} of {t.get('pages_scanned', 0)} "
                        f"pages scanned found the rmap lock contended and were skipped as referenced")
    if c.get("alloc_fail_p"):
        lines.insert(-1, f"injected: alloc-fail={c['alloc_fail_p']:g}: {t.get('alloc_failures', 0)} "
                         f"allocations failed (fork, COW and anon_vma_prepare unwound)")
    dev = swap_device_line(res)
    if dev:
        lines.insert(-1, dev)
    lo = res.get("lock_order") or {}
    if lo.get("checked"):
        lines.append("lock order: " + ("no inversion in " + str(len(lo["edges"])) + " class pairs seen"
                                       if not lo["findings"] else lo["findings"][0]))
    lines += [f"  {msg}" for msg in inv.get("messages", [])[:5]]
    wedged = res.get("wedged_locks") or []
    if wedged:
        lines.append(f"wedged locks: {', '.join(wedged[:8])}{' ...' if len(wedged) > 8 else ''} "
                     f"(a CPU died queued for {'it' if len(wedged) == 1 else 'them'}: unusable)")
    return "\n".join(lines)


def run_report(res: dict[str, Any]) -> str:
    return "\n\n".join([run_summary(res), lockstat_table(res), cpu_table(res)])


def ratio_text(a: float, b: float) -> str:
    """b/a in the one notation of every report: "29.27x", "0.35x", and two significant
    digits far below 1 ("0.0020x", not "0.00x"); "-" without a base."""
    if not a:
        return "-"
    r = b / a
    return f"{r:.2f}x" if r >= 0.1 or r == 0 else f"{r:.2g}x"


def side_by_side(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two runs' headline figures in columns, with b/a ratios."""
    def row(name: str, va: float, vb: float, fmt: str) -> str:
        return f"{name:<34} {format(va, fmt):>14} {format(vb, fmt):>14} {ratio_text(va, vb):>9}"

    sa, sb = mean_shares(a), mean_shares(b)
    la = {r["class"]: r for r in a["locks"]}
    lb = {r["class"]: r for r in b["locks"]}
    av_a, av_b = la.get("anon_vma"), lb.get("anon_vma")
    lines = [
        f"{'':<34} {a['config']['era']:>14} {b['config']['era']:>14} {'ratio':>9}",
        row("average walk length (VMAs)", a["walks"]["avg_visited"], b["walks"]["avg_visited"], ".1f"),
        row("max walk length (VMAs)", a["walks"]["max_visited"], b["walks"]["max_visited"], ".0f"),
        row("pages scanned per second", a["throughput"]["pages_scanned_per_s"],
            b["throughput"]["pages_scanned_per_s"], ".0f"),
        row("CPU time waiting on anon_vma lock %", 100 * a["anon_vma_wait_share"],
            100 * b["anon_vma_wait_share"], ".1f"),
        row("CPU time walking %", 100 * sa["walk"], 100 * sb["walk"], ".1f"),
        row("anon_vma lock contentions", av_a["contentions"] if av_a else 0,
            av_b["contentions"] if av_b else 0, ".0f"),
        row("anon_vma lock wait p99 (us)", (av_a["wait_ns"]["p99"] if av_a else 0) / 1e3,
            (av_b["wait_ns"]["p99"] if av_b else 0) / 1e3, ".1f"),
    ]
    return "\n".join(lines)

"""Human-readable tables, from results documents only (so any saved run can be shown again)."""

from __future__ import annotations

from typing import Any

from shared_model.eras import ERAS

from .sweeps import mean


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
            waited = fmt_ns(s["wait_total_ns"])
            lines.append(f"{'':<10} {s['contentions']:>11} {s['site']}  (waited {waited})")
    if res["config"].get("lockstat") is False:
        lines.append("(--no-lockstat: no lock statistics were recorded)")
    elif mean_shares(res)["lock_wait"] >= 0.05 and not any(r["contentions"] for r in res["locks"]):
        # lockstat counts a wait when the lock is got; a wait that never got it (a deadlock,
        # or one given up at the stop) is only in the CPUs' time shares.
        lines.append(f"(the CPUs spent {pct(mean_shares(res)['lock_wait']).strip()} of their time waiting "
                     f"on locks they never got (a deadlock, or waits given up at the stop): lockstat "
                     f"records a wait only once the lock is taken)")
    return "\n".join(lines)


# Above this many CPUs the table shows the CPUs that waited most and one line for the
# rest: 256 rows bury the report (every row stays in the results document).
CPU_ROWS = 32
CPU_ROWS_SHOWN = 8


def cpu_table(res: dict[str, Any], rows: int = CPU_ROWS) -> str:
    """One row per CPU (time shares, walks, OS accounting); with more than ``rows`` CPUs,
    the CPU_ROWS_SHOWN that waited longest and a line of the rest's means."""
    head = (f"{'cpu':>4} {'work':>6} {'walk':>6} {'wait':>6} {'iowait':>6} {'other':>6} {'walks':>8} "
            f"{'utime':>7} {'stime':>7} {'vctx':>7} {'ivctx':>7}")
    cpus = res["cpus"]
    shown = cpus
    if len(cpus) > rows:
        shown = sorted(sorted(cpus, key=lambda c: -c["share"]["lock_wait"])[:CPU_ROWS_SHOWN],
                       key=lambda c: c["cpu"])
    lines = [head] + [_cpu_row(c) for c in shown]
    if len(shown) < len(cpus):
        rest = [c for c in cpus if c not in shown]
        m = mean_shares({"cpus": rest})
        lines.append(f"{'rest':>4} {pct(m['work'])} {pct(m['walk'])} {pct(m['lock_wait'])} "
                     f"{pct(m['iowait'])} {pct(m['other'])} {sum(c['walks'] for c in rest):>8}   "
                     f"(mean of the other {len(rest)} "
                     f"CPUs; above: the {len(shown)} that waited longest; every CPU's row is in --json)")
    return "\n".join(lines)


def _cpu_row(c: dict[str, Any]) -> str:
    s, o = c["share"], c["os"]
    return (f"{c['cpu']:>4} {pct(s['work'])} {pct(s['walk'])} {pct(s['lock_wait'])} "
            f"{pct(s.get('iowait', 0.0))} "
            f"{pct(s['other'])} {c['walks']:>8} {o['utime']:>6.2f}s {o['stime']:>6.2f}s "
            f"{o['voluntary_ctx']:>7} {o['involuntary_ctx']:>7}")


def mean_shares(res: dict[str, Any]) -> dict[str, float]:
    cpus = res["cpus"]
    keys = ("work", "walk", "lock_wait", "iowait", "other")
    return {k: mean(c["share"].get(k, 0.0) for c in cpus) for k in keys}


def swap_device_line(res: dict[str, Any]) -> str | None:
    """One line on the swap device, or None for a document from before it existed."""
    d = res.get("swap_device")
    if not d:
        return None
    if not d["enabled"]:
        return (f"swap device: off (infinitely fast): {d['reads']} reads, {d['writes']} writes "
                f"completed at once")
    return (f"swap device: {d['latency_ms']:g} ms, {d['iops']:.0f} IOPS: {d['reads']} reads, "
            f"{d['writes']} writes ({d['requests_per_s']:.0f} submitted/s, "
            f"{pct(d['utilisation']).strip()} busy), "
            f"avg wait {d['avg_wait_ms']:.1f} ms, queue up to {d['max_depth']}, "
            f"{d['throttled']} writers throttled")


def oversubscription_line(res: dict[str, Any]) -> str | None:
    """With more CPUs than the cores the run could use, how little of the window each CPU
    can have been on a core: why a short run of many CPUs shows few or no operations."""
    cores = len((res.get("machine") or {}).get("affinity") or [])
    cpus = res["config"]["cpus"]
    if not cores or cpus <= cores:
        return None
    share = cores / cpus
    return (f"oversubscribed: {cpus} CPUs on {cores} cores: each CPU is on a core at most "
            f"{pct(share).strip()} of the time, about {share * res['elapsed_s'] * 1e3:.0f} ms of this "
            f"{res['elapsed_s']:.1f} s window")


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
        # fork-test's jobs are forks: its figure is forks/s (the forks line), not jobs/min
        (f"throughput: {t['pages_scanned_per_s']:.0f} pages scanned/s"
         + (f"  {t['jobs_per_min']:.0f} jobs/min" if c["scenario"] != "fork-test" else "")),
        (f"cpu time: work {pct(sh['work'])}  walk {pct(sh['walk'])}  lock wait {pct(sh['lock_wait'])}  "
         f"iowait {pct(sh['iowait'])}  "
         f"other {pct(sh['other'])}  " + (
             "(anon_vma lock wait: not recorded, --no-lockstat)" if c.get("lockstat") is False
             else f"(anon_vma lock wait {pct(res['anon_vma_wait_share'])})")),
        "invariants: " + ("not checked (quit at once)" if inv.get("checked") is False
                          else "ok" if inv["violations"] == 0 else f"{inv['violations']} VIOLATIONS"),
    ]
    if "seed_bug" in res:  # shared-swapin: what the seed's placement did, in words
        from ..engine.workloads.shared_swapin import seed_bug_lines

        lines += seed_bug_lines(res["seed_bug"])
        if inv["violations"]:
            lines.append("  (the invariant violations are this bug: rules 5 and 9, not a model fault)")
    elif t.get("rmap_freed_anon_vma"):  # e.g. cve-2022-42703: a page->mapping left dangling
        lines.append(f"rmap walks that met a freed anon_vma: {t['rmap_freed_anon_vma']} "
                     f"(counted, not followed: the kernel would walk freed memory)")
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
    over = oversubscription_line(res)
    if over:
        lines.insert(-1, over)
    lo = res.get("lock_order") or {}
    if lo.get("checked"):
        lines.append("lock order: " + ("no inversion in " + str(len(lo["edges"])) + " class pairs seen"
                                       if not lo["findings"] else lo["findings"][0]))
    stop = stop_line(res)
    if stop:
        lines.append(stop)
    if inv.get("explained_by"):
        lines.append(f"  the violations may be traces of the operations aborted: "
                     f"{', '.join(inv['explained_by'][:8])}")
    elif inv.get("corruption"):
        lines.append(f"  model corruption: no operation was aborted, first: {inv['corruption']}")
    lines += [f"  {msg}" for msg in inv.get("messages", [])[:5]]
    wedged = res.get("wedged_locks") or []
    if wedged:
        lines.append(f"wedged locks: {', '.join(wedged[:8])}{' ...' if len(wedged) > 8 else ''} "
                     f"(a CPU died queued for {'it' if len(wedged) == 1 else 'them'}: unusable)")
    return "\n".join(lines)


def stop_line(res: dict[str, Any]) -> str | None:
    """How the CPUs stopped, when it is worth a line: a stop of a second or more, or CPUs
    aborted inside an operation (which CPU, which operation, what it held)."""
    st = res.get("stop")
    if not st:
        return None
    took = "" if st["s"] is None else f" in {st['s']:.1f} s"
    if not st["aborted"]:
        if st["s"] is None or st["s"] < 1.0:
            return None
        return f"stop: all {st['cpus']} CPUs finished their operation{took}"
    parts = []
    for a in st["aborted"][:4]:
        what = f"cpu{a['cpu']} {'killed' if a['killed'] else 'aborted'} in {a['operation']}"
        if a.get("state"):
            what += f" ({a['state'].split(': ', 1)[-1]})"
        parts.append(what)
    more = f" and {len(st['aborted']) - 4} more" if len(st["aborted"]) > 4 else ""
    return (f"stop: {st['at_boundary']} of {st['cpus']} CPUs at a boundary{took}; "
            f"{'; '.join(parts)}{more}")


def status_reason(res: dict[str, Any] | None, stderr: str = "") -> str:
    """Why a run's exit status is what it is, in one paragraph, from its results document
    (and the CLI's stderr): what a failing test prints, since a --quiet run says it only
    in the JSON.  "no results" when there are none."""
    if res is None:
        return f"no results; stderr: {stderr.strip()[-2000:]}"
    out = []
    failed = res.get("failed")
    if failed:
        out.append(f"failed: {failed['reason']}")
        out += [f"  {line}" for line in failed.get("cpu_states", [])[:8]]
    if res.get("interrupted"):
        out.append("interrupted by a signal")
    if res.get("aborted"):
        out.append(f"aborted: {res['aborted']}")
    inv = res.get("invariants", {})
    if inv.get("violations"):
        out.append(f"invariants: {inv['violations']} violations, first: {inv['messages'][:3]}")
        if inv.get("explained_by"):
            out.append(f"  after aborted operations: {', '.join(inv['explained_by'][:8])}")
    stop = stop_line(res)
    if stop:
        out.append(stop)
    if not out:
        out.append("ok: invariants clean, nothing failed")
    if stderr.strip():
        out.append(f"stderr: {stderr.strip()[-2000:]}")
    return "\n".join(out)


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

#!/usr/bin/env python3
"""The lock-policy eras measured on this machine, beside the kernel's published numbers;
writes docs/results/eras/ (eras.json and README.md).

* fork-test (AIM7 fork_test: fork and exit only, no reclaim): forks per second on each
  era (default 3.0, 3.8, 3.9, 3.19, 6.0), and each era's ratio to the first, round by
  round.  Kernel: 3.8's rwsem cost fork_test 50%; writer lock-stealing (3.9,
  ce6711f3d196) recovered it.
* exim (MOSBENCH): messages per second, anon_vma lock wait and its two call sites on each
  era (default 2.6.36, 3.0-rc1, 3.0; eras not registered are skipped with a note).  Kernel:
  3.0's mutex cost exim 52% at 40 cores; lock acquisition 3.25% -> 18.6% of CPU, 39% of
  it in anon_vma_clone and 37.6% in unlink_anon_vmas.
* reclaim beside fork/exit (fork-test --reclaim, 3.9 against modern): pages scanned per
  second, reclaim's wait for the root lock, pages skipped by modern's trylock.

Every round runs each era once, eras interleaved, so slow drift of a shared machine hits
all eras alike; each figure is the mean ± sd over the rounds.

    PYTHONPATH=. python scripts/measure_eras.py [--cpus 2 --duration 5 --repeat 3]
        [--fork-eras 3.0,3.8,3.9,3.19,6.0] [--exim-eras 2.6.36,3.0-rc1,3.0]
        [--trylock-eras 3.9,modern] [--users 8 --pages 32] [--out docs/results/eras]
    PYTHONPATH=. python scripts/measure_eras.py --render docs/results/eras/eras.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from typing import Any

from shared_model.eras import ERAS
from stress.analysis.report import mean_shares
from stress.engine.config import RunConfig
from stress.engine.results import machine_info
from stress.engine.runner import run

KERNEL = {
    "fork-test": "AIM7 fork_test: 3.8's rwsem (strict FIFO writer hand-off) -50%; writer "
                 "lock-stealing (ce6711f3d196) \"fully recovered\" it (Nehalem and Sandy Bridge, "
                 "2 and 4 sockets)",
    "exim": "MOSBENCH exim, 40 cores: 3.0's mutex -52% throughput; lock acquisition 3.25% -> "
            "18.6% of CPU, of which anon_vma_clone 39%, unlink_anon_vmas 37.6%; fixed in part "
            "by locking the root once per clone/unlink pass",
    "trylock": "6d4675e60135 (2022, before 6.0): reclaim's rmap walk trylocks the anon_vma lock and treats "
               "a contended folio as referenced instead of waiting (no throughput figure taken "
               "from the commit here)",
}


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The figures this script reports, from one run's results."""
    t = res["throughput"]
    av = next((r for r in res["locks"] if r["class"] == "anon_vma"), None)
    sites = {s["site"]: s for s in av["sites"]} if av else {}
    wait_total = av["wait_ns"]["total"] if av else 0

    def site_wait(name: str) -> float:
        return sites[name]["wait_total_ns"] / wait_total if name in sites and wait_total else 0.0

    return {
        "elapsed_s": res["elapsed_s"],
        "forks_per_s": t["forks_per_s"],
        "messages_per_s": t["jobs"] / res["elapsed_s"] if res["elapsed_s"] else 0.0,
        "pages_scanned_per_s": t["pages_scanned_per_s"],
        "rmap_trylock_fail": t["rmap_trylock_fail"],
        "pages_scanned": t["pages_scanned"],
        "anon_vma_wait_share": res["anon_vma_wait_share"],
        "lock_wait_share": mean_shares(res)["lock_wait"],
        "anon_vma_contentions": av["contentions"] if av else 0,
        "anon_vma_acquisitions": av["acquisitions"] if av else 0,
        "anon_vma_wait_avg_ns": av["wait_ns"]["avg"] if av else 0,
        "anon_vma_hold_avg_ns": av["hold_ns"]["avg"] if av else 0,
        "forks": t["forks"],
        "wait_share_anon_vma_fork": site_wait("anon_vma_fork"),
        "wait_share_unlink_anon_vmas": site_wait("unlink_anon_vmas"),
        "reclaim_wait_ms": sum(sites[s]["wait_total_ns"] for s in ("page_referenced", "try_to_unmap")
                               if s in sites) / 1e6,
        "invariant_violations": res["invariants"]["violations"],
    }


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def fmt(xs: list[float], spec: str = ".0f", scale: float = 1.0) -> str:
    m, sd = mean_sd([x * scale for x in xs])
    return f"{m:{spec}} ± {sd:{spec}}" if len(xs) > 1 else f"{m:{spec}}"


def measure(scenario: str, eras: list[str], a: argparse.Namespace,
            reclaim: bool = False) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in eras}
    for r in range(a.repeat):
        for era in eras:
            cfg = RunConfig(era=era, scenario=scenario, users=max(a.users, a.cpus), pages=a.pages,
                            cpus=a.cpus, duration=a.duration, seed=r, reclaim=reclaim)
            t0 = time.monotonic()
            s = summary(run(cfg))
            runs[era].append(s)
            print(f"  {scenario} {era} round {r + 1}/{a.repeat}: {s['forks_per_s']:.0f} forks/s, "
                  f"{s['messages_per_s']:.0f} msg/s, {s['pages_scanned_per_s']:.0f} pages/s, "
                  f"anon_vma wait {100 * s['anon_vma_wait_share']:.1f}% "
                  f"({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    return runs


def change(runs: dict[str, list[dict[str, Any]]], key: str, base: str, era: str) -> str:
    b = statistics.fmean(s[key] for s in runs[base])
    v = statistics.fmean(s[key] for s in runs[era])
    return f"{100 * (v / b - 1):+.0f}%" if b else "-"


def ratio(runs: dict[str, list[dict[str, Any]]], key: str, base: str, era: str) -> str:
    """``era``'s figure over ``base``'s, round by round (the two ran back to back), as
    mean ± sd over the rounds."""
    rs = [e[key] / b[key] for e, b in zip(runs[era], runs[base], strict=True) if b[key]]
    return fmt(rs, ".2f") + "x" if rs else "-"


# The kernel's published fork_test changes, read as ratios to the era before the rwsem:
# 3.8's rwsem -50%, 3.9 "fully recovered" (ce6711f3d196).  None published for 3.19 or 6.0.
KERNEL_FORK_RATIO = {"3.8": "0.5x", "3.9": "~1.0x"}


def _two_figures(x: float) -> str:
    """``x`` rounded to two significant figures, with thousands separators."""
    return f"{float(f'{x:.2g}'):,.0f}"


def closed_loop(cpus: int, f: float, k: float, h: float, w: float) -> float:
    """Forks per us of ``cpus`` CPUs that fork over and over, each fork ``f`` us of CPU
    with ``k`` takes of the root held ``h`` us each, a take waiting ``w`` us whenever it
    finds the root held, which it does as often as the root is busy (rho = X k h):
    X = cpus / (f + k rho w), a quadratic in X; never above the root's bound 1 / (k h)."""
    a = k * k * h * w
    x = cpus / f if a <= 0 else (-f + math.sqrt(f * f + 4 * a * cpus)) / (2 * a)
    return min(x, 1 / (k * h)) if k * h > 0 else x


def fork_test_note(runs: dict[str, list[dict[str, Any]]], base: str, cpus: int,
                   predict_cpus: int = 16) -> list[str]:
    """Why 3.8's fall and 3.9's recovery differ in size from the kernel's, from the runs'
    own lockstat: what one contended take waits (on 3.8 a FIFO hand-off: a futex wake-up and
    the woken CPU's scheduling) against the hold it waits out and the CPU time of one fork;
    and the same figures carried to ``predict_cpus`` CPUs by ``closed_loop``."""
    rs = runs.get("3.8")
    if not rs or base not in runs or "anon_vma_wait_avg_ns" not in rs[0]:
        return []

    def per_fork(era: str, key: str) -> float:
        return statistics.fmean(r[key] / max(r["forks"], 1) for r in runs[era])

    def avg(era: str, key: str) -> float:
        return statistics.fmean(r[key] for r in runs[era])

    def loop_figures(era: str) -> tuple[float, float, float, float]:
        """(f, k, h, w) of ``era``: a fork's CPU without its waits, takes per fork, hold
        and mean wait of a contended take (us)."""
        k = per_fork(era, "anon_vma_acquisitions")
        w = avg(era, "anon_vma_wait_avg_ns") / 1e3
        f = cpus * 1e6 / avg(era, "forks_per_s") - per_fork(era, "anon_vma_contentions") * w
        return f, k, avg(era, "anon_vma_hold_avg_ns") / 1e3, w

    waits = per_fork("3.8", "anon_vma_contentions")
    wait_us = avg("3.8", "anon_vma_wait_avg_ns") / 1e3
    fork_us = cpus * 1e6 / avg(base, "forks_per_s")
    out = [(f"Why 3.8 falls further than the kernel's -50%: each fork on 3.8 waits "
            f"{waits:.2f} times for the root, {wait_us:.0f} us on average (a FIFO hand-off is a "
            f"futex wake-up and the woken CPU's scheduling, on this machine: "
            f"`scripts/measure_handoff.py --futex` measures it alone), for a hold of "
            f"{avg('3.8', 'anon_vma_hold_avg_ns'):.0f} ns, while a whole fork costs "
            f"{fork_us:.1f} us of CPU on {base}: the wake-ups ({waits * wait_us:.0f} us per fork) "
            "outweigh the work many times.  The kernel's fork_test fork is a real process "
            "creation (hundreds of us) and a bare-metal wake-up a few us, so there the hand-off "
            "is a smaller share."), ""]
    f0, k0, h0, w0 = loop_figures(base)
    x0 = closed_loop(predict_cpus, f0, k0, h0, w0) * 1e6
    chain = 1e6 / (per_fork("3.8", "anon_vma_acquisitions")
                   * (avg("3.8", "anon_vma_hold_avg_ns") / 1e3 + wait_us))
    rule = (f"Predicted at {predict_cpus} CPUs from the same figures, by one closed-loop rule "
            "(each CPU forks over and over; a take waits the era's mean wait w whenever it "
            "finds the root held, as often as the root is busy, rho = forks/s x takes x hold; "
            "so forks/s = CPUs / (fork's CPU + takes x rho x w), never above 1 / (takes x "
            f"hold)): {base} about {_two_figures(x0)} forks/s")
    if "3.9" in runs:
        f9, k9, h9, w9 = loop_figures("3.9")
        w39 = per_fork("3.9", "anon_vma_contentions") * w9
        waited = statistics.fmean(r["anon_vma_contentions"] / max(r["anon_vma_acquisitions"], 1)
                                  for r in runs["3.9"])
        out += [(f"Why 3.9 recovers to {ratio(runs, 'forks_per_s', base, '3.9')} and not fully: "
                 "its writers steal a free lock but still wait, and sleep, when they find it "
                 f"held (no spinning before 3.16): {per_fork('3.9', 'anon_vma_contentions'):.2f} "
                 f"waits per fork of {w9:.1f} us on average, {w39:.1f} us per {fork_us:.1f} us "
                 f"fork, which predicts {fork_us / (fork_us + w39):.2f}x.  A take waits about as "
                 f"often as the root is busy ({100 * waited:.0f}% of 3.9's takes waited; "
                 f"forks/s x takes x hold = {avg('3.9', 'forks_per_s') * k9 * h9 / 1e6:.2f}).  A "
                 "model CPU that waits is idle (one process per CPU); in the kernel a sleeping "
                 "writer's CPU could run another of AIM7's processes."), ""]
        lo = closed_loop(predict_cpus, f9, k9, h9, wait_us) * 1e6
        hi = closed_loop(predict_cpus, f9, k9, h9, w9) * 1e6
        at_n = closed_loop(cpus, f9, k9, h9, w9) * 1e6
        rule += (f"; 3.9 between {_two_figures(lo)} (every wait a full wake-up, {wait_us:.0f} us, "
                 f"as once queues form) and {_two_figures(hi)} (waits as here, {w9:.1f} us), "
                 f"{lo / x0:.2f}-{hi / x0:.2f}x of {base} (at {cpus} CPUs the rule gives "
                 f"{_two_figures(at_n)}, measured {_two_figures(avg('3.9', 'forks_per_s'))})")
    rule += (f"; 3.8, where every take queues behind a sleeper once waiters queue, one hand-off "
             f"chain, 1 / (takes x (wake-up + hold)) = about {_two_figures(chain)} forks/s "
             f"whatever the CPU count, {chain / x0:.2g}x of {base}: a deeper fall than on "
             f"{cpus} CPUs.")
    return out + [rule, ""]


def registered(names: str) -> list[str]:
    eras = [e for e in names.split(",") if e]
    missing = [e for e in eras if e not in ERAS]
    if missing:
        print(f"note: eras {', '.join(missing)} are not registered here: skipped", file=sys.stderr)
    return [e for e in eras if e in ERAS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--pages", type=int, default=32)
    ap.add_argument("--fork-eras", default="3.0,3.8,3.9,3.19,6.0")
    ap.add_argument("--exim-eras", default="2.6.36,3.0-rc1,3.0")
    ap.add_argument("--trylock-eras", default="3.9,modern")
    ap.add_argument("--out", default="docs/results/eras",
                    help="folder for eras.json and README.md (default: %(default)s); '-' writes "
                         "no file, the README text still goes to standard output")
    ap.add_argument("--render", metavar="ERAS.json", help="only rewrite README.md from a saved eras.json")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as fh:
            print(_readme(a.out, markdown(json.load(fh))))
        return
    t0 = time.monotonic()
    sections = {"fork-test": ("fork-test", registered(a.fork_eras)),
                "exim": ("exim", registered(a.exim_eras)),
                "trylock": ("fork-test", registered(a.trylock_eras))}  # with --reclaim
    doc: dict[str, Any] = {
        "schema": "rmap-stress-eras-measure/1",
        "machine": machine_info(),
        "config": {"cpus": a.cpus, "duration": a.duration, "repeat": a.repeat, "users": a.users,
                   "pages": a.pages, "command": "PYTHONPATH=. python scripts/measure_eras.py "
                   + " ".join(sys.argv[1:])},
        "kernel": KERNEL,
        "sections": {},
    }
    for name, (scenario, eras) in sections.items():
        if len(eras) < 1:
            continue
        doc["sections"][name] = {"scenario": scenario, "eras": eras, "reclaim": name == "trylock",
                                 "runs": measure(scenario, eras, a, reclaim=name == "trylock")}
    doc["elapsed_s"] = time.monotonic() - t0
    if a.out != "-":
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "eras.json"), "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
    print(_readme(a.out, markdown(doc)))
    where = "no file (--out -)" if a.out == "-" else f"{a.out}/eras.json and {a.out}/README.md"
    print(f"wrote {where} ({doc['elapsed_s']:.0f} s)", file=sys.stderr)


def _readme(out: str, text: str) -> str:
    """The README text, written into folder ``out`` unless it is '-'."""
    return text if out == "-" else write_readme(os.path.join(out, "README.md"), text)


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, text) of each ``## `` section of a markdown text, in order; the part before
    the first has the heading ""."""
    out: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            out.append((line.strip(), []))
        out[-1][1].append(line)
    return [(h, "".join(lines)) for h, lines in out]


def write_readme(path: str, text: str) -> str:
    """Write ``text`` to ``path``, keeping the sections of the file already there that
    ``text`` does not write (written by hand: the structural eras, the CVE) after it;
    returns what was written."""
    try:
        with open(path) as fh:
            old = fh.read()
    except FileNotFoundError:
        old = ""
    ours = {h for h, _ in _sections(text)}
    kept = [body for h, body in _sections(old) if h and h not in ours]
    whole = text.rstrip("\n") + "\n" + ("\n" + "".join(kept).rstrip("\n") + "\n" if kept else "")
    with open(path, "w") as fh:
        fh.write(whole)
    return whole


def markdown(doc: dict[str, Any]) -> str:
    c = doc["config"]
    m = doc["machine"]
    out = [
        "# The lock-policy eras, measured",
        "",
        (f"`{c['command']}`: {c['cpus']} CPU workers, {c['duration']:g} s per run, "
        f"{c['repeat']} rounds (eras interleaved; mean ± sd over rounds), {c['users']} users x "
        f"{c['pages']} pages; machine: {m.get('cpu_model', '?')}, {m.get('online_cpus', '?')} online CPUs "
        "(shared with other work: absolute rates are noisy, compare within a table)."),
        "",
    ]
    secs = doc["sections"]
    if "fork-test" in secs:
        s = secs["fork-test"]
        runs, eras = s["runs"], s["eras"]
        out += ["## fork-test (AIM7 fork_test)", "",
                "| era | forks/s | change vs " + eras[0] + " | ratio to " + eras[0] + " (per round) "
                "| kernel | anon_vma lock wait | wait at anon_vma_fork "
                "| wait at unlink_anon_vmas |", "|---|---|---|---|---|---|---|---|"]
        for e in eras:
            rs = runs[e]
            out.append(f"| {e} | {fmt([r['forks_per_s'] for r in rs])} "
                       f"| {change(runs, 'forks_per_s', eras[0], e)} "
                       f"| {ratio(runs, 'forks_per_s', eras[0], e)} | {KERNEL_FORK_RATIO.get(e, '-')} "
                       f"| {fmt([r['anon_vma_wait_share'] for r in rs], '.1f', 100)}% "
                       f"| {fmt([r['wait_share_anon_vma_fork'] for r in rs], '.0f', 100)}% "
                       f"| {fmt([r['wait_share_unlink_anon_vmas'] for r in rs], '.0f', 100)}% |")
        if "3.8" in runs and "3.9" in runs:
            gain = change(runs, 'forks_per_s', '3.8', '3.9')
            out += ["", f"3.9 against 3.8 (writer lock-stealing): {gain} forks/s."]
        out += ["", f"Kernel: {doc['kernel']['fork-test']}.", ""]
        out += fork_test_note(runs, eras[0], c["cpus"])
    if "exim" in secs:
        s = secs["exim"]
        runs, eras = s["runs"], s["eras"]
        out += ["## exim (MOSBENCH)", "",
                "| era | messages/s | change vs " + eras[0] + " | anon_vma lock wait (CPU) "
                "| of it at anon_vma_fork (anon_vma_clone) | at unlink_anon_vmas |",
                "|---|---|---|---|---|---|"]
        for e in eras:
            rs = runs[e]
            out.append(f"| {e} | {fmt([r['messages_per_s'] for r in rs])} "
                       f"| {change(runs, 'messages_per_s', eras[0], e)} "
                       f"| {fmt([r['anon_vma_wait_share'] for r in rs], '.1f', 100)}% "
                       f"| {fmt([r['wait_share_anon_vma_fork'] for r in rs], '.0f', 100)}% "
                       f"| {fmt([r['wait_share_unlink_anon_vmas'] for r in rs], '.0f', 100)}% |")
        out += ["", f"Kernel: {doc['kernel']['exim']}.", "",
                ("Why few cores differ: at 40 cores up to 39 CPUs queue on the root; a mutex waiter "
                "that cannot spin sleeps, so each hand-off puts a wake-up on the critical path and "
                "the queue grows with the cores.  With 2 CPUs there is at most one waiter, the "
                "mutex's adaptive spinning catches most hand-offs, and on a shared machine a "
                "spinlock whose holder is preempted keeps its waiter spinning (ticket and "
                "qspinlock alike) while a mutex waiter sleeps.  The kernel's own fix, locking the "
                "root once per clone/unlink pass, is the 3.0-rc1 -> 3.0 step (`--exim-eras "
                "2.6.36,3.0-rc1,3.0` where era 3.0-rc1 exists)."), ""]
    if "trylock" in secs:
        s = secs["trylock"]
        runs, eras = s["runs"], s["eras"]
        out += ["## Reclaim beside fork/exit: modern's trylock (fork-test)", "",
                ("| era | pages scanned/s | reclaim waited for the root (ms per run) | pages skipped "
                "(trylock failed) | forks/s |"), "|---|---|---|---|---|"]
        for e in eras:
            rs = runs[e]
            skipped = [r["rmap_trylock_fail"] / r["pages_scanned"] if r["pages_scanned"] else 0.0 for r in rs]
            out.append(f"| {e} | {fmt([r['pages_scanned_per_s'] for r in rs])} "
                       f"| {fmt([r['reclaim_wait_ms'] for r in rs])} "
                       f"| {fmt(skipped, '.0f', 100)}% | {fmt([r['forks_per_s'] for r in rs])} |")
        out += ["", f"Kernel: {doc['kernel']['trylock']}.", ""]
    bad = sum(r["invariant_violations"] for s in secs.values() for rs in s["runs"].values() for r in rs)
    out += [f"Invariants: {'all runs checked clean' if not bad else f'{bad} VIOLATIONS'}.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:  # --out or --render naming what cannot be read or written
        raise SystemExit(f"measure_eras: {e.filename or ''}: {e.strerror or e}") from None

#!/usr/bin/env python3
"""Reproduce the seed commit's claims (5beb4930525, "mm: change anon_vma linking to fix
multi-process server scalability issue") on this machine, and write them beside ours.

1. scan at the commit's sizes: 1000 children x 1000 pages, every page COWed, both eras;
2. an AIM7-style ramp of both eras, each stopped once past its crossover (about 5 minutes
   on 2 cores in all);
3. a Markdown table of our figures beside the commit message's, plus the ramp's pictures.

    python scripts/reproduce_seed.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

from stress.config import RunConfig
from stress.plot import plot_results
from stress.ramp import headline, ramp, ramp_table, user_counts
from stress.results import write_json
from stress.scan import scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="seed-results", help="directory for the table, JSON and plots")
    ap.add_argument("--quick", action="store_true", help="smaller scan (300 x 100) and shorter ramp")
    ap.add_argument("--cpus", type=int, default=0, help="CPU workers for the ramp (default: all)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.monotonic()
    n, p = (300, 100) if a.quick else (1000, 1000)
    scans = {}
    for era in ("2.6.33", "2.6.34"):
        print(f"scan {era}: {n} users x {p} pages ...", flush=True)
        scans[era] = scan(RunConfig(era=era, users=n, pages=p, cow=1.0))
        write_json(os.path.join(a.out, f"scan-{era}.json"), scans[era])
        print(f"  average walk {scans[era]['walks']['avg_visited']:.2f} entries, max "
              f"{scans[era]['walks']['max_visited']}", flush=True)
    users = user_counts(100, 3200 if a.quick else 12800, None, 2.0)
    base = RunConfig(scenario="forking-server", pages=20, cow=1.0, cpus=a.cpus,
                     duration=2.0 if a.quick else 5.0)
    print(f"ramp: users {users}, {base.duration:g} s per point ...", flush=True)
    doc = ramp(["2.6.33", "2.6.34"], users, base, stop_at_crossover=True)
    write_json(os.path.join(a.out, "ramp.json"), doc)
    plot_results(doc, os.path.join(a.out, "ramp.png"))
    plot_results(doc, os.path.join(a.out, "ramp.svg"))
    print(ramp_table(doc))
    print(headline(doc))

    c33, c34 = doc["crossover"]["2.6.33"], doc["crossover"]["2.6.34"]
    last34 = max(q["users"] for q in doc["points"] if q["era"] == "2.6.34")
    at_cross = [q for q in doc["points"] if q["era"] == "2.6.33" and q["users"] == c33["users"]]
    sys_at = f"{100 * at_cross[0]['system_share']:.1f}%" if at_cross else "n/a"
    if c33["users"] and c34["users"]:
        ratio = f"{c34['users'] / c33['users']:.2f}x"
    elif c33["users"]:
        ratio = f"> {last34 / c33['users']:.2f}x (2.6.34 did not cross by {last34})"
    else:
        ratio = "n/a (2.6.33 did not cross)"
    rows = [
        ("average scan cost, 1000 children x 1000 COWed pages",
         "O(N) -> 2 (\"from O(N) to 2\")",
         f"{scans['2.6.33']['walks']['avg_visited']:.1f} -> {scans['2.6.34']['walks']['avg_visited']:.1f} "
         f"entries ({n} x {p})"),
        ("AIM7 crossover, 2.6.33", "about 9.7k users (16 GB box)",
         f"{c33['users']} users" if c33["users"] else f"not reached by {users[-1]}"),
        ("AIM7 crossover, 2.6.34", "about 29.7k users",
         f"{c34['users']} users" if c34["users"] else f"not reached by {last34}"),
        ("ratio of crossovers", "3.06x", ratio),
        ("system time at 2.6.33's collapse", ">99%", f"{sys_at} (walk + lock wait, at its crossover)"),
    ]
    lines = ["| claim | seed commit | rmap-stress, this machine |", "|---|---|---|"]
    lines += [f"| {a_} | {b} | {c} |" for a_, b, c in rows]
    table = "\n".join(lines)
    with open(os.path.join(a.out, "seed.md"), "w") as fh:
        fh.write(f"# The seed commit's claims, reproduced\n\n{table}\n\nRamp: {len(users)} user counts, "
                 f"{base.duration:g} s per point, {doc['config']['cpus']} CPUs, ram {doc['config']['ram_pages']} "
                 f"pages.\n\n![ramp](ramp.png)\n")
    print()
    print(table)
    print(f"\nwrote {a.out}/seed.md, ramp.json, ramp.png, ramp.svg, scan-*.json "
          f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reproduce the seed commit's claims (5beb4930525, "mm: change anon_vma linking to fix
multi-process server scalability issue") on this machine, and write them beside ours.

The commit's figures were measured on the seed as committed, era 2.6.34-rc1 (a swapped-in
page goes to the faulting VMA's own anon_vma), not on 2.6.34 as released (the oldest
anon_vma: ea90002b0fa7, the fix for the seed's oops); both are shown, the released one as
the price of the fix.

1. scan at the commit's sizes: 1000 children x 1000 pages, every page COWed, in 2.6.33,
   2.6.34-rc1, 2.6.34 and 2.6.36, and again after one unmap-and-refault sweep (``scan
   --refault``: pages dropped from the swap cache, each owner writes them back in), where
   2.6.34 as released puts every page back on the family's root anon_vma and the others
   do not;
2. an AIM7-style ramp of the eras (default 2.6.33, 2.6.34-rc1, 2.6.34, 2.6.36), each
   stopped once past its crossover, for each swap device of ``--swap-devices`` (default
   disk and off; about 8 minutes per device and three eras on 2 cores);
3. a Markdown table of our figures beside the commit message's, plus the ramp's pictures.

    python scripts/reproduce_seed.py [--out DIR] [--quick] [--eras ...] [--swap-devices disk,off]
"""

from __future__ import annotations

import argparse
import os
import time

from stress.analysis.plot import plot_results
from stress.commands.ramp import headline, ramp, ramp_table, user_counts
from stress.commands.scan import scan
from stress.engine.config import RunConfig
from stress.engine.results import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--out", default="seed-results", help="directory for the table, JSON and plots")
    ap.add_argument("--quick", action="store_true", help="smaller scan (300 x 100) and shorter ramp")
    ap.add_argument("--cpus", type=int, default=0, help="CPU workers for the ramp (default: all)")
    ap.add_argument("--eras", default="2.6.33,2.6.34-rc1,2.6.34,2.6.36",
                    help="eras to ramp, comma-separated (the first is the baseline; default "
                         "2.6.33,2.6.34-rc1,2.6.34,2.6.36)")
    ap.add_argument("--swap-devices", default="disk,off",
                    help="ramp once per swap device, comma-separated (default disk,off)")
    a = ap.parse_args()
    eras = a.eras.split(",")
    devices = a.swap_devices.split(",")
    os.makedirs(a.out, exist_ok=True)
    t0 = time.monotonic()
    n, p = (300, 100) if a.quick else (1000, 1000)
    rows = _scan_rows(_scans(n, p, a.out), n, p)
    users = user_counts(100, 3200 if a.quick else 12800, None, 2.0)
    for device in devices:
        base = RunConfig(scenario="forking-server", pages=20, cow=1.0, cpus=a.cpus,
                         duration=2.0 if a.quick else 5.0, swap_device=device)
        print(f"ramp, swap device {device}: users {users}, {base.duration:g} s per point ...", flush=True)
        doc = ramp(eras, users, base, stop_at_crossover=True)
        write_json(os.path.join(a.out, f"ramp-{device}.json"), doc)
        plot_results(doc, os.path.join(a.out, f"ramp-{device}.png"))
        plot_results(doc, os.path.join(a.out, f"ramp-{device}.svg"))
        print(ramp_table(doc))
        print(headline(doc))
        rows += _ramp_rows(doc, eras, device)
    lines = ["| claim | seed commit | rmap-stress, this machine |", "|---|---|---|"]
    lines += [f"| {a_} | {b} | {c} |" for a_, b, c in rows]
    table = "\n".join(lines)
    with open(os.path.join(a.out, "seed.md"), "w") as fh:
        fh.write(f"# The seed commit's claims, reproduced\n\n{table}\n\nRamp: {len(users)} user counts, "
                 f"{base.duration:g} s per point, {doc['config']['cpus']} CPUs, "
                 f"ram {doc['config']['ram_pages']} pages.\n\n"
                 + "".join(f"![ramp, swap device {d}](ramp-{d}.png)\n" for d in devices))
    print()
    print(table)
    print(f"\nwrote {a.out}/seed.md, ramp-*.json, ramp-*.png, ramp-*.svg, scan-*.json "
          f"({time.monotonic() - t0:.0f} s)")


def _scans(n: int, p: int, out: str) -> dict[str, dict]:
    """``scan --refault write`` of each seed era, n users x p pages, each written to out."""
    scans = {}
    for era in ("2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36"):
        print(f"scan {era} --refault: {n} users x {p} pages ...", flush=True)
        scans[era] = scan(RunConfig(era=era, users=n, pages=p, cow=1.0), refault="write")
        write_json(os.path.join(out, f"scan-{era}.json"), scans[era])
        print(f"  average walk {scans[era]['first_pass']['avg_visited']:.2f} entries, max "
              f"{scans[era]['first_pass']['max_visited']}; after one unmap-and-refault sweep "
              f"{scans[era]['walks']['avg_visited']:.2f}, max {scans[era]['walks']['max_visited']}",
              flush=True)
    return scans


def _scan_rows(scans: dict[str, dict], n: int, p: int) -> list[tuple[str, str, str]]:
    """The table's rows on walk lengths: the commit's claim beside the scans'."""
    def walk(era: str, key: str) -> str:
        return f"{scans[era][key]['avg_visited']:.1f}"

    return [
        (f"average scan cost, {n} children x {p} COWed pages (the commit's: 1000 x 1000)",
         "O(N) -> 2 (\"from O(N) to 2\")",
         (f"{walk('2.6.33', 'first_pass')} -> {walk('2.6.34-rc1', 'first_pass')} entries ({n} x {p}; "
          f"2.6.34 as released {walk('2.6.34', 'first_pass')})")),
        ("the same after one unmap-and-refault sweep (`scan --refault`)", "(not measured)",
         (f"2.6.33 {walk('2.6.33', 'walks')}, 2.6.34-rc1 {walk('2.6.34-rc1', 'walks')}, "
          f"2.6.34 {walk('2.6.34', 'walks')}, 2.6.36 {walk('2.6.36', 'walks')} entries")),
    ]


CLAIMS = {"2.6.33": "about 9.7k users (16 GB box)", "2.6.34-rc1": "about 29.7k users"}
RATIO_CLAIMS = {"2.6.34-rc1": "3.06x (\"~99% IO wait\")",
                "2.6.34": "(none: the seed's figure is 2.6.34-rc1's; this is the price of the oops fix)"}


def _ramp_rows(doc: dict, eras: list[str], device: str) -> list[tuple[str, str, str]]:
    """The table's rows from one ramp: each era's crossover, each later era's ratio to the
    first's, and the first era's system time at its collapse."""
    base_era = eras[0]
    c33 = doc["crossover"][base_era]
    at_cross = [q for q in doc["points"] if q["era"] == base_era and q["users"] == c33["users"]]
    sys_at = f"{100 * at_cross[0]['system_share']:.1f}%" if at_cross else "n/a"
    rows = [(f"AIM7 crossover, {era}, swap device {device}", CLAIMS.get(era, "(none)"), _crossing(doc, era))
            for era in eras]
    rows += [(f"ratio of crossovers, {era} / {base_era}, swap device {device}",
              RATIO_CLAIMS.get(era, "(none)"), _ratio(doc, era, base_era)) for era in eras[1:]]
    rows.append((f"system time at {base_era}'s collapse, swap device {device}", ">99%",
                 f"{sys_at} (walk + lock wait, at its crossover)"))
    return rows


def _crossing(doc: dict, era: str) -> str:
    c = doc["crossover"][era]
    last = max(q["users"] for q in doc["points"] if q["era"] == era)
    io = f", iowait {100 * c['iowait_share']:.0f}%" if c.get("iowait_share") is not None else ""
    return f"{c['users']} users{io}" if c["users"] else f"not reached by {last}"


def _ratio(doc: dict, era: str, base_era: str) -> str:
    c, c33 = doc["crossover"][era], doc["crossover"][base_era]
    last = max(q["users"] for q in doc["points"] if q["era"] == era)
    if c33["users"] and c["users"]:
        return f"{c['users'] / c33['users']:.2f}x"
    if c33["users"]:
        return f"> {last / c33['users']:.2f}x ({era} did not cross by {last})"
    return f"n/a ({base_era} did not cross)"


if __name__ == "__main__":
    main()

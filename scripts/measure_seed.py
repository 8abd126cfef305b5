#!/usr/bin/env python3
"""The seed, measured on this machine: reclaim-storm in 2.6.33, 2.6.34-rc1 (the seed as committed),
2.6.34 (as released) and 2.6.36 (``--eras``),
one run each, same sizes, same CPUs; prints the anon_vma lock-wait share, walk lengths,
pages scanned per second and their ratios to the first era, and whether the seed's
thresholds hold for each later era (2.6.33 waits >= 40%, the later era <= 5%, and scans
>= 20x more pages per second).  reclaim-storm refaults every page it unmaps at once (a
swap-cache hit): the seed keeps each page on its child's anon_vma; 2.6.34 as released then
moves each page to the family's root anon_vma, so its walks grow back towards 2.6.33's as
the run goes on; 2.6.36 keeps them short.

    python scripts/measure_seed.py [--users 1000 --pages 100 --cpus 2 --duration 20]
    python scripts/measure_seed.py --entry-costs 0,250,1000   # sensitivity to the modelled cost
"""

from __future__ import annotations

import argparse

from stress.analysis.report import mean_shares
from stress.engine.config import DEFAULT_ENTRY_COST_NS, RunConfig
from stress.engine.runner import run


def one(era: str, a: argparse.Namespace, cost: int) -> dict:
    return run(RunConfig(era=era, scenario="reclaim-storm", users=a.users, pages=a.pages, cow=1.0,
                         cpus=a.cpus, duration=a.duration, entry_cost_ns=cost))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--entry-costs", default=str(DEFAULT_ENTRY_COST_NS),
                    help="comma-separated modelled per-entry costs (ns) to measure")
    ap.add_argument("--eras", default="2.6.33,2.6.34-rc1,2.6.34,2.6.36",
                    help="comma-separated eras; the first is the baseline (default 2.6.33,2.6.34-rc1,"
                         "2.6.34,2.6.36)")
    a = ap.parse_args()
    eras = a.eras.split(",")
    print(f"reclaim-storm, {a.users} users x {a.pages} pages, cow 1.0, {a.cpus} CPU workers, "
          f"{a.duration:g} s per run")
    print(f"{'entry ns':>8} {'era':>10} {'avg walk':>9} {'anon_vma wait':>14} {'walk':>6} "
          f"{'pages/s':>9} {'invariants':>10}")
    for cost in [int(x) for x in a.entry_costs.split(",")]:
        res = {era: one(era, a, cost) for era in eras}
        for era, r in res.items():
            print(f"{cost:>8} {era:>10} {r['walks']['avg_visited']:>9.1f} "
                  f"{100 * r['anon_vma_wait_share']:>13.1f}% {100 * mean_shares(r)['walk']:>5.1f}% "
                  f"{r['throughput']['pages_scanned_per_s']:>9.0f} "
                  f"{'ok' if r['invariants']['violations'] == 0 else 'VIOLATED':>10}")
        old = res[eras[0]]
        for era in eras[1:]:
            new = res[era]
            ratio = (new["throughput"]["pages_scanned_per_s"]
                     / max(old["throughput"]["pages_scanned_per_s"], 1e-9))
            checks = [
                (f"{eras[0]} anon_vma wait >= 40%", old["anon_vma_wait_share"] >= 0.40),
                (f"{era} anon_vma wait <= 5%", new["anon_vma_wait_share"] <= 0.05),
                (f"{era} scans >= 20x pages/s", ratio >= 20),
            ]
            print(f"{cost:>8} ratio {era}/{eras[0]} pages scanned per second: {ratio:.1f}x; walk length "
                  f"{old['walks']['avg_visited'] / max(new['walks']['avg_visited'], 1e-9):.1f}x shorter; "
                  + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks))


if __name__ == "__main__":
    main()

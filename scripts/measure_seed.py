#!/usr/bin/env python3
"""The seed, measured on this machine: reclaim-storm in 2.6.33 and 2.6.34, one run each, same
sizes, same CPUs; prints the anon_vma lock-wait share, walk lengths, pages scanned per
second and their ratios, and whether issue #2's thresholds hold (2.6.33 waits >= 40%,
2.6.34 <= 5%, 2.6.34 scans >= 20x more pages per second).

    python scripts/measure_seed.py [--users 1000 --pages 100 --cpus 2 --duration 20]
    python scripts/measure_seed.py --entry-costs 0,250,1000   # sensitivity to the modelled cost
"""

from __future__ import annotations

import argparse

from stress.config import DEFAULT_ENTRY_COST_NS, RunConfig
from stress.report import mean_shares
from stress.runner import run


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
    a = ap.parse_args()
    print(f"reclaim-storm, {a.users} users x {a.pages} pages, cow 1.0, {a.cpus} CPU workers, "
          f"{a.duration:g} s per run")
    print(f"{'entry ns':>8} {'era':>7} {'avg walk':>9} {'anon_vma wait':>14} {'walk':>6} "
          f"{'pages/s':>9} {'invariants':>10}")
    for cost in [int(x) for x in a.entry_costs.split(",")]:
        res = {era: one(era, a, cost) for era in ("2.6.33", "2.6.34")}
        for era, r in res.items():
            print(f"{cost:>8} {era:>7} {r['walks']['avg_visited']:>9.1f} "
                  f"{100 * r['anon_vma_wait_share']:>13.1f}% {100 * mean_shares(r)['walk']:>5.1f}% "
                  f"{r['throughput']['pages_scanned_per_s']:>9.0f} "
                  f"{'ok' if r['invariants']['violations'] == 0 else 'VIOLATED':>10}")
        old, new = res["2.6.33"], res["2.6.34"]
        ratio = new["throughput"]["pages_scanned_per_s"] / max(old["throughput"]["pages_scanned_per_s"], 1e-9)
        checks = [
            ("2.6.33 anon_vma wait >= 40%", old["anon_vma_wait_share"] >= 0.40),
            ("2.6.34 anon_vma wait <= 5%", new["anon_vma_wait_share"] <= 0.05),
            ("2.6.34 scans >= 20x pages/s", ratio >= 20),
        ]
        print(f"{cost:>8} ratio 2.6.34/2.6.33 pages scanned per second: {ratio:.1f}x; walk length "
              f"{old['walks']['avg_visited'] / new['walks']['avg_visited']:.0f}x shorter; "
              + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks))


if __name__ == "__main__":
    main()

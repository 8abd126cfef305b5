#!/usr/bin/env python3
"""The swap device, measured: what one request costs the submitter, and the AIM7 ramp of
2.6.33 and 2.6.34 with the device (a 2010 disk) and without it (infinitely fast), side by
side: jobs/min, system and iowait shares per point, each era's crossover and the iowait
there, and the crossover ratio beside the seed commit's 3.06x.

    PYTHONPATH=. python scripts/measure_swapdev.py [--start-users 50 --end-users 800
        --duration 5 --cpus 2 --latency-ms 8 --iops 150]
    PYTHONPATH=. python scripts/measure_swapdev.py --submit-only   # the per-request cost alone
    PYTHONPATH=. python scripts/measure_swapdev.py --modes disk --start-users 100 --end-users 800 \
        --factor 1.41                                               # finer steps, the disk only
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from shared_model.build import family_capacities
from shared_model.model import Model
from shared_model.swapdev import READ, submit_bio, swap_device_init
from stress.analysis.sweeps import crossover_of, summarize_ramp
from stress.commands.ramp import headline, ramp, ramp_table, user_counts
from stress.engine.config import RunConfig


def submit_cost(n: int = 200_000) -> tuple[float, float]:
    """ns per submit_bio from Python (one request) and per request in batches of 32."""
    with Model.private(family_capacities("2.6.34", 1, 1, 0.0, 1), "2.6.34") as m:
        swap_device_init(m, 0.0, 1e9, 1 << 20, True)
        submit_bio(m, READ, 1)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            submit_bio(m, READ, 1)
        one = (time.perf_counter_ns() - t0) / n
        t0 = time.perf_counter_ns()
        for _ in range(n // 32):
            submit_bio(m, READ, 32)
        batch = (time.perf_counter_ns() - t0) / (n // 32 * 32)
        return one, batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start-users", type=int, default=50)
    ap.add_argument("--end-users", type=int, default=800)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--factor", type=float, default=2.0, help="users multiplied by this per step")
    ap.add_argument("--ram-pages", type=int, default=0, help="frames (default: the ramp's)")
    ap.add_argument("--modes", default="disk,off", help="swap devices to ramp, comma-separated")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--latency-ms", type=float, default=8.0)
    ap.add_argument("--iops", type=float, default=150.0)
    ap.add_argument("--submit-only", action="store_true", help="only the per-request cost")
    a = ap.parse_args()
    one, batch = submit_cost()
    print(f"submit_bio from Python: {one:.0f} ns per single request, {batch:.1f} ns per request "
          f"in batches of 32 (one cmpxchg per batch)")
    if a.submit_only:
        return
    users = user_counts(a.start_users, a.end_users, None, a.factor)
    eras = ["2.6.33", "2.6.34"]
    docs: dict[str, dict[str, Any]] = {}
    for mode in a.modes.split(","):
        base = RunConfig(scenario="forking-server", pages=20, cow=1.0, cpus=a.cpus, duration=a.duration,
                         ram_pages=a.ram_pages, swap_device=mode, swap_latency_ms=a.latency_ms,
                         swap_iops=a.iops)
        t0 = time.monotonic()
        docs[mode] = doc = ramp(eras, users, base)
        print(f"\n=== swap device {mode} ({time.monotonic() - t0:.0f} s)")
        print(ramp_table(doc))
        print(headline(doc))
    print(f"\n{'device':<6} {'era':<7} {'crossover':>9} {'iowait there':>12} {'peak jobs/min':>13} "
          f"{'max iowait':>10} {'max system':>10}")
    for mode, doc in docs.items():
        for era in eras:
            rows = summarize_ramp(doc["points"], era, doc["config"]["threshold"])
            c = crossover_of(rows)
            cross = str(c["users"]) if c["users"] else f">{users[-1]}"
            io = f"{100 * c['iowait_share']:.0f}%" if c["iowait_share"] is not None else "-"
            print(f"{mode:<6} {era:<7} {cross:>9} {io:>12} {c['peak_jobs_per_min']:>13.0f} "
                  f"{100 * max(r['iowait_share'] for r in rows):>9.0f}% "
                  f"{100 * max(r['system_share'] for r in rows):>9.0f}%")
        a33, a34 = (doc["crossover"][e]["users"] for e in eras)
        if a33 and a34:
            print(f"{mode:<6} crossover ratio 2.6.34/2.6.33: {a34 / a33:.2f}x (the seed commit: 3.06x)")
        elif a33:
            print(f"{mode:<6} crossover ratio 2.6.34/2.6.33: > {users[-1] / a33:.2f}x (2.6.34 never crossed; "
                  f"the seed commit: 3.06x)")
    bad = sum(p["invariant_violations"] for d in docs.values() for p in d["points"])
    print(f"invariants: {'ok' if not bad else f'{bad} VIOLATIONS'} in "
          f"{sum(len(d['points']) for d in docs.values())} runs")


if __name__ == "__main__":
    main()

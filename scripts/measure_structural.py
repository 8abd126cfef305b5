#!/usr/bin/env python3
"""The structural eras measured: fork-chain (anon_vmas per VMA and fork time, per era) and
mprotect-split (walk visits per era), exact counts from ``scan --scenario``, and whether
the later eras' structural targets hold:

* fork-chain, G generations, one VMA: eras without reuse >= 500 live anon_vmas at G = 1000,
  growing by one a generation, fork time growing (last tenth of the generations against the
  first); eras with reuse (3.19, 6.0) at most 4 per VMA, fork time flat;
* mprotect-split, K pieces: average walk visits >= 500 before 3.7 and <= 3 from 3.7;
* with ``--stop-check``: 2.6.34 to 100,000 generations stops with one line before the
  segment fills.

    PYTHONPATH=. python scripts/measure_structural.py [--generations 1000 --pages 16 --pieces 1000
        --users 1] [--stop-check] [--out docs/results/eras]
"""

from __future__ import annotations

import argparse
import json
import os

from shared_model.eras import ERAS
from stress.commands.scan import ScanStopped, scan_scenario
from stress.engine.config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=1000)
    ap.add_argument("--pages", type=int, default=16, help="fork-chain pages (default 16)")
    ap.add_argument("--pieces", type=int, default=1000)
    ap.add_argument("--users", type=int, default=1, help="mprotect-split children (default 1)")
    ap.add_argument("--stop-check", action="store_true", help="also run 2.6.34 to 100,000 generations")
    ap.add_argument("--out", metavar="DIR", help="write each result as DIR/SCENARIO-ERA.json")
    a = ap.parse_args()
    chain_eras = [n for n, e in ERAS.items() if e.chain]

    def save(res: dict, name: str) -> None:
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, name), "w") as f:
                json.dump(res, f, indent=1)

    print(f"fork-chain: {a.generations} generations, one VMA of {a.pages} pages")
    print(f"{'era':>7} {'anon_vmas':>9} {'avcs':>6} {'per VMA':>8} {'fork us first':>13} "
          f"{'fork us last':>12}  target")
    for era in chain_eras:
        res = scan_scenario(RunConfig(era=era, scenario="fork-chain", generations=a.generations,
                                      pages=a.pages))
        save(res, f"fork-chain-{era}.json")
        s, mo, sm = res["generations"], res["model"], res["summary"]
        reuse = ERAS[era].reuse != "none"
        linear = s["anon_vmas"] == list(range(2, a.generations + 2))
        first, last = sm["fork_ns_first_tenth"] / 1e3, sm["fork_ns_last_tenth"] / 1e3
        ok = (sm["max_anon_vmas"] <= 4 and last < 2 * first) if reuse else \
            (mo["anon_vmas"] >= 500 and linear and last > 2 * first)
        print(f"{era:>7} {mo['anon_vmas']:>9} {mo['avcs']:>6} {sm['anon_vmas_per_vma']:>8.1f} {first:>13.1f} "
              f"{last:>12.1f}  {'ok' if ok else 'MISSED'}")
    print()
    print(f"mprotect-split: {a.pieces} pieces, {a.users} children, {a.pieces} pages")
    print(f"{'era':>7} {'avg visited':>11} {'max':>6} {'avg examined':>12}  target")
    for era in ERAS:
        res = scan_scenario(RunConfig(era=era, scenario="mprotect-split", pieces=a.pieces, users=a.users,
                                      pages=a.pieces))
        save(res, f"mprotect-split-{era}.json")
        w = res["walks"]
        ok = w["avg_visited"] <= 3 if ERAS[era].tree else w["avg_visited"] >= 500
        print(f"{era:>7} {w['avg_visited']:>11.2f} {w['max_visited']:>6} {w['avg_nodes_examined']:>12.2f}  "
              f"{'ok' if ok else 'MISSED'}")
    if a.stop_check:
        print()
        try:
            scan_scenario(RunConfig(era="2.6.34", scenario="fork-chain", generations=100_000, pages=a.pages))
            print("2.6.34 to 100,000 generations: did not stop (MISSED)")
        except ScanStopped as e:
            print(f"2.6.34 to 100,000 generations: stopped: {e}")


if __name__ == "__main__":
    main()

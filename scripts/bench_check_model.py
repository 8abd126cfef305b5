"""How long check_model() takes on a large model.

    python scripts/bench_check_model.py [--users 100000] [--pages 1000] [--era 2.6.33 --era 2.6.34]

Builds the forking-server family (every child COWs every page) in one process, then
times check_model() on it; prints the build time, the check time and the violations
found (0 expected).  Before it was vectorised: 45 s at 100000 x 1000.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared_model.build import build_family, check_fits, family_capacities
from shared_model.invariants import check_model
from shared_model.model import Model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--cow", type=float, default=1.0)
    ap.add_argument("--era", action="append", dest="eras")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    for era in a.eras or ["2.6.33", "2.6.34"]:
        caps = family_capacities(era, a.users, a.pages, a.cow, cpus=0)
        check_fits(caps)
        t0 = time.perf_counter()
        with Model.private(caps, era) as m:
            build_family(m, a.users, a.pages, a.cow)
            build = time.perf_counter() - t0
            times = []
            for _ in range(a.repeat):
                t1 = time.perf_counter()
                found = check_model(m)
                times.append(time.perf_counter() - t1)
            print(f"era {era}  users {a.users}  pages {a.pages}  cow {a.cow}  segment "
                  f"{caps.nbytes() / 2**30:.2f} GiB  build {build:.1f} s  check_model "
                  f"{min(times):.2f} s (best of {a.repeat})  violations {len(found)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A/A check: the same configuration twice inside one interleaved scale, judged by
compare's Welch t-test.  Identical curves should be "Not significant" (p >= 0.05) in about
95% of tries; a drifting machine with repeats run back to back would not be.

    python scripts/aa_check.py [--tries 5] [--repeat 5] [--cpus 2] [--duration 2]

Prints one line per try: the p-values of throughput and of lock wait share.
"""

from __future__ import annotations

import argparse

from stress.analysis.compare import ALPHA, welch_t_test
from stress.commands.scale import curves_of, scale
from stress.engine.config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--era", default="2.6.33")
    ap.add_argument("--lock", default="spin")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--pages", type=int, default=50)
    a = ap.parse_args()
    base = RunConfig(scenario="reclaim-storm", users=a.users, pages=a.pages, duration=a.duration)
    curves = curves_of([a.era], [a.lock, a.lock])
    passed = 0
    for t in range(a.tries):
        doc = scale(base, curves, [a.cpus], repeat=a.repeat)
        by = {c.label: [p for p in doc["points"] if p["curve"] == c.label] for c in curves}
        first, second = (by[c.label] for c in curves)
        thr = welch_t_test([p["throughput"] for p in first], [p["throughput"] for p in second])
        wait = welch_t_test([p["wait_share"] for p in first], [p["wait_share"] for p in second])
        ok = not thr.significant
        passed += ok
        print(f"try {t + 1}: throughput p={thr.p:.3f} ({'Not significant' if ok else 'significant'}), "
              f"lock wait p={wait.p:.3f}; means {sum(p['throughput'] for p in first) / a.repeat:,.0f} "
              f"vs {sum(p['throughput'] for p in second) / a.repeat:,.0f}", flush=True)
    print(f"{passed} of {a.tries} tries Not significant at {ALPHA:g} (target: at least 4 of 5)")


if __name__ == "__main__":
    main()

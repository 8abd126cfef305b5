#!/usr/bin/env python3
"""The failure drill, with numbers: SIGKILL one CPU at a random moment in N
consecutive runs (each must end within 5 s of the kill, exit non-zero with a report, and
leave no process and no /dev/shm segment), then M consecutive short runs that must leave
/dev/shm exactly as it was.

    python scripts/failure_drill.py [--kills 20] [--runs 100]

The kills rotate over eras whose locks wait differently: 2.6.3x's ticket
spinlocks, 3.0's mutex spinning on its owner, 3.19's rwsem writers spinning on a running
owner, 6.0's qspinlock (the pending bit) and rwsem (the hand-off bit).  A CPU killed
while it spins, pends or holds the hand-off bit must end the run like any other death,
and a lock it left unusable is named in the report ("wedged lock: ..."), never silently.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time

import psutil

from shared_model.segment import leftover_segments

ERAS = ["2.6.33", "2.6.34", "2.6.36", "3.0", "3.19", "6.0"]
WEDGED = re.compile(r"wedged lock: (\S+)")


def kill_one(i: int, rng: random.Random) -> tuple[float, int, bool, bool, list[str]]:
    era = ERAS[i % len(ERAS)]
    scenario = ["reclaim-storm", "forking-server"][i % 2]
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", "--quiet", "--era", era,
                          "--scenario", scenario,
                          "--users", "100", "--pages", "10", "--cpus", "3", "--duration", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(p.pid)
    deadline = time.monotonic() + 30
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(workers) < 3:
        workers = [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
        time.sleep(0.05)
    time.sleep(rng.uniform(0.2, 2.0))
    victim = rng.choice(workers)
    t = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    took = time.monotonic() - t
    time.sleep(0.2)
    alive = any(psutil.pid_exists(w.pid) and psutil.Process(w.pid).status() != psutil.STATUS_ZOMBIE
                for w in workers)
    left = any(n.startswith(f"rmap-stress-{p.pid}-") for n in leftover_segments())
    return (took, p.returncode, "died (killed by SIGKILL)" in err, not alive and not left,
            WEDGED.findall(err))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--runs", type=int, default=100)
    a = ap.parse_args()
    rng = random.Random(1)
    worst, ok = 0.0, 0
    for i in range(a.kills):
        took, rc, reported, clean, wedged = kill_one(i, rng)
        worst = max(worst, took)
        good = took < 5 and rc != 0 and reported and clean
        ok += good
        print(f"kill {i + 1:2d} ({ERAS[i % len(ERAS)]}): ended {took:.2f} s after the kill, exit {rc}, "
              f"report {'yes' if reported else 'NO'}, {'nothing left' if clean else 'LEFT SOMETHING'}"
              f"{', wedged ' + ' '.join(wedged) if wedged else ''}{'' if good else '  <-- FAIL'}")
    print(f"{ok}/{a.kills} kills handled; slowest end {worst:.2f} s after the kill")
    before = sorted(os.listdir("/dev/shm"))
    from stress.engine.config import RunConfig
    from stress.engine.runner import run

    t = time.monotonic()
    bad = 0
    for i in range(a.runs):
        res = run(RunConfig(era=["2.6.33", "2.6.34"][i % 2], users=10, pages=2, cpus=2, duration=0.05))
        bad += res["invariants"]["violations"] > 0
    after = sorted(os.listdir("/dev/shm"))
    print(f"{a.runs} short runs in {time.monotonic() - t:.1f} s: {bad} with violations; /dev/shm "
          f"{'exactly as before' if before == after else 'CHANGED: ' + str(set(after) ^ set(before))}")


if __name__ == "__main__":
    main()

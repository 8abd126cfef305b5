"""Start-up and shut-down at many CPUs: how long until every CPU is at the gate, and how
long a run takes beyond its duration, through the real CLI.

    python scripts/startup_scale.py [--cpus 64,256,512,1024] [--duration 2]

Each count runs `rmap-stress run` (reclaim-storm, 2.6.33, 1000 users x 100 pages) once,
with --force above 1024; prints wall time, the phases the run recorded (build, start =
fork + gate, stop = reaping the CPUs, check = check_model) and the wall time beyond the
duration.  The target on 2 cores: --cpus 256 at the gate within 10 s and the run
over within 15 s of its duration.

Then signals during start-up: SIGINT while a large model is being built (30000 users x
1000 pages) and while 256 CPUs are being forked; prints the seconds from the signal to the
exit, the exit status and the processes left (target: within 2 s, 130, none).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from stress.engine.results import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(cpus: int, duration: float, out: str) -> tuple[float, int, dict[str, float]]:
    cmd = [sys.executable, "-m", "stress", "run", "--era", "2.6.33", "--users", "1000",
           "--pages", "100", "--cpus", str(cpus), "--duration", str(duration), "--quiet",
           "--json", out] + (["--force"] if cpus > 1024 else [])
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       check=False, timeout=600)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 1):
        print(p.stderr.strip()[-500:], file=sys.stderr)
        return wall, p.returncode, {}
    doc = load(out)
    phases = dict(doc.get("phases", {}))
    phases["violations"] = doc["invariants"]["violations"]
    return wall, p.returncode, phases


def interrupted(args: list[str], after: float) -> tuple[float, int, int]:
    """Start a run, SIGINT its group ``after`` seconds in; (seconds to exit, status, left)."""
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", *args], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after)
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    rc = p.wait(timeout=120)
    took = time.monotonic() - t0
    time.sleep(0.5)
    left = 0
    for pid in os.listdir("/proc"):
        try:
            left += pid.isdigit() and os.getsid(int(pid)) == p.pid
        except OSError:
            pass
    return took, rc, left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpus", default="64,256,512,1024")
    ap.add_argument("--duration", type=float, default=2.0)
    a = ap.parse_args()
    print(f"online CPUs {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'cpus':>6} {'wall s':>7} {'over s':>7} {'build s':>8} {'start s':>8} {'stop s':>7} "
          f"{'check s':>8} {'rc':>3} {'violations':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.cpus.split(",")):
            wall, rc, ph = one(n, a.duration, os.path.join(tmp, f"r{n}.json"))
            print(f"{n:>6} {wall:>7.1f} {wall - a.duration:>7.1f} {ph.get('build_s', 0):>8.2f} "
                  f"{ph.get('start_s', 0):>8.2f} {ph.get('stop_s', 0):>7.2f} {ph.get('check_s', 0):>8.2f} "
                  f"{rc:>3} {ph.get('violations', '-'):>10}", flush=True)
    for what, args, after in (
            ("build, 30000 x 1000", ["--users", "30000", "--pages", "1000", "--cpus", "2"], 3.0),
            ("fork, 256 CPUs", ["--users", "1000", "--pages", "100", "--cpus", "256"], 1.2)):
        took, rc, left = interrupted(["--era", "2.6.33", "--duration", "30", *args], after)
        print(f"SIGINT during {what}: exit {took:.2f} s after the signal, status {rc}, "
              f"processes left {left}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

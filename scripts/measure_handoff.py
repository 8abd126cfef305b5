"""The cost of one lock hand-off between two CPUs, as the simulator's locks pay it.

Two processes pinned to two different CPUs share one process-shared spinlock (the
project's ``SpinPrimitive``, polled from Python as ``spin_lock_slowpath`` polls it).  They
pass it back and forth: the holder waits until the other is spinning, stamps the time and
unlocks; the spinner stamps the time it got the lock.  The difference is one hand-off:
the release reaching the spinner's cache, plus the spinner's polling period.

Prints ``handoff_ns <median>`` (the figure ``--handoff-ns`` takes) and the spread.
Timing is noisy on a shared machine: run it on a quiet one, and more than once.

    python scripts/measure_handoff.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import statistics
import time

import numpy as np

from shared_model.locks import SpinPrimitive

LOCK_OFF, STAMP_OFF, SEQ_OFF, SPINNING_OFF = 0, 64, 128, 192


def player(mm: mmap.mmap, me: int, rounds: int, out: list[int]) -> None:
    """Alternate with the other player: ``me`` holds on even rounds if 0, odd ones if 1."""
    prim = SpinPrimitive()
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    addr = base + LOCK_OFF
    words = np.frombuffer(mm, dtype=np.int64)
    stamp, seq, spinning = STAMP_OFF // 8, SEQ_OFF // 8, SPINNING_OFF // 8
    for r in range(rounds):
        if r % 2 == me:  # I hold the lock: release it once the other is spinning on it
            while words[spinning] != r + 1:
                pass
            time.sleep(0)  # let the spinner get into its loop
            t = time.perf_counter_ns() + 20_000
            while time.perf_counter_ns() < t:
                pass
            words[stamp] = time.perf_counter_ns()
            prim.unlock(addr)
            while words[seq] != r + 1:  # wait until it has it (test-and-set is unfair)
                pass
        else:  # I spin until the holder lets go
            words[spinning] = r + 1
            prim.spin_lock_slowpath(addr, lambda: False)
            got = time.perf_counter_ns()
            out.append(got - int(words[stamp]))
            words[seq] = r + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20000)
    a = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs")
    mm = mmap.mmap(-1, 4096)
    prim = SpinPrimitive()
    mm[LOCK_OFF:LOCK_OFF + 64] = prim.init_template()
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    if prim.trylock(base + LOCK_OFF):  # player 0 starts holding it
        raise SystemExit("could not take a fresh lock")
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {cpus[1]})
        samples: list[int] = []
        player(mm, 1, a.rounds, samples)
        os.write(w_fd, np.array(samples, dtype=np.int64).tobytes())
        os._exit(0)
    os.sched_setaffinity(0, {cpus[0]})
    mine: list[int] = []
    player(mm, 0, a.rounds, mine)
    os.close(w_fd)
    data = b""
    while chunk := os.read(r_fd, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    allv = sorted(mine + np.frombuffer(data, dtype=np.int64).tolist())
    q = statistics.quantiles(allv, n=10)
    print(f"{len(allv)} hand-offs between CPU {cpus[0]} and CPU {cpus[1]}: "
          f"p10 {q[0]:.0f} ns, p90 {q[-1]:.0f} ns, mean {statistics.fmean(allv):.0f} ns")
    print(f"handoff_ns {statistics.median(allv):.0f}")


if __name__ == "__main__":
    main()

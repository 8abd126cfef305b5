"""The cost of one lock hand-off between two CPUs, as the model's compiled locks pay it.

Two processes pinned to two different CPUs share one ticket spinlock (the project's
compiled ``ticket_lock``/``ticket_unlock`` on a shared mapping).  They pass it back and
forth: the holder waits until the other has taken its ticket and is spinning, stamps the
time (the lockstat clock: the TSC through the calibration) and unlocks; the spinner stamps
the time its ticket was served.  The difference is one hand-off: the release store
reaching the spinner's cache line, plus the spinner's ``pause`` period.  Everything
between the two stamps runs compiled; no Python is timed.

Prints ``handoff_ns <median>`` (the figure ``--handoff-ns`` takes) and the spread.
Timing is noisy on a shared machine: run it on a quiet one, and more than once.

``--futex`` measures instead the hand-off to a sleeper, what a sleeping lock's strict FIFO
hand-off (3.8's rwsem) puts on the critical path: the waiter sleeps in ``futex_wait`` on a
word of the shared page (as the model's mutex and rwsem waiters do), the holder stamps the
time, changes the word and calls ``futex_wake``; the waiter stamps the time it runs again.
The difference is the wake-up: the syscall, the scheduler's wake-up of an idle CPU, and
the waiter's return to user space.  Prints ``wakeup_ns <median>`` and the spread.

    PYTHONPATH=. python scripts/measure_handoff.py [--rounds 20000] [--futex]
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics

import numpy as np
from numba import njit

from shared_model.locking.atomics import READ_ONCE, cpu_relax, futex_wait, futex_wake, smp_store_release
from shared_model.locking.clock import calibrate_tsc, sched_clock
from shared_model.locking.ticket import NEXT, SERVING, ticket_lock, ticket_unlock

# int64 word indices in the shared page, each on its own cache line.
LOCK_W, STAMP_W, SEQ_W, QUEUED_W, STOP_W, FUTEX_W = 0, 8, 16, 24, 32, 40
HOLD_NS = 20_000  # the holder keeps the lock this long once the spinner waits
SLEEP_NS = 200_000  # ... and the futex waiter this long, time to be asleep


@njit
def player(words: np.ndarray, me: int, rounds: int, out: np.ndarray, cal: np.ndarray) -> int:
    """Alternate with the other player: ``me`` holds on even rounds if 0, odd ones if 1.
    Fills ``out`` with the hand-offs it received; returns how many."""
    mult, shift, cyc0, ns0 = cal[0], cal[1], cal[2], cal[3]
    n = 0
    for r in range(rounds):
        if r % 2 == me:  # I hold the lock: release it once the other's ticket is out
            while READ_ONCE(words, QUEUED_W) != r + 1:
                cpu_relax()
            # its ticket is taken (next is past the one being served): it is spinning
            while READ_ONCE(words, LOCK_W + NEXT) == READ_ONCE(words, LOCK_W + SERVING) + 1:
                cpu_relax()
            end = sched_clock(mult, shift, cyc0, ns0) + HOLD_NS
            while sched_clock(mult, shift, cyc0, ns0) < end:
                cpu_relax()
            smp_store_release(words, STAMP_W, sched_clock(mult, shift, cyc0, ns0))
            ticket_unlock(words, LOCK_W)
            while READ_ONCE(words, SEQ_W) != r + 1:  # wait until it has it
                cpu_relax()
        else:  # I spin until the holder lets go
            smp_store_release(words, QUEUED_W, r + 1)
            ticket_lock(words, LOCK_W, STOP_W)
            got = sched_clock(mult, shift, cyc0, ns0)
            out[n] = got - READ_ONCE(words, STAMP_W)
            n += 1
            smp_store_release(words, SEQ_W, r + 1)
    return n


@njit
def sleeper(words: np.ndarray, me: int, rounds: int, out: np.ndarray, cal: np.ndarray) -> int:
    """As ``player``, but the waiter sleeps on a futex and the holder wakes it: fills
    ``out`` with the wake-ups it received (stamp to running again); returns how many.
    The word counts rounds: in round r the waiter sleeps while it reads r."""
    mult, shift, cyc0, ns0 = cal[0], cal[1], cal[2], cal[3]
    n = 0
    for r in range(rounds):
        if r % 2 == me:  # the holder: let the waiter fall asleep, then hand over
            while READ_ONCE(words, QUEUED_W) != r + 1:
                cpu_relax()
            end = sched_clock(mult, shift, cyc0, ns0) + SLEEP_NS
            while sched_clock(mult, shift, cyc0, ns0) < end:
                cpu_relax()
            smp_store_release(words, STAMP_W, sched_clock(mult, shift, cyc0, ns0))
            smp_store_release(words, FUTEX_W, r + 1)
            futex_wake(words, FUTEX_W, 1)
            while READ_ONCE(words, SEQ_W) != r + 1:
                cpu_relax()
        else:  # the waiter: sleep until the word moves past r
            smp_store_release(words, QUEUED_W, r + 1)
            while READ_ONCE(words, FUTEX_W) == r:
                futex_wait(words, FUTEX_W, r, 1_000_000_000)
            got = sched_clock(mult, shift, cyc0, ns0)
            out[n] = got - READ_ONCE(words, STAMP_W)
            n += 1
            smp_store_release(words, SEQ_W, r + 1)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--futex", action="store_true",
                    help="the hand-off to a waiter asleep on a futex (a sleeping lock's wake-up)")
    a = ap.parse_args()
    play = sleeper if a.futex else player
    if a.futex and a.rounds == 20000:
        a.rounds = 5000  # each round holds 200 us: about 1 s
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("measure_handoff: needs two CPUs in this process's affinity")
    cal = np.array(calibrate_tsc(), dtype=np.int64)
    mm = mmap.mmap(-1, 4096)
    words = np.frombuffer(mm, dtype=np.int64)
    scratch = np.zeros(2, dtype=np.int64)
    play(np.zeros(64, dtype=np.int64), 1, 0, scratch, cal)  # compile before the fork
    ticket_lock(words, LOCK_W, STOP_W)  # player 0 starts holding it
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setaffinity(0, {cpus[1]})
            out = np.zeros(a.rounds, dtype=np.int64)
            n = play(words, 1, a.rounds, out, cal)
            os.write(w_fd, out[:n].tobytes())
        finally:
            os._exit(0)
    os.close(w_fd)
    os.sched_setaffinity(0, {cpus[0]})
    mine = np.zeros(a.rounds, dtype=np.int64)
    n = play(words, 0, a.rounds, mine, cal)
    data = b""
    while chunk := os.read(r_fd, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    allv = sorted(mine[:n].tolist() + np.frombuffer(data, dtype=np.int64).tolist())
    q = statistics.quantiles(allv, n=10)
    if a.futex:
        print(f"{len(allv)} futex wake-ups between CPU {cpus[0]} and CPU {cpus[1]}: "
              f"p10 {q[0]:.0f} ns, p90 {q[-1]:.0f} ns, mean {statistics.fmean(allv):.0f} ns")
        print(f"wakeup_ns {statistics.median(allv):.0f}")
        return
    print(f"{len(allv)} hand-offs of a ticket lock between CPU {cpus[0]} and CPU {cpus[1]}: "
          f"p10 {q[0]:.0f} ns, p90 {q[-1]:.0f} ns, mean {statistics.fmean(allv):.0f} ns")
    print(f"handoff_ns {statistics.median(allv):.0f}")


if __name__ == "__main__":
    main()

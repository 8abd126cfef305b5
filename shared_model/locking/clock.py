"""The lockstat clock: the TSC converted to nanoseconds, as the kernel's sched_clock.

lockstat and the walk/wait accounting read the clock twice per lock round trip (once at
acquire, once at release, as the kernel's ``lock_acquired``/``lock_release`` stamps).
``clock_gettime(CLOCK_MONOTONIC)`` costs about 21 ns through the vDSO on this machine;
``rdtsc`` about 9 ns.  So the compiled code reads the TSC and converts it the kernel's way
(``cyc2ns``: ``ns = ns0 + ((cyc - cyc0) * mult) >> shift``, a 128-bit product), with
``mult``/``shift``/``cyc0``/``ns0`` calibrated once against CLOCK_MONOTONIC by the process
that creates the segment and stored in the segment header, so that every CPU process
converts with the same numbers and timestamps taken on different CPUs compare (and
compare with the parent's ``time.perf_counter_ns()``, which is CLOCK_MONOTONIC too).

The TSC is used only when ``/proc/cpuinfo`` lists both ``constant_tsc`` (it ticks at a
fixed rate whatever the core's frequency) and ``nonstop_tsc`` (it keeps ticking in deep
idle states); otherwise ``mult`` is 0 and the clock is clock_gettime.  Setting
``RMAP_STRESS_CLOCK=clock_gettime`` forces the fallback (to compare the two).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .atomics import clock_ns, mul_u64_u32_shr, rdtsc
from .cached_compile import cached_njit

TSC_SHIFT = 32  # mult = ns per cycle * 2**32 (fits 32 bits for any TSC faster than 1 GHz)
CALIBRATION_NS = 20_000_000  # 20 ms between the two samples: ~1 ppm with ~30 ns brackets
_calibration: tuple[int, int, int, int] | None = None


def tsc_usable(cpuinfo: str | None = None) -> bool:
    """Both ``constant_tsc`` and ``nonstop_tsc`` among the CPU flags (of ``cpuinfo``, the
    text of /proc/cpuinfo; read it when None), and not overridden by the environment."""
    if os.environ.get("RMAP_STRESS_CLOCK", "") == "clock_gettime":
        return False
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return "constant_tsc" in flags and "nonstop_tsc" in flags
    return False


@cached_njit
def tsc_sample() -> tuple[int, int, int]:
    """(TSC before, CLOCK_MONOTONIC, TSC after), read back to back."""
    c0 = rdtsc()
    ns = clock_ns()
    c1 = rdtsc()
    return c0, ns, c1


def _tight_sample(tries: int = 64) -> tuple[int, int]:
    """(cycles, ns) of the same instant: of several samples, the one whose two TSC reads
    are closest (least disturbed), the TSC taken at the middle of its bracket."""
    best = (1 << 62, 0, 0)
    for _ in range(tries):
        c0, ns, c1 = tsc_sample()
        if c1 - c0 < best[0]:
            best = (c1 - c0, (c0 + c1) // 2, ns)
    return best[1], best[2]


def calibrate_tsc() -> tuple[int, int, int, int]:
    """(mult, shift, cyc0, ns0) for ``sched_clock``; (0, 0, 0, 0) when the TSC is not
    usable (the clock is then clock_gettime).  Measured once per process (about 20 ms)."""
    global _calibration
    if _calibration is None:
        if not tsc_usable():
            _calibration = (0, 0, 0, 0)
        else:
            c1, n1 = _tight_sample()
            time.sleep(CALIBRATION_NS / 1e9)
            c2, n2 = _tight_sample()
            if c2 <= c1 or n2 <= n1:  # a TSC that does not advance: not a clock
                _calibration = (0, 0, 0, 0)
            else:
                mult = round((n2 - n1) * (1 << TSC_SHIFT) / (c2 - c1))
                _calibration = (mult, TSC_SHIFT, c2, n2)
    return _calibration


@cached_njit(llvm_inline=True)
def sched_clock(mult: int, shift: int, cyc0: int, ns0: int) -> int:
    """Nanoseconds on CLOCK_MONOTONIC's scale: the TSC through the calibration, or
    clock_gettime when ``mult`` is 0."""
    if mult == 0:
        return clock_ns()
    d = rdtsc() - cyc0
    if d >= 0:
        return ns0 + mul_u64_u32_shr(d, mult, shift)
    return ns0 - mul_u64_u32_shr(-d, mult, shift)  # a TSC a few cycles behind cyc0's CPU


@cached_njit
def sched_clock_of(cal: np.ndarray) -> int:
    """``sched_clock`` with the calibration in ``cal[0:4]`` (for tests and scripts)."""
    return sched_clock(cal[0], cal[1], cal[2], cal[3])

"""The lockstat clock (shared_model/locking/clock.py): the TSC through a calibration kept
in the segment header, so that every CPU process converts with the same numbers; the
fallback to clock_gettime when the CPU flags do not promise a constant, non-stop TSC."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from shared_model.build import family_capacities
from shared_model.locking.clock import TSC_SHIFT, calibrate_tsc, sched_clock_of, tsc_usable
from shared_model.segment import Segment

FLAGS = "processor\t: 0\nflags\t\t: fpu tsc {}\nbugs\t\t:\n"


@pytest.mark.parametrize(("flags", "usable"), [
    ("constant_tsc nonstop_tsc", True),
    ("constant_tsc", False),
    ("nonstop_tsc", False),
    ("", False),
])
def test_tsc_is_used_only_with_constant_and_nonstop_flags(flags: str, usable: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMAP_STRESS_CLOCK", raising=False)
    assert tsc_usable(FLAGS.format(flags)) is usable


def test_environment_forces_clock_gettime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RMAP_STRESS_CLOCK", "clock_gettime")
    assert not tsc_usable(FLAGS.format("constant_tsc nonstop_tsc"))


def test_calibration_is_in_the_segment_header() -> None:
    seg = Segment.create(family_capacities("2.6.34", 1, 1, 1.0, 1))
    try:
        hdr = seg["header"][0]
        got = (int(hdr["tsc_mult"]), int(hdr["tsc_shift"]), int(hdr["tsc_cyc0"]), int(hdr["tsc_ns0"]))
        assert got == calibrate_tsc()
        if tsc_usable():
            assert got[0] > 0 and got[1] == TSC_SHIFT
        else:
            assert got[0] == 0
    finally:
        seg.close()
        seg.unlink()


@pytest.mark.parametrize("use_tsc", [True, False])
def test_clock_is_monotonic_time_in_every_process(use_tsc: bool) -> None:
    """A timestamp taken in a forked process with the shared calibration falls between two
    CLOCK_MONOTONIC readings of the parent around it (the clocks agree across processes:
    what lets the parent age a CPU's state_since_ns)."""
    cal = np.array(calibrate_tsc(), dtype=np.int64)
    if not use_tsc:
        cal[:] = 0
    elif cal[0] == 0:
        pytest.skip("no usable TSC on this machine")
    r, w = os.pipe()
    before = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(w, int(sched_clock_of(cal)).to_bytes(8, "little", signed=True))
        finally:
            os._exit(0)
    child_ns = int.from_bytes(os.read(r, 8), "little", signed=True)
    os.waitpid(pid, 0)
    after = time.perf_counter_ns()
    os.close(r)
    os.close(w)
    assert before <= child_ns <= after
    a, b = sched_clock_of(cal), sched_clock_of(cal)
    assert a <= b

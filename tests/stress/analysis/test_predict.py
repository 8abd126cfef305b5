"""The queueing models against values worked by hand, and their inputs from results.

The expected values below are worked out on paper, not by the code under test:

M/M/1//N, N = 2, T = S (ρ = 1): the terms N!/(N-k)!·ρ^k are 1, 2, 2, so P = 1/5, 2/5, 2/5.
The lock is busy 4/5 of the time: X = 0.8/S.  One CPU waits in state 2: wait share
(2/5 · 1)/2 = 1/5.

M/M/1//N, N = 3, T = 2S (ρ = 1/2): terms 1, 3/2, 3/2, 3/4 (sum 19/4), so
P = 4/19, 6/19, 6/19, 3/19; busy 15/19; waiters 1·6/19 + 2·3/19 = 12/19, over 3 CPUs 4/19.

Ticket chain, N = 2, T = S = 1 us, c = 2 us: service 1 + 2·1/2 = 2 us in state 1 and
1 + 2·2/2 = 3 us in state 2.  P1 = P0 · (2/1)·2 = 4 P0, P2 = P1 · (1/1)·3 = 12 P0, so
P = 1/17, 4/17, 12/17.  X = (4/17)/2 + (12/17)/3 = 6/17 per us; wait share
1 - X·(T + S)/N = 1 - (6/17)·2/2 = 11/17.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stress.analysis.predict import (
    PredictError,
    format_prediction,
    hottest_class,
    lock_times,
    predict_run,
    relative_error,
    repairman,
    ticket,
)

US = 1000.0  # ns


def test_repairman_two_cpus_equal_times() -> None:
    q = repairman(2, think_ns=US, hold_ns=US)
    assert q.busy == pytest.approx(4 / 5)
    assert q.acquisitions_per_s == pytest.approx(0.8 * 1e6)
    assert q.wait_share == pytest.approx(1 / 5)


def test_repairman_three_cpus() -> None:
    q = repairman(3, think_ns=2 * US, hold_ns=US)
    assert q.busy == pytest.approx(15 / 19)
    assert q.acquisitions_per_s == pytest.approx(15 / 19 * 1e6)
    assert q.wait_share == pytest.approx(4 / 19)


def test_repairman_one_cpu_never_waits() -> None:
    q = repairman(1, think_ns=3 * US, hold_ns=US)
    assert q.wait_share == 0.0
    assert q.acquisitions_per_s == pytest.approx(1e9 / (4 * US))


def test_repairman_saturates_without_overflow() -> None:
    # N!·ρ^N overflows a float long before this; the lock is then always busy, X = 1/S.
    q = repairman(1024, think_ns=US, hold_ns=100 * US)
    assert q.busy == pytest.approx(1.0)
    assert q.wait_share == pytest.approx(1 - 101 / 1024 / 100)


def test_ticket_chain_worked_example() -> None:
    q = ticket(2, think_ns=US, hold_ns=US, handoff_ns=2 * US)
    assert q.acquisitions_per_s == pytest.approx(6 / 17 * 1e6)
    assert q.busy == pytest.approx(16 / 17)
    assert q.wait_share == pytest.approx(11 / 17)


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_ticket_without_handoff_cost_is_the_repairman(n: int) -> None:
    a, b = ticket(n, 3 * US, US, 0.0), repairman(n, 3 * US, US)
    assert a.wait_share == pytest.approx(b.wait_share)
    assert a.acquisitions_per_s == pytest.approx(b.acquisitions_per_s)


def test_handoff_cost_makes_throughput_collapse() -> None:
    """Boyd-Wickizer's point: past saturation, more cores means fewer acquisitions."""
    xs = [ticket(n, 10 * US, US, US).acquisitions_per_s for n in (8, 16, 32, 64)]
    assert xs == sorted(xs, reverse=True)
    flat = [repairman(n, 10 * US, US).acquisitions_per_s for n in (32, 64)]
    assert flat[1] >= flat[0]


def test_bad_queue_inputs() -> None:
    with pytest.raises(ValueError):
        repairman(0, US, US)
    with pytest.raises(ValueError):
        repairman(2, 0.0, US)
    with pytest.raises(ValueError):
        ticket(2, US, US, -1.0)


def test_relative_error() -> None:
    assert relative_error(1.2, 1.0) == pytest.approx(0.2)
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(0.1, 0.0) is None


def _lock_row(cls: str, acq: int, hold: int, wait: int) -> dict:
    return {"class": cls, "acquisitions": acq, "contentions": 0,
            "hold_ns": {"total": hold}, "wait_ns": {"total": wait}}


def _run(locks: list[dict], cpus: int = 2, lock: str = "spin", time_ns: int | None = None) -> dict:
    rows = [{"cpu": i, **({"time_ns": time_ns} if time_ns else {})} for i in range(cpus)]
    return {"config": {"cpus": cpus, "lock": lock, "scenario": "reclaim-storm"}, "elapsed_s": 1.0,
            "locks": locks, "cpus": rows, "throughput": {"pages_scanned_per_s": 500.0}}


def test_lock_times_from_results() -> None:
    # 2 CPUs x 1 s; anon_vma: 1000 acquisitions, 1.2 s held, 0.4 s waited -> T = 0.4 ms, S = 1.2 ms
    run = _run([_lock_row("mapcount", 9000, 10_000_000, 1000),
                _lock_row("anon_vma", 1000, 1_200_000_000, 400_000_000)], time_ns=1_000_000_000)
    assert hottest_class(run) == "anon_vma"
    lt = lock_times(run)
    assert lt.think_ns == pytest.approx(400 * US)
    assert lt.mean_hold_ns == pytest.approx(1200 * US)
    assert lt.wait_share == pytest.approx(0.2)
    # without per-CPU times: elapsed x CPUs, the same here
    run_no_times = _run(run["locks"])
    assert lock_times(run_no_times).think_ns == pytest.approx(400 * US)


def test_hottest_class_without_waits_is_the_longest_held() -> None:
    run = _run([_lock_row("mapcount", 9000, 10_000, 0), _lock_row("anon_vma", 10, 900_000, 0)], cpus=1)
    assert hottest_class(run) == "anon_vma"


def test_predict_run_beside_measurement() -> None:
    # 2 CPUs x 1 s; 800 acquisitions, 0.8 s held, 0.4 s waited: T = (2 - 0.8 - 0.4)/800 s
    # = 1 ms = S, so the repairman says wait 1/5 and X = 800/s (the first worked example),
    # and the measurement says wait 0.4/2 = 1/5 and 800 acquisitions in 1 s.
    run = _run([_lock_row("anon_vma", 800, 800_000_000, 400_000_000)], time_ns=1_000_000_000)
    p = predict_run(run, handoff_ns=0.0)
    assert p["lock_class"] == "anon_vma"
    assert p["measured"]["wait_share"] == pytest.approx(0.2)
    assert p["repairman"]["wait_share"] == pytest.approx(0.2)
    assert p["repairman"]["wait_share_error"] == pytest.approx(0.0, abs=1e-9)
    assert p["repairman"]["acquisitions_per_s"] == pytest.approx(800.0)
    assert p["repairman"]["throughput"] == pytest.approx(500.0)
    assert p["ticket"]["wait_share"] == pytest.approx(0.2)  # c = 0: the same chain
    assert "M/M/1//N" in format_prediction(p)


def test_predict_run_ticket_only_for_non_scalable_locks() -> None:
    run = _run([_lock_row("anon_vma", 800, 800_000_000, 400_000_000)], lock="mutex")
    assert "ticket" not in predict_run(run)


def test_predict_run_without_locks() -> None:
    with pytest.raises(PredictError):
        predict_run(_run([]))


def test_models_agree_with_each_other_at_the_limits() -> None:
    # a lock nobody holds long: nobody waits; a lock held all the time: N-1 of N wait
    assert repairman(8, 1e9, 1.0).wait_share < 1e-6
    assert repairman(8, 1.0, 1e9).wait_share == pytest.approx(7 / 8, rel=1e-6)
    assert not math.isnan(ticket(8, 1.0, 1e9, 1e3).wait_share)


times = st.floats(min_value=1.0, max_value=1e7, allow_nan=False)


@given(n=st.integers(1, 300), think=times, hold=times, handoff=st.floats(0.0, 1e5))
def test_queue_laws(n: int, think: float, hold: float, handoff: float) -> None:
    """Whatever the inputs: at most N-1 of N CPUs wait; the lock is never busier than
    always; Little's law ties throughput to the time a CPU spends per acquisition; a
    costlier hand-off never makes anyone wait less."""
    q = repairman(n, think, hold)
    assert 0.0 <= q.wait_share <= (n - 1) / n + 1e-9
    assert 0.0 <= q.busy <= 1.0 + 1e-12
    assert q.acquisitions_per_s <= 1e9 / hold * (1 + 1e-9)
    # N CPUs each cycle through T, S and the wait: X = N / (T + S + W), W the mean wait
    w = q.wait_share * n / (q.acquisitions_per_s / 1e9) if q.acquisitions_per_s else 0.0
    assert q.acquisitions_per_s == pytest.approx(n * 1e9 / (think + hold + w), rel=1e-6)
    t = ticket(n, think, hold, handoff)
    assert t.wait_share >= q.wait_share - 1e-9
    assert t.acquisitions_per_s <= q.acquisitions_per_s * (1 + 1e-9)

"""The analysis commands' numbers checked against values computed here from the raw
numbers, with inputs chosen so that no two of the quantities compared coincide (a column
written into its neighbour's, a ratio inverted, a prediction equal to the measurement
all show):

* predict: T, S and the measured wait share from the lock counts; the repairman's and the
  ticket model's wait share and acquisitions from their birth-death chains, solved here
  for N = 2 by hand; each model's throughput is the measured one scaled by predicted over
  measured acquisitions; relative errors (predicted - measured) / measured;
* scale: every CSV column is the point's own field, the prediction's columns the
  repairman's and the measured wait share, empty without a prediction;
* story: each headline's ratio is this era's figure over the previous (or first) era's.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from stress.analysis.predict import predict_run
from stress.analysis.sweeps import summarize_scale
from stress.commands.scale import write_csv
from stress.commands.story import exim_headline, forks_headline, seed_headline

# ---------------------------------------------------------------------------- predict

N = 2
ELAPSED_S = 2.5  # neither 1 nor N: acquisitions per second differ from ACQ and ACQ / N
ACQ = 800
HOLD_NS = 400_000_000.0
WAIT_NS = 200_000_000.0
MEASURED_THR = 500.0
HANDOFF_NS = 100_000.0


def _run(lock: str) -> dict[str, Any]:
    return {"config": {"cpus": N, "lock": lock, "scenario": "reclaim-storm"},
            "elapsed_s": ELAPSED_S,
            "locks": [{"class": "anon_vma", "acquisitions": ACQ, "contentions": 10,
                       "hold_ns": {"total": HOLD_NS}, "wait_ns": {"total": WAIT_NS}}],
            "cpus": [{"cpu": i, "time_ns": 1_000_000_000} for i in range(N)],
            "throughput": {"pages_scanned_per_s": MEASURED_THR}}


def _chain(think: float, hold: float, c: float) -> tuple[float, float]:
    """N = 2, one lock: states k = 0, 1, 2 CPUs at it.  Arrivals (N - k)/T, service
    1/(S + c k/2).  Returns (acquisitions per ns, wait share)."""
    s1, s2 = hold + c * 1 / 2, hold + c * 2 / 2
    p1 = 2 / think * s1  # P1/P0 = (2/T) / (1/s1)
    p2 = p1 * (1 / think) * s2  # P2/P1 = (1/T) / (1/s2)
    p0 = 1 / (1 + p1 + p2)
    p1, p2 = p1 * p0, p2 * p0
    x = p1 / s1 + p2 / s2
    return x, 1 - x * (think + hold) / N


@pytest.mark.parametrize("lock", ["spin", "mutex"])
def test_prediction_from_the_raw_counts(lock: str) -> None:
    cpu_ns = N * 1e9
    think = (cpu_ns - HOLD_NS - WAIT_NS) / ACQ  # 1.75 ms
    hold = HOLD_NS / ACQ  # 0.5 ms
    measured_ws = WAIT_NS / cpu_ns  # 0.1
    measured_x = ACQ / ELAPSED_S  # 320/s
    p = predict_run(_run(lock), handoff_ns=HANDOFF_NS)
    assert p["think_ns"] == pytest.approx(think) and p["hold_ns"] == pytest.approx(hold)
    assert p["measured"] == pytest.approx({"wait_share": measured_ws, "acquisitions_per_s": measured_x,
                                           "throughput": MEASURED_THR})
    models = {"repairman": 0.0} | ({"ticket": HANDOFF_NS} if "ticket" in p else {})
    assert ("ticket" in p) == (lock == "spin")
    for name, c in models.items():
        x_ns, ws = _chain(think, hold, c)
        x = x_ns * 1e9
        thr = MEASURED_THR * x / measured_x
        q = p[name]
        assert q["acquisitions_per_s"] == pytest.approx(x), name
        assert q["wait_share"] == pytest.approx(ws), name
        assert q["throughput"] == pytest.approx(thr), name
        assert q["throughput_error"] == pytest.approx((thr - MEASURED_THR) / MEASURED_THR), name
        assert q["wait_share_error"] == pytest.approx((ws - measured_ws) / measured_ws), name
        # The inputs keep every compared value apart: a swap or an echo would show.
        assert abs(thr - MEASURED_THR) > 5 and abs(ws - measured_ws) > 0.01
    if "ticket" in p:  # a costlier hand-off: more waiting, fewer acquisitions
        assert p["ticket"]["wait_share"] > p["repairman"]["wait_share"]
        assert p["ticket"]["throughput"] < p["repairman"]["throughput"]


# ---------------------------------------------------------------------------- scale

COLS = ["curve", "era", "lock", "cpus", "repeat", "oversubscribed", "throughput_key", "throughput",
        "throughput_per_cpu", "wait_share", "anon_vma_wait_share", "avg_walk", "elapsed_s"]


def _point(curve: str, cpus: int, repeat: int, thr: float,
           predicted: dict[str, Any] | None) -> dict[str, Any]:
    return {"curve": curve, "era": "2.6.34", "lock": "spin", "cpus": cpus, "repeat": repeat,
            "oversubscribed": cpus > 4, "throughput_key": "pages_scanned_per_s",
            "throughput": thr, "throughput_per_cpu": thr / cpus, "wait_share": 0.25 + cpus / 100,
            "anon_vma_wait_share": 0.125 + cpus / 100, "avg_walk": 3.5 * cpus,
            "elapsed_s": 1.5 + repeat, "predicted": predicted}


def _prediction(rm: float, measured: float, tk: float) -> dict[str, Any]:
    return {"repairman": {"wait_share": rm, "throughput": 100 * rm},
            "ticket": {"wait_share": tk, "throughput": 100 * tk},
            "measured": {"wait_share": measured}}


def _doc() -> dict[str, Any]:
    return {"config": {"curves": [{"label": "2.6.34 spin"}]},
            "points": [_point("2.6.34 spin", 1, 0, 1000.0, None),
                       _point("2.6.34 spin", 2, 0, 1500.0, _prediction(0.375, 0.0625, 0.5)),
                       _point("2.6.34 spin", 2, 1, 1700.0, _prediction(0.425, 0.1625, 0.6))]}


def test_scale_csv_columns_are_each_points_own_values(tmp_path: Path) -> None:
    doc = _doc()
    path = tmp_path / "s.csv"
    write_csv(str(path), doc)
    with open(path) as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLS + ["predicted_wait_share", "measured_lock_wait_share",
                                           "interrupted"]
        rows = list(reader)
    assert len(rows) == len(doc["points"])
    for row, p in zip(rows, doc["points"], strict=True):
        for c in COLS:
            assert row[c] == str(p[c]), c
        q = p["predicted"]
        want = ("", "") if q is None else (str(q["repairman"]["wait_share"]),
                                           str(q["measured"]["wait_share"]))
        assert (row["predicted_wait_share"], row["measured_lock_wait_share"]) == want


def test_scale_summary_means_and_linear_line_from_the_points() -> None:
    rows = summarize_scale(_doc())
    one, two = rows
    assert (one["cpus"], one["repeats"], two["cpus"], two["repeats"]) == (1, 1, 2, 2)
    assert two["throughput"] == pytest.approx(1600.0)
    assert two["linear"] == pytest.approx(2000.0)  # the 1-CPU point's 1000/s, times 2
    assert two["efficiency"] == pytest.approx(0.8)
    assert two["wait_share"] == pytest.approx(0.27)
    assert two["measured_wait_share"] == pytest.approx(0.1125)
    assert two["repairman_wait_share"] == pytest.approx(0.4)
    assert two["ticket_wait_share"] == pytest.approx(0.55)
    assert two["repairman_throughput"] == pytest.approx(40.0)
    assert "measured_wait_share" not in one


# ---------------------------------------------------------------------------- story


def test_forks_headline_ratios_are_each_era_over_the_previous() -> None:
    rs = {"3.0": {"throughput": {"forks_per_s": 1000.0}},
          "3.8": {"throughput": {"forks_per_s": 400.0}},
          "3.9": {"throughput": {"forks_per_s": 900.0}}}
    line = forks_headline(rs)
    assert line.startswith("3.0 1000 forks/s, 3.8 400 forks/s (0.40x), 3.9 900 forks/s (2.25x)")


def _seed_run(walk: float, pages: float, wait: float) -> dict[str, Any]:
    return {"walks": {"avg_visited": walk}, "throughput": {"pages_scanned_per_s": pages},
            "anon_vma_wait_share": wait}


def test_seed_headline_ratios_are_each_era_over_the_first() -> None:
    rs = {"2.6.33": _seed_run(150.0, 200.0, 0.9), "2.6.34": _seed_run(75.5, 500.0, 0.4),
          "2.6.36": _seed_run(1.5, 5000.0, 0.05)}
    line = seed_headline(rs)
    assert line == ("2.6.33 walks 150 entries, 200 pages scanned/s, anon_vma lock wait 90%; "
                    "2.6.34 75.5 entries, 500/s (2.50x), wait 40%; "
                    "2.6.36 1.5 entries, 5000/s (25.00x), wait 5%")


def test_exim_headline_change_is_against_the_first_era() -> None:
    def run(jobs: float, elapsed: float) -> dict[str, Any]:
        return {"throughput": {"jobs": jobs}, "elapsed_s": elapsed, "anon_vma_wait_share": 0.5,
                "locks": [{"class": "anon_vma", "sites": [
                    {"site": "anon_vma_fork", "wait_total_ns": 300, "contentions": 1},
                    {"site": "unlink_anon_vmas", "wait_total_ns": 100, "contentions": 1}]}]}

    line = exim_headline({"2.6.36": run(1000.0, 2.0), "3.0": run(600.0, 2.0)})
    assert line.startswith("2.6.36 500 msg/s, lock wait 50% [anon_vma_fork 75%, unlink_anon_vmas 25%]; "
                           "3.0 300 msg/s (-40%), ")


def test_scale_linear_line_from_the_smallest_count_scaled() -> None:
    """A curve measured from 2 CPUs up: the linear line is its 2-CPU throughput per CPU
    times the count (1200/s at 2 CPUs: 600 per CPU, 2400 at 4)."""
    doc = {"config": {"curves": [{"label": "c"}]},
           "points": [_point("c", 2, 0, 1200.0, None), _point("c", 4, 0, 1800.0, None)]}
    two, four = summarize_scale(doc)
    assert (two["linear"], four["linear"]) == (pytest.approx(1200.0), pytest.approx(2400.0))
    assert four["efficiency"] == pytest.approx(0.75)

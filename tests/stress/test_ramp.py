"""The AIM7 ramp: user counts, the reaim table (means, std dev, JTI), the crossover, the
headline, the CSV, the progress bar; and a real ramp (tiny runs) for ``--crossover``.

Expected values are derived by hand from the definitions in the README and the module
header: JTI = (1 - std/mean) x 100, crossover = first user count whose jobs/min per user is
below the threshold, system-90% = first user count whose walk + wait share exceeds 0.9.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stress.analysis.sweeps import crossover_of, summarize_ramp
from stress.commands.ramp import (
    default_ram_pages,
    headline,
    point_of,
    ramp,
    ramp_table,
    user_counts,
    write_csv,
)
from stress.engine.config import ConfigError, RunConfig
from stress.engine.ui import ProgressBar


def test_user_counts_by_factor_round_and_drop_repeats() -> None:
    assert user_counts(100, 3200, None, 2.0) == [100, 200, 400, 800, 1600, 3200]
    assert user_counts(100, 3199, None, 2.0) == [100, 200, 400, 800, 1600]
    # 1, 1.5 -> 2, 2.25 -> 2 (dropped), 3.375 -> 3, 5.06 -> 5, 7.59 -> 8, 11.4 > 10
    assert user_counts(1, 10, None, 1.5) == [1, 2, 3, 5, 8]
    assert user_counts(7, 7, None, 3.0) == [7]


def test_user_counts_by_increment_and_its_default() -> None:
    assert user_counts(10, 20, 5, None) == [10, 15, 20]
    assert user_counts(10, 24, 5, None) == [10, 15, 20]
    assert user_counts(100, 500, None, None) == [100, 200, 300, 400, 500]  # a quarter of the span
    assert user_counts(1, 3, None, None) == [1, 2, 3]  # at least 1


@pytest.mark.parametrize(("args", "words"), [
    ((0, 10, None, 2.0), "--start-users"),
    ((-3, 10, None, 2.0), "--start-users"),
    ((10, 9, None, 2.0), "--end-users"),
    ((1, 10, 2, 2.0), "^give --increment or --factor, not both$"),
    ((1, 10, None, 1.0), "--factor"),
    ((1, 10, None, 0.5), "--factor"),
    ((1, 10, 0, None), "--increment"),
    ((1, 10, -1, None), "--increment"),
])
def test_user_counts_refuse_bad_ranges(args: tuple[Any, ...], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        user_counts(*args)


def test_default_ram_is_the_family_at_twice_the_first_user_count() -> None:
    assert default_ram_pages(100, 20) == 2 * 20 * 101
    assert default_ram_pages(1, 1) == 64  # never below 64 frames


def _res(shares: list[tuple[float, float, float]], jpm: float, hist: dict[str, int] | None) -> dict[str, Any]:
    """A run's results as point_of reads them; shares are (work, walk, lock_wait) per CPU."""
    locks = [{"class": "ptl", "wait_hist": {"1": 1}}]
    if hist is not None:
        locks.append({"class": "anon_vma", "wait_hist": hist})
    return {"cpus": [{"share": {"work": w, "walk": k, "lock_wait": t}} for w, k, t in shares],
            "locks": locks, "throughput": {"jobs_per_min": jpm, "pages_scanned_per_s": 12.5},
            "walks": {"avg_visited": 3.5}, "elapsed_s": 2.0,
            "invariants": {"violations": 0}}


def test_point_of_averages_the_cpus() -> None:
    p = point_of(_res([(0.5, 0.1, 0.2), (0.3, 0.3, 0.4)], 600.0, {"1024": 3}), "2.6.33", 200, 1)
    assert p.pop("wait_hist") == {"1024": 3}  # the anon_vma class's, not the ptl's
    assert p == pytest.approx({
        "era": "2.6.33", "users": 200, "repeat": 1, "jobs_per_min": 600.0,
        "jobs_per_min_per_user": 3.0, "system_share": 0.5, "work_share": 0.4,
        "walk_share": 0.2, "lock_wait_share": 0.3, "pages_scanned_per_s": 12.5,
        "avg_walk": 3.5, "elapsed_s": 2.0, "invariant_violations": 0, "iowait_share": 0.0,
        "swap_reads": 0, "swap_writes": 0, "swap_utilisation": 0.0})
    one = point_of(_res([(0.5, 0.1, 0.2)], 60.0, None), "3.0", 2, 0)
    assert one["wait_hist"] == {} and one["work_share"] == 0.5 and one["system_share"] == pytest.approx(0.3)


def _point(era: str, users: int, jpm: float, system: float = 0.5, work: float = 0.3) -> dict[str, Any]:
    return {"era": era, "users": users, "jobs_per_min": jpm, "system_share": system, "work_share": work}


POINTS = [
    _point("A", 1, 90.0, system=0.2, work=0.7), _point("A", 1, 110.0, system=0.4, work=0.5),
    _point("A", 2, 300.0, system=0.9),
    _point("A", 4, 400.0, system=0.95),
    _point("B", 1, 5.0),
]


def test_summarize_means_std_dev_and_jti_per_user_count() -> None:
    rows = summarize_ramp(POINTS, "A", threshold=150.0)
    assert [r["users"] for r in rows] == [1, 2, 4]
    one = rows[0]
    sd = math.sqrt(((90 - 100) ** 2 + (110 - 100) ** 2) / 1)  # sample std dev of 90, 110
    assert one == pytest.approx({
        "users": 1, "jobs_per_min": 100.0, "jobs_per_min_per_user": 100.0,
        "system_share": 0.3, "work_share": 0.6, "std_dev": sd, "std_dev_pct": sd,
        "jti": 100 * (1 - sd / 100), "below_threshold": True, "iowait_share": 0.0,
        "cut_short": False})
    # one repeat: no spread; 300 / 2 = 150 is not below 150
    assert rows[1]["std_dev"] == 0.0 and rows[1]["jti"] == 100.0
    assert rows[1]["jobs_per_min_per_user"] == 150.0 and rows[1]["below_threshold"] is False
    assert rows[2]["jobs_per_min_per_user"] == 100.0 and rows[2]["below_threshold"] is True
    assert [r["users"] for r in summarize_ramp(POINTS, "B", 1.0)] == [1]
    assert summarize_ramp(POINTS, "C", 1.0) == []


def test_summarize_of_a_point_with_no_jobs() -> None:
    (row,) = summarize_ramp([_point("A", 5, 0.0), _point("A", 5, 0.0)], "A", 1.0)
    assert (row["std_dev_pct"], row["jti"], row["below_threshold"]) == (0.0, 0.0, True)


def test_crossover_is_the_first_count_below_threshold_and_system90_strictly_above() -> None:
    rows = summarize_ramp(POINTS, "A", threshold=150.0)
    # users 1 is below the threshold already; 2 has exactly 0.9 system (not above), 4 has 0.95
    assert crossover_of(rows) == {"users": 1, "system90_users": 4, "peak_jobs_per_min": 400.0,
                                  "iowait_share": 0.0}
    rows = summarize_ramp(POINTS, "A", threshold=50.0)
    assert crossover_of(rows)["users"] is None
    assert crossover_of([]) == {"users": None, "system90_users": None, "peak_jobs_per_min": 0.0,
                                "iowait_share": None}


def _doc(cross: dict[str, tuple[int | None, int | None, float]], last: dict[str, int],
         threshold: float = 1.0) -> dict[str, Any]:
    points = [{"era": e, "users": u, "repeat": 0, "jobs_per_min": 10.0 * u, "system_share": 0.5,
               "work_share": 0.25} for e, top in last.items() for u in (top // 2, top)]
    return {"config": {"eras": list(last), "threshold": threshold}, "points": points,
            "crossover": {e: {"users": c, "system90_users": s, "peak_jobs_per_min": pk}
                          for e, (c, s, pk) in cross.items()}}


def test_headline_when_only_the_old_era_crosses() -> None:
    doc = _doc({"2.6.33": (800, 400, 5944.0), "2.6.34": (None, None, 124511.0)},
               {"2.6.33": 800, "2.6.34": 3200})
    lines = headline(doc).splitlines()
    assert lines[0] == ("2.6.33: crossover (jobs/min/user < 1) at 800 users; system time > 90% "
                        "from 400 users; peak 5944 jobs/min")
    assert lines[1] == ("2.6.34: crossover (jobs/min/user < 1) not reached by 3200 users; "
                        "system time > 90% never; peak 124511 jobs/min")
    assert lines[2].startswith("crossover moved more than 4.00x (2.6.34 never crossed)")
    assert lines[3] == f"peak jobs/min ratio {124511 / 5944:.2f}x"


def test_headline_when_both_eras_cross() -> None:
    doc = _doc({"2.6.33": (800, None, 100.0), "2.6.34": (2400, 1600, 300.0)},
               {"2.6.33": 1600, "2.6.34": 3200}, threshold=0.5)
    text = headline(doc)
    assert "(jobs/min/user < 0.5) at 800 users" in text
    assert "crossover moved 3.00x (2.6.33 -> 2.6.34)" in text
    assert "peak jobs/min ratio 3.00x" in text


def test_headline_of_one_era_has_no_ratio() -> None:
    text = headline(_doc({"3.0": (None, None, 0.0)}, {"3.0": 8}))
    assert len(text.splitlines()) == 1 and "ratio" not in text and "moved" not in text


def test_headline_without_a_crossover_in_the_old_era_claims_no_move() -> None:
    text = headline(_doc({"2.6.33": (None, None, 0.0), "2.6.34": (None, None, 5.0)},
                         {"2.6.33": 8, "2.6.34": 8}))
    assert "moved" not in text and "peak jobs/min ratio" not in text  # no peak to divide by


def test_ramp_table_rows_and_the_threshold_mark() -> None:
    doc = {"config": {"eras": ["A", "B"], "threshold": 150.0}, "points": POINTS}
    lines = ramp_table(doc).splitlines()
    assert lines[0].split()[:3] == ["era", "Num", "Forked"]
    assert set(lines[1]) == {"-"}
    body = lines[2:]
    assert [ln.split()[:2] for ln in body] == [["A", "1"], ["A", "2"], ["A", "4"], ["B", "1"]]
    a1 = body[0].split()
    assert a1[2:6] == ["100", "100.00", "30.0%", "60.0%"]
    assert a1[9] == "86"  # JTI of 90 and 110
    assert body[0].endswith("<- below threshold") and not body[1].endswith("threshold")


def test_write_csv_one_row_per_run(tmp_path: Path) -> None:
    pts = [dict(_point("A", u, 10.0 * u), repeat=0, jobs_per_min_per_user=10.0, walk_share=0.1,
                lock_wait_share=0.4, pages_scanned_per_s=2.5, avg_walk=1.5, elapsed_s=1.0)
           for u in (1, 2)]
    out = tmp_path / "r.csv"
    write_csv(str(out), {"points": pts})
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["era", "users", "repeat", "jobs_per_min", "jobs_per_min_per_user",
                             "system_share", "work_share", "walk_share", "lock_wait_share",
                             "pages_scanned_per_s", "avg_walk", "elapsed_s", "iowait_share",
                             "swap_reads", "swap_writes", "interrupted"]
    assert [(r["era"], int(r["users"]), float(r["jobs_per_min"])) for r in rows] == [
        ("A", 1, 10.0), ("A", 2, 20.0)]
    assert float(rows[1]["lock_wait_share"]) == 0.4


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_on_a_terminal_and_a_line_every_few_seconds_otherwise() -> None:
    s = _Stream(tty=True)
    bar = ProgressBar(s, width=20)
    bar(0, 4, "2.6.33 users 100 run 1/1", 0.0)
    bar(1, 4, "2.6.33 users 200 run 1/1", 10.0)
    bar(4, 4, "done", 75.0)
    frames = s.getvalue().split("\r")[1:]
    assert frames[0] == "[....................] 0/4 2.6.33 users 100 run 1/1  elapsed 0s  ETA ?\033[K"
    # a quarter done in 10 s: 30 s to go
    assert frames[1] == "[#####...............] 1/4 2.6.33 users 200 run 1/1  elapsed 10s  ETA 0m30s\033[K"
    assert frames[2] == "[####################] 4/4 done  elapsed 75s  ETA 0m00s\033[K\n"
    log = _Stream(tty=False)
    bar = ProgressBar(log)
    for done, t in ((0, 0.0), (1, 2.0), (2, 6.0), (3, 7.0)):
        bar(done, 4, f"p{done}", t)
    bar(4, 4, "done", 8.0)
    assert log.getvalue().splitlines() == [
        "rmap-stress: point 1/4: p0  (elapsed 0 s)",
        "rmap-stress: point 3/4: p2  (elapsed 6 s)",  # 2 s after the first: skipped
        "rmap-stress: 4/4 points done  (elapsed 8 s)"]


# -- a real ramp: tiny forking-server runs -------------------------------------------------

BASE = RunConfig(scenario="forking-server", pages=4, cow=1.0, cpus=2, duration=0.3, work_us=20)


def test_ramp_stops_an_era_past_its_crossover() -> None:
    """With a threshold no run can reach, every era is past its crossover at its first point:
    --crossover runs that point (twice, with --repeat 2) only.  Repeats run in rounds (every
    point once per round, so drift lands in the spread); the first round decides where each
    era stops, and the progress total shrinks to the points that will run, ending at it."""
    calls: list[tuple[int, int, str, float]] = []
    t0 = time.monotonic()
    doc = ramp(["2.6.33", "2.6.34"], [2, 4, 8], BASE, repeat=2, stop_at_crossover=True, threshold=1e12,
               progress=lambda done, total, label, elapsed: calls.append((done, total, label, elapsed)))
    took = time.monotonic() - t0
    assert [(p["era"], p["users"], p["repeat"]) for p in doc["points"]] == [
        ("2.6.33", 2, 0), ("2.6.34", 2, 0), ("2.6.33", 2, 1), ("2.6.34", 2, 1)]
    assert doc["crossover"]["2.6.33"]["users"] == 2 and doc["crossover"]["2.6.34"]["users"] == 2
    assert [c[:3] for c in calls] == [
        (0, 12, "2.6.33 users 2 round 1/2"), (1, 8, "2.6.34 users 2 round 1/2"),
        (2, 4, "2.6.33 users 2 round 2/2"), (3, 4, "2.6.34 users 2 round 2/2"), (4, 4, "done")]
    elapsed = [c[3] for c in calls]
    assert elapsed == sorted(elapsed) and 0 <= elapsed[0] and elapsed[-1] <= took
    assert doc["config"]["crossover_stop"] is True and doc["config"]["threshold"] == 1e12
    assert all(p["invariant_violations"] == 0 for p in doc["points"])


def test_ramp_without_stop_runs_every_point_and_repeat() -> None:
    """Every point, each repeat; the live view (when asked for) is made once per run,
    labelled with the point; the document records the ramp's whole configuration."""
    labels: list[str] = []

    def live(label: str) -> Callable[[object], None]:
        labels.append(label)
        return lambda tick: None

    base = dataclasses.replace(BASE, pages=16, seed=7, entry_cost_ns=5)
    doc = ramp(["3.0"], [2, 3], base, repeat=2, live=live)
    assert [(p["users"], p["repeat"]) for p in doc["points"]] == [(2, 0), (3, 0), (2, 1), (3, 1)]
    assert labels == ["3.0 users 2 round 1/2 (point 1/4)", "3.0 users 3 round 1/2 (point 2/4)",
                      "3.0 users 2 round 2/2 (point 3/4)", "3.0 users 3 round 2/2 (point 4/4)"]
    assert doc["schema"] == "rmap-stress-ramp/2" and "interrupted" not in doc
    # the machine's RAM is fixed for the whole ramp: the family at twice the first count
    assert doc["config"] == {
        "eras": ["3.0"], "users": [2, 3], "start_users": 2, "end_users": 3, "repeat": 2,
        "threshold": 1.0, "crossover_stop": False, "duration": 0.3, "cpus": 2, "pages": 16,
        "cow": 1.0, "ram_pages": 2 * 16 * 3, "work_us": 20, "entry_cost_ns": 5, "seed": 7,
        "swap_device": "disk", "swap_latency_ms": 8.0, "swap_iops": 150.0, "swap_queue": 128}
    assert {"online_cpus", "python", "package_version"} <= set(doc["machine"])
    assert all(p["jobs_per_min"] == pytest.approx(p["jobs_per_min_per_user"] * p["users"])
               for p in doc["points"])
    assert all(p["invariant_violations"] == 0 for p in doc["points"])


@pytest.mark.parametrize(("kw", "words"), [({"repeat": 0}, "--repeat"), ({"threshold": 0.0}, "--threshold"),
                                           ({"eras": ["2.4"]}, "unknown era")])
def test_ramp_refuses_bad_options_before_running(kw: dict[str, Any], words: str) -> None:
    args: dict[str, Any] = {"eras": ["2.6.33"], "users": [2], "base": BASE, **kw}
    with pytest.raises(ConfigError, match=words):
        ramp(**args)


def test_iowait_in_the_table_and_at_each_crossover() -> None:
    """The IOwait % column is the mean over repeats; the headline gives the iowait at each
    era's crossover (the seed's 2.6.34 crossed with ~99% IO wait); the swap device is named."""
    pts = [{**_point("A", 1, 200.0, system=0.9, work=0.05), "iowait_share": 0.01},
           {**_point("A", 2, 100.0, system=0.95, work=0.0), "iowait_share": 0.02},
           {**_point("B", 1, 300.0, system=0.02, work=0.5), "iowait_share": 0.3},
           {**_point("B", 2, 100.0, system=0.02, work=0.0), "iowait_share": 0.94},
           {**_point("B", 2, 100.0, system=0.02, work=0.0), "iowait_share": 0.98}]
    cfg = {"eras": ["A", "B"], "threshold": 60.0, "swap_device": "disk", "swap_latency_ms": 8.0,
           "swap_iops": 150.0, "swap_queue": 128}
    doc = {"config": cfg, "points": pts,
           "crossover": {e: crossover_of(summarize_ramp(pts, e, 60.0)) for e in ("A", "B")}}
    lines = ramp_table(doc).splitlines()
    assert lines[0] == ("swap device: 8 ms latency, 150 IOPS, 128 request slots "
                        "(--swap-device, --swap-latency-ms, --swap-iops)")
    assert "IOwait %" in lines[1]
    b2 = next(ln for ln in lines if ln.split()[:2] == ["B", "2"]).split()
    assert b2[6] == "96.0%"
    assert doc["crossover"]["A"]["iowait_share"] == 0.02 and doc["crossover"]["B"]["iowait_share"] == 0.96
    text = headline(doc)
    assert "A: crossover (jobs/min/user < 60) at 2 users (iowait 2% there)" in text
    assert "B: crossover (jobs/min/user < 60) at 2 users (iowait 96% there)" in text
    doc["config"]["swap_device"] = "off"
    assert ramp_table(doc).splitlines()[0] == "swap device: off (infinitely fast: no job waits for IO)"

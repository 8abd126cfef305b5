"""The AIM7 ramp: user counts, the reaim table (means, std dev, JTI), the crossover, the
headline, the CSV, the progress bar; the ramp's loop with each point's run replaced by a
prepared result (rounds, ``--crossover``, signals and failures); and a real ramp (tiny runs).

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


# -- point_of and the prediction kept with each point ----------------------------------------


def test_point_of_reads_iowait_and_the_swap_device() -> None:
    """iowait is the CPUs' mean (a CPU that reports none counts as 0); the swap device's
    counters become counts and a fraction."""
    res = _res([(0.5, 0.1, 0.2), (0.3, 0.3, 0.4)], 600.0, None)
    res["cpus"][0]["share"]["iowait"] = 0.4
    res["cpus"][1]["share"]["iowait"] = 0.2
    res["swap_device"] = {"reads": 7.0, "writes": 3.0, "utilisation": 1}
    res["locks"] = [{"class": "anon_vma", "wait_hist": {"8": 2}},
                    {"class": "anon_vma", "wait_hist": {"9": 9}}]  # the first one's
    p = point_of(res, "2.6.34", 3, 2)
    assert p == {
        "era": "2.6.34", "users": 3, "repeat": 2, "jobs_per_min": 600.0,
        "jobs_per_min_per_user": 200.0, "system_share": pytest.approx(0.5),
        "work_share": pytest.approx(0.4), "walk_share": pytest.approx(0.2),
        "lock_wait_share": pytest.approx(0.3), "iowait_share": pytest.approx(0.3),
        "swap_reads": 7, "swap_writes": 3, "swap_utilisation": 1.0, "pages_scanned_per_s": 12.5,
        "avg_walk": 3.5, "wait_hist": {"8": 2}, "elapsed_s": 2.0, "invariant_violations": 0}
    assert [type(p[k]) for k in ("swap_reads", "swap_writes", "swap_utilisation")] == [int, int, float]
    res["cpus"][1]["share"].pop("iowait")
    assert point_of(res, "2.6.34", 3, 2)["iowait_share"] == pytest.approx(0.2)  # (0.4 + 0) / 2
    res["swap_device"] = None  # a run with the device off
    p = point_of(res, "2.6.34", 3, 2)
    assert (p["swap_reads"], p["swap_writes"], p["swap_utilisation"]) == (0, 0, 0.0)
    res["swap_device"] = {}
    p = point_of(res, "2.6.34", 3, 2)
    assert (p["swap_reads"], p["swap_writes"], p["swap_utilisation"]) == (0, 0, 0.0)


class _Predictions:
    """predict's lock_inputs and predict_inputs, replaced: what they were given, and a
    PredictError from either on request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from stress.analysis import predict

        self.inputs_fail = False
        self.predict_fail = False
        self.calls: list[tuple[str, Any]] = []

        def lock_inputs(res: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(("lock_inputs", res["throughput"]["jobs_per_min"]))
            if self.inputs_fail:
                raise predict.PredictError("no lock was taken")
            return {"throughput": res["throughput"]["jobs_per_min"]}

        def predict_inputs(inputs: dict[str, Any], handoff_ns: float) -> dict[str, Any]:
            self.calls.append(("predict_inputs", (inputs, handoff_ns)))
            if self.predict_fail:
                raise predict.PredictError("no time outside the lock")
            return {"from": inputs, "handoff_ns": handoff_ns}

        monkeypatch.setattr(predict, "lock_inputs", lock_inputs)
        monkeypatch.setattr(predict, "predict_inputs", predict_inputs)


def test_add_prediction_keeps_the_lock_inputs_and_predicts_on_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stress.commands.ramp import _add_prediction

    fake = _Predictions(monkeypatch)
    res = _res([(0.5, 0.1, 0.2)], 60.0, None)
    point: dict[str, Any] = {}
    _add_prediction(point, res, False, 40.0)
    assert point == {"lock_inputs": {"throughput": 60.0}}
    assert fake.calls == [("lock_inputs", 60.0)]
    fake.calls.clear()
    _add_prediction(point, res, True, 40.0)
    assert point == {"lock_inputs": {"throughput": 60.0},
                     "predicted": {"from": {"throughput": 60.0}, "handoff_ns": 40.0}}
    assert fake.calls == [("lock_inputs", 60.0), ("predict_inputs", ({"throughput": 60.0}, 40.0))]
    # no time outside the lock: the inputs are kept, no prediction
    fake.predict_fail = True
    point = {}
    _add_prediction(point, res, True, 40.0)
    assert point == {"lock_inputs": {"throughput": 60.0}}
    # no lock taken: nothing kept, nothing predicted
    fake.inputs_fail = True
    fake.calls.clear()
    point = {}
    _add_prediction(point, res, True, 40.0)
    assert point == {} and fake.calls == [("lock_inputs", 60.0)]


# -- the ramp's loop, with each point's run replaced -----------------------------------------


class _FakeRuns:
    """Stands in for run_point: each call is recorded and answered with a prepared result
    whose jobs/min is ``jpm[era](users)``; ``cut[n]`` makes the n-th call (from 0) end the
    way a signal or a failure ends a run."""

    def __init__(self, jpm: dict[str, Callable[[int], float]],
                 cut: dict[int, tuple[str, str, bool]] | None = None) -> None:
        self.jpm = jpm
        self.cut = cut or {}
        self.calls: list[tuple[str, int, str, int, str, object]] = []

    def __call__(self, cfg: RunConfig, live: object, label: str,
                 stop: dict[str, str]) -> dict[str, Any] | None:
        n = len(self.calls)
        self.calls.append((cfg.era, cfg.users, cfg.scenario, cfg.ram_pages, label, live))
        res = _res([(0.5, 0.25, 0.125)], self.jpm[cfg.era](cfg.users), None)
        if n in self.cut:
            key, why, measured = self.cut[n]
            stop[key] = why
            return res if measured else None
        return res


class _Clock:
    """time.monotonic for ramp: 100 at the first call, one more at each later one."""

    def __init__(self) -> None:
        self.now = 99.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def _fake_ramp(monkeypatch: pytest.MonkeyPatch, runs: _FakeRuns) -> _Clock:
    import stress.commands.ramp as ramp_module

    clock = _Clock()
    monkeypatch.setattr(ramp_module, "run_point", runs)
    monkeypatch.setattr(ramp_module, "time", clock)
    monkeypatch.setattr(ramp_module, "machine_info", lambda: {"cpu_model": "fake"})
    return clock


# The default scenario (reclaim-storm): ramp makes every point, and its record, forking-server.
FAKE_BASE = RunConfig(pages=20, cpus=2, duration=0.5, work_us=30, entry_cost_ns=4, seed=3)


def test_ramp_loop_stops_an_era_at_its_crossover_in_the_first_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """2.6.33 falls below 10 jobs/min per user at 4 users: --crossover runs 1, 2 and 4 in
    every round (the first decides) and the progress total drops by the 8-user point of
    both rounds; 3.0 never crosses and runs every count.  Each point is a forking-server
    run at its era and user count, on the RAM of the first user count, labelled with its
    place in the ramp."""
    runs = _FakeRuns({"2.6.33": {1: 20.0, 2: 30.0, 4: 20.0, 8: 8.0}.__getitem__, "3.0": lambda u: 100.0 * u})
    _fake_ramp(monkeypatch, runs)
    fake = _Predictions(monkeypatch)
    calls: list[tuple[int, int, str, float]] = []
    doc = ramp(["2.6.33", "3.0"], [1, 2, 4, 8], FAKE_BASE, repeat=2, stop_at_crossover=True,
               threshold=10.0, progress=lambda *c: calls.append(c), predict=True, handoff_ns=25.0)
    order = ([("2.6.33", u) for u in (1, 2, 4)] + [("3.0", u) for u in (1, 2, 4, 8)]) * 2
    assert [c[:2] for c in runs.calls] == order
    assert {(c[2], c[3], c[5]) for c in runs.calls} == {("forking-server", 2 * 20 * 2, None)}
    assert [c[4] for c in runs.calls] == [
        "2.6.33 users 1 round 1/2 (point 1/16)", "2.6.33 users 2 round 1/2 (point 2/16)",
        "2.6.33 users 4 round 1/2 (point 3/16)", "3.0 users 1 round 1/2 (point 4/14)",
        "3.0 users 2 round 1/2 (point 5/14)", "3.0 users 4 round 1/2 (point 6/14)",
        "3.0 users 8 round 1/2 (point 7/14)", "2.6.33 users 1 round 2/2 (point 8/14)",
        "2.6.33 users 2 round 2/2 (point 9/14)", "2.6.33 users 4 round 2/2 (point 10/14)",
        "3.0 users 1 round 2/2 (point 11/14)", "3.0 users 2 round 2/2 (point 12/14)",
        "3.0 users 4 round 2/2 (point 13/14)", "3.0 users 8 round 2/2 (point 14/14)"]
    # the fake clock: t0 = 100, each progress call one second later
    assert calls == [
        (0, 16, "2.6.33 users 1 round 1/2", 1.0), (1, 16, "2.6.33 users 2 round 1/2", 2.0),
        (2, 16, "2.6.33 users 4 round 1/2", 3.0), (3, 14, "3.0 users 1 round 1/2", 4.0),
        (4, 14, "3.0 users 2 round 1/2", 5.0), (5, 14, "3.0 users 4 round 1/2", 6.0),
        (6, 14, "3.0 users 8 round 1/2", 7.0), (7, 14, "2.6.33 users 1 round 2/2", 8.0),
        (8, 14, "2.6.33 users 2 round 2/2", 9.0), (9, 14, "2.6.33 users 4 round 2/2", 10.0),
        (10, 14, "3.0 users 1 round 2/2", 11.0), (11, 14, "3.0 users 2 round 2/2", 12.0),
        (12, 14, "3.0 users 4 round 2/2", 13.0), (13, 14, "3.0 users 8 round 2/2", 14.0),
        (14, 14, "done", 15.0)]
    assert doc["elapsed_s"] == 16.0
    assert [(p["era"], p["users"], p["repeat"]) for p in doc["points"]] == [
        (e, u, r) for r in (0, 1) for e, u in order[:7]]
    first = doc["points"][0]
    assert (first["jobs_per_min"], first["jobs_per_min_per_user"], first["system_share"]) == (
        20.0, 20.0, 0.375)
    assert first["lock_inputs"] == {"throughput": 20.0}
    assert first["predicted"] == {"from": {"throughput": 20.0}, "handoff_ns": 25.0}
    assert not any("interrupted" in p or "failed" in p for p in doc["points"])
    assert len(fake.calls) == 2 * 14
    assert doc["crossover"] == {
        "2.6.33": {"users": 4, "system90_users": None, "peak_jobs_per_min": 30.0, "iowait_share": 0.0},
        "3.0": {"users": None, "system90_users": None, "peak_jobs_per_min": 800.0, "iowait_share": None}}
    assert doc["schema"] == "rmap-stress-ramp/2" and doc["machine"] == {"cpu_model": "fake"}
    assert doc["config"] == {
        "eras": ["2.6.33", "3.0"], "users": [1, 2, 4, 8], "start_users": 1, "end_users": 8,
        "repeat": 2, "threshold": 10.0, "crossover_stop": True, "duration": 0.5, "cpus": 2,
        "pages": 20, "cow": 1.0, "ram_pages": 80, "work_us": 30, "entry_cost_ns": 4, "seed": 3,
        "swap_device": "disk", "swap_latency_ms": 8.0, "swap_iops": 150.0, "swap_queue": 128}
    assert set(doc) == {"schema", "config", "machine", "points", "crossover", "elapsed_s"}


def test_ramp_loop_without_stop_runs_past_the_crossover_on_the_given_ram(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --crossover every point runs; a --ram-pages given is kept; without predict
    the point keeps the lock's inputs only; no progress callback is needed."""
    runs = _FakeRuns({"2.6.34": lambda u: 1.0})
    _fake_ramp(monkeypatch, runs)
    _Predictions(monkeypatch)
    live = object()
    doc = ramp(["2.6.34"], [2, 3], dataclasses.replace(FAKE_BASE, ram_pages=500), live=live,  # type: ignore[arg-type]
               threshold=0.75)
    assert [c[:2] + c[3:] for c in runs.calls] == [
        ("2.6.34", 2, 500, "2.6.34 users 2 round 1/1 (point 1/2)", live),
        ("2.6.34", 3, 500, "2.6.34 users 3 round 1/1 (point 2/2)", live)]
    assert [(p["users"], p["repeat"], "predicted" in p, "lock_inputs" in p) for p in doc["points"]] == [
        (2, 0, False, True), (3, 0, False, True)]
    assert doc["config"]["ram_pages"] == 500 and doc["config"]["crossover_stop"] is False
    assert doc["config"]["threshold"] == 0.75 and doc["config"]["repeat"] == 1
    assert doc["crossover"]["2.6.34"]["users"] == 2
    assert doc["elapsed_s"] == 1.0  # the clock read at the start and at the end only


@pytest.mark.parametrize(("cut", "measured"), [(("interrupted", "SIGINT"), True),
                                               (("failed", "worker on cpu 1 died"), True),
                                               (("interrupted", "SIGTERM"), False)])
def test_ramp_loop_ends_at_the_point_a_signal_or_a_failure_cut_short(
        monkeypatch: pytest.MonkeyPatch, cut: tuple[str, str], measured: bool) -> None:
    """The third run is cut short: its partial figures (when it measured any) are kept and
    marked, nothing after it runs, the progress ends at 2 of 6 'stopped', and the document
    says why it stopped."""
    runs = _FakeRuns({"2.6.33": lambda u: 10.0 * u}, cut={2: (*cut, measured)})
    _fake_ramp(monkeypatch, runs)
    _Predictions(monkeypatch)
    calls: list[tuple[int, int, str, float]] = []
    doc = ramp(["2.6.33"], [1, 2, 3], FAKE_BASE, repeat=2, progress=lambda *c: calls.append(c))
    # the defaults: no --crossover, threshold 1, no prediction
    assert (doc["config"]["crossover_stop"], doc["config"]["threshold"]) == (False, 1.0)
    assert not any("predicted" in p for p in doc["points"])
    assert len(runs.calls) == 3
    assert calls[-1] == (2, 6, "stopped", 4.0) and len(calls) == 4
    assert doc[cut[0]] == cut[1] and set(doc) - {cut[0]} == {
        "schema", "config", "machine", "points", "crossover", "elapsed_s"}
    marks = [{k for k in ("interrupted", "failed") if k in p} for p in doc["points"]]
    assert marks == ([set(), set(), {cut[0]}] if measured else [set(), set()])
    if measured:
        assert doc["points"][2][cut[0]] is True and doc["points"][2]["users"] == 3


def test_ramp_loop_stopped_between_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal between two runs (here: while the progress line is drawn) ends the loop
    before the next run: the document is interrupted by that signal, with the points so far."""
    import contextlib
    import signal

    import stress.engine.stopping as stopping_module
    from stress.engine.stopping import Stopped

    runs = _FakeRuns({"3.0": lambda u: 10.0})
    _fake_ramp(monkeypatch, runs)
    _Predictions(monkeypatch)
    # the real stop_on_signals would leave this process ignoring signals after a Stopped
    monkeypatch.setattr(stopping_module, "stop_on_signals", contextlib.nullcontext)
    calls: list[tuple[int, int, str, float]] = []

    def progress(*c: Any) -> None:
        calls.append(c)
        if len(calls) == 2:
            raise Stopped(signal.SIGHUP)

    doc = ramp(["3.0"], [1, 2], FAKE_BASE, progress=progress, predict=True)
    assert [c[:2] for c in runs.calls] == [("3.0", 1)]
    assert [p["users"] for p in doc["points"]] == [1]
    assert doc["interrupted"] == "SIGHUP"
    assert calls[-1] == (1, 2, "stopped", 3.0)
    assert doc["points"][0]["predicted"]["handoff_ns"] == 0.0  # the default hand-off cost


# -- the table, the headline and the CSV, line for line ---------------------------------------


def test_ramp_table_line_for_line_with_ram_swap_device_and_cut_short_points() -> None:
    pts = [*POINTS[:2], {**POINTS[2], "interrupted": True}, {**POINTS[3], "failed": True},
           {**POINTS[4], "iowait_share": 0.25}]
    cfg = {"eras": ["A", "B"], "threshold": 150.0, "ram_pages": 640, "swap_device": "disk",
           "swap_latency_ms": 0.5, "swap_iops": 2500.0, "swap_queue": 32}
    head = ("era     Num Forked   Jobs/min Jobs/min/user  System %  Work %  IOwait %  Std_dev "
            "Std_dev %   JTI")
    assert ramp_table({"config": cfg, "points": pts}).splitlines() == [
        "RAM: 640 page frames at every point (--ram-pages)",
        ("swap device: 0.5 ms latency, 2500 IOPS, 32 request slots (--swap-device, "
         "--swap-latency-ms, --swap-iops)"),
        head,
        "-" * 96,
        ("A                1        100        100.00     30.0%   60.0%      0.0%     14.1     14.1%"
         "    86  <- below threshold"),
        ("A                2        300        150.00     90.0%   30.0%      0.0%      0.0      0.0%"
         "   100  (cut short: partial figures)"),
        ("A                4        400        100.00     95.0%   30.0%      0.0%      0.0      0.0%"
         "   100  <- below threshold  (cut short: partial figures)"),
        ("B                1          5          5.00     50.0%   30.0%     25.0%      0.0      0.0%"
         "   100  <- below threshold")]
    assert len(head) == 96
    # a document from before the RAM and the swap device were recorded: the table alone
    old = {"config": {"eras": ["B"], "threshold": 1.0, "ram_pages": 0}, "points": POINTS}
    assert ramp_table(old).splitlines() == [
        head, "-" * 96,
        ("B                1          5          5.00     50.0%   30.0%      0.0%      0.0      0.0%"
         "   100")]


def _crossed(users: int | None, system90: int | None, peak: float,
             iowait: float | None = None) -> dict[str, Any]:
    return {"users": users, "system90_users": system90, "peak_jobs_per_min": peak, "iowait_share": iowait}


def _measured(last: dict[str, int]) -> list[dict[str, Any]]:
    """Points at half of each era's last user count and at it."""
    return [{"era": e, "users": u} for e, top in last.items() for u in (top // 2, top)]


def test_headline_against_2_6_33_gives_each_seed_era_its_own_line() -> None:
    """2.6.34-rc1 (the seed as committed) and 2.6.34 (as released) each get a crossover line
    with its note against 2.6.33; the peak ratio is the last era's over the first's."""
    doc = {"config": {"threshold": 0.75},
           "points": _measured({"2.6.33": 1600, "2.6.34-rc1": 3200, "2.6.34": 3200, "3.0": 6400}),
           "crossover": {"2.6.33": _crossed(800, 400, 5944.0, 0.5),
                         "2.6.34-rc1": _crossed(2400, None, 20000.0, 0.994),
                         "2.6.34": _crossed(None, None, 124511.0),
                         "3.0": _crossed(None, 3200, 130000.0)}}
    assert headline(doc).splitlines() == [
        ("2.6.33: crossover (jobs/min/user < 0.75) at 800 users (iowait 50% there); "
         "system time > 90% from 400 users; peak 5944 jobs/min"),
        ("2.6.34-rc1: crossover (jobs/min/user < 0.75) at 2400 users (iowait 99% there); "
         "system time > 90% never; peak 20000 jobs/min"),
        ("2.6.34: crossover (jobs/min/user < 0.75) not reached by 3200 users; "
         "system time > 90% never; peak 124511 jobs/min"),
        ("3.0: crossover (jobs/min/user < 0.75) not reached by 6400 users; "
         "system time > 90% from 3200 users; peak 130000 jobs/min"),
        ("crossover moved 3.00x (2.6.33 -> 2.6.34-rc1); the seed commit, measured on this "
         "placement: 9.7k -> 29.7k users, 3.06x"),
        ("crossover moved more than 4.00x (2.6.34 never crossed); as released (+ ea90002b0fa7, "
         "the oops fix): the seed's 3.06x was measured on 2.6.34-rc1"),
        "peak jobs/min ratio 21.87x"]


def test_headline_of_an_era_with_no_point_and_of_other_eras() -> None:
    """An era with no point says so and the others still get their lines; eras other than
    2.6.33 first compare the last with the first, with no note (not even for 2.6.34)."""
    doc = {"config": {"threshold": 2.0}, "points": _measured({"A": 10, "C": 40}),
           "crossover": {"A": _crossed(10, None, 50.0, 0.0), "B": _crossed(None, None, 0.0),
                         "C": _crossed(None, None, 90.0)}}
    assert headline(doc).splitlines() == [
        ("A: crossover (jobs/min/user < 2) at 10 users (iowait 0% there); system time > 90% never; "
         "peak 50 jobs/min"),
        "B: no point measured",
        ("C: crossover (jobs/min/user < 2) not reached by 40 users; system time > 90% never; "
         "peak 90 jobs/min"),
        "crossover moved more than 4.00x (C never crossed)",
        "peak jobs/min ratio 1.80x"]
    doc = {"config": {"threshold": 1.0}, "points": _measured({"3.0": 10, "2.6.34": 40}),
           "crossover": {"3.0": _crossed(10, None, 50.0), "2.6.34": _crossed(5, None, 0.0)}}
    assert headline(doc).splitlines() == [
        "3.0: crossover (jobs/min/user < 1) at 10 users; system time > 90% never; peak 50 jobs/min",
        "2.6.34: crossover (jobs/min/user < 1) at 5 users; system time > 90% never; peak 0 jobs/min",
        "crossover moved 0.50x (3.0 -> 2.6.34)"]
    # not against 2.6.33: the last era against the first, whatever the eras between them
    doc = {"config": {"threshold": 1.0}, "points": _measured({"3.0": 10, "2.6.34": 40, "4.0": 40}),
           "crossover": {"3.0": _crossed(10, None, 50.0), "2.6.34": _crossed(5, None, 60.0),
                         "4.0": _crossed(20, None, 0.0)}}
    assert headline(doc).splitlines()[3:] == ["crossover moved 2.00x (3.0 -> 4.0)"]
    # 2.6.33 against an era with no seed figure: the plain comparison, no note
    doc = {"config": {"threshold": 1.0}, "points": _measured({"2.6.33": 10, "3.0": 40}),
           "crossover": {"2.6.33": _crossed(10, None, 50.0), "3.0": _crossed(None, None, 75.0)}}
    assert headline(doc).splitlines()[2:] == ["crossover moved more than 4.00x (3.0 never crossed)",
                                              "peak jobs/min ratio 1.50x"]
    # the later era measured nothing: no claim that it never crossed
    doc = {"config": {"threshold": 1.0}, "points": _measured({"2.6.33": 10}),
           "crossover": {"2.6.33": _crossed(10, None, 50.0), "2.6.34": _crossed(None, None, 0.0)}}
    assert headline(doc).splitlines() == [
        "2.6.33: crossover (jobs/min/user < 1) at 10 users; system time > 90% never; peak 50 jobs/min",
        "2.6.34: no point measured"]


def test_write_csv_exact_text_with_missing_figures_and_a_cut_short_point(tmp_path: Path) -> None:
    full = {"era": "A", "users": 2, "repeat": 1, "jobs_per_min": 20.0, "jobs_per_min_per_user": 10.0,
            "system_share": 0.5, "work_share": 0.25, "walk_share": 0.125, "lock_wait_share": 0.375,
            "pages_scanned_per_s": 2.5, "avg_walk": 1.5, "elapsed_s": 1.0, "iowait_share": 0.0625,
            "swap_reads": 4, "swap_writes": 5, "interrupted": True, "wait_hist": {"1": 1}}
    out = tmp_path / "r.csv"
    write_csv(str(out), {"points": [full, {"era": "B", "users": 1}]})
    assert out.read_bytes() == (  # bytes: lines end in \n, not csv's default \r\n
        b"era,users,repeat,jobs_per_min,jobs_per_min_per_user,system_share,work_share,walk_share,"
        b"lock_wait_share,pages_scanned_per_s,avg_walk,elapsed_s,iowait_share,swap_reads,swap_writes,"
        b"interrupted\n"
        b"A,2,1,20.0,10.0,0.5,0.25,0.125,0.375,2.5,1.5,1.0,0.0625,4,5,True\n"
        b"B,1,,,,,,,,,,,,,,\n")


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

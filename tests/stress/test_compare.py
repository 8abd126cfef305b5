"""compare() on synthetic documents: verdicts, grouping of repeats, stability, metadata.

No runs: every document is built here, shaped as runner.collect() and the ramp write them.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from stress.analysis.compare import (
    betainc,
    compare,
    instability,
    load_for_compare,
    t_two_sided_p,
    welch_t_test,
)
from stress.engine.results import ResultsError, upgrade

MACHINE = {"online_cpus": 8, "affinity": list(range(8)), "cpu_model": "Synthetic CPU",
           "loadavg": [0.1, 0.1, 0.1], "python": "3.11.7", "package_version": "0.1.0"}


def make_run(era: str = "2.6.33", scanned: float = 1000.0, jobs: float = 60.0,
             walk: float = 300.0, wait: float = 0.5, p99_ns: int = 2_000_000, seed: int = 0,
             **machine: Any) -> dict[str, Any]:
    share = {"work": 0.2, "walk": 0.2, "lock_wait": 0.4, "other": 0.2}
    return {
        "schema": "rmap-stress/1",
        "config": {"era": era, "scenario": "reclaim-storm", "users": 64, "pages": 256,
                   "cow": 1.0, "cpus": 2, "duration": 5.0, "lock": "ticket", "seed": seed},
        "machine": {**MACHINE, **machine},
        "walks": {"count": 100, "vmas_visited": int(100 * walk), "avg_visited": walk,
                  "max_visited": int(2 * walk)},
        "locks": [{"class": "anon_vma", "acquisitions": 1000, "contentions": 500,
                   "wait_ns": {"min": 1, "max": 2 * p99_ns, "total": 10**9, "avg": p99_ns // 2,
                               "p50": p99_ns // 4, "p90": p99_ns // 2, "p99": p99_ns,
                               "p999": 2 * p99_ns},
                   "wait_hist": {"1024": 10}, "sites": []}],
        "cpus": [{"cpu": i, "share": dict(share)} for i in range(2)],
        "anon_vma_wait_share": wait,
        "throughput": {"jobs_per_min": jobs, "pages_scanned_per_s": scanned},
        "invariants": {"checked": True, "violations": 0, "messages": []},
    }


def make_ramp(jobs: dict[str, dict[int, list[float]]],
              crossover: dict[str, int | None] | None = None) -> dict[str, Any]:
    """A ramp whose points carry the given jobs/min, {era: {users: [one per repeat]}}."""
    points = [{"era": era, "users": u, "repeat": r, "jobs_per_min": v,
               "jobs_per_min_per_user": v / u, "system_share": 0.1, "work_share": 0.8,
               "walk_share": 0.05, "lock_wait_share": 0.05, "pages_scanned_per_s": 10 * v,
               "wait_hist": {"1024": 1}, "elapsed_s": 1.0}
              for era, by_u in jobs.items() for u, vs in by_u.items() for r, v in enumerate(vs)]
    crossover = crossover or {}
    return {
        "schema": "rmap-stress-ramp/1",
        "config": {"eras": list(jobs), "start_users": 1, "end_users": 8, "factor": 2,
                   "duration": 1.0, "cpus": 2, "repeat": 3, "threshold": 0.5},
        "machine": dict(MACHINE),
        "points": points,
        "crossover": {era: {"users": crossover.get(era), "system90_users": None,
                            "peak_jobs_per_min": 0.0} for era in jobs},
    }


def verdict_line(text: str, figure: str) -> str:
    """The verdict line of one figure (the table has a row with the same title)."""
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(f"{figure}:")]
    assert len(lines) == 1, text
    return lines[0]


# -- statistics ------------------------------------------------------------------------

def test_student_t_p_values() -> None:
    assert t_two_sided_p(1.0, 1.0) == pytest.approx(0.5, abs=1e-12)  # Cauchy: P(|T|>1)
    assert t_two_sided_p(2.228138851986, 10.0) == pytest.approx(0.05, abs=1e-6)
    assert t_two_sided_p(1.959963984540, 1e9) == pytest.approx(0.05, abs=1e-6)  # normal
    assert t_two_sided_p(0.0, 5.0) == 1.0
    assert t_two_sided_p(math.inf, 5.0) == 0.0
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    # I_x(1, b) = 1 - (1 - x)^b in closed form; both branches of the fraction
    for x in (0.1, 0.5, 0.9):
        assert betainc(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, rel=1e-12)


def test_student_t_matches_scipy() -> None:
    from scipy import stats  # a test extra: missing, this fails rather than skips
    for t, df in ((0.3, 2.5), (1.7, 4.0), (3.1, 17.3), (8.0, 3.0), (0.01, 200.0)):
        assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)


def test_welch() -> None:
    same = welch_t_test([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert same.p == 1.0 and not same.significant
    apart = welch_t_test([5.0, 5.0, 5.0], [6.0, 6.0, 6.0])
    assert apart.p == 0.0 and apart.significant
    # Welch's df for these two samples (hand-computed): va/n=1/3, vb/n=16/3 -> df 2.3356
    tt = welch_t_test([1.0, 2.0, 3.0], [2.0, 6.0, 10.0])
    assert tt.df == pytest.approx((17 / 3) ** 2 / ((1 / 9) / 2 + (256 / 9) / 2), rel=1e-12)
    assert tt.t == pytest.approx(4 / math.sqrt(17 / 3), rel=1e-12)
    assert not tt.significant
    with pytest.raises(ValueError):
        welch_t_test([1.0], [1.0, 2.0])


# -- runs ------------------------------------------------------------------------------

def test_identical_repeats_are_not_significant() -> None:
    """Same values, jitter-free, in two eras: one column each, and no difference."""
    docs = [(f"a{i}", make_run("2.6.33", seed=i)) for i in range(3)]
    docs += [(f"b{i}", make_run("2.6.34", seed=i)) for i in range(3)]
    text = compare(docs)
    assert "a0 (n=3)" in text and "b0 (n=3)" in text
    for fig in ("pages scanned per second", "jobs per minute", "average walk length (VMAs)",
                "CPU time waiting on anon_vma lock %", "CPU time walking %"):
        assert "Not significant!" in verdict_line(text, fig)
    # a percentile read off histogram buckets is shown, never tested
    assert not any(ln.strip().startswith("anon_vma lock wait p99 (us):") for ln in text.splitlines())
    assert "WARNING" not in text


def test_clearly_different_repeats() -> None:
    old = [(f"old{i}", make_run("2.6.33", scanned=1000.0 + 10 * i, walk=300.0 + i,
                                wait=0.50 + 0.01 * i, p99_ns=2_000_000 + 1000 * i))
           for i in range(3)]
    new = [(f"new{i}", make_run("2.6.34", scanned=37000.0 + 100 * i, walk=3.0 + 0.01 * i,
                                wait=0.001 + 0.0001 * i, p99_ns=2000 + 10 * i))
           for i in range(3)]
    text = compare(old + new)
    assert "36.73x faster" in verdict_line(text, "pages scanned per second")
    assert "100.00x shorter" in verdict_line(text, "average walk length (VMAs)")
    assert "x lower" in verdict_line(text, "CPU time waiting on anon_vma lock %")
    # and the other way round
    back = compare(new + old)
    assert "36.73x slower" in verdict_line(back, "pages scanned per second")
    # the table row carries the ratio to the first column
    row = next(ln for ln in text.splitlines() if ln.startswith("pages scanned per second"))
    assert row.split()[-1] == "36.73x"  # 37,100 / 1,010


def test_single_runs_give_ratios_untested() -> None:
    text = compare([("old.json", make_run()), ("new.json", make_run("2.6.34", scanned=9000.0))])
    # one run per side: no verdict rows, one note, the ratio in the table
    assert "(untested)" not in text and "against old.json: no t-test" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("pages scanned per second"))
    assert row.split()[-1] == "9.00x"
    assert "era: 2.6.33 in old.json; 2.6.34 in new.json" in text
    assert "Not significant" not in text


def test_instability_is_flagged() -> None:
    docs = [(f"r{i}", make_run(scanned=v, seed=i)) for i, v in enumerate([1000.0, 1000.0, 2500.0])]
    text = compare(docs)
    assert "WARNING: r0 (n=3): the benchmark result may be unstable" in text
    assert "the standard deviation (866) is 58% of the mean (1,500)" in text
    assert "the maximum (2,500) is 67% greater than the mean (1,500)" in text
    steady = compare([(f"r{i}", make_run(scanned=1000.0 + i, seed=i)) for i in range(3)])
    assert "WARNING" not in steady


def test_machine_differences_are_reported() -> None:
    text = compare([("here.json", make_run()),
                    ("there.json", make_run(cpu_model="Other CPU", python="3.12.1"))])
    assert "machines differ:" in text
    assert "cpu_model: Synthetic CPU in here.json; Other CPU in there.json" in text
    assert "python: 3.11.7 in here.json; 3.12.1 in there.json" in text
    assert "online_cpus" not in text  # the same on both
    # different machines are different columns even with the same config
    assert "(n=2)" not in text
    assert "machines differ" not in compare([("a", make_run()), ("b", make_run())])


def test_demo_file_is_one_run_per_era() -> None:
    demo = {"2.6.33": make_run(), "2.6.34": make_run("2.6.34", scanned=5000.0)}
    text = compare([("demo.json", demo)])
    assert "demo.json:2.6.33" in text and "demo.json:2.6.34" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("pages scanned per second"))
    assert row.split()[-1] == "5.00x"


def test_compare_does_not_change_the_documents() -> None:
    docs = [("a", make_run()), ("b", make_run("2.6.34"))]
    before = copy.deepcopy(docs)
    compare(docs)
    assert docs == before


# -- ramps -----------------------------------------------------------------------------

def test_one_ramp_compares_its_eras() -> None:
    ramp = make_ramp({"2.6.33": {1: [1000.0, 1010.0, 990.0], 2: [1500.0, 1490.0, 1510.0],
                                 4: [900.0, 910.0, 890.0]},
                      "2.6.34": {1: [1000.0, 1010.0, 990.0], 2: [2000.0, 2010.0, 1990.0],
                                 4: [4000.0, 4040.0, 3960.0]}},
                     crossover={"2.6.33": 4, "2.6.34": None})
    text = compare([("ramp.json", ramp)])
    assert "ramp ramp.json: eras side by side" in text
    assert "2.67x faster" in verdict_line(text, "peak jobs/min")  # 4000 vs 1500
    assert "Not significant!" in verdict_line(text, "jobs/min at 1 user")
    assert "4.44x faster" in verdict_line(text, "jobs/min at 4 users")
    cross = next(ln for ln in text.splitlines() if ln.startswith("crossover users"))
    assert cross.split()[2:] == ["4", "not", "reached", "-"]
    at = next(ln for ln in text.splitlines() if ln.startswith("  at users"))
    assert at.split()[2:4] == ["2", "4"]


def test_two_ramps_per_era() -> None:
    a = make_ramp({"2.6.33": {1: [1000.0, 1000.0, 1000.0], 2: [1500.0, 1500.0, 1500.0]}})
    b = make_ramp({"2.6.33": {1: [1000.0, 1000.0, 1000.0], 2: [1500.0, 1500.0, 1500.0]}})
    b["machine"]["package_version"] = "0.2.0"
    text = compare([("a.json", a), ("b.json", b)])
    assert text.startswith("era 2.6.33")
    assert "Not significant!" in verdict_line(text, "peak jobs/min")
    assert "package_version: 0.1.0 in a.json; 0.2.0 in b.json" in text

    c = make_ramp({"2.6.33": {1: [1000.0, 1000.0, 1000.0], 2: [3000.0, 3030.0, 2970.0]}})
    assert "2.00x faster" in verdict_line(compare([("a.json", a), ("c.json", c)]),
                                          "peak jobs/min")


def test_unstable_ramp_point_is_flagged() -> None:
    ramp = make_ramp({"3.0": {1: [1000.0, 1000.0, 3000.0]}})
    assert "WARNING: 3.0: the benchmark result may be unstable" in compare([("r", ramp)])


# -- documents -------------------------------------------------------------------------

def test_load_for_compare(tmp_path: Path) -> None:
    for name, doc in (("run.json", make_run()), ("ramp.json", make_ramp({"3.0": {1: [1.0]}})),
                      ("demo.json", {"2.6.33": make_run(), "2.6.34": make_run("2.6.34")})):
        (tmp_path / name).write_text(json.dumps(doc))
        assert load_for_compare(str(tmp_path / name)) == upgrade(doc)  # previous versions load


@pytest.mark.parametrize("content", [json.dumps({"schema": "rmap-stress-scan/9"}),
                                     json.dumps([1, 2]), json.dumps({}), "not json {"])
def test_load_for_compare_rejects_others(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as exc:
        load_for_compare(str(path))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_load_for_compare_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file"):
        load_for_compare(str(tmp_path / "absent.json"))


def test_compare_rejects_wrong_schema_and_mixtures() -> None:
    with pytest.raises(ResultsError, match="schema 'rmap-stress/0'"):
        compare([("old", {"schema": "rmap-stress/0"})])
    with pytest.raises(ResultsError, match="runs with ramps"):
        compare([("run", make_run()), ("ramp", make_ramp({"3.0": {1: [1.0]}}))])
    with pytest.raises(ResultsError):
        compare([])


# -- statistics against closed forms and scipy -------------------------------------------

@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 3.0), (5.0, 0.5), (0.7, 9.0), (40.0, 60.0)])
@pytest.mark.parametrize("x", [0.001, 0.1, 0.37, 0.5, 0.63, 0.9, 0.999])
def test_betainc_matches_scipy_on_both_branches(a: float, b: float, x: float) -> None:
    from scipy import special
    assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-10, abs=1e-300)


def test_betainc_closed_forms() -> None:
    for x in (0.05, 0.3, 0.5, 0.8, 0.97):
        assert betainc(2.0, 2.0, x) == pytest.approx(3 * x**2 - 2 * x**3, rel=1e-12)
        assert betainc(3.0, 1.0, x) == pytest.approx(x**3, rel=1e-12)
        # the symmetry the function uses for x past (a+1)/(a+b+2)
        assert betainc(2.5, 4.0, x) == pytest.approx(1 - betainc(4.0, 2.5, 1 - x), rel=1e-10)
    assert betainc(7.0, 7.0, 0.5) == pytest.approx(0.5, rel=1e-12)
    # y given precisely: x rounds to 1 but 1 - x does not
    assert betainc(2.0, 3.0, 1.0, 1e-20) == pytest.approx(1.0)
    assert betainc(2.0, 3.0, 1.0 - 1e-12, 0.0) == 1.0


def test_t_p_is_symmetric_and_ends_at_zero() -> None:
    for t, df in ((1.3, 4.0), (2.5, 11.0), (0.2, 1.5)):
        assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)
    assert t_two_sided_p(-math.inf, 3.0) == 0.0
    # tiny t, huge df: x = df / (df + t^2) rounds to 1, the complement carries it
    assert t_two_sided_p(1e-9, 1e12) == pytest.approx(1.0)


@pytest.mark.parametrize(("a", "b"), [
    ([1.0, 2.0, 3.0], [2.0, 6.0, 10.0]),
    ([10.0, 10.5, 9.5, 10.2, 9.8], [11.0, 13.0, 12.0]),
    ([100.0, 101.0], [90.0, 95.0, 91.0, 93.0]),
])
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    from scipy import stats  # a test extra: missing, this fails rather than skips
    ref = stats.ttest_ind(b, a, equal_var=False)
    tt = welch_t_test(a, b)
    assert tt.t == pytest.approx(float(ref.statistic), rel=1e-12)
    assert tt.p == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert tt.significant == (float(ref.pvalue) < 0.05)


def test_welch_direction_and_sizes() -> None:
    up = welch_t_test([1.0, 2.0, 3.0], [11.0, 12.0, 13.0])
    down = welch_t_test([11.0, 12.0, 13.0], [1.0, 2.0, 3.0])
    assert up.t == pytest.approx(10 / math.sqrt(2 / 3)) and down.t == -up.t and up.p == down.p
    assert up.significant
    # unequal sizes: each variance over its own n, df with its own n - 1
    tt = welch_t_test([1.0, 3.0], [0.0, 3.0, 6.0, 9.0])
    va, vb = 2.0 / 2, 15.0 / 4
    assert tt.df == pytest.approx((va + vb) ** 2 / (va**2 / 1 + vb**2 / 3), rel=1e-12)
    with pytest.raises(ValueError, match="two values"):
        welch_t_test([1.0, 2.0], [1.0])
    same_mean_no_spread = welch_t_test([2.0, 2.0], [2.0, 2.0, 2.0])
    assert (same_mean_no_spread.t, same_mean_no_spread.p) == (0.0, 1.0)
    apart = welch_t_test([2.0, 2.0], [3.0, 3.0])
    assert (apart.t, apart.df, apart.p) == (math.inf, math.inf, 0.0)


def test_significance_threshold_is_five_percent() -> None:
    from stress.analysis.compare import TTest

    assert TTest(2.0, 10.0, 0.0499).significant and not TTest(2.0, 10.0, 0.05).significant


def test_instability_rules_at_their_edges() -> None:
    fmt = "{:g}".format
    assert instability([10.0], fmt) == []
    assert instability([0.0, 0.0, 0.0], fmt) == []
    assert instability([9.3, 10.7], fmt) == []  # std dev 0.99: 9.9% of the mean
    (why,) = instability([9.29, 10.71], fmt)  # 1.004: 10.0%
    assert why.startswith("the standard deviation (1.00409) is 10% of the mean (10)")
    # min and max exactly 50% away count; std dev 5 is 50% of the mean
    assert instability([5.0, 10.0, 15.0], fmt) == [
        "the standard deviation (5) is 50% of the mean (10)",
        "the minimum (5) is 50% smaller than the mean (10)",
        "the maximum (15) is 50% greater than the mean (10)"]
    # a negative mean: the distance is measured against its size
    neg = instability([-5.0, -10.0, -15.0], fmt)
    assert neg[1:] == ["the minimum (-15) is 50% smaller than the mean (-10)",
                       "the maximum (-5) is 50% greater than the mean (-10)"]
    assert neg[0] == "the standard deviation (5) is 50% of the mean (-10)"
    # only the maximum far out
    assert instability([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 25.0], fmt)[-1] == \
        "the maximum (25) is 117% greater than the mean (11.5)"  # 13.5 / 11.5


# -- documents and metadata ------------------------------------------------------------

def test_is_demo_doc() -> None:
    from stress.analysis.compare import is_demo_doc

    assert is_demo_doc(upgrade({"2.6.33": make_run(), "2.6.34": make_run("2.6.34")}))
    assert is_demo_doc({"schema": "rmap-stress-demo/2", "eras": {"2.6.33": make_run()}})
    assert not is_demo_doc({"2.6.33": make_run(), "2.6.34": make_run("2.6.34")})  # not loaded
    assert not is_demo_doc({})
    assert not is_demo_doc([make_run()])
    assert not is_demo_doc(make_run())
    assert not is_demo_doc({"2.6.33": make_run(), "note": "x"})
    assert not is_demo_doc({"2.6.33": {"schema": "rmap-stress-ramp/1"}})


def test_load_for_compare_says_why_a_file_is_refused(tmp_path: Path) -> None:
    scan = tmp_path / "scan.json"
    scan.write_text(json.dumps({"schema": "rmap-stress/1", "walks": {}}))
    with pytest.raises(ResultsError, match=r"scan\.json: a scan document; this takes demo, ramp, run "
                                           r"or scale"):
        load_for_compare(str(scan))
    with pytest.raises(ResultsError, match="is a folder, not a results file"):
        load_for_compare(str(tmp_path))  # a folder
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ResultsError, match="not a results file"):
        load_for_compare(str(binary))
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"schema": "x/1"}))
    with pytest.raises(ResultsError) as info:
        load_for_compare(str(other))
    assert str(info.value) == (f"{other}: schema 'x/1' is not one rmap-stress writes (expected demo, "
                               f"ramp, run or scale)")
    other.write_text("[]")
    with pytest.raises(ResultsError, match="not a results document"):
        load_for_compare(str(other))


def test_cpu_lists_and_missing_metadata_are_written_plainly() -> None:
    text = compare([("here", make_run(affinity=[0, 1, 2, 3])),
                    ("there", make_run(affinity=[8, 0, 1, 2, 3, 5, 7], cpu_model=None))])
    assert "affinity: 0-3 in here; 0-3,5,7-8 in there" in text
    assert "cpu_model: Synthetic CPU in here; ? in there" in text
    assert "affinity: 4 in a; 5 in b" in compare([("a", make_run(affinity=[4])),
                                                  ("b", make_run(affinity=[5]))])


def test_ramp_eras_in_config_order_then_any_others() -> None:
    ramp = make_ramp({"2.6.34": {1: [10.0]}, "2.6.33": {1: [20.0]}})
    ramp["config"]["eras"] = ["2.6.33"]  # 2.6.34 only among the points
    ramp["points"].append(dict(ramp["points"][0], era="3.0", jobs_per_min=30.0))
    lines = compare([("r", ramp)]).splitlines()
    head = lines[1].split()
    assert head == ["2.6.33", "2.6.34", "ratio", "3.0", "ratio"]


def test_ramp_peak_is_the_best_mean_and_the_lowest_count_on_a_tie() -> None:
    ramp = make_ramp({"A": {1: [100.0, 300.0], 2: [200.0, 200.0], 4: [150.0, 150.0]},
                      "B": {1: [50.0], 2: [50.0], 4: [50.0]}})
    lines = compare([("r", ramp)]).splitlines()
    at = next(ln for ln in lines if ln.startswith("  at users"))
    assert at.split()[2:4] == ["1", "1"]  # A: 1 and 2 both average 200; B: all tie at 50
    peak = next(ln for ln in lines if ln.startswith("peak jobs/min"))
    assert peak.split()[2] == "200"
    rows = [ln.split()[:4] for ln in lines if ln.startswith("jobs/min at")]
    assert rows == [["jobs/min", "at", "1", "user"], ["jobs/min", "at", "2", "users"],
                    ["jobs/min", "at", "4", "users"]]

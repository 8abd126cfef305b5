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


# -- whole outputs: every line of a comparison pinned ----------------------------------

def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_runs_whole_output_groups_differences_and_verdicts() -> None:
    """Two groups of two and a single run: member lines, config differences (a seed never
    counts), verdicts past the untestable p99 row, the note for the single run, and the p99
    read from the anon_vma lock, not the first lock listed (0 where there is none)."""
    def run(era: str, seed: int, scanned: float, forks: float, p99_ns: int) -> dict[str, Any]:
        r = make_run(era, scanned=scanned, seed=seed, p99_ns=p99_ns)
        r["throughput"]["forks_per_s"] = forks
        mm = copy.deepcopy(r["locks"][0])
        mm["class"] = "mm"
        mm["wait_ns"]["p99"] = 7_000_000
        r["locks"].insert(0, mm)
        return r

    single = run("2.6.34", 5, 3000.0, 50.0, 1_000_000)
    single["config"]["users"] = 32
    del single["locks"][1]  # no anon_vma lock recorded
    docs = [("a1", run("2.6.33", 1, 1000.0, 50.0, 2_000_000)),
            ("a2", run("2.6.33", 2, 1010.0, 52.0, 2_000_000)),
            ("b1", run("2.6.34", 3, 2000.0, 51.0, 3_000_000)),
            ("b2", run("2.6.34", 4, 2020.0, 49.0, 3_000_000)),
            ("c", single)]
    assert lines_of(compare(docs)) == [
        "                                          a1 (n=2)       b1 (n=2)  ratio      c  ratio",
        "pages scanned per second                 1,005 ± 7     2,010 ± 14  2.00x  3,000  2.99x",
        "jobs per minute                             60 ± 0         60 ± 0  1.00x     60  1.00x",
        "average walk length (VMAs)             300.0 ± 0.0    300.0 ± 0.0  1.00x  300.0  1.00x",
        "CPU time waiting on anon_vma lock %   50.00 ± 0.00   50.00 ± 0.00  1.00x  50.00  1.00x",
        "CPU time walking %                    20.00 ± 0.00   20.00 ± 0.00  1.00x  20.00  1.00x",
        "anon_vma lock wait p99 (us)          2,000.0 ± 0.0  3,000.0 ± 0.0  1.50x    0.0  0.00x",
        "forks per second                            51 ± 1         50 ± 1  0.98x     50  0.98x",
        "  a1 (n=2): a1, a2",
        "  b1 (n=2): b1, b2",
        "",
        "configs differ:",
        "  era: 2.6.33 in a1 (n=2); 2.6.34 in b1 (n=2), c",
        "  users: 64 in a1 (n=2), b1 (n=2); 32 in c",
        "",
        "against a1 (n=2) (Welch's t-test, 95%):",
        "  b1 (n=2)",
        "    pages scanned per second: 1,005 ± 7 -> 2,010 ± 14: 2.00x faster (p=0.001)",
        "    jobs per minute: 60 ± 0 -> 60 ± 0: Not significant! (p=1.00)",
        "    average walk length (VMAs): 300.0 ± 0.0 -> 300.0 ± 0.0: Not significant! (p=1.00)",
        "    CPU time waiting on anon_vma lock %: 50.00 ± 0.00 -> 50.00 ± 0.00: Not significant! (p=1.00)",
        "    CPU time walking %: 20.00 ± 0.00 -> 20.00 ± 0.00: Not significant! (p=1.00)",
        "    forks per second: 51 ± 1 -> 50 ± 1: Not significant! (p=0.55)",
        "(not tested where one side has a single run: repeat the runs for a t-test)",
    ]


def test_runs_instability_and_drift_warnings_of_each_column() -> None:
    a = [(f"a{i}", make_run(scanned=1000.0 + 100 * i, seed=i)) for i in range(4)]
    b = [(f"b{i}", make_run("2.6.34", scanned=s, jobs=j, seed=i))
         for i, (s, j) in enumerate(zip([1000.0, 1000.0, 1000.0, 3000.0], [60.0, 59.0, 58.0, 57.0]))]
    drift_line = ("the repeats drift: the machine changed while they ran; interleave them "
                  "(ramp or scale --repeat) or rerun on a quiet machine")
    assert lines_of(compare(a + b))[-10:] == [
        "",
        "WARNING: a0 (n=4): the benchmark result may be unstable",
        "* pages scanned per second: the standard deviation (129) is 11% of the mean (1,150)",
        f"WARNING: a0 (n=4): {drift_line}",
        ("* pages scanned per second: 4 repeats, each above the one before (1,000, 1,100, 1,200, "
         "1,300, in the order they ran)"),
        "WARNING: b0 (n=4): the benchmark result may be unstable",
        "* pages scanned per second: the standard deviation (1,000) is 67% of the mean (1,500)",
        "* pages scanned per second: the maximum (3,000) is 100% greater than the mean (1,500)",
        f"WARNING: b0 (n=4): {drift_line}",
        "* jobs per minute: 4 repeats, each below the one before (60, 59, 58, 57, in the order they ran)",
    ]


def test_one_group_has_no_verdicts_and_a_cut_run_is_named() -> None:
    cut = make_run(seed=1)
    cut["interrupted"] = "SIGINT"
    cut["elapsed_s"] = 2.0
    assert lines_of(compare([("x", make_run()), ("cut", cut)])) == [
        "                                           x (n=2)",
        "pages scanned per second                 1,000 ± 0",
        "jobs per minute                             60 ± 0",
        "average walk length (VMAs)             300.0 ± 0.0",
        "CPU time waiting on anon_vma lock %   50.00 ± 0.00",
        "CPU time walking %                    20.00 ± 0.00",
        "anon_vma lock wait p99 (us)          2,000.0 ± 0.0",
        "  x (n=2): x, cut",
        "",
        "WARNING: cut: interrupted: 2.0 s measured of 5 s planned",
    ]


def test_single_run_against_repeats_is_not_tested() -> None:
    docs = [("x", make_run())] + [(f"y{i}", make_run("2.6.34", scanned=2000.0 + i, seed=i))
                                  for i in range(3)]
    assert lines_of(compare(docs))[-6:] == [
        "",
        "configs differ:",
        "  era: 2.6.33 in x; 2.6.34 in y0 (n=3)",
        "",
        "against x: no t-test",
        "(not tested where one side has a single run: repeat the runs for a t-test)",
    ]


def test_repeats_group_whatever_the_order_of_their_config_keys() -> None:
    again = make_run(seed=1)
    again["config"] = dict(reversed(list(again["config"].items())))
    text = compare([("a", make_run()), ("b", again)])
    assert "a (n=2)" in text and "  a (n=2): a, b" in text


def test_demo_files_compare_their_machines() -> None:
    here = {"2.6.33": make_run(), "2.6.34": make_run("2.6.34")}
    there = {"2.6.33": make_run(cpu_model="Other CPU"), "2.6.34": make_run("2.6.34", cpu_model="Other CPU")}
    text = compare([("here.json", here), ("there.json", there)])
    assert lines_of(text)[-2:] == ["machines differ:",
                                   "  cpu_model: Synthetic CPU in here.json; Other CPU in there.json"]


def test_ramp_with_an_era_that_measured_nothing() -> None:
    """An era named in the config but without points: '-' for its figures, 'not reached'
    for its crossovers and for the user counts the others measured, which stay compared."""
    ramp = make_ramp({"A": {1: [100.0, 110.0], 2: [300.0, 310.0]},
                      "C": {1: [100.0, 105.0], 2: [150.0, 160.0]}}, crossover={"A": 2})
    ramp["crossover"]["A"]["system90_users"] = 1
    ramp["config"]["eras"] = ["A", "B", "C"]
    assert lines_of(compare([("r.json", ramp)])) == [
        "ramp r.json: eras side by side",
        "                                A            B  ratio            C  ratio",
        "peak jobs/min             305 ± 7            -      -      155 ± 7  0.51x",
        "  at users                      2            -      -            2  1.00x",
        "crossover users                 2  not reached      -  not reached      -",
        "users at 90% system time        1  not reached      -  not reached      -",
        "jobs/min at 1 user        105 ± 7            -      -      102 ± 4  0.98x",
        "jobs/min at 2 users       305 ± 7            -      -      155 ± 7  0.51x",
        "",
        "against A (Welch's t-test, 95%):",
        "  C",
        "    peak jobs/min: 305 ± 7 -> 155 ± 7: 1.97x slower (p=0.0022)",
        "    jobs/min at 1 user: 105 ± 7 -> 102 ± 4: Not significant! (p=0.71)",
        "    jobs/min at 2 users: 305 ± 7 -> 155 ± 7: 1.97x slower (p=0.0022)",
    ]


def test_ramp_with_one_era_has_no_verdicts() -> None:
    one = make_ramp({"A": {1: [100.0, 110.0], 2: [300.0, 310.0]}})
    assert lines_of(compare([("one.json", one)])) == [
        "ramp one.json: eras side by side",
        "                                    A",
        "peak jobs/min                 305 ± 7",
        "  at users                          2",
        "crossover users           not reached",
        "users at 90% system time  not reached",
        "jobs/min at 1 user            105 ± 7",
        "jobs/min at 2 users           305 ± 7",
    ]


def test_two_ramps_whole_output() -> None:
    one = make_ramp({"A": {1: [100.0, 110.0], 2: [300.0, 310.0]}})
    other = make_ramp({"A": {1: [100.0, 110.0], 2: [600.0, 610.0]}, "D": {1: [5.0]}})
    other["config"]["threshold"] = 0.7
    other["crossover"]["A"]["system90_users"] = 2
    assert lines_of(compare([("one.json", one), ("other.json", other)])) == [
        "era A",
        "                             one.json   other.json  ratio",
        "peak jobs/min                 305 ± 7      605 ± 7  1.98x",
        "  at users                          2            2  1.00x",
        "crossover users           not reached  not reached      -",
        "users at 90% system time  not reached            2      -",
        "jobs/min at 1 user            105 ± 7      105 ± 7  1.00x",
        "jobs/min at 2 users           305 ± 7      605 ± 7  1.98x",
        "",
        "against one.json (Welch's t-test, 95%):",
        "  other.json",
        "    peak jobs/min: 305 ± 7 -> 605 ± 7: 1.98x faster (p=0.00056)",
        "    jobs/min at 1 user: 105 ± 7 -> 105 ± 7: Not significant! (p=1.00)",
        "    jobs/min at 2 users: 305 ± 7 -> 605 ± 7: 1.98x faster (p=0.00056)",
        "",
        "era D",
        "                           other.json",
        "peak jobs/min                       5",
        "  at users                          1",
        "crossover users           not reached",
        "users at 90% system time  not reached",
        "jobs/min at 1 user                  5",
        "",
        "configs differ:",
        "  eras: ['A'] in one.json; ['A', 'D'] in other.json",
        "  threshold: 0.5 in one.json; 0.7 in other.json",
    ]


# -- scales ----------------------------------------------------------------------------

def make_scale(curves: dict[str, dict[int, list[tuple[float, float]]]],
               key: str = "jobs_per_min") -> dict[str, Any]:
    """A scale whose points carry the given (throughput, wait share), {curve: {cpus: [one per
    repeat]}}, in the order scale runs them (round by round) but for the last round, listed
    first: compare reads the repeats in the order they ran, not as listed."""
    points = [{"era": curve.split()[0], "lock": curve.split()[-1], "curve": curve, "cpus": n,
               "repeat": r, "oversubscribed": False, "throughput_key": key, "throughput": thr,
               "throughput_per_cpu": thr / n, "wait_share": wait, "elapsed_s": 1.0}
              for r in range(4) for curve, by_n in curves.items() for n, vals in sorted(by_n.items())
              if r < len(vals) for thr, wait in [vals[r]]]
    last = max(p["repeat"] for p in points)
    return {
        "schema": "rmap-stress-scale/2",
        "config": {"curves": [{"label": c, "era": c.split()[0], "lock": c.split()[-1]} for c in curves],
                   "repeat": last + 1, "scenario": "reclaim-storm", "duration": 1.0},
        "machine": dict(MACHINE),
        "points": [p for p in points if p["repeat"] == last] + [p for p in points if p["repeat"] != last],
    }


def test_one_scale_compares_its_curves() -> None:
    """Only the CPU counts every curve measured; repeats in the order they ran."""
    scale = make_scale({"2.6.33 spin": {1: [(100.0, 0.1)] * 4,
                                        2: [(150.0, 0.20), (160.0, 0.21), (170.0, 0.22), (180.0, 0.23)]},
                        "2.6.34 spin": {1: [(100.0, 0.01), (101.0, 0.01), (99.0, 0.01), (100.0, 0.01)],
                                        2: [(200.0, 0.02), (202.0, 0.02), (198.0, 0.02), (200.0, 0.02)],
                                        4: [(300.0, 0.03)] * 4}})
    assert lines_of(compare([("s.json", scale)])) == [
        "scale s.json: curves side by side",
        "                        2.6.33 spin  2.6.34 spin   ratio",
        "jobs/min at 1 CPU           100 ± 0      100 ± 1   1.00x",
        "jobs/min at 2 CPUs         165 ± 13      200 ± 2   1.21x",
        "lock wait % at 1 CPU   10.00 ± 0.00  1.00 ± 0.00   0.10x",
        "lock wait % at 2 CPUs  21.50 ± 1.29  2.00 ± 0.00  0.093x",
        "",
        "against 2.6.33 spin (Welch's t-test, 95%):",
        "  2.6.34 spin",
        "    jobs/min at 1 CPU: 100 ± 0 -> 100 ± 1: Not significant! (p=1.00)",
        "    jobs/min at 2 CPUs: 165 ± 13 -> 200 ± 2: 1.21x faster (p=0.012)",
        "    lock wait % at 1 CPU: 10.00 ± 0.00 -> 1.00 ± 0.00: 10.00x lower (p=0)",
        "    lock wait % at 2 CPUs: 21.50 ± 1.29 -> 2.00 ± 0.00: 10.75x lower (p=8e-05)",
        "",
        ("WARNING: 2.6.33 spin: the repeats drift: the machine changed while they ran; interleave them "
         "(ramp or scale --repeat) or rerun on a quiet machine"),
        ("* jobs/min at 2 CPUs: 4 repeats, each above the one before (150, 160, 170, 180, in the order "
         "they ran)"),
        ("* lock wait % at 2 CPUs: 4 repeats, each above the one before (20.00, 21.00, 22.00, 23.00, "
         "in the order they ran)"),
    ]


def test_two_scales_per_curve() -> None:
    a = make_scale({"3.0 ticket": {1: [(500.0, 0.5)] * 3},
                    "2.6.33 ticket": {1: [(1000.0, 0.1), (1010.0, 0.11), (990.0, 0.12)]}},
                   key="pages_scanned_per_s")
    b = make_scale({"2.6.33 ticket": {1: [(2000.0, 0.1), (2020.0, 0.11), (1980.0, 0.12)]}},
                   key="pages_scanned_per_s")
    b["config"]["duration"] = 2.0
    b["config"]["curves"] = a["config"]["curves"]
    b["machine"]["python"] = "3.12.1"
    assert lines_of(compare([("a.json", a), ("b.json", b)])) == [
        "curve 3.0 ticket",
        "                            a.json",
        "pages/s at 1 CPU           500 ± 0",
        "lock wait % at 1 CPU  50.00 ± 0.00",
        "",
        "curve 2.6.33 ticket",
        "                            a.json        b.json  ratio",
        "pages/s at 1 CPU        1,000 ± 10    2,000 ± 20  2.00x",
        "lock wait % at 1 CPU  11.00 ± 1.00  11.00 ± 1.00  1.00x",
        "",
        "against a.json (Welch's t-test, 95%):",
        "  b.json",
        "    pages/s at 1 CPU: 1,000 ± 10 -> 2,000 ± 20: 2.00x faster (p=5.8e-06)",
        "    lock wait % at 1 CPU: 11.00 ± 1.00 -> 11.00 ± 1.00: Not significant! (p=1.00)",
        "",
        "configs differ:",
        "  duration: 1.0 in a.json; 2.0 in b.json",
        "",
        "machines differ:",
        "  python: 3.11.7 in a.json; 3.12.1 in b.json",
    ]


def test_scale_throughput_unit() -> None:
    """Named after the one throughput key of every point; 'throughput' when the keys
    differ or one is not known; a single value per side is not tested."""
    forks = make_scale({"2.6.33 ticket": {1: [(1000.0, 0.1)]}}, key="forks_per_s")
    assert lines_of(compare([("c.json", forks)])) == [
        "scale c.json: curves side by side",
        "                      2.6.33 ticket",
        "throughput at 1 CPU           1,000",
        "lock wait % at 1 CPU          10.00",
    ]
    pages = make_scale({"2.6.33 ticket": {1: [(1000.0, 0.1), (1010.0, 0.11)]}}, key="pages_scanned_per_s")
    jobs = make_scale({"2.6.33 ticket": {1: [(1000.0, 0.1)]}})
    jobs["config"]["repeat"] = 2
    assert lines_of(compare([("p.json", pages), ("j.json", jobs)])) == [
        "curve 2.6.33 ticket",
        "                            p.json  j.json  ratio",
        "throughput at 1 CPU      1,005 ± 7   1,000  1.00x",
        "lock wait % at 1 CPU  10.50 ± 0.71   10.00  0.95x",
        "",
        "against p.json: no t-test",
        "(not tested where one side has a single run: repeat the runs for a t-test)",
    ]
    assert "jobs/min at 1 CPU" in compare([("j.json", jobs)])


def test_scale_load_and_mixture(tmp_path: Path) -> None:
    scale = make_scale({"3.0 spin": {1: [(1.0, 0.0)]}})
    path = tmp_path / "scale.json"
    path.write_text(json.dumps(scale))
    assert load_for_compare(str(path)) == scale
    with pytest.raises(ResultsError) as info:
        compare([("run", make_run()), ("scale", scale)])
    assert str(info.value) == "cannot compare runs with ramps or scales: pass one kind of result"


# -- the pieces, one by one ------------------------------------------------------------

def test_drift_needs_four_strict_steps_one_way() -> None:
    from stress.analysis.compare import drift

    assert drift([1.0, 2.0, 3.0]) is None  # three repeats: too few to call
    assert drift([1.0, 2.0, 3.0, 4.0]) == "rise"
    assert drift([4.0, 3.0, 2.0, 1.0]) == "fall"
    assert drift([-4.0, -3.0, -2.0, -1.0]) == "rise"
    assert drift([1.0, 1.5, 2.0, 2.5]) == "rise"  # small steps count
    assert drift([2.5, 2.0, 1.5, 1.0]) == "fall"
    assert drift([1.0, 2.0, 2.0, 3.0]) is None  # a tie breaks the run
    assert drift([3.0, 2.0, 2.0, 1.0]) is None
    assert drift([1.0, 1.5, 1.2, 1.4]) is None  # up and down


def test_verdict_without_a_test() -> None:
    """One value on a side: the ratio alone, marked untested; a mean of 0 has no ratio."""
    from stress.analysis.compare import JOBS_PER_MIN, verdict

    assert verdict(JOBS_PER_MIN, [1.0], [2.0, 3.0]) == "1 -> 2 ± 1: 2.50x faster (untested)"
    assert verdict(JOBS_PER_MIN, [2.0, 4.0], [1.0]) == "3 ± 1 -> 1: 3.00x slower (untested)"
    assert verdict(JOBS_PER_MIN, [1.0], [2.0]) == "1 -> 2: 2.00x faster (untested)"
    assert verdict(JOBS_PER_MIN, [2.0], [1.0]) == "2 -> 1: 2.00x slower (untested)"
    assert verdict(JOBS_PER_MIN, [5.0], [5.0]) == "5 -> 5: no change (untested)"
    assert verdict(JOBS_PER_MIN, [0.0], [3.0]) == "0 -> 3: faster (from 0) (untested)"
    assert verdict(JOBS_PER_MIN, [3.0], [0.0]) == "3 -> 0: slower (from 3) (untested)"
    # two values a side are enough for the test
    assert verdict(JOBS_PER_MIN, [10.0, 10.0], [20.0, 20.0]) == "10 ± 0 -> 20 ± 0: 2.00x faster (p=0)"


def test_instability_at_exactly_ten_percent_and_its_percentages() -> None:
    fmt = "{:g}".format
    # std dev 1.0 is exactly 10% of 10: it counts
    assert instability([9.0, 10.0, 11.0], fmt) == ["the standard deviation (1) is 10% of the mean (10)"]
    assert instability([0.0, 10.0, 20.0], fmt) == [
        "the standard deviation (10) is 100% of the mean (10)",
        "the minimum (0) is 100% smaller than the mean (10)",
        "the maximum (20) is 100% greater than the mean (10)"]


def test_welch_needs_two_values_a_side_and_zero_spread_is_exact() -> None:
    with pytest.raises(ValueError) as info:
        welch_t_test([1.0], [1.0, 2.0])
    assert str(info.value) == "a t-test needs at least two values in each sample"
    same = welch_t_test([2.0, 2.0], [2.0, 2.0])
    assert (same.t, same.df, same.p) == (0.0, math.inf, 1.0)


def test_t_p_of_a_tiny_t_keeps_its_distance_from_one() -> None:
    """x = df / (df + t^2) rounds to 1 for t = 1e-9, df = 1; the p-value (Cauchy: 1 -
    (2/pi) atan t) is still 6.4e-10 short of 1, carried by 1 - x given exactly."""
    p = t_two_sided_p(1e-9, 1.0)
    assert p < 1.0
    assert 1.0 - p == pytest.approx(2 / math.pi * math.atan(1e-9), rel=1e-6)


def test_load_for_compare_refuses_a_file_that_measured_nothing(tmp_path: Path) -> None:
    ramp = make_ramp({"3.0": {}})
    path = tmp_path / "ramp.json"
    path.write_text(json.dumps(ramp))
    with pytest.raises(ResultsError) as info:
        load_for_compare(str(path))
    assert str(info.value) == f"{path}: nothing was measured: nothing to read"
    ramp["interrupted"] = "SIGINT"
    path.write_text(json.dumps(ramp))
    with pytest.raises(ResultsError) as info:
        load_for_compare(str(path))
    assert str(info.value) == f"{path}: interrupted by SIGINT before anything was measured: nothing to read"
    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps({"schema": "rmap-stress-demo/2", "eras": {}, "interrupted": "SIGTERM"}))
    with pytest.raises(ResultsError) as info:
        load_for_compare(str(demo))
    assert str(info.value) == f"{demo}: interrupted by SIGTERM before anything was measured: nothing to read"
    # a demo with its eras is read (it has no points)
    demo.write_text(json.dumps({"schema": "rmap-stress-demo/2", "eras": {"2.6.33": upgrade(make_run())}}))
    assert load_for_compare(str(demo))["eras"]["2.6.33"]["config"]["era"] == "2.6.33"


def test_compare_names_what_it_cannot_read() -> None:
    with pytest.raises(ResultsError) as info:
        compare([("x", [1, 2])])  # type: ignore[list-item]
    assert str(info.value) == ("x: schema 'list', expected 'rmap-stress-run/2', 'rmap-stress-ramp/2', "
                               "'rmap-stress-scale/2' or 'rmap-stress-demo/2'")
    with pytest.raises(ResultsError) as info:
        compare([])
    assert str(info.value) == "nothing to compare"


@pytest.mark.parametrize(("a", "b", "x", "rel"), [
    (0.9, 0.4, 0.001, 1e-12),  # far below (a+1)/(a+b+2) = 0.58: the direct fraction is exact
    (0.83, 7.6e6, 3.4e-7, 1e-9),  # just past it (2.4e-7): the symmetric one
])
def test_betainc_picks_the_fraction_that_converges(a: float, b: float, x: float, rel: float) -> None:
    """The wrong one of the two continued fractions still converges, but to fewer digits."""
    from scipy import special
    assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=rel, abs=0)

"""Text tables from results documents: units, shares, the lockstat and cpu tables, the
summary and the side-by-side ratios, on documents built here with hand-picked values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stress.analysis.report import (
    cpu_table,
    fmt_ns,
    lockstat_table,
    mean_shares,
    pct,
    run_report,
    run_summary,
    side_by_side,
)


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0 ns"), (999, "999 ns"), (999.6, "1000 ns"), (1000, "1.00 us"), (1500, "1.50 us"),
    (999_999, "1000.00 us"), (1_000_000, "1.00 ms"), (2_500_000_000, "2.50 s"), (-1500, "-1.50 us"),
])
def test_fmt_ns_scales_as_perf_does(ns: float, text: str) -> None:
    assert fmt_ns(ns) == text


def test_pct() -> None:
    assert pct(0.123) == " 12.3%"
    assert pct(1.0) == "100.0%"


def _times(total: int, avg: int, mx: int, mn: int = 1, p99: int = 0) -> dict[str, int]:
    return {"min": mn, "max": mx, "total": total, "avg": avg, "p50": 0, "p90": 0, "p99": p99, "p999": 0}


def make_run(era: str = "2.6.33", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "rmap-stress/1",
        "config": {"era": era, "scenario": "reclaim-storm", "users": 64, "pages": 8, "cow": 1.0,
                   "cpus": 2, "lock": "spin"},
        "elapsed_s": 2.04,
        "model": {"mms": 65, "vmas": 65, "anon_vmas": 1, "avcs": 0, "pages": 520},
        "walks": {"count": 10, "avg_visited": 501.4, "max_visited": 1001},
        "throughput": {"pages_scanned_per_s": 855.0, "jobs_per_min": 0.0},
        "anon_vma_wait_share": 0.485,
        "locks": [
            {"class": "anon_vma", "contentions": 7, "acquisitions": 100,
             "wait_ns": _times(3_000_000_000, 428_571_428, 2_000_000_000, mn=1500, p99=1_900_000_000),
             "hold_ns": _times(5_000_000, 50_000, 900_000),
             "sites": [{"site": "page_referenced", "contentions": 5, "wait_total_ns": 2_000_000_000},
                       {"site": "anon_vma_fork", "contentions": 0, "wait_total_ns": 0},
                       {"site": "try_to_unmap", "contentions": 2, "wait_total_ns": 1_000_000_000}]},
            {"class": "ptl", "contentions": 0, "acquisitions": 40,
             "wait_ns": _times(0, 0, 0, mn=0), "hold_ns": _times(4000, 100, 300),
             "sites": [{"site": "page_referenced_one", "contentions": 0, "wait_total_ns": 0}]},
        ],
        "cpus": [
            {"cpu": 0, "share": {"work": 0.1, "walk": 0.3, "lock_wait": 0.5, "other": 0.1},
             "os": {"utime": 1.5, "stime": 0.25, "voluntary_ctx": 3, "involuntary_ctx": 40}, "walks": 6},
            {"cpu": 1, "share": {"work": 0.3, "walk": 0.1, "lock_wait": 0.4, "other": 0.2},
             "os": {"utime": 1.25, "stime": 0.0, "voluntary_ctx": 0, "involuntary_ctx": 7}, "walks": 4},
        ],
        "invariants": {"checked": True, "violations": 0, "messages": []},
    }
    doc.update(over)
    return doc


def test_lockstat_table_rows_units_and_contention_points() -> None:
    lines = lockstat_table(make_run()).splitlines()
    assert lines[0].split() == ["class", "contentions", "wait-min", "wait-max", "wait-total", "wait-avg",
                                "wait-p99", "acquisitions", "hold-max", "hold-total", "hold-avg"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["anon_vma", "7", "1.50", "us", "2.00", "s", "3.00", "s", "428.57", "ms",
                                "1.90", "s", "100", "900.00", "us", "5.00", "ms", "50.00", "us"]
    # the sites that waited, in the document's order; one that did not wait is left out
    assert lines[3].split() == ["5", "page_referenced", "(waited", "2.00", "s)"]
    assert lines[4].split() == ["2", "try_to_unmap", "(waited", "1.00", "s)"]
    assert lines[5].split()[:2] == ["ptl", "0"] and len(lines) == 6
    assert len(lockstat_table(make_run(), top_sites=1).splitlines()) == 5
    # at most four contention points per class unless asked for more
    many = make_run()
    many["locks"][0]["sites"] = [{"site": f"s{i}", "contentions": 1, "wait_total_ns": 1} for i in range(6)]
    assert len(lockstat_table(many).splitlines()) == 2 + 1 + 4 + 1
    assert len(lockstat_table(many, top_sites=6).splitlines()) == 2 + 1 + 6 + 1


def test_cpu_table() -> None:
    lines = cpu_table(make_run()).splitlines()
    assert lines[0].split() == ["cpu", "work", "walk", "wait", "iowait", "other", "walks", "utime", "stime",
                                "vctx", "ivctx"]
    assert lines[1].split() == ["0", "10.0%", "30.0%", "50.0%", "0.0%", "10.0%", "6", "1.50s", "0.25s",
                                "3", "40"]
    assert lines[2].split() == ["1", "30.0%", "10.0%", "40.0%", "0.0%", "20.0%", "4", "1.25s", "0.00s",
                                "0", "7"]
    assert len(lines) == 3


def test_cpu_table_of_many_cpus_shows_those_that_waited_longest() -> None:
    one = make_run()["cpus"][0]
    cpus = [{**one, "cpu": i, "walks": 1, "share": {**one["share"], "lock_wait": i / 100}} for i in range(40)]
    lines = cpu_table(make_run(cpus=cpus)).splitlines()
    assert [int(x.split()[0]) for x in lines[1:-1]] == list(range(32, 40))
    assert lines[-1].split()[:7] == ["rest", "10.0%", "30.0%", "15.5%", "0.0%", "10.0%", "32"]
    assert "the other 32 CPUs" in lines[-1] and "--json" in lines[-1]
    assert len(cpu_table(make_run(cpus=cpus[:32])).splitlines()) == 33  # up to 32: every row


def test_an_oversubscribed_run_says_how_little_each_cpu_can_run() -> None:
    doc = make_run(machine={"affinity": [0, 1]})
    assert "oversubscribed" not in run_summary(doc)  # 2 CPUs on 2 cores
    doc["config"] = {**doc["config"], "cpus": 256}
    lines = run_summary(doc).splitlines()
    assert lines[-2] == ("oversubscribed: 256 CPUs on 2 cores: each CPU is on a core at most 0.8% of "
                         "the time, about 16 ms of this 2.0 s window")
    assert lines[-1].startswith("invariants: ")


def test_mean_shares() -> None:
    assert mean_shares(make_run()) == pytest.approx({"work": 0.2, "walk": 0.2, "lock_wait": 0.45,
                                                     "iowait": 0.0, "other": 0.15})
    assert mean_shares(make_run(cpus=[])) == {"work": 0.0, "walk": 0.0, "lock_wait": 0.0, "iowait": 0.0,
                                              "other": 0.0}


def test_run_summary() -> None:
    lines = run_summary(make_run()).splitlines()
    assert lines[0] == ("era 2.6.33  scenario reclaim-storm  users 64  pages 8  cow 1.0  cpus 2  "
                        "lock spin  2.0 s")
    assert lines[1] == "model: 65 mms, 65 vmas, 1 anon_vmas, 0 avcs, 520 pages"
    assert lines[2] == "walks: 10  avg visited 501.4  max 1001"
    assert lines[3] == "throughput: 855 pages scanned/s  0 jobs/min"
    assert lines[4] == ("cpu time: work  20.0%  walk  20.0%  lock wait  45.0%  iowait   0.0%  other  15.0%  "
                        "(anon_vma lock wait  48.5%)")
    assert lines[5] == "invariants: ok" and len(lines) == 6


def test_run_summary_with_violations_and_lock_order() -> None:
    bad = make_run(invariants={"checked": True, "violations": 7, "messages": [f"rule {i}" for i in range(7)]},
                   lock_order={"checked": True, "findings": [], "edges": [{}, {}, {}]})
    lines = run_summary(bad).splitlines()
    assert lines[5] == "invariants: 7 VIOLATIONS"
    assert lines[6] == "lock order: no inversion in 3 class pairs seen"
    assert lines[7:] == ["  rule 0", "  rule 1", "  rule 2", "  rule 3", "  rule 4"]  # the first five
    found = make_run(lock_order={"checked": True, "findings": ["lock inversion: a", "b"], "edges": []})
    assert run_summary(found).splitlines()[6] == "lock order: lock inversion: a"
    off = make_run(lock_order={"checked": False, "findings": [], "edges": []})
    assert len(run_summary(off).splitlines()) == 6
    # an older document without messages
    assert run_summary(make_run(invariants={"checked": True, "violations": 0})).endswith("invariants: ok")


def test_run_report_is_summary_lockstat_and_cpus() -> None:
    doc = make_run()
    assert run_report(doc) == "\n\n".join([run_summary(doc), lockstat_table(doc), cpu_table(doc)])


def ratio_value(text: str) -> float | None:
    """A ratio cell as a number, whichever way it is written ("29.27x", "1/501x"); None for "-"."""
    text = text.strip().rstrip("x×").strip()
    if text == "-":
        return None
    if text.startswith("1/"):
        return 1 / float(text[2:])
    return float(text)


def _rows(lines: list[str]) -> dict[str, list[str]]:
    """{figure: [first, second, ratio]} from the side-by-side lines after the header."""
    out = {}
    for ln in lines[1:]:
        name, *cols = ln.rsplit(None, 3)
        out[name] = cols
    return out


def test_side_by_side_ratios() -> None:
    old = make_run()
    new = make_run("2.6.34", walks={"count": 10, "avg_visited": 1.0, "max_visited": 1},
                   throughput={"pages_scanned_per_s": 25023.0, "jobs_per_min": 0.0},
                   anon_vma_wait_share=0.007, locks=[])
    before = copy.deepcopy(old)
    lines = side_by_side(old, new).splitlines()
    assert lines[0].split() == ["2.6.33", "2.6.34", "ratio"]
    rows = _rows(lines)
    # the values as the README's table shows them; the ratio second over first, to the
    # precision its notation keeps (a small ratio is written as 1/N, rounded)
    expect = {
        "average walk length (VMAs)": ("501.4", "1.0", 1.0 / 501.4),
        "max walk length (VMAs)": ("1001", "1", 1 / 1001),
        "pages scanned per second": ("855", "25023", 25023 / 855),
        "CPU time waiting on anon_vma lock %": ("48.5", "0.7", 0.7 / 48.5),
        "CPU time walking %": ("20.0", "20.0", 1.0),
        # 2.6.34 recorded no anon_vma lock at all: zeros
        "anon_vma lock contentions": ("7", "0", 0.0),
        "anon_vma lock wait p99 (us)": ("1900000.0", "0.0", 0.0),
    }
    assert list(rows) == list(expect) and len(lines) == 8
    for name, (a, b, ratio) in expect.items():
        assert rows[name][:2] == [a, b], name
        assert ratio_value(rows[name][2]) == pytest.approx(ratio, rel=5e-3, abs=5e-3), name
    # a zero in the first column has no ratio
    back = _rows(side_by_side(new, old).splitlines())
    assert ratio_value(back["anon_vma lock contentions"][2]) is None
    assert ratio_value(back["pages scanned per second"][2]) == pytest.approx(855 / 25023, rel=0.02)
    assert old == before


def test_side_by_side_with_both_eras_locks_and_a_ratio_of_exactly_a_tenth() -> None:
    a = make_run()
    b = make_run("2.6.34", anon_vma_wait_share=0.123)
    b["locks"] = [dict(a["locks"][0], contentions=700,
                       wait_ns=_times(10, 10, 10, p99=2_500))]
    b["walks"] = {"count": 1, "avg_visited": 50.14, "max_visited": 1001}
    rows = _rows(side_by_side(a, b).splitlines())
    assert rows["CPU time waiting on anon_vma lock %"][:2] == ["48.5", "12.3"]
    assert rows["anon_vma lock contentions"][:2] == ["7", "700"]
    assert ratio_value(rows["anon_vma lock contentions"][2]) == pytest.approx(100.0)
    assert rows["anon_vma lock wait p99 (us)"][:2] == ["1900000.0", "2.5"]
    assert ratio_value(rows["average walk length (VMAs)"][2]) == pytest.approx(0.1, rel=5e-3)


def test_the_swap_device_line() -> None:
    from stress.analysis.report import swap_device_line

    run = make_run()
    assert swap_device_line(run) is None  # a document from before the device
    assert "swap device" not in run_summary(run)
    run["swap_device"] = {"enabled": True, "latency_ms": 8.0, "iops": 149.99999, "nr_requests": 128,
                          "reads": 300, "writes": 200, "requests_per_s": 100.0, "utilisation": 0.667,
                          "avg_wait_ms": 123.45, "max_depth": 130, "throttled": 2}
    line = swap_device_line(run)
    assert line == ("swap device: 8 ms, 150 IOPS: 300 reads, 200 writes (100 submitted/s, 66.7% busy), "
                    "avg wait 123.5 ms, queue up to 130, 2 writers throttled")
    assert line in run_summary(run).splitlines()
    run["swap_device"]["enabled"] = False
    assert swap_device_line(run) == ("swap device: off (infinitely fast): 300 reads, 200 writes "
                                     "completed at once")


def test_run_summary_names_wedged_locks() -> None:
    assert "wedged" not in run_summary(make_run())
    one = run_summary(make_run(wedged_locks=["anon_vma#3"])).splitlines()
    assert one[-1] == "wedged locks: anon_vma#3 (a CPU died queued for it: unusable)"
    many = run_summary(make_run(wedged_locks=[f"ptl(mm {i})" for i in range(10)])).splitlines()
    assert many[-1].startswith("wedged locks: ptl(mm 0), ") and " ... (a CPU died queued for them" in many[-1]

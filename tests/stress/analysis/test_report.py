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
    assert back["anon_vma lock wait p99 (us)"] == ["0.0", "1900000.0", "-"]
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


def test_lockstat_table_columns_are_pinned_to_their_widths() -> None:
    lines = lockstat_table(make_run()).splitlines()
    assert lines[0] == ("class      contentions   wait-min   wait-max  wait-total   wait-avg   wait-p99 "
                        "acquisitions   hold-max  hold-total   hold-avg")
    assert lines[1] == "-" * 125
    assert lines[2] == ("anon_vma             7    1.50 us     2.00 s      3.00 s  428.57 ms     1.90 s "
                        "         100  900.00 us     5.00 ms   50.00 us")
    assert lines[3] == "                     5 page_referenced  (waited 2.00 s)"
    assert lines[4] == "                     2 try_to_unmap  (waited 1.00 s)"
    assert lines[5] == ("ptl                  0       0 ns       0 ns        0 ns       0 ns       0 ns "
                        "          40     300 ns     4.00 us     100 ns")


def test_lockstat_table_says_why_it_has_no_waits() -> None:
    def quiet(**config: Any) -> dict[str, Any]:
        doc = make_run()
        doc["config"] = {**doc["config"], **config}
        for r in doc["locks"]:
            r["contentions"] = 0
            for site in r["sites"]:
                site["contentions"] = 0
        return doc

    never = ("(the CPUs spent 45.0% of their time waiting on locks they never got (a deadlock, or waits "
             "given up at the stop): lockstat records a wait only once the lock is taken)")
    off = "(--no-lockstat: no lock statistics were recorded)"
    # no contention recorded, but the CPUs' shares show waiting: a wait never got
    assert lockstat_table(quiet()).splitlines()[-1] == never
    assert lockstat_table(quiet(lockstat=True)).splitlines()[-1] == never
    # --no-lockstat says so, whatever the shares (and only that)
    lines = lockstat_table(quiet(lockstat=False)).splitlines()
    assert lines[-1] == off and never not in lines and len(lines) == 5
    with_waits = make_run()
    with_waits["config"] = {**with_waits["config"], "lockstat": False}
    assert lockstat_table(with_waits).splitlines()[-1] == off
    # from 5% of the CPUs' time on
    one = make_run()["cpus"][0]
    at = quiet()
    at["cpus"] = [{**one, "share": {**one["share"], "lock_wait": 0.05}}]
    assert lockstat_table(at).splitlines()[-1].startswith("(the CPUs spent 5.0% of their time waiting ")
    below = quiet()
    below["cpus"] = [{**one, "share": {**one["share"], "lock_wait": 0.0499}}]
    assert len(lockstat_table(below).splitlines()) == 4


def test_cpu_rows_are_pinned_to_their_widths() -> None:
    doc = make_run()
    doc["cpus"][1]["share"]["iowait"] = 0.25
    lines = cpu_table(doc).splitlines()
    assert lines[0] == " cpu   work   walk   wait iowait  other    walks   utime   stime    vctx   ivctx"
    assert lines[1] == "   0  10.0%  30.0%  50.0%   0.0%  10.0%        6   1.50s   0.25s       3      40"
    assert lines[2] == "   1  30.0%  10.0%  40.0%  25.0%  20.0%        4   1.25s   0.00s       0       7"


def test_cpu_table_rest_line_is_pinned() -> None:
    one = make_run()["cpus"][0]
    cpus = [{**one, "cpu": i, "walks": 1, "share": {**one["share"], "lock_wait": i / 100}} for i in range(10)]
    lines = cpu_table(make_run(cpus=cpus), rows=9).splitlines()
    assert [int(x.split()[0]) for x in lines[1:-1]] == list(range(2, 10))
    assert lines[-1] == (f"rest  10.0%  30.0%   0.5%   0.0%  10.0% {2:>8}   (mean of the other 2 CPUs; "
                         "above: the 8 that waited longest; every CPU's row is in --json)")
    assert len(cpu_table(make_run(cpus=cpus)).splitlines()) == 11


@pytest.mark.parametrize(("a", "b", "text"), [
    (0, 5, "-"), (0.0, 0.0, "-"), (2, 4, "2.00x"), (4, 2, "0.50x"), (10, 1, "0.10x"), (1000, 2, "0.002x"),
    (3, 0, "0.00x"), (300, 1, "0.0033x"),
])
def test_ratio_text(a: float, b: float, text: str) -> None:
    from stress.analysis.report import ratio_text

    assert ratio_text(a, b) == text


def test_side_by_side_is_pinned_to_its_widths() -> None:
    old = make_run()
    new = make_run("2.6.34", walks={"count": 10, "avg_visited": 1.0, "max_visited": 1},
                   throughput={"pages_scanned_per_s": 25023.0, "jobs_per_min": 0.0},
                   anon_vma_wait_share=0.007, locks=[])
    assert side_by_side(old, new).splitlines() == [
        "                                           2.6.33         2.6.34     ratio",
        "average walk length (VMAs)                  501.4            1.0    0.002x",
        "max walk length (VMAs)                       1001              1    0.001x",
        "pages scanned per second                      855          25023    29.27x",
        "CPU time waiting on anon_vma lock %           48.5            0.7    0.014x",
        "CPU time walking %                           20.0           20.0     1.00x",
        "anon_vma lock contentions                       7              0     0.00x",
        "anon_vma lock wait p99 (us)             1900000.0            0.0     0.00x",
    ]
    # the anon_vma row is found by class, wherever it is in the list
    new["locks"] = [dict(old["locks"][1]), dict(old["locks"][0], contentions=14)]
    rows = _rows(side_by_side(new, old).splitlines())
    assert rows["anon_vma lock contentions"] == ["14", "7", "0.50x"]
    assert rows["anon_vma lock wait p99 (us)"] == ["1900000.0", "1900000.0", "1.00x"]


def _summary(config: dict[str, Any] | None = None, **over: Any) -> list[str]:
    doc = make_run(**over)
    doc["config"] = {**doc["config"], **(config or {})}
    return run_summary(doc).splitlines()


def test_run_summary_of_a_run_with_every_optional_line_in_order() -> None:
    lines = _summary(
        {"scenario": "fork-test", "lockstat": False, "alloc_fail_p": 0.01},
        throughput={"pages_scanned_per_s": 12.4, "jobs_per_min": 99.0, "forks": 30, "exits": 28,
                    "forks_per_s": 14.7, "alloc_failures": 3},
        machine={"affinity": [0]},
        swap_device={"enabled": False, "reads": 1, "writes": 2},
        stop={"s": 2.25, "cpus": 2, "at_boundary": 1,
              "aborted": [{"cpu": 1, "killed": False, "operation": "dup_mmap",
                           "state": "cpu1 (pid 7): wait: anon_vma#0"}]},
        invariants={"checked": True, "violations": 2, "messages": ["a", "b"],
                    "explained_by": ["cpu1 in dup_mmap"], "corruption": "x"},
        lock_order={"checked": True, "findings": [], "edges": [{}]},
        wedged_locks=["anon_vma#0", "ptl(mm 1)"],
    )
    assert lines == [
        "era 2.6.33  scenario fork-test  users 64  pages 8  cow 1.0  cpus 2  lock spin  2.0 s",
        "model: 65 mms, 65 vmas, 1 anon_vmas, 0 avcs, 520 pages",
        "walks: 10  avg visited 501.4  max 1001",
        "throughput: 12 pages scanned/s",  # fork-test's jobs are its forks
        "forks: 30  exits: 28  15 forks/s",
        ("cpu time: work  20.0%  walk  20.0%  lock wait  45.0%  iowait   0.0%  other  15.0%  "
         "(anon_vma lock wait: not recorded, --no-lockstat)"),
        "injected: alloc-fail=0.01: 3 allocations failed (fork, COW and anon_vma_prepare unwound)",
        "swap device: off (infinitely fast): 1 reads, 2 writes completed at once",
        ("oversubscribed: 2 CPUs on 1 cores: each CPU is on a core at most 50.0% of the time, about "
         "1020 ms of this 2.0 s window"),
        "invariants: 2 VIOLATIONS",
        "lock order: no inversion in 1 class pairs seen",
        "stop: 1 of 2 CPUs at a boundary in 2.2 s; cpu1 aborted in dup_mmap (wait: anon_vma#0)",
        "  the violations may be traces of the operations aborted: cpu1 in dup_mmap",
        "  a",
        "  b",
        "wedged locks: anon_vma#0, ptl(mm 1) (a CPU died queued for them: unusable)",
    ]


def test_run_summary_forks_line_of_fork_test_and_exim() -> None:
    # counts missing from an older document read as zeros
    lines = _summary({"scenario": "fork-test"}, throughput={"pages_scanned_per_s": 1.0, "jobs_per_min": 5.0})
    assert lines[3:5] == ["throughput: 1 pages scanned/s", "forks: 0  exits: 0  0 forks/s"]
    exim = {"pages_scanned_per_s": 1.0, "jobs_per_min": 300.0, "jobs": 12, "forks": 4, "exits": 3,
            "forks_per_s": 2.0}
    lines = _summary({"scenario": "exim"}, throughput=exim, elapsed_s=4.0)
    assert lines[3:5] == ["throughput: 1 pages scanned/s  300 jobs/min",
                          "forks: 4  exits: 3  2 forks/s  3 messages/s"]
    lines = _summary({"scenario": "exim"}, throughput=exim, elapsed_s=0.0)
    assert lines[4] == "forks: 4  exits: 3  2 forks/s"
    assert not any(ln.startswith("forks:") for ln in _summary(throughput=exim))  # reclaim-storm
    assert len(_summary(throughput=exim)) == 6


def test_run_summary_rmap_trylock_line() -> None:
    said = ("rmap trylock: 3 of 100 pages scanned found the rmap lock contended and were skipped as "
            "referenced")
    t = {"pages_scanned_per_s": 1.0, "jobs_per_min": 0.0, "pages_scanned": 100, "rmap_trylock_fail": 3}
    # an era whose walk trylocks says so even when nothing was skipped
    assert _summary({"era": "6.0"}, throughput=t)[4] == said
    none_failed = said.replace("3 of", "0 of")
    assert _summary({"era": "6.0"}, throughput={**t, "rmap_trylock_fail": 0})[4] == none_failed
    without_count = {k: v for k, v in t.items() if k != "rmap_trylock_fail"}
    assert _summary({"era": "6.0"}, throughput=without_count)[4] == none_failed
    # ... but not when it scanned nothing
    assert len(_summary({"era": "6.0"}, throughput={**t, "pages_scanned": 0, "rmap_trylock_fail": 0})) == 6
    # an era that never trylocks: only when a trylock failed
    assert len(_summary(throughput={**t, "rmap_trylock_fail": 0})) == 6
    assert _summary(throughput=t)[4] == said
    assert _summary(throughput={"pages_scanned_per_s": 1.0, "jobs_per_min": 0.0, "rmap_trylock_fail": 2})[4] \
        == said.replace("3 of 100", "2 of 0")
    assert len(_summary({"era": "no-such-era"}, throughput=t)) == 7
    assert len(_summary({"era": "no-such-era"}, throughput={**t, "rmap_trylock_fail": 0})) == 6
    # with a forks line too: the trylock line comes first
    lines = _summary({"era": "6.0", "scenario": "fork-test"}, throughput=t)
    assert lines[4] == said and lines[5].startswith("forks: 0  exits: 0")


def test_run_summary_injected_failures_and_unchecked_invariants() -> None:
    lines = _summary({"alloc_fail_p": 0.25})
    assert lines[-2:] == [("injected: alloc-fail=0.25: 0 allocations failed (fork, COW and "
                           "anon_vma_prepare unwound)"), "invariants: ok"]
    assert len(_summary({"alloc_fail_p": 0.0})) == 6
    lines = _summary(invariants={"checked": False, "violations": 0, "messages": []})
    assert lines[5] == "invariants: not checked (quit at once)" and len(lines) == 6
    assert _summary(invariants={"violations": 0})[5] == "invariants: ok"
    one = {"checked": True, "violations": 1, "messages": []}
    assert _summary(invariants=one)[5] == "invariants: 1 VIOLATIONS"
    assert _summary({"lockstat": True})[4].endswith("(anon_vma lock wait  48.5%)")


def test_run_summary_explains_violations_or_names_corruption() -> None:
    inv = {"checked": True, "violations": 1, "messages": ["vma 5 is lost"]}
    explained = [f"cpu{i} in dup_mmap" for i in range(10)]
    lines = _summary(invariants={**inv, "explained_by": explained, "corruption": "vma 5 is lost"})
    assert lines[6:] == ["  the violations may be traces of the operations aborted: "
                         + ", ".join(explained[:8]), "  vma 5 is lost"]
    lines = _summary(invariants={**inv, "explained_by": [], "corruption": "vma 5 is lost"})
    assert lines[6:] == ["  model corruption: no operation was aborted, first: vma 5 is lost",
                         "  vma 5 is lost"]
    assert _summary(invariants={**inv, "corruption": ""})[6:] == ["  vma 5 is lost"]


def test_run_summary_rmap_walks_that_met_a_freed_anon_vma() -> None:
    t = {"pages_scanned_per_s": 1.0, "jobs_per_min": 0.0, "rmap_freed_anon_vma": 6}
    assert _summary(throughput=t)[6:] == [("rmap walks that met a freed anon_vma: 6 (counted, not "
                                           "followed: the kernel would walk freed memory)")]
    assert len(_summary(throughput={**t, "rmap_freed_anon_vma": 0})) == 6


def test_run_summary_of_shared_swapin_says_what_the_seed_did() -> None:
    from stress.engine.workloads.shared_swapin import seed_bug_lines

    sb = {"refault_order": "parent-first", "unreachable_mappings": 3, "pages_not_unmapped": 2,
          "pages_freed_anon_vma": 1}
    t = {"pages_scanned_per_s": 1.0, "jobs_per_min": 0.0, "rmap_freed_anon_vma": 6}
    # the seed's lines stand for the freed anon_vma count (no line of its own)
    assert _summary(throughput=t, seed_bug=sb)[6:] == seed_bug_lines(sb)
    bad = {"checked": True, "violations": 2, "messages": []}
    assert _summary(throughput=t, seed_bug=sb, invariants=bad)[6:] == [
        *seed_bug_lines(sb), "  (the invariant violations are this bug: rules 5 and 9, not a model fault)"]


def test_run_summary_wedged_locks_beyond_eight() -> None:
    eight = [f"l{i}" for i in range(8)]
    assert _summary(wedged_locks=eight)[-1] == ("wedged locks: l0, l1, l2, l3, l4, l5, l6, l7 (a CPU died "
                                                "queued for them: unusable)")
    assert _summary(wedged_locks=[*eight, "l8"])[-1] == ("wedged locks: l0, l1, l2, l3, l4, l5, l6, l7 ... "
                                                         "(a CPU died queued for them: unusable)")
    assert len(_summary(wedged_locks=[])) == 6


def test_oversubscription_line() -> None:
    from stress.analysis.report import oversubscription_line

    assert oversubscription_line(make_run()) is None  # no machine block
    assert oversubscription_line(make_run(machine=None)) is None
    assert oversubscription_line(make_run(machine={"affinity": None})) is None
    assert oversubscription_line(make_run(machine={"affinity": []})) is None
    assert oversubscription_line(make_run(machine={"affinity": [0, 1, 2]})) is None
    assert oversubscription_line(make_run(machine={"affinity": [0, 1]})) is None
    assert oversubscription_line(make_run(machine={"affinity": [3]}, elapsed_s=0.5)) == (
        "oversubscribed: 2 CPUs on 1 cores: each CPU is on a core at most 50.0% of the time, about 250 ms "
        "of this 0.5 s window")


def _stop(aborted: list[dict[str, Any]], s: float | None = 1.5) -> dict[str, Any]:
    return {"s": s, "cpus": 8, "at_boundary": 8 - len(aborted), "aborted": aborted}


def test_stop_line() -> None:
    from stress.analysis.report import stop_line

    assert stop_line({}) is None
    assert stop_line({"stop": None}) is None
    assert stop_line({"stop": {}}) is None
    # a quick stop with every CPU at a boundary is not worth a line
    assert stop_line({"stop": _stop([], s=None)}) is None
    assert stop_line({"stop": _stop([], s=0.99)}) is None
    assert stop_line({"stop": _stop([], s=1.0)}) == "stop: all 8 CPUs finished their operation in 1.0 s"
    assert stop_line({"stop": _stop([], s=12.34)}) == "stop: all 8 CPUs finished their operation in 12.3 s"
    one = {"cpu": 3, "killed": False, "operation": "dup_mmap"}
    assert stop_line({"stop": _stop([one], s=None)}) == (
        "stop: 7 of 8 CPUs at a boundary; cpu3 aborted in dup_mmap")
    assert stop_line({"stop": _stop([one], s=0.2)}) == (
        "stop: 7 of 8 CPUs at a boundary in 0.2 s; cpu3 aborted in dup_mmap")
    # the state after the CPU's name (only the first ": " splits), the first four, and a count
    aborted = [
        {"cpu": 1, "killed": True, "operation": "try_to_unmap",
         "state": "cpu1 (pid 9): wait: anon_vma#2: 5 ms"},
        {"cpu": 2, "killed": False, "operation": "fork", "state": "no colon here"},
        {"cpu": 4, "killed": False, "operation": "exit", "state": ""},
        {"cpu": 5, "killed": True, "operation": "cow", "state": None},
        {"cpu": 6, "killed": False, "operation": "fault"},
        {"cpu": 7, "killed": False, "operation": "unmap"},
    ]
    assert stop_line({"stop": _stop(aborted)}) == (
        "stop: 2 of 8 CPUs at a boundary in 1.5 s; cpu1 killed in try_to_unmap (wait: anon_vma#2: 5 ms); "
        "cpu2 aborted in fork (no colon here); cpu4 aborted in exit; cpu5 killed in cow and 2 more")
    assert stop_line({"stop": _stop(aborted[:5])}).endswith("cpu5 killed in cow and 1 more")  # type: ignore[union-attr]
    assert stop_line({"stop": _stop(aborted[:4])}).endswith("cpu5 killed in cow")  # type: ignore[union-attr]


def test_status_reason() -> None:
    from stress.analysis.report import status_reason

    assert status_reason(None) == "no results; stderr: "
    assert status_reason(None, "  Traceback\nboom\n ") == "no results; stderr: Traceback\nboom"
    assert status_reason(None, "a" + "b" * 2000 + "\n") == "no results; stderr: " + "b" * 2000
    assert status_reason({}) == "ok: invariants clean, nothing failed"
    assert status_reason(make_run(), " \n") == "ok: invariants clean, nothing failed"
    assert status_reason(make_run(), "warn\n") == "ok: invariants clean, nothing failed\nstderr: warn"
    assert status_reason({}, "a" + "b" * 2000) == (
        "ok: invariants clean, nothing failed\nstderr: " + "b" * 2000)
    everything = make_run(
        failed={"reason": "stall", "cpu_states": [f"cpu{i}: work" for i in range(10)]},
        interrupted=True, aborted="SIGTERM",
        invariants={"checked": True, "violations": 4, "messages": ["m0", "m1", "m2", "m3"],
                    "explained_by": [f"cpu{i} in fork" for i in range(9)]},
        stop={"s": None, "cpus": 2, "at_boundary": 1,
              "aborted": [{"cpu": 1, "killed": True, "operation": "fork"}]},
    )
    assert status_reason(everything, "err") == "\n".join([
        "failed: stall",
        *[f"  cpu{i}: work" for i in range(8)],
        "interrupted by a signal",
        "aborted: SIGTERM",
        "invariants: 4 violations, first: ['m0', 'm1', 'm2']",
        "  after aborted operations: " + ", ".join(f"cpu{i} in fork" for i in range(8)),
        "stop: 1 of 2 CPUs at a boundary; cpu1 killed in fork",
        "stderr: err",
    ])
    assert status_reason({"failed": {"reason": "timeout"}}) == "failed: timeout"
    assert status_reason({"failed": {}, "interrupted": False, "aborted": ""}) == (
        "ok: invariants clean, nothing failed")
    assert status_reason({"invariants": {"violations": 1, "messages": ["m"]}}) == (
        "invariants: 1 violations, first: ['m']")
    assert status_reason({"invariants": {"violations": 0, "explained_by": ["x"]}}) == (
        "ok: invariants clean, nothing failed")
    assert status_reason({"stop": _stop([], s=3.0)}) == "stop: all 8 CPUs finished their operation in 3.0 s"

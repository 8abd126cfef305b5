"""The engine end to end: real worker processes on the real model, short runs.

Assertions are on counts, states and invariants; the one direction check (2.6.33 waits on
the anon_vma lock more than 2.6.34) has a margin no busy machine erases.  The leak check of
tests/conftest.py runs after each test: no worker and no segment is left behind.
"""

from __future__ import annotations

import pytest
from _helpers.lock_order import allowed_edges

from stress.engine.config import ConfigError, RunConfig
from stress.engine.runner import run


def test_reclaim_storm_runs_and_checks_invariants() -> None:
    # 2.6.36: a page faulted back from the swap cache keeps its anon_vma (2.6.34 as released
    # moves it to the family's root: see test_reclaim_storm_2_6_34_refault_moves_to_the_root).
    res = run(RunConfig(era="2.6.36", users=50, pages=10, cpus=2, duration=0.5))
    assert res["schema"] == "rmap-stress-run/2"
    assert res["invariants"] == {"checked": True, "violations": 0, "messages": []}
    assert res["model"] == {"mms": 51, "vmas": 51, "anon_vmas": 51, "avcs": 101, "pages": 510}
    assert res["walks"]["count"] > 0
    assert res["walks"]["max_visited"] == 1  # every COWed page in its child's own anon_vma
    assert [c["cpu"] for c in res["cpus"]] == [0, 1]
    assert all(c["walks"] > 0 and c["pid"] > 0 for c in res["cpus"])
    # the per-CPU counters and the run's totals are the same numbers
    assert sum(c["walks"] for c in res["cpus"]) == res["walks"]["count"]
    assert sum(c["pages_scanned"] for c in res["cpus"]) == res["throughput"]["pages_scanned"] > 0
    # reclaim-storm forks nothing and runs no jobs: every page it unmaps faults straight back
    t = res["throughput"]
    assert t["jobs"] == 0 and t["forks"] == 0 and t["pages_unmapped"] == t["refaults"]


def test_lock_waits_are_never_negative() -> None:
    """2.6.36's root lock, taken by every walk of both CPUs: thousands of short contended
    waits, each measured from a Python-side request (page_lock_anon_vma) to a compiled
    acquire.  Both ends are read on the one lockstat clock, so no wait, hold or CPU wait
    time is negative (mixing CLOCK_MONOTONIC and the calibrated TSC made them so)."""
    res = run(RunConfig(era="2.6.36", users=200, pages=10, cpus=2, duration=1.0))
    assert res["invariants"]["violations"] == 0
    rows = [r for r in res["locks"] if r["acquisitions"]]
    assert any(r["contentions"] for r in rows)
    for r in rows:
        for k in ("wait_ns", "hold_ns"):
            assert r[k]["total"] >= 0 and (r[k]["min"] >= 0 or r["contentions"] == 0), (r["class"], k, r[k])
        assert all(s["wait_total_ns"] >= 0 for s in r["sites"]), r["class"]
    assert res["anon_vma_wait_share"] >= 0
    assert all(c["share"]["lock_wait"] >= 0 for c in res["cpus"])


def test_reclaim_storm_2_6_33_walks_the_family() -> None:
    res = run(RunConfig(era="2.6.33", users=50, pages=10, cpus=2, duration=0.5))
    assert res["invariants"]["violations"] == 0
    assert res["model"]["anon_vmas"] == 1 and res["model"]["avcs"] == 0
    # A child's COWed page sits at the child's place in the one family list: up to N+1.
    assert 2 <= res["walks"]["max_visited"] <= 51
    assert res["walks"]["avg_visited"] > 5


def test_reclaim_storm_2_6_34_refault_moves_to_the_root() -> None:
    """2.6.34 as released: the first mapping after a swap-in puts the page on the oldest
    anon_vma of the chain, the family's root, whose list holds every process: walks of up
    to N+1 entries come back under reclaim-storm's refault churn."""
    res = run(RunConfig(era="2.6.34", users=50, pages=10, cpus=2, duration=1.0))
    assert res["invariants"]["violations"] == 0
    assert res["model"]["anon_vmas"] == 51
    assert 2 <= res["walks"]["max_visited"] <= 51


def _anon_vma_hold_avg(res: dict) -> float:
    (row,) = [r for r in res["locks"] if r["class"] == "anon_vma"]
    return float(row["hold_ns"]["avg"])


def test_direction_2_6_33_walks_and_holds_longer_than_2_6_36() -> None:
    """The direction of the seed's effect, in what does not depend on the machine's load:
    2.6.33 walks the family under the lock, 2.6.36 one anon_vma.  Wait shares and pages per
    second are timing claims (a preempted holder on a busy 2-core machine makes any era's
    waits long); scripts/measure_seed.py prints those."""
    old = run(RunConfig(era="2.6.33", users=200, pages=10, cpus=2, duration=1.5))
    new = run(RunConfig(era="2.6.36", users=200, pages=10, cpus=2, duration=1.5))
    assert old["walks"]["avg_visited"] > 20 * new["walks"]["avg_visited"]
    # Each anon_vma hold covers a walk: ~200 VMAs in 2.6.33, one or two in 2.6.36.  The mean
    # holds differ by about 100x; a few preempted holds cannot close a 5x margin.
    assert _anon_vma_hold_avg(old) > 5 * _anon_vma_hold_avg(new)
    assert old["invariants"]["violations"] == new["invariants"]["violations"] == 0


@pytest.mark.parametrize("era", ["2.6.33", "2.6.34", "2.6.36", "3.0"])
def test_forking_server_jobs_keep_the_model_consistent(era: str) -> None:
    res = run(RunConfig(era=era, scenario="forking-server", users=20, pages=8, cow=0.5,
                        cpus=2, duration=0.7, work_us=50))
    assert res["invariants"]["violations"] == 0, res["invariants"]["messages"]
    t = res["throughput"]
    assert t["jobs"] > 0 and t["forks"] >= t["jobs"]
    assert t["jobs_per_min"] > 0
    # every job's child exited: only the family is left
    assert res["model"]["mms"] == 21


@pytest.mark.parametrize("era", ["2.6.33", "2.6.34", "2.6.36", "3.0"])
@pytest.mark.parametrize("scenario", ["reclaim-storm", "forking-server"])
def test_real_workloads_take_locks_in_the_documented_order(era: str, scenario: str) -> None:
    res = run(RunConfig(era=era, scenario=scenario, users=20, pages=8, cpus=2, duration=0.4,
                        work_us=20, check_lock_order=True))
    assert res["invariants"]["violations"] == 0
    lo = res["lock_order"]
    assert lo["checked"] is True and lo["findings"] == []
    edges = {(e["held"], e["taken"]) for e in lo["edges"]}
    assert ("anon_vma", "ptl") in edges  # every rmap walk: page_referenced_one under the lock
    assert edges <= allowed_edges(), edges - allowed_edges()  # the tree at the top of rmap.py
    if scenario == "forking-server":
        assert ("ptl", "ptl") in edges  # dup_mmap: the child's ptl, then the parent's


def test_forking_server_under_memory_pressure_reclaims_and_swaps_in() -> None:
    """RAM below what the family holds: faults below the watermark do direct reclaim, and
    jobs touching swapped-out pages swap them in.  With RAM to spare, neither happens."""
    tight = run(RunConfig(era="2.6.34", scenario="forking-server", users=20, pages=8, cpus=2,
                          duration=0.7, work_us=20))
    t = tight["throughput"]
    assert t["jobs"] > 0 and t["direct_reclaims"] > 0 and t["swapins"] > 0, t
    assert tight["invariants"]["violations"] == 0
    roomy = run(RunConfig(era="2.6.34", scenario="forking-server", users=20, pages=8, cpus=2,
                          duration=0.7, work_us=20, ram_pages=100_000))
    t = roomy["throughput"]
    assert t["jobs"] > 0 and t["direct_reclaims"] == 0 and t["swapins"] == 0, t
    assert roomy["invariants"]["violations"] == 0


@pytest.mark.parametrize("bad", [
    {"era": "2.4"}, {"scenario": "nope"}, {"lock": "rcu"}, {"users": 0}, {"pages": -1},
    {"cow": 1.5}, {"cow": -0.1}, {"duration": 0}, {"cpus": -2}, {"cpus": 5000},
])
def test_bad_config_is_refused_before_anything_starts(bad: dict) -> None:
    with pytest.raises(ConfigError):
        run(RunConfig(**bad))


def test_timeline_samples_every_cpu_and_its_counters_only_grow() -> None:
    """How many samples a run gets depends on the clock (about one a second); what each holds
    does not: every CPU, in order, counters that only grow and stay within the run's totals."""
    res = run(RunConfig(era="2.6.33", users=50, pages=5, cpus=2, duration=2.3))
    tl = res["timeline"]
    assert tl, "a 2.3 s run has at least one sample"
    assert [s["t"] for s in tl] == sorted({s["t"] for s in tl}) and tl[0]["t"] > 0
    assert tl[-1]["t"] >= res["elapsed_s"] - 0.1  # the timeline runs to the end
    for sample in tl:
        assert [c["cpu"] for c in sample["cpus"]] == [0, 1]
        for c in sample["cpus"]:
            assert {"walk", "lock_wait", "work", "walks", "pages_scanned", "jobs", "utime", "stime",
                    "voluntary_ctx", "involuntary_ctx"} <= set(c)
    for i in (0, 1):
        walks = [s["cpus"][i]["walks"] for s in tl] + [res["cpus"][i]["walks"]]
        assert walks == sorted(walks)
        utime = [s["cpus"][i]["utime"] for s in tl]
        assert utime == sorted(utime)

"""The engine end to end: real worker processes on the real model, short runs.

Assertions are on counts, states and invariants; the one direction check (2.6.33 waits on
the anon_vma lock more than 2.6.34) has a margin no busy machine erases.
"""

from __future__ import annotations

import os

import psutil
import pytest

from shared_model.segment import leftover_segments
from stress.config import ConfigError, RunConfig
from stress.runner import run


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())}


def _mine() -> set[str]:
    return {n for n in leftover_segments() if n.startswith(f"rmap-stress-{os.getpid()}-")}


@pytest.fixture(autouse=True)
def nothing_left_behind():
    kids = _children()
    yield
    assert _mine() == set()
    assert _children() - kids == set()


def test_reclaim_storm_runs_and_checks_invariants() -> None:
    res = run(RunConfig(era="2.6.34", users=50, pages=10, cpus=2, duration=0.5))
    assert res["schema"] == "rmap-stress/1"
    assert res["invariants"] == {"checked": True, "violations": 0, "messages": []}
    assert res["model"] == {"mms": 51, "vmas": 51, "anon_vmas": 51, "avcs": 101, "pages": 510}
    assert res["walks"]["count"] > 0
    assert res["walks"]["max_visited"] == 1  # every COWed page in its child's own anon_vma
    assert len(res["cpus"]) == 2
    for c in res["cpus"]:
        assert sum(c["share"].values()) == pytest.approx(1.0)
        assert c["walks"] > 0
    assert res["throughput"]["pages_scanned"] > 0


def test_reclaim_storm_2_6_33_walks_the_family() -> None:
    res = run(RunConfig(era="2.6.33", users=50, pages=10, cpus=2, duration=0.5))
    assert res["invariants"]["violations"] == 0
    assert res["model"]["anon_vmas"] == 1 and res["model"]["avcs"] == 0
    # A child's COWed page sits at the child's place in the one family list: up to N+1.
    assert 2 <= res["walks"]["max_visited"] <= 51
    assert res["walks"]["avg_visited"] > 5


def test_direction_2_6_33_waits_more_than_2_6_34() -> None:
    old = run(RunConfig(era="2.6.33", users=200, pages=10, cpus=2, duration=1.5))
    new = run(RunConfig(era="2.6.34", users=200, pages=10, cpus=2, duration=1.5))
    assert old["walks"]["avg_visited"] > 20 * new["walks"]["avg_visited"]
    assert old["anon_vma_wait_share"] > new["anon_vma_wait_share"]
    assert new["throughput"]["pages_scanned_per_s"] > old["throughput"]["pages_scanned_per_s"]


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


def test_more_workers_than_cpus_are_pinned_round_robin() -> None:
    n = len(os.sched_getaffinity(0)) + 1
    res = run(RunConfig(era="2.6.34", users=20, pages=4, cpus=n, duration=0.3))
    assert len(res["cpus"]) == n
    assert res["invariants"]["violations"] == 0


@pytest.mark.parametrize("bad", [
    {"era": "2.4"}, {"scenario": "nope"}, {"lock": "rcu"}, {"users": 0}, {"pages": -1},
    {"cow": 1.5}, {"cow": -0.1}, {"duration": 0}, {"cpus": -2}, {"cpus": 5000},
])
def test_bad_config_is_refused_before_anything_starts(bad: dict) -> None:
    with pytest.raises(ConfigError):
        run(RunConfig(**bad))


def test_timeline_samples_every_cpu_about_once_a_second() -> None:
    res = run(RunConfig(era="2.6.33", users=50, pages=5, cpus=2, duration=2.3))
    tl = res["timeline"]
    # two whole seconds and the last 0.3 s (issue #8: the timeline runs to the end)
    assert len(tl) in (2, 3) and [s["t"] for s in tl] == sorted(s["t"] for s in tl)
    assert tl[-1]["t"] >= res["elapsed_s"] - 0.1
    for sample in tl:
        assert [c["cpu"] for c in sample["cpus"]] == [0, 1]
        for c in sample["cpus"]:
            assert 0.0 <= c["walk"] <= 1.0 and 0.0 <= c["lock_wait"] <= 1.0
            assert {"utime", "stime", "voluntary_ctx", "involuntary_ctx"} <= set(c)
    # counters only grow
    assert all(a["walks"] <= b["walks"] for a, b in zip(tl[0]["cpus"], tl[1]["cpus"]))

"""Swap IO in the workloads (shared_model/swapdev.py, stress/engine/workloads/): a forking-server job
that faults swapped pages in parks on its reads while another user's job runs, the CPU
sleeps in iowait only when every job is parked, the device off never parks; reclaim-storm's
refaults are a write and a read each; options are validated (one line, exit 2); a whole
run reports the device and iowait.  Counts and states, not timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_model.layout import CPU_STATE, PTE_PRESENT, PTE_YOUNG
from shared_model.model import Model
from shared_model.rmap import try_to_unmap
from shared_model.swapdev import swap_device_init
from stress.engine.config import ConfigError, RunConfig
from stress.engine.workloads import forking_server, reclaim_storm

IOWAIT = CPU_STATE["iowait"]
PAGES = 8
SWAPPED = {0: [1, 4, 6], 1: [0, 2, 3, 5, 7]}  # user (index of child) -> vpns swapped out


def _cfg(**kw: object) -> RunConfig:
    base: dict[str, object] = {"era": "2.6.34", "scenario": "forking-server", "users": 2, "pages": PAGES,
                               "cow": 1.0, "cpus": 1, "ram_pages": 10_000, "work_us": 0, "seed": 0}
    base.update(kw)
    return RunConfig(**base).resolved()  # type: ignore[arg-type]


def _swap_out(m: Model, mm: int, vpns: list[int]) -> None:
    """try_to_unmap the user's own (COWed) pages at ``vpns``: the first walk finds the PTE
    young and clears it (SWAP_FAIL), the second leaves a swap entry."""
    for v in vpns:
        page = m.pte_of(mm, v)[0]
        for _ in range(2):
            try_to_unmap(m, page)
        assert int(m.page_mapcount[page]) == 0 and int(m.page_swapcount[page]) == 1


def _family(make_model, cfg: RunConfig) -> tuple[Model, tuple]:
    m = make_model(cfg.era, users=cfg.users, pages=cfg.pages, cow=cfg.cow, cpus=cfg.cpus,
                   spare_users=2 * cfg.cpus)
    state = forking_server.setup(m, cfg)  # RAM holds the family: nothing evicted
    fam = state[0]
    for i, vpns in SWAPPED.items():
        _swap_out(m, fam.children[i], vpns)
    return m, state


class Recorder:
    """The ``stopping()`` of a run: looks at this CPU's slot and the device on every call,
    and stops once ``jobs`` jobs have ended."""

    def __init__(self, m: Model, jobs: int) -> None:
        self.m = m
        self.jobs = jobs
        self.first_iowait: dict[str, int] | None = None
        self.states: set[int] = set()

    def __call__(self) -> bool:
        c = self.m.seg["cpu"][self.m.cpu]
        self.states.add(int(c["state"]))
        if int(c["state"]) == IOWAIT and self.first_iowait is None:
            d = self.m.seg["swapdev"][0]
            self.first_iowait = {"jobs": int(c["jobs"]), "reads": int(d["reads"]),
                                 "writes": int(d["writes"])}
        return int(c["jobs"]) >= self.jobs


def test_a_job_parks_on_its_reads_another_runs_then_the_cpu_sleeps_in_iowait(make_model) -> None:
    cfg = _cfg()
    m, state = _family(make_model, cfg)
    swap_device_init(m, 20.0, 1000.0, 128, True)
    fam = state[0]
    stop = Recorder(m, jobs=2)
    forking_server.run_cpu(m, cfg, state, 0, stop)
    # Both users' jobs had touched their pages (5 + 3 reads submitted, nothing done) when the
    # CPU first had nothing to run: user 0 parked on its 3 reads and user 1 ran meanwhile.
    assert stop.first_iowait == {"jobs": 0, "reads": 8, "writes": 0}
    c = m.seg["cpu"][m.cpu]
    assert int(c["swap_reads"]) == 8 and int(c["swap_writes"]) == 0
    assert int(c["jobs"]) == 2 and int(c["t_iowait_ns"]) > 0
    assert int(c["state"]) != IOWAIT  # back from the sleep
    for u in fam.children:  # every touched page is in memory again, young
        flags = m.ptes_of(u)[1][:PAGES]
        assert np.all(flags & (PTE_PRESENT | PTE_YOUNG) == PTE_PRESENT | PTE_YOUNG)


def test_the_device_off_never_parks(make_model) -> None:
    cfg = _cfg(swap_device="off")
    m, state = _family(make_model, cfg)
    swap_device_init(m, 20.0, 1000.0, 128, False)
    stop = Recorder(m, jobs=4)
    forking_server.run_cpu(m, cfg, state, 0, stop)
    c = m.seg["cpu"][m.cpu]
    assert IOWAIT not in stop.states and int(c["t_iowait_ns"]) == 0
    # The reads are still counted: they completed at once.
    assert int(m.seg["swapdev"][0]["reads"]) == int(c["swap_reads"]) == 8
    assert int(c["jobs"]) == 4


def test_reclaim_storm_refaults_are_a_write_and_a_read_each(make_model) -> None:
    cfg = _cfg(scenario="reclaim-storm", swap_device="disk", users=3)
    m = make_model(cfg.era, users=3, pages=PAGES, cow=1.0, cpus=1)
    lru = reclaim_storm.setup(m, cfg)
    swap_device_init(m, 1.0, 10_000.0, 128, True)
    calls = {"n": 0}

    def stopping() -> bool:
        calls["n"] += 1
        return calls["n"] > 6

    reclaim_storm.run_cpu(m, cfg, lru, 0, stopping)
    c = m.seg["cpu"][m.cpu]
    d = m.seg["swapdev"][0]
    # Every page is mapped once (each child COWed all): an unmap frees its frame (a write),
    # the owner's refault brings it back (a read).
    assert int(c["refaults"]) == int(c["pages_unmapped"]) > 0
    assert int(d["writes"]) == int(d["reads"]) == int(c["refaults"])
    assert int(c["t_iowait_ns"]) > 0


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("swap_device", "tape", "unknown --swap-device 'tape'"),
    ("swap_latency_ms", -1.0, "--swap-latency-ms"),
    ("swap_latency_ms", float("nan"), "--swap-latency-ms"),
    ("swap_iops", 0.0, "--swap-iops"),
    ("swap_iops", float("inf"), "--swap-iops"),
    ("swap_queue", 0, "--swap-queue"),
])
def test_bad_swap_options_are_config_errors(field: str, value: object, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule.replace("-", r"\-")):
        RunConfig(**{field: value}).validate()  # type: ignore[arg-type]


def test_the_default_device_per_scenario() -> None:
    assert RunConfig(scenario="forking-server").resolved().swap_device == "disk"
    assert RunConfig(scenario="reclaim-storm").resolved().swap_device == "off"
    assert RunConfig(scenario="reclaim-storm", swap_device="disk").resolved().swap_device == "disk"


def _rmap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stress", *args], check=False, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("args", "rule"), [
    (["run", "--swap-iops", "0"], "--swap-iops"),
    (["run", "--swap-latency-ms", "-3"], "--swap-latency-ms"),
    (["run", "--swap-device", "ssd"], "unknown --swap-device 'ssd'"),
    (["run", "--swap-queue", "0"], "--swap-queue"),
    (["ramp", "--swap-iops", "-1"], "--swap-iops"),
])
def test_bad_swap_options_on_the_command_line(args: list[str], rule: str) -> None:
    p = _rmap(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmap-stress: error:") and rule in lines[0], p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr


def test_a_run_reports_the_device_and_iowait(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = _rmap("run", "--scenario", "forking-server", "--era", "2.6.34", "--users", "8", "--pages", "16",
              "--cpus", "2", "--duration", "1", "--ram-pages", "64", "--work-us", "0",
              "--swap-latency-ms", "5", "--swap-iops", "400", "--quiet", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["invariants"]["violations"] == 0
    assert doc["config"]["swap_device"] == "disk" and doc["config"]["swap_iops"] == 400.0
    dev = doc["swap_device"]
    assert dev["enabled"] and dev["latency_ms"] == 5.0 and dev["nr_requests"] == 128
    assert dev["reads"] == sum(c["swap_reads"] for c in doc["cpus"]) > 0
    assert dev["writes"] == sum(c["swap_writes"] for c in doc["cpus"])
    assert all(set(c["share"]) == {"work", "walk", "lock_wait", "iowait", "other"} for c in doc["cpus"])
    assert doc["iowait_share"] > 0
    assert "swap device: 5 ms, 400 IOPS" in p.stdout and "iowait" in p.stdout
    assert all("iowait" in c for s in doc["timeline"] for c in s["cpus"])

"""Failure without damage: killed CPUs, signals, a deadlock, many runs in a row.

Each test runs the real CLI in a subprocess and checks what a user would: the exit status,
the report, the partial results file, and that no process and no /dev/shm segment is left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from shared_model.segment import leftover_segments

RUN = [sys.executable, "-m", "stress", "run", "--quiet"]


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    out = []
    for c in parent.children():
        try:
            if "resource_tracker" not in " ".join(c.cmdline()):
                out.append(c)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_workers(p: subprocess.Popen[str], n: int, timeout: float = 30.0) -> list[psutil.Process]:
    parent = psutil.Process(p.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws = _workers(parent)
        if len(ws) >= n:
            return ws
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    raise AssertionError("workers did not start")


def _wait_until(cond: Callable[[], bool], p: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _wait_for_walks(p: subprocess.Popen[str], ws: list[psutil.Process]) -> None:
    """Until every worker has used CPU time past its start (the gate is open, work is done):
    a count of the workers' own progress, not a guess of how long starting takes."""
    def busy() -> bool:
        try:
            return all(sum(w.cpu_times()[:2]) > 0.3 for w in ws)
        except psutil.Error:
            return False
    _wait_until(busy, p)


def _segments_of(pid: int) -> list[str]:
    return [n for n in leftover_segments() if n.startswith(f"rmap-stress-{pid}-")]


def _gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(x) and psutil.Process(x).status() != psutil.STATUS_ZOMBIE for x in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("trial", range(4))
def test_sigkill_of_a_cpu_ends_the_run_cleanly(tmp_path: Path, trial: int) -> None:
    rng = random.Random(trial)
    era = ["2.6.33", "2.6.34", "3.0", "2.6.36"][trial]
    scenario = ["reclaim-storm", "forking-server"][trial % 2]
    out = tmp_path / "r.json"
    p = subprocess.Popen(RUN + ["--era", era, "--scenario", scenario, "--users", "100", "--pages", "10",
                                "--cpus", "3", "--duration", "60", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ws = _wait_workers(p, 3)
    time.sleep(rng.uniform(0.3, 1.5))
    victim = rng.choice(ws)
    victim.send_signal(signal.SIGKILL)
    _stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 1
    assert "Traceback" not in stderr
    doc = json.loads(out.read_text())
    # the report names the CPU that died, by its index and its pid, and how it died
    pids = {c["pid"]: c["cpu"] for c in doc["cpus"]}
    assert set(pids) == {w.pid for w in ws}
    dead = pids[victim.pid]
    reason = doc["failed"]["reason"]
    assert reason.startswith(f"cpu{dead} (pid {victim.pid}) ") and "SIGKILL" in reason
    assert f"pid {victim.pid}" in stderr and "SIGKILL" in stderr
    # every CPU's state, one line each, naming its pid
    states = doc["failed"]["cpu_states"]
    assert [st.split(" ")[0] for st in states] == ["cpu0", "cpu1", "cpu2"]
    assert all(f"pid {c['pid']}" in states[c["cpu"]] for c in doc["cpus"])
    assert doc["invariants"]["checked"] is True
    assert doc["config"]["era"] == era and doc["config"]["scenario"] == scenario
    assert "interrupted" not in doc
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


def test_sigint_writes_partial_results_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = subprocess.Popen(RUN + ["--era", "2.6.33", "--users", "100", "--pages", "10", "--cpus", "2",
                                "--duration", "60", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ws = _wait_workers(p, 2)
    _wait_for_walks(p, ws)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and "failed" not in doc
    assert doc["invariants"] == {"checked": True, "violations": 0, "messages": []}  # operations finished
    assert doc["config"]["era"] == "2.6.33" and doc["config"]["duration"] == 60
    assert doc["elapsed_s"] < 60  # stopped early, not at the deadline
    assert {c["pid"] for c in doc["cpus"]} == {w.pid for w in ws}
    assert doc["walks"]["count"] > 0 and doc["walks"]["count"] == sum(c["walks"] for c in doc["cpus"])
    assert doc["model"]["anon_vmas"] == 1  # 2.6.33: one for the family
    assert "invariants: ok" in stdout  # the report of what was done is printed
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_exit_128_plus_signal(sig: int, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = subprocess.Popen(RUN + ["--era", "2.6.34", "--users", "50", "--pages", "5", "--cpus", "2",
                                "--duration", "60", "--json", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    ws = _wait_workers(p, 2)
    _wait_for_walks(p, ws)
    os.killpg(p.pid, sig)  # as a terminal or tmux does: the whole group, tracker included
    _stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 128 + sig, stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and "failed" not in doc
    assert doc["invariants"]["violations"] == 0 and doc["walks"]["count"] > 0
    assert {c["pid"] for c in doc["cpus"]} == {w.pid for w in ws}
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


def test_a_second_ctrl_c_while_stopping_still_exits_130_and_cleans_up() -> None:
    """Two CPUs in an ABBA deadlock cannot finish their operation: the first Ctrl-C is
    acknowledged ("stopping ... Ctrl-C again to quit") and the parent stops them; a second
    one (well over a second later, so it is not the same keypress delivered twice), if the
    run is still stopping by then, ends it at once.  Either way: 130, nothing left behind.
    (Whether the parent is still stopping after 1.5 s is the machine's timing: the parent
    aborts the CPUs' lock waits as soon as none of them makes progress.)"""
    p = subprocess.Popen(RUN + ["--era", "2.6.34", "--scenario", "abba-deadlock", "--users", "4",
                                "--pages", "2", "--cpus", "2", "--duration", "60", "--stall-timeout", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ws = _wait_workers(p, 2)
    _wait_for_walks(p, ws)  # past the gate: spinning on each other's anon_vma lock
    p.send_signal(signal.SIGINT)
    time.sleep(1.5)
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    _stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stderr
    assert "Ctrl-C again to quit" in stderr
    assert "Traceback" not in stderr
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


def test_parent_killed_takes_its_cpus_and_segment_with_it() -> None:
    p = subprocess.Popen(RUN + ["--era", "2.6.33", "--users", "50", "--pages", "5", "--cpus", "2",
                                "--duration", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(p.pid)
    ws = _wait_workers(p, 2)
    _wait_for_walks(p, ws)
    everyone = [c.pid for c in parent.children()]
    assert len(ws) == 2 and set(everyone) >= {w.pid for w in ws}
    p.kill()
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert _gone(everyone)  # workers by PR_SET_PDEATHSIG; the resource tracker when its pipe closes
    deadline = time.monotonic() + 5
    while _segments_of(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _segments_of(p.pid) == []


def test_deadlock_is_caught_by_the_stall_watchdog(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = subprocess.Popen(RUN + ["--era", "2.6.34", "--scenario", "abba-deadlock", "--users", "4",
                                "--pages", "2", "--cpus", "2", "--duration", "60", "--stall-timeout", "2",
                                "--check-lock-order", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _stdout, stderr = p.communicate(timeout=60)  # the 60 s duration would time out: the watchdog ended it
    assert p.returncode == 1
    assert "Traceback" not in stderr
    assert "stall: no CPU made progress" in stderr
    doc = json.loads(out.read_text())
    assert doc["failed"]["reason"].startswith("stall")
    # the timeline counts the waits under way: the deadlocked CPUs wait there, not 0%
    assert all(c["lock_wait"] > 0.9 for c in doc["timeline"][-1]["cpus"]), doc["timeline"][-1]
    states = doc["failed"]["cpu_states"]
    assert len(states) == 2
    # each CPU waits for the lock the other holds
    assert "waiting for anon_vma#" in states[0] and "holding anon_vma#" in states[0]
    a_wait = states[0].split("waiting for ")[1].split()[0]
    a_hold = states[0].split("holding ")[1].split(",")[0]
    assert f"holding {a_wait}" in states[1] and f"waiting for {a_hold}" in states[1]
    # the lock-order checker saw it coming: anon_vma nested in anon_vma, with the call sites
    assert doc["lock_order"]["findings"][0].startswith(
        "possible recursive locking: anon_vma taken while holding anon_vma (anon_vma_fork -> anon_vma_fork")
    assert _segments_of(p.pid) == []


@pytest.mark.parametrize("p_fail", [0.01, 0.2])
def test_alloc_fail_injection_leaves_the_model_consistent(tmp_path: Path, p_fail: float) -> None:
    out = tmp_path / "r.json"
    p = subprocess.run(RUN + ["--era", "2.6.34", "--scenario", "forking-server", "--users", "30",
                              "--pages", "8",
                              "--cpus", "2", "--duration", "1.5", "--inject", f"alloc-fail={p_fail}",
                              "--json", str(out)], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["invariants"] == {"checked": True, "violations": 0, "messages": []}
    assert doc["config"]["alloc_fail_p"] == p_fail
    t = doc["throughput"]
    assert t["forks"] > 0
    if p_fail >= 0.2:
        # every fork allocates an anon_vma and an AVC per anon_vma of the parent's chain
        # (2.6.34): at one failure in five, a run of this many forks cannot miss them all
        assert t["alloc_failures"] > 0 or t["forks"] < 20, t
    # failed forks unwound: only the family and the jobs' live children hold mms
    assert doc["model"]["mms"] == 31


def test_many_short_runs_leave_dev_shm_as_it_was() -> None:
    from stress.engine.config import RunConfig
    from stress.engine.runner import run

    mine = f"rmap-stress-{os.getpid()}-"
    for i in range(25):
        res = run(RunConfig(era=["2.6.33", "2.6.34"][i % 2], users=5, pages=2, cpus=2, duration=0.05))
        assert res["invariants"]["violations"] == 0
        assert [n for n in leftover_segments() if n.startswith(mine)] == []

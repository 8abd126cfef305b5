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
    t_kill = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=30)
    assert time.monotonic() - t_kill < 5.0
    assert p.returncode == 1
    assert "died (killed by SIGKILL)" in stderr
    doc = json.loads(out.read_text())
    assert doc["failed"]["reason"].startswith("cpu")
    assert doc["invariants"]["checked"] is True
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


def test_sigint_writes_partial_results_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = subprocess.Popen(RUN + ["--era", "2.6.33", "--users", "100", "--pages", "10", "--cpus", "2",
                                "--duration", "60", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ws = _wait_workers(p, 2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    assert doc["invariants"]["violations"] == 0  # CPUs finished their operation before leaving
    assert doc["walks"]["count"] > 0
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_exit_128_plus_signal(sig: int) -> None:
    p = subprocess.Popen(RUN + ["--era", "2.6.34", "--users", "50", "--pages", "5", "--cpus", "2",
                                "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    ws = _wait_workers(p, 2)
    time.sleep(0.5)
    os.killpg(p.pid, sig)  # as a terminal or tmux does: the whole group, tracker included
    p.communicate(timeout=30)
    assert p.returncode == 128 + sig
    assert _gone([w.pid for w in ws])
    assert _segments_of(p.pid) == []


def test_parent_killed_takes_its_cpus_and_segment_with_it() -> None:
    p = subprocess.Popen(RUN + ["--era", "2.6.33", "--users", "50", "--pages", "5", "--cpus", "2",
                                "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(p.pid)
    ws = _wait_workers(p, 2)
    everyone = [c.pid for c in parent.children()]
    p.kill()
    p.communicate(timeout=30)
    assert _gone(everyone)  # workers by PR_SET_PDEATHSIG; the resource tracker when its pipe closes
    deadline = time.monotonic() + 5
    while _segments_of(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _segments_of(p.pid) == []
    assert ws


def test_deadlock_is_caught_by_the_stall_watchdog(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    p = subprocess.run(RUN + ["--era", "2.6.34", "--scenario", "abba-deadlock", "--users", "4", "--pages", "2",
                              "--cpus", "2", "--duration", "60", "--stall-timeout", "2", "--check-lock-order",
                              "--json", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 20
    assert p.returncode == 1
    assert "stall: no CPU made progress" in p.stderr
    doc = json.loads(out.read_text())
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
    assert _segments_of(p.pid if hasattr(p, "pid") else 0) == []


@pytest.mark.parametrize("p_fail", [0.01, 0.2])
def test_alloc_fail_injection_leaves_the_model_consistent(tmp_path: Path, p_fail: float) -> None:
    out = tmp_path / "r.json"
    p = subprocess.run(RUN + ["--era", "2.6.34", "--scenario", "forking-server", "--users", "30", "--pages", "8",
                              "--cpus", "2", "--duration", "1.5", "--inject", f"alloc-fail={p_fail}",
                              "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["invariants"]["violations"] == 0, doc["invariants"]["messages"]
    assert doc["config"]["alloc_fail_p"] == p_fail
    if p_fail >= 0.2:
        assert doc["throughput"]["alloc_failures"] > 0


def test_many_short_runs_leave_dev_shm_as_it_was() -> None:
    from stress.config import RunConfig
    from stress.runner import run

    mine = f"rmap-stress-{os.getpid()}-"
    for i in range(25):
        res = run(RunConfig(era=["2.6.33", "2.6.34"][i % 2], users=5, pages=2, cpus=2, duration=0.05))
        assert res["invariants"]["violations"] == 0
        assert [n for n in leftover_segments() if n.startswith(mine)] == []

"""``rmap-stress torture``: a short fixed budget of random runs, each
checked for invariants, its stop and leftovers, through the real CLI; and its pure parts."""

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

from stress.commands.torture import (
    Outcome,
    _resume,
    kind_of,
    parse_duration,
    random_plan,
    summarize,
    summary_lines,
)
from stress.engine.config import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_a_short_torture_run_ends_clean(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    p = subprocess.run([sys.executable, "-m", "stress", "torture", "--duration", "12", "--seed", "1",
                        "--max-cpus", "16", "--max-run", "1.5", "--json", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    doc = json.loads(out.read_text())
    assert p.returncode == 0, p.stdout + p.stderr
    assert doc["runs"] >= 1 and doc["failed_runs"] == 0 and doc["failures"] == []
    assert "torture: " in p.stdout and "Traceback" not in p.stderr


def test_durations_and_failure_kinds() -> None:
    assert parse_duration("90") == 90 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    for bad in ("", "5x", "-3", "0"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    assert kind_of("invariants", "anon_vma 38: in use") == kind_of("invariants", "anon_vma 7: in use")


def test_plans_are_valid_and_oversubscribe_within_the_bound() -> None:
    rng = random.Random(3)
    plans = [random_plan(rng, 2, 32, 2.0) for _ in range(200)]
    for plan in plans:
        plan.cfg.validate()
        assert 2 <= plan.cfg.cpus <= 32 and plan.cfg.duration <= 2.0
        assert plan.argv()[:2] == ["run", "--quiet"] and "--quiet" not in plan.command()
    assert len({p.cfg.era for p in plans}) > 5 and any(p.sigstops for p in plans)
    states = ["cpu0  waiting for slab(mm) 4.4 s", "cpu1  work (dup_mmap)"]
    failed = Outcome(plans[0], 1, 2.5, 9.0, [("invariants", "vma 5 is not on the list of its anon_vma 0")],
                     states)
    doc = summarize([failed, Outcome(plans[1], 0, 0.4, 5.0, [])], 60, 3)
    assert doc["runs"] == 2 and doc["failed_runs"] == 1 and doc["failures"][0]["runs"] == 1
    assert doc["failures"][0]["evidence"] == states  # what the failed run left to read
    lines = summary_lines(doc)
    assert lines[0].startswith("FAIL 1x invariants: vma N is not on the list")
    assert "rmap-stress run" in lines[0]
    assert lines[-1].startswith("torture: 2 runs, 1 failed") and "slowest stop 2.5 s" in lines[-1]


def test_resume_leaves_the_process_running_and_reports_a_gone_one() -> None:
    """The torturer's SIGCONT is checked: the process is no longer stopped when it returns."""
    child = psutil.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        for _ in range(200):  # the stop lands once the child leaves any disk sleep
            if child.status() == psutil.STATUS_STOPPED:
                break
            time.sleep(0.01)
        assert child.status() == psutil.STATUS_STOPPED
        assert _resume(child) is True
        assert child.status() != psutil.STATUS_STOPPED
    finally:
        child.kill()
        child.wait()
    assert _resume(child) is False

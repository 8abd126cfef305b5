"""The leak check itself (tests/conftest.py) sees what it must and ignores what is not ours."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def test_a_started_process_and_a_segment_named_after_it_are_leaks(leak_check: Any) -> None:
    procs, shm = leak_check.live_descendants(), leak_check.own_segments()
    p = subprocess.Popen(["sleep", "30"])
    seg = Path(f"/dev/shm/rmap-stress-{p.pid}-leakcheck")
    seg.touch()
    try:
        found = leak_check.leaks(procs, shm, grace_s=0.2)
        assert any(f.startswith(f"process {p.pid} still running: sleep 30") for f in found), found
        assert f"{seg} left behind" in found
    finally:
        p.kill()
        p.wait()
        seg.unlink()
    assert leak_check.leaks(procs, shm, grace_s=0) == []


def test_orphans_are_seen_and_other_runs_segments_are_not(leak_check: Any) -> None:
    """A process whose parent exited (as a CPU of a SIGKILLed run) is re-parented to pytest,
    the subreaper, instead of vanishing under init; a segment of someone else's run on the
    same machine is none of this session's business."""
    procs, shm = leak_check.live_descendants(), leak_check.own_segments()
    # The shell exits at once; its background sleep is orphaned and re-parented to pytest.
    out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], check=True,
                         capture_output=True, text=True).stdout
    orphan = int(out)
    theirs = Path("/dev/shm/rmap-stress-1-leakcheck")  # named after a process we did not start
    theirs.touch()
    try:
        found = leak_check.leaks(procs, shm, grace_s=0.2)
        assert any(f.startswith(f"process {orphan} still running") for f in found), found
        assert not any("rmap-stress-1-" in f for f in found)
    finally:
        os.kill(orphan, 9)
        theirs.unlink()
    assert leak_check.leaks(procs, shm, grace_s=5) == []

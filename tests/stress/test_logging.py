"""One log stream from every CPU (multiprocessing-logging): nothing lost, nothing hangs; and
the pinning each CPU reports there is round-robin over the allowed CPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_eight_workers_log_every_record_to_one_file(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    p = subprocess.run([sys.executable, "-m", "stress", "run", "--era", "2.6.34", "--users", "40",
                        "--pages", "4", "--cpus", "8", "--duration", "1", "--quiet", "--log-level", "INFO",
                        "--log-file", str(log)], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    text = log.read_text()
    pinned = dict(re.findall(r"rmap-stress-cpu(\d+) INFO cpu\1: pid \d+ pinned to OS CPU (\d+)", text))
    started = set(pinned)
    stopped = set(re.findall(r"rmap-stress-cpu(\d+) INFO cpu\1: stopped after", text))
    assert started == {str(i) for i in range(8)}
    allowed = sorted(os.sched_getaffinity(0))  # 8 workers on this machine's CPUs, round-robin
    assert {int(c): int(t) for c, t in pinned.items()} == {i: allowed[i % len(allowed)] for i in range(8)}
    assert stopped == {str(i) for i in range(8)}
    assert "model built" in text  # the parent's records share the stream
    assert p.stderr == ""  # nothing leaked to stderr when a log file is given
    assert f"wrote {log}" in p.stdout  # and the log is reported as every file written

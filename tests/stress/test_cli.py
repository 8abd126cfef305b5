"""The command line: exit statuses, one-line errors, the results files' contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared_model.segment import leftover_segments


def rmap(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; also checks it left no segment of its own behind."""
    p = subprocess.Popen([sys.executable, "-m", "stress", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=120)
    assert [n for n in leftover_segments() if n.startswith(f"rmap-stress-{p.pid}-")] == []
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("args", [
    ["scan", "--era", "9.9"],
    ["scan", "--users", "0"],
    ["scan", "--pages", "-5"],
    ["scan", "--cow", "2"],
    ["scan", "--users", "many"],
    ["run", "--scenario", "nope"],
    ["run", "--lock", "rcu"],
    ["run", "--duration", "-1"],
    ["run", "--cpus", "0", "--users", "1", "--pages", "1", "--duration", "0"],
    ["scan", "--users", "100000000", "--pages", "100000"],
    ["nosuchcommand"],
])
def test_bad_input_gives_one_line_and_exit_2(args: list[str]) -> None:
    p = rmap(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("rmap-stress: error:")
    assert "Traceback" not in p.stderr


def test_scan_json_contract(tmp_path) -> None:
    out = tmp_path / "scan.json"
    p = rmap("scan", "--era", "2.6.33", "--users", "10", "--pages", "5", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress/1"
    assert set(doc) >= {"schema", "config", "model", "walks"}
    # 5 parent pages found first, child i's 5 pages found at entry i + 1
    assert doc["walks"]["count"] == 55
    assert doc["walks"]["vmas_visited"] == 5 + 5 * sum(i + 1 for i in range(1, 11))
    assert doc["walks"]["max_visited"] == 11
    assert "average" in p.stdout


def test_run_json_contract(tmp_path) -> None:
    out = tmp_path / "run.json"
    p = rmap("run", "--era", "2.6.34", "--users", "20", "--pages", "5", "--cpus", "2",
             "--duration", "0.5", "--quiet", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress/1"
    for key in ("era", "scenario", "users", "pages", "cow", "cpus", "duration", "lock", "seed"):
        assert key in doc["config"]
    for key in ("online_cpus", "python", "platform", "package_version"):
        assert key in doc["machine"]
    assert set(doc["model"]) >= {"mms", "vmas", "anon_vmas", "avcs", "pages"}
    assert set(doc["walks"]) >= {"count", "vmas_visited", "avg_visited", "max_visited"}
    for row in doc["locks"]:
        assert set(row) >= {"class", "acquisitions", "contentions", "wait_ns", "hold_ns"}
        for k in ("wait_ns", "hold_ns"):
            assert set(row[k]) >= {"min", "max", "total", "avg", "p50", "p99"}
    for c in doc["cpus"]:
        assert set(c["share"]) == {"work", "walk", "lock_wait", "other"}
        assert set(c["os"]) >= {"utime", "stime", "voluntary_ctx", "involuntary_ctx"}
    assert set(doc["throughput"]) >= {"jobs_per_min", "pages_scanned_per_s"}
    assert doc["invariants"]["checked"] is True and doc["invariants"]["violations"] == 0
    assert "anon_vma" in p.stdout and "invariants: ok" in p.stdout


@pytest.mark.parametrize("args", [
    ["run", "--json", "/no/such/folder/r.json"],
    ["run", "--duration", "inf"],
    ["run", "--scenario", "forking-server", "--users", "1", "--cpus", "2"],
    ["run", "--scenario", "abba-deadlock", "--users", "1", "--era", "2.6.34"],
    ["run", "--users", "100000000", "--pages", "100"],
    ["run", "--inject", "alloc-fail=2"],
    ["run", "--inject", "bitflip=0.1"],
    ["ramp", "--start-users", "100", "--end-users", "10"],
    ["ramp", "--increment", "0"],
    ["ramp", "--factor", "1"],
    ["ramp", "--plot", "x.pdf"],
    ["plot", "/no/such.json", "-o", "x.png"],
    ["compare", "/no/such.json"],
])
def test_more_bad_input_one_line_exit_2(args: list[str]) -> None:
    p = rmap(*args)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_plot_and_compare_refuse_a_scan_result(tmp_path) -> None:
    out = tmp_path / "scan.json"
    assert rmap("scan", "--users", "3", "--pages", "2", "--json", str(out)).returncode == 0
    for args in (["plot", str(out), "-o", str(tmp_path / "x.png")], ["compare", str(out)]):
        p = rmap(*args)
        assert p.returncode == 2 and "a scan result" in p.stderr, p.stderr

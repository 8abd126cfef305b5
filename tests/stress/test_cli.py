"""The command line: exit statuses, one-line errors naming the rule, the results files'
contract, demo, ramp and the pinning of CPUs."""

from __future__ import annotations

import csv
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest


def rmap(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI (the leak check in conftest.py then looks for what it left behind)."""
    return subprocess.run([sys.executable, "-m", "stress", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "rule"), [
    (["scan", "--era", "9.9"], "unknown era '9.9'"),
    (["scan", "--users", "0"], "--users must be a positive count"),
    (["scan", "--pages", "-5"], "--pages must be a positive count"),
    (["scan", "--cow", "2"], "--cow must be a fraction"),
    (["scan", "--users", "many"], "--users"),
    (["run", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["run", "--lock", "rcu"], "unknown lock 'rcu'"),
    (["run", "--duration", "-1"], "--duration"),
    (["run", "--cpus", "0", "--users", "1", "--pages", "1", "--duration", "0"], "--duration"),
    (["scan", "--users", "100000000", "--pages", "100000"], "page-table entries"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_bad_input_gives_one_line_and_exit_2(args: list[str], rule: str) -> None:
    p = rmap(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("rmap-stress: error:")
    assert rule in lines[0]
    assert p.stdout == ""  # refused before anything ran
    assert "Traceback" not in p.stderr


def test_a_model_larger_than_memory_is_refused_before_anything_is_created() -> None:
    """The memory and /dev/shm check, reached by a model the PTE-index limit allows: a
    lockstat region per CPU (about 240 KB each) for ten million CPUs is terabytes."""
    p = rmap("run", "--users", "10", "--pages", "2", "--cpus", "10000000", "--force", "--duration", "1")
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert "GiB" in line and "shared memory" in line and "page-table entries" not in line
    assert p.stdout == ""


def test_scan_json_contract(tmp_path) -> None:
    out = tmp_path / "scan.json"
    p = rmap("scan", "--era", "2.6.33", "--users", "10", "--pages", "5", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress-scan/2"
    assert set(doc) >= {"schema", "config", "model", "walks"}
    # 5 parent pages found first, child i's 5 pages found at entry i + 1
    assert doc["walks"]["count"] == 55
    assert doc["walks"]["vmas_visited"] == 5 + 5 * sum(i + 1 for i in range(1, 11))
    assert doc["walks"]["max_visited"] == 11
    assert "average" in p.stdout


def test_scan_refault_json_contract(tmp_path) -> None:
    """--refault: walks is the second pass, first_pass the first; 2.6.34 as released puts
    every page back on the root (child i's 5 pages at entry i + 1 again), and the JSON and
    the text say which case the sweep exercised."""
    out = tmp_path / "scan.json"
    p = rmap("scan", "--era", "2.6.34", "--users", "10", "--pages", "5", "--refault", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["config"]["refault"] == "write"
    assert doc["first_pass"]["vmas_visited"] == 55 and doc["first_pass"]["max_visited"] == 1
    assert doc["walks"]["vmas_visited"] == 5 + 5 * sum(i + 1 for i in range(1, 11))
    r = doc["refault"]
    assert (r["mode"], r["pages_unmapped"], r["swap_cache_dropped"], r["faults"]) == ("write", 55, 55, 55)
    assert "swap cache dropped" in r["case"] and "first pass:" in p.stdout and r["case"] in p.stdout


def test_run_json_contract_and_the_progress_line(tmp_path) -> None:
    """Everything the README promises in a run's results file, with values that follow from
    the options; and, without --quiet and with stderr not a terminal, a progress line (one
    every 5 s: a 6.5 s run has at least one)."""
    out = tmp_path / "run.json"
    p = rmap("run", "--era", "2.6.34", "--users", "20", "--pages", "5", "--cpus", "2",
             "--duration", "6.5", "--check-lock-order", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress-run/2"
    c = doc["config"]
    assert (c["era"], c["scenario"], c["users"], c["pages"], c["cow"], c["cpus"], c["duration"],
            c["lock"], c["seed"]) == ("2.6.34", "reclaim-storm", 20, 5, 1.0, 2, 6.5, "ticket", 0)
    m = doc["machine"]
    assert m["online_cpus"] == os.cpu_count()
    assert sorted(m["affinity"]) == sorted(os.sched_getaffinity(0))
    assert m["python"] == platform.python_version() and m["package_version"]
    assert {"platform", "cpu_model", "loadavg"} <= set(m)
    # 2.6.34 with every page COWed: one anon_vma per process, one AVC for the parent and
    # two per child (its own and its parent's), every page of every process its own
    assert doc["model"] == {"mms": 21, "vmas": 21, "anon_vmas": 21, "avcs": 41, "pages": 105}
    w = doc["walks"]
    assert w["count"] > 0 and w["count"] == sum(x["walks"] for x in doc["cpus"])
    # 2.6.34 as released moves a page it swaps back in to the family's root: up to N+1.
    assert w["avg_visited"] == w["vmas_visited"] / w["count"] and 1 <= w["max_visited"] <= 21
    assert sum(w["log2_histogram"].values()) == w["count"]
    classes = [r["class"] for r in doc["locks"]]
    assert "anon_vma" in classes and "ptl" in classes
    totals = [r["wait_ns"]["total"] for r in doc["locks"]]
    assert totals == sorted(totals, reverse=True)
    for row in doc["locks"]:
        assert row["acquisitions"] > 0 and 0 <= row["contentions"] <= row["acquisitions"]
        for k in ("wait_ns", "hold_ns"):
            t = row[k]
            assert set(t) == {"min", "max", "total", "avg", "p50", "p90", "p99", "p999"}
            if t["total"]:
                assert t["min"] <= t["p50"] <= t["p90"] <= t["p99"] <= t["p999"] <= t["max"]
        assert sum(row["wait_hist"].values()) == row["contentions"]
        assert sum(s["acquisitions"] for s in row["sites"]) == row["acquisitions"]
        assert all(set(s) == {"site", "acquisitions", "contentions", "wait_total_ns", "hold_total_ns"}
                   for s in row["sites"])
    assert [x["cpu"] for x in doc["cpus"]] == [0, 1]
    for x in doc["cpus"]:
        assert set(x["share"]) == {"work", "walk", "lock_wait", "iowait", "other"}
        assert set(x["os"]) == {"utime", "stime", "voluntary_ctx", "involuntary_ctx"}
        assert x["pid"] > 0 and x["walks"] > 0
    assert len({x["pid"] for x in doc["cpus"]}) == 2
    t = doc["throughput"]
    assert t["pages_scanned"] == sum(x["pages_scanned"] for x in doc["cpus"]) > 0
    assert t["pages_scanned_per_s"] == pytest.approx(t["pages_scanned"] / doc["elapsed_s"])
    assert {"jobs_per_min", "jobs", "pages_unmapped", "refaults", "forks", "cows", "swapins",
            "direct_reclaims", "alloc_failures"} <= set(t)
    assert 0.0 <= doc["anon_vma_wait_share"] <= 1.0
    assert doc["invariants"] == {"checked": True, "violations": 0, "messages": []}
    lo = doc["lock_order"]
    assert lo["checked"] is True and lo["findings"] == [] and lo["edges"]
    tl = doc["timeline"]
    assert tl and [s["t"] for s in tl] == sorted({s["t"] for s in tl})
    assert all([x["cpu"] for x in s["cpus"]] == [0, 1] for s in tl)
    # the last sample's counters never exceed the run's totals
    assert all(s["cpus"][i]["walks"] <= doc["cpus"][i]["walks"] for s in tl for i in (0, 1))
    assert "anon_vma" in p.stdout and "invariants: ok" in p.stdout
    progress = [ln for ln in p.stderr.splitlines() if "walks" in ln and "pages scanned" in ln]
    assert progress and all("2.6.34" in ln for ln in progress), p.stderr


@pytest.mark.parametrize(("args", "rule"), [
    (["run", "--json", "/no/such/folder/r.json"], "/no/such/folder/r.json"),
    (["run", "--duration", "inf"], "--duration"),
    (["run", "--scenario", "forking-server", "--users", "1", "--cpus", "2"], "one user per CPU"),
    (["run", "--scenario", "abba-deadlock", "--users", "1", "--era", "2.6.34"], "abba-deadlock"),
    (["run", "--users", "100000000", "--pages", "100"], "page-table entries"),
    (["run", "--cpus", "2000"], "--force"),
    (["run", "--stall-timeout", "-1"], "--stall-timeout"),
    (["run", "--inject", "alloc-fail=2"], "alloc-fail"),
    (["run", "--inject", "alloc-fail=x"], "alloc-fail"),
    (["run", "--inject", "bitflip=0.1"], "bitflip"),
    (["ramp", "--start-users", "100", "--end-users", "10"], "--end-users"),
    (["ramp", "--increment", "0"], "--increment"),
    (["ramp", "--factor", "1"], "--factor"),
    (["ramp", "--plot", "x.pdf"], "x.pdf"),
    (["plot", "/no/such.json", "-o", "x.png"], "/no/such.json"),
    (["plot", "/no/such.json", "-o", "x.pdf"], "x.pdf"),
    (["compare", "/no/such.json"], "/no/such.json"),
])
def test_more_bad_input_one_line_exit_2(args: list[str], rule: str) -> None:
    p = rmap(*args)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert rule in p.stderr


def test_plot_and_compare_refuse_a_scan_result(tmp_path) -> None:
    out = tmp_path / "scan.json"
    assert rmap("scan", "--users", "3", "--pages", "2", "--json", str(out)).returncode == 0
    for args in (["plot", str(out), "-o", str(tmp_path / "x.png")], ["compare", str(out)]):
        p = rmap(*args)
        assert p.returncode == 2 and "a scan document" in p.stderr, p.stderr


def test_more_workers_than_cpus_are_pinned_round_robin(tmp_path: Path) -> None:
    """Worker i runs on the i-th allowed CPU modulo their count: read from each worker's
    affinity while it runs, matched to its CPU index through the results' pids."""
    allowed = sorted(os.sched_getaffinity(0))
    n = len(allowed) + 1
    out = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "stress", "run", "--era", "2.6.34", "--users", "20",
                          "--pages", "4", "--cpus", str(n), "--duration", "60", "--quiet",
                          "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(p.pid)
    affinity: dict[int, list[int]] = {}
    deadline = time.monotonic() + 60
    while len(affinity) < n:
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        for c in parent.children():
            try:
                if "resource_tracker" not in " ".join(c.cmdline()) and len(a := c.cpu_affinity()) == 1:
                    affinity[c.pid] = a
            except psutil.Error:
                pass
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    doc = json.loads(out.read_text())
    assert len(doc["cpus"]) == n
    for c in doc["cpus"]:
        assert affinity[c["pid"]] == [allowed[c["cpu"] % len(allowed)]]


def test_demo_side_by_side_and_its_json(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    p = rmap("demo", "--users", "20", "--pages", "5", "--cpus", "2", "--duration", "0.5", "--quiet",
             "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress-demo/2" and "interrupted" not in doc
    doc = doc["eras"]
    assert list(doc) == ["2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36"]
    for era, run in doc.items():
        assert run["schema"] == "rmap-stress-run/2"
        c = run["config"]
        assert (c["era"], c["scenario"], c["users"], c["pages"], c["cow"], c["cpus"], c["duration"]) == \
            (era, "reclaim-storm", 20, 5, 1.0, 2, 0.5)
        assert run["invariants"]["violations"] == 0 and run["walks"]["count"] > 0
    old, mid, new = doc["2.6.33"], doc["2.6.34"], doc["2.6.36"]
    assert old["model"]["anon_vmas"] == 1 and mid["model"]["anon_vmas"] == new["model"]["anon_vmas"] == 21
    # the seed as committed keeps each child's page on the child's anon_vma: one entry
    assert doc["2.6.34-rc1"]["walks"]["max_visited"] == 1
    # 2.6.36 keeps a swapped-in page where it was: every walk visits one entry.  2.6.34 as
    # released moves it to the root on its first mapping after the swap-in: up to N+1.
    assert new["walks"]["max_visited"] == 1 and 1 <= old["walks"]["max_visited"] <= 21
    assert 1 <= mid["walks"]["max_visited"] <= 21
    assert p.stdout.count("invariants: ok") == 4
    assert "the seed as committed (5beb4930525)" in p.stdout and "ea90002b0fa7" in p.stdout
    assert "== side by side: 2.6.33 and 2.6.34 ==" in p.stdout
    # the last side-by-side table (2.6.33 and 2.6.36) wins in the parse below
    # the side-by-side table: one row per figure with both eras' values
    rows = {ln.rsplit(None, 3)[0]: ln.rsplit(None, 3)[1:] for ln in p.stdout.splitlines()
            if ln.startswith(("average walk length", "max walk length", "pages scanned per second"))}
    walk = rows["average walk length (VMAs)"]
    assert float(walk[1]) == pytest.approx(new["walks"]["avg_visited"], abs=0.05)
    assert float(walk[0]) == pytest.approx(old["walks"]["avg_visited"], abs=0.05)
    assert rows["max walk length (VMAs)"][:2] == [str(old["walks"]["max_visited"]), "1"]
    # a saved demo is a results file the other commands read
    cmp = rmap("compare", str(out))
    assert cmp.returncode == 0 and f"{out}:2.6.33" in cmp.stdout and f"{out}:2.6.36" in cmp.stdout


def test_ramp_cli_stops_past_the_crossover_and_writes_json_and_csv(tmp_path: Path) -> None:
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    common = ["ramp", "--era", "2.6.33", "--era", "2.6.34", "--start-users", "2", "--end-users", "8",
              "--factor", "2", "--duration", "0.3", "--cpus", "2", "--pages", "4", "--quiet"]
    # No run can reach a billion jobs per minute per user: past the crossover at once.
    p = rmap(*common, "--threshold", "1e9", "--crossover", "--json", str(js), "--csv", str(cs))
    assert p.returncode == 0, p.stderr
    doc = json.loads(js.read_text())
    assert doc["schema"] == "rmap-stress-ramp/2" and "interrupted" not in doc
    assert [(x["era"], x["users"]) for x in doc["points"]] == [("2.6.33", 2), ("2.6.34", 2)]
    assert {e: c["users"] for e, c in doc["crossover"].items()} == {"2.6.33": 2, "2.6.34": 2}
    with cs.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["era"], int(r["users"])) for r in rows] == [("2.6.33", 2), ("2.6.34", 2)]
    assert [float(r["jobs_per_min"]) for r in rows] == [x["jobs_per_min"] for x in doc["points"]]
    assert "crossover moved 1.00x" in p.stdout
    assert p.stdout.count("<- below threshold") == 2
    # without --crossover every user count runs
    p = rmap(*common, "--era", "3.0", "--threshold", "1e9", "--json", str(js))
    assert p.returncode == 0, p.stderr
    users = [(x["era"], x["users"]) for x in json.loads(js.read_text())["points"]]
    assert users == [(e, u) for e in ("2.6.33", "2.6.34", "3.0") for u in (2, 4, 8)]

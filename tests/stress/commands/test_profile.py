"""Profiling: the py-spy command, reading its raw output, and (where py-spy may attach) a
real profile of reclaim-storm in 2.6.33 and 2.6.34.

The integration check compares where the CPU workers' samples go, not how fast anything
runs or how many samples py-spy managed: in 2.6.33 CPUs wait for the family's one anon_vma
lock inside page_referenced; in 2.6.34 lock waits are a smaller share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stress.commands import profile as prof
from stress.commands.profile import (
    ProfileError,
    build_pyspy_command,
    classify,
    explain_failure,
    summarize_raw,
)

# Two CPUs on one anon_vma lock (2.6.33): one holds it, the other waits; a few seconds at
# 100 Hz is plenty to see which stacks the samples fall in.
RUN = ["--users", "200", "--pages", "20", "--cpus", "2", "--duration", "3", "--quiet"]
RATE = 100


def test_command_records_subprocesses_and_idle_waiters() -> None:
    cmd = build_pyspy_command(["--era", "2.6.33", "--quiet"], "out.svg", "flamegraph", False, 100)
    assert cmd == ["py-spy", "record", "--subprocesses", "--idle", "--nolineno", "--rate", "100",
                   "--format", "flamegraph", "-o", "out.svg", "--",
                   sys.executable, "-m", "stress", "run", "--era", "2.6.33", "--quiet"]


def test_command_native_and_formats() -> None:
    cmd = build_pyspy_command([], "p.txt", "raw", True, 250, pyspy="/x/py-spy", lineno=True)
    assert cmd[:6] == ["/x/py-spy", "record", "--subprocesses", "--idle", "--native", "--rate"]
    assert cmd[cmd.index("--rate") + 1] == "250" and cmd[cmd.index("--format") + 1] == "raw"
    assert cmd[-4:] == [sys.executable, "-m", "stress", "run"]
    assert build_pyspy_command([], "p.json", "speedscope", False, 1)[8] == "speedscope"
    with pytest.raises(ProfileError, match="unknown profile format 'svg'"):
        build_pyspy_command([], "p.svg", "svg", False, 100)
    with pytest.raises(ProfileError, match="positive"):
        build_pyspy_command([], "p.svg", "raw", False, 0)


@pytest.mark.parametrize("stderr", [
    "Permission Denied: Try running again with elevated permissions by going 'sudo env \"PATH=$PATH\" !!'",
    "Error: Failed to attach: Operation not permitted (os error 1)",
    "Error: ptrace(PTRACE_SEIZE) failed",
])
def test_no_ptrace_permission_is_one_line_saying_what_to_do(stderr: str) -> None:
    msg = explain_failure(stderr + "\n\nStack backtrace:\n   0: anyhow::error\n")
    assert msg == prof.PTRACE_HELP and "\n" not in msg
    assert "root" in msg and "ptrace_scope=0" in msg and "SYS_PTRACE" in msg


def test_other_attach_failures_keep_py_spy_s_error_line() -> None:
    msg = explain_failure("Error: Failed to find python version from target process\n\n"
                          "Stack backtrace:\n 0: x\n")
    assert msg == "py-spy cannot attach to the run: Error: Failed to find python version from target process"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv "
                    "to run py-spy as a user without rights over our processes")
def test_real_permission_failure_is_explained() -> None:
    try:
        pyspy = prof.find_pyspy()
    except ProfileError as e:
        pytest.skip(str(e))
    # `nobody` may not trace a process of root's: what py-spy says then is a ptrace refusal.
    with subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(30)"],
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            child.stdout.readline()
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", pyspy,
                                "dump", "--pid", str(child.pid)],
                               check=False, capture_output=True, text=True, timeout=30)
        finally:
            child.kill()
    assert r.returncode != 0
    assert prof.explain_failure(r.stderr) == prof.PTRACE_HELP


def test_a_target_that_cannot_start_is_not_called_a_ptrace_problem() -> None:
    msg = explain_failure("Error: Failed to create process '/x/python': Permission denied (os error 13)\n")
    assert msg == "py-spy cannot attach to the run: Error: Failed to create process '/x/python': " \
                  "Permission denied (os error 13)"


def test_check_attach_reports_what_py_spy_said(tmp_path: Path) -> None:
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\n"
                    "echo 'Error: Failed to attach: Operation not permitted (os error 1)' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ProfileError) as info:
        prof.check_attach(str(fake))
    assert str(info.value) == prof.PTRACE_HELP


def test_missing_py_spy_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(prof.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(prof.shutil, "which", lambda name: None)
    with pytest.raises(ProfileError, match=r"pip install py-spy"):
        prof.profile([], str(tmp_path / "p.svg"))


P = 'process 10:"python -m stress run";'
W = (P + 'process 11:"python -m stress run";worker_main (stress/engine/worker.py:72);'
     'run_cpu (stress/engine/workloads/reclaim_storm.py:44);'
     'shrink_page (stress/engine/workloads/common.py:24);')
WAIT_PR = ('page_referenced_anon (shared_model/rmap.py:137);page_lock_anon_vma (shared_model/rmap.py:46);'
           'Model.anon_vma_lock (shared_model/model.py:205);CpuLocks.acquire (shared_model/locks.py:275);'
           'CpuLocks.lock_contended (shared_model/locks.py:290);'
           'SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133)')
RAW = "\n".join([
    P + "run (stress/engine/runner.py:90);sleep (<built-in>) 500",
    W + WAIT_PR + " 60",
    W + "page_referenced_anon (shared_model/rmap.py:141);page_check_address (shared_model/rmap.py:82) 20",
    W + "page_referenced_anon (shared_model/rmap.py:140);rmap_walk_locked (shared_model/rmap.py:70);"
        "flatnonzero (numpy/core/numeric.py:666);nonzero (numpy/core/fromnumeric.py:1973) 5",
    W + "try_to_unmap (shared_model/rmap.py:180);page_lock_anon_vma (shared_model/rmap.py:46);"
        "Model.anon_vma_lock (shared_model/model.py:205);CpuLocks.acquire (shared_model/locks.py:275);"
        "CpuLocks.lock_contended (shared_model/locks.py:290);"
        "SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133) 10",
    W + "page_referenced_anon (shared_model/rmap.py:141);page_referenced_one (shared_model/rmap.py:125);"
        "Model.lock_ptl (shared_model/model.py:184);CpuLocks.acquire (shared_model/locks.py:275);"
        "CpuLocks.lock_contended (shared_model/locks.py:290);"
        "SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133) 5",
    "garbage line without a count",
]) + "\n"


def test_summarize_raw_attributes_cpu_samples(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(RAW)
    s = summarize_raw(path, frames=("page_referenced_anon", "page_check_address",
                                    "SpinPrimitive.spin_lock_slowpath"))
    assert s["samples"] == 600 and s["cpu_samples"] == 100
    assert s["lock_wait"] == pytest.approx(0.75)
    assert s["lock_wait_in"] == {"page_referenced_anon": pytest.approx(0.65),
                                 "try_to_unmap": pytest.approx(0.10)}
    assert s["contains"] == {"page_referenced_anon": pytest.approx(0.90),
                             "page_check_address": pytest.approx(0.20),
                             "SpinPrimitive.spin_lock_slowpath": pytest.approx(0.75)}
    hottest = [(h["entry"], h["what"], h["lock_wait"], round(h["share"], 2)) for h in s["hottest"]]
    assert hottest == [
        ("page_referenced_anon", "Model.anon_vma_lock", True, 0.60),
        ("page_referenced_anon", "page_check_address", False, 0.20),
        ("try_to_unmap", "Model.anon_vma_lock", True, 0.10),
        ("page_referenced_anon", "rmap_walk_locked", False, 0.05),  # numpy frames are not ours
        ("page_referenced_anon", "Model.lock_ptl", True, 0.05),
    ]
    assert "60.0%  page_referenced_anon > Model.anon_vma_lock (lock wait)" in prof.format_summary(s)


def test_summarize_raw_of_no_cpu_samples(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(P + "main (stress/cli.py:1) 3\n")
    s = summarize_raw(path)
    assert (s["samples"], s["cpu_samples"], s["lock_wait"], s["hottest"]) == (3, 0, 0.0, [])


def test_classify_reads_kernel_like_names_too() -> None:
    frames = [("page_referenced_anon", "shared_model/rmap.py"),
              ("page_lock_anon_vma", "shared_model/rmap.py"),
              ("Model.anon_vma_lock", "shared_model/model.py"), ("CpuLocks.lock", "shared_model/locks.py"),
              ("CpuLocks.lock_contended", "shared_model/locks.py"),
              ("SpinPrimitive.spin_lock_slowpath", "/site-packages/shared_model/locks.py")]
    assert classify(frames) == ("page_referenced_anon", "Model.anon_vma_lock", True)
    # Running in locks.py (the uncontended path, a release) is not waiting.
    running = frames[:4] + [("CpuLocks.release", "shared_model/locks.py")]
    assert classify(running) == ("page_referenced_anon", "CpuLocks.release", False)


# ---------------------------------------------------------------------------- integration


@pytest.fixture(scope="module")
def can_profile() -> None:
    try:
        prof.check_attach()
    except ProfileError as e:
        pytest.skip(f"cannot profile here: {e}")


def test_reclaim_storm_profile(can_profile: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Where the CPUs' samples go, by stack, not by how many there are: py-spy saw the
    workers, their stacks read like the kernel's, 2.6.33's CPUs wait for the family's one
    anon_vma lock inside page_referenced.  No comparison of lock-wait shares between eras:
    with the released kernels' swap-in, no era's reclaim-storm is free of a family-wide
    lock (2.6.34 moves every page it swaps back in to the root anon_vma, 2.6.36+ walk under
    the root's lock), so on 2 CPUs both eras wait about as much; what differs is how long
    each walk holds the lock (scripts/measure_seed.py)."""
    s = {}
    for era in ("2.6.33", "2.6.36"):
        out = tmp_path / f"{era}.txt"
        assert prof.profile(["--era", era, *RUN], str(out), fmt="raw", rate=RATE) == 0
        s[era] = summarize_raw(out)
        assert s[era]["cpu_samples"] > 0, prof.format_summary(s[era])
        assert "worker_main" in out.read_text() and "shrink_page" in out.read_text()
        assert "invariants: ok" in capfd.readouterr().out
    old, new = s["2.6.33"], s["2.6.36"]
    assert old["lock_wait_in"].get("page_referenced_anon", 0.0) > 0, prof.format_summary(old)
    assert any(h["entry"] == "page_referenced_anon" and h["lock_wait"] and "anon_vma" in h["what"]
               for h in old["hottest"]), prof.format_summary(old)
    assert new["lock_wait"] > 0 and new["cpu_samples"] > 0, prof.format_summary(new)


# ---------------------------------------------------------------------------- the CPUs alone

# A real recording: `py-spy record --subprocesses --idle --rate 50 --format raw` of
# `run --era 2.6.33 --users 200 --pages 20 --cpus 2 --duration 2`, whose results listed
# cpu0 as pid 778 and cpu1 as pid 779.  By `grep 'process 778:' | awk '{s += $NF}'`: 103
# samples of cpu0, 108 of cpu1, 609 in all (the rest: parent, log thread, resource tracker).
RECORDED = Path(__file__).parent / "data" / "profile-2.6.33-raw.txt"
PIDS = {778: 0, 779: 1}


def _svg_titles(path: Path) -> list[str]:
    import re

    return re.findall(r"<title>([^<]*)</title>", path.read_text())


def test_split_raw_keeps_cpus_by_pid_and_title(tmp_path: Path) -> None:
    stacks, total = prof.split_raw(RECORDED, PIDS)
    counts = {k: sum(n for _, _, n in v) for k, v in stacks.items()}
    assert total == 609 and counts == {"cpu0": 103, "cpu1": 108, "harness": 398}
    # every CPU stack starts at worker_main: the parent's frames inherited by fork are cut
    assert all(frames[0].startswith("worker_main ") for k in ("cpu0", "cpu1") for _, frames, _ in stacks[k])
    # py-spy may attach before the worker sets its title: the pid still names the CPU ...
    untitled = tmp_path / "raw.txt"
    untitled.write_text(RECORDED.read_text().replace('process 778:"rmap-stress cpu0"',
                                                     'process 778:"python -m stress run"'))
    stacks, _ = prof.split_raw(untitled, PIDS)
    assert sum(n for _, _, n in stacks["cpu0"]) == 103
    # ... and without the pids such a CPU is indistinguishable from the harness
    stacks, _ = prof.split_raw(untitled, {})
    assert "cpu0" not in stacks and sum(n for _, _, n in stacks["cpu1"]) == 108


def test_flamegraph_holds_the_cpus_only(tmp_path: Path) -> None:
    out = tmp_path / "p.svg"
    res = prof.write_profile(RECORDED, str(out), "flamegraph", PIDS, per_cpu=True)
    assert (res.samples, res.cpu_samples, res.cpus) == (609, 211, ["cpu0", "cpu1"])
    assert res.files == [str(out), str(tmp_path / "p-cpu0.svg"), str(tmp_path / "p-cpu1.svg")]
    titles = _svg_titles(out)
    assert titles[0].startswith("all (211 samples")
    assert any(t.startswith("rmap-stress cpu0 (103 samples") for t in titles)
    assert any(t.startswith("rmap-stress cpu1 (108 samples") for t in titles)
    text = out.read_text()
    assert "harness" not in text and "resource_tracker" not in text and "MultiProcessingHandler" not in text
    one = (tmp_path / "p-cpu1.svg").read_text()
    assert "rmap-stress cpu1" in one and "rmap-stress cpu0" not in one


def test_flamegraph_widest_towers_are_the_lock_waits(tmp_path: Path) -> None:
    """The issue's target on a recorded 2.6.33 profile: under page_referenced_anon and
    try_to_unmap the widest child is the wait for the anon_vma lock."""
    stacks, _ = prof.split_raw(RECORDED, PIDS)
    tree = prof.flame_tree({k: v for k, v in stacks.items() if k != prof.HARNESS})
    for cpu in tree.children.values():
        # RECORDED's frames name the files where they were when it was recorded
        # (stress/worker.py, now stress/engine/worker.py).
        shrink = cpu.children["worker_main (stress/worker.py)"].children[
            "run_cpu (stress/workloads/reclaim_storm.py)"].children[
            "shrink_page (stress/workloads/common.py)"]
        for entry in ("page_referenced_anon (shared_model/rmap.py)", "try_to_unmap (shared_model/rmap.py)"):
            widest = max(shrink.children[entry].children.values(), key=lambda c: c.count)
            assert widest.name == "page_lock_anon_vma (shared_model/rmap.py)", cpu.name


def test_harness_kept_in_one_tower(tmp_path: Path) -> None:
    out = tmp_path / "p.svg"
    prof.write_profile(RECORDED, str(out), "flamegraph", PIDS, harness=True)
    titles = _svg_titles(out)
    assert titles[0].startswith("all (609 samples")
    assert any(t.startswith("harness (parent, log thread, resource tracker) (398 samples") for t in titles)


def test_speedscope_has_one_profile_per_cpu(tmp_path: Path) -> None:
    import json

    out = tmp_path / "p.json"
    prof.write_profile(RECORDED, str(out), "speedscope", PIDS)
    doc = json.loads(out.read_text())
    assert [(p["name"], sum(p["weights"])) for p in doc["profiles"]] == [
        ("rmap-stress cpu0", 103), ("rmap-stress cpu1", 108)]
    frames = doc["shared"]["frames"]
    assert all(frames[s[0]]["name"] == "worker_main" for p in doc["profiles"] for s in p["samples"])


def test_filtered_raw_reads_back_as_cpu_samples(tmp_path: Path) -> None:
    out = tmp_path / "p.txt"
    prof.write_profile(RECORDED, str(out), "raw", PIDS)
    s = summarize_raw(out)
    assert s["samples"] == s["cpu_samples"] == 211
    assert s["hottest"][0]["entry"] == "page_referenced_anon" and s["hottest"][0]["lock_wait"]


def test_cpu_processes_are_named_cpu_n() -> None:
    """ps, top and py-spy show each CPU as `rmap-stress cpuN` (setproctitle in the worker)."""
    import psutil

    from stress.engine.config import RunConfig
    from stress.engine.runner import run

    seen: dict[int, str] = {}

    def tick(t: object) -> None:
        for i, pid in enumerate(t.cpu["pid"]):  # type: ignore[attr-defined]
            if pid > 0 and i not in seen:
                try:
                    seen[i] = psutil.Process(int(pid)).cmdline()[0]
                except (psutil.Error, IndexError):
                    pass

    res = run(RunConfig(era="2.6.33", users=20, pages=5, cpus=2, duration=0.6), on_tick=tick, tick_s=0.1)
    assert seen == {0: "rmap-stress cpu0", 1: "rmap-stress cpu1"}
    assert res["invariants"]["violations"] == 0

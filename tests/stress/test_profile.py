"""Profiling: the py-spy command, reading its raw output, and (where py-spy may attach) a
real profile of reclaim-storm in 2.6.33 and 2.6.34.

The integration check compares where the CPU workers' samples go, not how fast anything
runs: in 2.6.33 the largest group of samples is CPUs waiting for the family's one anon_vma
lock inside page_referenced; in 2.6.34 it is not, and lock waits are a small share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stress import profile as prof
from stress.profile import (
    ProfileError,
    build_pyspy_command,
    classify,
    explain_failure,
    summarize_raw,
)

# Two CPUs can at most half-wait (one holds the lock), and the waits split between
# page_referenced and try_to_unmap: 4 s at 250 Hz (about 2000 CPU samples) keeps the
# margin between the two largest groups (about 10 points) well clear of sampling noise.
RUN = ["--users", "200", "--pages", "20", "--cpus", "2", "--duration", "4", "--quiet"]
RATE = 250


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
    msg = explain_failure("Error: Failed to find python version from target process\n\nStack backtrace:\n 0: x\n")
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
    fake.write_text("#!/bin/sh\necho 'Error: Failed to attach: Operation not permitted (os error 1)' >&2\nexit 1\n")
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
W = P + 'process 11:"python -m stress run";worker_main (stress/worker.py:72);run_cpu (stress/workloads/reclaim_storm.py:44);shrink_page (stress/workloads/common.py:24);'
WAIT_PR = ('page_referenced_anon (shared_model/rmap.py:137);page_lock_anon_vma (shared_model/rmap.py:46);'
           'Model.anon_vma_lock (shared_model/model.py:205);CpuLocks.acquire (shared_model/locks.py:275);'
           'CpuLocks.lock_contended (shared_model/locks.py:290);SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133)')
RAW = "\n".join([
    P + "run (stress/runner.py:90);sleep (<built-in>) 500",
    W + WAIT_PR + " 60",
    W + "page_referenced_anon (shared_model/rmap.py:141);page_check_address (shared_model/rmap.py:82) 20",
    W + "page_referenced_anon (shared_model/rmap.py:140);rmap_walk_locked (shared_model/rmap.py:70);"
        "flatnonzero (numpy/core/numeric.py:666);nonzero (numpy/core/fromnumeric.py:1973) 5",
    W + "try_to_unmap (shared_model/rmap.py:180);page_lock_anon_vma (shared_model/rmap.py:46);"
        "Model.anon_vma_lock (shared_model/model.py:205);CpuLocks.acquire (shared_model/locks.py:275);"
        "CpuLocks.lock_contended (shared_model/locks.py:290);SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133) 10",
    W + "page_referenced_anon (shared_model/rmap.py:141);page_referenced_one (shared_model/rmap.py:125);"
        "Model.lock_ptl (shared_model/model.py:184);CpuLocks.acquire (shared_model/locks.py:275);"
        "CpuLocks.lock_contended (shared_model/locks.py:290);SpinPrimitive.spin_lock_slowpath (shared_model/locks.py:133) 5",
    "garbage line without a count",
]) + "\n"


def test_summarize_raw_attributes_cpu_samples(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(RAW)
    s = summarize_raw(path, frames=("page_referenced_anon", "page_check_address", "SpinPrimitive.spin_lock_slowpath"))
    assert s["samples"] == 600 and s["cpu_samples"] == 100
    assert s["lock_wait"] == pytest.approx(0.75)
    assert s["lock_wait_in"] == {"page_referenced_anon": pytest.approx(0.65), "try_to_unmap": pytest.approx(0.10)}
    assert s["contains"] == {"page_referenced_anon": pytest.approx(0.90), "page_check_address": pytest.approx(0.20),
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
    frames = [("page_referenced_anon", "shared_model/rmap.py"), ("page_lock_anon_vma", "shared_model/rmap.py"),
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


@pytest.mark.parametrize("era", ["2.6.33", "2.6.34"])
def test_reclaim_storm_profile(era: str, can_profile: None, tmp_path: Path,
                               capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"{era}.txt"
    assert prof.profile(["--era", era, *RUN], str(out), fmt="raw", rate=RATE) == 0
    s = summarize_raw(out)
    assert s["cpu_samples"] >= 500, prof.format_summary(s)  # 2 CPUs x 4 s x 250 Hz, less misses
    top = s["hottest"][0]
    waits_in_pr = s["lock_wait_in"].get("page_referenced_anon", 0.0)
    if era == "2.6.33":
        # One anon_vma for the family: the biggest lock-wait group is CPUs spinning on its
        # lock inside page_referenced, and waiting is a large share of all CPU samples
        # (with 2 CPUs at most one waits: 50% is the ceiling).
        waits = [h for h in s["hottest"] if h["lock_wait"]]
        assert waits and waits[0]["entry"] == "page_referenced_anon", prof.format_summary(s)
        assert "anon_vma" in waits[0]["what"], prof.format_summary(s)
        assert waits_in_pr > 0.2, prof.format_summary(s)
    else:
        assert not top["lock_wait"], prof.format_summary(s)
        assert waits_in_pr < 0.2, prof.format_summary(s)
    assert "invariants: ok" in capfd.readouterr().out

"""How a run stops, through the real CLI: every CPU finishes the operation it is
in, however long that takes while it makes progress; one that makes none for the stall
timeout is reported as stalled, with the operation it was in, and a failing run's status
says why (from the JSON under --quiet).

A preempted lock holder is a real SIGSTOP of a real CPU process from outside.  Tests count
CPUs, states and exit statuses; how long stops take is measured by ``rmap-stress torture``.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from shared_model.layout import CPU_DTYPE, CPU_FIELDS, CPU_STATE, HEADER_DTYPE
from stress.analysis.report import status_reason, stop_line
from stress.engine.runner import _os_state, _Stop, explain_violations, stop_outcome

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "stress"]


def _cpu_process(cli: psutil.Process, cpu: int, timeout: float = 120.0) -> psutil.Process:
    """The CPU process titled ``rmap-stress cpu<cpu>`` among the run's children (they exist
    once the model is built and compiled code loaded: up to minutes on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in cli.children():
            try:
                if c.cmdline()[:1] == [f"rmap-stress cpu{cpu}"]:
                    return c
            except psutil.Error:
                pass
        time.sleep(0.02)
    raise AssertionError(f"cpu{cpu} never started")


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "r.json"
    p = subprocess.Popen([*CLI, "run", "--quiet", *args, "--json", str(out)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    return p, out


def _doc(out: Path) -> dict | None:  # type: ignore[type-arg]
    return json.loads(out.read_text()) if out.exists() else None


def test_a_cpu_stopped_across_the_end_of_the_run_finishes_its_operation(tmp_path: Path) -> None:
    """The issue's smallest case: 2.6.33 fork-test, one of 2 CPUs SIGSTOPped for 1.5 s from
    shortly before the deadline (a preempted holder).  The run waits for it: no operation
    is aborted, the model is clean, exit 0."""
    p, out = _run(tmp_path, "--era", "2.6.33", "--scenario", "fork-test", "--users", "2", "--pages", "4",
                  "--cpus", "2", "--duration", "2")
    cpu1 = _cpu_process(psutil.Process(p.pid), 1)
    time.sleep(1.7)  # the gate opens right after the last CPU starts
    cpu1.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)
    finally:
        cpu1.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=300)
    doc = _doc(out)
    assert p.returncode == 0, status_reason(doc, err)
    assert doc is not None
    assert doc["invariants"]["violations"] == 0
    assert doc["stop"]["at_boundary"] == 2 and doc["stop"]["aborted"] == []


class _RunWords:
    """A running CLI's model segment, read from outside (its memfd through /proc), and
    the slots of its CPUs, found by the pids they publish: the header's gate and stop words
    and each CPU's state."""

    def __init__(self, cli: psutil.Process, cpus: list[psutil.Process]) -> None:
        fd = next(f for f in os.listdir(f"/proc/{cli.pid}/fd")
                  if "memfd:rmap-stress" in os.readlink(f"/proc/{cli.pid}/fd/{f}"))
        with open(f"/proc/{cli.pid}/fd/{fd}", "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        self.words = np.frombuffer(self._map, dtype=np.int64)
        stride = CPU_DTYPE.itemsize // 8
        pids = [c.pid for c in cpus]
        deadline = time.monotonic() + 60
        while not (found := [i for i in np.flatnonzero(self.words == pids[0])
                             if all(self.words[i + k * stride] == p for k, p in enumerate(pids))]):
            assert time.monotonic() < deadline, "the CPUs never published their pids"
            time.sleep(0.01)
        self.slots = int(found[0])
        self._stride = stride
        fields = HEADER_DTYPE.fields
        assert fields is not None
        self._header = {n: fields[n][1] // 8 for n in ("gate", "stop")}

    def header(self, name: str) -> int:
        return int(self.words[self._header[name]])

    def state(self, cpu: int) -> int:
        return int(self.words[self.slots + cpu * self._stride + CPU_FIELDS.index("state")])

    def close(self) -> None:
        del self.words
        self._map.close()


def test_a_cpu_stopped_inside_a_fork_across_the_end_finishes_it(tmp_path: Path) -> None:
    """A CPU SIGSTOPped inside a fork or an exit (in one of its lock waits: fork-test runs
    only forks and exits, and a CPU publishes "wait" only inside a lock wait, so the
    frozen slot shows where it stopped) before the deadline, and kept stopped for 1.5 s
    after it: the run waits for it to finish that operation, so the stop phase lasts at
    least as long as the CPU was held past the deadline, nothing is aborted, and the model
    is clean."""
    p, out = _run(tmp_path, "--era", "3.0", "--scenario", "fork-test", "--users", "4",
                  "--pages", "4", "--cpus", "2", "--duration", "3", "--lock", "mutex")
    cli = psutil.Process(p.pid)
    try:
        cpus = [_cpu_process(cli, 0, 600), _cpu_process(cli, 1, 60)]
        seg = _RunWords(cli, cpus)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    wait = CPU_STATE["wait"]
    held_past_end = 0.0
    try:
        deadline = time.monotonic() + 120
        while seg.header("gate") != 1:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.01)
        time.sleep(1.5)
        stopped = False
        while not stopped and seg.header("stop") == 0:
            if seg.state(1) != wait:
                time.sleep(0.0002)
                continue
            cpus[1].send_signal(signal.SIGSTOP)
            time.sleep(0.05)  # the signal delivered: the slot is frozen
            if seg.state(1) == wait and seg.header("stop") == 0:
                stopped = True
            else:
                cpus[1].send_signal(signal.SIGCONT)
        assert stopped, "cpu1 was never seen waiting inside a fork or exit before the end"
        while seg.header("stop") == 0:
            time.sleep(0.005)
        t_end = time.monotonic()
        time.sleep(1.5)
        assert seg.state(1) == wait  # still inside its operation
        held_past_end = time.monotonic() - t_end
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    finally:
        for c in cpus:
            if c.is_running():
                c.send_signal(signal.SIGCONT)
        seg.close()
    _, err = p.communicate(timeout=300)
    doc = _doc(out)
    assert p.returncode == 0, status_reason(doc, err)
    assert doc is not None and doc["invariants"]["violations"] == 0
    assert doc["stop"]["at_boundary"] == 2 and doc["stop"]["aborted"] == []
    assert doc["stop"]["s"] >= held_past_end - 0.1, (doc["stop"]["s"], held_past_end)


def test_a_cpu_that_never_comes_back_is_reported_stalled_with_its_operation(tmp_path: Path) -> None:
    """A CPU SIGSTOPped for good: the other leaves (or waits on it); with no progress for
    --stall-timeout the run says "stall", exit 1, and the stop block names the CPU, killed
    (a stopped process cannot take the abort), with what it was in."""
    p, out = _run(tmp_path, "--era", "3.0", "--scenario", "fork-test", "--users", "4", "--pages", "4",
                  "--cpus", "2", "--duration", "2", "--stall-timeout", "2")
    cpu1 = _cpu_process(psutil.Process(p.pid), 1)
    time.sleep(1.0)
    cpu1.send_signal(signal.SIGSTOP)
    try:
        _, err = p.communicate(timeout=300)
    finally:
        if cpu1.is_running():  # pragma: no cover - the run SIGKILLs it
            cpu1.send_signal(signal.SIGCONT)
    doc = _doc(out)
    assert p.returncode == 1, status_reason(doc, err)
    assert "stall" in err and "Traceback" not in err
    assert doc is not None and "stall" in doc["failed"]["reason"]
    [left] = [a for a in doc["stop"]["aborted"] if a["cpu"] == 1]
    assert left["killed"] and left["operation"] == "unknown: killed"
    assert doc["stop"]["at_boundary"] < 2
    assert "stall" in status_reason(doc, err)
    assert not psutil.pid_exists(cpu1.pid) or cpu1.status() == psutil.STATUS_ZOMBIE


def test_the_stop_block_names_aborted_operations_and_what_explains_violations() -> None:
    """stop_outcome and explain_violations on a hand-made slot table: a CPU whose aborted
    wait was in dup_mmap (aborted_op 1) explains the violations; without one they are model
    corruption, with the first example."""
    from shared_model.layout import CPU_DTYPE

    cpu = np.zeros(3, dtype=CPU_DTYPE)
    cpu["aborted_op"][1] = 1  # MODEL_OPS[0]: dup_mmap
    stop = _Stop(stalled=[1, 2], stalled_states=["cpu1 (pid 7): wait waiting for anon_vma#0 for 9 ms",
                                                  "cpu2 (pid 8): work"], aborted=[1, 2], killed=[2])
    block = stop_outcome(stop, cpu, 12.5)
    assert block["at_boundary"] == 1 and [a["cpu"] for a in block["aborted"]] == [1, 2]
    assert block["aborted"][0]["operation"] == "dup_mmap" and not block["aborted"][0]["killed"]
    assert block["aborted"][1]["killed"] and block["aborted"][1]["state"] == "cpu2 (pid 8): work"
    res = {"stop": block, "invariants": {"checked": True, "violations": 1, "messages": ["vma 5 is lost"]}}
    explain_violations(res)
    assert res["invariants"]["explained_by"] == ["cpu1 in dup_mmap", "cpu2 in unknown: killed"]
    line = stop_line(res)
    assert line is not None and "cpu1 aborted in dup_mmap" in line and "1 of 3 CPUs" in line
    clean = {"stop": stop_outcome(_Stop(), cpu[:1], 0.2),
             "invariants": {"checked": True, "violations": 1, "messages": ["vma 5 is lost"]}}
    explain_violations(clean)
    assert clean["invariants"]["corruption"] == "vma 5 is lost"
    assert "model corruption" not in status_reason(clean)  # the reason quotes the messages
    assert "vma 5 is lost" in status_reason(clean)


def test_a_cpu_state_line_says_when_the_os_has_the_process_stopped() -> None:
    """A stalled CPU that someone SIGSTOPped is told apart from one that hangs in the
    model: its state line says "stopped by a signal" (from /proc/PID/stat)."""
    child = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        for _ in range(200):  # a starting interpreter may be in disk sleep while it reads its files
            if not _os_state(child.pid):
                break
            time.sleep(0.01)
        assert _os_state(child.pid) == ""
        os.kill(child.pid, signal.SIGSTOP)
        for _ in range(200):
            if _os_state(child.pid):
                break
            time.sleep(0.01)
        assert _os_state(child.pid) == ", stopped by a signal"
        os.kill(child.pid, signal.SIGCONT)
        for _ in range(200):
            if not _os_state(child.pid):
                break
            time.sleep(0.01)
        assert _os_state(child.pid) == ""
    finally:
        child.kill()
        child.communicate()
    assert _os_state(child.pid) == ""  # gone: nothing to say

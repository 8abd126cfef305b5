"""Starting and stopping under stress, through the real CLI: a group SIGKILL
leaves nothing, 256 CPUs on this machine start and stop, signals under ``timeout`` never
lose the results, a reader that stops reading ends the output quietly, and the live view
draws on a terminal that reports 0 x 0.

Tests count processes, files and exit statuses, never time.  The 20-tries-per-signal
drill and the start-up timings are ``scripts/signal_drill.py`` and
``scripts/startup_scale.py``.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shared_model.segment import SHM_PREFIX, leftover_segments, segment_owner, sweep_stale_segments
from stress.analysis.report import status_reason
from stress.engine.runner import STOPPING_MESSAGE, _Abort, _Signals

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "stress"]
SMALL = ["--users", "60", "--pages", "6", "--cpus", "2"]


def _session(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return out


def _until(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def _segments_of(pid: int) -> list[str]:
    return [n for n in leftover_segments() if segment_owner(n) == pid]


# ----------------------------------------------------------------------------- 1. nothing left


def test_sigkill_of_the_whole_group_leaves_no_process_and_no_segment() -> None:
    # setsid: the run is a session and group of its own, as under a terminal or CI runner.
    p = subprocess.Popen(["setsid", *CLI, "run", "--quiet", "--era", "2.6.33", "--users", "200",
                          "--pages", "20", "--cpus", "3", "--duration", "60"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cli = psutil.Process(p.pid)
    assert _until(lambda: len(cli.children()) >= 3), "CPUs did not start"
    workers = [c.pid for c in cli.children()]
    sid = os.getsid(p.pid)
    assert sid == p.pid and sorted(_session(sid)) == sorted([p.pid, *workers])
    # The model's memory is a memfd the CPUs inherited: mapped, never named in /dev/shm.
    maps = Path(f"/proc/{workers[0]}/maps").read_text()
    assert f"/memfd:{SHM_PREFIX}{p.pid}-" in maps
    assert _segments_of(p.pid) == []
    os.killpg(sid, signal.SIGKILL)
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert _until(lambda: _session(sid) == [], 10.0), _session(sid)
    assert _segments_of(p.pid) == []


def test_stale_named_segments_of_dead_owners_are_swept() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(child.stdout)
    assert not psutil.pid_exists(dead)
    stale = Path(f"/dev/shm/{SHM_PREFIX}{dead}-0badf00d")
    live = Path(f"/dev/shm/{SHM_PREFIX}{os.getpid()}-0badf00d")
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    try:
        removed = sweep_stale_segments()
        assert stale.name in removed and not stale.exists()
        assert live.exists()  # a live owner's segment is never touched
    finally:
        for f in (stale, live):
            f.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- 2. start-up


def test_256_cpus_start_run_and_stop_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    # 2.6.36: short walks (each page stays in its child's anon_vma under refault churn), so
    # 256 oversubscribed CPUs are not a convoy on one long-held lock when the run stops.
    p = subprocess.Popen([*CLI, "run", "--quiet", "--era", "2.6.36", "--users", "300", "--pages", "4",
                          "--cpus", "256", "--duration", "1", "--json", str(out)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    _, err = p.communicate(timeout=300)
    # --quiet: the reason is only in the JSON.
    assert p.returncode == 0, status_reason(json.loads(out.read_text()) if out.exists() else None, err)
    doc = json.loads(out.read_text())
    assert len(doc["cpus"]) == 256
    assert doc["stop"]["at_boundary"] == 256 and doc["stop"]["aborted"] == []
    assert doc["invariants"] == {"checked": True, "violations": 0, "messages": []}
    assert set(doc["phases"]) == {"build_s", "start_s", "stop_s", "check_s"}
    assert _until(lambda: _session(p.pid) == [], 10.0)
    assert _segments_of(p.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_start_up_ends_it_cleanly(sig: int) -> None:
    """Whatever phase the signal lands in (build, fork, gate, run), the run ends with
    128 + signal, no traceback, nothing left."""
    p = subprocess.Popen([*CLI, "run", "--era", "2.6.33", "--users", "300", "--pages", "20",
                          "--cpus", "64", "--duration", "30"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    cli = psutil.Process(p.pid)
    assert _until(lambda: len(cli.children()) >= 8), "no CPU was forked"
    os.killpg(p.pid, sig)  # to the group, as a terminal does: twice, in effect
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert _until(lambda: _session(p.pid) == [], 10.0)


# ----------------------------------------------------------------------------- 3. signals


@pytest.mark.parametrize("name, status", [("INT", 130), ("TERM", 143)])
def test_timeout_signal_keeps_the_results(tmp_path: Path, name: str, status: int) -> None:
    """``timeout`` signals the run and then its group: one signal, results written."""
    out = tmp_path / "r.json"
    p = subprocess.run(["timeout", "--preserve-status", "-s", name, "8", *CLI, "run", "--quiet",
                        "--era", "2.6.33", *SMALL, "--duration", "60", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == status, p.stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and "aborted" not in doc
    assert doc["invariants"]["checked"] is True and doc["invariants"]["violations"] == 0
    assert STOPPING_MESSAGE in p.stderr and "Traceback" not in p.stderr
    assert p.stdout.index("era 2.6.33") < p.stdout.index(f"wrote {out}")


def test_signal_rules() -> None:
    """_Signals' rules on recorded state: a repeat within a second is the same signal, a
    later one or another signal quits at once, SIGTERM decides the status."""
    said: list[str] = []
    s = _Signals(say=said.append)
    s.quick = False
    s._handler(signal.SIGINT, None)
    s._handler(signal.SIGINT, None)  # timeout's duplicate, microseconds later
    assert (s.signum, s.status_signum, s.aborted, said) == (signal.SIGINT, signal.SIGINT, False,
                                                           [STOPPING_MESSAGE])
    with pytest.raises(_Abort):
        s._handler(signal.SIGTERM, None)  # another signal: quit at once, status 143
    assert s.status_signum == signal.SIGTERM and s.aborted
    s._handler(signal.SIGINT, None)  # already on the way out: nothing more

    later = _Signals()
    later.quick = False
    later._handler(signal.SIGINT, None)
    later.first_at -= 2.0  # the same signal, two seconds on: the user means it
    with pytest.raises(_Abort):
        later._handler(signal.SIGINT, None)

    early = _Signals()  # before the gate: nothing measured, the first signal ends it
    with pytest.raises(_Abort):
        early._handler(signal.SIGTERM, None)
    deferred = _Signals()
    deferred.defer = True  # across a fork: remembered, acted on after it
    deferred._handler(signal.SIGINT, None)
    assert deferred.signum == signal.SIGINT and not deferred.aborted


# ----------------------------------------------------------------------------- 5. pipes, terminals


def _pipeline(cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd | true``: the reader is gone before the CLI (which takes a while to import)
    writes a line.  pipefail: the status is the CLI's."""
    return subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | true"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_reader_that_stops_reading_ends_the_output_quietly(tmp_path: Path) -> None:
    ramp = ROOT / "docs" / "results" / "ramp-2cpu.json"
    cli = " ".join(CLI)
    p = _pipeline(f"{cli} compare {ramp}")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = tmp_path / "r.json"
    p = _pipeline(f"{cli} run --quiet --era 2.6.34 {' '.join(SMALL)} --duration 1 --json {out}")
    assert p.returncode == 0 and "Broken pipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert json.loads(out.read_text())["invariants"]["violations"] == 0


def test_live_view_on_a_terminal_that_reports_0x0() -> None:
    master, slave = pty.openpty()  # nobody sets its size: 0 x 0, as under `script`
    try:
        assert tuple(os.get_terminal_size(slave)) == (0, 0)
        p = subprocess.Popen([*CLI, "run", "--live", "--era", "2.6.33", *SMALL, "--duration", "2"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif p.poll() is not None:
                break
        assert p.wait(timeout=60) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    frames = seen.decode(errors="replace").replace("\r", "\n").split("\n")
    # an 80-column frame: a CPU's whole line, not one character per line
    assert any("cpu0" in ln and "pid" in ln for ln in frames), frames[:20]
    # and the silent phases said how far they got
    text = "\n".join(frames)
    assert "starting 2 CPUs ... 2/2" in text and "building the model ... 100%" in text


def test_a_second_signal_quits_at_once_and_still_keeps_the_results() -> None:
    """In-process, with real signals: SIGINT during the run stops it; SIGTERM as the model
    check begins quits at once: results without the check, status SIGTERM's."""
    from stress.engine.config import RunConfig
    from stress.engine.runner import RunInterrupted, run

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    sent: list[str] = []

    def on_tick(tick: object) -> None:
        if not sent:
            sent.append("INT")
            os.kill(os.getpid(), signal.SIGINT)

    def on_phase(phase: str, done: int, total: int) -> None:
        if phase == "check" and done == 0:
            sent.append("TERM")
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with pytest.raises(RunInterrupted) as info:
            run(RunConfig(era="2.6.34", users=40, pages=4, cpus=2, duration=30), on_tick=on_tick,
                tick_s=0.2, on_phase=on_phase)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert sent == ["INT", "TERM"]
    e = info.value
    assert e.signum == signal.SIGTERM and e.results is not None
    assert e.results["interrupted"] is True and "aborted" in e.results
    assert e.results["invariants"]["checked"] is False
    assert e.results["walks"]["count"] > 0


# ----------------------------------------------------------------------------- 6. small things


@pytest.mark.parametrize("args, needle", [
    (["plot", "docs/results/ramp-2cpu.json", "-o", "/nonexistent/s.png"],
     "/nonexistent/s.png: cannot write there"),
    (["run", "--json", "/proc/x.json", "--duration", "1"], "/proc/x.json: cannot write there"),
    (["run", "--live", "--quiet", "--duration", "1"], "--live and --quiet"),
    (["ramp", "--live", "--quiet"], "--live and --quiet"),
    (["compare", "docs/results/ramp-2cpu.json", "./docs/results/ramp-2cpu.json"], "given twice"),
])
def test_user_errors_are_one_line_before_any_work(args: list[str], needle: str) -> None:
    p = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
    assert not Path("/proc/x.json.tmp").exists()


def test_version_and_one_output_spelling() -> None:
    from stress.engine.results import package_version

    p = subprocess.run([*CLI, "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert p.stdout.strip() == f"rmap-stress {package_version()}"
    for cmd in ("plot", "profile"):
        h = subprocess.run([*CLI, cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           check=True).stdout
        assert "-o FILE, --output FILE" in h, h


def test_injection_is_counted_or_said_to_do_nothing(tmp_path: Path) -> None:
    p = subprocess.run([*CLI, "run", "--quiet", "--era", "2.6.33", *SMALL, "--duration", "1",
                        "--inject", "alloc-fail=0.5"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "--inject alloc-fail does nothing here: era 2.6.33" in p.stderr
    assert "injected: alloc-fail=0.5: 0 allocations failed" in p.stdout
    p = subprocess.run([*CLI, "run", "--quiet", "--era", "2.6.34", "--scenario", "forking-server",
                        *SMALL, "--duration", "1", "--inject", "alloc-fail=0.5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "does nothing" not in p.stderr
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("injected: alloc-fail=0.5"))
    assert int(line.split(": ")[2].split()[0]) > 0, line

"""Result files you can trust, through the real CLI: what an output path names is
written as a user expects (a device node and a FIFO written through, a symlink's target
replaced, ``-`` for stdout, clashes and empty names refused before any work), damaged
documents are one line and exit 2 (a hypothesis fuzzer feeds them to plot, compare and
predict), the previous version's documents still load, a copy of a file is not a repeat,
and a signal leaves ramp, demo, scale and story with the results they measured."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stress import cli
from stress.engine.results import ResultsError, load, upgrade

REPO = Path(__file__).resolve().parents[3]


def make_run(era: str = "2.6.33", cpus: int = 2) -> dict[str, Any]:
    """A run document with every field plot, compare and predict read (as test_plot's)."""
    share = {"work": 0.2, "walk": 0.2, "lock_wait": 0.4, "iowait": 0.1, "other": 0.1}
    stats = {"min": 100, "max": 5_000_000, "total": 10**9, "avg": 2_000_000, "p50": 10**6,
             "p90": 1_500_000, "p99": 2_000_000, "p999": 4_000_000}
    return {
        "schema": "rmap-stress-run/2",
        "config": {"era": era, "scenario": "reclaim-storm", "users": 64, "pages": 256,
                   "cow": 1.0, "cpus": cpus, "duration": 5.0, "lock": "ticket", "seed": 0},
        "machine": {"online_cpus": 2, "cpu_model": "Synthetic CPU", "python": "3.11.7"},
        "elapsed_s": 5.0,
        "walks": {"count": 100, "vmas_visited": 30000, "avg_visited": 300.0, "max_visited": 600},
        "locks": [{"class": "anon_vma", "acquisitions": 1000, "contentions": 500,
                   "wait_ns": dict(stats), "hold_ns": dict(stats),
                   "wait_hist": {str(1024 << i): 400 >> i for i in range(8)}, "sites": []}],
        "cpus": [{"cpu": i, "pid": 100 + i, "time_ns": 5 * 10**9, "share": dict(share),
                  "os": {"utime": 1.0, "stime": 0.1, "voluntary_ctx": 1, "involuntary_ctx": 0},
                  "walks": 10, "pages_scanned": 100, "jobs": 1} for i in range(cpus)],
        "anon_vma_wait_share": 0.4,
        "timeline": [{"t": 1.0 * t, "cpus": [{"cpu": 0, "lock_wait": 0.4}]} for t in range(3)],
        "throughput": {"jobs_per_min": 60.0, "pages_scanned_per_s": 1000.0},
        "invariants": {"checked": True, "violations": 0, "messages": []},
    }


def make_ramp() -> dict[str, Any]:
    points = [{"era": era, "users": u, "repeat": r, "jobs_per_min": 100.0 * u + r,
               "jobs_per_min_per_user": 100.0 + r / u, "system_share": 0.1, "work_share": 0.8,
               "walk_share": 0.05, "lock_wait_share": 0.05, "iowait_share": 0.0,
               "pages_scanned_per_s": 10.0, "avg_walk": 3.0, "wait_hist": {"1024": 1}, "elapsed_s": 1.0,
               "invariant_violations": 0}
              for era in ("2.6.33", "2.6.34") for u in (1, 2) for r in range(2)]
    return {"schema": "rmap-stress-ramp/2",
            "config": {"eras": ["2.6.33", "2.6.34"], "users": [1, 2], "start_users": 1, "end_users": 2,
                       "duration": 1.0, "cpus": 2, "repeat": 2, "threshold": 0.5},
            "machine": {}, "points": points,
            "crossover": {e: {"users": None, "system90_users": None, "peak_jobs_per_min": 200.0}
                          for e in ("2.6.33", "2.6.34")}}


def rmap(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stress", *args], check=False, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def one_error_line(p: subprocess.CompletedProcess[str], *words: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("rmap-stress: error:"), line
    for w in words:
        assert w in line, line
    return line


SCAN = ("scan", "--users", "3", "--pages", "2")


# -- what a path names ------------------------------------------------------------------

def test_a_device_node_is_written_through_not_replaced(tmp_path: Path) -> None:
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null, here
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    p = rmap(*SCAN, "--json", str(node))
    assert p.returncode == 0, p.stderr
    assert stat.S_ISCHR(os.stat(node).st_mode)  # still the device
    assert f"wrote {node}" in p.stdout
    assert sorted(os.listdir(tmp_path)) == ["null"]  # no temporary file left beside it


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    p = rmap(*SCAN, "--json", str(fifo))
    reader.join(30)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got[0])["schema"] == "rmap-stress-scan/2"


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    p = rmap(*SCAN, "--json", str(link))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert json.loads(target.read_text())["schema"] == "rmap-stress-scan/2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file's permissions kept
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]


def test_dash_is_standard_output_and_the_report_goes_to_stderr() -> None:
    p = rmap(*SCAN, "--json", "-")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["schema"] == "rmap-stress-scan/2"  # the document alone
    assert "average" in p.stderr and "standard output" in p.stderr
    p = rmap("eras", "--json", "-")
    assert p.returncode == 0 and load_text(p.stdout)["schema"] == "rmap-stress-eras/1"


def load_text(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(("args", "words"), [
    ([*SCAN, "--json", ""], ["--json", "empty file name"]),
    (["run", "--json", "{d}/x", "--log-file", "{d}/x"], ["--json and --log-file both name"]),
    (["ramp", "--json", "{d}/x", "--csv", "{d}/link"], ["--json and --csv both name"]),
    (["ramp", "--json", "-", "--csv", "-"], ["--json and --csv both name standard output"]),
    (["plot", "{d}/x", "-o", "-"], ["-o -", "--json and --csv only"]),
    (["scale", "--plot", "{d}/x.png", "--log-file", "{d}/x.png"], ["--plot and --log-file"]),
    (["eras", "--json", "{d}"], ["is a folder"]),
    (["ramp", "--log"], ["--log", "--plot"]),
    (["ramp", "--era", "2.6.33", "--era", "2.6.33"], ["--era 2.6.33 given twice"]),
    (["scale", "--cpus-list", ""], ["--cpus-list", "positive"]),
])
def test_clashing_and_empty_outputs_are_refused_before_any_work(tmp_path: Path, args: list[str],
                                                               words: list[str]) -> None:
    (tmp_path / "x").write_text("keep")
    (tmp_path / "link").symlink_to("x")
    p = rmap(*[a.replace("{d}", str(tmp_path)) for a in args])
    one_error_line(p, *words)
    assert p.stdout == ""
    assert (tmp_path / "x").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["link", "x"]


# -- damaged documents --------------------------------------------------------------------

def make_scale() -> dict[str, Any]:
    pts = [{"era": "2.6.33", "lock": None, "curve": "2.6.33", "cpus": n, "repeat": 0,
            "oversubscribed": False, "throughput_key": "pages_scanned_per_s", "throughput": 100.0 * n,
            "throughput_per_cpu": 100.0, "wait_share": 0.1, "anon_vma_wait_share": 0.05,
            "avg_walk": 3.0, "elapsed_s": 1.0, "lock_inputs": None, "invariant_violations": 0}
           for n in (1, 2)]
    return {"schema": "rmap-stress-scale/2",
            "config": {"curves": [{"era": "2.6.33", "lock": None, "label": "2.6.33"}],
                       "cpus_list": [1, 2], "repeat": 1, "online_cpus": 2, "scenario": "reclaim-storm",
                       "duration": 1.0},
            "machine": {}, "points": pts}


VALID = {
    "run": make_run(),
    "demo": {"schema": "rmap-stress-demo/2", "eras": {"2.6.33": make_run(), "2.6.34": make_run("2.6.34")}},
    "ramp": make_ramp(),
    "scale": make_scale(),
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_valid_documents_the_fuzzer_damages_are_read(tmp_path: Path, kind: str, capsys: Any) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(VALID[kind]))
    assert load(str(path))["schema"].startswith("rmap-stress-")
    for args in (["compare", str(path)], ["plot", str(path), "-o", str(tmp_path / "p.svg")]):
        assert cli.main(args) == 0, capsys.readouterr().err


@pytest.mark.parametrize(("doc", "command", "words"), [
    ({"schema": "rmap-stress-scale/1"}, "plot", ["damaged scale document", "config: missing"]),
    ({**make_run(), "locks": None}, "compare", ["damaged run document: locks"]),
    ({k: v for k, v in make_run().items() if k != "locks"}, "compare", ["locks: missing"]),
    ({**make_run(), "throughput": {"pages_scanned_per_s": "fast"}}, "predict",
     ["throughput.pages_scanned_per_s"]),
    ({**make_run(), "throughput": "fast"}, "plot", ["throughput"]),
    ({**make_run(), "schema": "rmap-stress/1", "throughput": {}, "cpus": []}, "compare", ["cpus"]),
    ({"schema": "rmap-stress-scan/2", "config": {}, "walks": {}}, "predict", ["a scan document"]),
])
def test_the_issues_damaged_documents_are_one_line(tmp_path: Path, doc: Any, command: str,
                                                  words: list[str]) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    args = [command, str(path)] + (["-o", str(tmp_path / "d.png")] if command == "plot" else [])
    one_error_line(rmap(*args), str(path), *words)
    assert not (tmp_path / "d.png").exists()


# Lists and objects are built anew for each draw: st.just([1, "x"]) would hand every example
# the same list, which a later "drop" in that example cuts short for all the examples after it.
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False),
                        st.text(max_size=4), st.builds(list), st.builds(dict), st.builds(lambda: [1, "x"]))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, str]:
    """A valid document with one to three fields dropped, retyped or truncated (lists and
    objects cut short), or its text cut off: (kind, text)."""
    kind = draw(st.sampled_from(sorted(VALID)))
    doc = copy.deepcopy(VALID[kind])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        how = draw(st.sampled_from(["drop", "retype", "truncate"]))
        if how == "drop":
            if isinstance(parent, dict):
                del parent[key]
            else:
                del parent[key:]
        elif how == "retype":
            parent[key] = draw(JSON_VALUES)
        elif isinstance(parent[key], (list, dict, str)) and parent[key]:
            value = parent[key]
            n = draw(st.integers(0, len(value) - 1))
            parent[key] = dict(list(value.items())[:n]) if isinstance(value, dict) else value[:n]
        else:
            parent[key] = draw(JSON_VALUES)
    text = json.dumps(doc)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text) - 1))]
    return kind, text


# derandomize: the same 60 damaged documents in every run, so that CI's verdict is the code's
# (a random search found a new bug in two runs of three).  For a wider search, run it with
# derandomize off and more examples.
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged(), st.sampled_from(["plot", "compare", "predict"]))
def test_damaged_documents_never_give_a_traceback(tmp_path: Path, capsys: Any, case: tuple[str, str],
                                                  command: str) -> None:
    """The CLI's entry point, in this process (the fuzzer's examples are too many for a
    process each): exit 0, or exit 2 with one line naming the file; never an exception."""
    _kind, text = case
    path = tmp_path / "fuzz.json"
    path.write_text(text)
    out = tmp_path / "fuzz.svg"
    args = [command, str(path)] + (["-o", str(out)] if command == "plot" else [])
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc in (0, 2), err
    if rc == 2:
        (line,) = err.strip().splitlines()
        assert line.startswith("rmap-stress: error:") and str(path) in line, line
        if command == "plot":
            assert not out.exists()  # nothing half-drawn left behind
    if out.exists():
        out.unlink()


def test_the_previous_versions_documents_still_load() -> None:
    """Every document this repository saved under the /1 ids (run and scan shared one)
    loads as its kind's current version; the bare {era: run} demo loads as demo/2."""
    kinds = {}
    for path in sorted((REPO / "docs" / "results").rglob("*.json")):
        raw = json.loads(path.read_text())
        if raw.get("schema", "").startswith("rmap-stress-eras-measure"):
            continue  # scripts/measure_eras.py's own table, not a command's document
        kinds[path.name] = load(str(path))["schema"]
    assert kinds["ramp-2cpu.json"] == "rmap-stress-ramp/2"
    assert kinds["scale-2cpu.json"] == "rmap-stress-scale/2"
    assert kinds["story.json"] == "rmap-stress-story/2"
    assert kinds["cve-2022-42703-6.0.json"] == "rmap-stress-run/2"
    assert kinds["scan-2.6.33.json"] == "rmap-stress-scan/2"
    demo = upgrade({"2.6.33": {**make_run(), "schema": "rmap-stress/1"}})
    assert demo["schema"] == "rmap-stress-demo/2" and demo["eras"]["2.6.33"]["schema"] == "rmap-stress-run/2"
    with pytest.raises(ResultsError, match="not one rmap-stress writes"):
        upgrade_and_load({"schema": "rmap-stress-ramp/0"})


def upgrade_and_load(doc: dict[str, Any]) -> dict[str, Any]:
    from stress.engine.results import validate

    return validate(doc, "doc")


def test_compare_refuses_a_copy_as_a_second_repeat(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(make_run()))
    shutil.copy(a, tmp_path / "b.json")
    one_error_line(rmap("compare", str(a), str(tmp_path / "b.json")), "same content as", str(a))


# -- a signal keeps what was measured ---------------------------------------------------------

def _interrupt(tmp_path: Path, args: list[str], after_s: int = 8) -> dict[str, Any]:
    """``timeout -s INT`` (as a user's Ctrl-C): the command must exit 130 and leave its
    JSON, loadable, with ``interrupted`` set.  Every planned run is longer than ``after_s``,
    so the signal lands inside the command whatever the machine's load."""
    js = tmp_path / "out.json"
    p = subprocess.run(["timeout", "--preserve-status", "-s", "INT", str(after_s), sys.executable, "-m",
                        "stress", *args, "--json", str(js)], check=False, capture_output=True, text=True,
                       timeout=after_s + 120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 130, p.stderr
    assert "Traceback" not in p.stderr
    assert f"wrote {js}" in p.stdout
    return load(str(js))


def test_ramp_interrupted_keeps_its_points(tmp_path: Path) -> None:
    doc = _interrupt(tmp_path, ["ramp", "--start-users", "2", "--end-users", "4", "--increment", "2",
                                "--duration", "30", "--cpus", "1", "--pages", "4", "--quiet"])
    assert doc["interrupted"] == "SIGINT"
    assert len(doc["points"]) <= 1  # the first point, cut short (none if the signal beat its start)
    assert all(p["interrupted"] for p in doc["points"])
    assert all(p["elapsed_s"] < 30 for p in doc["points"])


def test_demo_interrupted_keeps_its_eras(tmp_path: Path) -> None:
    doc = _interrupt(tmp_path, ["demo", "--users", "10", "--pages", "4", "--cpus", "1", "--duration", "30",
                                "--quiet"])
    assert doc["schema"] == "rmap-stress-demo/2" and doc["interrupted"] == "SIGINT"
    assert list(doc["eras"]) in ([], ["2.6.33"])
    for run in doc["eras"].values():
        assert run["interrupted"] and run["elapsed_s"] < 30


def test_scale_interrupted_keeps_its_points(tmp_path: Path) -> None:
    doc = _interrupt(tmp_path, ["scale", "--cpus-list", "1,2", "--users", "10", "--pages", "4",
                                "--duration", "30", "--quiet"])
    assert doc["interrupted"] == "SIGINT" and len(doc["points"]) <= 1
    assert all(p["interrupted"] and p["cpus"] == 1 for p in doc["points"])


def test_story_interrupted_keeps_its_runs(tmp_path: Path) -> None:
    doc = _interrupt(tmp_path, ["story", "--duration", "30", "--cpus", "1", "--quiet"])
    assert doc["schema"] == "rmap-stress-story/2" and doc["interrupted"] == "SIGINT"
    assert len(doc["chapters"]) <= 1
    for ch in doc["chapters"]:
        assert ch["interrupted"] and "headline" not in ch
        assert all(r["interrupted"] for r in ch["results"].values())


def test_a_signal_between_runs_stops_at_once(tmp_path: Path) -> None:
    """stop_on_signals: a signal outside any run raises Stopped where the loop is, and
    from then on signals are ignored (the results are being written)."""
    from stress.engine.stopping import Stopped, stop_on_signals

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Stopped) as info, stop_on_signals():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**6):
            pass
    assert info.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    signal.signal(signal.SIGINT, before)
    with stop_on_signals():
        pass
    assert signal.getsignal(signal.SIGINT) is before


# -- the smaller items ----------------------------------------------------------------------

def test_a_wait_share_shown_as_0_00_has_no_relative_error() -> None:
    """+7032% of a wait share printed as 0.00 was noise: n/a, with the reason under it."""
    from stress.analysis.predict import format_prediction, predict_run, prediction_table

    row = {"class": "anon_vma", "acquisitions": 800, "contentions": 1,
           "hold_ns": {"total": 800_000_000}, "wait_ns": {"total": 10}}  # 10 ns waited in 2 s
    run = {"config": {"cpus": 2, "lock": "spin", "scenario": "reclaim-storm"}, "elapsed_s": 1.0,
           "locks": [row], "cpus": [{"cpu": i, "time_ns": 10**9} for i in range(2)],
           "throughput": {"pages_scanned_per_s": 500.0}}
    p = predict_run(run, handoff_ns=0.0)
    assert abs(p["repairman"]["wait_share_error"]) > 10  # the relative error itself is huge
    text = format_prediction(p)
    assert "%" not in text.splitlines()[3].split()[-3] and "n/a" in text.splitlines()[3]
    assert "shown as 0.00" in text
    table = prediction_table([("x", p)])
    assert "n/a" in table.splitlines()[2] and "shown as 0.00" in table


def test_no_lockstat_says_not_recorded_and_the_stall_report_reads() -> None:
    from stress.analysis import report

    run = {**make_run(), "model": {"mms": 1, "vmas": 1, "anon_vmas": 1, "avcs": 0, "pages": 1},
           "config": {**make_run()["config"], "lockstat": False}}
    assert "(anon_vma lock wait: not recorded, --no-lockstat)" in report.run_summary(run)
    assert "--no-lockstat: no lock statistics were recorded" in report.lockstat_table(run)
    waited = {**make_run(), "locks": [{**make_run()["locks"][0], "contentions": 0}]}
    assert "waiting on locks they never got" in report.lockstat_table(waited)
    fork_test = {**run, "config": {**run["config"], "scenario": "fork-test"},
                 "throughput": {"jobs_per_min": 960974.0, "pages_scanned_per_s": 0.0, "forks_per_s": 16016.0}}
    summary = report.run_summary(fork_test)
    assert "jobs/min" not in summary and "16016 forks/s" in summary


def test_mprotect_split_runs_with_its_own_defaults(tmp_path: Path) -> None:
    """--pages defaults to --pieces (1000 by default: a page per piece), so the scenario's
    own defaults work; shown with a smaller --pieces to keep the test short."""
    a = cli.build_parser().parse_args(["scan", "--scenario", "mprotect-split"])
    assert (a.pieces, a.pages) == (1000, None)  # None: cmd_scan makes it --pieces
    out = tmp_path / "m.json"
    p = rmap("scan", "--era", "3.7", "--scenario", "mprotect-split", "--pieces", "20", "--json", str(out),
             timeout=300)
    assert p.returncode == 0, p.stderr
    doc = load(str(out), ("scan",))
    assert (doc["config"]["pieces"], doc["config"]["pages"]) == (20, 20)


def test_run_notes_what_it_cannot_show() -> None:
    """--live without a terminal and cve-2022-42703 on an era without reuse: a note each,
    not silence; abba-deadlock's refusal names the condition that failed."""
    p = rmap("run", "--era", "2.6.33", "--scenario", "cve-2022-42703", "--live", "--cpus", "1",
             "--duration", "0.2")
    assert p.returncode == 0, p.stderr
    assert "--live needs a terminal" in p.stderr and "never reuses an anon_vma" in p.stderr
    one_error_line(rmap("run", "--scenario", "abba-deadlock", "--era", "2.6.33", "--cpus", "2"),
                   "abba-deadlock needs an era with anon_vma_chain (2.6.33 has none)")


def test_compare_and_predict_warn_on_runs_cut_short(tmp_path: Path, capsys: Any) -> None:
    """An interrupted run (1.7 s of a planned 10) is compared and predicted with a warning
    that says so and how long it measured; a failed one with its reason."""
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({**make_run(), "interrupted": True, "elapsed_s": 1.7,
                               "config": {**make_run()["config"], "duration": 10.0}}))
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps({**make_run("2.6.34"), "failed": {"reason": "cpu1 died"}}))
    assert cli.main(["compare", str(cut), str(failed)]) == 0
    out = capsys.readouterr().out
    assert f"WARNING: {cut}: interrupted: 1.7 s measured of 10 s planned" in out
    assert f"WARNING: {failed}: the run failed: cpu1 died" in out
    assert cli.main(["predict", str(cut)]) == 0
    err = capsys.readouterr().err
    assert f"rmap-stress: warning: {cut}: interrupted: 1.7 s measured of 10 s planned" in err

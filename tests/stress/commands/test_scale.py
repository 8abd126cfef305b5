"""scale: CPU counts, curves, the interleaved order, a real sweep and its document; the
ramp's interleaved repeats; compare's drift warning; the scale and predict commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared_model.segment import leftover_segments
from stress.analysis.compare import compare, drift
from stress.analysis.plot import plot_results
from stress.analysis.sweeps import summarize_scale
from stress.commands.ramp import ramp
from stress.commands.scale import (
    Curve,
    curves_of,
    default_cpus_list,
    parse_cpus_list,
    scale,
    scale_table,
    schedule,
)
from stress.engine.config import ConfigError, RunConfig
from stress.engine.results import SCHEMA_SCALE


def test_default_cpus_list() -> None:
    assert default_cpus_list(1) == [1, 2]
    assert default_cpus_list(2) == [1, 2, 4]
    assert default_cpus_list(6) == [1, 2, 4, 6, 12]
    assert default_cpus_list(16) == [1, 2, 4, 8, 16, 32]


def test_parse_cpus_list() -> None:
    assert parse_cpus_list("4,1, 2,2") == [1, 2, 4]
    for bad in ("", "0,1", "a,b", "-2"):
        with pytest.raises(ConfigError):
            parse_cpus_list(bad)


def test_curves_of_labels_a_repeated_curve() -> None:
    assert curves_of(["2.6.33", "2.6.34"], [None]) == [Curve("2.6.33", None, "2.6.33"),
                                                      Curve("2.6.34", None, "2.6.34")]
    assert [c.label for c in curves_of(["2.6.33"], ["spin", "spin", "mutex", "spin"])] == [
        "2.6.33 spin", "2.6.33 spin #2", "2.6.33 mutex", "2.6.33 spin #3"]


def test_schedule_runs_every_point_once_per_round() -> None:
    a, b = curves_of(["2.6.33"], ["spin", "spin"])
    order = [(r, c.label, n) for r, c, n in schedule([a, b], [1, 2], repeat=3)]
    assert order == [(r, c, n) for r in range(3) for n in (1, 2) for c in (a.label, b.label)]
    assert len(order) == 12 and len(set(order)) == 12


BASE = RunConfig(scenario="reclaim-storm", users=30, pages=6, duration=0.3)


def test_scale_sweep_document(tmp_path: Path) -> None:
    curves = curves_of(["2.6.33"], ["spin", "spin"])
    doc = scale(BASE, curves, [1, 2], repeat=2, predict=True, handoff_ns=500.0)
    assert doc["schema"] == SCHEMA_SCALE
    pts = doc["points"]
    # interleaved: round 0's four points, then round 1's, in schedule order
    assert [(p["repeat"], p["cpus"], p["curve"]) for p in pts] == [
        (r, n, c) for r in range(2) for n in (1, 2) for c in ("2.6.33 spin", "2.6.33 spin #2")]
    for p in pts:
        assert p["invariant_violations"] == 0
        assert p["era"] == "2.6.33" and p["lock"] == "spin" and not p["oversubscribed"]
        assert p["throughput_key"] == "pages_scanned_per_s"
        assert p["throughput_per_cpu"] == pytest.approx(p["throughput"] / p["cpus"])
        q = p["predicted"]
        assert q["lock_class"] == "anon_vma" and q["handoff_ns"] == 500.0
        assert set(q) >= {"repairman", "ticket", "measured"}
        if p["cpus"] == 1:  # one CPU never waits, and the queue says so
            assert q["measured"]["wait_share"] == 0.0 and q["repairman"]["wait_share"] == 0.0
    rows = summarize_scale(doc)
    assert [(r["curve"], r["cpus"], r["repeats"]) for r in rows] == [
        ("2.6.33 spin", 1, 2), ("2.6.33 spin", 2, 2), ("2.6.33 spin #2", 1, 2), ("2.6.33 spin #2", 2, 2)]
    one = rows[0]
    assert rows[1]["linear"] == pytest.approx(2 * one["throughput"])
    assert "2.6.33 spin #2" in scale_table(doc)
    out = tmp_path / "scale.png"
    plot_results(doc, str(out))
    assert out.stat().st_size > 0
    # the same curve twice: compare tests one against the other
    text = compare([("s.json", doc)])
    assert "2.6.33 spin #2" in text and "Welch" in text


def test_scale_marks_oversubscribed_points() -> None:
    from stress.engine.config import online_cpus

    n = online_cpus()
    doc = scale(BASE, curves_of(["2.6.34"], [None]), [n + 1], repeat=1)
    (p,) = doc["points"]
    assert p["oversubscribed"] and p["cpus"] == n + 1 and p["invariant_violations"] == 0
    assert "predicted" not in p and p["lock_inputs"]["times"]["cpus"] == n + 1


def test_ramp_repeats_are_interleaved(tmp_path: Path) -> None:
    base = RunConfig(scenario="forking-server", pages=4, cpus=1, duration=0.2, work_us=0)
    doc = ramp(["2.6.34"], [2, 4], base, repeat=2, predict=True, handoff_ns=0.0)
    assert [(p["repeat"], p["users"]) for p in doc["points"]] == [(0, 2), (0, 4), (1, 2), (1, 4)]
    assert all(p["invariant_violations"] == 0 and p["lock_inputs"] for p in doc["points"])
    assert all(p["predicted"]["throughput_key"] == "jobs_per_min" for p in doc["points"] if "predicted" in p)
    plot_results(doc, str(tmp_path / "ramp.svg"))  # dashed predictions on a ramp


def test_drift() -> None:
    assert drift([1.0, 2.0, 3.0, 4.0]) == "rise"
    assert drift([4.0, 3.0, 2.0, 1.0, 0.5]) == "fall"
    assert drift([1.0, 2.0, 3.0]) is None  # too few to tell from chance (1 in 3)
    assert drift([1.0, 3.0, 2.0, 4.0]) is None
    assert drift([1.0, 1.0, 2.0, 3.0]) is None


def _scale_doc(values: dict[str, dict[int, list[float]]]) -> dict:
    points = [{"curve": c, "era": "2.6.33", "lock": "spin", "cpus": n, "repeat": r,
               "throughput_key": "pages_scanned_per_s", "throughput": v, "wait_share": 0.1,
               "oversubscribed": False, "throughput_per_cpu": v / n}
              for c, by_n in values.items() for n, vs in by_n.items() for r, v in enumerate(vs)]
    return {"schema": SCHEMA_SCALE, "config": {"curves": [{"label": c} for c in values], "repeat": 4},
            "machine": {}, "points": points}


def test_compare_warns_of_drift_and_says_where() -> None:
    doc = _scale_doc({"a": {1: [100.0, 101.0, 99.0, 100.5]}, "b": {1: [90.0, 95.0, 99.0, 104.0]}})
    text = compare([("s.json", doc)])
    assert "WARNING: b: the repeats drift" in text
    assert "pages/s at 1 CPU: 4 repeats, each above the one before (90, 95, 99, 104" in text
    assert "WARNING: a: the repeats drift" not in text


def rmap(*args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.Popen([sys.executable, "-m", "stress", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=120)
    assert [n for n in leftover_segments() if n.startswith(f"rmap-stress-{p.pid}-")] == []
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("args", [
    ["scale", "--cpus-list", "0,1"],
    ["scale", "--cpus-list", "x"],
    ["scale", "--cpus", "2"],
    ["scale", "--lock", "rcu"],
    ["scale", "--era", "9.9"],
    ["scale", "--repeat", "0"],
    ["scale", "--plot", "x.pdf"],
    ["scale", "--handoff-ns", "-1"],
    ["predict", "/no/such.json"],
    ["run", "--predict", "--handoff-ns", "nan"],
])
def test_scale_and_predict_bad_input_one_line_exit_2(args: list[str]) -> None:
    p = rmap(*args)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_scale_and_predict_commands(tmp_path: Path) -> None:
    js, csv = tmp_path / "s.json", tmp_path / "s.csv"
    p = rmap("scale", "--era", "2.6.33", "--cpus-list", "1,2", "--users", "30", "--pages", "6",
             "--duration", "0.3", "--predict", "--quiet", "--json", str(js), "--csv", str(csv))
    assert p.returncode == 0, p.stderr
    assert "M/M/1//N" in p.stdout and "of linear" in p.stdout
    doc = json.loads(js.read_text())
    assert [pt["cpus"] for pt in doc["points"]] == [1, 2]
    assert len(csv.read_text().splitlines()) == 3
    again = rmap("predict", str(js), "--handoff-ns", "0")
    assert again.returncode == 0, again.stderr
    assert "2.6.33, 2 CPUs #1" in again.stdout
    # a run with --predict keeps its prediction in the results, and predict reads it back
    run_js = tmp_path / "r.json"
    r = rmap("run", "--users", "30", "--pages", "6", "--cpus", "2", "--duration", "0.3", "--quiet",
             "--predict", "--json", str(run_js))
    assert r.returncode == 0, r.stderr
    assert "prediction for the" in r.stdout
    assert "repairman" in json.loads(run_js.read_text())["predicted"]
    assert rmap("predict", str(run_js)).returncode == 0
    assert rmap("plot", str(run_js), "-o", str(tmp_path / "r.png")).returncode == 0
    demo = tmp_path / "demo.json"  # demo/1's shape, {era: run}, still read
    demo.write_text(json.dumps({"2.6.33": json.loads(run_js.read_text())}))
    d = rmap("predict", str(demo))
    assert d.returncode == 0 and "== 2.6.33 ==" in d.stdout, d.stderr
    scan = tmp_path / "scan.json"
    assert rmap("scan", "--users", "3", "--pages", "2", "--json", str(scan)).returncode == 0
    bad = rmap("predict", str(scan))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

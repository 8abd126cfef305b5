"""plot_results on synthetic documents: the files exist and are what their names say.

No runs: every document is built here, shaped as runner.collect() and the ramp write them.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from stress.plot import plot_results, wait_cdf
from stress.results import ResultsError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"online_cpus": 8, "affinity": list(range(8)), "cpu_model": "Synthetic CPU",
           "loadavg": [0.1, 0.1, 0.1], "python": "3.11.7", "package_version": "0.1.0"}


def _hist(n: int, base: int) -> dict[str, int]:
    """A wait histogram {lower bound ns: count}; bounds are bucket lower bounds."""
    return {str(base << i): max(1, n >> i) for i in range(8)}


def make_run(era: str = "2.6.33", cpus: int = 4, wait: float = 0.5,
             hist_base: int = 1024) -> dict[str, Any]:
    share = {"work": 0.2, "walk": 0.2, "lock_wait": wait * 0.9, "other": 0.6 - wait * 0.9}
    return {
        "schema": "rmap-stress/1",
        "config": {"era": era, "scenario": "reclaim-storm", "users": 64, "pages": 256,
                   "cow": 1.0, "cpus": cpus, "duration": 5.0, "lock": "ticket", "seed": 0},
        "machine": dict(MACHINE),
        "elapsed_s": 5.0,
        "walks": {"count": 100, "vmas_visited": 30000, "avg_visited": 300.0, "max_visited": 600},
        "locks": [{"class": "anon_vma", "acquisitions": 1000, "contentions": 500,
                   "wait_ns": {"min": 100, "max": 5_000_000, "total": 10**9, "avg": 2_000_000,
                               "p50": 10**6, "p90": 1_500_000, "p99": 2_000_000, "p999": 4_000_000},
                   "wait_hist": _hist(400, hist_base), "sites": []}],
        "cpus": [{"cpu": i, "pid": 100 + i, "share": dict(share),
                  "os": {"utime": 1.0, "stime": 0.1, "voluntary_ctx": 1, "involuntary_ctx": 0},
                  "walks": 10, "pages_scanned": 100, "jobs": 1} for i in range(cpus)],
        "anon_vma_wait_share": wait,
        "throughput": {"jobs_per_min": 60.0, "pages_scanned_per_s": 1000.0},
        "invariants": {"checked": True, "violations": 0, "messages": []},
    }


def make_ramp(eras: tuple[str, ...] = ("2.6.33", "2.6.34"),
              users: tuple[int, ...] = (1, 2, 4, 8, 16), repeat: int = 3) -> dict[str, Any]:
    points = []
    for e in eras:
        for u in users:
            for r in range(repeat):
                system = min(0.95, 0.06 * u) if e == "2.6.33" else 0.02
                jpm = (1000.0 * min(u, 4) / (1 + 0.1 * max(0, u - 4)) if e == "2.6.33"
                       else 1000.0 * u) * (1 + 0.01 * r)
                points.append({
                    "era": e, "users": u, "repeat": r, "jobs_per_min": jpm,
                    "jobs_per_min_per_user": jpm / u, "system_share": system,
                    "work_share": max(0.0, 0.95 - system), "walk_share": 0.3 * system,
                    "lock_wait_share": 0.7 * system, "pages_scanned_per_s": 10 * jpm,
                    "wait_hist": _hist(50 * u, 1024 if e == "2.6.33" else 64), "elapsed_s": 2.0})
    return {
        "schema": "rmap-stress-ramp/1",
        "config": {"eras": list(eras), "users": list(users), "start_users": users[0],
                   "end_users": users[-1], "duration": 2.0, "cpus": 4, "repeat": repeat,
                   "threshold": 0.5},
        "machine": dict(MACHINE),
        "points": points,
        "crossover": {e: {"users": 8 if e == "2.6.33" else None,
                          "system90_users": 16 if e == "2.6.33" else None,
                          "peak_jobs_per_min": 4000.0} for e in eras},
    }


def make_timeline(n: int = 10, cpus: int = 4) -> list[dict[str, Any]]:
    return [{"t": 0.5 * t, "cpus": [{"cpu": c, "walk": 0.1, "lock_wait": 0.05 * t, "work": 0.3,
                                     "utime": 0.1, "stime": 0.05} for c in range(cpus)]}
            for t in range(n)]


@pytest.fixture(autouse=True)
def _needs_matplotlib() -> None:
    pytest.importorskip("matplotlib")


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def assert_svg(path: Path) -> None:
    text = path.read_text()
    assert "<svg" in text
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")


def test_ramp_png(tmp_path: Path) -> None:
    out = tmp_path / "ramp.png"
    plot_results(make_ramp(), str(out))
    assert_png(out)


def test_ramp_svg_has_the_panels(tmp_path: Path) -> None:
    out = tmp_path / "ramp.svg"
    plot_results(make_ramp(), str(out))
    assert_svg(out)
    text = out.read_text()
    # Titles are drawn as text in the SVG (as glyph paths, with the string in a comment).
    for title in ("Throughput against users", "CPU time, 2.6.33", "CPU time, 2.6.34",
                  "anon_vma lock wait time"):
        assert title in text


def test_ramp_variants(tmp_path: Path) -> None:
    """One era, no repeats, linear steps, a timeline; and a ramp with no points yet."""
    one = make_ramp(eras=("3.0",), users=(1, 2, 3, 4), repeat=1)  # linear: 1, 2, 3, 4
    one["timeline"] = make_timeline()
    plot_results(one, str(tmp_path / "one.png"))
    assert_png(tmp_path / "one.png")

    empty = make_ramp()
    empty["points"], empty["crossover"] = [], {}
    plot_results(empty, str(tmp_path / "empty.svg"))
    assert_svg(tmp_path / "empty.svg")


def test_single_run(tmp_path: Path) -> None:
    run = make_run(cpus=64)
    run["timeline"] = make_timeline(cpus=64)
    plot_results(run, str(tmp_path / "run.PNG"))  # the extension's case does not matter
    assert_png(tmp_path / "run.PNG")


def test_run_without_lock_waits(tmp_path: Path) -> None:
    run = make_run()
    run["locks"] = []
    plot_results(run, str(tmp_path / "run.svg"))
    assert_svg(tmp_path / "run.svg")


def test_demo_dict(tmp_path: Path) -> None:
    demo = {"2.6.33": make_run(), "2.6.34": make_run("2.6.34", wait=0.001, hist_base=64)}
    plot_results(demo, str(tmp_path / "demo.png"))
    plot_results(demo, str(tmp_path / "demo.svg"))
    assert_png(tmp_path / "demo.png")
    assert_svg(tmp_path / "demo.svg")


@pytest.mark.parametrize("name", ["out.pdf", "out", "out.png.txt"])
def test_other_extensions_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg") as exc:
        plot_results(make_run(), str(tmp_path / name))
    assert "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_schema_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="schema"):
        plot_results({"schema": "something-else/1"}, str(tmp_path / "x.png"))
    with pytest.raises(ResultsError):
        plot_results({"2.6.33": {"schema": "something-else/1"}}, str(tmp_path / "x.png"))


def test_wait_cdf() -> None:
    xs, ys = wait_cdf({"1024": 2, "2048": 1, "64": 1})
    assert ys[0] == 0.0 and ys[-1] == 1.0
    assert xs == sorted(xs) and xs[0] == 0.064  # starts at the first bucket's lower bound
    assert ys == [0.0, 0.25, 0.75, 1.0]
    assert xs[1] == 0.08  # upper bound of the [64, 80) ns bucket, in µs
    assert wait_cdf({}) == ([], [])


def test_schema_is_the_ramps() -> None:
    from stress import compare, plot, ramp, results

    assert plot.SCHEMA_RAMP == compare.SCHEMA_RAMP == ramp.SCHEMA_RAMP == results.SCHEMA_RAMP


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, stress.plot; sys.exit('matplotlib' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, check=False).returncode == 0

"""plot_results on synthetic documents: the files exist and are what their names say.

No runs: every document is built here, shaped as runner.collect() and the ramp write them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stress.analysis.plot import plot_results, wait_cdf
from stress.engine.results import ResultsError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"online_cpus": 8, "affinity": list(range(8)), "cpu_model": "Synthetic CPU",
           "loadavg": [0.1, 0.1, 0.1], "python": "3.11.7", "package_version": "0.1.0"}


def _hist(n: int, base: int) -> dict[str, int]:
    """A wait histogram {lower bound ns: count}; bounds are bucket lower bounds."""
    return {str(base << i): max(1, n >> i) for i in range(8)}


def make_run(era: str = "2.6.33", cpus: int = 4, wait: float = 0.5,
             hist_base: int = 1024) -> dict[str, Any]:
    share = {"work": 0.2, "walk": 0.2, "lock_wait": wait * 0.9, "iowait": 0.1, "other": 0.5 - wait * 0.9}
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
                    "work_share": max(0.0, 0.91 - system), "walk_share": 0.3 * system,
                    "lock_wait_share": 0.7 * system, "iowait_share": 0.04, "pages_scanned_per_s": 10 * jpm,
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


# The stacked shares' colours, bottom to top: lock wait, rmap walk, work, iowait, other (README,
# panel b).
SHARE_COLORS = ("#d62728", "#ff9896", "#2ca02c", "#aec7e8", "#c7c7c7")
SVG = "{http://www.w3.org/2000/svg}"


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def png_color_pixels(path: Path, color: str, alpha: float = 1.0) -> int:
    """Pixels of ``color`` (#rrggbb, drawn with ``alpha`` over white) in a PNG: data drawn,
    not an empty frame."""
    import matplotlib.image

    img = np.asarray(matplotlib.image.imread(str(path)))[..., :3]
    rgb = alpha * np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]) + (1 - alpha)
    return int(np.all(np.abs(img - rgb) < 1.5 / 255, axis=-1).sum())


def assert_svg(path: Path) -> None:
    text = path.read_text()
    assert "<svg" in text
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")


def svg_lines(path: Path, width: str) -> list[tuple[int, str]]:
    """(vertices, colour) of every stroked path of the given line width: the data curves."""
    out = []
    for p in ET.parse(path).getroot().iter(f"{SVG}path"):
        style = p.get("style", "")
        if f"stroke-width: {width};" in style:
            color = re.search(r"stroke: (#[0-9a-f]{6})", style)
            out.append((len(re.findall(r"[ML]", p.get("d", ""))), color.group(1) if color else ""))
    return out


def svg_fills(path: Path) -> Counter[str]:
    """How many filled paths (bars, legend patches) of each colour."""
    fills: Counter[str] = Counter()
    for p in ET.parse(path).getroot().iter(f"{SVG}path"):
        m = re.search(r"fill: (#[0-9a-f]{6})", p.get("style", ""))
        if m:
            fills[m.group(1)] += 1
    return fills


def svg_groups(path: Path, prefix: str) -> int:
    return sum(1 for g in ET.parse(path).getroot().iter(f"{SVG}g") if g.get("id", "").startswith(prefix))


def test_ramp_png(tmp_path: Path) -> None:
    out = tmp_path / "ramp.png"
    plot_results(make_ramp(), str(out))
    assert_png(out)
    # panel (b) stacks every share in its colour (at alpha 0.9), 2.6.33's lock wait widest
    for color in SHARE_COLORS:
        assert png_color_pixels(out, color, alpha=0.9) > 100, color


def test_ramp_svg_has_the_panels(tmp_path: Path) -> None:
    out = tmp_path / "ramp.svg"
    plot_results(make_ramp(), str(out))
    assert_svg(out)
    text = out.read_text()
    # Titles are drawn as text in the SVG (as glyph paths, with the string in a comment).
    for title in ("Throughput against users", "CPU time, 2.6.33", "CPU time, 2.6.34",
                  "anon_vma lock wait time"):
        assert title in text
    curves = svg_lines(out, "1.8")
    # (a) one throughput curve per era through its 5 user counts, in two colours
    aim7 = [c for c in curves if c[0] == 5]
    assert len(aim7) == 2 and aim7[0][1] != aim7[1][1]
    # (c) one CDF per era through 8 histogram buckets: 9 points, the eras' colours again
    assert sorted(c for c in curves if c[0] == 9) == sorted((9, color) for _, color in aim7)
    # (b) 5 stacked shares for each era
    assert svg_groups(out, "FillBetweenPolyCollection") == 10


def test_ramp_variants(tmp_path: Path) -> None:
    """One era, no repeats, linear steps, a timeline; and a ramp with no points yet."""
    one = make_ramp(eras=("3.0",), users=(1, 2, 3, 4), repeat=1)  # linear: 1, 2, 3, 4
    one["timeline"] = make_timeline()
    plot_results(one, str(tmp_path / "one.png"))
    assert_png(tmp_path / "one.png")
    plot_results(one, str(tmp_path / "one.svg"))
    assert [n for n, _ in svg_lines(tmp_path / "one.svg", "1.8")].count(4) == 1  # 4 user counts
    assert svg_lines(tmp_path / "one.svg", "1.5") == [(10, "#1f77b4")]  # the 10 timeline samples
    assert svg_groups(tmp_path / "one.svg", "FillBetweenPolyCollection") == 5

    empty = make_ramp()
    empty["points"], empty["crossover"] = [], {}
    plot_results(empty, str(tmp_path / "empty.svg"))
    assert_svg(tmp_path / "empty.svg")
    assert svg_groups(tmp_path / "empty.svg", "FillBetweenPolyCollection") == 0
    assert not [c for c in svg_lines(tmp_path / "empty.svg", "1.8") if c[0] > 3]


def test_single_run(tmp_path: Path) -> None:
    run = make_run(cpus=64)
    run["timeline"] = make_timeline(cpus=64)
    plot_results(run, str(tmp_path / "run.PNG"))  # the extension's case does not matter
    assert_png(tmp_path / "run.PNG")
    for color in SHARE_COLORS:  # every CPU's bar holds every share
        assert png_color_pixels(tmp_path / "run.PNG", color) > 100, color


def test_run_without_lock_waits(tmp_path: Path) -> None:
    run = make_run()
    run["locks"] = []
    plot_results(run, str(tmp_path / "run.svg"))
    assert_svg(tmp_path / "run.svg")
    assert not [c for c in svg_lines(tmp_path / "run.svg", "1.8") if c[0] > 3]  # no CDF
    assert all(svg_fills(tmp_path / "run.svg")[c] == 4 + 1 for c in SHARE_COLORS)  # 4 bars, legend


def test_demo_dict(tmp_path: Path) -> None:
    demo = {"2.6.33": make_run(), "2.6.34": make_run("2.6.34", wait=0.001, hist_base=64)}
    plot_results(demo, str(tmp_path / "demo.png"))
    plot_results(demo, str(tmp_path / "demo.svg"))
    assert_png(tmp_path / "demo.png")
    assert_svg(tmp_path / "demo.svg")
    # two eras x 4 CPUs of stacked bars, one legend patch per share
    assert all(svg_fills(tmp_path / "demo.svg")[c] == 2 * 4 + 1 for c in SHARE_COLORS)
    # one wait CDF per era, each through its 8 buckets
    cdfs = [c for c in svg_lines(tmp_path / "demo.svg", "1.8") if c[0] == 9]
    assert len(cdfs) == 2 and cdfs[0][1] != cdfs[1][1]


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


def test_only_the_ramp_schema_written_by_ramp_is_drawn(tmp_path: Path) -> None:
    """make_ramp() spells the schema out ("rmap-stress-ramp/1", the previous version, which
    loads as /2); a version rmap-stress never wrote is refused, not drawn as something else."""
    plot_results(make_ramp(), str(tmp_path / "ok.svg"))
    plot_results({**make_ramp(), "schema": "rmap-stress-ramp/2"}, str(tmp_path / "ok2.svg"))
    with pytest.raises(ResultsError, match="schema"):
        plot_results({**make_ramp(), "schema": "rmap-stress-ramp/3"}, str(tmp_path / "no.svg"))
    assert not (tmp_path / "no.svg").exists()


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, stress.analysis.plot; sys.exit('matplotlib' in sys.modules)"
    repo = Path(__file__).resolve().parents[3]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo, check=False).returncode == 0

"""scripts/measure_eras.py's explanation of the fork-test sizes: its arithmetic from the
runs' own lockstat (what a contended take waits, per fork, against a fork's CPU time) and
the prediction it carries to 16 CPUs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("measure_eras_script", REPO / "scripts" / "measure_eras.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(forks_per_s: float, forks: int, acquisitions: int, contentions: int, wait_ns: float,
         hold_ns: float) -> dict[str, Any]:
    return {"forks_per_s": forks_per_s, "forks": forks, "anon_vma_acquisitions": acquisitions,
            "anon_vma_contentions": contentions, "anon_vma_wait_avg_ns": wait_ns,
            "anon_vma_hold_avg_ns": hold_ns}


def test_the_note_explains_each_size_from_the_runs_own_figures() -> None:
    m = _script()
    # 2 CPUs at 250,000 forks/s: a fork is 8 us of CPU; 3 takes of 200 ns on 3.0.
    runs = {"3.0": [_run(250_000, 1000, 3000, 500, 300, 200)] * 2,
            "3.8": [_run(12_500, 1000, 4000, 3000, 40_000, 500)] * 2,
            "3.9": [_run(200_000, 1000, 3000, 500, 4000, 300), _run(200_000, 1000, 3000, 500, 4000, 300)]}
    text = "\n".join(m.fork_test_note(runs, "3.0", cpus=2))
    assert "waits 3.00 times for the root, 40 us on average" in text
    assert "a whole fork costs 8.0 us of CPU on 3.0" in text
    assert "(120 us per fork)" in text
    # 3.9: 0.5 waits x 4 us = 2 us on an 8 us fork: 8 / 10 = 0.80x; measured 200k/250k.
    assert "Why 3.9 recovers to 0.80 ± 0.00x" in text
    assert "2.0 us per 8.0 us fork, which predicts 0.80x" in text
    assert "(17% of 3.9's takes waited; forks/s x takes x hold = 0.18)" in text
    # 16 CPUs.  3.0: f = 8 - 0.5 x 0.3 = 7.85 us; the quadratic's root (1.81 per us) is
    # above the root's bound 1 / (3 x 0.2 us): 1.67 M.  3.9 (f = 10 - 2 = 8 us, 3 takes of
    # 0.3 us): with w = 40 us 108 X^2 + 8 X - 16 = 0, X = 0.350; with w = 4 us 0.902; at
    # 2 CPUs 0.197.  3.8: 1 / (4 x 40.5 us) = 6,173.
    assert "3.0 about 1,700,000 forks/s" in text
    assert "3.9 between 350,000 (every wait a full wake-up, 40 us" in text
    assert "and 900,000 (waits as here, 4.0 us), 0.21-0.54x of 3.0" in text
    assert "(at 2 CPUs the rule gives 200,000, measured 200,000)" in text
    assert "= about 6,200 forks/s whatever the CPU count, 0.0037x of 3.0" in text


def test_the_closed_loop_rule() -> None:
    m = _script()
    assert m.closed_loop(2, 8.0, 3.0, 0.3, 0.0) == 2 / 8.0  # no waits: CPUs / fork
    x = m.closed_loop(16, 8.0, 3.0, 0.3, 40.0)
    assert abs(x - 16 / (8.0 + 3.0 * (x * 3.0 * 0.3) * 40.0)) < 1e-9  # X = N / (f + k rho w)
    assert m.closed_loop(64, 1.0, 3.0, 0.3, 0.1) == 1 / (3.0 * 0.3)  # the root's bound


def test_no_note_without_the_fifo_era() -> None:
    m = _script()
    runs = {"3.0": [_run(250_000, 1000, 3000, 500, 300, 200)]}
    assert m.fork_test_note(runs, "3.0", cpus=2) == []


def test_a_render_keeps_the_sections_written_by_hand(tmp_path: Path) -> None:
    m = _script()
    readme = tmp_path / "README.md"
    readme.write_text("# old\n\n## fork-test (AIM7 fork_test)\n\nold table\n\n"
                      "## The structural eras\n\nby hand\n")
    new = "# The lock-policy eras, measured\n\n## fork-test (AIM7 fork_test)\n\nnew table\n"
    first = m.write_readme(str(readme), new)
    assert first == new + "\n## The structural eras\n\nby hand\n"
    assert "old table" not in readme.read_text()
    assert m.write_readme(str(readme), new) == first  # a second render changes nothing

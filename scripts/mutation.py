#!/usr/bin/env python3
"""Mutation testing of the pure modules: how many deliberate bugs the fast tests catch.

    python scripts/mutation.py                      # every module below, one after another
    python scripts/mutation.py stress/ramp.py       # one module
    python scripts/mutation.py --budget 600 --jobs 1 stress/metrics.py

For each module, a scratch copy of the project is made under a temporary folder (so the
working tree and its pyproject stay as they are), mutmut (a dev extra) is configured there to
mutate only that module and to run only the fast tests that cover it, and the run is bounded
by ``--budget`` seconds.  Printed per module: mutants killed, survived, untested (no test
reached the function) and not run (budget spent), and the score

    score = killed / (killed + survived + untested)

over the mutants that were run.  The surviving mutants' names are printed; show one with
``cd FOLDER && mutmut show NAME`` (the folder is printed and kept with ``--keep``).

mutmut 3 mutates function bodies only: module-level tables (``ERAS``, ``SCENARIOS``) are
not mutated, so a module that is mostly data (``shared_model/eras.py``) has few mutants.
Not part of CI: a full pass takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Module -> the fast tests (no worker processes, no CLI subprocesses) that exercise it.
TESTS: dict[str, list[str]] = {
    "stress/metrics.py": ["tests/stress/test_metrics.py"],
    "stress/ramp.py": ["tests/stress/test_ramp.py"],
    "stress/compare.py": ["tests/stress/test_compare.py"],
    "stress/report.py": ["tests/stress/test_report.py", "tests/stress/test_compare.py"],
    "stress/config.py": ["tests/stress/test_config.py"],
    "shared_model/eras.py": ["tests/shared_model/test_eras.py",
                             "tests/shared_model/test_scan_arithmetic.py"],
}
COPY = ("shared_model", "stress", "tests", "pyproject.toml")


def scratch_copy(module: str, tests: list[str]) -> Path:
    """A copy of the project whose pyproject configures mutmut for ``module`` only."""
    root = Path(tempfile.mkdtemp(prefix=f"mutation-{Path(module).stem}-"))
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    conf = {
        "source_paths": ["shared_model", "stress"],
        "only_mutate": [module],
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
        "pytest_add_cli_args_test_selection": tests,
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in conf.items()]
    with open(root / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    return root


def run_module(module: str, budget: float, jobs: int, keep: bool,
               tests: list[str] | None = None) -> dict[str, object]:
    tests = [t for t in (tests or TESTS[module]) if (REPO / t.split("::")[0]).exists()]
    if not tests:
        return {"module": module, "error": "no fast tests cover it"}
    root = scratch_copy(module, tests)
    t0 = time.monotonic()
    mutmut = shutil.which("mutmut") or "mutmut"
    finished = True
    with open(root / "mutmut.log", "w") as log:
        proc = subprocess.Popen([mutmut, "run", "--max-children", str(jobs)], cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            finished = False
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: mutmut and its workers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.monotonic() - t0
    subprocess.run([mutmut, "export-cicd-stats"], check=False, cwd=root, capture_output=True, text=True)
    stats_path = root / "mutants" / "mutmut-cicd-stats.json"
    if not stats_path.exists():
        tail = (root / "mutmut.log").read_text()[-2000:]
        out: dict[str, object] = {"module": module, "error": "mutmut produced no results", "log": tail}
    else:
        s = json.loads(stats_path.read_text())
        killed = s["killed"] + s["timeout"] + s["segfault"]
        survived = s["survived"] + s["suspicious"]
        untested = s["no_tests"]
        ran = killed + survived + untested
        res = subprocess.run([mutmut, "results"], check=False, cwd=root, capture_output=True, text=True)
        survivors = [ln.split(":")[0].strip() for ln in res.stdout.splitlines()
                     if ln.strip().endswith(("survived", "suspicious"))]
        untested_in = sorted({ln.split("__mutmut_")[0].split(".x_")[-1]
                              for ln in res.stdout.splitlines() if ln.strip().endswith("no tests")})
        out = {"module": module, "tests": tests, "total": s["total"], "killed": killed,
               "survived": survived, "untested": untested, "not_run": s["total"] - ran - s["skipped"],
               "score": killed / ran if ran else None, "finished": finished,
               "wall_s": round(wall, 1), "survivors": survivors,
               "untested_functions": untested_in}
    if keep:
        out["folder"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", default=list(TESTS), help="modules to mutate")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per module (default 600)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--tests", help="comma-separated test selection instead of the table's")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        print(f"mutation.py: error: no test list for {', '.join(unknown)} "
              f"(choose from {', '.join(TESTS)})", file=sys.stderr)
        return 2
    results = []
    for module in args.modules:
        r = run_module(module, args.budget, args.jobs, args.keep,
                       args.tests.split(",") if args.tests else None)
        results.append(r)
        if "error" in r:
            print(f"{module}: {r['error']}")
            continue
        score = "-" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"{module}: score {score}  killed {r['killed']}  survived {r['survived']}  "
              f"untested {r['untested']}  not run {r['not_run']} of {r['total']}  "
              f"({'finished' if r['finished'] else 'budget spent'}, {r['wall_s']} s)", flush=True)
        for name in r["survivors"]:
            print(f"    survived: {name}")
        if r["untested_functions"]:
            print(f"    no test reaches: {', '.join(r['untested_functions'])}")
        if "folder" in r:
            print(f"    folder: {r['folder']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo: reclaim-storm in 2.6.33, 2.6.34-rc1 (the seed as committed), 2.6.34 (as
released) and 2.6.36, each era's report, then each later era beside 2.6.33 with ratios and
a line on what it changed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..analysis import report
from ..engine import ui
from ..engine.config import ConfigError, RunConfig
from ..engine.results import load
from ..engine.runner import RunInterrupted, run
from ..engine.stopping import Stopped, signal_name, stop_on_signals
from ..engine.ui import PROG, wrote
from .profile import ProfileError, record

DEMO_ERAS = ("2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36")
# What each later era of the demo changed, and why (one line each, after the ratios).
DEMO_WHY = {
    "2.6.34-rc1": "the seed as committed (5beb4930525): anon_vma_chain, each child's COWed page on "
                  "its own anon_vma, and a page swapped back in on the faulting VMA's own: walks stay short",
    "2.6.34": "as released (+ ea90002b0fa7): a swapped-in page goes to the oldest anon_vma, the fix for "
              "the seed's oops (scenario shared-swapin); under this refault churn walks grow back "
              "towards 2.6.33's",
    "2.6.36": "the root's lock for the whole family (migration needed one lock); a swap-cache hit keeps "
              "its anon_vma (288468c334e9): walks short again, on one lock per family",
}


def profiled_run(cfg: RunConfig, quiet: bool) -> dict[str, Any]:
    """``cfg`` run under py-spy, its CPUs' flamegraph in profile-ERA.svg; the results."""
    with tempfile.TemporaryDirectory(prefix="rmap-stress-demo-") as d:
        path = os.path.join(d, "results.json")
        argv = ["--era", cfg.era, "--scenario", cfg.scenario, "--users", str(cfg.users),
                "--pages", str(cfg.pages), "--cow", str(cfg.cow), "--cpus", str(cfg.cpus),
                "--duration", str(cfg.duration), "--internal-json", path] + (["--quiet"] if quiet else [])
        out = f"profile-{cfg.era}.svg"
        try:
            res = record(argv, out, stdout=subprocess.DEVNULL)
        except ProfileError as e:
            raise ConfigError(str(e)) from None
        doc = load(path, ("run",))
    print(res.describe(False))
    wrote(out)
    return doc


def demo(cfgs: list[RunConfig], quiet: bool, profile: bool
         ) -> tuple[dict[str, dict[str, Any]], dict[str, str], float]:
    """Run each era's config in turn (under py-spy with ``profile``), printing each era's
    summary and lock table as it ends, then each later era beside the first with its ratios
    and what it changed.  Returns the results by era, ``{"interrupted": signal}`` when a
    signal cut the demo short (the eras done stand), and the seconds it took."""
    results: dict[str, dict[str, Any]] = {}
    stop: dict[str, str] = {}
    t0 = time.monotonic()
    users, pages, duration = cfgs[0].users, cfgs[0].pages, cfgs[0].duration
    try:
        with stop_on_signals():
            for cfg in cfgs:
                era = cfg.era
                # The headings are the report's, on stdout whatever --quiet says.
                print(f"== {era}: reclaim-storm, {users} users x {pages} pages, {duration:g} s ==",
                      flush=True)
                try:
                    if profile:
                        res = profiled_run(cfg, quiet)
                    else:
                        res = run(cfg, on_tick=ui.run_progress(quiet, era), on_phase=ui.phase_line(quiet))
                except RunInterrupted as e:
                    ui.end_progress(quiet)
                    stop["interrupted"] = signal_name(e.signum)
                    if e.results is None:
                        break
                    res = e.results
                ui.end_progress(quiet)
                results[era] = res
                print(report.run_summary(res))
                print()
                print(report.lockstat_table(res))
                print()
                if stop:
                    break
    except Stopped as e:  # between eras: the eras completed stand
        stop["interrupted"] = signal_name(e.signum)
    old = results.get(DEMO_ERAS[0])
    for era in DEMO_ERAS[1:]:
        if old is None or era not in results:
            continue
        print(f"== side by side: {DEMO_ERAS[0]} and {era} ==")
        print(report.side_by_side(old, results[era]))
        print()
    for era in DEMO_ERAS[1:]:
        if old is None or era not in results:
            continue
        new = results[era]
        ratio = (new["throughput"]["pages_scanned_per_s"] / old["throughput"]["pages_scanned_per_s"]
                 if old["throughput"]["pages_scanned_per_s"] else float("inf"))
        print(f"{era} vs {DEMO_ERAS[0]}: walks "
              f"{old['walks']['avg_visited'] / max(new['walks']['avg_visited'], 1e-9):.1f}x "
              f"shorter, anon_vma lock wait {100 * old['anon_vma_wait_share']:.0f}% -> "
              f"{100 * new['anon_vma_wait_share']:.1f}% of CPU time, {ratio:.1f}x more pages scanned per "
              f"second")
        print(f"  {DEMO_WHY[era]}")
    if stop:
        print(f"{PROG}: interrupted by {stop['interrupted']}: {len(results)} of {len(DEMO_ERAS)} eras "
              f"measured" + (", the last cut short" if results else ""), file=sys.stderr)
    else:
        print(f"({time.monotonic() - t0:.0f} s)")
    return results, stop, time.monotonic() - t0

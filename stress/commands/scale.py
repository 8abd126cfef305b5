"""``scale``: throughput against CPUs, will-it-scale style.

For each era and lock primitive (a *curve*) and each CPU count, one run of a scenario on
that many CPU workers.  The table and the picture give throughput, throughput per CPU, the
linear line from the 1-CPU point (perfect scaling), and the share of CPU time waiting on
locks; points with more workers than online CPUs are oversubscribed and marked.

Repeats are interleaved: round r runs every point once, in the same order, before round
r + 1 starts, so a machine that drifts (thermal throttling, a neighbour starting a build)
spreads into every point's repeats instead of turning into a difference between points.
The same curve given twice (``--lock spin --lock spin``) is two curves, the second
labelled ``#2``: an A/A check, which ``compare`` should find "Not significant".

The document (schema ``rmap-stress-scale/2``, see results.py) holds ``config``, ``machine`` and
``points``; each point has era, lock, curve, cpus, repeat, oversubscribed, throughput (in
``throughput_key``'s unit), throughput_per_cpu, wait_share (all locks), the hottest lock's
figures (``lock_inputs``, enough to predict again) and, with ``--predict``, ``predicted``.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..analysis.predict import PredictError, lock_inputs, predict_inputs, throughput_key
from ..analysis.sweeps import UNITS, mean, summarize_scale
from ..engine.config import ConfigError, RunConfig, online_cpus
from ..engine.results import SCHEMA_SCALE, machine_info, write_output
from ..engine.stopping import run_point, sweep_until_signal


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of the picture: an era with a lock primitive (None: the era's own)."""

    era: str
    lock: str | None
    label: str


def default_cpus_list(online: int) -> list[int]:
    """Powers of two up to the online CPUs (and the count itself), then twice as many
    workers as CPUs: the oversubscribed point."""
    out, n = [], 1
    while n <= online:
        out.append(n)
        n *= 2
    if out[-1] != online:
        out.append(online)
    out.append(2 * online)
    return out


def parse_cpus_list(text: str) -> list[int]:
    """"1,2,4" -> [1, 2, 4]; sorted, no duplicates, every count positive."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--cpus-list {text!r}: give CPU counts separated by commas, e.g. 1,2,4") from None
    if not counts or any(n <= 0 for n in counts):
        raise ConfigError(f"--cpus-list {text!r}: every CPU count must be positive")
    return sorted(set(counts))


def curves_of(eras: list[str], locks: list[str | None]) -> list[Curve]:
    """Every era with every lock, in the order given; a curve given again is labelled #2."""
    out: list[Curve] = []
    seen: dict[str, int] = {}
    for era in eras:
        for lock in locks:
            base = f"{era} {lock}" if lock else era
            seen[base] = seen.get(base, 0) + 1
            out.append(Curve(era, lock, base if seen[base] == 1 else f"{base} #{seen[base]}"))
    return out


def schedule(curves: list[Curve], cpus_list: list[int], repeat: int) -> list[tuple[int, Curve, int]]:
    """(round, curve, cpus) in the order they run: every point once per round, R rounds;
    within a round, CPU counts ascending and at each count every curve in turn."""
    return [(r, c, n) for r in range(repeat) for n in cpus_list for c in curves]


def point_of(res: dict[str, Any], curve: Curve, cpus: int, repeat: int, online: int) -> dict[str, Any]:
    key = throughput_key(res)
    thr = float(res["throughput"][key])
    rows = res["cpus"]
    wait = mean(c["share"]["lock_wait"] for c in rows)
    try:
        inputs: dict[str, Any] | None = lock_inputs(res)
    except PredictError:
        inputs = None
    return {
        "era": curve.era, "lock": res["config"]["lock"], "curve": curve.label,
        "cpus": cpus, "repeat": repeat, "oversubscribed": cpus > online,
        "throughput_key": key, "throughput": thr, "throughput_per_cpu": thr / cpus,
        "wait_share": wait, "anon_vma_wait_share": res["anon_vma_wait_share"],
        "avg_walk": res["walks"]["avg_visited"], "elapsed_s": res["elapsed_s"],
        "lock_inputs": inputs,
        "invariant_violations": res["invariants"]["violations"],
    }


def scale(base: RunConfig, curves: list[Curve], cpus_list: list[int], repeat: int = 1,
          predict: bool = False, handoff_ns: float = 0.0, stall_timeout: float | None = None,
          progress: Callable[[int, int, str, float], None] | None = None,
          live: Callable[[str], Callable[[Any], None]] | None = None) -> dict[str, Any]:
    """Run the sweep; returns the rmap-stress-scale/1 document.  ``base`` holds every run
    option but era, lock and cpus."""
    if repeat <= 0:
        raise ConfigError(f"--repeat must be a positive count, not {repeat}")
    if not curves or not cpus_list:
        raise ConfigError("nothing to run: give at least one era, lock and CPU count")
    for c in curves:
        for n in (cpus_list[0], cpus_list[-1]):
            dataclasses.replace(base, era=c.era, lock=c.lock, cpus=n).validate()
    online = online_cpus()
    machine = machine_info()
    plan = schedule(curves, cpus_list, repeat)
    points: list[dict[str, Any]] = []
    t0 = time.monotonic()
    stop: dict[str, str] = {}  # {"interrupted": signal name} or {"failed": reason}
    done = 0

    def sweep() -> None:
        nonlocal done
        for done, (r, curve, n) in enumerate(plan):
            label = f"{curve.label}, {n} CPUs, round {r + 1}/{repeat}"
            if progress:
                progress(done, len(plan), label, time.monotonic() - t0)
            cfg = dataclasses.replace(base, era=curve.era, lock=curve.lock, cpus=n)
            res = run_point(cfg, live, f"{label} (point {done + 1}/{len(plan)})", stop,
                             stall_timeout=stall_timeout)
            if res is not None:
                p = point_of(res, curve, n, r, online)
                if predict and p["lock_inputs"]:
                    try:
                        p["predicted"] = predict_inputs(p["lock_inputs"], handoff_ns)
                    except PredictError:  # e.g. no time measured outside the lock: no prediction
                        pass
                if stop:  # the point a signal or a failure cut short: its partial figures
                    p["interrupted" if "interrupted" in stop else "failed"] = True
                points.append(p)
            if stop:
                return
        done = len(plan)

    sweep_until_signal(sweep, stop)
    if progress:
        progress(done, len(plan), "stopped" if stop else "done", time.monotonic() - t0)
    return {
        "schema": SCHEMA_SCALE,
        "config": {"curves": [dataclasses.asdict(c) for c in curves], "cpus_list": cpus_list,
                   "repeat": repeat, "online_cpus": online, **base.record("scale"),
                   "predict": predict, "handoff_ns": handoff_ns if predict else None},
        "machine": machine,
        "points": points,
        "elapsed_s": time.monotonic() - t0,
        **stop,
    }


def scale_table(doc: dict[str, Any]) -> str:
    rows = summarize_scale(doc)
    unit = UNITS.get(rows[0]["throughput_key"], rows[0]["throughput_key"]) if rows else ""
    head = (f"{'curve':<16} {'CPUs':>5} {unit:>11} {'± sd':>9} {'per CPU':>9} {'linear':>11} "
            f"{'of linear':>9} {'wait %':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = "  oversubscribed" if r["oversubscribed"] else ""
        mark += "  (cut short: partial figures)" if r["cut_short"] else ""
        lines.append(f"{r['curve']:<16} {r['cpus']:>5} {r['throughput']:>11,.1f} {r['std_dev']:>9,.1f} "
                     f"{r['throughput_per_cpu']:>9,.1f} {r['linear']:>11,.1f} "
                     f"{100 * r['efficiency']:>8.0f}% {100 * r['wait_share']:>6.1f}%{mark}")
    n = doc["config"]["repeat"]
    lines.append(f"({n} round{'s' if n != 1 else ''}, interleaved; wait %: all locks, share of "
                 f"CPU time; linear: the smallest count's throughput per CPU times CPUs)")
    return "\n".join(lines)


def write_csv(path: str, doc: dict[str, Any]) -> None:
    cols = ["curve", "era", "lock", "cpus", "repeat", "oversubscribed", "throughput_key", "throughput",
            "throughput_per_cpu", "wait_share", "anon_vma_wait_share", "avg_walk", "elapsed_s"]
    pred = ["predicted_wait_share", "measured_lock_wait_share"]

    def rows(fh: Any) -> None:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(cols + pred + ["interrupted"])
        for p in doc["points"]:
            q = p.get("predicted") or {}
            extra = [q["repairman"]["wait_share"], q["measured"]["wait_share"]] if q else ["", ""]
            out.writerow(str(v) for v in [p[c] for c in cols] + extra + [p.get("interrupted", "")])

    write_output(path, rows)

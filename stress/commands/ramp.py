"""``ramp``: the AIM7 curve.  For each era and user count, one forking-server run (or several,
``repeat``) on the same RAM; the reaim table, the crossover, and the headline.

Crossover, as reaim defines it: the first user count at which jobs/min per user falls
below ``threshold`` (default 1.0).  We also report where the simulated system time (walk +
lock wait) first exceeds 90% of CPU time, the seed's ">99% system time" symptom, and the
share of CPU time idle in iowait at the crossover (the seed, 2.6.34-rc1, crossed "with ~99% IO
wait time"): each point swaps to the swap device (``--swap-device``, a 2010 disk by
default), so a point whose jobs wait for their swap-ins shows iowait as top's ``wa``.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..analysis.sweeps import crossover_of, mean, summarize_ramp
from ..engine.config import ConfigError, RunConfig
from ..engine.results import SCHEMA_RAMP, machine_info, write_output
from ..engine.stopping import run_point, sweep_until_signal


def user_counts(start: int, end: int, increment: int | None, factor: float | None) -> list[int]:
    if start <= 0:
        raise ConfigError(f"--start-users must be a positive count, not {start}")
    if end < start:
        raise ConfigError(f"--end-users ({end}) is below --start-users ({start})")
    if increment is not None and factor is not None:
        raise ConfigError("give --increment or --factor, not both")
    if factor is not None:
        if not factor > 1.0:
            raise ConfigError(f"--factor must be above 1, not {factor}")
        out: list[int] = []
        u = float(start)
        while round(u) <= end:
            if not out or round(u) != out[-1]:
                out.append(round(u))
            u *= factor
        return out
    inc = increment if increment is not None else max(1, (end - start) // 4)
    if inc <= 0:
        raise ConfigError(f"--increment must be a positive count, not {inc}")
    return list(range(start, end + 1, inc))


def default_ram_pages(start_users: int, pages: int) -> int:
    """The machine's frames for a whole ramp: enough for the family at twice the first user
    count, so the first points run without reclaim and pressure grows with users."""
    return max(64, 2 * pages * (start_users + 1))


def point_of(res: dict[str, Any], era: str, users: int, repeat: int) -> dict[str, Any]:
    cpus = res["cpus"]
    walk = mean(c["share"]["walk"] for c in cpus)
    wait = mean(c["share"]["lock_wait"] for c in cpus)
    work = mean(c["share"]["work"] for c in cpus)
    iowait = mean(c["share"].get("iowait", 0.0) for c in cpus)
    dev = res.get("swap_device") or {}
    av = next((r for r in res["locks"] if r["class"] == "anon_vma"), None)
    jpm = res["throughput"]["jobs_per_min"]
    return {
        "era": era, "users": users, "repeat": repeat,
        "jobs_per_min": jpm, "jobs_per_min_per_user": jpm / users,
        "system_share": walk + wait, "work_share": work, "walk_share": walk, "lock_wait_share": wait,
        "iowait_share": iowait,
        "swap_reads": int(dev.get("reads", 0)), "swap_writes": int(dev.get("writes", 0)),
        "swap_utilisation": float(dev.get("utilisation", 0.0)),
        "pages_scanned_per_s": res["throughput"]["pages_scanned_per_s"],
        "avg_walk": res["walks"]["avg_visited"],
        "wait_hist": av["wait_hist"] if av else {},
        "elapsed_s": res["elapsed_s"],
        "invariant_violations": res["invariants"]["violations"],
    }


def _add_prediction(point: dict[str, Any], res: dict[str, Any], predict: bool,
                    handoff_ns: float) -> None:
    """The hottest lock's figures (``lock_inputs``: what ``rmap-stress predict`` needs) and,
    with ``predict``, the ``predicted`` object."""
    from ..analysis.predict import PredictError, lock_inputs, predict_inputs

    try:
        point["lock_inputs"] = lock_inputs(res)
    except PredictError:
        return
    if predict:
        try:
            point["predicted"] = predict_inputs(point["lock_inputs"], handoff_ns)
        except PredictError:  # e.g. no time measured outside the lock: no prediction
            pass


def _checked_base(eras: list[str], users: list[int], base: RunConfig, repeat: int,
                  threshold: float) -> RunConfig:
    """The ramp's arguments checked (ConfigError otherwise), and the configuration its
    points start from: ``base``, with the default RAM for the first user count when it
    names none."""
    if repeat <= 0:
        raise ConfigError(f"--repeat must be a positive count, not {repeat}")
    if not threshold > 0:
        raise ConfigError(f"--threshold must be positive, not {threshold}")
    for era in eras:
        RunConfig(era=era).validate()
    base.validate()
    if not base.ram_pages:
        base = dataclasses.replace(base, ram_pages=default_ram_pages(users[0], base.pages))
    return base


def ramp(eras: list[str], users: list[int], base: RunConfig, repeat: int = 1,
         stop_at_crossover: bool = False, threshold: float = 1.0,
         progress: Callable[[int, int, str, float], None] | None = None,
         live: Callable[[str], Callable[[Any], None]] | None = None,
         predict: bool = False, handoff_ns: float = 0.0) -> dict[str, Any]:
    """Run the ramp; returns the rmap-stress-ramp/1 document.  ``live(label)``, when given,
    makes the on_tick callback of each point's run (the live per-CPU view).

    Repeats are interleaved: round r runs every point once before round r + 1 starts, so
    that a drifting machine lands in the spread of every point rather than in a difference
    between points.  With ``stop_at_crossover`` the first round decides where each era
    stops; later rounds run the same points."""
    base = _checked_base(eras, users, base, repeat, threshold)
    machine = machine_info()
    planned = {era: list(users) for era in eras}
    total = len(eras) * len(users) * repeat
    done = 0
    t0 = time.monotonic()
    points: list[dict[str, Any]] = []
    stop: dict[str, str] = {}  # {"interrupted": signal name} or {"failed": reason}

    def sweep() -> None:
        nonlocal done, total
        for r in range(repeat):
            for era in eras:
                for u in planned[era]:
                    if progress:
                        progress(done, total, f"{era} users {u} round {r + 1}/{repeat}",
                                 time.monotonic() - t0)
                    cfg = dataclasses.replace(base, era=era, users=u, scenario="forking-server")
                    res = run_point(cfg, live, f"{era} users {u} round {r + 1}/{repeat} "
                                                f"(point {done + 1}/{total})", stop)
                    if res is not None:
                        point = point_of(res, era, u, r)
                        _add_prediction(point, res, predict, handoff_ns)
                        if stop:  # the point a signal or a failure cut short: its partial figures
                            point["interrupted" if "interrupted" in stop else "failed"] = True
                        points.append(point)
                    if stop:
                        return
                    done += 1
                    if (r == 0 and stop_at_crossover
                            and summarize_ramp(points, era, threshold)[-1]["below_threshold"]):
                        total -= (len(users) - users.index(u) - 1) * repeat
                        planned[era] = users[: users.index(u) + 1]
                        break

    sweep_until_signal(sweep, stop)
    if progress:
        progress(done if stop else total, total, "stopped" if stop else "done", time.monotonic() - t0)
    resolved = dataclasses.replace(base, scenario="forking-server").resolved()
    return {
        "schema": SCHEMA_RAMP,
        "config": {"eras": eras, "users": users, "start_users": users[0], "end_users": users[-1],
                   "repeat": repeat, "threshold": threshold, "crossover_stop": stop_at_crossover,
                   **resolved.record("ramp")},
        "machine": machine,
        "points": points,
        "crossover": {era: crossover_of(summarize_ramp(points, era, threshold)) for era in eras},
        "elapsed_s": time.monotonic() - t0,
        **stop,
    }


def ramp_table(doc: dict[str, Any]) -> str:
    thr = doc["config"]["threshold"]
    head = (f"{'era':<7} {'Num Forked':>10} {'Jobs/min':>10} {'Jobs/min/user':>13} {'System %':>9} "
            f"{'Work %':>7} {'IOwait %':>9} {'Std_dev':>8} {'Std_dev %':>9} {'JTI':>5}")
    # Every point's figures depend on the machine's RAM: say how much it was.
    ram = doc["config"].get("ram_pages")
    lines = [f"RAM: {ram} page frames at every point (--ram-pages)"] if ram else []
    dev = swap_device_text(doc["config"])
    if dev:
        lines.append(dev)
    lines += [head, "-" * len(head)]
    for era in doc["config"]["eras"]:
        for r in summarize_ramp(doc["points"], era, thr):
            mark = "  <- below threshold" if r["below_threshold"] else ""
            mark += "  (cut short: partial figures)" if r["cut_short"] else ""
            lines.append(f"{era:<7} {r['users']:>10} {r['jobs_per_min']:>10.0f} "
                         f"{r['jobs_per_min_per_user']:>13.2f} {100 * r['system_share']:>8.1f}% "
                         f"{100 * r['work_share']:>6.1f}% {100 * r['iowait_share']:>8.1f}% "
                         f"{r['std_dev']:>8.1f} {r['std_dev_pct']:>8.1f}% "
                         f"{r['jti']:>5.0f}{mark}")
    return "\n".join(lines)


def swap_device_text(cfg: dict[str, Any]) -> str | None:
    """The ramp's swap device in one line (None for a document from before it existed)."""
    mode = cfg.get("swap_device")
    if mode is None:
        return None
    if mode == "off":
        return "swap device: off (infinitely fast: no job waits for IO)"
    return (f"swap device: {cfg['swap_latency_ms']:g} ms latency, {cfg['swap_iops']:g} IOPS, "
            f"{cfg['swap_queue']} request slots (--swap-device, --swap-latency-ms, --swap-iops)")


def headline(doc: dict[str, Any]) -> str:
    thr = doc["config"]["threshold"]
    lines = []
    cross = doc["crossover"]
    for era, c in cross.items():
        last = max((p["users"] for p in doc["points"] if p["era"] == era), default=0)
        if not last:
            lines.append(f"{era}: no point measured")
            continue
        u = f"at {c['users']} users" if c["users"] is not None else f"not reached by {last} users"
        s90 = f"from {c['system90_users']} users" if c["system90_users"] is not None else "never"
        io = f" (iowait {100 * c['iowait_share']:.0f}% there)" if c.get("iowait_share") is not None else ""
        lines.append(f"{era}: crossover (jobs/min/user < {thr:g}) {u}{io}; system time > 90% {s90}; "
                     f"peak {c['peak_jobs_per_min']:.0f} jobs/min")
    eras = list(cross)
    if len(eras) >= 2:
        a, b = cross[eras[0]], cross[eras[-1]]
        # The seed's published figure was measured on the seed as committed (2.6.34-rc1);
        # released 2.6.34 goes beside it as the price of the oops fix.  Each of them gets
        # its own line against 2.6.33; other eras, the last against the first.
        later = [e for e in eras[1:] if e in SEED_NOTE] if eras[0] == "2.6.33" else []
        for e in later or [eras[-1]]:
            c, note = cross[e], SEED_NOTE.get(e, "") if eras[0] == "2.6.33" else ""
            if a["users"] and c["users"]:
                lines.append(f"crossover moved {c['users'] / a['users']:.2f}x ({eras[0]} -> {e}){note}")
            elif a["users"] and not c["users"]:
                last = max((p["users"] for p in doc["points"] if p["era"] == e), default=0)
                if last:
                    lines.append(f"crossover moved more than {last / a['users']:.2f}x "
                                 f"({e} never crossed){note}")
        if a["peak_jobs_per_min"] and b["peak_jobs_per_min"]:
            lines.append(f"peak jobs/min ratio {b['peak_jobs_per_min'] / a['peak_jobs_per_min']:.2f}x")
    return "\n".join(lines)


# The seed commit's figure (5beb4930525's message), beside the era it was measured on.
SEED_NOTE = {
    "2.6.34-rc1": "; the seed commit, measured on this placement: 9.7k -> 29.7k users, 3.06x",
    "2.6.34": "; as released (+ ea90002b0fa7, the oops fix): the seed's 3.06x was measured on 2.6.34-rc1",
}


def write_csv(path: str, doc: dict[str, Any]) -> None:
    cols = ["era", "users", "repeat", "jobs_per_min", "jobs_per_min_per_user", "system_share",
            "work_share", "walk_share", "lock_wait_share", "pages_scanned_per_s", "avg_walk", "elapsed_s",
            "iowait_share", "swap_reads", "swap_writes"]
    cols.append("interrupted")

    def rows(fh: Any) -> None:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(cols)
        out.writerows([str(p.get(c, "")) for c in cols] for p in doc["points"])

    write_output(path, rows)

"""What a sweep's points come to: ramp's rows per user count and its crossover, scale's rows
per curve and CPU count (the tables, the CSV and the pictures all read these)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

# A throughput key of the results, as a unit for a table or an axis.
UNITS = {"pages_scanned_per_s": "pages/s", "jobs_per_min": "jobs/min", "forks_per_s": "forks/s"}


def mean(xs: Iterable[float]) -> float:
    """The mean, 0 for no values."""
    values = list(xs)
    return statistics.fmean(values) if values else 0.0


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize_ramp(points: list[dict[str, Any]], era: str, threshold: float) -> list[dict[str, Any]]:
    """One row per user count of an era: means over repeats, std dev and JTI."""
    rows = []
    for users in sorted({p["users"] for p in points if p["era"] == era}):
        ps = [p for p in points if p["era"] == era and p["users"] == users]
        mean, sd = mean_sd([p["jobs_per_min"] for p in ps])
        rows.append({
            "users": users, "jobs_per_min": mean, "jobs_per_min_per_user": mean / users,
            "system_share": statistics.fmean(p["system_share"] for p in ps),
            "work_share": statistics.fmean(p["work_share"] for p in ps),
            "iowait_share": statistics.fmean(p.get("iowait_share", 0.0) for p in ps),
            "std_dev": sd, "std_dev_pct": 100 * sd / mean if mean else 0.0,
            "jti": 100 * (1 - sd / mean) if mean else 0.0,
            "below_threshold": mean / users < threshold,
            "cut_short": any(p.get("interrupted") or p.get("failed") for p in ps),
        })
    return rows


def crossover_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cross = next((r for r in rows if r["below_threshold"]), None)
    sys90 = next((r["users"] for r in rows if r["system_share"] > 0.9), None)
    return {"users": cross["users"] if cross else None, "system90_users": sys90,
            "peak_jobs_per_min": max((r["jobs_per_min"] for r in rows), default=0.0),
            "iowait_share": cross["iowait_share"] if cross else None}


def summarize_scale(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per curve and CPU count: means over repeats, std dev, the linear line from
    the curve's 1-CPU point (or its smallest count, scaled) and the prediction's means."""
    rows = []
    labels = [c["label"] for c in doc["config"]["curves"]]
    for label in labels:
        pts = [p for p in doc["points"] if p["curve"] == label]
        counts = sorted({p["cpus"] for p in pts})
        base = None
        for n in counts:
            ps = [p for p in pts if p["cpus"] == n]
            thr, sd = mean_sd([p["throughput"] for p in ps])
            if base is None:
                base = thr / n
            row: dict[str, Any] = {
                "curve": label, "era": ps[0]["era"], "lock": ps[0]["lock"], "cpus": n,
                "repeats": len(ps), "oversubscribed": ps[0]["oversubscribed"],
                "throughput_key": ps[0]["throughput_key"],
                "throughput": thr, "std_dev": sd, "throughput_per_cpu": thr / n,
                "linear": base * n, "efficiency": thr / (base * n) if base else 0.0,
                "wait_share": statistics.fmean(p["wait_share"] for p in ps),
                "cut_short": any(p.get("interrupted") or p.get("failed") for p in ps),
            }
            preds = [p["predicted"] for p in ps if p.get("predicted")]
            if preds:
                row["measured_wait_share"] = statistics.fmean(q["measured"]["wait_share"] for q in preds)
                for model in ("repairman", "ticket"):
                    if all(model in q for q in preds):
                        row[f"{model}_wait_share"] = statistics.fmean(q[model]["wait_share"] for q in preds)
                        row[f"{model}_throughput"] = statistics.fmean(q[model]["throughput"] for q in preds)
            rows.append(row)
    return rows

"""Pictures of results documents, from the documents only (any saved file can be drawn again).

``plot_results(doc, path)`` draws one figure, PNG or SVG by the path's extension:

* a ramp (``rmap-stress-ramp/1``): (a) the AIM7 curve, jobs/min against users, one line per
  era, mean over repeats with a standard-deviation bar where repeated, the crossover marked;
  (b) where CPU time goes against users, one panel per era, stacked: lock wait and rmap walk
  (together the "system" time of the kernel's reverse map), work, iowait (idle with every
  job waiting for the swap device, top's ``wa``), other; (c) the anon_vma
  lock's wait-time CDF per era, all points' histograms added up;
* a run or a demo file (its runs, one per era): per-CPU time shares as stacked
  bars, one panel per era, and the anon_vma lock's wait-time CDF per era;
* a scale (``rmap-stress-scale/1``): will-it-scale's picture, one line per curve (era and
  lock primitive): (a) throughput against CPUs with the linear line from the first point
  (dotted), (b) throughput per CPU, (c) the share of CPU time waiting on locks (and,
  with predictions, crosses: the wait on the predicted lock class alone);
  oversubscribed points (more workers than online CPUs) are hollow, on a grey band;
* either, when the document (or a run in it) has a ``timeline`` (``[{t, cpus: [{cpu,
  lock_wait, walk, work, ...}]}]``, shares of each interval): the CPUs' mean lock-wait share
  over time.

Predictions (``--predict``: a ``predicted`` object in a run or in each point) are dashed,
in the colour of what they predict: M/M/1//N throughput and lock wait share, and the
ticket-lock model's (dash-dot) where there is one.

The CDF is read from the lockstat histogram buckets (``{lower bound in ns: count}``): the
curve passes through each bucket's upper bound at the share of waits below it, straight
between, which is exact at the bucket edges and a straight line inside a bucket (a bucket
spans at most 25% of its values, see ``shared_model.layout.hist_bucket``).

matplotlib is imported here, lazily, and drives a figure of its own on the Agg canvas: no
pyplot, so no global backend switch, no figure left open, nothing drawn to a screen.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared_model.layout import hist_bucket, hist_bucket_bounds

from ..engine.results import SCHEMA_RAMP, SCHEMA_RUN, SCHEMA_SCALE, ResultsError, upgrade, write_output
from .compare import is_demo_doc
from .sweeps import UNITS, mean, mean_sd, summarize_scale

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = {".png": "png", ".svg": "svg"}
# Shares stacked bottom to top; the first two are the reverse map's "system" time.
SHARES = (("lock_wait", "system: lock wait", "#d62728"), ("walk", "system: rmap walk", "#ff9896"),
          ("work", "work", "#2ca02c"), ("iowait", "idle: iowait (top's wa)", "#aec7e8"),
          ("other", "other", "#c7c7c7"))
PANEL_W, PANEL_H = 4.2, 3.4  # inches per era column and per row


def _legend(ax: Any, **kw: Any) -> None:
    """The axes' legend, when anything on them has a label: a document with no curves
    leaves a panel empty, and matplotlib warns on an empty legend."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def plot_results(doc: dict[str, Any], out_path: str, log_jobs: bool = False) -> None:
    """Draw ``doc`` (a ramp, a scale, a run or a demo) into ``out_path``;
    ``log_jobs``: a ramp's jobs/min on a log axis (a 100x collapse is flat on a linear one).

    Raises ValueError for an extension other than .png / .svg, ResultsError (a ValueError)
    for a document of another kind; both with one line fit for the user."""
    fmt = _format_of(out_path)
    doc = upgrade(doc)
    kind = _kind(doc)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if kind == "ramp":
        fig = _ramp_figure(Figure, doc, log_jobs)
    elif kind == "scale":
        fig = _scale_figure(Figure, doc)
    else:
        runs = {doc["config"]["era"]: doc} if kind == "run" else doc["eras"]
        fig = _runs_figure(Figure, runs)
    FigureCanvasAgg(fig)
    # No creation date in an SVG: the same document draws the same file.
    meta = {"Date": None} if fmt == "svg" else {}
    write_output(out_path, lambda fh: fig.savefig(fh, format=fmt, dpi=110, metadata=meta), binary=True)


def _format_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: cannot draw a {ext or 'extension-less'} file; "
                         f"name it .png or .svg")
    return FORMATS[ext]


def _kind(doc: Any) -> str:
    if isinstance(doc, dict):
        if doc.get("schema") == SCHEMA_RAMP:
            return "ramp"
        if doc.get("schema") == SCHEMA_RUN:
            return "run"
        if doc.get("schema") == SCHEMA_SCALE:
            return "scale"
        if is_demo_doc(doc):
            return "demo"
    got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
    raise ResultsError(f"cannot plot schema {got!r}: expected {SCHEMA_RUN!r}, {SCHEMA_RAMP!r}, "
                       f"{SCHEMA_SCALE!r} or a demo file")


# -- data, from documents ---------------------------------------------------------------

def wait_cdf(hist: dict[str, int]) -> tuple[list[float], list[float]]:
    """Points (wait in µs, share of waits <= it) of a histogram {lower bound ns: count}.

    Starts at the first bucket's lower bound (at least 1 ns, for a log axis) with share 0;
    empty histogram -> empty lists."""
    buckets = sorted((int(lo), n) for lo, n in hist.items() if n > 0)
    total = sum(n for _, n in buckets)
    if not total:
        return [], []
    xs, ys = [max(buckets[0][0], 1) / 1e3], [0.0]
    seen = 0
    for lo, n in buckets:
        seen += n
        xs.append(hist_bucket_bounds(hist_bucket(lo))[1] / 1e3)
        ys.append(seen / total)
    return xs, ys


def _add_hists(hists: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in hists:
        for lo, n in h.items():
            out[lo] = out.get(lo, 0) + int(n)
    return out


def _anon_vma_hist(run: dict[str, Any]) -> dict[str, int]:
    row = next((r for r in run.get("locks", []) if r["class"] == "anon_vma"), None)
    return dict(row["wait_hist"]) if row else {}


def _ramp_eras(doc: dict[str, Any]) -> list[str]:
    eras = list(doc.get("config", {}).get("eras") or [])
    for p in doc.get("points", []):
        if p["era"] not in eras:
            eras.append(p["era"])
    return eras


def _by_users(points: Sequence[dict[str, Any]], era: str) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        if p["era"] == era:
            out.setdefault(int(p["users"]), []).append(p)
    return dict(sorted(out.items()))


def _timeline_series(timeline: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(t, mean lock-wait share over the CPUs, in %) of a timeline."""
    ts, ws = [], []
    for tick in timeline:
        cpus = tick.get("cpus") or []
        if cpus:
            ts.append(float(tick["t"]))
            ws.append(100 * mean(float(c.get("lock_wait", 0.0)) for c in cpus))
    return ts, ws


MODEL_NAMES = {"repairman": "M/M/1//N", "ticket": "ticket lock"}
MODEL_STYLES = {"repairman": "--", "ticket": "-."}


def _predicted_series(by_x: dict[int, list[dict[str, Any]]],
                      field: str) -> dict[str, tuple[list[int], list[float]]]:
    """{model: (xs, mean predicted ``field`` over repeats)} for the points that have one."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for model in MODEL_NAMES:
        xs, vs = [], []
        for x, ps in by_x.items():
            qs = [p["predicted"][model][field] for p in ps if model in (p.get("predicted") or {})]
            if qs:
                xs.append(x)
                vs.append(mean(qs))
        if xs:
            out[model] = (xs, vs)
    return out


# -- drawing ----------------------------------------------------------------------------

def _colors(eras: Sequence[str]) -> dict[str, str]:
    """One colour per era, the same in every panel."""
    palette = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#7f7f7f")
    return {e: palette[i % len(palette)] for i, e in enumerate(eras)}


def _geometric(users: Sequence[int], factor: Any = None) -> bool:
    """Whether the user counts grow by a factor (1, 2, 4, ...): drawn on a log2 axis then."""
    if factor:
        return True
    us = sorted(u for u in users if u > 0)
    return len(us) >= 3 and all(b >= 1.5 * a for a, b in itertools.pairwise(us))


def _users_log_axis(ax: Axes, users: Sequence[int]) -> None:
    """A log2 axis for a geometric ramp, ticked at the user counts run (1, 2, 4, ...), not 2^k."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ticks = [u for u in users if u > 0]
    step = max(1, math.ceil(len(ticks) / 12))
    ax.xaxis.set_major_locator(FixedLocator(ticks[::step]))
    ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:g}")
    ax.xaxis.set_minor_locator(NullLocator())


def _cdf_panel(ax: Axes, hists: dict[str, dict[str, int]], colors: dict[str, str],
               title: str) -> None:
    drawn = False
    for era, hist in hists.items():
        xs, ys = wait_cdf(hist)
        if xs:
            n = sum(hist.values())
            ax.plot(xs, [100 * y for y in ys], color=colors[era], lw=1.8,
                    label=f"{era} ({n:,} waits)")
            drawn = True
    ax.set_title(title)
    ax.set_xlabel("anon_vma lock wait time (µs, log scale)")
    ax.set_ylabel("waits at or below (%)")
    ax.set_ylim(0, 100)
    for q in (50, 90, 99):
        ax.axhline(q, color="#999999", lw=0.6, ls=":")
    if drawn:
        ax.set_xscale("log")
        _legend(ax, loc="lower right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no anon_vma lock waits recorded", ha="center", va="center",
                transform=ax.transAxes, color="#666666")
    ax.grid(True, which="major", alpha=0.3)


def _timeline_panel(ax: Axes, series: dict[str, tuple[list[float], list[float]]],
                    colors: dict[str, str], prefix: str = "") -> None:
    for era, (ts, ws) in series.items():
        ax.plot(ts, ws, color=colors.get(era, "#1f77b4"), lw=1.5, label=era)
    ax.set_title(f"{prefix}Lock wait over time (mean over CPUs)")
    ax.set_xlabel("time since the start gate (s)")
    ax.set_ylabel("CPU time waiting on locks (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    if any(series):  # a ramp's one unnamed series needs no legend
        _legend(ax, loc="upper left", fontsize="small")


def _ramp_figure(figure_cls: type[Figure], doc: dict[str, Any], log_jobs: bool = False) -> Figure:
    cfg = doc.get("config", {})
    points = doc.get("points", [])
    eras = _ramp_eras(doc)
    colors = _colors(eras)
    cross = doc.get("crossover") or {}
    timeline = _timeline_series(doc.get("timeline") or [])
    ncols = max(len(eras), 1)
    nrows = 4 if timeline[0] else 3
    fig = figure_cls(figsize=(max(11.0, PANEL_W * ncols + 1.8), PANEL_H * nrows + 0.6),
                     layout="constrained")
    gs = fig.add_gridspec(nrows, ncols)
    machine = doc.get("machine", {})
    fig.suptitle(f"rmap-stress ramp: {', '.join(eras)}; {cfg.get('cpus', '?')} CPUs, "
                 f"{cfg.get('duration', '?')} s per point, {cfg.get('repeat', 1)} repeat(s), "
                 f"RAM {cfg.get('ram_pages', '?')} pages  "
                 f"[{machine.get('cpu_model') or 'unknown CPU'}]", fontsize="large")
    log_users = _geometric(cfg.get("users") or sorted({int(p["users"]) for p in points}),
                           cfg.get("factor"))

    # (a) the AIM7 curve
    ax = fig.add_subplot(gs[0, :])
    repeated = False
    for era in eras:
        by_u = _by_users(points, era)
        if not by_u:
            continue
        us = list(by_u)
        stats = [mean_sd([float(p["jobs_per_min"]) for p in by_u[u]]) for u in us]
        era_repeated = any(len(v) > 1 for v in by_u.values())
        repeated |= era_repeated
        c = cross.get(era) or {}
        where = (f"crossover at {c['users']} users" if c.get("users") is not None
                 else "no crossover")
        ax.errorbar(us, [m for m, _ in stats], yerr=[sd for _, sd in stats] if era_repeated else None,
                    color=colors[era],
                    marker="o", ms=4, lw=1.8, capsize=3, label=f"{era} ({where})")
        pred = _predicted_series(by_u, "throughput")
        for model, (pu, pv) in pred.items():
            ax.plot(pu, pv, color=colors[era], ls=MODEL_STYLES[model], lw=1.2,
                    label=f"{era} predicted ({MODEL_NAMES[model]})")
        if c.get("users") is not None:
            ax.axvline(c["users"], color=colors[era], ls="--", lw=1.2)
            ax.annotate(f"{era} crossover\n{c['users']} users", xy=(c["users"], 1.0),
                        xycoords=("data", "axes fraction"), xytext=(4, -4),
                        textcoords="offset points", va="top", fontsize="small",
                        color=colors[era])
    thr = cfg.get("threshold")
    ax.set_title("(a) Throughput against users (AIM7)" + (f"; crossover: jobs/min/user "
                 f"below threshold {thr}" if thr is not None else ""))
    ax.set_xlabel("users (forked children)" + (", log scale" if log_users else ""))
    ax.set_ylabel("jobs per minute" + (" (mean ± sd)" if repeated else "")
                  + (", log scale" if log_jobs else ""))
    if log_users and points:
        _users_log_axis(ax, sorted({int(p["users"]) for p in points}))
    if log_jobs:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if points:  # outside the axes: inside, it covered the first points
        _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)

    # (b) CPU time shares, one panel per era
    _ramp_share_panels(fig, gs, eras, points, cross, log_users)

    # (c) wait-time distribution
    ax = fig.add_subplot(gs[2, :])
    hists = {era: _add_hists([p.get("wait_hist") or {} for p in points if p["era"] == era])
             for era in eras}
    _cdf_panel(ax, hists, colors, "(c) anon_vma lock wait time (CDF), all points of each era")

    if timeline[0]:
        _timeline_panel(fig.add_subplot(gs[3, :]), {"": timeline}, colors, "(d) ")
    return fig


def _ramp_share_panels(fig: Figure, gs: Any, eras: list[str], points: list[dict[str, Any]],
                       cross: dict[str, Any], log_users: bool) -> None:
    """A ramp's panels (b), in row 1 of ``gs``: each era's CPU time shares against users,
    its predicted lock wait, and the users at which the system share reaches 90%."""
    first: Axes | None = None
    for i, era in enumerate(eras):
        ax = fig.add_subplot(gs[1, i], sharey=first)
        first = first or ax
        by_u = _by_users(points, era)
        us = list(by_u)
        mean = {k: [100 * mean_sd([float(p.get(f"{k}_share", 0.0)) for p in by_u[u]])[0]
                    for u in us] for k in ("lock_wait", "walk", "work", "iowait")}
        mean["other"] = [max(0.0, 100 - a - b - c - d)
                         for a, b, c, d in zip(mean["lock_wait"], mean["walk"], mean["work"], mean["iowait"])]
        if us:
            ax.stackplot(us, *(mean[k] for k, _, _ in SHARES), colors=[c for _, _, c in SHARES],
                         labels=[lab for _, lab, _ in SHARES], alpha=0.9)
            if log_users:
                _users_log_axis(ax, us)
        for model, (pu, pv) in _predicted_series(by_u, "wait_share").items():
            ax.plot(pu, [100 * v for v in pv], color="black", ls=MODEL_STYLES[model], lw=1.2,
                    label=f"predicted lock wait ({MODEL_NAMES[model]})")
        s90 = (cross.get(era) or {}).get("system90_users")
        if s90 is not None:
            ax.axvline(s90, color="black", ls="--", lw=1)
            ax.annotate(f"system ≥ 90%\nat {s90} users", xy=(s90, 0.97),
                        xycoords=("data", "axes fraction"), xytext=(-4, 0),
                        textcoords="offset points", ha="right", va="top", fontsize="small")
        ax.set_title(f"(b) CPU time, {era}")
        ax.set_xlabel("users")
        ax.set_ylim(0, 100)
        if i == 0:
            ax.set_ylabel("share of CPU time (%)")
        if i == len(eras) - 1 and us:
            _legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")


def _runs_figure(figure_cls: type[Figure], runs: dict[str, dict[str, Any]]) -> Figure:
    eras = list(runs)
    colors = _colors(eras)
    timelines = {era: s for era, r in runs.items() if (s := _timeline_series(r.get("timeline") or []))[0]}
    ncols = len(eras)
    nrows = 3 if timelines else 2
    fig = figure_cls(figsize=(max(9.0, PANEL_W * ncols + 1.8), PANEL_H * nrows + 0.6),
                     layout="constrained")
    gs = fig.add_gridspec(nrows, ncols)
    c0 = runs[eras[0]]["config"]
    # The run's measured length (a run cut short by a signal or a failure is not its plan).
    took = runs[eras[0]].get("elapsed_s")
    planned = c0.get("duration", "?")
    length = (f"{took:.1f} s of {planned} s planned" if isinstance(took, (int, float))
              and isinstance(planned, (int, float)) and abs(took - planned) > 0.05 * planned + 0.1
              else f"{planned} s")
    fig.suptitle(f"rmap-stress {c0.get('scenario', '')}: {c0.get('users', '?')} users × "
                 f"{c0.get('pages', '?')} pages, {c0.get('cpus', '?')} CPUs, "
                 f"{length}  "
                 f"[{runs[eras[0]].get('machine', {}).get('cpu_model') or 'unknown CPU'}]",
                 fontsize="large")

    first: Axes | None = None
    for i, era in enumerate(eras):
        run = runs[era]
        ax = fig.add_subplot(gs[0, i], sharey=first)
        first = first or ax
        cpus = run.get("cpus", [])
        xs = [int(c["cpu"]) for c in cpus]
        bottom = [0.0] * len(cpus)
        for key, label, color in SHARES:
            h = [100 * float(c["share"].get(key, 0.0)) for c in cpus]
            ax.bar(xs, h, bottom=bottom, color=color, label=label, width=0.8)
            bottom = [b + v for b, v in zip(bottom, h)]
        pred = run.get("predicted") or {}
        for model, name in MODEL_NAMES.items():
            if model in pred:
                ax.axhline(100 * pred[model]["wait_share"], color="black", ls=MODEL_STYLES[model],
                           lw=1.2, label=f"predicted {pred['lock_class']} wait ({name})")
        t = run.get("throughput", {})
        from .predict import throughput_key
        key = throughput_key(run)  # the scenario's own figure: jobs/min, forks/s or pages/s
        ax.set_title(f"{era}: {float(t.get(key, 0)):,.0f} {UNITS.get(key, key)}, "
                     f"anon_vma wait {100 * run.get('anon_vma_wait_share', 0):.1f}%",
                     fontsize="medium")
        ax.set_xlabel("CPU (worker process)")
        if len(xs) > 16:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        else:
            ax.set_xticks(xs)
        ax.set_ylim(0, 100)
        if i == 0:
            ax.set_ylabel("share of CPU time (%)")
        if i == ncols - 1 and cpus:
            _legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")

    _cdf_panel(fig.add_subplot(gs[1, :]), {era: _anon_vma_hist(r) for era, r in runs.items()},
               colors, "anon_vma lock wait time (CDF) per era")
    if timelines:
        _timeline_panel(fig.add_subplot(gs[2, :]), timelines, colors)
    return fig


def _scale_figure(figure_cls: type[Figure], doc: dict[str, Any]) -> Figure:
    cfg = doc.get("config", {})
    points = doc.get("points", [])
    rows = summarize_scale(doc)
    curves = [c["label"] for c in cfg.get("curves", [])]
    colors = _colors(curves)
    online = int(cfg.get("online_cpus") or 0)
    counts = sorted({int(p["cpus"]) for p in points})
    unit = UNITS.get(rows[0]["throughput_key"], "throughput") if rows else "throughput"
    fig = figure_cls(figsize=(11.0, 3 * PANEL_H + 0.6), layout="constrained")
    gs = fig.add_gridspec(3, 1)
    machine = doc.get("machine", {})
    fig.suptitle(f"rmap-stress scale: {cfg.get('scenario', '')}, {cfg.get('users', '?')} users × "
                 f"{cfg.get('pages', '?')} pages, {cfg.get('duration', '?')} s per point, "
                 f"{cfg.get('repeat', 1)} round(s); {online} online CPUs  "
                 f"[{machine.get('cpu_model') or 'unknown CPU'}]", fontsize="large")
    log_x = _geometric(counts)
    panels = (("throughput", f"{unit}", "(a) Throughput against CPUs; dotted: linear from the first point"),
              ("throughput_per_cpu", f"{unit} per CPU", "(b) Throughput per CPU"),
              ("wait_share", "CPU time waiting on locks (%)", "(c) Lock wait share against CPUs"))
    for i, (key, ylabel, title) in enumerate(panels):
        ax = fig.add_subplot(gs[i, 0])
        for curve in curves:
            _scale_curve(ax, key, curve, rows, points, colors[curve])
        over = [n for n in counts if n > online]
        if online and over:
            # the band starts between the last count that fits and the first that does not
            fits = [n for n in counts if n <= online]
            start = math.sqrt(fits[-1] * over[0]) if fits and log_x else (
                (fits[-1] + over[0]) / 2 if fits else over[0] * 0.95)
            ax.axvspan(start, over[-1] * 1.05, color="#dddddd", alpha=0.5, lw=0,
                       label="oversubscribed (hollow)" if i == 0 else None)
        ax.set_title(title)
        ax.set_xlabel("CPU workers" + (", log scale" if log_x else ""))
        ax.set_ylabel(ylabel)
        if log_x:
            _users_log_axis(ax, counts)
        elif counts:
            ax.set_xticks(counts)
        values = [r[key] for r in rows if r[key] > 0]
        if key != "wait_share" and values and max(values) > 20 * min(values):
            ax.set_yscale("log")  # curves 20x apart: on a linear axis the lower one is flat
            ylabel += ", log scale"
            ax.set_ylabel(ylabel)
        elif key == "wait_share":
            ax.set_ylim(0, 100)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if points:
            _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        else:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
    return fig


def _scale_curve(ax: Axes, key: str, curve: str, rows: list[dict[str, Any]],
                 points: list[dict[str, Any]], color: str) -> None:
    """One curve of a scale panel (``key``: throughput, throughput_per_cpu or wait_share):
    each CPU count's mean with its standard deviation (hollow where oversubscribed), the
    linear line from the first point, the measured wait on the predicted lock class, and
    the predictions."""
    rs = [r for r in rows if r["curve"] == curve]
    if not rs:
        return
    xs = [r["cpus"] for r in rs]
    scale_y = 100.0 if key == "wait_share" else 1.0
    ys = [scale_y * r[key] for r in rs]
    err = ([scale_y * r["std_dev"] for r in rs] if key == "throughput" else
           [scale_y * r["std_dev"] / r["cpus"] for r in rs] if key == "throughput_per_cpu" else None)
    ax.errorbar(xs, ys, yerr=err if any(e for e in err or []) else None, color=color,
                lw=1.8, capsize=3, label=curve)
    for r, y in zip(rs, ys):
        ax.plot([r["cpus"]], [y], marker="o", ms=6, color=color,
                mfc="white" if r["oversubscribed"] else color)
    if key == "throughput":
        ax.plot(xs, [r["linear"] for r in rs], color=color, ls=":", lw=1.2)
    by_n: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        if p["curve"] == curve:
            by_n.setdefault(int(p["cpus"]), []).append(p)
    field = {"throughput": "throughput", "wait_share": "wait_share"}.get(key)
    if key == "wait_share":  # what the predictions are of: the predicted class alone
        mx = [(n, [p["predicted"]["measured"]["wait_share"] for p in ps if p.get("predicted")])
              for n, ps in sorted(by_n.items())]
        mx = [(n, v) for n, v in mx if v]
        if mx:
            ax.plot([n for n, _ in mx], [100 * mean(v) for _, v in mx], ls="none",
                    marker="x", ms=7, color=color,
                    label=f"{curve}: measured wait on the predicted lock class")
    if field:
        for model, (px, pv) in _predicted_series(dict(sorted(by_n.items())), field).items():
            ax.plot(px, [scale_y * v for v in pv], color=color, ls=MODEL_STYLES[model],
                    lw=1.2, label=f"{curve} predicted ({MODEL_NAMES[model]})")

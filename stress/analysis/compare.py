"""Compare results documents side by side, as pyperf's ``compare_to`` does for benchmarks.

Input is a list of ``(label, document)``, each as ``results.load`` returns it: a run, a
ramp, a scale or a demo (expanded to one run per era).  Runs and ramps cannot be mixed in
one comparison.  A document a signal or a failure cut short is compared with a warning
that says so and how long it measured.

Runs.  Runs with the same configuration (seed aside) on the same machine are repeats of
one measurement and form one column, so three ``old.json`` and three ``new.json`` passed
together give two columns of n=3.  The table shows each column's mean (± sample standard
deviation where n > 1) and its ratio to the first column.

Ramps.  A ramp holds several eras; one ramp is compared era against era, several ramps
file against file, one block per era.  Repeats are the points sharing era and user count.
Peak jobs/min is the highest mean-over-repeats across user counts.

Significance.  Where both columns hold at least two values, a two-sample Welch t-test
(unequal variances; two-sided, 95%) decides between pyperf's verdicts "Not significant!"
and "1.11x faster" / "1.11x slower".  The p-value comes from the Student t CDF, computed
here through the regularized incomplete beta function (a Lentz continued fraction), so
scipy is not needed.  Welch rather than pyperf's pooled-variance test because a collapsed
era is far noisier than a healthy one: equal variances is exactly what does not hold.

Scales.  One scale file is compared curve against curve (era and lock primitive; the same
curve given twice is an A/A check), several file against file, one block per curve; the
rows are throughput and lock wait share at each CPU count, the repeats their samples.

Drift.  Repeats of one configuration should scatter, not trend.  When at least
``DRIFT_MIN`` repeats of a column, in the order they ran, rise (or fall) every time, the
machine probably drifted between them, and ``compare`` says so and which figure; by
chance alone that happens with probability 2/n! (1 in 12 for 4 repeats, 1 in 60 for 5).

Stability.  pyperf's checks, on the throughput figures of every column with n > 1: the
result "may be unstable" when the standard deviation is >= 10% of the mean, or the minimum
or maximum is >= 50% away from it.  Shares and walk lengths are not checked: near zero
(2.6.34's lock wait) a 10% rule flags noise in a figure nobody reads as a speed.

Everything here is a pure function of the documents; ``load_for_compare`` is the only I/O.
Two files with the same content are one measurement, refused as repeats by the CLI.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.results import (
    SCHEMA_DEMO,
    SCHEMA_RAMP,
    SCHEMA_RUN,
    SCHEMA_SCALE,
    ResultsError,
    load,
    stop_notes,
    upgrade,
)
from .report import mean_shares, ratio_text

ALPHA = 0.05  # two-sided, as pyperf's 95% confidence
UNSTABLE_STDEV = 0.10  # pyperf: std dev >= 10% of the mean
UNSTABLE_RANGE = 0.50  # pyperf: min or max >= 50% away from the mean
# Machine metadata that makes two results different measurements, not repeats.
MACHINE_FIELDS = ("cpu_model", "online_cpus", "affinity", "python", "package_version")
# Config keys that do not change what is measured: runs differing only here are repeats.
REPEAT_KEYS = frozenset({"seed"})
DRIFT_MIN = 4  # repeats moving the same way every time before we call it drift
DRIFT_WORDS = {"rise": "above", "fall": "below"}


# -- statistics ------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((a - 1.0 + m2) * (a + m2)),
                   -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1.0 + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1.

    ``y`` is 1 - x when the caller knows it more precisely than ``1 - x`` would be (x near 1)."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(y))
    # The fraction converges fast only for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_x(df/2, 1/2) at
    x = df / (df + t^2), with 1 - x computed directly (x rounds to 1 for tiny t, huge df)."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))


@dataclasses.dataclass(frozen=True)
class TTest:
    """A two-sample Welch t-test of b against a."""

    t: float
    df: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's unequal-variance t-test; each sample needs at least two values.

    Two jitter-free samples (zero variance) are equal (p = 1) or certainly different (p = 0)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a t-test needs at least two values in each sample")
    ma, mb = _mean(a), _mean(b)
    va, vb = _var(a) / len(a), _var(b) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        return TTest(0.0, math.inf, 1.0) if ma == mb else TTest(math.inf, math.inf, 0.0)
    t = (mb - ma) / math.sqrt(se2)
    df = se2 * se2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return TTest(t, df, t_two_sided_p(t, df))


_mean = statistics.fmean
_var = statistics.variance  # sample variance (ddof 1), as pyperf's statistics.stdev


def _stdev(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def instability(values: Sequence[float], fmt: Callable[[float], str]) -> list[str]:
    """pyperf's reasons to call a result unstable (empty when it looks stable)."""
    if len(values) < 2:
        return []
    mean = _mean(values)
    if mean == 0:
        return []
    out = []
    sd = _stdev(values)
    if sd >= UNSTABLE_STDEV * abs(mean):
        out.append(f"the standard deviation ({fmt(sd)}) is {100 * sd / abs(mean):.0f}% of the "
                   f"mean ({fmt(mean)})")
    for name, value in (("minimum", min(values)), ("maximum", max(values))):
        percent = 100.0 * (value - mean) / abs(mean)
        if abs(percent) >= 100 * UNSTABLE_RANGE:
            side = "greater" if percent >= 0 else "smaller"
            out.append(f"the {name} ({fmt(value)}) is {abs(percent):.0f}% {side} than the "
                       f"mean ({fmt(mean)})")
    return out


def drift(values: Sequence[float]) -> str | None:
    """"rise" or "fall" when there are at least DRIFT_MIN values (in the order they were
    measured) and each is above (below) the one before; None otherwise."""
    if len(values) < DRIFT_MIN:
        return None
    steps = [b - a for a, b in itertools.pairwise(values)]
    if all(d > 0 for d in steps):
        return "rise"
    if all(d < 0 for d in steps):
        return "fall"
    return None


# -- figures ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Headline:
    """One headline figure: how to read it from a run, print it, and name a change."""

    title: str
    read: Callable[[dict[str, Any]], float]
    spec: str  # format spec of one value
    up: str  # verdict word when the value rises ("faster")
    down: str  # ... and when it falls ("slower")
    throughput: bool = False  # checked for stability, as pyperf checks a benchmark's timings
    testable: bool = True  # False: not a raw per-run value (a percentile read off buckets)

    def fmt(self, v: float) -> str:
        return format(v, self.spec)


def _anon_vma_p99_us(run: dict[str, Any]) -> float:
    row = next((r for r in run["locks"] if r["class"] == "anon_vma"), None)
    return row["wait_ns"]["p99"] / 1e3 if row else 0.0


RUN_FIGURES = (
    Headline("pages scanned per second", lambda r: r["throughput"]["pages_scanned_per_s"],
           ",.0f", "faster", "slower", throughput=True),
    Headline("jobs per minute", lambda r: r["throughput"]["jobs_per_min"],
           ",.0f", "faster", "slower", throughput=True),
    Headline("average walk length (VMAs)", lambda r: r["walks"]["avg_visited"],
           ",.1f", "longer", "shorter"),
    Headline("CPU time waiting on anon_vma lock %", lambda r: 100 * r["anon_vma_wait_share"],
           ".2f", "higher", "lower"),
    Headline("CPU time walking %", lambda r: 100 * mean_shares(r)["walk"],
           ".2f", "higher", "lower"),
    # Read off histogram buckets: repeats land on the same bucket edge, so a t-test on it
    # would report p=0 for no reason.  Shown, not tested.
    Headline("anon_vma lock wait p99 (us)", _anon_vma_p99_us, ",.1f", "longer", "shorter",
             testable=False),
    # fork-test and exim; modern's trylock (absent from older files: read as 0, left out).
    Headline("forks per second", lambda r: r["throughput"].get("forks_per_s", 0.0),
             ",.0f", "faster", "slower", throughput=True),
    Headline("rmap trylock failures", lambda r: r["throughput"].get("rmap_trylock_fail", 0),
             ",.0f", "more", "fewer"),
)
JOBS_PER_MIN = Headline("jobs/min", lambda r: 0.0, ",.0f", "faster", "slower", throughput=True)
USERS = Headline("users", lambda r: 0.0, ".0f", "more", "fewer")


def verdict(fig: Headline, a: Sequence[float], b: Sequence[float]) -> str:
    """pyperf-style: "mean ± sd -> mean ± sd: 1.11x faster", or "... Not significant!".

    Without two values on each side there is no test: the ratio alone, marked so."""
    text = f"{_cell(fig, a)} -> {_cell(fig, b)}: "
    if len(a) < 2 or len(b) < 2:
        return text + f"{_change(fig, a, b)} (untested)"
    tt = welch_t_test(a, b)
    if not tt.significant:
        return text + f"Not significant! (p={tt.p:.2f})"
    return text + f"{_change(fig, a, b)} (p={tt.p:.2g})"


def _change(fig: Headline, a: Sequence[float], b: Sequence[float]) -> str:
    """"1.11x faster": the ratio, always >= 1, with the word for its direction."""
    ma, mb = _mean(a), _mean(b)
    if ma == mb:
        return "no change"
    if ma == 0 or mb == 0:
        return f"{fig.up if mb > ma else fig.down} (from {fig.fmt(ma)})"
    return f"{mb / ma:.2f}x {fig.up}" if mb > ma else f"{ma / mb:.2f}x {fig.down}"


def _cell(fig: Headline, xs: Sequence[float]) -> str:
    if len(xs) > 1:
        return f"{fig.fmt(_mean(xs))} ± {fig.fmt(_stdev(xs))}"
    return fig.fmt(xs[0])


def _ratio(a: Sequence[float], b: Sequence[float]) -> str:
    """b/a, with two significant digits kept when it is far below 1 (0.002x, not 0.00x)."""
    return ratio_text(_mean(a), _mean(b))


# -- documents -------------------------------------------------------------------------

def is_demo_doc(doc: Any) -> bool:
    """A ``demo --json`` document (loaded: ``{"schema": demo, "eras": {era: run}}``)."""
    return isinstance(doc, dict) and doc.get("schema") == SCHEMA_DEMO and isinstance(doc.get("eras"), dict)


def load_for_compare(path: str) -> dict[str, Any]:
    """A run, a ramp, a scale or a demo file, validated; anything else raises
    ResultsError with one line."""
    doc = load(path, ("run", "demo", "ramp", "scale"))
    if not doc.get("eras" if is_demo_doc(doc) else "points", True):
        why = (f"interrupted by {doc['interrupted']} before anything was measured"
               if doc.get("interrupted") else "nothing was measured")
        raise ResultsError(f"{path}: {why}: nothing to read")
    return doc


def _expand(docs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for label, doc in docs:
        if is_demo_doc(doc):
            out.extend((f"{label}:{era}", run) for era, run in doc["eras"].items())
        elif isinstance(doc, dict) and doc.get("schema") in (SCHEMA_RUN, SCHEMA_RAMP, SCHEMA_SCALE):
            out.append((label, doc))
        else:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise ResultsError(f"{label}: schema {got!r}, expected {SCHEMA_RUN!r}, {SCHEMA_RAMP!r}, "
                               f"{SCHEMA_SCALE!r} or {SCHEMA_DEMO!r}")
    return out


def _machine_id(doc: dict[str, Any]) -> dict[str, Any]:
    m = doc.get("machine") or {}
    return {k: m.get(k) for k in MACHINE_FIELDS}


def _fmt_meta(v: Any) -> str:
    """Metadata value for a line of text; CPU lists as ranges (0-7,16)."""
    if isinstance(v, list) and v and all(isinstance(x, int) for x in v):
        xs, parts, i = sorted(v), [], 0
        while i < len(xs):
            j = i
            while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
                j += 1
            parts.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
            i = j + 1
        return ",".join(parts)
    return "?" if v is None else str(v)


def _differences(title: str, labels: Sequence[str], dicts: Sequence[dict[str, Any]],
                 skip: frozenset[str] = frozenset()) -> list[str]:
    """One line per key whose value differs between the dicts, each value with the labels
    that have it: "python: 3.11.7 in a.json, b.json; 3.12.1 in c.json"."""
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys and k not in skip)
    lines = []
    for k in keys:
        holders: dict[str, list[str]] = {}
        for lab, d in zip(labels, dicts):
            holders.setdefault(_fmt_meta(d.get(k)), []).append(lab)
        if len(holders) > 1:
            lines.append(f"  {k}: " + "; ".join(f"{v} in {', '.join(labs)}"
                                                 for v, labs in holders.items()))
    return [f"{title} differ:"] + lines if lines else []


def _section(out: list[str], lines: Sequence[str]) -> None:
    """Append ``lines`` to ``out`` after a blank line; nothing when there are none."""
    if lines:
        out.extend(([""] if out else []) + list(lines))


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    # titles flush left, figures flush right
    return ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [head, *rows]]


def _columns_table(titles: Sequence[str], names: Sequence[str],
                   cells: Sequence[Sequence[Sequence[float] | None]], figs: Sequence[Headline],
                   text: Callable[[int, int], str | None] | None = None) -> list[str]:
    """Rows are figures, columns are results; after each column but the first, its ratio
    to the first.  ``cells[row][col]`` is a sample (or None: not in that result)."""
    head = [""]
    for j, name in enumerate(names):
        head += [name] if j == 0 else [name, "ratio"]
    rows = []
    for i, (title, fig) in enumerate(zip(titles, figs)):
        row = [title]
        first = cells[i][0]
        for j, xs in enumerate(cells[i]):
            shown = text(i, j) if text else None
            row.append(shown if shown is not None else (_cell(fig, xs) if xs else "-"))
            if j:
                row.append(_ratio(first, xs) if first and xs else "-")
        rows.append(row)
    return _table(head, rows)


def _verdicts(ref: str, names: Sequence[str], titles: Sequence[str], figs: Sequence[Headline],
              cells: Sequence[Sequence[Sequence[float] | None]]) -> list[str]:
    """Only rows that can be tested: two values or more on each side of a raw per-run
    figure (not a percentile read off bucket edges); the rest get one note."""
    lines = [f"against {ref} (Welch's t-test, 95%):"]
    single = False
    for j in range(1, len(names)):
        tested = []
        for i, (title, fig) in enumerate(zip(titles, figs)):
            a, b = cells[i][0], cells[i][j]
            if not a or not b or not fig.testable:
                continue
            if len(a) < 2 or len(b) < 2:
                single = True
            else:
                tested.append(f"    {title}: {verdict(fig, a, b)}")
        if tested:
            lines += [f"  {names[j]}", *tested]
    if single:
        lines.append("(not tested where one side has a single run: repeat the runs for a t-test)")
    if len(lines) == 1 + single:
        lines[0] = f"against {ref}: no t-test"
    return lines


def _warnings(names: Sequence[str], titles: Sequence[str], figs: Sequence[Headline],
              cells: Sequence[Sequence[Sequence[float] | None]]) -> list[str]:
    lines = []
    for j, name in enumerate(names):
        why = [f"* {title}: {w}" for i, (title, fig) in enumerate(zip(titles, figs))
               if fig.throughput and (xs := cells[i][j]) for w in instability(xs, fig.fmt)]
        if why:
            lines += [f"WARNING: {name}: the benchmark result may be unstable", *why]
        drifted = [f"* {title}: {len(xs)} repeats, each {DRIFT_WORDS[way]} the one before "
                   f"({', '.join(fig.fmt(x) for x in xs)}, in the order they ran)"
                   for i, (title, fig) in enumerate(zip(titles, figs))
                   if (xs := cells[i][j]) and (way := drift(xs))]
        if drifted:
            lines += [(f"WARNING: {name}: the repeats drift: the machine changed while they ran; "
                       f"interleave them (ramp or scale --repeat) or rerun on a quiet machine"),
                      *drifted]
    return lines


# -- runs ------------------------------------------------------------------------------

def _group_runs(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """Repeats together: same config (seed aside) on the same machine; first-seen order."""
    groups: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}
    for label, run in runs:
        cfg = {k: v for k, v in run.get("config", {}).items() if k not in REPEAT_KEYS}
        key = json.dumps([cfg, _machine_id(run)], sort_keys=True, default=str)
        labels, members = groups.setdefault(key, ([], []))
        labels.append(label)
        members.append(run)
    return list(groups.values())


def _compare_runs(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    groups = _group_runs(runs)
    names = [labels[0] if len(labels) == 1 else f"{labels[0]} (n={len(labels)})"
             for labels, _ in groups]
    # A figure no run measured (jobs/min of reclaim-storm) is left out, not shown as 0 -> 0.
    figs = [f for f in RUN_FIGURES if any(f.read(r) for _, members in groups for r in members)]
    cells = [[[f.read(r) for r in members] for _, members in groups] for f in figs]
    titles = [f.title for f in figs]
    out = _columns_table(titles, names, cells, figs)
    for name, (labels, _) in zip(names, groups):
        if len(labels) > 1:
            out.append(f"  {name}: {', '.join(labels)}")
    _section(out, _differences("configs", names, [g[1][0].get("config", {}) for g in groups],
                               skip=REPEAT_KEYS))
    if len(groups) > 1:
        _section(out, _verdicts(names[0], names, titles, figs, cells))
    _section(out, _warnings(names, titles, figs, cells))
    return out


# -- ramps -----------------------------------------------------------------------------

@dataclasses.dataclass
class RampEra:
    """One era of one ramp: jobs/min samples by user count, and its crossover."""

    name: str
    samples: dict[int, list[float]]
    crossover: int | None
    system90: int | None

    @property
    def peak_users(self) -> int | None:
        if not self.samples:
            return None
        return max(self.samples, key=lambda u: (_mean(self.samples[u]), -u))


def _ramp_eras(label: str, doc: dict[str, Any]) -> dict[str, RampEra]:
    eras = list(doc.get("config", {}).get("eras") or [])
    for p in doc.get("points", []):
        if p["era"] not in eras:
            eras.append(p["era"])
    out = {}
    for era in eras:
        samples: dict[int, list[float]] = {}
        for p in doc.get("points", []):
            if p["era"] == era:
                samples.setdefault(int(p["users"]), []).append(float(p["jobs_per_min"]))
        cross = (doc.get("crossover") or {}).get(era) or {}
        out[era] = RampEra(label, dict(sorted(samples.items())), cross.get("users"),
                           cross.get("system90_users"))
    return out


def _ramp_block(cols: Sequence[RampEra]) -> list[str]:
    names = [c.name for c in cols]
    # The user counts every era measured; an era with no point at all (a ramp interrupted
    # before it) shows "-" in those rows rather than hiding them for the others.
    measured = [set(c.samples) for c in cols if c.samples]
    users = sorted(set.intersection(*measured)) if measured else []
    titles = ["peak jobs/min", "  at users", "crossover users", "users at 90% system time"]
    figs: list[Headline] = [JOBS_PER_MIN, USERS, USERS, USERS]
    peak = [c.samples[u] if (u := c.peak_users) is not None else None for c in cols]
    cells: list[list[list[float] | None]] = [
        peak,
        [[float(u)] if (u := c.peak_users) is not None else None for c in cols],
        [[float(c.crossover)] if c.crossover is not None else None for c in cols],
        [[float(c.system90)] if c.system90 is not None else None for c in cols],
    ]
    for u in users:
        titles.append(f"jobs/min at {u} user{'s' if u != 1 else ''}")
        figs.append(JOBS_PER_MIN)
        cells.append([c.samples.get(u) for c in cols])

    def text(i: int, j: int) -> str | None:
        return "not reached" if i in (2, 3) and cells[i][j] is None else None

    out = _columns_table(titles, names, cells, figs, text)
    if len(cols) > 1:
        keep = [0] + list(range(4, len(titles)))  # user counts are not samples to test
        _section(out, _verdicts(names[0], names, [titles[i] for i in keep],
                                [figs[i] for i in keep], [cells[i] for i in keep]))
    _section(out, _warnings(names, titles, figs, cells))
    return out


def _compare_ramps(ramps: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    per_doc = [_ramp_eras(label, doc) for label, doc in ramps]
    out: list[str] = []
    if len(ramps) == 1:  # era against era, within the one ramp
        cols = [dataclasses.replace(e, name=era) for era, e in per_doc[0].items()]
        out += [f"ramp {ramps[0][0]}: eras side by side"] + _ramp_block(cols)
    else:  # file against file, one block per era
        eras: list[str] = []
        for d in per_doc:
            eras.extend(e for e in d if e not in eras)
        for era in eras:
            cols = [d[era] for d in per_doc if era in d]
            _section(out, [f"era {era}"] + _ramp_block(cols))
        _section(out, _differences("configs", [lab for lab, _ in ramps],
                                   [doc.get("config", {}) for _, doc in ramps]))
    return out


# -- scales ----------------------------------------------------------------------------

WAIT_PCT = Headline("lock wait %", lambda r: 0.0, ".2f", "higher", "lower")


def _scale_curves(label: str, doc: dict[str, Any]) -> dict[str, dict[int, dict[str, list[float]]]]:
    """{curve: {cpus: {"throughput": [...], "wait": [...]}}}, repeats in the order they ran."""
    out: dict[str, dict[int, dict[str, list[float]]]] = {}
    for p in sorted(doc.get("points", []), key=lambda p: p["repeat"]):
        cell = out.setdefault(p["curve"], {}).setdefault(int(p["cpus"]), {"throughput": [], "wait": []})
        cell["throughput"].append(float(p["throughput"]))
        cell["wait"].append(100 * float(p["wait_share"]))
    return out


def _scale_block(names: Sequence[str], cols: Sequence[dict[int, dict[str, list[float]]]],
                 unit: str) -> list[str]:
    counts = sorted(set.intersection(*(set(c) for c in cols)))
    thr = dataclasses.replace(JOBS_PER_MIN, title=unit)
    titles: list[str] = []
    figs: list[Headline] = []
    cells: list[list[list[float] | None]] = []
    for key, fig, what in (("throughput", thr, unit), ("wait", WAIT_PCT, "lock wait %")):
        for n in counts:
            titles.append(f"{what} at {n} CPU{'s' if n != 1 else ''}")
            figs.append(fig)
            cells.append([c[n][key] for c in cols])
    out = _columns_table(titles, names, cells, figs)
    if len(cols) > 1:
        _section(out, _verdicts(names[0], names, titles, figs, cells))
    _section(out, _warnings(names, titles, figs, cells))
    return out


def _compare_scales(scales: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    per_doc = [_scale_curves(label, doc) for label, doc in scales]
    keys = {p.get("throughput_key", "") for _, doc in scales for p in doc.get("points", [])}
    unit = {"pages_scanned_per_s": "pages/s", "jobs_per_min": "jobs/min"}.get(
        next(iter(keys)) if len(keys) == 1 else "", "throughput")
    out: list[str] = []
    if len(scales) == 1:  # curve against curve, within the one scale
        curves = list(per_doc[0])
        out += [f"scale {scales[0][0]}: curves side by side"]
        out += _scale_block(curves, [per_doc[0][c] for c in curves], unit)
    else:  # file against file, one block per curve
        curves = []
        for d in per_doc:
            curves.extend(c for c in d if c not in curves)
        for curve in curves:
            have = [(label, d[curve]) for (label, _), d in zip(scales, per_doc) if curve in d]
            _section(out, [f"curve {curve}"] + _scale_block([h[0] for h in have], [h[1] for h in have], unit))
        _section(out, _differences("configs", [lab for lab, _ in scales],
                                   [doc.get("config", {}) for _, doc in scales]))
    return out


# -- entry -----------------------------------------------------------------------------

def compare(docs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A side-by-side table of results' headline figures, ratios to the first, pyperf-style
    verdicts where results were repeated, stability warnings and machine differences.

    ``docs`` is ``[(label, document)]``: runs, demo files (one run per era) or ramps, not
    runs and ramps together.  Raises ResultsError for anything else."""
    if not docs:
        raise ResultsError("nothing to compare")
    docs = [(label, upgrade(doc)) for label, doc in docs]
    items = _expand(docs)
    kinds = {doc["schema"] for _, doc in items}
    if len(kinds) > 1:
        raise ResultsError("cannot compare runs with ramps or scales: pass one kind of result")
    if kinds == {SCHEMA_RUN}:
        out = _compare_runs(items)
    elif kinds == {SCHEMA_SCALE}:
        out = _compare_scales(items)
    else:
        out = _compare_ramps(items)
    # Machines: per input file, so that a demo's two runs do not count twice.
    machines = [(label, _machine_id(doc if not is_demo_doc(doc) else next(iter(doc["eras"].values()))))
                for label, doc in docs]
    _section(out, _differences("machines", [lab for lab, _ in machines], [m for _, m in machines]))
    # Figures of a run cut short are not those of the run asked for: say so, with how long
    # it measured (the configs' "duration" is what was planned).
    _section(out, [f"WARNING: {label}: {note}" for label, doc in docs for note in stop_notes(doc)])
    return "\n".join(line.rstrip() for line in out)

"""What queueing theory predicts for a measured run: pure functions, no I/O.

N CPUs share one lock.  Each spends a mean time T outside it ("thinking": everything but
this lock), then asks for it, waits while others hold it, and holds it for a mean time S.
Two models of that closed queue:

* **Machine repairman, M/M/1//N** (a finite-source queue; Kleinrock, *Queueing Systems*
  vol. 1, 3.8): N customers, one server, exponential think and service times.  With
  ρ = S/T the stationary probability of k CPUs at the lock (one holding, k-1 waiting) is

      P_k = P_0 · N!/(N-k)! · ρ^k,        P_0 = 1 / Σ_{k=0..N} N!/(N-k)! · ρ^k

  The lock is busy 1 - P_0 of the time, so acquisitions per second are X = (1 - P_0)/S,
  and the share of CPU time spent waiting is the mean number of waiters over N:
  Σ P_k (k-1) / N (equivalently 1 - X·(T + S)/N, by Little's law).

* **Boyd-Wickizer et al., "Non-scalable locks are dangerous"** (Linux Symposium 2012): the
  same birth-death chain, but a ticket spinlock's hand-off gets slower with every waiter
  (each spins on the lock's cache line, and the release must reach the next in line through
  all of them).  In state k the arrival rate is (N-k)/T and the service rate
  1/(S + c·k/2), c being the cost of one cache-line transfer.  The hand-off time is counted
  as waiting: a CPU's time is outside (T), holding (S) or waiting, so the wait share is
  1 - X·(T + S)/N with X = Σ_{k>=1} P_k/(S + c·k/2).  With c = 0 it is the repairman.

Where they should fail:

* oversubscription (more CPU workers than cores): a preempted holder keeps the lock while
  spinners burn the core it needs; neither model has a scheduler;
* unfair locks: glibc's test-and-set spinlock lets a releasing CPU take the lock straight
  back; the mean wait is about the same but the chain's FIFO assumption is not;
* many lock instances in one class (2.6.34's per-child anon_vmas, the 256 mapcount
  stripes): the models assume one lock, so they overestimate the wait of a spread class;
* S and T that are far from exponential: the walk length is nearly fixed per page, and
  M/D/1//N waits less than M/M/1//N at the same load.

Inputs come from a run's results (``lock_times``): per acquisition of the hottest lock
class, S = hold total / acquisitions and T = (CPU time - hold - wait) / acquisitions, all
CPUs together.  Hold time includes nested waits (a ptl wait inside the anon_vma lock):
that is time inside the lock all the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

# The cost c of one hand-off of a lock between two cores, measured on this project's 2-core
# machine by scripts/measure_handoff.py (medians of three runs: 55, 54, 56 ns): the
# release-to-acquire time of the model's compiled ticket lock passed between two pinned
# processes (the release store reaching the spinner's line, plus its pause loop).
DEFAULT_HANDOFF_NS = 55
# Lock kinds whose hand-off gets slower with every spinner (Boyd-Wickizer's model applies):
# test-and-set ("spin" today, "tas" to be) and ticket locks.  Queued locks (MCS, qspinlock)
# hand off to one waiter, sleeping locks through the scheduler: the repairman only.
NON_SCALABLE_LOCKS = ("spin", "tas", "ticket")
# Results of a run whose throughput is read as "the" throughput, by scenario.
THROUGHPUT_KEYS = {"forking-server": "jobs_per_min", "fork-test": "forks_per_s", "exim": "jobs_per_min"}
DEFAULT_THROUGHPUT_KEY = "pages_scanned_per_s"


class PredictError(ValueError):
    """A results document that cannot be predicted (no lock was taken); one line."""


@dataclasses.dataclass(frozen=True)
class QueueState:
    """A model's answer for N CPUs: acquisitions per second, lock busy share, wait share."""

    cpus: int
    acquisitions_per_s: float
    busy: float  # share of time the lock is held (or being handed off)
    wait_share: float  # share of all CPUs' time spent waiting for the lock


def _stationary(n: int, think_ns: float, service_ns: Callable[[int], float]) -> list[float]:
    """P_0..P_n of the birth-death chain: k -> k+1 at rate (n-k)/think, k -> k-1 at rate
    1/service_ns(k).  Computed in logs and normalised by the largest term, so that large
    N and ρ do not overflow (N!·ρ^N does, long before N = 1024)."""
    logs = [0.0]
    for k in range(1, n + 1):
        logs.append(logs[-1] + math.log(n - k + 1) - math.log(think_ns) + math.log(service_ns(k)))
    top = max(logs)
    terms = [math.exp(x - top) for x in logs]
    total = math.fsum(terms)
    return [t / total for t in terms]


def _check(n: int, think_ns: float, hold_ns: float) -> None:
    if n < 1:
        raise ValueError(f"a queue needs at least one CPU, not {n}")
    if not think_ns > 0 or not hold_ns > 0:
        raise ValueError(f"think and hold times must be positive (T={think_ns}, S={hold_ns})")


def repairman(n: int, think_ns: float, hold_ns: float) -> QueueState:
    """M/M/1//N: N CPUs, mean time T outside the lock, S inside it (see the module doc)."""
    _check(n, think_ns, hold_ns)
    p = _stationary(n, think_ns, lambda k: hold_ns)
    waiting = math.fsum(pk * (k - 1) for k, pk in enumerate(p) if k)
    busy = 1.0 - p[0]
    return QueueState(n, busy / hold_ns * 1e9, busy, waiting / n)


def ticket(n: int, think_ns: float, hold_ns: float, handoff_ns: float) -> QueueState:
    """Boyd-Wickizer's ticket-lock chain: service time S + c·k/2 in state k."""
    _check(n, think_ns, hold_ns)
    if handoff_ns < 0:
        raise ValueError(f"the hand-off cost must be >= 0, not {handoff_ns}")

    def service(k: int) -> float:
        return hold_ns + handoff_ns * k / 2

    p = _stationary(n, think_ns, service)
    rate = math.fsum(pk / service(k) for k, pk in enumerate(p) if k)  # per ns
    wait = max(0.0, 1.0 - rate * (think_ns + hold_ns) / n)
    return QueueState(n, rate * 1e9, 1.0 - p[0], wait)


# -- from a results document -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LockTimes:
    """One lock class of one run, all CPUs together."""

    lock_class: str
    cpus: int
    acquisitions: int
    cpu_ns: float  # all CPUs' run time
    hold_ns: float  # total
    wait_ns: float  # total

    @property
    def think_ns(self) -> float:
        """T: mean time outside the lock (and not waiting for it) per acquisition."""
        return max(self.cpu_ns - self.hold_ns - self.wait_ns, 0.0) / self.acquisitions

    @property
    def mean_hold_ns(self) -> float:
        """S: mean hold per acquisition."""
        return self.hold_ns / self.acquisitions

    @property
    def wait_share(self) -> float:
        return self.wait_ns / self.cpu_ns if self.cpu_ns else 0.0


def hottest_class(run: dict[str, Any]) -> str:
    """The lock class with the most total wait; without any wait (one CPU), the one held
    longest, which is where the wait will be once there are more CPUs."""
    rows = run.get("locks") or []
    if not rows:
        raise PredictError("the run took no lock: nothing to predict")
    best = max(rows, key=lambda r: (r["wait_ns"]["total"], r["hold_ns"]["total"]))
    return str(best["class"])


def lock_times(run: dict[str, Any], lock_class: str | None = None) -> LockTimes:
    """T and S of ``lock_class`` (default: the hottest) from a run's results.

    CPU time is each CPU's measured run time (``cpus[i].time_ns``) where the results have
    it, else the run's elapsed time per CPU."""
    cls = lock_class or hottest_class(run)
    row = next((r for r in run.get("locks") or [] if r["class"] == cls), None)
    if row is None or not row["acquisitions"]:
        raise PredictError(f"the run never took a {cls} lock: nothing to predict")
    cpus = run.get("cpus") or []
    n = int(run["config"]["cpus"])
    if cpus and all("time_ns" in c for c in cpus):
        cpu_ns = float(sum(c["time_ns"] for c in cpus))
    else:
        cpu_ns = float(run["elapsed_s"]) * 1e9 * n
    return LockTimes(cls, n, int(row["acquisitions"]), cpu_ns, float(row["hold_ns"]["total"]),
                     float(row["wait_ns"]["total"]))


def relative_error(predicted: float, measured: float) -> float | None:
    """(predicted - measured) / measured; 0 when both are 0, None when only measured is."""
    if measured == 0:
        return 0.0 if abs(predicted) < 1e-12 else None
    return (predicted - measured) / measured


def throughput_key(run: dict[str, Any]) -> str:
    return THROUGHPUT_KEYS.get(run["config"].get("scenario", ""), DEFAULT_THROUGHPUT_KEY)


def _model_entry(q: QueueState, lt: LockTimes, measured_thr: float, measured_x: float) -> dict[str, Any]:
    # The run's own throughput (pages/s, jobs/min) scales with lock acquisitions: a page
    # scanned costs the same acquisitions whatever the wait.
    thr = measured_thr * q.acquisitions_per_s / measured_x if measured_x else 0.0
    return {"wait_share": q.wait_share, "acquisitions_per_s": q.acquisitions_per_s,
            "throughput": thr, "lock_busy": q.busy,
            "wait_share_error": relative_error(q.wait_share, lt.wait_share),
            "throughput_error": relative_error(thr, measured_thr)}


def lock_inputs(run: dict[str, Any]) -> dict[str, Any]:
    """What a prediction needs from a run, small enough to keep in every ramp or scale
    point (so that ``rmap-stress predict`` can redo it with another hand-off cost)."""
    key = throughput_key(run)
    return {"times": dataclasses.asdict(lock_times(run)), "lock": run["config"].get("lock"),
            "elapsed_s": float(run["elapsed_s"]), "throughput_key": key,
            "throughput": float(run["throughput"][key])}


def predict_run(run: dict[str, Any], handoff_ns: float = DEFAULT_HANDOFF_NS,
                lock_class: str | None = None) -> dict[str, Any]:
    """The ``predicted`` object of a run: the measured T, S and wait share of its hottest
    lock class, and each model's wait share and throughput with its relative error.

    ``ticket`` (Boyd-Wickizer) is there only for a non-scalable spinning lock kind."""
    key = throughput_key(run)
    return predict_inputs({"times": dataclasses.asdict(lock_times(run, lock_class)),
                           "lock": run["config"].get("lock"), "elapsed_s": float(run["elapsed_s"]),
                           "throughput_key": key, "throughput": float(run["throughput"][key])},
                          handoff_ns)


def predict_inputs(inputs: dict[str, Any], handoff_ns: float = DEFAULT_HANDOFF_NS) -> dict[str, Any]:
    """``predict_run`` from what ``lock_inputs`` kept."""
    lt = LockTimes(**inputs["times"])
    key = inputs["throughput_key"]
    measured_thr = float(inputs["throughput"])
    elapsed = float(inputs["elapsed_s"])
    measured_x = lt.acquisitions / elapsed if elapsed else 0.0
    out: dict[str, Any] = {
        "lock_class": lt.lock_class, "cpus": lt.cpus,
        "think_ns": lt.think_ns, "hold_ns": lt.mean_hold_ns, "handoff_ns": handoff_ns,
        "throughput_key": key,
        "measured": {"wait_share": lt.wait_share, "acquisitions_per_s": measured_x,
                     "throughput": measured_thr},
    }
    if lt.think_ns <= 0 or lt.mean_hold_ns <= 0:
        raise PredictError(f"{lt.lock_class}: no time outside or inside the lock was measured")
    out["repairman"] = _model_entry(repairman(lt.cpus, lt.think_ns, lt.mean_hold_ns), lt,
                                    measured_thr, measured_x)
    if inputs.get("lock") in NON_SCALABLE_LOCKS:
        out["ticket"] = _model_entry(ticket(lt.cpus, lt.think_ns, lt.mean_hold_ns, handoff_ns), lt,
                                     measured_thr, measured_x)
    return out


MODEL_TITLES = {"repairman": "M/M/1//N", "ticket": "ticket (Boyd-Wickizer)"}


def _err(e: float | None, measured_pct: float | None = None) -> str:
    """A relative error, or n/a where there is none to give: the measurement is 0, or is
    shown as 0.00 (a wait share below 0.005%: +7032% of nothing is noise, not an error)."""
    if e is None or (measured_pct is not None and abs(measured_pct) < 0.005):
        return "n/a"
    return f"{100 * e:+.1f}%"


def format_prediction(p: dict[str, Any]) -> str:
    """A few lines: measured beside each model, with the relative errors."""
    m = p["measured"]
    key = p["throughput_key"]
    lines = [(f"prediction for the {p['lock_class']} lock, {p['cpus']} CPUs: T = "
              f"{p['think_ns'] / 1e3:,.1f} us outside, S = {p['hold_ns'] / 1e3:,.1f} us inside per "
              f"acquisition, hand-off {p['handoff_ns']:g} ns"),
             f"  {'':<24} {'wait %':>8} {'error':>9} {key:>20} {'error':>9}",
             f"  {'measured':<24} {100 * m['wait_share']:>8.2f} {'':>9} {m['throughput']:>20,.1f}"]
    for name, title in MODEL_TITLES.items():
        if name in p:
            q = p[name]
            wait_err = _err(q['wait_share_error'], 100 * m['wait_share'])
            lines.append(f"  {title:<24} {100 * q['wait_share']:>8.2f} {wait_err:>9} "
                         f"{q['throughput']:>20,.1f} {_err(q['throughput_error']):>9}")
    if any(name in p and None in (p[name]["wait_share_error"], p[name]["throughput_error"])
           for name in MODEL_TITLES) or 100 * m["wait_share"] < 0.005:
        lines.append("  (n/a: the measurement is 0 or shown as 0.00, so there is no relative error)")
    return "\n".join(lines)



def prediction_table(entries: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per (label, predicted object): the measured wait share of the predicted
    lock class beside each model's, with relative errors; then the throughputs."""
    err = _err
    head = (f"{'point':<28} {'lock':<9} {'wait %':>7} {'M/M/1//N':>9} {'error':>8} "
            f"{'ticket':>7} {'error':>8} {'throughput':>11} {'M/M/1//N':>10} {'error':>8}")
    lines = [head, "-" * len(head)]
    for label, p in entries:
        rm, tk = p["repairman"], p.get("ticket")
        tk_wait = f"{100 * tk['wait_share']:.2f}" if tk else "-"
        measured = 100 * p["measured"]["wait_share"]
        tk_err = err(tk["wait_share_error"], measured) if tk else "-"
        lines.append(
            f"{label:<28} {p['lock_class']:<9} {100 * p['measured']['wait_share']:>7.2f} "
            f"{100 * rm['wait_share']:>9.2f} {err(rm['wait_share_error'], measured):>8} {tk_wait:>7} "
            f"{tk_err:>8} {p['measured']['throughput']:>11,.1f} {rm['throughput']:>10,.1f} "
            f"{err(rm['throughput_error']):>8}")
    if any(100 * p["measured"]["wait_share"] < 0.005 for _, p in entries):
        lines.append("(n/a: a wait share of 0 or shown as 0.00 has no relative error)")
    return "\n".join(lines)

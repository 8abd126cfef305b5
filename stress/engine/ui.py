"""Every drawing on the terminal: the live per-CPU view of a run, a run's status line, the
phase lines of its silent parts, scan's walk counter and a sweep's progress bar.

The live view shows what each CPU is doing, and the locks they pile up on.

It reads only what comes with each runner ``Tick``: the parent's copy of the per-CPU
slots and, when the tick carries them, ``now_ns``, ``owners`` (a copy of each waited
lock's owner word) and ``lock_names`` (a ``lock_namer``).  It never takes a lock and never
touches the segment, so watching cannot change what it watches.

A copy of the slots is not atomic: a CPU can be caught between writing ``state`` and
``wait_lock``::

    CPU 3 (in CpuLocks.lock_contended)      parent (np.array(cpu_arr))
    wait_lock = w                       copies slot 3: state = work, wait_lock = w
    state_since_ns = t0
    state = wait                        ... the next tick sees state = wait

so every field is read defensively: a lock is named only from a slot whose ``state``
agrees (wait with ``wait_lock`` >= 0, walk with ``hold_lock`` >= 0), and a time in the
future of "now" (the slot was copied after "now" was read) counts as 0.

Times: workers stamp ``state_since_ns`` with ``time.perf_counter_ns()``, CLOCK_MONOTONIC,
one clock for every process on the machine; "now" is the tick's ``now_ns`` when the
runner provides it (read when the slots were copied), else our own perf_counter_ns().

Drawing is plain ANSI: move the cursor up over the previous frame (``ESC [ n F``), clear
and rewrite each line (``ESC [ 2 K``), clear what is left below (``ESC [ J``).  Lines are
cut to the terminal's width, since a wrapped line would throw the cursor arithmetic off,
and CPUs beyond the terminal's height are folded into one summary line.
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from shared_model.layout import CPU_STATE, OWNER_WORD, LockNamer, lock_namer
from shared_model.locking.common import owner_cpu, owner_pid

from .results import STDOUT

__all__ = ["OWNER_WORD", "LiveView", "lock_namer"]

PROG = "rmap-stress"
STATE_NAME = {v: k for k, v in CPU_STATE.items()}
WAIT, WALK = CPU_STATE["wait"], CPU_STATE["walk"]
IOWAIT = CPU_STATE.get("iowait", -1)
FALLBACK_SIZE = (80, 24)
# A waited lock that has read as wedged (``locking.lock_is_wedged``) at every tick for this
# long is named so: a hand-off in flight reads so for microseconds, a CPU that died queued
# (its ticket, MCS node or pending bit never taken) for good.
WEDGED_SHOW_S = 1.0  # columns, lines of a terminal that reports 0 x 0


def _ms(ns: int) -> str:
    ms = max(ns, 0) / 1e6
    if ms < 1:
        return f"{ms * 1000:.0f} us"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 10_000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.0f} s"


class LiveView:
    """Draws one frame per ``update`` (at most every ``interval_s``) on ``stream``.

    ``render`` draws nothing: the same tick, names and now give the same lines (it only
    adopts the tick's lock namer the first time, when it was given none)."""

    def __init__(self, stream: TextIO | None = None, lock_names: LockNamer | None = None,
                 label: str = "", interval_s: float = 0.25, max_locks: int = 5,
                 size: tuple[int, int] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.lock_names = lock_names
        self.label = label
        self.interval_s = interval_s
        self.max_locks = max_locks
        self.size = size  # (columns, lines); None: ask the terminal at each frame
        self._drawn = 0
        self._last = -float("inf")

    # ------------------------------------------------------------------ pure part

    def name(self, w: int) -> str:
        return self.lock_names(w) if self.lock_names else f"lock@{w}"

    def _adopt(self, tick: Any) -> None:
        """Take the tick's lock namer (the runner's, built from the segment map) when we
        were given none."""
        if self.lock_names is None:
            self.lock_names = getattr(tick, "lock_names", None)

    def render(self, tick: Any, now_ns: int | None = None,
               max_cpu_lines: int | None = None) -> list[str]:
        """The frame for ``tick``: a header, the hottest locks, one line per CPU.

        ``now_ns`` defaults to the tick's ``now_ns``, else perf_counter_ns().  With
        ``max_cpu_lines``, CPUs past it are summed up in one line."""
        self._adopt(tick)
        cpu = tick.cpu
        if now_ns is None:
            now_ns = getattr(tick, "now_ns", None) or time.perf_counter_ns()
        owners: dict[int, int] = getattr(tick, "owners", None) or {}
        wedged: dict[int, float] = getattr(tick, "wedged", None) or {}
        n = len(cpu)
        state = cpu["state"].astype(np.int64)
        since = cpu["state_since_ns"].astype(np.int64)
        wait_lock = np.where(state == WAIT, cpu["wait_lock"], -1)
        hold_lock = np.where(state == WALK, cpu["hold_lock"], -1)
        # A walker that waits on a nested ptl still holds its rmap lock: hold_lock names it.
        holds = cpu["hold_lock"]
        age = np.maximum(now_ns - since, 0)

        waiting = int((wait_lock >= 0).sum())
        walks = int(cpu["walks"].sum())
        avg = int(cpu["visited"].sum()) / walks if walks else 0.0
        label = f"{self.label}: " if self.label else ""
        head = (f"{label}{tick.elapsed:5.1f}/{tick.duration:g} s  "
                f"{waiting}/{n} CPUs waiting on a lock  walks {walks}  avg {avg:.1f} entries  "
                f"pages scanned {int(cpu['pages_scanned'].sum())}")
        if cpu.dtype.names and "t_iowait_ns" in cpu.dtype.names:
            # top's wa: CPUs idle in iowait now, and the share of their run time so far.
            total = int(cpu["t_total_ns"].sum()) or max(int(tick.elapsed * 1e9), 1) * n
            head += (f"  iowait {int((state == IOWAIT).sum())}/{n} CPUs "
                     f"({100 * int(cpu['t_iowait_ns'].sum()) / total:.0f}% wa)")
        lines = [head]

        waiters: dict[int, list[int]] = collections.defaultdict(list)
        for waiter in np.flatnonzero(wait_lock >= 0):
            waiters[int(wait_lock[waiter])].append(int(waiter))
        # Most waiters first, then the longest wait.
        hot = sorted(waiters.items(),
                     key=lambda kv: (-len(kv[1]), -max(age[c] for c in kv[1]), kv[0]))
        for w, ws in hot[: self.max_locks]:
            line = self._lock_line(w, ws, cpu, holds, hold_lock, age, owners)
            if wedged.get(w, 0.0) >= WEDGED_SHOW_S:
                line += f"  WEDGED for {wedged[w]:.0f} s (a CPU died queued for it?)"
            lines.append("  " + line)
        if len(hot) > self.max_locks:
            rest = hot[self.max_locks:]
            lines.append(f"  ... {len(rest)} more locks, {sum(len(ws) for _, ws in rest)} waiters")

        shown = n if max_cpu_lines is None else max(0, min(n, max_cpu_lines))
        if shown < n:
            shown = max(0, shown - 1)  # room for the summary line
        for c in range(shown):
            lines.append(self._cpu_line(c, cpu[c], int(wait_lock[c]), int(hold_lock[c]),
                                        int(age[c])))
        if shown < n:
            counts = collections.Counter(STATE_NAME.get(int(s), str(int(s))) for s in state[shown:])
            lines.append(f"  ... cpu{shown}-cpu{n - 1}: "
                         + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
        return lines

    def _lock_line(self, w: int, ws: list[int], cpu: np.ndarray, holds: np.ndarray,
                   hold_lock: np.ndarray, age: np.ndarray, owners: dict[int, int]) -> str:
        longest = max(int(age[c]) for c in ws)
        tail = f"{len(ws)} waiter{'s' if len(ws) != 1 else ''}, longest wait {_ms(longest)}"
        walker = np.flatnonzero(hold_lock == w)
        if len(walker):
            h = int(walker[0])
            return f"{self.name(w)} held by cpu{h} for {_ms(int(age[h]))}, {tail}"
        holder = np.flatnonzero(holds == w)
        if len(holder):  # holds it through a walk, itself waiting on a nested lock
            h = int(holder[0])
            return f"{self.name(w)} held by cpu{h} (itself waiting), {tail}"
        tag = owners.get(w, 0)
        if tag:
            return f"{self.name(w)} held by cpu{owner_cpu(tag)} (pid {owner_pid(tag)}), {tail}"
        # No CPU is recorded as holding it: released between the two reads, or taken by a
        # lock primitive that records no owner.
        return f"{self.name(w)} held by ? (holder not recorded), {tail}"

    def _cpu_line(self, c: int, slot: Any, wait_lock: int, hold_lock: int, age: int) -> str:
        # state_since_ns is stamped when a wait or a walk begins, not when a CPU goes back
        # to work: only those two states get a duration.
        st = int(slot["state"])
        if wait_lock >= 0:
            what = f"waiting on {self.name(wait_lock)} for {_ms(age)}"
            if int(slot["hold_lock"]) >= 0:
                what += f", holding {self.name(int(slot['hold_lock']))}"
        elif hold_lock >= 0:
            what = f"walking under {self.name(hold_lock)} for {_ms(age)}"
        elif st == IOWAIT:  # every job of this CPU waits for the swap device
            what = f"iowait for {_ms(age)} (swap device)"
        else:
            what = STATE_NAME.get(st, f"state {st}")
        walks = int(slot["walks"])
        avg = int(slot["visited"]) / walks if walks else 0.0
        return (f"cpu{c:<3} pid {int(slot['pid']):<7} {what:<48} walks {walks:<8} "
                f"avg {avg:6.1f}  scanned {int(slot['pages_scanned'])}")

    # ------------------------------------------------------------------ drawing

    def _terminal_size(self) -> tuple[int, int]:
        """The stream's size; 80 x 24 for a dimension it reports as 0 (a pty nobody sized,
        as under ``script`` or a CI runner), where a frame would be one character wide."""
        if self.size:
            return self.size
        try:
            sz = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            sz = shutil.get_terminal_size()
        return sz.columns or FALLBACK_SIZE[0], sz.lines or FALLBACK_SIZE[1]

    def update(self, tick: Any, lock_names: LockNamer | None = None) -> None:
        """Redraw for ``tick`` unless the last frame is younger than ``interval_s``."""
        if lock_names is not None:
            self.lock_names = lock_names
        t = time.monotonic()
        if t - self._last < self.interval_s:
            return
        self._last = t
        cols, rows = self._terminal_size()
        waited = tick.cpu["wait_lock"][tick.cpu["state"] == WAIT]
        nlocks = min(self.max_locks + 1, len(np.unique(waited[waited >= 0])))
        lines = self.render(tick, max_cpu_lines=max(1, rows - 2 - nlocks))
        self.draw([ln[: max(cols - 1, 1)] for ln in lines])

    def draw(self, lines: list[str]) -> None:
        """Replace the previous frame with ``lines``."""
        out = [f"\033[{self._drawn}F"] if self._drawn else []
        out += [f"\033[2K{ln}\n" for ln in lines]
        out.append("\033[J")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(lines)

    def close(self, clear: bool = False) -> None:
        """End the view: leave the last frame on screen, or erase it (``clear``)."""
        if clear and self._drawn:
            self.stream.write(f"\033[{self._drawn}F\033[J")
            self.stream.flush()
        self._drawn = 0


def say_from_handler(line: str) -> None:
    """One line on stderr from a signal handler: os.write, no buffered stream (a handler
    that interrupted a write to sys.stderr must not write to it again)."""
    try:
        os.write(2, f"\r\033[K{PROG}: {line}\n".encode() if os.isatty(2) else f"{PROG}: {line}\n".encode())
    except OSError:
        pass


def wrote(path: str) -> None:
    """Every file written is reported, once, after it was written; standard output is named."""
    print(f"wrote {path}" if path != STDOUT else "wrote the document to standard output", flush=True)


def live_views(live: bool) -> Callable[[str], Callable[[Any], None]] | None:
    """A sweep's ``--live`` on a terminal: a live view for each point (its ``update``, from
    the point's label); None otherwise."""
    if not (live and sys.stderr.isatty()):
        return None
    return lambda label: LiveView(sys.stderr, label=label).update


def run_progress(quiet: bool, label: str, live: bool = False) -> Any:
    """A run's progress: the live view (``live`` on a terminal), else a status line redrawn
    in place on a terminal or written every 5 s to a log; None with ``quiet``."""
    if quiet:
        return None
    tty = sys.stderr.isatty()
    if live and tty:
        return LiveView(sys.stderr, label=label)
    last = [0.0]

    def on_tick(t: Any) -> None:
        if not tty and t.elapsed - last[0] < 5:
            return
        last[0] = t.elapsed
        waiting = int((t.cpu["state"] == 3).sum())
        line = (f"{label}: {t.elapsed:5.1f}/{t.duration:.0f} s  walks {int(t.cpu['walks'].sum())}  "
                f"pages scanned {int(t.cpu['pages_scanned'].sum())}  jobs {int(t.cpu['jobs'].sum())}  "
                f"cpus waiting on a lock: {waiting}/{len(t.cpu)}")
        sys.stderr.write(("\r" + line + "\033[K") if tty else line + "\n")
        sys.stderr.flush()

    return on_tick


def phase_line(quiet: bool, live: bool = False) -> Any:
    """On a terminal, one line for each silent phase of a run: "building the model ... 40%",
    "starting 256 CPUs ... 87/256", "checking the model ...".  None otherwise."""
    if quiet or not sys.stderr.isatty():
        return None

    def on_phase(phase: str, done: int, total: int) -> None:
        if phase == "build":
            line = f"building the model ... {100 * done // max(total, 1)}%"
        elif phase == "start":
            line = f"starting {total} CPUs ... {done}/{total}"
        elif phase == "stop":
            line = f"stopping: {done}/{total} CPUs at a boundary"
        elif done < total:
            line = "checking the model ..."
        else:
            line = ""
        sys.stderr.write("\r" + line + "\033[K")
        sys.stderr.flush()

    return on_phase


def end_progress(quiet: bool) -> None:
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")


def scan_progress(quiet: bool) -> Any:
    """On a terminal: building, then walks k/N."""
    on_phase = phase_line(quiet)
    if on_phase is None:
        return None

    def progress(phase: str, done: int, total: int) -> None:
        if phase in ("walk", "generation"):
            sys.stderr.write(f"\r{phase}s {done}/{total}\033[K" if done < total else "\r\033[K")
            sys.stderr.flush()
        else:
            on_phase(phase, done, total)

    return progress


class ProgressBar:
    """points done / total with an ETA, redrawn in place on a terminal; without one (a log
    file, CI), one plain line at a point's start at most every ``every_s`` seconds, and
    the last one, so a long sweep is never silent for its whole length."""

    def __init__(self, stream: Any = sys.stderr, width: int = 30, every_s: float = 5.0) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.every_s = every_s
        self.last: float | None = None

    def __call__(self, done: int, total: int, label: str, elapsed: float) -> None:
        if not self.tty:
            if done < total and self.last is not None and elapsed - self.last < self.every_s:
                return
            self.last = elapsed
            what = f"point {done + 1}/{total}: {label}" if done < total else f"{done}/{total} points {label}"
            self.stream.write(f"rmap-stress: {what}  (elapsed {elapsed:.0f} s)\n")
            self.stream.flush()
            return
        frac = done / total if total else 1.0
        eta = elapsed / done * (total - done) if done else math.nan
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        eta_s = "?" if math.isnan(eta) else f"{int(eta) // 60}m{int(eta) % 60:02d}s"
        end = "\n" if done == total else ""
        self.stream.write(f"\r[{bar}] {done}/{total} {label}  elapsed {elapsed:.0f}s  ETA {eta_s}\033[K{end}")
        self.stream.flush()

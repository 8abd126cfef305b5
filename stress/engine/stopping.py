"""Signals between the runs of a long command (ramp, scale, demo, story): the command
stops, keeps what it measured and writes it, and exits 128 + the signal.

During a run the runner's own handlers are in charge (the first signal stops that run,
which comes back as RunInterrupted with its partial results, and from then on signals are
ignored: the process is on its way out).  Between runs, or before a run's handlers are in
place, ``stop_on_signals`` turns SIGINT, SIGTERM and SIGHUP into ``Stopped``, raised where
the command is: it ends its loop there, as it would on RunInterrupted, with no partial
figures for the point that had not started measuring.  The first signal is the one that
counts; any later one is ignored, so that writing the results cannot be interrupted::

    timeout                      rmap-stress ramp (between points)
    kill(child, SIGINT)          Stopped: the loop ends, signals ignored from here on
    kill(group, SIGINT)          ignored: the document is written, exit 130
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .config import RunConfig
from .runner import RunFailed, RunInterrupted, run

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A signal arrived between runs (BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def ignore_signals() -> None:
    """From here on the command is writing what it has: further signals are ignored."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Signals raise Stopped while the block runs; the handlers before it come back at its
    end unless a signal came (then they stay ignored: the process is stopping)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        came.append(signum)
        ignore_signals()
        raise Stopped(signum)

    saved = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    except Stopped:
        ignore_signals()
        raise
    finally:
        if not came and signal.getsignal(signal.SIGINT) is handler:
            for sig, h in saved.items():
                signal.signal(sig, h)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def status_of(name: str | None) -> int:
    """The exit status of a document ``interrupted`` by the signal ``name``: 128 + its
    number (130 for SIGINT, 143 for SIGTERM); 0 when it was not interrupted."""
    if not name:
        return 0
    try:
        return 128 + int(signal.Signals[name])
    except KeyError:
        return 130


def sweep_until_signal(sweep: Callable[[], None], stop: dict[str, str]) -> None:
    """Run ``sweep`` (ramp's or scale's points) with signals raising Stopped; a signal
    between points sets ``stop["interrupted"]`` (nothing of the next point was measured).
    Shared by ramp and scale."""
    try:
        with stop_on_signals():
            sweep()
    except Stopped as e:
        stop.setdefault("interrupted", signal_name(e.signum))


def run_point(cfg: RunConfig, live: Callable[[str], Callable[[Any], None]] | None, label: str,
              stop: dict[str, str], **kw: Any) -> dict[str, Any] | None:
    """One point's run: its results; on a signal or a failure the partial results (None when
    nothing was measured), with ``stop`` set to {"interrupted": signal} or {"failed": why}.
    Shared by ramp and scale."""
    try:
        if live:
            return run(cfg, on_tick=live(label), tick_s=0.25, **kw)
        return run(cfg, **kw)
    except RunInterrupted as e:
        stop["interrupted"] = signal_name(e.signum)
        return e.results
    except Stopped as e:
        stop["interrupted"] = signal_name(e.signum)
        return None
    except RunFailed as e:
        stop["failed"] = str(e).splitlines()[0]
        return e.results


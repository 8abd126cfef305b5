"""Shared fixtures: models built for a test and always checked and unlinked afterwards, and
the leak check every test runs under.

``make_model`` builds a ``Model`` sized by ``family_capacities`` (or given explicit
``Capacities``).  At teardown it runs ``check_model`` on every model it made, unless the
test opted out because it corrupts the model on purpose, then closes and unlinks the
segment.

The leak check (``nothing_left_behind``, autouse, and once more for the whole session)
compares, before and after, two things that belong to this pytest process only, so other
runs on the same machine neither fool nor trip it:

* processes: the live descendants of this process.  pytest is made a child subreaper
  (PR_SET_CHILD_SUBREAPER), so a CPU worker or resource tracker orphaned by a killed CLI
  run is re-parented here and still counts, instead of vanishing under init;
* /dev/shm: entries named ``rmap-stress-<pid>-...`` whose pid is this process or one of the
  processes the tests started (every ``subprocess.Popen`` is recorded).

A leftover gets a grace period (a SIGKILLed run's tracker needs a moment to unlink) and
then fails the test that left it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psutil
import pytest

from shared_model.build import family_capacities
from shared_model.invariants import check_model
from shared_model.layout import Capacities
from shared_model.model import Model

# The helpers several test files share, importable as ``_helpers`` (``--import-mode=importlib``
# gives test modules no package to import siblings from).  Appended, not prepended: the
# folders tests/shared_model and tests/stress must never shadow the real packages.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))
from _helpers.children import spawn  # noqa: F401 - a fixture for every test

SHM_PREFIX = "rmap-stress-"
LEAK_GRACE_S = 10.0
PR_SET_CHILD_SUBREAPER = 36

STARTED: set[int] = set()  # pids of every process a test started through subprocess


def _record_popen() -> None:
    """Wrap ``subprocess.Popen.__init__`` (``run`` and ``check_output`` use it) to record pids."""
    init = subprocess.Popen.__init__
    if getattr(init, "_records_pids", False):
        return

    def recording_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        STARTED.add(self.pid)

    recording_init._records_pids = True  # type: ignore[attr-defined]
    subprocess.Popen.__init__ = recording_init  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _record_popen()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _own_tracker() -> int | None:
    """This process's multiprocessing resource tracker: it lives as long as pytest does."""
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_pid", None)


def _reap_orphans() -> None:
    """Reap re-parented orphans that died (zombies nobody else will wait for): never a
    process a test started (its Popen object waits for it) nor our resource tracker."""
    keep = STARTED | {_own_tracker()}
    for child in psutil.Process().children():
        try:
            if child.pid not in keep and child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass


def live_descendants() -> set[int]:
    """Live (not zombie) descendants of this process, its own resource tracker excepted."""
    _reap_orphans()
    out = set()
    tracker = _own_tracker()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid != tracker and p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.Error:
            pass
    return out


def own_segments() -> set[str]:
    """/dev/shm entries named after this process or after a process a test started."""
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX)]
    except FileNotFoundError:
        return set()
    pids = {str(os.getpid())} | {str(p) for p in STARTED}
    return {n for n in names if n[len(SHM_PREFIX):].split("-")[0] in pids}


def leaks(procs_before: set[int], shm_before: set[str], grace_s: float = LEAK_GRACE_S) -> list[str]:
    """What is alive or in /dev/shm now that was not before, after up to ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while True:
        procs = live_descendants() - procs_before
        shm = own_segments() - shm_before
        if (not procs and not shm) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out = []
    for pid in sorted(procs):
        try:
            out.append(f"process {pid} still running: {' '.join(psutil.Process(pid).cmdline())}")
        except psutil.Error:
            pass
    out += [f"/dev/shm/{n} left behind" for n in sorted(shm)]
    return out


class LeakCheck:
    """The leak check's parts, for the test that checks the check."""

    live_descendants = staticmethod(live_descendants)
    own_segments = staticmethod(own_segments)
    leaks = staticmethod(leaks)


@pytest.fixture
def leak_check() -> type[LeakCheck]:
    return LeakCheck


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind_by_the_session() -> Iterator[None]:
    procs, shm = live_descendants(), own_segments()
    yield
    assert leaks(procs, shm) == []


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    procs, shm = live_descendants(), own_segments()
    yield
    assert leaks(procs, shm) == []


class MakeModel(Protocol):
    def __call__(
        self,
        era: str,
        users: int = ...,
        pages: int = ...,
        cow: float = ...,
        cpus: int = ...,
        *,
        spare_users: int = ...,
        caps: Capacities | None = ...,
        lock_kind: str | None = ...,
        check: bool = ...,
    ) -> Model: ...


@pytest.fixture
def make_model() -> Iterator[MakeModel]:
    """Factory: ``make_model(era, users=, pages=, cow=, cpus=1)`` -> a fresh Model.

    ``check=False`` opts that model out of the teardown ``check_model`` (for tests that
    corrupt it deliberately); ``caps`` overrides the family-sized capacities."""
    made: list[tuple[Model, bool]] = []

    def factory(
        era: str,
        users: int = 0,
        pages: int = 1,
        cow: float = 0.0,
        cpus: int = 1,
        *,
        spare_users: int = 0,
        caps: Capacities | None = None,
        lock_kind: str | None = None,
        check: bool = True,
    ) -> Model:
        if caps is None:
            caps = family_capacities(era, users, pages, cow, cpus, spare_users)
        m = Model.create(caps, era, lock_kind=lock_kind, entry_cost_ns=0)
        made.append((m, check))
        return m

    yield factory

    problems: list[str] = []
    for m, check in made:
        try:
            if check:
                violations = check_model(m)
                if violations:
                    problems.append(f"{m!r}: {violations}")
        except Exception as e:  # noqa: BLE001 - reported below; every segment still goes
            problems.append(f"check_model raised {e!r}")
        finally:
            seg = m.seg
            m.close()
            seg.unlink()
    assert problems == [], "check_model found violations at teardown"

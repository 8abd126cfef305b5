"""Lock torture, as the kernel's locktorture: compiled loops that exercise one lock, and
``LockLab``, a shared mapping plus forked processes to run them in.  The tests and
scripts/bench_locks.py are built on it.  ``torture_hammer`` takes each lock whole
(``lock_acquire``); ``torture_request`` takes it as the model does, the request (the place
in the lock's order) then the wait, giving places up now and then, with holds long enough
for the era rules to act (the pending bit, 3.9's steal behind a writer, spinning on a
running owner, 6.0's hand-off bit), and counts which of them it went through.

Each loop does its critical section as a plain (non-atomic) read-modify-write of a shared
counter word: if two holders ever overlap, increments are lost and the total comes out
short.

``LockLab``'s mapping is anonymous and MAP_SHARED (no /dev/shm entry to leak); children
are ``os.fork`` children that inherit it, as the stress workers do.  Orderings between
processes go through the shared words (a child's arrival shows in the lock's own state),
never through sleeps; the only clock is a generous deadline that turns a hang into a
failure (``LabDeadline``) saying what was awaited and what the lab held at that moment:
the lock record, the log, the status words, and each child's state.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .atomics import READ_ONCE, WRITE_ONCE, atomic_fetch_add, clock_ns, cmpxchg, cpu_relax
from .cached_compile import cached_njit
from .common import LOCK_STOPPED, NODE_BLOCK_WORDS, OWNER, QSPINLOCK, RWSEM, TICKET
from .lock import lock_acquire, lock_release, lock_trylock
from .qspinlock import (
    LOCKED_VAL,
    PLACE_PENDING,
    queued_spin_abandon,
    queued_spin_request,
    queued_spin_wait,
)
from .rwsem import rwsem_request, rwsem_wait_queued
from .rwsem_queue import COUNT, HANDOFF, WAITERS, rwsem_abandon
from .ticket import NEXT as TICKET_NEXT
from .ticket import SERVING as TICKET_SERVING
from .ticket import ticket_abandon, ticket_lock_slowpath


@cached_njit
def torture_hammer(
    words: np.ndarray,
    w: int,
    kind: int,
    policy: int,
    shared: int,
    owner_tag: int,
    node_w: int,
    stop_w: int,
    counter_w: int,
    loops: int,
) -> int:
    """``loops`` times: take the lock, increment ``words[counter_w]`` non-atomically,
    release.  Returns how many were done (fewer only when stopped)."""
    for done in range(loops):
        if lock_acquire(words, w, kind, policy, shared, owner_tag, node_w, stop_w) == LOCK_STOPPED:
            return done
        words[counter_w] = words[counter_w] + 1
        lock_release(words, w, kind, policy, shared, node_w)
    return loops


@cached_njit
def torture_pair_ns(
    words: np.ndarray,
    w: int,
    kind: int,
    policy: int,
    shared: int,
    owner_tag: int,
    node_w: int,
    stop_w: int,
    loops: int,
) -> int:
    """Nanoseconds for ``loops`` acquire+release pairs of the lock (no critical section)."""
    start = clock_ns()
    for _ in range(loops):
        lock_acquire(words, w, kind, policy, shared, owner_tag, node_w, stop_w)
        lock_release(words, w, kind, policy, shared, node_w)
    return clock_ns() - start


@cached_njit
def torture_reader(
    words: np.ndarray,
    w: int,
    policy: int,
    node_w: int,
    stop_w: int,
    counter_w: int,
    loops: int,
    reads: int,
) -> int:
    """``loops`` times: take an rwsem's read side and read the counter ``reads`` times;
    returns how many holds saw it change (a writer got in beside a reader), or -1 if
    stopped."""
    torn = 0
    for _ in range(loops):
        if lock_acquire(words, w, RWSEM, policy, 1, 0, node_w, stop_w) == LOCK_STOPPED:
            return -1
        first = words[counter_w]
        for _ in range(reads):
            if READ_ONCE(words, counter_w) != first:
                torn += 1
                break
        lock_release(words, w, RWSEM, policy, 1, node_w)
    return torn


# torture_request's statistics, words from its ``stats_w``.
ST_FAST = 0  # requests that took the lock at once
ST_PENDING = 1  # requests whose place was a qspinlock's pending bit
ST_NODE = 2  # requests whose place was a ticket, an MCS node or an rwsem wait-list node
ST_NO_PLACE = 3  # contended requests that took no place (a mutex; a spinning rwsem writer)
ST_GIVEN_UP = 4  # places given up before their wait (and the lock asked for again)
ST_HANDOFF = 5  # holds during which an rwsem's HANDOFF bit was set (6.0)
ST_QUEUED_BEHIND = 6  # holds taken while rwsem waiters were queued (a steal, or a grant)
ST_TORN = 7  # read holds that saw the counter change (a writer beside a reader)
ST_WORDS = 8


@cached_njit
def _request(words: np.ndarray, w: int, kind: int, policy: int, shared: int, owner_tag: int,
             node_w: int) -> int:
    """The request as the model takes it (``lock_request.lock_request_place``, without the CPU's
    geometry table): 0 if taken, a place (> 0) to wait on or give up, or -1 for none."""
    if kind == TICKET:
        ticket = atomic_fetch_add(words, w + TICKET_NEXT, 1)
        return 0 if READ_ONCE(words, w + TICKET_SERVING) == ticket else ticket + 1
    if kind == QSPINLOCK:
        if cmpxchg(words, w, 0, LOCKED_VAL) == 0:
            return 0
        return queued_spin_request(words, w, node_w)
    if kind == RWSEM:
        return rwsem_request(words, w, policy, shared, owner_tag, node_w)
    return 0 if lock_trylock(words, w, kind, policy, shared, owner_tag) else -1


@cached_njit
def _give_up(words: np.ndarray, w: int, kind: int, policy: int, node_w: int, place: int) -> None:
    if kind == TICKET:
        ticket_abandon(words, w, place - 1)
    elif kind == QSPINLOCK:
        queued_spin_abandon(words, w, node_w, place)
    else:
        rwsem_abandon(words, w, policy, node_w, place)


@cached_njit
def _wait(words: np.ndarray, w: int, kind: int, policy: int, node_w: int, place: int,
          stop_w: int) -> int:
    if kind == TICKET:
        return ticket_lock_slowpath(words, w, place - 1, stop_w)
    if kind == QSPINLOCK:
        return queued_spin_wait(words, w, node_w, place, stop_w)
    return rwsem_wait_queued(words, w, policy, node_w, place, stop_w)


@cached_njit
def _hold(words: np.ndarray, w: int, kind: int, exclusive: bool, counter_w: int, hold_ns: int,
          stats_w: int) -> None:
    """torture_request's critical section, ``hold_ns`` long."""
    if kind == RWSEM and READ_ONCE(words, w + WAITERS) > 0:
        words[stats_w + ST_QUEUED_BEHIND] += 1
    before = READ_ONCE(words, counter_w)
    t0 = clock_ns()
    saw_handoff = False
    while clock_ns() - t0 < hold_ns:
        if kind == RWSEM and READ_ONCE(words, w + COUNT) & HANDOFF:
            saw_handoff = True
        cpu_relax()
    if saw_handoff:
        words[stats_w + ST_HANDOFF] += 1
    if exclusive:
        words[counter_w] = before + 1
    elif READ_ONCE(words, counter_w) != before:
        words[stats_w + ST_TORN] += 1


@cached_njit
def torture_request(
    words: np.ndarray,
    w: int,
    kind: int,
    policy: int,
    shared: int,
    owner_tag: int,
    node_w: int,
    stop_w: int,
    counter_w: int,
    loops: int,
    hold_ns: int,
    give_up_every: int,
    ready_w: int,
    stats_w: int,
) -> int:
    """``torture_hammer`` through the request point, as the model takes its locks: the
    request (the place taken in compiled code: a ticket, a qspinlock's pending bit or MCS
    node, an rwsem's wait-list node; none for a mutex or a spinning rwsem writer, whose
    wait is then the whole slow path), then the wait on that place; the first contended
    request's place and every ``give_up_every``-th one after are given up instead (as a
    walk that no longer needs the lock) and the lock asked for again.  Each hold lasts
    ``hold_ns`` (so that waiters sleep, spin on a running owner, or time out into 6.0's
    hand-off); a writer increments the counter non-atomically, a reader checks it stays
    put.  ``words[ready_w]`` is incremented once the first request has returned (the
    parent may hold the lock until every child has asked).  Statistics (ST_*) at
    ``stats_w``.  Returns the holds done (fewer only when stopped)."""
    exclusive = not (kind == RWSEM and shared)
    done = 0
    contended = 0
    first = True
    while done < loops:
        place = _request(words, w, kind, policy, shared, owner_tag, node_w)
        if first:
            atomic_fetch_add(words, ready_w, 1)
            first = False
        if place == 0:
            words[stats_w + ST_FAST] += 1
            status = 0
        elif place < 0:
            words[stats_w + ST_NO_PLACE] += 1
            status = lock_acquire(words, w, kind, policy, shared, owner_tag, node_w, stop_w)
            if status == LOCK_STOPPED:
                return done
        else:
            if kind == QSPINLOCK and place == PLACE_PENDING:
                words[stats_w + ST_PENDING] += 1
            else:
                words[stats_w + ST_NODE] += 1
            contended += 1
            if contended == 1 or (give_up_every > 0 and contended % give_up_every == 0):
                _give_up(words, w, kind, policy, node_w, place)
                words[stats_w + ST_GIVEN_UP] += 1
                continue
            if _wait(words, w, kind, policy, node_w, place, stop_w) == LOCK_STOPPED:
                return done
        if exclusive and place >= 0:
            WRITE_ONCE(words, w + OWNER, owner_tag)
        _hold(words, w, kind, exclusive, counter_w, hold_ns, stats_w)
        lock_release(words, w, kind, policy, shared, node_w)
        done += 1
    return done


@dataclass(frozen=True)
class LabLayout:
    """Word indices in the lab's mapping, each thing on its own cache line."""

    stop: int = 0  # the run's stop word
    watchdog: int = 7  # set by the lab's watchdog when it stopped everybody
    lock: int = 8  # the lock record (8 words)
    counter: int = 16  # incremented non-atomically under the lock
    log_len: int = 24  # entries in ``log``
    log: int = 32  # acquisition order, 32 entries
    status: int = 64  # one result per child, 32 entries
    stops: int = 96  # a private stop word per CPU, 8 words apart, 12 CPUs
    nodes: int = 192  # per-CPU node blocks, NODE_BLOCK_WORDS each, 16 CPUs
    lock2: int = 192 + 16 * NODE_BLOCK_WORDS  # a second lock record
    ready: int = 200 + 16 * NODE_BLOCK_WORDS  # torture_request: children past their request
    stats: int = 208 + 16 * NODE_BLOCK_WORDS  # torture_request: ST_WORDS per CPU, 16 CPUs
    size: int = 208 + 16 * NODE_BLOCK_WORDS + 16 * ST_WORDS

    def stat(self, cpu: int) -> int:
        return self.stats + cpu * ST_WORDS

    def node(self, cpu: int) -> int:
        return self.nodes + cpu * NODE_BLOCK_WORDS

    def own_stop(self, cpu: int) -> int:
        return self.stops + cpu * 8


class LabDeadline(AssertionError):
    """A lab wait that ran out: an assertion failure (a state another process should have
    reached within the deadline was not), whose message says what was awaited and what
    was seen, never a bare timeout."""


def _proc_state(pid: int) -> str:
    """``R``/``S``/``T``/``Z``... from /proc/pid/stat, with the kernel function a sleeper
    waits in (``futex_wait_queue``...), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
    try:
        with open(f"/proc/{pid}/wchan") as fh:
            wchan = fh.read().strip()
    except OSError:
        wchan = ""
    return f"{state} in {wchan}" if wchan and wchan != "0" else state


class LockLab:
    """A shared int64 mapping laid out as ``LabLayout``, and the children forked on it.

    Every wait (``wait_until``, ``join``, ``kill``) is bounded by ``DEADLINE_S`` and fails
    with ``LabDeadline``: what it waited for, what the caller's ``seen`` reports, and
    ``snapshot()``.  A lock taken in this process spins in compiled code no signal
    interrupts; ``watchdog_s`` bounds that too: a watchdog child sets the stop word and
    every per-CPU stop word after that many seconds (the stuck acquire returns
    LOCK_STOPPED, and ``close()`` fails with what the lab held then).  ``close()`` kills
    and reaps every child still running (call it in ``finally``)."""

    DEADLINE_S = 20.0  # generous on a busy 2-core machine: a working hand-off takes milliseconds

    def __init__(self, watchdog_s: float | None = None) -> None:
        self.at = LabLayout()
        self._mapping = mmap.mmap(-1, self.at.size * 8, flags=mmap.MAP_SHARED)
        self.words = np.frombuffer(self._mapping, dtype=np.int64)
        self.running: set[int] = set()
        self._exit_codes: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._watchdog = 0
        self.watchdog_s = watchdog_s
        if watchdog_s is not None:
            self._watchdog = os.fork()
            if self._watchdog == 0:  # pragma: no cover - the watchdog child
                try:
                    time.sleep(watchdog_s)
                    self.words[self.at.watchdog] = 1
                    for cpu in range(12):
                        self.words[self.at.own_stop(cpu)] = 2
                    self.words[self.at.stop] = 2
                finally:
                    os._exit(0)

    @staticmethod
    def tag(cpu: int, pid: int | None = None) -> int:
        """The owner tag of ``cpu`` in process ``pid`` (default: this one)."""
        return (os.getpid() if pid is None else pid) * 4096 + cpu + 1

    def spawn(self, fn: Callable[..., Any], *args: Any) -> int:
        """Fork a child running ``fn(*args)``: exit code 0 if it returned, 1 if it raised."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fn(*args)
                code = 0
            except BaseException:  # noqa: BLE001 - a child exits 1 whatever it raised
                traceback.print_exc(file=sys.stderr)
            finally:
                os._exit(code)
        self.running.add(pid)
        self._names[pid] = getattr(fn, "__name__", repr(fn))
        return pid

    def join(self, pid: int, seen: Callable[[], str] | None = None) -> int:
        """Wait for child ``pid``; its exit code (-signal if killed)."""
        self.wait_until(lambda: self._reaped(pid), f"child {pid} ({self._names.get(pid, '?')}) to exit",
                        seen)
        return self._exit_codes.pop(pid)

    def _reaped(self, pid: int) -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            self.running.discard(pid)
            self._exit_codes[pid] = os.waitstatus_to_exitcode(status)
        return bool(done)

    def kill(self, pid: int) -> int:
        """SIGKILL child ``pid`` and reap it (a zombie's pid still looks alive)."""
        os.kill(pid, signal.SIGKILL)
        return self.join(pid)

    def wait_until(self, cond: Callable[[], bool], what: str, seen: Callable[[], str] | None = None) -> None:
        """Poll ``cond`` (a state another process will reach) for up to ``DEADLINE_S``;
        then fail with ``LabDeadline``: ``what`` was awaited, ``seen()`` (the caller's
        view, if given) and ``snapshot()`` what the lab held."""
        t0 = time.monotonic()
        end = t0 + self.DEADLINE_S
        while not cond():
            if time.monotonic() > end:
                extra = f"; the test saw {seen()}" if seen is not None else ""
                raise LabDeadline(f"waited {time.monotonic() - t0:.1f} s for {what}, in vain{extra}; "
                                  f"the lab held {self.snapshot()}")
            time.sleep(0.0002)

    def snapshot(self) -> str:
        """The lab's state in one line: the lock record's words, stop word, counter, the
        log, the status words that are set, and each child (name, pid, process state,
        or exit code once reaped)."""
        at, w = self.at, self.words
        lock = [int(x) for x in w[at.lock : at.lock + 8]]
        n = int(w[at.log_len])
        log = [int(x) for x in w[at.log : at.log + max(0, min(n, 32))]]
        status = {i: int(w[at.status + i]) for i in range(32) if w[at.status + i]}
        kids = [f"{self._names.get(p, '?')}[{p}]: {_proc_state(p)}" for p in sorted(self.running)]
        kids += [f"{self._names.get(p, '?')}[{p}]: exited {c}" for p, c in sorted(self._exit_codes.items())]
        return (f"lock={lock} stop={int(w[at.stop])} counter={int(w[at.counter])} log={log} "
                f"status={status} children=[{', '.join(kids) or 'none'}]")

    def close(self) -> None:
        """Kill and reap every child (and the watchdog); then, if the watchdog had to stop
        everybody, fail (LabDeadline) with what the lab held when it fired."""
        fired = self._watchdog and self.words[self.at.watchdog] != 0
        held = self.snapshot() if fired else ""
        for pid in list(self.running) + ([self._watchdog] if self._watchdog else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        self.running.clear()
        self._watchdog = 0
        if fired:
            raise LabDeadline(f"the test was still running after {self.watchdog_s} s (a lock taken "
                              "in the test process never came back?): the watchdog set every stop "
                              f"word; the lab held {held}")

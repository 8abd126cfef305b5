"""The request point (issue 20, item 4): a contended ticket lock takes its ticket in
compiled code (``locks.lock_request_fast``), before the request returns to Python; the
wait (``CpuLocks.lock_contended`` -> ``spin_lock_slowpath``) polls that ticket.  So the
order of service is the order of the requests, however late a requester reaches its wait.

Other CPUs are ``os.fork`` children with their own Model (CPU 0 and 1; the test process is
the builder).  Every step is ordered through pipes or the CPU slots' published state, so
nothing depends on timing; a child that cannot go on raises the stop word to 2 and exits,
so that a broken lock fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from shared_model.layout import CPU_STATE
from shared_model.locking.ticket import ticket_state
from shared_model.locks import CLASS, SITE, Stopped, lock_request_cancel, lock_request_fast
from shared_model.model import Model

MakeModel = Callable[..., Model]
AV = CLASS["anon_vma"]
SITE_PR = SITE["page_referenced"]
AV_INDEX = 0
DEADLINE_S = 10.0  # a safety valve against hangs, never an assertion


def _fork(m: Model, cpu: int, body: Callable[[Model], None]) -> int:
    """A child process running ``body`` as CPU ``cpu``; exit code 0 if it returned."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            body(Model(m.seg, m.era, cpu, lock_kind=m.lock_kind))
            code = 0
        except BaseException:  # noqa: BLE001 - any failure: exit code 1, and unblock
            m.header["stop"][0] = 2
        finally:
            os._exit(code)
    return pid


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Child pids; any left unreaped at teardown is killed and reaped."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _join(pid: int, pids: list[int]) -> int:
    _, status = os.waitpid(pid, 0)
    pids.remove(pid)
    return os.waitstatus_to_exitcode(status)


def _until(cond: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < end, "the other process never got there"


def _waiters(m: Model, w: int) -> int:
    return int(ticket_state(m.words, w)[1])


def test_service_follows_the_order_of_request_not_of_reaching_python(
        make_model: MakeModel, children: list[int]) -> None:
    """A requests (in compiled code) first, then B; B reaches its Python wait first while
    A dawdles before its own; the holder releases: A is served first all the same."""
    m = make_model("2.6.34", users=0, pages=1, cpus=2, lock_kind="ticket")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")  # the builder holds it
    order_r, order_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def served(cm: Model, name: bytes, t: int) -> None:
        os.write(order_w, name)  # inside the lock: the writes are in the order of service
        cm.locks.release(w, AV, SITE_PR, t)

    def a(cm: Model) -> None:
        assert lock_request_fast(cm.words, cm.g, cm.locks.held, w, AV, SITE_PR, 0) < 0
        os.write(ready_w, b"r")
        assert os.read(go_r, 1) == b"g"  # slow to reach its wait
        served(cm, b"A", cm.locks.lock_contended(w, AV, SITE_PR))

    def b(cm: Model) -> None:
        served(cm, b"B", cm.locks.acquire(w, AV, SITE_PR))  # request and wait at once

    children.append(_fork(m, 0, a))
    assert os.read(ready_r, 1) == b"r"
    assert _waiters(m, w) == 1  # A's ticket is out
    children.append(_fork(m, 1, b))
    slot = m.seg["cpu"]
    _until(lambda: bool(slot[1]["state"] == CPU_STATE["wait"]))  # B spins in its wait
    assert _waiters(m, w) == 2
    m.anon_vma_unlock(tok)
    os.write(go_w, b"g")
    got = os.read(order_r, 1) + os.read(order_r, 1)
    assert [_join(pid, children) for pid in list(children)] == [0, 0]
    assert got == b"AB"
    assert m.wedged_locks() == []
    assert _waiters(m, w) == 0
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "try_to_unmap"))  # usable
    for fd in (order_r, order_w, ready_r, ready_w, go_r, go_w):
        os.close(fd)


def test_asking_again_polls_the_ticket_already_held(make_model: MakeModel) -> None:
    """A walk that returned to Python and asks again (page_referenced after the compiled
    shrink found the lock busy) takes no second ticket; a request nobody will wait on is
    given up (lock_request_cancel) and the release skips it."""
    m = make_model("2.6.34", users=0, pages=1, cpus=1, lock_kind="ticket")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")  # the builder holds it
    other = Model(m.seg, m.era, 0, lock_kind="ticket")
    for _ in range(3):
        assert lock_request_fast(other.words, other.g, other.locks.held, w, AV, SITE_PR, 0) < 0
        assert _waiters(m, w) == 1
    lock_request_cancel(other.words, other.g)
    lock_request_cancel(other.words, other.g)  # nothing held: nothing done
    m.anon_vma_unlock(tok)
    assert _waiters(m, w) == 0  # the release skipped the given-up ticket
    assert m.wedged_locks() == []
    t = lock_request_fast(other.words, other.g, other.locks.held, w, AV, SITE_PR, 0)
    assert t >= 0
    other.locks.release(w, AV, SITE_PR, t)
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "try_to_unmap"))


def test_requester_stopped_before_its_wait_gives_its_ticket_up(
        make_model: MakeModel, children: list[int]) -> None:
    """A run aborted (stop word 2) between the request and the wait: the wait gives the
    ticket up at once (Stopped), and the lock is not wedged."""
    m = make_model("2.6.34", users=0, pages=1, cpus=1, lock_kind="ticket")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def body(cm: Model) -> None:
        assert lock_request_fast(cm.words, cm.g, cm.locks.held, w, AV, SITE_PR, 0) < 0
        os.write(ready_w, b"r")
        assert os.read(go_r, 1) == b"g"
        try:
            cm.locks.lock_contended(w, AV, SITE_PR)
        except Stopped:
            return
        raise AssertionError("the wait did not stop")

    children.append(_fork(m, 0, body))
    assert os.read(ready_r, 1) == b"r"
    m.header["stop"][0] = 2
    os.write(go_w, b"g")
    assert _join(children[0], children) == 0
    m.header["stop"][0] = 0
    m.anon_vma_unlock(tok)
    assert m.wedged_locks() == []
    assert _waiters(m, w) == 0
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "try_to_unmap"))
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)


def test_requester_killed_before_its_wait_is_named_wedged(
        make_model: MakeModel, children: list[int]) -> None:
    """A CPU killed between its request and its wait dies holding a ticket, as one killed
    in the wait: never silent, the failure report names the lock (wedged_locks)."""
    m = make_model("2.6.34", users=0, pages=1, cpus=1, lock_kind="ticket", check=True)
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    ready_r, ready_w = os.pipe()

    def body(cm: Model) -> None:
        assert lock_request_fast(cm.words, cm.g, cm.locks.held, w, AV, SITE_PR, 0) < 0
        os.write(ready_w, b"r")
        time.sleep(DEADLINE_S)

    children.append(_fork(m, 0, body))
    assert os.read(ready_r, 1) == b"r"
    os.kill(children[0], signal.SIGKILL)
    assert _join(children[0], children) == -signal.SIGKILL
    assert m.wedged_among([w]) == set()  # held: not wedged yet
    m.anon_vma_unlock(tok)
    assert m.wedged_locks() == [f"anon_vma#{AV_INDEX}"]
    assert m.wedged_among([w, w + 1]) == {w}  # what the live view's ticks carry
    for fd in (ready_r, ready_w):
        os.close(fd)

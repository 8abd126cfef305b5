"""The request point: a contended lock takes its place in the lock's order in compiled
code (``locks.lock_request_fast``), before the request returns to Python; the wait
(``CpuLocks.lock_contended`` -> ``spin_lock_slowpath`` / ``rwsem_down_slowpath``) polls
that place.  So the order of service is the order of the requests, however late a
requester reaches its wait.  The place is the kernel's: a ticket (2.6.3x
``__ticket_spin_lock``'s ``xaddw``), a qspinlock's pending bit or MCS node (6.0
``queued_spin_lock_slowpath``: ``queued_fetch_set_pending_acquire``, ``xchg_tail``), an
rwsem's wait-list node (``list_add_tail`` in 3.8/3.9 ``rwsem_down_failed_common``).  A
3.0 mutex takes none: its slow path spins on the owner before it joins the wait list.

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

from shared_model import ctx as G
from shared_model.build import build_family
from shared_model.layout import CPU_STATE
from shared_model.lock_request import lock_request_cancel
from shared_model.locking.lock import lock_state
from shared_model.locking.qspinlock import PENDING_MASK, PLACE_PENDING, TAIL_SHIFT
from shared_model.locks import (
    CLASS,
    SITE,
    Stopped,
    lock_kind,
    lock_request_fast,
    owner_tag,
)
from shared_model.model import Model

MakeModel = Callable[..., Model]
AV = CLASS["anon_vma"]
SITE_PR = SITE["page_referenced"]
AV_INDEX = 0
DEADLINE_S = 10.0  # a safety valve against hangs, never an assertion


def _model(make_model: MakeModel, era: str, cpus: int, kind: str, check: bool = True) -> Model:
    """A model of ``era`` with the rmap lock ``kind``; where the era locks the root
    anon_vma, a one-page family gives anon_vma AV_INDEX its root."""
    m = make_model(era, users=1, pages=1, cpus=cpus, lock_kind=kind,
                   check=check)
    if m.era.lock_root:
        build_family(m, 1, 1, 0.0)
    return m


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
    """Places taken in the lock's order beyond its holder: tickets out, the pending bit
    and MCS nodes, rwsem wait-list nodes."""
    return lock_state(m.words, w, lock_kind(m.lock_kind))[1]


# (era, lock kind) of each primitive whose request takes a place: the ticket spinlock of
# 2.6.3x, 6.0's qspinlock, the rwsem of 3.8 (FIFO) and of 3.9 (steal behind a writer).
PLACED = [("2.6.34", "ticket"), ("6.0", "qspinlock"), ("3.8", "rwsem"), ("3.9", "rwsem")]
PLACED_IDS = ["ticket", "qspinlock", "rwsem-3.8", "rwsem-3.9"]


@pytest.mark.parametrize(("era", "kind"), PLACED, ids=PLACED_IDS)
def test_service_follows_the_order_of_request_not_of_reaching_python(
        make_model: MakeModel, children: list[int], era: str, kind: str) -> None:
    """A requests (in compiled code) first, then B; B reaches its Python wait first while
    A dawdles before its own; the holder releases: A is served first all the same.  (A
    qspinlock's A holds the pending bit and B an MCS node: B, the queue's head, waits for
    the pending bit to clear.  An rwsem's A and B are writers queued in that order.)"""
    m = _model(make_model, era, 2, kind)
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


@pytest.mark.parametrize(("era", "kind"), PLACED, ids=PLACED_IDS)
def test_asking_again_polls_the_place_already_held(make_model: MakeModel, era: str,
                                                   kind: str) -> None:
    """A walk that returned to Python and asks again (page_referenced after the compiled
    shrink found the lock busy) takes no second place; a request nobody will wait on is
    given up (lock_request_cancel) and the release skips it."""
    m = _model(make_model, era, 1, kind)
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")  # the builder holds it
    other = Model(m.seg, m.era, 0, lock_kind=kind)
    for _ in range(3):
        assert lock_request_fast(other.words, other.g, other.locks.held, w, AV, SITE_PR, 0) < 0
        assert other.g[G.REQ_PLACE] != 0
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


@pytest.mark.parametrize(("era", "kind"), PLACED, ids=PLACED_IDS)
def test_requester_stopped_before_its_wait_gives_its_place_up(
        make_model: MakeModel, children: list[int], era: str, kind: str) -> None:
    """A run aborted (stop word 2) between the request and the wait: the wait gives the
    place up at once (Stopped), and the lock is not wedged."""
    m = _model(make_model, era, 1, kind)
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


@pytest.mark.parametrize(("era", "kind"), PLACED, ids=PLACED_IDS)
def test_requester_killed_before_its_wait_is_named_wedged(
        make_model: MakeModel, children: list[int], era: str, kind: str) -> None:
    """A CPU killed between its request and its wait dies holding a place, as one killed
    in the wait: never silent, the failure report names the lock (wedged_locks).  (A
    ticket reads wedged once its ticket is served with nobody to take it; a qspinlock's
    dead pending bit and an rwsem's dead wait-list node at once.)"""
    m = _model(make_model, era, 1, kind, check=kind == "ticket")
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
    if kind == "ticket":
        assert m.wedged_among([w]) == set()  # held: not wedged yet
        m.anon_vma_unlock(tok)
    assert m.wedged_locks() == [f"anon_vma#{AV_INDEX}"]
    assert m.wedged_among([w, w + 1]) == {w}  # what the live view's ticks carry
    for fd in (ready_r, ready_w):
        os.close(fd)


def _request(cm: Model, w: int, shared: int = 0) -> int:
    return lock_request_fast(cm.words, cm.g, cm.locks.held, w, AV, SITE_PR, shared)


def test_qspinlock_places_pending_then_mcs_and_gives_both_up(make_model: MakeModel) -> None:
    """6.0's qspinlock: the first contender's request takes the pending bit (no node), the
    second's an MCS node at the tail (the queue's head, as nobody is ahead); each given
    up (lock_request_cancel) leaves the lock word as it was: the tail cleared by the head
    that leaves, the pending bit cleared by its holder."""
    m = _model(make_model, "6.0", 2, "qspinlock")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    a = Model(m.seg, m.era, 0, lock_kind="qspinlock")
    b = Model(m.seg, m.era, 1, lock_kind="qspinlock")
    assert _request(a, w) < 0 and a.g[G.REQ_PLACE] == PLACE_PENDING
    assert m.words[w] & PENDING_MASK != 0 and m.words[w] >> TAIL_SHIFT == 0
    assert _request(b, w) < 0 and b.g[G.REQ_PLACE] > PLACE_PENDING
    assert m.words[w] >> TAIL_SHIFT != 0  # b's node is the tail
    assert _waiters(m, w) == 2
    lock_request_cancel(b.words, b.g)
    assert m.words[w] >> TAIL_SHIFT == 0 and b.g[G.REQ_PLACE] == 0
    lock_request_cancel(a.words, a.g)
    assert m.words[w] & PENDING_MASK == 0
    m.anon_vma_unlock(tok)
    assert m.words[w] == 0 and _waiters(m, w) == 0
    assert m.wedged_locks() == []
    t = _request(b, w)  # usable, and b's node level is free again
    assert t >= 0
    b.locks.release(w, AV, SITE_PR, t)


def test_qspinlock_node_given_up_behind_the_head_is_skipped(
        make_model: MakeModel, children: list[int]) -> None:
    """A third contender's MCS node behind the head, given up before its wait, is marked
    abandoned: the head that passes the queue on skips it, nobody waits behind it."""
    m = _model(make_model, "6.0", 3, "qspinlock")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    a = Model(m.seg, m.era, 0, lock_kind="qspinlock")
    b = Model(m.seg, m.era, 1, lock_kind="qspinlock")
    c = Model(m.seg, m.era, 2, lock_kind="qspinlock")
    assert _request(a, w) < 0  # pending
    assert _request(b, w) < 0  # the queue's head
    assert _request(c, w) < 0  # behind b
    lock_request_cancel(c.words, c.g)
    lock_request_cancel(a.words, a.g)
    m.anon_vma_unlock(tok)
    # b waits (in this process) for the lock: it is the head, takes it, and the queue
    # it leaves holds only c's abandoned node, which it skips: the tail is cleared.
    t = b.locks.lock_contended(w, AV, SITE_PR)
    assert m.words[w] >> TAIL_SHIFT == 0
    b.locks.release(w, AV, SITE_PR, t)
    assert m.words[w] == 0 and _waiters(m, w) == 0 and m.wedged_locks() == []


def test_mutex_request_takes_no_place(make_model: MakeModel) -> None:
    """3.0's mutex: the request is the fast path alone (``__mutex_fastpath_lock``'s
    ``decl``); the slow path spins on the owner, then joins the wait list, so a failed
    request holds nothing and leaves nothing to give up; the wait then takes the lock."""
    m = _model(make_model, "3.0", 1, "mutex")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    a = Model(m.seg, m.era, 0, lock_kind="mutex")
    assert _request(a, w) < 0
    assert a.g[G.REQ_PLACE] == 0 and _waiters(m, w) == 0
    m.anon_vma_unlock(tok)
    t = a.locks.lock_contended(w, AV, SITE_PR)
    assert m.locks.owner(w) == a.locks.owner_tag
    a.locks.release(w, AV, SITE_PR, t)


@pytest.mark.parametrize("era", ["3.19", "6.0"])
def test_spinning_rwsem_writer_takes_no_place_and_a_reader_does(
        make_model: MakeModel, era: str) -> None:
    """3.19 and 6.0: a writer's slow path spins on the owner before it queues
    (``rwsem_optimistic_spin`` ahead of ``list_add_tail`` / ``rwsem_add_waiter``), so its
    request takes no place; a reader's request (no spinning in either) queues its node."""
    m = _model(make_model, era, 2, "rwsem")
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    writer = Model(m.seg, m.era, 0, lock_kind="rwsem")
    reader = Model(m.seg, m.era, 1, lock_kind="rwsem")
    assert _request(writer, w) < 0 and writer.g[G.REQ_PLACE] == 0
    assert _request(reader, w, shared=1) < 0 and reader.g[G.REQ_PLACE] != 0
    assert _waiters(m, w) == 1
    m.anon_vma_unlock(tok)  # grants the queued reader
    t = reader.locks.lock_contended(w, AV, SITE_PR, 1)
    reader.locks.release(w, AV, SITE_PR, t, 1)
    assert _waiters(m, w) == 0 and m.wedged_locks() == []


def test_fifo_grant_to_a_killed_writer_names_it_and_is_broken(
        make_model: MakeModel, children: list[int]) -> None:
    """3.8: a writer killed between its request and its wait is granted the lock by the
    holder's release (FIFO grants the head).  The grant names it in the owner word, so
    the lock is never held by nobody known: the next acquirer finds the owner dead,
    breaks its hold and is told (LOCK_OWNER_DIED, counted in its CPU slot)."""
    m = _model(make_model, "3.8", 1, "rwsem", check=False)
    w = m.anon_vma_lock_word(AV_INDEX)
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    ready_r, ready_w = os.pipe()

    def body(cm: Model) -> None:
        assert _request(cm, w) < 0
        os.write(ready_w, b"r")
        time.sleep(DEADLINE_S)

    children.append(_fork(m, 0, body))
    assert os.read(ready_r, 1) == b"r"
    os.kill(children[0], signal.SIGKILL)
    dead = children[0]
    assert _join(dead, children) == -signal.SIGKILL
    assert m.wedged_locks() == [f"anon_vma#{AV_INDEX}"]  # queued and dead
    m.anon_vma_unlock(tok)  # grants the dead writer
    assert m.locks.owner(w) == owner_tag(dead, 0)
    assert _waiters(m, w) == 0
    me = Model(m.seg, m.era, 0, lock_kind="rwsem")
    died = int(me.words[me.locks.f["owner_died"]])
    t = me.locks.acquire(w, AV, SITE_PR)  # sleeps, finds the owner gone, breaks the hold
    assert int(me.words[me.locks.f["owner_died"]]) == died + 1
    assert m.locks.owner(w) == me.locks.owner_tag
    me.locks.release(w, AV, SITE_PR, t)
    assert m.wedged_locks() == [] and m.locks.owner(w) == 0
    for fd in (ready_r, ready_w):
        os.close(fd)

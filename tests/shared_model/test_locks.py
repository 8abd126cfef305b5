"""Real process-shared locks as CpuLocks uses them: lockstat bookkeeping, contention across
processes, the owner word, mutexes whose holder died, and the abort flag, for every
primitive of shared_model/locking (whose own algorithms have their tests beside them).

Other processes are plain ``os.fork`` children that inherit the segment, as the stress
workers do.  Every hand-off between the two processes is ordered through the segment or a
pipe (the child releases only once the parent has published that it is waiting), so no
assertion depends on how long anything takes, only that a contended wait took some time.
A child that cannot make progress raises the stop flag to 2 and exits, so that a
broken lock fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest
from _helpers.children import CHILD_CPU, Spawn
from hypothesis import given
from hypothesis import strategies as st

from shared_model.build import build_family
from shared_model.eras import ERAS
from shared_model.layout import (
    CPU_STATE,
    HIST_BUCKETS,
    LOCK_CLASSES,
    LOCK_SITES,
    LS_CONT,
    LS_HOLD_HIST,
    LS_HOLD_MAX,
    LS_HOLD_MIN,
    LS_HOLD_TOTAL,
    LS_WAIT_HIST,
    LS_WAIT_MAX,
    LS_WAIT_MIN,
    LS_WAIT_TOTAL,
    hist_bucket,
    hist_bucket_bounds,
)
from shared_model.locking import lock_release, lock_trylock
from shared_model.locks import CLASS, I64_MAX, LOCK_KINDS, SITE, Stopped, lock_kind
from shared_model.model import Model

MakeModel = Callable[..., Model]
LS_ACQ = 0
AV = CLASS["anon_vma"]
# A free anon_vma record: its lock is initialised and unused.  The tests use era 2.6.34,
# which takes each anon_vma's own lock: a root-locking era would take its root's, and a
# record never allocated has no root.
AV_INDEX = 0
CHILD_DEADLINE_S = 10.0  # a safety valve against hangs, never an assertion


def lockstat(m: Model, cpu: int, site: str) -> np.ndarray:
    """The lockstat row of the anon_vma lock class at ``site`` in ``cpu``'s slot."""
    return m.seg["lockstat"][cpu, AV, SITE[site]]


def owner_tag(pid: int, cpu: int) -> int:
    return pid * 4096 + cpu + 1


def lock_owner(m: Model) -> int:
    return int(m.anon_vma["lock"]["owner"][AV_INDEX])


@pytest.fixture(params=LOCK_KINDS)
def model(request: pytest.FixtureRequest, make_model: MakeModel) -> Model:
    """A model whose anon_vma locks are of each primitive kind; 2.6.34 locks the anon_vma
    itself (no root), so the lock word is anon_vma AV_INDEX's own."""
    return make_model("2.6.34", users=0, pages=1, cpus=1, lock_kind=request.param)


def wait_until(cond: Callable[[], bool]) -> None:
    """Busy-wait (in a child) for a state published by the other process."""
    end = time.monotonic() + CHILD_DEADLINE_S
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the other process never got there")


def parent_waits_on(m: Model, parent_cpu: int) -> Callable[[], bool]:
    cpu = m.seg["cpu"]
    return lambda: bool(cpu[parent_cpu]["state"] == CPU_STATE["wait"])


def raw_lock(m: Model) -> tuple[Callable[[], bool], Callable[[], None]]:
    """(trylock, unlock) on anon_vma AV_INDEX's lock word, bypassing CpuLocks (no owner tag,
    no statistics: "someone" holds it)."""
    kind = lock_kind(m.lock_kind)
    w = m.anon_vma_lock_word(AV_INDEX)
    node_w = m.seg.offsets["qnodes"] // 8  # the builder's MCS node block
    return ((lambda: bool(lock_trylock(m.words, w, kind, 0, 0, 0))),
            (lambda: lock_release(m.words, w, kind, 0, 0, node_w)))


# ----------------------------------------------------------------------------- uncontended


def test_uncontended_acquire_release_records_exactly(model: Model) -> None:
    m, cpu = model, model.cpu
    holds = []
    for _ in range(3):
        tok = m.anon_vma_lock(AV_INDEX, "page_referenced")
        assert lock_owner(m) == owner_tag(os.getpid(), cpu)
        holds.append(m.anon_vma_unlock(tok))
        assert lock_owner(m) == 0
    row = lockstat(m, cpu, "page_referenced")
    assert row[LS_ACQ] == 3
    assert row[LS_CONT] == 0
    # Never waited: the wait fields keep their reset values, the histogram is empty.
    assert (row[LS_WAIT_MIN], row[LS_WAIT_MAX], row[LS_WAIT_TOTAL]) == (I64_MAX, 0, 0)
    assert row[LS_WAIT_HIST : LS_WAIT_HIST + HIST_BUCKETS].sum() == 0
    # Holds: exactly the three returned by release.
    assert row[LS_HOLD_TOTAL] == sum(holds)
    assert (row[LS_HOLD_MIN], row[LS_HOLD_MAX]) == (min(holds), max(holds))
    hold_hist = row[LS_HOLD_HIST : LS_HOLD_HIST + HIST_BUCKETS]
    assert hold_hist.sum() == 3
    for h in holds:
        assert hold_hist[hist_bucket(h)] >= 1
    # Nothing else was recorded anywhere, in any class, site or CPU.
    acq = m.seg["lockstat"][..., LS_ACQ].copy()
    acq[cpu, AV, SITE["page_referenced"]] = 0
    assert not acq.any()
    assert not m.seg["lockstat"][..., LS_CONT].any()
    slot = m.seg["cpu"][cpu]
    assert (slot["t_wait_ns"], slot["owner_died"], slot["wait_lock"]) == (0, 0, -1)


def test_uninstrumented_locks_record_nothing(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=0, pages=1)
    m.locks.instrument = False
    tok = m.anon_vma_lock(AV_INDEX, "page_referenced")
    m.anon_vma_unlock(tok)
    assert not m.seg["lockstat"][..., LS_ACQ].any()
    assert lock_owner(m) == 0


# ----------------------------------------------------------------------------- contended


def test_lock_held_by_another_process_makes_acquire_wait(model: Model, spawn: Spawn) -> None:
    m, cpu = model, model.cpu
    waiting = parent_waits_on(m, cpu)

    def body(cm: Model, w: int, r: int) -> None:
        tok = cm.anon_vma_lock(AV_INDEX, "anon_vma_fork")
        os.write(w, b"r")
        wait_until(waiting)  # release only once the parent is waiting for it
        cm.anon_vma_unlock(tok)

    child = spawn(m, body)
    child.wait_ready()
    assert lock_owner(m) == owner_tag(child.pid, CHILD_CPU)
    tok = m.anon_vma_lock(AV_INDEX, "page_referenced")
    assert lock_owner(m) == owner_tag(os.getpid(), cpu)
    m.anon_vma_unlock(tok)
    assert child.join() == 0
    assert lock_owner(m) == 0
    row = lockstat(m, cpu, "page_referenced")
    assert row[LS_ACQ] == 1
    assert row[LS_CONT] == 1
    assert row[LS_WAIT_TOTAL] > 0
    assert row[LS_WAIT_MIN] == row[LS_WAIT_MAX] == row[LS_WAIT_TOTAL]
    assert row[LS_WAIT_HIST + hist_bucket(int(row[LS_WAIT_TOTAL]))] == 1
    assert row[LS_WAIT_HIST : LS_WAIT_HIST + HIST_BUCKETS].sum() == 1
    slot = m.seg["cpu"][cpu]
    assert slot["t_wait_ns"] == row[LS_WAIT_TOTAL]
    assert slot["wait_lock"] == -1 and slot["state"] != CPU_STATE["wait"]
    assert slot["owner_died"] == 0
    # The child recorded its own uncontended hold, in its own slot only.
    crow = lockstat(m, CHILD_CPU, "anon_vma_fork")
    assert (crow[LS_ACQ], crow[LS_CONT]) == (1, 0)
    assert lockstat(m, cpu, "anon_vma_fork")[LS_ACQ] == 0


def test_waiter_publishes_the_lock_it_waits_for(model: Model, spawn: Spawn) -> None:
    """While it waits, a CPU's slot says so and names the lock word (the live view)."""
    m, cpu = model, model.cpu
    waiting = parent_waits_on(m, cpu)
    slot = m.seg["cpu"]

    def body(cm: Model, w: int, r: int) -> None:
        tok = cm.anon_vma_lock(AV_INDEX, "anon_vma_fork")
        os.write(w, b"r")
        wait_until(waiting)
        seen = int(slot[cpu]["wait_lock"])  # what the parent published, read from outside
        cm.anon_vma_unlock(tok)
        os.write(w, seen.to_bytes(8, "little", signed=True))

    child = spawn(m, body)
    child.wait_ready()
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "try_to_unmap"))
    seen = int.from_bytes(os.read(child.to_parent_r, 8), "little", signed=True)
    assert child.join() == 0
    assert seen == m.anon_vma_lock_word(AV_INDEX)
    assert slot[cpu]["wait_lock"] == -1


# ----------------------------------------------------------------------------- dead owners


def die_holding(cm: Model, before_exit: Callable[[], None] = lambda: None) -> int:
    """In a grandchild with a Model of its own (its own pid in the owner tag), take the lock,
    run ``before_exit``, and exit holding it; reap it here, so that its pid is gone.  (An
    unreaped zombie still counts as alive: the waiter is told only once it is reaped, as
    the runner reaps a dead CPU within 50 ms.)  Returns the grandchild's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the grandchild
        try:
            gm = Model(cm.seg, cm.era, CHILD_CPU, lock_kind=cm.lock_kind)
            gm.anon_vma_lock(AV_INDEX, "anon_vma_fork")
            before_exit()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_mutex_whose_holder_died_is_taken_over(make_model: MakeModel, spawn: Spawn) -> None:
    m = make_model("2.6.34", users=0, pages=1, lock_kind="mutex")

    def body(cm: Model, w: int, r: int) -> None:
        os.write(w, die_holding(cm).to_bytes(8, "little"))

    child = spawn(m, body)
    dead = int.from_bytes(os.read(child.to_parent_r, 8), "little")
    assert child.join() == 0
    assert lock_owner(m) == owner_tag(dead, CHILD_CPU)  # the dead holder's tag
    tok = m.anon_vma_lock(AV_INDEX, "page_referenced")
    assert lock_owner(m) == owner_tag(os.getpid(), m.cpu)
    m.anon_vma_unlock(tok)
    assert m.seg["cpu"][m.cpu]["owner_died"] == 1
    # Taken over: it works as a plain mutex again, with no further owner_died.
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "page_referenced"))
    assert m.seg["cpu"][m.cpu]["owner_died"] == 1
    assert lockstat(m, m.cpu, "page_referenced")[LS_ACQ] == 2
    assert lock_owner(m) == 0


def test_mutex_holder_dies_while_parent_waits(make_model: MakeModel, spawn: Spawn) -> None:
    m = make_model("2.6.34", users=0, pages=1, lock_kind="mutex")
    waiting = parent_waits_on(m, m.cpu)

    def body(cm: Model, w: int, r: int) -> None:
        def ready_then_wait() -> None:
            os.write(w, b"r")
            wait_until(waiting)  # then die holding it, under the parent's nose

        die_holding(cm, ready_then_wait)

    child = spawn(m, body)
    child.wait_ready()
    tok = m.anon_vma_lock(AV_INDEX, "page_referenced")
    m.anon_vma_unlock(tok)
    assert child.join() == 0
    row = lockstat(m, m.cpu, "page_referenced")
    assert (row[LS_ACQ], row[LS_CONT]) == (1, 1)
    assert row[LS_WAIT_TOTAL] > 0
    assert m.seg["cpu"][m.cpu]["owner_died"] == 1
    assert lock_owner(m) == 0


# ----------------------------------------------------------------------------- abort


def test_stop_flag_2_makes_a_spinning_waiter_give_up(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=0, pages=1)
    assert m.lock_kind == "ticket"
    trylock, unlock = raw_lock(m)
    assert trylock()  # held, by "someone": this process, behind CpuLocks' back
    slot = m.seg["cpu"][m.cpu]
    state_before = int(slot["state"])
    m.header["stop"][0] = 2
    try:
        with pytest.raises(Stopped):
            m.anon_vma_lock(AV_INDEX, "page_referenced")
    finally:
        m.header["stop"][0] = 0
        unlock()
    # The waiter left no trace of holding it, and put its published state back.
    assert lock_owner(m) == 0
    assert (slot["state"], slot["wait_lock"]) == (state_before, -1)
    # It acquired nothing, but it waited: one contention, its wait in the class's total.
    row = lockstat(m, m.cpu, "page_referenced")
    assert (row[LS_ACQ], row[LS_CONT]) == (0, 1)
    assert row[LS_WAIT_TOTAL] == row[LS_WAIT_MAX] == row[LS_WAIT_MIN] > 0
    assert row[LS_WAIT_TOTAL] <= int(slot["t_wait_ns"])
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "page_referenced"))  # still a good lock


def test_stop_flag_2_makes_a_sleeping_waiter_give_up(make_model: MakeModel, spawn: Spawn) -> None:
    m = make_model("2.6.34", users=0, pages=1, lock_kind="mutex")

    def body(cm: Model, w: int, r: int) -> None:
        tok = cm.anon_vma_lock(AV_INDEX, "anon_vma_fork")
        os.write(w, b"r")
        assert os.read(r, 1) == b"g"  # hold it until the parent has given up
        cm.anon_vma_unlock(tok)

    child = spawn(m, body)
    child.wait_ready()
    m.header["stop"][0] = 2
    try:
        with pytest.raises(Stopped):
            m.anon_vma_lock(AV_INDEX, "page_referenced")
    finally:
        m.header["stop"][0] = 0
        child.tell()
        assert child.join() == 0
    assert lock_owner(m) == 0
    assert m.seg["cpu"][m.cpu]["wait_lock"] == -1


@pytest.mark.parametrize("stop,aborting", [(0, False), (1, False), (2, True)])
def test_only_stop_2_aborts_lock_waits(make_model: MakeModel, stop: int, aborting: bool) -> None:
    """stop=1 lets every CPU finish its current operation, so its lock waits go on."""
    m = make_model("2.6.34", users=0, pages=1)
    m.header["stop"][0] = stop
    assert m.locks.stopping() is aborting
    m.header["stop"][0] = 0


# ----------------------------------------------------------------------------- primitives


def test_unknown_lock_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lock kind"):
        lock_kind("rcu")
    assert lock_kind("spin") == lock_kind("ticket")  # the old name of the era's spinlock


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_primitive_is_not_recursive(kind: str) -> None:
    """A held lock refuses a second trylock, even from its holder (what contention is); a
    record of zeros is an unlocked lock."""
    words = np.zeros(8 + 32, dtype=np.int64)  # one lock record, then one MCS node block
    k = lock_kind(kind)
    assert lock_trylock(words, 0, k, 0, 0, 1)
    assert not lock_trylock(words, 0, k, 0, 0, 1)
    lock_release(words, 0, k, 0, 0, 8)
    assert lock_trylock(words, 0, k, 0, 0, 1)
    lock_release(words, 0, k, 0, 0, 8)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_hist_bucket_holds_its_value(v: int) -> None:
    b = hist_bucket(v)
    assert 0 <= b < HIST_BUCKETS
    lo, hi = hist_bucket_bounds(b)
    assert lo <= v < hi


def test_hist_buckets_are_ordered_and_contiguous() -> None:
    """Buckets 0..7 hold one value each; from 8 on, bucket (bit_length << 2 | sub) holds a
    quarter of that power of two: together they tile [0, 2**63) without gaps."""
    used = [*range(8), *((bl << 2) | sub for bl in range(4, 64) for sub in range(4))]
    assert max(used) < HIST_BUCKETS
    prev_hi = 0
    for b in used:
        lo, hi = hist_bucket_bounds(b)
        assert lo == prev_hi
        assert hist_bucket(lo) == b and hist_bucket(hi - 1) == b
        prev_hi = hi
    assert prev_hi == 2**63


def test_lockstat_has_a_row_per_class_and_site(make_model: MakeModel) -> None:
    m = make_model("2.6.34", users=0, pages=1)
    assert m.seg["lockstat"].shape[1:3] == (len(LOCK_CLASSES), len(LOCK_SITES))


@pytest.mark.parametrize("era", list(ERAS))
def test_which_lock_guards_a_child_anon_vma(make_model: MakeModel, era: str) -> None:
    """2.6.34 takes the page's own anon_vma lock; 2.6.36+ the family's root lock (one lock
    per family again); 3.0 makes that lock a mutex."""
    m = make_model(era, users=2, pages=1)
    fam = build_family(m, 2, 1, 0.0)
    root = int(m.vma_anon_vma[fam.vma])
    kids = [int(m.vma_anon_vma[int(m.mm["vma_head"][c])]) for c in fam.children]
    words = {m.anon_vma_lock_word(av) for av in kids}
    if not ERAS[era].chain:
        assert kids == [root, root]
    elif ERAS[era].lock_root:
        assert words == {m.anon_vma_lock_word(root)}
    else:
        assert len(words | {m.anon_vma_lock_word(root)}) == 3
    assert m.lock_kind == ERAS[era].lock
    # Taking a child's lock marks the owner on the record that really holds the lock.
    tok = m.anon_vma_lock(kids[1], "page_referenced")
    holder = root if ERAS[era].lock_root else kids[1]
    assert m.anon_vma["lock"]["owner"][holder] == owner_tag(os.getpid(), m.cpu)
    m.anon_vma_unlock(tok)
    assert not m.anon_vma["lock"]["owner"].any()


# ----------------------------------------------------------------------------- CPUs killed in a wait


def killed_while_waiting(m: Model, spawn: Spawn) -> tuple[np.ndarray, int]:
    """The parent holds anon_vma AV_INDEX's lock; a child CPU waits for it and is SIGKILLed
    in the wait (as the runner kills CPUs that do not leave).  Returns the CPU slots as
    they were just before the kill, and when they were copied (perf_counter_ns); the
    parent has released the lock since."""
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    slot = m.seg["cpu"]
    child = spawn(m, lambda cm, w, r: cm.anon_vma_unlock(cm.anon_vma_lock(AV_INDEX, "anon_vma_fork")))
    end = time.monotonic() + CHILD_DEADLINE_S
    while slot[CHILD_CPU]["state"] != CPU_STATE["wait"]:
        assert time.monotonic() < end, "the child never waited"
    copy, now_ns = np.array(slot), time.perf_counter_ns()
    os.kill(child.pid, signal.SIGKILL)
    assert child.join() == -signal.SIGKILL
    m.anon_vma_unlock(tok)
    return copy, now_ns


@pytest.mark.parametrize("kind", ["ticket", "qspinlock", "tas", "mutex"])
def test_lock_whose_waiter_was_killed_in_the_queue_is_named_wedged(make_model: MakeModel, spawn: Spawn,
                                                                   kind: str) -> None:
    """A ticket waiter killed holding its ticket leaves a ticket nobody will take: the lock
    can never be taken again, and ``wedged_locks`` (the failure report's list) names it.
    A test-and-set or mutex waiter holds no place in a queue: nothing is wedged."""
    m = make_model("2.6.34", users=0, pages=1, lock_kind=kind)
    assert m.wedged_locks() == []
    killed_while_waiting(m, spawn)
    if kind == "ticket":
        assert m.wedged_locks() == [f"anon_vma#{AV_INDEX}"]
    elif kind != "qspinlock":  # qspinlock: wedged only if the waiter had queued an MCS node
        assert m.wedged_locks() == []


def test_aborted_ticket_waiter_wedges_nothing(make_model: MakeModel, spawn: Spawn) -> None:
    """A waiter that gives up on stop marks its ticket abandoned; the release skips it."""
    m = make_model("2.6.34", users=0, pages=1, lock_kind="ticket")
    tok = m.anon_vma_lock(AV_INDEX, "try_to_unmap")
    slot = m.seg["cpu"]

    def body(cm: Model, w: int, r: int) -> None:
        try:
            cm.anon_vma_lock(AV_INDEX, "anon_vma_fork")
        except Stopped:
            os.write(w, b"s")

    child = spawn(m, body)
    end = time.monotonic() + CHILD_DEADLINE_S
    while slot[CHILD_CPU]["state"] != CPU_STATE["wait"]:
        assert time.monotonic() < end, "the child never waited"
    m.header["stop"][0] = 2
    assert os.read(child.to_parent_r, 1) == b"s"
    assert child.join() == 0
    m.header["stop"][0] = 0
    m.anon_vma_unlock(tok)
    assert m.wedged_locks() == []
    m.anon_vma_unlock(m.anon_vma_lock(AV_INDEX, "try_to_unmap"))  # usable


def test_wait_in_progress_when_the_window_closes_is_counted(make_model: MakeModel, spawn: Spawn) -> None:
    """A CPU killed while it waits never adds that wait to its times; the parent's account
    at the window's end (metrics.window_end) adds it, from the slot's state_since_ns to
    the instant the slots were copied, to the CPU's wait and to its lock's class."""
    from stress.engine.metrics import class_wait_share, cpu_rows, window_end

    m = make_model("2.6.34", users=0, pages=1, lock_kind="ticket")
    start_ns = time.perf_counter_ns()
    copy, now_ns = killed_while_waiting(m, spawn)
    assert int(m.seg["cpu"][CHILD_CPU]["t_wait_ns"]) == 0  # the killed CPU published nothing
    since = int(copy[CHILD_CPU]["state_since_ns"])
    assert start_ns < since <= now_ns
    at_end, summary = window_end(copy[:1], now_ns, start_ns, lambda w: m.describe_lock(w).split("#")[0])
    assert int(at_end[0]["t_wait_ns"]) == now_ns - since
    assert int(at_end[0]["t_total_ns"]) == now_ns - start_ns
    assert summary["cpus_waiting"] == 1 and summary["cpus_walking"] == 0
    assert summary["wait_ns_by_class"] == {"anon_vma": now_ns - since}
    assert cpu_rows(at_end)[0]["share"]["lock_wait"] == (now_ns - since) / (now_ns - start_ns)
    share = class_wait_share([], at_end, in_progress=summary["wait_ns_by_class"])
    assert share == (now_ns - since) / (now_ns - start_ns)

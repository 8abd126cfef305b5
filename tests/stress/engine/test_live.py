"""The live view: frames rendered from synthetic copies of the per-CPU slots, and the lock
namer checked against the model's own lock-word arithmetic."""

from __future__ import annotations

import io

import numpy as np
import pytest

from shared_model.layout import ALLOC_KINDS, CPU_DTYPE, CPU_STATE, Capacities
from shared_model.model import Model
from stress.engine.runner import Tick
from stress.engine.ui import LiveView, lock_namer

MS = 1_000_000
NOW = 10_000 * MS
AV0, AV1, PTL5 = 1000, 1008, 2000
NAMES = {AV0: "anon_vma#0", AV1: "anon_vma#1", PTL5: "ptl(mm 5)"}


def slots(n: int) -> np.ndarray:
    cpu = np.zeros(n, CPU_DTYPE)
    cpu["pid"] = 100 + np.arange(n)
    cpu["state"] = CPU_STATE["work"]
    cpu["wait_lock"] = -1
    cpu["hold_lock"] = -1
    return cpu


def set_wait(cpu: np.ndarray, c: int, w: int, ms_ago: int) -> None:
    cpu[c]["state"] = CPU_STATE["wait"]
    cpu[c]["wait_lock"] = w
    cpu[c]["state_since_ns"] = NOW - ms_ago * MS


def set_walk(cpu: np.ndarray, c: int, w: int, ms_ago: int) -> None:
    cpu[c]["state"] = CPU_STATE["walk"]
    cpu[c]["hold_lock"] = w
    cpu[c]["state_since_ns"] = NOW - ms_ago * MS


def tick(cpu: np.ndarray, elapsed: float = 1.0, now_ns: int = NOW) -> Tick:
    return Tick(elapsed=elapsed, duration=10.0, cpu=cpu, now_ns=now_ns)


def view(**kw: object) -> LiveView:
    return LiveView(stream=io.StringIO(), lock_names=NAMES.__getitem__, **kw)  # type: ignore[arg-type]


def storm() -> np.ndarray:
    """8 CPUs: cpu3 walks under anon_vma#0 with 6 waiters; cpu7 waits on anon_vma#1."""
    cpu = slots(8)
    set_walk(cpu, 3, AV0, 12)
    for c, ago in ((0, 5), (1, 30), (2, 1), (4, 7), (5, 2), (6, 3)):
        set_wait(cpu, c, AV0, ago)
    set_wait(cpu, 7, AV1, 4)
    cpu["walks"] = 10
    cpu["visited"] = 1000
    return cpu


def test_hottest_lock_names_holder_waiters_and_longest_wait() -> None:
    lines = view().render(tick(storm()), now_ns=NOW)
    assert "7/8 CPUs waiting on a lock" in lines[0]
    assert "avg 100.0 entries" in lines[0]
    assert lines[1].strip() == "anon_vma#0 held by cpu3 for 12 ms, 6 waiters, longest wait 30 ms"
    assert lines[2].strip() == "anon_vma#1 held by ? (holder not recorded), 1 waiter, longest wait 4.0 ms"
    assert len(lines) == 1 + 2 + 8


def test_one_line_per_cpu_says_what_it_does() -> None:
    lines = view().render(tick(storm()), now_ns=NOW)
    per_cpu = lines[3:]
    assert per_cpu[1].startswith("cpu1 ") and "pid 101" in per_cpu[1]
    assert "waiting on anon_vma#0 for 30 ms" in per_cpu[1]
    assert "walking under anon_vma#0 for 12 ms" in per_cpu[3]
    assert "waiting on anon_vma#1 for 4.0 ms" in per_cpu[7]
    assert all("walks 10" in ln for ln in per_cpu)


def test_holder_waiting_on_a_nested_ptl_still_holds_its_anon_vma() -> None:
    cpu = slots(3)
    set_wait(cpu, 0, PTL5, 1)
    cpu[0]["hold_lock"] = AV0  # mid-walk, waiting for a PTE lock
    set_wait(cpu, 1, AV0, 9)
    set_wait(cpu, 2, AV0, 2)
    lines = view().render(tick(cpu), now_ns=NOW)
    assert lines[1].strip() == "anon_vma#0 held by cpu0 (itself waiting), 2 waiters, longest wait 9.0 ms"
    assert lines[2].strip() == "ptl(mm 5) held by ? (holder not recorded), 1 waiter, longest wait 1.0 ms"
    assert "waiting on ptl(mm 5) for 1.0 ms, holding anon_vma#0" in lines[3]


def test_holder_from_the_owner_word_when_the_tick_carries_it() -> None:
    cpu = slots(3)
    set_wait(cpu, 1, PTL5, 3)
    t = tick(cpu)  # now comes from the tick
    t.owners = {PTL5: 4242 * 4096 + 2 + 1}  # type: ignore[attr-defined]
    lines = view().render(t)
    assert lines[1].strip() == "ptl(mm 5) held by cpu2 (pid 4242), 1 waiter, longest wait 3.0 ms"


def test_torn_slot_is_not_named_and_future_times_count_as_zero() -> None:
    cpu = slots(2)
    cpu[0]["wait_lock"] = AV0  # wait_lock written, state not yet: still working
    set_wait(cpu, 1, AV0, -5)  # copied after "now" was read
    lines = view().render(tick(cpu), now_ns=NOW)
    assert "1/2 CPUs waiting" in lines[0]
    assert "1 waiter, longest wait 0 us" in lines[1]
    assert lines[2].split()[3] == "work"


def test_idle_and_done_cpus_and_no_locks() -> None:
    cpu = slots(2)
    cpu["state"] = [CPU_STATE["idle"], CPU_STATE["done"]]
    lines = view().render(tick(cpu, 0.0), now_ns=NOW)
    assert len(lines) == 3 and "0/2 CPUs waiting" in lines[0]
    assert " idle " in lines[1] and " done " in lines[2]


def test_locks_are_capped_and_cpus_folded_to_fit() -> None:
    cpu = slots(40)
    for c in range(40):
        set_wait(cpu, c, 5000 + 8 * (c % 10), 1 + c)
    lines = LiveView(stream=io.StringIO(), max_locks=3).render(tick(cpu), now_ns=NOW,
                                                               max_cpu_lines=5)
    assert [ln.strip().split()[0] for ln in lines[1:4]] == ["lock@5072", "lock@5064", "lock@5056"]
    assert lines[4].strip() == "... 7 more locks, 28 waiters"
    assert len(lines) == 1 + 4 + 5
    assert lines[-1].strip() == "... cpu4-cpu39: wait 36"


def test_update_redraws_in_place_with_ansi() -> None:
    out = io.StringIO()
    v = LiveView(stream=out, lock_names=NAMES.__getitem__, interval_s=0, size=(60, 50))
    v.update(tick(storm()))
    first = out.getvalue()
    assert first.count("\n") == 11 and "\033[F" not in first and "\033[11F" not in first
    assert all(len(seg.split("\033[2K")[-1]) <= 59 for seg in first.split("\n"))
    v.update(tick(slots(2), 1.25))
    second = out.getvalue()[len(first):]
    assert second.startswith("\033[11F") and second.endswith("\033[J")
    assert second.count("\n") == 3
    v.close(clear=True)
    assert out.getvalue().endswith("\033[3F\033[J")


def test_lock_names_can_come_with_the_tick() -> None:
    cpu = slots(2)
    set_wait(cpu, 0, AV1, 2)
    t = tick(cpu)
    t.lock_names = NAMES.__getitem__  # type: ignore[attr-defined]
    lines = LiveView(stream=io.StringIO()).render(t)
    assert lines[1].strip().startswith("anon_vma#1 held by ?")


def test_update_is_throttled() -> None:
    out = io.StringIO()
    v = LiveView(stream=out, interval_s=3600, size=(80, 50))
    v.update(tick(slots(1)))
    n = len(out.getvalue())
    v.update(tick(slots(1), 1.1))
    assert len(out.getvalue()) == n


@pytest.fixture
def model():
    caps = Capacities(mms=6, vmas=8, anon_vmas=4, avcs=8, pages=8, ptrs_per_mm=4, cpus=1)
    m = Model.create(caps, "2.6.34")
    try:
        yield m
    finally:
        seg = m.seg
        m.close()
        seg.unlink()


def test_lock_namer_agrees_with_the_model(model: Model) -> None:
    name = lock_namer(model.seg.offsets, model.caps)
    assert [name(model.anon_vma_lock_word(i)) for i in range(4)] == [f"anon_vma#{i}" for i in range(4)]
    assert name(model.ptl_word(5)) == "ptl(mm 5)"
    slab_w0 = model.seg.offsets["slab"] // 8
    assert name(slab_w0 + 8 * ALLOC_KINDS.index("anon_vma")) == "slab(anon_vma)"
    assert name(model.ptl_word(5) + 1).startswith("lock@")
    assert name(model.ptl_word(6)).startswith("lock@")  # past the last mm


def test_a_cpu_in_iowait_and_the_machine_s_wa() -> None:
    """A CPU asleep with every job parked on the swap device: its line says so with the
    time it has slept, and the header counts CPUs in iowait and the share so far (top's wa)."""
    cpu = slots(2)
    cpu[1]["state"] = CPU_STATE["iowait"]
    cpu[1]["state_since_ns"] = NOW - 25 * MS
    cpu["t_iowait_ns"] = [0, 500 * MS]  # of 2 CPUs x 1 s elapsed: 25%
    lines = view().render(tick(cpu))
    assert "iowait 1/2 CPUs (25% wa)" in lines[0]
    assert "iowait for 25 ms (swap device)" in lines[2], lines[2]
    assert "iowait" not in lines[1]


def test_a_lock_read_as_wedged_for_a_while_is_named_so() -> None:
    """The runner's tick carries, for each waited lock, how long it has read as wedged at
    every tick (runner._WedgedWatch); the view names it only past WEDGED_SHOW_S, since a
    hand-off in flight reads the same for a moment."""
    from stress.engine.ui import WEDGED_SHOW_S

    cpu = slots(3)
    set_wait(cpu, 0, AV0, 3000)
    set_wait(cpu, 1, AV1, 2)
    t = tick(cpu)
    t.wedged = {AV0: WEDGED_SHOW_S + 2.0, AV1: WEDGED_SHOW_S / 2}
    lines = view().render(t)
    av0 = next(ln for ln in lines if ln.strip().startswith("anon_vma#0"))
    av1 = next(ln for ln in lines if ln.strip().startswith("anon_vma#1"))
    assert av0.endswith("WEDGED for 3 s (a CPU died queued for it?)")
    assert "WEDGED" not in av1


def test_wedged_watch_counts_only_unbroken_readings() -> None:
    from stress.engine.runner import _WedgedWatch

    readings = iter([{AV0}, {AV0, AV1}, {AV1}, {AV0, AV1}])
    watch = _WedgedWatch(lambda ws: next(readings) & set(ws))
    assert watch(1.0, [AV0, AV1]) == {AV0: 0.0}
    assert watch(2.0, [AV0, AV1]) == {AV0: 1.0, AV1: 0.0}
    assert watch(3.0, [AV0, AV1]) == {AV1: 1.0}  # AV0 moved: its count starts again
    assert watch(4.5, [AV0, AV1]) == {AV0: 0.0, AV1: 2.5}

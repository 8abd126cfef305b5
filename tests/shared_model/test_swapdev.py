"""The swap device's arithmetic, exact and derived from its rules (shared_model/swapdev.py):
a batch of n completes at latency + j service slots, a later batch queues behind, an idle
device starts afresh, request slots throttle a submitter, the off device completes at
once, and across processes one cmpxchg queue keeps every completion a service slot apart
and loses no count.  Times are given (``now=``), not read off a clock."""

from __future__ import annotations

import os
import struct

import numpy as np

from shared_model.model import Model
from shared_model.swapdev import (
    CONGESTION_WAIT_NS,
    READ,
    WRITE,
    SwapIO,
    congestion_thresholds,
    congestion_wait,
    get_request_wait,
    io_schedule_until,
    submit_bio,
    swap_device_init,
    swap_device_stats,
)

L_MS, IOPS = 8.0, 150.0
L, S = 8_000_000, round(1e9 / 150.0)
T = 10**12  # some time (ns)


def dev(m: Model) -> np.void:
    return m.seg["swapdev"][0]


def test_a_batch_completes_at_latency_plus_service_slots(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 128, True)
    assert dev(m)["service_ns"] == S == 6_666_667
    first, last, slot = submit_bio(m, READ, 5, now=T)
    assert (first, last, slot) == (T + L, T + L + 4 * S, T)
    # A second batch at the same moment queues behind the first.
    first2, last2, _ = submit_bio(m, WRITE, 3, now=T)
    assert (first2, last2) == (last + S, last + 3 * S)
    d = dev(m)
    assert (d["reads"], d["writes"]) == (5, 3)
    assert d["busy_ns"] == 8 * S
    # wait: each request's completion - submission
    expect = sum(T + L + j * S - T for j in range(8))
    assert d["wait_ns"] == expect
    assert d["max_depth"] == 7  # the 8th request had 7 ahead of it
    assert d["last_completion_ns"] == T + L + 7 * S
    cpu = m.seg["cpu"][m.cpu]
    assert (cpu["swap_reads"], cpu["swap_writes"]) == (5, 3)


def test_an_idle_device_starts_afresh(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 128, True)
    submit_bio(m, READ, 2, now=T)
    later = T + 10**9  # long after the queue drained
    assert submit_bio(m, READ, 1, now=later)[:2] == (later + L, later + L)
    # Just inside the queue: the last completion + one slot wins over now + latency.
    busy = later + L - S // 2
    assert submit_bio(m, READ, 1, now=busy)[0] == later + L + S


def test_request_slots_throttle_the_submitter(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 4, True)
    # 10 at once: the 10th has 9 ahead, 3 may be: it gets its slot when 6 have completed.
    _, last, slot = submit_bio(m, WRITE, 10, now=T)
    assert last == T + L + 9 * S
    assert slot == last - L - 3 * S == T + 6 * S
    assert dev(m)["throttled"] == 1
    # Four at once on an idle device fit the four slots.
    later = T + 10**9
    assert submit_bio(m, WRITE, 4, now=later)[2] == later
    assert dev(m)["throttled"] == 1


def test_the_off_device_completes_at_once_and_still_counts(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 128, False)
    assert submit_bio(m, READ, 7, now=T) == (T, T, T)
    assert submit_bio(m, WRITE, 2, now=T) == (T, T, T)
    d = dev(m)
    assert (d["reads"], d["writes"], d["busy_ns"], d["last_completion_ns"]) == (7, 2, 0, 0)
    st = swap_device_stats(m.seg["swapdev"], 1.0)
    assert st["enabled"] is False and st["reads"] == 7 and st["avg_wait_ms"] == 0.0


def test_stats_from_the_record(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 128, True)
    submit_bio(m, READ, 3, now=T)
    st = swap_device_stats(m.seg["swapdev"], 2.0)
    assert st["reads"] == 3 and st["writes"] == 0
    assert st["requests_per_s"] == 1.5
    assert st["utilisation"] == 3 * S / 2e9
    assert st["avg_wait_ms"] == (3 * L + 3 * S) / 3 / 1e6
    assert st["max_depth"] == 2 and abs(st["iops"] - IOPS) < 1e-3 and st["latency_ms"] == L_MS


CHILDREN, EACH = 3, 200


def test_one_queue_across_processes(make_model) -> None:
    """Every process submits EACH single requests at its own clock: no count is lost, and
    sorted together the completions are distinct and at least one service slot apart (the
    IOPS limit holds across processes)."""
    m = make_model("2.6.34", users=CHILDREN, pages=1, cpus=CHILDREN + 1)
    swap_device_init(m, 0.001, 1e6, 1 << 20, True)  # 1 us latency, 1 us service: busy queue
    svc = int(dev(m)["service_ns"])
    pipes, pids = [], []
    for c in range(CHILDREN):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(r)
                cm = Model(m.seg, "2.6.34", c, entry_cost_ns=0)
                out = [submit_bio(cm, READ if k % 2 else WRITE, 1)[1] for k in range(EACH)]
                os.write(w, struct.pack(f"{EACH}q", *out))
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    times: list[int] = []
    for r in pipes:
        buf = b""
        while len(buf) < 8 * EACH:
            chunk = os.read(r, 8 * EACH - len(buf))
            assert chunk
            buf += chunk
        os.close(r)
        times += struct.unpack(f"{EACH}q", buf)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    d = dev(m)
    n = CHILDREN * EACH
    assert d["reads"] + d["writes"] == n and d["reads"] == CHILDREN * (EACH // 2)
    assert d["busy_ns"] == n * svc
    gaps = np.diff(np.sort(np.array(times)))
    assert len(set(times)) == n and gaps.min() >= svc
    assert d["last_completion_ns"] == max(times)
    per_cpu = m.seg["cpu"][:CHILDREN]
    assert int(per_cpu["swap_reads"].sum() + per_cpu["swap_writes"].sum()) == n


def test_io_schedule_until_sleeps_in_iowait(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    words, f = m.words, m.locks.f
    before = int(words[f["heartbeat"]])
    words[f["state"]] = 1
    slept = io_schedule_until(m, m.clock() + 2_000_000, lambda: False)
    assert slept >= 2_000_000 and int(words[f["t_iowait_ns"]]) == slept
    assert int(words[f["state"]]) == 1 and int(words[f["heartbeat"]]) > before
    # A stopping run is not slept through; a time already past costs nothing.
    assert io_schedule_until(m, m.clock() + 10**12, lambda: True) == 0
    assert io_schedule_until(m, 0, lambda: False) == 0


def test_swapio_reads_frames_in_and_writes_frames_out(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 128, True)
    io = SwapIO(m)
    f = m.locks.f
    m.words[f["frames_in"]] += 3
    m.words[f["frames_out"]] += 2
    t_read = io.reads()
    t_write = io.writes()
    assert t_read > 0 and t_write > 0
    assert (dev(m)["reads"], dev(m)["writes"]) == (3, 2)
    io.mark()
    assert io.reads() == 0 and io.writes() == 0
    m.words[f["frames_in"]] -= 3  # leave the frame counts as the model has them
    m.words[f["frames_out"]] -= 2


def test_get_request_wait_waits_for_room_in_the_slots(make_model) -> None:
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 4, True)
    assert get_request_wait(m, 3, T) == T  # an empty queue has room
    submit_bio(m, WRITE, 6, now=T)  # 6 queued: the next would have 6 ahead of it
    # One more fits once 3 are ahead: the queue has moved on by 3 slots.
    assert get_request_wait(m, 1, T) == T + 3 * S
    assert get_request_wait(m, 4, T) == T + 6 * S  # a full batch waits for an empty queue
    assert get_request_wait(m, 10, T) == T + 6 * S  # larger than the slots: the same
    assert get_request_wait(m, 1, T + 3 * S) == T + 3 * S
    swap_device_init(m, L_MS, IOPS, 4, False)
    assert get_request_wait(m, 100, T) == T  # the off device always has room


def test_congestion_wait_naps_until_the_queue_drains_at_most_100_ms(make_model) -> None:
    assert congestion_thresholds(128) == (113, 103)  # blk_queue_congestion_threshold
    assert congestion_thresholds(4) == (4, 3)
    m = make_model("2.6.34", users=1, pages=1)
    swap_device_init(m, L_MS, IOPS, 4, True)
    submit_bio(m, WRITE, 3, now=T)
    assert congestion_wait(m, T) == T  # 3 ahead: not congested
    submit_bio(m, WRITE, 3, now=T)  # 6 ahead: congested, clear again at 3
    assert congestion_wait(m, T) == T + 3 * S
    swap_device_init(m, 0.0, 10.0, 4, True)  # 100 ms per request
    submit_bio(m, WRITE, 6, now=T)
    assert congestion_wait(m, T) == T + CONGESTION_WAIT_NS  # HZ/10 at most

"""The swap device: one request queue for every CPU, with a latency and an IOPS limit.

The seed's 2.6.34 reached its crossover "with ~99% IO wait time" on a box with "not quite
enough IO".  Here swap-out writeback (reclaim freeing a page's frame: ``swap_writepage``)
and swap-in reads (a fault on a page that is not resident: ``swap_readpage``) are
requests to one device in the shared segment (``layout.SWAPDEV_FIELDS``).  The device is
a pipelined disk described by two numbers:

* ``latency_ns``: an idle device completes a request this long after its submission;
* ``service_ns`` = 1e9 / IOPS: completions are at least this far apart (the throughput
  limit), so a request behind k others completes k service slots later.

So request j of a batch of n submitted at ``now`` completes at::

    first = max(now + latency, last_completion + service)      the batch's first
    c_j   = first + j * service                                 j = 0 .. n-1

and ``last_completion`` becomes c_{n-1}.  That word is the whole queue: one
``cmpxchg`` advances it (no lock), so every CPU's requests interleave in one FIFO, and
the counts are ``atomic_fetch_add``s on the same record::

    CPU 0                                     CPU 1
    last = READ_ONCE(last_completion)         last = READ_ONCE(last_completion)
    end0 = max(now0 + L, last + S) + ...      end1 = max(now1 + L, last + S) + ...
    cmpxchg(last -> end0): swapped            cmpxchg(last -> end1): fails (found end0)
                                              retry: end1 = max(now1 + L, end0 + S) + ...

Request slots (``nr_requests``, the block layer's 128): a submitter first asks
``get_request_wait`` when its batch finds slots (at most ``nr_requests`` requests queued
ahead, counting its own), and parks until then, so the queue stays about that long and a
writer is never behind more than the slots' worth of reads.  A batch queued anyway with
more than ``nr_requests - 1`` ahead of its last request reports a slot time
``c - latency - (nr_requests - 1) * service`` and counts as ``throttled``.  Writeback is
otherwise asynchronous (``pageout`` submits and goes on; the page is freed on a later pass, which the model
folds into the pass that unmapped it), so a writer waits only for a slot; a reader waits
for its data.

Requests queued ahead of one (its queueing delay in service slots) is what ``max_depth``
records: ``(c - now - latency) // service``.

``enabled = 0`` is an infinitely fast device: requests are counted but complete at once.
Everything here runs compiled and takes no lock; the Python wrappers carry the kernel's
names, and ``io_schedule_until`` is the sleep (a real one: ``time.sleep``) of a CPU whose
every job waits for the device, in CPU state ``iowait`` and counted in ``t_iowait_ns``, as
top's ``wa``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import ctx as G
from .layout import CPU_STATE, SWAPDEV_FIELDS
from .locking.atomics import READ_ONCE, atomic_fetch_add, clock_ns, cmpxchg
from .locking.cached_compile import cached_njit
from .locking.common import NODE_RUN_STATE, RUN_IOWAIT
from .model import Model

D = {name: i for i, name in enumerate(SWAPDEV_FIELDS)}
D_LAST, D_LATENCY, D_SERVICE, D_NR_REQUESTS = (D[n] for n in (
    "last_completion_ns", "latency_ns", "service_ns", "nr_requests"))
D_READS, D_WRITES, D_BUSY, D_WAIT = (D[n] for n in ("reads", "writes", "busy_ns", "wait_ns"))
D_MAX_DEPTH, D_THROTTLED, D_ENABLED = D["max_depth"], D["throttled"], D["enabled"]
F_SWAP_READS, F_SWAP_WRITES = G.F["swap_reads"], G.F["swap_writes"]
READ, WRITE = 0, 1
IOWAIT = CPU_STATE["iowait"]
# A CPU in iowait wakes at least this often to look at the run's stop word.
IOWAIT_SLICE_S = 0.02

# A 7200 rpm SATA disk of 2010 (README, "The swap device"): 8 ms to complete a request on
# an idle disk, 150 random IOPS with a queue, 128 request slots (BLKDEV_MAX_RQ).
DEFAULT_LATENCY_MS = 8.0
DEFAULT_IOPS = 150.0
DEFAULT_NR_REQUESTS = 128


# ---------------------------------------------------------------------------- compiled


@cached_njit(llvm_inline=True)
def _atomic_max(words: np.ndarray, i: int, v: int) -> None:
    cur = READ_ONCE(words, i)
    while v > cur:
        found = cmpxchg(words, i, cur, v)
        if found == cur:
            return
        cur = found


@cached_njit
def submit_bio_c(words: np.ndarray, g: np.ndarray, now: int, rw: int, n: int) -> tuple[int, int, int]:
    """Queue ``n`` requests (READ or WRITE) at time ``now`` as one batch (a plugged queue:
    adjacent in the FIFO).  Returns (first completion, last completion, slot time: when the
    submitter may go on, ``now`` unless it had to wait for a request slot).  Counts the
    requests on the device and in this CPU's slot.  Takes no lock: one cmpxchg on the
    device's ``last_completion_ns``."""
    if n <= 0:
        return now, now, now
    d = g[G.SWAPDEV_W]
    cb = g[G.CPU_BASE]
    if rw == READ:
        atomic_fetch_add(words, d + D_READS, n)
        words[cb + F_SWAP_READS] += n
    else:
        atomic_fetch_add(words, d + D_WRITES, n)
        words[cb + F_SWAP_WRITES] += n
    if not words[d + D_ENABLED]:
        return now, now, now
    lat = words[d + D_LATENCY]
    svc = words[d + D_SERVICE]
    while True:
        last = READ_ONCE(words, d + D_LAST)
        first = max(now + lat, last + svc)
        end = first + (n - 1) * svc
        if cmpxchg(words, d + D_LAST, last, end) == last:
            break
    atomic_fetch_add(words, d + D_BUSY, n * svc)
    atomic_fetch_add(words, d + D_WAIT, n * (first - now) + svc * (n * (n - 1) // 2))
    if svc > 0:
        _atomic_max(words, d + D_MAX_DEPTH, (end - now - lat) // svc)
    slot = end - lat - (words[d + D_NR_REQUESTS] - 1) * svc
    if slot > now:
        atomic_fetch_add(words, d + D_THROTTLED, 1)
    else:
        slot = now
    return first, end, slot


@cached_njit
def submit_bio_now_c(words: np.ndarray, g: np.ndarray, rw: int, n: int) -> tuple[int, int, int]:
    """submit_bio_c at this moment (CLOCK_MONOTONIC, the clock of ``time.perf_counter_ns``)."""
    return submit_bio_c(words, g, clock_ns(), rw, n)


# ---------------------------------------------------------------------------- wrappers


def swap_device_init(m: Model, latency_ms: float, iops: float, nr_requests: int, enabled: bool) -> None:
    """Set the device's parameters and empty its queue and counts.  The parent, before any
    CPU runs (after that only atomics write the record)."""
    dev = m.seg["swapdev"]
    dev.view(np.uint8)[:] = 0
    rec = dev[0]
    rec["latency_ns"] = round(latency_ms * 1e6)
    rec["service_ns"] = round(1e9 / iops) if iops > 0 else 0
    rec["nr_requests"] = max(1, int(nr_requests))
    rec["enabled"] = int(enabled)


def submit_bio(m: Model, rw: int, n: int, now: int | None = None) -> tuple[int, int, int]:
    """``n`` requests now (or at ``now``, for tests): (first completion, last completion,
    slot time).  See submit_bio_c."""
    if now is None:
        f, e, s = submit_bio_now_c(m.words, m.g, rw, n)
    else:
        f, e, s = submit_bio_c(m.words, m.g, now, rw, n)
    return int(f), int(e), int(s)


def swap_readpage(m: Model, n: int = 1) -> int:
    """Read ``n`` pages back from swap: the time the last one is in memory."""
    return submit_bio(m, READ, n)[1]


def swap_writepage(m: Model, n: int = 1) -> int:
    """Write ``n`` pages out (asynchronously, as pageout does): the time the submitter may
    go on, later than now only when it waited for request slots (get_request_wait)."""
    return submit_bio(m, WRITE, n)[2]


# congestion_wait(BLK_RW_ASYNC, HZ/10): a direct reclaimer sleeps at most this long.
CONGESTION_WAIT_NS = 100_000_000


def congestion_thresholds(nr_requests: int) -> tuple[int, int]:
    """The block layer's (blk_queue_congestion_threshold): congested from ``on`` requests
    queued, uncongested again at ``off``."""
    on = min(nr_requests, nr_requests - nr_requests // 8 + 1)
    off = max(0, min(on - 1, nr_requests - nr_requests // 8 - nr_requests // 16 - 1))
    return on, off


def get_request_wait(m: Model, n: int, now: int) -> int:
    """When a batch of ``n`` requests finds request slots: ``now`` when at most
    ``nr_requests - n`` requests are queued ahead of a new one, else when the queue has
    drained that far (the block layer's ``get_request_wait``: the submitter sleeps before
    its request exists, so the queue never holds more than the slots and a later writer is
    never behind more than that).  A batch larger than the slots waits for an empty queue.
    Reads the record, no lock: two submitters may both find room, and the queue then holds
    one batch more."""
    r = m.seg["swapdev"][0]
    svc = int(r["service_ns"])
    if not r["enabled"] or svc <= 0 or n <= 0:
        return now
    nr = int(r["nr_requests"])
    last, lat = int(r["last_completion_ns"]), int(r["latency_ns"])
    room = nr - min(n, nr)
    if max(0, (last + svc - now - lat) // svc) <= room:
        return now
    return last + svc - lat - room * svc


def congestion_wait(m: Model, now: int) -> int:
    """Where a direct reclaimer that is about to write pages may go on (2.6.33's
    ``may_write_to_queue`` finds the queue congested, and ``do_try_to_free_pages`` naps in
    ``congestion_wait(BLK_RW_ASYNC, HZ/10)``): ``now`` when the device is not congested
    (fewer than the on-threshold requests ahead of a new one), else when the queue has
    drained to the off-threshold, at most CONGESTION_WAIT_NS later.  Reads the record, no
    lock: a moment's staleness moves the nap by one request."""
    r = m.seg["swapdev"][0]
    if not r["enabled"]:
        return now
    lat, svc, last = int(r["latency_ns"]), int(r["service_ns"]), int(r["last_completion_ns"])
    if svc <= 0:
        return now
    on, off = congestion_thresholds(int(r["nr_requests"]))
    ahead = max(0, (last + svc - now - lat) // svc)
    if ahead < on:
        return now
    return min(last + svc - lat - off * svc, now + CONGESTION_WAIT_NS)


def io_schedule_until(m: Model, until_ns: int, stopping: Callable[[], bool]) -> int:
    """This CPU sleeps until ``until_ns`` (CLOCK_MONOTONIC) in state ``iowait``: every job it
    could run waits for the device.  A real sleep, in slices of IOWAIT_SLICE_S so that a
    stopping run is noticed.  Counts the time slept in ``t_iowait_ns``, and a heartbeat per
    slice: a CPU waiting for the device is not stalled (the run's stall detector looks for
    CPUs that stop making progress on a lock), even behind a queue of many seconds.
    Returns the nanoseconds slept."""
    words, f = m.words, m.locks.f
    t0 = time.perf_counter_ns()
    if until_ns <= t0:
        return 0
    prev = int(words[f["state"]])
    words[f["state_since_ns"]] = t0
    words[f["state"]] = IOWAIT
    run_w = int(m.g[G.NODE_W]) + NODE_RUN_STATE  # asleep: a spinner on a lock we hold stops
    prev_run = int(words[run_w])
    words[run_w] = RUN_IOWAIT
    now = t0
    try:
        while now < until_ns and not stopping():
            time.sleep(min((until_ns - now) / 1e9, IOWAIT_SLICE_S))
            now = time.perf_counter_ns()
            words[f["heartbeat"]] += 1
    finally:
        words[f["t_iowait_ns"]] += now - t0
        words[f["state"]] = prev
        words[run_w] = prev_run
    return now - t0


class SwapIO:
    """One CPU's traffic to the swap device, read off its own frame counters: a frame that
    came in while its owner faulted (``touch_pages``: do_swap_page on a page not resident)
    is a read; a frame that went out in reclaim (try_to_unmap took its last mapping) is a
    written page.  The caller brackets the operation with ``mark()`` and ``reads()`` /
    ``writes()``; with the device off the requests are still counted and complete at once."""

    def __init__(self, m: Model) -> None:
        self.m = m
        self.enabled = bool(m.seg["swapdev"][0]["enabled"])
        self._in = m.locks.f["frames_in"]
        self._out = m.locks.f["frames_out"]
        self.mark()

    def mark(self) -> None:
        words = self.m.words
        self.frames_in = int(words[self._in])
        self.frames_out = int(words[self._out])

    def came_in(self) -> int:
        """Frames that came in since ``mark()``: pages to read."""
        return int(self.m.words[self._in]) - self.frames_in

    def went_out(self) -> int:
        """Frames that went out since ``mark()``: pages to write."""
        return int(self.m.words[self._out]) - self.frames_out

    def reads(self) -> int:
        """Submit a read for each frame that came in since ``mark()``: the time the last is
        in memory (now when none, or the device is off)."""
        n = int(self.m.words[self._in]) - self.frames_in
        return submit_bio(self.m, READ, n)[1] if n > 0 else 0

    def writes(self) -> int:
        """Submit a write for each frame that went out since ``mark()``: the time the
        submitter may go on (it waited for request slots when later than now)."""
        n = int(self.m.words[self._out]) - self.frames_out
        return submit_bio(self.m, WRITE, n)[2] if n > 0 else 0

    def wait(self, stopping: Callable[[], bool]) -> None:
        """For a CPU with one job (reclaim-storm): submit the writes and reads since
        ``mark()`` and sleep in iowait until the writer has its slots and the reads are in."""
        until = max(self.writes(), self.reads())
        if self.enabled:
            io_schedule_until(self.m, until, stopping)


def swap_device_stats(dev: np.ndarray, elapsed_s: float) -> dict[str, float | int | bool]:
    """The results document's ``swap_device``: parameters, counts and utilisation, from a
    copy of the record."""
    r = dev[0]
    svc = int(r["service_ns"])
    reads, writes = int(r["reads"]), int(r["writes"])
    n = reads + writes
    return {
        "enabled": bool(r["enabled"]),
        "latency_ms": int(r["latency_ns"]) / 1e6,
        "iops": 1e9 / svc if svc else 0.0,
        "nr_requests": int(r["nr_requests"]),
        "reads": reads,
        "writes": writes,
        "requests_per_s": n / elapsed_s if elapsed_s else 0.0,
        "utilisation": min(1.0, int(r["busy_ns"]) / (elapsed_s * 1e9)) if elapsed_s else 0.0,
        "avg_wait_ms": int(r["wait_ns"]) / n / 1e6 if n and r["enabled"] else 0.0,
        "max_depth": int(r["max_depth"]),
        "throttled": int(r["throttled"]),
    }


def swap_device_warm_up(m: Model) -> None:
    """Compile (or load) the device's code on a throwaway model, leaving it as it was."""
    saved = m.seg["swapdev"].copy()
    cpu = np.array(m.seg["cpu"])
    swap_device_init(m, 1.0, 1000.0, 4, True)
    submit_bio(m, READ, 2)
    submit_bio(m, WRITE, 5, now=0)
    m.seg["swapdev"][:] = saved
    m.seg["cpu"][:] = cpu

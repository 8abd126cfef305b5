"""forking-server: AIM7-like users running jobs against a fork family, under memory pressure.

The family (a parent with P pages and N children, the users, each with its COWed copy) is
built once.  Each CPU runs the jobs of its own users (user u runs on CPU u mod W, so one
CPU owns each mm, which stands for its mmap_sem), round-robin.  A job of user u:

1. touches a fraction F of u's pages: present ones get their young bit, swapped-out ones
   fault back in (do_swap_page), which needs a free frame;
2. forks a child (dup_mmap: anon_vma_link or anon_vma_fork), which writes a quarter of
   those pages (COW faults: new frames) and exits (exit_mmap, unlink_anon_vmas);
3. does ``work_us`` of user work.

Memory is a fixed number of frames (``ram_pages``).  Before taking frames, a CPU below the
low watermark does direct reclaim over its share of the family's LRU: page_referenced, and
try_to_unmap for cold pages, whose frames then come free (the page waits in swap until its
user touches it again).  More users means more pages competing for the same frames, more
reclaim per job, and in 2.6.33 every one of those walks is O(users) under one lock.
Jobs per minute is the throughput, as AIM7 reports it.  ``setup`` reclaims the family
down to RAM before the gate, so a run starts from a full memory, not from a burst of
writeback of what the build made resident beyond RAM.

Swap IO (shared_model/swapdev.py): the frames that reclaim freed are written out, and the
frames a job's touch faulted back in are read, through the one swap device.  A job whose
reads are queued parks until the last completes (its PTEs are already mapped: the frame
is taken at submission, as read_swap_cache_async takes it, and the job goes on only once
the data is there); a reclaiming job parks while the device is congested
(congestion_wait, at most 100 ms), and any job whose requests find no free request slot
parks until there is room (get_request_wait), so the queue never holds much more than the
slots.  Each CPU runs its users' jobs round-robin, skipping parked ones; when
every job of the CPU is parked the CPU sleeps in ``iowait`` until the earliest completion,
as a real CPU is idle with IO outstanding (top's ``wa``).  A job whose wait is over runs
before a new job starts, the longest-woken first.  A job parks only before its
fork, so at most one job child per CPU is alive at once, as before.  With the device off
no job ever parks and the loop is the one without IO.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import numpy as np

from shared_model.build import Family, build_family, family_capacities
from shared_model.layout import Capacities
from shared_model.memory import do_wp_pages, dup_mmap, exit_mmap, touch_pages
from shared_model.model import Model, OutOfMemory
from shared_model.swapdev import (
    READ,
    WRITE,
    SwapIO,
    congestion_wait,
    get_request_wait,
    io_schedule_until,
    submit_bio,
)

from ..config import RunConfig
from .common import SWAP_CLUSTER_MAX, DirectReclaim


def capacities(cfg: RunConfig) -> Capacities:
    # At most one job child per CPU alive at once; twice that leaves slack.
    return family_capacities(cfg.era, cfg.users, cfg.pages, cfg.cow, cfg.cpus, spare_users=2 * cfg.cpus)


def default_ram_pages(users: int, pages: int, cow: float) -> int:
    """Frames when --ram-pages is not given: three quarters of what the family holds after
    it is built, so a run starts under pressure."""
    return max(64, int(0.75 * (pages + users * round(cow * pages))))


def setup(m: Model, cfg: RunConfig) -> tuple[Family, np.ndarray]:
    fam = build_family(m, cfg.users, cfg.pages, cfg.cow, cfg.seed)
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    np.random.default_rng(cfg.seed).shuffle(lru)
    evict_to_ram(m, lru, cfg.ram_pages or default_ram_pages(cfg.users, cfg.pages, cfg.cow))
    return fam, lru


def evict_to_ram(m: Model, lru: np.ndarray, ram: int) -> None:
    """Before the gate: reclaim the family down to the machine's frames (the high watermark),
    so that a run starts in the steady state of a full memory and its swap device is not
    first busy writing out the family the build made resident beyond RAM (at 2x RAM that
    is half the family: minutes of a 150 IOPS disk)."""
    reclaim = DirectReclaim(m, lru, ram)
    cost = m.entry_cost_ns
    m.entry_cost(0)  # the build's reclaim is not measured: no modelled cost per entry
    try:
        for _ in range(4 * (len(lru) // SWAP_CLUSTER_MAX + 2)):  # every page at most a few times
            if reclaim.free_frames() >= reclaim.high:
                return
            reclaim.ensure(reclaim.high)
    finally:
        m.entry_cost(cost)


def run_cpu(m: Model, cfg: RunConfig, state: tuple[Family, np.ndarray], cpu: int,
            stopping: Callable[[], bool]) -> None:
    """This CPU's users' jobs, round-robin, until ``stopping()``: each job runs until it
    parks on the swap device or ends; a parked job is skipped while another is runnable;
    when none is, the CPU sleeps in iowait until the earliest completion."""
    fam, lru = state
    users = fam.children[cpu :: cfg.cpus] or fam.children
    share = lru[cpu :: cfg.cpus] if len(lru) >= cfg.cpus else lru
    ram = cfg.ram_pages or default_ram_pages(cfg.users, cfg.pages, cfg.cow)
    jobs = Jobs(m, cfg, DirectReclaim(m, share, ram), np.random.default_rng([cfg.seed, cpu]))
    running: list[Iterator[int] | None] = [None] * len(users)
    wake = np.zeros(len(users), dtype=np.int64)  # a parked job's wake-up time, 0 runnable
    clock = m.clock
    i = 0
    while not stopping():
        k = i
        if jobs.io.enabled:
            k = next_runnable(wake, i, clock())
            if k < 0:
                io_schedule_until(m, int(wake.min()), stopping)
                continue
        if not wake[k]:  # a new job: the round-robin moves on
            i = (k + 1) % len(users)
        job = running[k] or jobs.job(users[k])
        t = next(job, 0)
        running[k] = job if t else None
        wake[k] = t


def next_runnable(wake: np.ndarray, i: int, now: int) -> int:
    """The job to run next: a parked job whose wait is over, the one woken longest ago first
    (a task woken from IO has slept and runs soon, as CFS places a waking task), else the
    next user from ``i`` round-robin whose job is not parked (it starts a new job); -1 when
    every job is parked past ``now``."""
    woken = np.flatnonzero((wake > 0) & (wake <= now))
    if len(woken):
        return int(woken[wake[woken].argmin()])
    free = wake[i:] == 0
    if free.any():
        return i + int(free.argmax())
    free = wake[:i] == 0
    return int(free.argmax()) if free.any() else -1


class Jobs:
    """One CPU's job of a user, as a generator that yields the time it is parked until."""

    def __init__(self, m: Model, cfg: RunConfig, reclaim: DirectReclaim, rng: np.random.Generator) -> None:
        self.m = m
        self.cfg = cfg
        self.reclaim = reclaim
        self.rng = rng
        self.io = SwapIO(m)
        self.touch = max(1, round(cfg.cow * cfg.pages))
        self.writes = max(1, self.touch // 4)
        self.work_ns = cfg.work_us * 1000

    def congested(self, need: int) -> int:
        """Before direct reclaim for ``need`` frames: when this job may go on, later than now
        when reclaim is due and the swap device is congested (congestion_wait)."""
        r = self.reclaim
        now = self.m.clock()
        if not self.io.enabled or r.free_frames() - need >= r.low:
            return now
        return congestion_wait(self.m, now)

    def submit(self, rw: int, n: int) -> Generator[int, None, int]:
        """get_request_wait, then submit_bio: parks while the device has no request slots
        for the ``n`` requests; returns the last one's completion time."""
        clock = self.m.clock
        while True:
            now = clock()
            t = get_request_wait(self.m, n, now)
            if t <= now:
                return submit_bio(self.m, rw, n)[1]
            yield t

    def reclaim_for(self, need: int) -> Iterator[int]:
        """Direct reclaim before taking ``need`` frames: a nap first when it is due and the
        device is congested (congestion_wait), then reclaim, then the writeback of what it
        freed (asynchronous: the job waits only for request slots)."""
        clock = self.m.clock
        t = self.congested(need)
        if t > clock():
            yield t
        io = self.io
        io.mark()
        self.reclaim.ensure(need)
        n = io.went_out()
        if n > 0:
            yield from self.submit(WRITE, n)

    def job(self, u: int) -> Iterator[int]:
        """One job of user ``u`` (see the module header); yields where it parks."""
        m, cfg = self.m, self.cfg
        words, f = m.locks.words, m.locks.f
        clock = m.clock
        vpns = np.sort(self.rng.choice(cfg.pages, self.touch, replace=False))
        yield from self.reclaim_for(self.touch)  # frames for the touch's swap-ins
        io = self.io
        io.mark()
        touch_pages(m, u, vpns)
        n = io.came_in()
        if n > 0:  # swap_readpage: wait for a slot, then for the data
            t = yield from self.submit(READ, n)
            if t > clock():
                yield t
        yield from self.reclaim_for(self.writes)  # frames for the child's COW copies
        try:
            child = dup_mmap(m, u)
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
            return
        words[f["forks"]] += 1
        try:
            copied, _ = do_wp_pages(m, child, int(m.mm["vma_head"][child]), vpns[: self.writes])
            words[f["cows"]] += copied
            t0 = clock()
            end = t0 + self.work_ns
            while clock() < end:
                pass
            words[f["t_work_ns"]] += clock() - t0
        except OutOfMemory:
            words[f["alloc_failures"]] += 1
        finally:
            exit_mmap(m, child)
        words[f["exits"]] += 1
        words[f["jobs"]] += 1
        words[f["heartbeat"]] += 1

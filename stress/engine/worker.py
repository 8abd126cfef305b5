"""One CPU: a forked process that attaches to nothing (it inherited the segment), pins
itself, waits at the start gate, runs its workload loop until told to stop, and publishes
everything in its own slot.  It never prints and never parses arguments; it logs through
the run's one log stream.

The gate is a pipe: the CPU blocks in ``read`` (no polling: with 256 CPUs on 2 cores a
polling gate starved the parent's forks) and wakes at EOF, when the parent closes the
write end; it closes its own inherited copy of that end first thing, or EOF never comes.

Watchdog: PR_SET_PDEATHSIG makes the kernel SIGKILL the worker when the parent dies, and
a ppid check right after closes the window where the parent died before the prctl.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from types import TracebackType
from typing import Any

import psutil
import setproctitle

from shared_model.layout import CPU_STATE
from shared_model.locks import Stopped
from shared_model.model import Model
from shared_model.segment import Segment

from .config import RunConfig
from .workloads import get_workload

PR_SET_PDEATHSIG = 1
log = logging.getLogger("rmap_stress.worker")
# The model operations a workload calls (shared_model's Python wrappers).  A CPU whose lock
# wait was aborted inside one publishes which in its slot's ``aborted_op`` (1 + the index;
# 1 + len(MODEL_OPS) for one not listed here), so that the parent can say which operation
# was left half-done.
MODEL_OPS = ("dup_mmap", "exit_mmap", "do_anonymous_pages", "do_wp_pages", "touch_pages",
             "do_mmap", "do_munmap", "do_mprotect", "mm_alloc", "shrink_page_list",
             "shrink_lru", "page_referenced")


def model_op_name(code: int) -> str:
    """The name behind a slot's ``aborted_op`` (0: none)."""
    if code <= 0:
        return ""
    return MODEL_OPS[code - 1] if code <= len(MODEL_OPS) else "another model operation"


def aborted_op_code(tb: TracebackType | None) -> int:
    """The outermost shared_model frame of a ``Stopped`` traceback: the model operation the
    workload called, as an ``aborted_op`` code."""
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("shared_model"):
            name = frame.f_code.co_name
            return 1 + (MODEL_OPS.index(name) if name in MODEL_OPS else len(MODEL_OPS))
        tb = tb.tb_next
    return 1 + len(MODEL_OPS)


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(3)


def pin_target(cpu: int) -> int:
    """The OS CPU that worker ``cpu`` runs on: round-robin over the allowed CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[cpu % len(allowed)]


def wait_at_gate(gate_r: int) -> None:
    """Block until the parent opens the gate (closes the pipe's write end): EOF."""
    while True:
        try:
            os.read(gate_r, 1)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    os.close(gate_r)


def worker_main(seg: Segment, cfg: RunConfig, state: Any, cpu: int, parent_pid: int,
                gate: tuple[int, int] | None = None) -> None:
    setproctitle.setproctitle(f"rmap-stress cpu{cpu}")  # what ps, top and py-spy show
    # The parent handles Ctrl-C, SIGTERM and a hang-up and stops us through the stop word;
    # a signal to the whole group must not interrupt a CPU mid-operation (the forked
    # handler is the parent's).  They were blocked across the fork; ignore, then unblock,
    # so one sent meanwhile is dropped, not run by the parent's handler.  SIGKILL ends us.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    if gate is not None:
        os.close(gate[1])  # the write end: only the parent's copy may keep the gate shut
    _die_with_parent(parent_pid)
    target = pin_target(cpu)
    proc = psutil.Process()
    try:
        proc.cpu_affinity([target])
    except (OSError, psutil.Error) as e:  # pragma: no cover - restricted containers
        log.warning("cpu%d: could not pin to OS CPU %d: %s", cpu, target, e)
    m = Model(seg, cfg.era, cpu, cfg.lock, instrument=cfg.lockstat, entry_cost_ns=cfg.entry_cost_ns)
    m.alloc_fail_p = cfg.alloc_fail_p
    m.locks.order_check = cfg.check_lock_order
    words, f = m.locks.words, m.locks.f
    words[f["pid"]] = os.getpid()
    words[f["state"]] = CPU_STATE["idle"]
    log.info("cpu%d: pid %d pinned to OS CPU %d, waiting at the gate", cpu, os.getpid(), target)
    workload = get_workload(cfg.scenario)
    hdr = m.header
    gate_word = seg.offsets["header"] // 8 + 1
    stop_word = m.locks.stop_word
    if gate is not None:
        wait_at_gate(gate[0])
    while not words[gate_word]:  # without a pipe (a direct caller): the gate word
        if words[stop_word]:
            return
        time.sleep(0.0002)
    if words[stop_word]:  # the parent gave up on the start-up
        return
    cpu_t0, ctx0 = proc.cpu_times(), proc.num_ctx_switches()
    t0 = time.perf_counter_ns()
    words[f["state"]] = CPU_STATE["work"]
    try:
        workload.run_cpu(m, cfg, state, cpu, lambda: words[stop_word] > 0)
    except Stopped as e:
        words[f["aborted_op"]] = aborted_op_code(e.__traceback__)
        log.info("cpu%d: aborted while waiting for a lock in %s", cpu,
                 model_op_name(int(words[f["aborted_op"]])))
    finally:
        words[f["t_total_ns"]] = time.perf_counter_ns() - t0
        cpu_t1, ctx1 = proc.cpu_times(), proc.num_ctx_switches()
        words[f["utime_us"]] = int((cpu_t1.user - cpu_t0.user) * 1e6)
        words[f["stime_us"]] = int((cpu_t1.system - cpu_t0.system) * 1e6)
        words[f["vctx"]] = ctx1.voluntary - ctx0.voluntary
        words[f["ivctx"]] = ctx1.involuntary - ctx0.involuntary
        words[f["state"]] = CPU_STATE["done"]
        words[f["done"]] = 1
    del hdr
    log.info("cpu%d: stopped after %.2f s", cpu, words[f["t_total_ns"]] / 1e9)

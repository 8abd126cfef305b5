"""Pure statistics on hand-built tables: lockstat rows, per-CPU shares, walk statistics,
lock-order verdicts and histogram percentiles; every expected value is derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from shared_model.layout import (
    CPU_DTYPE,
    CPU_STATE,
    HIST_BUCKETS,
    LOCK_CLASSES,
    LOCK_SITES,
    LS_ACQ,
    LS_CONT,
    LS_FIELDS,
    LS_HOLD_HIST,
    LS_HOLD_MAX,
    LS_HOLD_MIN,
    LS_HOLD_TOTAL,
    LS_QUEUED,
    LS_WAIT_HIST,
    LS_WAIT_MAX,
    LS_WAIT_MIN,
    LS_WAIT_TOTAL,
    hist_bucket,
)
from stress.engine.metrics import (
    class_wait_share,
    cpu_rows,
    hist_percentile,
    iowait_share,
    lock_order_edges,
    lock_order_findings,
    lock_rows,
    walk_stats,
    window_end,
    with_window_times,
)

C = {n: i for i, n in enumerate(LOCK_CLASSES)}
S = {n: i for i, n in enumerate(LOCK_SITES)}


def _edge(t: np.ndarray, cpu: int, held: str, taken: str, hs: str, ts: str) -> None:
    t[cpu, C[held], C[taken], 0] += 1
    t[cpu, C[held], C[taken], 1] = S[hs] * 64 + S[ts] + 1


def test_inversion_is_reported_with_both_call_sites() -> None:
    t = np.zeros((2, len(LOCK_CLASSES), len(LOCK_CLASSES), 2), dtype=np.int64)
    _edge(t, 0, "anon_vma", "ptl", "page_referenced", "page_referenced_one")
    _edge(t, 1, "ptl", "anon_vma", "do_wp_page", "anon_vma_prepare")
    (finding,) = lock_order_findings(t)
    assert finding.startswith("lock inversion: ptl under anon_vma")
    assert "page_referenced -> page_referenced_one on cpu0" in finding
    assert "do_wp_page -> anon_vma_prepare on cpu1" in finding


def test_annotated_nesting_is_not_a_finding_but_anon_vma_in_anon_vma_is() -> None:
    t = np.zeros((1, len(LOCK_CLASSES), len(LOCK_CLASSES), 2), dtype=np.int64)
    _edge(t, 0, "ptl", "ptl", "dup_mmap", "dup_mmap")
    _edge(t, 0, "anon_vma", "ptl", "page_referenced", "page_referenced_one")
    assert lock_order_findings(t) == []
    _edge(t, 0, "anon_vma", "anon_vma", "anon_vma_fork", "anon_vma_fork")
    (finding,) = lock_order_findings(t)
    assert finding.startswith("possible recursive locking: anon_vma")


def test_percentiles_are_exact_for_single_values_and_clipped_to_min_max() -> None:
    hist = np.zeros(HIST_BUCKETS, dtype=np.int64)
    for v in [5] * 90 + [1000] * 9 + [123456]:
        hist[hist_bucket(v)] += 1
    assert hist_percentile(hist, 0.5, 5, 123456) == 5
    assert 750 <= hist_percentile(hist, 0.95, 5, 123456) <= 1250  # within a bucket (25%)
    assert 0.75 * 123456 <= hist_percentile(hist, 0.999, 5, 123456) <= 123456  # never past the max
    assert hist_percentile(hist, 0.999, 5, 120000) == 120000  # a bucket middle above max is clipped


# -- lockstat rows, per-CPU shares, walk statistics: hand-built tables, hand-derived answers

I64_MAX = np.iinfo(np.int64).max


def _lockstat(cpus: int) -> np.ndarray:
    """An empty lockstat table as the segment starts it: minimums at I64_MAX."""
    ls = np.zeros((cpus, len(LOCK_CLASSES), len(LOCK_SITES), LS_FIELDS), dtype=np.int64)
    ls[..., LS_WAIT_MIN] = I64_MAX
    ls[..., LS_HOLD_MIN] = I64_MAX
    return ls


def _record(ls: np.ndarray, cpu: int, cls: str, site: str, waits: list[int], holds: list[int]) -> None:
    r = ls[cpu, C[cls], S[site]]
    r[LS_ACQ] += len(holds)
    r[LS_CONT] += len(waits)
    for v in waits:
        r[LS_WAIT_MIN] = min(r[LS_WAIT_MIN], v)
        r[LS_WAIT_MAX] = max(r[LS_WAIT_MAX], v)
        r[LS_WAIT_TOTAL] += v
        r[LS_WAIT_HIST + hist_bucket(v)] += 1
    for v in holds:
        r[LS_HOLD_MIN] = min(r[LS_HOLD_MIN], v)
        r[LS_HOLD_MAX] = max(r[LS_HOLD_MAX], v)
        r[LS_HOLD_TOTAL] += v
        r[LS_HOLD_HIST + hist_bucket(v)] += 1


def test_lock_rows_sum_cpus_and_sites_and_sort_by_total_wait() -> None:
    ls = _lockstat(2)
    _record(ls, 0, "anon_vma", "page_referenced", waits=[50], holds=[8] * 12)
    _record(ls, 0, "anon_vma", "try_to_unmap", waits=[], holds=[20] * 2)
    _record(ls, 1, "anon_vma", "try_to_unmap", waits=[100, 300, 600, 1000], holds=[20] * 10)
    _record(ls, 1, "ptl", "page_referenced_one", waits=[], holds=[3] * 100)
    _record(ls, 0, "slab", "kmem_cache_alloc", waits=[], holds=[2] * 1000)
    rows = lock_rows(ls)
    # anon_vma waited; slab and ptl did not, and are ordered by acquisitions
    assert [r["class"] for r in rows] == ["anon_vma", "slab", "ptl"]
    av = rows[0]
    assert (av["acquisitions"], av["contentions"]) == (24, 5)
    # waits 50, 100, 300, 600, 1000: p50 is the third (300), in bucket [256, 320) -> 287;
    # p90 and above the fifth (1000), in [896, 1024) -> 959
    assert av["wait_ns"] == {"min": 50, "max": 1000, "total": 2050, "avg": 410,
                             "p50": 287, "p90": 959, "p99": 959, "p999": 959}
    # holds: 12 x 8 then 12 x 20; p50 is the 12th (8, bucket [8, 10) -> 8); p90 and above
    # fall in [20, 24), whose middle (21) is clipped to the maximum
    assert av["hold_ns"] == {"min": 8, "max": 20, "total": 336, "avg": 14,
                             "p50": 8, "p90": 20, "p99": 20, "p999": 20}
    assert av["wait_hist"] == {"48": 1, "96": 1, "256": 1, "512": 1, "896": 1}
    assert list(av["wait_hist"]) == ["48", "96", "256", "512", "896"]
    # sites: summed over CPUs, the one that waited longest first
    assert av["sites"] == [
        {"site": "try_to_unmap", "acquisitions": 12, "contentions": 4, "wait_total_ns": 2000,
         "hold_total_ns": 240},
        {"site": "page_referenced", "acquisitions": 12, "contentions": 1, "wait_total_ns": 50,
         "hold_total_ns": 96},
    ]
    ptl = rows[2]
    assert ptl["acquisitions"] == 100 and ptl["contentions"] == 0
    assert ptl["wait_ns"] == dict.fromkeys(("min", "max", "total", "avg", "p50", "p90", "p99", "p999"), 0)
    assert ptl["hold_ns"]["min"] == 3 and ptl["hold_ns"]["avg"] == 3 and ptl["wait_hist"] == {}
    assert rows[1]["acquisitions"] == 1000 and rows[1]["sites"][0]["site"] == "kmem_cache_alloc"
    assert lock_rows(_lockstat(1)) == []


def test_sites_with_equal_waits_are_ordered_by_acquisitions() -> None:
    ls = _lockstat(1)
    _record(ls, 0, "ptl", "do_wp_page", waits=[], holds=[1] * 3)
    _record(ls, 0, "ptl", "dup_mmap", waits=[], holds=[1] * 7)
    assert [s["site"] for s in lock_rows(ls)[0]["sites"]] == ["dup_mmap", "do_wp_page"]


def _cpus(**fields: list[int]) -> np.ndarray:
    n = len(next(iter(fields.values())))
    cpu = np.zeros(n, dtype=CPU_DTYPE)
    for k, v in fields.items():
        cpu[k] = v
    return cpu


def test_cpu_shares_are_the_raw_times_over_the_total() -> None:
    cpu = _cpus(t_total_ns=[1000, 1000, 0, 4000], t_work_ns=[200, 600, 0, 1000],
                t_walk_ns=[300, 600, 0, 0], t_wait_ns=[100, 0, 0, 3000],
                pid=[11, 12, 13, 14], utime_us=[1_500_000, 0, 0, 250_000], stime_us=[20_000, 0, 0, 0],
                vctx=[3, 0, 0, 9], ivctx=[4, 0, 0, 1], walks=[5, 0, 0, 2],
                pages_scanned=[6, 0, 0, 1], jobs=[7, 0, 0, 8])
    rows = cpu_rows(cpu)
    assert [r["cpu"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["share"] == pytest.approx({"work": 0.2, "walk": 0.3, "lock_wait": 0.1, "iowait": 0.0,
                                              "other": 0.4})
    # overlapping counters (a walk counted inside work) are clipped, in the order work, walk, wait
    assert rows[1]["share"] == pytest.approx({"work": 0.6, "walk": 0.4, "lock_wait": 0.0, "iowait": 0.0,
                                              "other": 0.0})
    # a CPU that never ran: no time at all, all "other", no division by zero
    assert rows[2]["share"] == {"work": 0.0, "walk": 0.0, "lock_wait": 0.0, "iowait": 0.0, "other": 1.0}
    assert rows[3]["share"] == pytest.approx({"work": 0.25, "walk": 0.0, "lock_wait": 0.75, "iowait": 0.0,
                                              "other": 0.0})

    assert rows[0]["os"] == {"utime": 1.5, "stime": 0.02, "voluntary_ctx": 3, "involuntary_ctx": 4}
    assert rows[3]["os"] == {"utime": 0.25, "stime": 0.0, "voluntary_ctx": 9, "involuntary_ctx": 1}
    assert [(r["pid"], r["walks"], r["pages_scanned"], r["jobs"]) for r in rows] == [
        (11, 5, 6, 7), (12, 0, 0, 0), (13, 0, 0, 0), (14, 2, 1, 8)]

def test_cpu_shares_never_add_up_past_the_whole() -> None:
    # work, walk and wait overlapping past the total: each is cut to what is left
    rows = cpu_rows(_cpus(t_total_ns=[1000, 1000, 1], t_work_ns=[500, 1500, 1],
                          t_walk_ns=[300, 0, 0], t_wait_ns=[400, 0, 0]))
    assert rows[0]["share"] == pytest.approx({"work": 0.5, "walk": 0.3, "lock_wait": 0.2, "iowait": 0.0,
                                              "other": 0.0})
    assert rows[1]["share"] == pytest.approx({"work": 1.0, "walk": 0.0, "lock_wait": 0.0, "iowait": 0.0,
                                              "other": 0.0})
    assert rows[2]["share"] == pytest.approx({"work": 1.0, "walk": 0.0, "lock_wait": 0.0, "iowait": 0.0,
                                              "other": 0.0})


def test_walk_stats_and_the_log2_histogram() -> None:
    cpu = _cpus(walks=[3, 2], visited=[10, 5], max_visited=[7, 4])
    hist = np.zeros((2, 64), dtype=np.int64)
    hist[0, 3] = 2  # two walks of 4-7 entries
    hist[0, 1] = 1  # one of 1 entry
    hist[1, 3] = 1
    hist[1, 2] = 1  # one of 2-3
    w = walk_stats(cpu, hist)
    assert w == {"count": 5, "vmas_visited": 15, "avg_visited": 3.0, "max_visited": 7,
                 "log2_histogram": {"1": 1, "2": 1, "4": 3}}
    hist[1, 0] = 4  # walks that found nothing: length 0
    assert walk_stats(cpu, hist)["log2_histogram"] == {"0": 4, "1": 1, "2": 1, "4": 3}
    no_cpus = walk_stats(np.zeros(0, dtype=CPU_DTYPE), np.zeros((0, 64), dtype=np.int64))
    assert no_cpus["count"] == 0 and no_cpus["max_visited"] == 0
    none = walk_stats(_cpus(walks=[0], visited=[0], max_visited=[0]), np.zeros((1, 64), dtype=np.int64))
    assert none == {"count": 0, "vmas_visited": 0, "avg_visited": 0.0, "max_visited": 0,
                    "log2_histogram": {}}


def test_class_wait_share_is_that_class_s_wait_over_all_cpu_time() -> None:
    locks = [{"class": "anon_vma", "wait_ns": {"total": 2050}},
             {"class": "ptl", "wait_ns": {"total": 500}}]
    cpu = _cpus(t_total_ns=[5000, 5000])
    assert class_wait_share(locks, cpu) == pytest.approx(0.205)
    assert class_wait_share(locks, cpu, "ptl") == pytest.approx(0.05)
    assert class_wait_share(locks, cpu, "slab") == 0.0
    assert class_wait_share(locks, _cpus(t_total_ns=[0, 0])) == 0.0


def test_lock_order_edges_count_over_cpus_and_name_the_first_sites() -> None:
    t = np.zeros((2, len(LOCK_CLASSES), len(LOCK_CLASSES), 2), dtype=np.int64)
    _edge(t, 1, "anon_vma", "ptl", "page_referenced", "page_referenced_one")
    _edge(t, 0, "anon_vma", "ptl", "try_to_unmap", "try_to_unmap_one")
    _edge(t, 0, "anon_vma", "ptl", "try_to_unmap", "try_to_unmap_one")
    _edge(t, 1, "ptl", "slab", "do_wp_page", "kmem_cache_free")
    t[0, C["anon_vma"], C["slab"], 0] = 3  # counted, no site recorded
    assert lock_order_edges(t) == [
        {"held": "anon_vma", "taken": "ptl", "times": 3, "sites": ["try_to_unmap", "try_to_unmap_one"]},
        {"held": "anon_vma", "taken": "slab", "times": 3, "sites": ["page_referenced", "page_referenced"]},
        {"held": "ptl", "taken": "slab", "times": 1, "sites": ["do_wp_page", "kmem_cache_free"]},
    ]
    assert lock_order_findings(t) == []


def test_recursive_locking_says_how_often_and_where() -> None:
    t = np.zeros((3, len(LOCK_CLASSES), len(LOCK_CLASSES), 2), dtype=np.int64)
    t[0, C["slab"], C["slab"], 0] = 2  # counted, no site recorded: "?"
    _edge(t, 2, "anon_vma", "anon_vma", "anon_vma_fork", "anon_vma_prepare")
    assert lock_order_findings(t) == [
        ("possible recursive locking: anon_vma taken while holding anon_vma "
         "(anon_vma_fork -> anon_vma_prepare on cpu2, 1 times)"),
        "possible recursive locking: slab taken while holding slab (?, 2 times)",
    ]


def test_inversion_is_reported_once_per_pair() -> None:
    t = np.zeros((1, len(LOCK_CLASSES), len(LOCK_CLASSES), 2), dtype=np.int64)
    _edge(t, 0, "slab", "ptl", "kmem_cache_alloc", "exit_mmap")
    _edge(t, 0, "ptl", "slab", "exit_mmap", "kmem_cache_free")
    assert lock_order_findings(t) == [
        ("lock inversion: slab under ptl (exit_mmap -> kmem_cache_free on cpu0) and "
         "ptl under slab (kmem_cache_alloc -> exit_mmap on cpu0)")]


def test_percentile_of_an_empty_histogram_is_zero() -> None:
    assert hist_percentile(np.zeros(HIST_BUCKETS, dtype=np.int64), 0.5, 0, 100) == 0
    hist = np.zeros(HIST_BUCKETS, dtype=np.int64)
    hist[hist_bucket(3)] = 1
    hist[hist_bucket(6)] = 1
    # 2 values: q * total = 1.0 lands on the first (cumulative count reaches 1 there)
    assert hist_percentile(hist, 0.5, 3, 6) == 3
    assert hist_percentile(hist, 0.51, 3, 6) == 6


def test_iowait_is_a_share_of_its_own_after_the_cpu_time() -> None:
    """iowait (asleep with every job parked on the swap device) is clipped after work, walk and
    lock wait, and the machine's share is its sum over the CPUs' run time."""
    cpu = _cpus(t_total_ns=[1000, 1000, 2000], t_work_ns=[100, 700, 0], t_walk_ns=[100, 0, 0],
                t_wait_ns=[0, 0, 0], t_iowait_ns=[600, 500, 2000], swap_reads=[3, 0, 9],
                swap_writes=[1, 2, 0])
    rows = cpu_rows(cpu)
    assert rows[0]["share"] == pytest.approx({"work": 0.1, "walk": 0.1, "lock_wait": 0.0, "iowait": 0.6,
                                              "other": 0.2})
    assert rows[1]["share"]["iowait"] == pytest.approx(0.3) and rows[1]["share"]["other"] == 0.0
    assert rows[2]["share"]["iowait"] == 1.0
    assert [(r["swap_reads"], r["swap_writes"]) for r in rows] == [(3, 1), (0, 2), (9, 0)]
    assert iowait_share(cpu) == pytest.approx(3100 / 4000)
    assert iowait_share(_cpus(t_total_ns=[0])) == 0.0


def test_lock_rows_count_the_contentions_that_queued_on_an_mcs_node() -> None:
    ls = _lockstat(2)
    _record(ls, 0, "anon_vma", "try_to_unmap", waits=[10, 20, 30], holds=[5] * 3)
    _record(ls, 1, "anon_vma", "page_referenced", waits=[40], holds=[5])
    ls[0, C["anon_vma"], S["try_to_unmap"], LS_QUEUED] = 2
    ls[1, C["anon_vma"], S["page_referenced"], LS_QUEUED] = 1
    (row,) = lock_rows(ls)
    assert (row["acquisitions"], row["contentions"], row["mcs_queued"]) == (4, 4, 3)


def test_a_contention_copied_before_its_wait_is_written_has_no_minimum() -> None:
    """A copy taken while a CPU updates its lockstat slot (the contention counted, its wait
    not yet): the wait's minimum is still I64_MAX, and reads as 0, not as 2**63 - 1."""
    ls = _lockstat(1)
    _record(ls, 0, "ptl", "do_wp_page", waits=[], holds=[4])
    ls[0, C["ptl"], S["do_wp_page"], LS_CONT] = 1
    (row,) = lock_rows(ls)
    assert row["contentions"] == 1
    assert row["wait_ns"] == dict.fromkeys(("min", "max", "total", "avg", "p50", "p90", "p99", "p999"), 0)


def test_lock_times_stay_exact_integers_past_float_precision() -> None:
    """Averages and bucket middles are integer arithmetic: exact past 2**53 ns, where a
    float would round them."""
    lo = 1 << 60  # bucket [2**60, 2**60 + 2**58)
    ls = _lockstat(1)
    _record(ls, 0, "slab", "kmem_cache_alloc", waits=[], holds=[lo, lo + (1 << 58) - 1])
    hold = lock_rows(ls)[0]["hold_ns"]
    middle = lo + (1 << 57) - 1  # (2**61 + 2**58 - 1) // 2: both the average and the middle
    assert hold == {"min": lo, "max": lo + (1 << 58) - 1, "total": 2 * lo + (1 << 58) - 1,
                    "avg": middle, "p50": middle, "p90": middle, "p99": middle, "p999": middle}


def test_cpu_rows_give_the_run_time_and_clip_iowait_after_walk_and_wait() -> None:
    rows = cpu_rows(_cpus(t_total_ns=[1000, 3000], t_work_ns=[100, 0], t_walk_ns=[200, 0],
                          t_wait_ns=[300, 0], t_iowait_ns=[900, 0]))
    assert [r["time_ns"] for r in rows] == [1000, 3000]
    # 1 - 0.1 - 0.2 - 0.3 is left for iowait
    assert rows[0]["share"] == pytest.approx({"work": 0.1, "walk": 0.2, "lock_wait": 0.3, "iowait": 0.4,
                                              "other": 0.0})


def test_class_wait_share_adds_the_waits_in_progress_of_that_class() -> None:
    locks = [{"class": "anon_vma", "wait_ns": {"total": 2050}}]
    cpu = _cpus(t_total_ns=[5000, 5000])
    in_progress = {"anon_vma": 1000, "ptl": 7}
    assert class_wait_share(locks, cpu, in_progress=in_progress) == pytest.approx(0.305)
    assert class_wait_share(locks, cpu, "ptl", in_progress) == pytest.approx(0.0007)
    assert class_wait_share(locks, cpu, in_progress={}) == pytest.approx(0.205)


WAIT, WALK, WORK, IOWAIT = (CPU_STATE[s] for s in ("wait", "walk", "work", "iowait"))


def _lock_class(w: int) -> str:
    return LOCK_CLASSES[w >> 32]


def _window_cpus() -> np.ndarray:
    """Twelve CPUs as copied at 10_000 ns; the gate opened at 1_000."""
    return _cpus(
        done=[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        state=[WAIT, WALK, WAIT, WAIT, WAIT, WAIT, WAIT, WORK, WAIT, WAIT, WAIT, WALK],
        state_since_ns=[7000, 9000, 2000, 0, 11000, 8000, 9000, 5000, 9500, 9000, 10000, 1],
        wait_lock=[(1 << 32) + 5, -1, 0, 0, 0, -1, 0, -1, 7, 2 << 32, 1 << 32, -1],
        t_wait_ns=[100, 0, 40, 0, 0, 0, 0, 0, 10, 0, 0, 0],
        t_walk_ns=[0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        t_total_ns=[0, 0, 4000, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        jobs=list(range(12)))


def test_window_end_adds_the_waits_and_walks_under_way() -> None:
    """A CPU still running has run now - start; its wait or walk under way (published
    since a time after 0 and not after now) is added, by the class of the lock it waits on."""
    cpu = _window_cpus()
    before = cpu.copy()
    out, summary = window_end(cpu, 10_000, 1_000, _lock_class)
    assert (cpu == before).all()  # a copy: the CPUs' slots are left as they were
    # 2 is done: its times are its own.  3 never published a state (since 0), 4's state is
    # newer than the copy: neither is under way.  10 started waiting at the very instant.
    assert out["t_total_ns"].tolist() == [9000, 9000, 4000] + [9000] * 9
    assert out["t_wait_ns"].tolist() == [3100, 0, 40, 0, 0, 2000, 1000, 0, 510, 1000, 0, 0]
    assert out["t_walk_ns"].tolist() == [0, 1050] + [0] * 9 + [9999]
    assert out["jobs"].tolist() == list(range(12)) and (out["state"] == cpu["state"]).all()
    assert summary == {"cpus_waiting": 6, "waiting_ns": 7500, "cpus_walking": 2, "walking_ns": 10999,
                       "cpus_in_iowait": 0, "in_iowait_ns": 0,
                       "wait_ns_by_class": {"ptl": 3000, "?": 2000, "anon_vma": 1500, "slab": 1000}}


def test_window_end_adds_the_iowait_under_way() -> None:
    """A CPU asleep on the swap device when the window closes: its sleep so far is the
    window's iowait (the rest of it, in the stop that follows, is not); a finished CPU's
    iowait is its own."""
    cpu = _cpus(done=[0, 0, 1], state=[IOWAIT, WORK, IOWAIT], state_since_ns=[6000, 2000, 3000],
                wait_lock=[-1, -1, -1], t_iowait_ns=[500, 70, 40], t_total_ns=[0, 0, 4000])
    out, summary = window_end(cpu, 10_000, 1_000, _lock_class)
    assert out["t_iowait_ns"].tolist() == [4500, 70, 40]
    assert out["t_wait_ns"].tolist() == [0, 0, 0]
    assert summary["cpus_in_iowait"] == 1 and summary["in_iowait_ns"] == 4000
    assert summary["wait_ns_by_class"] == {}


def test_window_end_accounts_only_the_cpus_asked_for() -> None:
    cpu = _window_cpus()
    only = np.array([True] * 6 + [False] * 6)
    out, summary = window_end(cpu, 10_000, 1_000, _lock_class, only=only)
    assert out["t_total_ns"].tolist() == [9000, 9000, 4000, 9000, 9000, 9000] + [0] * 6
    assert out["t_wait_ns"].tolist() == [3100, 0, 40, 0, 0, 2000, 0, 0, 10, 0, 0, 0]
    assert out["t_walk_ns"].tolist() == [0, 1050] + [0] * 10
    assert summary == {"cpus_waiting": 2, "waiting_ns": 5000, "cpus_walking": 1, "walking_ns": 1000,
                       "cpus_in_iowait": 0, "in_iowait_ns": 0,
                       "wait_ns_by_class": {"ptl": 3000, "?": 2000}}


def test_window_end_before_the_gate_opened_has_run_no_time() -> None:
    out, _ = window_end(_window_cpus(), 10_000, 12_000, _lock_class)
    assert out["t_total_ns"].tolist() == [0, 0, 4000] + [0] * 9


def test_with_window_times_takes_the_window_s_times_for_the_cpus_asked_for() -> None:
    final = _cpus(t_work_ns=[10, 20, 30], t_walk_ns=[11, 21, 31], t_wait_ns=[12, 22, 32],
                  t_iowait_ns=[17, 27, 37], t_total_ns=[13, 23, 33], jobs=[5, 6, 7])
    window = _cpus(t_work_ns=[1, 2, 3], t_walk_ns=[4, 5, 6], t_wait_ns=[7, 8, 9],
                   t_iowait_ns=[2, 3, 4], t_total_ns=[14, 15, 16], jobs=[0, 0, 0])
    before = final.copy()
    out = with_window_times(final, window, np.array([True, False, True]))
    assert (final == before).all()
    assert out["t_work_ns"].tolist() == [1, 20, 3]
    assert out["t_walk_ns"].tolist() == [4, 21, 6]
    assert out["t_wait_ns"].tolist() == [7, 22, 9]
    assert out["t_iowait_ns"].tolist() == [2, 27, 4]  # the stop's swap-ins are not the window's
    assert out["t_total_ns"].tolist() == [14, 23, 16]
    assert out["jobs"].tolist() == [5, 6, 7]  # counters are the final ones

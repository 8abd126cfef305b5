"""Pure statistics: lock-order verdicts and histogram percentiles, on synthetic tables."""

from __future__ import annotations

import numpy as np

from shared_model.layout import HIST_BUCKETS, LOCK_CLASSES, LOCK_SITES, hist_bucket
from stress.metrics import hist_percentile, lock_order_findings

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
    _edge(t, 0, "mapcount", "mapcount", "exit_mmap", "exit_mmap")
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

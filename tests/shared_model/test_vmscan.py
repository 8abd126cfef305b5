"""Reclaim as mm/vmscan.c of 2.6.33-3.0 for anonymous pages: the walks it makes, the page
lock and the global swap_lock, counted exactly.

Rules (shared/reference/kernel-rmap.md, "Reclaim walks a page up to three times"):
shrink_active_list walks (page_referenced) every anonymous page it takes off the active
list and deactivates it, referenced or not; shrink_page_list takes each inactive page's
lock with trylock (a locked page is kept, untouched), walks it again in
page_check_references (referenced: back to the active list) and then try_to_unmap walks it
a third time; try_to_unmap_one takes the swap_lock once per PTE it turns into a swap entry
(swap_duplicate), and do_swap_page once per PTE it maps back (swap_free).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from shared_model.build import build_family
from shared_model.eras import ERAS
from shared_model.layout import LS_ACQ, PTE_YOUNG
from shared_model.locks import CLASS, SITE
from shared_model.memory import touch_pages
from shared_model.model import Model
from shared_model.rmap import lock_page_c, try_to_unmap
from shared_model.swap_state import do_swap_page
from shared_model.vmscan import (
    AnonLru,
    shrink_active_list,
    shrink_lru,
    shrink_page_list,
    unlock_page_one,
)

MakeModel = Callable[..., Model]


def cpu(m: Model, field: str) -> int:
    return int(m.seg["cpu"][m.cpu][field])


def swap_lock_acq(m: Model, site: str) -> int:
    return int(m.seg["lockstat"][m.cpu, CLASS["swap_lock"], SITE[site], LS_ACQ])


def idle_family(make_model: MakeModel, era: str, n: int, p: int) -> tuple[Model, np.ndarray]:
    m = make_model(era, users=n, pages=p, cow=1.0)
    build_family(m, n, p, 1.0)
    m.pte_flags[:] &= ~PTE_YOUNG
    return m, np.flatnonzero(m.page_mapping >= 0).astype(np.int64)


@pytest.mark.parametrize("era", list(ERAS))
def test_three_walks_per_reclaimed_page(make_model: MakeModel, era: str) -> None:
    m, pages = idle_family(make_model, era, 3, 4)  # 16 pages, each mapped once
    lru = AnonLru(pages)  # new anonymous pages start on the active list
    assert lru.inactive_is_low()
    assert shrink_lru(m, lru, len(pages), refault=False) == len(pages)
    # shrink_active_list walked and deactivated all 16; shrink_page_list walked each again
    # (page_check_references) and once more to unmap it.
    assert cpu(m, "pages_deactivated") == 16
    assert cpu(m, "pages_scanned") == 16 and cpu(m, "pages_unmapped") == 16
    assert cpu(m, "walks") == 3 * 16
    assert lru.nr_active() == 0
    # swap_duplicate once per PTE unmapped (each page mapped once).
    assert swap_lock_acq(m, "swap_duplicate") == 16
    # The next pass finds them unmapped: no walk, and drops them from the swap cache.
    assert shrink_lru(m, lru, len(pages), refault=False) == len(pages)
    assert cpu(m, "walks") == 3 * 16
    assert (m.page_mapping[pages] == -1).all() and (m.page_swapcount[pages] == 1).all()


@pytest.mark.parametrize("era", ["2.6.34", "2.6.36"])
def test_referenced_inactive_page_is_activated(make_model: MakeModel, era: str) -> None:
    m, pages = idle_family(make_model, era, 2, 2)
    lru = AnonLru(pages, active=False)
    parent = 0
    touch_pages(m, parent, np.arange(2))  # the parent uses its two pages again
    young = {m.pte_of(parent, v)[0] for v in range(2)}
    assert shrink_page_list(m, lru, 0, len(pages), refault=False) == len(pages)
    assert {int(p) for p, a in zip(pages, lru.active) if a} == young
    assert cpu(m, "pages_unmapped") == len(pages) - 2
    assert cpu(m, "walks") == len(pages) + (len(pages) - 2)  # the two young: no try_to_unmap
    assert shrink_active_list(m, lru, len(pages)) == len(pages)
    assert lru.nr_active() == 0 and cpu(m, "pages_deactivated") == 2


@pytest.mark.parametrize("era", ["2.6.33", "2.6.36"])
def test_a_locked_page_is_kept(make_model: MakeModel, era: str) -> None:
    m, pages = idle_family(make_model, era, 1, 1)
    page = int(pages[0])
    assert lock_page_c(m.words, m.w32, m.g, page) == 0  # someone holds it (do_swap_page)
    lru = AnonLru(pages, active=False)
    assert shrink_page_list(m, lru, 0, len(pages), refault=False) == len(pages)
    assert cpu(m, "pages_scanned") == len(pages) - 1  # trylock_page failed: kept
    assert m.page_mapcount[page] == 1
    unlock_page_one(m.w32, m.g, page)
    assert shrink_page_list(m, lru, 0, 1, refault=False) == 1
    assert m.page_mapcount[page] == 0


@pytest.mark.parametrize("era", list(ERAS))
def test_swap_lock_per_pte(make_model: MakeModel, era: str) -> None:
    n = 4
    m = make_model(era, users=n, pages=1, cow=0.0)
    fam = build_family(m, n, 1, 0.0)
    page = m.pte_of(fam.parent, 0)[0]
    m.pte_flags[:] &= ~PTE_YOUNG
    slots, _ = try_to_unmap(m, page)
    assert len(slots) == n + 1 == swap_lock_acq(m, "swap_duplicate")
    assert do_swap_page(m, page, slots) == n + 1 == swap_lock_acq(m, "swap_free")


@pytest.mark.parametrize("era", list(ERAS))
def test_reclaim_storm_refault_keeps_the_model_whole(make_model: MakeModel, era: str) -> None:
    """Reclaim with refault over several rounds: pages cycle active -> inactive ->
    unmapped -> faulted back (swap-cache hits) -> referenced -> active; check_model at
    teardown.  2.6.34 ends with every COWed page on the root (its first mapping after the
    swap-in), 2.6.36+ with each where it was."""
    n, p = 3, 2
    m, pages = idle_family(make_model, era, n, p)
    where = m.page_mapping[pages].copy()
    lru = AnonLru(pages)
    for _ in range(6):
        shrink_lru(m, lru, len(pages), refault=True)
    assert cpu(m, "refaults") == cpu(m, "pages_unmapped") >= len(pages)
    root = int(m.vma_anon_vma[int(m.mm["vma_head"][0])])
    moved = m.page_mapping[pages]
    if ERAS[era].swapin == "oldest":
        assert (moved == root).all()
    else:
        assert (moved == where).all()


def test_check_model_reports_a_page_left_locked(make_model: MakeModel) -> None:
    from shared_model.invariants import check_model

    m, pages = idle_family(make_model, "2.6.36", 1, 1)
    page = int(pages[0])
    assert lock_page_c(m.words, m.w32, m.g, page) == 0
    assert check_model(m) == [f"1 pages still locked (PG_locked), e.g. page {page}"]
    unlock_page_one(m.w32, m.g, page)
    assert check_model(m) == []

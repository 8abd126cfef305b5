"""The eras table against the kernel's history (see /work/shared/reference/kernel-rmap.md):
what changed in 2.6.34 (anon_vma_chain, swap-in to the oldest anon_vma, page_move_anon_rmap),
2.6.36 (the root's lock; a swap-cache hit keeps its mapping), 3.0-rc1 (a mutex) and 3.0 as
released (the root locked once per clone/unlink pass)."""

from __future__ import annotations

import pytest

from shared_model.eras import ERAS, Era, get_era


def test_the_eras_in_order_with_what_each_changed() -> None:
    assert list(ERAS)[:6] == ["2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36", "3.0-rc1", "3.0"]
    got = {n: (e.chain, e.lock_root, e.lock) for n, e in list(ERAS.items())[:6]}
    assert got == {"2.6.33": (False, False, "ticket"), "2.6.34-rc1": (True, False, "ticket"),
                   "2.6.34": (True, False, "ticket"),
                   "2.6.36": (True, True, "ticket"), "3.0-rc1": (True, True, "mutex"),
                   "3.0": (True, True, "mutex")}
    swap = {n: (e.swapin, e.move_anon_rmap, e.lock_once) for n, e in list(ERAS.items())[:6]}
    # The seed as committed (5beb4930525): page->mapping = vma->anon_vma on the first
    # mapping ("keep"); ea90002b0fa7 made it the oldest anon_vma for 2.6.34 as released.
    assert swap == {"2.6.33": ("keep", False, False), "2.6.34-rc1": ("keep", True, False),
                    "2.6.34": ("oldest", True, False),
                    "2.6.36": ("root", True, False), "3.0-rc1": ("root", True, False),
                    "3.0": ("root", True, True)}
    assert ERAS["2.6.34-rc1"].commit == "5beb4930525"
    assert "ea90002b0fa7" in ERAS["2.6.34"].commit and "5beb4930525" in ERAS["2.6.34"].commit
    assert "dd34739c03f2" in ERAS["3.0"].commit
    assert list(ERAS)[6:] == ["3.7", "3.8", "3.9", "3.19", "6.0", "modern"]
    later = {n: (e.lock, e.rwsem_policy, e.tree, e.reuse, e.rmap_trylock) for n, e in list(ERAS.items())[6:]}
    assert later == {"3.7": ("mutex", "fifo", True, "none", False),
                     "3.8": ("rwsem", "fifo", True, "none", False),
                     "3.9": ("rwsem", "steal-behind-writer", True, "none", False),
                     "3.19": ("rwsem", "spin-on-owner", True, "degree", False),
                     "6.0": ("rwsem", "handoff", True, "active", True),
                     "modern": ("rwsem", "handoff", True, "active", True)}
    # 3.7-3.19 keep 3.0's swap-in, page_move_anon_rmap and once-per-pass locking; 6.0 and
    # modern map an exclusive swap entry exclusively (5.19's anon-exclusive work).
    assert {n: (e.swapin, e.move_anon_rmap, e.lock_once) for n, e in list(ERAS.items())[6:]} == {
        **{n: ("root", True, True) for n in ("3.7", "3.8", "3.9", "3.19")},
        **{n: ("anon_exclusive", True, True) for n in ("6.0", "modern")}}
    assert all(e.name == n and e.summary for n, e in ERAS.items())


def test_get_era() -> None:
    assert get_era("2.6.34") is ERAS["2.6.34"]
    assert isinstance(get_era("3.0"), Era)
    with pytest.raises(ValueError) as info:
        get_era("2.6.35")
    assert str(info.value) == f"unknown era '2.6.35' (choose from {', '.join(ERAS)})"
    assert "3.0-rc1, 3.0, 3.7" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__

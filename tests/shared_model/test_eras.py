"""The eras table against the kernel's history (see /work/shared/reference/kernel-rmap.md):
what changed in 2.6.34 (anon_vma_chain), 2.6.36 (the root's lock) and 3.0 (a mutex)."""

from __future__ import annotations

import pytest

from shared_model.eras import ERAS, Era, get_era


def test_the_eras_in_order_with_what_each_changed() -> None:
    assert list(ERAS) == ["2.6.33", "2.6.34", "2.6.36", "3.0", "3.8", "3.9", "modern"]
    got = {n: (e.chain, e.lock_root, e.lock) for n, e in ERAS.items()}
    assert got == {"2.6.33": (False, False, "ticket"), "2.6.34": (True, False, "ticket"),
                   "2.6.36": (True, True, "ticket"), "3.0": (True, True, "mutex"),
                   "3.8": (True, True, "rwsem"), "3.9": (True, True, "rwsem"),
                   "modern": (True, True, "rwsem")}
    assert all(e.name == n and e.summary for n, e in ERAS.items())


def test_get_era() -> None:
    assert get_era("2.6.34") is ERAS["2.6.34"]
    assert isinstance(get_era("3.0"), Era)
    with pytest.raises(ValueError) as info:
        get_era("2.6.35")
    assert str(info.value) == ("unknown era '2.6.35' (choose from 2.6.33, 2.6.34, 2.6.36, 3.0, 3.8, "
                               "3.9, modern)")
    assert info.value.__cause__ is None and info.value.__suppress_context__

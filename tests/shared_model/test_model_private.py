"""Model.private: a model for this process alone, closed and let go however the block ends
(the segment is an unnamed shared mapping: nothing in /dev/shm; see shared_model/segment.py)."""

from __future__ import annotations

import pytest

from shared_model.build import family_capacities
from shared_model.invariants import check_model
from shared_model.model import Model
from shared_model.segment import Segment


def _released(seg: Segment) -> bool:
    return seg._unlinked and not seg.arrays


def test_private_model_is_released_after_the_block() -> None:
    with Model.private(family_capacities("2.6.34", 2, 2, 1.0, 1), "2.6.34") as m:
        seg = m.seg
        assert not _released(seg)
        assert check_model(m) == []
    assert _released(seg)


def test_private_model_is_released_when_the_block_raises() -> None:
    with pytest.raises(KeyError), Model.private(family_capacities("2.6.33", 2, 2, 1.0, 1), "2.6.33") as m:
        seg = m.seg
        raise KeyError("boom")
    assert _released(seg)

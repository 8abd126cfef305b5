"""The shared segment: its life cycle in /dev/shm and its byte layout."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from shared_model import model as model_module  # the module object, to monkeypatch
from shared_model.build import family_capacities
from shared_model.eras import ERAS
from shared_model.layout import (
    ANON_VMA_DTYPE,
    CACHELINE,
    CPU_DTYPE,
    LOCK_DTYPE,
    MM_DTYPE,
    Capacities,
)
from shared_model.model import Model
from shared_model.segment import MAGIC, SHM_PREFIX, Segment, leftover_segments

CAPS = [
    family_capacities("2.6.33", 3, 5, 0.5, 2),
    family_capacities("2.6.34", 7, 3, 1.0, 1),
    family_capacities("3.0", 100, 10, 0.3, 4, spare_users=9),
    Capacities(mms=1, vmas=2, anon_vmas=1, avcs=1, pages=1, ptrs_per_mm=1, cpus=1),
]


def on_disk(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


# ----------------------------------------------------------------------------- life cycle


def test_create_close_unlink_leaves_nothing() -> None:
    seg = Segment.create(CAPS[0])
    name = seg.name
    try:
        assert name.startswith(f"{SHM_PREFIX}{os.getpid()}-")
        # a memfd: the memory has no name in /dev/shm, even while it is in use
        assert name not in leftover_segments() and not on_disk(name)
        assert seg.size == CAPS[0].nbytes() and seg.size % 4096 == 0
        hdr = seg["header"][0]
        want = (MAGIC, CAPS[0].cpus, CAPS[0].ptrs_per_mm)
        assert (hdr["magic"], hdr["ncpus"], hdr["ptrs_per_mm"]) == want
    finally:
        seg.close()
        seg.unlink()
    assert not on_disk(name) and name not in leftover_segments()
    seg.unlink()  # once only: a second unlink is a no-op


def test_close_tolerates_a_view_still_held() -> None:
    seg = Segment.create(CAPS[0])
    name = seg.name
    view = seg["header"]  # pins the mapping
    seg.close()
    seg.unlink()
    assert not on_disk(name)
    assert view["magic"][0] == MAGIC  # the mapping lives on with the view
    del view


def test_only_the_creator_unlinks() -> None:
    seg = Segment.create(CAPS[0])
    other = Segment(seg.shm, seg.caps, owner=False)
    other.unlink()
    assert not other._unlinked and not seg._unlinked
    other.arrays.clear()
    seg.close()
    seg.unlink()
    assert seg._unlinked and not on_disk(seg.name)


def test_failed_segment_init_unlinks(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_init(self: Segment, *args: object, **kwargs: object) -> None:
        raise RuntimeError("init failed")

    monkeypatch.setattr(Segment, "__init__", broken_init)
    with pytest.raises(RuntimeError, match="init failed"):
        Segment.create(CAPS[0])
    # no_leftover_segments (conftest) checks /dev/shm after the test as well.
    assert not [n for n in leftover_segments() if n.startswith(f"{SHM_PREFIX}{os.getpid()}-")]


@pytest.mark.parametrize("era", list(ERAS))
def test_failed_model_create_unlinks(monkeypatch: pytest.MonkeyPatch, era: str) -> None:
    created: list[str] = []
    real_create = Segment.create

    def spy_create(caps: Capacities) -> Segment:
        seg = real_create(caps)
        created.append(seg.name)
        return seg

    def broken_reset(*args: object) -> None:
        raise RuntimeError("init failed")

    monkeypatch.setattr(Segment, "create", staticmethod(spy_create))
    monkeypatch.setattr(model_module, "reset_lockstat", broken_reset)
    with pytest.raises(RuntimeError, match="init failed"):
        Model.create(family_capacities(era, 2, 2, 0.0, 1), era)
    assert len(created) == 1
    assert not on_disk(created[0])


def test_model_close_then_unlink_leaves_nothing() -> None:
    m = Model.create(CAPS[1], "2.6.34")
    seg = m.seg
    name = seg.name
    m.close()
    seg.unlink()
    assert not on_disk(name)


def test_unknown_era_is_refused_before_anything_is_created() -> None:
    with pytest.raises(ValueError, match="unknown era"):
        Model.create(CAPS[0], "2.4.0")


# ----------------------------------------------------------------------------- layout


def test_lock_records_are_one_cache_line() -> None:
    assert LOCK_DTYPE.itemsize == CACHELINE == 64
    # The holder's owner word is the last 8 bytes (CpuLocks writes word w + 7).
    assert LOCK_DTYPE.fields is not None and LOCK_DTYPE.fields["owner"][1] == 56
    # Records that embed a lock start with it and are whole cache lines, so every lock in
    # an array sits on its own cache line.
    for dtype, field in ((MM_DTYPE, "ptl"), (ANON_VMA_DTYPE, "lock")):
        assert dtype.fields is not None and dtype.fields[field][1] == 0
        assert dtype.itemsize % CACHELINE == 0
    # Per-CPU slots: written by one CPU each, at least 256 bytes apart (will-it-scale).
    assert CPU_DTYPE.itemsize >= 256 and CPU_DTYPE.itemsize % CACHELINE == 0


@pytest.mark.parametrize("caps", CAPS, ids=["2.6.33", "2.6.34", "3.0-large", "minimal"])
def test_offsets_are_aligned_and_disjoint(caps: Capacities) -> None:
    offsets, total = caps.offsets()
    assert total % 4096 == 0
    spans = []
    for name, dtype, shape in caps.arrays():
        off = offsets[name]
        assert off % CACHELINE == 0, name
        spans.append((off, off + dtype.itemsize * math.prod(shape), name))
    spans.sort()
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        assert end <= start, (a, b)
    assert spans[-1][1] <= total
    # Per-CPU slots are a cache line apart or more (written by one CPU each).
    for name, dtype, shape in caps.arrays():
        if name in ("cpu", "lockstat", "walkhist", "lockdep"):
            assert shape[0] == caps.cpus
            assert (dtype.itemsize * math.prod(shape[1:])) % CACHELINE == 0, name


@pytest.mark.parametrize("caps", CAPS[:2], ids=["2.6.33", "2.6.34"])
def test_lock_addresses_in_the_mapping_are_aligned(caps: Capacities) -> None:
    seg = Segment.create(caps)
    try:
        assert seg.base % 4096 == 0
        for array, field in (("mm", "ptl"), ("anon_vma", "lock"), ("slab", None)):
            arr = seg[array]
            locks = arr if field is None else arr[field]
            for i in range(len(arr)):
                addr = seg.address(array, i)
                assert addr % CACHELINE == 0
                assert addr == arr[i:i + 1].ctypes.data
                # The owner word CpuLocks writes (word w + 7) is this record's lock owner.
                assert locks["owner"][i:i + 1].ctypes.data == addr + 56
        cpu = np.array([seg.address("cpu", c) for c in range(caps.cpus)])
        assert np.all(cpu % CACHELINE == 0)
        assert np.all(np.diff(cpu) == CPU_DTYPE.itemsize)
    finally:
        seg.close()
        seg.unlink()

"""Create, view, close and unlink the one shared segment of a run.

The creator (the parent) unlinks exactly once, in ``Segment.unlink``; workers are forked
after creation and inherit the mapping, so they never attach by name and never unlink.
A failed ``create`` unlinks what it made before re-raising.  ``close`` drops every numpy
view first (a live view pins the mmap) and tolerates a view someone else still holds:
the mapping then goes away with the process, but the name is gone from /dev/shm as soon
as ``unlink`` runs.
"""

from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory

import numpy as np

from .layout import Capacities

SHM_PREFIX = "rmap-stress-"
MAGIC = 0x524D4150_53545253  # "RMAPSTRS"


class Segment:
    """One shared-memory segment holding the whole model, as named numpy arrays."""

    def __init__(self, shm: shared_memory.SharedMemory, caps: Capacities, owner: bool) -> None:
        self.shm = shm
        self.caps = caps
        self.owner = owner
        self.name = shm.name
        offsets, self.size = caps.offsets()
        self.offsets = offsets
        self.arrays: dict[str, np.ndarray] = {}
        for name, dtype, shape in caps.arrays():
            count = int(np.prod(shape))
            arr = np.frombuffer(shm.buf, dtype=dtype, count=count, offset=offsets[name])
            self.arrays[name] = arr.reshape(shape)
        # Address of byte 0, for the locks: a lock's address is base + offset of its bytes.
        self.base = self.arrays["header"].ctypes.data - offsets["header"]
        self._unlinked = False

    @classmethod
    def create(cls, caps: Capacities) -> Segment:
        size = caps.nbytes()
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        try:
            seg = cls(shm, caps, owner=True)
            hdr = seg.arrays["header"][0]
            hdr["magic"] = MAGIC
            hdr["ncpus"] = caps.cpus
            hdr["ptrs_per_mm"] = caps.ptrs_per_mm
            return seg
        except BaseException:
            shm.close()
            shm.unlink()
            raise

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def address(self, array: str, index: int, field_offset: int = 0) -> int:
        arr = self.arrays[array]
        return self.base + self.offsets[array] + index * arr.dtype.itemsize + field_offset

    def close(self) -> None:
        self.arrays.clear()
        try:
            self.shm.close()
        except BufferError:
            # A caller still holds a view.  The mapping goes when the last view does; make
            # SharedMemory forget it so its __del__ does not try (and complain) again.
            self.shm._buf = None  # type: ignore[attr-defined]
            self.shm._mmap = None  # type: ignore[attr-defined]

    def unlink(self) -> None:
        """Remove the name from /dev/shm; only the creator, only once."""
        if self.owner and not self._unlinked:
            self._unlinked = True
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"<Segment {self.name} {self.size / 2**20:.1f} MiB>"


def leftover_segments() -> list[str]:
    """Names of rmap-stress segments currently in /dev/shm."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX))
    except FileNotFoundError:
        return []

"""Create, view, close and release the one shared segment of a run.

The segment has no name anyone can find: it is a memfd (``memfd_create``), mapped
``MAP_SHARED`` by the creator and closed at once, so the mapping is the only reference.
Workers are forked after creation and inherit the mapping; nothing outside the process
tree attaches.  So whatever kills the run, SIGKILL of the whole process group included,
the memory goes back to the kernel with the last process that maps it, and nothing is
left in /dev/shm for a later invocation to find (a named POSIX segment outlived
a group kill, which took its resource tracker with it).

``name`` ("rmap-stress-PID-TAG") is only a label: it shows in ``/proc/PID/maps`` as
``/memfd:rmap-stress-PID-TAG (deleted)``.  ``unlink`` is kept for the creator's cleanup
order and is a no-op on the memory.  ``sweep_stale_segments`` removes named segments that
older versions (or a crash of one) left in /dev/shm, of owners that are dead.

``close`` drops every numpy view first (a live view pins the mmap) and tolerates a view
someone else still holds: the mapping then goes away with the view, or with the process.
"""

from __future__ import annotations

import mmap
import os
import secrets

import numpy as np

from .layout import Capacities
from .locking.clock import calibrate_tsc

SHM_PREFIX = "rmap-stress-"
MAGIC = 0x524D4150_53545253  # "RMAPSTRS"


class SharedMapping:
    """An anonymous shared mapping backed by a memfd: ``buf`` is its memoryview.

    The file descriptor is closed as soon as the mapping exists, so the memory lives
    exactly as long as some process maps it (a forked child maps it too)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self._mmap: mmap.mmap | None = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self._buf: memoryview | None = memoryview(self._mmap)

    @property
    def buf(self) -> memoryview:
        if self._buf is None:
            raise ValueError(f"{self.name}: the mapping is closed")
        return self._buf

    def close(self) -> None:
        """Unmap; BufferError if a view still holds it (as SharedMemory.close)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None

    def unlink(self) -> None:
        """Nothing to remove: the memfd has no name in any file system."""

    def __repr__(self) -> str:
        return f"<SharedMapping {self.name} {self.size} bytes>"


class Segment:
    """One shared-memory segment holding the whole model, as named numpy arrays."""

    def __init__(self, shm: SharedMapping, caps: Capacities, owner: bool) -> None:
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
        shm = SharedMapping(name, size)
        try:
            seg = cls(shm, caps, owner=True)
            hdr = seg.arrays["header"][0]
            hdr["magic"] = MAGIC
            hdr["ncpus"] = caps.cpus
            hdr["ptrs_per_mm"] = caps.ptrs_per_mm
            hdr["tsc_mult"], hdr["tsc_shift"], hdr["tsc_cyc0"], hdr["tsc_ns0"] = calibrate_tsc()
            return seg
        except BaseException:
            try:
                shm.close()
            except BufferError:
                pass  # a partly built view pins it; the mapping goes when the view does
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
            # A caller still holds a view.  The mapping goes when the last view does; forget
            # it here so a second close does not try (and complain) again.
            self.shm._buf = None
            self.shm._mmap = None

    def unlink(self) -> None:
        """The creator's last step; the memory has no name to remove (see the module
        docstring), so this only records that the creator let go."""
        if self.owner and not self._unlinked:
            self._unlinked = True
            self.shm.unlink()

    def __repr__(self) -> str:
        return f"<Segment {self.name} {self.size / 2**20:.1f} MiB>"


def leftover_segments() -> list[str]:
    """Names of rmap-stress segments currently in /dev/shm (made by older versions: this
    one never names its memory there)."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX))
    except FileNotFoundError:
        return []


def segment_owner(name: str) -> int | None:
    """The pid in "rmap-stress-PID-TAG", or None if the name is not of that form."""
    pid = name[len(SHM_PREFIX):].split("-", 1)[0]
    return int(pid) if name.startswith(SHM_PREFIX) and pid.isdigit() else None


def sweep_stale_segments() -> list[str]:
    """Remove from /dev/shm the rmap-stress segments whose owner process is dead, and
    return their names.  A segment of a live process is never touched (it may be another
    run's, or an older version's still running)."""
    removed = []
    for name in leftover_segments():
        pid = segment_owner(name)
        if pid is None or pid <= 0 or _alive(pid):
            continue
        try:
            os.unlink(f"/dev/shm/{name}")
            removed.append(name)
        except OSError:  # already gone, or not ours to remove
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True

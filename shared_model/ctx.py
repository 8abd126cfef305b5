"""The compiled code's view of the segment: one CPU's geometry table.

Compiled functions cannot take a ``Model``; they take the segment as two flat arrays over
the same bytes (``words``: int64, ``w32``: int32) and ``g``, a small int64 table of where
everything is and what this CPU is.  Every record address is computed from ``g`` the way
the kernel computes a field's address from a pointer::

    page p's mapcount      w32[g[PAGE0] + p * g[PAGE_W] + PAGE_MAPCOUNT]
    mm m's ptl (lock word)  g[MM_PTL_W0] + m * g[MM_W64]          (an index into ``words``)

``g`` is process-local (each CPU builds its own: its cpu number, owner tag, lockstat slot
and MCS node block differ); the arrays it indexes are shared.  The table is built once per
``Model`` by ``make_geometry`` and never changes while compiled code runs, except the
entries the Python side may flip between calls (``ENTRY_COST_NS``, ``INSTRUMENT``,
``ORDER_CHECK``, ``ALLOC_FAIL``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .layout import (
    ALLOC_KINDS,
    ANON_VMA_DTYPE,
    AVC_DTYPE,
    CPU_DTYPE,
    CPU_FIELDS,
    HEADER_DTYPE,
    LOCK_CLASSES,
    LOCK_SITES,
    LOCKDEP_CLASSES,
    LS_FIELDS,
    MM_DTYPE,
    PAGE_DTYPE,
    PGTABLE_KINDS,
    PTRS_PER_TABLE,
    SLAB_CPU_WORDS,
    VMA_DTYPE,
    WALK_HIST_BUCKETS,
)
from .locking.cached_compile import cached_njit

if TYPE_CHECKING:
    from .segment import Segment

# ---------------------------------------------------------------- geometry table indices


class _Table:
    """Hands out the table's indices in the order they are asked for: ``entry()`` one,
    ``entry(n)`` n in a row (a per-class or per-kind column); ``size`` is the table's."""

    size = 0

    def entry(self, n: int = 1) -> int:
        i = self.size
        self.size += n
        return i


# The table's entries, one name each, in table order: adding an entry is adding a line
# here and setting it in make_geometry (or where its comment says).  Compiled code reads
# them by name only.
_table = _Table()
# This CPU: who it is, and its own slots in the segment (word indices into ``words``).
CPU = _table.entry()
OWNER_TAG = _table.entry()  # locks.owner_tag: written in the owner word of what it holds
STOP_W = _table.entry()  # the run's stop word (header)
NODE_W = _table.entry()  # its MCS / wait-list node block
LS_BASE = _table.entry()  # its lockstat slot
CPU_BASE = _table.entry()  # its CPU slot (the F_* fields below)
WALKHIST_BASE = _table.entry()  # its walk-length histogram
LOCKDEP_BASE = _table.entry()  # its lockdep edge table (lockdep.py)
SLAB_CPU_W = _table.entry()  # its per-CPU slab caches: the int32 word of its first array_cache
RNG = _table.entry()  # its random state
# Knobs the Python side may flip between calls.
ENTRY_COST_NS = _table.entry()  # Model.entry_cost_ns: modelled cost per visited entry
INSTRUMENT = _table.entry()  # lockstat on
ORDER_CHECK = _table.entry()  # lockdep on (--check-lock-order)
ALLOC_FAIL = _table.entry()  # fault injection of allocations
# The request point (lock_request.py): the place a contended acquire took in compiled code
# and has not waited on yet (a ticket spinlock's ticket + 1, a qspinlock's or an rwsem's
# place as their request returns it; 0: none), its lock word and its lock kind.
# Process-local: only this CPU's own slow path polls it (``locks.lock_request_fast``).
REQ_PLACE = _table.entry()
REQ_W = _table.entry()
REQ_KIND = _table.entry()
# The abort paths, process-local.  NO_ABORT: depth of the sections the run's abort may not
# cut short (``locks.no_abort_begin``: an operation putting the model back, or past the
# point of no return); their lock waits outlast the abort.  ABORT_NTH: fault injection, as
# the kernel's fail_nth (``locks.lock_acquire_c``): 0 off; n > 0: the n-th lock acquisition
# of this CPU from now on, and every one after it, gives up as an aborted wait does,
# whether the lock is free or not (none inside a NO_ABORT section).  Tests set it, a run
# never does.
NO_ABORT = _table.entry()
ABORT_NTH = _table.entry()
# One scratch word of this CPU's: the page do_wp_page allocates after a write fault's
# swap-in (rmap.wp_page_copy_c, which may not allocate an array itself).
WP_SCRATCH = _table.entry()
# The era (eras.Era), set by make_geometry, or by Model where it says so.
LOCK_ROOT = _table.entry()  # the rmap lock is the root anon_vma's (2.6.36+)
CHAIN = _table.entry()  # anon_vma_chain (2.6.34+)
RWSEM_POLICY = _table.entry()  # an rwsem rmap lock's hand-off (3.8+)
SWAPIN = _table.entry()  # Era.swapin as a SWAPIN_* code
MOVE_ANON_RMAP = _table.entry()  # Era.move_anon_rmap
LOCK_ONCE = _table.entry()  # Era.lock_once: the root lock once around a chain (3.0+)
TREE = _table.entry()  # the interval tree (3.7+)
REUSE = _table.entry()  # the reuse rule (eras.REUSE_*, 3.19+)
RMAP_TRYLOCK = _table.entry()  # reclaim's walk trylocks the rmap lock (set by Model)
FREE_RELOCK = _table.entry()  # Era.anon_vma_free_relock (set by Model)
ADJUST_LOCK = _table.entry()  # Era.adjust_lock as an eras.ADJUST_* code (set by Model)
CLONE_NOWAIT = _table.entry()  # Era.clone_nowait (set by Model)
SELF_REF = _table.entry()  # Era.self_ref: the refcount counts the anon_vma's own list (set by Model)
# Set by the workload, in its own process (``--refault-order``): the order in which a
# page's owners fault it back in after reclaim unmapped it (``scan --refault`` and
# reclaim-storm's refaults; REFAULT_ORDER_*).
REFAULT_ORDER = _table.entry()
# The segment: its capacities, and where its records are: a record kind's base (``*0``)
# and stride (``*_W``) in int32 words of ``w32`` (a ``*_W64`` stride: int64 words); a
# lock's or a header field's word (``*_W0``, ``*_W``) indexes ``words``.
PTRS = _table.entry()  # PTEs per mm
NCPUS = _table.entry()
PAGE0 = _table.entry()
PAGE_W = _table.entry()
PTE0 = _table.entry()
VMA0 = _table.entry()
VMA_W = _table.entry()
AV0 = _table.entry()
AV_W64 = _table.entry()
AV_LOCK_W0 = _table.entry()  # anon_vma 0's lock word
MM0 = _table.entry()
MM_W64 = _table.entry()
MM_PTL_W0 = _table.entry()  # mm 0's page_table_lock word
AVC0 = _table.entry()
AVC_W = _table.entry()
SLAB_W0 = _table.entry()  # the slab locks' words
TOPS_W = _table.entry()  # the header's free-stack tops
SWAP_LOCK_W = _table.entry()  # the swap_lock's word
SWAPDEV_W = _table.entry()  # the swap device record's first int64 word (swapdev.py)
# The page tables (layout.PTRS_PER_TABLE): the int64 word of block 0 of each upper level,
# and of the split PTE lock of PTE page 0 (PTE page p's: PTL_W0 + p * 8).
PGD0 = _table.entry()
PUD0 = _table.entry()
PMD0 = _table.entry()
PTL_W0 = _table.entry()
# The lockstat clock's calibration (copied from the segment header).
TSC_MULT = _table.entry()
TSC_SHIFT = _table.entry()
TSC_CYC0 = _table.entry()
TSC_NS0 = _table.entry()
# KIND0 + lock class: the primitive of that class (shared_model.locking kinds).
KIND0 = _table.entry(len(LOCK_CLASSES))
# + allocatable kind k (layout.ALLOC_KINDS order): its records' base and stride, the offset
# of their ``in_use`` field (int32 words), and its free stack's base.
REC0 = _table.entry(len(ALLOC_KINDS))
REC_W = _table.entry(len(ALLOC_KINDS))
IN_USE = _table.entry(len(ALLOC_KINDS))
FREE0 = _table.entry(len(ALLOC_KINDS))
G_SIZE = _table.size

K_MM, K_VMA, K_ANON_VMA, K_AVC, K_PAGE = (ALLOC_KINDS.index(k) for k in (
    "mm", "vma", "anon_vma", "avc", "page"))
K_PGD, K_PUD, K_PMD, K_PTE = (ALLOC_KINDS.index(k) for k in PGTABLE_KINDS)
SWAPIN_KEEP, SWAPIN_OLDEST, SWAPIN_ROOT, SWAPIN_ANON_EXCLUSIVE = 0, 1, 2, 3
SWAPIN_CODE = {"keep": SWAPIN_KEEP, "oldest": SWAPIN_OLDEST, "root": SWAPIN_ROOT,
               "anon_exclusive": SWAPIN_ANON_EXCLUSIVE}
REFAULT_PARENT_FIRST, REFAULT_CHILD_FIRST, REFAULT_RANDOM = 0, 1, 2
REFAULT_ORDER_CODE = {"parent-first": REFAULT_PARENT_FIRST, "child-first": REFAULT_CHILD_FIRST,
                      "random": REFAULT_RANDOM}

# Field positions, in int32 words, inside each record (from the dtypes, so a layout change
# cannot silently desynchronise the compiled code).


def _f32(dtype: np.dtype, name: str, sub: int = 0) -> int:
    off = dtype.fields[name][1]  # type: ignore[index]
    assert off % 4 == 0
    return off // 4 + sub


PAGE_MAPPING = _f32(PAGE_DTYPE, "mapping")
PAGE_INDEX = _f32(PAGE_DTYPE, "index")
PAGE_MAPCOUNT = _f32(PAGE_DTYPE, "mapcount")
PAGE_SWAPCOUNT = _f32(PAGE_DTYPE, "swapcount")
PAGE_FLAGS = _f32(PAGE_DTYPE, "flags")
# mapcount (low half) and swapcount (high half) as one int64 word: page p's is
# (g[PAGE0] + p * g[PAGE_W] + PAGE_MAPCOUNT) // 2 in ``words``.
assert PAGE_MAPCOUNT % 2 == 0 and PAGE_SWAPCOUNT == PAGE_MAPCOUNT + 1 and PAGE_DTYPE.itemsize % 8 == 0
VMA_START = _f32(VMA_DTYPE, "vm_start")
VMA_END = _f32(VMA_DTYPE, "vm_end")
VMA_PGOFF = _f32(VMA_DTYPE, "vm_pgoff")
VMA_MM = _f32(VMA_DTYPE, "vm_mm")
VMA_ANON_VMA = _f32(VMA_DTYPE, "anon_vma")
VMA_AVC_HEAD = _f32(VMA_DTYPE, "avc_head")
VMA_NEXT = _f32(VMA_DTYPE, "vm_next")
VMA_AV_PREV = _f32(VMA_DTYPE, "anon_vma_node_prev")  # 2.6.33: the anon_vma list's node
VMA_AV_NEXT = _f32(VMA_DTYPE, "anon_vma_node_next")
AV_ROOT = _f32(ANON_VMA_DTYPE, "root")
AV_PARENT = _f32(ANON_VMA_DTYPE, "parent")
AV_HEAD = _f32(ANON_VMA_DTYPE, "head")
AV_TAIL = _f32(ANON_VMA_DTYPE, "tail")
AV_NR_MEMBERS = _f32(ANON_VMA_DTYPE, "nr_members")
AV_REFCOUNT = _f32(ANON_VMA_DTYPE, "refcount")
AVC_VMA = _f32(AVC_DTYPE, "vma")
AVC_ANON_VMA = _f32(AVC_DTYPE, "anon_vma")
AVC_SAME_VMA_NEXT = _f32(AVC_DTYPE, "same_vma_next")
AVC_AV_PREV = _f32(AVC_DTYPE, "same_anon_vma_prev")  # 2.6.34+: the anon_vma list's node
AVC_AV_NEXT = _f32(AVC_DTYPE, "same_anon_vma_next")
MM_VMA_HEAD = _f32(MM_DTYPE, "vma_head")
MM_NR_VMAS = _f32(MM_DTYPE, "nr_vmas")
MM_RSS = _f32(MM_DTYPE, "rss")
MM_PARENT = _f32(MM_DTYPE, "parent")
MM_PGD = _f32(MM_DTYPE, "pgd")
VMA_FLAGS = _f32(VMA_DTYPE, "vm_flags")
AV_DEGREE = _f32(ANON_VMA_DTYPE, "degree")
AV_NUM_CHILDREN = _f32(ANON_VMA_DTYPE, "num_children")
AV_NUM_ACTIVE = _f32(ANON_VMA_DTYPE, "num_active_vmas")
AV_RB_ROOT = _f32(ANON_VMA_DTYPE, "rb_root")
AVC_RB_LEFT = _f32(AVC_DTYPE, "rb_left")
AVC_RB_RIGHT = _f32(AVC_DTYPE, "rb_right")
AVC_RB_PARENT = _f32(AVC_DTYPE, "rb_parent")
AVC_RB_COLOR = _f32(AVC_DTYPE, "rb_color")
AVC_RB_LAST = _f32(AVC_DTYPE, "rb_subtree_last")
assert AVC_DTYPE.itemsize % 4 == 0
_DTYPES = {"mm": MM_DTYPE, "vma": VMA_DTYPE, "anon_vma": ANON_VMA_DTYPE, "avc": AVC_DTYPE,
           "page": PAGE_DTYPE}

# Per-CPU slot fields, as word offsets from CPU_BASE.
F = {name: i for i, name in enumerate(CPU_FIELDS)}
F_STATE, F_SINCE, F_WAIT_LOCK, F_HOLD_LOCK = F["state"], F["state_since_ns"], F["wait_lock"], F["hold_lock"]
F_HEARTBEAT, F_WALKS, F_VISITED, F_MAX_VISITED = F["heartbeat"], F["walks"], F["visited"], F["max_visited"]
F_SCANNED, F_UNMAPPED, F_REFAULTS = F["pages_scanned"], F["pages_unmapped"], F["refaults"]
F_T_WALK, F_T_WAIT, F_OWNER_DIED = F["t_walk_ns"], F["t_wait_ns"], F["owner_died"]
F_FRAMES_IN, F_FRAMES_OUT, F_SWAPINS = F["frames_in"], F["frames_out"], F["swapins"]
F_DEACTIVATED = F["pages_deactivated"]
F_TRYLOCK_FAIL = F["rmap_trylock_fail"]
F_FREED_AV = F["rmap_freed_anon_vma"]
NSITES = len(LOCK_SITES)
NCLASSES = len(LOCK_CLASSES)


def segment_words(seg: Segment) -> tuple[np.ndarray, np.ndarray]:
    """The whole segment as int64 and int32 arrays (views, no copy)."""
    n = seg.size
    buf = seg.shm.buf
    return (np.frombuffer(buf, dtype=np.int64, count=n // 8),
            np.frombuffer(buf, dtype=np.int32, count=n // 4))


def make_geometry(seg: Segment, cpu: int, owner_tag: int, kinds: list[int], *, lock_root: bool,
                  chain: bool, entry_cost_ns: int, instrument: bool, rwsem_policy: int,
                  node_w: int, swapin: str = "keep", move_anon_rmap: bool = False,
                  lock_once: bool = False, tree: bool = False, reuse: int = 0) -> np.ndarray:
    """This CPU's geometry table (see the module header)."""
    offs = seg.offsets
    caps = seg.caps
    g = np.zeros(G_SIZE, dtype=np.int64)
    g[CPU] = cpu
    g[OWNER_TAG] = owner_tag
    g[STOP_W] = offs["header"] // 8 + 2
    g[NODE_W] = node_w
    g[LS_BASE] = offs["lockstat"] // 8 + cpu * NCLASSES * NSITES * LS_FIELDS
    g[CPU_BASE] = (offs["cpu"] + cpu * CPU_DTYPE.itemsize) // 8
    g[WALKHIST_BASE] = offs["walkhist"] // 8 + cpu * WALK_HIST_BUCKETS
    g[LOCKDEP_BASE] = offs["lockdep"] // 8 + cpu * LOCKDEP_CLASSES * LOCKDEP_CLASSES * 2
    g[PTRS] = caps.ptrs_per_mm
    g[ENTRY_COST_NS] = entry_cost_ns
    g[INSTRUMENT] = int(instrument)
    g[LOCK_ROOT] = int(lock_root)
    g[CHAIN] = int(chain)
    g[RWSEM_POLICY] = rwsem_policy
    g[PAGE0] = offs["page"] // 4
    g[PAGE_W] = PAGE_DTYPE.itemsize // 4
    g[PTE0] = offs["pte"] // 4
    g[VMA0] = offs["vma"] // 4
    g[VMA_W] = VMA_DTYPE.itemsize // 4
    g[AV0] = offs["anon_vma"] // 4
    g[AV_W64] = ANON_VMA_DTYPE.itemsize // 8
    g[AV_LOCK_W0] = (offs["anon_vma"] + ANON_VMA_DTYPE.fields["lock"][1]) // 8  # type: ignore[index]
    g[MM0] = offs["mm"] // 4
    g[MM_W64] = MM_DTYPE.itemsize // 8
    g[MM_PTL_W0] = (offs["mm"] + MM_DTYPE.fields["ptl"][1]) // 8  # type: ignore[index]
    g[SLAB_W0] = offs["slab"] // 8
    g[NCPUS] = caps.cpus
    g[AVC0] = offs["avc"] // 4
    g[AVC_W] = AVC_DTYPE.itemsize // 4
    g[TOPS_W] = (offs["header"] + HEADER_DTYPE.fields["top"][1]) // 8  # type: ignore[index]
    g[RNG] = 0x1E3779B97F4A7C15 ^ (cpu + 2)
    g[SWAPIN] = SWAPIN_CODE[swapin]
    g[SWAP_LOCK_W] = offs["swap_lock"] // 8
    g[MOVE_ANON_RMAP] = int(move_anon_rmap)
    g[LOCK_ONCE] = int(lock_once)
    for cls, kind in enumerate(kinds):
        g[KIND0 + cls] = kind
    hdr = seg["header"][0]
    g[TSC_MULT], g[TSC_SHIFT] = hdr["tsc_mult"], hdr["tsc_shift"]
    g[TSC_CYC0], g[TSC_NS0] = hdr["tsc_cyc0"], hdr["tsc_ns0"]
    g[SLAB_CPU_W] = offs["slab_cpu"] // 4 + cpu * SLAB_CPU_WORDS
    for k, name in enumerate(ALLOC_KINDS):
        if name in PGTABLE_KINDS:  # page-sized blocks with no in_use field
            g[REC0 + k] = offs[name] // 4
            g[REC_W + k] = PTRS_PER_TABLE * 2
            g[IN_USE + k] = -1
            g[FREE0 + k] = offs[f"free_{name}"] // 4
            continue
        g[REC0 + k] = offs[name] // 4
        g[REC_W + k] = _DTYPES[name].itemsize // 4
        g[IN_USE + k] = _f32(_DTYPES[name], "in_use")
        g[FREE0 + k] = offs[f"free_{name}"] // 4
    g[TREE] = int(tree)
    g[REUSE] = reuse
    g[SWAPDEV_W] = offs["swapdev"] // 8
    g[PGD0], g[PUD0], g[PMD0] = offs["pgd"] // 8, offs["pud"] // 8, offs["pmd"] // 8
    g[PTL_W0] = offs["ptl"] // 8
    return g


# A record field's int32 word in ``w32``, for compiled code (one definition for every
# module that addresses records; ``f`` is a field offset from the table above).


@cached_njit(llvm_inline=True)
def av_word(g: np.ndarray, av: int, f: int) -> int:
    return g[AV0] + av * 2 * g[AV_W64] + f


@cached_njit(llvm_inline=True)
def vma_word(g: np.ndarray, vma: int, f: int) -> int:
    return g[VMA0] + vma * g[VMA_W] + f


@cached_njit(llvm_inline=True)
def avc_word(g: np.ndarray, avc: int, f: int) -> int:
    return g[AVC0] + avc * g[AVC_W] + f


@cached_njit(llvm_inline=True)
def mm_word(g: np.ndarray, mm: int, f: int) -> int:
    return g[MM0] + mm * 2 * g[MM_W64] + f


@cached_njit(llvm_inline=True)
def page_word(g: np.ndarray, page: int, f: int) -> int:
    return g[PAGE0] + page * g[PAGE_W] + f


# Status codes of compiled model operations (compiled code raises nothing): 0 is success,
# STOPPED a lock wait aborted by the run's stop word, ENOMEM - k no free record of kind k
# (or an injected failure).
OK = 0
STOPPED = -1
ENOMEM = -16


class Stopped(Exception):
    """The run's stop flag was raised while this CPU was waiting for a lock."""


class OutOfMemory(Exception):
    """An allocation failed (ENOMEM): no free record of ``kind`` (or an injected failure)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"out of {kind} records")
        self.kind = kind


def raise_status(st: int) -> None:
    """Turn a compiled operation's negative status into the exception it stands for."""
    if st == STOPPED:
        raise Stopped()
    if st <= ENOMEM:
        raise OutOfMemory(ALLOC_KINDS[ENOMEM - st])
    raise AssertionError(f"unknown status {st}")

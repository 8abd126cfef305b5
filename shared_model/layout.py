"""Byte layout of the shared segment: every record type, its guards, and the segment map.

Everything the CPUs share lives in one POSIX shared-memory segment as numpy structured
arrays addressed by index (-1 means "none").  Locks are bytes inside the records they
guard (``mm.ptl``, ``anon_vma.lock``), exactly as ``spinlock_t`` sits inside
``struct anon_vma``: a lock's address is base + array offset + index * itemsize.

Segment map, in order, each array 64-byte aligned::

    header        1 record     run control (gate, stop), capacities, allocator tops
    slab[K]       K records    one lock per allocatable kind (the slab's lock)
    mm[]          mm_struct    with its page_table_lock (``ptl``)
    vma[]         vm_area_struct
    anon_vma[]    struct anon_vma with its lock
    avc[]         struct anon_vma_chain
    page[]        struct page
    pte[]         PTE pages, PTRS_PER_TABLE PTEs each (the "pte" kind's pool)
    free_<kind>[] free stack of each allocatable kind
    slab_cpu[]    per-CPU array caches of free records: [cpu] kind k's at k * SLAB_AC_WORDS
    cpu[]         per-CPU published state, one 512-byte slot each (will-it-scale: >= 256 apart)
    lockstat[]    per-CPU lock statistics [cpu, class, site, field]
    walkhist[]    per-CPU walk-length histogram [cpu, bucket]
    lockdep[]     per-CPU lock-order edges [cpu, held class, taken class] (--check-lock-order)
    qnodes[]      per-CPU MCS queue nodes of the queued locks (qspinlock)
    swap_lock     the global swap_lock (a leaf: taken inside the anon_vma lock and a ptl)
    swapdev       the swap device's queue and counts (one record, atomics only)
    pgd/pud/pmd[] the upper page-table levels' blocks, PTRS_PER_TABLE int64 entries each
    ptl[]         the split PTE locks, one per PTE page

Addresses are in pages: ``vm_start``/``vm_end`` are virtual page numbers and the page
table of an mm (pgd -> pud -> pmd -> pte, see PTRS_PER_TABLE) is indexed by vpn (so
``vma_address`` works in pages, and PAGE_SIZE never appears).  A "slot" (mm *
ptrs_per_mm + vpn) names a faulting address, not a place in memory: try_to_unmap returns
slots, do_swap_page finds the PTE from one through the tables.  A private anonymous mapping
has ``vm_pgoff == vm_start``.

Field guards (W: modification, R: reading), the kernel's convention:
  vma.anon_vma, vma.avc_head     W: mm's mmap_sem (the CPU that owns the mm) + anon_vma lock
  anon_vma head/tail/nr_members  W, R: the anon_vma's lock (its root's in eras that lock the root)
  vma.anon_vma_node_*, avc.same_anon_vma_*  (the list nodes) W, R: the same lock
  anon_vma rb_root, avc rb_*     W, R: the same lock as the list (3.7+: the interval tree)
  anon_vma degree, num_*         W: the same lock (3.19+ reuse; read by anon_vma_clone under it)
  vma.vm_flags, vm_start/end     W: mm's mmap_sem + (when it has an anon_vma) its anon_vma lock
  page.mapping, page.index       W: page owner under the PTE lock; R: walkers (stable while mapped)
  page.mapcount, page.swapcount  W: atomic add on the 64-bit word they share (atomic_t)
  page.flags                     W, R: atomics (PG_locked is the page lock itself)
  page.mapping of a swapped page W: the page lock (do_swap_page's placement, reclaim dropping
                                 it from the swap cache: mapping -1 = no frame, a swap slot)
  pte[] (a PTE page's PTEs)      W: that PTE page's split lock (ptl[]); R: walkers pre-check
                                 lock-free, confirm under it
  pgd/pud/pmd entries, mm.pgd    W: the mm's owner, populated under mm->page_table_lock (mm.ptl),
                                 cleared at exit after every VMA left the rmap; R: anyone, no lock
  free stacks, header tops       W, R: the kind's slab lock
  slab_cpu[c]                    W, R: CPU c only (the kernel's array_cache, irqs off)
  cpu[c], lockstat[c], walkhist[c]  W: CPU c only; R: anyone (parent, live view), no lock
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

CACHELINE = 64
# Bytes reserved for the real lock word(s) inside each lock record: large enough for a
# pthread_rwlock_t (56 bytes on x86-64), the biggest primitive we place.
LOCK_RAW_BYTES = 56
# PTE flag bits.
PTE_PRESENT = 1
PTE_YOUNG = 2
PTE_WRITE = 4
PTE_SWAP = 8
# A swap PTE's exclusive bit (pte_swp_exclusive, 5.19+): try_to_unmap_one sets it for a
# PageAnonExclusive page; fork's copy clears it in both mms.  Kept in every era, read only
# by the anon_exclusive swap-in (eras.Era.swapin).
PTE_SWP_EXCLUSIVE = 16

# page.flags bits.
PG_LOCKED = 1
# PageAnonExclusive (5.19+): set when a page is mapped exclusively (a new page, a COW copy,
# a reuse, an exclusive swap-in), cleared when fork shares it.  Changed by atomic and/or,
# as PG_locked shares the word.  Kept in every era, read as PTE_SWP_EXCLUSIVE's source.
PG_ANON_EXCLUSIVE = 2
# vm_flags bits (the kernel's VM_READ, VM_WRITE, VM_EXEC).
VM_READ = 1
VM_WRITE = 2
VM_EXEC = 4

LOCK_DTYPE = np.dtype(
    [
        ("raw", f"V{LOCK_RAW_BYTES}"),
        # Owner published by the holder right after acquiring: pid * 4096 + cpu + 1, 0 when
        # free.  Written only by the holder, so no atomic is needed; read by the parent to
        # tell a lock held by a dead process (a dying CPU).
        ("owner", "<i8"),
    ],
    align=True,
)
assert LOCK_DTYPE.itemsize == 64
# Words of one lock record, and the index of its owner word.
LOCK_WORDS = 8
OWNER_WORD = 7

HEADER_DTYPE = np.dtype(
    [
        ("magic", "<u8"),
        ("gate", "<i8"),  # 0: workers wait; 1: go
        ("stop", "<i8"),  # 1: finish the current operation and leave; 2: abort, even lock waits
        ("start_ns", "<i8"),
        ("ncpus", "<i8"),
        ("ptrs_per_mm", "<i8"),
        ("top", "<i8", (16,)),  # free-stack tops, one per allocatable kind
        # The lockstat clock's calibration (shared_model.locking.clock): every CPU converts
        # the TSC with these, so timestamps of different CPUs compare.  tsc_mult 0: no TSC.
        ("tsc_mult", "<i8"),
        ("tsc_shift", "<i8"),
        ("tsc_cyc0", "<i8"),
        ("tsc_ns0", "<i8"),
    ]
)

MM_DTYPE = np.dtype(
    [
        ("ptl", LOCK_DTYPE),
        ("in_use", "<i4"),
        ("vma_head", "<i4"),  # first VMA of this mm (singly linked through vma.vm_next)
        ("nr_vmas", "<i4"),
        ("rss", "<i4"),  # present PTEs
        ("parent", "<i4"),  # the mm it was forked from, -1 for the first
        ("pgd", "<i4"),  # its page table's top block (a "pgd" record), -1 none
        ("pad", "V40"),
    ],
    align=True,
)

VMA_DTYPE = np.dtype(
    [
        # The walk reads the first four as columns of an int32 view: keep them first.
        ("vm_start", "<i4"),
        ("vm_end", "<i4"),
        ("vm_pgoff", "<i4"),
        ("vm_mm", "<i4"),
        ("anon_vma", "<i4"),  # where this VMA's new anonymous pages go
        ("avc_head", "<i4"),  # first AVC of the same_vma list (2.6.34+)
        ("vm_next", "<i4"),
        # 2.6.33: the node of its anon_vma's list embedded in the VMA (the kernel's
        # ``struct list_head anon_vma_node``): the previous and next VMA, -1 at the ends.
        ("anon_vma_node_prev", "<i4"),
        ("anon_vma_node_next", "<i4"),
        ("in_use", "<i4"),
        ("vm_flags", "<i4"),  # VM_READ | VM_WRITE | VM_EXEC (mprotect changes them)
    ]
)

ANON_VMA_DTYPE = np.dtype(
    [
        ("lock", LOCK_DTYPE),
        ("in_use", "<i4"),
        ("root", "<i4"),  # oldest anon_vma of the family (2.6.36+ lock it)
        ("parent", "<i4"),  # anon_vma it was forked from (3.19+ reuse)
        ("head", "<i4"),  # first entry of the list (a VMA in 2.6.33, an AVC after), -1: empty
        ("tail", "<i4"),  # last entry of the list, -1: empty
        ("nr_members", "<i4"),  # live list entries (VMAs in 2.6.33, AVCs after)
        ("refcount", "<i4"),  # child anon_vmas' references on their root (+1: its own, 3.0+)
        ("degree", "<i4"),  # 3.19: children + VMAs pointing here
        ("num_children", "<i4"),  # 6.0
        ("num_active_vmas", "<i4"),  # 6.0
        ("rb_root", "<i4"),  # 3.7+: root AVC of the interval tree of this anon_vma's AVCs
        ("pad", "V20"),
    ],
    align=True,
)

AVC_DTYPE = np.dtype(
    [
        ("vma", "<i4"),
        ("anon_vma", "<i4"),
        ("same_vma_next", "<i4"),
        # The node of the anon_vma's list embedded in the AVC (the kernel's
        # ``struct list_head same_anon_vma``): the previous and next AVC, -1 at the ends.
        ("same_anon_vma_prev", "<i4"),
        ("same_anon_vma_next", "<i4"),
        ("in_use", "<i4"),
        # 3.7+: the node of anon_vma's interval tree embedded in the AVC (rb_node and
        # rb_subtree_last of the kernel's anon_vma_chain), keyed by the VMA's pgoff range.
        ("rb_left", "<i4"),
        ("rb_right", "<i4"),
        ("rb_parent", "<i4"),
        ("rb_color", "<i4"),  # 0 red, 1 black
        ("rb_subtree_last", "<i4"),  # largest last pgoff in this subtree
    ]
)

PAGE_DTYPE = np.dtype(
    [
        ("mapping", "<i4"),  # anon_vma index (the kernel's mapping|PAGE_MAPPING_ANON), -1 free
        ("index", "<i4"),  # linear page index: vm_pgoff + (vpn - vm_start)
        ("mapcount", "<i4"),  # present PTEs that map this page
        ("swapcount", "<i4"),  # swap PTEs that point at it (it sits in the swap cache)
        ("in_use", "<i4"),
        # PG_locked (lock_page / trylock_page: atomics on this word).  It also makes the
        # record 24 bytes, so that mapcount and swapcount share one aligned 64-bit word,
        # changed by one atomic add (mapcount the low half): "both reached zero" is exact.
        ("flags", "<i4"),
    ]
)
assert PAGE_DTYPE.itemsize == 24

PTE_DTYPE = np.dtype([("page", "<i4"), ("flags", "<i4")])

# Page tables (x86-64, 4 levels): pgd -> pud -> pmd -> pte, each level a page-sized block of
# PTRS_PER_TABLE entries from its own pool (allocatable kinds "pgd", "pud", "pmd", "pte").
# An upper-level entry (pgd_t, pud_t, pmd_t) is one int64: the next level's block + 1, so
# that 0 is pgd_none / pud_none / pmd_none and a fresh block cleared to zero is empty.  A
# PTE page is PTRS_PER_TABLE PTEs (page, flags), pte_none when page is -1 and flags 0.
# Index bits as x86-64's: vpn & 511 the PTE, (vpn >> 9) & 511 the pmd, (vpn >> 18) & 511
# the pud, (vpn >> 27) & 511 the pgd.  Each PTE page has its own lock (``ptl[]``, the
# split PTE lock in the page-table page's struct page: distro kernels have NR_CPUS >=
# SPLIT_PTLOCK_CPUS); the mm's own ``ptl`` is its page_table_lock, taken to populate an
# upper-level entry (__pud_alloc, __pmd_alloc, __pte_alloc).
PTRS_PER_TABLE = 512
TABLE_SHIFT = 9
PMD_SHIFT, PUD_SHIFT, PGDIR_SHIFT = TABLE_SHIFT, 2 * TABLE_SHIFT, 3 * TABLE_SHIFT
PGTABLE_KINDS = ("pgd", "pud", "pmd", "pte")

# Per-CPU published state: one slot each, written only by its CPU.
CPU_FIELDS = (
    "pid",
    "state",  # a CPU_STATE value
    "state_since_ns",
    "wait_lock",  # lock id waited on (class * 2**32 + index), -1 none
    "hold_lock",  # rmap lock id held during a walk, -1 none
    "heartbeat",  # incremented on every completed operation
    "walks",
    "visited",
    "max_visited",
    "pages_scanned",  # page_referenced calls
    "pages_unmapped",
    "refaults",
    "jobs",
    "faults",
    "cows",
    "forks",
    "exits",
    "alloc_failures",
    "t_work_ns",
    "t_walk_ns",
    "t_wait_ns",
    "t_total_ns",
    "utime_us",
    "stime_us",
    "vctx",
    "ivctx",
    "done",
    "owner_died",
    "frames_in",  # pages that became resident (mapcount 0 -> 1) on this CPU
    "frames_out",  # pages that stopped being resident (mapcount 1 -> 0): freed or swapped
    "swapins",
    "direct_reclaims",
    "pages_deactivated",  # shrink_active_list: pages walked and moved to the inactive list
    "rmap_trylock_fail",  # modern: reclaim walks that found the rmap lock contended and skipped
    "t_iowait_ns",  # time asleep with every job of this CPU parked on a swap read (top's wa)
    "swap_reads",  # read requests this CPU submitted to the swap device (swap_readpage)
    "swap_writes",  # write requests this CPU submitted (swap_writepage, from reclaim)
    "aborted_op",  # 0, or 1 + the index in stress.engine.worker.MODEL_OPS of the operation a lock
                   # wait aborted (the run's stop word reached "abort" inside it)
    # walks that found page->mapping pointing at a freed anon_vma and did not follow it:
    # the kernel's oops (the seed's swap-in placement, 2.6.34-rc1; a dangling CVE page)
    "rmap_freed_anon_vma",
)
CPU_SLOT_BYTES = 512
CPU_DTYPE = np.dtype([(f, "<i8") for f in CPU_FIELDS] + [("pad", f"V{CPU_SLOT_BYTES - 8 * len(CPU_FIELDS)}")])
assert CPU_DTYPE.itemsize == CPU_SLOT_BYTES

CPU_STATE = {"idle": 0, "work": 1, "walk": 2, "wait": 3, "fork": 4, "exit": 5, "fault": 6, "done": 7,
             "iowait": 8}

# Lock statistics: lock classes, call sites, per-(class, site) fields.
LOCK_CLASSES = ("anon_vma", "ptl", "slab", "swap_lock")
# lockdep's per-CPU edge table is [LOCKDEP_CLASSES, LOCKDEP_CLASSES, 2] words, padded past
# the classes so that each CPU's table is whole cache lines (4 x 4 x 2 x 8 = 256 bytes).
LOCKDEP_CLASSES = 4
assert len(LOCK_CLASSES) <= LOCKDEP_CLASSES
LOCK_SITES = (
    "page_referenced",
    "try_to_unmap",
    "anon_vma_prepare",
    "anon_vma_fork",
    "unlink_anon_vmas",
    "page_referenced_one",
    "try_to_unmap_one",
    "do_wp_page",
    "do_anonymous_page",
    "do_swap_page",
    "dup_mmap",
    "exit_mmap",
    "kmem_cache_alloc",
    "kmem_cache_free",
    "swap_duplicate",
    "swap_free",
    "vma_adjust",
    "anon_vma_free",  # 3.0+: the root lock taken and dropped when seen held
)
# Histogram: values < 8 have their own bucket; above, 4 sub-buckets per power of two
# (25% resolution), fine enough to read p99.9 off it.
HIST_BUCKETS = 4 * 64 + 8
LS_ACQ, LS_CONT, LS_WAIT_MIN, LS_WAIT_MAX, LS_WAIT_TOTAL = 0, 1, 2, 3, 4
LS_HOLD_MIN, LS_HOLD_MAX, LS_HOLD_TOTAL = 5, 6, 7
LS_QUEUED = 8  # contentions that took an MCS node (qspinlock: the third contender on)
LS_SCALARS = 16  # words 9-15 spare: each (class, site) record stays whole cache lines
LS_WAIT_HIST = LS_SCALARS
LS_HOLD_HIST = LS_SCALARS + HIST_BUCKETS
LS_FIELDS = LS_SCALARS + 2 * HIST_BUCKETS
WALK_HIST_BUCKETS = 64

# Per-CPU slab caches (the kernel's array_cache): each CPU keeps up to SLAB_LIMIT free
# records of each kind, refilled from and drained to the kind's global free stack
# SLAB_BATCH at a time under its slab lock.  Words per cache: the count, the cache's own
# lock (0 free, 1 held: its CPU's, or a CPU short of records draining it), then the
# records (the newest last).
SLAB_BATCH = 16
SLAB_LIMIT = 2 * SLAB_BATCH
SLAB_AC_AVAIL, SLAB_AC_LOCK, SLAB_AC_ENTRY = 0, 1, 2
SLAB_AC_WORDS = SLAB_AC_ENTRY + SLAB_LIMIT

# Words of one CPU's block of MCS queue nodes (shared_model.locking.NODE_BLOCK_WORDS).
QNODE_BLOCK_WORDS = 32

ALLOC_KINDS = ("mm", "vma", "anon_vma", "avc", "page", "pgd", "pud", "pmd", "pte")
# One CPU's caches of every kind, padded to whole cache lines (int32 words).
SLAB_CPU_WORDS = (len(ALLOC_KINDS) * SLAB_AC_WORDS + 15) // 16 * 16

# The swap device (shared_model/swapdev.py): one record for all CPUs, int64 words.
#   W: the parent before the gate (latency_ns, service_ns, nr_requests); any CPU by atomics
#   (last_completion by cmpxchg, the counts by atomic_fetch_add); R: anyone, no lock.
SWAPDEV_FIELDS = (
    "last_completion_ns",  # completion time of the request queued last (CLOCK_MONOTONIC)
    "latency_ns",  # an idle device completes a request this long after submission
    "service_ns",  # 1e9 / IOPS: completions are at least this far apart
    "nr_requests",  # request slots: a submitter beyond them sleeps (get_request_wait)
    "reads",
    "writes",
    "busy_ns",  # service time the requests took: requests * service_ns
    "wait_ns",  # sum over requests of completion - submission
    "max_depth",  # most requests queued ahead of one at its submission
    "throttled",  # submissions that had to wait for a request slot
    "enabled",  # 0: infinitely fast (no request waits), requests still counted
)
SWAPDEV_BYTES = 128
SWAPDEV_DTYPE = np.dtype([(f, "<i8") for f in SWAPDEV_FIELDS]
                         + [("pad", f"V{SWAPDEV_BYTES - 8 * len(SWAPDEV_FIELDS)}")])
assert SWAPDEV_DTYPE.itemsize == SWAPDEV_BYTES


def hist_bucket(v: int) -> int:
    """Histogram bucket of a non-negative value (see HIST_BUCKETS)."""
    if v < 8:
        return max(0, v)
    bl = v.bit_length()
    return (bl << 2) | ((v >> (bl - 3)) & 3)


def hist_bucket_bounds(b: int) -> tuple[int, int]:
    """[low, high) of the values that land in bucket b."""
    if b < 8:
        return b, b + 1
    bl, sub = b >> 2, b & 3
    lo = (4 + sub) << (bl - 3)
    return lo, lo + (1 << (bl - 3))


@dataclasses.dataclass(frozen=True)
class Capacities:
    """How many records of each kind the segment holds; computed from a run's parameters."""

    mms: int
    vmas: int
    anon_vmas: int
    avcs: int
    pages: int
    ptrs_per_mm: int
    cpus: int

    def arrays(self) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        """The segment map: (name, dtype, shape) in order."""
        spec: list[tuple[str, np.dtype, tuple[int, ...]]] = [
            ("header", HEADER_DTYPE, (1,)),
            ("slab", LOCK_DTYPE, (len(ALLOC_KINDS),)),
            ("mm", MM_DTYPE, (self.mms,)),
            ("vma", VMA_DTYPE, (self.vmas,)),
            ("anon_vma", ANON_VMA_DTYPE, (self.anon_vmas,)),
            ("avc", AVC_DTYPE, (self.avcs,)),
            ("page", PAGE_DTYPE, (self.pages,)),
            ("pte", PTE_DTYPE, (self.ptes * PTRS_PER_TABLE,)),  # the PTE pages' pool
        ]
        for kind in ALLOC_KINDS:
            spec.append((f"free_{kind}", np.dtype("<i4"), (self.capacity(kind),)))
        spec.append(("slab_cpu", np.dtype("<i4"), (self.cpus, SLAB_CPU_WORDS)))
        spec += [
            ("cpu", CPU_DTYPE, (self.cpus,)),
            ("lockstat", np.dtype("<i8"), (self.cpus, len(LOCK_CLASSES), len(LOCK_SITES), LS_FIELDS)),
            ("walkhist", np.dtype("<i8"), (self.cpus, WALK_HIST_BUCKETS)),
            # --check-lock-order: [cpu, held class, taken class] -> (times, first sites + 1)
            ("lockdep", np.dtype("<i8"), (self.cpus, LOCKDEP_CLASSES, LOCKDEP_CLASSES, 2)),
            # qspinlock's per-CPU MCS nodes (4 nesting levels each); block 0 is the builder's
            # (the process that builds the model before any CPU runs, cpu -1), CPU c's is c + 1.
            ("qnodes", np.dtype("<i8"), (self.cpus + 1, QNODE_BLOCK_WORDS)),
            # The global swap_lock (mm/swapfile.c): swap_duplicate, swap_free.
            ("swap_lock", LOCK_DTYPE, (1,)),
            # The swap device: one queue for every CPU (shared_model/swapdev.py).
            ("swapdev", SWAPDEV_DTYPE, (1,)),
            # Page tables: the upper levels' pools (the PTE pages' is ``pte`` above), and
            # each PTE page's split lock.  Cleared at allocation, never at creation.
            ("pgd", np.dtype("<i8"), (self.pgds, PTRS_PER_TABLE)),
            ("pud", np.dtype("<i8"), (self.puds, PTRS_PER_TABLE)),
            ("pmd", np.dtype("<i8"), (self.pmds, PTRS_PER_TABLE)),
            ("ptl", LOCK_DTYPE, (self.ptes,)),
        ]
        return spec

    def tables_per_mm(self, level: str) -> int:
        """Blocks of a page-table level that one mm may need: enough for every address
        of its page table (vpn 0 .. ptrs_per_mm - 1)."""
        shift = {"pgd": 4 * TABLE_SHIFT, "pud": PGDIR_SHIFT, "pmd": PUD_SHIFT, "pte": PMD_SHIFT}[level]
        return max(1, -(-self.ptrs_per_mm // (1 << shift)))

    @property
    def pgds(self) -> int:
        return self.mms * self.tables_per_mm("pgd")

    @property
    def puds(self) -> int:
        return self.mms * self.tables_per_mm("pud")

    @property
    def pmds(self) -> int:
        return self.mms * self.tables_per_mm("pmd")

    @property
    def ptes(self) -> int:
        """PTE pages (each PTRS_PER_TABLE PTEs)."""
        return self.mms * self.tables_per_mm("pte")

    def capacity(self, kind: str) -> int:
        if kind in PGTABLE_KINDS:
            return int(getattr(self, kind + "s"))
        return int(getattr(self, {"mm": "mms", "vma": "vmas", "anon_vma": "anon_vmas",
                                   "avc": "avcs", "page": "pages"}[kind]))

    def offsets(self) -> tuple[dict[str, int], int]:
        """Byte offset of each array, and the segment's total size."""
        off = 0
        out: dict[str, int] = {}
        for name, dtype, shape in self.arrays():
            off = _align(off, CACHELINE)
            out[name] = off
            off += dtype.itemsize * math.prod(shape)
        return out, _align(off, 4096)

    def nbytes(self) -> int:
        return self.offsets()[1]


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


LockNamer = Callable[[int], str]


def lock_namer(offsets: dict[str, int], caps: Any) -> LockNamer:
    """Decode a lock's word index in the segment (as published in ``wait_lock`` and
    ``hold_lock``) into a name: ``anon_vma#N``, ``ptl(mm N)`` (its page_table_lock),
    ``ptl(pte page N)`` (a split PTE lock), ``slab(KIND)``,
    ``lock@W`` for a word that is none of them.

    ``offsets`` is ``seg.offsets``, ``caps`` the segment's Capacities (``anon_vmas``,
    ``mms``).  The arithmetic is Model's: lock 0's word plus index * record words."""
    av_lock = ANON_VMA_DTYPE.fields["lock"][1]  # type: ignore[index]
    mm_ptl = MM_DTYPE.fields["ptl"][1]  # type: ignore[index]
    tables: list[tuple[int, int, int, Callable[[int], str]]] = [
        ((offsets["anon_vma"] + av_lock) // 8, ANON_VMA_DTYPE.itemsize // 8, int(caps.anon_vmas),
         lambda i: f"anon_vma#{i}"),
        ((offsets["mm"] + mm_ptl) // 8, MM_DTYPE.itemsize // 8, int(caps.mms), lambda i: f"ptl(mm {i})"),
        (offsets["slab"] // 8, LOCK_WORDS, len(ALLOC_KINDS), lambda i: f"slab({ALLOC_KINDS[i]})"),
        (offsets["swap_lock"] // 8, LOCK_WORDS, 1, lambda i: "swap_lock"),
    ]
    if "ptl" in offsets:  # the split PTE locks, one per PTE page
        tables.append((offsets["ptl"] // 8, LOCK_WORDS, int(getattr(caps, "ptes", 0)),
                       lambda i: f"ptl(pte page {i})"))

    def name(w: int) -> str:
        for w0, stride, count, fmt in tables:
            i, r = divmod(w - w0, stride)
            if r == 0 and 0 <= i < count:
                return fmt(i)
        return f"lock@{w}"

    return name

"""The model as one CPU sees it: views of the segment, its locks, and slab-like allocation.

A ``Model`` is cheap to make for each process: the parent builds the segment with
``Model.create`` and every forked CPU worker makes its own ``Model`` over the inherited
segment with its own CPU number (so its lock statistics land in its own slot).
Allocation is slab-like (shared_model/slab.py): a free stack per record kind in the
segment, and each CPU's array cache in front of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np

from . import ctx as G
from .ctx import (  # OutOfMemory: raised by G.raise_status; callers catch it from here
    OutOfMemory,  # noqa: F401
    make_geometry,
)
from .eras import ADJUST_CODES, REUSE_CODES, Era, get_era
from .layout import (
    ALLOC_KINDS,
    ANON_VMA_DTYPE,
    MM_DTYPE,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PTRS_PER_TABLE,
    PUD_SHIFT,
    SLAB_AC_AVAIL,
    SLAB_AC_ENTRY,
    SLAB_AC_WORDS,
    SLAB_LIMIT,
    WALK_HIST_BUCKETS,
    Capacities,
    LockNamer,
    lock_namer,
)
from .layout import QNODE_BLOCK_WORDS as NODE_BLOCK_WORDS
from .locking import RWSEM_FIFO, RWSEM_HANDOFF, RWSEM_SPIN, RWSEM_STEAL, RWSEM_STEAL_39
from .locking.common import owner_cpu, owner_pid
from .locking.lock import lock_is_wedged, wedged_in
from .locks import (
    CLASS,
    SITE,
    CpuLocks,
    default_owner_tag,
    reset_lockstat,
)
from .locks import lock_kind as lock_kind_of
from .segment import Segment
from .slab import kmem_cache_alloc_c, kmem_cache_free_c

AV_LOCK = CLASS["anon_vma"]
PTL = CLASS["ptl"]
SLAB = CLASS["slab"]
# eras.Era.rwsem_policy -> the rwsem's hand-off policy (shared_model.locking).
RWSEM_POLICIES = {"fifo": RWSEM_FIFO, "steal-behind-writer": RWSEM_STEAL_39,
                  "steal": RWSEM_STEAL, "spin-on-owner": RWSEM_SPIN, "handoff": RWSEM_HANDOFF}


class Model:
    """Views and operations on the shared model for one CPU."""

    def __init__(
        self,
        seg: Segment,
        era: Era | str,
        cpu: int,
        lock_kind: str | None = None,
        instrument: bool = True,
        entry_cost_ns: int = 0,
    ) -> None:
        self.seg = seg
        self.caps: Capacities = seg.caps
        self.era = get_era(era) if isinstance(era, str) else era
        self.cpu = cpu
        self.lock_kind = lock_kind or self.era.lock
        av_kind = lock_kind_of(self.lock_kind)
        spin = lock_kind_of(self.era.spin)
        self.entry_cost_ns = entry_cost_ns
        self.ptrs = self.caps.ptrs_per_mm
        self.header = seg["header"]
        self.mm = seg["mm"]
        self.vma = seg["vma"]
        self.anon_vma = seg["anon_vma"]
        self.avc = seg["avc"]
        self.page = seg["page"]
        self.pte = seg["pte"]
        # Hot fields, pre-bound (a structured-array field lookup costs more than the access).
        self.pte_page = self.pte["page"]
        self.pte_flags = self.pte["flags"]
        self.page_mapping = self.page["mapping"]
        self.page_index = self.page["index"]
        self.page_mapcount = self.page["mapcount"]
        self.page_swapcount = self.page["swapcount"]
        # Plain int32 views of the VMA and PTE records, for the walk's gathers (the first
        # four VMA fields are vm_start, vm_end, vm_pgoff, vm_mm; a PTE is page, flags).
        self.vma_words = self.vma.view(np.int32).reshape(len(self.vma), -1)
        self.pte_words = self.pte.view(np.int32).reshape(len(self.pte), 2)
        # The upper page-table levels (pgtable.py): [block, entry], an entry the next
        # level's block + 1 (0: none).  ``pte_page``/``pte_flags`` above are the PTE pages'
        # pool: PTE i of PTE page p at p * PTRS_PER_TABLE + i (pte_index finds it).
        self.pgd_table, self.pud_table, self.pmd_table = seg["pgd"], seg["pud"], seg["pmd"]
        self.pte_ptl = seg["ptl"]
        self.av_head = self.anon_vma["head"]
        self.av_root = self.anon_vma["root"]
        self.vma_anon_vma = self.vma["anon_vma"]
        kinds = [spin] * len(CLASS)
        kinds[AV_LOCK] = av_kind
        self.g = make_geometry(
            seg, cpu, default_owner_tag(cpu), kinds, lock_root=self.era.lock_root,
            chain=self.era.chain, entry_cost_ns=entry_cost_ns, instrument=instrument,
            rwsem_policy=RWSEM_POLICIES[self.era.rwsem_policy],
            swapin=self.era.swapin, move_anon_rmap=self.era.move_anon_rmap,
            lock_once=self.era.lock_once,
            node_w=seg.offsets["qnodes"] // 8 + (cpu + 1) * NODE_BLOCK_WORDS,
            tree=self.era.tree, reuse=REUSE_CODES[self.era.reuse])
        self.g[G.RMAP_TRYLOCK] = int(self.era.rmap_trylock)
        self.g[G.FREE_RELOCK] = int(self.era.anon_vma_free_relock)
        self.g[G.ADJUST_LOCK] = ADJUST_CODES[self.era.adjust_lock]
        self.g[G.CLONE_NOWAIT] = int(self.era.clone_nowait)
        self.g[G.SELF_REF] = int(self.era.self_ref)
        self.locks = CpuLocks(seg, cpu, self.g)
        self.words, self.w32 = self.locks.words, self.locks.w32
        # try_to_unmap's unmapped PTE slots: at most one per mm.
        self.walk_out = np.zeros(self.caps.mms + 1, dtype=np.int64)
        # Compiled operations' scratch (allocation results, a VMA's chain): process-local.
        self.scratch = np.zeros(max(4 * self.ptrs, 2 * self.caps.anon_vmas) + 64, dtype=np.int64)
        self.alloc_fail_p = 0.0
        # Word index of lock 0 of each lock array, and the stride between locks, in words.
        offs = seg.offsets
        self._mm_ptl_w0 = int(self.g[G.MM_PTL_W0])  # make_geometry's, from the dtypes
        self._mm_stride = MM_DTYPE.itemsize // 8
        self._av_lock_w0 = int(self.g[G.AV_LOCK_W0])
        self._av_stride = ANON_VMA_DTYPE.itemsize // 8
        self._slab_w0 = offs["slab"] // 8
        self._pte_ptl_w0 = offs["ptl"] // 8
        self.walkhist_word = offs["walkhist"] // 8 + cpu * WALK_HIST_BUCKETS
        self._free = {k: seg[f"free_{k}"] for k in ALLOC_KINDS}
        self._tops = self.header["top"][0]
        self._namer: LockNamer | None = None
        self._rng = np.random.default_rng(cpu + 1)
        self.clock = time.perf_counter_ns

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        caps: Capacities,
        era: Era | str,
        lock_kind: str | None = None,
        instrument: bool = True,
        entry_cost_ns: int = 0,
    ) -> Model:
        """Create the segment, initialise locks and free stacks; the builder is CPU ``cpus-1``.

        On any failure the segment is unlinked before the error propagates."""
        seg = Segment.create(caps)
        try:
            era_obj = get_era(era) if isinstance(era, str) else era
            kind = lock_kind or era_obj.lock
            lock_kind_of(kind)  # refuse an unknown primitive before anything is built
            # Every lock of shared_model.locking is unlocked when all its words are zero,
            # as a fresh segment is: no initialisation, as DEFINE_SPINLOCK's zero.
            for name in ("mm", "vma", "anon_vma", "avc", "page"):
                arr = seg[name]
                for f in arr.dtype.names or ():
                    if f not in ("ptl", "lock", "pad", "vma", "avc") and arr.dtype[f].kind == "i":
                        arr[f] = -1
                arr["in_use"] = 0
            seg["anon_vma"]["degree"] = 0
            seg["anon_vma"]["num_children"] = 0
            seg["anon_vma"]["num_active_vmas"] = 0
            seg["avc"]["rb_color"] = 0
            seg["avc"]["rb_subtree_last"] = 0
            seg["page"]["mapcount"] = 0
            seg["page"]["swapcount"] = 0
            seg["page"]["flags"] = 0
            # Page-table blocks are cleared when allocated (pgtable.py), not here: creating
            # the segment touches none of them.
            # VMA 0 is a sentinel, never allocated: an empty range that no PTE falls in.
            seg["vma"][0] = (0, 0, 0, 0, -1, -1, -1, -1, -1, 1, 0)
            tops = seg["header"]["top"][0]
            for k_i, kind_name in enumerate(ALLOC_KINDS):
                cap = caps.capacity(kind_name)
                reserved = 1 if kind_name == "vma" else 0
                stack = seg[f"free_{kind_name}"]
                n = cap - reserved
                stack[:n] = np.arange(cap - 1, reserved - 1, -1, dtype=np.int32)
                tops[k_i] = n
            for c in range(caps.cpus):
                reset_lockstat(seg, c)
                seg["cpu"][c]["wait_lock"] = -1
                seg["cpu"][c]["hold_lock"] = -1
            return cls(seg, era_obj, caps.cpus - 1, kind, instrument, entry_cost_ns)
        except BaseException:
            seg.close()
            seg.unlink()
            raise

    @property
    def alloc_fail_p(self) -> float:
        """--inject alloc-fail: the probability that an anon_vma or AVC allocation fails."""
        return self._alloc_fail_p

    @alloc_fail_p.setter
    def alloc_fail_p(self, p: float) -> None:
        self._alloc_fail_p = p
        self.g[G.ALLOC_FAIL] = int(p * 2**32)

    def close(self) -> None:
        """Drop this process's views (the creator also calls ``seg.unlink``)."""
        self.locks.words = self.locks.w32 = None  # type: ignore[assignment]
        for name in list(vars(self)):
            if isinstance(getattr(self, name), np.ndarray):
                delattr(self, name)
        self._free = {}
        self.seg.close()

    @classmethod
    @contextlib.contextmanager
    def private(cls, caps: Capacities, era: Era | str, lock_kind: str | None = None,
                instrument: bool = True, entry_cost_ns: int = 0) -> Iterator[Model]:
        """``create``, for a model only this process uses (scan, scripts, warm-up): closed
        and its segment unlinked however the ``with`` block ends."""
        m = cls.create(caps, era, lock_kind, instrument, entry_cost_ns)
        seg = m.seg
        try:
            yield m
        finally:
            m.close()
            seg.unlink()

    # ------------------------------------------------------------------ lock words

    def entry_cost(self, ns: int) -> None:
        """Set the modelled extra cost per visited entry (see rmap.py)."""
        self.entry_cost_ns = ns
        self.g[G.ENTRY_COST_NS] = ns

    def ptl_word(self, mm: int) -> int:
        """mm's page_table_lock (its ``ptl`` record), taken to populate its page tables."""
        return self._mm_ptl_w0 + mm * self._mm_stride

    # ------------------------------------------------------------------ page tables

    def pte_page_lock_word(self, pte_page: int) -> int:
        """The split lock of PTE page ``pte_page`` (ptl[pte_page])."""
        return self._pte_ptl_w0 + pte_page * 8

    def pte_lock_word(self, slot: int) -> int:
        """The split lock guarding the PTE of ``slot`` (mm * ptrs + vpn), -1 if none."""
        i = self.pte_index(slot)
        return -1 if i < 0 else self.pte_page_lock_word(i // PTRS_PER_TABLE)

    def pte_index(self, slot: int) -> int:
        """Where the PTE of ``slot`` (mm * ptrs + vpn: the faulting address) lies: its index
        into ``pte_page``/``pte_flags``, found through the mm's tables, or -1 when a level
        on the way is none (pte_offset_map)."""
        mm, vpn = divmod(int(slot), self.ptrs)
        e = int(self.mm["pgd"][mm]) + 1
        for table, shift in ((self.pgd_table, PGDIR_SHIFT), (self.pud_table, PUD_SHIFT),
                             (self.pmd_table, PMD_SHIFT)):
            if e <= 0:
                return -1
            e = int(table[e - 1, (vpn >> shift) & (PTRS_PER_TABLE - 1)])
        if e <= 0:
            return -1
        return (e - 1) * PTRS_PER_TABLE + (vpn & (PTRS_PER_TABLE - 1))

    def pte_of(self, mm: int, vpn: int) -> tuple[int, int]:
        """(page, flags) of mm's PTE for vpn; (-1, 0), pte_none, where the tables have none."""
        i = self.pte_index(mm * self.ptrs + vpn)
        return (-1, 0) if i < 0 else (int(self.pte_page[i]), int(self.pte_flags[i]))

    def pte_pages_grid(self) -> np.ndarray:
        """[mm, block] the PTE page holding vpns block * PTRS_PER_TABLE onwards of each mm,
        -1 where none (a freed mm's row included): the tables walked for every mm at once."""
        nb = -(-self.ptrs // PTRS_PER_TABLE)
        a = np.arange(nb, dtype=np.int64) << PMD_SHIFT
        pgd = self.mm["pgd"].astype(np.int64)
        out = np.full((len(pgd), nb), -1, dtype=np.int64)
        rows = np.flatnonzero(pgd >= 0)
        if not len(rows):
            return out
        idx = PTRS_PER_TABLE - 1
        e = self.pgd_table[pgd[rows][:, None], ((a >> PGDIR_SHIFT) & idx)[None, :]].astype(np.int64)
        for table, shift in ((self.pud_table, PUD_SHIFT), (self.pmd_table, PMD_SHIFT)):
            e = np.where(e > 0, table[np.maximum(e - 1, 0), ((a >> shift) & idx)[None, :]], 0)
        out[rows] = e - 1
        return out

    def pte_grid(self) -> np.ndarray:
        """[mm, vpn] index into ``pte_page``/``pte_flags`` of every mm's PTE for vpn 0 ..
        ptrs - 1, -1 where the tables have none (check_model, tests)."""
        vpn = np.arange(self.ptrs, dtype=np.int64)
        p = self.pte_pages_grid()[:, vpn >> PMD_SHIFT]
        return np.where(p >= 0, p * PTRS_PER_TABLE + (vpn & (PTRS_PER_TABLE - 1)), -1)

    def pte_values_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """[mm, vpn] (page, flags) of every mm's PTE for vpn 0 .. ptrs - 1 read through the
        tables, (-1, 0) where they have none: whole PTE pages gathered at once (check_model)."""
        pp = self.pte_pages_grid()
        none = pp < 0
        idx = np.where(none, 0, pp)
        nmm, nb = pp.shape
        out = []
        for arr, empty in ((self.pte_page, -1), (self.pte_flags, 0)):
            rows = arr.reshape(-1, PTRS_PER_TABLE)[idx]  # [mm, block, PTE]
            rows[none] = empty
            out.append(rows.reshape(nmm, nb * PTRS_PER_TABLE)[:, : self.ptrs])
        return out[0], out[1]

    def ptes_of(self, mm: int) -> tuple[np.ndarray, np.ndarray]:
        """(pages, flags) of mm's PTEs for vpn 0 .. ptrs - 1, copies; (-1, 0) where none."""
        vpn = np.arange(self.ptrs, dtype=np.int64)
        idx = np.array([self.pte_index(mm * self.ptrs + int(b)) for b in range(0, self.ptrs, PTRS_PER_TABLE)],
                       dtype=np.int64)
        p = idx[vpn >> PMD_SHIFT]
        p = np.where(p >= 0, p + (vpn & (PTRS_PER_TABLE - 1)), -1)
        pages = np.where(p >= 0, self.pte_page[np.maximum(p, 0)], -1)
        flags = np.where(p >= 0, self.pte_flags[np.maximum(p, 0)], 0)
        return pages, flags

    def anon_vma_lock_word(self, av: int) -> int:
        """The lock that guards av's list: its own, or its root's (eras.lock_root)."""
        if self.era.lock_root:
            av = int(self.av_root[av])
            assert av >= 0, "anon_vma without a root: never allocated"
        return self._av_lock_w0 + av * self._av_stride

    def lock_ptl(self, mm: int, site: str) -> tuple[int, int, int]:
        w = self.ptl_word(mm)
        s = SITE[site]
        return w, s, self.locks.acquire(w, PTL, s)

    def unlock_ptl(self, token: tuple[int, int, int]) -> None:
        w, s, t = token
        self.locks.release(w, PTL, s, t)

    def anon_vma_lock(self, av: int, site: str) -> tuple[int, int, int]:
        """Take the lock guarding anon_vma ``av`` (callers never reach into root)."""
        w = self.anon_vma_lock_word(av)
        s = SITE[site]
        return w, s, self.locks.acquire(w, AV_LOCK, s)

    def anon_vma_unlock(self, token: tuple[int, int, int]) -> int:
        w, s, t = token
        return self.locks.release(w, AV_LOCK, s, t)

    # ------------------------------------------------------------------ allocation

    def alloc(self, kind: str, n: int = 1, site: str = "kmem_cache_alloc") -> np.ndarray:
        """Take ``n`` free records of ``kind`` (compiled: kmem_cache_alloc_c, through this
        CPU's slab cache).  Raises OutOfMemory (nothing allocated) when fewer than n are
        free, or when an injected failure fires."""
        k = ALLOC_KINDS.index(kind)
        out = np.empty(n, dtype=np.int64)
        st = kmem_cache_alloc_c(self.words, self.w32, self.g, self.locks.held, k, n, out)
        if st < 0:
            G.raise_status(st)
        return out.astype(np.int32)

    def alloc_one(self, kind: str) -> int:
        return int(self.alloc(kind, 1)[0])

    def free(self, kind: str, idx: np.ndarray | int, site: str = "kmem_cache_free") -> None:
        """Give records back (compiled: kmem_cache_free_c, through this CPU's slab cache)."""
        arr = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if not len(arr):
            return
        st = kmem_cache_free_c(self.words, self.w32, self.g, self.locks.held,
                               ALLOC_KINDS.index(kind), arr, len(arr))
        if st < 0:
            G.raise_status(st)

    def free_count(self, kind: str) -> int:
        """Free records of ``kind``: the global stack and every CPU's slab cache."""
        k = ALLOC_KINDS.index(kind)
        caches = self.seg["slab_cpu"][:, k * SLAB_AC_WORDS + SLAB_AC_AVAIL]
        return int(self._tops[k]) + int(caches.sum())

    def flush_slab_caches(self) -> None:
        """Move every CPU's cached free records onto the global free stacks.  Only while no
        CPU runs (tests, and a parent after its CPUs are gone): it takes no lock."""
        for k, kind in enumerate(ALLOC_KINDS):
            for c in range(self.caps.cpus):
                ac = self.seg["slab_cpu"][c, k * SLAB_AC_WORDS:]
                n = int(ac[SLAB_AC_AVAIL])
                top = int(self._tops[k])
                self._free[kind][top : top + n] = ac[SLAB_AC_ENTRY : SLAB_AC_ENTRY + n]
                self._tops[k] = top + n
                ac[SLAB_AC_AVAIL] = 0

    def free_records(self, kind: str) -> np.ndarray:
        """Every free record of ``kind`` (the global stack, then each CPU's cache), int32;
        a record listed twice is a bug check_model reports."""
        k = ALLOC_KINDS.index(kind)
        parts = [self._free[kind][: int(self._tops[k])]]
        for c in range(self.caps.cpus):
            ac = self.seg["slab_cpu"][c, k * SLAB_AC_WORDS:]
            avail = int(ac[SLAB_AC_AVAIL])
            parts.append(ac[SLAB_AC_ENTRY : SLAB_AC_ENTRY + min(max(avail, 0), SLAB_LIMIT)])
        return np.concatenate(parts)

    # ------------------------------------------------------------------ lock names

    def describe_lock(self, w: int) -> str:
        """A lock word index as a reader wants it: "anon_vma#12", "ptl(mm 3)", "slab(page)"."""
        if w < 0:
            return "-"
        if self._namer is None:
            self._namer = lock_namer(self.seg.offsets, self.caps)
        return self._namer(w)

    def held_locks(self) -> list[tuple[str, int, int]]:
        """Every lock whose owner field is set: (name, owner pid, owner cpu)."""
        out = []
        for arr, w0, stride in (
            (self.anon_vma["lock"], self._av_lock_w0, self._av_stride),
            (self.mm["ptl"], self._mm_ptl_w0, self._mm_stride),
            (self.seg["slab"], self._slab_w0, 8),
            (self.pte_ptl, self._pte_ptl_w0, 8),
        ):
            for i in np.flatnonzero(arr["owner"] != 0).tolist():
                tag = int(arr["owner"][i])
                out.append((self.describe_lock(w0 + i * stride), int(owner_pid(tag)), owner_cpu(tag)))
        return out

    def wedged_locks(self, limit: int = 64) -> list[str]:
        """The ticket and MCS (qspinlock) locks left unusable: a CPU died queued for them
        (``locking.lock_is_wedged``), named as ``describe_lock`` does; at most ``limit``.
        Meaningful once every CPU has stopped waiting (the parent, after its CPUs left)."""
        out = np.zeros(limit, dtype=np.int64)
        names: list[str] = []
        for w0, stride, count, cls in (
            (self._av_lock_w0, self._av_stride, len(self.anon_vma), AV_LOCK),
            (self._mm_ptl_w0, self._mm_stride, len(self.mm), PTL),
            (self._slab_w0, 8, len(ALLOC_KINDS), SLAB),
            (self._pte_ptl_w0, 8, len(self.pte_ptl), PTL),
        ):
            n = wedged_in(self.words, w0, stride, count, int(self.g[G.KIND0 + cls]), out)
            names += [self.describe_lock(w0 + int(i) * stride) for i in out[:n]]
        return names[:limit]

    def _lock_tables(self) -> tuple[tuple[int, int, int, int], ...]:
        """(first word, stride, count, class) of each table of locks."""
        return (
            (self._av_lock_w0, self._av_stride, len(self.anon_vma), AV_LOCK),
            (self._mm_ptl_w0, self._mm_stride, len(self.mm), PTL),
            (self._slab_w0, 8, len(ALLOC_KINDS), SLAB),
            (self._pte_ptl_w0, 8, len(self.pte_ptl), PTL),
        )

    def wedged_among(self, ws: Iterator[int] | list[int]) -> set[int]:
        """Which of the lock words ``ws`` read as wedged now (``lock_is_wedged``).  While
        CPUs run this is a hint, not a verdict: a ticket or MCS hand-off in flight reads
        the same for a moment (the live view shows a lock only once it has read so for a
        while, runner._WedgedWatch)."""
        out: set[int] = set()
        for w in ws:
            for w0, stride, count, cls in self._lock_tables():
                if w0 <= w < w0 + count * stride and (w - w0) % stride == 0:
                    if lock_is_wedged(self.words, int(w), int(self.g[G.KIND0 + cls])):
                        out.add(int(w))
                    break
        return out

    # ------------------------------------------------------------------ counts

    def counts(self) -> dict[str, int]:
        """Live records of each kind (the sentinel VMA excluded)."""
        return {
            "mms": int(self.mm["in_use"].sum()),
            "vmas": int(self.vma["in_use"].sum()) - 1,
            "anon_vmas": int(self.anon_vma["in_use"].sum()),
            "avcs": int(self.avc["in_use"].sum()),
            "pages": int((self.page["in_use"] == 1).sum()),
        }

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"<Model era {self.era.name} lock {self.lock_kind} cpu {self.cpu} "
            f"{c['mms']} mms, {c['vmas']} vmas, {c['anon_vmas']} anon_vmas, "
            f"{c['avcs']} avcs, {c['pages']} pages>"
        )


def mm_vmas(m: Model, mm: int) -> list[int]:
    """The VMAs of ``mm`` in its list's order (mm->mmap, vm_next)."""
    out = []
    v = int(m.mm["vma_head"][mm])
    nxt = m.vma["vm_next"]
    while v >= 0:
        out.append(v)
        v = int(nxt[v])
    return out

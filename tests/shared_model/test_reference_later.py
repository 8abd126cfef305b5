"""Property test for the later eras: the shared model against a plain-Python reference of
the kernel's rules for anon_vma reuse (3.19 ``degree``, 6.0 ``num_children`` /
``num_active_vmas``), the interval tree's walk order (3.7+), and the VMA operations
(mprotect's split_vma / vma_merge / vma_adjust, find_mergeable_anon_vma).

The reference keeps Python objects:

    RMm    an mm: its VMAs in the model's list order, its page table {vpn: RPte}
    RVma   start, end, pgoff, flags, anon_vma, chain of RAvc (newest first)
    RAv    an anon_vma: its AVCs in insertion order, parent, counters, live
    RAvc   (vma, anon_vma, seq): seq orders the interval tree's equal starts: a node goes
           after every node with the same start, so the tree's in-order is (start, seq),
           seq renewed each time vma_adjust takes the AVC out and puts it back
    RPage  mapping (an RAv), index, mapcount

A walk in the list eras visits the anon_vma's AVCs in list order, counting every one,
until it has found mapcount mappings; in the tree eras it visits, in (start pgoff, seq)
order, only those whose range holds the page.

Hypothesis drives random sequences of mmap + first touch, fork, exit, munmap, COW write,
mprotect of a range of one VMA to read-only or read-write (splitting and merging), and
reclaim of a page (page_referenced, then try_to_unmap and refault if it was cold),
through both.  After every step they must agree on every mm's VMAs, each VMA's anon_vma and
chain, each anon_vma's list and counters, every PTE and page, and every walk's result;
check_model() stays clean.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared_model.anon_vma import anon_vma_members
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import PTE_PRESENT, PTE_WRITE, PTE_YOUNG, VM_READ, VM_WRITE, Capacities
from shared_model.memory import (
    do_anonymous_pages,
    do_mmap,
    do_munmap,
    do_wp_pages,
    dup_mmap,
    exit_mmap,
    mm_alloc,
    mm_vmas,
)
from shared_model.mmap import do_mprotect
from shared_model.model import Model
from shared_model.rmap import page_referenced, try_to_unmap
from shared_model.swap_state import do_swap_page

PTRS = 12
MAX_MMS = 5
MAX_VMAS = 6
RW, RO = VM_READ | VM_WRITE, VM_READ
CAPS = Capacities(mms=MAX_MMS + 1, vmas=64, anon_vmas=256, avcs=2048,
                  pages=2 * (MAX_MMS + 1) * PTRS, ptrs_per_mm=PTRS, cpus=1)
ERAS_TESTED = ["2.6.34", "2.6.36", "3.7", "3.19", "6.0"]
SETTINGS = settings(max_examples=80, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------- reference


class RAv:
    def __init__(self, parent: RAv | None, degree: int) -> None:
        self.avcs: list[RAvc] = []
        self.parent = parent if parent is not None else self
        self.root: RAv = parent.root if parent is not None else self
        self.degree, self.children, self.active, self.refcount = degree, 0, 0, 0
        self.live = True


@dataclasses.dataclass(eq=False)
class RAvc:
    vma: RVma
    av: RAv
    seq: int


@dataclasses.dataclass(eq=False)
class RVma:
    mm: RMm
    start: int
    end: int
    pgoff: int
    flags: int = RW
    av: RAv | None = None
    chain: list[RAvc] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class RPage:
    av: RAv
    index: int
    mapcount: int = 1


@dataclasses.dataclass(eq=False)
class RPte:
    page: RPage
    young: bool
    write: bool
    present: bool = True


@dataclasses.dataclass(eq=False)
class RMm:
    idx: int
    vmas: list[RVma] = dataclasses.field(default_factory=list)
    ptes: dict[int, RPte] = dataclasses.field(default_factory=dict)


class Reference:
    def __init__(self, era: str) -> None:
        e = ERAS[era]
        self.reuse, self.tree, self.lock_root = e.reuse, e.tree, e.lock_root
        self.move_anon_rmap = e.move_anon_rmap
        self.self_ref = e.self_ref
        self.merge_singular = e.merge_singular
        self.mms: list[RMm] = []
        self.seq = itertools.count()

    # -- anon_vma and AVC

    def alloc(self, parent: RAv | None) -> RAv:
        av = RAv(parent, 1 if self.reuse == "degree" else 0)
        av.refcount = int(self.self_ref)  # 3.0+ anon_vma_alloc: its own reference
        if self.lock_root and av.root is not av:
            av.root.refcount += 1
        return av

    def link(self, vma: RVma, av: RAv) -> None:
        avc = RAvc(vma, av, next(self.seq))
        av.avcs.append(avc)
        vma.chain.insert(0, avc)

    def put(self, av: RAv) -> None:
        """3.0+ put_anon_vma: the drop that reaches 0 frees; a child's also puts the root's
        reference (__put_anon_vma)."""
        av.refcount -= 1
        if av.refcount:
            return
        av.live = False
        if av.root is not av:
            self.put(av.root)

    def free_if_unused(self, av: RAv) -> None:
        """An AVC just left av's list: 3.0+ put av's own reference if the list is now
        empty; before, free av if nothing references it either (and drop its root's)."""
        if self.self_ref:
            if not av.avcs:
                self.put(av)
            return
        while not av.avcs and av.refcount == 0 and av.live:
            av.live = False
            if not (self.lock_root and av.root is not av):
                return
            av.root.refcount -= 1
            av = av.root

    def count_user(self, av: RAv, d: int) -> None:
        if self.reuse == "degree":
            av.degree += d
        elif self.reuse == "active":
            av.active += d

    def count_child(self, parent: RAv, d: int) -> None:
        if self.reuse == "degree":
            parent.degree += d
        elif self.reuse == "active":
            parent.children += d

    def neighbours(self, vma: RVma) -> list[RVma]:
        mm = vma.mm
        return ([v for v in mm.vmas if v.start == vma.end]
                + [v for v in mm.vmas if v.end == vma.start and v is not vma])

    def anon_vma_prepare(self, vma: RVma) -> None:
        if vma.av is not None:
            return
        av = None
        for near in self.neighbours(vma):  # find_mergeable_anon_vma: next, then prev
            if near.av is not None and len(near.chain) == 1:
                av = near.av
                break
        allocated = av is None
        if av is None:
            av = self.alloc(None)
        self.link(vma, av)
        vma.av = av
        self.count_user(av, 1)
        if allocated and self.reuse == "active":
            av.children += 1  # a root's self-parent link

    def anon_vma_clone(self, dst: RVma, src: RVma) -> None:
        for pavc in reversed(src.chain):  # oldest first
            av = pavc.av
            self.link(dst, av)
            if dst.av is None and (
                    self.reuse == "degree" and av is not src.av and av.degree < 2
                    or self.reuse == "active" and src.av is not None and av.children < 2 and av.active == 0):
                dst.av = av
        if dst.av is not None and src.chain:
            self.count_user(dst.av, 1)

    def anon_vma_fork(self, vma: RVma, pvma: RVma) -> None:
        if pvma.av is None:
            return
        self.anon_vma_clone(vma, pvma)
        if vma.av is not None:
            return
        av = self.alloc(pvma.av)
        self.link(vma, av)
        vma.av = av
        if self.reuse == "active":
            av.active += 1
        self.count_child(pvma.av, 1)

    def unlink_anon_vmas(self, vma: RVma) -> None:
        if vma.av is not None:
            self.count_user(vma.av, -1)
        for avc in list(vma.chain):
            av = avc.av
            av.avcs.remove(avc)
            if not av.avcs:
                self.count_child(av.parent, -1)
            self.free_if_unused(av)
        vma.av, vma.chain = None, []

    # -- address spaces

    def mmap_touch(self, mm: RMm, start: int, npages: int) -> RVma:
        vma = RVma(mm, start, start + npages, start)
        mm.vmas.append(vma)
        self.anon_vma_prepare(vma)
        for vpn in range(start, start + npages):
            mm.ptes[vpn] = RPte(RPage(vma.av, vpn), young=True, write=True)
        return vma

    def fork(self, parent: RMm, idx: int) -> RMm:
        child = RMm(idx)
        self.mms.append(child)
        for pv in parent.vmas:
            cv = RVma(child, pv.start, pv.end, pv.pgoff, pv.flags)
            child.vmas.append(cv)
            self.anon_vma_fork(cv, pv)
            for vpn in range(pv.start, pv.end):
                pte = parent.ptes.get(vpn)
                if pte is not None:
                    pte.write = False
                    child.ptes[vpn] = RPte(pte.page, young=False, write=False)
                    pte.page.mapcount += 1
        return child

    def zap(self, mm: RMm, vma: RVma) -> None:
        for vpn in range(vma.start, vma.end):
            pte = mm.ptes.pop(vpn, None)
            if pte is not None:
                pte.page.mapcount -= 1

    def munmap(self, mm: RMm, vma: RVma) -> None:
        self.zap(mm, vma)
        self.unlink_anon_vmas(vma)
        mm.vmas.remove(vma)

    def exit(self, mm: RMm) -> None:
        for vma in mm.vmas:
            self.zap(mm, vma)
            self.unlink_anon_vmas(vma)
        self.mms.remove(mm)

    def cow(self, mm: RMm, vma: RVma, vpns: list[int]) -> None:
        self.anon_vma_prepare(vma)
        for vpn in vpns:
            pte = mm.ptes.get(vpn)
            if pte is None or pte.write:
                continue
            if pte.page.mapcount == 1:
                pte.write = pte.young = True  # the only user: reuse the page
                if self.move_anon_rmap:  # page_move_anon_rmap (2.6.34+)
                    pte.page.av = vma.av
            else:
                pte.page.mapcount -= 1
                mm.ptes[vpn] = RPte(RPage(vma.av, vma.pgoff + vpn - vma.start), young=True, write=True)

    # -- VMA operations

    def by_address(self, mm: RMm) -> list[RVma]:
        return sorted(mm.vmas, key=lambda v: v.start)

    def next_vma(self, vma: RVma) -> RVma | None:
        after = [v for v in vma.mm.vmas if v is not vma and v.start >= vma.end]
        return min(after, key=lambda v: v.start) if after else None

    def renew(self, vma: RVma) -> None:
        for avc in vma.chain:  # anon_vma_interval_tree_post_update_vma, head first
            avc.seq = next(self.seq)

    def vma_adjust(self, vma: RVma, start: int, end: int, pgoff: int, insert: RVma | None = None,
                   below: bool = False) -> None:
        nxt = self.next_vma(vma)
        removes: list[RVma] = []
        adjust = 0
        importer = exporter = None
        if nxt is not None and insert is None:
            n: RVma | None = nxt
            while n is not None and end >= n.end:
                removes.append(n)
                n = self.next_vma(n)
            if removes:
                exporter, importer, nxt = removes[0], vma, n
            if nxt is not None and end > nxt.start:
                adjust = end - nxt.start
                if exporter is None:
                    exporter, importer = nxt, vma
            elif not removes and nxt is not None and end < vma.end and nxt.start == vma.end:
                adjust = end - vma.end
                exporter, importer = vma, nxt
        if exporter is not None and importer is not None and exporter.av is not None and importer.av is None:
            importer.av = exporter.av
            self.anon_vma_clone(importer, exporter)
        locked = vma.av is not None or (adjust and nxt is not None and nxt.av is not None)
        vma.start, vma.end, vma.pgoff = start, end, pgoff
        if adjust:
            assert nxt is not None
            nxt.start += adjust
            nxt.pgoff += adjust
        if locked and self.tree:
            self.renew(vma)
            if adjust:
                assert nxt is not None
                self.renew(nxt)
        if insert is not None:
            i = vma.mm.vmas.index(vma)
            vma.mm.vmas.insert(i if below else i + 1, insert)
        for r in removes:
            vma.mm.vmas.remove(r)
        for r in removes:
            self.unlink_anon_vmas(r)

    def split_vma(self, vma: RVma, addr: int, below: bool) -> None:
        new = RVma(vma.mm, vma.start, vma.end, vma.pgoff, vma.flags, vma.av)
        if below:
            new.end = addr
            self.anon_vma_clone(new, vma)
            self.vma_adjust(vma, addr, vma.end, vma.pgoff + addr - vma.start, new, True)
        else:
            new.start, new.pgoff = addr, vma.pgoff + addr - vma.start
            self.anon_vma_clone(new, vma)
            self.vma_adjust(vma, vma.start, addr, vma.pgoff, new, False)

    def mergeable_av(self, a1: RAv | None, a2: RAv | None, vma: RVma | None) -> bool:
        # is_mergeable_anon_vma: before 3.0 the plain !a1 || !a2 || a1 == a2; from 3.0 a side
        # without an anon_vma only when vma's chain is singular (list_is_singular).
        if (a1 is None or a2 is None) and (not self.merge_singular or vma is None or len(vma.chain) <= 1):
            return True
        return a1 is a2

    def merge_before(self, vma: RVma, flags: int, av: RAv | None, pgoff: int) -> bool:
        return vma.flags == flags and self.mergeable_av(av, vma.av, vma) and vma.pgoff == pgoff

    def merge_after(self, vma: RVma, flags: int, av: RAv | None, pgoff: int) -> bool:
        return (vma.flags == flags and self.mergeable_av(av, vma.av, vma)
                and vma.pgoff + vma.end - vma.start == pgoff)

    def vma_merge(self, mm: RMm, prev: RVma | None, addr: int, end: int, flags: int, av: RAv | None,
                  pgoff: int) -> RVma | None:
        if prev is not None:
            nxt = self.next_vma(prev)
        else:
            vmas = self.by_address(mm)
            nxt = vmas[0] if vmas else None
        area = nxt
        if nxt is not None and nxt.end == end:
            nxt = self.next_vma(nxt)
        pglen = end - addr
        if prev is not None and prev.end == addr and self.merge_after(prev, flags, av, pgoff):
            if nxt is not None and end == nxt.start and self.merge_before(nxt, flags, av, pgoff + pglen) \
                    and self.mergeable_av(prev.av, nxt.av, None):
                self.vma_adjust(prev, prev.start, nxt.end, prev.pgoff)
            else:
                self.vma_adjust(prev, prev.start, end, prev.pgoff)
            return prev
        if nxt is not None and end == nxt.start and self.merge_before(nxt, flags, av, pgoff + pglen):
            if prev is not None and addr < prev.end:
                self.vma_adjust(prev, prev.start, addr, prev.pgoff)
                return nxt
            assert area is not None
            self.vma_adjust(area, addr, nxt.end, nxt.pgoff - pglen)
            return area
        return None

    def mprotect(self, mm: RMm, start: int, npages: int, flags: int) -> None:
        """A range inside one VMA: do_mprotect's one mprotect_fixup."""
        end = start + npages
        vmas = self.by_address(mm)
        vma = next(v for v in vmas if v.start <= start < v.end)
        i = vmas.index(vma)
        prev = vma if start > vma.start else (vmas[i - 1] if i else None)
        old = vma.flags
        if flags == old:
            return
        merged = self.vma_merge(mm, prev, start, end, flags, vma.av, vma.pgoff + start - vma.start)
        if merged is not None:
            vma = merged
        else:
            if start != vma.start:
                self.split_vma(vma, start, True)
            if end != vma.end:
                self.split_vma(vma, end, False)
        vma.flags = flags
        if old & VM_WRITE and not flags & VM_WRITE:
            for vpn in range(start, end):
                if vpn in mm.ptes:
                    mm.ptes[vpn].write = False

    # -- reclaim

    def walk_order(self, page: RPage) -> list[RAvc]:
        if not self.tree:
            return list(page.av.avcs)
        inside = [a for a in page.av.avcs
                  if a.vma.pgoff <= page.index < a.vma.pgoff + a.vma.end - a.vma.start]
        return sorted(inside, key=lambda a: (a.vma.pgoff, a.seq))

    def walk(self, page: RPage, unmap: bool) -> tuple[int, int, list[RPte]]:
        """(young mappings cleared, entries visited, PTEs unmapped)."""
        found = visited = referenced = 0
        unmapped: list[RPte] = []
        for avc in self.walk_order(page):
            if found == page.mapcount:
                break
            visited += 1
            vma = avc.vma
            vpn = vma.start + page.index - vma.pgoff
            if not vma.start <= vpn < vma.end:
                continue
            pte = vma.mm.ptes.get(vpn)
            if pte is None or pte.page is not page or not pte.present:
                continue
            found += 1
            if pte.young:
                pte.young = False
                referenced += 1
                if unmap:
                    break  # SWAP_FAIL
            elif unmap:
                pte.present = False
                unmapped.append(pte)
        return referenced, visited, unmapped

    def live_avs(self) -> set[RAv]:
        out: set[RAv] = set()
        for mm in self.mms:
            for v in mm.vmas:
                out.update(a.av for a in v.chain)
            out.update(p.page.av for p in mm.ptes.values())
        return out


# ---------------------------------------------------------------------------- comparison


def chain_of(m: Model, vma: int) -> list[int]:
    out, x = [], int(m.vma["avc_head"][vma])
    while x >= 0:
        out.append(int(m.avc["anon_vma"][x]))
        x = int(m.avc["same_vma_next"][x])
    return out


def compare(m: Model, ref: Reference) -> None:
    avs: dict[int, int] = {}
    back: dict[int, int] = {}

    def same(r: RAv | None, a: int, what: str) -> None:
        if r is None:
            assert a == -1, f"{what}: model anon_vma {a}, reference none"
            return
        assert a >= 0 and m.anon_vma["in_use"][a] == 1 and r.live, f"{what}: anon_vma {a} not live"
        if id(r) in avs:
            assert avs[id(r)] == a, f"{what}: anon_vma {a} should be {avs[id(r)]}"
        else:
            assert a not in back, f"{what}: model anon_vma {a} stands for two reference ones"
            avs[id(r)], back[a] = a, id(r)

    assert sorted(mm.idx for mm in ref.mms) == np.flatnonzero(m.mm["in_use"] == 1).tolist()
    vmas: dict[int, int] = {}
    for mm in ref.mms:
        model_vmas = mm_vmas(m, mm.idx)
        got = [tuple(int(m.vma[f][v]) for f in ("vm_start", "vm_end", "vm_pgoff", "vm_flags"))
               for v in model_vmas]
        assert got == [(v.start, v.end, v.pgoff, v.flags) for v in mm.vmas], f"mm {mm.idx}"
        for rv, v in zip(mm.vmas, model_vmas, strict=True):
            vmas[id(rv)] = v
            what = f"mm {mm.idx} vma [{rv.start}, {rv.end})"
            same(rv.av, int(m.vma["anon_vma"][v]), what)
            model_chain = chain_of(m, v)
            assert len(model_chain) == len(rv.chain), f"{what}: chain {model_chain}"
            for r, a in zip(rv.chain, model_chain, strict=True):
                same(r.av, a, f"{what} chain")
    live = ref.live_avs()
    assert int(m.anon_vma["in_use"].sum()) >= len(live)
    for r in live:
        a = avs[id(r)]
        members, _ = anon_vma_members(m, a)
        assert members.tolist() == [vmas[id(x.vma)] for x in r.avcs], f"anon_vma {a} list"
        rec = m.anon_vma[a]
        if ref.lock_root:
            assert int(rec["refcount"]) == r.refcount, f"anon_vma {a} refcount"
        if ref.reuse == "degree":
            assert int(rec["degree"]) == r.degree, f"anon_vma {a} degree"
        elif ref.reuse == "active":
            assert (int(rec["num_children"]), int(rec["num_active_vmas"])) == (r.children, r.active), \
                f"anon_vma {a} counters"
    pages: dict[int, int] = {}
    for mm in ref.mms:
        mp, mf = m.ptes_of(mm.idx)
        assert sorted(np.flatnonzero(mp >= 0).tolist()) == sorted(mm.ptes), f"mm {mm.idx} PTEs"
        for vpn, pte in mm.ptes.items():
            p, fl = int(mp[vpn]), int(mf[vpn])
            want = PTE_PRESENT | (PTE_YOUNG if pte.young else 0) | (PTE_WRITE if pte.write else 0)
            assert fl == want, f"mm {mm.idx} vpn {vpn}: flags {fl} != {want}"
            assert pages.setdefault(id(pte.page), p) == p, f"mm {mm.idx} vpn {vpn}: page"
            if pte.page.av.live:  # else 3.19's dangling mapping: its record may be reused
                same(pte.page.av, int(m.page_mapping[p]), f"page {p}")
            assert (int(m.page_index[p]), int(m.page_mapcount[p])) == (pte.page.index, pte.page.mapcount)
    assert len(set(pages.values())) == len(pages) == int((m.page_mapping >= 0).sum())


# ---------------------------------------------------------------------------- the machine


class LaterMachine(RuleBasedStateMachine):
    era = "3.19"

    def __init__(self) -> None:
        super().__init__()
        self.m = Model.create(CAPS, self.era, entry_cost_ns=0)
        self.ref = Reference(self.era)

    def teardown(self) -> None:
        try:
            found = check_model(self.m)
            if self.dangling():  # 3.19's use-after-free, reached at random: only its reports
                event("3.19: a page's anon_vma freed under it (CVE-2022-42703)")
                assert all("freed anon_vma" in f or "not found by an rmap walk" in f for f in found), found
            else:
                assert found == []
        finally:
            seg = self.m.seg
            self.m.close()
            seg.unlink()

    def dangling(self) -> bool:
        return any(not p.page.av.live for mm in self.ref.mms for p in mm.ptes.values())

    def free_ranges(self, mm: RMm) -> list[tuple[int, int]]:
        used = [False] * PTRS
        for v in mm.vmas:
            used[v.start : v.end] = [True] * (v.end - v.start)
        return [(s, n) for s in range(PTRS) for n in range(1, 5)
                if s + n <= PTRS and not any(used[s : s + n])]

    @precondition(lambda self: len(self.ref.mms) < MAX_MMS)
    @rule(data=st.data())
    def new_process(self, data: st.DataObject) -> None:
        idx = mm_alloc(self.m)
        mm = RMm(idx)
        self.ref.mms.append(mm)
        start, n = data.draw(st.sampled_from(self.free_ranges(mm)), label="range")
        v = do_mmap(self.m, idx, start, n)
        do_anonymous_pages(self.m, idx, v, np.arange(start, start + n))
        self.ref.mmap_touch(mm, start, n)

    def mappable(self) -> list[RMm]:
        return [mm for mm in self.ref.mms if len(mm.vmas) < MAX_VMAS and self.free_ranges(mm)]

    @precondition(lambda self: self.mappable())
    @rule(data=st.data())
    def mmap_touch(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from(self.mappable()), label="mm")
        start, n = data.draw(st.sampled_from(self.free_ranges(mm)), label="range")
        v = do_mmap(self.m, mm.idx, start, n)
        do_anonymous_pages(self.m, mm.idx, v, np.arange(start, start + n))
        self.ref.mmap_touch(mm, start, n)

    @precondition(lambda self: 0 < len(self.ref.mms) < MAX_MMS)
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from(self.ref.mms), label="parent")
        child = dup_mmap(self.m, mm.idx)
        self.ref.fork(mm, child)

    @precondition(lambda self: self.ref.mms)
    @rule(data=st.data())
    def fork_and_exit(self, data: st.DataObject) -> None:
        """fork-chain's step: the parent forks and exits (where reuse happens)."""
        mm = data.draw(st.sampled_from(self.ref.mms), label="parent")
        child = dup_mmap(self.m, mm.idx)
        self.ref.fork(mm, child)
        exit_mmap(self.m, mm.idx)
        self.ref.exit(mm)

    @precondition(lambda self: self.ref.mms)
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from(self.ref.mms), label="mm")
        exit_mmap(self.m, mm.idx)
        self.ref.exit(mm)

    def with_vmas(self) -> list[RMm]:
        return [mm for mm in self.ref.mms if mm.vmas]

    @precondition(lambda self: self.with_vmas())
    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from(self.with_vmas()), label="mm")
        i = data.draw(st.integers(0, len(mm.vmas) - 1), label="vma")
        do_munmap(self.m, mm.idx, mm_vmas(self.m, mm.idx)[i])
        self.ref.munmap(mm, mm.vmas[i])

    @precondition(lambda self: self.with_vmas())
    @rule(data=st.data())
    def cow(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from(self.with_vmas()), label="mm")
        writable = [i for i, v in enumerate(mm.vmas) if v.flags & VM_WRITE]
        if not writable:
            return
        i = data.draw(st.sampled_from(writable), label="vma")
        rv = mm.vmas[i]
        vpns = sorted(data.draw(st.sets(st.integers(rv.start, rv.end - 1), min_size=1), label="vpns"))
        do_wp_pages(self.m, mm.idx, mm_vmas(self.m, mm.idx)[i], np.array(vpns))
        self.ref.cow(mm, rv, vpns)

    @precondition(lambda self: [mm for mm in self.with_vmas() if len(mm.vmas) < MAX_VMAS])
    @rule(data=st.data())
    def mprotect(self, data: st.DataObject) -> None:
        mm = data.draw(st.sampled_from([mm for mm in self.with_vmas() if len(mm.vmas) < MAX_VMAS]),
                       label="mm")
        rv = data.draw(st.sampled_from(mm.vmas), label="vma")
        start = data.draw(st.integers(rv.start, rv.end - 1), label="start")
        n = data.draw(st.integers(1, rv.end - start), label="npages")
        flags = data.draw(st.sampled_from([RO, RW]), label="flags")
        do_mprotect(self.m, mm.idx, start, n, flags)
        self.ref.mprotect(mm, start, n, flags)

    def pages(self) -> list[tuple[RMm, int]]:
        return [(mm, vpn) for mm in self.ref.mms for vpn in sorted(mm.ptes) if mm.ptes[vpn].page.av.live]

    @precondition(lambda self: self.pages())
    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        """shrink_page_list for one page: page_referenced; cold, try_to_unmap and refault."""
        mm, vpn = data.draw(st.sampled_from(self.pages()), label="page")
        rpage = mm.ptes[vpn].page
        page = self.m.pte_of(mm.idx, vpn)[0]
        ref, visited = page_referenced(self.m, page)
        rref, rvisited, _ = self.ref.walk(rpage, unmap=False)
        assert (ref, visited) == (rref, rvisited), "page_referenced"
        if ref:
            return
        slots, visited = try_to_unmap(self.m, page)
        _, rvisited, unmapped = self.ref.walk(rpage, unmap=True)
        assert visited == rvisited and len(slots) == len(unmapped), "try_to_unmap"
        do_swap_page(self.m, page, slots)
        for pte in unmapped:
            pte.present, pte.young, pte.write = True, True, False
        if unmapped and ERAS[self.era].swapin == "oldest":
            # 2.6.34's do_swap_page: the page's first mapping after the swap-in (a swap-cache
            # hit here) puts it on the oldest anon_vma of the faulting VMA's chain; 2.6.36+
            # keeps a swap-cache page's mapping (see test_swapin.py).
            mm0 = next(mm for mm in self.ref.mms if any(p is unmapped[0] for p in mm.ptes.values()))
            vpn0 = next(v for v, p in mm0.ptes.items() if p is unmapped[0])
            vma0 = next(v for v in mm0.vmas if v.start <= vpn0 < v.end)
            rpage.av = vma0.chain[-1].av

    @invariant()
    def models_agree(self) -> None:
        compare(self.m, self.ref)


@pytest.mark.parametrize("era", ERAS_TESTED)
def test_later_model_agrees_with_reference(era: str) -> None:
    machine = type(f"LaterMachine_{era.replace('.', '_')}", (LaterMachine,), {"era": era})
    run_state_machine_as_test(machine, settings=SETTINGS)

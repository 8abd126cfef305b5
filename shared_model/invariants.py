"""check_model(): every consistency rule of the model, executable.

Run on a quiescent model (no CPU running): at the end of every stress run and after every
test that mutates the model.  Returns the violations found, as sentences; empty is good.
Rules:

1. Lists: each anon_vma's chunks are doubly linked head to tail, owned by it, their live
   counts match their non-tombstoned slots, and ``nr_members`` is the sum.
2. AVCs (chain eras): each live AVC sits on both of its lists: its slot on its anon_vma's
   list holds it, and it is on its VMA's same_vma list.  2.6.33: each VMA with an anon_vma
   sits in its recorded slot of that anon_vma's list.
3. VMAs: each belongs to a live mm and is on that mm's VMA list; its anon_vma is on its
   own chain (chain eras).
4. Pages: mapcount equals the present PTEs that map the page, swapcount the swap PTEs; a
   page in use has a reference; a free page has none; rss equals present PTEs.
5. No lost mapping: every present PTE is found by an rmap walk from its page's anon_vma:
   the VMA covering it is on that anon_vma's list and vma_address(page) is that PTE.
6. Refcounts (root-locking eras): each root's refcount is the number of other live
   anon_vmas whose root it is.
7. Nothing leaked: every record is either in use or on its free stack, exactly once, and
   no live anon_vma is unused (empty list and no references).
8. Locks: none is held (owner 0) once the CPUs have stopped.
"""

from __future__ import annotations

import numpy as np

from .layout import ALLOC_KINDS, PTE_PRESENT, PTE_SWAP
from .model import Model

MAX_REPORTED = 50


def check_model(m: Model) -> list[str]:
    out: list[str] = []

    def bad(msg: str) -> None:
        if len(out) < MAX_REPORTED:
            out.append(msg)

    av, ch, avc, vma, mm, page = m.anon_vma, m.chunk, m.avc, m.vma, m.mm, m.page
    live_av = np.flatnonzero(av["in_use"] == 1)
    live_vma = np.flatnonzero(vma["in_use"] == 1)
    live_vma = live_vma[live_vma != 0]
    live_mm = np.flatnonzero(mm["in_use"] == 1)

    # 1. lists, and the (anon_vma, vma) pairs they hold
    pairs: set[tuple[int, int]] = set()
    on_list_avc: dict[int, tuple[int, int]] = {}
    seen_chunks: set[int] = set()
    for a in live_av.tolist():
        c, prev, total = int(av["head"][a]), -1, 0
        while c >= 0:
            if c in seen_chunks:
                bad(f"anon_vma {a}: chunk {c} reached twice (cycle or shared)")
                break
            seen_chunks.add(c)
            if ch["in_use"][c] != 1 or ch["anon_vma"][c] != a or ch["prev"][c] != prev:
                bad(f"anon_vma {a}: chunk {c} not properly linked or owned")
            vs = ch["vma"][c, : ch["used"][c]]
            live = int(np.count_nonzero(vs))
            if live != ch["live"][c] or live == 0:
                bad(f"anon_vma {a}: chunk {c} live count {ch['live'][c]} but {live} live slots")
            total += live
            for pos in np.flatnonzero(vs).tolist():
                v = int(vs[pos])
                if (a, v) in pairs:
                    bad(f"anon_vma {a}: vma {v} is on its list twice")
                pairs.add((a, v))
                x = int(ch["avc"][c, pos])
                # every live slot must be the one its owner records (no stale duplicates)
                if m.era.chain:
                    if x < 0 or avc["in_use"][x] != 1 or avc["anon_vma"][x] != a or avc["vma"][x] != v \
                            or (avc["list_chunk"][x], avc["list_pos"][x]) != (c, pos):
                        bad(f"anon_vma {a}: slot ({c}, {pos}) holds avc {x}, which does not point back at it")
                    elif x in on_list_avc:
                        bad(f"avc {x} is on a list twice")
                    on_list_avc[x] = (c, pos)
                elif vma["anon_vma"][v] != a or (vma["list_chunk"][v], vma["list_pos"][v]) != (c, pos):
                    bad(f"anon_vma {a}: slot ({c}, {pos}) holds vma {v}, which does not point back at it")
            prev, c = c, int(ch["next"][c])
        if av["tail"][a] != prev:
            bad(f"anon_vma {a}: tail {av['tail'][a]} is not the last chunk {prev}")
        if total != av["nr_members"][a]:
            bad(f"anon_vma {a}: nr_members {av['nr_members'][a]} but {total} on its list")
        if total == 0 and av["refcount"][a] == 0:
            bad(f"anon_vma {a}: in use with an empty list and no references (leaked)")
    stray = set(np.flatnonzero(ch["in_use"] == 1).tolist()) - seen_chunks
    if stray:
        bad(f"{len(stray)} list chunks in use but on no anon_vma's list, e.g. {min(stray)}")

    # 2./3. AVCs and VMAs
    live_avc = np.flatnonzero(avc["in_use"] == 1)
    if m.era.chain:
        chained: set[int] = set()
        for v in live_vma.tolist():
            x, own = int(vma["avc_head"][v]), False
            steps = 0
            while x >= 0 and steps <= len(live_avc):
                chained.add(x)
                if avc["vma"][x] != v:
                    bad(f"avc {x} on vma {v}'s chain points at vma {avc['vma'][x]}")
                own |= avc["anon_vma"][x] == vma["anon_vma"][v]
                x, steps = int(avc["same_vma_next"][x]), steps + 1
            if vma["anon_vma"][v] >= 0 and not own:
                bad(f"vma {v}: its anon_vma {vma['anon_vma'][v]} is not on its own chain")
        for x in live_avc.tolist():
            if x not in chained:
                bad(f"avc {x} is not on its vma's same_vma list")
            slot = (int(avc["list_chunk"][x]), int(avc["list_pos"][x]))
            if on_list_avc.get(x) != slot:
                bad(f"avc {x} is not in its recorded slot {slot} of anon_vma {avc['anon_vma'][x]}")
            elif (int(avc["anon_vma"][x]), int(avc["vma"][x])) not in pairs:
                bad(f"avc {x}: list slot holds another vma")
    else:
        if len(live_avc):
            bad(f"{len(live_avc)} AVCs in use in an era without anon_vma_chain")
        for v in live_vma.tolist():
            a = int(vma["anon_vma"][v])
            if a >= 0:
                c, pos = int(vma["list_chunk"][v]), int(vma["list_pos"][v])
                if c < 0 or ch["anon_vma"][c] != a or ch["vma"][c, pos] != v:
                    bad(f"vma {v} is not in its recorded slot of anon_vma {a}'s list")
    on_mm: set[int] = set()
    for x in live_mm.tolist():
        v = int(mm["vma_head"][x])
        while v >= 0:
            on_mm.add(v)
            if vma["vm_mm"][v] != x:
                bad(f"vma {v} on mm {x}'s list belongs to mm {vma['vm_mm'][v]}")
            v = int(vma["vm_next"][v])
    for v in live_vma.tolist():
        if v not in on_mm:
            bad(f"vma {v} is not on any live mm's list")
    for a, v in pairs:
        if vma["in_use"][v] != 1:
            bad(f"anon_vma {a}'s list holds freed vma {v}")

    # 4. pages and PTEs
    ptrs = m.ptrs
    pte_page, pte_flags = m.pte_page, m.pte_flags
    present = (pte_flags & PTE_PRESENT) != 0
    swap = (pte_flags & PTE_SWAP) != 0
    torn = np.flatnonzero((present | swap) & (pte_page < 0))
    if len(torn):  # e.g. a CPU killed between the two stores of a PTE update
        bad(f"{len(torn)} PTEs marked present or swapped with no page, e.g. slot {torn[0]}")
        present &= pte_page >= 0
        swap &= pte_page >= 0
    npages = len(page)
    mapc = np.bincount(pte_page[present], minlength=npages)
    swapc = np.bincount(pte_page[swap], minlength=npages)
    in_use = page["in_use"] == 1
    mismatch = np.flatnonzero(in_use != (page["mapping"] >= 0))
    if len(mismatch):
        bad(f"{len(mismatch)} pages whose in_use and mapping disagree (leaked or half-freed), "
            f"e.g. page {mismatch[0]}")
    for name, want, have in (("mapcount", mapc, page["mapcount"]), ("swapcount", swapc, page["swapcount"])):
        diff = np.flatnonzero(want != have)
        if len(diff):
            p = int(diff[0])
            bad(f"{len(diff)} pages with a wrong {name}, e.g. page {p}: {have[p]} recorded, {want[p]} PTEs")
    orphan = np.flatnonzero(in_use & (mapc + swapc == 0))
    if len(orphan):
        bad(f"{len(orphan)} pages in use with no PTE pointing at them (leaked), e.g. {orphan[0]}")
    freed = np.flatnonzero(~in_use & (mapc + swapc > 0))
    if len(freed):
        bad(f"{len(freed)} free pages still mapped, e.g. {freed[0]}")
    owners = (np.flatnonzero(present | swap) // ptrs).astype(np.int64)
    if len(owners) and not np.all(mm["in_use"][owners] == 1):
        bad("PTEs set in the page table of a freed mm")
    rss = np.bincount(np.flatnonzero(present) // ptrs, minlength=len(mm))
    wrong = np.flatnonzero((mm["in_use"] == 1) & (rss != mm["rss"]))
    if len(wrong):
        bad(f"{len(wrong)} mms with a wrong rss, e.g. mm {wrong[0]}")

    # 5. every mapped PTE is reachable by the walk
    slots = np.flatnonzero(present | swap)
    if len(slots):
        pages = pte_page[slots]
        mms, vpns = slots // ptrs, slots % ptrs
        covering = _covering_vmas(m, mms, vpns)
        missing_vma = np.flatnonzero(covering < 0)
        if len(missing_vma):
            bad(f"{len(missing_vma)} PTEs outside every VMA of their mm, e.g. slot {slots[missing_vma[0]]}")
        ok = covering >= 0
        cv = covering[ok]
        want_index = vma["vm_pgoff"][cv] + (vpns[ok] - vma["vm_start"][cv])
        bad_index = np.flatnonzero(page["index"][pages[ok]] != want_index)
        if len(bad_index):
            bad(f"{len(bad_index)} pages whose index does not give back their address, "
                f"e.g. page {pages[ok][bad_index[0]]}")
        mapping = page["mapping"][pages[ok]]
        lost = [
            (int(a), int(v)) for a, v in set(zip(mapping.tolist(), cv.tolist())) if (a, v) not in pairs
        ]
        if lost:
            a, v = lost[0]
            bad(f"{len(lost)} (anon_vma, vma) mappings not found by an rmap walk, e.g. "
                f"pages of anon_vma {a} mapped in vma {v}, which is not on its list")

    # 6. refcounts
    if m.era.lock_root:
        roots = av["root"][live_av]
        refs = np.bincount(roots[roots != live_av], minlength=len(av))
        wrong = np.flatnonzero(refs[live_av] != av["refcount"][live_av])
        if len(wrong):
            a = int(live_av[wrong[0]])
            bad(f"{len(wrong)} anon_vmas with a wrong refcount, e.g. {a}: {av['refcount'][a]} vs {refs[a]}")
        dead_root = np.flatnonzero(av["in_use"][roots] != 1)
        if len(dead_root):
            bad(f"{len(dead_root)} anon_vmas whose root has been freed")

    # 7. leaks: in use xor on the free stack, exactly once
    tops = m.header["top"][0]
    for k, kind in enumerate(ALLOC_KINDS):
        rec = getattr(m, kind)
        cap = len(rec)
        stack = m.seg[f"free_{kind}"][: int(tops[k])]
        counts = np.bincount(stack, minlength=cap)
        used = rec["in_use"] == 1
        if kind == "vma":
            used = used.copy()
            used[0] = True  # the sentinel
        if np.any(counts > 1):
            bad(f"{kind}: a record is on the free stack twice")
        both = np.flatnonzero(used & (counts > 0))
        neither = np.flatnonzero(~used & (counts == 0))
        if len(both):
            bad(f"{kind}: {len(both)} records both in use and free, e.g. {both[0]}")
        if len(neither):
            bad(f"{kind}: {len(neither)} records neither in use nor free (leaked), e.g. {neither[0]}")

    # 8. locks
    for name, arr in (("anon_vma", av["lock"]), ("ptl", mm["ptl"]), ("slab", m.seg["slab"]),
                      ("mapcount", m.seg["mapcount_lock"])):
        held = np.flatnonzero(arr["owner"] != 0)
        if len(held):
            bad(f"{len(held)} {name} locks still held, e.g. #{held[0]} by owner tag {arr['owner'][held[0]]}")
    return out


def _covering_vmas(m: Model, mms: np.ndarray, vpns: np.ndarray) -> np.ndarray:
    """For each (mm, vpn), the VMA of that mm whose range holds vpn, or -1."""
    vma = m.vma
    out = np.full(len(mms), -1, dtype=np.int64)
    live = np.flatnonzero(vma["in_use"] == 1)
    live = live[live != 0]
    # Few VMAs per mm: match each PTE against the VMAs of its own mm, one VMA "rank" at a time.
    order = np.lexsort((vma["vm_start"][live], vma["vm_mm"][live]))
    live = live[order]
    owner = vma["vm_mm"][live]
    first = np.searchsorted(owner, mms, side="left")
    last = np.searchsorted(owner, mms, side="right")
    for rank in range(int((last - first).max(initial=0))):
        idx = first + rank
        has = idx < last
        cand = live[np.where(has, idx, 0)]
        hit = has & (out < 0) & (vma["vm_start"][cand] <= vpns) & (vpns < vma["vm_end"][cand])
        out[hit] = cand[hit]
    return out

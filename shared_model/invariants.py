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

from collections.abc import Callable

import numpy as np

from .layout import ALLOC_KINDS, CH, PTE_PRESENT, PTE_SWAP
from .model import Model

MAX_REPORTED = 50


def check_model(m: Model) -> list[str]:
    """Every rule above, as whole-array numpy operations: no Python step per record, page
    or PTE.  Linked lists (chunks, same_vma chains, mm VMA lists) are walked in lockstep,
    one step for all lists at once, so the Python loop runs as many times as the longest
    list is long, not once per entry.  Lock-free: the model must be quiescent."""
    out: list[str] = []

    def bad(msg: str) -> None:
        if len(out) < MAX_REPORTED:
            out.append(msg)

    av, ch, avc, vma, mm = m.anon_vma, m.chunk, m.avc, m.vma, m.mm
    live_av = np.flatnonzero(av["in_use"] == 1)
    live_vma = np.flatnonzero(vma["in_use"] == 1)
    live_vma = live_vma[live_vma != 0]
    live_mm = np.flatnonzero(mm["in_use"] == 1)

    # 1. lists, and the (anon_vma, vma) pairs they hold
    chunks, owners = _walk_lists(ch["next"], ch["prev"], av["head"][live_av], live_av, av["tail"], ch, bad)
    used = ch["used"][chunks]
    slot_vma = ch["vma"][chunks]
    in_range = np.arange(CH)[None, :] < used[:, None]
    occupied = in_range & (slot_vma != 0)
    live = occupied.sum(axis=1)
    for i in np.flatnonzero((live != ch["live"][chunks]) | (live == 0))[:MAX_REPORTED].tolist():
        bad(f"anon_vma {owners[i]}: chunk {chunks[i]} live count {ch['live'][chunks[i]]} but {live[i]} "
            f"live slots")
    totals = np.bincount(np.searchsorted(live_av, owners), weights=live, minlength=len(live_av)) \
        .astype(np.int64) if len(live_av) else np.zeros(0, np.int64)
    rows, pos = np.nonzero(occupied)
    pair_c, pair_pos = chunks[rows], pos
    pair_a, pair_v = owners[rows], slot_vma[rows, pos].astype(np.int64)
    nv = len(vma)
    keys = pair_a * nv + pair_v
    pair_keys, counts = np.unique(keys, return_counts=True)
    for k in pair_keys[counts > 1][:MAX_REPORTED].tolist():
        bad(f"anon_vma {k // nv}: vma {k % nv} is on its list twice")
    on_list_chunk = np.full(len(avc), -1, np.int64)
    on_list_pos = np.full(len(avc), -1, np.int64)
    if m.era.chain:
        x = ch["avc"][pair_c, pair_pos].astype(np.int64)
        xs = np.where(x >= 0, x, 0)
        good = (x >= 0) & (avc["in_use"][xs] == 1) & (avc["anon_vma"][xs] == pair_a) \
            & (avc["vma"][xs] == pair_v) & (avc["list_chunk"][xs] == pair_c) & (avc["list_pos"][xs] == pair_pos)
        for i in np.flatnonzero(~good)[:MAX_REPORTED].tolist():
            bad(f"anon_vma {pair_a[i]}: slot ({pair_c[i]}, {pair_pos[i]}) holds avc {x[i]}, which does "
                f"not point back at it")
        xg, xn = np.unique(x[good], return_counts=True)
        for d in xg[xn > 1][:MAX_REPORTED].tolist():
            bad(f"avc {d} is on a list twice")
        hold = x >= 0
        on_list_chunk[x[hold]] = pair_c[hold]
        on_list_pos[x[hold]] = pair_pos[hold]
    else:
        back = (vma["anon_vma"][pair_v] == pair_a) & (vma["list_chunk"][pair_v] == pair_c) \
            & (vma["list_pos"][pair_v] == pair_pos)
        for i in np.flatnonzero(~back)[:MAX_REPORTED].tolist():
            bad(f"anon_vma {pair_a[i]}: slot ({pair_c[i]}, {pair_pos[i]}) holds vma {pair_v[i]}, which "
                f"does not point back at it")
    nr = av["nr_members"][live_av]
    for i in np.flatnonzero(totals != nr)[:MAX_REPORTED].tolist():
        bad(f"anon_vma {live_av[i]}: nr_members {nr[i]} but {totals[i]} on its list")
    for i in np.flatnonzero((totals == 0) & (av["refcount"][live_av] == 0))[:MAX_REPORTED].tolist():
        bad(f"anon_vma {live_av[i]}: in use with an empty list and no references (leaked)")
    seen_chunk = np.zeros(len(ch), bool)
    seen_chunk[chunks] = True
    stray = np.flatnonzero((ch["in_use"] == 1) & ~seen_chunk)
    if len(stray):
        bad(f"{len(stray)} list chunks in use but on no anon_vma's list, e.g. {stray[0]}")

    # 2./3. AVCs and VMAs
    live_avc = np.flatnonzero(avc["in_use"] == 1)
    if m.era.chain:
        chained = np.zeros(len(avc), bool)
        own = np.zeros(len(live_vma), bool)
        lane = np.arange(len(live_vma))
        cur = vma["avc_head"][live_vma].astype(np.int64)
        for _ in range(len(live_avc) + 1):  # a cycle cannot keep us here
            act = cur >= 0
            if not act.any():
                break
            lane, cur = lane[act], cur[act]
            v = live_vma[lane]
            chained[cur] = True
            for i in np.flatnonzero(avc["vma"][cur] != v)[:MAX_REPORTED].tolist():
                bad(f"avc {cur[i]} on vma {v[i]}'s chain points at vma {avc['vma'][cur[i]]}")
            own[lane] |= avc["anon_vma"][cur] == vma["anon_vma"][v]
            cur = avc["same_vma_next"][cur].astype(np.int64)
        for i in np.flatnonzero((vma["anon_vma"][live_vma] >= 0) & ~own)[:MAX_REPORTED].tolist():
            v = live_vma[i]
            bad(f"vma {v}: its anon_vma {vma['anon_vma'][v]} is not on its own chain")
        for x in live_avc[~chained[live_avc]][:MAX_REPORTED].tolist():
            bad(f"avc {x} is not on its vma's same_vma list")
        lc, lp = avc["list_chunk"][live_avc], avc["list_pos"][live_avc]
        moved = (on_list_chunk[live_avc] != lc) | (on_list_pos[live_avc] != lp)
        for i in np.flatnonzero(moved)[:MAX_REPORTED].tolist():
            x = live_avc[i]
            bad(f"avc {x} is not in its recorded slot ({lc[i]}, {lp[i]}) of anon_vma {avc['anon_vma'][x]}")
        k = avc["anon_vma"][live_avc].astype(np.int64) * nv + avc["vma"][live_avc]
        for x in live_avc[~moved & ~np.isin(k, pair_keys)][:MAX_REPORTED].tolist():
            bad(f"avc {x}: list slot holds another vma")
    else:
        if len(live_avc):
            bad(f"{len(live_avc)} AVCs in use in an era without anon_vma_chain")
        vs = live_vma[vma["anon_vma"][live_vma] >= 0]
        a, c, p = vma["anon_vma"][vs], vma["list_chunk"][vs], vma["list_pos"][vs]
        cs, ps = np.where(c >= 0, c, 0), np.clip(p, 0, CH - 1)
        wrong = (c < 0) | (ch["anon_vma"][cs] != a) | (ch["vma"][cs, ps] != vs)
        for i in np.flatnonzero(wrong)[:MAX_REPORTED].tolist():
            bad(f"vma {vs[i]} is not in its recorded slot of anon_vma {a[i]}'s list")
    on_mm = np.zeros(len(vma), bool)
    lane_mm = live_mm.astype(np.int64)
    cur = mm["vma_head"][live_mm].astype(np.int64)
    for _ in range(len(vma) + 1):
        act = cur >= 0
        if not act.any():
            break
        lane_mm, cur = lane_mm[act], cur[act]
        on_mm[cur] = True
        for i in np.flatnonzero(vma["vm_mm"][cur] != lane_mm)[:MAX_REPORTED].tolist():
            bad(f"vma {cur[i]} on mm {lane_mm[i]}'s list belongs to mm {vma['vm_mm'][cur[i]]}")
        cur = vma["vm_next"][cur].astype(np.int64)
    for v in live_vma[~on_mm[live_vma]][:MAX_REPORTED].tolist():
        bad(f"vma {v} is not on any live mm's list")
    freed = pair_keys[vma["in_use"][pair_keys % nv] != 1]
    for k in freed[:MAX_REPORTED].tolist():
        bad(f"anon_vma {k // nv}'s list holds freed vma {k % nv}")

    # 4. pages and PTEs
    page = m.page
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
        want = _distinct(page["mapping"][pages[ok]].astype(np.int64) * nv + cv)
        lost = want[~np.isin(want, pair_keys)]
        if len(lost):
            a, v = divmod(int(lost[0]), nv)
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
    # Few VMAs per mm: match each PTE against the VMAs of its own mm, one VMA "rank" at a
    # time.  Where each mm's VMAs start in the sorted list is found once per mm, not per PTE.
    order = np.lexsort((vma["vm_start"][live], vma["vm_mm"][live]))
    live = live[order]
    owner = vma["vm_mm"][live]
    per_mm = np.arange(len(m.mm) + 1)
    bounds = np.searchsorted(owner, per_mm, side="left")
    first, last = bounds[:-1][mms], bounds[1:][mms]
    start, end = vma["vm_start"], vma["vm_end"]
    for rank in range(int((bounds[1:] - bounds[:-1]).max(initial=0))):
        idx = first + rank
        has = idx < last
        cand = live[np.where(has, idx, 0)] if len(live) else np.zeros(len(idx), np.int64)
        hit = has & (out < 0) & (start[cand] <= vpns) & (vpns < end[cand])
        out[hit] = cand[hit]
    return out


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of ``keys``, sorted.  PTEs come in long runs of one key (a child's
    pages in one VMA and one anon_vma), so runs are collapsed before the sort."""
    if len(keys) == 0:
        return keys
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return np.unique(keys[starts])


def _walk_lists(nxt: np.ndarray, prv: np.ndarray, heads: np.ndarray, owners: np.ndarray,
                tails: np.ndarray, ch: np.ndarray, bad: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Walk every anon_vma's chunk list at once, one step for all; check each chunk is in
    use, owned by its list and back-linked, that no chunk is reached twice, and that each
    tail is the last chunk.  Returns (chunks, owner anon_vma of each), in walk order."""
    seen = np.zeros(len(nxt), bool)
    lane = np.arange(len(heads))
    cur = heads.astype(np.int64)
    prev = np.full(len(heads), -1, np.int64)
    last = np.full(len(heads), -1, np.int64)
    got_c: list[np.ndarray] = []
    got_a: list[np.ndarray] = []
    while True:
        act = cur >= 0
        if not act.any():
            break
        lane, cur, prev = lane[act], cur[act], prev[act]
        a = owners[lane]
        _, first = np.unique(cur, return_index=True)
        again = seen[cur].copy()
        dup = np.ones(len(cur), bool)
        dup[first] = False
        again |= dup
        for i in np.flatnonzero(again)[:MAX_REPORTED].tolist():
            bad(f"anon_vma {a[i]}: chunk {cur[i]} reached twice (cycle or shared)")
        keep = ~again
        lane, cur, prev, a = lane[keep], cur[keep], prev[keep], a[keep]
        seen[cur] = True
        wrong = (ch["in_use"][cur] != 1) | (ch["anon_vma"][cur] != a) | (prv[cur] != prev)
        for i in np.flatnonzero(wrong)[:MAX_REPORTED].tolist():
            bad(f"anon_vma {a[i]}: chunk {cur[i]} not properly linked or owned")
        got_c.append(cur)
        got_a.append(a)
        last[lane] = cur
        prev = cur
        cur = nxt[cur].astype(np.int64)
    off = np.flatnonzero(tails[owners] != last)
    for i in off[:MAX_REPORTED].tolist():
        bad(f"anon_vma {owners[i]}: tail {tails[owners[i]]} is not the last chunk {last[i]}")
    if not got_c:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(got_c), np.concatenate(got_a).astype(np.int64)

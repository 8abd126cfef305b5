"""check_model(): every consistency rule of the model, executable.

Run on a quiescent model (no CPU running): at the end of every stress run and after every
test that mutates the model.  Returns the violations found, as sentences; empty is good.
Rules 1-8 and 13, held here:

1. Lists: each anon_vma's list, through the nodes embedded in its entries (AVCs; VMAs in
   2.6.33), runs from ``head`` by ``next`` to ``tail`` with every ``prev`` pointing back,
   no entry reached twice (no cycle, no entry on two lists), every entry live and
   claiming this anon_vma; ``nr_members`` is its length.
2. AVCs (chain eras): each live AVC sits on both of its lists: the list of the anon_vma
   it claims, and its VMA's same_vma list.  2.6.33: each VMA with an anon_vma sits on that
   anon_vma's list.
3. VMAs: each belongs to a live mm and is on that mm's VMA list; its anon_vma is on its
   own chain (chain eras).
4. Pages: mapcount equals the present PTEs that map the page, swapcount the swap PTEs; a
   page in use has a reference; a free page has none; rss equals present PTEs.  A page
   with no anon_vma (mapping -1) in use is a swap slot dropped from the swap cache:
   unmapped, with swap PTEs only.
5. No lost mapping: every present PTE is found by an rmap walk from its page's anon_vma:
   the VMA covering it is on that anon_vma's list and vma_address(page) is that PTE.
6. Refcounts (root-locking eras): each root's refcount is the number of other live
   anon_vmas whose root it is; 3.0+ (Era.self_ref) adds one for every anon_vma whose list
   is not empty (its own reference, put when the list empties).
7. Nothing leaked: every record is either in use or free (its free stack or a CPU's slab
   cache), exactly once, and no live anon_vma is unused (empty list and no references).
8. Locks: none is held (owner 0) once the CPUs have stopped; no page is locked
   (PG_locked).
13. Page tables: every live mm has a pgd, a freed one none; every page-table block
    reachable from a live mm's pgd is allocated and reached exactly once (no block
    shared between two entries), and every allocated block is reachable (none leaked).
    PTEs are read only through the tables (rules 4 and 5 see exactly what a walk sees).

Rules 9-12, of the later eras and of the VMA operations, are in invariants_later.py
(``check_later_rules``), which check_model() calls last.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .invariants_later import MAX_REPORTED, check_later_rules
from .layout import ALLOC_KINDS, PG_LOCKED, PGTABLE_KINDS, PTE_PRESENT, PTE_SWAP
from .locking.cached_compile import cached_njit
from .model import Model

# The two rules the seed's own bug breaks (Era.seed_placement): rule 5's unreachable
# mappings and rule 9's page on a freed anon_vma.  In that era they are its oops, expected.
SEED_BUG_MESSAGES = ("mappings not found by an rmap walk", "points at a freed anon_vma")


def only_seed_bug(messages: list[str]) -> bool:
    """Every violation is one the seed's swap-in placement explains."""
    return all(any(s in m for s in SEED_BUG_MESSAGES) for m in messages)


def check_model(m: Model) -> list[str]:
    """Every rule (above, then invariants_later.py's), as whole-array numpy operations: no
    Python step per record, page or PTE.  Linked lists (same_vma chains, mm VMA lists) are
    walked in lockstep, one step for all lists at once, so the Python loop runs as many
    times as the longest list is long, not once per entry; the anon_vma lists, as long as a
    fork family is large, are walked by compiled code (anon_vma_lists_walk_c).  Lock-free:
    the model must be quiescent."""
    out: list[str] = []

    def bad(msg: str) -> None:
        if len(out) < MAX_REPORTED:
            out.append(msg)

    live_av = np.flatnonzero(m.anon_vma["in_use"] == 1)
    live_vma = np.flatnonzero(m.vma["in_use"] == 1)
    live_vma = live_vma[live_vma != 0]
    live_mm = np.flatnonzero(m.mm["in_use"] == 1)

    seen, pair_keys = _check_lists(m, live_av, bad)
    # Rules 2 and 3 read one walk of the same_vma chains; rule 3's own-chain check is
    # reported between the walk and rule 2's, the mm lists after.
    chains = _walk_same_vma_chains(m, live_vma, bad) if m.era.chain else None
    _check_vma_on_own_chain(m, live_vma, chains, bad)
    _check_avcs_on_lists(m, live_vma, chains, seen, bad)
    _check_vmas_on_mm_lists(m, live_vma, live_mm, pair_keys, bad)
    _check_pgtables(m, live_mm, bad)
    grid_page, mapped, per_mm = _check_pages(m, bad)
    _check_no_lost_mapping(m, grid_page, mapped, per_mm, pair_keys, bad)
    _check_refcounts(m, live_av, bad)
    _check_nothing_leaked(m, bad)
    _check_locks(m, bad)
    check_later_rules(m, bad)
    return out


def _check_lists(m: Model, live_av: np.ndarray, bad: Callable[[str], None]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rule 1, lists: each anon_vma's list, through the nodes embedded in its entries (AVCs;
    VMAs in 2.6.33), runs from ``head`` by ``next`` to ``tail`` with every ``prev`` pointing
    back, no entry reached twice (no cycle, no entry on two lists), every entry live and
    claiming this anon_vma; ``nr_members`` is its length.  (A live anon_vma with an empty
    list and no references, rule 7's leak, is found here from the list lengths.)

    Returns which records the lists reached, and the (anon_vma, vma) pairs they hold as
    sorted keys ``anon_vma * len(vma) + vma``."""
    av, avc, vma = m.anon_vma, m.avc, m.vma
    nv = len(vma)
    kind, rec = ("avc", avc) if m.era.chain else ("vma", vma)
    link = "same_anon_vma" if m.era.chain else "anon_vma_node"
    nodes, owners, seen = _walk_lists(live_av, av, rec, link, kind, bad)
    pair_a = owners
    pair_v = avc["vma"][nodes].astype(np.int64) if m.era.chain else nodes
    keys = pair_a * nv + pair_v
    pair_keys, counts = np.unique(keys, return_counts=True)
    for k in pair_keys[counts > 1][:MAX_REPORTED].tolist():
        bad(f"anon_vma {k // nv}: vma {k % nv} is on its list twice")
    totals = np.bincount(np.searchsorted(live_av, owners), minlength=len(live_av)) \
        if len(live_av) else np.zeros(0, np.int64)
    nr = av["nr_members"][live_av]
    for i in np.flatnonzero(totals != nr)[:MAX_REPORTED].tolist():
        bad(f"anon_vma {live_av[i]}: nr_members {nr[i]} but {totals[i]} on its list")
    for i in np.flatnonzero((totals == 0) & (av["refcount"][live_av] == 0))[:MAX_REPORTED].tolist():
        bad(f"anon_vma {live_av[i]}: in use with an empty list and no references (leaked)")
    return seen, pair_keys


def _walk_same_vma_chains(m: Model, live_vma: np.ndarray, bad: Callable[[str], None]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The same_vma chain of every live VMA (chain eras), walked in lockstep; reports an
    AVC on a VMA's chain that points at another VMA.  Returns which AVCs the chains reached
    and, per live VMA, whether its own anon_vma's AVC is on its chain."""
    avc, vma = m.avc, m.vma
    live_avc = np.flatnonzero(avc["in_use"] == 1)
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
    return chained, own


def _check_vma_on_own_chain(m: Model, live_vma: np.ndarray,
                            chains: tuple[np.ndarray, np.ndarray] | None,
                            bad: Callable[[str], None]) -> None:
    """Rule 3, VMAs (its chain part): each VMA's anon_vma is on its own chain (chain
    eras)."""
    if chains is None:
        return
    vma = m.vma
    own = chains[1]
    for i in np.flatnonzero((vma["anon_vma"][live_vma] >= 0) & ~own)[:MAX_REPORTED].tolist():
        v = live_vma[i]
        bad(f"vma {v}: its anon_vma {vma['anon_vma'][v]} is not on its own chain")


def _check_avcs_on_lists(m: Model, live_vma: np.ndarray,
                         chains: tuple[np.ndarray, np.ndarray] | None, seen: np.ndarray,
                         bad: Callable[[str], None]) -> None:
    """Rule 2, AVCs (chain eras): each live AVC sits on both of its lists: the list of the
    anon_vma it claims, and its VMA's same_vma list.  2.6.33: each VMA with an anon_vma
    sits on that anon_vma's list."""
    avc, vma = m.avc, m.vma
    live_avc = np.flatnonzero(avc["in_use"] == 1)
    if chains is not None:
        chained = chains[0]
        for x in live_avc[~chained[live_avc]][:MAX_REPORTED].tolist():
            bad(f"avc {x} is not on its vma's same_vma list")
        for x in live_avc[~seen[live_avc]][:MAX_REPORTED].tolist():
            bad(f"avc {x} is not on the list of its anon_vma {avc['anon_vma'][x]}")
    else:
        if len(live_avc):
            bad(f"{len(live_avc)} AVCs in use in an era without anon_vma_chain")
        vs = live_vma[vma["anon_vma"][live_vma] >= 0]
        for v in vs[~seen[vs]][:MAX_REPORTED].tolist():
            bad(f"vma {v} is not on the list of its anon_vma {vma['anon_vma'][v]}")


def _check_vmas_on_mm_lists(m: Model, live_vma: np.ndarray, live_mm: np.ndarray,
                            pair_keys: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 3, VMAs: each belongs to a live mm and is on that mm's VMA list (and no
    anon_vma's list holds a freed one)."""
    vma, mm = m.vma, m.mm
    nv = len(vma)
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


def _check_pages(m: Model, bad: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule 4, pages: mapcount equals the present PTEs that map the page, swapcount the swap
    PTEs; a page in use has a reference; a free page has none; rss equals present PTEs.  A
    page with no anon_vma (mapping -1) in use is a swap slot dropped from the swap cache:
    unmapped, with swap PTEs only.

    The page tables are one (mm, vpn) grid: rows and columns come from the grid's shape,
    never from dividing slot numbers (numpy's integer division is slow), and page numbers
    are widened before bincount (which is slow on int32).  Returns the grid's pages, which
    of its PTEs map a page (present or swap), and how many per mm."""
    page, mm = m.page, m.mm
    grid_page, grid_flags = m.pte_values_grid()  # through each mm's tables
    present = (grid_flags & PTE_PRESENT) != 0
    swap = (grid_flags & PTE_SWAP) != 0
    torn = np.flatnonzero((present | swap) & (grid_page < 0))
    if len(torn):  # e.g. a CPU killed between the two stores of a PTE update
        bad(f"{len(torn)} PTEs marked present or swapped with no page, e.g. slot {torn[0]}")
        present &= grid_page >= 0
        swap &= grid_page >= 0
    npages = len(page)
    mapc = np.bincount(grid_page[present].astype(np.intp), minlength=npages)
    swapc = np.bincount(grid_page[swap].astype(np.intp), minlength=npages)
    in_use = page["in_use"] == 1
    # A page dropped from the swap cache (mapping -1) is a swap slot: in use, unmapped, and
    # only swap PTEs point at it.
    slot_only = in_use & (page["mapping"] < 0) & (page["mapcount"] == 0) & (page["swapcount"] > 0)
    mismatch = np.flatnonzero((in_use != (page["mapping"] >= 0)) & ~slot_only)
    if len(mismatch):
        bad(f"{len(mismatch)} pages whose in_use and mapping disagree (leaked or half-freed), "
            f"e.g. page {mismatch[0]}")
    for name, want, have in (("mapcount", mapc, page["mapcount"]), ("swapcount", swapc, page["swapcount"])):
        diff = np.flatnonzero(want != have)
        if len(diff):
            p = int(diff[0])
            bad(f"{len(diff)} pages with a wrong {name}, e.g. page {p}: {have[p]} recorded, {want[p]} PTEs")
    mapc += swapc
    orphan = np.flatnonzero(in_use & (mapc == 0))
    if len(orphan):
        bad(f"{len(orphan)} pages in use with no PTE pointing at them (leaked), e.g. {orphan[0]}")
    freed = np.flatnonzero(~in_use & (mapc > 0))
    if len(freed):
        bad(f"{len(freed)} free pages still mapped, e.g. {freed[0]}")
    del mapc, swapc
    mapped = present | swap
    per_mm = mapped.sum(axis=1)
    if np.any(per_mm[mm["in_use"] != 1]):
        bad("PTEs set in the page table of a freed mm")
    rss = present.sum(axis=1)
    wrong = np.flatnonzero((mm["in_use"] == 1) & (rss != mm["rss"]))
    if len(wrong):
        bad(f"{len(wrong)} mms with a wrong rss, e.g. mm {wrong[0]}")
    return grid_page, mapped, per_mm


def _check_no_lost_mapping(m: Model, grid_page: np.ndarray, mapped: np.ndarray, per_mm: np.ndarray,
                           pair_keys: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 5, no lost mapping: every present PTE is found by an rmap walk from its page's
    anon_vma: the VMA covering it is on that anon_vma's list and vma_address(page) is that
    PTE."""
    if not per_mm.any():
        return
    page, vma = m.page, m.vma
    ptrs, nmm, nv = m.ptrs, len(m.mm), len(vma)
    pages = grid_page[mapped]
    vpns = np.broadcast_to(np.arange(ptrs, dtype=np.int32), (nmm, ptrs))[mapped]
    covering = _covering_vmas_grid(m, per_mm, vpns)
    missing_vma = np.flatnonzero(covering < 0)
    if len(missing_vma):
        i = int(missing_vma[0])
        row = int(np.searchsorted(np.cumsum(per_mm), i, side="right"))
        bad(f"{len(missing_vma)} PTEs outside every VMA of their mm, e.g. slot {row * ptrs + int(vpns[i])}")
    if len(missing_vma):
        ok = covering >= 0
        cv, pg, vp = covering[ok], pages[ok], vpns[ok]
    else:  # the usual case: no copies
        cv, pg, vp = covering, pages, vpns
    del covering, pages, vpns
    # page->index = vm_pgoff + (vpn - vm_start): one gather of a per-VMA offset
    offset = vma["vm_pgoff"].astype(np.int64) - vma["vm_start"]
    want_index = offset[cv]
    want_index += vp
    bad_index = np.flatnonzero(page["index"][pg] != want_index)
    if len(bad_index):
        bad(f"{len(bad_index)} pages whose index does not give back their address, "
            f"e.g. page {pg[bad_index[0]]}")
    del want_index, vp
    maps = page["mapping"][pg]
    if (maps < 0).any():  # swap slots: no anon_vma until a fault reads them back
        cv, maps = cv[maps >= 0], maps[maps >= 0]
    want = _distinct_pairs(maps, cv, nv)
    lost = want[~np.isin(want, pair_keys)]
    if len(lost):
        a, v = divmod(int(lost[0]), nv)
        bad(f"{len(lost)} (anon_vma, vma) mappings not found by an rmap walk, e.g. "
            f"pages of anon_vma {a} mapped in vma {v}, which is not on its list")


def _check_refcounts(m: Model, live_av: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 6, refcounts (root-locking eras): each root's refcount is the number of other
    live anon_vmas whose root it is; 3.0+ (Era.self_ref) adds one for every anon_vma whose
    list is not empty (its own reference, put when the list empties)."""
    if not m.era.lock_root:
        return
    av = m.anon_vma
    roots = av["root"][live_av]
    rootless = (roots < 0) | (roots >= len(av))
    if rootless.any():
        bad(f"{int(rootless.sum())} anon_vmas with no root, e.g. {int(live_av[rootless][0])}: "
            f"root {int(roots[rootless][0])}")
        live_av, roots = live_av[~rootless], roots[~rootless]
    refs = np.bincount(roots[roots != live_av], minlength=len(av))
    if m.era.self_ref:
        refs[live_av] += av["nr_members"][live_av] > 0
    wrong = np.flatnonzero(refs[live_av] != av["refcount"][live_av])
    if len(wrong):
        a = int(live_av[wrong[0]])
        bad(f"{len(wrong)} anon_vmas with a wrong refcount, e.g. {a}: {av['refcount'][a]} vs {refs[a]}")
    dead_root = np.flatnonzero(av["in_use"][roots] != 1)
    if len(dead_root):
        bad(f"{len(dead_root)} anon_vmas whose root has been freed")


def _check_nothing_leaked(m: Model, bad: Callable[[str], None]) -> None:
    """Rule 7, nothing leaked: every record is either in use or free (its free stack or a
    CPU's slab cache, a dead CPU's included), exactly once.  (Rule 1 reports a live
    anon_vma that is unused; rule 13 the page-table blocks.)"""
    for kind in ALLOC_KINDS:
        if kind in PGTABLE_KINDS:  # blocks without an in_use field: rule 13
            continue
        rec = getattr(m, kind)
        cap = len(rec)
        stack = m.free_records(kind)
        on_stack = np.unique(stack)  # the stack is short next to the records, sort it
        used = rec["in_use"] == 1
        if kind == "vma":
            used[0] = True  # the sentinel
        if len(on_stack) < len(stack):
            bad(f"{kind}: a record is free twice (free stack, slab caches)")
        both = on_stack[used[on_stack]]
        if len(both):
            bad(f"{kind}: {len(both)} records both in use and free, e.g. {both[0]}")
        # neither in use nor on the stack: counted without a pass per record, found if any
        if cap - int(np.count_nonzero(used)) - (len(on_stack) - len(both)):
            free = ~used
            free[on_stack] = False
            neither = np.flatnonzero(free)
            if len(neither):
                bad(f"{kind}: {len(neither)} records neither in use nor free (leaked), e.g. {neither[0]}")


def _check_locks(m: Model, bad: Callable[[str], None]) -> None:
    """Rule 8, locks: none is held (owner 0) once the CPUs have stopped; no page is locked
    (PG_locked)."""
    for name, arr in (("anon_vma", m.anon_vma["lock"]), ("ptl", m.mm["ptl"]), ("slab", m.seg["slab"]),
                      ("swap_lock", m.seg["swap_lock"]), ("PTE page", m.pte_ptl)):
        held = np.flatnonzero(arr["owner"] != 0)
        if len(held):
            bad(f"{len(held)} {name} locks still held, e.g. #{held[0]} by owner tag {arr['owner'][held[0]]}")
    locked = np.flatnonzero(m.page["flags"] & PG_LOCKED)
    if len(locked):
        bad(f"{len(locked)} pages still locked (PG_locked), e.g. page {locked[0]}")


def _table_children(table: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """The blocks that the entries of ``table[blocks]`` point at (entry - 1; 0 is none), a
    few thousand rows at a time (a 100,000-mm model's pgds are 400 MB of entries)."""
    parts = []
    for i in range(0, len(blocks), 4096):
        rows = table[blocks[i : i + 4096]]
        parts.append(rows[rows != 0] - 1)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _check_pgtables(m: Model, live_mm: np.ndarray, bad: Callable[[str], None]) -> None:
    """Rule 13: the page tables of the live mms, and nothing else, hold the allocated
    page-table blocks, each exactly once."""
    pgd = m.mm["pgd"].astype(np.int64)
    nopgd = live_mm[pgd[live_mm] < 0]
    if len(nopgd):
        bad(f"{len(nopgd)} live mms without a pgd, e.g. mm {nopgd[0]}")
    dead = np.flatnonzero((m.mm["in_use"] != 1) & (pgd >= 0))
    if len(dead):
        bad(f"{len(dead)} freed mms still holding a pgd, e.g. mm {dead[0]} (pgd {pgd[dead[0]]})")
    reached = pgd[live_mm]
    reached = reached[reached >= 0]
    for kind, table in (("pgd", m.pgd_table), ("pud", m.pud_table), ("pmd", m.pmd_table), ("pte", None)):
        cap = m.caps.capacity(kind)
        bad_ref = reached[(reached < 0) | (reached >= cap)]
        if len(bad_ref):
            bad(f"{len(bad_ref)} {kind} entries pointing outside the {kind} pool, e.g. block {bad_ref[0]}")
            reached = reached[(reached >= 0) & (reached < cap)]
        uniq, counts = np.unique(reached, return_counts=True)
        if len(uniq) < len(reached):
            bad(f"{kind}: {int((counts > 1).sum())} blocks reached from two page-table entries, "
                f"e.g. block {uniq[counts > 1][0]}")
        stack = m.free_records(kind)
        on_stack = np.unique(stack)
        if len(on_stack) < len(stack):
            bad(f"{kind}: a block is free twice (free stack, slab caches)")
        both = np.intersect1d(uniq, on_stack)
        if len(both):
            bad(f"{kind}: {len(both)} blocks in a live mm's page table but free, e.g. {both[0]}")
        leaked = cap - len(on_stack) - (len(uniq) - len(both))
        if leaked > 0:
            free = np.ones(cap, dtype=bool)
            free[on_stack] = False
            free[uniq] = False
            bad(f"{kind}: {leaked} records neither in use nor free (leaked), e.g. "
                f"{np.flatnonzero(free)[0]}, in no live mm's page table")
        if table is not None:
            reached = _table_children(table, uniq)


def _covering_vmas_grid(m: Model, per_mm: np.ndarray, vpns: np.ndarray) -> np.ndarray:
    """For each mapped PTE, in grid order (``per_mm[x]`` of them in mm x, at ``vpns``), the
    VMA of its mm whose range holds it, or -1.

    Most mms have one VMA: every PTE is first matched against its mm's first VMA (by
    start), found once per mm and spread with ``repeat``; only the PTEs that miss, in mms
    with more VMAs, are matched against the others, one VMA "rank" at a time."""
    vma = m.vma
    nmm = len(per_mm)
    live = np.flatnonzero(vma["in_use"] == 1)
    live = live[live != 0]
    live = live[np.lexsort((vma["vm_start"][live], vma["vm_mm"][live]))]
    bounds = np.searchsorted(vma["vm_mm"][live], np.arange(nmm + 1), side="left")
    nvm = np.diff(bounds)
    # VMA 0 is the sentinel, an empty range: an mm without VMAs matches nothing.
    first = live[np.minimum(bounds[:-1], len(live) - 1)] if len(live) else np.zeros(nmm, np.int64)
    first = np.where(nvm > 0, first, 0).astype(np.int32)
    out = np.repeat(first, per_mm)
    start, end = np.ascontiguousarray(vma["vm_start"]), np.ascontiguousarray(vma["vm_end"])
    out[(start[out] > vpns) | (vpns >= end[out])] = -1
    if nvm.max(initial=0) > 1:
        miss = np.flatnonzero((out < 0) & (np.repeat(nvm, per_mm) > 1))
        mms = np.repeat(np.arange(nmm), per_mm)[miss]
        lo, hi = bounds[:-1][mms], bounds[1:][mms]
        v = vpns[miss]
        for rank in range(1, int(nvm.max())):
            idx = lo + rank
            has = idx < hi
            c = live[np.where(has, idx, 0)].astype(np.int32)
            hit = has & (out[miss] < 0) & (start[c] <= v) & (v < end[c])
            out[miss[hit]] = c[hit]
    return out


def _distinct_pairs(a: np.ndarray, b: np.ndarray, nb: int) -> np.ndarray:
    """The distinct pairs of ``a`` and ``b`` as sorted keys ``a * nb + b``.  PTEs come in
    long runs of one pair (a child's pages in one VMA and one anon_vma), so runs are found
    on the narrow arrays first and only their first elements become keys."""
    if len(a) == 0:
        return np.zeros(0, np.int64)
    change = np.empty(len(a), bool)
    change[0] = True
    np.not_equal(a[1:], a[:-1], out=change[1:])
    change[1:] |= b[1:] != b[:-1]
    starts = np.flatnonzero(change)
    return np.unique(a[starts].astype(np.int64) * nb + b[starts])


LIST_OK, LIST_TWICE, LIST_FOREIGN, LIST_BAD_PREV, LIST_BAD_TAIL = 0, 1, 2, 3, 4


@cached_njit
def anon_vma_lists_walk_c(avs: np.ndarray, head: np.ndarray, tail: np.ndarray, nxt: np.ndarray,
                          prv: np.ndarray, in_use: np.ndarray, owner: np.ndarray, nodes: np.ndarray,
                          owners: np.ndarray, verdict: np.ndarray, where: np.ndarray,
                          seen: np.ndarray) -> int:
    """Walk the list of each anon_vma of ``avs`` from its head by ``next``, as
    list_for_each_entry does, checking each entry (an index into ``nxt``, ``prv``,
    ``in_use``, ``owner``) as it goes: not reached before (on this list or another: the
    walk is bounded by the records), in use, claiming this anon_vma, its ``prev`` the entry
    before it; and the tail the last.  Stops a list at its first fault: verdict[i] (LIST_*)
    and where[i], the entry at fault.  The entries reached, in walk order, go to
    ``nodes``/``owners``; ``seen`` marks them.  Returns how many."""
    k = 0
    n = len(nxt)
    for i in range(len(avs)):
        a = avs[i]
        prev = -1
        cur = head[a]
        v = LIST_OK
        while cur >= 0:
            if cur >= n or seen[cur]:
                v = LIST_TWICE
                break
            if in_use[cur] != 1 or owner[cur] != a:
                v = LIST_FOREIGN
                break
            if prv[cur] != prev:
                v = LIST_BAD_PREV
                break
            seen[cur] = True
            nodes[k] = cur
            owners[k] = a
            k += 1
            prev = cur
            cur = nxt[cur]
        if v == LIST_OK and tail[a] != prev:
            v = LIST_BAD_TAIL
            cur = prev
        verdict[i] = v
        where[i] = cur
    return k


def _walk_lists(live_av: np.ndarray, av: np.ndarray, rec: np.ndarray, link: str, kind: str,
                bad: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule 1 over every live anon_vma's list (anon_vma_lists_walk_c), the faults reported.
    ``rec`` holds the entries (AVCs, or VMAs in 2.6.33), ``link`` names their node.
    Returns (entries, owner anon_vma of each) in list order, and which records were
    reached."""
    def col(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.int64)

    n = len(rec)
    nodes = np.empty(n, np.int64)
    owners = np.empty(n, np.int64)
    verdict = np.zeros(len(live_av), np.int64)
    where = np.zeros(len(live_av), np.int64)
    seen = np.zeros(n, np.bool_)
    prv, nxt = col(rec[f"{link}_prev"]), col(rec[f"{link}_next"])
    head, tail = col(av["head"]), col(av["tail"])
    owner = col(rec["anon_vma"])
    k = anon_vma_lists_walk_c(col(live_av), head, tail, nxt, prv, col(rec["in_use"]), owner,
                              nodes, owners, verdict, where, seen)
    for i in np.flatnonzero(verdict != LIST_OK)[:MAX_REPORTED].tolist():
        a, x, v = int(live_av[i]), int(where[i]), int(verdict[i])
        if v == LIST_TWICE:
            bad(f"anon_vma {a}: {kind} {x} reached twice (a cycle, or an entry on two lists)")
        elif v == LIST_FOREIGN:
            bad(f"anon_vma {a}: {kind} {x} on its list is free or claims anon_vma {owner[x]}")
        elif v == LIST_BAD_PREV:
            bad(f"anon_vma {a}: {kind} {x} on its list is not properly linked (its prev, "
                f"{prv[x]}, is not the entry before it)")
        else:
            bad(f"anon_vma {a}: tail {tail[a]} is not the last entry {x}")
    return nodes[:k], owners[:k], seen

"""VMA operations of mm/mmap.c and mm/mprotect.c: split, adjust, merge, mprotect.

``mprotect_fixup`` changes the protection of a page range of one VMA: it first tries
``vma_merge`` with the neighbours (same flags, mergeable anon_vma, contiguous pgoff),
otherwise ``split_vma`` cuts the range out (each new piece a copy of the VMA that keeps
its anon_vma and gets its own chain through ``anon_vma_clone``).  ``vma_adjust`` is where
a VMA's range changes, a split piece is inserted, or a merged neighbour removed
(``anon_vma_merge``: unlink_anon_vmas of the one that goes); a VMA that imports pages
from a neighbour without an anon_vma of its own first clones the neighbour's chain.

Only the CPU that owns the mm runs these (mmap_sem held for write).  ``vma_adjust_c`` takes
the anon_vma lock of the VMA (the root's from 2.6.36) around the range change when its era
did (``vma_adjust_lock_target_c``, eras.Era.adjust_lock: 2.6.33 and 2.6.36-3.0-rc1 only
for an insert, an importer or a moved start, 3.0 only for an importer or a moved start,
2.6.34 never, 3.7+ always) and, in the eras with an interval tree, around taking the
VMA's AVCs out of their trees and putting them back with the new range
(``anon_vma_interval_tree_pre/post_update_vma``), as 3.7+ does.  In 2.6.34's own-lock era
the chain a VMA imports is linked outside "the" anon_vma lock (each anon_vma_clone link
takes its own anon_vma's lock), with no flag on the importer: ``VM_LOCK_RMAP``, which the
anon_vma_chain patch as posted set there for ``vma_address`` to skip, was taken out again
by fc148a5f7e05 ("mm: remove VM_LOCK_RMAP code") before any release (linux-2.6.34
mm/mmap.c ``vma_adjust`` and mm/rmap.c ``vma_address`` have none; see the kernel-sources
page).  Linking allocates, so a split or an import can fail with ENOMEM; each unwinds as
the kernel's callers do and the model stays consistent.

Neighbours are found by address (``vma_next_c``, ``find_vma_prev``), as the kernel's
address-ordered list gives them: the model's ``do_mmap`` appends to the mm's list in
creation order, and a split piece goes on the list right beside the VMA it came from.
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .anon_vma import anon_vma_lock_c, anon_vma_unlock_c
from .anon_vma_chain import anon_vma_clone_c, anon_vma_link_c, unlink_anon_vmas_c
from .ctx import avc_word as _avc
from .ctx import mm_word as _mm
from .ctx import raise_status
from .ctx import vma_word as _vma
from .eras import ADJUST_ALWAYS, ADJUST_INSERT, ADJUST_NONE
from .interval_tree import anon_vma_interval_tree_insert_c, anon_vma_interval_tree_remove_c
from .layout import PTE_PRESENT, PTE_WRITE, VM_READ, VM_WRITE
from .locking.cached_compile import cached_njit
from .locks import SITE, no_abort_begin, no_abort_end
from .model import Model
from .pgtable import pmd_addr_end, pte_lock_c, pte_offset_map_c, pte_unlock_c
from .slab import kmem_cache_alloc_one, kmem_cache_free_one

S_ADJUST = SITE["vma_adjust"]
OK, STOPPED = G.OK, G.STOPPED
# Everything a VMA's vm_flags may hold in the model.
VM_PROT_MASK = VM_READ | VM_WRITE | 4


# ---------------------------------------------------------------------------- the VMA list


@cached_njit(llvm_inline=True, python=True)
def vma_next_c(w32: np.ndarray, g: np.ndarray, vma: int) -> int:
    """The VMA of vma's mm that follows it in address order (the kernel's vma->vm_next), or
    -1.  Expects the mm's owner."""
    end = w32[_vma(g, vma, G.VMA_END)]
    best, best_start = -1, 1 << 30
    v = w32[_mm(g, w32[_vma(g, vma, G.VMA_MM)], G.MM_VMA_HEAD)]
    while v >= 0:
        s = w32[_vma(g, v, G.VMA_START)]
        if v != vma and end <= s < best_start:
            best, best_start = v, s
        v = w32[_vma(g, v, G.VMA_NEXT)]
    return best


@cached_njit
def vma_link_c(w32: np.ndarray, g: np.ndarray, mm: int, vma: int, anchor: int, below: int) -> None:
    """__vma_link_list: put vma on mm's list right before (``below``) or after ``anchor``,
    the VMA it was split from.  Expects the mm's owner."""
    prev, v = -1, w32[_mm(g, mm, G.MM_VMA_HEAD)]
    while v >= 0 and v != anchor:
        prev, v = v, w32[_vma(g, v, G.VMA_NEXT)]
    if not below:
        prev, v = anchor, w32[_vma(g, anchor, G.VMA_NEXT)]
    w32[_vma(g, vma, G.VMA_NEXT)] = v
    if prev < 0:
        w32[_mm(g, mm, G.MM_VMA_HEAD)] = vma
    else:
        w32[_vma(g, prev, G.VMA_NEXT)] = vma
    w32[_mm(g, mm, G.MM_NR_VMAS)] += 1


@cached_njit
def vma_unlink_list_c(w32: np.ndarray, g: np.ndarray, mm: int, vma: int) -> None:
    """__vma_unlink: take vma off mm's list."""
    prev, v = -1, w32[_mm(g, mm, G.MM_VMA_HEAD)]
    while v >= 0 and v != vma:
        prev, v = v, w32[_vma(g, v, G.VMA_NEXT)]
    if v < 0:
        return
    nxt = w32[_vma(g, vma, G.VMA_NEXT)]
    if prev < 0:
        w32[_mm(g, mm, G.MM_VMA_HEAD)] = nxt
    else:
        w32[_vma(g, prev, G.VMA_NEXT)] = nxt
    w32[_mm(g, mm, G.MM_NR_VMAS)] -= 1


@cached_njit(llvm_inline=True)
def _tree_update(w32: np.ndarray, g: np.ndarray, vma: int, insert: bool) -> None:
    """anon_vma_interval_tree_pre_update_vma (remove) / _post_update_vma (insert): every
    AVC of vma out of, or back into, its anon_vma's tree.  Expects held: the root lock."""
    a = w32[_vma(g, vma, G.VMA_AVC_HEAD)]
    while a >= 0:
        av = w32[_avc(g, a, G.AVC_ANON_VMA)]
        if insert:
            anon_vma_interval_tree_insert_c(w32, g, av, a)
        else:
            anon_vma_interval_tree_remove_c(w32, g, av, a)
        a = w32[_avc(g, a, G.AVC_SAME_VMA_NEXT)]


# ---------------------------------------------------------------------------- vma_adjust


@cached_njit(llvm_inline=True)
def vma_adjust_lock_target_c(w32: np.ndarray, g: np.ndarray, vma: int, nxt: int, start: int,
                             insert: int, importer: int, adjust_next: int) -> int:
    """The anon_vma whose lock vma_adjust takes around the range change, or -1 for none
    (eras.Era.adjust_lock, mm/mmap.c ``vma_adjust`` of each tree):

    * 2.6.33, 2.6.36 .. 3.0-rc1: ``if (vma->anon_vma && (insert || importer || start !=
      vma->vm_start))``; 3.0.1: the same without ``insert``;
    * 2.6.34-rc1, 2.6.34: none (the range changes under mmap_sem alone);
    * 3.7+: always ``vma->anon_vma``, or ``next->anon_vma`` when vma has none and next's
      start moves (the interval tree's pre/post update)."""
    mode = g[G.ADJUST_LOCK]
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    if mode == ADJUST_ALWAYS:
        if av < 0 and adjust_next:
            av = w32[_vma(g, nxt, G.VMA_ANON_VMA)]
        return av
    if mode == ADJUST_NONE or av < 0:
        return -1
    moved = start != w32[_vma(g, vma, G.VMA_START)]
    if importer >= 0 or moved or (mode == ADJUST_INSERT and insert >= 0):
        return av
    return -1



@cached_njit(llvm_inline=True)
def _vma_adjust_neighbours(w32: np.ndarray, g: np.ndarray, sc: np.ndarray, vma: int, end: int,
                           insert: int) -> tuple[int, int, int, int, int]:
    """vma_adjust's ``if (next && !insert)``: what vma's new end does to the VMAs after it.
    Those it covers whole are to be removed (their indices in sc[0:nremove]); the next one,
    covered in part, starts ``adjust_next`` later; when vma shrinks, the next one grows
    down over the freed part (adjust_next negative).  The VMA that takes over pages is the
    importer, the one it takes them from the exporter (-1: none).

    (nxt, nremove, adjust_next, importer, exporter), nxt the first VMA after the removed
    ones (-1: none).  Changes nothing in the model; expects the mm's owner."""
    nxt = vma_next_c(w32, g, vma)
    nremove = 0
    adjust_next = 0
    importer = exporter = -1
    if nxt >= 0 and insert < 0:
        n = nxt
        while n >= 0 and end >= w32[_vma(g, n, G.VMA_END)]:  # covered whole: removed
            sc[nremove] = n
            nremove += 1
            n = vma_next_c(w32, g, n)
        if nremove:
            exporter, importer = nxt, vma
            nxt = n
        if nxt >= 0 and end > w32[_vma(g, nxt, G.VMA_START)]:  # covered in part: shifted up
            adjust_next = end - w32[_vma(g, nxt, G.VMA_START)]
            if exporter < 0:
                exporter, importer = nxt, vma
        elif nremove == 0 and nxt >= 0 and end < w32[_vma(g, vma, G.VMA_END)] \
                and w32[_vma(g, nxt, G.VMA_START)] == w32[_vma(g, vma, G.VMA_END)]:
            adjust_next = end - w32[_vma(g, vma, G.VMA_END)]  # negative: next grows down
            exporter, importer = vma, nxt
    return nxt, nremove, adjust_next, importer, exporter


@cached_njit(llvm_inline=True)
def _vma_adjust_import(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       sc: np.ndarray, nremove: int, importer: int, exporter: int) -> int:
    """vma_adjust's ``if (exporter && exporter->anon_vma && !importer->anon_vma)``: the
    importer takes the exporter's anon_vma and clones its chain (2.6.33: joins its list),
    with the scratch past sc[0:nremove].  OK, or the failure's status with the importer
    unlinked again.

    Takes and releases: the locks anon_vma_clone (anon_vma_link) and, after a failure,
    unlink_anon_vmas take."""
    # Easily overlooked: a VMA that takes over another's pages needs its anon_vma.
    if exporter >= 0 and w32[_vma(g, exporter, G.VMA_ANON_VMA)] >= 0 \
            and w32[_vma(g, importer, G.VMA_ANON_VMA)] < 0:
        w32[_vma(g, importer, G.VMA_ANON_VMA)] = w32[_vma(g, exporter, G.VMA_ANON_VMA)]
        if g[G.CHAIN]:
            st = anon_vma_clone_c(words, w32, g, held, sc[nremove:], importer, exporter)
        else:  # 2.6.33: __anon_vma_link(importer), the VMA itself on the list
            st = anon_vma_link_c(words, w32, g, held, sc[nremove:], importer)
        if st < 0:
            w32[_vma(g, importer, G.VMA_ANON_VMA)] = -1
            no_abort_begin(g)  # an unwind: the abort cannot cut it short
            unlink_anon_vmas_c(words, w32, g, held, sc[nremove:], importer)
            no_abort_end(g)
            return st
    return OK


@cached_njit(llvm_inline=True)
def _vma_adjust_remove(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       sc: np.ndarray, nremove: int) -> int:
    """vma_adjust's ``if (remove_next)``: the VMAs vma covered whole (sc[0:nremove]), already
    off the mm's list, leave the reverse map (anon_vma_merge: unlink_anon_vmas) and are
    freed, as an unwind the run's abort cannot cut short.  OK or the first failure's status.

    Takes and releases: the locks unlink_anon_vmas takes."""
    # The VMAs covered whole are off the mm's list now: their unlink and free must finish
    # (a removed VMA left on an anon_vma's list would be reachable from no mm).
    no_abort_begin(g)
    st = OK
    for i in range(nremove):
        gone = sc[i]
        if w32[_vma(g, gone, G.VMA_ANON_VMA)] >= 0 or w32[_vma(g, gone, G.VMA_AVC_HEAD)] >= 0:
            st = unlink_anon_vmas_c(words, w32, g, held, sc[nremove:], gone)  # anon_vma_merge
            if st < 0:
                break
        st = kmem_cache_free_one(words, w32, g, held, G.K_VMA, gone, sc[nremove:])
        if st < 0:
            break
    no_abort_end(g)
    return st


@cached_njit
def vma_adjust_c(
        words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
        vma: int, start: int, end: int, pgoff: int, insert: int, below: int) -> int:
    """mm/mmap.c ``vma_adjust``: give vma the range [start, end) at ``pgoff``; link
    ``insert`` (a split piece) on the mm's list; when vma grows over its next neighbours,
    remove the ones it covers whole (anon_vma_merge) and shift the start of one it covers in
    part; when it shrinks with ``insert`` < 0, its next neighbour grows down over the freed
    part (mprotect's case 4).  OK or a negative status with nothing changed (an ENOMEM
    cloning the chain of a VMA that imports pages and had no anon_vma).

    Its parts, in the kernel's order: the neighbours vma's new end covers
    (_vma_adjust_neighbours), the importer's chain (_vma_adjust_import), the range change
    under the anon_vma lock (here), the covered VMAs freed (_vma_adjust_remove).

    Takes and releases: the anon_vma lock of vma (or of the neighbour whose range moves),
    the locks anon_vma_clone and unlink_anon_vmas take."""
    mm = w32[_vma(g, vma, G.VMA_MM)]
    nxt, nremove, adjust_next, importer, exporter = _vma_adjust_neighbours(w32, g, sc, vma, end, insert)
    st = _vma_adjust_import(words, w32, g, held, sc, nremove, importer, exporter)
    if st < 0:
        return st
    av = vma_adjust_lock_target_c(w32, g, vma, nxt, start, insert, importer, adjust_next)
    t = 0
    w = -1
    if av >= 0:
        w, t = anon_vma_lock_c(words, w32, g, held, av, S_ADJUST)
        if t < 0:
            return STOPPED
        if g[G.TREE]:
            _tree_update(w32, g, vma, False)
            if adjust_next:
                _tree_update(w32, g, nxt, False)
    w32[_vma(g, vma, G.VMA_START)] = start
    w32[_vma(g, vma, G.VMA_END)] = end
    w32[_vma(g, vma, G.VMA_PGOFF)] = pgoff
    if adjust_next:
        w32[_vma(g, nxt, G.VMA_START)] += adjust_next
        w32[_vma(g, nxt, G.VMA_PGOFF)] += adjust_next
    if av >= 0 and g[G.TREE]:
        _tree_update(w32, g, vma, True)
        if adjust_next:
            _tree_update(w32, g, nxt, True)
    if insert >= 0:
        vma_link_c(w32, g, mm, insert, vma, below)
    for i in range(nremove):
        vma_unlink_list_c(w32, g, mm, sc[i])
    if av >= 0:
        anon_vma_unlock_c(words, g, held, w, S_ADJUST, t)
    return _vma_adjust_remove(words, w32, g, held, sc, nremove)


def vma_adjust(m: Model, vma: int, start: int, end: int, pgoff: int) -> None:
    """vma_adjust without a piece to insert (compiled: vma_adjust_c).  Raises OutOfMemory
    with nothing changed."""
    st = vma_adjust_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma, start, end, pgoff, -1, 0)
    if st < 0:
        raise_status(st)


# ---------------------------------------------------------------------------- split_vma


@cached_njit
def split_vma_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, sc: np.ndarray,
                vma: int, addr: int, new_below: int) -> int:
    """__split_vma: cut vma at ``addr``; the new piece is the part below addr
    (``new_below``) or above it, a copy of vma with the same anon_vma and its own chain
    (anon_vma_clone).  The new VMA, or a negative status with nothing changed (the new
    piece freed and unlinked, as the kernel's out_free_* paths do)."""
    new = kmem_cache_alloc_one(words, w32, g, held, G.K_VMA, sc)
    if new < 0:
        return new
    for f in (G.VMA_START, G.VMA_END, G.VMA_PGOFF, G.VMA_MM, G.VMA_ANON_VMA, G.VMA_FLAGS):
        w32[_vma(g, new, f)] = w32[_vma(g, vma, f)]
    for f in (G.VMA_AVC_HEAD, G.VMA_NEXT, G.VMA_AV_PREV, G.VMA_AV_NEXT):
        w32[_vma(g, new, f)] = -1
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    pgoff = w32[_vma(g, vma, G.VMA_PGOFF)]
    if new_below:
        w32[_vma(g, new, G.VMA_END)] = addr
    else:
        w32[_vma(g, new, G.VMA_START)] = addr
        w32[_vma(g, new, G.VMA_PGOFF)] = pgoff + (addr - start)
    if g[G.CHAIN]:
        st = anon_vma_clone_c(words, w32, g, held, sc, new, vma)
    elif w32[_vma(g, new, G.VMA_ANON_VMA)] >= 0:  # 2.6.33: anon_vma_link, the VMA on the list
        st = anon_vma_link_c(words, w32, g, held, sc, new)
    else:
        st = OK
    if st < 0:
        w32[_vma(g, new, G.VMA_ANON_VMA)] = -1
        _split_vma_unwind(words, w32, g, held, sc, new)
        return st
    if new_below:
        st = vma_adjust_c(words, w32, g, held, sc, vma, addr, end, pgoff + (addr - start), new, 1)
    else:
        st = vma_adjust_c(words, w32, g, held, sc, vma, start, addr, pgoff, new, 0)
    if st < 0:
        _split_vma_unwind(words, w32, g, held, sc, new)
        return st
    return new


@cached_njit(llvm_inline=True)
def _split_vma_unwind(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                      sc: np.ndarray, new: int) -> None:
    """__split_vma's out_free_*: the new piece unlinked and freed, as an unwind the run's
    abort cannot cut short."""
    no_abort_begin(g)
    unlink_anon_vmas_c(words, w32, g, held, sc, new)
    kmem_cache_free_one(words, w32, g, held, G.K_VMA, new, sc)
    no_abort_end(g)


def split_vma(m: Model, vma: int, addr: int, new_below: bool) -> int:
    """split_vma (compiled: split_vma_c): the new piece.  Raises OutOfMemory with nothing
    changed."""
    start, end = int(m.vma["vm_start"][vma]), int(m.vma["vm_end"][vma])
    if not start < addr < end:
        raise ValueError(f"split address {addr} not inside vma {vma} [{start}, {end})")
    new = split_vma_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma, addr, int(new_below))
    if new < 0:
        raise_status(new)
    return int(new)


# ---------------------------------------------------------------------------- vma_merge


def _is_mergeable_anon_vma(m: Model, av1: int, av2: int, vma: int) -> bool:
    """is_mergeable_anon_vma: the same anon_vma, or one side has none, and from 3.0
    (eras.Era.merge_singular) only when vma (if given) has a single AVC
    (``list_is_singular(&vma->anon_vma_chain)``); before 3.0 the plain ``!a1 || !a2 || a1 ==
    a2``.  Both trust "same anon_vma" to mean "same chain"."""
    if (av1 < 0 or av2 < 0) and (not m.era.merge_singular or vma < 0 or _chain_len(m, vma) <= 1):
        return True
    return av1 == av2


def _chain_len(m: Model, vma: int) -> int:
    n, a = 0, int(m.vma["avc_head"][vma])
    nxt = m.avc["same_vma_next"]
    while a >= 0 and n < 2:
        n += 1
        a = int(nxt[a])
    return n


def _vma_pages(m: Model, v: int) -> int:
    return int(m.vma["vm_end"][v]) - int(m.vma["vm_start"][v])


def _flags(m: Model, v: int) -> int:
    return int(m.vma["vm_flags"][v]) & VM_PROT_MASK


def can_vma_merge_before(m: Model, vma: int, flags: int, av: int, pgoff: int) -> bool:
    return (_flags(m, vma) == flags and _is_mergeable_anon_vma(m, av, int(m.vma["anon_vma"][vma]), vma)
            and int(m.vma["vm_pgoff"][vma]) == pgoff)


def can_vma_merge_after(m: Model, vma: int, flags: int, av: int, pgoff: int) -> bool:
    return (_flags(m, vma) == flags and _is_mergeable_anon_vma(m, av, int(m.vma["anon_vma"][vma]), vma)
            and int(m.vma["vm_pgoff"][vma]) + _vma_pages(m, vma) == pgoff)


def vma_merge(m: Model, mm: int, prev: int, addr: int, end: int, flags: int, av: int, pgoff: int) -> int:
    """vma_merge: can [addr, end) with these flags, anon_vma and pgoff join prev, the next
    VMA, or both?  Returns the VMA that now holds the range, or -1.  The case analysis
    runs here (the mm's owner, mmap_sem); the change under locks is vma_adjust_c's."""
    rec = m.vma
    nxt = vma_next(m, prev) if prev >= 0 else _first_vma(m, mm)
    area = nxt
    if nxt >= 0 and int(rec["vm_end"][nxt]) == end:  # cases 6, 7, 8
        nxt = vma_next(m, nxt)
    pglen = end - addr
    if prev >= 0 and int(rec["vm_end"][prev]) == addr and can_vma_merge_after(m, prev, flags, av, pgoff):
        if (nxt >= 0 and end == int(rec["vm_start"][nxt])
                and can_vma_merge_before(m, nxt, flags, av, pgoff + pglen)
                and _is_mergeable_anon_vma(m, int(rec["anon_vma"][prev]), int(rec["anon_vma"][nxt]), -1)):
            vma_adjust(m, prev, int(rec["vm_start"][prev]), int(rec["vm_end"][nxt]),
                       int(rec["vm_pgoff"][prev]))
        else:  # cases 2, 5, 7
            vma_adjust(m, prev, int(rec["vm_start"][prev]), end, int(rec["vm_pgoff"][prev]))
        return prev
    if (nxt >= 0 and end == int(rec["vm_start"][nxt])
            and can_vma_merge_before(m, nxt, flags, av, pgoff + pglen)):
        if prev >= 0 and addr < int(rec["vm_end"][prev]):  # case 4
            vma_adjust(m, prev, int(rec["vm_start"][prev]), addr, int(rec["vm_pgoff"][prev]))
            return nxt
        # cases 3, 8: area grows over the range
        vma_adjust(m, area, addr, int(rec["vm_end"][nxt]), int(rec["vm_pgoff"][nxt]) - pglen)
        return area
    return -1


# ---------------------------------------------------------------------------- mprotect


@cached_njit
def change_protection_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                        mm: int, start: int, end: int) -> int:
    """change_protection for a range losing VM_WRITE: write-protect its present PTEs (the
    next write faults, do_wp_page).  One PTE page at a time (change_pte_range), none
    skipped; takes and releases each PTE page's lock."""
    a = start
    while a < end:
        nxt = pmd_addr_end(a, end)
        e0 = pte_offset_map_c(w32, g, mm, a)
        if e0 < 0:
            a = nxt
            continue
        t = pte_lock_c(words, g, held, e0, S_ADJUST)
        if t < 0:
            return STOPPED
        for i in range(nxt - a):
            e = e0 + 2 * i
            if w32[e + 1] & PTE_PRESENT:
                w32[e + 1] &= ~PTE_WRITE
        pte_unlock_c(words, g, held, e0, S_ADJUST, t)
        a = nxt
    return OK


def _by_address(m: Model, mm: int) -> list[int]:
    out, v = [], int(m.mm["vma_head"][mm])
    nxt = m.vma["vm_next"]
    while v >= 0:
        out.append(v)
        v = int(nxt[v])
    return sorted(out, key=lambda x: int(m.vma["vm_start"][x]))


def vma_next(m: Model, vma: int) -> int:
    """vma->vm_next: the next VMA of its mm by address, or -1."""
    return int(vma_next_c(m.w32, m.g, vma))


def _first_vma(m: Model, mm: int) -> int:
    vmas = _by_address(m, mm)
    return vmas[0] if vmas else -1


def _find_vma_prev(m: Model, mm: int, addr: int) -> tuple[int, int]:
    """find_vma_prev: (the first VMA ending above addr, the one before it), -1 for none."""
    prev = -1
    for v in _by_address(m, mm):
        if int(m.vma["vm_end"][v]) > addr:
            return v, prev
        prev = v
    return -1, prev


def mprotect_fixup(m: Model, vma: int, prev: int, start: int, end: int, flags: int) -> int:
    """Give [start, end) of vma the protection ``flags``: merge with a neighbour when
    that makes them compatible again, else split the range out.  Returns the VMA that now
    holds the range.  Raises OutOfMemory (the mm consistent, the protection unchanged)."""
    rec = m.vma
    mm = int(rec["vm_mm"][vma])
    old = _flags(m, vma)
    if flags == old:
        return vma
    pgoff = int(rec["vm_pgoff"][vma]) + (start - int(rec["vm_start"][vma]))
    merged = vma_merge(m, mm, prev, start, end, flags, int(rec["anon_vma"][vma]), pgoff)
    if merged >= 0:
        vma = merged
    else:
        if start != int(rec["vm_start"][vma]):
            split_vma(m, vma, start, new_below=True)
        if end != int(rec["vm_end"][vma]):
            split_vma(m, vma, end, new_below=False)
    rec["vm_flags"][vma] = (int(rec["vm_flags"][vma]) & ~VM_PROT_MASK) | flags
    if old & VM_WRITE and not flags & VM_WRITE:
        st = change_protection_c(m.words, m.w32, m.g, m.locks.held, mm, start, end)
        if st < 0:
            raise_status(st)
    return vma


def do_mprotect(m: Model, mm: int, start: int, npages: int, flags: int) -> None:
    """mprotect(2) of the page range [start, start + npages) of mm to ``flags``
    (VM_READ | VM_WRITE | VM_EXEC bits): mprotect_fixup on each VMA it overlaps.  The range
    must be mapped.  Raises OutOfMemory part-way, as the kernel's mprotect returns -ENOMEM
    with the earlier VMAs already changed (the model consistent)."""
    end = start + npages
    if npages <= 0:
        raise ValueError("mprotect of an empty range")
    vma, prev = _find_vma_prev(m, mm, start)
    rec = m.vma
    if vma < 0 or int(rec["vm_start"][vma]) > start:
        raise ValueError(f"mprotect: page {start} of mm {mm} is not mapped")
    if start > int(rec["vm_start"][vma]):
        prev = vma
    nstart = start
    while True:
        tmp = min(int(rec["vm_end"][vma]), end)
        vma = mprotect_fixup(m, vma, prev, nstart, tmp, flags)
        nstart = max(tmp, int(rec["vm_end"][vma]))
        if nstart >= end:
            return
        prev = vma
        vma = vma_next(m, prev)
        if vma < 0 or int(rec["vm_start"][vma]) != nstart:
            raise ValueError(f"mprotect: page {nstart} of mm {mm} is not mapped")

"""Linking VMAs to anon_vmas: anon_vma_prepare, anon_vma_link / anon_vma_fork with
anon_vma_clone, unlink_anon_vmas, and anon_vma_chain_link between them.

Kernel functions held here, by the file that holds them in the kernel:

  mm/rmap.c   anon_vma_prepare (6.0: __anon_vma_prepare), anon_vma_chain_link,
              anon_vma_clone, anon_vma_fork, unlink_anon_vmas; 2.6.33's anon_vma_link and
              anon_vma_unlink (anon_vma_unlink_node_c, which 2.6.34+ calls per AVC)
  mm/mmap.c   find_mergeable_anon_vma, reusable_anon_vma, anon_vma_compatible: the
              neighbour's anon_vma that anon_vma_prepare shares

The anon_vma they link (its lock, its list, allocation, references and the 3.19/6.0 reuse
counters) is anon_vma.py's.

Allocation happens before the lock is taken, as in the kernel (GFP_KERNEL outside the
spinlock): the list nodes are inside the records, so nothing is allocated under an
anon_vma lock.

2.6.33 (era.chain False)                 2.6.34+ (era.chain True)
---------------------------------------  ---------------------------------------------
anon_vma_prepare: VMA on the list         anon_vma_prepare: one AVC links VMA and anon_vma
anon_vma_link: child VMA on parent's      anon_vma_fork: anon_vma_clone (an AVC per anon_vma
  list, same anon_vma                       of the parent's chain), then the child's own
anon_vma_unlink                           unlink_anon_vmas
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .anon_vma import (
    anon_vma_alloc_c,
    anon_vma_clone_reuse_locked_c,
    anon_vma_emptied_locked_c,
    anon_vma_fork_counts_locked_c,
    anon_vma_free_c,
    anon_vma_list_add_tail_locked_c,
    anon_vma_list_del_locked_c,
    anon_vma_lock_c,
    anon_vma_prepare_counts_locked_c,
    anon_vma_unlock_c,
    get_anon_vma_c,
    lock_anon_vma_root,
    unlock_anon_vma_root,
    vma_anon_vma_put_c,
    vma_anon_vma_put_locked_c,
)
from .ctx import av_word as _av
from .ctx import avc_word as _avc
from .ctx import mm_word as _mm
from .ctx import raise_status
from .ctx import vma_word as _vma
from .interval_tree import anon_vma_interval_tree_insert_c
from .locking.cached_compile import cached_njit
from .locks import SITE, no_abort_begin, no_abort_end
from .model import Model
from .slab import kmem_cache_alloc_c, kmem_cache_alloc_one, kmem_cache_free_c, kmem_cache_free_one

S_PREPARE, S_FORK, S_UNLINK = SITE["anon_vma_prepare"], SITE["anon_vma_fork"], SITE["unlink_anon_vmas"]
OK, STOPPED = G.OK, G.STOPPED


# ---------------------------------------------------------------------------- prepare, fork, unlink


@cached_njit(llvm_inline=True)
def _anon_vma_unused(w32: np.ndarray, g: np.ndarray, av: int) -> bool:
    """av is to be released (anon_vma_free_c): its list is empty and, before 3.0, no
    other anon_vma holds a reference on it.  3.0+ (Era.self_ref): its list is empty, so
    its own reference is put (``list_empty``/``RB_EMPTY_ROOT`` in unlink_anon_vmas)."""
    if g[G.SELF_REF]:
        return w32[_av(g, av, G.AV_NR_MEMBERS)] == 0
    return w32[_av(g, av, G.AV_NR_MEMBERS)] == 0 and w32[_av(g, av, G.AV_REFCOUNT)] == 0


@cached_njit
def anon_vma_chain_link_locked_c(w32: np.ndarray, g: np.ndarray, vma: int, avc: int, av: int) -> None:
    """anon_vma_chain_link: link AVC ``avc`` between vma and av: head of vma's same_vma
    list (newest first, as ``list_add``), tail of av's list (``list_add_tail`` of its
    same_anon_vma node).  Expects held: av's lock (and the mm's mmap_sem)."""
    w32[_avc(g, avc, G.AVC_VMA)] = vma
    w32[_avc(g, avc, G.AVC_ANON_VMA)] = av
    w32[_avc(g, avc, G.AVC_SAME_VMA_NEXT)] = w32[_vma(g, vma, G.VMA_AVC_HEAD)]
    w32[_vma(g, vma, G.VMA_AVC_HEAD)] = avc
    anon_vma_list_add_tail_locked_c(w32, g, av, avc)
    if g[G.TREE]:  # 3.7+: anon_vma_interval_tree_insert
        anon_vma_interval_tree_insert_c(w32, g, av, avc)


def anon_vma_chain_link_locked(m: Model, vma: int, avc: int, av: int) -> None:
    """Link AVC ``avc`` between vma and av.  Expects held: av's lock."""
    anon_vma_chain_link_locked_c(m.w32, m.g, vma, avc, av)


@cached_njit
def anon_vma_prepare_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       sc: np.ndarray, vma: int) -> int:
    """Give vma an anon_vma on its first anonymous fault: it, or a negative status with
    nothing changed.  Takes and releases the new anon_vma's lock."""
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    if av >= 0:
        return av
    allocated = False
    av = find_mergeable_anon_vma_c(w32, g, vma)
    if av < 0:
        av = anon_vma_alloc_c(words, w32, g, held, sc, -1)
        if av < 0:
            return av
        allocated = True
    avc = -1
    if g[G.CHAIN]:
        avc = kmem_cache_alloc_one(words, w32, g, held, G.K_AVC, sc)
        if avc < 0:
            if allocated:
                kmem_cache_free_one(words, w32, g, held, G.K_ANON_VMA, av, sc)
            return avc
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_PREPARE)
    if t < 0:  # aborted: what it allocated goes back, as after a failed allocation
        if avc >= 0:
            kmem_cache_free_one(words, w32, g, held, G.K_AVC, avc, sc)
        if allocated:
            kmem_cache_free_one(words, w32, g, held, G.K_ANON_VMA, av, sc)
        return STOPPED
    if g[G.CHAIN]:
        anon_vma_chain_link_locked_c(w32, g, vma, avc, av)
    else:
        anon_vma_list_add_tail_locked_c(w32, g, av, vma)
    w32[_vma(g, vma, G.VMA_ANON_VMA)] = av
    anon_vma_prepare_counts_locked_c(w32, g, av, allocated)
    anon_vma_unlock_c(words, g, held, w, S_PREPARE, t)
    return av


def anon_vma_prepare(m: Model, vma: int) -> int:
    """Give vma an anon_vma on its first anonymous fault; returns it.

    Takes and releases the new anon_vma's lock.  Raises OutOfMemory with nothing changed."""
    av = anon_vma_prepare_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma)
    if av < 0:
        raise_status(av)
    return int(av)


@cached_njit
def anon_vma_link_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                    sc: np.ndarray, vma: int) -> int:
    """2.6.33 fork: the child VMA (already pointing at the parent's anon_vma) joins the tail
    of that one family list.  Takes and releases that anon_vma's lock."""
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    if av < 0:
        return OK
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_FORK)
    if t < 0:
        return STOPPED
    anon_vma_list_add_tail_locked_c(w32, g, av, vma)
    anon_vma_unlock_c(words, g, held, w, S_FORK, t)
    return OK


def anon_vma_link(m: Model, vma: int) -> None:
    """2.6.33 fork of one VMA (compiled: anon_vma_link_c).  Raises Stopped if the run is
    aborted while it waits for the lock."""
    st = anon_vma_link_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma)
    if st < 0:
        raise_status(st)


@cached_njit
def anon_vma_clone_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                     sc: np.ndarray, dst: int, src: int) -> int:
    """Give dst one AVC for every anon_vma on src's chain, oldest first, each linked under
    that anon_vma's lock (3.0: the root's, taken once for the pass).  A failed allocation
    returns before linking anything; linking itself cannot fail (the list nodes are in
    the AVCs)."""
    n = 0
    a = w32[_vma(g, src, G.VMA_AVC_HEAD)]
    while a >= 0:
        n += 1
        a = w32[_avc(g, a, G.AVC_SAME_VMA_NEXT)]
    if n == 0:
        return OK
    # sc[0:n]: the new AVCs; sc[n:2n]: the chain, newest first.
    chain = sc[n : 2 * n]
    a = w32[_vma(g, src, G.VMA_AVC_HEAD)]
    for i in range(n):
        chain[i] = w32[_avc(g, a, G.AVC_ANON_VMA)]
        a = w32[_avc(g, a, G.AVC_SAME_VMA_NEXT)]
    if g[G.CLONE_NOWAIT]:
        return anon_vma_clone_nowait_c(words, w32, g, held, sc, dst, src, n)
    st = kmem_cache_alloc_c(words, w32, g, held, G.K_AVC, n, sc)
    if st < 0:
        return st
    once = g[G.LOCK_ONCE] != 0
    hw, ht = -1, 0  # the lock word held across AVCs (3.0: lock_anon_vma_root), its time
    for i in range(n):
        av = chain[n - 1 - i]
        hw, ht = lock_anon_vma_root(words, w32, g, held, hw, ht, av, S_FORK)
        if ht < 0:  # aborted: the AVCs not linked yet go back (the caller unlinks the rest)
            kmem_cache_free_c(words, w32, g, held, G.K_AVC, sc[i:n], n - i)
            return STOPPED
        anon_vma_chain_link_locked_c(w32, g, dst, sc[i], av)
        anon_vma_clone_reuse_locked_c(w32, g, dst, src, av, i == n - 1)
        if not once:  # before 3.0: each anon_vma's lock around its own AVC
            unlock_anon_vma_root(words, g, held, hw, ht, S_FORK)
            hw = -1
    unlock_anon_vma_root(words, g, held, hw, ht, S_FORK)
    return OK


@cached_njit(llvm_inline=True)
def anon_vma_clone_nowait_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                            sc: np.ndarray, dst: int, src: int, n: int) -> int:
    """3.0+ ``anon_vma_clone`` (dd34739c03f2; linux-3.0.1 and 3.9.6 mm/rmap.c, 6.0.1 with
    the reuse test), for src's chain of n anon_vmas in sc[n:2n] (newest first)::

        list_for_each_entry_reverse(pavc, &src->anon_vma_chain, same_vma) {
                avc = anon_vma_chain_alloc(GFP_NOWAIT | __GFP_NOWARN);
                if (unlikely(!avc)) {
                        unlock_anon_vma_root(root);
                        root = NULL;
                        avc = anon_vma_chain_alloc(GFP_KERNEL);
                        if (!avc)
                                goto enomem_failure;
                }
                root = lock_anon_vma_root(root, pavc->anon_vma);
                anon_vma_chain_link(dst, avc, pavc->anon_vma);
        }
        unlock_anon_vma_root(root);

    Each AVC after the first is allocated inside the root lock (the slab lock nested in
    it); a failed allocation there (the model's GFP_NOWAIT: the pool empty or an injected
    failure) drops the root lock, allocates again outside it, and takes the lock again at
    the next link: one more acquisition at lockstat site anon_vma_fork.  A second failure
    returns ENOMEM with the AVCs linked so far left on dst's chain: the caller unlinks them
    (the kernel's enomem_failure: unlink_anon_vmas(dst)), as it does after STOPPED."""
    chain = sc[n : 2 * n]
    hw, ht = -1, 0
    for i in range(n):
        st = kmem_cache_alloc_c(words, w32, g, held, G.K_AVC, 1, sc[i : i + 1])
        if st < 0:
            unlock_anon_vma_root(words, g, held, hw, ht, S_FORK)
            hw = -1
            st = kmem_cache_alloc_c(words, w32, g, held, G.K_AVC, 1, sc[i : i + 1])
            if st < 0:
                return st
        av = chain[n - 1 - i]
        hw, ht = lock_anon_vma_root(words, w32, g, held, hw, ht, av, S_FORK)
        if ht < 0:  # aborted, nothing held: the AVC not linked goes back
            kmem_cache_free_c(words, w32, g, held, G.K_AVC, sc[i : i + 1], 1)
            return STOPPED
        anon_vma_chain_link_locked_c(w32, g, dst, sc[i], av)
        anon_vma_clone_reuse_locked_c(w32, g, dst, src, av, i == n - 1)
    unlock_anon_vma_root(words, g, held, hw, ht, S_FORK)
    return OK


def anon_vma_clone(m: Model, dst: int, src: int) -> None:
    """Give dst one AVC for every anon_vma on src's chain (compiled: anon_vma_clone_c)."""
    st = anon_vma_clone_c(m.words, m.w32, m.g, m.locks.held, m.scratch, dst, src)
    if st < 0:
        raise_status(st)


@cached_njit
def anon_vma_fork_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                    sc: np.ndarray, vma: int, pvma: int) -> int:
    """2.6.34 fork of one VMA: clone the parent's chain, then a new anon_vma of the child's
    own, which becomes ``vma->anon_vma``.  On failure, unwinds what it linked (as the
    kernel's ``out_error`` does with unlink_anon_vmas) and returns the status."""
    pav = w32[_vma(g, pvma, G.VMA_ANON_VMA)]
    w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1
    w32[_vma(g, vma, G.VMA_AVC_HEAD)] = -1
    if pav < 0:
        return OK
    st = anon_vma_clone_c(words, w32, g, held, sc, vma, pvma)
    if st < 0:
        w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1  # a reused one was not counted yet
        return _anon_vma_fork_unwind(words, w32, g, held, sc, vma, st)
    if w32[_vma(g, vma, G.VMA_ANON_VMA)] >= 0:  # 3.19+: an anon_vma of the chain was reused
        return OK
    av = anon_vma_alloc_c(words, w32, g, held, sc, pav)
    if av < 0:
        return _anon_vma_fork_unwind(words, w32, g, held, sc, vma, av)
    avc = kmem_cache_alloc_one(words, w32, g, held, G.K_AVC, sc)
    if avc < 0:
        kmem_cache_free_one(words, w32, g, held, G.K_ANON_VMA, av, sc)
        return _anon_vma_fork_unwind(words, w32, g, held, sc, vma, avc)
    if g[G.LOCK_ROOT]:
        get_anon_vma_c(w32, g, w32[_av(g, av, G.AV_ROOT)])  # get_anon_vma(anon_vma->root)
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_FORK)
    if t < 0:
        # Aborted at the last lock (3.0+: the root's again, after the clone): the AVC and
        # the anon_vma go back, the latter with the root reference just taken
        # (out_error_free_anon_vma: put_anon_vma), then the clone is unlinked.
        no_abort_begin(g)
        kmem_cache_free_one(words, w32, g, held, G.K_AVC, avc, sc)
        anon_vma_free_c(words, w32, g, held, sc, av)
        no_abort_end(g)
        return _anon_vma_fork_unwind(words, w32, g, held, sc, vma, STOPPED)
    anon_vma_chain_link_locked_c(w32, g, vma, avc, av)
    w32[_vma(g, vma, G.VMA_ANON_VMA)] = av
    anon_vma_fork_counts_locked_c(w32, g, av, pav)
    anon_vma_unlock_c(words, g, held, w, S_FORK, t)
    return OK


@cached_njit(llvm_inline=True)
def _anon_vma_fork_unwind(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                          sc: np.ndarray, vma: int, st: int) -> int:
    """anon_vma_fork's out_error: unlink what the clone linked (unlink_anon_vmas), as an
    unwind the run's abort cannot cut short; returns ``st``."""
    no_abort_begin(g)
    unlink_anon_vmas_c(words, w32, g, held, sc, vma)
    no_abort_end(g)
    return st


def anon_vma_fork(m: Model, vma: int, pvma: int) -> None:
    """2.6.34 fork of one VMA (compiled: anon_vma_fork_c).  Raises OutOfMemory after
    unwinding."""
    st = anon_vma_fork_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma, pvma)
    if st < 0:
        raise_status(st)


@cached_njit
def anon_vma_unlink_node_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                           sc: np.ndarray, av: int, node: int) -> int:
    """Take node (an AVC; in 2.6.33 a VMA) off av's list under av's lock, and free av if
    that left it unused.  Takes and releases the lock guarding av."""
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_UNLINK)
    if t < 0:
        return STOPPED
    anon_vma_list_del_locked_c(w32, g, av, node)
    if w32[_av(g, av, G.AV_NR_MEMBERS)] == 0:
        anon_vma_emptied_locked_c(w32, g, av)
    empty = _anon_vma_unused(w32, g, av)
    anon_vma_unlock_c(words, g, held, w, S_UNLINK, t)
    if empty:  # off its list: the free (and the root reference it drops) must finish
        no_abort_begin(g)
        st = anon_vma_free_c(words, w32, g, held, sc, av)
        no_abort_end(g)
        return st
    return OK


@cached_njit
def unlink_anon_vmas_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       sc: np.ndarray, vma: int) -> int:
    """Unlink every AVC of vma (chain eras) or the VMA itself (2.6.33) from its anon_vma's
    list, each under that anon_vma's lock, freeing anon_vmas that become unused and the
    AVCs.  Leaves vma with no anon_vma."""
    if not g[G.CHAIN]:
        av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
        if av >= 0:
            st = anon_vma_unlink_node_c(words, w32, g, held, sc, av, vma)
            if st < 0:
                return st
        w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1
        return OK
    if g[G.LOCK_ONCE]:
        return unlink_anon_vmas_once_c(words, w32, g, held, sc, vma)
    st = vma_anon_vma_put_c(words, w32, g, held, vma)
    if st < 0:
        return st
    avc = w32[_vma(g, vma, G.VMA_AVC_HEAD)]
    while avc >= 0:
        nxt = w32[_avc(g, avc, G.AVC_SAME_VMA_NEXT)]
        av_of = w32[_avc(g, avc, G.AVC_ANON_VMA)]
        st = anon_vma_unlink_node_c(words, w32, g, held, sc, av_of, avc)
        if st == OK:
            st = kmem_cache_free_one(words, w32, g, held, G.K_AVC, avc, sc)
        if st < 0:
            return st
        w32[_vma(g, vma, G.VMA_AVC_HEAD)] = nxt
        # Restartable: the chain's head follows each AVC freed, and once the
        # VMA's own anon_vma is off the chain the VMA stops naming it, so a pass aborted
        # at the next lock leaves a VMA whose chain and anon_vma agree.
        if w32[_vma(g, vma, G.VMA_ANON_VMA)] == av_of:
            w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1
        avc = nxt
    w32[_vma(g, vma, G.VMA_AVC_HEAD)] = -1
    w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1
    return OK


@cached_njit
def unlink_anon_vmas_once_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                            sc: np.ndarray, vma: int) -> int:
    """3.0's unlink_anon_vmas: one pass over vma's chain (newest first) under the root lock,
    taken once (``lock_anon_vma_root``: again only if the root changes), taking each AVC
    off its anon_vma's list and freeing it, except those whose anon_vma became unused,
    which stay for the second pass; then, outside the lock, each of those anon_vmas is
    freed (put_anon_vma: the root last, as the chain is newest first) with its AVC.

    Takes and releases the root lock (once per root); the puts take none (3.0+'s
    refcount, Era.self_ref), but anon_vma_free's relock when the root lock is seen held.

    Only the first wait can be given up to the run's abort (STOPPED, nothing changed):
    once the pass has taken an AVC off its list, the rest (another root's lock, the
    second pass's frees) must finish, or the VMA's chain would keep AVCs that their
    anon_vmas' lists no longer hold, and anon_vmas nobody frees."""
    vav = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    first = w32[_vma(g, vma, G.VMA_AVC_HEAD)]
    if g[G.REUSE] and vav >= 0:
        first = vav
    elif first >= 0:
        first = w32[_avc(g, first, G.AVC_ANON_VMA)]
    hw, ht = -1, 0
    if first >= 0:
        hw, ht = lock_anon_vma_root(words, w32, g, held, hw, ht, first, S_UNLINK)
        if ht < 0:
            return STOPPED
    no_abort_begin(g)
    st = _unlink_anon_vmas_once_locked(words, w32, g, held, sc, vma, hw, ht)
    no_abort_end(g)
    return st


@cached_njit(llvm_inline=True)
def _unlink_anon_vmas_once_locked(words: np.ndarray, w32: np.ndarray, g: np.ndarray,
                                  held: np.ndarray, sc: np.ndarray, vma: int, hw: int,
                                  ht: int) -> int:
    """unlink_anon_vmas_once_c's passes, with the first root lock ``hw`` held since ``ht``
    (-1: an empty chain, nothing held)."""
    keep = sc[8:]  # AVCs whose anon_vma is to be freed; sc[0] is the slab's scratch
    nkeep = 0
    vav = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    if g[G.REUSE] and vav >= 0:  # 3.19+: the VMA's own use of vma->anon_vma, in the pass
        hw, ht = lock_anon_vma_root(words, w32, g, held, hw, ht, vav, S_UNLINK)
        if ht < 0:
            return STOPPED
        vma_anon_vma_put_locked_c(w32, g, vav)
    avc = w32[_vma(g, vma, G.VMA_AVC_HEAD)]
    while avc >= 0:
        nxt = w32[_avc(g, avc, G.AVC_SAME_VMA_NEXT)]
        av = w32[_avc(g, avc, G.AVC_ANON_VMA)]
        hw, ht = lock_anon_vma_root(words, w32, g, held, hw, ht, av, S_UNLINK)
        if ht < 0:
            return STOPPED
        anon_vma_list_del_locked_c(w32, g, av, avc)
        if w32[_av(g, av, G.AV_NR_MEMBERS)] == 0:
            anon_vma_emptied_locked_c(w32, g, av)  # 3.19+: parent->degree-- / num_children--
        if _anon_vma_unused(w32, g, av):
            keep[nkeep] = avc
            nkeep += 1
        else:
            st = kmem_cache_free_one(words, w32, g, held, G.K_AVC, avc, sc)
            if st < 0:
                unlock_anon_vma_root(words, g, held, hw, ht, S_UNLINK)
                return st
        avc = nxt
    unlock_anon_vma_root(words, g, held, hw, ht, S_UNLINK)
    for k in range(nkeep):
        avc = keep[k]
        st = anon_vma_free_c(words, w32, g, held, sc, w32[_avc(g, avc, G.AVC_ANON_VMA)])
        if st == OK:
            st = kmem_cache_free_one(words, w32, g, held, G.K_AVC, avc, sc)
        if st < 0:
            return st
    w32[_vma(g, vma, G.VMA_AVC_HEAD)] = -1
    w32[_vma(g, vma, G.VMA_ANON_VMA)] = -1
    return OK


def unlink_anon_vmas(m: Model, vma: int) -> None:
    """Unlink vma from the reverse map (compiled: unlink_anon_vmas_c)."""
    st = unlink_anon_vmas_c(m.words, m.w32, m.g, m.locks.held, m.scratch, vma)
    if st < 0:
        raise_status(st)


# ---------------------------------------------------------------------------- find_mergeable_anon_vma
#
# mm/mmap.c's side of anon_vma_prepare: a VMA that faults for the first time next to a
# compatible neighbour (adjacent, pgoff contiguous, flags equal but for VM_READ, VM_WRITE,
# VM_EXEC) with a single-AVC chain shares that neighbour's anon_vma, so that vma_merge can
# join them later.


@cached_njit(llvm_inline=True)
def anon_vma_compatible_c(w32: np.ndarray, g: np.ndarray, a: int, b: int) -> bool:
    """anon_vma_compatible: a ends where b starts and b's pgoff continues a's."""
    return (w32[_vma(g, a, G.VMA_END)] == w32[_vma(g, b, G.VMA_START)]
            and w32[_vma(g, b, G.VMA_PGOFF)] == w32[_vma(g, a, G.VMA_PGOFF)]
            + w32[_vma(g, b, G.VMA_START)] - w32[_vma(g, a, G.VMA_START)])


@cached_njit(llvm_inline=True)
def reusable_anon_vma_c(w32: np.ndarray, g: np.ndarray, old: int, a: int, b: int) -> int:
    """reusable_anon_vma: old's anon_vma when a and b are compatible and old's chain is a
    single AVC (2.6.34+; 2.6.33 has no chain), else -1."""
    if not anon_vma_compatible_c(w32, g, a, b):
        return -1
    av = w32[_vma(g, old, G.VMA_ANON_VMA)]
    if av < 0:
        return -1
    if g[G.CHAIN]:
        head = w32[_vma(g, old, G.VMA_AVC_HEAD)]
        if head < 0 or w32[_avc(g, head, G.AVC_SAME_VMA_NEXT)] >= 0:
            return -1
    return av


@cached_njit(llvm_inline=True)
def find_mergeable_anon_vma_c(w32: np.ndarray, g: np.ndarray, vma: int) -> int:
    """find_mergeable_anon_vma: the next VMA's anon_vma, else the previous one's, if
    reusable; -1 for none.  Neighbours by address (the model's mm list is in creation
    order).  Expects the mm's owner (mmap_sem)."""
    mm = w32[_vma(g, vma, G.VMA_MM)]
    start, end = w32[_vma(g, vma, G.VMA_START)], w32[_vma(g, vma, G.VMA_END)]
    near = prev = -1  # the neighbours by address (vm_next, vm_prev)
    v = w32[_mm(g, mm, G.MM_VMA_HEAD)]
    while v >= 0:
        if w32[_vma(g, v, G.VMA_START)] == end:
            near = v
        elif w32[_vma(g, v, G.VMA_END)] == start and v != vma:
            prev = v
        v = w32[_vma(g, v, G.VMA_NEXT)]
    if near >= 0:
        av = reusable_anon_vma_c(w32, g, near, vma, near)
        if av >= 0:
            return av
    if prev >= 0:
        return reusable_anon_vma_c(w32, g, prev, prev, vma)
    return -1

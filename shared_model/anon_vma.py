"""The anon_vma itself: its lock, its list, allocation and references, the reuse counters.

Kernel functions held here, by the file that holds them in the kernel:

  include/linux/rmap.h   anon_vma_lock / anon_vma_unlock (3.8+: anon_vma_lock_write /
                         anon_vma_unlock_write): anon_vma_lock_c, anon_vma_unlock_c;
                         get_anon_vma (get_anon_vma_c), put_anon_vma (3.0+, put_anon_vma_c)
  mm/rmap.c              anon_vma_alloc (anon_vma_alloc_c), anon_vma_free (anon_vma_free_c,
                         anon_vma_free_relock_c, anon_vma_release_c), __put_anon_vma (3.0+),
                         drop_anon_vma (2.6.36's atomic_dec_and_lock, in anon_vma_free_c);
                         lock_anon_vma_root / unlock_anon_vma_root (3.0+)
  include/linux/list.h   list_add_tail / list_del on the anon_vma's list (below)
  mm/rmap.c (3.19, 6.0)  the reuse counters (degree; num_children, num_active_vmas) as
                         anon_vma_alloc, anon_vma_prepare, anon_vma_clone, anon_vma_fork and
                         unlink_anon_vmas update them

What links VMAs to anon_vmas (anon_vma_prepare, anon_vma_link, anon_vma_clone,
anon_vma_fork, unlink_anon_vmas) is in anon_vma_chain.py.

Each anon_vma's list ("same_anon_vma" in 2.6.34+, the VMA list in 2.6.33) is a doubly
linked list through nodes embedded in the records, as the kernel's ``list_head``: the
AVC's same_anon_vma node (2.6.34+) or the VMA's anon_vma_node (2.6.33); the anon_vma
holds head, tail and nr_members.  Insertion is at the tail, as ``list_add_tail`` does, so
list order is fork order and walk lengths match the kernel's; removal is ``list_del``
(O(1), the order of the others kept).  Every list operation is ``_locked``: the caller
holds the lock that ``anon_vma_lock_c`` takes for that anon_vma.
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import av_word as _av
from .ctx import avc_word as _avc
from .ctx import raise_status
from .ctx import vma_word as _vma
from .eras import REUSE_ACTIVE, REUSE_DEGREE
from .interval_tree import anon_vma_interval_tree_remove_c
from .locking.atomics import READ_ONCE, atomic_fetch_add, cmpxchg
from .locking.cached_compile import cached_njit
from .locking.lock import lock_state_compiled
from .locks import CLASS, SITE, lock_acquire_c, lock_release_c
from .model import Model
from .rmap import anon_vma_lock_word_c
from .slab import kmem_cache_alloc_one, kmem_cache_free_one

AV_LOCK = CLASS["anon_vma"]
S_UNLINK = SITE["unlink_anon_vmas"]
S_FREE = SITE["anon_vma_free"]
OK, STOPPED = G.OK, G.STOPPED

# Compiled code addresses records through the geometry table (shared_model/ctx.py); these
# give one field's int32 word.


@cached_njit(llvm_inline=True)
def anon_vma_lock_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, av: int,
                    site: int) -> tuple[int, int]:
    """Take the lock guarding av (its own or its root's; the write side of an rwsem):
    (lock word, acquire time), the time -1 when aborted."""
    w = anon_vma_lock_word_c(w32, g, av)
    return w, lock_acquire_c(words, g, held, w, AV_LOCK, site, 0)


@cached_njit(llvm_inline=True)
def anon_vma_unlock_c(words: np.ndarray, g: np.ndarray, held: np.ndarray, w: int, site: int, t: int) -> None:
    lock_release_c(words, g, held, w, AV_LOCK, site, 0, t)


@cached_njit(llvm_inline=True)
def lock_anon_vma_root(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray, hw: int,
                       ht: int, av: int, site: int) -> tuple[int, int]:
    """3.0's lock_anon_vma_root for a pass over a chain: with lock word ``hw`` held since
    ``ht`` (-1: none), make the one guarding av held: the same word is kept, another is
    switched to (the held one released first).  (lock word, acquire time); the time -1
    when aborted, with nothing held."""
    w = anon_vma_lock_word_c(w32, g, av)
    if w == hw:
        return hw, ht
    if hw >= 0:
        anon_vma_unlock_c(words, g, held, hw, site, ht)
    return anon_vma_lock_c(words, w32, g, held, av, site)


@cached_njit(llvm_inline=True)
def unlock_anon_vma_root(words: np.ndarray, g: np.ndarray, held: np.ndarray, hw: int, ht: int,
                         site: int) -> None:
    """unlock_anon_vma_root: release lock word ``hw`` if one is held (-1: none)."""
    if hw >= 0:
        anon_vma_unlock_c(words, g, held, hw, site, ht)


# ---------------------------------------------------------------------------- list
#
# Each anon_vma's list runs through nodes embedded in the records it links, as the
# kernel's ``struct list_head``: the AVC's same_anon_vma (2.6.34+) or the VMA's
# anon_vma_node (2.6.33), each a (prev, next) pair of record indices, -1 at the ends; the
# anon_vma holds head and tail (the kernel's list head, circular, the model's two ends).
# A list entry is an AVC index in chain eras, a VMA index in 2.6.33.  Adding and removing
# touch only the neighbours: nothing is allocated, nothing can fail.


@cached_njit(llvm_inline=True)
def _node_word(g: np.ndarray, node: int, prev: bool) -> int:
    """The int32 word of node's prev (or next) link: the AVC's same_anon_vma in chain
    eras, the VMA's anon_vma_node in 2.6.33."""
    if g[G.CHAIN]:
        return _avc(g, node, G.AVC_AV_PREV if prev else G.AVC_AV_NEXT)
    return _vma(g, node, G.VMA_AV_PREV if prev else G.VMA_AV_NEXT)


@cached_njit(llvm_inline=True)
def anon_vma_list_add_tail_locked_c(w32: np.ndarray, g: np.ndarray, av: int, node: int) -> None:
    """list_add_tail(node, &av->head): node (an AVC, or in 2.6.33 a VMA) becomes the last
    entry of av's list.  Expects held: the lock guarding av."""
    tail = w32[_av(g, av, G.AV_TAIL)]
    w32[_node_word(g, node, True)] = tail
    w32[_node_word(g, node, False)] = -1
    if tail < 0:
        w32[_av(g, av, G.AV_HEAD)] = node
    else:
        w32[_node_word(g, tail, False)] = node
    w32[_av(g, av, G.AV_TAIL)] = node
    w32[_av(g, av, G.AV_NR_MEMBERS)] += 1


@cached_njit(llvm_inline=True)
def anon_vma_list_del_locked_c(w32: np.ndarray, g: np.ndarray, av: int, node: int) -> None:
    """list_del(node): take node off av's list; the others keep their order.  Leaves node's
    links -1.  In eras with an interval tree (3.7+) the AVC leaves the tree too.

    Expects held: the lock guarding av."""
    if g[G.TREE]:
        anon_vma_interval_tree_remove_c(w32, g, av, node)
    prev, nxt = w32[_node_word(g, node, True)], w32[_node_word(g, node, False)]
    if prev >= 0:
        w32[_node_word(g, prev, False)] = nxt
    else:
        w32[_av(g, av, G.AV_HEAD)] = nxt
    if nxt >= 0:
        w32[_node_word(g, nxt, True)] = prev
    else:
        w32[_av(g, av, G.AV_TAIL)] = prev
    w32[_node_word(g, node, True)] = -1
    w32[_node_word(g, node, False)] = -1
    w32[_av(g, av, G.AV_NR_MEMBERS)] -= 1


@cached_njit
def anon_vma_list_add_tail_one(w32: np.ndarray, g: np.ndarray, av: int, node: int) -> None:
    anon_vma_list_add_tail_locked_c(w32, g, av, node)


@cached_njit
def anon_vma_list_del_one(w32: np.ndarray, g: np.ndarray, av: int, node: int) -> None:
    anon_vma_list_del_locked_c(w32, g, av, node)


def anon_vma_list_add_tail_locked(m: Model, av: int, vma: int, avc: int) -> None:
    """Append the entry of (vma, avc) to av's list: the AVC in chain eras, the VMA in
    2.6.33 (avc -1) (compiled: anon_vma_list_add_tail_locked_c).  Expects held: the lock
    guarding av."""
    anon_vma_list_add_tail_one(m.w32, m.g, int(av), int(avc if m.era.chain else vma))


def anon_vma_list_del_locked(m: Model, av: int, node: int) -> None:
    """Take node (an AVC; in 2.6.33 a VMA) off av's list.  Expects held: the lock
    guarding av."""
    assert node in anon_vma_list_nodes(m, av).tolist(), "node not on this list"
    anon_vma_list_del_one(m.w32, m.g, int(av), int(node))


def anon_vma_list_nodes(m: Model, av: int) -> np.ndarray:
    """The entries of av's list (AVCs; in 2.6.33 VMAs), in list order, following next as
    the walk does (bounded: a corrupt list cannot hold it).  Expects held: av's lock (or
    a quiescent model)."""
    nxt = m.avc["same_anon_vma_next"] if m.era.chain else m.vma["anon_vma_node_next"]
    out: list[int] = []
    n = int(m.av_head[av])
    while n >= 0 and len(out) <= len(nxt):
        out.append(n)
        n = int(nxt[n])
    return np.array(out, np.int32)


def anon_vma_members(m: Model, av: int) -> tuple[np.ndarray, np.ndarray]:
    """(vma, avc) of every entry of av's list, in list order (avc -1 in 2.6.33).  Expects
    held: av's lock (or a quiescent model)."""
    nodes = anon_vma_list_nodes(m, av)
    if m.era.chain:
        return m.avc["vma"][nodes].astype(np.int32), nodes
    return nodes, np.full(len(nodes), -1, np.int32)


# ---------------------------------------------------------------------------- anon_vma


@cached_njit
def anon_vma_alloc_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                     sc: np.ndarray, parent: int) -> int:
    """A fresh anon_vma, its own root (or parent's root), no members: its index or a
    negative status.  No lock expected; takes the slab lock.  The lock words are left as
    they are: records are type-stable."""
    av = kmem_cache_alloc_one(words, w32, g, held, G.K_ANON_VMA, sc)
    if av < 0:
        return av
    w32[_av(g, av, G.AV_ROOT)] = av if parent < 0 else w32[_av(g, parent, G.AV_ROOT)]
    w32[_av(g, av, G.AV_PARENT)] = parent
    w32[_av(g, av, G.AV_HEAD)] = -1
    w32[_av(g, av, G.AV_TAIL)] = -1
    w32[_av(g, av, G.AV_NR_MEMBERS)] = 0
    w32[_av(g, av, G.AV_REFCOUNT)] = g[G.SELF_REF]  # 3.0+: its own reference (Era.self_ref)
    anon_vma_ctor_counts_c(w32, g, av)
    return av


@cached_njit(llvm_inline=True)
def get_anon_vma_c(w32: np.ndarray, g: np.ndarray, av: int) -> None:
    """get_anon_vma: one more reference on av (an atomic_inc; no lock)."""
    atomic_fetch_add(w32, _av(g, av, G.AV_REFCOUNT), 1)


@cached_njit(llvm_inline=True)
def atomic_add_unless_last_c(w32: np.ndarray, g: np.ndarray, av: int) -> bool:
    """The lock-free half of ``atomic_dec_and_lock``: drop one reference on av unless it
    is the last (a cmpxchg loop).  True if dropped."""
    i = _av(g, av, G.AV_REFCOUNT)
    c = READ_ONCE(w32, i)
    while c > 1:
        old = cmpxchg(w32, i, c, c - 1)
        if old == c:
            return True
        c = old
    return False


@cached_njit(llvm_inline=True)
def anon_vma_free_relock_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                           av: int) -> int:
    """3.0+ ``anon_vma_free``, before the free::

        if (mutex_is_locked(&anon_vma->root->mutex)) {   /* 3.8+: rwsem_is_locked */
                anon_vma_lock(anon_vma);                  /* the write side */
                anon_vma_unlock(anon_vma);
        }

    A walker that found av through a page and is about to lock it (or holds it) makes the
    freeing task wait for it: one more write acquisition of the root's lock per freed
    anon_vma whenever the lock is busy (lockstat site anon_vma_free).  OK, or STOPPED.
    Expects no lock held (a held root would be seen locked by its own holder)."""
    if not g[G.FREE_RELOCK]:
        return OK
    w = anon_vma_lock_word_c(w32, g, av)
    locked, _ = lock_state_compiled(words, w, g[G.KIND0 + AV_LOCK])
    if not locked:
        return OK
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_FREE)
    if t < 0:
        return STOPPED
    anon_vma_unlock_c(words, g, held, w, S_FREE, t)
    return OK


@cached_njit(llvm_inline=True)
def anon_vma_release_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       sc: np.ndarray, av: int) -> int:
    """The kernel's ``anon_vma_free`` proper: 3.0+'s relock, then the slab free."""
    st = anon_vma_free_relock_c(words, w32, g, held, av)
    if st == OK:
        st = kmem_cache_free_one(words, w32, g, held, G.K_ANON_VMA, av, sc)
    return st


@cached_njit(llvm_inline=True)
def put_anon_vma_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                   sc: np.ndarray, av: int) -> int:
    """3.0+ (Era.self_ref) ``put_anon_vma``: ``atomic_dec_and_test``, no lock; the drop that
    reaches 0 runs ``__put_anon_vma``: a child puts its reference on the root (another
    ``atomic_dec_and_test``), freeing the root first when that was the last, then itself
    (linux-3.0.1 .. 6.0.1 mm/rmap.c).  The root's own reference goes when its list
    empties, so whichever of the root's unlink and its last child's drop comes second
    frees it, and no lock is needed to decide."""
    if atomic_fetch_add(w32, _av(g, av, G.AV_REFCOUNT), -1) != 1:
        return OK
    root = w32[_av(g, av, G.AV_ROOT)]
    if root != av and atomic_fetch_add(w32, _av(g, root, G.AV_REFCOUNT), -1) == 1:
        st = anon_vma_release_c(words, w32, g, held, sc, root)
        if st < 0:
            return st
    return anon_vma_release_c(words, w32, g, held, sc, av)


@cached_njit
def anon_vma_free_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                    sc: np.ndarray, av: int) -> int:
    """Release an anon_vma whose list is empty.

    3.0+ (Era.self_ref): ``put_anon_vma`` of its own reference (put_anon_vma_c): lock-free.

    2.6.33-2.6.36: free it; in eras that lock the root, drop the reference it holds on its
    root (``drop_anon_vma``), freeing the root too when that was the last and its list is
    empty.  The reference is an atomic: a reference that is not the last goes without any
    lock; the last is dropped under the root's lock (``atomic_dec_and_lock``), so that it
    and the root's own unlink, which tests "empty list and no reference" under that lock,
    cannot both free the root.

    No lock expected; before 3.0 takes the root's lock for the last reference only."""
    if g[G.SELF_REF]:
        return put_anon_vma_c(words, w32, g, held, sc, av)
    while True:
        root = w32[_av(g, av, G.AV_ROOT)]
        st = anon_vma_release_c(words, w32, g, held, sc, av)
        if st < 0 or not (g[G.LOCK_ROOT] and root != av):
            return st
        if atomic_add_unless_last_c(w32, g, root):
            return OK
        w, t = anon_vma_lock_c(words, w32, g, held, root, S_UNLINK)
        if t < 0:
            return STOPPED
        now = atomic_fetch_add(w32, _av(g, root, G.AV_REFCOUNT), -1) - 1
        gone = now == 0 and w32[_av(g, root, G.AV_NR_MEMBERS)] == 0
        anon_vma_unlock_c(words, g, held, w, S_UNLINK, t)
        if not gone:
            return OK
        av = root


def anon_vma_alloc(m: Model, parent: int = -1) -> int:
    """A fresh anon_vma (compiled: anon_vma_alloc_c).  Raises OutOfMemory."""
    av = anon_vma_alloc_c(m.words, m.w32, m.g, m.locks.held, m.scratch, parent)
    if av < 0:
        raise_status(av)
    return int(av)


def anon_vma_free(m: Model, av: int) -> None:
    """Free an anon_vma with an empty list (compiled: anon_vma_free_c)."""
    assert m.anon_vma["nr_members"][av] == 0 and m.anon_vma["head"][av] < 0
    st = anon_vma_free_c(m.words, m.w32, m.g, m.locks.held, m.scratch, av)
    if st < 0:
        raise_status(st)


# ---------------------------------------------------------------------------- reuse (3.19+)
#
# What counts the users of an anon_vma, so that anon_vma_clone may reuse one instead of
# anon_vma_fork allocating a new level per generation (eras.Era.reuse).  Each helper is
# called from one place (anon_vma_alloc_c above, the others in anon_vma_chain.py); all
# expect held the lock guarding the anon_vma (its root's: every era with reuse locks the
# root), as the kernel's counters are guarded by it.
#
#   3.19 (7a3ef208e662)   degree = VMAs using it as ->anon_vma + child anon_vmas (a root
#                         counts itself); reuse: not src->anon_vma and degree < 2
#   6.0  (2555283eb40d)   num_active_vmas = VMAs using it as ->anon_vma; num_children =
#                         child anon_vmas (a root counts itself); reuse: src has an
#                         anon_vma, num_children < 2 and num_active_vmas == 0


@cached_njit(llvm_inline=True)
def _counted_parent(w32: np.ndarray, g: np.ndarray, av: int) -> int:
    """anon_vma->parent, the kernel's self-pointer for a root (the model keeps -1 there)."""
    p = w32[_av(g, av, G.AV_PARENT)]
    return av if p < 0 else p


@cached_njit(llvm_inline=True)
def anon_vma_ctor_counts_c(w32: np.ndarray, g: np.ndarray, av: int) -> None:
    """anon_vma_alloc's counters: degree 1 ("reference for first vma", 3.19), no children
    and no active VMA (6.0); an empty interval tree."""
    w32[_av(g, av, G.AV_DEGREE)] = 1 if g[G.REUSE] == REUSE_DEGREE else 0
    w32[_av(g, av, G.AV_NUM_CHILDREN)] = 0
    w32[_av(g, av, G.AV_NUM_ACTIVE)] = 0
    w32[_av(g, av, G.AV_RB_ROOT)] = -1


@cached_njit(llvm_inline=True)
def anon_vma_prepare_counts_locked_c(w32: np.ndarray, g: np.ndarray, av: int, allocated: bool) -> None:
    """anon_vma_prepare set vma->anon_vma = av: 3.19 degree++ ("vma reference or
    self-parent link for new root"); 6.0 num_active_vmas++, and num_children++ for a new
    root's self-parent link."""
    if g[G.REUSE] == REUSE_DEGREE:
        w32[_av(g, av, G.AV_DEGREE)] += 1
    elif g[G.REUSE] == REUSE_ACTIVE:
        w32[_av(g, av, G.AV_NUM_ACTIVE)] += 1
        if allocated:
            w32[_av(g, av, G.AV_NUM_CHILDREN)] += 1


@cached_njit(llvm_inline=True)
def anon_vma_clone_reuse_locked_c(w32: np.ndarray, g: np.ndarray, dst: int, src: int, av: int,
                                  last: bool) -> None:
    """anon_vma_clone, after linking dst to av (the chain is walked oldest first): take av
    as dst->anon_vma if the era's rule allows; after the last link, count dst as a user of
    its anon_vma (reused, or inherited from src when splitting)."""
    r = g[G.REUSE]
    if r == 0:
        return
    if w32[_vma(g, dst, G.VMA_ANON_VMA)] < 0:
        if r == REUSE_DEGREE:
            ok = av != w32[_vma(g, src, G.VMA_ANON_VMA)] and w32[_av(g, av, G.AV_DEGREE)] < 2
        else:
            ok = (w32[_vma(g, src, G.VMA_ANON_VMA)] >= 0 and w32[_av(g, av, G.AV_NUM_CHILDREN)] < 2
                  and w32[_av(g, av, G.AV_NUM_ACTIVE)] == 0)
        if ok:
            w32[_vma(g, dst, G.VMA_ANON_VMA)] = av
    dav = w32[_vma(g, dst, G.VMA_ANON_VMA)]
    if last and dav >= 0:
        if r == REUSE_DEGREE:
            w32[_av(g, dav, G.AV_DEGREE)] += 1
        else:
            w32[_av(g, dav, G.AV_NUM_ACTIVE)] += 1


@cached_njit(llvm_inline=True)
def anon_vma_fork_counts_locked_c(w32: np.ndarray, g: np.ndarray, av: int, pav: int) -> None:
    """anon_vma_fork made a new av, child of pav, the VMA's own: 3.19 parent->degree++ (av's
    own 1 counts the VMA); 6.0 num_active_vmas++ and parent->num_children++."""
    if g[G.REUSE] == REUSE_DEGREE:
        w32[_av(g, pav, G.AV_DEGREE)] += 1
    elif g[G.REUSE] == REUSE_ACTIVE:
        w32[_av(g, av, G.AV_NUM_ACTIVE)] += 1
        w32[_av(g, pav, G.AV_NUM_CHILDREN)] += 1


@cached_njit(llvm_inline=True)
def anon_vma_emptied_locked_c(w32: np.ndarray, g: np.ndarray, av: int) -> None:
    """unlink_anon_vmas left av's tree empty: anon_vma->parent->degree-- (3.19) or
    ->num_children-- (6.0)."""
    if g[G.REUSE] == REUSE_DEGREE:
        w32[_av(g, _counted_parent(w32, g, av), G.AV_DEGREE)] -= 1
    elif g[G.REUSE] == REUSE_ACTIVE:
        w32[_av(g, _counted_parent(w32, g, av), G.AV_NUM_CHILDREN)] -= 1


@cached_njit
def vma_anon_vma_put_c(words: np.ndarray, w32: np.ndarray, g: np.ndarray, held: np.ndarray,
                       vma: int) -> int:
    """unlink_anon_vmas: vma stops using its anon_vma: degree-- (3.19) or
    num_active_vmas-- (6.0), under the anon_vma's lock, before any of the chain can be
    freed.  Takes and releases that lock (nothing in eras without reuse)."""
    av = w32[_vma(g, vma, G.VMA_ANON_VMA)]
    if g[G.REUSE] == 0 or av < 0:
        return OK
    w, t = anon_vma_lock_c(words, w32, g, held, av, S_UNLINK)
    if t < 0:
        return STOPPED
    vma_anon_vma_put_locked_c(w32, g, av)
    anon_vma_unlock_c(words, g, held, w, S_UNLINK, t)
    return OK


@cached_njit(llvm_inline=True)
def vma_anon_vma_put_locked_c(w32: np.ndarray, g: np.ndarray, av: int) -> None:
    """A VMA stops using av as its ->anon_vma: degree-- (3.19) or num_active_vmas-- (6.0).
    Expects held: av's lock."""
    if g[G.REUSE] == REUSE_DEGREE:
        w32[_av(g, av, G.AV_DEGREE)] -= 1
    elif g[G.REUSE] == REUSE_ACTIVE:
        w32[_av(g, av, G.AV_NUM_ACTIVE)] -= 1

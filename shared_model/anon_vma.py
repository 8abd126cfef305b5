"""anon_vma and anon_vma_chain: prepare, link/fork/clone, unlink, and the list itself.

Each anon_vma's list ("same_anon_vma" in 2.6.34, the VMA list in 2.6.33) is a chain of
chunks of CH slots.  Insertion is at the tail, as ``list_add_tail`` does, so list order is
fork order and walk lengths match the kernel's.  Removal tombstones the slot (it points
at the sentinel VMA 0) so the order of the others is kept; an emptied chunk is unlinked
and freed.  Every list operation is ``_locked``: the caller holds the lock that
``Model.anon_vma_lock`` takes for that anon_vma.

Allocation happens before the lock is taken, as in the kernel (GFP_KERNEL outside the
spinlock), except list chunks, which stand for the list_head embedded in the AVC and are
taken from their slab under the anon_vma lock (the slab lock is a leaf).

2.6.33 (era.chain False)                 2.6.34+ (era.chain True)
---------------------------------------  ---------------------------------------------
anon_vma_prepare: VMA on the list         anon_vma_prepare: one AVC links VMA and anon_vma
anon_vma_link: child VMA on parent's      anon_vma_fork: anon_vma_clone (an AVC per anon_vma
  list, same anon_vma                       of the parent's chain), then the child's own
anon_vma_unlink                           unlink_anon_vmas
"""

from __future__ import annotations

import numpy as np

from .layout import CH
from .model import Model, OutOfMemory

# ---------------------------------------------------------------------------- list


def anon_vma_list_add_tail_locked(m: Model, av: int, vma: int, avc: int) -> None:
    """Append (vma, avc) to av's list; records the slot in the AVC (or, 2.6.33, the VMA).

    Expects held: the lock guarding av.  Takes and releases the chunk slab lock when the
    tail chunk is full."""
    anon_vma, chunk = m.anon_vma, m.chunk
    tail = int(anon_vma["tail"][av])
    if tail < 0 or chunk["used"][tail] == CH:
        c = m.alloc_one("chunk")
        chunk["prev"][c] = tail
        chunk["next"][c] = -1
        chunk["anon_vma"][c] = av
        chunk["used"][c] = 0
        chunk["live"][c] = 0
        chunk["vma"][c] = 0
        chunk["avc"][c] = -1
        if tail < 0:
            anon_vma["head"][av] = c
        else:
            chunk["next"][tail] = c
        anon_vma["tail"][av] = c
        tail = c
    pos = int(chunk["used"][tail])
    chunk["vma"][tail, pos] = vma
    chunk["avc"][tail, pos] = avc
    chunk["used"][tail] = pos + 1
    chunk["live"][tail] += 1
    anon_vma["nr_members"][av] += 1
    owner = m.avc if avc >= 0 else m.vma
    rec = avc if avc >= 0 else vma
    owner["list_chunk"][rec] = tail
    owner["list_pos"][rec] = pos


def anon_vma_list_del_locked(m: Model, av: int, c: int, pos: int) -> None:
    """Remove slot (c, pos) from av's list, freeing the chunk if it empties.

    Expects held: the lock guarding av."""
    anon_vma, chunk = m.anon_vma, m.chunk
    assert chunk["anon_vma"][c] == av and chunk["vma"][c, pos] != 0, "slot not on this list"
    chunk["vma"][c, pos] = 0
    chunk["avc"][c, pos] = -1
    chunk["live"][c] -= 1
    anon_vma["nr_members"][av] -= 1
    if chunk["live"][c] == 0:
        prev, nxt = int(chunk["prev"][c]), int(chunk["next"][c])
        if prev >= 0:
            chunk["next"][prev] = nxt
        else:
            anon_vma["head"][av] = nxt
        if nxt >= 0:
            chunk["prev"][nxt] = prev
        else:
            anon_vma["tail"][av] = prev
        m.free("chunk", c)


def anon_vma_members(m: Model, av: int) -> tuple[np.ndarray, np.ndarray]:
    """(vma, avc) of every live entry of av's list, in list order.  Expects held: av's lock
    (or a quiescent model)."""
    ids = _chunk_ids(m, av)
    if not ids:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    vmas = m.chunk["vma"][ids].ravel()
    avcs = m.chunk["avc"][ids].ravel()
    live = vmas != 0
    return vmas[live], avcs[live]


def _chunk_ids(m: Model, av: int) -> list[int]:
    ids = []
    c = int(m.av_head[av])
    nxt = m.chunk_next
    while c >= 0:
        ids.append(c)
        c = int(nxt[c])
    return ids


# ---------------------------------------------------------------------------- anon_vma


def anon_vma_alloc(m: Model, parent: int = -1) -> int:
    """A fresh anon_vma, its own root (or parent's root), no members.  No lock expected;
    takes the slab lock.  The lock bytes are left as they are: records are type-stable."""
    av = m.alloc_one("anon_vma")
    a = m.anon_vma
    a["root"][av] = av if parent < 0 else a["root"][parent]
    a["parent"][av] = parent
    a["head"][av] = -1
    a["tail"][av] = -1
    a["nr_members"][av] = 0
    a["refcount"][av] = 0
    return av


def anon_vma_free(m: Model, av: int) -> None:
    """Free an anon_vma with an empty list; in eras that lock the root, drop the reference
    it holds on its root (freeing the root too when that was the last).  No lock expected."""
    a = m.anon_vma
    assert a["nr_members"][av] == 0 and a["head"][av] < 0
    root = int(a["root"][av])
    m.free("anon_vma", av)
    if m.era.lock_root and root != av:
        tok = m.anon_vma_lock(root, "unlink_anon_vmas")
        a["refcount"][root] -= 1
        gone = a["refcount"][root] == 0 and a["nr_members"][root] == 0
        m.anon_vma_unlock(tok)
        if gone:
            anon_vma_free(m, root)


def _anon_vma_unused(m: Model, av: int) -> bool:
    a = m.anon_vma
    return bool(a["nr_members"][av] == 0 and a["refcount"][av] == 0)


def anon_vma_chain_link_locked(m: Model, vma: int, avc: int, av: int) -> None:
    """Link AVC ``avc`` between vma and av: head of vma's same_vma list (newest first, as
    ``list_add``), tail of av's list.  Expects held: av's lock (and the mm's mmap_sem)."""
    anon_vma_list_add_tail_locked(m, av, vma, avc)  # may raise OutOfMemory: nothing changed
    c = m.avc
    c["vma"][avc] = vma
    c["anon_vma"][avc] = av
    c["same_vma_next"][avc] = m.vma["avc_head"][vma]
    m.vma["avc_head"][vma] = avc


def anon_vma_prepare(m: Model, vma: int) -> int:
    """Give vma an anon_vma on its first anonymous fault; returns it.

    Takes and releases the new anon_vma's lock.  Raises OutOfMemory with nothing changed."""
    av = int(m.vma_anon_vma[vma])
    if av >= 0:
        return av
    av = anon_vma_alloc(m)
    avc = -1
    if m.era.chain:
        try:
            avc = m.alloc_one("avc")
        except OutOfMemory:
            m.free("anon_vma", av)
            raise
    tok = m.anon_vma_lock(av, "anon_vma_prepare")
    try:
        if m.era.chain:
            anon_vma_chain_link_locked(m, vma, avc, av)
        else:
            anon_vma_list_add_tail_locked(m, av, vma, -1)
        m.vma_anon_vma[vma] = av
    except OutOfMemory:
        m.anon_vma_unlock(tok)
        if avc >= 0:
            m.free("avc", avc)
        m.free("anon_vma", av)
        raise
    m.anon_vma_unlock(tok)
    return av


def anon_vma_link(m: Model, vma: int) -> None:
    """2.6.33 fork: the child VMA (already pointing at the parent's anon_vma) joins the tail
    of that one family list.  Takes and releases that anon_vma's lock."""
    av = int(m.vma_anon_vma[vma])
    if av < 0:
        return
    tok = m.anon_vma_lock(av, "anon_vma_fork")
    try:
        anon_vma_list_add_tail_locked(m, av, vma, -1)
    except OutOfMemory:
        m.vma_anon_vma[vma] = -1
        raise
    finally:
        m.anon_vma_unlock(tok)


def anon_vma_clone(m: Model, dst: int, src: int) -> None:
    """Give dst one AVC for every anon_vma on src's chain, oldest first, each linked under
    that anon_vma's lock.  Raises OutOfMemory before linking anything."""
    chain = []
    a = int(m.vma["avc_head"][src])
    while a >= 0:
        chain.append(int(m.avc["anon_vma"][a]))
        a = int(m.avc["same_vma_next"][a])
    if not chain:
        return
    avcs = m.alloc("avc", len(chain)).tolist()
    for i, av in enumerate(reversed(chain)):
        tok = m.anon_vma_lock(av, "anon_vma_fork")
        try:
            anon_vma_chain_link_locked(m, dst, avcs[i], av)
        except OutOfMemory:
            m.free("avc", np.array(avcs[i:], dtype=np.int32))  # the ones never linked
            raise
        finally:
            m.anon_vma_unlock(tok)


def anon_vma_fork(m: Model, vma: int, pvma: int) -> None:
    """2.6.34 fork of one VMA: clone the parent's chain, then a new anon_vma of the child's
    own, which becomes ``vma->anon_vma``.  On OutOfMemory, unwinds what it linked (as the
    kernel's ``out_error`` does with unlink_anon_vmas) and re-raises."""
    pav = int(m.vma_anon_vma[pvma])
    m.vma_anon_vma[vma] = -1
    m.vma["avc_head"][vma] = -1
    if pav < 0:
        return
    try:
        anon_vma_clone(m, vma, pvma)
        av = anon_vma_alloc(m, parent=pav)
        try:
            avc = m.alloc_one("avc")
        except OutOfMemory:
            m.free("anon_vma", av)
            raise
    except OutOfMemory:
        unlink_anon_vmas(m, vma)
        raise
    if m.era.lock_root:
        root = int(m.av_root[av])
        tok = m.anon_vma_lock(root, "anon_vma_fork")
        m.anon_vma["refcount"][root] += 1
        m.anon_vma_unlock(tok)
    tok = m.anon_vma_lock(av, "anon_vma_fork")
    try:
        anon_vma_chain_link_locked(m, vma, avc, av)
        m.vma_anon_vma[vma] = av
    except OutOfMemory:
        m.anon_vma_unlock(tok)
        m.free("avc", avc)
        anon_vma_free(m, av)
        unlink_anon_vmas(m, vma)
        raise
    m.anon_vma_unlock(tok)


def unlink_anon_vmas(m: Model, vma: int) -> None:
    """Unlink every AVC of vma (chain eras) or the VMA itself (2.6.33) from its anon_vma's
    list, each under that anon_vma's lock, freeing anon_vmas that become unused and the
    AVCs.  Leaves vma with no anon_vma."""
    if not m.era.chain:
        av = int(m.vma_anon_vma[vma])
        if av >= 0:
            tok = m.anon_vma_lock(av, "unlink_anon_vmas")
            anon_vma_list_del_locked(m, av, int(m.vma["list_chunk"][vma]), int(m.vma["list_pos"][vma]))
            empty = _anon_vma_unused(m, av)
            m.anon_vma_unlock(tok)
            if empty:
                anon_vma_free(m, av)
        m.vma_anon_vma[vma] = -1
        return
    avc = int(m.vma["avc_head"][vma])
    freed = []
    while avc >= 0:
        nxt = int(m.avc["same_vma_next"][avc])
        av = int(m.avc["anon_vma"][avc])
        tok = m.anon_vma_lock(av, "unlink_anon_vmas")
        anon_vma_list_del_locked(m, av, int(m.avc["list_chunk"][avc]), int(m.avc["list_pos"][avc]))
        empty = _anon_vma_unused(m, av)
        m.anon_vma_unlock(tok)
        if empty:
            anon_vma_free(m, av)
        freed.append(avc)
        avc = nxt
    m.free("avc", np.array(freed, dtype=np.int32))
    m.vma["avc_head"][vma] = -1
    m.vma_anon_vma[vma] = -1

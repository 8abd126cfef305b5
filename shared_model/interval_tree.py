"""anon_vma_interval_tree (3.7+): each anon_vma's AVCs in an augmented red-black tree.

The kernel (bf181b9f9d8d, include/linux/interval_tree_generic.h instantiated in
mm/interval_tree.c) keys each AVC by its VMA's page-offset range
``[vm_pgoff, vm_pgoff + vma_pages(vma) - 1]`` and keeps, in every node, the largest ``last``
of its subtree (``rb_subtree_last``), so that a stabbing query for one page index skips
every subtree that ends before it.  Here the nodes are embedded in the AVC records
(``rb_left``, ``rb_right``, ``rb_parent``, ``rb_color``, ``rb_subtree_last``, int32 indices,
-1 for none) and the root in the anon_vma (``rb_root``), exactly as ``struct rb_node`` sits in
``struct anon_vma_chain``; everything runs compiled.

Insertion is the kernel's: descend by start (equal starts go right) raising
``rb_subtree_last`` on the way down (the augment "propagate"), then rebalance, each rotation
recomputing the two nodes it moves (the augment "rotate").  Erasure unlinks as CLRS does
(the successor takes the erased node's place), recomputes ``rb_subtree_last`` from the
lowest changed node to the root, then rebalances.

The query is the kernel's ``anon_vma_interval_tree_iter_first``/``_iter_next`` over
``[index, index]``; each returns how many nodes it examined (each node the search stepped
onto), so a walk's cost is exact: O(log n + k) nodes for k VMAs that hold the page.

Locks: every function here expects held the lock that guards the anon_vma's list (its
root's from 2.6.36): the tree is the list's other index and changes with it.
"""

from __future__ import annotations

import numpy as np

from . import ctx as G
from .ctx import av_word, avc_word, vma_word
from .locking.cached_compile import cached_njit

RED, BLACK = 0, 1
# interval_tree_check_c's verdicts.
TREE_OK = 0
TREE_BAD_PARENT, TREE_BAD_ORDER, TREE_BAD_LAST, TREE_RED_RED, TREE_BLACK_HEIGHT = 1, 2, 3, 4, 5
TREE_RED_ROOT, TREE_FOREIGN, TREE_CYCLE = 6, 7, 8
TREE_ERRORS = {
    TREE_BAD_PARENT: "a node's rb_parent does not point at the node that links it",
    TREE_BAD_ORDER: "nodes out of pgoff order",
    TREE_BAD_LAST: "a node's rb_subtree_last is not the largest last pgoff of its subtree",
    TREE_RED_RED: "a red node with a red child",
    TREE_BLACK_HEIGHT: "paths with different numbers of black nodes",
    TREE_RED_ROOT: "a red root",
    TREE_FOREIGN: "a node that is not a live AVC of this anon_vma",
    TREE_CYCLE: "more nodes than the anon_vma has AVCs (a cycle, or a node in two trees)",
}


@cached_njit(llvm_inline=True)
def avc_start_pgoff(w32: np.ndarray, g: np.ndarray, x: int) -> int:
    """``avc_start_pgoff``: the first page offset of the AVC's VMA."""
    return w32[vma_word(g, w32[avc_word(g, x, G.AVC_VMA)], G.VMA_PGOFF)]


@cached_njit(llvm_inline=True, python=True)
def avc_last_pgoff(w32: np.ndarray, g: np.ndarray, x: int) -> int:
    """``avc_last_pgoff``: the last page offset of the AVC's VMA."""
    vb = vma_word(g, w32[avc_word(g, x, G.AVC_VMA)], 0)
    return w32[vb + G.VMA_PGOFF] + w32[vb + G.VMA_END] - w32[vb + G.VMA_START] - 1


@cached_njit(llvm_inline=True)
def _recompute(w32: np.ndarray, g: np.ndarray, x: int) -> None:
    m = avc_last_pgoff(w32, g, x)
    lft, rgt = w32[avc_word(g, x, G.AVC_RB_LEFT)], w32[avc_word(g, x, G.AVC_RB_RIGHT)]
    if lft >= 0:
        m = max(m, w32[avc_word(g, lft, G.AVC_RB_LAST)])
    if rgt >= 0:
        m = max(m, w32[avc_word(g, rgt, G.AVC_RB_LAST)])
    w32[avc_word(g, x, G.AVC_RB_LAST)] = m


@cached_njit(llvm_inline=True)
def _replace_child(w32: np.ndarray, g: np.ndarray, rootw: int, p: int, old: int, new: int) -> None:
    if p < 0:
        w32[rootw] = new
    elif w32[avc_word(g, p, G.AVC_RB_LEFT)] == old:
        w32[avc_word(g, p, G.AVC_RB_LEFT)] = new
    else:
        w32[avc_word(g, p, G.AVC_RB_RIGHT)] = new
    if new >= 0:
        w32[avc_word(g, new, G.AVC_RB_PARENT)] = p


@cached_njit(llvm_inline=True)
def _rotate(w32: np.ndarray, g: np.ndarray, rootw: int, x: int, left: bool) -> None:
    """Rotate x down to the left (``left``) or right; recompute the two nodes moved."""
    a, b = (G.AVC_RB_RIGHT, G.AVC_RB_LEFT) if left else (G.AVC_RB_LEFT, G.AVC_RB_RIGHT)
    y = w32[avc_word(g, x, a)]
    inner = w32[avc_word(g, y, b)]
    w32[avc_word(g, x, a)] = inner
    if inner >= 0:
        w32[avc_word(g, inner, G.AVC_RB_PARENT)] = x
    _replace_child(w32, g, rootw, w32[avc_word(g, x, G.AVC_RB_PARENT)], x, y)
    w32[avc_word(g, y, b)] = x
    w32[avc_word(g, x, G.AVC_RB_PARENT)] = y
    _recompute(w32, g, x)
    _recompute(w32, g, y)


@cached_njit(llvm_inline=True)
def _is_black(w32: np.ndarray, g: np.ndarray, x: int) -> bool:
    return x < 0 or w32[avc_word(g, x, G.AVC_RB_COLOR)] == BLACK


@cached_njit
def anon_vma_interval_tree_insert_c(w32: np.ndarray, g: np.ndarray, av: int, z: int) -> None:
    """Insert AVC z (its VMA's range as it is now) into av's tree.  Expects held: av's lock."""
    rootw = av_word(g, av, G.AV_RB_ROOT)
    start, last = avc_start_pgoff(w32, g, z), avc_last_pgoff(w32, g, z)
    w32[avc_word(g, z, G.AVC_RB_LEFT)] = -1
    w32[avc_word(g, z, G.AVC_RB_RIGHT)] = -1
    w32[avc_word(g, z, G.AVC_RB_LAST)] = last
    w32[avc_word(g, z, G.AVC_RB_COLOR)] = RED
    y, x = -1, w32[rootw]
    go_left = False
    while x >= 0:
        y = x
        w32[avc_word(g, x, G.AVC_RB_LAST)] = max(w32[avc_word(g, x, G.AVC_RB_LAST)], last)
        go_left = start < avc_start_pgoff(w32, g, x)
        x = w32[avc_word(g, x, G.AVC_RB_LEFT if go_left else G.AVC_RB_RIGHT)]
    w32[avc_word(g, z, G.AVC_RB_PARENT)] = y
    if y < 0:
        w32[rootw] = z
    else:
        w32[avc_word(g, y, G.AVC_RB_LEFT if go_left else G.AVC_RB_RIGHT)] = z
    while True:  # rb_insert_color
        p = w32[avc_word(g, z, G.AVC_RB_PARENT)]
        if p < 0 or w32[avc_word(g, p, G.AVC_RB_COLOR)] == BLACK:
            break
        gp = w32[avc_word(g, p, G.AVC_RB_PARENT)]
        p_is_left = w32[avc_word(g, gp, G.AVC_RB_LEFT)] == p
        u = w32[avc_word(g, gp, G.AVC_RB_RIGHT if p_is_left else G.AVC_RB_LEFT)]
        if not _is_black(w32, g, u):
            w32[avc_word(g, p, G.AVC_RB_COLOR)] = BLACK
            w32[avc_word(g, u, G.AVC_RB_COLOR)] = BLACK
            w32[avc_word(g, gp, G.AVC_RB_COLOR)] = RED
            z = gp
            continue
        if w32[avc_word(g, p, G.AVC_RB_RIGHT if p_is_left else G.AVC_RB_LEFT)] == z:
            _rotate(w32, g, rootw, p, p_is_left)
            z, p = p, z
        w32[avc_word(g, p, G.AVC_RB_COLOR)] = BLACK
        w32[avc_word(g, gp, G.AVC_RB_COLOR)] = RED
        _rotate(w32, g, rootw, gp, not p_is_left)
        break
    w32[avc_word(g, w32[rootw], G.AVC_RB_COLOR)] = BLACK


@cached_njit
def anon_vma_interval_tree_remove_c(w32: np.ndarray, g: np.ndarray, av: int, z: int) -> None:
    """Erase AVC z from av's tree.  Expects held: av's lock."""
    rootw = av_word(g, av, G.AV_RB_ROOT)
    zl, zr = w32[avc_word(g, z, G.AVC_RB_LEFT)], w32[avc_word(g, z, G.AVC_RB_RIGHT)]
    zp = w32[avc_word(g, z, G.AVC_RB_PARENT)]
    removed_color = w32[avc_word(g, z, G.AVC_RB_COLOR)]
    if zl < 0 or zr < 0:
        x = zr if zl < 0 else zl
        xp = zp
        _replace_child(w32, g, rootw, zp, z, x)
    else:
        y = zr
        while w32[avc_word(g, y, G.AVC_RB_LEFT)] >= 0:
            y = w32[avc_word(g, y, G.AVC_RB_LEFT)]
        removed_color = w32[avc_word(g, y, G.AVC_RB_COLOR)]
        x = w32[avc_word(g, y, G.AVC_RB_RIGHT)]
        if y == zr:
            xp = y
        else:
            xp = w32[avc_word(g, y, G.AVC_RB_PARENT)]
            _replace_child(w32, g, rootw, xp, y, x)
            w32[avc_word(g, y, G.AVC_RB_RIGHT)] = zr
            w32[avc_word(g, zr, G.AVC_RB_PARENT)] = y
        _replace_child(w32, g, rootw, zp, z, y)
        w32[avc_word(g, y, G.AVC_RB_LEFT)] = zl
        w32[avc_word(g, zl, G.AVC_RB_PARENT)] = y
        w32[avc_word(g, y, G.AVC_RB_COLOR)] = w32[avc_word(g, z, G.AVC_RB_COLOR)]
    n = xp  # augment: every node from the lowest change up to the root
    while n >= 0:
        _recompute(w32, g, n)
        n = w32[avc_word(g, n, G.AVC_RB_PARENT)]
    w32[avc_word(g, z, G.AVC_RB_LEFT)] = -1
    w32[avc_word(g, z, G.AVC_RB_RIGHT)] = -1
    w32[avc_word(g, z, G.AVC_RB_PARENT)] = -1
    if removed_color == RED:
        return
    while x != w32[rootw] and _is_black(w32, g, x):  # rb_erase_color
        x_is_left = w32[avc_word(g, xp, G.AVC_RB_LEFT)] == x
        near, far = (G.AVC_RB_LEFT, G.AVC_RB_RIGHT) if x_is_left else (G.AVC_RB_RIGHT, G.AVC_RB_LEFT)
        s = w32[avc_word(g, xp, far)]
        if not _is_black(w32, g, s):
            w32[avc_word(g, s, G.AVC_RB_COLOR)] = BLACK
            w32[avc_word(g, xp, G.AVC_RB_COLOR)] = RED
            _rotate(w32, g, rootw, xp, x_is_left)
            s = w32[avc_word(g, xp, far)]
        if _is_black(w32, g, w32[avc_word(g, s, near)]) and _is_black(w32, g, w32[avc_word(g, s, far)]):
            w32[avc_word(g, s, G.AVC_RB_COLOR)] = RED
            x = xp
            xp = w32[avc_word(g, x, G.AVC_RB_PARENT)]
            continue
        if _is_black(w32, g, w32[avc_word(g, s, far)]):
            w32[avc_word(g, w32[avc_word(g, s, near)], G.AVC_RB_COLOR)] = BLACK
            w32[avc_word(g, s, G.AVC_RB_COLOR)] = RED
            _rotate(w32, g, rootw, s, not x_is_left)
            s = w32[avc_word(g, xp, far)]
        w32[avc_word(g, s, G.AVC_RB_COLOR)] = w32[avc_word(g, xp, G.AVC_RB_COLOR)]
        w32[avc_word(g, xp, G.AVC_RB_COLOR)] = BLACK
        if w32[avc_word(g, s, far)] >= 0:
            w32[avc_word(g, w32[avc_word(g, s, far)], G.AVC_RB_COLOR)] = BLACK
        _rotate(w32, g, rootw, xp, x_is_left)
        x = w32[rootw]
        break
    if x >= 0:
        w32[avc_word(g, x, G.AVC_RB_COLOR)] = BLACK


@cached_njit(llvm_inline=True)
def _subtree_search(w32: np.ndarray, g: np.ndarray, node: int, index: int) -> tuple[int, int]:
    """The leftmost node of node's subtree whose range holds index: (node or -1, nodes
    examined).  Invariant on entry: index <= node's rb_subtree_last."""
    examined = 0
    while True:
        examined += 1
        lft = w32[avc_word(g, node, G.AVC_RB_LEFT)]
        if lft >= 0 and index <= w32[avc_word(g, lft, G.AVC_RB_LAST)]:
            node = lft
            continue
        if avc_start_pgoff(w32, g, node) <= index:
            if index <= avc_last_pgoff(w32, g, node):
                return node, examined
            rgt = w32[avc_word(g, node, G.AVC_RB_RIGHT)]
            if rgt >= 0 and index <= w32[avc_word(g, rgt, G.AVC_RB_LAST)]:
                node = rgt
                continue
        return -1, examined


@cached_njit(llvm_inline=True)
def anon_vma_interval_tree_iter_first(w32: np.ndarray, g: np.ndarray, av: int, index: int) -> tuple[int, int]:
    """The first AVC of av whose VMA's range holds page offset ``index``: (avc or -1, nodes
    examined).  Expects held: av's lock."""
    root = w32[av_word(g, av, G.AV_RB_ROOT)]
    if root < 0:
        return -1, 0
    if w32[avc_word(g, root, G.AVC_RB_LAST)] < index:
        return -1, 1
    return _subtree_search(w32, g, root, index)


@cached_njit(llvm_inline=True)
def anon_vma_interval_tree_iter_next(w32: np.ndarray, g: np.ndarray, node: int,
                                     index: int) -> tuple[int, int]:
    """The next AVC after ``node`` (in pgoff order) whose range holds ``index``: (avc or -1,
    nodes examined).  Expects held: the tree's lock."""
    examined = 0
    rb = w32[avc_word(g, node, G.AVC_RB_RIGHT)]
    while True:
        if rb >= 0 and index <= w32[avc_word(g, rb, G.AVC_RB_LAST)]:
            found, e = _subtree_search(w32, g, rb, index)
            return found, examined + e
        while True:  # up until we come from a node's left child
            p = w32[avc_word(g, node, G.AVC_RB_PARENT)]
            if p < 0:
                return -1, examined
            prev, node = node, p
            examined += 1
            rb = w32[avc_word(g, node, G.AVC_RB_RIGHT)]
            if prev != rb:
                break
        if index < avc_start_pgoff(w32, g, node):
            return -1, examined
        if index <= avc_last_pgoff(w32, g, node):
            return node, examined


@cached_njit
def interval_tree_check_c(  # noqa: C901 - one pass checks every rbtree and augment rule at once
        w32: np.ndarray, g: np.ndarray, av: int, limit: int) -> tuple[int, int]:
    """Check av's tree: (TREE_* verdict, nodes).  ``limit``: the AVCs on av's list (more
    nodes than that is a cycle).  Read-only; the model must be quiescent."""
    root = w32[av_word(g, av, G.AV_RB_ROOT)]
    if root < 0:
        return TREE_OK, 0
    if w32[avc_word(g, root, G.AVC_RB_PARENT)] != -1:
        return TREE_BAD_PARENT, 0
    if w32[avc_word(g, root, G.AVC_RB_COLOR)] != BLACK:
        return TREE_RED_ROOT, 0
    nodes = 0
    bh = -1
    prev_start = -(1 << 31)
    x = root  # in-order walk by parent pointers
    while w32[avc_word(g, x, G.AVC_RB_LEFT)] >= 0:
        x = w32[avc_word(g, x, G.AVC_RB_LEFT)]
    in_use = g[G.IN_USE + G.K_AVC]
    while x >= 0:
        nodes += 1
        if nodes > limit:
            return TREE_CYCLE, nodes
        if w32[avc_word(g, x, in_use)] != 1 or w32[avc_word(g, x, G.AVC_ANON_VMA)] != av:
            return TREE_FOREIGN, nodes
        s = avc_start_pgoff(w32, g, x)
        if s < prev_start:
            return TREE_BAD_ORDER, nodes
        prev_start = s
        lft, rgt = w32[avc_word(g, x, G.AVC_RB_LEFT)], w32[avc_word(g, x, G.AVC_RB_RIGHT)]
        m = avc_last_pgoff(w32, g, x)
        for c in (lft, rgt):
            if c >= 0:
                if w32[avc_word(g, c, G.AVC_RB_PARENT)] != x:
                    return TREE_BAD_PARENT, nodes
                m = max(m, w32[avc_word(g, c, G.AVC_RB_LAST)])
                if w32[avc_word(g, x, G.AVC_RB_COLOR)] == RED and w32[avc_word(g, c, G.AVC_RB_COLOR)] == RED:
                    return TREE_RED_RED, nodes
        if m != w32[avc_word(g, x, G.AVC_RB_LAST)]:
            return TREE_BAD_LAST, nodes
        if lft < 0 or rgt < 0:  # a nil below: count the black nodes up to the root
            b, y, steps = 0, x, 0
            while y >= 0 and steps <= limit:
                b += w32[avc_word(g, y, G.AVC_RB_COLOR)] == BLACK
                y = w32[avc_word(g, y, G.AVC_RB_PARENT)]
                steps += 1
            if bh < 0:
                bh = b
            elif b != bh:
                return TREE_BLACK_HEIGHT, nodes
        if rgt >= 0:  # in-order successor
            x = rgt
            while w32[avc_word(g, x, G.AVC_RB_LEFT)] >= 0:
                x = w32[avc_word(g, x, G.AVC_RB_LEFT)]
        else:
            while True:
                p = w32[avc_word(g, x, G.AVC_RB_PARENT)]
                if p < 0 or w32[avc_word(g, p, G.AVC_RB_LEFT)] == x:
                    x = p
                    break
                x = p
    return TREE_OK, nodes


@cached_njit
def interval_trees_check_c(w32: np.ndarray, g: np.ndarray, avs: np.ndarray, limits: np.ndarray,
                           verdict: np.ndarray, nodes: np.ndarray) -> None:
    """interval_tree_check_c for each anon_vma of ``avs``, into verdict[i] and nodes[i]."""
    for i in range(len(avs)):
        v, n = interval_tree_check_c(w32, g, avs[i], limits[i])
        verdict[i] = v
        nodes[i] = n

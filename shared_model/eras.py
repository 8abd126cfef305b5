"""What differs between kernel eras, in one place.

The walk, fork, fault and exit code asks the era, never ``if era == ...``:

* ``chain``: False = one anon_vma per fork family with the VMAs themselves on its list
  (2.6.33, ``anon_vma_link``); True = anon_vma_chain: every child gets its own anon_vma at
  fork and one AVC per anon_vma of its parent's chain (2.6.34+, ``anon_vma_fork``).
* ``lock_root``: the lock an rmap walk (and list changes) take is the root anon_vma's,
  i.e. one lock per fork family again (2.6.36+), instead of the anon_vma's own.
* ``lock``: the primitive of that lock: x86's ticket spinlock until 3.0, a sleeping mutex
  from 3.0 (``shared_model/locking``; ``--lock`` overrides it).
* ``spin``: the primitive of the era's plain spinlocks (page_table_lock, the slab and
  mapcount locks): ticket on the x86 of 2.6.25-4.1, qspinlock from 4.2 (x86;
  6.0 and modern).
* ``swapin``: where ``do_swap_page`` puts a page it maps for the first time
  (``page_add_anon_rmap`` -> ``__page_set_anon_rmap``): "keep" (``page->mapping =
  vma->anon_vma``: in 2.6.33 the family's one anon_vma; in the seed as committed,
  2.6.34-rc1 to -rc3, the faulting VMA's own, which the first process to fault a fully
  unmapped page back in decides: the oops of ``shared-swapin``), "oldest" (2.6.34/35,
  ea90002b0fa7: the oldest anon_vma of the faulting VMA's chain, even for a page still in
  the swap cache), "root" (2.6.36+, 288468c334e9: a page still ``PageAnon`` keeps its
  mapping; one read fresh from swap goes to ``vma->anon_vma->root``, or to
  ``vma->anon_vma`` when a write fault reuses it exclusively), "anon_exclusive" (5.19+:
  as "root", but ``try_to_unmap_one`` marks the swap PTE of an exclusive page
  (``pte_swp_mkexclusive``) and ``do_swap_page`` maps the page exclusive when that bit is
  set, read faults too: a fresh page goes to ``vma->anon_vma``; David Hildenbrand's
  anon-exclusive series for 5.19: 6c287605fd56, "mm: remember exclusively mapped
  anonymous pages with PG_anon_exclusive", and 1493a1913e34, "mm/swap: remember
  PG_anon_exclusive via a swp pte bit").  Every era: a write fault on a swapped page it
  may not reuse goes on to ``do_wp_page`` and copies.
* ``move_anon_rmap``: ``do_wp_page`` reusing a page only this process maps moves it to
  ``vma->anon_vma`` (``page_move_anon_rmap``, c44b674323f4, merged with the seed for
  2.6.34-rc1).
* ``lock_once``: ``anon_vma_clone`` and ``unlink_anon_vmas`` take the root lock once around
  the whole chain (``lock_anon_vma_root``, 3.0 as released) instead of once per AVC
  (2.6.36 .. 3.0-rc1).
* ``tree`` (3.7+): each anon_vma's AVCs are also indexed by an interval tree keyed by the
  VMA's pgoff range (``anon_vma_interval_tree``); a walk visits only the VMAs whose range
  holds the page's index (``shared_model/interval_tree.py``).
* ``reuse``: what lets ``anon_vma_clone`` reuse an anon_vma of the chain instead of
  ``anon_vma_fork`` allocating one: "none"; "degree" (3.19, 7a3ef208e662: degree < 2 and
  not the source VMA's own); "active" (6.0, 2555283eb40d: num_active_vmas == 0 and
  num_children < 2).
* ``rwsem_policy``: the hand-off of an rwsem rmap lock (3.8+): "fifo", 3.8 as merged (a
  releasing holder grants the lock to the queue head); "steal-behind-writer", 3.9 as
  committed (ce6711f3d196: a writer queues, then takes the free rwsem only when the first
  waiter is a writer; woken writers are woken, not granted); "steal", writer
  lock-stealing as 3.10-3.15 (a running writer takes a free rwsem ahead of every sleeper;
  no era uses it now); "spin-on-owner", 3.16-3.19 (steal, and a writer first spins while
  the owner runs, taking the lock unqueued: rwsem-xadd.c's rwsem_optimistic_spin); or
  "handoff", 6.0 and modern (kernel/locking/rwsem.c: writers spin, readers steal, and a
  first waiter robbed for RWSEM_WAIT_TIMEOUT sets the hand-off bit that stops stealing).
* ``rmap_trylock``: reclaim's page_referenced walk takes the rmap lock with a trylock and
  counts a contended page as referenced instead of waiting (6d4675e60135, 2022: 6.0 and modern).
* ``adjust_lock``: when ``vma_adjust`` takes the anon_vma lock of ``vma->anon_vma``
  (mm/mmap.c ``vma_adjust``): "insert" (2.6.33, 2.6.36 .. 3.0-rc1: only ``if
  (vma->anon_vma && (insert || importer || start != vma->vm_start))``, so a plain
  ``vm_end`` change such as brk's goes without it); "importer" (3.0.1: ``importer || start
  != vma->vm_start``, a split's insert no longer locks); "none" (2.6.34-rc1 and 2.6.34: no
  anon_vma lock at all, the range changes under mmap_sem alone; "add the proper locking to
  vma_adjust" came with 012f18004da in 2.6.36); "always" (3.7+: the interval
  tree's pre/post update needs it; ``vma->anon_vma``, or ``next->anon_vma`` when vma has
  none and next's start moves).
* ``merge_singular``: ``is_mergeable_anon_vma`` lets a side without an anon_vma merge only
  when the VMA's chain is singular (``list_is_singular(&vma->anon_vma_chain)``, 3.0+,
  965f55dea0e3 "mmap: avoid merging cloned VMAs", Shaohua Li, 2011-05-24, in 3.0-rc1);
  before 3.0 the plain ``!a1 || !a2 || a1 == a2`` (2.6.36's mm/mmap.c).
* ``clone_nowait``: ``anon_vma_clone`` allocates each AVC inside the root lock with
  ``GFP_NOWAIT | __GFP_NOWARN`` and, only when that fails, drops the lock and allocates
  with ``GFP_KERNEL`` (dd34739c03f2, 3.0; the same code in 3.9.6, and in 6.0.1 around the
  reuse test); before, every AVC was allocated first and the lock taken per AVC.
* ``self_ref``: the anon_vma's refcount counts the anon_vma itself (01d8b20dec5f, "mm:
  simplify anon_vma refcounts", merged with the mutex conversion for 3.0-rc1):
  ``anon_vma_alloc`` sets it to 1, ``unlink_anon_vmas`` drops that reference
  (``put_anon_vma``) once the anon_vma's list is empty, and each child anon_vma holds one
  on its root (``get_anon_vma(anon_vma->root)`` at fork).  Every drop is a plain
  ``atomic_dec_and_test`` without a lock; the one that reaches 0 frees the anon_vma
  (``__put_anon_vma``: a child's last drop also puts the root's reference, freeing the
  root when that was its last).  linux-3.0.1, 3.8.13 and 6.0.1 mm/rmap.c
  ``anon_vma_alloc``/``__put_anon_vma``/``unlink_anon_vmas`` and include/linux/rmap.h
  ``get_anon_vma``/``put_anon_vma`` read the same.  Before (2.6.36), the refcount counted
  only the child anon_vmas, and the last was dropped under the root's spinlock
  (``drop_anon_vma``: ``atomic_dec_and_lock``), where the root's own list was tested;
  a sleeping mutex cannot be taken that way, so every mutex and rwsem era has it.
* ``fixed``, ``commit``: what the era's change fixed and the kernel commit that made it
  (the ``eras`` table).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Era:
    name: str
    chain: bool
    lock_root: bool
    lock: str
    summary: str
    spin: str = "ticket"
    swapin: str = "keep"
    move_anon_rmap: bool = False
    lock_once: bool = False
    tree: bool = False
    reuse: str = "none"
    rwsem_policy: str = "fifo"
    rmap_trylock: bool = False
    adjust_lock: str = "insert"
    merge_singular: bool = True
    clone_nowait: bool = True
    self_ref: bool = False
    fixed: str = ""
    commit: str = ""

    @property
    def seed_placement(self) -> bool:
        """The seed as committed: a page's first mapping after a swap-in goes to the
        faulting VMA's own anon_vma, so a shared page a child faults back first loses its
        other mappings to every walk, then dangles when the child exits (its oops)."""
        return self.chain and self.swapin == "keep"

    @property
    def anon_vma_free_relock(self) -> bool:
        """``anon_vma_free`` takes and drops the root's lock whenever it sees it held, so
        that a ``page_lock_anon_vma`` that found the anon_vma under RCU cannot be left
        holding a freed one (3.0: ``mutex_is_locked``, 88c22088bf23, with the mutex; 3.8+:
        ``rwsem_is_locked``): the eras whose anon_vma lock sleeps."""
        return self.lock in ("mutex", "rwsem")


ERAS: dict[str, Era] = {
    e.name: e
    for e in (  # adjust_lock "always" from 3.7: set below with the tree
        Era("2.6.33", chain=False, lock_root=False, lock="ticket",
            summary="one anon_vma per fork family; VMAs on its list; its spinlock",
            merge_singular=False, clone_nowait=False),
        Era("2.6.34-rc1", chain=True, lock_root=False, lock="ticket",
            summary="the seed as committed: anon_vma_chain; a swapped-in page goes to the "
                    "faulting VMA's own anon_vma",
            swapin="keep", move_anon_rmap=True, adjust_lock="none", merge_singular=False,
            clone_nowait=False),
        Era("2.6.34", chain=True, lock_root=False, lock="ticket",
            summary="anon_vma_chain as released: a swapped-in page goes to the chain's oldest "
                    "anon_vma",
            swapin="oldest", move_anon_rmap=True, adjust_lock="none", merge_singular=False,
            clone_nowait=False),
        Era("2.6.36", chain=True, lock_root=True, lock="ticket",
            summary="anon_vma_chain with anon_vma->root: the family's root spinlock",
            swapin="root", move_anon_rmap=True, merge_singular=False, clone_nowait=False),
        Era("3.0-rc1", chain=True, lock_root=True, lock="mutex",
            summary="as 2.6.36, the root lock a sleeping mutex, still taken once per AVC",
            swapin="root", move_anon_rmap=True, clone_nowait=False),
        Era("3.0", chain=True, lock_root=True, lock="mutex",
            summary="as 2.6.36, the root lock a sleeping mutex, taken once per clone/unlink pass",
            swapin="root", move_anon_rmap=True, lock_once=True, adjust_lock="importer"),
        Era("3.7", chain=True, lock_root=True, lock="mutex", tree=True,
            swapin="root", move_anon_rmap=True, lock_once=True,
            summary="as 3.0, each anon_vma's AVCs in an interval tree keyed by pgoff range"),
        Era("3.8", chain=True, lock_root=True, lock="rwsem", rwsem_policy="fifo", tree=True,
            swapin="root", move_anon_rmap=True, lock_once=True,
            summary="the root lock becomes an rwsem: walks read, fork/exit/prepare write; "
                    "strict FIFO hand-off",
            fixed="NUMA-balancing migration walks queued behind each other on the mutex",
            commit="5a505085f043, 4fc3f1d66b1e"),
        Era("3.9", chain=True, lock_root=True, lock="rwsem", rwsem_policy="steal-behind-writer",
            tree=True, swapin="root", move_anon_rmap=True, lock_once=True,
            summary="as 3.8, with rwsem writer lock-stealing behind a writer at the queue's head",
            fixed="AIM7 fork_test -50% from 3.8's strict FIFO writer hand-off",
            commit="ce6711f3d196"),
        Era("3.19", chain=True, lock_root=True, lock="rwsem", rwsem_policy="spin-on-owner",
            tree=True,
            reuse="degree", swapin="root", move_anon_rmap=True, lock_once=True,
            summary="interval tree, root rwsem; anon_vma_clone reuses an anon_vma with degree < 2",
            fixed="endless growth of the anon_vma hierarchy under fork-and-exit chains",
            commit="7a3ef208e662"),
        Era("6.0", chain=True, lock_root=True, lock="rwsem", spin="qspinlock",
            rwsem_policy="handoff", tree=True,
            reuse="active", rmap_trylock=True, swapin="anon_exclusive", move_anon_rmap=True, lock_once=True,
            summary="degree split into num_children and num_active_vmas (CVE-2022-42703 fix); "
                    "reclaim already trylocks the rmap lock (6d4675e60135, 2022)",
            fixed="CVE-2022-42703: 3.19's degree let an anon_vma still in use be reused",
            commit="2555283eb40d"),
        Era("modern", chain=True, lock_root=True, lock="rwsem", spin="qspinlock",
            rwsem_policy="handoff", rmap_trylock=True, tree=True, reuse="active",
            swapin="anon_exclusive", move_anon_rmap=True, lock_once=True,
            summary="reclaim's walk trylocks the root rwsem; a contended page counts as "
                    "referenced and is skipped",
            fixed="reclaim stuck waiting for the rmap lock behind fork/exit/migration",
            commit="6d4675e60135"),
    )
}

# What the eras without a fixed= of their own fixed, and their commits: kept apart from their lines above so
# that edits to those lines merge cleanly.
_HISTORY = {
    "2.6.33": ("(the seed's baseline: object-based anon rmap, one anon_vma per family)",
               "pre-git (2.6.7)"),
    "2.6.34-rc1": ("O(N) walks of a fork family's one anon_vma list (the seed's pileup)",
                   "5beb4930525"),
    "2.6.34": (("the seed's oops: a page a child faulted back in first pointed at the child's "
                "anon_vma, unreachable from the parent and freed at the child's exit"),
               "5beb4930525 + ea90002b0fa7"),
    "2.6.36": ("migration/munmap needing one lock over all of a VMA's anon_vmas",
               "5c341ee1dfc, 012f18004da; swap-in: 288468c334e9, ad8c2ee801ad"),
    "3.0-rc1": ("non-preemptible mm_take_all_locks and mmu_gather under the spinlock",
                "2b575eb64f7a"),
    "3.0": ("exim -52% at 40 cores: 3.0-rc1's mutex taken once per AVC at fork and exit",
            "bb4aa39676f7, eee2acbae955, dd34739c03f2"),
    "3.7": ("irrelevant VMAs on every walk after mprotect splits a VMA into thousands",
            "bf181b9f9d8d"),
}
for _name, _era in ERAS.items():  # 3.7+: vma_adjust always locks (the interval tree)
    if _era.tree:
        ERAS[_name] = dataclasses.replace(_era, adjust_lock="always")
for _name, _era in ERAS.items():  # 3.0-rc1+: the anon_vma's own reference (01d8b20dec5f)
    if _era.lock in ("mutex", "rwsem"):
        ERAS[_name] = dataclasses.replace(_era, self_ref=True)
for _name, (_fixed, _commit) in _HISTORY.items():
    if _name in ERAS and not ERAS[_name].fixed:
        ERAS[_name] = dataclasses.replace(ERAS[_name], fixed=_fixed, commit=_commit)


# Era.adjust_lock as the compiled code's geometry entry (ctx.ADJUST_LOCK).
ADJUST_NONE, ADJUST_INSERT, ADJUST_IMPORTER, ADJUST_ALWAYS = 0, 1, 2, 3
ADJUST_CODES = {"none": ADJUST_NONE, "insert": ADJUST_INSERT, "importer": ADJUST_IMPORTER,
                "always": ADJUST_ALWAYS}

# Era.reuse as the compiled code's geometry entry (ctx.REUSE).
REUSE_NONE, REUSE_DEGREE, REUSE_ACTIVE = 0, 1, 2
REUSE_CODES = {"none": REUSE_NONE, "degree": REUSE_DEGREE, "active": REUSE_ACTIVE}


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise ValueError(f"unknown era {name!r} (choose from {', '.join(ERAS)})") from None

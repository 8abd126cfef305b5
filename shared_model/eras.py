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
  mapcount locks): ticket on the x86 of 2.6.25-4.1.
* ``rwsem_policy``: the hand-off of an rwsem rmap lock (3.8+): "fifo", 3.8 as merged (a
  releasing holder grants the lock to the queue head), or "steal", writer lock-stealing
  (3.9+: a running writer takes a free rwsem ahead of the sleepers).
* ``rmap_trylock``: reclaim's page_referenced walk takes the rmap lock with a trylock and
  counts a contended page as referenced instead of waiting (modern, 5.18+).
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
    rwsem_policy: str = "fifo"
    rmap_trylock: bool = False
    fixed: str = ""
    commit: str = ""


ERAS: dict[str, Era] = {
    e.name: e
    for e in (
        Era("2.6.33", chain=False, lock_root=False, lock="ticket",
            summary="one anon_vma per fork family; VMAs on its list; its spinlock"),
        Era("2.6.34", chain=True, lock_root=False, lock="ticket",
            summary="anon_vma_chain: each child its own anon_vma; the page's anon_vma spinlock"),
        Era("2.6.36", chain=True, lock_root=True, lock="ticket",
            summary="anon_vma_chain with anon_vma->root: the family's root spinlock"),
        Era("3.0", chain=True, lock_root=True, lock="mutex",
            summary="as 2.6.36, the root lock becomes a sleeping mutex"),
        Era("3.8", chain=True, lock_root=True, lock="rwsem", rwsem_policy="fifo",
            summary="the root lock becomes an rwsem: walks read, fork/exit/prepare write; "
                    "strict FIFO hand-off",
            fixed="NUMA-balancing migration walks queued behind each other on the mutex",
            commit="5a505085f043, 4fc3f1d66b1e"),
        Era("3.9", chain=True, lock_root=True, lock="rwsem", rwsem_policy="steal",
            summary="as 3.8, with rwsem writer lock-stealing",
            fixed="AIM7 fork_test -50% from 3.8's strict FIFO writer hand-off",
            commit="ce6711f3d196"),
        Era("modern", chain=True, lock_root=True, lock="rwsem", spin="qspinlock",
            rwsem_policy="steal", rmap_trylock=True,
            summary="reclaim's walk trylocks the root rwsem; a contended page counts as "
                    "referenced and is skipped",
            fixed="reclaim stuck waiting for the rmap lock behind fork/exit/migration",
            commit="6d4675e60135"),
    )
}

# What the eras before 3.8 fixed, and their commits: kept apart from their lines above so
# that edits to those lines merge cleanly.
_HISTORY = {
    "2.6.33": ("(the seed's baseline: object-based anon rmap, one anon_vma per family)",
               "pre-git (2.6.7)"),
    "2.6.34": ("O(N) walks of a fork family's one anon_vma list (the seed's pileup)",
               "5beb4930525"),
    "2.6.36": ("migration/munmap needing one lock over all of a VMA's anon_vmas",
               "5c341ee1dfc, 012f18004da"),
    "3.0": ("non-preemptible mm_take_all_locks and mmu_gather under the spinlock",
            "2b575eb64f7a"),
}
for _name, (_fixed, _commit) in _HISTORY.items():
    if _name in ERAS and not ERAS[_name].fixed:
        ERAS[_name] = dataclasses.replace(ERAS[_name], fixed=_fixed, commit=_commit)


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise ValueError(f"unknown era {name!r} (choose from {', '.join(ERAS)})") from None

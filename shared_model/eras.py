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
* ``tree`` (3.7+): each anon_vma's AVCs are also indexed by an interval tree keyed by the
  VMA's pgoff range (``anon_vma_interval_tree``); a walk visits only the VMAs whose range
  holds the page's index (``shared_model/interval_tree.py``).
* ``reuse``: what lets ``anon_vma_clone`` reuse an anon_vma of the chain instead of
  ``anon_vma_fork`` allocating one: "none"; "degree" (3.19, 7a3ef208e662: degree < 2 and
  not the source VMA's own); "active" (6.0, 2555283eb40d: num_active_vmas == 0 and
  num_children < 2).
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
    tree: bool = False
    reuse: str = "none"


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
        Era("3.7", chain=True, lock_root=True, lock="mutex", tree=True,
            summary="as 3.0, each anon_vma's AVCs in an interval tree keyed by pgoff range"),
        Era("3.19", chain=True, lock_root=True, lock="rwsem", tree=True, reuse="degree",
            summary="interval tree, root rwsem; anon_vma_clone reuses an anon_vma with degree < 2"),
        Era("6.0", chain=True, lock_root=True, lock="rwsem", tree=True, reuse="active",
            summary="degree split into num_children and num_active_vmas (CVE-2022-42703 fix)"),
    )
}


# Era.reuse as the compiled code's geometry entry (ctx.REUSE).
REUSE_NONE, REUSE_DEGREE, REUSE_ACTIVE = 0, 1, 2
REUSE_CODES = {"none": REUSE_NONE, "degree": REUSE_DEGREE, "active": REUSE_ACTIVE}


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise ValueError(f"unknown era {name!r} (choose from {', '.join(ERAS)})") from None

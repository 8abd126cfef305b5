"""Build the forking-server model: a parent maps P anonymous pages, touches them all, forks
N children, and each child writes a fraction F of its pages (COW).

This is the seed commit's workload ("1000 children that each COW 1000 pages") and the
starting state of the stress scenarios.  Built by one process (the parent) before any CPU
worker starts, with the same operations the workers use (vectorised over page ranges).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import psutil

from .eras import Era, get_era
from .layout import Capacities
from .memory import do_anonymous_pages, do_mmap, do_wp_pages, dup_mmap, mm_alloc
from .model import Model

MAP_START = 0  # vpn of the family's mapping


class ModelTooLarge(ValueError):
    """The model would not fit in the memory (or /dev/shm) available."""


@dataclasses.dataclass(frozen=True)
class Family:
    parent: int
    children: list[int]
    vma: int  # the parent's VMA


def family_capacities(era: Era | str, users: int, pages: int, cow: float, cpus: int,
                      spare_users: int = 0) -> Capacities:
    """Records needed for ``build_family`` plus ``spare_users`` more children forked later
    (each COWing all its pages), and ``cpus`` per-CPU slots (plus one for the builder)."""
    era = get_era(era) if isinstance(era, str) else era
    kids = users + spare_users
    mms = kids + 1
    cowed = math.ceil(cow * pages) * users + pages * spare_users
    if era.chain:
        anon_vmas = mms + 1
        avcs = 2 * kids + 1
    else:
        anon_vmas = 2
        avcs = 1
    return Capacities(
        mms=mms,
        vmas=mms + 1,
        anon_vmas=anon_vmas,
        avcs=avcs,
        pages=pages + cowed + 64,
        ptrs_per_mm=pages,
        cpus=cpus + 1,
    )


def check_fits(caps: Capacities) -> None:
    """Refuse, before anything is created, a segment larger than free memory or /dev/shm."""
    need = caps.nbytes()
    avail = psutil.virtual_memory().available
    try:
        st = os.statvfs("/dev/shm")
        shm_free = st.f_bavail * st.f_frsize
    except OSError:
        shm_free = avail
    limit = min(avail, shm_free)
    if need > 0.8 * limit:
        raise ModelTooLarge(
            f"the model needs {need / 2**30:.2f} GiB of shared memory but only "
            f"{limit / 2**30:.2f} GiB is available (memory or /dev/shm); use fewer users or pages"
        )


def build_family(m: Model, users: int, pages: int, cow: float, seed: int = 0) -> Family:
    """Parent maps and touches ``pages`` pages, forks ``users`` children; each child writes
    round(cow * pages) of its pages, chosen by ``seed``."""
    return _build(m, np.random.default_rng(seed), users, pages, cow)


def _build(m: Model, rng: np.random.Generator, users: int, pages: int, cow: float) -> Family:
    parent = mm_alloc(m)
    vma = do_mmap(m, parent, MAP_START, pages)
    do_anonymous_pages(m, parent, vma, np.arange(MAP_START, MAP_START + pages))
    children = [dup_mmap(m, parent) for _ in range(users)]
    ncow = round(cow * pages)
    if ncow:
        for child in children:
            cv = int(m.mm["vma_head"][child])
            if ncow == pages:
                vpns = np.arange(MAP_START, MAP_START + pages)
            else:
                vpns = MAP_START + np.sort(rng.choice(pages, ncow, replace=False))
            do_wp_pages(m, child, cv, vpns)
    return Family(parent, children, vma)

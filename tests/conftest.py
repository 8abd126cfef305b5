"""Shared fixtures: models built for a test and always checked and unlinked afterwards.

``make_model`` builds a ``Model`` sized by ``family_capacities`` (or given explicit
``Capacities``).  At teardown it runs ``check_model`` on every model it made, unless the
test opted out because it corrupts the model on purpose, then closes and unlinks the
segment.  ``no_leftover_segments`` (autouse) fails any test after which a segment created
by this process is still in /dev/shm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import pytest

from shared_model.build import family_capacities
from shared_model.invariants import check_model
from shared_model.layout import Capacities
from shared_model.model import Model
from shared_model.segment import SHM_PREFIX, leftover_segments


class MakeModel(Protocol):
    def __call__(
        self,
        era: str,
        users: int = ...,
        pages: int = ...,
        cow: float = ...,
        cpus: int = ...,
        *,
        spare_users: int = ...,
        caps: Capacities | None = ...,
        lock_kind: str | None = ...,
        check: bool = ...,
    ) -> Model: ...


def _own_segments() -> set[str]:
    """Segments in /dev/shm made by this process (other runs may share the machine)."""
    mine = f"{SHM_PREFIX}{os.getpid()}-"
    return {n for n in leftover_segments() if n.startswith(mine)}


@pytest.fixture(autouse=True)
def no_leftover_segments() -> Iterator[None]:
    before = _own_segments()
    yield
    left = _own_segments() - before
    assert left == set(), f"segments left in /dev/shm: {sorted(left)}"


@pytest.fixture
def make_model() -> Iterator[MakeModel]:
    """Factory: ``make_model(era, users=, pages=, cow=, cpus=1)`` -> a fresh Model.

    ``check=False`` opts that model out of the teardown ``check_model`` (for tests that
    corrupt it deliberately); ``caps`` overrides the family-sized capacities."""
    made: list[tuple[Model, bool]] = []

    def factory(
        era: str,
        users: int = 0,
        pages: int = 1,
        cow: float = 0.0,
        cpus: int = 1,
        *,
        spare_users: int = 0,
        caps: Capacities | None = None,
        lock_kind: str | None = None,
        check: bool = True,
    ) -> Model:
        if caps is None:
            caps = family_capacities(era, users, pages, cow, cpus, spare_users)
        m = Model.create(caps, era, lock_kind=lock_kind, entry_cost_ns=0)
        made.append((m, check))
        return m

    yield factory

    problems: list[str] = []
    for m, check in made:
        try:
            if check:
                violations = check_model(m)
                if violations:
                    problems.append(f"{m!r}: {violations}")
        except Exception as e:  # noqa: BLE001 - reported below; every segment still goes
            problems.append(f"check_model raised {e!r}")
        finally:
            seg = m.seg
            m.close()
            seg.unlink()
    assert problems == [], "check_model found violations at teardown"

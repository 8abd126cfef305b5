"""The lock-order edges shared_model/rmap.py's tree allows, for the tests that check what a
run's lockdep recorded (``--check-lock-order``)."""

from __future__ import annotations

from shared_model.rmap import LOCK_ORDER_PATHS


def allowed_edges() -> set[tuple[str, str]]:
    """(held class, taken class) for every class before another on one of the tree's paths:
    lockdep records an edge from each class held, not only the innermost."""
    return {(path[i], path[j]) for path in LOCK_ORDER_PATHS
            for i in range(len(path)) for j in range(i + 1, len(path))}

"""The lock-order tree at the top of shared_model/rmap.py, checked against what runs record.

The tree is written twice, as prose (the comment, copied into docs/locks.md) and as data
(``rmap.LOCK_ORDER_PATHS``): both are read here and must give the same paths.  Then short
runs with ``--check-lock-order`` (lockdep: an edge from every class held to the class
taken) of the fork-heavy scenarios, in the eras whose rmap lock differs (2.6.33's own
spinlock, 3.0's root mutex taken once per chain with the slab under it, 6.0's root rwsem
and qspinlocks), record only edges the tree allows: a held class before the taken one on
one of its paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _helpers.lock_order import allowed_edges

from shared_model.layout import LOCK_CLASSES
from shared_model.rmap import LOCK_ORDER_PATHS
from stress.engine.config import RunConfig
from stress.engine.runner import run

ROOT = Path(__file__).resolve().parents[3]
TREE_INTRO = "that nest them"  # the line above the model's tree in rmap.py's header


def tree_paths(lines: list[str]) -> set[tuple[str, ...]]:
    """The paths from the top to each leaf of an indented tree (a name, two spaces or more,
    its description; a description's continuation lines start at the description's column),
    as the lockdep classes on them."""
    nodes: list[tuple[int, str]] = []
    desc_col = None
    for line in lines:
        text = line.rstrip()
        body = text.lstrip()
        indent = len(text) - len(body)
        if not body or (desc_col is not None and indent >= desc_col):
            continue
        name = re.split(r"\s{2,}", body)[0]
        if desc_col is None:
            desc_col = indent + len(body) - len(body[len(name):].lstrip())
        nodes.append((indent, name))
    paths = set()
    stack: list[tuple[int, str]] = []
    for i, (indent, name) in enumerate(nodes):
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, name))
        if i + 1 == len(nodes) or nodes[i + 1][0] <= indent:  # a leaf
            paths.add(tuple(n for _, n in stack if n in LOCK_CLASSES))
    return paths


def rmap_tree() -> list[str]:
    """The model's tree from rmap.py's header comment, without the comment marks."""
    lines = (ROOT / "shared_model/rmap.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if TREE_INTRO in line) + 2  # then "#"
    out = []
    for line in lines[start:]:
        if not line.startswith("#") or not line[1:].strip():
            break
        out.append(line[1:])
    return out


def docs_tree() -> list[str]:
    """The same tree as docs/locks.md copies it (its first code block)."""
    text = (ROOT / "docs/locks.md").read_text()
    return text.split("```\n", 2)[1].splitlines()


def test_the_tree_as_prose_and_as_data_say_the_same() -> None:
    prose = tree_paths(rmap_tree())
    assert ("anon_vma", "ptl", "swap_lock") in prose  # the parse found the tree
    assert prose == set(LOCK_ORDER_PATHS)
    assert len(LOCK_ORDER_PATHS) == len(set(LOCK_ORDER_PATHS))
    assert tree_paths(docs_tree()) == prose
    assert {c for path in LOCK_ORDER_PATHS for c in path} == set(LOCK_CLASSES)


def test_the_tree_allows_what_it_draws_and_nothing_else() -> None:
    allowed = allowed_edges()
    assert {("anon_vma", "ptl"), ("anon_vma", "swap_lock"), ("ptl", "swap_lock"),
            ("anon_vma", "slab"), ("ptl", "ptl")} == allowed
    assert ("ptl", "anon_vma") not in allowed and ("slab", "ptl") not in allowed


@pytest.mark.parametrize("era", ["2.6.33", "3.0", "6.0"])
@pytest.mark.parametrize("scenario", ["fork-test", "exim"])
def test_every_edge_a_run_records_is_in_the_tree(era: str, scenario: str) -> None:
    res = run(RunConfig(era=era, scenario=scenario, users=4, pages=8, cpus=2, duration=0.4,
                        check_lock_order=True))
    assert res["invariants"]["violations"] == 0, res["invariants"]["messages"]
    lo = res["lock_order"]
    assert lo["checked"] is True and lo["findings"] == []
    edges = {(e["held"], e["taken"]): e["sites"] for e in lo["edges"]}
    assert ("ptl", "ptl") in edges  # every fork: copy_page_range, the child's ptl then the parent's
    outside = {edge: sites for edge, sites in edges.items() if edge not in allowed_edges()}
    assert outside == {}, f"{era} {scenario}: edges outside rmap.py's lock-order tree: {outside}"

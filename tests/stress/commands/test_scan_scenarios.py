"""``scan --scenario fork-chain`` and ``--scenario mprotect-split``: the JSON contract and
exact counts (derived as in tests/shared_model/test_later_eras.py), and one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def rmap(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stress", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("era", "levels"), [("2.6.36", [2, 3, 4, 5, 6, 7]), ("3.19", [2, 3, 3, 3, 3, 3]),
                                             ("6.0", [2, 3, 3, 3, 3, 3])])
def test_fork_chain_json(tmp_path, era: str, levels: list[int]) -> None:
    out = tmp_path / "fc.json"
    p = rmap("scan", "--era", era, "--scenario", "fork-chain", "--generations", "6", "--pages", "4",
             "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rmap-stress-scan/2"
    assert doc["config"] == {"era": era, "scenario": "fork-chain", "generations": 6, "pages": 4, "lock": ""}
    assert doc["model"] == {"mms": 1, "vmas": 1, "anon_vmas": levels[-1], "avcs": levels[-1], "pages": 4}
    g = doc["generations"]
    assert g["count"] == 6 and g["anon_vmas"] == levels and g["avcs"] == levels and g["vmas"] == [1] * 6
    assert len(g["fork_ns"]) == len(g["walk_ns"]) == 6 and all(t > 0 for t in g["fork_ns"])
    assert g["walk_visited"] == [4] * 6  # each page mapped once, its VMA the only entry
    assert doc["stopped"] is None
    assert "fork-chain" in p.stdout and "anon_vmas per VMA" in p.stdout


@pytest.mark.parametrize(("era", "avg", "nodes"), [("3.0", 20 + 21 / 2, None), ("3.7", 2.0, True)])
def test_mprotect_split_json(tmp_path, era: str, avg: float, nodes: bool | None) -> None:
    """K = 20 one-page pieces, N = 1 child: a list walk for piece j visits K + j + 1
    entries (average K + (K + 1) / 2); a tree walk visits the 2 VMAs that hold the page."""
    out = tmp_path / "ms.json"
    p = rmap("scan", "--era", era, "--scenario", "mprotect-split", "--pieces", "20", "--users", "1",
             "--pages", "20", "--json", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    w = doc["walks"]
    assert doc["model"] == {"mms": 2, "vmas": 40, "anon_vmas": 21, "avcs": 60, "pages": 20}
    assert w["count"] == 20 and w["avg_visited"] == avg
    if nodes:
        assert w["avg_nodes_examined"] >= 2.0 and w["max_nodes_examined"] < 40
    else:
        assert w["nodes_examined"] == w["vmas_visited"]


@pytest.mark.parametrize(("args", "rule"), [
    (["scan", "--scenario", "nope"], "unknown scan scenario 'nope'"),
    (["scan", "--scenario", "fork-chain", "--generations", "0"], "--generations must be a positive count"),
    (["scan", "--scenario", "mprotect-split", "--pieces", "0"], "--pieces must be between 1 and --pages"),
    (["scan", "--scenario", "mprotect-split", "--pieces", "200", "--pages", "100"], "--pieces"),
    (["run", "--scenario", "fork-chain"], "fork-chain is a scan scenario"),
])
def test_bad_input_one_line(args: list[str], rule: str) -> None:
    p = rmap(*args)
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert rule in line and "Traceback" not in p.stderr

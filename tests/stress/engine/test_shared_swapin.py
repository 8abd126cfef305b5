"""shared-swapin: the seed's oops (stress/engine/workloads/shared_swapin.py), counted exactly.

A parent with P pages and N children sharing them without COW; every page unmapped and
faulted back in children first; reclaim again; the children exit.  Under 2.6.34-rc1's
placement (``page->mapping = vma->anon_vma`` on the first mapping) each page goes to the
first child's anon_vma: the parent's and the other N - 1 children's mappings are lost
(N per page), try_to_unmap leaves every page mapped, and after the exits every page points
at the first child's freed anon_vma: one walk per page meets it in scan's reclaim pass.
Every other era: nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared_model.eras import ERAS
from stress.commands.scan import scan_scenario, scan_scenario_report
from stress.engine.config import RunConfig

N, P = 5, 3


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("order", ["child-first", "parent-first"])
def test_shared_swapin_counts(era: str, order: str) -> None:
    res = scan_scenario(RunConfig(era=era, scenario="shared-swapin", users=N, pages=P, refault_order=order))
    sb = res["seed_bug"]
    assert sb["refault_order"] == order
    if era == "2.6.34-rc1" and order == "child-first":
        assert (sb["unreachable_mappings"], sb["pages_not_unmapped"], sb["pages_freed_anon_vma"],
                sb["walks_freed_anon_vma"]) == (N * P, P, P, P)
        # the parent (mm 0) maps page 0 at vpn 0; the first child to fault (the last forked,
        # child-first is reverse mm order) owned the anon_vma
        assert sb["example"]["mm"] == 0 and sb["example"]["vpn"] == 0
        msgs = res["invariants"]["messages"]
        assert res["invariants"]["violations"] == 2
        assert any("not found by an rmap walk" in m for m in msgs)
        assert any("freed anon_vma" in m for m in msgs)
        text = scan_scenario_report(res)
        assert f"{N * P} mappings became unreachable" in text and "freed anon_vma" in text
    else:
        assert (sb["unreachable_mappings"], sb["pages_not_unmapped"], sb["pages_freed_anon_vma"],
                sb["walks_freed_anon_vma"]) == (0, 0, 0, 0)
        assert sb["example"] == {} and res["invariants"]["violations"] == 0
        assert "seed bug: none" in scan_scenario_report(res)
    assert res["model"]["mms"] == 1  # the children exited


def rmap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stress", *args], check=False, capture_output=True,
                          text=True, timeout=300)


def test_run_shared_swapin_exits_1_on_the_seed_and_0_after_the_fix(tmp_path: Path) -> None:
    got = {}
    for era in ("2.6.34-rc1", "2.6.34"):
        out = tmp_path / f"{era}.json"
        p = rmap("run", "--era", era, "--scenario", "shared-swapin", "--users", "6", "--pages", "4",
                 "--cpus", "1", "--duration", "0.3", "--quiet", "--json", str(out))
        assert "Traceback" not in p.stderr
        got[era] = (p.returncode, json.loads(out.read_text()), p.stdout)
    rc, doc, text = got["2.6.34-rc1"]
    sb = doc["seed_bug"]
    assert rc == 1 and doc["config"]["refault_order"] == "child-first"
    assert (sb["unreachable_mappings"], sb["pages_not_unmapped"], sb["pages_freed_anon_vma"]) == (6 * 4, 4, 4)
    assert sb["walks_freed_anon_vma"] > 0 and sb["example"]["mm"] == 0
    assert "mappings became unreachable" in text and "not a model fault" in text
    # The children share every page whatever --cow says (default 1.0): the header says so.
    assert doc["config"]["cow"] == 0.0 and "cow 0.0" in text and "cow 1.0" not in text
    rc, doc, text = got["2.6.34"]
    assert rc == 0 and doc["invariants"]["violations"] == 0
    assert doc["seed_bug"]["pages_freed_anon_vma"] == doc["seed_bug"]["walks_freed_anon_vma"] == 0
    assert "seed bug: none" in text


def test_run_report_counts_walks_that_met_a_freed_anon_vma(tmp_path: Path) -> None:
    """cve-2022-42703 on 3.19 leaves a page->mapping dangling: the report says how many
    reclaim walks met the freed anon_vma (no seed_bug section there to say it)."""
    out = tmp_path / "cve.json"
    p = rmap("run", "--era", "3.19", "--scenario", "cve-2022-42703", "--cpus", "1", "--duration",
             "0.3", "--quiet", "--json", str(out))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    doc = json.loads(out.read_text())
    n = doc["throughput"]["rmap_freed_anon_vma"]
    assert n > 0 and "seed_bug" not in doc
    assert f"rmap walks that met a freed anon_vma: {n} " in p.stdout


def test_scan_scenario_exits_1_with_the_counts_and_a_bad_order_is_refused() -> None:
    p = rmap("scan", "--scenario", "shared-swapin", "--era", "2.6.34-rc1", "--users", "3", "--pages", "2")
    assert p.returncode == 1 and "6 mappings became unreachable" in p.stdout
    p = rmap("scan", "--scenario", "shared-swapin", "--era", "2.6.36", "--users", "3", "--pages", "2")
    assert p.returncode == 0 and "seed bug: none" in p.stdout
    p = rmap("scan", "--refault", "read", "--refault-order", "sideways")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr

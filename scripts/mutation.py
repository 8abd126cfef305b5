#!/usr/bin/env python3
"""Mutation testing: how many deliberate bugs the tests catch.

    python scripts/mutation.py                      # mutmut, every pure module below
    python scripts/mutation.py stress/commands/ramp.py   # one module
    python scripts/mutation.py --budget 600 --jobs 1 stress/engine/metrics.py
    python scripts/mutation.py --scripted           # the compiled core's scripted mutations
    python scripts/mutation.py --scripted --named shared_model/pgtable.py
    python scripts/mutation.py --scripted --only "black-height" --json out.json

``--scripted`` (see SCRIPTED below): hand-written mutations of the compiled core (the lock
primitives, page tables, interval tree, VMA merges, invariants, swap-in era rules, the swap
device, the compile cache) and of the analysis modules; each mutant is compiled in a
scratch copy, then the module's older tests run ("before"), then the tests
added for the compiled core ("new"), each run bounded by ``--timeout``; the table gives, per module,
the mutants killed by an assertion before and after, and those that were not.  Minutes of
2 busy cores per mutant of compiled code (an edit under shared_model/ recompiles it all);
a mutant of a plain Python function under shared_model/ (invariants' rules, mmap's merge
tests, the swap device's Python side) or of stress/ reuses the unmutated tree's compiled
code from the cache (seconds).  Every mutation's text is checked against the tree before
anything runs.  ``--tests a.py,b.py`` runs those files instead of the module's selection
(does a test written for a survivor kill it?).

The rest of this header is about the mutmut mode.

For each module, a scratch copy of the project is made under a temporary folder (so the
working tree and its pyproject stay as they are), mutmut (a dev extra) is configured there to
mutate only that module and to run only the fast tests that cover it, and the run is bounded
by ``--budget`` seconds.  Printed per module: mutants killed, survived, untested (no test
reached the function) and not run (budget spent), and the score

    score = killed / (killed + survived + untested)

over the mutants that were run.  The surviving mutants' names are printed; show one with
``cd FOLDER && mutmut show NAME`` (the folder is printed and kept with ``--keep``).

mutmut 3 mutates function bodies only: module-level tables (``ERAS``, ``SCENARIOS``) are
not mutated, so a module that is mostly data (``shared_model/eras.py``) has few mutants.
Not part of CI: a full pass takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Module -> the fast tests (no worker processes, no CLI subprocesses) that exercise it.
TESTS: dict[str, list[str]] = {
    "stress/engine/metrics.py": ["tests/stress/engine/test_metrics.py"],
    "stress/commands/ramp.py": ["tests/stress/commands/test_ramp.py"],
    "stress/analysis/sweeps.py": ["tests/stress/commands/test_ramp.py", "tests/stress/commands/test_scale.py",
                                  "tests/stress/analysis/test_analysis_values.py"],
    "stress/analysis/compare.py": ["tests/stress/analysis/test_compare.py"],
    "stress/analysis/report.py": ["tests/stress/analysis/test_report.py", "tests/stress/analysis/test_compare.py"],
    "stress/engine/config.py": ["tests/stress/engine/test_config.py"],
    "shared_model/eras.py": ["tests/shared_model/test_eras.py",
                             "tests/shared_model/test_scan_arithmetic.py"],
}
COPY = ("shared_model", "stress", "tests", "pyproject.toml")


def scratch_copy(module: str, tests: list[str]) -> Path:
    """A copy of the project whose pyproject configures mutmut for ``module`` only."""
    root = Path(tempfile.mkdtemp(prefix=f"mutation-{Path(module).stem}-"))
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    conf = {
        "source_paths": ["shared_model", "stress"],
        "only_mutate": [module],
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"],
        "pytest_add_cli_args_test_selection": tests,
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in conf.items()]
    with open(root / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    return root


def run_module(module: str, budget: float, jobs: int, keep: bool,
               tests: list[str] | None = None) -> dict[str, object]:
    tests = [t for t in (tests or TESTS[module]) if (REPO / t.split("::")[0]).exists()]
    if not tests:
        return {"module": module, "error": "no fast tests cover it"}
    root = scratch_copy(module, tests)
    t0 = time.monotonic()
    mutmut = shutil.which("mutmut") or "mutmut"
    finished = True
    with open(root / "mutmut.log", "w") as log:
        proc = subprocess.Popen([mutmut, "run", "--max-children", str(jobs)], cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            finished = False
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: mutmut and its workers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.monotonic() - t0
    subprocess.run([mutmut, "export-cicd-stats"], check=False, cwd=root, capture_output=True, text=True)
    stats_path = root / "mutants" / "mutmut-cicd-stats.json"
    if not stats_path.exists():
        tail = (root / "mutmut.log").read_text()[-2000:]
        out: dict[str, object] = {"module": module, "error": "mutmut produced no results", "log": tail}
    else:
        s = json.loads(stats_path.read_text())
        killed = s["killed"] + s["timeout"] + s["segfault"]
        survived = s["survived"] + s["suspicious"]
        untested = s["no_tests"]
        ran = killed + survived + untested
        res = subprocess.run([mutmut, "results"], check=False, cwd=root, capture_output=True, text=True)
        survivors = [ln.split(":")[0].strip() for ln in res.stdout.splitlines()
                     if ln.strip().endswith(("survived", "suspicious"))]
        untested_in = sorted({ln.split("__mutmut_")[0].split(".x_")[-1]
                              for ln in res.stdout.splitlines() if ln.strip().endswith("no tests")})
        out = {"module": module, "tests": tests, "total": s["total"], "killed": killed,
               "survived": survived, "untested": untested, "not_run": s["total"] - ran - s["skipped"],
               "score": killed / ran if ran else None, "finished": finished,
               "wall_s": round(wall, 1), "survivors": survivors,
               "untested_functions": untested_in}
    if keep:
        out["folder"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return out



# ---------------------------------------------------------------------------- scripted mutations
#
# mutmut cannot mutate the compiled core usefully: a numba function's body is compiled from
# its source, and an edit anywhere under shared_model/ recompiles every function (the source
# key, locking/numba_hooks.py), about a minute on 2 shared cores.  So each scripted mutation is one
# hand-written, semantically important edit (a kernel rule broken the way a rewrite could
# break it), run in a scratch copy: compile (warm_up), then the module's tests as they were
# older tests ("before"), then the tests added for the compiled core ("new").  Outcomes per run:
#
#   killed    a test failed on an assertion (or the compile refused the mutant); a LockLab
#             wait that ran out is one (LabDeadline, an AssertionError saying what it
#             waited for and what it saw), marked "bounded wait" in the results
#   deadline  the first failure was a bare TimeoutError (a wait that says nothing)
#   hang      the run outlived --timeout and was killed: caught only by an outer timeout
#   survived  every test passed
#
# "killed before" counts the mutants the old selection killed by an assertion; "killed
# after" those killed by an assertion in the old or the new selection.


@dataclasses.dataclass(frozen=True)
class Mutation:
    module: str
    name: str
    old: str
    new: str
    named: bool = False  # one of the 16 named mutations (the lock and page-table rules first listed)


COMPILE_S = 1500.0  # a cold compile of the whole model on 2 busy cores
LOCK_OLD = ["tests/shared_model/locking/test_spinlocks.py", "tests/shared_model/locking/test_mutex.py",
            "tests/shared_model/locking/test_rwsem.py"]
LOCK_NEW = ["tests/shared_model/locking/test_lock_order.py"]
RWSEM_NEW = ["tests/shared_model/locking/test_rwsem_spin_handoff.py"]
TREE_OLD = ["tests/shared_model/test_later_eras.py", "tests/shared_model/test_reference_later.py"]
CORE_NEW = ["tests/shared_model/test_core_checks.py", "tests/shared_model/test_invariant_rules.py"]
ANALYSIS_NEW = ["tests/stress/analysis/test_analysis_values.py"]

# module -> (older tests, tests added for the compiled core)
SCRIPTED_TESTS: dict[str, tuple[list[str], list[str]]] = {
    "shared_model/locking/ticket.py": (LOCK_OLD, LOCK_NEW),
    "shared_model/locking/qspinlock.py": (LOCK_OLD, LOCK_NEW),
    "shared_model/locking/mutex.py": (LOCK_OLD, LOCK_NEW),
    "shared_model/locking/rwsem.py": (LOCK_OLD, LOCK_NEW + RWSEM_NEW),
    "shared_model/locking/rwsem_queue.py": (LOCK_OLD, LOCK_NEW + RWSEM_NEW),
    "shared_model/locking/numba_hooks.py": (["tests/shared_model/locking/test_compile.py"],
                                            ["tests/shared_model/locking/test_numba_hooks.py"]),
    "shared_model/pgtable.py": (["tests/shared_model/test_pgtable.py"], CORE_NEW),
    "shared_model/interval_tree.py": (TREE_OLD, CORE_NEW),
    "shared_model/mmap.py": (TREE_OLD, CORE_NEW),
    "shared_model/invariants.py": (["tests/shared_model/test_invariants.py", "tests/shared_model/test_pgtable.py",
                                    "tests/shared_model/test_later_eras.py"], CORE_NEW),
    "shared_model/invariants_later.py": (["tests/shared_model/test_later_eras.py"], CORE_NEW),
    "shared_model/swap_state.py": (["tests/shared_model/test_swapin.py"], CORE_NEW),
    "shared_model/anon_vma.py": (["tests/shared_model/test_anon_vma.py", "tests/shared_model/test_later_eras.py"],
                                 CORE_NEW),
    "shared_model/anon_vma_chain.py": (["tests/shared_model/test_anon_vma.py",
                                        "tests/shared_model/test_later_eras.py"], CORE_NEW),
    "shared_model/swapdev.py": (["tests/shared_model/test_swapdev.py", "tests/stress/engine/test_swapio.py"], CORE_NEW),
    "stress/analysis/predict.py": (["tests/stress/analysis/test_predict.py"], ANALYSIS_NEW),
    "stress/commands/scale.py": (["tests/stress/commands/test_scale.py"], ANALYSIS_NEW),
    "stress/analysis/sweeps.py": (["tests/stress/commands/test_scale.py"], ANALYSIS_NEW),
    "stress/commands/story.py": (["tests/stress/commands/test_eras_locking.py"], ANALYSIS_NEW),
}

M = Mutation
SCRIPTED: list[Mutation] = [
    # ticket.py
    M("shared_model/locking/ticket.py", "slowpath waits for the ticket after its own",
      "        if serving == ticket:\n            return LOCK_CONTENDED",
      "        if serving == ticket + 1:\n            return LOCK_CONTENDED", named=True),
    M("shared_model/locking/ticket.py", "abandoned tickets never skipped",
      "        if READ_ONCE(words, word) & mask == 0:\n            return\n",
      "        if True:\n            return\n"),
    M("shared_model/locking/ticket.py", "uncontended unlock serves one ticket too many",
      "    smp_store_release(words, w + SERVING, serving)\n    word, mask = _abandoned_bit(w, serving)",
      "    smp_store_release(words, w + SERVING, serving + 1)\n    word, mask = _abandoned_bit(w, serving)"),
    M("shared_model/locking/ticket.py", "trylock ignores waiters",
      "    if READ_ONCE(words, w + NEXT) != serving:\n        return False",
      "    if False:\n        return False"),
    # qspinlock.py
    M("shared_model/locking/qspinlock.py", "mcs_pass_head hands the head to an abandoned node",
      "        if cmpxchg(words, succ + STATE, WAITING, HEAD) == WAITING:\n            return",
      "        smp_store_release(words, succ + STATE, HEAD)\n        if True:\n            return", named=True),
    M("shared_model/locking/qspinlock.py", "a passed-over node is never marked SKIPPED",
      "        if cur != node:\n            smp_store_release(words, cur + STATE, SKIPPED)\n        succ",
      "        succ"),
    M("shared_model/locking/qspinlock.py", "a stopped waiter leaves without marking its node",
      "            if cmpxchg(words, node + STATE, WAITING, ABANDONED) == WAITING:\n"
      "                atomic_fetch_add(words, w + QUEUED, -1)\n                return LOCK_STOPPED",
      "            if True:\n"
      "                atomic_fetch_add(words, w + QUEUED, -1)\n                return LOCK_STOPPED"),
    M("shared_model/locking/qspinlock.py", "an abandoned node is reused at once",
      "    while idx < NODES_PER_CPU and READ_ONCE(words, node_w + idx * NODE_WORDS + STATE) \\\n            == ABANDONED:",
      "    while idx < NODES_PER_CPU and READ_ONCE(words, node_w + idx * NODE_WORDS + STATE) \\\n            == -1:"),
    # mutex.py
    M("shared_model/locking/mutex.py", "mutex_unlock never wakes a sleeper",
      "    if READ_ONCE(words, w + SLEEPERS) > 0:\n        atomic_fetch_add(words, w + WAKE_SEQ, 1)\n"
      "        futex_wake(words, w + WAKE_SEQ, 1)",
      "    pass", named=True),
    M("shared_model/locking/mutex.py", "mutex_unlock bumps the sequence but makes no futex_wake",
      "        futex_wake(words, w + WAKE_SEQ, 1)\n",
      "        pass\n"),
    M("shared_model/locking/mutex.py", "sleepers are not counted",
      "    atomic_fetch_add(words, w + SLEEPERS, 1)\n    last_owner = 0",
      "    last_owner = 0"),
    M("shared_model/locking/mutex.py", "a dead owner is never taken over",
      "        if owner == last_owner and not pid_alive(owner_pid(owner)):",
      "        if False:"),
    # rwsem_queue.py, rwsem.py
    M("shared_model/locking/rwsem_queue.py", "only the first of a run of queued readers is granted",
      "    while cur != 0 and READ_ONCE(words, cur - 1 + TYPE) == READER:",
      "    while cur != 0 and n == 0 and READ_ONCE(words, cur - 1 + TYPE) == READER:", named=True),
    M("shared_model/locking/rwsem.py", "a newcomer reader passes the queue",
      "    while c & (WRITER | WAITING) == 0:",
      "    while c & WRITER == 0:"),
    M("shared_model/locking/rwsem_queue.py", "the last reader out hands nothing to the queue",
      "    if c & HOLDERS == 0 and c & WAITING:",
      "    if False:"),
    M("shared_model/locking/rwsem_queue.py", "FIFO grants the head writer without WRITER in count",
      "            found = cmpxchg(words, w + COUNT, c, c | WRITER)\n            if found == c:\n"
      "                # The holder is named at once",
      "            found = c\n            if found == c:\n                # The holder is named at once"),
    M("shared_model/locking/rwsem.py", "a 6.0 writer spins though NONSPINNABLE is set",
      "    if policy == RWSEM_HANDOFF and READ_ONCE(words, w + OWNER_FLAGS) & NONSPINNABLE:\n"
      "        return _NOT_TAKEN\n",
      ""),
    M("shared_model/locking/rwsem_queue.py", "the last reader out leaves NONSPINNABLE set",
      "        if policy == RWSEM_HANDOFF:\n            clear_nonspinnable(words, w)\n",
      ""),
    M("shared_model/locking/rwsem.py", "the hand-off waiter spins on an owner that sleeps",
      "        if READ_ONCE(words, owner_run_word(node_w, my_tag, owner)) != RUN_RUNNING:\n"
      "            return False\n",
      ""),
    # numba_hooks.py: the source-keyed cache
    M("shared_model/locking/numba_hooks.py", "the source-tree hash reads no file",
      "        for path in files:\n", "        for path in []:\n", named=True),
    # pgtable.py
    M("shared_model/pgtable.py", "pte_lockptr_c gives two PTE pages one split lock",
      "((pe - g[G.PTE0]) // PTE_WORDS) * 8", "((pe - g[G.PTE0]) // (2 * PTE_WORDS)) * 8", named=True),
    M("shared_model/pgtable.py", "_populate_c leaks its block when the entry was populated first",
      "        return kmem_cache_free_one(words, w32, g, held, k, b, sc)\n    return G.OK",
      "        return G.OK\n    return G.OK", named=True),
    M("shared_model/pgtable.py", "_populate_c does not recheck the entry under the lock",
      "    if words[ew] == 0:\n        smp_store_release(words, ew, b + 1)",
      "    if True:\n        smp_store_release(words, ew, b + 1)"),
    M("shared_model/pgtable.py", "free_pgtables leaves the PTE pages",
      "                words[pmd_b + k] = 0\n                if kmem_cache_free_one(words, w32, g, held, G.K_PTE, pte, sc) < 0:",
      "                words[pmd_b + k] = 0\n                if False:"),
    # interval_tree.py
    M("shared_model/interval_tree.py", "black-height check disabled",
      "            elif b != bh:\n                return TREE_BLACK_HEIGHT, nodes",
      "            elif False:\n                return TREE_BLACK_HEIGHT, nodes", named=True),
    M("shared_model/interval_tree.py", "red-red check disabled",
      "if w32[avc_word(g, x, G.AVC_RB_COLOR)] == RED and w32[avc_word(g, c, G.AVC_RB_COLOR)] == RED:",
      "if False:"),
    M("shared_model/interval_tree.py", "rb_subtree_last check disabled",
      "        if m != w32[avc_word(g, x, G.AVC_RB_LAST)]:", "        if False:"),
    M("shared_model/interval_tree.py", "insert fixup ignores a red uncle",
      "        if not _is_black(w32, g, u):", "        if False:"),
    # mmap.py
    M("shared_model/mmap.py", "is_mergeable_anon_vma treats two AVCs as one",
      "vma < 0 or _chain_len(m, vma) <= 1)", "vma < 0 or _chain_len(m, vma) <= 2)", named=True),
    M("shared_model/mmap.py", "is_mergeable_anon_vma: any two anon_vmas merge",
      "    return av1 == av2\n", "    return True\n"),
    M("shared_model/mmap.py", "vma_merge after prev ignores pgoff",
      "int(m.vma[\"vm_pgoff\"][vma]) + _vma_pages(m, vma) == pgoff",
      "int(m.vma[\"vm_pgoff\"][vma]) + _vma_pages(m, vma) >= pgoff - 1000"),
    # invariants_later.py, rules 9-12
    M("shared_model/invariants_later.py", "rule 9 disabled",
      'dangling = mapped[av["in_use"][mapping[mapped]] != 1]', 'dangling = mapped[av["in_use"][mapping[mapped]] == 7]'),
    M("shared_model/invariants_later.py", "rule 10: empty ranges pass",
      "empty = live_vma[end[live_vma] <= start[live_vma]]", "empty = live_vma[end[live_vma] < start[live_vma]]"),
    M("shared_model/invariants_later.py", "rule 10: overlaps pass",
      "np.flatnonzero(start[n] < end[v])", "np.flatnonzero(start[n] < start[v])"),
    M("shared_model/invariants_later.py", "rule 11 disabled",
      "wrong = np.flatnonzero(have != want[live_av])", "wrong = np.flatnonzero(have != have)", named=True),
    M("shared_model/invariants_later.py", "rule 11: degree counts the VMAs only",
      'checks = (("degree", users + children),)', 'checks = (("degree", users + 0 * children),)'),
    M("shared_model/invariants_later.py", "rule 12 disabled",
      "    if m.era.tree and len(live_av):", "    if False:", named=True),
    M("shared_model/invariants_later.py", "rule 12: a tree missing nodes passes",
      "(verdict == TREE_OK) & (nodes != limits)", "(verdict == TREE_OK) & (nodes > limits)"),
    # invariants.py, rule 13
    M("shared_model/invariants.py", "rule 13: a live mm without pgd passes",
      "nopgd = live_mm[pgd[live_mm] < 0]", "nopgd = live_mm[pgd[live_mm] < -1]"),
    M("shared_model/invariants.py", "rule 13: a block reached twice passes",
      "        if len(uniq) < len(reached):", "        if False:"),
    M("shared_model/invariants.py", "rule 13: one leaked block passes",
      "        if leaked > 0:", "        if leaked > 1:"),
    # swap_state.py: the era rules of swap-in
    M("shared_model/swap_state.py", "2.6.34's swap-in uses vma->anon_vma->root",
      "        av = oldest_anon_vma_c(w32, g, vma)",
      "        av = w32[av_word(g, av, G.AV_ROOT)]", named=True),
    M("shared_model/swap_state.py", "the oldest AVC is the newest (the VMA's own anon_vma)",
      "        a = w32[ab + G.AVC_SAME_VMA_NEXT]\n    return av", "        a = -1\n    return av"),
    M("shared_model/swap_state.py", "2.6.36+: an exclusive write fault goes to the root",
      "        if not exclusive:\n", "        if True:\n"),
    M("shared_model/swap_state.py", "2.6.36+: a swap-cache hit is moved too",
      "        if not fresh:\n            return", "        if False:\n            return"),
    # anon_vma_chain.py and anon_vma.py: the era rules of fork and of the reuse counters
    M("shared_model/anon_vma_chain.py", "2.6.36+: anon_vma_fork takes no reference on the root",
      "    if g[G.LOCK_ROOT]:\n        get_anon_vma_c(w32, g, w32[_av(g, av, G.AV_ROOT)])",
      "    if False:\n        get_anon_vma_c(w32, g, w32[_av(g, av, G.AV_ROOT)])"),
    M("shared_model/anon_vma.py", "6.0: a new root does not count its self-parent link",
      "        if allocated:\n            w32[_av(g, av, G.AV_NUM_CHILDREN)] += 1",
      "        if False:\n            w32[_av(g, av, G.AV_NUM_CHILDREN)] += 1"),
    # swapdev.py
    M("shared_model/swapdev.py", "SwapIO.wait ignores the writer's slot time",
      "        until = max(self.writes(), self.reads())", "        self.writes()\n        until = self.reads()",
      named=True),
    M("shared_model/swapdev.py", "SwapIO.wait ignores the reads",
      "        until = max(self.writes(), self.reads())", "        self.reads()\n        until = self.writes()"),
    M("shared_model/swapdev.py", "SwapIO.wait never sleeps",
      "        if self.enabled:\n            io_schedule_until", "        if False:\n            io_schedule_until"),
    # stress/analysis/predict.py
    M("stress/analysis/predict.py", "predicted throughput equal to the measured one",
      "    thr = measured_thr * q.acquisitions_per_s / measured_x if measured_x else 0.0",
      "    thr = measured_thr", named=True),
    M("stress/analysis/predict.py", "measured acquisitions per second use the CPU count, not the time",
      "    measured_x = lt.acquisitions / elapsed if elapsed else 0.0",
      "    measured_x = lt.acquisitions / lt.cpus if elapsed else 0.0"),
    M("stress/analysis/predict.py", "the wait share's relative error inverted",
      '"wait_share_error": relative_error(q.wait_share, lt.wait_share)',
      '"wait_share_error": relative_error(lt.wait_share, q.wait_share)'),
    # stress/commands/scale.py
    M("stress/commands/scale.py", "CSV: predicted and measured wait share swapped",
      'extra = [q["repairman"]["wait_share"], q["measured"]["wait_share"]]',
      'extra = [q["measured"]["wait_share"], q["repairman"]["wait_share"]]', named=True),
    # stress/analysis/sweeps.py (scale's summary)
    M("stress/analysis/sweeps.py", "summary: the linear line from the 1-CPU point's total",
      "                base = thr / n\n", "                base = thr\n"),
    M("stress/analysis/sweeps.py", "summary: the ticket model's throughput as its wait share",
      'row[f"{model}_throughput"] = statistics.fmean(q[model]["throughput"] for q in preds)',
      'row[f"{model}_throughput"] = statistics.fmean(q[model]["wait_share"] for q in preds)'),
    # stress/commands/story.py
    M("stress/commands/story.py", "fork_test headline ratio inverted",
      'f" ({ratio_text(prev, fps)})"', 'f" ({ratio_text(fps, prev)})"', named=True),
    M("stress/commands/story.py", "seed headline ratio inverted",
      "({ratio_text(pa, pb)})", "({ratio_text(pb, pa)})"),
    M("stress/commands/story.py", "exim headline change against the era itself",
      "(mps / base - 1)", "(base / mps - 1)"),
]
del M


def check_snippets(mutations: list[Mutation]) -> list[str]:
    """Why each mutation cannot be applied to the working tree as it is now: its text must
    occur exactly once in its module (the lock files change under other work; a mutation
    whose snippet moved fails loudly here, before any compile, instead of mutating
    nothing or the wrong place)."""
    problems = []
    for mu in mutations:
        n = (REPO / mu.module).read_text().count(mu.old)
        if n != 1:
            problems.append(f"{mu.module}: mutation {mu.name!r}: its text occurs {n} times, not once")
    return problems


FROZEN_ENV = "RMAP_STRESS_MUTANT_TREE_HASH"
# Put into the scratch copy's numba_hooks._tree_hash: with FROZEN_ENV set, the model's
# sources hash as the unmutated tree did, so its compiled code is loaded from the cache.
_FREEZE_OLD = "    key = (root, root.is_dir())\n"
_FREEZE_NEW = ("    if root == MODEL_ROOT and os.environ.get(\"" + FROZEN_ENV + "\"):\n"
               "        return os.environ[\"" + FROZEN_ENV + "\"]\n" + _FREEZE_OLD)
_COMPILED_DECORATORS = ("njit", "cfunc", "intrinsic", "jit")


def in_python_code(mu: Mutation) -> bool:
    """The mutation edits a plain Python function (no numba decorator, not numba_hooks):
    the compiled code is the unmutated tree's, so the mutant needs no recompile."""
    if mu.module.endswith("numba_hooks.py") or not mu.module.startswith("shared_model/"):
        return False
    src = (REPO / mu.module).read_text()
    line = src[: src.index(mu.old)].count("\n") + 1
    inner = None
    for node in ast.walk(ast.parse(src)):
        if (isinstance(node, ast.FunctionDef) and node.lineno <= line <= (node.end_lineno or 0)
                and (inner is None or node.lineno > inner.lineno)):
            inner = node
    if inner is None:
        return False  # module level: tables a compiled function may read as constants
    return not any(k in ast.unparse(d) for d in inner.decorator_list for k in _COMPILED_DECORATORS)


def _env(root: Path, frozen: str | None = None) -> dict[str, str]:
    """``frozen`` None: the scratch copy's own numba cache (a mutant of compiled code is
    keyed by its sources, so it never reuses the real cache; kept inside the copy, it goes
    with it).  Otherwise the real cache: "" for a mutant outside shared_model/ (the model's
    sources are unchanged), or the unmutated tree's hash for a mutant of plain Python code
    under shared_model/."""
    if frozen is None:
        return {**os.environ, "NUMBA_CACHE_DIR": str(root / "numba-cache")}
    return {**os.environ, FROZEN_ENV: frozen} if frozen else dict(os.environ)


def _freeze_hook(root: Path) -> str:
    """The scratch copy's unmutated model hash, then its numba_hooks patched to report
    that hash when FROZEN_ENV is set (an unchanged compiled core loads from the cache)."""
    code = "from shared_model.locking.numba_hooks import MODEL_ROOT, _tree_hash; print(_tree_hash(MODEL_ROOT))"
    tree_hash = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True,
                               text=True).stdout.strip()
    hooks = root / "shared_model/locking/numba_hooks.py"
    text = hooks.read_text()
    if text.count(_FREEZE_OLD) != 1:
        raise SystemExit(f"{hooks}: _tree_hash changed; the fast path for Python-only mutants needs updating")
    hooks.write_text(text.replace(_FREEZE_OLD, _FREEZE_NEW))
    return tree_hash


def _pytest(root: Path, tests: list[str], timeout: float, frozen: str | None = None) -> tuple[str, float, str]:
    """Run ``tests`` in ``root``: (outcome, seconds, the last lines of output)."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
           *tests]
    with open(root / "pytest.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=_env(root, frozen))
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pytest and its children
            proc.wait()
            return "hang", time.monotonic() - t0, ""
        except BaseException:  # interrupted (SIGTERM, ^C): leave no pytest running behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    out = (root / "pytest.log").read_text()
    tail = "\n".join(out.splitlines()[-6:])
    if rc == 0:
        return "survived", time.monotonic() - t0, tail
    if re.search(r"^FAILED .* - TimeoutError", out, re.MULTILINE):
        return "deadline", time.monotonic() - t0, tail
    if re.search(r"^FAILED .* - (shared_model\.locking\.locktorture\.)?LabDeadline", out, re.MULTILINE):
        tail = "[bounded wait] " + tail
    return "killed", time.monotonic() - t0, tail


def _compile(root: Path, timeout: float, frozen: str | None = None) -> str:
    """Compile the mutant into numba's cache in the scratch copy, every compiled function
    for its declared types, in parallel children, running none of them (warm_up would run
    them, and a mutant that wedges a lock wedged it: a hang counted before any test ran):
    "" when that worked, else why it failed (nothing runs, so running out of ``timeout``
    is a slow machine, not a hang)."""
    code = ("from shared_model.precompile import compile_in_children, model_dispatchers; "
            "compile_in_children(model_dispatchers())")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=_env(root, frozen))
    try:
        _, err = proc.communicate(timeout=timeout)
    except BaseException:  # the timeout, or an interrupted run: leave nothing behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if sys.exc_info()[0] is subprocess.TimeoutExpired:
            return f"compile not done in {timeout:.0f} s"
        raise
    return "" if proc.returncode == 0 else (err.strip().splitlines() or ["?"])[-1]


def run_scripted(mutations: list[Mutation], timeout: float, keep: bool, log: Callable[[str], None],
                 tests: list[str] | None = None) -> list[dict[str, object]]:
    """Each mutation compiled and tested in a scratch copy (one per module); ``tests``, when
    given, replaces the module's selection (run as the "new" tests, the old ones skipped):
    to see whether a test written for a survivor kills it."""
    out = []
    by_module: dict[str, list[Mutation]] = {}
    for mu in mutations:
        by_module.setdefault(mu.module, []).append(mu)
    for module, mus in by_module.items():
        old_tests, new_tests = ([], tests) if tests else SCRIPTED_TESTS[module]
        root = Path(tempfile.mkdtemp(prefix=f"mutation-{Path(module).stem}-"))
        for name in COPY:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, root / name)  # with __pycache__: numba's cache, still valid
            else:
                shutil.copy2(src, root / name)
        path = root / module
        original = path.read_text()
        try:
            model = module.startswith("shared_model/")
            tree_hash = _freeze_hook(root) if model and any(in_python_code(mu) for mu in mus) else ""
            for mu in mus:
                frozen = (tree_hash if in_python_code(mu) else None) if model else ""
                if original.count(mu.old) != 1:
                    raise SystemExit(f"{module}: mutation {mu.name!r}: its text occurs "
                                     f"{original.count(mu.old)} times, not once")
                path.write_text(original.replace(mu.old, mu.new))
                t0 = time.monotonic()
                r: dict[str, object] = {"module": module, "mutation": mu.name, "named": mu.named,
                                        "recompiled": frozen is None}
                why = _compile(root, COMPILE_S, frozen)  # stress/ or plain Python: loads the cache
                if why.startswith("compile not done"):
                    r.update(before="not run", after="not run", note=why)
                elif why:
                    r.update(before="killed", after="killed", note=f"does not compile: {why}")
                else:
                    r["compile_s"] = round(time.monotonic() - t0, 1)
                    before, t_old, tail_old = (_pytest(root, old_tests, timeout, frozen) if old_tests
                                               else ("not run", 0.0, ""))
                    new, t_new, tail_new = _pytest(root, new_tests, timeout, frozen)
                    r.update(before=before, new=new, old_s=round(t_old, 1), new_s=round(t_new, 1),
                             after="killed" if "killed" in (before, new) else
                             ("deadline" if "deadline" in (before, new) else
                              ("hang" if "hang" in (before, new) else "survived")))
                    if before not in ("survived", "not run"):
                        r["old_says"] = tail_old[-600:]
                    if new != "survived":
                        r["new_says"] = tail_new[-600:]
                out.append(r)
                log(f"{module}: {mu.name}: before {r['before']}, after {r['after']}"
                    + (f" ({r['note']})" if "note" in r else f" (new tests: {r.get('new')})"))
            path.write_text(original)
        finally:
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    return out


def scripted_table(results: list[dict[str, object]]) -> str:
    """module | mutations | killed before | killed after | survivors (by assertion only)."""
    head = (f"{'module':<34} {'mutations':>9} {'killed before':>14} {'killed after':>13} "
            f"{'score after':>11}  survivors")
    lines = [head]
    mods: dict[str, list[dict[str, object]]] = {}
    for r in results:
        mods.setdefault(str(r["module"]), []).append(r)
    for mod, rs in mods.items():
        kb = sum(r["before"] == "killed" for r in rs)
        ka = sum(r["after"] == "killed" for r in rs)
        surv = [str(r["mutation"]) for r in rs if r["after"] != "killed"]
        lines.append(f"{mod:<34} {len(rs):>9} {kb:>14} {ka:>13} {100 * ka / len(rs):>10.0f}%  "
                     + "; ".join(surv))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help="modules to mutate (default: every module of the table)")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per module (default 600)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--tests", help="comma-separated test selection instead of the table's (with "
                                    "--scripted: run instead of the module's old and new tests)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--scripted", action="store_true",
                    help="run the scripted mutations of the compiled core and the analysis modules "
                         "(all, or those of the modules named) instead of mutmut")
    ap.add_argument("--named", action="store_true", help="with --scripted: only the 16 named mutations")
    ap.add_argument("--others", action="store_true", help="with --scripted: all but the 16 named mutations")
    ap.add_argument("--only", action="append", default=[],
                    help="with --scripted: the mutations whose name contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="with --scripted: seconds per test run before it counts as a hang (default 180)")
    args = ap.parse_args()
    if args.scripted:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
        chosen = [mu for mu in SCRIPTED if (not args.modules or mu.module in args.modules)
                  and (mu.named or not args.named) and not (mu.named and args.others)
                  and (not args.only or any(o in mu.name for o in args.only))]
        if not chosen:
            print(f"mutation.py: error: no scripted mutation of {', '.join(args.modules)} "
                  f"(choose from {', '.join(SCRIPTED_TESTS)})", file=sys.stderr)
            return 2
        problems = check_snippets(chosen)
        if problems:
            print("mutation.py: error: " + "\nmutation.py: error: ".join(problems), file=sys.stderr)
            return 2
        results = run_scripted(chosen, args.timeout, args.keep, lambda line: print(line, flush=True),
                               args.tests.split(",") if args.tests else None)
        print(scripted_table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    args.modules = args.modules or list(TESTS)
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        print(f"mutation.py: error: no test list for {', '.join(unknown)} "
              f"(choose from {', '.join(TESTS)})", file=sys.stderr)
        return 2
    results = []
    for module in args.modules:
        r = run_module(module, args.budget, args.jobs, args.keep,
                       args.tests.split(",") if args.tests else None)
        results.append(r)
        if "error" in r:
            print(f"{module}: {r['error']}")
            continue
        score = "-" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"{module}: score {score}  killed {r['killed']}  survived {r['survived']}  "
              f"untested {r['untested']}  not run {r['not_run']} of {r['total']}  "
              f"({'finished' if r['finished'] else 'budget spent'}, {r['wall_s']} s)", flush=True)
        for name in r["survivors"]:
            print(f"    survived: {name}")
        if r["untested_functions"]:
            print(f"    no test reaches: {', '.join(r['untested_functions'])}")
        if "folder" in r:
            print(f"    folder: {r['folder']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

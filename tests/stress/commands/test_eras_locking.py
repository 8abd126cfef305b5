"""The lock-policy eras (3.8, 3.9, modern): which side of the root rwsem each path takes,
modern reclaim's trylock, and the fork-test and exim scenarios' exact lock counts.

Which side a path takes is shown with a second, real process: the test process holds
the family's root rwsem for reading (or writing) through a second CPU's view, and a
forked child runs the kernel path; a reader passes another reader without waiting, a
writer waits until the read hold is released (the child is seen in state ``wait`` on the
root's lock word first)."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from shared_model import ctx as G
from shared_model.build import build_family
from shared_model.eras import ERAS
from shared_model.invariants import check_model
from shared_model.layout import CPU_STATE, LS_ACQ, LS_CONT, PTE_YOUNG
from shared_model.locking import RWSEM, RWSEM_FIFO, RWSEM_HANDOFF, RWSEM_STEAL_39
from shared_model.locks import CLASS, SITE, lock_acquire_fast, lock_kind
from shared_model.memory import dup_mmap, exit_mmap
from shared_model.model import Model
from shared_model.rmap import page_referenced
from shared_model.vmscan import shrink_page_list
from stress.cli import main
from stress.commands.story import CHAPTERS, Chapter, era_row, eras_table, runnable, story
from stress.engine.config import ConfigError, RunConfig
from stress.engine.runner import run

AV = CLASS["anon_vma"]
LOCK_ERAS = ("3.8", "3.9", "modern")


def root_takes(era: str, chain: int) -> tuple[int, int]:
    """Root-lock acquisitions (at anon_vma_fork, at unlink_anon_vmas) of forking a process
    whose VMA's chain has ``chain`` AVCs, and of the child's exit.  The fork: anon_vma_clone
    links ``chain`` AVCs, under the root once (3.0+, lock_anon_vma_root) or once per AVC,
    then the child's own anon_vma is linked (1); the root reference is an atomic
    (get_anon_vma).  The exit: unlink_anon_vmas over ``chain + 1`` AVCs, once or per AVC;
    dropping the child anon_vma's reference on the root is an atomic (not the last)."""
    once = ERAS[era].lock_once
    return (1 if once else chain) + 1, 1 if once else chain + 1
HOLDER_CPU = 0  # the test process's second view, which holds the root
CHILD_CPU = 1  # the forked child that runs the kernel path
USERS, PAGES = 3, 4


def test_lock_policy_eras() -> None:
    e38, e39, mod = (ERAS[n] for n in LOCK_ERAS)
    assert [n for n in ERAS if ERAS[n].lock == "rwsem" and ERAS[n].reuse == "none"] == ["3.8", "3.9"]
    assert list(ERAS)[-1] == "modern"
    assert all(e.chain and e.lock_root and e.lock == "rwsem" for e in (e38, e39, mod))
    assert (e38.rwsem_policy, e39.rwsem_policy, mod.rwsem_policy) == ("fifo", "steal-behind-writer",
                                                                        "handoff")
    assert (e38.rmap_trylock, e39.rmap_trylock, mod.rmap_trylock) == (False, False, True)
    assert mod.spin == ERAS["6.0"].spin == "qspinlock" and e38.spin == e39.spin == "ticket"
    assert [ERAS[n].commit for n in LOCK_ERAS] == ["5a505085f043, 4fc3f1d66b1e", "ce6711f3d196",
                                                    "6d4675e60135"]
    assert all(e.fixed and e.commit for e in ERAS.values())
    # Earlier eras keep their defaults: no rwsem policy to speak of, no trylock.
    assert all(ERAS[n].rwsem_policy == "fifo" and not ERAS[n].rmap_trylock
               for n in ("2.6.33", "2.6.34", "2.6.36", "3.0"))


@pytest.mark.parametrize("era,policy,trylock", [("3.8", RWSEM_FIFO, 0), ("3.9", RWSEM_STEAL_39, 0),
                                                ("modern", RWSEM_HANDOFF, 1), ("3.0", RWSEM_FIFO, 0)])
def test_geometry_carries_the_policy(make_model, era: str, policy: int, trylock: int) -> None:  # type: ignore[no-untyped-def]
    m = make_model(era, users=0, pages=1, cpus=1)
    assert m.g[G.RWSEM_POLICY] == policy
    assert m.g[G.RMAP_TRYLOCK] == trylock
    assert m.g[G.KIND0 + AV] == lock_kind(ERAS[era].lock)


def test_eras_table_rows() -> None:
    rows = {r["era"]: r for r in (era_row(e) for e in ERAS.values())}
    assert rows["3.8"]["primitive"] == "rwsem (FIFO hand-off)"
    assert rows["3.9"]["primitive"] == "rwsem (writer lock-stealing behind a writer)"
    assert rows["3.19"]["primitive"] == "rwsem (writer lock-stealing, spinning on the owner)"
    assert rows["modern"]["walk"].endswith("reclaim trylocks")
    assert rows["2.6.33"]["linking"] == "VMAs on the anon_vma's list"
    assert rows["2.6.34"]["lock"] == "page's anon_vma's" and rows["2.6.36"]["lock"] == "root anon_vma's"
    text = eras_table()
    assert text.splitlines()[0].split() == ["era", "linking", "walk", "lock", "primitive", "swap-in",
                                            "to", "what", "it", "fixed", "commit"]
    # the seed as committed against the release (ea90002b0fa7) and 6.0's exclusive swap PTE
    assert rows["2.6.34-rc1"]["swapin"] == "faulting VMA's own"
    assert rows["2.6.34"]["swapin"] == "oldest anon_vma"
    assert rows["2.6.34-rc1"]["commit"] == "5beb4930525" and "ea90002b0fa7" in rows["2.6.34"]["commit"]
    assert rows["6.0"]["swapin"] == "root's; own if exclusive"
    assert len(text.splitlines()) == 2 + len(ERAS)


# ---------------------------------------------------------------------------- read / write sides


def _family(make_model, era: str) -> tuple[Model, Model, list[int], int]:  # type: ignore[no-untyped-def]
    """A family of USERS children sharing the parent's PAGES pages (no COW: every page on
    the root's list); the builder's model, a second CPU's view of it, the users, and the
    root's lock word."""
    m = make_model(era, users=USERS, pages=PAGES, cow=0.0, cpus=2, spare_users=2)
    fam = build_family(m, USERS, PAGES, 0.0)
    holder = Model(m.seg, m.era, HOLDER_CPU)
    root = int(m.av_root[int(m.vma_anon_vma[fam.vma])])
    return m, holder, fam.children, m.anon_vma_lock_word(root)


def _wait_for(m: Model, cpu: int, lock_w: int, timeout: float = 60.0) -> None:
    """Until CPU ``cpu`` is seen waiting on lock word ``lock_w``."""
    slot = m.seg["cpu"][cpu]
    deadline = time.monotonic() + timeout
    while not (slot["state"] == CPU_STATE["wait"] and slot["wait_lock"] == lock_w):
        assert time.monotonic() < deadline, "the child never waited for the root's lock"
        time.sleep(0.001)


def _ls(m: Model, cpu: int, site: str) -> tuple[int, int]:
    """(acquisitions, contentions) of the anon_vma lock at ``site`` in ``cpu``'s slot."""
    row = m.seg["lockstat"][cpu, AV, SITE[site]]
    return int(row[LS_ACQ]), int(row[LS_CONT])


@pytest.mark.parametrize("era", LOCK_ERAS)
def test_walk_takes_the_read_side(make_model, spawn, era: str) -> None:  # type: ignore[no-untyped-def]
    """With the root held for reading elsewhere, page_referenced walks every page at once:
    readers share.  Held for writing, the walk waits (seen waiting on the root) until the
    writer leaves; page_referenced itself is never a trylock, in any era."""
    m, holder, _, root_w = _family(make_model, era)
    pages = np.flatnonzero(m.page_mapping >= 0)
    assert len(pages) == PAGES
    t = holder.locks.acquire(root_w, AV, SITE["anon_vma_fork"], 1)  # read
    for p in pages:
        assert page_referenced(m, int(p))[1] == USERS + 1  # the root's list: parent + users
    holder.locks.release(root_w, AV, SITE["anon_vma_fork"], t, 1)
    assert _ls(m, m.cpu, "page_referenced") == (PAGES, 0)

    t = holder.locks.acquire(root_w, AV, SITE["anon_vma_fork"], 0)  # write
    child = spawn(m, lambda cm, *_: [page_referenced(cm, int(p)) for p in pages] and None, CHILD_CPU)
    _wait_for(m, CHILD_CPU, root_w)
    holder.locks.release(root_w, AV, SITE["anon_vma_fork"], t, 0)
    assert child.join() == 0
    assert _ls(m, CHILD_CPU, "page_referenced") == (PAGES, 1)
    assert m.seg["cpu"][CHILD_CPU]["walks"] == PAGES
    assert check_model(m) == []


@pytest.mark.parametrize("era", LOCK_ERAS)
def test_fork_and_exit_take_the_write_side(make_model, spawn, era: str) -> None:  # type: ignore[no-untyped-def]
    """A fork waits for a reader to leave the root (a writer excludes readers), and so does
    the exit; each of their root acquisitions is a write, counted exactly: a fork of a
    user (chain: its anon_vma and the root) and its exit (see root_takes)."""
    m, holder, users, root_w = _family(make_model, era)
    t = holder.locks.acquire(root_w, AV, SITE["page_referenced"], 1)  # read

    def fork_and_exit(cm: Model, *_: int) -> None:
        exit_mmap(cm, dup_mmap(cm, users[0]))

    child = spawn(m, fork_and_exit, CHILD_CPU)
    _wait_for(m, CHILD_CPU, root_w)
    holder.locks.release(root_w, AV, SITE["page_referenced"], t, 1)
    assert child.join() == 0
    fork, unlink = root_takes(era, 2)
    assert _ls(m, CHILD_CPU, "anon_vma_fork") == (fork, 1)
    assert _ls(m, CHILD_CPU, "unlink_anon_vmas") == (unlink, 0)
    assert m.seg["cpu"][CHILD_CPU]["t_wait_ns"] > 0
    assert check_model(m) == []


def test_modern_reclaim_skips_a_contended_page(make_model) -> None:  # type: ignore[no-untyped-def]
    """modern: with the root held for writing, shrink_page_list walks nothing: every page
    is counted scanned, skipped as referenced (nothing unmapped, young bits untouched) and
    counted in rmap_trylock_fail; held for reading, the trylock succeeds and it walks."""
    m, holder, _, root_w = _family(make_model, "modern")
    m.pte_flags[:] &= ~PTE_YOUNG  # cold: a walk would unmap every page
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    slot = m.seg["cpu"][m.cpu]
    t = holder.locks.acquire(root_w, AV, SITE["anon_vma_fork"], 0)  # write
    assert shrink_page_list(m, lru, 0, len(lru), refault=False) == len(lru)
    holder.locks.release(root_w, AV, SITE["anon_vma_fork"], t, 0)
    assert (slot["rmap_trylock_fail"], slot["pages_scanned"], slot["walks"], slot["pages_unmapped"]) == (
        PAGES, PAGES, 0, 0)
    assert (m.page_mapcount[lru] == USERS + 1).all()
    assert _ls(m, m.cpu, "page_referenced") == (0, 0)

    t = holder.locks.acquire(root_w, AV, SITE["anon_vma_fork"], 1)  # read: shared
    assert shrink_page_list(m, lru, 0, len(lru), refault=True) == len(lru)
    holder.locks.release(root_w, AV, SITE["anon_vma_fork"], t, 1)
    assert (slot["rmap_trylock_fail"], slot["pages_scanned"], slot["walks"]) == (PAGES, 2 * PAGES, 2 * PAGES)
    assert slot["pages_unmapped"] == PAGES and slot["refaults"] == PAGES * (USERS + 1)
    assert check_model(m) == []


def test_non_trylock_eras_count_no_trylock_failures(make_model) -> None:  # type: ignore[no-untyped-def]
    m, *_ = _family(make_model, "3.9")
    lru = np.flatnonzero(m.page_mapping >= 0).astype(np.int64)
    assert shrink_page_list(m, lru, 0, len(lru), refault=True) == len(lru)
    slot = m.seg["cpu"][m.cpu]
    assert (slot["rmap_trylock_fail"], slot["pages_scanned"]) == (0, PAGES)
    assert m.g[G.KIND0 + AV] == RWSEM
    assert check_model(m) == []


# ---------------------------------------------------------------------------- scenarios


def _lock_row(res: dict, cls: str = "anon_vma") -> dict:  # type: ignore[type-arg]
    return next(r for r in res["locks"] if r["class"] == cls)


def _taken(res: dict, site: str) -> int:  # type: ignore[type-arg]
    """anon_vma acquisitions at ``site`` over the whole run: the lock table is the measured
    window's, the operation counters final (each CPU finishes the operation it is in)."""
    return res["acquisitions_whole_run"]["anon_vma"].get(site, 0)


@pytest.mark.parametrize("era,reclaim", [("3.8", False), ("3.9", True)])
def test_fork_test_counts(era: str, reclaim: bool) -> None:
    """fork-test: every fork of a user is followed by its exit; per fork the root is taken
    root_takes(era, 2) times (a user's chain is its anon_vma and the root), all writes.
    Reclaim scans pages only with --reclaim (AIM7's fork_test has none)."""
    res = run(RunConfig(era=era, scenario="fork-test", users=2, pages=8, cpus=2, duration=0.5,
                        reclaim=reclaim))
    t = res["throughput"]
    assert res["invariants"]["violations"] == 0
    assert t["forks"] == t["exits"] == t["jobs"] > 0 and t["alloc_failures"] == 0
    assert t["forks_per_s"] == pytest.approx(t["forks"] / res["elapsed_s"])
    fork, unlink = root_takes(era, 2)
    assert _taken(res, "anon_vma_fork") == fork * t["forks"]
    assert _taken(res, "unlink_anon_vmas") == unlink * t["forks"]
    assert (t["pages_scanned"] > 0) == reclaim and t["rmap_trylock_fail"] == 0
    assert res["model"]["mms"] == 3  # the children are all gone


@pytest.mark.parametrize("era", ["2.6.36", "3.0"])
def test_exim_counts(era: str) -> None:
    """exim: per message a connection process forked off a daemon (chain 2) and a delivery
    process off it (chain 3), both exiting: root_takes(era, 2) + root_takes(era, 3) per
    message (2.6.36: 3 + 4 at fork, 3 + 4 at exit; 3.0: 2 + 2 and 1 + 1)."""
    res = run(RunConfig(era=era, scenario="exim", users=2, pages=8, cpus=2, duration=0.5))
    t = res["throughput"]
    assert res["invariants"]["violations"] == 0
    assert t["alloc_failures"] == 0 and t["jobs"] > 0
    assert t["forks"] == t["exits"] == 2 * t["jobs"]
    # Each writes 4 pages: a copy each, unless reclaim had the page swapped out meanwhile.
    assert 0 < t["cows"] <= 2 * 4 * t["jobs"]
    (f2, u2), (f3, u3) = root_takes(era, 2), root_takes(era, 3)
    assert _taken(res, "anon_vma_fork") == (f2 + f3) * t["jobs"]
    assert _taken(res, "unlink_anon_vmas") == (u2 + u3) * t["jobs"]


def test_modern_run_reports_trylock_failures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    assert main(["run", "--era", "modern", "--scenario", "fork-test", "--reclaim", "--users", "2",
                 "--pages", "8",
                 "--cpus", "2", "--duration", "0.5", "--quiet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    t = doc["throughput"]
    assert 0 <= t["rmap_trylock_fail"] <= t["pages_scanned"]
    assert t["forks"] == t["exits"] > 0
    assert doc["invariants"]["violations"] == 0


def test_scenario_config_errors() -> None:
    with pytest.raises(ConfigError, match="fork-test needs at least one user per CPU"):
        RunConfig(scenario="fork-test", users=1, cpus=2).validate()
    with pytest.raises(ConfigError, match="exim needs at least one user per CPU"):
        RunConfig(scenario="exim", users=1, cpus=2).validate()
    RunConfig(scenario="exim", users=2, cpus=2).validate()


# ---------------------------------------------------------------------------- CLI, story


def test_eras_command(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "eras.json"
    assert main(["eras", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ce6711f3d196" in text and "writer lock-stealing" in text
    doc = json.loads(out.read_text())
    assert [r["era"] for r in doc["eras"]] == list(ERAS)


def test_story_skips_what_is_not_registered() -> None:
    ch = Chapter("x", "no-such-scenario", ("3.8", "3.9"), {}, lambda rs: "")
    assert runnable(ch) == ((), "scenario no-such-scenario not registered")
    ch = Chapter("x", "fork-test", ("3.17", "3.18"), {}, lambda rs: "")
    assert runnable(ch) == ((), "eras 3.17, 3.18 not registered")
    ch = Chapter("x", "exim", ("2.6.36", "3.0-rc1", "3.0"), {}, lambda rs: "")
    assert runnable(ch)[1] is None or "3.0-rc1" not in ERAS
    assert all(runnable(c)[1] is None for c in CHAPTERS if c.scenario in ("reclaim-storm", "fork-test"))


def test_story_runs_each_chapter_once_per_era() -> None:
    """story with a stand-in for ``run`` (the runs themselves are tested above): one line
    per chapter, each era of a chapter run once with the chapter's scenario."""
    seen: list[tuple[str, str]] = []
    lines: list[str] = []

    def fake_run(cfg: RunConfig) -> dict:  # type: ignore[type-arg]
        seen.append((cfg.scenario, cfg.era))
        return {"invariants": {"violations": 0}, "cfg": cfg}

    chapters = [Chapter("a", "fork-test", ("3.8", "3.9", "3.99"), {"users": 1}, lambda rs: ",".join(rs)),
                Chapter("b", "mprotect-split", ("3.6", "3.7"), {}, lambda rs: "never")]
    doc = story(1.0, 2, fake_run, lines.append, chapters)
    assert seen == [("fork-test", "3.8"), ("fork-test", "3.9")]
    assert lines[0] == "a: 3.8,3.9"
    assert lines[1].startswith("b: skipped (")
    assert doc["chapters"][0]["results"]["3.8"]["cfg"].users == 2  # one user per CPU at least
    assert doc["chapters"][1]["skipped"]


def test_ramp_compare_plot_take_the_new_eras(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["ramp", "--era", "3.8", "--era", "modern", "--start-users", "2", "--end-users", "2",
                 "--duration", "0.3", "--cpus", "2", "--pages", "8", "--quiet", "--json", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "seed commit" not in out  # the seed's figure belongs to 2.6.33 -> 2.6.34 only
    assert [p["era"] for p in json.loads(doc.read_text())["points"]] == ["3.8", "modern"]
    assert main(["compare", str(doc)]) == 0
    assert "modern" in capsys.readouterr().out.splitlines()[1]
    assert main(["plot", str(doc), "-o", str(png)]) == 0
    assert png.stat().st_size > 0


def test_story_and_eras_bad_input_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["story", "--duration", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rmap-stress: error: --duration must be a positive, finite number of seconds, not 0.0"]
    assert main(["story", "--cpus", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "rmap-stress: error: --cpus must be a positive count, not -1"
    assert main(["run", "--scenario", "exim", "--users", "1", "--cpus", "2"]) == 2
    assert "exim needs at least one user per CPU" in capsys.readouterr().err


def test_the_scenarios_throughput_for_scale_and_predict() -> None:
    from stress.analysis.predict import throughput_key

    assert throughput_key({"config": {"scenario": "fork-test"}}) == "forks_per_s"
    assert throughput_key({"config": {"scenario": "exim"}}) == "jobs_per_min"


@pytest.mark.parametrize("scenario", ["fork-test", "exim"])
def test_allocation_failures_unwind(scenario: str) -> None:
    """--inject alloc-fail: a fork (or a COW) that fails unwinds; every process forked
    still exits, and the model checks clean."""
    res = run(RunConfig(era="3.9", scenario=scenario, users=2, pages=8, cpus=2, duration=0.5,
                        alloc_fail_p=0.3))
    t = res["throughput"]
    assert res["invariants"]["violations"] == 0
    assert t["alloc_failures"] > 0 and t["forks"] == t["exits"]
    assert res["model"]["mms"] == 3


@pytest.mark.parametrize("era,stolen", [("3.8", ""), ("3.9", "queued"), ("modern", "fast")])
def test_the_eras_hand_off_policy_on_a_real_fork(make_model, spawn, era: str, stolen: str) -> None:  # type: ignore[no-untyped-def]
    """A second CPU holds the root for writing; a forked child's dup_mmap queues for it (a
    writer) and is frozen (SIGSTOP) while it sleeps.  The holder releases and wants the root
    again at once: 3.8 (FIFO) has already granted it to the frozen fork, so the holder's
    trylock fails; 3.9 (lock-stealing) only woke the fork, and the running holder takes it
    in its slow path (the fast path needs a count of 0) after queueing behind the fork,
    the first waiter being a writer (ce6711f3d196).  Modern's fork never queued: it spins
    on the running holder (optimistic spinning), so frozen it holds no place, and the
    holder's fast path finds the count 0.
    The fork then completes either way."""
    m, holder, users, root_w = _family(make_model, era)
    site = SITE["anon_vma_fork"]
    t = holder.locks.acquire(root_w, AV, site, 0)
    child = spawn(m, lambda cm, *_: exit_mmap(cm, dup_mmap(cm, users[0])), CHILD_CPU)
    _wait_for(m, CHILD_CPU, root_w)
    os.kill(child.pid, signal.SIGSTOP)
    try:
        holder.locks.release(root_w, AV, site, t, 0)
        got = lock_acquire_fast(holder.words, holder.g, holder.locks.held, root_w, AV, site, 0)
        assert (got >= 0) == (stolen == "fast")
        if stolen == "queued":  # the slow path: queue at the tail, steal behind the writer
            got = holder.locks.acquire(root_w, AV, site, 0)
        if got >= 0:
            holder.locks.release(root_w, AV, site, got, 0)
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert child.join() == 0
    assert check_model(m) == []


def test_story_scan_chapters_and_the_cve_chapters_expected_violations() -> None:
    """The structural chapters: mprotect-split and fork-chain run through ``scan`` (with
    their own user count, not one per CPU); the CVE chapter's violations on 3.19 are its
    point and do not count against the story, a violation anywhere else does."""
    import dataclasses

    seen: list[tuple[str, ...]] = []
    lines: list[str] = []

    def fake_run(cfg: RunConfig) -> dict:  # type: ignore[type-arg]
        seen.append(("run", cfg.scenario, cfg.era))
        n = 2 if cfg.era == "3.19" else 0
        messages = ["page->mapping is anon_vma 4, freed anon_vma"] * n
        return {"invariants": {"violations": n, "messages": messages}}

    def fake_scan(cfg: RunConfig) -> dict:  # type: ignore[type-arg]
        seen.append(("scan", cfg.scenario, cfg.era, str(cfg.users)))
        return {"walks": {"avg_visited": 2.0, "avg_nodes_examined": 11.0}}

    chs = [c for c in CHAPTERS if c.scenario in ("mprotect-split", "cve-2022-42703")]
    assert [c.kind for c in chs] == ["scan", "run"]
    doc = story(1.0, 2, fake_run, lines.append, chs, scan=fake_scan)
    assert seen == [("scan", "mprotect-split", "3.0", "1"), ("scan", "mprotect-split", "3.7", "1"),
                    ("run", "cve-2022-42703", "3.19"), ("run", "cve-2022-42703", "6.0")]
    assert [c["unexpected_violations"] for c in doc["chapters"]] == [0, 0]
    assert "3.19: 2 violations (page->mapping points at a freed anon_vma)" in lines[1]
    assert "6.0: invariants ok" in lines[1] and "INVARIANT VIOLATIONS" not in lines[1]
    strict = [dataclasses.replace(chs[1], expect_violations=())]
    doc = story(1.0, 2, fake_run, lines.append, strict, scan=fake_scan)
    assert doc["chapters"][0]["unexpected_violations"] == 2
    assert lines[-1].endswith("[2 INVARIANT VIOLATIONS]")
    doc = story(1.0, 2, fake_run, lines.append, chs[:1])  # no scan runner: skipped
    assert doc["chapters"][0]["skipped"] == "no scan runner given"


def test_the_seed_chapter_compares_each_later_era_with_the_first() -> None:
    from stress.commands.story import seed_headline

    def res(walk: float, pps: float, wait: float) -> dict:  # type: ignore[type-arg]
        return {"walks": {"avg_visited": walk}, "throughput": {"pages_scanned_per_s": pps},
                "anon_vma_wait_share": wait}

    line = seed_headline({"2.6.33": res(151, 2000, 0.5), "2.6.34-rc1": res(1.0, 90000, 0.01),
                          "2.6.34": res(54.6, 8000, 0.5), "2.6.36": res(1.0, 100000, 0.1)})
    assert line == ("2.6.33 walks 151 entries, 2000 pages scanned/s, anon_vma lock wait 50%; "
                    "2.6.34-rc1 1.0 entries, 90000/s (45.00x), wait 1%; "
                    "2.6.34 54.6 entries, 8000/s (4.00x), wait 50%; "
                    "2.6.36 1.0 entries, 100000/s (50.00x), wait 10%")
    assert next(c for c in CHAPTERS if c.scenario == "reclaim-storm").eras == \
        ("2.6.33", "2.6.34-rc1", "2.6.34", "2.6.36")
    oops = next(c for c in CHAPTERS if c.scenario == "shared-swapin")
    assert oops.kind == "scan" and oops.eras == ("2.6.34-rc1", "2.6.34")
    assert oops.expect_violations == ("2.6.34-rc1",)

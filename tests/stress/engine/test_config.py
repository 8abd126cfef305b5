"""RunConfig.validate: every rule, at its boundary, and the message naming what is wrong;
resolved() fills in the CPU count and the era's lock without changing the original."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest

from shared_model.eras import ERAS
from stress.cli import build_parser, main
from stress.engine.config import (
    MAX_CPUS_WITHOUT_FORCE,
    SCENARIOS,
    ConfigError,
    Option,
    RunConfig,
    _swap_device_help,
    online_cpus,
    option,
)


@pytest.mark.parametrize(("bad", "words"), [
    ({"era": "2.4"}, f"unknown era '2.4' (choose from {', '.join(ERAS)})"),
    ({"scenario": "nope"}, f"unknown scenario 'nope' (choose from {', '.join(SCENARIOS)})"),
    ({"lock": "rcu"}, "unknown lock 'rcu' (choose from tas, ticket, qspinlock, mutex, rwsem)"),
    ({"users": 0}, "--users must be a positive count, not 0"),
    ({"pages": -1}, "--pages must be a positive count, not -1"),
    ({"pages": (1 << 24) + 1}, f"--pages {(1 << 24) + 1} is more than one mapping"),
    ({"cow": 1.5}, "--cow must be a fraction in [0, 1], not 1.5"),
    ({"cow": -0.1}, "--cow must be a fraction"),
    ({"cpus": -2}, "--cpus must be a positive count, not -2"),
    ({"cpus": MAX_CPUS_WITHOUT_FORCE + 1}, "add --force"),
    ({"duration": 0}, "--duration must be a positive, finite number"),
    ({"duration": 1e7}, "--duration"),
    ({"duration": float("inf")}, "--duration"),
    ({"duration": float("nan")}, "--duration"),
    ({"users": 1 << 20, "pages": 1 << 10}, "page-table entries"),  # (2**20 + 1) * 2**10 >= 2**30
    ({"users": (1 << 20) - 1, "pages": 1 << 10}, "page-table entries"),  # exactly 2**30
    ({"scenario": "forking-server", "users": 1, "cpus": 2}, "at least one user per CPU"),
    ({"scenario": "abba-deadlock", "users": 1, "cpus": 2, "era": "2.6.34"},
     "abba-deadlock needs --users >= 2 (not 1)"),
    ({"scenario": "abba-deadlock", "users": 2, "cpus": 1, "era": "2.6.34"},
     "abba-deadlock needs --cpus >= 2 (not 1)"),
    ({"scenario": "abba-deadlock", "users": 2, "cpus": 2, "era": "2.6.33"},
     "abba-deadlock needs an era with anon_vma_chain (2.6.33 has none)"),
    ({"entry_cost_ns": -1}, "--entry-cost-ns must be >= 0, not -1"),
    ({"work_us": -1}, "--work-us must be >= 0, not -1"),
    ({"alloc_fail_p": 1.01}, "alloc-fail probability must be in [0, 1], not 1.01"),
    ({"alloc_fail_p": -0.5}, "alloc-fail probability"),
    ({"ram_pages": -1}, "--ram-pages must be a positive count"),
])
def test_each_rule_refuses_and_says_which(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**bad).validate()
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("good", [
    {}, {"pages": 1 << 24, "users": 1}, {"cow": 0.0}, {"cow": 1.0}, {"cpus": 0},
    {"cpus": MAX_CPUS_WITHOUT_FORCE}, {"cpus": MAX_CPUS_WITHOUT_FORCE + 1, "force": True},
    {"duration": 1e-3}, {"duration": 9.9e6}, {"users": (1 << 20) - 2, "pages": 1 << 10},
    {"scenario": "forking-server", "users": 2, "cpus": 2},
    {"scenario": "forking-server", "users": 1, "cpus": 0},  # checked again once cpus is resolved
    {"scenario": "abba-deadlock", "users": 2, "cpus": 2, "era": "2.6.36"},
    {"scenario": "abba-deadlock", "users": 2, "cpus": 0, "era": "3.0"},
    {"entry_cost_ns": 0}, {"work_us": 0}, {"alloc_fail_p": 0.0}, {"alloc_fail_p": 1.0},
    {"ram_pages": 0}, {"lock": "spin"}, {"lock": "ticket"}, {"lock": "qspinlock"}, {"lock": "rwsem"},
    {"lock": "mutex"},
])
def test_boundaries_that_are_accepted(good: dict[str, Any]) -> None:
    RunConfig(**good).validate()


def test_resolved_fills_cpus_and_the_era_s_lock_in_a_copy() -> None:
    cfg = RunConfig(era="3.0")
    r = cfg.resolved()
    assert r.cpus == len(os.sched_getaffinity(0)) == online_cpus()
    assert r.lock == "mutex"
    assert RunConfig(era="2.6.33").resolved().lock == "ticket"
    assert RunConfig(era="3.0", lock="spin", cpus=3).resolved().lock == "spin"
    assert RunConfig(cpus=3).resolved().cpus == 3
    assert (cfg.cpus, cfg.lock) == (0, None)  # the original is left alone
    assert dataclasses.replace(r, cpus=0, lock=None, swap_device=None) == cfg


def test_resolved_checks_again_once_cpus_is_known() -> None:
    cfg = RunConfig(scenario="forking-server", users=online_cpus() + 1, cpus=0)
    assert cfg.resolved().cpus == online_cpus()
    if online_cpus() > 1:
        with pytest.raises(ConfigError, match="at least one user per CPU"):
            RunConfig(scenario="forking-server", users=1, cpus=0).resolved()
    with pytest.raises(ConfigError, match="unknown era"):
        RunConfig(era="1.0").resolved()


# Adding a run option is one RunConfig field: this subclass adds one, and nothing else
# names it.  The parser makes it an option of run (with its help and default), the CLI
# reads it into the run's config, and the run's results record it.
@dataclasses.dataclass
class WithKnob(RunConfig):
    knob_ns: int = option("a new knob of the run (default {default})", 7, metavar="NS")


def test_a_new_run_option_is_one_field(tmp_path: Any, capsys: Any) -> None:
    def run_help(config: type[RunConfig]) -> str:
        with pytest.raises(SystemExit):
            build_parser(config).parse_args(["run", "--help"])
        return capsys.readouterr().out

    assert "--knob-ns NS" in run_help(WithKnob)
    assert "a new knob of the run (default 7)" in run_help(WithKnob)
    assert "--knob-ns" not in run_help(RunConfig)
    out = tmp_path / "run.json"
    rc = main(["run", "--users", "4", "--pages", "4", "--cpus", "1", "--duration", "0.3", "--quiet",
               "--knob-ns", "42", "--json", str(out)], config=WithKnob)
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["config"]["knob_ns"] == 42
    # the other documents that record a run's config: ramp's and scale's
    assert WithKnob(knob_ns=3).record("ramp")["knob_ns"] == 3
    assert WithKnob(knob_ns=3).record("scale")["knob_ns"] == 3


def test_the_results_record_the_fields_they_recorded_before() -> None:
    """record(): the keys of run's, ramp's and scale's config as the documents had them."""
    c = RunConfig()
    assert list(c.record("run")) == [
        "era", "scenario", "users", "pages", "cow", "cpus", "duration", "lock", "seed",
        "entry_cost_ns", "work_us", "ram_pages", "alloc_fail_p", "check_lock_order", "lockstat",
        "swap_device", "swap_latency_ms", "swap_iops", "swap_queue", "refault_order"]
    assert set(c.record("ramp")) == {"duration", "cpus", "pages", "cow", "ram_pages", "work_us",
                                     "entry_cost_ns", "seed", "swap_device", "swap_latency_ms",
                                     "swap_iops", "swap_queue"}
    assert list(c.record("scale")) == ["scenario", "users", "pages", "cow", "duration", "seed",
                                       "entry_cost_ns", "work_us", "ram_pages", "alloc_fail_p"]
    assert c.record("run", refault_order="child-first", nope=1)["refault_order"] == "child-first"
    assert "nope" not in c.record("run", nope=1)


def test_every_default_is_the_fields() -> None:
    """A run option's default is stated once, on its field: run's parser agrees with RunConfig."""
    a = build_parser().parse_args(["run"])
    for f in dataclasses.fields(RunConfig):
        if hasattr(a, f.name):
            assert getattr(a, f.name) == f.default, f.name


def test_option_is_a_field_with_its_default_and_option() -> None:
    """option(): the field's default, and the Option (help and keywords) in its metadata."""
    f = option("a knob (default {default})", 5, metavar="N", commands=("scan",))
    assert f.default == 5
    assert f.metadata["option"] == Option("a knob (default {default})", metavar="N",
                                          commands=("scan",))


def test_the_swap_device_help_names_both_devices_and_the_default() -> None:
    assert _swap_device_help("disk") == (
        "swap writeback and swap-in reads go to: disk or off (a disk with a latency and an "
        "IOPS limit, or infinitely fast; default disk)")


IOPS_WORDS = ("--swap-iops must be a positive rate in [0.01, 1e9] (--swap-device off for an "
              "infinitely fast device)")


@pytest.mark.parametrize(("bad", "words"), [
    ({"refault_order": "lifo"},
     "unknown --refault-order 'lifo' (choose from parent-first, child-first, random)"),
    ({"generations": 0}, "--generations must be a positive count, not 0"),
    ({"scenario": "fork-test", "users": 2, "cpus": 3},
     ("fork-test needs at least one user per CPU (--users 2 < --cpus 3): each CPU forks off its "
      "own users")),
    ({"scenario": "exim", "users": 1, "cpus": 2},
     "exim needs at least one user per CPU (--users 1 < --cpus 2): each CPU forks off its own users"),
    ({"scenario": "forking-server", "users": 1, "cpus": 2},
     ("forking-server needs at least one user per CPU (--users 1 < --cpus 2): each CPU runs its own "
      "users' jobs")),
    ({"scenario": "abba-deadlock", "users": 1, "cpus": 1, "era": "2.6.33"},
     ("abba-deadlock needs --users >= 2 (not 1) and --cpus >= 2 (not 1) and an era with "
      "anon_vma_chain (2.6.33 has none)")),
    ({"scenario": "mprotect-split", "pages": 10, "pieces": 0},
     "--pieces must be between 1 and --pages (10), not 0"),
    ({"scenario": "mprotect-split", "pages": 10, "pieces": 11},
     "--pieces must be between 1 and --pages (10), not 11"),
    ({"swap_device": "ssd"}, "unknown --swap-device 'ssd' (choose from disk, off)"),
    ({"swap_latency_ms": -1.0},
     "--swap-latency-ms must be a number of milliseconds in [0, 10000], not -1.0"),
    ({"swap_latency_ms": 10000.5},
     "--swap-latency-ms must be a number of milliseconds in [0, 10000], not 10000.5"),
    ({"swap_latency_ms": float("inf")},
     "--swap-latency-ms must be a number of milliseconds in [0, 10000], not inf"),
    ({"swap_iops": 0.0}, f"{IOPS_WORDS}, not 0.0"),
    ({"swap_iops": 1e9 + 0.5}, f"{IOPS_WORDS}, not 1000000000.5"),
    ({"swap_iops": 2e9}, f"{IOPS_WORDS}, not 2000000000.0"),
    ({"swap_iops": float("nan")}, f"{IOPS_WORDS}, not nan"),
    ({"swap_queue": 0}, "--swap-queue must be a count of request slots in [1, 1048576], not 0"),
    ({"swap_queue": (1 << 20) + 1},
     "--swap-queue must be a count of request slots in [1, 1048576], not 1048577"),
])
def test_each_later_rule_refuses_with_its_whole_message(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**bad).validate()
    assert str(info.value) == words


@pytest.mark.parametrize("good", [
    {"refault_order": "parent-first"}, {"refault_order": "child-first"}, {"refault_order": "random"},
    {"generations": 1},
    {"scenario": "fork-test", "users": 3, "cpus": 3}, {"scenario": "exim", "users": 2, "cpus": 2},
    {"scenario": "fork-test", "users": 1, "cpus": 0},  # checked again once cpus is resolved
    {"scenario": "mprotect-split", "pages": 10, "pieces": 1},
    {"scenario": "mprotect-split", "pages": 10, "pieces": 10},
    {"pieces": 0},  # only mprotect-split splits
    {"swap_device": "disk"}, {"swap_device": "off"},
    {"swap_latency_ms": 0.0}, {"swap_latency_ms": 1e4},
    {"swap_iops": 0.01}, {"swap_iops": 1e9},
    {"swap_queue": 1}, {"swap_queue": 1 << 20},
])
def test_later_boundaries_that_are_accepted(good: dict[str, Any]) -> None:
    RunConfig(**good).validate()


def test_resolved_fills_the_scenario_s_swap_device() -> None:
    fs = RunConfig(scenario="forking-server", users=4, cpus=2)
    assert fs.resolved().swap_device == "disk"
    assert dataclasses.replace(fs, swap_device="off").resolved().swap_device == "off"
    assert RunConfig(cpus=2).resolved().swap_device == "off"  # reclaim-storm
    assert RunConfig(cpus=2, swap_device="disk").resolved().swap_device == "disk"


def test_the_refault_order_is_the_option_s_else_the_scenario_s() -> None:
    assert RunConfig().resolved_refault_order() == "parent-first"
    assert RunConfig(scenario="shared-swapin").resolved_refault_order() == "child-first"
    assert RunConfig(scenario="shared-swapin", refault_order="random").resolved_refault_order() == "random"
    assert RunConfig(refault_order="child-first").resolved_refault_order() == "child-first"


def test_online_cpus_without_affinity_counts_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the OS has no sched_getaffinity: os.cpu_count(), or 1 when it is unknown."""
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert online_cpus() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert online_cpus() == 1

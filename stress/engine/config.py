"""A run's parameters, validated in one place (the CLI turns ConfigError into one line)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from shared_model.eras import ERAS
from shared_model.locks import LOCK_ALIASES, LOCK_KINDS

SCENARIOS: tuple[str, ...] = ("reclaim-storm", "forking-server", "fork-test", "exim")
# Accepted but not advertised: workloads that exist to test the tool's failure handling.
TEST_SCENARIOS = ("abba-deadlock",)
# Scenarios of ``scan --scenario`` (one process, exact counts; not ``run``).
SCAN_SCENARIOS = ("fork-chain", "mprotect-split", "shared-swapin")
# ``run`` scenarios of the later eras (cve-2022-42703) and of the seed's oops (shared-swapin,
# also a scan scenario).
SCENARIOS = SCENARIOS + ("cve-2022-42703", "shared-swapin")
# The order in which a page's owners fault it back in after reclaim unmapped it
# (--refault-order); None: the scenario's (REFAULT_ORDER_DEFAULT, else parent-first).
REFAULT_ORDERS = ("parent-first", "child-first", "random")
REFAULT_ORDER_DEFAULT = {"shared-swapin": "child-first"}
# A walk over N list entries costs the kernel a page-table walk in another mm per entry
# (about 8 dependent cache misses on 2010 hardware: vma, list node, mm, pgd, pud, pmd, pte,
# ptl) which a vectorised numpy gather does not pay.  See README, "Modelled cost".
DEFAULT_ENTRY_COST_NS = 1000
MAX_CPUS_WITHOUT_FORCE = 1024
# The swap device (shared_model/swapdev.py): "disk" has a latency and an IOPS limit, "off" is
# infinitely fast.  By default forking-server (and so the ramp) swaps to a 2010 disk;
# reclaim-storm's refaults come straight back from the swap cache, before writeback could
# free the page, so its default is off (README, "The swap device and iowait").
SWAP_DEVICES = ("disk", "off")
SWAP_DEVICE_DEFAULT = {"forking-server": "disk"}
DEFAULT_SWAP_LATENCY_MS = 8.0
DEFAULT_SWAP_IOPS = 150.0
DEFAULT_SWAP_QUEUE = 128


class ConfigError(ValueError):
    """Bad input a user can cause: reported as one line, exit status 2."""


# The commands whose options are a run's: each RunConfig field is an option of these unless
# its Option names others (``commands``).
RUN_COMMANDS = ("run", "profile", "scale")
# The results documents that write a run's configuration (``RunConfig.record``).
DOCUMENTS = ("run", "ramp", "scale")


@dataclasses.dataclass(frozen=True)
class Option:
    """How a RunConfig field is a command-line option, declared once on the field.

    ``help`` may name ``{default}`` (the command's default, floats as ``%g``).  ``flag`` is
    ``--field-name`` unless given; a bool field is a switch (``store_true``, or with a
    ``--no-`` flag ``store_false``).  ``per_command`` changes the default, help or metavar
    for one command (ramp's --pages is pages per user, 20).  ``results``: the results
    documents whose config records the field."""

    help: str
    metavar: str | None = None
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    commands: tuple[str, ...] = RUN_COMMANDS
    per_command: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    results: tuple[str, ...] = DOCUMENTS


def option(help: str, default: Any, **kw: Any) -> Any:
    """A RunConfig field with its option: ``field(default=..., metadata={"option": ...})``."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **kw)})


_ERA_HELP = f"kernel design: {', '.join(ERAS)} (default {{default}})"
_LOCK_HELP = (f"lock primitive for anon_vma locks: {', '.join(LOCK_KINDS)} (default: the era's: "
              f"ticket to 2.6.36, mutex in 3.0-rc1 to 3.7, rwsem from 3.8; `rmap-stress eras` "
              f"lists them)")
_MODEL = RUN_COMMANDS + ("scan",)
_FORKING = RUN_COMMANDS + ("ramp",)
_ALL_CPUS = {"help": "CPU workers (default: all online)"}


def _swap_device_help(default: str) -> str:
    return (f"swap writeback and swap-in reads go to: {' or '.join(SWAP_DEVICES)} (a disk with a "
            f"latency and an IOPS limit, or infinitely fast; default {default})")


@dataclasses.dataclass
class RunConfig:
    """A run's parameters.  Each field is declared once, with its option (``Option``): the
    CLI's options, their defaults and help are made from these fields, and the results
    record them (``record``), so a new run option is one new field here."""

    era: str = option(_ERA_HELP, "2.6.33", metavar="ERA", commands=_MODEL, results=("run",))
    scenario: str = option(
        f"workload: {', '.join(SCENARIOS)} (default {{default}})", "reclaim-storm", metavar="S",
        commands=_MODEL, results=("run", "scale"),
        per_command={"scan": {"default": None, "help": f"a structural scenario of the later eras "
                              f"instead of the fork family: {', '.join(SCAN_SCENARIOS)}"}})
    users: int = option(
        "reclaim-storm and scan: children forked by the family's parent; forking-server: AIM7 "
        "users, each a process with its own jobs; fork-test and exim: the parent's children "
        "each CPU forks off (default {default})", 1000, metavar="N", commands=_MODEL + ("demo",),
        results=("run", "scale"), per_command={"demo": {"help": "children (default {default})"}})
    pages: int = option(
        "anonymous pages the parent maps and touches (default {default})", 100, metavar="P",
        commands=_MODEL + ("ramp", "demo"),
        per_command={"ramp": {"default": 20, "help": "pages per user (default {default})"},
                     "demo": {"help": "pages (default {default})"}})
    cow: float = option(
        "fraction of its pages each child writes, COWing them (default 1.0)", 1.0, metavar="F",
        commands=_MODEL + ("ramp",),
        per_command={"ramp": {"help": "fraction each user COWs and touches (default 1.0)"}})
    cpus: int = option(  # 0: every online CPU
        "CPU worker processes, pinned round-robin (default: every online CPU)", 0, metavar="W",
        commands=RUN_COMMANDS + ("ramp", "demo", "story"), results=("run", "ramp"),
        per_command={"ramp": _ALL_CPUS, "demo": _ALL_CPUS, "story": _ALL_CPUS})
    duration: float = option(
        "seconds of measured run after the start gate (default {default})", 10.0,
        metavar="SECONDS", commands=RUN_COMMANDS + ("ramp", "demo", "story"),
        per_command={"scale": {"default": 5.0},
                     "ramp": {"default": 5.0, "help": "seconds per run (default {default})"},
                     "demo": {"default": 12.0, "help": "seconds per era (default {default})"},
                     "story": {"default": 4.0, "help": "seconds per run (default {default})"}})
    lock: str | None = option(  # None: the era's own primitive
        _LOCK_HELP, None, metavar="KIND", commands=_MODEL + ("ramp",), results=("run",),
        per_command={"ramp": {"help": "override the eras' lock primitive"}})
    seed: int = option(
        "seed for which pages a child writes (default {default})", 0, commands=_MODEL + ("ramp",),
        per_command={"ramp": {"help": "seed for which pages a user touches and its child COWs "
                                      "(default {default})"}})
    entry_cost_ns: int = option(
        "modelled cost of visiting one list entry (the kernel's page-table walk into another mm); "
        "0 turns it off (default {default})", DEFAULT_ENTRY_COST_NS, metavar="NS",
        commands=_FORKING,
        per_command={"ramp": {"help": "modelled cost per walk entry (default {default})"}})
    work_us: int = option(
        "forking-server: user work per job in microseconds (default {default})", 200,
        metavar="US", commands=_FORKING,
        per_command={"ramp": {"help": "user work per job (default {default})"}})
    reclaim: bool = option(
        "fork-test: after every fork the CPU also reclaims 2 pages of the family's LRU (rmap walks "
        "reading the root lock); off by default: AIM7's fork_test only forks and exits", False,
        results=())
    ram_pages: int = option(  # 0: 3/4 of what the family holds (ramp: the family at twice A)
        "forking-server: page frames of the machine; below a low watermark a faulting CPU does "
        "direct reclaim (default: 3/4 of the family's pages)", 0, metavar="N", commands=_FORKING,
        per_command={"ramp": {"help": "page frames for the whole ramp (default: the family at "
                                      "twice --start-users)"}})
    # anon_vma/AVC allocations fail with this probability: set by --inject alloc-fail=P
    alloc_fail_p: float = option("", 0.0, commands=(), results=("run", "scale"))
    check_lock_order: bool = option(
        "lockdep-like: record per CPU the order in which lock classes are taken and report the "
        "first inversion (or recursive locking) with both call sites", False, results=("run",))
    lockstat: bool = option(
        "record no lock statistics (to measure what recording them costs)", True,
        flag="--no-lockstat", results=("run",))
    force: bool = option("allow more than 1024 CPU workers", False, results=())
    generations: int = option(
        "fork-chain: generations of fork-and-exit (default {default})", 1000, metavar="G",
        commands=("scan",), results=())
    pieces: int = option(
        "mprotect-split: pieces mprotect splits the parent's VMA into (default {default}; --pages "
        "then defaults to K, a page per piece)", 1000, metavar="K", commands=("scan",), results=())
    swap_device: str | None = option(  # None: the scenario's (SWAP_DEVICE_DEFAULT)
        _swap_device_help("disk for forking-server, off for reclaim-storm"), None, metavar="MODE",
        commands=_FORKING, results=("run", "ramp"),
        per_command={"ramp": {"help": _swap_device_help("disk")}})
    swap_latency_ms: float = option(
        "swap device: an idle disk completes a request after this (default {default}, a 7200 rpm "
        "SATA disk)", DEFAULT_SWAP_LATENCY_MS, metavar="MS", commands=_FORKING,
        results=("run", "ramp"))
    swap_iops: float = option(
        "swap device: requests per second it completes at most (default {default})",
        DEFAULT_SWAP_IOPS, metavar="N", commands=_FORKING, results=("run", "ramp"))
    swap_queue: int = option(  # request slots (the block layer's nr_requests)
        "swap device: request slots; a writer beyond them waits (nr_requests, default {default})",
        DEFAULT_SWAP_QUEUE, metavar="N", commands=_FORKING, results=("run", "ramp"))
    refault_order: str | None = option(  # REFAULT_ORDERS; None: the scenario's
        "order in which a page's owners fault it back in after reclaim unmapped it (scan "
        "--refault, reclaim-storm, shared-swapin; default parent-first, child-first for "
        "shared-swapin)", None, choices=REFAULT_ORDERS, commands=_MODEL, results=("run",))

    def record(self, document: str, **values: Any) -> dict[str, Any]:
        """The fields that ``document``'s results record (``Option.results``), as
        ``dataclasses.asdict`` gives them; ``values`` replaces some (resolved ones)."""
        out = {k: v for k, v in dataclasses.asdict(self).items()
               if document in field_option(self, k).results}
        out.update((k, v) for k, v in values.items() if k in out)
        return out

    def resolved_refault_order(self) -> str:
        return self.refault_order or REFAULT_ORDER_DEFAULT.get(self.scenario, "parent-first")

    def resolved(self) -> RunConfig:
        """A copy with defaults filled in (cpus, lock), after validation."""
        self.validate()
        c = dataclasses.replace(self)
        if not c.cpus:
            c.cpus = online_cpus()
        if c.lock is None:
            c.lock = ERAS[c.era].lock
        if c.swap_device is None:
            c.swap_device = SWAP_DEVICE_DEFAULT.get(c.scenario, "off")
        c.validate()  # again: some rules depend on the CPU count just filled in
        return c

    def validate(self) -> None:
        """Every check, in the order a user reads the options: names, sizes, what the
        scenario needs, the model's costs, the swap device."""
        self._validate_names()
        self._validate_sizes()
        self._validate_scenario()
        self._validate_costs()
        self.validate_swap()

    def _validate_names(self) -> None:
        if self.era not in ERAS:
            raise ConfigError(f"unknown era {self.era!r} (choose from {', '.join(ERAS)})")
        if self.scenario not in SCENARIOS + TEST_SCENARIOS + SCAN_SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r} (choose from {', '.join(SCENARIOS)})")
        if self.lock is not None and self.lock not in LOCK_KINDS + tuple(LOCK_ALIASES):
            raise ConfigError(f"unknown lock {self.lock!r} (choose from {', '.join(LOCK_KINDS)})")
        if self.refault_order is not None and self.refault_order not in REFAULT_ORDERS:
            raise ConfigError(f"unknown --refault-order {self.refault_order!r} "
                              f"(choose from {', '.join(REFAULT_ORDERS)})")

    def _validate_sizes(self) -> None:
        for name in ("users", "pages"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be a positive count, not {getattr(self, name)}")
        if self.pages > 1 << 24:
            raise ConfigError(f"--pages {self.pages} is more than one mapping of this model holds (16M)")
        if not 0.0 <= self.cow <= 1.0:
            raise ConfigError(f"--cow must be a fraction in [0, 1], not {self.cow}")
        if self.cpus < 0:
            raise ConfigError(f"--cpus must be a positive count, not {self.cpus}")
        if self.cpus > MAX_CPUS_WITHOUT_FORCE and not self.force:
            raise ConfigError(f"--cpus {self.cpus} is more than {MAX_CPUS_WITHOUT_FORCE} worker "
                              f"processes; add --force if you mean it")
        if not 0 < self.duration < 1e7:
            raise ConfigError(f"--duration must be a positive, finite number of seconds, not {self.duration}")
        if (self.users + 1) * self.pages >= 1 << 30:
            raise ConfigError(f"--users {self.users} x --pages {self.pages} is more page-table entries "
                              f"than the model indexes (2**30)")
        if self.generations <= 0:
            raise ConfigError(f"--generations must be a positive count, not {self.generations}")
        if self.ram_pages < 0:
            raise ConfigError(f"--ram-pages must be a positive count (or 0 for the default), "
                              f"not {self.ram_pages}")

    def _validate_scenario(self) -> None:
        if self.scenario == "forking-server" and self.cpus and self.users < self.cpus:
            raise ConfigError(f"forking-server needs at least one user per CPU (--users {self.users} < "
                              f"--cpus {self.cpus}): each CPU runs its own users' jobs")
        if self.scenario in ("fork-test", "exim") and self.cpus and self.users < self.cpus:
            raise ConfigError(f"{self.scenario} needs at least one user per CPU (--users {self.users} < "
                              f"--cpus {self.cpus}): each CPU forks off its own users")
        if self.scenario == "abba-deadlock":
            # Say which of the three conditions failed, not all three.
            no_chain = "an era with anon_vma_chain (2.6.33 has none)"
            failed = [why for bad, why in ((self.users < 2, f"--users >= 2 (not {self.users})"),
                                           (self.cpus == 1, "--cpus >= 2 (not 1)"),
                                           (self.era == "2.6.33", no_chain))
                      if bad]
            if failed:
                raise ConfigError(f"abba-deadlock needs {' and '.join(failed)}")
        if self.scenario == "mprotect-split" and not 0 < self.pieces <= self.pages:
            raise ConfigError(f"--pieces must be between 1 and --pages ({self.pages}), not {self.pieces}")

    def _validate_costs(self) -> None:
        if self.entry_cost_ns < 0:
            raise ConfigError(f"--entry-cost-ns must be >= 0, not {self.entry_cost_ns}")
        if self.work_us < 0:
            raise ConfigError(f"--work-us must be >= 0, not {self.work_us}")
        if not 0.0 <= self.alloc_fail_p <= 1.0:
            raise ConfigError(f"alloc-fail probability must be in [0, 1], not {self.alloc_fail_p}")

    def validate_swap(self) -> None:
        if self.swap_device is not None and self.swap_device not in SWAP_DEVICES:
            raise ConfigError(f"unknown --swap-device {self.swap_device!r} "
                              f"(choose from {', '.join(SWAP_DEVICES)})")
        if not (math.isfinite(self.swap_latency_ms) and 0 <= self.swap_latency_ms <= 1e4):
            raise ConfigError(f"--swap-latency-ms must be a number of milliseconds in [0, 10000], "
                              f"not {self.swap_latency_ms}")
        if not (math.isfinite(self.swap_iops) and 0.01 <= self.swap_iops <= 1e9):
            raise ConfigError(f"--swap-iops must be a positive rate in [0.01, 1e9] (--swap-device off for "
                              f"an infinitely fast device), not {self.swap_iops}")
        if not 1 <= self.swap_queue <= 1 << 20:
            raise ConfigError(f"--swap-queue must be a count of request slots in [1, 1048576], "
                              f"not {self.swap_queue}")


def field_option(config: Any, name: str) -> Option:
    """The Option of one field of a RunConfig (class or instance)."""
    return next(f for f in dataclasses.fields(config) if f.name == name).metadata["option"]


def online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - Linux only
        return os.cpu_count() or 1

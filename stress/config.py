"""A run's parameters, validated in one place (the CLI turns ConfigError into one line)."""

from __future__ import annotations

import dataclasses
import math
import os

from shared_model.eras import ERAS
from shared_model.locks import LOCK_ALIASES, LOCK_KINDS

SCENARIOS: tuple[str, ...] = ("reclaim-storm", "forking-server", "fork-test", "exim")
# Accepted but not advertised: workloads that exist to test the tool's failure handling.
TEST_SCENARIOS = ("abba-deadlock",)
# Scenarios of ``scan --scenario`` (one process, exact counts; not ``run``).
SCAN_SCENARIOS = ("fork-chain", "mprotect-split", "shared-swapin")
# ``run`` scenarios appended for the later eras (issue 12), and the seed's oops (issue 19,
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


@dataclasses.dataclass
class RunConfig:
    era: str = "2.6.33"
    scenario: str = "reclaim-storm"
    users: int = 1000
    pages: int = 100
    cow: float = 1.0
    cpus: int = 0  # 0: every online CPU
    duration: float = 10.0
    lock: str | None = None  # None: the era's own primitive
    seed: int = 0
    entry_cost_ns: int = DEFAULT_ENTRY_COST_NS
    work_us: int = 200  # forking-server: user work per job
    reclaim: bool = False  # fork-test: reclaim beside the forks (off: AIM7's fork_test, fork and exit)
    ram_pages: int = 0  # forking-server: page frames; 0 = 3/4 of what the family holds
    alloc_fail_p: float = 0.0  # --inject alloc-fail=P: anon_vma/AVC allocations fail with P
    check_lock_order: bool = False  # lockdep-like: record class order per CPU, report inversions
    lockstat: bool = True  # record lock statistics (--no-lockstat: to measure what they cost)
    force: bool = False
    generations: int = 1000  # scan --scenario fork-chain: fork-and-exit generations
    pieces: int = 1000  # scan --scenario mprotect-split: pieces mprotect splits the VMA into
    swap_device: str | None = None  # SWAP_DEVICES; None: the scenario's (SWAP_DEVICE_DEFAULT)
    swap_latency_ms: float = DEFAULT_SWAP_LATENCY_MS
    swap_iops: float = DEFAULT_SWAP_IOPS
    swap_queue: int = DEFAULT_SWAP_QUEUE  # request slots (the block layer's nr_requests)
    refault_order: str | None = None  # REFAULT_ORDERS; None: the scenario's

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
        if self.era not in ERAS:
            raise ConfigError(f"unknown era {self.era!r} (choose from {', '.join(ERAS)})")
        if self.scenario not in SCENARIOS + TEST_SCENARIOS + SCAN_SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r} (choose from {', '.join(SCENARIOS)})")
        if self.lock is not None and self.lock not in LOCK_KINDS + tuple(LOCK_ALIASES):
            raise ConfigError(f"unknown lock {self.lock!r} (choose from {', '.join(LOCK_KINDS)})")
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
        if self.entry_cost_ns < 0:
            raise ConfigError(f"--entry-cost-ns must be >= 0, not {self.entry_cost_ns}")
        if self.work_us < 0:
            raise ConfigError(f"--work-us must be >= 0, not {self.work_us}")
        if not 0.0 <= self.alloc_fail_p <= 1.0:
            raise ConfigError(f"alloc-fail probability must be in [0, 1], not {self.alloc_fail_p}")
        if self.generations <= 0:
            raise ConfigError(f"--generations must be a positive count, not {self.generations}")
        if self.scenario == "mprotect-split" and not 0 < self.pieces <= self.pages:
            raise ConfigError(f"--pieces must be between 1 and --pages ({self.pages}), not {self.pieces}")
        if self.ram_pages < 0:
            raise ConfigError(f"--ram-pages must be a positive count (or 0 for the default), not {self.ram_pages}")
        if self.refault_order is not None and self.refault_order not in REFAULT_ORDERS:
            raise ConfigError(f"unknown --refault-order {self.refault_order!r} "
                              f"(choose from {', '.join(REFAULT_ORDERS)})")
        self.validate_swap()

    def validate_swap(self) -> None:
        if self.swap_device is not None and self.swap_device not in SWAP_DEVICES:
            raise ConfigError(f"unknown --swap-device {self.swap_device!r} (choose from {', '.join(SWAP_DEVICES)})")
        if not (math.isfinite(self.swap_latency_ms) and 0 <= self.swap_latency_ms <= 1e4):
            raise ConfigError(f"--swap-latency-ms must be a number of milliseconds in [0, 10000], "
                              f"not {self.swap_latency_ms}")
        if not (math.isfinite(self.swap_iops) and 0.01 <= self.swap_iops <= 1e9):
            raise ConfigError(f"--swap-iops must be a positive rate in [0.01, 1e9] (--swap-device off for "
                              f"an infinitely fast device), not {self.swap_iops}")
        if not 1 <= self.swap_queue <= 1 << 20:
            raise ConfigError(f"--swap-queue must be a count of request slots in [1, 1048576], "
                              f"not {self.swap_queue}")


def online_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - Linux only
        return os.cpu_count() or 1

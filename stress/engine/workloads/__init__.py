"""One small module per scenario, each with the same three functions:

``capacities(cfg) -> Capacities``   records the model needs
``setup(m, cfg) -> state``          build the starting model (parent, before any CPU starts)
``run_cpu(m, cfg, state, cpu, stopping)``  one CPU's loop, until ``stopping()``

A workload counts what it does in the CPU's own slot (``m.locks.words``) and never prints.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..config import SCENARIOS, TEST_SCENARIOS

# A scenario's module is its name with ``_`` for ``-``, but for these (a module named
# ``*_test.py`` would be taken for a test file by pytest).
MODULES = {"fork-test": "forktest"}


def get_workload(scenario: str) -> ModuleType:
    if scenario not in SCENARIOS + TEST_SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    module = MODULES.get(scenario, scenario.replace("-", "_"))
    return importlib.import_module(f"{__name__}.{module}")

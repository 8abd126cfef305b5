"""scripts/mutation.py's scripted mutations stay applicable: each one's text occurs exactly
once in its module, and each module has its tests in the table.  Code moves (a split file,
a renamed helper) otherwise leave a mutation that mutates nothing, found only when someone
runs the slow mutation campaign."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mutation_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mutation_script", REPO / "scripts" / "mutation.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    return mod


def test_every_scripted_mutation_applies_once() -> None:
    m = _mutation_script()
    assert len(m.SCRIPTED) >= 50
    assert m.check_snippets(m.SCRIPTED) == []


def test_every_mutated_module_has_tests_that_exist() -> None:
    m = _mutation_script()
    for mu in m.SCRIPTED:
        assert (REPO / mu.module).is_file(), mu.module
    for module, (old, new) in m.SCRIPTED_TESTS.items():
        for t in old + new:
            assert (REPO / t.split("::")[0]).is_file(), (module, t)

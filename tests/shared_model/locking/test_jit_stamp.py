"""The compile cache is invalidated by an edit to a callee's source: a real edit, in a
temporary copy of ``locking/jit.py`` laid out as the model's (``pkg/locking/jit.py``
stamps every ``.py`` under ``pkg/``), each run a fresh interpreter.

numba keys a cached function on its own file only; the caller inlines the callee's
machine code, so without the source-tree stamp the caller would load from the cache with
the old callee inside (stale code, silently).  The test sees that as the old result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shared_model.locking import jit

CALLEE = '''from .locking.jit import cached_njit


@cached_njit
def bump(x: int) -> int:
    return x + {step}


@cached_njit(inline=True)
def bump_inline(x: int) -> int:
    return x + {step}
'''
CALLER = '''from .callee import bump, bump_inline
from .locking.jit import cached_njit


@cached_njit
def twice(x: int) -> int:
    return bump(x) * 2


@cached_njit
def thrice(x: int) -> int:
    return bump_inline(x) * 3
'''
RUN = '''import json, sys
sys.path.insert(0, sys.argv[1])
from pkg.caller import thrice, twice
out = {}
for f in (twice, thrice):
    r = f(1)
    out[f.__name__] = [r, sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
print(json.dumps(out))
'''


def _run(root: Path) -> dict[str, list[int]]:
    """{caller: [result, cache hits, cache misses]} from a fresh interpreter."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(root / "cache")}
    p = subprocess.run([sys.executable, "-c", RUN, str(root)], check=False, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_editing_a_callee_recompiles_its_cached_callers(tmp_path: Path) -> None:
    """Two callers: one calls the callee, one inlines it (the lock fast paths' way)."""
    pkg = tmp_path / "pkg"
    (pkg / "locking").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "locking" / "__init__.py").write_text("")
    shutil.copy2(Path(jit.__file__), pkg / "locking" / "jit.py")
    (pkg / "callee.py").write_text(CALLEE.format(step=1))
    (pkg / "caller.py").write_text(CALLER)

    # (1 + 1) * 2 and * 3, compiled; then loaded from the cache (so the cache is in use)
    assert _run(tmp_path) == {"twice": [4, 0, 1], "thrice": [6, 0, 1]}
    assert _run(tmp_path) == {"twice": [4, 1, 0], "thrice": [6, 1, 0]}

    (pkg / "callee.py").write_text(CALLEE.format(step=10))  # the callers' file untouched
    edited = _run(tmp_path)
    assert edited == {"twice": [22, 0, 1], "thrice": [33, 0, 1]}, (
        f"stale machine code: a cached caller kept the old callee ({edited})")
